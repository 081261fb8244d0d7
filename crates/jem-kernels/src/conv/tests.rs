//! The convolution against direct loops and candle's own operation.

use super::*;
use candle_core::{DType, Device, Var};

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

/// Direct loops in f64 for a `kh x kw` kernel with paddings `[ph, pw]`: the forward pass and
/// the gradients of `sum(y * up)`.
#[allow(clippy::type_complexity)]
fn naive(
    x: &[f32],
    wt: &[f32],
    b: &[f32],
    up: &[f32],
    (n, c, h, w, cout): (usize, usize, usize, usize, usize),
    ([kh, kw], s, [ph, pw]): ([usize; 2], usize, [usize; 2]),
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let ho = (h + 2 * ph - kh) / s + 1;
    let wo = (w + 2 * pw - kw) / s + 1;
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
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s + ky) as isize - ph as isize;
                                let ix = (ox * s + kx) as isize - pw as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((bn * c + ci) * h + iy as usize) * w + ix as usize;
                                let wi = ((o * c + ci) * kh + ky) * kw + kx;
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

/// Stride and padding `[p, p]`.
fn cfg(stride: usize, p: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride,
        padding: [p, p],
    }
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
/// paddings, 1x1 kernels, batch 1 and rectangular kernels with per-dimension paddings
/// (Inception-v3's 1x7 / 7x1 / 1x3 / 3x1 with `[0, 3]`, `[3, 0]`, ...) (candle's own
/// convolution backward gets the input gradient's shape wrong when a stride does not divide
/// the padded size, so it is not the reference here); the forward pass also against candle's
/// convolution on explicitly padded input.
#[test]
fn matches_direct_loops_and_candles_forward() {
    let cases = [
        // n, c, h, w, cout, [kh, kw], stride, [ph, pw]
        (2, 3, 7, 5, 4, [3, 3], 1, [1, 1]),
        (1, 2, 8, 8, 3, [3, 3], 2, [1, 1]),
        (3, 4, 9, 6, 5, [1, 1], 2, [0, 0]),
        (2, 1, 5, 5, 2, [3, 3], 1, [0, 0]),
        (1, 16, 16, 16, 8, [3, 3], 1, [1, 1]),
        (2, 5, 6, 7, 3, [3, 3], 2, [0, 0]),
        // enough images for the image-parallel path
        (5, 3, 6, 6, 4, [3, 3], 1, [1, 1]),
        (6, 2, 9, 9, 3, [3, 3], 2, [1, 1]),
        // several images per GEMM, the last group smaller
        (7, 3, 8, 8, 5, [3, 3], 1, [1, 1]),
        // one image per GEMM, images in parallel
        (9, 2, 16, 16, 3, [3, 3], 1, [1, 1]),
        // 1x1 stride 1: the image is its own column matrix (one image per GEMM) ...
        (2, 3, 16, 16, 4, [1, 1], 1, [0, 0]),
        (5, 3, 17, 16, 4, [1, 1], 1, [0, 0]),
        // ... or gathered (several images per GEMM)
        (3, 4, 5, 7, 2, [1, 1], 1, [0, 0]),
        // stride 1 with same-width output as one shifted run per row: 5x5, odd widths
        (2, 2, 9, 7, 3, [5, 5], 1, [2, 2]),
        (4, 3, 16, 17, 2, [3, 3], 1, [1, 1]),
        // stride 1, output wider or narrower than the input
        (1, 2, 6, 6, 3, [3, 3], 1, [2, 2]),
        (2, 2, 4, 4, 3, [5, 5], 1, [1, 1]),
        (2, 3, 7, 9, 2, [3, 3], 1, [0, 0]),
        // stride 2 on longer rows, even and odd widths
        (3, 3, 12, 34, 4, [5, 5], 2, [2, 2]),
        (2, 2, 11, 33, 3, [3, 3], 2, [1, 1]),
        // stride 3 (the generic strided gather)
        (2, 2, 10, 11, 3, [3, 3], 3, [1, 1]),
        // rectangular kernels, per-dimension paddings, several GEMM groups
        (2, 4, 9, 8, 3, [1, 7], 1, [0, 3]),
        (2, 4, 9, 8, 3, [7, 1], 1, [3, 0]),
        (1, 3, 7, 7, 2, [1, 3], 1, [0, 1]),
        (3, 3, 7, 6, 2, [3, 1], 1, [1, 0]),
        (2, 3, 9, 11, 2, [3, 5], 2, [1, 2]),
        (9, 2, 17, 17, 5, [1, 7], 1, [0, 3]),
        (5, 6, 8, 8, 4, [7, 1], 1, [3, 0]),
        (2, 2, 6, 9, 3, [2, 4], 1, [0, 0]),
    ];
    for (case, &(n, c, h, w, cout, k, s, p)) in cases.iter().enumerate() {
        let dev = Device::Cpu;
        let (xv, wv, bv) = (
            values(n * c * h * w, 0.3),
            values(cout * c * k[0] * k[1], 1.7),
            values(cout, 2.9),
        );
        let x = Var::from_vec(xv.clone(), (n, c, h, w), &dev).unwrap();
        let wt = Var::from_vec(wv.clone(), (cout, c, k[0], k[1]), &dev).unwrap();
        let b = Var::from_vec(bv.clone(), cout, &dev).unwrap();
        let conf = Conv2dConfig {
            stride: s,
            padding: p,
        };
        let ours = conv2d_with(x.as_tensor(), wt.as_tensor(), Some(b.as_tensor()), conf).unwrap();
        if k[0] == k[1] && p[0] == p[1] {
            let square = conv2d(x.as_tensor(), wt.as_tensor(), Some(b.as_tensor()), s, p[0]);
            assert_eq!(max_rel(&square.unwrap(), &ours), 0.0, "case {case}: conv2d");
        }
        let stock = x
            .as_tensor()
            .pad_with_zeros(2, p[0], p[0])
            .unwrap()
            .pad_with_zeros(3, p[1], p[1])
            .unwrap()
            .conv2d(wt.as_tensor(), 0, s, 1, 1)
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, cout, 1, 1)).unwrap())
            .unwrap();
        assert!(
            max_rel(&ours, &stock) < 1e-5,
            "case {case}: forward vs candle"
        );
        let upv = values(ours.elem_count(), 4.1);
        let up = Tensor::from_vec(upv.clone(), ours.shape(), &dev).unwrap();
        let (y, dx, dw, db) = naive(&xv, &wv, &bv, &upv, (n, c, h, w, cout), (k, s, p));
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
        let y = conv2d_with(x.as_tensor(), &wt.as_tensor().detach(), None, conf).unwrap();
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

/// The output and the gradients of `sum(y * up)` for x, W and bias, through `conv`.
fn run_with(
    conv: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    (xv, wv, bv): (&[f32], &[f32], &[f32]),
    (n, c, h, w, cout, k): (usize, usize, usize, usize, usize, usize),
) -> Vec<Tensor> {
    let dev = Device::Cpu;
    let x = Var::from_vec(xv.to_vec(), (n, c, h, w), &dev).unwrap();
    let wt = Var::from_vec(wv.to_vec(), (cout, c, k, k), &dev).unwrap();
    let b = Var::from_vec(bv.to_vec(), cout, &dev).unwrap();
    let y = conv(x.as_tensor(), wt.as_tensor(), b.as_tensor());
    let up = Tensor::from_vec(values(y.elem_count(), 4.1), y.shape(), &dev).unwrap();
    let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y];
    for v in [&x, &wt, &b] {
        out.push(g.get(v.as_tensor()).unwrap().clone());
    }
    out
}

/// A small deterministic generator for the random shapes.
fn lcg(state: &mut u64, lo: usize, hi: usize) -> usize {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    lo + (*state >> 33) as usize % (hi - lo + 1)
}

/// The shifted stride-1 path against the im2col path and candle's stock convolution with its
/// autograd, forward and all three gradients, on random shapes: kernels 1, 3, 5, padding 0-2,
/// odd and unequal heights and widths, 1-40 channels, batch 1 and batches of several groups
/// (the last one smaller).
#[test]
fn shifted_matches_im2col_and_candle() {
    let mut st = 0x5eed_u64;
    for case in 0..40 {
        let k = [1, 3, 3, 5][case % 4];
        let p = lcg(&mut st, 0, 2);
        let (h, w) = (lcg(&mut st, k.max(3), 13), lcg(&mut st, k.max(2), 12));
        let (c, cout) = (lcg(&mut st, 1, 40), lcg(&mut st, 1, 40));
        let (ho, wo) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
        // batch 1, or more images than one GEMM takes
        let gsz = 256usize.div_ceil(ho * wo);
        let n = if case % 3 == 0 {
            1
        } else {
            gsz + lcg(&mut st, 1, gsz + 1)
        };
        let geo = (n, c, h, w, cout, k);
        let (xv, wv, bv) = (
            values(n * c * h * w, 0.3 + case as f64),
            values(cout * c * k * k, 1.7 + case as f64),
            values(cout, 2.9),
        );
        let data = (&xv[..], &wv[..], &bv[..]);
        let what = format!("case {case} {geo:?} p={p}");
        against_im2col_and_candle(Path::Shifted, data, geo, p, |_| 2e-5, &what);
    }
}

/// Runs stride-1 `path` on `data`, im2col and candle's convolution with its autograd, and
/// checks the forward pass and the three gradients of `path` against both (`tol` by name).
fn against_im2col_and_candle(
    path: Path,
    data: (&[f32], &[f32], &[f32]),
    geo: (usize, usize, usize, usize, usize, usize),
    p: usize,
    tol: impl Fn(&str) -> f64,
    what: &str,
) {
    let cout = geo.4;
    let on = |path| {
        move |x: &Tensor, wt: &Tensor, b: &Tensor| {
            conv2d_path(x, wt, Some(b), cfg(1, p), Some(path), false).unwrap()
        }
    };
    let ours = run_with(on(path), data, geo);
    let im2col = run_with(on(Path::Im2col), data, geo);
    let stock = run_with(
        |x, wt, b| {
            x.conv2d(wt, p, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, cout, 1, 1)).unwrap())
                .unwrap()
        },
        data,
        geo,
    );
    for (i, name) in ["forward", "input", "weight", "bias"].iter().enumerate() {
        for (other, want) in [("im2col", &im2col[i]), ("candle", &stock[i])] {
            let e = max_rel(&ours[i], want);
            assert!(
                e < tol(name),
                "{what} {path:?}: {name} vs {other} off by {e}"
            );
        }
    }
}

/// Winograd F(2x2, 3x3) and F(4x4, 3x3) against the im2col path and candle's stock
/// convolution with its autograd, forward and all three gradients, on random 3x3 padding-1
/// shapes: odd and even, unequal heights and widths (tiles hanging over the edge), 8-40
/// channels, batch 1 and batches of several groups (the last one smaller).
#[test]
fn winograd_matches_im2col_and_candle() {
    use winograd::{Tile, Tiling};
    let mut st = 0x3a7e_u64;
    for case in 0..40 {
        let (tile, side, group) = match case % 2 {
            0 => (Tile::F2, 2, winograd::F2::GROUP_TILES),
            _ => (Tile::F4, 4, winograd::F4::GROUP_TILES),
        };
        let (h, w) = (lcg(&mut st, 2, 13), lcg(&mut st, 2, 12));
        let (c, cout) = (lcg(&mut st, 8, 40), lcg(&mut st, 8, 40));
        let gsz = group.div_ceil(h.div_ceil(side) * w.div_ceil(side));
        let n = if case % 3 == 0 {
            1
        } else {
            gsz + lcg(&mut st, 1, gsz + 1)
        };
        let geo = (n, c, h, w, cout, 3);
        let (xv, wv, bv) = (
            values(n * c * h * w, 0.3 + case as f64),
            values(cout * c * 9, 1.7 + case as f64),
            values(cout, 2.9),
        );
        let data = (&xv[..], &wv[..], &bv[..]);
        // the weight and bias gradients are long f32 sums whose order differs between the
        // three (up to 6e-5 for the weights, 1.2e-4 for candle's bias here); F(4x4, 3x3)'s larger coefficients cost a few bits (up to
        // 2.7e-5 forward and 4.7e-5 input gradient here, F(2x2, 3x3) up to 5e-6)
        let tol = |name: &str| match (name, tile) {
            ("bias", _) => 3e-4,
            ("weight", _) => 1e-4,
            (_, Tile::F2) => 2e-5,
            (_, Tile::F4) => 1e-4,
        };
        against_im2col_and_candle(
            Path::Winograd(tile),
            data,
            geo,
            1,
            tol,
            &format!("case {case} {geo:?}"),
        );
    }
}

/// Two runs of the shifted and Winograd paths give the same bits (the weight gradient's sum
/// over groups has a fixed order), with more groups than `DW_PARTS`.
#[test]
fn weight_gradients_are_deterministic() {
    let geo = (150, 8, 9, 11, 9, 3);
    let (xv, wv, bv) = (
        values(150 * 8 * 9 * 11, 0.5),
        values(9 * 8 * 9, 0.6),
        values(9, 0.7),
    );
    let paths = [
        Path::Shifted,
        Path::Winograd(winograd::Tile::F2),
        Path::Winograd(winograd::Tile::F4),
    ];
    for path in paths {
        let run = || {
            run_with(
                |x, wt, b| conv2d_path(x, wt, Some(b), cfg(1, 1), Some(path), false).unwrap(),
                (&xv, &wv, &bv),
                geo,
            )
        };
        let (a, b) = (run(), run());
        for (a, b) in a.iter().zip(&b) {
            let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
            let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{path:?}: two runs differ");
        }
    }
}

/// Times of the paths on the 3x3 layers of the benchmarked WRNs (a measurement, not a
/// check: `cargo test --release -p jem-kernels --lib path_timings -- --ignored --nocapture`;
/// `PATH_TIMINGS_ONLY=n8,c640,Winograd(F2)` keeps those shapes and that path,
/// `PATH_TIMINGS_REPS=N` takes the minimum of N runs instead of 5).
#[test]
#[ignore]
fn path_timings() {
    let dev = Device::Cpu;
    // n, c, hw, cout
    let shapes = [
        (32, 1, 32, 16),
        (32, 16, 32, 16),
        (32, 32, 16, 32),
        (32, 64, 8, 64),
        (32, 64, 32, 64),
        (32, 128, 16, 128),
        (32, 256, 8, 256),
        (8, 160, 32, 160),
        (8, 320, 16, 320),
        (8, 640, 8, 640),
        // single groups of F(2x2) tiles, narrower or fewer than WRN-28-10's 8x8 stage
        (8, 160, 8, 160),
        (8, 320, 8, 320),
        (4, 640, 8, 640),
        (2, 640, 8, 640),
        // WRN-10-2 of the Fashion-MNIST preset, batch 64
        (64, 16, 32, 32),
        (64, 32, 32, 32),
        (64, 64, 16, 64),
        (64, 128, 8, 128),
    ];
    let paths = [
        Path::Im2col,
        Path::Shifted,
        Path::Winograd(winograd::Tile::F2),
        Path::Winograd(winograd::Tile::F4),
    ];
    let names = paths.map(|p| format!("{p:?}"));
    // `PATH_TIMINGS_ONLY=n8,c640,Winograd(F2)`: only the shapes whose label has all the parts
    // that name no path, and only the paths named (all when none is)
    let only = std::env::var("PATH_TIMINGS_ONLY").unwrap_or_default();
    let reps: usize = std::env::var("PATH_TIMINGS_REPS").map_or(5, |r| r.parse().unwrap());
    let only: Vec<&str> = only.split(',').filter(|o| !o.is_empty()).collect();
    let (only_paths, only_parts): (Vec<&str>, Vec<&str>) =
        only.iter().partition(|o| names.iter().any(|n| n == *o));
    for (n, c, hw, cout) in shapes {
        let label = format!("n{n} c{c} {hw}x{hw} cout{cout}");
        if !only_parts.iter().all(|o| label.split(' ').any(|p| p == *o)) {
            continue;
        }
        let x = Var::from_vec(values(n * c * hw * hw, 0.1), (n, c, hw, hw), &dev).unwrap();
        let wt = Var::from_vec(values(cout * c * 9, 0.2), (cout, c, 3, 3), &dev).unwrap();
        let mut line = format!("{label}:");
        for (path, name) in paths.iter().zip(&names) {
            if !only_paths.is_empty() && !only_paths.contains(&name.as_str()) {
                continue;
            }
            let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
            for _ in 0..reps {
                let t = std::time::Instant::now();
                let y = conv2d_path(
                    x.as_tensor(),
                    wt.as_tensor(),
                    None,
                    cfg(1, 1),
                    Some(*path),
                    false,
                )
                .unwrap();
                fwd = fwd.min(t.elapsed().as_secs_f64());
                let t = std::time::Instant::now();
                let _ = y.sum_all().unwrap().backward().unwrap();
                bwd = bwd.min(t.elapsed().as_secs_f64());
            }
            line += &format!("  {path:?} fwd {:.2} ms bwd {:.2} ms", fwd * 1e3, bwd * 1e3);
        }
        println!("{line}");
    }
}

/// The fused ReLU: output and all three gradients equal those of `relu(conv2d_with(..))`
/// composed with candle's ReLU, on the im2col, shifted and Winograd paths.
#[test]
fn fused_relu_matches_the_composed_relu() {
    let dev = Device::Cpu;
    for (case, &(n, c, h, w, cout, k, p)) in [
        (2, 3, 9, 8, 4, [1, 7], [0, 3]),
        (3, 16, 8, 8, 16, [3, 3], [1, 1]),
        (40, 8, 12, 12, 8, [3, 3], [1, 1]),
    ]
    .iter()
    .enumerate()
    {
        let x = Var::from_vec(values(n * c * h * w, 0.2), (n, c, h, w), &dev).unwrap();
        let wt = Var::from_vec(
            values(cout * c * k[0] * k[1], 1.1),
            (cout, c, k[0], k[1]),
            &dev,
        )
        .unwrap();
        let b = Var::from_vec(values(cout, 2.5), cout, &dev).unwrap();
        let conf = Conv2dConfig {
            stride: 1,
            padding: p,
        };
        let run = |fused: bool| {
            let (xt, wtt, bt) = (x.as_tensor(), wt.as_tensor(), b.as_tensor());
            let y = if fused {
                conv2d_relu(xt, wtt, Some(bt), conf).unwrap()
            } else {
                conv2d_with(xt, wtt, Some(bt), conf)
                    .unwrap()
                    .relu()
                    .unwrap()
            };
            let up = Tensor::from_vec(values(y.elem_count(), 3.3), y.shape(), &dev).unwrap();
            let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let mut out = vec![y];
            for v in [&x, &wt, &b] {
                out.push(g.get(v.as_tensor()).unwrap().clone());
            }
            out
        };
        let (fused, composed) = (run(true), run(false));
        for (i, name) in ["forward", "input", "weight", "bias"].iter().enumerate() {
            let e = max_rel(&fused[i], &composed[i]);
            assert!(e < 1e-6, "case {case}: {name} off by {e}");
        }
    }
}

/// n, c, h, w, cout, [kh, kw], stride, [ph, pw]
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    [usize; 2],
    usize,
    [usize; 2],
);

/// The path that other devices take (candle's stock convolution and its autograd, reached
/// here through f64 on the CPU) against the f32 kernels, forward and all three gradients, on
/// the geometries of a WRN: 3x3 padding 1 at strides 1 and 2 on even and odd sizes, the 1x1
/// stride-2 shortcut, and a 7x1 kernel with per-dimension padding (the Inception's).
#[test]
fn other_devices_path_matches_the_kernels() {
    // n, c, h, w, cout, [kh, kw], stride, [ph, pw]
    let cases: [Case; 6] = [
        (2, 3, 8, 8, 4, [3, 3], 1, [1, 1]),
        (2, 4, 16, 16, 6, [3, 3], 2, [1, 1]),
        (2, 4, 15, 15, 6, [3, 3], 2, [1, 1]),
        (2, 4, 16, 16, 6, [1, 1], 2, [0, 0]),
        (1, 3, 9, 7, 5, [3, 3], 2, [1, 1]),
        (2, 3, 9, 9, 4, [7, 1], 1, [3, 0]),
    ];
    for (n, c, h, w, cout, [kh, kw], s, pad) in cases {
        let xv = values(n * c * h * w, 0.3);
        let wv = values(cout * c * kh * kw, 1.7);
        let bv = values(cout, 2.9);
        let run = |dtype: DType| -> Vec<Vec<f64>> {
            let dev = Device::Cpu;
            let t = |v: &[f32], shape: &[usize]| {
                Var::from_tensor(
                    &Tensor::from_vec(v.to_vec(), shape, &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                )
                .unwrap()
            };
            let x = t(&xv, &[n, c, h, w]);
            let wt = t(&wv, &[cout, c, kh, kw]);
            let b = t(&bv, &[cout]);
            let cfg = Conv2dConfig {
                stride: s,
                padding: pad,
            };
            let y = conv2d_with(x.as_tensor(), wt.as_tensor(), Some(b.as_tensor()), cfg).unwrap();
            let up = Tensor::from_vec(values(y.elem_count(), 4.1), y.shape(), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| -> Vec<f64> {
                t.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            let mut out = vec![flat(&y)];
            for v in [&x, &wt, &b] {
                let gv = g.get(v.as_tensor()).unwrap();
                assert_eq!(gv.dims(), v.dims(), "gradient shape, case {h}x{w} s{s}");
                out.push(flat(gv));
            }
            out
        };
        let (ours, other) = (run(DType::F32), run(DType::F64));
        for (i, name) in ["forward", "input", "weight", "bias"].iter().enumerate() {
            let m = other[i].iter().fold(1e-12f64, |m, v| m.max(v.abs()));
            let d = ours[i]
                .iter()
                .zip(&other[i])
                .fold(0.0f64, |d, (a, b)| d.max((a - b).abs()));
            assert!(
                d / m < 1e-5,
                "{n}x{c}x{h}x{w} k{kh}x{kw} s{s} p{pad:?}: {name} off by {:.2e} of its scale",
                d / m
            );
        }
    }
}

/// The paths [`Path::choose`] takes on the layers `path_timings` measured (`BENCHMARKS.md`).
#[test]
fn choose_takes_the_measured_paths() {
    let layer = |n, c| ConvGeometry {
        input: [n, c, 0, 0],
        out_channels: c,
        kernel: [3, 3],
        stride: 1,
        padding: [1, 1],
    };
    let at = |n, c, hw| {
        let mut g: ConvGeometry = layer(n, c);
        g.input[2..].copy_from_slice(&[hw, hw]);
        winograd::choose(&g)
    };
    use winograd::Tile::{F2, F4};
    // WRN-28-10 at batch 8: F(4x4) at 32x32; at 16x16 one full group of F(4x4) tiles with
    // AVX-512, else of F(2x2) tiles; at 8x8 one full group of F(2x2) tiles
    assert_eq!(at(8, 160, 32), Some(F4));
    let wide16 = if crate::simd::has_avx512() { F4 } else { F2 };
    assert_eq!(at(8, 320, 16), Some(wide16));
    assert_eq!(at(8, 640, 8), Some(F2));
    // a group short of tiles, or a single group of narrow layers: im2col
    assert_eq!(at(4, 640, 8), None);
    assert_eq!(at(8, 64, 8), None);
    // WRN-16-4 at batch 32: F(4x4) would have one group at 8x8, F(2x2) has four
    assert_eq!(at(32, 256, 8), Some(F2));
    assert_eq!(at(32, 64, 32), Some(F4));
    // the preset's WRN-10-2 at batch 64
    assert_eq!(at(64, 128, 8), Some(F4));
    // not a stride-1 3x3 convolution with enough channels
    assert_eq!(at(64, 3, 32), None);
}
