//! `jem model ...`: inspect architectures, export a checkpoint's model.

use anyhow::{Context, Result, bail};
use std::path::Path;

use clap::{ArgMatches, Command};
use jem_models::summary::summarize;
use jem_models::{Norm, WrnConfig};

use jem_train::{Checkpoint, TrainConfig};

use crate::args::{flag, opt, parsed, path, set_arg, sets, string};

/// The `jem model` command tree.
pub fn command() -> Command {
    Command::new("model")
        .about("Models: architectures and their sizes; a checkpoint's model part")
        .subcommand_required(true)
        .subcommand(
            Command::new("summary")
                .about(
                    "Layer table, parameter count and multiply-adds per image of an architecture; \
                     the last line is the parameter count alone",
                )
                .arg(
                    opt(
                        "arch",
                        "ARCH",
                        "Architecture, wrn-<depth>-<width> (e.g. wrn-28-10)",
                    )
                    .required(true),
                )
                .arg(opt("classes", "N", "Number of classes").default_value("10"))
                .arg(
                    opt(
                        "in-channels",
                        "C",
                        "Input channels (3 for colour, 1 for digits)",
                    )
                    .default_value("3"),
                )
                .arg(
                    opt("norm", "NORM", "Normalization layers")
                        .value_parser(["batch", "none"])
                        .default_value("batch"),
                )
                .arg(opt("size", "PIXELS", "Input size").default_value("32"))
                .arg(flag(
                    "json",
                    "Print one JSON object (totals and the layer rows) instead of the table",
                )),
        )
        .subcommand(
            Command::new("export")
                .about(
                    "Writes the model part of a `jem train` checkpoint (weights, BatchNorm \
                     statistics, config, progress) without the optimizer state and the replay \
                     buffer: a small file that every `jem eval` task reads, except those of the \
                     replay buffer (FID of the buffer); training cannot resume from it",
                )
                .arg(opt("checkpoint", "FILE", "A checkpoint of `jem train`").required(true))
                .arg(opt("out", "FILE", "The model-only checkpoint to write").required(true)),
        )
        .subcommand(
            Command::new("import")
                .about(
                    "Converts a checkpoint of the authors' PyTorch code (`torch.save` of \
                     {model_state_dict, replay_buffer}) into a model-only checkpoint that every \
                     `jem eval` task reads; the preset gives the data set and settings and must \
                     describe the same network",
                )
                .arg(opt("checkpoint", "PT", "The reference's .pt file").required(true))
                .arg(
                    opt(
                        "config",
                        "TOML",
                        "The preset the model was trained with, e.g. configs/cifar10/sadajem.toml",
                    )
                    .required(true),
                )
                .arg(set_arg(
                    "Override a preset value (repeatable), e.g. model.width=2",
                ))
                .arg(opt("out", "FILE", "The checkpoint to write (.safetensors)").required(true)),
        )
}

/// Converts the reference's `.pt` with the preset `config` (and `--set` overrides).
pub fn import_pt(pt: &Path, config: &Path, sets: &[String]) -> Result<jem_train::import::Imported> {
    let cfg = TrainConfig::load(config, sets)
        .with_context(|| format!("loading the preset {}", config.display()))?;
    jem_train::import::import_torch_checkpoint(pt, &cfg)
        .with_context(|| format!("importing {}", pt.display()))
}

/// `jem model import --checkpoint X.pt --config TOML --out FILE`.
fn import(m: &ArgMatches) -> Result<()> {
    let pt = path(m, "checkpoint").unwrap_or_default();
    let config = path(m, "config").unwrap_or_default();
    let out = path(m, "out").unwrap_or_default();
    let sets = sets(m);
    let imported = import_pt(&pt, &config, &sets)?;
    imported.checkpoint.save(&out)?;
    let buffer = imported
        .checkpoint
        .replay_buffer
        .as_ref()
        .map(|b| format!("replay buffer {:?}", b.dims()))
        .unwrap_or_else(|| "no replay buffer".into());
    println!(
        "{}: {} model tensors and {buffer} from {}; ignored: {}",
        out.display(),
        imported.checkpoint.model.len(),
        pt.display(),
        if imported.ignored.is_empty() {
            "nothing".to_string()
        } else {
            imported.ignored.join(", ")
        }
    );
    Ok(())
}

/// Parses `wrn-D-W` into a reference configuration.
pub fn parse_arch(arch: &str, classes: usize) -> Result<WrnConfig> {
    let parts: Vec<&str> = arch.split('-').collect();
    let [kind, depth, width] = parts[..] else {
        bail!("--arch `{arch}`: expected wrn-<depth>-<width>, e.g. wrn-28-10");
    };
    if !kind.eq_ignore_ascii_case("wrn") {
        bail!("--arch `{arch}`: only Wide-ResNets (wrn-<depth>-<width>) are available");
    }
    let depth = depth
        .parse()
        .with_context(|| format!("--arch `{arch}`: bad depth"))?;
    let width = width
        .parse()
        .with_context(|| format!("--arch `{arch}`: bad width"))?;
    Ok(WrnConfig::reference(depth, width, classes))
}

pub fn run(m: &ArgMatches) -> Result<()> {
    let (sub, m) = m.subcommand().expect("clap requires a subcommand");
    match sub {
        "summary" => {
            let arch = string(m, "arch").unwrap_or_default();
            let classes: usize = parsed(m, "classes")?.unwrap_or(10);
            let in_channels: usize = parsed(m, "in-channels")?.unwrap_or(3);
            let size: usize = parsed(m, "size")?.unwrap_or(32);
            let norm = string(m, "norm").unwrap_or_default();
            let mut cfg = parse_arch(&arch, classes)?;
            cfg.in_channels = in_channels;
            cfg.norm = match norm.as_str() {
                "batch" => Norm::Batch,
                "none" => Norm::None,
                other => bail!("--norm `{other}`: expected batch or none"),
            };
            let rows = summarize(&cfg, size)?;
            let params: usize = rows.iter().map(|r| r.params).sum();
            let macs: usize = rows.iter().map(|r| r.macs).sum();
            if m.get_flag("json") {
                let v = serde_json::json!({
                    "arch": arch,
                    "classes": classes,
                    "in_channels": in_channels,
                    "size": size,
                    "params": params,
                    "macs": macs,
                    "layers": rows,
                });
                println!("{v}");
                return Ok(());
            }
            println!(
                "{:<24} {:<10} {:>16} {:>12} {:>16}",
                "layer", "kind", "output", "params", "mult-adds"
            );
            for r in &rows {
                let shape = r
                    .output
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x");
                println!(
                    "{:<24} {:<10} {:>16} {:>12} {:>16}",
                    r.name, r.kind, shape, r.params, r.macs
                );
            }
            println!(
                "{arch} ({} classes, {in_channels} input channels, {size}x{size}): {params} parameters, {:.3} G multiply-adds per image",
                classes,
                macs as f64 / 1e9
            );
            println!("{params}");
            Ok(())
        }
        "export" => export(m),
        "import" => import(m),
        other => unreachable!("unknown subcommand {other}"),
    }
}

/// `jem model export --checkpoint FILE --out FILE`.
fn export(m: &ArgMatches) -> Result<()> {
    let (from, to) = (
        path(m, "checkpoint").unwrap_or_default(),
        path(m, "out").unwrap_or_default(),
    );
    let ck = Checkpoint::load(&from, &candle_core::Device::Cpu)?;
    ck.model_only().save(&to)?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: the model of {} at iteration {} ({} tensors; {} bytes, {} in the checkpoint)",
        to.display(),
        from.display(),
        ck.progress.iteration,
        ck.model.len(),
        size(&to),
        size(&from)
    );
    Ok(())
}
