//! `configs/paper-numbers.toml` against the paper's own text
//! (`../shared/reference/sadajem-paper.md`, where the tables are tab-separated lines under
//! their captions): every number of the file must be the one the paper prints in that row and
//! column, every number the paper prints must be in the file, and the ECE values must be the
//! ones section 4.2 states. Skipped, with the reason printed, where the text is not present.

use super::*;

fn paper_text() -> Option<String> {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/sadajem-paper.md");
    match std::fs::read_to_string(&file) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!(
                "skipped: the paper's text {} is not readable ({e})",
                file.display()
            );
            None
        }
    }
}

/// A row label without markup or spacing: `ASAM ( $\rho = 0.5$ )` and `ASAM (rho = 0.5)`
/// both give `asam(0.5)`.
fn norm(label: &str) -> String {
    let mut s = label.replace("\\rho", "").replace("\\alpha", "");
    s = s.replace("rho", "").replace("alpha", "");
    s.chars()
        .filter(|c| !c.is_whitespace() && !"$^_{}=".contains(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The tab-separated rows under the `nth` line starting with `caption` (0: first, -1: last),
/// cells cleaned of bold markup; sub-headers such as "Other EBMs" (a label and empty cells)
/// are skipped.
fn rows_under(text: &str, caption: &str, last: bool) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let at: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with(caption))
        .collect();
    let start = if last { at.last() } else { at.first() };
    let Some(&start) = start else {
        panic!("no caption `{caption}` in the paper's text");
    };
    let mut rows = Vec::new();
    for l in &lines[start + 1..] {
        let subheader = l.contains('\t') && l.split('\t').skip(1).all(|c| c.trim().is_empty());
        if l.contains('\t') && !subheader {
            rows.push(
                l.split('\t')
                    .map(|c| c.replace("<b>", "").replace("</b>", "").trim().to_string())
                    .collect(),
            );
        } else if !rows.is_empty() && !l.trim().is_empty() && !l.contains('\t') {
            break;
        }
    }
    rows
}

#[test]
fn every_number_is_the_one_the_papers_text_prints() {
    let Some(text) = paper_text() else { return };
    let p = paper();
    let mut matched = 0;
    let mut compare = |id: &str, label: &str, metrics: &[String], cells: &[String]| {
        let t = p.table.iter().find(|t| t.id == id).unwrap();
        let row = t
            .row
            .iter()
            .find(|r| norm(&r.label) == norm(label))
            .unwrap_or_else(|| panic!("{id}: the paper's row `{label}` is not in the file"));
        for (m, cell) in metrics.iter().zip(cells) {
            let ours = row.values.get(m).map(String::as_str);
            if cell == "-" || cell.is_empty() {
                assert_eq!(ours, None, "{id}, {label}, {m}: the paper prints -");
            } else if cell.starts_with("Diverged") {
                assert!(
                    row.values.is_empty()
                        && row
                            .stability
                            .as_deref()
                            .is_some_and(|s| s.contains("diverged"))
                );
            } else {
                assert_eq!(ours, Some(cell.as_str()), "{id}, {label}, {m}");
                matched += 1;
            }
        }
    };
    let three = ["accuracy", "is", "fid"].map(String::from);
    for (caption, id) in [
        ("Table 1. Results on CIFAR10", "table1"),
        ("Table 2. Results on CIFAR100", "table2"),
    ] {
        for r in rows_under(&text, caption, false)
            .iter()
            .filter(|r| r[0] != "Model")
        {
            compare(id, &r[0], &three, &r[1..]);
        }
    }
    let two = ["accuracy", "fid"].map(String::from);
    for (caption, id, last) in [("Table 5.", "table5", true), ("Table 6.", "table6", false)] {
        for r in rows_under(&text, caption, last)
            .iter()
            .filter(|r| r[0] != "Ablation")
        {
            compare(id, &r[0], &two, &r[1..]);
        }
    }
    let mut score = "";
    for r in rows_under(&text, "Table 3. OOD", false) {
        let cells: &[String] = if r[0].starts_with("$\\log") {
            score = "px";
            &r[1..]
        } else if r[0].starts_with("$\\max") {
            score = "py";
            &r[1..]
        } else if r[0].starts_with("$s_") {
            continue;
        } else if r[0].is_empty() {
            &r[1..]
        } else {
            &r[..]
        };
        let metrics: Vec<String> = ["svhn", "cifar10-interp", "cifar100", "celeba"]
            .iter()
            .map(|s| format!("ood:{s}:{score}"))
            .collect();
        compare(&format!("table3-{score}"), &cells[0], &metrics, &cells[1..]);
    }
    // and nothing in the file that the paper's tables do not print
    let in_file: usize = p
        .table
        .iter()
        .filter(|t| t.id != "ece")
        .map(|t| t.row.iter().map(|r| r.values.len()).sum::<usize>())
        .sum();
    assert_eq!(matched, in_file);
    // section 4.2: "(2.04% vs. 4.2% of JEM and 5.5% of softmax classifier)"
    let ece = p.table.iter().find(|t| t.id == "ece").unwrap();
    let sentence = text
        .lines()
        .find(|l| l.contains("achieves a much smaller ECE"))
        .expect("section 4.2's ECE sentence");
    for r in &ece.row {
        let v = &r.values["ece"];
        assert!(
            sentence.contains(&format!("{v}%")),
            "ECE {v} of {}",
            r.label
        );
    }
}
