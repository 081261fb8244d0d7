//! The report's Markdown as one self-contained HTML page (figures inlined as base64 PNGs).

use std::fmt::Write as _;
use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Markdown this module writes (headings, lists, tables, images, code blocks) as a
/// self-contained HTML page with the images inlined.
pub fn to_html(md: &str, out: &Path) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sadajem reproduction</title>\
         <style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:\
         collapse}td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}pre{background:\
         #f4f4f4;padding:8px;overflow:auto}</style></head><body>\n",
    );
    let mut in_code = false;
    let mut table: Vec<Vec<String>> = Vec::new();
    let flush = |table: &mut Vec<Vec<String>>, h: &mut String| {
        if table.is_empty() {
            return;
        }
        h.push_str("<table>");
        for (i, row) in table.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            h.push_str("<tr>");
            for c in row {
                let _ = write!(h, "<{tag}>{}</{tag}>", escape(c));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>\n");
        table.clear();
    };
    for line in md.lines() {
        if line.starts_with("```") {
            h.push_str(if in_code { "</pre>\n" } else { "<pre>" });
            in_code = !in_code;
            continue;
        }
        if in_code {
            h.push_str(&escape(line));
            h.push('\n');
            continue;
        }
        if line.starts_with('|') {
            if !line.starts_with("|---") {
                let cells = line
                    .trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().replace("\\|", "|"))
                    .collect();
                table.push(cells);
            }
            continue;
        }
        flush(&mut table, &mut h);
        if let Some(t) = line.strip_prefix("### ") {
            let _ = writeln!(h, "<h3>{}</h3>", escape(t));
        } else if let Some(t) = line.strip_prefix("## ") {
            let _ = writeln!(h, "<h2>{}</h2>", escape(t));
        } else if let Some(t) = line.strip_prefix("# ") {
            let _ = writeln!(h, "<h1>{}</h1>", escape(t));
        } else if let Some(t) = line.strip_prefix("- ") {
            let _ = writeln!(h, "<li>{}</li>", escape(t));
        } else if let Some(rest) = line.strip_prefix("![") {
            let (alt, rest) = rest.split_once("](").unwrap_or(("", ""));
            let src = rest.trim_end_matches(')');
            match std::fs::read(out.join(src)) {
                Ok(bytes) => {
                    let _ = writeln!(
                        h,
                        "<p><img alt=\"{}\" src=\"data:image/png;base64,{}\"></p>",
                        escape(alt),
                        base64(&bytes)
                    );
                }
                Err(_) => {
                    let _ = writeln!(h, "<p>(missing figure {})</p>", escape(src));
                }
            }
        } else if !line.trim().is_empty() {
            let _ = writeln!(h, "<p>{}</p>", escape(line));
        }
    }
    flush(&mut table, &mut h);
    h.push_str("</body></html>\n");
    h
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn html_has_tables_headings_and_escapes() {
        let md = "# T\n\n| a | b \\| c |\n|---|---|\n| 1 | <2> |\n\n```toml\nx = 1\n```\n";
        let h = to_html(md, Path::new("."));
        assert!(
            h.contains("<h1>T</h1>") && h.contains("<th>b | c</th>") && h.contains("&lt;2&gt;")
        );
        assert!(h.contains("<pre>x = 1\n</pre>"));
    }
}
