//! CUDA builds on a machine without a GPU, and the prepared GPU check.
//!
//! - `cargo xtask check-cuda [--cudnn] [--build] [--target-dir DIR]`: `cargo check --release`
//!   (with `--build`: `cargo build --release`) of `jem` with `--features cuda` (or `cudnn`), in
//!   the environment of the CUDA toolkit made by `../shared/tools/setup-cuda-toolchain.sh`.
//! - `cargo xtask gpu-check [--cudnn] [--target-dir DIR] [--out DIR] [--jem PATH]`: builds the
//!   release `jem` with CUDA and makes the folder `gpu-check/` (git-ignored): the stripped
//!   binary gzipped (`jem.gz`; the working tree that travels to the GPU machine is limited
//!   to 64 MiB), `run.sh`, `torch_bench.py`, `report.py` (from `bench/gpu/`) and
//!   `BUILD.txt`. `--jem PATH` packs that binary instead of building (for a check of the
//!   scripts with a CPU build). On the GPU machine: `bash gpu-check/run.sh`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The largest folder that may travel (the device tool's limit on the whole working tree is
/// 64 MiB; the tracked files take about 11 MB of it).
const MAX_FOLDER: u64 = 48 << 20;

/// The scripts copied from `bench/gpu/`.
const SCRIPTS: [&str; 3] = ["run.sh", "torch_bench.py", "report.py"];

fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// The shell line that makes the CUDA toolkit visible, or an error saying what to run.
fn toolkit_env(cudnn: bool) -> Result<String> {
    let dir = std::env::var_os("CUDA_WHEELS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/cuda13-wheels")))
        .context("neither CUDA_WHEELS_DIR nor HOME is set")?;
    let env = dir.join("env.sh");
    let setup = "bash ../shared/tools/setup-cuda-toolchain.sh";
    if env.is_file() {
        let text = std::fs::read_to_string(&env).with_context(|| format!("{}", env.display()))?;
        if cudnn && !text.contains("CUDNN_LIB") && std::env::var_os("CUDNN_LIB").is_none() {
            bail!(
                "--cudnn: {} has no cuDNN; run `WITH_CUDNN=1 {setup}` (adds cuDNN's headers and \
                 library for linking), then this command again",
                env.display()
            );
        }
        return Ok(format!("source '{}'", env.display()));
    }
    let nvcc = Command::new("nvcc").arg("--version").output();
    if nvcc.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("xtask: no {}; using the nvcc on PATH", env.display());
        return Ok("true".into());
    }
    bail!(
        "no CUDA toolkit: {} does not exist and no nvcc is on PATH. Run `{setup}` \
         (`WITH_CUDNN=1 {setup}` for --cudnn; ~1.2 GB of pip wheels, no GPU needed), which \
         writes that file; or install CUDA 13.0 and set CUDA_COMPUTE_CAP (90 for an H100/H200)",
        env.display()
    )
}

/// Runs cargo with `args` inside the toolkit's environment.
fn cargo_in_toolkit(cudnn: bool, args: &[String]) -> Result<()> {
    let env = toolkit_env(cudnn)?;
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let line = format!("{env} && exec \"$XTASK_CARGO\" {}", quoted.join(" "));
    eprintln!("==> {env} && cargo {}", args.join(" "));
    let status = Command::new("bash")
        .args(["-c", &line])
        .env("XTASK_CARGO", crate::cargo())
        .current_dir(root())
        .status()
        .context("running bash")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `cargo xtask check-cuda`: compiles `jem` with CUDA (the toolkit, no GPU needed).
#[derive(clap::Args, Debug)]
pub struct CheckCudaArgs {
    /// With cuDNN (`--features cudnn`).
    #[arg(long)]
    pub cudnn: bool,
    /// `cargo build` instead of `cargo check` (links against the CUDA libraries).
    #[arg(long)]
    pub build: bool,
    /// Cargo's target folder for the CUDA build (keeps the CPU build's).
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
}

/// `cargo xtask gpu-check`: builds the CUDA `jem` and packs the GPU check (`run.sh`, the
/// binary, the data it needs) into one folder to copy to a GPU machine.
#[derive(clap::Args, Debug)]
pub struct GpuCheckArgs {
    /// With cuDNN (`--features cudnn`).
    #[arg(long)]
    pub cudnn: bool,
    /// Cargo's target folder for the CUDA build.
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// The folder to pack [default: gpu-check].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A CUDA `jem` built elsewhere (skips the build).
    #[arg(long, value_name = "PATH")]
    pub jem: Option<PathBuf>,
}

struct Opts {
    cudnn: bool,
    build: bool,
    target_dir: Option<PathBuf>,
    out: Option<PathBuf>,
    jem: Option<PathBuf>,
}

fn features(cudnn: bool) -> String {
    if cudnn { "cudnn" } else { "cuda" }.into()
}

fn target_args(o: &Opts) -> Vec<String> {
    match &o.target_dir {
        Some(d) => vec!["--target-dir".into(), d.display().to_string()],
        None => Vec::new(),
    }
}

/// `cargo xtask check-cuda [--cudnn] [--build] [--target-dir DIR]`.
pub fn check_cuda(args: CheckCudaArgs) -> Result<()> {
    let o = Opts {
        cudnn: args.cudnn,
        build: args.build,
        target_dir: args.target_dir,
        out: None,
        jem: None,
    };
    // `--release` for the check too: candle-kernels' build script (nvcc, ~8 minutes on 2 cores)
    // runs once per profile, and the release build of `gpu-check` then reuses its output
    let mode = if o.build { "build" } else { "check" };
    let mut cargo: Vec<String> = vec![mode.into(), "--release".into()];
    cargo.extend(["-p", "sadajem", "--bin", "jem", "--features"].map(String::from));
    cargo.push(features(o.cudnn));
    cargo.extend(target_args(&o));
    cargo_in_toolkit(o.cudnn, &cargo)?;
    eprintln!(
        "check-cuda: `jem` compiles with --features {}",
        features(o.cudnn)
    );
    Ok(())
}

/// The target folder cargo uses (`--target-dir`, else `cargo metadata`'s).
fn target_dir(o: &Opts) -> Result<PathBuf> {
    if let Some(d) = &o.target_dir {
        return Ok(d.clone());
    }
    let out = Command::new(crate::cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .context("running cargo metadata")?;
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata: no target_directory")
}

fn size_of(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len())
}

/// `strip -o out bin`, or a plain copy (with a warning) where no `strip` is installed.
fn strip_into(bin: &Path, out: &Path) -> Result<()> {
    match Command::new("strip").arg("-o").arg(out).arg(bin).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("strip {} failed ({s})", bin.display()),
        Err(_) => {
            eprintln!("xtask: no `strip`; packing the binary unstripped");
            std::fs::copy(bin, out)
                .with_context(|| format!("copying {} to {}", bin.display(), out.display()))?;
            Ok(())
        }
    }
}

fn gzip(src: &Path, dst: &Path) -> Result<()> {
    let data = std::fs::read(src).with_context(|| format!("{}", src.display()))?;
    let file = std::fs::File::create(dst).with_context(|| format!("{}", dst.display()))?;
    let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::new(6));
    enc.write_all(&data)
        .and_then(|_| enc.finish().map(drop))
        .with_context(|| format!("writing {}", dst.display()))
}

/// `cargo xtask gpu-check [--cudnn] [--target-dir DIR] [--out DIR] [--jem PATH]`.
pub fn gpu_check(args: GpuCheckArgs) -> Result<()> {
    let o = Opts {
        cudnn: args.cudnn,
        build: true,
        target_dir: args.target_dir,
        out: args.out,
        jem: args.jem,
    };
    let start = std::time::Instant::now();
    let bin = match &o.jem {
        Some(p) => p.clone(),
        None => {
            let mut cargo: Vec<String> = ["build", "--release", "-p", "sadajem", "--bin", "jem"]
                .map(String::from)
                .to_vec();
            cargo.extend(["--features".into(), features(o.cudnn)]);
            cargo.extend(target_args(&o));
            cargo_in_toolkit(o.cudnn, &cargo)?;
            target_dir(&o)?.join("release/jem")
        }
    };
    if !bin.is_file() {
        bail!("--jem {}: no such file", bin.display());
    }
    let out = o.out.clone().unwrap_or_else(|| root().join("gpu-check"));
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let stripped = out.join("jem.stripped");
    strip_into(&bin, &stripped)?;
    let gz = out.join("jem.gz");
    gzip(&stripped, &gz)?;
    let (raw, small) = (size_of(&stripped)?, size_of(&gz)?);
    std::fs::remove_file(&stripped).with_context(|| format!("{}", stripped.display()))?;
    for s in SCRIPTS {
        let from = root().join("bench/gpu").join(s);
        std::fs::copy(&from, out.join(s))
            .with_context(|| format!("copying {} into {}", from.display(), out.display()))?;
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root())
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let info = format!(
        "commit {commit}{}\nbinary {} (features: {}{})\nstripped {raw} bytes, gzipped {small} bytes\n\
         run on the GPU machine, from the repository root: bash gpu-check/run.sh\n",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        bin.display(),
        features(o.cudnn),
        if o.jem.is_some() {
            ", given with --jem"
        } else {
            ""
        },
    );
    std::fs::write(out.join("BUILD.txt"), &info).context("writing BUILD.txt")?;
    let mut total = 0;
    for e in std::fs::read_dir(&out).with_context(|| format!("{}", out.display()))? {
        total += e?.metadata()?.len();
    }
    println!(
        "gpu-check: {} ready in {:.0?}: {total} bytes ({:.1} MiB; jem stripped {:.1} MiB, gzipped {:.1} MiB)",
        out.display(),
        start.elapsed(),
        total as f64 / 1048576.0,
        raw as f64 / 1048576.0,
        small as f64 / 1048576.0
    );
    if total > MAX_FOLDER {
        bail!(
            "{} is {total} bytes, over the {MAX_FOLDER} that leave room for the tracked files \
             in the 64 MiB that travel",
            out.display()
        );
    }
    println!(
        "on the GPU machine, from the repository root: bash gpu-check/run.sh \
         (device tool: command `bash gpu-check/run.sh`, carry [\"gpu-check\"], timeout_s 600)"
    );
    Ok(())
}
