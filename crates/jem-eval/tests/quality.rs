//! The sources of FID / IS: the reference's replay-buffer protocol stays the default; fresh
//! chains are `generate`'s unconditional chains (the reference's eval sampler) on a tiny
//! untrained WRN-10-1 (1 channel, 32x32, 3 classes). The end-to-end run through a checkpoint
//! and the Inception network is in the workspace's `tests/eval_cli.rs`.

use candle_core::{Device, Tensor};
use jem_eval::generate::{ChainInit, GenerateOptions};
use jem_eval::quality::*;

mod common;
use common::{gaussians, model, sampler};

fn values(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

const CHAINS: SampleSource = SampleSource::Chains {
    chains: 1000,
    steps: 1000,
    seed: 1,
};

#[test]
fn the_default_is_the_references_buffer_protocol() {
    let d = QualityOptions::default();
    assert_eq!(d.source, SampleSource::Buffer);
    assert_eq!((d.fid_ratio, d.is_ratio), (0.9, 0.1));
    assert_eq!(QualityOptions::with_source(SampleSource::Buffer), d);
    assert_eq!(d.result_file(), "quality.json");
    let fid = QualityOptions {
        is: false,
        ..d.clone()
    };
    let is = QualityOptions {
        fid: false,
        ..d.clone()
    };
    assert_eq!(
        (fid.result_file(), is.result_file()),
        ("fid.json".into(), "is.json".into())
    );
    assert_eq!(
        protocol(&SampleSource::Buffer, 10000, None, Some(0.9), None),
        "replay buffer (10000 images), top 90 % per predicted class by confidence, as the reference"
    );
    assert_eq!(
        protocol(&SampleSource::Buffer, 100, None, Some(0.9), Some(0.1)),
        "replay buffer (100 images), FID: top 90 % per predicted class by confidence, IS: top \
         10 % per predicted class by confidence, as the reference"
    );
    // another ratio is not the reference's protocol, and says so by not claiming it
    assert_eq!(
        protocol(&SampleSource::Buffer, 100, None, None, Some(0.07)),
        "replay buffer (100 images), top 7 % per predicted class by confidence"
    );
    // results written before the source existed read as the buffer
    let mut old = serde_json::to_value(&d).unwrap();
    old.as_object_mut().unwrap().remove("source");
    let back: QualityOptions = serde_json::from_value(old).unwrap();
    assert_eq!(back, d);
}

#[test]
fn chains_keep_everything_by_default_and_have_their_own_files() {
    let c = QualityOptions::with_source(CHAINS);
    assert_eq!((c.fid_ratio, c.is_ratio), (1.0, 1.0));
    let fid = QualityOptions {
        is: false,
        ..c.clone()
    };
    let is = QualityOptions {
        fid: false,
        ..c.clone()
    };
    assert_eq!(fid.result_file(), "fid-chains.json");
    assert_eq!(is.result_file(), "is-chains.json");
    assert_eq!(c.result_file(), "quality-chains.json");
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["source"]["kind"], "chains");
    assert_eq!(json["source"]["chains"], 1000);
    let back: QualityOptions = serde_json::from_value(json).unwrap();
    assert_eq!(back, c);
    assert_eq!(
        serde_json::to_value(SampleSource::Buffer).unwrap()["kind"],
        "buffer"
    );

    assert_eq!(
        protocol(&CHAINS, 1000, Some(ChainInit::Informative), Some(1.0), None),
        "1000 fresh chains from the informative init, 1000 steps of the reference's eval \
         sampler (step size 1, no noise), seed 1, all kept"
    );
    let uniform = protocol(&CHAINS, 1000, Some(ChainInit::Uniform), None, Some(0.5));
    assert!(
        uniform.contains("from the uniform init (the run has no per-class Gaussians)")
            && uniform.ends_with("top 50 % per predicted class by confidence"),
        "{uniform}"
    );
}

#[test]
fn bad_options_are_errors_that_name_the_field() {
    for (source, field) in [
        (
            SampleSource::Chains {
                chains: 0,
                steps: 5,
                seed: 1,
            },
            "chains",
        ),
        (
            SampleSource::Chains {
                chains: 5,
                steps: 0,
                seed: 1,
            },
            "steps",
        ),
    ] {
        let e = QualityOptions::with_source(source)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{field} must be > 0")), "{e}");
    }
    for (fid_ratio, is_ratio, field) in [(0.0, 0.1, "fid_ratio"), (0.9, 1.5, "is_ratio")] {
        let o = QualityOptions {
            fid_ratio,
            is_ratio,
            ..QualityOptions::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    // a ratio of a metric not asked for is not checked
    let o = QualityOptions {
        fid: false,
        fid_ratio: 0.0,
        ..QualityOptions::default()
    };
    assert!(o.validate().is_ok());
    let (m, dev) = (model(), Device::Cpu);
    let e = fresh_chains(&sampler(&m, None, &dev), 0, 3, 1, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("chains must be > 0"), "{e}");
}

#[test]
fn fresh_chains_are_generates_chains_from_the_informative_init_or_uniform() {
    let (m, g, dev) = (model(), gaussians(), Device::Cpu);
    let informed = sampler(&m, Some(&g), &dev);
    let (x, init) = fresh_chains(&informed, 5, 2, 9, false).unwrap();
    assert_eq!(init, ChainInit::Informative);
    assert_eq!(x.dims(), [5, 1, 32, 32]);
    assert!(values(&x).iter().all(|v| (-1.0..=1.0).contains(v)));
    // the reference's eval sampler: exactly `generate`'s unconditional chains
    let opts = GenerateOptions {
        n_chains: 5,
        n_steps: 2,
        seed: 9,
        ..GenerateOptions::default()
    };
    let generated = informed.unconditional(&opts).unwrap();
    assert_eq!(values(&x), values(&generated.samples));
    // deterministic by seed, and the seed matters
    assert_eq!(
        values(&fresh_chains(&informed, 5, 2, 9, false).unwrap().0),
        values(&x)
    );
    assert_ne!(
        values(&fresh_chains(&informed, 5, 2, 10, false).unwrap().0),
        values(&x)
    );
    // a uniform-init run: uniform chains, not an error
    let (u, init) = fresh_chains(&sampler(&m, None, &dev), 3, 1, 9, false).unwrap();
    assert_eq!((init, u.dims()), (ChainInit::Uniform, &[3, 1, 32, 32][..]));
}
