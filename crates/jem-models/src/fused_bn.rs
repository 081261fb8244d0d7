//! Train-mode BatchNorm as one CPU operation with f64 accumulation.
//!
//! Composed from candle's elementwise and reduction ops, a train-mode BatchNorm costs about
//! a dozen full passes over the activations forward and more backward (each broadcast's
//! gradient is a strided reduction). Here the forward pass is one pass for the per-channel
//! statistics and one for the affine map; the backward pass is one pass for the two
//! per-channel sums and one for the input gradient:
//!
//! ```text
//! xhat = (x - mean) / sqrt(var + eps)       y = gamma * xhat + beta
//! dbeta = sum dy    dgamma = sum dy * xhat
//! dx = gamma / sqrt(var + eps) * (dy - dbeta / M - xhat * dgamma / M),  M = N * H * W
//! ```
//!
//! Sums are accumulated in f64 as PyTorch's CPU kernels do.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::conv::cpu_f32;

/// Per-channel mean and biased variance of `[N, C, H, W]`, as a `[2, C]` f64 tensor.
struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "bn-channel-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, "bn-channel-stats")?;
        let (n, c, h, w) = l.shape().dims4()?;
        let hw = h * w;
        let m = (n * hw) as f64;
        let stats: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let mut sum = 0f64;
                for b in 0..n {
                    let o = (b * c + ci) * hw;
                    sum += x[o..o + hw].iter().map(|&v| v as f64).sum::<f64>();
                }
                let mean = sum / m;
                let mut sq = 0f64;
                for b in 0..n {
                    let o = (b * c + ci) * hw;
                    sq += x[o..o + hw]
                        .iter()
                        .map(|&v| {
                            let d = v as f64 - mean;
                            d * d
                        })
                        .sum::<f64>();
                }
                (mean, sq / m)
            })
            .collect();
        let mut out: Vec<f64> = stats.iter().map(|s| s.0).collect();
        out.extend(stats.iter().map(|s| s.1));
        Ok((CpuStorage::F64(out), Shape::from((2, c))))
    }
}

/// `y = gamma * (x - mean) * inv_std + beta` over `(x, gamma, beta)` with fixed statistics.
struct Normalize {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
}

impl CustomOp3 for Normalize {
    fn name(&self) -> &'static str {
        "bn-normalize"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s1, l1, "bn-normalize")?;
        let gamma = cpu_f32(s2, l2, "bn-normalize")?;
        let beta = cpu_f32(s3, l3, "bn-normalize")?;
        let (_, c, h, w) = l1.shape().dims4()?;
        let hw = h * w;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
            let ci = plane % c;
            let a = self.inv_std[ci] * gamma[ci] as f64;
            let b = beta[ci] as f64 - self.mean[ci] * a;
            for (o, &v) in out.iter_mut().zip(&x[plane * hw..(plane + 1) * hw]) {
                *o = (v as f64 * a + b) as f32;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let hw = h * w;
        let m = (n * hw) as f64;
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let dys: Vec<f32> = dy.flatten_all()?.to_vec1()?;
        let g: Vec<f32> = gamma.to_vec1()?;
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let (mean, inv) = (self.mean[ci], self.inv_std[ci]);
                let (mut sd, mut sdx) = (0f64, 0f64);
                for b in 0..n {
                    let o = (b * c + ci) * hw;
                    for (&d, &v) in dys[o..o + hw].iter().zip(&xs[o..o + hw]) {
                        sd += d as f64;
                        sdx += d as f64 * (v as f64 - mean) * inv;
                    }
                }
                (sd, sdx)
            })
            .collect();
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
            let ci = plane % c;
            let (mean, inv) = (self.mean[ci], self.inv_std[ci]);
            let (sd, sdx) = sums[ci];
            let k = g[ci] as f64 * inv;
            let range = plane * hw..(plane + 1) * hw;
            for ((o, &d), &v) in out.iter_mut().zip(&dys[range.clone()]).zip(&xs[range]) {
                let xhat = (v as f64 - mean) * inv;
                *o = (k * (d as f64 - sd / m - xhat * sdx / m)) as f32;
            }
        });
        let dev = x.device();
        let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// Train-mode BatchNorm of a contiguous f32 CPU tensor `[N, C, H, W]`: returns the output
/// and the batch's per-channel mean and biased variance (f32, `[C]` each).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&ChannelStats)?.to_vec2::<f64>()?;
    let inv_std: Vec<f64> = stats[1].iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let op = Normalize {
        mean: stats[0].clone(),
        inv_std,
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let dev = x.device();
    let to_t = |v: &Vec<f64>| -> candle_core::Result<Tensor> {
        Tensor::from_vec(v.clone(), v.len(), dev)?.to_dtype(DType::F32)
    };
    Ok((y, to_t(&stats[0])?, to_t(&stats[1])?))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use crate::layers::{BatchNorm2d, BnMode};
    use crate::params::ParamStore;

    fn values(n: usize, seed: f64) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f64 * 0.613 + seed).sin() * 1.7 + 0.3) as f32)
            .collect()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.to_dtype(candle_core::DType::F64).unwrap();
        let b = b.to_dtype(candle_core::DType::F64).unwrap();
        let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap();
        let m = b.abs().unwrap().max_all().unwrap();
        d.to_scalar::<f64>().unwrap() / m.to_scalar::<f64>().unwrap().max(1e-12)
    }

    /// The fused f32 kernel against the composed f64 operations (the path other devices
    /// take): output and the gradients of input, scale and shift, on odd sizes and batch 1.
    #[test]
    fn fused_kernel_matches_the_composed_operations() {
        for &(n, c, h, w) in &[(3, 5, 4, 7), (1, 2, 3, 3), (8, 4, 1, 1)] {
            let dev = Device::Cpu;
            let mut store = ParamStore::new(&dev);
            let bn = BatchNorm2d::new(&mut store, "bn", c, 1e-5, 0.9).unwrap();
            bn.weight
                .set(&Tensor::from_vec(values(c, 1.0), c, &dev).unwrap())
                .unwrap();
            bn.bias
                .set(&Tensor::from_vec(values(c, 2.0), c, &dev).unwrap())
                .unwrap();
            let x = Var::from_vec(values(n * c * h * w, 0.5), (n, c, h, w), &dev).unwrap();
            let x64 = Var::from_tensor(&x.as_tensor().to_dtype(candle_core::DType::F64).unwrap())
                .unwrap();
            let up = Tensor::from_vec(values(n * c * h * w, 3.0), (n, c, h, w), &dev).unwrap();
            let fused = bn.forward(x.as_tensor(), BnMode::TrainFrozen).unwrap();
            let composed = bn.forward(x64.as_tensor(), BnMode::TrainFrozen).unwrap();
            assert!(max_rel(&fused, &composed) < 1e-6, "{n}x{c}x{h}x{w} output");
            let g1 = (&fused * &up)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let up64 = up.to_dtype(candle_core::DType::F64).unwrap();
            let g2 = (&composed * &up64)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gx = (
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x64.as_tensor()).unwrap(),
            );
            assert!(max_rel(gx.0, gx.1) < 1e-5, "{n}x{c}x{h}x{w} input gradient");
            for p in [&bn.weight, &bn.bias] {
                let (a, b) = (
                    g1.get(p.as_tensor()).unwrap(),
                    g2.get(p.as_tensor()).unwrap(),
                );
                assert!(max_rel(a, b) < 1e-5, "{n}x{c}x{h}x{w} parameter gradient");
            }
        }
    }
}
