//! The Markdown table of `cargo xtask bench`.

use serde_json::Value;

/// The ratio table of the measured `rows` (see `super::run` for their fields), with the
/// notes on rounds, arithmetic rates and the (d) split.
pub(super) fn table(rows: &[Value], rounds: usize, iters: usize) -> String {
    let num = |v: &Value, digits: usize| {
        v.as_f64()
            .map_or("—".to_string(), |x| format!("{x:.digits$}"))
    };
    let mut md = "| measure | what | ours img/s | PyTorch img/s | ours / PyTorch | per-round \
                  ratios (median, min-max) | PyTorch foreign_cpu_frac (max) | peak RSS MiB ours / \
                  PyTorch |\n|---|---|---|---|---|---|---|---|\n"
        .to_string();
    let with_before = rows.iter().any(|r| r["before_images_per_s"].is_number());
    if with_before {
        md = md.replace(
            "| PyTorch foreign_cpu_frac",
            "| before img/s | before / PyTorch (per-round median) | PyTorch foreign_cpu_frac",
        );
        md = md.replace(
            "|---|---|---|---|---|---|---|---|",
            "|---|---|---|---|---|---|---|---|---|---|",
        );
    }
    let mut splits = String::new();
    let mut rates = Vec::new();
    for r in rows {
        let key = r["measure"].as_str().unwrap_or("?");
        let paired = match r["paired_ratio_range"].as_array() {
            Some(lh) if lh.len() == 2 => format!(
                "{} ({}-{})",
                num(&r["paired_ratio_median"], 2),
                num(&lh[0], 2),
                num(&lh[1], 2)
            ),
            _ => "—".into(),
        };
        let before = if with_before {
            format!(
                " {} | {} ({}) |",
                num(&r["before_images_per_s"], 2),
                num(&r["before_ratio"], 2),
                num(&r["before_paired_ratio_median"], 2)
            )
        } else {
            String::new()
        };
        md += &format!(
            "| ({key}) | {} | {} | {} | {} | {paired} |{before} {} | {} / {} |\n",
            r["what"].as_str().unwrap_or("?"),
            num(&r["ours_images_per_s"], 2),
            num(&r["torch_images_per_s"], 2),
            num(&r["ratio"], 2),
            num(&r["torch_foreign_cpu_frac_max"], 3),
            num(&r["ours_peak_rss_mb"], 0),
            num(&r["torch_peak_rss_mb"], 0),
        );
        if r["gflop_per_image"].is_number() {
            rates.push(format!(
                "({key}) {} GFLOP/image: {} / {}",
                num(&r["gflop_per_image"], 2),
                num(&r["ours_gflops"], 0),
                num(&r["torch_gflops"], 0)
            ));
        }
        let ph = &r["phases_ms"];
        if ph["ours"][0].is_number() || ph["torch"][0].is_number() {
            splits += &format!(
                "\n({key}) split, median ms per iteration, ours / PyTorch: SGLD {} / {}, SAM and \
                 the step {} / {}.\n",
                num(&ph["ours"][0], 0),
                num(&ph["torch"][0], 0),
                num(&ph["ours"][1], 0),
                num(&ph["torch"][1], 0),
            );
        }
    }
    md += &format!(
        "\nMedian over {rounds} alternating rounds; each round times {iters} iterations after one \
         warm-up and reports their median; a per-round ratio compares the two runs of one \
         round, made back to back under the same load.\n"
    );
    if !rates.is_empty() {
        md += &format!(
            "\nArithmetic rate, GFLOP/s ours / PyTorch, from each measure's direct-convolution \
             FLOPs (convolutions and the head, 2 per multiply-add; ours does fewer on its \
             Winograd layers, so its figure is the equivalent rate): {}.\n",
            rates.join("; ")
        );
    }
    md + &splits
}

#[cfg(test)]
mod tests {
    use super::super::PHASES;
    use super::*;
    use serde_json::json;

    #[test]
    fn table_shows_paired_ratios_and_the_split() {
        let row = json!({
            "measure": "d", "what": "iteration", "ours_images_per_s": 4.0,
            "torch_images_per_s": 5.0, "ratio": 0.8, "torch_foreign_cpu_frac_max": 0.01,
            "paired_ratio_median": 0.85, "paired_ratio_range": [0.8, 0.9],
            "ours_peak_rss_mb": 700.0, "torch_peak_rss_mb": 1500.0,
            "phases_ms": { "names": PHASES, "ours": [3600.0, 4100.0], "torch": [2800.0, 3900.0] },
            "gflop_per_image": 22.0, "ours_gflops": 88.0, "torch_gflops": 110.0,
        });
        let md = table(&[row], 3, 3);
        assert!(md.contains("(d) 22.00 GFLOP/image: 88 / 110"), "{md}");
        assert!(
            md.contains(
                "| (d) | iteration | 4.00 | 5.00 | 0.80 | 0.85 (0.80-0.90) | 0.010 | 700 / 1500 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("SGLD 3600 / 2800, SAM and the step 4100 / 3900"),
            "{md}"
        );
        let ours_only = json!({ "measure": "b'", "what": "x", "ours_images_per_s": 1.0 });
        let md = table(&[ours_only], 1, 1);
        assert!(
            md.contains("| (b') | x | 1.00 | — | — | — | — | — / — |"),
            "{md}"
        );
        assert!(!md.contains("split") && !md.contains("GFLOP"), "{md}");
    }
}
