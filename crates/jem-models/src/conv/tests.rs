//! The convolution against direct loops and candle's own operation.

use super::*;
use candle_core::Var;

fn values(n: usize, seed: f64) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f64 * 0.731 + seed).sin() * 0.9) as f32)
        .collect()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let m = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (d / m.max(1e-12)) as f64
}

/// Direct loops in f64: the forward pass and the gradients of `sum(y * up)`.
#[allow(clippy::type_complexity)]
fn naive(
    x: &[f32],
    wt: &[f32],
    b: &[f32],
    up: &[f32],
    (n, c, h, w, cout, k, s, p): (usize, usize, usize, usize, usize, usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let ho = (h + 2 * p - k) / s + 1;
    let wo = (w + 2 * p - k) / s + 1;
    let mut y = vec![0f64; n * cout * ho * wo];
    let (mut dx, mut dw, mut db) = (vec![0f64; x.len()], vec![0f64; wt.len()], vec![0f64; cout]);
    for bn in 0..n {
        for o in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((bn * cout + o) * ho + oy) * wo + ox;
                    let u = up[yi] as f64;
                    y[yi] += b[o] as f64;
                    db[o] += u;
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((bn * c + ci) * h + iy as usize) * w + ix as usize;
                                let wi = ((o * c + ci) * k + ky) * k + kx;
                                y[yi] += x[xi] as f64 * wt[wi] as f64;
                                dx[xi] += u * wt[wi] as f64;
                                dw[wi] += u * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw, db)
}

fn max_rel_vec(a: &Tensor, b: &[f64]) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .fold(0f64, |d, (x, y)| d.max((*x as f64 - y).abs()))
        / m
}

/// Forward, input, weight and bias gradients against direct loops on odd sizes, strides,
/// paddings, 1x1 kernels and batch 1 (candle's own convolution backward gets the input
/// gradient's shape wrong when a stride does not divide the padded size, so it is not
/// the reference here); the forward pass also against candle's convolution.
#[test]
fn matches_direct_loops_and_candles_forward() {
    let cases = [
        // n, c, h, w, cout, k, stride, pad
        (2, 3, 7, 5, 4, 3, 1, 1),
        (1, 2, 8, 8, 3, 3, 2, 1),
        (3, 4, 9, 6, 5, 1, 2, 0),
        (2, 1, 5, 5, 2, 3, 1, 0),
        (1, 16, 16, 16, 8, 3, 1, 1),
        (2, 5, 6, 7, 3, 3, 2, 0),
        // enough images for the image-parallel path
        (5, 3, 6, 6, 4, 3, 1, 1),
        (6, 2, 9, 9, 3, 3, 2, 1),
        // several images per GEMM, the last group smaller
        (7, 3, 8, 8, 5, 3, 1, 1),
        // one image per GEMM, images in parallel
        (9, 2, 16, 16, 3, 3, 1, 1),
        // 1x1 stride 1: the image is its own column matrix (one image per GEMM) ...
        (2, 3, 16, 16, 4, 1, 1, 0),
        (5, 3, 17, 16, 4, 1, 1, 0),
        // ... or gathered (several images per GEMM)
        (3, 4, 5, 7, 2, 1, 1, 0),
        // stride 1 with same-width output as one shifted run per row: 5x5, odd widths
        (2, 2, 9, 7, 3, 5, 1, 2),
        (4, 3, 16, 17, 2, 3, 1, 1),
        // stride 1, output wider or narrower than the input
        (1, 2, 6, 6, 3, 3, 1, 2),
        (2, 2, 4, 4, 3, 5, 1, 1),
        (2, 3, 7, 9, 2, 3, 1, 0),
        // stride 3 (the generic strided gather)
        (2, 2, 10, 11, 3, 3, 3, 1),
    ];
    for (case, &geo) in cases.iter().enumerate() {
        let (n, c, h, w, cout, k, s, p) = geo;
        let dev = Device::Cpu;
        let (xv, wv, bv) = (
            values(n * c * h * w, 0.3),
            values(cout * c * k * k, 1.7),
            values(cout, 2.9),
        );
        let x = Var::from_vec(xv.clone(), (n, c, h, w), &dev).unwrap();
        let wt = Var::from_vec(wv.clone(), (cout, c, k, k), &dev).unwrap();
        let b = Var::from_vec(bv.clone(), cout, &dev).unwrap();
        let ours = conv2d(x.as_tensor(), wt.as_tensor(), Some(b.as_tensor()), s, p).unwrap();
        let stock = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
        let stock = stock
            .broadcast_add(&b.as_tensor().reshape((1, cout, 1, 1)).unwrap())
            .unwrap();
        assert!(
            max_rel(&ours, &stock) < 1e-5,
            "case {case}: forward vs candle"
        );
        let upv = values(ours.elem_count(), 4.1);
        let up = Tensor::from_vec(upv.clone(), ours.shape(), &dev).unwrap();
        let (y, dx, dw, db) = naive(&xv, &wv, &bv, &upv, geo);
        assert!(max_rel_vec(&ours, &y) < 1e-5, "case {case}: forward");
        let g = (&ours * &up)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v, want) in [("input", &x, &dx), ("weight", &wt, &dw), ("bias", &b, &db)] {
            let e = max_rel_vec(g.get(v.as_tensor()).unwrap(), want);
            assert!(e < 1e-5, "case {case}: {name} gradient off by {e}");
        }
        // detached weights (SGLD): only the input gradient, and the same one
        let y = conv2d(x.as_tensor(), &wt.as_tensor().detach(), None, s, p).unwrap();
        let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(wt.as_tensor()).is_none() && g.get(b.as_tensor()).is_none());
        let e = max_rel_vec(g.get(x.as_tensor()).unwrap(), &dx);
        assert!(
            e < 1e-5,
            "case {case}: input gradient with detached weights off by {e}"
        );
    }
}

/// A data batch (not a variable) gets no gradient; the weights still get theirs.
#[test]
fn no_input_gradient_for_data() {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(values(2 * 3 * 5 * 5, 0.1), (2, 3, 5, 5), &dev).unwrap();
    let wt = Var::from_vec(values(4 * 3 * 9, 0.2), (4, 3, 3, 3), &dev).unwrap();
    let y = conv2d(&x, wt.as_tensor(), None, 1, 1).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert_eq!(g.get(wt.as_tensor()).unwrap().dims(), &[4, 3, 3, 3]);
}
