//! The report's Markdown as one self-contained HTML page (figures inlined as base64 PNGs).

use std::path::Path;

/// The report's Markdown (CommonMark with tables, footnotes and strikethrough, rendered by
/// pulldown-cmark) as a self-contained HTML page: images with a relative path are read from
/// `out` and inlined as base64 PNGs, a missing one becomes a note.
pub fn to_html(md: &str, out: &Path) -> String {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sadajem reproduction</title>\
         <style>body{font-family:sans-serif;max-width:1000px;margin:auto;line-height:1.4}\
         table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px}\
         th{background:#f0f0f0}img{max-width:100%}pre{background:#f4f4f4;padding:8px;\
         overflow:auto}code{background:#f4f4f4}.footnote-definition{font-size:90%}</style>\
         </head><body>\n",
    );
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_FOOTNOTES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(md, options).map(|e| match e {
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !dest_url.contains("://") && !dest_url.starts_with("data:") => {
            let dest_url = match std::fs::read(out.join(dest_url.as_ref())) {
                Ok(bytes) => CowStr::from(format!("data:image/png;base64,{}", base64(&bytes))),
                Err(_) => CowStr::from(format!("missing-figure:{dest_url}")),
            };
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        e => e,
    });
    pulldown_cmark::html::push_html(&mut h, events);
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
    fn html_has_tables_headings_lists_emphasis_and_footnotes() {
        let md = "# T\n\n| a | b \\| c |\n|---|---|\n| 1 | `<2>` |\n\n```toml\nx = 1\n```\n\n\
                  - **bold** item\n- second[^1]\n\n[^1]: the note\n\n![fig](missing.png)\n";
        let h = to_html(md, Path::new("."));
        assert!(h.contains("<h1>T</h1>"), "{h}");
        assert!(
            h.contains("<th>b | c</th>") && h.contains("<code>&lt;2&gt;</code>"),
            "{h}"
        );
        assert!(h.contains("x = 1\n</code></pre>"), "{h}");
        assert!(
            h.contains("<ul>") && h.contains("<li><strong>bold</strong> item</li>"),
            "{h}"
        );
        assert!(!h.contains("**"), "no literal emphasis markers: {h}");
        assert!(
            h.contains("footnote-definition") && h.contains("the note"),
            "{h}"
        );
        assert!(h.contains("missing-figure:missing.png"), "{h}");
    }
}
