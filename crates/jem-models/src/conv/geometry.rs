//! Where each output pixel reads its input: im2col, its adjoint col2im, and the
//! rearrangement of a group of images' outputs between NCHW and one matrix.

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
    pub(super) fn rows(&self) -> usize {
        self.input[1] * self.k * self.k
    }

    /// Output pixels per image, `Ho * Wo`.
    pub(super) fn pixels(&self) -> usize {
        let (ho, wo) = self.output_hw();
        ho * wo
    }

    /// Values per input image.
    pub(super) fn image_len(&self) -> usize {
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

    /// Images per GEMM: enough for at least [`MIN_GEMM_COLS`] output pixels, so that the
    /// small late-stage maps (8x8) still make wide matrices.
    pub(super) fn group_size(&self) -> usize {
        MIN_GEMM_COLS
            .div_ceil(self.pixels())
            .clamp(1, self.input[0].max(1))
    }

    /// Writes the columns of one image `x [C, H, W]` into `cols` (row stride `ld`, from
    /// column `off`), leaving entries where the kernel hangs over the border untouched (the
    /// caller zeroes them once, see [`zero_padding`](Self::zero_padding)).
    pub(super) fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
        let [_, _, h, w] = self.input;
        let (wo, s, kk) = (self.output_hw().1, self.stride, self.k * self.k);
        self.for_each_span(|row, oy, ox, iy, ix0| {
            let src = &x[(row / kk * h + iy) * w..];
            let dst = &mut cols[row * ld + off + oy * wo..];
            if s == 1 {
                dst[ox.clone()].copy_from_slice(&src[ix0..ix0 + ox.len()]);
            } else {
                for (j, o) in ox.enumerate() {
                    dst[o] = src[ix0 + j * s];
                }
            }
        });
    }

    /// Zeroes a column buffer before [`im2col`](Self::im2col) when some entries are padding
    /// (without padding every entry is written).
    pub(super) fn zero_padding(&self, cols: &mut [f32]) {
        if self.padding > 0 {
            cols.fill(0.0);
        }
    }

    /// Adds to `dx [C, H, W]` (zero on entry) the input gradient of one image from its column
    /// gradient (in `dcols`, row stride `ld`, from column `off`), summing overlaps.
    pub(super) fn col2im(&self, dcols: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
        let [_, _, h, w] = self.input;
        let (wo, s, kk) = (self.output_hw().1, self.stride, self.k * self.k);
        self.for_each_span(|row, oy, ox, iy, ix0| {
            let dst = &mut dx[(row / kk * h + iy) * w..];
            let src = &dcols[row * ld + off + oy * wo..];
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

/// `[cout, m * l]` -> `[m, cout, l]`, the inverse of [`gather_group`].
pub(super) fn scatter_group(src: &[f32], dst: &mut [f32], cout: usize, l: usize) {
    let m = dst.len() / (cout * l);
    for j in 0..m {
        for co in 0..cout {
            let d = (j * cout + co) * l;
            dst[d..d + l].copy_from_slice(&src[co * m * l + j * l..][..l]);
        }
    }
}
