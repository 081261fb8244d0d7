//! Update rules against hand-computed values, chains on an analytic model, the buffer.

use candle_core::{D, DType, Device, Tensor};
use jem_data::rng::rng_for;
use jem_data::{ClassGaussians, ImageSet, Transform};
use jem_models::BnMode;
use jem_models::jem::Classifier;
use jem_sampler::{InitKind, ReplayBuffer, Sgld, SgldRule};

fn t(v: &[f32]) -> Tensor {
    Tensor::from_slice(v, (1, 1, 2, 2), &Device::Cpu).unwrap()
}

fn vals(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1().unwrap()
}

fn close(a: &[f32], b: &[f32]) {
    assert!(
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6),
        "{a:?} vs {b:?}"
    );
}

#[test]
fn rules_by_hand() {
    let x = t(&[0.5, -0.9, 0.2, 0.95]);
    let g = t(&[0.3, -2.0, 5.0, 0.5]);
    let mut rng = rng_for(&[1]);
    let cases = [
        (SgldRule::REFERENCE, [0.8, -1.0, 1.0, 1.0]),
        (
            SgldRule::Clipped {
                step: 1.0,
                clip: 0.5,
                noise: 0.0,
            },
            [0.8, -1.0, 0.7, 1.0],
        ),
        (
            SgldRule::Langevin {
                step: 1.0,
                noise: 0.0,
            },
            [0.8, -2.9, 5.2, 1.45],
        ),
        (
            SgldRule::Unclipped {
                step: 0.1,
                noise: 0.0,
            },
            [0.53, -1.0, 0.7, 1.0],
        ),
    ];
    for (rule, want) in cases {
        close(&vals(&rule.apply(&x, &g, &mut rng).unwrap()), &want);
    }
    assert!(
        SgldRule::Clipped {
            step: 1.0,
            clip: 0.0,
            noise: 0.0
        }
        .validate()
        .is_err()
    );
}

#[test]
fn noise_is_seeded_with_the_asked_spread() {
    let x = Tensor::zeros((64, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let g = x.zeros_like().unwrap();
    let rule = SgldRule::JEM;
    let a = rule.apply(&x, &g, &mut rng_for(&[5])).unwrap();
    let b = rule.apply(&x, &g, &mut rng_for(&[5])).unwrap();
    assert_eq!(vals(&a), vals(&b));
    let v = vals(&a);
    let sd = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!((sd - 0.01).abs() < 0.0005, "{sd}");
}

/// f(x) = W flatten(x): the gradient of LSE is W^T softmax(W x).
struct Linear {
    w: Tensor,
}

impl Classifier for Linear {
    fn logits(&self, x: &Tensor, _mode: BnMode) -> jem_models::Result<Tensor> {
        Ok(x.flatten_from(1)?.matmul(&self.w.t()?)?)
    }
}

#[test]
fn chains_ascend_the_log_density_of_an_analytic_model() {
    let w = Tensor::from_slice(
        &[1.0f32, 0.0, -1.0, 0.5, 0.0, 2.0, 1.0, -0.5],
        (2, 4),
        &Device::Cpu,
    )
    .unwrap();
    let model = Linear { w: w.clone() };
    let x0 = t(&[0.1, 0.2, -0.3, 0.4]);
    // by hand: logits = W x = [0.1 + 0.3 + 0.2, 0.4 - 0.3 - 0.2] = [0.6, -0.1]
    let p0 = 1.0 / (1.0 + (-0.7f64).exp());
    let p = [p0, 1.0 - p0];
    let wv = [[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 1.0, -0.5]];
    let g: Vec<f64> = (0..4).map(|j| p[0] * wv[0][j] + p[1] * wv[1][j]).collect();
    let sgld = Sgld {
        rule: SgldRule::Unclipped {
            step: 0.1,
            noise: 0.0,
        },
        steps: 1,
        bn_mode: BnMode::Eval,
    };
    let x1 = sgld.run(&model, &x0, None, &mut rng_for(&[0])).unwrap();
    let want: Vec<f32> = [0.1, 0.2, -0.3, 0.4]
        .iter()
        .zip(&g)
        .map(|(x, g)| (x + 0.1 * g) as f32)
        .collect();
    close(&vals(&x1), &want);
    // class-conditional: the gradient of f(x)[1] is W[1]
    let y = Tensor::from_slice(&[1u32], 1, &Device::Cpu).unwrap();
    let x1 = sgld.run(&model, &x0, Some(&y), &mut rng_for(&[0])).unwrap();
    let want: Vec<f32> = [0.1, 0.2, -0.3, 0.4]
        .iter()
        .zip(&wv[1])
        .map(|(x, w)| (x + 0.1 * w) as f32)
        .collect();
    close(&vals(&x1), &want);
    // more steps raise the log-density
    let lse = |x: &Tensor| {
        model
            .logits(x, BnMode::Eval)
            .unwrap()
            .log_sum_exp(D::Minus1)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let long = Sgld { steps: 20, ..sgld };
    assert!(lse(&long.run(&model, &x0, None, &mut rng_for(&[0])).unwrap()) > lse(&x0) + 0.5);
}

#[test]
fn buffer_reinitializes_the_asked_fraction_and_stores() {
    let zeros = Tensor::zeros((500, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let mut buf = ReplayBuffer::from_tensor(zeros, InitKind::Uniform, 0.05).unwrap();
    let mut rng = rng_for(&[3]);
    let mut fresh = 0;
    for _ in 0..20 {
        let (idx, x) = buf.sample(100, None, &mut rng).unwrap();
        assert_eq!(idx.len(), 100);
        let rows = x.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        fresh += rows.iter().filter(|r| r.iter().any(|v| *v != 0.0)).count();
    }
    // 2000 draws at 5 %: 100 expected, binomial sd 9.7
    assert!((65..=135).contains(&fresh), "{fresh}");
    // store writes rows; a slot given twice keeps the later value
    let x = Tensor::from_slice(
        &[1f32, 1., 1., 1., 2., 2., 2., 2., 3., 3., 3., 3.],
        (3, 1, 2, 2),
        &Device::Cpu,
    )
    .unwrap();
    buf.store(&[7, 9, 7], &x).unwrap();
    let data = buf
        .data()
        .flatten_from(1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(data[7], vec![3.0; 4]);
    assert_eq!(data[9], vec![2.0; 4]);
    assert!(buf.store(&[500], &x.narrow(0, 0, 1).unwrap()).is_err());
    // save and load
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("buffer.safetensors");
    buf.save(&p).unwrap();
    let back = ReplayBuffer::load(&p, InitKind::Uniform, 0.05, &Device::Cpu).unwrap();
    assert_eq!(
        back.data().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        buf.data().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    std::fs::write(&p, b"junk").unwrap();
    assert!(
        ReplayBuffer::load(&p, InitKind::Uniform, 0.05, &Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("buffer.safetensors")
    );
}

fn two_class_gaussians() -> ClassGaussians {
    // class 0 images are dark (around 40), class 1 bright (around 215)
    let mut rng = rng_for(&[11]);
    let n = 200;
    let mut images = Vec::new();
    for i in 0..n {
        let base = if i % 2 == 0 { 40 } else { 215 };
        images.extend(
            (0..4).map(|_| (base + rand::Rng::random_range(&mut rng, 0..20u32) - 10) as u8),
        );
    }
    let set = ImageSet::new(
        images,
        (0..n as u32).map(|i| i % 2).collect(),
        [1, 2, 2],
        2,
        "toy",
    )
    .unwrap();
    ClassGaussians::compute(&set, &Transform::default(), 1e-4).unwrap()
}

#[test]
fn informative_buffer_follows_the_class_gaussians() {
    let g = two_class_gaussians();
    let mut rng = rng_for(&[2]);
    let buf = ReplayBuffer::new(
        400,
        [1, 2, 2],
        InitKind::Informative,
        Some(&g),
        0.05,
        &mut rng,
        &Device::Cpu,
    )
    .unwrap();
    let rows = buf
        .data()
        .flatten_from(1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    // first half class 0, second half class 1, as the reference's init_from_centers
    let mean = |r: &[Vec<f32>]| r.iter().flatten().sum::<f32>() / (r.len() * 4) as f32;
    let (m0, m1) = (mean(&rows[..200]), mean(&rows[200..]));
    assert!(
        (m0 - g.means[0]).abs() < 0.02 && (m1 - g.means[4]).abs() < 0.02,
        "{m0} {m1} vs {:?}",
        g.means
    );
    assert!(rows.iter().flatten().all(|v| (-1.0..=1.0).contains(v)));
    // conditional draws restart from their own class
    let zeros = Tensor::zeros((400, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let all_fresh = ReplayBuffer::from_tensor(zeros, InitKind::Informative, 1.0).unwrap();
    let (idx, x) = all_fresh
        .sample_conditional(&[1, 1, 0], 2, Some(&g), &mut rng)
        .unwrap();
    assert!(idx[0] >= 200 && idx[1] >= 200 && idx[2] < 200);
    let r = x.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
    assert!(
        r[0].iter().all(|v| *v > 0.3) && r[2].iter().all(|v| *v < -0.3),
        "{r:?}"
    );
    assert!(
        ReplayBuffer::new(
            401,
            [1, 2, 2],
            InitKind::Informative,
            Some(&g),
            0.05,
            &mut rng,
            &Device::Cpu
        )
        .is_err()
    );
    assert!(
        ReplayBuffer::new(
            400,
            [1, 2, 2],
            InitKind::Informative,
            None,
            0.05,
            &mut rng,
            &Device::Cpu
        )
        .is_err()
    );
}

#[test]
fn reference_sampler_on_a_wide_resnet_from_the_data_gaussians() {
    use jem_data::{DatasetName, LoadOptions};
    use jem_models::{WideResNet, WrnConfig, jem};
    // informative init from the embedded MNIST digits, padded to 32x32 as the presets do
    let set = DatasetName::MnistQuick
        .load("test", std::path::Path::new(""), &LoadOptions::default())
        .unwrap();
    let pad = Transform {
        pad_to: Some([32, 32]),
        ..Transform::default()
    };
    let g = ClassGaussians::compute(&set, &pad, ClassGaussians::DEFAULT_JITTER).unwrap();
    let mut rng = rng_for(&[4]);
    let buf = ReplayBuffer::new(
        20,
        [1, 32, 32],
        InitKind::Informative,
        Some(&g),
        0.05,
        &mut rng,
        &Device::Cpu,
    )
    .unwrap();
    let (idx, x0) = buf.sample(8, Some(&g), &mut rng).unwrap();
    assert_eq!((idx.len(), x0.dims()), (8, &[8usize, 1, 32, 32][..]));
    let mut cfg = WrnConfig::reference(10, 1, 10);
    cfg.in_channels = 1;
    let model = WideResNet::new(cfg, 1, &Device::Cpu).unwrap();
    let before = model
        .store
        .get("f.bn1.running_mean")
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // the sampler climbs the batch-statistics log-density; measure it without touching the
    // running statistics
    let lse = |x: &Tensor| {
        jem::log_density(&model.logits(x, BnMode::TrainFrozen).unwrap())
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let start = lse(&x0);
    let x = Sgld::reference(5).run(&model, &x0, None, &mut rng).unwrap();
    assert!(vals(&x).iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(
        lse(&x) > start,
        "the chains climb the log-density: {start} -> {}",
        lse(&x)
    );
    // train-mode BN while sampling updates the running statistics, as the reference
    assert_ne!(
        model
            .store
            .get("f.bn1.running_mean")
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        before
    );
}
