//! One target per parser: its seeds (valid files, small) and how to feed it bytes. Parsers
//! that take a path get a file in the scratch folder, so the real entry point is exercised.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use candle_core::{Device, Tensor};
use jem_data::{ImageSet, cifar, idx, matv5, svhn};

/// A fuzz target.
pub struct Target {
    /// Its name on the command line.
    pub name: &'static str,
    /// Valid inputs to mutate.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Parses one input: true when it was accepted (errors are expected; panics and
    /// unbounded memory are findings).
    pub run: fn(&[u8], &Path) -> bool,
}

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../jem-metrics/tests/golden");

fn ok<T, E>(r: Result<T, E>) -> bool {
    r.is_ok()
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("scratch folder is writable");
    p
}

fn toy_set(n: usize, shape: [usize; 3]) -> ImageSet {
    let len = n * shape.iter().product::<usize>();
    let px = (0..len).map(|i| (i * 37 % 256) as u8).collect();
    ImageSet::new(px, (0..n as u32).collect(), shape, 10, "seed").expect("a valid toy set")
}

fn idx_seeds() -> Vec<Vec<u8>> {
    let data: Vec<u8> = (0..48).collect();
    let labels: Vec<u8> = (0..3).collect();
    [false, true]
        .iter()
        .flat_map(|&gz| {
            [
                idx::encode_idx(&[3, 4, 4], &data, gz).unwrap(),
                idx::encode_idx(&[3], &labels, gz).unwrap(),
            ]
        })
        .collect()
}

fn mat_seeds() -> Vec<Vec<u8>> {
    let x: Vec<u8> = (0..24).collect();
    let y = [10.0, 1.0, 3.0];
    [false, true]
        .iter()
        .map(|&c| {
            matv5::encode_mat(
                &[
                    ("X", 9, &[2, 3, 4], matv5::MatData::U8(&x)),
                    ("y", 6, &[3, 1], matv5::MatData::F64(&y)),
                ],
                c,
            )
        })
        .collect()
}

fn svhn_seeds() -> Vec<Vec<u8>> {
    let set = toy_set(1, [3, 32, 32]);
    [false, true]
        .iter()
        .map(|&c| svhn::encode_svhn(&set, c).unwrap())
        .collect()
}

fn jpeg_seeds() -> Vec<Vec<u8>> {
    let img = image::RgbImage::from_fn(20, 24, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 7) as u8, 80])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    vec![out]
}

fn npy_seeds() -> Vec<Vec<u8>> {
    use jem_metrics::npy::npy_bytes;
    vec![
        npy_bytes(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        npy_bytes(&[4], &[1.0f64, -2.0, 0.5, 8.0]).unwrap(),
    ]
}

fn stats_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let stats = jem_metrics::GaussianStats {
        mu: vec![0.5, -1.0],
        sigma: vec![2.0, 0.1, 0.1, 1.0],
        n: 10,
    };
    let p = dir.path().join("s.safetensors");
    jem_metrics::stats_io::save_stats(&p, &stats, &[]).unwrap();
    let mut npz = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    for (name, shape, v) in [
        ("mu", vec![2], &stats.mu),
        ("sigma", vec![2, 2], &stats.sigma),
    ] {
        npz.start_file(format!("{name}.npy"), o).unwrap();
        npz.write_all(&jem_metrics::npy::npy_bytes(&shape, v).unwrap())
            .unwrap();
    }
    vec![
        std::fs::read(&p).unwrap(),
        npz.finish().unwrap().into_inner(),
    ]
}

fn torch_seeds() -> Vec<Vec<u8>> {
    [
        "inception/state_legacy.pth",
        "inception/state_zip.pth",
        "fid_helper/scripted_small.pt",
    ]
    .iter()
    .map(|f| std::fs::read(Path::new(GOLDEN).join(f)).expect("golden torch files"))
    .collect()
}

fn checkpoint_seeds() -> Vec<Vec<u8>> {
    let dev = Device::Cpu;
    let t = |v: &[f32], s: &[usize]| Tensor::from_slice(v, s, &dev).unwrap();
    let mut optim = jem_optim::OptimState::new("sgd");
    optim.tensors.insert(
        "momentum_buffer.w".into(),
        t(&[0.1, 0.2, 0.3, 0.4], &[2, 2]),
    );
    optim.scalars.insert("step".into(), 3.0);
    let ck = jem_train::Checkpoint {
        config: jem_train::TrainConfig::default().to_toml().unwrap(),
        progress: jem_train::Progress::start(),
        model: BTreeMap::from([("w".to_string(), t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]))]),
        optim,
        replay_buffer: Some(t(&[0.5; 8], &[2, 1, 2, 2])),
        model_only: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.safetensors");
    ck.save(&p).unwrap();
    let full = std::fs::read(&p).unwrap();
    ck.model_only().save(&p).unwrap();
    vec![full, std::fs::read(&p).unwrap()]
}

fn config_seeds() -> Vec<Vec<u8>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
    // (presets that `extends` another need their folder; these two stand alone)
    ["fashion-mnist/sadajem-wrn10-2.toml", "cifar10/sadajem.toml"]
        .iter()
        .map(|f| std::fs::read(Path::new(root).join(f)).expect("preset configs"))
        .chain([jem_train::TrainConfig::default()
            .to_toml()
            .unwrap()
            .into_bytes()])
        .collect()
}

/// Every target, in a fixed order.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "idx",
            seeds: idx_seeds,
            run: |b, _| ok(idx::parse_idx(b, Path::new("x.idx"))),
        },
        Target {
            name: "cifar",
            seeds: || vec![cifar::encode_cifar10(&toy_set(2, [3, 32, 32])).unwrap()],
            run: |b, d| ok(cifar::read_cifar10_file(&file(d, "data_batch_1.bin", b))),
        },
        Target {
            name: "mat",
            seeds: mat_seeds,
            run: |b, _| ok(matv5::parse_mat(b)),
        },
        Target {
            name: "svhn",
            seeds: svhn_seeds,
            run: |b, d| ok(svhn::read_svhn_file(&file(d, "train_32x32.mat", b))),
        },
        Target {
            name: "celeba-list",
            seeds: || vec![b"000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n".to_vec()],
            run: |b, d| ok(jem_data::celeba::read_partition(&file(d, "list.txt", b))),
        },
        Target {
            name: "jpeg",
            seeds: jpeg_seeds,
            run: |b, d| {
                let p = file(d, "000001.jpg", b);
                ok(jem_data::celeba::prepare_image(&p, Default::default()))
            },
        },
        Target {
            name: "npy",
            seeds: npy_seeds,
            run: |b, _| ok(jem_metrics::npy::parse_npy(b)),
        },
        Target {
            name: "fid-stats",
            seeds: stats_seeds,
            run: |b, d| ok(jem_metrics::stats_io::load_stats(&file(d, "stats", b))),
        },
        Target {
            name: "torch-weights",
            seeds: torch_seeds,
            run: |b, d| ok(jem_metrics::inception::load_state_dict(file(d, "w.pth", b))),
        },
        Target {
            name: "torch-checkpoint",
            seeds: || {
                let p = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../jem-models/tests/golden/reference_ckpt.pt"
                );
                vec![std::fs::read(p).expect("the reference checkpoint fixture")]
            },
            run: |b, d| {
                ok(jem_models::torch_import::read_torch_checkpoint(&file(
                    d, "c.pt", b,
                )))
            },
        },
        Target {
            name: "checkpoint",
            seeds: checkpoint_seeds,
            run: |b, d| {
                ok(jem_train::Checkpoint::load(
                    &file(d, "c.safetensors", b),
                    &Device::Cpu,
                ))
            },
        },
        Target {
            name: "config",
            seeds: config_seeds,
            run: |b, _| {
                ok(jem_train::TrainConfig::from_toml(
                    &String::from_utf8_lossy(b),
                    "fuzz.toml",
                ))
            },
        },
    ]
}
