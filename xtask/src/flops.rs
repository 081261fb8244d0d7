//! The arithmetic of the benchmarked work, for the GFLOP/s that `cargo xtask bench` reports:
//! floating-point operations (2 per multiply-add) of the convolutions and the linear head, as
//! a direct convolution does them (BatchNorm and the activations, a few operations per value,
//! are left out; our Winograd paths do fewer multiply-adds for the same result, so theirs is a
//! direct-convolution-equivalent rate).

/// FLOPs of one forward pass of the reference WRN-`depth`-`width` on one 3x32x32 image
/// (its convolutions and linear head, from the layer table `jem_models::summary`), and of
/// its stem convolution alone.
pub fn wrn_forward(depth: usize, width: usize) -> anyhow::Result<(f64, f64)> {
    let config = jem_models::WrnConfig::reference(depth, width, 10);
    let rows = jem_models::summary::summarize(&config, 32)
        .map_err(|e| anyhow::anyhow!("WRN-{depth}-{width}: {e}"))?;
    let flops = |row: &jem_models::summary::LayerRow| 2.0 * row.macs as f64;
    let counted =
        |row: &&jem_models::summary::LayerRow| row.kind.starts_with("conv") || row.kind == "linear";
    let stem = rows.first().map_or(0.0, flops);
    Ok((rows.iter().filter(counted).map(flops).sum(), stem))
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
        assert_eq!(wrn_forward(16, 4).unwrap(), (1_011_717_120.0, 884_736.0));
        assert_eq!(wrn_forward(28, 10).unwrap(), (11_902_235_136.0, 884_736.0));
        assert_eq!(wrn_forward(10, 1).unwrap(), (39_159_040.0, 884_736.0));
        assert!(wrn_forward(15, 1).is_err());
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
