//! The backward pass of the convolution: the input gradient (GEMM and col2im, shifted GEMMs
//! or Winograd), the weight gradient (a deterministic sum over image groups) and the bias
//! gradient.

use candle_core::Tensor;
use rayon::prelude::*;

use super::geometry::gather_group;
use super::matmul::{Mat, matmul, par_vec, with_scratch};
use super::{Conv, Path, plan, shifted, winograd};
use crate::simd;

/// Parts of the weight gradient's sum over image groups (fixed, so the result does not depend
/// on thread scheduling or count).
const DW_PARTS: usize = 8;

/// `sum_g add(x_g, dy_g)` into `len` zeros over the image groups `(x_g, dy_g)`, the same
/// bits whatever the threads: the groups are cut into [`DW_PARTS`] contiguous parts (not
/// rayon's adaptive splits, whose summation order depends on scheduling), each part summed
/// in order on one thread, then the parts in order.
pub(super) fn sum_over_groups<'a>(
    (xs, dys): (
        impl Iterator<Item = &'a [f32]>,
        impl Iterator<Item = &'a [f32]>,
    ),
    len: usize,
    add: impl Fn(&mut [f32], &'a [f32], &'a [f32]) + Sync,
) -> Vec<f32> {
    let pairs: Vec<(&[f32], &[f32])> = xs.zip(dys).collect();
    let per_part = pairs.len().div_ceil(DW_PARTS).max(1);
    let partials: Vec<Vec<f32>> = pairs
        .par_chunks(per_part)
        .map(|part| {
            let mut acc = vec![0f32; len];
            for &(xg, dyg) in part {
                add(&mut acc, xg, dyg);
            }
            acc
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![0f32; len]);
    for p in parts {
        simd::add_assign(&mut sum, &p);
    }
    sum
}

/// `dy` of a group as one `[cout, m * l]` matrix (gathered into `buf` for several images).
fn dy_matrix<'a>(dyg: &'a [f32], buf: &'a mut [f32], cout: usize, l: usize) -> Mat<'a> {
    let ld = dyg.len() / cout;
    let data = if ld == l {
        dyg
    } else {
        gather_group(dyg, &mut buf[..cout * ld], cout, l);
        &buf[..cout * ld]
    };
    Mat::new(data, cout, ld)
}

fn needs_grad(t: &Tensor) -> bool {
    t.is_variable() || t.track_op()
}

impl Conv {
    /// The gradients of [`CustomOp3::bwd`] from the contiguous data of `x`, `dy` and `W`.
    pub(super) fn grads(
        &self,
        (x, w, bias): (&Tensor, &Tensor, &Tensor),
        xs: &[f32],
        dys: &[f32],
        wv: &[f32],
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g, path) = (self.0, self.1);
        let (n, cout, l, rows, img, gsz, par) = plan(&g);
        let dev = x.device();
        let dx = if let (true, Path::Winograd(tile)) = (needs_grad(x), path) {
            Some(Tensor::from_vec(
                winograd::input_grad(tile, &g, dys, wv),
                x.shape(),
                dev,
            )?)
        } else if needs_grad(x) {
            let wt = || Mat::transposed(wv, rows, cout);
            // col2im adds into zeros
            let dx = par_vec(x.elem_count(), gsz * img, (img, |_| 0.0), |gi, dxg| {
                let dyg = &dys[gi * gsz * cout * l..((gi + 1) * gsz * cout * l).min(dys.len())];
                if path == Path::Shifted {
                    let pl = shifted::Padded::new(&g, dxg.len() / img);
                    let (c, ld) = (g.input[1], pl.ld);
                    return with_scratch(c * ld, cout * ld, |dxp, ext| {
                        shifted::input_grad(&g, wv, dyg, dxg, (dxp, ext), par)
                    });
                }
                if g.pointwise() && dyg.len() == cout * l {
                    // the column gradient is the input gradient
                    let dm = Mat::new(dyg, cout, l);
                    return matmul(dxg, wt(), dm, false, par);
                }
                let ld = dyg.len() / cout;
                with_scratch(rows * ld, cout * ld, |dcols, dybuf| {
                    let dm = dy_matrix(dyg, dybuf, cout, l);
                    matmul(dcols, wt(), dm, false, par);
                    for (j, dxb) in dxg.chunks_mut(img).enumerate() {
                        g.col2im(dcols, ld, j * l, dxb);
                    }
                });
            });
            Some(Tensor::from_vec(dx, x.shape(), dev)?)
        } else {
            None
        };
        let dw = if let (true, Path::Winograd(tile)) = (needs_grad(w), path) {
            Some(Tensor::from_vec(
                winograd::weight_grad(tile, &g, xs, dys),
                w.shape(),
                dev,
            )?)
        } else if needs_grad(w) {
            let groups = (xs.chunks(gsz * img), dys.chunks(gsz * cout * l));
            let dw = sum_over_groups(groups, cout * rows, |acc, xg, dyg| {
                let ld = dyg.len() / cout;
                if path == Path::Shifted {
                    let pl = shifted::Padded::new(&g, xg.len() / img);
                    let (c, ld) = (g.input[1], pl.ld);
                    with_scratch(c * ld, cout * ld, |xp, ext| {
                        shifted::weight_grad(&g, xg, dyg, acc, (xp, ext), par)
                    });
                    return;
                }
                if g.pointwise() && ld == l {
                    let dm = Mat::new(dyg, cout, l);
                    let xt = Mat::transposed(xg, l, rows);
                    matmul(acc, dm, xt, true, par);
                    return;
                }
                with_scratch(rows * ld, cout * ld, |cols, dybuf| {
                    for (j, xb) in xg.chunks(img).enumerate() {
                        g.im2col(xb, cols, ld, j * l);
                    }
                    let ct = Mat::transposed(cols, ld, rows);
                    matmul(acc, dy_matrix(dyg, dybuf, cout, l), ct, true, par);
                });
            });
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
