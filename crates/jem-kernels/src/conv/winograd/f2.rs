//! The transforms of Winograd's F(2x2, 3x3): 2x2 output tiles from 4x4 input patches, 16
//! positions, coefficients 0, +-1 and 1/2.
//!
//! Both data transforms are written over whole rows of tiles: the columns of the (zero-padded)
//! input rows are split into even and odd ones, after which every term of `B^T d B` is a
//! contiguous, vectorizable row operation, and likewise for `A^T M A`.

use std::mem::MaybeUninit;

use super::super::geometry::ConvGeometry;
use super::tiling;
use crate::simd::multiversion;

/// F(2x2, 3x3).
pub(crate) struct F2;

tiling!(F2, M = 2, GROUP_TILES = 128, G = g3, GT = gt4);

/// Tiles per image: `ceil(H / 2) x ceil(W / 2)`.
fn tiles(g: &ConvGeometry) -> (usize, usize) {
    super::tiles::<F2>(g)
}

/// `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]` applied to three values.
#[inline(always)]
fn g3([a, b, d]: [f32; 3]) -> [f32; 4] {
    [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d]
}

/// `G^T` applied to four values.
#[inline(always)]
fn gt4([x0, x1, x2, x3]: [f32; 4]) -> [f32; 3] {
    [x0 + 0.5 * (x1 + x2), 0.5 * (x1 - x2), 0.5 * (x1 + x2) + x3]
}

multiversion! {
    /// `V [16, C, T]` (row stride `ld`, plane stride `ps`, tiles of image `j` from column `j * th * tw`) from the
    /// images `xg [m, C, H, W]`: `V = B^T d B` on each 4x4 patch of the input padded by 1, with
    /// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
    fn transform_input(g: &ConvGeometry, xg: &[f32], v: &mut [f32], strides: (usize, usize)) {
        let (ld, ps) = strides;
        let [_, c, h, w] = g.input;
        let (th, tw) = tiles(g);
        let m = xg.len() / (c * h * w);
        // the even and odd columns of the padded rows 0..2*th+2 of one channel
        let (rows, cols) = (2 * th + 2, tw + 1);
        let mut even = vec![0f32; rows * cols];
        let mut odd = vec![0f32; rows * cols];
        let mut comb = vec![0f32; 8 * cols];
        for j in 0..m {
            for ci in 0..c {
                let plane = &xg[(j * c + ci) * h * w..][..h * w];
                // padded row y + 1, padded column x + 1: x = 2k goes to odd[k], x = 2k + 1 to
                // even[k + 1]; the padding (row 0, rows past h, even[0], the last column or two)
                // is never written, so it stays zero from the allocation
                for (y, src) in plane.chunks_exact(w).enumerate() {
                    let (e, o) = (&mut even[(y + 1) * cols..], &mut odd[(y + 1) * cols..]);
                    let pairs = src.chunks_exact(2);
                    if let [last] = pairs.remainder() {
                        o[w / 2] = *last;
                    }
                    for ((pair, od), ev) in pairs.zip(o.iter_mut()).zip(e[1..].iter_mut()) {
                        *od = pair[0];
                        *ev = pair[1];
                    }
                }
                for ty in 0..th {
                    let r = |k: usize| (2 * ty + k) * cols..(2 * ty + k + 1) * cols;
                    // B^T d: four row combinations, on the even and the odd columns
                    let (ce, co) = comb.split_at_mut(4 * cols);
                    for (half, out) in [(&even, ce), (&odd, co)] {
                        let (d0, d1, d2, d3) = (&half[r(0)], &half[r(1)], &half[r(2)], &half[r(3)]);
                        let (o0, rest) = out.split_at_mut(cols);
                        let (o1, rest) = rest.split_at_mut(cols);
                        let (o2, o3) = rest.split_at_mut(cols);
                        let d = d0.iter().zip(d1).zip(d2).zip(d3);
                        let o = o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(o3);
                        for ((((a, b), c), e), (((p, q), r), t)) in d.zip(o) {
                            *p = a - c;
                            *q = b + c;
                            *r = c - b;
                            *t = b - e;
                        }
                    }
                    // (B^T d) B: columns 2tx..2tx+4 are even[tx], odd[tx], even[tx+1], odd[tx+1]
                    let col0 = j * th * tw + ty * tw;
                    for i in 0..4 {
                        let (e, o) = (&comb[i * cols..][..cols], &comb[(4 + i) * cols..][..cols]);
                        let base = |p: usize| p * ps + ci * ld + col0;
                        let (b0, b1, b2, b3) = (
                            base(4 * i),
                            base(4 * i + 1),
                            base(4 * i + 2),
                            base(4 * i + 3),
                        );
                        let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..]);
                        let rows = [(b0, e0, e1, -1.0), (b1, o0, e1, 1.0), (b2, e1, o0, -1.0)];
                        for (b, x, y, sign) in rows {
                            for (d, (p, q)) in v[b..b + tw].iter_mut().zip(x.iter().zip(y)) {
                                *d = p + sign * q;
                            }
                        }
                        for (d, (p, q)) in v[b3..b3 + tw].iter_mut().zip(o0.iter().zip(o1)) {
                            *d = p - q;
                        }
                    }
                }
            }
        }
    }
}

multiversion! {
    /// `yg [m, Cout, H, W] = A^T M A + bias` from `M [16, Cout, T]` (row stride `ld`, plane
    /// stride `ps`), with `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`, every element written;
    /// outputs past the image's edge are dropped.
    fn transform_output(
        g: &ConvGeometry,
        mm: &[f32],
        strides: (usize, usize),
        bias: &[f32],
        yg: &mut [MaybeUninit<f32>],
    ) {
        let (ld, ps) = strides;
        let [_, _, h, w] = g.input;
        let cout = g.out_channels;
        let (th, tw) = tiles(g);
        let m = yg.len() / (cout * h * w);
        // s0 and s1 (four rows of tw each), then the even and odd output columns
        let mut s = vec![0f32; 8 * tw];
        let mut eo = vec![0f32; 2 * tw];
        for j in 0..m {
            for co in 0..cout {
                let plane = &mut yg[(j * cout + co) * h * w..][..h * w];
                for ty in 0..th {
                    let col0 = j * th * tw + ty * tw;
                    let row = |p: usize| &mm[p * ps + co * ld + col0..][..tw];
                    // A^T M: s0 = M0 + M1 + M2, s1 = M1 - M2 - M3 (rows of four, per column q)
                    let (s0, s1) = s.split_at_mut(4 * tw);
                    for q in 0..4 {
                        let (m0, m1, m2, m3) = (row(q), row(4 + q), row(8 + q), row(12 + q));
                        let m = m0.iter().zip(m1).zip(m2).zip(m3);
                        let out = s0[q * tw..][..tw].iter_mut().zip(&mut s1[q * tw..][..tw]);
                        for ((((a, b), c), d), (x, y)) in m.zip(out) {
                            *x = a + b + c;
                            *y = b - c - d;
                        }
                    }
                    // (A^T M) A: columns y = s[0] + s[1] + s[2], s[1] - s[2] - s[3]
                    for r in 0..2.min(h - 2 * ty) {
                        let sr = &s[4 * r * tw..][..4 * tw];
                        let (q0, rest) = sr.split_at(tw);
                        let (q1, rest) = rest.split_at(tw);
                        let (q2, q3) = rest.split_at(tw);
                        let (ev, od) = eo.split_at_mut(tw);
                        let q = q0.iter().zip(q1).zip(q2).zip(q3);
                        for ((((a, b), c), d), (x, y)) in q.zip(ev.iter_mut().zip(od.iter_mut())) {
                            *x = a + b + c;
                            *y = b - c - d;
                        }
                        let out = &mut plane[(2 * ty + r) * w..][..w];
                        let mut pairs = out.chunks_exact_mut(2);
                        let b = bias[co];
                        for (pair, (x, y)) in (&mut pairs).zip(ev.iter().zip(od.iter())) {
                            pair[0].write(x + b);
                            pair[1].write(y + b);
                        }
                        if let [last] = pairs.into_remainder() {
                            last.write(ev[w / 2] + b);
                        }
                    }
                }
            }
        }
    }
}

multiversion! {
    /// `dM [16, Cout, T]` (row stride `ld`, plane stride `ps`) from `dyg [m, Cout, H, W]`: the adjoint of
    /// `transform_output`, `dM = A dY A^T` on each 2x2 tile of `dy` (zeros past the image's
    /// edge), with `A = [[1, 0], [1, 1], [1, -1], [0, -1]]`.
    fn transform_dy(g: &ConvGeometry, dyg: &[f32], dm: &mut [f32], strides: (usize, usize)) {
        let (ld, ps) = strides;
        let [_, _, h, w] = g.input;
        let cout = g.out_channels;
        let (th, tw) = tiles(g);
        let m = dyg.len() / (cout * h * w);
        // the even and odd columns of the tile's two rows, then one row combination of them
        let mut eo = vec![0f32; 4 * tw];
        let mut rc = vec![0f32; 2 * tw];
        for j in 0..m {
            for co in 0..cout {
                let plane = &dyg[(j * cout + co) * h * w..][..h * w];
                for ty in 0..th {
                    eo.fill(0.0);
                    for r in 0..2.min(h - 2 * ty) {
                        let src = &plane[(2 * ty + r) * w..][..w];
                        let (e, o) = eo[2 * r * tw..(2 * r + 2) * tw].split_at_mut(tw);
                        let pairs = src.chunks_exact(2);
                        if let [last] = pairs.remainder() {
                            e[w / 2] = *last;
                        }
                        for (pair, (ev, od)) in pairs.zip(e.iter_mut().zip(o.iter_mut())) {
                            *ev = pair[0];
                            *od = pair[1];
                        }
                    }
                    let (d0, d1) = eo.split_at(2 * tw);
                    let col0 = j * th * tw + ty * tw;
                    for i in 0..4 {
                        // A dY: row i is d0, d0 + d1, d0 - d1 or -d1 (even and odd columns)
                        let (a, b) = [(1.0, 0.0), (1.0, 1.0), (1.0, -1.0), (0.0, -1.0)][i];
                        for ((out, x), y) in rc.iter_mut().zip(d0).zip(d1) {
                            *out = a * x + b * y;
                        }
                        // (A dY) A^T: x0, x0 + x1, x0 - x1, -x1 (x0 even, x1 odd column)
                        let (x0, x1) = rc.split_at(tw);
                        let base = |q: usize| (4 * i + q) * ps + co * ld + col0;
                        let (b0, b1, b2, b3) = (base(0), base(1), base(2), base(3));
                        for tx in 0..tw {
                            dm[b0 + tx] = x0[tx];
                            dm[b1 + tx] = x0[tx] + x1[tx];
                            dm[b2 + tx] = x0[tx] - x1[tx];
                            dm[b3 + tx] = -x1[tx];
                        }
                    }
                }
            }
        }
    }
}
