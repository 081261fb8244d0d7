//! The kernel transforms of the Winograd convolutions, `U = G g G^T` and its adjoint
//! `dW = G^T dU G`, on blocks of kernels.
//!
//! A 3x3 kernel arrives as 9 consecutive taps and leaves as one value in each of the `P`
//! planes of `U`. Transformed one kernel at a time, the map compiled to scalar code; here a
//! block of [`KERNEL_BLOCK`] kernels is transposed into 9 rows of taps (in L1), the tiling's
//! row transform ([`Rows`]) runs `G` on whole rows, vectorized, and the block's `P` rows are
//! copied into the planes as contiguous stretches. The arithmetic per kernel is the same as
//! one kernel at a time, so the results are the same bits.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::matmul::par_vec_uninit;
use super::rows::blockwise;

/// Kernels per block: a block's `P` rows stay in L1 (18 KB for F(4x4)'s 36 planes, 8 KB for
/// F(2x2)'s 16).
pub(super) const KERNEL_BLOCK: usize = 128;

/// One row of a block: a value per kernel.
pub(super) type Row = [f32; KERNEL_BLOCK];

/// A tiling's transform of a block's rows: `U` rows `[P]` from the tap rows `[9]`
/// (`G g G^T`), or the tap rows from the `dU` rows (`G^T dU G`), on the first `n` values of
/// each row.
pub(super) type Rows<const I: usize, const O: usize> = fn(&[Row; I], &mut [Row; O], usize);

/// The kernels [`kernel_planes`] transforms: `W [Cout, C, 3, 3]` as it is, or flipped in
/// space with its two channel axes swapped, which are the kernels of the input gradient
/// (transformed without writing the flipped copy first).
#[derive(Clone, Copy)]
pub(crate) enum Kernels<'a> {
    /// `W [Cout, C, 3, 3]`, giving `U [P, Cout, C]`.
    Forward(&'a [f32]),
    /// `W [C, Cout, 3, 3]` (the forward convolution's), giving the planes `[P, Cout, C]` of
    /// the kernels `W'[o][i] = flip(W[i][o])`.
    Flipped(&'a [f32]),
}

/// The `P` planes `[P, Cout, C]` of the transformed kernels. Blocks of kernels run in
/// parallel; each gathers its taps into rows, transforms them with `f`, and copies one
/// contiguous stretch into every plane. (Storing each kernel's values straight into the
/// planes wrote `P` streams a value at a time, and gathering each plane from an array of
/// per-kernel transforms read that array once per plane: either took a fifth of a wide
/// layer's convolution, `BENCHMARKS.md`; its `U` is tens of MB.)
pub(super) fn kernel_planes<const P: usize>(
    w: Kernels,
    cout: usize,
    c: usize,
    f: Rows<9, P>,
) -> Vec<f32> {
    let len = cout * c;
    let (Kernels::Forward(src) | Kernels::Flipped(src)) = w;
    let flip = matches!(w, Kernels::Flipped(_));
    // the blocks of kernels must match those of the planes for every stretch to be written
    assert_eq!(src.len(), 9 * len, "kernels [Cout, C, 3, 3]");
    let mut u: Vec<f32> = Vec::with_capacity(P * len);
    let mut blocks: Vec<Vec<&mut [MaybeUninit<f32>]>> = (0..len.div_ceil(KERNEL_BLOCK))
        .map(|_| Vec::new())
        .collect();
    for plane in u.spare_capacity_mut()[..P * len].chunks_mut(len.max(1)) {
        for (b, stretch) in plane.chunks_mut(KERNEL_BLOCK).enumerate() {
            blocks[b].push(stretch);
        }
    }
    blocks
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut planes)| {
            let (start, n) = (b * KERNEL_BLOCK, planes[0].len());
            let mut taps = [[0f32; KERNEL_BLOCK]; 9];
            for i in 0..n {
                // kernel `start + i` of the planes; flipped, it is `(o, ci)` of `W'`, `(ci, o)` of `W`
                let at = match (start + i, flip) {
                    (j, true) => j % c * cout + j / c,
                    (j, false) => j,
                };
                let k = &src[at * 9..][..9];
                for (t, row) in taps.iter_mut().enumerate() {
                    row[i] = k[if flip { 8 - t } else { t }];
                }
            }
            let mut local = [[0f32; KERNEL_BLOCK]; P];
            f(&taps, &mut local, n);
            for (plane, row) in planes.iter_mut().zip(&local) {
                for (d, &v) in plane.iter_mut().zip(row) {
                    d.write(v);
                }
            }
        });
    // SAFETY: the blocks cover every stretch of the `P` planes of `len` values, each got its
    // block's `n` kernels (`len` of them, asserted above) and wrote its stretches whole
    unsafe { u.set_len(P * len) };
    u
}

/// `dW [Cout, C, 3, 3]` from the `P` planes of `dU [P, Cout, C]`, `f` mapping a block's `P`
/// rows of `dU` to its 9 rows of taps.
pub(super) fn kernel_grad_with<const P: usize>(
    du: &[f32],
    cout: usize,
    c: usize,
    f: Rows<P, 9>,
) -> Vec<f32> {
    let plane = cout * c;
    let work = |b: usize, out: &mut [MaybeUninit<f32>]| {
        // the block's stretch of every plane, copied into L1 (as in `kernel_planes`)
        let (start, n) = (b * KERNEL_BLOCK, out.len() / 9);
        let mut local = [[0f32; KERNEL_BLOCK]; P];
        for (p, row) in local.iter_mut().enumerate() {
            row[..n].copy_from_slice(&du[p * plane + start..][..n]);
        }
        let mut taps = [[0f32; KERNEL_BLOCK]; 9];
        f(&local, &mut taps, n);
        for (i, kernel) in out.chunks_exact_mut(9).enumerate() {
            for (d, row) in kernel.iter_mut().zip(&taps) {
                d.write(row[i]);
            }
        }
    };
    // SAFETY: `work` writes the 9 taps of each of its chunk's kernels
    unsafe { par_vec_uninit(plane * 9, 9 * KERNEL_BLOCK, work) }
}

/// `U = G g G^T` on a block of kernels: the `K * K` rows of `U` (position-major) from the 9
/// rows of taps (row-major), first `n` values of each, `g` applying the `K x 3` matrix `G`
/// to three values. Inlined into each tiling's `kernel_rows`, which the CPU's instruction
/// set compiles.
#[inline(always)]
pub(super) fn transform_rows<const K: usize, const P: usize>(
    taps: &[Row; 9],
    u: &mut [Row; P],
    n: usize,
    g: impl Fn([f32; 3]) -> [f32; K],
) {
    // cols[x][r] = (G g)[r][x]: G on the kernels' columns
    let mut cols = [[[0f32; KERNEL_BLOCK]; K]; 3];
    for (x, col) in cols.iter_mut().enumerate() {
        let src = [&taps[x][..n], &taps[3 + x][..n], &taps[6 + x][..n]];
        blockwise(src, prefixes(col, n), &g);
    }
    // then G on each row r of G g
    for (r, row) in u.chunks_exact_mut(K).enumerate() {
        let src = [&cols[0][r][..n], &cols[1][r][..n], &cols[2][r][..n]];
        blockwise(src, prefixes(row, n), &g);
    }
}

/// `dW = G^T dU G` on a block of kernels (the adjoint of [`transform_rows`]): the 9 rows of
/// taps from the `K * K` rows of `dU`, first `n` values of each, `gt` applying `G^T` to `K`
/// values.
#[inline(always)]
pub(super) fn transform_grad_rows<const K: usize, const P: usize>(
    du: &[Row; P],
    taps: &mut [Row; 9],
    n: usize,
    gt: impl Fn([f32; K]) -> [f32; 3],
) {
    // cols[j][a] = (G^T dU)[a][j]: G^T on the columns j of dU
    let mut cols = [[[0f32; KERNEL_BLOCK]; 3]; K];
    for (j, col) in cols.iter_mut().enumerate() {
        let src: [&[f32]; K] = std::array::from_fn(|i| &du[K * i + j][..n]);
        blockwise(src, prefixes(col, n), &gt);
    }
    // then G^T on each row a of G^T dU
    for (a, row) in taps.chunks_exact_mut(3).enumerate() {
        let src: [&[f32]; K] = std::array::from_fn(|j| &cols[j][a][..n]);
        blockwise(src, prefixes(row, n), &gt);
    }
}

/// The first `n` values of each of `rows`, as the `N` output rows of a row transform.
#[inline(always)]
fn prefixes<const N: usize>(rows: &mut [Row], n: usize) -> [&mut [f32]; N] {
    let rows: &mut [Row; N] = rows.try_into().expect("N rows");
    rows.each_mut().map(|r| &mut r[..n])
}

#[cfg(test)]
mod tests {
    use super::super::{F2, F4, Tiling};
    use super::*;

    /// Values in [-1, 1) from a small LCG.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// `G g G^T` of every kernel in f64, position-major planes `[P, Cout, C]`.
    fn reference(g: &[[f64; 3]], w: &[f32]) -> Vec<f64> {
        let (m, len) = (g.len(), w.len() / 9);
        let mut u = vec![0f64; m * m * len];
        for (k, taps) in w.chunks_exact(9).enumerate() {
            for (r, s) in (0..m).flat_map(|r| (0..m).map(move |s| (r, s))) {
                let mut acc = 0f64;
                for (i, j) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
                    acc += g[r][i] * taps[i * 3 + j] as f64 * g[s][j];
                }
                u[(r * m + s) * len + k] = acc;
            }
        }
        u
    }

    /// The kernel transforms of both tilings against `G g G^T` in f64, across a block
    /// boundary and with a partial block; the flipped kernels against the forward transform
    /// of an explicitly flipped copy (the same bits); the weight-gradient transform as the
    /// adjoint of the kernel transform.
    fn check<T: Tiling>(g: &[[f64; 3]]) {
        for (cout, c) in [(5, 7), (13, 11), (1, 1)] {
            let w = values(cout * c * 9, (cout * 31 + c) as u64);
            let u = T::kernel(Kernels::Forward(&w), cout, c);
            for (a, b) in u.iter().zip(reference(g, &w)) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "{a} vs {b}"
                );
            }
            // the kernels [C, Cout] of the input gradient: W'[i][o] = flip(W[o][i])
            let mut wt = vec![0f32; w.len()];
            for (o, i, t) in
                (0..cout).flat_map(|o| (0..c).flat_map(move |i| (0..9).map(move |t| (o, i, t))))
            {
                wt[(i * cout + o) * 9 + t] = w[(o * c + i) * 9 + 8 - t];
            }
            let flipped = T::kernel(Kernels::Flipped(&w), c, cout);
            assert_eq!(flipped, T::kernel(Kernels::Forward(&wt), c, cout));
            // <U(w), dU> = <w, G^T dU G>
            let du = values(u.len(), 7 + c as u64);
            let dw = T::kernel_grad(&du, cout, c);
            let lhs: f64 = u.iter().zip(&du).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = w.iter().zip(&dw).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs()),
                "{lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn kernel_transforms_match_f64_products_and_their_adjoints() {
        let f2 = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        check::<F2>(&f2);
        let (s, t) = (1.0 / 6.0, 1.0 / 24.0);
        let f4 = [
            [0.25, 0.0, 0.0],
            [-s, -s, -s],
            [-s, s, -s],
            [t, 2.0 * t, 4.0 * t],
            [t, -2.0 * t, 4.0 * t],
            [0.0, 0.0, 1.0],
        ];
        check::<F4>(&f4);
    }
}
