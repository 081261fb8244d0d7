//! The CIFAR10-interp set of `jem eval ood` is built from `jem_data::derived`'s pairs.

use jem_data::ImageSet;
use jem_data::derived::{INTERP_BATCH, interp_pairs, seeded_interp_pairs};
use jem_eval::ood::interp_images;

/// `n` images of shape 1x1x2 that name themselves: image `i` is `[i % 256, i / 256]`.
fn numbered(n: usize) -> ImageSet {
    let px = (0..n).flat_map(|i| [(i % 256) as u8, (i / 256) as u8]);
    ImageSet::new(px.collect(), vec![0; n], [1, 1, 2], 1, "numbered").unwrap()
}

/// The image index `numbered` wrote into `img`.
fn index(img: &[u8]) -> usize {
    img[0] as usize + 256 * img[1] as usize
}

/// The `(first, second)` image indices of every pair of `interp_images`.
fn pairs_of(test: &ImageSet, seed: u64) -> Vec<(usize, usize)> {
    let set = interp_images(test, seed).unwrap();
    let second = set.second.as_ref().expect("interp keeps pairs");
    assert_eq!(second.len(), set.first.len());
    (0..set.len())
        .map(|k| (index(set.first.image(k)), index(second.image(k))))
        .collect()
}

#[test]
fn interp_images_are_the_derived_pairs() {
    // 2.5 batches: the last, partial batch pairs with the first half of the second
    let n = 250;
    let test = numbered(n);
    let pairs = pairs_of(&test, 5);
    assert_eq!(pairs, seeded_interp_pairs(n, INTERP_BATCH, 5).unwrap());
    assert_eq!(pairs.len(), n - INTERP_BATCH);
    // the shuffled order, read back from the pairs: the first batch is the partner of the
    // second, every later image the current one of its pair
    let order: Vec<usize> = pairs[..INTERP_BATCH]
        .iter()
        .map(|p| p.1)
        .chain(pairs.iter().map(|p| p.0))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..n).collect::<Vec<_>>(),
        "not a shuffle of the test split"
    );
    assert_eq!(pairs, interp_pairs(&order, INTERP_BATCH).unwrap());
    // seeded: the same seed gives the same set, another seed another shuffle
    assert_eq!(pairs, pairs_of(&test, 5));
    assert_ne!(pairs, pairs_of(&test, 6));
}

#[test]
fn truncation_keeps_the_first_pairs() {
    let test = numbered(250);
    let pairs = pairs_of(&test, 5);
    let cut = interp_images(&test, 5).unwrap().truncate(40);
    assert_eq!(cut.len(), 40);
    let second = cut.second.as_ref().unwrap();
    for (k, &(a, b)) in pairs[..40].iter().enumerate() {
        assert_eq!((index(cut.first.image(k)), index(second.image(k))), (a, b));
    }
}

#[test]
fn interp_of_one_batch_or_less_is_empty() {
    assert!(
        interp_images(&numbered(INTERP_BATCH), 1)
            .unwrap()
            .is_empty()
    );
}
