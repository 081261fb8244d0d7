//! 2-D max and average pooling for inference: one parallel pass over the image planes on the
//! CPU (f32), where candle's own pooling runs one thread and needs explicit padding copies;
//! candle's operations elsewhere. No gradients (the ops are forward-only: a backward pass
//! through them is an error).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::conv::cpu_f32;

/// Window size, stride and padding (the same in both dimensions) of a pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// Window size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side (`< kernel`); padded positions never count: a max ignores them
    /// (PyTorch pads with -inf), an average divides by the real values in its window
    /// (`count_include_pad=False`).
    pub padding: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Max,
    Avg,
}

struct Pool(Pool2dConfig, Kind);

impl Pool2dConfig {
    fn check(&self, h: usize, w: usize) -> candle_core::Result<(usize, usize)> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        if k == 0 || s == 0 || p >= k || h + 2 * p < k || w + 2 * p < k {
            candle_core::bail!("pool2d: {self:?} does not fit a {h}x{w} image");
        }
        Ok(((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1))
    }

    /// The window `[start, end)` of output `o` along a side of `d` values, padding excluded.
    fn span(&self, o: usize, d: usize) -> (usize, usize) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        ((o * s).saturating_sub(p), (o * s + k - p).min(d))
    }

    /// The real values in each of the `outs` windows along a side of `d` values.
    fn counts(&self, d: usize, outs: usize) -> Vec<usize> {
        (0..outs)
            .map(|o| {
                let (a, b) = self.span(o, d);
                b - a
            })
            .collect()
    }
}

/// The real values in the windows of each output column and row (an average's divisors).
type Counts = (Vec<usize>, Vec<usize>);

impl Pool {
    /// One output plane from one input plane `x [h, w]`, separably: each input row reduced
    /// over the windows' columns (`rows [h, wo]`, scratch), then each output row over its
    /// window's rows. Both passes run over whole rows, so they vectorize; per-output windows
    /// in scalar code took a tenth of the FID Inception's time.
    fn plane(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        (y, wo): (&mut [f32], usize),
        rows: &mut Vec<f32>,
        (cx, cy): &Counts,
    ) {
        match self.1 {
            Kind::Max => self.separable(x, (h, w), (y, wo), rows, f32::max),
            Kind::Avg => {
                self.separable(x, (h, w), (y, wo), rows, |a, b| a + b);
                // divided by the real values in each window, as the direct loop did
                for (row, ny) in y.chunks_exact_mut(wo).zip(cy) {
                    for (v, nx) in row.iter_mut().zip(cx) {
                        *v /= (ny * nx) as f32;
                    }
                }
            }
        }
    }

    /// `y` from `x` reduced by `op` over each window, rows first, then columns, each in
    /// order from the window's first value.
    fn separable(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        (y, wo): (&mut [f32], usize),
        rows: &mut Vec<f32>,
        op: impl Fn(f32, f32) -> f32 + Copy,
    ) {
        rows.resize(h * wo, 0.0);
        for (r, out) in x.chunks_exact(w).zip(rows.chunks_exact_mut(wo)) {
            self.reduce_row(r, out, op);
        }
        for (oy, out) in y.chunks_exact_mut(wo).enumerate() {
            let (y0, y1) = self.0.span(oy, h);
            out.copy_from_slice(&rows[y0 * wo..][..wo]);
            for r in rows[(y0 + 1) * wo..y1 * wo].chunks_exact(wo) {
                for (o, &v) in out.iter_mut().zip(r) {
                    *o = op(*o, v);
                }
            }
        }
    }

    /// `out[ox]`: `op` over row `r`'s values in output `ox`'s window. With stride 1, the
    /// outputs whose window lies inside the row take one pass over the row per tap.
    fn reduce_row(&self, r: &[f32], out: &mut [f32], op: impl Fn(f32, f32) -> f32 + Copy) {
        let window = |ox: usize| {
            let (x0, x1) = self.0.span(ox, r.len());
            r[x0 + 1..x1].iter().fold(r[x0], |m, &v| op(m, v))
        };
        let Pool2dConfig {
            kernel: k,
            stride: s,
            padding: p,
        } = self.0;
        // outputs p..p + inner have whole windows: input ox - p + j for the taps j
        let inner = if s == 1 {
            (r.len() + 1).saturating_sub(k)
        } else {
            0
        };
        let inner = inner.min(out.len().saturating_sub(p));
        for (ox, o) in out.iter_mut().enumerate() {
            if ox < p || ox >= p + inner {
                *o = window(ox);
            }
        }
        if inner > 0 {
            let body = &mut out[p..p + inner];
            body.copy_from_slice(&r[..inner]);
            for j in 1..k {
                for (o, &v) in body.iter_mut().zip(&r[j..j + inner]) {
                    *o = op(*o, v);
                }
            }
        }
    }
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        match self.1 {
            Kind::Max => "max-pool2d",
            Kind::Avg => "avg-pool2d",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, self.name())?;
        let (n, c, h, w) = l.shape().dims4()?;
        let (ho, wo) = self.0.check(h, w)?;
        let mut y = vec![0f32; n * c * ho * wo];
        // the windows' sizes (an average's divisors) once per call, the row pass's scratch
        // once per thread
        let counts = (self.0.counts(w, wo), self.0.counts(h, ho));
        if ho * wo > 0 {
            y.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .for_each_init(Vec::new, |rows, (yp, xp)| {
                    self.plane(xp, (h, w), (yp, wo), rows, &counts)
                });
        }
        Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))))
    }
}

fn pool(x: &Tensor, cfg: Pool2dConfig, kind: Kind) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    cfg.check(h, w)?;
    if crate::uses_kernels(x) {
        return x.contiguous()?.apply_op1_no_bwd(&Pool(cfg, kind));
    }
    fallback(x, cfg, kind, (h, w))
}

/// Candle's pooling with the same semantics, for other devices and dtypes.
fn fallback(
    x: &Tensor,
    cfg: Pool2dConfig,
    kind: Kind,
    (h, w): (usize, usize),
) -> candle_core::Result<Tensor> {
    let (k, s, p) = (cfg.kernel, cfg.stride, cfg.padding);
    if p == 0 {
        return match kind {
            Kind::Max => x.max_pool2d_with_stride(k, s),
            Kind::Avg => x.avg_pool2d_with_stride(k, s),
        };
    }
    match kind {
        Kind::Max => {
            // shifted above 0, the zero padding never wins a max (values move by rounding)
            let low = x
                .min_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?
                - 1.0;
            (x - low)?
                .pad_with_zeros(2, p, p)?
                .pad_with_zeros(3, p, p)?
                .max_pool2d_with_stride(k, s)?
                + low
        }
        Kind::Avg => {
            let sums = x
                .pad_with_zeros(2, p, p)?
                .pad_with_zeros(3, p, p)?
                .avg_pool2d_with_stride(k, s)?;
            let (ho, wo) = cfg.check(h, w)?;
            let (cx, cy) = (cfg.counts(w, wo), cfg.counts(h, ho));
            let mut scale = Vec::with_capacity(ho * wo);
            for ny in &cy {
                for nx in &cx {
                    scale.push((k * k) as f64 / (ny * nx) as f64);
                }
            }
            let scale = Tensor::from_vec(scale, (1, 1, ho, wo), x.device())?.to_dtype(x.dtype())?;
            sums.broadcast_mul(&scale)
        }
    }
}

/// Max pooling of `[N, C, H, W]` (PyTorch's `max_pool2d` with `ceil_mode=False`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use jem_kernels::pool::{Pool2dConfig, max_pool2d};
/// let x = Tensor::arange(0f32, 16.0, &Device::Cpu)?.reshape((1, 1, 4, 4))?;
/// let cfg = Pool2dConfig { kernel: 3, stride: 1, padding: 1 };
/// let y = max_pool2d(&x, cfg)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?[0], 5.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn max_pool2d(x: &Tensor, cfg: Pool2dConfig) -> candle_core::Result<Tensor> {
    pool(x, cfg, Kind::Max)
}

/// Average pooling of `[N, C, H, W]` over the real values of each window (PyTorch's
/// `avg_pool2d` with `count_include_pad=False`, `ceil_mode=False`; TensorFlow's behaviour).
pub fn avg_pool2d(x: &Tensor, cfg: Pool2dConfig) -> candle_core::Result<Tensor> {
    pool(x, cfg, Kind::Avg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct loops in f64 over the padded window: max and mean of the real values.
    fn naive(
        x: &[f32],
        (n, c, h, w): (usize, usize, usize, usize),
        cfg: Pool2dConfig,
        max: bool,
    ) -> Vec<f64> {
        let (ho, wo) = cfg.check(h, w).unwrap();
        let mut y = Vec::new();
        for plane in 0..n * c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut vals = Vec::new();
                    for ky in 0..cfg.kernel {
                        for kx in 0..cfg.kernel {
                            let iy = (oy * cfg.stride + ky) as isize - cfg.padding as isize;
                            let ix = (ox * cfg.stride + kx) as isize - cfg.padding as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                vals.push(x[plane * h * w + iy as usize * w + ix as usize] as f64);
                            }
                        }
                    }
                    y.push(if max {
                        vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                    } else {
                        vals.iter().sum::<f64>() / vals.len() as f64
                    });
                }
            }
        }
        y
    }

    /// The CPU kernel and the fallback (f64, candle's pooling) against direct loops, on
    /// Inception-v3's poolings (3x3 stride 2, 3x3 stride 1 padding 1) and odd others, with
    /// negative values (a padded max must ignore the padding).
    #[test]
    fn poolings_match_direct_loops() {
        let cases = [
            ((2, 3, 9, 9), (3, 2, 0)),
            ((1, 4, 8, 7), (3, 1, 1)),
            ((3, 2, 5, 6), (2, 2, 1)),
            ((1, 1, 3, 3), (3, 3, 0)),
            ((2, 2, 7, 10), (5, 2, 2)),
            // Inception's sizes: 35x35 and 17x17 maps
            ((1, 3, 35, 35), (3, 1, 1)),
            ((1, 2, 35, 35), (3, 2, 0)),
            ((2, 2, 17, 17), (3, 1, 1)),
            ((1, 1, 4, 6), (5, 1, 2)),
        ];
        for (dims, (k, s, p)) in cases {
            let cfg = Pool2dConfig {
                kernel: k,
                stride: s,
                padding: p,
            };
            let len = dims.0 * dims.1 * dims.2 * dims.3;
            let v: Vec<f32> = (0..len)
                .map(|i| ((i as f32 * 0.37).sin() * 3.0) - 1.0)
                .collect();
            let x = Tensor::from_vec(v.clone(), dims, &candle_core::Device::Cpu).unwrap();
            let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
            for max in [true, false] {
                let want = naive(&v, dims, cfg, max);
                let run = |t: &Tensor| -> Vec<f64> {
                    let y = if max {
                        max_pool2d(t, cfg)
                    } else {
                        avg_pool2d(t, cfg)
                    }
                    .unwrap();
                    y.to_dtype(candle_core::DType::F64)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                };
                for (what, got) in [("cpu kernel", run(&x)), ("fallback", run(&x64))] {
                    assert_eq!(got.len(), want.len(), "{dims:?} {cfg:?} {what}");
                    let err = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    assert!(err < 1e-5, "{dims:?} {cfg:?} max={max} {what}: {err}");
                }
            }
        }
        let bad = Pool2dConfig {
            kernel: 3,
            stride: 1,
            padding: 3,
        };
        assert!(
            max_pool2d(
                &Tensor::zeros(
                    (1, 1, 4, 4),
                    candle_core::DType::F32,
                    &candle_core::Device::Cpu
                )
                .unwrap(),
                bad
            )
            .is_err()
        );
    }
}
