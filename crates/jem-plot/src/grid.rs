//! Grids of images, as torchvision's `make_grid` + `save_image(normalize=True, range=(-1, 1))`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::{Rgb, RgbImage};

use crate::{PlotError, Result, write_png};

const PAD: usize = 2;

/// Lays out `images` (`[N, C, H, W]`, C = 1 or 3, values in [-1, 1], clamped) in rows of
/// `per_row` with a 2-pixel black border, as an RGB image.
pub fn grid_image(images: &Tensor, per_row: usize) -> Result<RgbImage> {
    let dims = images.dims();
    if dims.len() != 4 || !(dims[1] == 1 || dims[1] == 3) || dims[0] == 0 || per_row == 0 {
        return Err(PlotError::Invalid(format!(
            "a grid needs [N>0, 1 or 3, H, W] images and per_row > 0, got {dims:?} and {per_row}"
        )));
    }
    let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let data: Vec<f32> = images
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let cols = per_row.min(n);
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * (w + PAD) + PAD, rows * (h + PAD) + PAD);
    let mut img = RgbImage::new(gw as u32, gh as u32);
    let byte = |v: f32| {
        let v = if v.is_finite() { v } else { -1.0 };
        (((v.clamp(-1.0, 1.0) + 1.0) * 0.5) * 255.0 + 0.5) as u8
    };
    for k in 0..n {
        let (r, col) = (k / cols, k % cols);
        let (x0, y0) = (PAD + col * (w + PAD), PAD + r * (h + PAD));
        let base = k * c * h * w;
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| byte(data[base + ch * h * w + y * w + x]);
                let rgb = if c == 1 {
                    let g = px(0);
                    [g, g, g]
                } else {
                    [px(0), px(1), px(2)]
                };
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, Rgb(rgb));
            }
        }
    }
    Ok(img)
}

/// Writes [`grid_image`] of `images` to `path` as a PNG, atomically.
pub fn save_grid(path: &Path, images: &Tensor, per_row: usize) -> Result<()> {
    write_png(path, &grid_image(images, per_row)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_each_image_with_a_border_and_maps_the_range() {
        // two 1x2x2 images: all -1 (black) and all +1 (white)
        let x = Tensor::from_vec(
            vec![-1f32, -1., -1., -1., 1., 1., 1., 1.],
            (2, 1, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let img = grid_image(&x, 2).unwrap();
        assert_eq!(img.dimensions(), (2 * 4 + 2, 2 + 2 + 2));
        assert_eq!(img.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(6, 3).0, [255, 255, 255]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        save_grid(&path, &x, 1).unwrap();
        let back = image::open(&path).unwrap();
        assert_eq!((back.width(), back.height()), (6, 10));
        assert!(grid_image(&x.squeeze(1).unwrap(), 2).is_err());
    }
}
