//! 2-D convolution on the CPU as per-image GEMMs, with fast gradients.
//!
//! candle's CPU convolution computes its input gradient with a naive transposed
//! convolution and its weight gradient with an im2col whose kernel is the whole image, which
//! makes conv-net backward passes 7-15x slower than PyTorch's. Here a convolution with bias
//! is one candle custom op whose forward pass and both gradients are GEMMs on the `gemm`
//! crate, image by image (images run in parallel, each with a small reused column buffer,
//! so no `[C*k*k, N*Ho*Wo]` matrix is ever allocated):
//!
//! ```text
//! forward   cols_b = im2col(x_b)  [C*k*k, Ho*Wo]      y_b = W @ cols_b + bias
//! input     dx_b   = col2im(W^T @ dy_b)
//! weight    dW     = sum_b dy_b @ cols_b^T   (cols_b recomputed)    dbias = sum dy
//! ```
//!
//! Gradients are computed only for the operands that need one (an input that is neither a
//! variable nor computed from one, such as a data batch or detached weights, gets none).
//! On other devices and dtypes the stock candle convolution is used.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::simd;

/// Geometry of a square-kernel convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input `[N, C, H, W]`.
    pub input: [usize; 4],
    /// Output channels.
    pub out_channels: usize,
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

    /// Rows of an image's column matrix, `C * k * k`.
    fn rows(&self) -> usize {
        self.input[1] * self.k * self.k
    }

    /// Output pixels per image, `Ho * Wo`.
    fn pixels(&self) -> usize {
        let (ho, wo) = self.output_hw();
        ho * wo
    }

    /// Values per input image.
    fn image_len(&self) -> usize {
        let [_, c, h, w] = self.input;
        c * h * w
    }

    /// Calls `f(row, oy, ox_range, iy, ix0)` for every in-bounds stretch of row `oy` of
    /// column-matrix row `row`: output columns `ox_range` read input row `iy` from column
    /// `ix0` on (`ix = ix0 + (ox - ox_range.start) * stride`).
    fn for_each_span(&self, mut f: impl FnMut(usize, usize, std::ops::Range<usize>, usize, usize)) {
        let [_, _, h, w] = self.input;
        let (ho, wo) = self.output_hw();
        let (k, s, p) = (self.k, self.stride, self.padding);
        for row in 0..self.rows() {
            let (ky, kx) = (row / k % k, row % k);
            // output columns whose input column ox*s + kx - p lies in [0, w)
            let ox_lo = p.saturating_sub(kx).div_ceil(s);
            let ox_hi = if w + p > kx {
                ((w + p - kx - 1) / s + 1).min(wo)
            } else {
                0
            };
            if ox_lo >= ox_hi {
                continue;
            }
            for oy in 0..ho {
                let iy = (oy * s + ky) as isize - p as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                f(row, oy, ox_lo..ox_hi, iy as usize, ox_lo * s + kx - p);
            }
        }
    }

    /// `cols [C*k*k, Ho*Wo]` of one image `x [C, H, W]` (zero where the kernel hangs over).
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let [_, _, h, w] = self.input;
        let (l, wo, s, kk) = (
            self.pixels(),
            self.output_hw().1,
            self.stride,
            self.k * self.k,
        );
        if self.padding > 0 {
            cols.fill(0.0); // without padding every entry is written below
        }
        self.for_each_span(|row, oy, ox, iy, ix0| {
            let src = &x[(row / kk * h + iy) * w..];
            let dst = &mut cols[row * l + oy * wo..];
            if s == 1 {
                dst[ox.clone()].copy_from_slice(&src[ix0..ix0 + ox.len()]);
            } else {
                for (j, o) in ox.enumerate() {
                    dst[o] = src[ix0 + j * s];
                }
            }
        });
    }

    /// Adds the column gradient `dcols [C*k*k, Ho*Wo]` of one image into `dx [C, H, W]`.
    fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        let [_, _, h, w] = self.input;
        let (l, wo, s, kk) = (
            self.pixels(),
            self.output_hw().1,
            self.stride,
            self.k * self.k,
        );
        dx.fill(0.0);
        self.for_each_span(|row, oy, ox, iy, ix0| {
            let dst = &mut dx[(row / kk * h + iy) * w..];
            let src = &dcols[row * l + oy * wo..];
            if s == 1 {
                simd::add_assign(&mut dst[ix0..ix0 + ox.len()], &src[ox]);
            } else {
                for (j, o) in ox.enumerate() {
                    dst[ix0 + j * s] += src[o];
                }
            }
        });
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

/// Runs `f` on the contiguous f32 data of a CPU tensor, without copying it when it is
/// already contiguous.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a CPU tensor");
    };
    f(cpu_f32(cpu, layout, "with_f32")?)
}

/// A row-major matrix view for [`matmul`]: pointer, rows, columns, and whether it is
/// stored transposed (then element `(i, j)` is at `j * rows + i`).
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl Mat<'_> {
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.rows as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `dst [m, n] (row-major) = accumulate * dst + a @ b`.
fn matmul(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool, par: Parallelism) {
    assert!(a.cols == b.rows && dst.len() == a.rows * b.cols);
    assert!(a.data.len() >= a.rows * a.cols && b.data.len() >= b.rows * b.cols);
    let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides(), b.strides());
    // SAFETY: the asserts above keep every index the strides describe inside the slices,
    // and `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Images run in parallel when there are enough of them; otherwise each GEMM is parallel.
fn inner_parallelism(images: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if images >= 2 * threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

fn needs_grad(t: &Tensor) -> bool {
    t.is_variable() || t.track_op()
}

/// `y = conv2d(x, W) + bias` over `(x [N,C,H,W], W [Cout,C,k,k], bias [Cout])`.
struct Conv(ConvGeometry);

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
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
        let g = self.0;
        let (x, w, bias) = (
            cpu_f32(s1, l1, "conv2d")?,
            cpu_f32(s2, l2, "conv2d")?,
            cpu_f32(s3, l3, "conv2d")?,
        );
        let (n, cout, l, rows) = (g.input[0], g.out_channels, g.pixels(), g.rows());
        let par = inner_parallelism(n);
        let mut y = vec![0f32; n * cout * l];
        y.par_chunks_mut(cout * l)
            .zip(x.par_chunks(g.image_len()))
            .for_each_init(
                || vec![0f32; rows * l],
                |cols, (yb, xb)| {
                    g.im2col(xb, cols);
                    let wm = Mat {
                        data: w,
                        rows: cout,
                        cols: rows,
                        transposed: false,
                    };
                    let cm = Mat {
                        data: cols,
                        rows,
                        cols: l,
                        transposed: false,
                    };
                    matmul(yb, wm, cm, false, par);
                    for (plane, &b) in yb.chunks_mut(l).zip(bias) {
                        plane.iter_mut().for_each(|v| *v += b);
                    }
                },
            );
        let (ho, wo) = g.output_hw();
        Ok((CpuStorage::F32(y), Shape::from((n, cout, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        with_f32(dy, |dys| {
            with_f32(x, |xs| {
                with_f32(w, |wv| self.grads((x, w, bias), xs, dys, wv))
            })
        })
    }
}

impl Conv {
    /// The gradients of [`CustomOp3::bwd`] from the contiguous data of `x`, `dy` and `W`.
    fn grads(
        &self,
        (x, w, bias): (&Tensor, &Tensor, &Tensor),
        xs: &[f32],
        dys: &[f32],
        wv: &[f32],
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.0;
        let (n, cout, l, rows) = (g.input[0], g.out_channels, g.pixels(), g.rows());
        let par = inner_parallelism(n);
        let dev = x.device();
        let dx = if needs_grad(x) {
            let mut dx = vec![0f32; x.elem_count()];
            dx.par_chunks_mut(g.image_len())
                .zip(dys.par_chunks(cout * l))
                .for_each_init(
                    || vec![0f32; rows * l],
                    |dcols, (dxb, dyb)| {
                        let wt = Mat {
                            data: wv,
                            rows,
                            cols: cout,
                            transposed: true,
                        };
                        let dm = Mat {
                            data: dyb,
                            rows: cout,
                            cols: l,
                            transposed: false,
                        };
                        matmul(dcols, wt, dm, false, par);
                        g.col2im(dcols, dxb);
                    },
                );
            Some(Tensor::from_vec(dx, x.shape(), dev)?)
        } else {
            None
        };
        let dw = if needs_grad(w) {
            let dw = xs
                .par_chunks(g.image_len())
                .zip(dys.par_chunks(cout * l))
                .fold(
                    || (vec![0f32; cout * rows], vec![0f32; rows * l]),
                    |(mut acc, mut cols), (xb, dyb)| {
                        g.im2col(xb, &mut cols);
                        let dm = Mat {
                            data: dyb,
                            rows: cout,
                            cols: l,
                            transposed: false,
                        };
                        let ct = Mat {
                            data: &cols,
                            rows: l,
                            cols: rows,
                            transposed: true,
                        };
                        matmul(&mut acc, dm, ct, true, par);
                        (acc, cols)
                    },
                )
                .map(|(acc, _)| acc)
                .reduce_with(|mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(u, v)| *u += v);
                    a
                })
                .unwrap_or_else(|| vec![0f32; cout * rows]);
            Some(Tensor::from_vec(dw, w.shape(), dev)?)
        } else {
            None
        };
        let db = if needs_grad(bias) {
            let sums: Vec<f32> = (0..cout)
                .into_par_iter()
                .map(|o| {
                    let plane = |b: usize| &dys[(b * cout + o) * l..(b * cout + o + 1) * l];
                    let s: f64 = (0..n).map(|b| simd::sum(plane(b))).sum();
                    s as f32
                })
                .collect();
            Some(Tensor::from_vec(sums, cout, dev)?)
        } else {
            None
        };
        Ok((dx, dw, db))
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
    let (cout, cin, k, _) = weight.dims4()?;
    if matches!(x.device(), Device::Cpu) && x.dtype() == candle_core::DType::F32 {
        let (n, c, h, w) = x.dims4()?;
        if c != cin || h + 2 * padding < k || w + 2 * padding < k || stride == 0 {
            candle_core::bail!(
                "conv2d: input {:?} does not fit weight {:?} with stride {stride}, padding {padding}",
                x.dims(),
                weight.dims()
            );
        }
        let g = ConvGeometry {
            input: [n, c, h, w],
            out_channels: cout,
            k,
            stride,
            padding,
        };
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(cout, candle_core::DType::F32, x.device())?,
        };
        return x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias, Conv(g));
    }
    let y = x.conv2d(weight, padding, stride, 1, 1)?;
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
            // enough images for the image-parallel path
            (5, 3, 6, 6, 4, 3, 1, 1),
            (6, 2, 9, 9, 3, 3, 2, 1),
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
            // detached weights (SGLD): only the input gradient, and the same one
            let y = conv2d(x.as_tensor(), &wt.as_tensor().detach(), None, s, p).unwrap();
            let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(g.get(wt.as_tensor()).is_none() && g.get(b.as_tensor()).is_none());
            let e = max_rel_vec(g.get(x.as_tensor()).unwrap(), &dx);
            assert!(
                e < 1e-5,
                "case {case}: input gradient with detached weights off by {e}"
            );
        }
    }

    /// A data batch (not a variable) gets no gradient; the weights still get theirs.
    #[test]
    fn no_input_gradient_for_data() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(values(2 * 3 * 5 * 5, 0.1), (2, 3, 5, 5), &dev).unwrap();
        let wt = Var::from_vec(values(4 * 3 * 9, 0.2), (4, 3, 3, 3), &dev).unwrap();
        let y = conv2d(&x, wt.as_tensor(), None, 1, 1).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_none());
        assert_eq!(g.get(wt.as_tensor()).unwrap().dims(), &[4, 3, 3, 3]);
    }
}
