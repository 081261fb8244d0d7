//! Stride-1 convolutions as shifted GEMMs, without a column matrix.
//!
//! A group of `m` images `[C, H, W]` is copied once into a zero-padded buffer `xp [C, ld]`,
//! the images stacked as one tall padded image: image `j`'s padded pixel `(y, x)` (`y < Hp =
//! H + 2p`, `x < Wp = W + 2p`) is column `j * P + y * Wp + x` with `P = Hp * Wp`, and
//! `ld = m * P`. An output pixel `(y, x)` of image `j` is the "extended" column
//! `q = j * P + y * Wp + x` and reads, for the kernel tap `t = (ky, kx)`, column
//! `q + off(t)` with `off(t) = ky * Wp + kx`, so each tap is one GEMM on a shifted view of
//! `xp` (row stride `ld`, column stride 1) with the strided weight slice
//! `W_t = W[:, :, ky, kx]` (`[Cout, C]`, row stride `C*k*k`, column stride `k*k`):
//!
//! ```text
//! forward   ext [Cout, ne]          = sum_t W_t @ xp[:, off(t) ..]           y = crop(ext) + bias
//! input     dxp[:, off(t) ..]      += W_t^T @ dy_ext   (every t)             dx = crop(dxp)
//! weight    dW[:, :, ky, kx]       += dy_ext @ xp[:, off(t) ..]^T
//! ```
//!
//! Only the first `ne = (m - 1) * P + (Ho - 1) * Wp + Wo` extended columns are computed (the
//! last valid output), so the largest read, `ne - 1 + off(k*k - 1)`, is `ld - 1`: no tail is
//! needed. Extended columns with `y >= Ho` or `x >= Wo` straddle a border; the forward pass
//! drops them, and `dy_ext` (the output gradient scattered into extended columns) holds
//! zeros there, so they add nothing to either gradient. The input gradient's shift goes the
//! other way: the tap adds into `dxp` at `q + off(t)` what output `q` sends back; the
//! entries of `dxp` on padding are dropped by the crop.
//!
//! The cost over im2col: `ne / (m * Ho * Wo)` times the GEMM columns (1.13 at 32x32 with
//! 3x3 padding 1, 1.56 at 8x8) and `k*k` GEMMs with an inner dimension `C` instead of one
//! with `C*k*k`; the gain: no `C*k*k`-row column matrix is written and read back.
//!
//! `conv::tests::path_timings` times both paths on the WRN layers; its measurements, and
//! the rule [`preferred`] draws from them, are in `BENCHMARKS.md` ("Measurements behind
//! the kernels' choices").

use gemm::Parallelism;

use super::geometry::ConvGeometry;
use super::matmul::{View, gemm_view};
use crate::simd;

/// Whether the shifted path can compute this convolution (stride 1; a 1x1 convolution
/// without padding is its own column matrix already).
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.stride == 1 && !g.pointwise() && g.square().is_some()
}

/// The kernel size and padding of a geometry the shifted path applies to (square).
fn kp(g: &ConvGeometry) -> (usize, usize) {
    (g.kernel[0], g.padding[0])
}

/// Whether the shifted path is the faster one: it wins while the GEMMs are small enough for
/// the column matrix's traffic to matter, `8 <= C <= 64` (rows of the column matrix
/// 72-576), and loses with one input channel (`k*k` GEMMs with an inner dimension of 1) and
/// from 128 channels on, where the GEMMs dominate and the border columns add to them
/// (`conv::tests::path_timings`; the timings are in `BENCHMARKS.md`).
pub(super) fn preferred(g: &ConvGeometry) -> bool {
    applies(g) && (72..=576).contains(&g.rows())
}

/// The layout of a group of `m` padded images (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(super) struct Padded {
    /// Padded height and width.
    hp: usize,
    wp: usize,
    /// Output height and width.
    ho: usize,
    wo: usize,
    /// Images in the group.
    m: usize,
    /// Row stride of `xp`, `dxp` and the extended output, `m * Hp * Wp`.
    pub(super) ld: usize,
    /// Extended columns computed, up to the last valid output.
    ne: usize,
}

impl Padded {
    pub(super) fn new(g: &ConvGeometry, m: usize) -> Self {
        let [_, _, h, w] = g.input;
        let p = kp(g).1;
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let (ho, wo) = g.output_hw();
        let ld = m * hp * wp;
        Padded {
            hp,
            wp,
            ho,
            wo,
            m,
            ld,
            ne: (m - 1) * hp * wp + (ho - 1) * wp + wo,
        }
    }

    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// Column offset of the kernel tap `t = ky * k + kx`.
    fn offset(&self, g: &ConvGeometry, t: usize) -> usize {
        let k = kp(g).0;
        t / k * self.wp + t % k
    }
}

/// The `[C, C']` slice of `W [Cout, C, k, k]` at tap `t`, as `W_t` or its transpose.
fn tap<'a>(g: &ConvGeometry, w: &'a [f32], t: usize, transposed: bool) -> View<'a> {
    let (cout, c, kk) = (g.out_channels, g.input[1], kp(g).0 * kp(g).0);
    let (rows, cols, rs, cs) = if transposed {
        (c, cout, kk, c * kk)
    } else {
        (cout, c, c * kk, kk)
    };
    View {
        data: &w[t..],
        rows,
        cols,
        rs,
        cs,
    }
}

/// Writes the `m` images `xg [m, C, H, W]` into `xp [C, ld]`, padding included.
pub(super) fn pad_images(g: &ConvGeometry, pl: &Padded, xg: &[f32], xp: &mut [f32]) {
    let [_, c, h, w] = g.input;
    let (p, wp) = (kp(g).1, pl.wp);
    for ci in 0..c {
        for j in 0..pl.m {
            let block = &mut xp[ci * pl.ld + j * pl.plane()..][..pl.plane()];
            let src = &xg[(j * c + ci) * h * w..][..h * w];
            block[..p * wp + p].fill(0.0);
            for (y, row) in src.chunks_exact(w).enumerate() {
                let at = (y + p) * wp + p;
                block[at..at + w].copy_from_slice(row);
                // the right padding of this row and the left padding of the next
                let next = (at + w + 2 * p).min(block.len());
                block[at + w..next].fill(0.0);
            }
            block[(h + p) * wp..].fill(0.0);
        }
    }
}

/// Writes `dyg [m, Cout, Ho, Wo]` into the extended columns `dy_ext [Cout, ld]` (first `ne`
/// columns of each row), zeros on the columns that are no output.
fn scatter_dy(g: &ConvGeometry, pl: &Padded, dyg: &[f32], ext: &mut [f32]) {
    let (cout, l) = (g.out_channels, pl.ho * pl.wo);
    for co in 0..cout {
        let row = &mut ext[co * pl.ld..][..pl.ne];
        for j in 0..pl.m {
            let start = j * pl.plane();
            let block = &mut row[start..(start + pl.plane()).min(pl.ne)];
            let src = &dyg[(j * cout + co) * l..][..l];
            for (y, r) in src.chunks_exact(pl.wo).enumerate() {
                let d = &mut block[y * pl.wp..];
                let end = pl.wp.min(d.len());
                d[..pl.wo].copy_from_slice(r);
                d[pl.wo..end].fill(0.0);
            }
            let tail = (pl.ho * pl.wp).min(block.len());
            block[tail..].fill(0.0);
        }
    }
}

/// `yg [m, Cout, Ho, Wo] += conv(xg)` (`yg` holds the bias), with scratch `xp [C * ld]` and
/// `ext [Cout * ld]`.
pub(super) fn forward(
    g: &ConvGeometry,
    w: &[f32],
    xg: &[f32],
    yg: &mut [f32],
    (xp, ext): (&mut [f32], &mut [f32]),
    par: Parallelism,
) {
    let (c, cout) = (g.input[1], g.out_channels);
    let pl = Padded::new(g, xg.len() / g.image_len());
    pad_images(g, &pl, xg, xp);
    for t in 0..kp(g).0 * kp(g).0 {
        let xv = View {
            data: &xp[pl.offset(g, t)..],
            rows: c,
            cols: pl.ne,
            rs: pl.ld,
            cs: 1,
        };
        gemm_view(ext, (pl.ld, 1), tap(g, w, t, false), xv, t > 0, par);
    }
    let l = pl.ho * pl.wo;
    for j in 0..pl.m {
        for co in 0..cout {
            let dst = &mut yg[(j * cout + co) * l..][..l];
            let src = &ext[co * pl.ld + j * pl.plane()..];
            for (y, r) in dst.chunks_exact_mut(pl.wo).enumerate() {
                simd::add_assign(r, &src[y * pl.wp..][..pl.wo]);
            }
        }
    }
}

/// `dxg [m, C, H, W] = conv^T(dyg)` (every entry written), with scratch `dxp [C * ld]` and
/// `ext [Cout * ld]`.
pub(super) fn input_grad(
    g: &ConvGeometry,
    w: &[f32],
    dyg: &[f32],
    dxg: &mut [f32],
    (dxp, ext): (&mut [f32], &mut [f32]),
    par: Parallelism,
) {
    let [_, c, h, wd] = g.input;
    let cout = g.out_channels;
    let pl = Padded::new(g, dxg.len() / g.image_len());
    scatter_dy(g, &pl, dyg, ext);
    let dv = View {
        data: ext,
        rows: cout,
        cols: pl.ne,
        rs: pl.ld,
        cs: 1,
    };
    // tap 0 (offset 0) writes columns `..ne` of every row; the rest of each row starts at 0
    for ci in 0..c {
        dxp[ci * pl.ld + pl.ne..(ci + 1) * pl.ld].fill(0.0);
    }
    for t in 0..kp(g).0 * kp(g).0 {
        let off = pl.offset(g, t);
        gemm_view(
            &mut dxp[off..],
            (pl.ld, 1),
            tap(g, w, t, true),
            dv,
            t > 0,
            par,
        );
    }
    let p = kp(g).1;
    for j in 0..pl.m {
        for ci in 0..c {
            let dst = &mut dxg[(j * c + ci) * h * wd..][..h * wd];
            let src = &dxp[ci * pl.ld + j * pl.plane()..];
            for (y, r) in dst.chunks_exact_mut(wd).enumerate() {
                r.copy_from_slice(&src[(y + p) * pl.wp + p..][..wd]);
            }
        }
    }
}

/// `acc [Cout, C, k, k] += dW` of one group, with scratch `xp [C * ld]` and `ext [Cout * ld]`.
pub(super) fn weight_grad(
    g: &ConvGeometry,
    xg: &[f32],
    dyg: &[f32],
    acc: &mut [f32],
    (xp, ext): (&mut [f32], &mut [f32]),
    par: Parallelism,
) {
    let (c, cout, kk) = (g.input[1], g.out_channels, kp(g).0 * kp(g).0);
    let pl = Padded::new(g, xg.len() / g.image_len());
    pad_images(g, &pl, xg, xp);
    scatter_dy(g, &pl, dyg, ext);
    let dv = View {
        data: ext,
        rows: cout,
        cols: pl.ne,
        rs: pl.ld,
        cs: 1,
    };
    for t in 0..kk {
        let xt = View {
            data: &xp[pl.offset(g, t)..],
            rows: pl.ne,
            cols: c,
            rs: 1,
            cs: pl.ld,
        };
        gemm_view(&mut acc[t..], (c * kk, kk), dv, xt, true, par);
    }
}
