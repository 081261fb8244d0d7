//! Small helpers over clap's builder API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, ArgMatches};

/// A `--name VALUE` option.
pub fn opt(name: &'static str, value: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).value_name(value).help(help)
}

/// A `--name` switch.
pub fn flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .action(ArgAction::SetTrue)
        .help(help)
}

/// The `--data-dir` option (also `$JEM_DATA_DIR`).
pub fn data_dir() -> Arg {
    opt(
        "data-dir",
        "DIR",
        "Data folder (default: the per-user data folder)",
    )
    .env("JEM_DATA_DIR")
}

/// The `--cache-dir` option (also `$JEM_CACHE_DIR`).
pub fn cache_dir() -> Arg {
    opt(
        "cache-dir",
        "DIR",
        "Cache folder of class statistics and FID statistics (default: the per-user cache folder)",
    )
    .env("JEM_CACHE_DIR")
}

/// A string argument.
pub fn string(m: &ArgMatches, name: &str) -> Option<String> {
    m.get_one::<String>(name).cloned()
}

/// A path argument.
pub fn path(m: &ArgMatches, name: &str) -> Option<PathBuf> {
    m.get_one::<String>(name).map(PathBuf::from)
}

/// A switch.
pub fn is_set(m: &ArgMatches, name: &str) -> bool {
    m.get_flag(name)
}

/// A parsed argument, with an error naming it.
pub fn parsed<T: std::str::FromStr>(m: &ArgMatches, name: &str) -> Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    m.get_one::<String>(name)
        .map(|s| s.parse::<T>().with_context(|| format!("--{name} `{s}`")))
        .transpose()
}

/// The `--tf32` switch of the commands that run on a device.
pub fn tf32() -> Arg {
    flag(
        "tf32",
        "On CUDA, let cuBLAS run f32 matrix products in TF32 (10-bit mantissa; faster on \
         Ampere and later). Unverified for training: `jem bench parity --tf32` shows the \
         gradients' deviation; no effect on the CPU",
    )
}

/// Applies `--tf32` (candle's process-wide cuBLAS setting).
pub fn apply_tf32(m: &ArgMatches) {
    if m.get_flag("tf32") {
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
    }
}

/// The repeatable `--set KEY=VALUE` option (preset overrides).
pub fn set_arg(help: &'static str) -> Arg {
    Arg::new("set")
        .long("set")
        .value_name("KEY=VALUE")
        .action(ArgAction::Append)
        .help(help)
}

/// The values of `--set`, in order.
pub fn sets(m: &ArgMatches) -> Vec<String> {
    m.get_many::<String>("set")
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}
