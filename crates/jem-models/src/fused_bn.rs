//! BatchNorm (+ leaky ReLU) as one CPU operation with f64 accumulation.
//!
//! Composed from candle's elementwise and reduction ops, a train-mode BatchNorm costs about
//! a dozen full passes over the activations forward and more backward (each broadcast's
//! gradient is a strided reduction), and a leaky ReLU three more (compare, scale, select)
//! whose gradient allocates zeros. Here the forward pass is one pass for the per-channel
//! statistics and one for the affine map and the activation; the backward pass is one pass
//! for the two per-channel sums and one for the input gradient:
//!
//! ```text
//! xhat = (x - mean) / sqrt(var + eps)    z = gamma * xhat + beta    y = z > 0 ? z : slope * z
//! dz = dy * (z > 0 ? 1 : slope)          dbeta = sum dz              dgamma = sum dz * xhat
//! batch statistics:  dx = gamma / sqrt(var + eps) * (dz - dbeta / M - xhat * dgamma / M)
//! running statistics (eval):  dx = gamma / sqrt(var + eps) * dz,      M = N * H * W
//! ```
//!
//! Sums are accumulated in f64 as PyTorch's CPU kernels do; `z` is rounded to f32 before
//! the activation, as in PyTorch's two separate kernels.

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

/// `y = act(gamma * (x - mean) * inv_std + beta)` over `(x, gamma, beta)`; `mean` and
/// `inv_std` are the batch's (their gradient included) or the running ones (constants).
struct Normalize {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    /// Leaky ReLU slope, if an activation follows.
    slope: Option<f32>,
    /// Whether `mean` / `inv_std` are functions of `x` (train modes).
    batch_stats: bool,
}

impl Normalize {
    /// The pre-activation `z` (rounded to f32) and the activation's derivative there.
    #[inline]
    fn z(&self, v: f32, a: f64, b: f64) -> f32 {
        (v as f64 * a + b) as f32
    }

    #[inline]
    fn act(&self, z: f32) -> f32 {
        match self.slope {
            Some(s) if z <= 0.0 => z * s,
            _ => z,
        }
    }

    #[inline]
    fn act_grad(&self, z: f32) -> f64 {
        match self.slope {
            Some(s) if z <= 0.0 => s as f64,
            _ => 1.0,
        }
    }
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
                *o = self.act(self.z(v, a, b));
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let hw = h * w;
        let m = (n * hw) as f64;
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let dys: Vec<f32> = dy.flatten_all()?.to_vec1()?;
        let g: Vec<f32> = gamma.to_vec1()?;
        let beta: Vec<f32> = beta.to_vec1()?;
        let affine = |ci: usize| {
            let a = self.inv_std[ci] * g[ci] as f64;
            (a, beta[ci] as f64 - self.mean[ci] * a)
        };
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let (mean, inv) = (self.mean[ci], self.inv_std[ci]);
                let (a, b) = affine(ci);
                let (mut sd, mut sdx) = (0f64, 0f64);
                for bi in 0..n {
                    let o = (bi * c + ci) * hw;
                    for (&d, &v) in dys[o..o + hw].iter().zip(&xs[o..o + hw]) {
                        let dz = d as f64 * self.act_grad(self.z(v, a, b));
                        sd += dz;
                        sdx += dz * (v as f64 - mean) * inv;
                    }
                }
                (sd, sdx)
            })
            .collect();
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
            let ci = plane % c;
            let (mean, inv) = (self.mean[ci], self.inv_std[ci]);
            let (a, b) = affine(ci);
            let (sd, sdx) = if self.batch_stats {
                sums[ci]
            } else {
                (0.0, 0.0)
            };
            let k = g[ci] as f64 * inv;
            let range = plane * hw..(plane + 1) * hw;
            for ((o, &d), &v) in out.iter_mut().zip(&dys[range.clone()]).zip(&xs[range]) {
                let dz = d as f64 * self.act_grad(self.z(v, a, b));
                let xhat = (v as f64 - mean) * inv;
                *o = (k * (dz - sd / m - xhat * sdx / m)) as f32;
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

/// Train-mode BatchNorm (followed by a leaky ReLU of `slope`, if given) of an f32 CPU
/// tensor `[N, C, H, W]`: returns the output and the batch's per-channel mean and biased
/// variance (f32, `[C]` each).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    slope: Option<f64>,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&ChannelStats)?.to_vec2::<f64>()?;
    let inv_std: Vec<f64> = stats[1].iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let op = Normalize {
        mean: stats[0].clone(),
        inv_std,
        slope: slope.map(|s| s as f32),
        batch_stats: true,
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let dev = x.device();
    let to_t = |v: &Vec<f64>| -> candle_core::Result<Tensor> {
        Tensor::from_vec(v.clone(), v.len(), dev)?.to_dtype(DType::F32)
    };
    Ok((y, to_t(&stats[0])?, to_t(&stats[1])?))
}

/// Eval-mode BatchNorm with the running statistics `mean` / `var` (`[C]`), followed by a
/// leaky ReLU of `slope` if given, of an f32 CPU tensor `[N, C, H, W]`.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    (mean, var): (&Tensor, &Tensor),
    eps: f64,
    slope: Option<f64>,
) -> candle_core::Result<Tensor> {
    let mean: Vec<f64> = mean.to_dtype(DType::F64)?.to_vec1()?;
    let var: Vec<f64> = var.to_dtype(DType::F64)?.to_vec1()?;
    let op = Normalize {
        mean,
        inv_std: var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect(),
        slope: slope.map(|s| s as f32),
        batch_stats: false,
    };
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    use crate::layers::{BatchNorm2d, BnMode, leaky_relu};
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

    /// The composed f64 reference: BatchNorm in `mode` (eval: with the layer's running
    /// statistics), then the leaky ReLU.
    fn composed(bn: &BatchNorm2d, x64: &Tensor, mode: BnMode, slope: Option<f64>) -> Tensor {
        let f64t = |v: &Var| v.as_tensor().to_dtype(DType::F64).unwrap();
        let y = if mode == BnMode::Eval {
            let c = x64.dim(1).unwrap();
            let r = |t: Tensor| t.reshape((1, c, 1, 1)).unwrap();
            let inv = r(((f64t(&bn.running_var) + bn.eps).unwrap().sqrt().unwrap())
                .recip()
                .unwrap());
            x64.broadcast_sub(&r(f64t(&bn.running_mean)))
                .unwrap()
                .broadcast_mul(&inv)
                .unwrap()
                .broadcast_mul(&r(f64t(&bn.weight)))
                .unwrap()
                .broadcast_add(&r(f64t(&bn.bias)))
                .unwrap()
        } else {
            bn.forward(x64, mode).unwrap()
        };
        match slope {
            Some(s) => leaky_relu(&y, s).unwrap(),
            None => y,
        }
    }

    /// The fused f32 kernel against the composed f64 operations (the path other devices
    /// take): output and the gradients of input, scale and shift, in the batch-statistics
    /// and running-statistics modes, with and without the leaky ReLU, on odd sizes and
    /// batch 1.
    #[test]
    fn fused_kernel_matches_the_composed_operations() {
        let shapes = [(3, 5, 4, 7), (1, 2, 3, 3), (8, 4, 1, 1)];
        let variants = [
            (BnMode::TrainFrozen, None),
            (BnMode::TrainFrozen, Some(0.2)),
            (BnMode::Eval, None),
            (BnMode::Eval, Some(0.2)),
        ];
        for &(n, c, h, w) in &shapes {
            for &(mode, slope) in &variants {
                let id = format!("{n}x{c}x{h}x{w} {mode:?} {slope:?}");
                let dev = Device::Cpu;
                let mut store = ParamStore::new(&dev);
                let bn = BatchNorm2d::new(&mut store, "bn", c, 1e-5, 0.9).unwrap();
                let set = |v: &Var, vals: Vec<f32>| {
                    v.set(&Tensor::from_vec(vals, c, &dev).unwrap()).unwrap()
                };
                set(&bn.weight, values(c, 1.0));
                set(&bn.bias, values(c, 2.0));
                set(&bn.running_mean, values(c, 4.0));
                set(
                    &bn.running_var,
                    values(c, 5.0).iter().map(|v| v.abs() + 0.5).collect(),
                );
                let x = Var::from_vec(values(n * c * h * w, 0.5), (n, c, h, w), &dev).unwrap();
                let x64 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
                let up = Tensor::from_vec(values(n * c * h * w, 3.0), (n, c, h, w), &dev).unwrap();
                let fused = bn.forward_act(x.as_tensor(), mode, slope).unwrap();
                let reference = composed(&bn, x64.as_tensor(), mode, slope);
                assert!(max_rel(&fused, &reference) < 1e-6, "{id}: output");
                let g1 = (&fused * &up)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let up64 = up.to_dtype(DType::F64).unwrap();
                let g2 = (&reference * &up64)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let gx = (
                    g1.get(x.as_tensor()).unwrap(),
                    g2.get(x64.as_tensor()).unwrap(),
                );
                assert!(max_rel(gx.0, gx.1) < 1e-5, "{id}: input gradient");
                for p in [&bn.weight, &bn.bias] {
                    let a = g1.get(p.as_tensor()).unwrap();
                    let b = g2.get(p.as_tensor()).unwrap();
                    assert!(max_rel(a, b) < 1e-5, "{id}: parameter gradient");
                }
            }
        }
    }
}
