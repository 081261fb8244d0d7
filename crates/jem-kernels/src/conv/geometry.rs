//! Where each output pixel reads its input: im2col, its adjoint col2im, and the
//! rearrangement of a group of images' outputs between NCHW and one matrix.

use std::ops::Range;

use crate::simd;

mod strided;

/// Geometry of a convolution (no dilation, no groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input `[N, C, H, W]`.
    pub input: [usize; 4],
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (the same in both dimensions).
    pub stride: usize,
    /// Zero padding of the height and of the width, on both sides of each.
    pub padding: [usize; 2],
}

impl ConvGeometry {
    /// Output height and width.
    pub fn output_hw(&self) -> (usize, usize) {
        let [_, _, h, w] = self.input;
        let ([kh, kw], [ph, pw]) = (self.kernel, self.padding);
        let o = |d: usize, k: usize, p: usize| (d + 2 * p - k) / self.stride + 1;
        (o(h, kh, ph), o(w, kw, pw))
    }

    /// The kernel size and padding of a square kernel with equal paddings (the shifted and
    /// Winograd paths need one), `None` otherwise.
    pub(super) fn square(&self) -> Option<(usize, usize)> {
        let ([kh, kw], [ph, pw]) = (self.kernel, self.padding);
        (kh == kw && ph == pw).then_some((kh, ph))
    }

    /// Rows of an image's column matrix, `C * kh * kw`.
    pub(super) fn rows(&self) -> usize {
        self.input[1] * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels per image, `Ho * Wo`.
    pub(super) fn pixels(&self) -> usize {
        let (ho, wo) = self.output_hw();
        ho * wo
    }

    /// Whether the column matrix of an image is the image itself (1x1, stride 1, no
    /// padding).
    pub(super) fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == 1 && self.padding == [0, 0]
    }

    /// Values per input image.
    pub(super) fn image_len(&self) -> usize {
        let [_, c, h, w] = self.input;
        c * h * w
    }

    /// Output positions `o < out` whose input position `o * stride + kk - p` (kernel offset
    /// `kk`, padding `p`) lies inside `[0, dim)`.
    fn valid(&self, kk: usize, dim: usize, out: usize, p: usize) -> Range<usize> {
        let s = self.stride;
        let lo = p.saturating_sub(kk).div_ceil(s);
        let hi = if dim + p > kk {
            ((dim + p - kk - 1) / s + 1).min(out)
        } else {
            0
        };
        lo..hi.max(lo)
    }

    /// Whether a kernel row's reads form one shifted copy of the image (stride 1, output as
    /// wide as the input): then column-matrix entry `j` reads input `j + shift`.
    fn shifted(&self) -> bool {
        self.stride == 1 && self.output_hw().1 == self.input[3]
    }

    /// Images per GEMM: enough for at least [`MIN_GEMM_COLS`] output pixels, so that the
    /// small late-stage maps (8x8) still make wide matrices.
    pub(super) fn group_size(&self) -> usize {
        MIN_GEMM_COLS
            .div_ceil(self.pixels())
            .clamp(1, self.input[0].max(1))
    }

    /// Writes the columns of one image `x [C, H, W]` into `cols` (row stride `ld`, columns
    /// `off..off + Ho*Wo`), every entry: zeros where the kernel hangs over the border.
    ///
    /// With stride 1 and same-width output, each row is one long copy of the image shifted
    /// by the kernel offset, after which the columns that wrapped around a border are zeroed.
    pub(super) fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
        if self.stride > 1 {
            return self.im2col_strided(x, cols, ld, off);
        }
        let [_, _, h, w] = self.input;
        let (ho, wo) = self.output_hw();
        let ([kh, kw], [ph, pw]) = (self.kernel, self.padding);
        let l = ho * wo;
        for row in 0..self.rows() {
            let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
            let src = &x[c * h * w..(c + 1) * h * w];
            let dst = &mut cols[row * ld + off..row * ld + off + l];
            let (oy, ox) = (self.valid(ky, h, ho, ph), self.valid(kx, w, wo, pw));
            if !zero_outside(dst, (&oy, &ox), wo) {
                continue;
            }
            if self.shifted() {
                let (lo, hi) = (oy.start * wo + ox.start, (oy.end - 1) * wo + ox.end);
                let from = (oy.start + ky - ph) * w + ox.start + kx - pw;
                dst[lo..hi].copy_from_slice(&src[from..from + hi - lo]);
            }
            for y in oy {
                let r = &mut dst[y * wo..(y + 1) * wo];
                r[..ox.start].fill(0.0);
                r[ox.end..].fill(0.0);
                if self.shifted() {
                    continue;
                }
                let ix0 = ox.start + kx - pw;
                let srow = &src[(y + ky - ph) * w..][..w];
                r[ox.clone()].copy_from_slice(&srow[ix0..ix0 + ox.len()]);
            }
        }
    }

    /// Adds to `dx [C, H, W]` the input gradient of one image from its column gradient (in
    /// `dcols`, row stride `ld`, columns `off..off + Ho*Wo`), summing overlaps row after row.
    ///
    /// With stride 1 and same-width output, the entries of `dcols` that read padding are
    /// zeroed (they are scratch) and each row is added as one long shifted run; the run's
    /// wrapped-around entries then add exact zeros.
    pub(super) fn col2im(&self, dcols: &mut [f32], ld: usize, off: usize, dx: &mut [f32]) {
        if self.stride > 1 {
            return self.col2im_strided(dcols, ld, off, dx);
        }
        let [_, _, h, w] = self.input;
        let (ho, wo) = self.output_hw();
        let ([kh, kw], [ph, pw]) = (self.kernel, self.padding);
        let l = ho * wo;
        for row in 0..self.rows() {
            let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
            let dst = &mut dx[c * h * w..(c + 1) * h * w];
            let src = &mut dcols[row * ld + off..row * ld + off + l];
            let (oy, ox) = (self.valid(ky, h, ho, ph), self.valid(kx, w, wo, pw));
            if oy.is_empty() || ox.is_empty() {
                continue;
            }
            if self.shifted() {
                for y in oy.clone() {
                    src[y * wo..y * wo + ox.start].fill(0.0);
                    src[y * wo + ox.end..(y + 1) * wo].fill(0.0);
                }
                let (lo, hi) = (oy.start * wo + ox.start, (oy.end - 1) * wo + ox.end);
                let to = (oy.start + ky - ph) * w + ox.start + kx - pw;
                simd::add_assign(&mut dst[to..to + hi - lo], &src[lo..hi]);
                continue;
            }
            for y in oy {
                let drow = &mut dst[(y + ky - ph) * w..][..w];
                let r = &src[y * wo..(y + 1) * wo];
                let ix0 = ox.start + kx - pw;
                simd::add_assign(&mut drow[ix0..ix0 + ox.len()], &r[ox.clone()]);
            }
        }
    }
}

/// Zeroes the entries of a column-matrix row `dst` (`[Ho * Wo]`, output width `wo`) in the
/// output rows outside `oy`, or all of them when `oy` or `ox` is empty; returns whether any
/// entry is left to fill.
fn zero_outside(dst: &mut [f32], (oy, ox): (&Range<usize>, &Range<usize>), wo: usize) -> bool {
    if oy.is_empty() || ox.is_empty() {
        dst.fill(0.0);
        return false;
    }
    dst[..oy.start * wo].fill(0.0);
    dst[oy.end * wo..].fill(0.0);
    true
}

/// Output pixels a GEMM should at least cover (see [`ConvGeometry::group_size`]).
const MIN_GEMM_COLS: usize = 256;

/// `[m, cout, l]` (images of a group, NCHW) -> `[cout, m * l]`.
pub(super) fn gather_group(src: &[f32], dst: &mut [f32], cout: usize, l: usize) {
    let m = src.len() / (cout * l);
    for j in 0..m {
        for co in 0..cout {
            let d = co * m * l + j * l;
            dst[d..d + l].copy_from_slice(&src[(j * cout + co) * l..][..l]);
        }
    }
}

/// `dst [m, cout, l] += src [cout, m * l]`, the adjoint of [`gather_group`].
pub(super) fn scatter_add_group(src: &[f32], dst: &mut [f32], cout: usize, l: usize) {
    let m = dst.len() / (cout * l);
    for j in 0..m {
        for co in 0..cout {
            let d = (j * cout + co) * l;
            simd::add_assign(&mut dst[d..d + l], &src[co * m * l + j * l..][..l]);
        }
    }
}
