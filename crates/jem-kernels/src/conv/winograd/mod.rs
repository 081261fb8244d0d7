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
mod kernels;
mod rows;

use gemm::Parallelism;

use super::backward::sum_over_groups;
use super::geometry::ConvGeometry;
use super::inner_parallelism;
use std::mem::MaybeUninit;

use super::matmul::{Mat, matmul, par_vec_uninit, with_scratch};
use kernels::Kernels;

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
    /// `U [P, Cout, C]` from the kernels `w` (`[Cout, C, 3, 3]`, or flipped: [`Kernels`]).
    fn kernel(w: Kernels, cout: usize, c: usize) -> Vec<f32>;
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

/// `impl Tiling for $t` with these sizes, from the calling module's `transform_input`,
/// `transform_output` and `transform_dy`, and its kernel row transforms `kernel_rows`
/// (`G g G^T`, from `$g` applying `G` to three values) and `kernel_grad_rows` (`G^T dU G`,
/// from `$gt` applying `G^T`), which this macro defines for each instruction set.
macro_rules! tiling {
    ($t:ident, M = $m:expr, GROUP_TILES = $tiles:expr, G = $g:ident, GT = $gt:ident) => {
        $crate::simd::multiversion! {
            /// `U = G g G^T` on a block of kernels (`kernels::transform_rows`).
            fn kernel_rows(
                taps: &[super::kernels::Row; 9],
                u: &mut [super::kernels::Row; ($m + 2) * ($m + 2)],
                n: usize,
            ) {
                super::kernels::transform_rows(taps, u, n, $g)
            }
        }
        $crate::simd::multiversion! {
            /// `dW = G^T dU G` on a block of kernels (`kernels::transform_grad_rows`).
            fn kernel_grad_rows(
                du: &[super::kernels::Row; ($m + 2) * ($m + 2)],
                taps: &mut [super::kernels::Row; 9],
                n: usize,
            ) {
                super::kernels::transform_grad_rows(du, taps, n, $gt)
            }
        }
        impl super::Tiling for $t {
            const M: usize = $m;
            const GROUP_TILES: usize = $tiles;
            fn kernel(w: super::Kernels, cout: usize, c: usize) -> Vec<f32> {
                super::kernels::kernel_planes(w, cout, c, kernel_rows)
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
                super::kernels::kernel_grad_with(du, cout, c, kernel_grad_rows)
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
/// is enough, the GEMMs (parallel inside) outweighing the transforms: of F(4x4) tiles where
/// [`one_f4_group_wins`], else of F(2x2) tiles (WRN-28-10's 8x8 stage at batch 8; a group
/// short of tiles still loses to im2col: `BENCHMARKS.md`).
pub(super) fn choose(g: &ConvGeometry) -> Option<Tile> {
    let groups = |tiles: usize, group: usize| g.input[0] * tiles / group;
    let wide = g.input[1].min(g.out_channels) >= 128;
    let f4_groups = groups(tiles_of::<F4>(g), F4::GROUP_TILES);
    if !applies(g) {
        None
    } else if f4_groups >= 2 || wide && f4_groups >= 1 && one_f4_group_wins(g) {
        Some(Tile::F4)
    } else if groups(tiles_of::<F2>(g), F2::GROUP_TILES) >= if wide { 1 } else { 2 } {
        Some(Tile::F2)
    } else {
        None
    }
}

/// Whether one full group of F(4x4) tiles beats F(2x2) on a wide layer: with AVX-512 and
/// maps of 16 x 16 or more (WRN-28-10's 320-channel stage at batch 8: `BENCHMARKS.md`,
/// session 26). On smaller maps F(4x4)'s rows are two tiles long and its transforms lose
/// (WRN-16-4's 8 x 8 stage at batch 32); on the AVX2 AMD EPYC, F(2x2) won this layer too.
fn one_f4_group_wins(g: &ConvGeometry) -> bool {
    crate::simd::has_avx512() && g.input[2].min(g.input[3]) >= 16
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

/// `conv(x, w) + bias` (`x [N, C, H, W]`, `w [Cout, C, 3, 3]`, `bias [Cout]`) with `tile`.
pub(super) fn conv(tile: Tile, g: &ConvGeometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    conv_of(tile, g, x, Kernels::Forward(w), bias)
}

/// [`conv`] with the kernels `w` as given or flipped.
fn conv_of(tile: Tile, g: &ConvGeometry, x: &[f32], w: Kernels, bias: &[f32]) -> Vec<f32> {
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
    conv_of(tile, &gt, dy, Kernels::Flipped(w), &vec![0f32; c])
}

/// The weight gradient `[Cout, C, 3, 3]` of [`conv`] from `x` and `dy`.
pub(super) fn weight_grad(tile: Tile, g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    match tile {
        Tile::F2 => weight_grad_with::<F2>(g, x, dy),
        Tile::F4 => weight_grad_with::<F4>(g, x, dy),
    }
}

/// [`conv`]: groups of images in parallel, each with its own scratch.
fn conv_with<T: Tiling>(g: &ConvGeometry, x: &[f32], w: Kernels, bias: &[f32]) -> Vec<f32> {
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
