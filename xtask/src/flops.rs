//! The arithmetic of the benchmarked work, for the GFLOP/s that `cargo xtask bench` reports:
//! floating-point operations (2 per multiply-add) of the convolutions and the linear head, as
//! a direct convolution does them (BatchNorm and the activations, a few operations per value,
//! are left out; our Winograd paths do fewer multiply-adds for the same result, so theirs is a
//! direct-convolution-equivalent rate).

/// FLOPs of one forward pass of the pre-activation WRN-`depth`-`width` (stride on the second
/// convolution of a stage's first block, 1x1 shortcuts where the shape changes) on one
/// 3x32x32 image, and of its stem convolution alone.
pub fn wrn_forward(depth: usize, width: usize) -> (f64, f64) {
    let conv = |cin: usize, cout: usize, k: usize, out_hw: usize| {
        2.0 * (cin * cout * k * k * out_hw * out_hw) as f64
    };
    let stem = conv(3, 16, 3, 32);
    let mut total = stem;
    let (mut cin, mut hw) = (16, 32);
    for (stage, stride) in [1, 2, 2].into_iter().enumerate() {
        let cout = (16 << stage) * width;
        for block in 0..(depth - 4) / 6 {
            let s = if block == 0 { stride } else { 1 };
            total += conv(cin, cout, 3, hw) + conv(cout, cout, 3, hw / s);
            if s != 1 || cin != cout {
                total += conv(cin, cout, 1, hw / s);
            }
            (cin, hw) = (cout, hw / s);
        }
    }
    (total + 2.0 * (cin * 10) as f64, stem)
}

/// FLOPs per image counted by a `jem bench --measure` on a WRN whose forward pass takes `f`
/// and its stem `stem` (the batches all of one size, K = 5 SGLD steps): a classifier step is
/// the forward pass and both gradients but the data's (`3 f - stem`), an SGLD step the
/// forward pass and the input gradient (`2 f`); a SADA-JEM iteration per labelled image is
/// five SGLD steps plus two SAM passes over two batches (the script's) or three (training's).
/// `None` for another measure.
pub fn per_image(measure: &str, f: f64, stem: f64) -> Option<f64> {
    let step = 3.0 * f - stem;
    match measure {
        "clf_step" => Some(step),
        "sgld_step" | "sgld_step_eval" => Some(2.0 * f),
        "sadajem_iter_shared" => Some(5.0 * 2.0 * f + 2.0 * 2.0 * step),
        "sadajem_iter" => Some(5.0 * 2.0 * f + 2.0 * 3.0 * step),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against forward hooks on every Conv2d and Linear of the PyTorch reference model
    /// (`bench/count_flops.py`).
    #[test]
    fn matches_pytorch_hooks() {
        assert_eq!(wrn_forward(16, 4), (1_011_717_120.0, 884_736.0));
        assert_eq!(wrn_forward(28, 10), (11_902_235_136.0, 884_736.0));
        assert_eq!(wrn_forward(10, 1), (39_159_040.0, 884_736.0));
    }

    #[test]
    fn measures() {
        let (f, s) = (10.0, 1.0);
        assert_eq!(per_image("clf_step", f, s), Some(29.0));
        assert_eq!(per_image("sgld_step_eval", f, s), Some(20.0));
        assert_eq!(per_image("sadajem_iter_shared", f, s), Some(100.0 + 116.0));
        assert_eq!(per_image("sadajem_iter", f, s), Some(100.0 + 174.0));
        assert_eq!(per_image("other", f, s), None);
    }
}
