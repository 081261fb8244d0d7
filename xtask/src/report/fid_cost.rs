//! What each FID of a reproduction cost: the time to get its images (replay buffer or
//! fresh chains) and the Inception's time per 1,000 images, from the `seconds` that
//! `jem eval fid` keeps in its result file.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::reproduce::{Model, human};

/// One line per FID result with recorded times; nothing when no result has them (files
/// written before `jem` kept them).
pub fn section(md: &mut String, out: &Path, models: &[Model]) {
    let mut lines = Vec::new();
    for m in models {
        for file in ["fid.json", "fid-chains.json"] {
            let path = out.join(&m.key).join("eval").join(file);
            if let Some(line) = super::read(&path).and_then(|v| cost_line(&v)) {
                lines.push(format!("- `{}` `{file}`: {line}", m.key));
            }
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**What FID cost** on this machine (wall clock; the Inception's time covers the \
         generated images and, where they were not cached yet, the real ones):\n"
    );
    for l in lines {
        let _ = writeln!(md, "{l}");
    }
    md.push('\n');
}

/// `images 2 min 5 s; Inception 20 min for 11,000 images (109 s per 1,000)`, or `None`
/// when the result has no times.
fn cost_line(v: &Value) -> Option<String> {
    let t = &v["seconds"];
    let count = |k: &str| t[k].as_u64().unwrap_or(0);
    let secs = |k: &str| t[k].as_f64().unwrap_or(0.0);
    let images = count("inception_images") + count("real_images");
    if images == 0 {
        return None;
    }
    let inception = secs("inception") + secs("real_stats");
    Some(format!(
        "images {}; Inception {} for {} images ({:.0} s per 1,000)",
        human(secs("source")),
        human(inception),
        thousands(images),
        inception * 1000.0 / images as f64
    ))
}

/// `11000` as `11,000`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_lines_read_the_seconds() {
        let v = serde_json::json!({"seconds": {"source": 125.0, "inception": 100.0,
            "inception_images": 1000, "real_stats": 1000.0, "real_images": 10000}});
        assert_eq!(
            cost_line(&v).unwrap(),
            "images 2 min 05 s; Inception 18 min 20 s for 11,000 images (100 s per 1,000)"
        );
        // files written before the times were kept
        assert_eq!(cost_line(&serde_json::json!({"fid": {"fid": 3.0}})), None);
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
