//! PNG figures of a run: sample grids ([`save_grid`]), line charts ([`LineChart`]),
//! reliability diagrams ([`save_reliability_diagram`]) and histograms ([`save_histograms`]).
//!
//! Files are written atomically (a temporary file renamed into place), so a reader never
//! sees half a PNG. Text uses an embedded DejaVu Sans, so charts render the same on a
//! machine without fonts.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod bars;
mod chart;
mod grid;
mod heatmap;
mod legend;

pub use bars::{ReliabilityBin, save_histograms, save_reliability_diagram};
pub use chart::{LineChart, Series};
pub use grid::{grid_image, save_grid};
pub use heatmap::{Heatmap, Segment, contour_segments};

/// Errors while drawing or writing a figure; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Bad input to a figure.
    #[error("{0}")]
    Invalid(String),
    /// Encoding the PNG failed.
    #[error("{path}: encoding the PNG: {source}")]
    Encode {
        /// The figure's file.
        path: String,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// Writing the file failed (the message names the file and the step).
    #[error(transparent)]
    Write(#[from] jem_io::AtomicWriteError),
    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`PlotError`].
pub type Result<T> = std::result::Result<T, PlotError>;

pub(crate) fn write_png(path: &std::path::Path, img: &image::RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|source| PlotError::Encode {
        path: path.display().to_string(),
        source,
    })?;
    Ok(jem_io::write_atomic(path, &bytes)?)
}
