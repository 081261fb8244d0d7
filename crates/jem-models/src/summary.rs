//! A layer table of a Wide-ResNet: output shapes, parameters and multiply-adds per image.

use serde::Serialize;

use crate::wrn::{Norm, WrnConfig};

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRow {
    /// Parameter prefix (`f.layer1.0.conv1`).
    pub name: String,
    /// Layer kind.
    pub kind: String,
    /// Output `[C, H, W]` (or `[features]`).
    pub output: Vec<usize>,
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-adds per image.
    pub macs: usize,
}

/// The largest input side [`summarize`] accepts (its counts stay far from overflow).
pub const MAX_SUMMARY_SIZE: usize = 4096;

/// The table for `config` on `size` x `size` inputs, in forward order.
pub fn summarize(config: &WrnConfig, size: usize) -> crate::error::Result<Vec<LayerRow>> {
    if !(1..=MAX_SUMMARY_SIZE).contains(&size) {
        return Err(crate::error::ModelError::Invalid(format!(
            "input size {size} is outside 1..={MAX_SUMMARY_SIZE} pixels"
        )));
    }
    let n = config.blocks_per_stage()?;
    let [w0, w1, w2, w3] = config.stage_widths();
    let mut rows = Vec::new();
    let conv =
        |rows: &mut Vec<LayerRow>, name: String, c_in: usize, c_out: usize, k: usize, hw: usize| {
            rows.push(LayerRow {
                name,
                kind: format!("conv{k}x{k}"),
                output: vec![c_out, hw, hw],
                params: c_out * c_in * k * k + c_out,
                macs: hw * hw * c_out * c_in * k * k,
            });
        };
    let bn = |rows: &mut Vec<LayerRow>, name: String, c: usize, hw: usize| {
        if config.norm == Norm::Batch {
            rows.push(LayerRow {
                name,
                kind: "batchnorm".into(),
                output: vec![c, hw, hw],
                params: 2 * c,
                macs: c * hw * hw,
            });
        }
    };
    let mut hw = size;
    conv(&mut rows, "f.conv1".into(), config.in_channels, w0, 3, hw);
    let mut c_in = w0;
    for (s, (&planes, stride)) in [w1, w2, w3].iter().zip([1usize, 2, 2]).enumerate() {
        for i in 0..n {
            let p = format!("f.layer{}.{i}", s + 1);
            let st = if i == 0 { stride } else { 1 };
            bn(&mut rows, format!("{p}.bn1"), c_in, hw);
            conv(&mut rows, format!("{p}.conv1"), c_in, planes, 3, hw);
            bn(&mut rows, format!("{p}.bn2"), planes, hw);
            let out_hw = (hw - 1) / st + 1;
            conv(&mut rows, format!("{p}.conv2"), planes, planes, 3, out_hw);
            if st != 1 || c_in != planes {
                conv(
                    &mut rows,
                    format!("{p}.shortcut.0"),
                    c_in,
                    planes,
                    1,
                    out_hw,
                );
            }
            hw = out_hw;
            c_in = planes;
        }
    }
    bn(&mut rows, "f.bn1".into(), w3, hw);
    rows.push(LayerRow {
        name: "f.pool".into(),
        kind: format!("avgpool{}", 8),
        output: vec![w3],
        params: 0,
        macs: w3 * hw * hw,
    });
    rows.push(LayerRow {
        name: "class_output".into(),
        kind: "linear".into(),
        output: vec![config.num_classes],
        params: w3 * config.num_classes + config.num_classes,
        macs: w3 * config.num_classes,
    });
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrn_28_10_has_the_reference_parameter_count() {
        let rows = summarize(&WrnConfig::reference(28, 10, 10), 32).unwrap();
        assert_eq!(rows.iter().map(|r| r.params).sum::<usize>(), 36_489_290);
        let c100 = summarize(&WrnConfig::reference(28, 10, 100), 32).unwrap();
        // the reference's 36,547,621 includes the unused 641-parameter energy head
        assert_eq!(
            c100.iter().map(|r| r.params).sum::<usize>(),
            36_547_621 - 641
        );
        let wrn16 = summarize(&WrnConfig::reference(16, 4, 10), 32).unwrap();
        assert_eq!(wrn16.iter().map(|r| r.params).sum::<usize>(), 2_751_146);
    }

    #[test]
    fn sizes_outside_the_range_are_errors() {
        let c = WrnConfig::reference(10, 2, 10);
        for size in [0, MAX_SUMMARY_SIZE + 1] {
            let e = summarize(&c, size).unwrap_err().to_string();
            assert!(e.contains("input size"), "{e}");
        }
        assert!(summarize(&c, 1).is_ok());
    }
}
