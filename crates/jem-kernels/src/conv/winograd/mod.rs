//! 3x3 stride-1 convolutions with padding 1 by Winograd's minimal filtering F(m x m, 3x3),
//! with output tiles of side `m = 2` ([`F2`]) or `m = 4` ([`F4`]).
//!
//! Each m x m block of outputs ("tile") of one channel pair is computed from the
//! (m + 2) x (m + 2) input patch around it with `(m + 2)^2` products instead of `9 m^2`
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
//!
//! ```text
//! U = G g G^T  (per kernel)      V = B^T d B  (per input patch)      y = A^T (sum_c U . V) A
//! ```
//!
//! With the `P = (m + 2)^2` positions `p` of the transformed patch as the outer loop, the
//! channel sum is one GEMM per position, `M_p [Cout, T] = U_p [Cout, C] @ V_p [C, T]` over the
//! `T` tiles of a group of images, so the multiply-adds per output pixel drop from
//! `9 * Cout * C` to `4 * Cout * C` for F(2x2, 3x3) (2.25x) and to `2.25 * Cout * C` for
//! F(4x4, 3x3) (4x), at the price of the transforms: linear passes over the input (`P / m^2`
//! times its size in `V`: 4x, 2.25x) and the output. F(2x2, 3x3)'s coefficients are 0, +-1 and
//! 1/2, so its result differs from the direct sum only by rounding (a few f32 ulps of the
//! largest terms); F(4x4, 3x3)'s go up to 8 and down to 1/24, which costs a few more bits
//! (relative errors around 1e-5 of the largest output instead of 1e-6, see the tests). The
//! input gradient of such a convolution is another one (the kernel flipped, its channel axes
//! swapped), so it runs here too; the weight gradient is the adjoint of the forward pass:
//! `dU_p = dM_p @ V_p^T` with `dM = A dY A^T`, then `dW = G^T dU G`.
//!
//! [`choose`] takes the path that `conv::tests::path_timings` found fastest per layer shape
//! (its measurements on the WRN layers are in `BENCHMARKS.md`, "Measurements behind the
//! kernels' choices").
//!
//! A layer with a single group of tiles runs its transforms on one thread, so [`choose`]
//! asks for two groups (F(4x4, 3x3) on WRN-16-4's 8x8 maps at batch 32 has one, and loses),
//! or one full group of F(2x2) tiles on wide layers.

mod f2;
mod f4;

use gemm::Parallelism;
use rayon::prelude::*;

use super::backward::sum_over_groups;
use super::geometry::ConvGeometry;
use super::inner_parallelism;
use std::mem::MaybeUninit;

use super::matmul::{Mat, matmul, par_vec_uninit, with_scratch};

pub(crate) use f2::F2;
pub(crate) use f4::F4;

/// The output tile of a Winograd convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tile {
    /// F(2x2, 3x3).
    F2,
    /// F(4x4, 3x3).
    F4,
}

/// One Winograd algorithm F(m x m, 3x3): its sizes and its four transforms.
pub(crate) trait Tiling {
    /// The side `m` of an output tile.
    const M: usize;
    /// Positions of a transformed patch, `(m + 2)^2`.
    const P: usize = (Self::M + 2) * (Self::M + 2);
    /// Tiles a group of images should at least have (the per-position GEMMs of a group
    /// staying in the caches).
    const GROUP_TILES: usize;
    /// `U [P, Cout, C]` from `W [Cout, C, 3, 3]`.
    fn kernel(w: &[f32], cout: usize, c: usize) -> Vec<f32>;
    /// `V [P, C, T]` (row stride and plane stride `ld = (row, plane)`, tiles of image `j`
    /// from column `j * th * tw`, rows of tiles in order) from the images `xg [m, C, H, W]`.
    fn input(g: &ConvGeometry, xg: &[f32], v: &mut [f32], ld: (usize, usize));
    /// `yg [m, Cout, H, W] = A^T M A + bias` from `M [P, Cout, T]` (strides `ld` as above),
    /// every element of `yg` written; outputs past the image's edge are dropped.
    fn output(
        g: &ConvGeometry,
        mm: &[f32],
        ld: (usize, usize),
        bias: &[f32],
        yg: &mut [std::mem::MaybeUninit<f32>],
    );
    /// `dM [P, Cout, T]` (strides `ld` as above) from `dyg [m, Cout, H, W]`: the adjoint of
    /// [`Tiling::output`], zeros past the image's edge.
    fn dy(g: &ConvGeometry, dyg: &[f32], dm: &mut [f32], ld: (usize, usize));
    /// `dW [Cout, C, 3, 3]` from `dU [P, Cout, C]`: the adjoint of [`Tiling::kernel`].
    fn kernel_grad(du: &[f32], cout: usize, c: usize) -> Vec<f32>;
}

/// `impl Tiling for $t` with these sizes, from the calling module's `transform_kernel`,
/// `transform_input`, `transform_output`, `transform_dy` and `kernel_grad`.
macro_rules! tiling {
    ($t:ident, M = $m:expr, GROUP_TILES = $gt:expr) => {
        impl super::Tiling for $t {
            const M: usize = $m;
            const GROUP_TILES: usize = $gt;
            fn kernel(w: &[f32], cout: usize, c: usize) -> Vec<f32> {
                transform_kernel(w, cout, c)
            }
            fn input(g: &ConvGeometry, xg: &[f32], v: &mut [f32], ld: (usize, usize)) {
                transform_input(g, xg, v, ld)
            }
            fn output(
                g: &ConvGeometry,
                mm: &[f32],
                ld: (usize, usize),
                bias: &[f32],
                yg: &mut [std::mem::MaybeUninit<f32>],
            ) {
                transform_output(g, mm, ld, bias, yg)
            }
            fn dy(g: &ConvGeometry, dyg: &[f32], dm: &mut [f32], ld: (usize, usize)) {
                transform_dy(g, dyg, dm, ld)
            }
            fn kernel_grad(du: &[f32], cout: usize, c: usize) -> Vec<f32> {
                kernel_grad(du, cout, c)
            }
        }
    };
}
use tiling;

/// Whether Winograd computes this convolution: 3x3, stride 1, padding 1, and enough channels
/// for the per-position GEMMs to be worth it (the stem's 1-3 channels keep im2col).
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.square() == Some((3, 1)) && g.stride == 1 && g.input[1] >= 8 && g.out_channels >= 8
}

/// The faster tile for this convolution, if Winograd is the faster path
/// (`conv::tests::path_timings`): it applies, and the batch has at least two groups of
/// tiles, so that the transforms run in parallel; with 128 channels or more, one full group
/// of F(2x2) tiles is enough, the GEMMs (parallel inside) outweighing the transforms
/// (WRN-28-10's 8x8 stage at batch 8; a group short of tiles still loses to im2col:
/// `BENCHMARKS.md`).
pub(super) fn choose(g: &ConvGeometry) -> Option<Tile> {
    let groups = |tiles: usize, group: usize| g.input[0] * tiles / group;
    let wide = g.input[1].min(g.out_channels) >= 128;
    if !applies(g) {
        None
    } else if groups(tiles_of::<F4>(g), F4::GROUP_TILES) >= 2 {
        Some(Tile::F4)
    } else if groups(tiles_of::<F2>(g), F2::GROUP_TILES) >= if wide { 1 } else { 2 } {
        Some(Tile::F2)
    } else {
        None
    }
}

/// The stride between two of the `P` planes `[rows, t]` of `V`, `M` or `dM`: one cache line
/// more than the plane. The transforms write or read one row in each of the `P` planes in
/// turn; with `rows * t` a multiple of 1024 values (as 32 channels x 128 tiles), planes
/// exactly `rows * t` apart put all those rows in one set of the L1 cache, which holds 8-12
/// lines, and each pass evicts the lines it is about to use.
fn plane(rows: usize, t: usize) -> usize {
    rows * t + 16
}

/// Tiles per image: `ceil(H / m) x ceil(W / m)`.
fn tiles<T: Tiling>(g: &ConvGeometry) -> (usize, usize) {
    let [_, _, h, w] = g.input;
    (h.div_ceil(T::M), w.div_ceil(T::M))
}

/// Tiles per image.
fn tiles_of<T: Tiling>(g: &ConvGeometry) -> usize {
    let (th, tw) = tiles::<T>(g);
    th * tw
}

/// Images per group: enough for `T::GROUP_TILES` tiles.
fn group_size<T: Tiling>(g: &ConvGeometry) -> usize {
    T::GROUP_TILES
        .div_ceil(tiles_of::<T>(g))
        .clamp(1, g.input[0].max(1))
}

/// Kernels per block of [`kernel_planes`] and [`kernel_grad_with`]: a block's `P` rows stay
/// in L1 (18 KB for F(4x4)'s 36 planes, 8 KB for F(2x2)'s 16).
const KERNEL_BLOCK: usize = 128;

/// The `P` planes `[P, Cout, C]` of the transformed kernels, from `f` on each 3x3 kernel
/// (row-major). Blocks of kernels run in parallel; each transposes its transforms in a local
/// buffer (in L1) and copies one contiguous stretch into every plane. Gathering each plane
/// from an array of per-kernel transforms read that array once per plane, and storing each
/// value straight into its plane wrote `P` streams a value at a time: either took a fifth of
/// a wide layer's convolution (`BENCHMARKS.md`; its `U` is tens of MB).
fn kernel_planes<const P: usize>(
    w: &[f32],
    cout: usize,
    c: usize,
    f: impl Fn(&[f32]) -> [f32; P] + Sync + Send,
) -> Vec<f32> {
    let len = cout * c;
    // the blocks of `w` must match those of the planes for every stretch to be written
    assert_eq!(w.len(), 9 * len, "kernels [Cout, C, 3, 3]");
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
        .zip(w.par_chunks(9 * KERNEL_BLOCK))
        .for_each(|(mut planes, kernels)| {
            let mut local = [[0f32; KERNEL_BLOCK]; P];
            for (i, k) in kernels.chunks_exact(9).enumerate() {
                for (row, v) in local.iter_mut().zip(f(k)) {
                    row[i] = v;
                }
            }
            for (plane, row) in planes.iter_mut().zip(&local) {
                for (d, &v) in plane.iter_mut().zip(row) {
                    d.write(v);
                }
            }
        });
    // SAFETY: the blocks cover every stretch of the `P` planes of `len` values, each got its
    // `KERNEL_BLOCK` kernels of `w` (`len` of them, asserted above) and wrote its stretches whole
    unsafe { u.set_len(P * len) };
    u
}

/// `dW [Cout, C, 3, 3]` from the `P` planes of `dU [P, Cout, C]`, `f` mapping the `P` values
/// of one kernel (position-major) to its 9 taps.
fn kernel_grad_with<const P: usize>(
    du: &[f32],
    cout: usize,
    c: usize,
    f: impl Fn([f32; P]) -> [f32; 9] + Sync + Send,
) -> Vec<f32> {
    let plane = cout * c;
    let work = |b: usize, out: &mut [MaybeUninit<f32>]| {
        // the block's stretch of every plane, copied into L1 (as in `kernel_planes`)
        let (start, n) = (b * KERNEL_BLOCK, out.len() / 9);
        let mut local = [[0f32; KERNEL_BLOCK]; P];
        for (p, row) in local.iter_mut().enumerate() {
            row[..n].copy_from_slice(&du[p * plane + start..][..n]);
        }
        for (i, taps) in out.chunks_exact_mut(9).enumerate() {
            for (d, v) in taps.iter_mut().zip(f(std::array::from_fn(|p| local[p][i]))) {
                d.write(v);
            }
        }
    };
    // SAFETY: `work` writes the 9 taps of each of its chunk's kernels
    unsafe { par_vec_uninit(plane * 9, 9 * KERNEL_BLOCK, work) }
}

/// `conv(x, w) + bias` (`x [N, C, H, W]`, `w [Cout, C, 3, 3]`, `bias [Cout]`) with `tile`.
pub(super) fn conv(tile: Tile, g: &ConvGeometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    match tile {
        Tile::F2 => conv_with::<F2>(g, x, w, bias),
        Tile::F4 => conv_with::<F4>(g, x, w, bias),
    }
}

/// The input gradient `[N, C, H, W]` of [`conv`] from `dy [N, Cout, H, W]`: the same
/// convolution of `dy` with the kernel flipped in space and its channel axes swapped.
pub(super) fn input_grad(tile: Tile, g: &ConvGeometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let ([n, c, h, wd], cout) = (g.input, g.out_channels);
    let gt = ConvGeometry {
        input: [n, cout, h, wd],
        out_channels: c,
        ..*g
    };
    let flip = |ci: usize, wci: &mut [MaybeUninit<f32>]| {
        for (o, dst) in wci.chunks_exact_mut(9).enumerate() {
            let taps = &w[(o * c + ci) * 9..][..9];
            for (d, v) in dst.iter_mut().rev().zip(taps) {
                d.write(*v);
            }
        }
    };
    // SAFETY: `flip` writes the 9 taps of each of the `cout` kernels of its chunk
    let wt = unsafe { par_vec_uninit(c * cout * 9, (cout * 9).max(1), flip) };
    conv(tile, &gt, dy, &wt, &vec![0f32; c])
}

/// The weight gradient `[Cout, C, 3, 3]` of [`conv`] from `x` and `dy`.
pub(super) fn weight_grad(tile: Tile, g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    match tile {
        Tile::F2 => weight_grad_with::<F2>(g, x, dy),
        Tile::F4 => weight_grad_with::<F4>(g, x, dy),
    }
}

/// [`conv`]: groups of images in parallel, each with its own scratch.
fn conv_with<T: Tiling>(g: &ConvGeometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let ([n, c, h, wd], cout) = (g.input, g.out_channels);
    let (l, img) = (h * wd, g.image_len());
    let u = T::kernel(w, cout, c);
    let gsz = group_size::<T>(g);
    let par = inner_parallelism(n.div_ceil(gsz));
    let work = |gi: usize, yg: &mut [MaybeUninit<f32>]| {
        let xg = &x[gi * gsz * img..((gi + 1) * gsz * img).min(x.len())];
        let t = xg.len() / img * tiles_of::<T>(g);
        with_scratch(T::P * plane(c, t), T::P * plane(cout, t), |v, mm| {
            forward::<T>(g, &u, xg, (bias, yg), (v, mm), par)
        });
    };
    // SAFETY: `forward` writes every output of its group (`Tiling::output`), and the groups'
    // chunks are their images' outputs
    unsafe { par_vec_uninit(n * cout * l, gsz * cout * l, work) }
}

/// `yg [m, Cout, H, W] = conv(xg) + bias` for a group of images (every output written),
/// from the transformed kernel `u` ([`Tiling::kernel`]), with scratch `v` and `mm` of `P`
/// planes each.
fn forward<T: Tiling>(
    g: &ConvGeometry,
    u: &[f32],
    xg: &[f32],
    (bias, yg): (&[f32], &mut [MaybeUninit<f32>]),
    (v, mm): (&mut [f32], &mut [f32]),
    par: Parallelism,
) {
    let (c, cout) = (g.input[1], g.out_channels);
    let t = xg.len() / g.image_len() * tiles_of::<T>(g);
    let (pv, pm) = (plane(c, t), plane(cout, t));
    T::input(g, xg, v, (t, pv));
    for p in 0..T::P {
        let a = Mat::new(&u[p * cout * c..][..cout * c], cout, c);
        let b = Mat::new(&v[p * pv..][..c * t], c, t);
        matmul(&mut mm[p * pm..][..cout * t], a, b, false, par);
    }
    T::output(g, mm, (t, pm), bias, yg);
}

/// [`weight_grad`]: per group of images `dU_p += dM_p @ V_p^T`, summed over the groups by
/// `sum_over_groups` (the result does not depend on the threads), then `dW = G^T dU G`.
fn weight_grad_with<T: Tiling>(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let ([n, c, h, wd], cout) = (g.input, g.out_channels);
    let (img, l) = (g.image_len(), h * wd);
    let gsz = group_size::<T>(g);
    let par = inner_parallelism(n.div_ceil(gsz));
    let groups = (x.chunks(gsz * img), dy.chunks(gsz * cout * l));
    let du = sum_over_groups(groups, T::P * cout * c, |du, xg, dyg| {
        let t = xg.len() / img * tiles_of::<T>(g);
        let (pv, pm) = (plane(c, t), plane(cout, t));
        with_scratch(T::P * pv, T::P * pm, |v, dm| {
            T::input(g, xg, v, (t, pv));
            T::dy(g, dyg, dm, (t, pm));
            for p in 0..T::P {
                let a = Mat::new(&dm[p * pm..][..cout * t], cout, t);
                let b = Mat::transposed(&v[p * pv..][..c * t], t, c);
                matmul(&mut du[p * cout * c..][..cout * c], a, b, true, par);
            }
        });
    });
    T::kernel_grad(&du, cout, c)
}
