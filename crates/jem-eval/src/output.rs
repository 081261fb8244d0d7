//! Writing task results: JSON files written atomically, figures next to them.

use std::path::Path;

use serde::Serialize;

use crate::{EvalError, Result};

/// Creates `dir` (and its parents) when missing; the error names it.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `value` as pretty JSON to `dir/name` atomically (temporary file, then rename).
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    ensure_dir(dir)?;
    let path = dir.join(name);
    let mut text = serde_json::to_string_pretty(value).map_err(|source| EvalError::Json {
        path: path.clone(),
        source,
    })?;
    text.push('\n');
    Ok(jem_io::write_atomic(&path, text.as_bytes())?)
}

/// Converts a figure error (kept as its cause).
pub fn plot_err(e: jem_plot::PlotError) -> EvalError {
    EvalError::Plot(e)
}
