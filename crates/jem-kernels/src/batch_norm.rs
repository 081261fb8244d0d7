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
//! the activation, as in PyTorch's two separate kernels. The statistics are per-plane sums
//! and squared deviations from each plane's own mean (computed while the plane is in L1),
//! combined per channel with Chan, Golub and LeVeque's pairwise formula: one pass over
//! memory, as accurate as the two-pass form. Every reduction splits its work over images,
//! so each thread streams through contiguous memory, and the streaming loops prefetch ahead
//! (`simd::prefetch`).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::conv::{cpu_f32, with_f32};
use crate::simd;

/// `f(plane)` for the `n * c` planes of an `[N, C, H, W]` tensor, in plane order.
///
/// The work is split over images, so that each thread streams through contiguous memory
/// (splitting over channels reads `n` scattered planes per channel, latency-bound when the
/// planes are small).
fn per_plane<T: Send>(n: usize, c: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    (0..n * c).into_par_iter().with_min_len(c).map(f).collect()
}

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
        // one pass over memory: each plane's sum and squared deviations from its own mean
        // (while it is in L1), combined per channel with Chan et al.'s parallel formula
        let planes = per_plane(n, c, |p| {
            let plane = &x[p * hw..(p + 1) * hw];
            let s = simd::sum(plane);
            (s, simd::sum_sq_dev(plane, s / hw as f64))
        });
        let stats: Vec<(f64, f64)> = (0..c)
            .map(|ci| {
                let mean = (0..n).map(|b| planes[b * c + ci].0).sum::<f64>() / m;
                let sq: f64 = (0..n)
                    .map(|b| {
                        let (s, q) = planes[b * c + ci];
                        q + hw as f64 * (s / hw as f64 - mean).powi(2)
                    })
                    .sum();
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
        let sums: Vec<(f64, f64)> = if self.batch_stats || affine_grads {
            let partial = per_plane(n, c, |p| {
                let ci = p % c;
                let r = p * hw..(p + 1) * hw;
                let ab = self.affine(ci, &g, &beta);
                simd::act_grad_sums(&dys[r.clone()], &xs[r], ab, self.slope, self.mean[ci])
            });
            (0..c)
                .map(|ci| {
                    let (sd, sdx) = (0..n).fold((0f64, 0f64), |(a, b), bi| {
                        let (d, x) = partial[bi * c + ci];
                        (a + d, b + x)
                    });
                    (sd, sdx * self.inv_std[ci])
                })
                .collect()
        } else {
            Vec::new()
        };
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
