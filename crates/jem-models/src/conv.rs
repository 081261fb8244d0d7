//! 2-D convolution as one large matrix product, with a fast input gradient.
//!
//! candle's CPU convolution computes its input gradient with a naive transposed
//! convolution and its weight gradient with an im2col whose kernel is the whole image, which
//! makes conv-net backward passes 7-15x slower than PyTorch's. Here a convolution is
//!
//! ```text
//! colsT = im2col(x)            [C*k*k, N*Ho*Wo]   (custom op; its gradient is col2im)
//! y     = W[Cout, C*k*k] @ colsT                   (one GEMM; candle differentiates it)
//! ```
//!
//! so the forward pass and both gradients are single GEMMs on the `gemm` crate, plus two
//! memory-bound rearrangements that run on all cores. On other devices the stock candle
//! convolution is used.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Geometry of a square-kernel convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input `[N, C, H, W]`.
    pub input: [usize; 4],
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl ConvGeometry {
    /// Output height and width.
    pub fn output_hw(&self) -> (usize, usize) {
        let [_, _, h, w] = self.input;
        let o = |d: usize| (d + 2 * self.padding - self.k) / self.stride + 1;
        (o(h), o(w))
    }

    fn rows(&self) -> usize {
        self.input[1] * self.k * self.k
    }

    fn cols(&self) -> usize {
        let (ho, wo) = self.output_hw();
        self.input[0] * ho * wo
    }
}

/// The contiguous f32 data of a custom op's CPU input; other dtypes and layouts are errors.
pub(crate) fn cpu_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: the input must be contiguous");
    };
    Ok(&data[start..end])
}

/// `x [N, C, H, W] -> colsT [C*k*k, N*Ho*Wo]`.
struct Im2ColT(ConvGeometry);

impl CustomOp1 for Im2ColT {
    fn name(&self) -> &'static str {
        "im2col-t"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = cpu_f32(storage, layout, "im2col")?;
        let [n, c, h, w] = g.input;
        let (ho, wo) = g.output_hw();
        let (k, s, p) = (g.k, g.stride, g.padding);
        let ncols = g.cols();
        let mut out = vec![0f32; g.rows() * ncols];
        out.par_chunks_mut(ncols)
            .enumerate()
            .for_each(|(row, dst)| {
                let (ci, ky, kx) = (row / (k * k), row / k % k, row % k);
                for b in 0..n {
                    let src = &x[(b * c + ci) * h * w..(b * c + ci + 1) * h * w];
                    for oy in 0..ho {
                        let d = &mut dst[(b * ho + oy) * wo..(b * ho + oy + 1) * wo];
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue; // stays zero
                        }
                        let line = &src[iy as usize * w..(iy as usize + 1) * w];
                        for (ox, v) in d.iter_mut().enumerate() {
                            let ix = (ox * s + kx) as isize - p as isize;
                            if ix >= 0 && ix < w as isize {
                                *v = line[ix as usize];
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((g.rows(), ncols))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&Col2ImT(self.0))?))
    }
}

/// `gT [C*k*k, N*Ho*Wo] -> dx [N, C, H, W]`: the adjoint of [`Im2ColT`] (sums overlaps).
struct Col2ImT(ConvGeometry);

impl CustomOp1 for Col2ImT {
    fn name(&self) -> &'static str {
        "col2im-t"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let gt = cpu_f32(storage, layout, "col2im")?;
        let [n, c, h, w] = g.input;
        let (ho, wo) = g.output_hw();
        let (k, s, p) = (g.k, g.stride, g.padding);
        let ncols = g.cols();
        let mut out = vec![0f32; n * c * h * w];
        out.par_chunks_mut(c * h * w)
            .enumerate()
            .for_each(|(b, dimg)| {
                for row in 0..g.rows() {
                    let (ci, ky, kx) = (row / (k * k), row / k % k, row % k);
                    let dst = &mut dimg[ci * h * w..(ci + 1) * h * w];
                    let src = &gt[row * ncols + b * ho * wo..row * ncols + (b + 1) * ho * wo];
                    for oy in 0..ho {
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let line = &mut dst[iy as usize * w..(iy as usize + 1) * w];
                        let sl = &src[oy * wo..(oy + 1) * wo];
                        for (ox, v) in sl.iter().enumerate() {
                            let ix = (ox * s + kx) as isize - p as isize;
                            if ix >= 0 && ix < w as isize {
                                line[ix as usize] += v;
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(g.input.to_vec())))
    }
}

/// `conv2d(x, weight) + bias` with the GEMM formulation on the CPU (f32), candle's stock
/// convolution elsewhere. `weight` is `[Cout, C, k, k]`, `bias` `[Cout]`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let (cout, _, k, _) = weight.dims4()?;
    let y = if matches!(x.device(), Device::Cpu) && x.dtype() == candle_core::DType::F32 {
        let (n, c, h, w) = x.dims4()?;
        let g = ConvGeometry {
            input: [n, c, h, w],
            k,
            stride,
            padding,
        };
        let (ho, wo) = g.output_hw();
        let cols = x.contiguous()?.apply_op1(Im2ColT(g))?;
        let y = weight.reshape((cout, g.rows()))?.matmul(&cols)?; // [Cout, N*L]
        y.reshape((cout, n, ho * wo))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((n, cout, ho, wo))?
    } else {
        x.conv2d(weight, padding, stride, 1, 1)?
    };
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, cout, 1, 1))?),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn values(n: usize, seed: f64) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f64 * 0.731 + seed).sin() * 0.9) as f32)
            .collect()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let m = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        (d / m.max(1e-12)) as f64
    }

    /// Direct loops in f64: the forward pass and the gradients of `sum(y * up)`.
    #[allow(clippy::type_complexity)]
    fn naive(
        x: &[f32],
        wt: &[f32],
        b: &[f32],
        up: &[f32],
        (n, c, h, w, cout, k, s, p): (usize, usize, usize, usize, usize, usize, usize, usize),
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let ho = (h + 2 * p - k) / s + 1;
        let wo = (w + 2 * p - k) / s + 1;
        let mut y = vec![0f64; n * cout * ho * wo];
        let (mut dx, mut dw, mut db) =
            (vec![0f64; x.len()], vec![0f64; wt.len()], vec![0f64; cout]);
        for bn in 0..n {
            for o in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let yi = ((bn * cout + o) * ho + oy) * wo + ox;
                        let u = up[yi] as f64;
                        y[yi] += b[o] as f64;
                        db[o] += u;
                        for ci in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - p as isize;
                                    let ix = (ox * s + kx) as isize - p as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xi = ((bn * c + ci) * h + iy as usize) * w + ix as usize;
                                    let wi = ((o * c + ci) * k + ky) * k + kx;
                                    y[yi] += x[xi] as f64 * wt[wi] as f64;
                                    dx[xi] += u * wt[wi] as f64;
                                    dw[wi] += u * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw, db)
    }

    fn max_rel_vec(a: &Tensor, b: &[f64]) -> f64 {
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a.len(), b.len());
        let m = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
        a.iter()
            .zip(b)
            .fold(0f64, |d, (x, y)| d.max((*x as f64 - y).abs()))
            / m
    }

    /// Forward, input, weight and bias gradients against direct loops on odd sizes, strides,
    /// paddings, 1x1 kernels and batch 1 (candle's own convolution backward gets the input
    /// gradient's shape wrong when a stride does not divide the padded size, so it is not
    /// the reference here); the forward pass also against candle's convolution.
    #[test]
    fn matches_direct_loops_and_candles_forward() {
        let cases = [
            // n, c, h, w, cout, k, stride, pad
            (2, 3, 7, 5, 4, 3, 1, 1),
            (1, 2, 8, 8, 3, 3, 2, 1),
            (3, 4, 9, 6, 5, 1, 2, 0),
            (2, 1, 5, 5, 2, 3, 1, 0),
            (1, 16, 16, 16, 8, 3, 1, 1),
            (2, 5, 6, 7, 3, 3, 2, 0),
        ];
        for (case, &geo) in cases.iter().enumerate() {
            let (n, c, h, w, cout, k, s, p) = geo;
            let dev = Device::Cpu;
            let (xv, wv, bv) = (
                values(n * c * h * w, 0.3),
                values(cout * c * k * k, 1.7),
                values(cout, 2.9),
            );
            let x = Var::from_vec(xv.clone(), (n, c, h, w), &dev).unwrap();
            let wt = Var::from_vec(wv.clone(), (cout, c, k, k), &dev).unwrap();
            let b = Var::from_vec(bv.clone(), cout, &dev).unwrap();
            let ours = conv2d(x.as_tensor(), wt.as_tensor(), Some(b.as_tensor()), s, p).unwrap();
            let stock = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
            let stock = stock
                .broadcast_add(&b.as_tensor().reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            assert!(
                max_rel(&ours, &stock) < 1e-5,
                "case {case}: forward vs candle"
            );
            let upv = values(ours.elem_count(), 4.1);
            let up = Tensor::from_vec(upv.clone(), ours.shape(), &dev).unwrap();
            let (y, dx, dw, db) = naive(&xv, &wv, &bv, &upv, geo);
            assert!(max_rel_vec(&ours, &y) < 1e-5, "case {case}: forward");
            let g = (&ours * &up)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, v, want) in [("input", &x, &dx), ("weight", &wt, &dw), ("bias", &b, &db)] {
                let e = max_rel_vec(g.get(v.as_tensor()).unwrap(), want);
                assert!(e < 1e-5, "case {case}: {name} gradient off by {e}");
            }
        }
    }
}
