//! 3x3 stride-1 convolutions with padding 1 by Winograd's minimal filtering F(2x2, 3x3).
//!
//! Each 2x2 block of outputs ("tile") of one channel pair is computed from the 4x4 input patch
//! around it with 16 products instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2016):
//!
//! ```text
//! U = G g G^T  (per kernel)      V = B^T d B  (per input patch)      y = A^T (sum_c U . V) A
//! ```
//!
//! With the 16 positions `p` of the transformed 4x4 patch as the outer loop, the channel sum
//! is one GEMM per position, `M_p [Cout, T] = U_p [Cout, C] @ V_p [C, T]` over the `T` tiles of
//! a group of images, so the multiply-adds drop from `9 * Cout * C` to `4 * Cout * C` per
//! output pixel (2.25x) at the price of the transforms, linear passes over the input (4x its
//! size in `V`) and the output. The transforms' coefficients are 0, +-1 and 1/2, so the
//! result differs from the direct sum only by rounding (a few f32 ulps of the largest
//! terms). The input gradient of such a convolution is another one (the kernel flipped, its
//! channel axes swapped), so it runs here too; the weight gradient is the adjoint of the
//! forward pass: `dU_p = dM_p @ V_p^T` with `dM = A dY A^T`, then `dW = G^T dU G`.
//!
//! `conv::tests::path_timings` on the WRN layers (2-core AMD EPYC, AVX2, ms forward /
//! backward with both gradients, min of 5; one run, the machine noisy to about 20 %):
//!
//! ```text
//! layer (3x3, pad 1)           im2col           shifted          Winograd
//! n32 c64  32x32 -> 64        22.88 / 63.70    18.51 / 59.01    15.19 / 53.26
//! n32 c128 16x16 -> 128       18.98 / 56.39    23.67 / 55.99    14.21 / 44.00
//! n32 c256  8x8  -> 256       26.29 / 42.30    27.25 / 57.01    17.85 / 41.51
//! n8  c160 32x32 -> 160       34.86 / 85.53    29.91 / 79.52    16.18 / 45.47
//! n8  c320 16x16 -> 320       23.54 / 68.96    34.89 / 91.64    25.03 / 55.15
//! n8  c640  8x8  -> 640       24.18 / 83.66    40.93 /110.11    63.44 /114.40
//! ```
//!
//! The last layer (one group of 128 tiles) runs its transforms on one thread, so
//! [`preferred`] asks for two groups.
//!
//! Both transforms are written over whole rows of tiles: the columns of the (zero-padded)
//! input rows are split into even and odd ones, after which every term of `B^T d B` is a
//! contiguous, vectorizable row operation, and likewise for `A^T M A`.

use gemm::Parallelism;
use rayon::prelude::*;

use super::backward::sum_over_groups;
use super::geometry::ConvGeometry;
use super::inner_parallelism;
use super::matmul::{Mat, matmul, par_vec, with_scratch};
use crate::simd::multiversion;

/// Whether Winograd F(2x2, 3x3) computes this convolution: 3x3, stride 1, padding 1, and
/// enough input channels for the per-position GEMMs to be worth it (the stem's 1-3 channels
/// keep im2col).
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.k == 3 && g.stride == 1 && g.padding == 1 && g.input[1] >= 8 && g.out_channels >= 8
}

/// Whether Winograd is the faster path (`conv::tests::path_timings`): it applies, and the
/// batch has at least two groups of tiles, so that the transforms run in parallel (a single
/// group, as WRN-28-10's 8x8 stage at batch 8, measured twice as slow as im2col).
pub(super) fn preferred(g: &ConvGeometry) -> bool {
    let (th, tw) = tiles(g);
    applies(g) && g.input[0] * th * tw >= 2 * GROUP_TILES
}

/// Tiles per image: `ceil(H / 2) x ceil(W / 2)`.
fn tiles(g: &ConvGeometry) -> (usize, usize) {
    let [_, _, h, w] = g.input;
    (h.div_ceil(2), w.div_ceil(2))
}

/// Tiles a group of images should at least have (measured: 128 beats 256 and 1024 on the
/// WRN layers, the per-position GEMMs of a group staying in the caches).
const GROUP_TILES: usize = 128;

/// Images per group: enough for [`GROUP_TILES`] tiles.
fn group_size(g: &ConvGeometry) -> usize {
    let (th, tw) = tiles(g);
    GROUP_TILES.div_ceil(th * tw).clamp(1, g.input[0].max(1))
}

/// `U [16, Cout, C]` from `W [Cout, C, 3, 3]`: `U = G g G^T` with
/// `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`. The 16 planes are
/// computed in parallel (a wide layer's `U` is tens of MB).
fn transform_kernel(w: &[f32], cout: usize, c: usize) -> Vec<f32> {
    /// `G` applied to three values.
    fn g3([a, b, d]: [f32; 3]) -> [f32; 4] {
        [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d]
    }
    // the 16 values of each kernel, then scattered into the 16 planes
    let per_kernel: Vec<[f32; 16]> = w
        .par_chunks_exact(9)
        .map(|g| {
            let cols = [0, 1, 2].map(|x| g3([g[x], g[3 + x], g[6 + x]]));
            let mut out = [0f32; 16];
            for (i, row) in out.chunks_exact_mut(4).enumerate() {
                row.copy_from_slice(&g3(cols.map(|col| col[i])));
            }
            out
        })
        .collect();
    let mut u = vec![0f32; 16 * cout * c];
    u.par_chunks_mut(cout * c)
        .enumerate()
        .for_each(|(p, plane)| {
            for (dst, k) in plane.iter_mut().zip(&per_kernel) {
                *dst = k[p];
            }
        });
    u
}

multiversion! {
    /// `V [16, C, T]` (row stride `ld`, tiles of image `j` from column `j * th * tw`) from the
    /// images `xg [m, C, H, W]`: `V = B^T d B` on each 4x4 patch of the input padded by 1, with
    /// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
    fn transform_input(g: &ConvGeometry, xg: &[f32], v: &mut [f32], ld: usize) {
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
                        let base = |p: usize| (p * c + ci) * ld + col0;
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
    /// `yg [m, Cout, H, W] += A^T M A` from `M [16, Cout, T]` (row stride `ld`), with
    /// `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`; outputs past the image's edge are dropped.
    fn transform_output(g: &ConvGeometry, mm: &[f32], ld: usize, yg: &mut [f32]) {
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
                    let row = |p: usize| &mm[(p * cout + co) * ld + col0..][..tw];
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
                        for (pair, (x, y)) in (&mut pairs).zip(ev.iter().zip(od.iter())) {
                            pair[0] += x;
                            pair[1] += y;
                        }
                        if let [last] = pairs.into_remainder() {
                            *last += ev[w / 2];
                        }
                    }
                }
            }
        }
    }
}

/// `conv(x, w) + bias` (`x [N, C, H, W]`, `w [Cout, C, 3, 3]`, `bias [Cout]`): groups of
/// images in parallel, each with its own scratch.
pub(super) fn conv(g: &ConvGeometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let ([n, c, h, wd], cout) = (g.input, g.out_channels);
    let (l, img) = (h * wd, g.image_len());
    let u = transform_kernel(w, cout, c);
    let (th, tw) = tiles(g);
    let gsz = group_size(g);
    let par = inner_parallelism(n.div_ceil(gsz));
    par_vec(
        n * cout * l,
        gsz * cout * l,
        (l, |p| bias[p % cout]),
        |gi, yg| {
            let xg = &x[gi * gsz * img..((gi + 1) * gsz * img).min(x.len())];
            let t = xg.len() / img * th * tw;
            with_scratch(16 * c * t, 16 * cout * t, |v, mm| {
                forward(g, &u, xg, yg, (v, mm), par)
            });
        },
    )
}

/// The input gradient `[N, C, H, W]` of [`conv`] from `dy [N, Cout, H, W]`: the same
/// convolution of `dy` with the kernel flipped in space and its channel axes swapped.
pub(super) fn input_grad(g: &ConvGeometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let ([n, c, h, wd], cout) = (g.input, g.out_channels);
    let gt = ConvGeometry {
        input: [n, cout, h, wd],
        out_channels: c,
        ..*g
    };
    let mut wt = vec![0f32; c * cout * 9];
    for (o, wo) in w.chunks_exact(c * 9).enumerate() {
        for (ci, taps) in wo.chunks_exact(9).enumerate() {
            let dst = &mut wt[(ci * cout + o) * 9..][..9];
            for (d, v) in dst.iter_mut().rev().zip(taps) {
                *d = *v;
            }
        }
    }
    conv(&gt, dy, &wt, &vec![0f32; c])
}

/// `yg [m, Cout, H, W] += conv(xg)` for a group of images, from the transformed kernel `u`
/// (`transform_kernel`), with scratch `v [16 * C * T]` and `mm [16 * Cout * T]`.
fn forward(
    g: &ConvGeometry,
    u: &[f32],
    xg: &[f32],
    yg: &mut [f32],
    (v, mm): (&mut [f32], &mut [f32]),
    par: Parallelism,
) {
    let (c, cout) = (g.input[1], g.out_channels);
    let (th, tw) = tiles(g);
    let t = xg.len() / g.image_len() * th * tw;
    transform_input(g, xg, v, t);
    for p in 0..16 {
        let a = Mat {
            data: &u[p * cout * c..][..cout * c],
            rows: cout,
            cols: c,
            transposed: false,
        };
        let b = Mat {
            data: &v[p * c * t..][..c * t],
            rows: c,
            cols: t,
            transposed: false,
        };
        matmul(&mut mm[p * cout * t..][..cout * t], a, b, false, par);
    }
    transform_output(g, mm, t, yg);
}

multiversion! {
    /// `dM [16, Cout, T]` (row stride `ld`) from `dyg [m, Cout, H, W]`: the adjoint of
    /// `transform_output`, `dM = A dY A^T` on each 2x2 tile of `dy` (zeros past the image's
    /// edge), with `A = [[1, 0], [1, 1], [1, -1], [0, -1]]`.
    fn transform_dy(g: &ConvGeometry, dyg: &[f32], dm: &mut [f32], ld: usize) {
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
                        let base = |q: usize| ((4 * i + q) * cout + co) * ld + col0;
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

/// `dW [Cout, C, 3, 3]` from `dU [16, Cout, C]`: the adjoint of `transform_kernel`,
/// `G^T dU G`.
fn kernel_grad(du: &[f32], cout: usize, c: usize) -> Vec<f32> {
    /// `G^T` applied to four values.
    fn gt([x0, x1, x2, x3]: [f32; 4]) -> [f32; 3] {
        [x0 + 0.5 * (x1 + x2), 0.5 * (x1 - x2), 0.5 * (x1 + x2) + x3]
    }
    let plane = cout * c;
    let mut dw = vec![0f32; plane * 9];
    dw.par_chunks_mut(9).enumerate().for_each(|(oc, out)| {
        let at = |i: usize, j: usize| du[(4 * i + j) * plane + oc];
        // G^T dU: the columns j, then G on each of the three rows
        let cols = [0, 1, 2, 3].map(|j| gt([at(0, j), at(1, j), at(2, j), at(3, j)]));
        for (a, dst) in out.chunks_exact_mut(3).enumerate() {
            dst.copy_from_slice(&gt(cols.map(|col| col[a])));
        }
    });
    dw
}

/// The weight gradient `[Cout, C, 3, 3]` of [`conv`] from `x` and `dy`: per group of images
/// `dU_p += dM_p @ V_p^T` (2.25x fewer multiply-adds than the direct sum), summed over the
/// groups by `sum_over_groups` (the result does not depend on the threads), then
/// `dW = G^T dU G`.
pub(super) fn weight_grad(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let ([n, c, h, wd], cout) = (g.input, g.out_channels);
    let (img, l) = (g.image_len(), h * wd);
    let (th, tw) = tiles(g);
    let gsz = group_size(g);
    let par = inner_parallelism(n.div_ceil(gsz));
    let groups = (x.chunks(gsz * img), dy.chunks(gsz * cout * l));
    let du = sum_over_groups(groups, 16 * cout * c, |du, xg, dyg| {
        let t = xg.len() / img * th * tw;
        with_scratch(16 * c * t, 16 * cout * t, |v, dm| {
            transform_input(g, xg, v, t);
            transform_dy(g, dyg, dm, t);
            for p in 0..16 {
                let a = Mat {
                    data: &dm[p * cout * t..][..cout * t],
                    rows: cout,
                    cols: t,
                    transposed: false,
                };
                let b = Mat {
                    data: &v[p * c * t..][..c * t],
                    rows: t,
                    cols: c,
                    transposed: true,
                };
                matmul(&mut du[p * cout * c..][..cout * c], a, b, true, par);
            }
        });
    });
    kernel_grad(&du, cout, c)
}
