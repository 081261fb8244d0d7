//! `extends` resolution and `--set key=value` overrides on TOML tables.

use std::path::{Path, PathBuf};

use crate::{Result, TrainError};

pub(super) fn read_table(path: &Path, depth: usize) -> Result<toml::Table> {
    if depth > 8 {
        return Err(TrainError::Config(format!(
            "{}: `extends` nests deeper than 8 files (a cycle?)",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    match table.remove("extends") {
        None => Ok(table),
        Some(toml::Value::String(parent)) => {
            let parent_path: PathBuf = path.parent().unwrap_or(Path::new(".")).join(parent);
            let mut base = read_table(&parent_path, depth + 1)?;
            merge(&mut base, table);
            Ok(base)
        }
        Some(other) => Err(TrainError::Config(format!(
            "{}: extends: expected a file name, got {other}",
            path.display()
        ))),
    }
}

/// Deep-merges `over` into `base`: tables merge, except tables with a `kind` (a variant such
/// as `sampler.rule` or `schedule.decay`, which replaces the parent's whole); everything
/// else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) if !o.contains_key("kind") => {
                merge(b, o)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies `a.b.c=value`; the value is TOML (`0.1`, `true`, `[60, 120]`,
/// `{ kind = "constant" }`) or else taken as a string.
pub fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| TrainError::Config(format!("--set {item}: expected key=value")))?;
    let key = key.trim();
    let raw = raw.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(TrainError::Config(format!("--set {item}: bad key `{key}`")));
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(TrainError::Config(format!(
                    "--set {item}: `{p}` is not a section"
                )));
            }
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
