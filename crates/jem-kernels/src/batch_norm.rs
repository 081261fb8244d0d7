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

use crate::conv::{cpu_f32, with_f32};
use crate::simd;

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
                let planes = || (0..n).map(|b| &x[(b * c + ci) * hw..(b * c + ci + 1) * hw]);
                let mean = planes().map(simd::sum).sum::<f64>() / m;
                let sq: f64 = planes().map(|p| simd::sum_sq_dev(p, mean)).sum();
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
    /// Leaky ReLU slope (1 when no activation follows).
    slope: f32,
    /// Whether `mean` / `inv_std` are functions of `x` (train modes).
    batch_stats: bool,
}

impl Normalize {
    /// The affine map `z = a * x + b` of channel `ci`.
    fn affine(&self, ci: usize, gamma: &[f32], beta: &[f32]) -> (f64, f64) {
        let a = self.inv_std[ci] * gamma[ci] as f64;
        (a, beta[ci] as f64 - self.mean[ci] * a)
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
        let mut y = Vec::with_capacity(x.len());
        y.spare_capacity_mut()[..x.len()]
            .par_chunks_mut(hw)
            .enumerate()
            .for_each(|(plane, out)| {
                let (a, b) = self.affine(plane % c, gamma, beta);
                simd::affine_act(&x[plane * hw..(plane + 1) * hw], out, a, b, self.slope);
            });
        // SAFETY: affine_act wrote every element of each plane, and the planes cover `y`
        unsafe { y.set_len(x.len()) };
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
        let dims = x.dims4()?;
        with_f32(x, |xs| {
            with_f32(dy, |dys| self.grads(xs, dys, gamma, beta, dims, x.device()))
        })
    }
}

impl Normalize {
    /// The three gradients of [`CustomOp3::bwd`] from the contiguous input and output
    /// gradient.
    fn grads(
        &self,
        xs: &[f32],
        dys: &[f32],
        gamma: &Tensor,
        beta: &Tensor,
        (n, c, h, w): (usize, usize, usize, usize),
        dev: &candle_core::Device,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let hw = h * w;
        let m = (n * hw) as f64;
        // the two sums feed dgamma, dbeta and, with batch statistics, dx; an eval-mode pass
        // with detached weights (an SGLD step) needs neither
        let needs_grad = |t: &Tensor| t.is_variable() || t.track_op();
        let affine_grads = needs_grad(gamma) || needs_grad(beta);
        let g: Vec<f32> = gamma.to_vec1()?;
        let beta: Vec<f32> = beta.to_vec1()?;
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .filter(|_| self.batch_stats || affine_grads)
            .map(|ci| {
                let ab = self.affine(ci, &g, &beta);
                let (mut sd, mut sdx) = (0f64, 0f64);
                for bi in 0..n {
                    let r = (bi * c + ci) * hw..(bi * c + ci + 1) * hw;
                    let (d, x) =
                        simd::act_grad_sums(&dys[r.clone()], &xs[r], ab, self.slope, self.mean[ci]);
                    sd += d;
                    sdx += x;
                }
                (sd, sdx * self.inv_std[ci])
            })
            .collect();
        let mut dx = Vec::with_capacity(xs.len());
        let planes = dx.spare_capacity_mut()[..xs.len()].par_chunks_mut(hw);
        planes.enumerate().for_each(|(plane, out)| {
            let ci = plane % c;
            let (sd, sdx) = if self.batch_stats {
                sums[ci]
            } else {
                (0.0, 0.0)
            };
            let inv = self.inv_std[ci];
            let k = g[ci] as f64 * inv;
            let r = plane * hw..(plane + 1) * hw;
            let kc = (k, sd / m, sdx / m * inv);
            let ab = self.affine(ci, &g, &beta);
            simd::act_input_grad(
                &dys[r.clone()],
                &xs[r],
                out,
                ab,
                self.slope,
                self.mean[ci],
                kc,
            );
        });
        // SAFETY: act_input_grad wrote every element of each plane, and the planes cover `dx`
        unsafe { dx.set_len(xs.len()) };
        let dx = Some(Tensor::from_vec(dx, (n, c, h, w), dev)?);
        if !affine_grads {
            return Ok((dx, None, None));
        }
        let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
        Ok((
            dx,
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
        slope: slope.unwrap_or(1.0) as f32,
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
        slope: slope.unwrap_or(1.0) as f32,
        batch_stats: false,
    };
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}
