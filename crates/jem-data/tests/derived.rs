//! CIFAR10-interp against golden values computed by the reference's own loop
//! (`tests/fixtures/make_interp_golden.py`, numpy; the fixture is committed).

use std::path::Path;

use jem_data::ImageSet;
use jem_data::derived::{interp_pairs, interpolated};
use serde::Deserialize;

/// `tests/fixtures/interp_golden.json`.
#[derive(Deserialize)]
struct Golden {
    shape: [usize; 3],
    batch: usize,
    images_u8: Vec<Vec<u8>>,
    order: Vec<usize>,
    expected: Vec<Vec<f64>>,
}

fn golden() -> Golden {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interp_golden.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn interp_matches_the_reference_loop() {
    let g = golden();
    let n = g.images_u8.len();
    assert_eq!((n, g.batch, g.expected.len()), (40, 10, 30));
    let set = ImageSet::new(g.images_u8.concat(), vec![0; n], g.shape, 1, "golden").unwrap();
    let pairs = interp_pairs(&g.order, g.batch).unwrap();
    assert_eq!(pairs.len(), g.expected.len());
    let out = interpolated(&set, &pairs).unwrap();
    assert_eq!(out.len(), g.expected.len());
    assert_eq!(out.shape, g.shape);
    for (k, want) in g.expected.iter().enumerate() {
        assert_eq!(want.len(), 6);
        for (i, (&got, &want)) in out.image(k).iter().zip(want).enumerate() {
            assert!(
                (got as f64 - want).abs() < 1e-6,
                "image {k} value {i}: got {got}, reference {want}"
            );
        }
    }
}
