//! Wall-clock time of a quality run's parts, kept in its result file so that a report can
//! say what FID costs here, above all the Inception's time per 1,000 images.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Seconds spent in each part of [`quality`](super::quality); zeros in result files written
/// before they were recorded.
///
/// ```
/// use jem_eval::quality::QualitySeconds;
/// let t = QualitySeconds { inception: 30.0, inception_images: 300, real_stats: 70.0,
///                          real_images: 700, ..Default::default() };
/// assert_eq!(t.inception_total(), (100.0, 1000));
/// assert_eq!(t.inception_per_1000(), Some(100.0));
/// assert_eq!(QualitySeconds::default().inception_per_1000(), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QualitySeconds {
    /// Getting the generated images: reading the replay buffer, or running fresh chains.
    pub source: f64,
    /// Inception features of the generated images, with their selection by confidence.
    pub inception: f64,
    /// Generated images that went through the Inception in `inception`.
    pub inception_images: usize,
    /// Inception features and statistics of the real images; 0 when they came from the
    /// cache.
    pub real_stats: f64,
    /// Real images behind `real_stats`; 0 when the statistics came from the cache.
    pub real_images: usize,
}

impl QualitySeconds {
    /// Seconds and images of all of this run's Inception passes: the generated images and,
    /// when computed here, the real ones.
    pub fn inception_total(&self) -> (f64, usize) {
        (
            self.inception + self.real_stats,
            self.inception_images + self.real_images,
        )
    }

    /// The Inception's seconds per 1,000 images over [`inception_total`](Self::inception_total);
    /// `None` when no image went through it.
    pub fn inception_per_1000(&self) -> Option<f64> {
        let (seconds, images) = self.inception_total();
        (images > 0).then(|| seconds * 1000.0 / images as f64)
    }
}

/// Runs `f` and adds its wall-clock seconds to `*total`.
pub(super) fn timed<T>(total: &mut f64, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    *total += start.elapsed().as_secs_f64();
    out
}
