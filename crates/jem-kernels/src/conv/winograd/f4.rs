//! The transforms of Winograd's F(4x4, 3x3): 4x4 output tiles from 6x6 input patches, 36
//! positions, with the interpolation points 0, +-1, +-2 and infinity of Lavin & Gray (2016):
//!
//! ```text
//! B^T = [ 4  0 -5  0  1  0 ]     G = [  1/4     0     0  ]     A^T = [ 1  1  1  1  1  0 ]
//!       [ 0 -4 -4  1  1  0 ]         [ -1/6  -1/6  -1/6  ]           [ 0  1 -1  2 -2  0 ]
//!       [ 0  4 -4 -1  1  0 ]         [ -1/6   1/6  -1/6  ]           [ 0  1  1  4  4  0 ]
//!       [ 0 -2 -1  2  1  0 ]         [ 1/24  1/12   1/6  ]           [ 0  1 -1  8 -8  1 ]
//!       [ 0  2 -1 -2  1  0 ]         [ 1/24 -1/12   1/6  ]
//!       [ 0  4  0 -5  0  1 ]         [    0     0     1  ]
//! ```
//!
//! The data transforms work on one channel of a whole group of images at a time. The input
//! transform applies `B^T` to six whole input rows per row of tiles, splits each combined row
//! into the columns `4 tx + k` of its tiles (`simd::Shuffles`, AVX2 shuffles), and then
//! applies `B` to rows of `T` values, one per tile of the group; the output and `dy`
//! transforms run both 1-D transforms on rows of `T` values and (de)interleave the tiles'
//! four columns at the image's rows. Every 1-D transform is thus a contiguous, vectorizable
//! operation on whole rows.

use std::mem::MaybeUninit;

use super::super::geometry::ConvGeometry;
use super::rows::blockwise;
use super::tiling;
use crate::simd::{Shuffles, multiversion, prefetch_all};

/// F(4x4, 3x3).
pub(crate) struct F4;

tiling!(F4, M = 4, GROUP_TILES = 128, G = g3, GT = gt6);

/// Tiles per image: `ceil(H / 4) x ceil(W / 4)`.
fn tiles(g: &ConvGeometry) -> (usize, usize) {
    super::tiles::<F4>(g)
}

/// Four rows of `len` values of `buf`, `stride >= len` apart from `start`. (These helpers
/// spell out their arrays: built with `array::map` or `from_fn`, the closures stayed out of
/// line in the vectorized transforms.)
#[inline(always)]
fn rows4(buf: &[f32], start: usize, stride: usize, len: usize) -> [&[f32]; 4] {
    let b = &buf[start..];
    [
        &b[..len],
        &b[stride..][..len],
        &b[2 * stride..][..len],
        &b[3 * stride..][..len],
    ]
}

/// Six rows, as [`rows4`].
#[inline(always)]
fn rows6(buf: &[f32], start: usize, stride: usize, len: usize) -> [&[f32]; 6] {
    let b = &buf[start..];
    let [r0, r1, r2, r3] = rows4(b, 0, stride, len);
    [
        r0,
        r1,
        r2,
        r3,
        &b[4 * stride..][..len],
        &b[5 * stride..][..len],
    ]
}

/// Four disjoint mutable rows, as [`rows4`].
#[inline(always)]
fn rows4_mut(buf: &mut [f32], start: usize, stride: usize, len: usize) -> [&mut [f32]; 4] {
    let (r0, b) = buf[start..].split_at_mut(stride);
    let (r1, b) = b.split_at_mut(stride);
    let (r2, r3) = b.split_at_mut(stride);
    [
        &mut r0[..len],
        &mut r1[..len],
        &mut r2[..len],
        &mut r3[..len],
    ]
}

/// Six disjoint mutable rows, as [`rows4`].
#[inline(always)]
fn rows6_mut(buf: &mut [f32], start: usize, stride: usize, len: usize) -> [&mut [f32]; 6] {
    let (r01, b) = buf[start..].split_at_mut(2 * stride);
    let (r0, r1) = r01.split_at_mut(stride);
    let [r2, r3, r4, r5] = rows4_mut(b, 0, stride, len);
    [&mut r0[..len], &mut r1[..len], r2, r3, r4, r5]
}

/// `B^T` applied to six values.
#[inline(always)]
fn bt6([d0, d1, d2, d3, d4, d5]: [f32; 6]) -> [f32; 6] {
    let (s12, s34) = (d1 + d2, d3 + d4);
    let (t12, t43) = (d1 - d2, d4 - d3);
    let (u13, u42) = (d1 - d3, d4 - d2);
    [
        4.0 * d0 - 5.0 * d2 + d4,
        s34 - 4.0 * s12,
        t43 + 4.0 * t12,
        u42 - 2.0 * u13,
        u42 + 2.0 * u13,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// `o = B^T x`, element-wise over rows of values ([`blockwise`]).
#[inline(always)]
fn bt(x: [&[f32]; 6], o: [&mut [f32]; 6]) {
    blockwise(x, o, bt6)
}

/// `A^T` applied to six values.
#[inline(always)]
fn at6([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 4] {
    let (s12, s34, t12, t34) = (m1 + m2, m3 + m4, m1 - m2, m3 - m4);
    [
        m0 + s12 + s34,
        t12 + 2.0 * t34,
        s12 + 4.0 * s34,
        t12 + 8.0 * t34 + m5,
    ]
}

/// `o = A^T x`, element-wise over rows of values ([`blockwise`]).
#[inline(always)]
fn at(x: [&[f32]; 6], o: [&mut [f32]; 4]) {
    blockwise(x, o, at6)
}

/// `A` applied to four values.
#[inline(always)]
fn a4([g0, g1, g2, g3]: [f32; 4]) -> [f32; 6] {
    let (e02, o13) = (g0 + g2, g1 + g3);
    let (e4, o8) = (g0 + 4.0 * g2, 2.0 * g1 + 8.0 * g3);
    [g0, e02 + o13, e02 - o13, e4 + o8, e4 - o8, g3]
}

/// `o = A x` (the adjoint of [`at`]), element-wise over rows of values ([`blockwise`]).
#[inline(always)]
fn a(x: [&[f32]; 4], o: [&mut [f32]; 6]) {
    blockwise(x, o, a4)
}

/// `G` applied to three values.
#[inline(always)]
fn g3([a, b, d]: [f32; 3]) -> [f32; 6] {
    let (ad, edge) = (a + d, a / 24.0 + d / 6.0);
    [
        a / 4.0,
        -(ad + b) / 6.0,
        -(ad - b) / 6.0,
        edge + b / 12.0,
        edge - b / 12.0,
        d,
    ]
}

/// `G^T` applied to six values.
#[inline(always)]
fn gt6([x0, x1, x2, x3, x4, x5]: [f32; 6]) -> [f32; 3] {
    let (s12, s34) = (x1 + x2, x3 + x4);
    [
        x0 / 4.0 - s12 / 6.0 + s34 / 24.0,
        (x2 - x1) / 6.0 + (x3 - x4) / 12.0,
        (s34 - s12) / 6.0 + x5,
    ]
}

multiversion! {
    /// `V [36, C, T]` (row stride `ld`, plane stride `ps`) from the images `xg [m, C, H, W]`: `V = B^T d B` on
    /// each 6x6 patch of the input padded by 1 (patch `(ty, tx)` from padded row `4 ty` and
    /// column `4 tx`). Per channel and row of tiles, `B^T` combines six whole input rows; each
    /// combined row is split into the six columns `4 tx + k` of all its tiles (four phases,
    /// two of them again shifted by one tile), and `B` then runs over all the group's tiles.
    fn transform_input(g: &ConvGeometry, xg: &[f32], v: &mut [f32], strides: (usize, usize)) {
        let (ld, ps) = strides;
        let sh = Shuffles::detect();
        let [_, c, h, w] = g.input;
        let (th, tw) = tiles(g);
        let m = xg.len() / (c * h * w);
        let t = m * th * tw;
        let pw = 4 * tw + 4;
        let zeros = vec![0f32; w];
        // six combined rows (column 0 and those past w stay zero), then the gathered columns
        // d [i * 6 + k][tile] of the combined rows
        let mut comb = vec![0f32; 6 * pw];
        let mut d = vec![0f32; 36 * t];
        let mut spare = vec![0f32; 2 * tw];
        for ci in 0..c {
            for j in 0..m {
                let plane = &xg[(j * c + ci) * h * w..][..h * w];
                // the plane after this one (the next image, else the next channel's first)
                let next = (if j + 1 < m { (j + 1) * c + ci } else { ci + 1 }) * h * w;
                for ty in 0..th {
                    // fetch the rows of the next plane that the next plane's pass at this tile
                    // row reads first, one plane (a few KB) ahead: the images come from memory
                    // and these machines' hardware prefetchers do not keep up (see simd::prefetch)
                    let rows = next + 4 * ty * w..next + (4 * ty + 4).min(h) * w;
                    if let Some(ahead) = xg.get(rows) {
                        prefetch_all(ahead);
                    }
                    // padded row 4 ty + r: image row 4 ty + r - 1, or zeros
                    let row = |r: usize| match 4 * ty + r {
                        y if y == 0 || y > h => &zeros[..],
                        y => &plane[(y - 1) * w..][..w],
                    };
                    let src = [row(0), row(1), row(2), row(3), row(4), row(5)];
                    bt(src, rows6_mut(&mut comb, 1, pw, w));
                    let col0 = j * th * tw + ty * tw;
                    for (i, row) in comb.chunks_exact(pw).enumerate() {
                        let at = |k: usize| (i * 6 + k) * t + col0;
                        sh.deinterleave4(row, rows4_mut(&mut d, at(0), t, tw));
                        // columns 4 tx + 4 and 4 tx + 5: phases 0 and 1 of the row from
                        // column 4 (one more vector split instead of two short memmoves,
                        // which showed in the real job's profile)
                        let (c4, c5) = d[at(4)..].split_at_mut(t);
                        let (s6, s7) = spare.split_at_mut(tw);
                        sh.deinterleave4(&row[4..4 + 4 * tw], [&mut c4[..tw], &mut c5[..tw], s6, s7]);
                    }
                }
            }
            for i in 0..6 {
                let x = rows6(&d, i * 6 * t, t, t);
                bt(x, rows6_mut(v, i * 6 * ps + ci * ld, ps, t));
            }
        }
    }
}

multiversion! {
    /// `yg [m, Cout, H, W] = A^T M A + bias` from `M [36, Cout, T]` (row stride `ld`, plane
    /// stride `ps`), every element written; outputs past the image's edge are dropped.
    fn transform_output(
        g: &ConvGeometry,
        mm: &[f32],
        strides: (usize, usize),
        bias: &[f32],
        yg: &mut [MaybeUninit<f32>],
    ) {
        let (ld, ps) = strides;
        let sh = Shuffles::detect();
        let [_, _, h, w] = g.input;
        let cout = g.out_channels;
        let (th, tw) = tiles(g);
        let m = yg.len() / (cout * h * w);
        let t = m * th * tw;
        // the row pass s [q * 4 + i][tile], the outputs o [i * 4 + jj][tile], one output row
        let mut s = vec![0f32; 24 * t];
        let mut o = vec![0f32; 16 * t];
        let mut orow = vec![0f32; 4 * tw];
        for co in 0..cout {
            for q in 0..6 {
                let x = rows6(mm, q * ps + co * ld, 6 * ps, t);
                at(x, rows4_mut(&mut s, q * 4 * t, t, t));
            }
            for i in 0..4 {
                let x = rows6(&s, i * t, 4 * t, t);
                at(x, rows4_mut(&mut o, i * 4 * t, t, t));
            }
            for j in 0..m {
                let plane = &mut yg[(j * cout + co) * h * w..][..h * w];
                for ty in 0..th {
                    let col0 = j * th * tw + ty * tw;
                    for i in 0..4.min(h - 4 * ty) {
                        sh.interleave4(rows4(&o, i * 4 * t + col0, t, tw), &mut orow);
                        let dst = &mut plane[(4 * ty + i) * w..][..w];
                        for (y, val) in dst.iter_mut().zip(&orow) {
                            y.write(val + bias[co]);
                        }
                    }
                }
            }
        }
    }
}

multiversion! {
    /// `dM [36, Cout, T]` (row stride `ld`, plane stride `ps`) from `dyg [m, Cout, H, W]`: the adjoint of
    /// `transform_output`, `dM = A dY A^T` on each 4x4 tile of `dy` (zeros past the image's
    /// edge).
    fn transform_dy(g: &ConvGeometry, dyg: &[f32], dm: &mut [f32], strides: (usize, usize)) {
        let (ld, ps) = strides;
        let sh = Shuffles::detect();
        let [_, _, h, w] = g.input;
        let cout = g.out_channels;
        let (th, tw) = tiles(g);
        let m = dyg.len() / (cout * h * w);
        let t = m * th * tw;
        // one dy row (zeros past w), the gathered tiles gt [i * 4 + jj][tile] and the row
        // pass n [jj * 6 + r][tile]
        let mut prow = vec![0f32; 4 * tw];
        let mut gt = vec![0f32; 16 * t];
        let mut n = vec![0f32; 24 * t];
        for co in 0..cout {
            for j in 0..m {
                let plane = &dyg[(j * cout + co) * h * w..][..h * w];
                for ty in 0..th {
                    let col0 = j * th * tw + ty * tw;
                    for i in 0..4 {
                        let y = 4 * ty + i;
                        if y >= h {
                            for jj in 0..4 {
                                gt[(i * 4 + jj) * t + col0..][..tw].fill(0.0);
                            }
                            continue;
                        }
                        let dst = rows4_mut(&mut gt, i * 4 * t + col0, t, tw);
                        if w == 4 * tw {
                            sh.deinterleave4(&plane[y * w..][..w], dst);
                        } else {
                            prow[..w].copy_from_slice(&plane[y * w..][..w]);
                            sh.deinterleave4(&prow, dst);
                        }
                    }
                }
            }
            for jj in 0..4 {
                let x = rows4(&gt, jj * t, 4 * t, t);
                a(x, rows6_mut(&mut n, jj * 6 * t, t, t));
            }
            for r in 0..6 {
                let x = rows4(&n, r * t, 6 * t, t);
                a(x, rows6_mut(dm, r * 6 * ps + co * ld, ps, t));
            }
        }
    }
}
