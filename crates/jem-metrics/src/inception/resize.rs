//! Bilinear resizing, as PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`.

use candle_core::{DType, Tensor};

use crate::{MetricError, Result};

/// Resizes `[N, C, H, W]` images to `[N, C, out_h, out_w]` like PyTorch's
/// `F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)` (without
/// antialiasing, for up- and downscaling alike).
///
/// Source coordinates and weights are computed as PyTorch does, in the tensor's precision
/// (f32 arithmetic for f32 and half types, f64 for f64): `scale = in / out`,
/// `src = max(scale * (i + 0.5) - 0.5, 0)`, `i0 = min(floor(src), in - 1)`,
/// `i1 = min(i0 + 1, in - 1)`, `l1 = clamp(src - i0, 0, 1)`, `l0 = 1 - l1`. The width is
/// interpolated first, then the height; a dimension whose size does not change is copied.
/// Works on any device (index-select, multiply, add).
pub fn resize_bilinear(images: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let fail = |e: candle_core::Error| MetricError::Invalid(format!("bilinear resize: {e}"));
    let (_, _, h, w) = images.dims4().map_err(fail)?;
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Err(MetricError::Invalid(format!(
            "bilinear resize: cannot resize {h}x{w} to {out_h}x{out_w}"
        )));
    }
    if !images.dtype().is_float() {
        return Err(MetricError::Invalid(format!(
            "bilinear resize: images must be floating point, got {:?}",
            images.dtype()
        )));
    }
    let x = resize_dim(images, 3, out_w).map_err(fail)?;
    resize_dim(&x, 2, out_h).map_err(fail)
}

/// Source indices and weights `(i0, i1, l0, l1)` of each output position.
fn plan(input: usize, output: usize, double: bool) -> (Vec<u32>, Vec<u32>, Vec<f64>, Vec<f64>) {
    let mut plan = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..output {
        // PyTorch's area_pixel_compute_source_index and weights, in the tensor's precision
        let (i0, l0, l1) = if double {
            let scale = input as f64 / output as f64;
            let src = (scale * (i as f64 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let l1 = (src - i0 as f64).clamp(0.0, 1.0);
            (i0, 1.0 - l1, l1)
        } else {
            let scale = input as f32 / output as f32;
            let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            (i0, f64::from(1.0 - l1), f64::from(l1))
        };
        plan.0.push(i0 as u32);
        plan.1.push((i0 + 1).min(input - 1) as u32);
        plan.2.push(l0);
        plan.3.push(l1);
    }
    plan
}

fn resize_dim(x: &Tensor, dim: usize, output: usize) -> candle_core::Result<Tensor> {
    let input = x.dim(dim)?;
    if input == output {
        return Ok(x.clone());
    }
    let (i0, i1, l0, l1) = plan(input, output, x.dtype() == DType::F64);
    let dev = x.device();
    let mut shape = vec![1usize; 4];
    shape[dim] = output;
    let weight = |l: Vec<f64>| Tensor::from_vec(l, shape.as_slice(), dev)?.to_dtype(x.dtype());
    let a = x.index_select(&Tensor::from_vec(i0, output, dev)?, dim)?;
    let b = x.index_select(&Tensor::from_vec(i1, output, dev)?, dim)?;
    a.broadcast_mul(&weight(l0)?)? + b.broadcast_mul(&weight(l1)?)?
}
