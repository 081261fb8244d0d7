//! 2-D convolution on the CPU as per-image GEMMs, with fast gradients.
//!
//! candle's CPU convolution computes its input gradient with a naive transposed
//! convolution and its weight gradient with an im2col whose kernel is the whole image, which
//! makes conv-net backward passes 7-15x slower than PyTorch's. Here a convolution with bias
//! is one candle custom op whose forward pass and both gradients are GEMMs on the `gemm`
//! crate, a few images at a time (groups run in parallel, each with a small reused column
//! buffer, so no `[C*k*k, N*Ho*Wo]` matrix is ever allocated; late-stage 8x8 maps are
//! grouped so that each GEMM stays wide):
//!
//! ```text
//! forward   cols_g = im2col(x_g)  [C*k*k, m*Ho*Wo]      y_g = W @ cols_g + bias
//! input     dx_g   = col2im(W^T @ dy_g)
//! weight    dW     = sum_g dy_g @ cols_g^T   (cols_g recomputed)    dbias = sum dy
//! ```
//!
//! Stride-1 convolutions with 8-64 input channels (3x3; more generally 72-576 rows of the
//! column matrix) skip the column matrix: the group's images are copied once into a
//! zero-padded buffer and each kernel tap is one GEMM on a shifted view of it, accumulated in
//! the GEMM (`shifted`, whose docs give the layout). That saves writing and reading back the
//! `C*k*k`-row column matrix (and col2im), at the price of `k*k` GEMMs with an inner dimension
//! `C` and of the border columns of the padded images (13 % more GEMM columns at 32x32, 56 %
//! at 8x8). The rule (`shifted::preferred`) comes from the per-layer timings in the docs
//! of `shifted`; strides above 1, one input channel and wide layers keep im2col.
//!
//! 3x3 stride-1 padding-1 convolutions with 8 or more channels on each side (all of a WRN's
//! but the stem and the strided ones) run Winograd's F(4x4, 3x3) or F(2x2, 3x3) instead
//! (`winograd`), forward and both gradients: 4x or 2.25x fewer multiply-adds, as one GEMM per
//! position of the transformed 6x6 or 4x4 patch.
//!
//! Gradients are computed only for the operands that need one (an input that is neither a
//! variable nor computed from one, such as a data batch or detached weights, gets none).
//! On other devices and dtypes the stock candle convolution is used.

mod backward;
mod geometry;
mod matmul;
mod shifted;
#[cfg(test)]
mod tests;
mod winograd;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;

pub use geometry::ConvGeometry;
use geometry::scatter_add_group;
use matmul::{Mat, matmul, par_vec, with_scratch};

pub(crate) use matmul::{cpu_f32, with_f32};

/// Images run in parallel when there are enough of them; otherwise each GEMM is parallel.
fn inner_parallelism(images: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if images >= 2 * threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// The loop sizes of a convolution: images, output channels, pixels per image, rows of the
/// column matrix, values per input image, images per GEMM, and the GEMMs' parallelism.
fn plan(g: &ConvGeometry) -> (usize, usize, usize, usize, usize, usize, Parallelism) {
    let (n, gsz) = (g.input[0], g.group_size());
    let par = inner_parallelism(n.div_ceil(gsz));
    (
        n,
        g.out_channels,
        g.pixels(),
        g.rows(),
        g.image_len(),
        gsz,
        par,
    )
}

/// How a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Column matrices (any stride).
    Im2col,
    /// Shifted GEMMs on padded images (stride 1 only, see `shifted`).
    Shifted,
    /// Winograd F(2x2, 3x3) or F(4x4, 3x3) for the output and both gradients (3x3, stride 1,
    /// padding 1, see `winograd`).
    Winograd(winograd::Tile),
}

impl Path {
    /// The path for a geometry (see the module docs for the measurements behind it).
    fn choose(g: &ConvGeometry) -> Path {
        if let Some(tile) = winograd::choose(g) {
            Path::Winograd(tile)
        } else if shifted::preferred(g) {
            Path::Shifted
        } else {
            Path::Im2col
        }
    }
}

/// `y = conv2d(x, W) + bias` over `(x [N,C,H,W], W [Cout,C,kh,kw], bias [Cout])`, followed
/// by a ReLU when the flag is set.
struct Conv(ConvGeometry, Path, bool);

impl Conv {
    /// The ReLU, in place, when the op has one.
    fn act(&self, mut y: Vec<f32>) -> Vec<f32> {
        if self.2 {
            use rayon::prelude::*;
            y.par_chunks_mut(1 << 14)
                .for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
        }
        y
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, path) = (self.0, self.1);
        let (x, w, bias) = (
            cpu_f32(s1, l1, "conv2d")?,
            cpu_f32(s2, l2, "conv2d")?,
            cpu_f32(s3, l3, "conv2d")?,
        );
        let (n, cout, l, rows, img, gsz, par) = plan(&g);
        let (ho, wo) = g.output_hw();
        if let Path::Winograd(tile) = path {
            let y = winograd::conv(tile, &g, x, w, bias);
            return Ok((CpuStorage::F32(self.act(y)), Shape::from((n, cout, ho, wo))));
        }
        let wm = || Mat::new(w, cout, rows);
        // the output starts as the bias, the GEMMs add to it
        let y = par_vec(
            n * cout * l,
            gsz * cout * l,
            (l, |p| bias[p % cout]),
            |gi, yg| {
                let xg = &x[gi * gsz * img..((gi + 1) * gsz * img).min(x.len())];
                let ld = xg.len() / img * l;
                if path == Path::Shifted {
                    let pl = shifted::Padded::new(&g, xg.len() / img);
                    let (c, ld) = (g.input[1], pl.ld);
                    return with_scratch(c * ld, cout * ld, |xp, ext| {
                        shifted::forward(&g, w, xg, yg, (xp, ext), par)
                    });
                }
                if g.pointwise() && ld == l {
                    let xm = Mat::new(xg, rows, l);
                    return matmul(yg, wm(), xm, true, par);
                }
                with_scratch(rows * ld, cout * ld, |cols, ybuf| {
                    for (j, xb) in xg.chunks(img).enumerate() {
                        g.im2col(xb, cols, ld, j * l);
                    }
                    let cm = Mat::new(cols, rows, ld);
                    if ld == l {
                        matmul(yg, wm(), cm, true, par);
                    } else {
                        matmul(ybuf, wm(), cm, false, par);
                        scatter_add_group(ybuf, yg, cout, l);
                    }
                });
            },
        );
        Ok((CpuStorage::F32(self.act(y)), Shape::from((n, cout, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // through the ReLU: the gradient where the output is positive
        let masked;
        let dy = if self.2 {
            masked = (dy * res.gt(0f32)?.to_dtype(candle_core::DType::F32)?)?;
            &masked
        } else {
            dy
        };
        with_f32(dy, |dys| {
            with_f32(x, |xs| {
                with_f32(w, |wv| self.grads((x, w, bias), xs, dys, wv))
            })
        })
    }
}

/// Stride and zero padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Stride in both dimensions.
    pub stride: usize,
    /// Zero padding of the height and of the width, each on both sides (torchvision's
    /// Inception pads its 1x7 kernels by `[0, 3]`, its 7x1 kernels by `[3, 0]`).
    pub padding: [usize; 2],
}

impl Default for Conv2dConfig {
    /// Stride 1, no padding.
    fn default() -> Self {
        Self {
            stride: 1,
            padding: [0, 0],
        }
    }
}

/// `conv2d(x, weight) + bias` with the GEMM formulation on the CPU (f32), candle's stock
/// convolution elsewhere. `weight` is `[Cout, C, k, k]`, `bias` `[Cout]`; the same `padding`
/// on all sides.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let cfg = Conv2dConfig {
        stride,
        padding: [padding; 2],
    };
    conv2d_path(x, weight, bias, cfg, None, false)
}

/// [`conv2d`] for any kernel `[Cout, C, kh, kw]` and per-dimension padding.
pub fn conv2d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> candle_core::Result<Tensor> {
    conv2d_path(x, weight, bias, cfg, None, false)
}

/// `relu(conv2d_with(x, weight, bias, cfg))` with the ReLU applied as the convolution's
/// output is written (one pass less over the activations; its gradient included).
pub fn conv2d_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> candle_core::Result<Tensor> {
    conv2d_path(x, weight, bias, cfg, None, true)
}

/// [`conv2d_with`] on a given CPU path (`None`: chosen by [`Path::choose`]); a path that does
/// not apply to the geometry falls back to im2col.
pub(crate) fn conv2d_path(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
    path: Option<Path>,
    relu: bool,
) -> candle_core::Result<Tensor> {
    let (cout, cin, kh, kw) = weight.dims4()?;
    let (stride, [ph, pw]) = (cfg.stride, cfg.padding);
    let (n, c, h, w) = x.dims4()?;
    if c != cin || h + 2 * ph < kh || w + 2 * pw < kw || stride == 0 {
        candle_core::bail!(
            "conv2d: input {:?} does not fit weight {:?} with stride {stride}, padding {:?}",
            x.dims(),
            weight.dims(),
            cfg.padding
        );
    }
    if crate::uses_kernels(x) {
        let g = ConvGeometry {
            input: [n, c, h, w],
            out_channels: cout,
            kernel: [kh, kw],
            stride,
            padding: cfg.padding,
        };
        let path = match path {
            Some(Path::Shifted) if !shifted::applies(&g) => Path::Im2col,
            Some(Path::Winograd(_)) if !winograd::applies(&g) => Path::Im2col,
            Some(p) => p,
            None => Path::choose(&g),
        };
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(cout, candle_core::DType::F32, x.device())?,
        };
        return x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias, Conv(g, path, relu));
    }
    // candle's convolution takes one padding for both dimensions
    let y = if ph == pw {
        x.conv2d(weight, ph, stride, 1, 1)?
    } else {
        x.pad_with_zeros(2, ph, ph)?
            .pad_with_zeros(3, pw, pw)?
            .conv2d(weight, 0, stride, 1, 1)?
    };
    let y = match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, cout, 1, 1))?)?,
        None => y,
    };
    if relu { y.relu() } else { Ok(y) }
}
