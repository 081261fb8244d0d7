//! `cargo xtask bench [--rounds N] [--iters N] [--python PY] [--torch-script FILE]
//! [--jem PATH] [--before PATH] [--out DIR] [--only a,b,c,d,e,f] [--data-dir DIR]
//! [--job-iters N] [--inception-images N]`: our CPU speed beside PyTorch's, side by side.
//!
//! Measures (a)-(d) of `../shared/bench/README.md`, each timed by `jem bench --device cpu`
//! and by `torch_baseline.py` in alternation, `--rounds` times, so that both see the same
//! machine load; the table reports the median over rounds of each side's images per second,
//! their ratio (ours / PyTorch, above 1 means faster), and the PyTorch script's own
//! `foreign_cpu_frac` (other processes' share of the CPU while it ran: trust rows where it is
//! below 0.05). Measure (b) is compared on the script's eval-mode SGLD step
//! (`sgld_step_eval`); ours in train mode, as training samples, is reported beside it as (b').
//! Measure (d) is compared on the PyTorch script's iteration
//! (`sadajem_iter_shared`); ours as training runs it (`sadajem_iter`, three batches per SAM
//! pass) is reported beside it. `--before` times an earlier build of `jem` in the same rounds
//! (a before/after table from one run; a measure that build does not know gets no value).
//! Measures (e), the real training job, and (f), FID Inception features, run whole programs
//! on both sides (see `jobs`). Writes `bench-cpu.md` and `bench-cpu.json` into `--out`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

mod jobs;
mod table;
use table::table;

/// One measure of the reference benchmark: the sizes both sides take (`--depth`, `--width`,
/// `--batch` mean the same to `jem bench` and `torch_baseline.py`) and each side's measure.
struct Measure {
    key: &'static str,
    what: &'static str,
    /// WRN depth, widen factor and batch.
    sizes: [&'static str; 3],
    /// `jem bench --measure`.
    ours: &'static str,
    /// `torch_baseline.py --measure` and its extra flags; `None`: ours only.
    torch: Option<(&'static str, &'static [&'static str])>,
}

impl Measure {
    fn size_args(&self) -> [&'static str; 6] {
        let [d, w, b] = self.sizes;
        ["--depth", d, "--width", w, "--batch", b]
    }
}

/// The phases of an iteration both sides print (`sgld_ms`, `sam_ms`), for measure (d).
const PHASES: [&str; 2] = ["sgld_ms", "sam_ms"];

const MEASURES: [Measure; 6] = [
    Measure {
        key: "a",
        what: "WRN-16-4 b32 classifier step",
        sizes: ["16", "4", "32"],
        ours: "clf_step",
        torch: Some(("clf_step", &[])),
    },
    Measure {
        key: "b",
        what: "WRN-16-4 b32 SGLD step (the script's: eval-mode BatchNorm)",
        sizes: ["16", "4", "32"],
        ours: "sgld_step_eval",
        torch: Some(("sgld_step", &[])),
    },
    Measure {
        key: "b'",
        what: "WRN-16-4 b32 SGLD step as training runs it (train-mode BatchNorm)",
        sizes: ["16", "4", "32"],
        ours: "sgld_step",
        torch: None,
    },
    Measure {
        key: "c",
        what: "WRN-28-10 b8 classifier step",
        sizes: ["28", "10", "8"],
        ours: "clf_step",
        torch: Some(("clf_step", &[])),
    },
    Measure {
        key: "d",
        what: "WRN-16-4 SADA-JEM iteration (the script's: labelled batch as x+)",
        sizes: ["16", "4", "32"],
        ours: "sadajem_iter_shared",
        torch: Some(("sadajem_iter", &["--sgld-steps", "5", "--rho", "0.2"])),
    },
    Measure {
        key: "d'",
        what: "WRN-16-4 SADA-JEM iteration as training runs it (x+, x-, labelled)",
        sizes: ["16", "4", "32"],
        ours: "sadajem_iter",
        torch: None,
    },
];

struct Args {
    rounds: usize,
    iters: usize,
    python: String,
    script: PathBuf,
    jem: Option<PathBuf>,
    /// An earlier `jem` (another commit's build) timed in the same rounds: the "before" column.
    before: Option<PathBuf>,
    out: PathBuf,
    only: Option<Vec<String>>,
    /// Data folder of (e) and (f).
    data_dir: PathBuf,
    /// Iterations of each (e) run.
    job_iters: usize,
    /// Images of each (f) run.
    inception_images: usize,
}

/// `cargo xtask bench`: our CPU speed beside PyTorch's, measured in alternating rounds on the
/// same machine; one table of ratios per round (`target/bench-cpu/bench-cpu.md`).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Alternating rounds (ours, then PyTorch's) per measure.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub rounds: usize,
    /// Timed iterations per run of the building-block measures (a)-(d).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub iters: usize,
    /// The Python with torch (and pytorch-fid for (f)); without torch only ours is timed.
    #[arg(long, default_value = "python3", value_name = "PY")]
    pub python: String,
    /// PyTorch's building blocks [default: ../shared/bench/torch_baseline.py].
    #[arg(long, value_name = "FILE")]
    pub torch_script: Option<PathBuf>,
    /// The `jem` to time (else one is built in release).
    #[arg(long, value_name = "PATH")]
    pub jem: Option<PathBuf>,
    /// An earlier `jem` (another commit's build) timed in the same rounds: a "before" column.
    #[arg(long, value_name = "PATH")]
    pub before: Option<PathBuf>,
    /// Output folder [default: target/bench-cpu].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only these measures (a, b, c, d, d', e = the real job, f = Inception features).
    #[arg(long, value_name = "a,b,...", value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Data folder of (e) and (f) [default: ../shared/data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Training iterations of each (e) run.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub job_iters: usize,
    /// Images of each (f) run.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub inception_images: usize,
}

impl BenchArgs {
    fn resolve(self, root: &Path) -> Result<Args> {
        if self.rounds == 0 || self.iters == 0 || self.job_iters == 0 || self.inception_images == 0
        {
            bail!("--rounds, --iters, --job-iters and --inception-images must be at least 1");
        }
        Ok(Args {
            rounds: self.rounds,
            iters: self.iters,
            python: self.python,
            script: self
                .torch_script
                .unwrap_or_else(|| root.join("../shared/bench/torch_baseline.py")),
            jem: self.jem,
            before: self.before,
            out: self.out.unwrap_or_else(|| root.join("target/bench-cpu")),
            only: self.only,
            data_dir: self.data_dir.unwrap_or_else(|| root.join("../shared/data")),
            job_iters: self.job_iters,
            inception_images: self.inception_images,
        })
    }
}

#[cfg(test)]
fn parse(args: &[String], root: &Path) -> Result<Args> {
    crate::parse_task::<BenchArgs>("bench", args)?.resolve(root)
}

/// The first value of `key=` among whitespace-separated `key=value` words.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Runs `cmd` and returns its stdout, which must have a line starting with `prefix`.
fn run_stdout(mut cmd: Command, prefix: &str, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !text.lines().any(|l| l.starts_with(prefix)) {
        bail!("{what} printed no `{prefix}` line: {text}");
    }
    Ok(text.into_owned())
}

/// The larger of two optional values.
fn larger(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The Python modules besides torch that a measure's PyTorch side imports.
const PY_MODULES: [(&str, &str); 2] = [("e", "sklearn"), ("f", "pytorch_fid.inception")];

/// Fails before any timing when a selected measure's PyTorch side lacks a module, so that a
/// missing package does not surface after the half hour of (a)-(d).
fn preflight(python: &str, only: Option<&[String]>) -> Result<()> {
    let missing: Vec<String> = PY_MODULES
        .iter()
        .filter(|(key, _)| only.is_none_or(|o| o.iter().any(|k| k == key)))
        .filter(|(_, module)| {
            !Command::new(python)
                .args(["-c", &format!("import {module}")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(key, module)| format!("{module} for ({key})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{python} has torch but not {}: `bash bench/setup-torch.sh DIR` makes an \
             environment with all of them (then --python DIR/bin/python)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// `cargo xtask bench ...`.
pub fn run(args: BenchArgs) -> Result<()> {
    let root = crate::reproduce::root();
    let a = args.resolve(&root)?;
    let jem = match &a.jem {
        Some(p) => p.clone(),
        None => crate::reproduce::build_jem(&root, false, false)?,
    };
    let torch_ok = a.script.exists()
        && Command::new(&a.python)
            .args(["-c", "import torch"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !torch_ok {
        eprintln!(
            "note: no PyTorch side ({} with torch, and {}, are needed); timing ours only",
            a.python,
            a.script.display()
        );
    }
    if torch_ok {
        preflight(&a.python, a.only.as_deref())?;
    }
    let iters = a.iters.to_string();
    let mut rows = Vec::new();
    for m in &MEASURES {
        if let Some(only) = &a.only
            && !only.iter().any(|k| k == m.key)
        {
            continue;
        }
        let (mut ours, mut torch, mut foreign) = (Vec::new(), Vec::new(), Vec::new());
        // per round: ours / PyTorch of that round, and each side's phase split (d)
        let mut before = Vec::new();
        let mut before_paired = Vec::new();
        let (mut paired, mut split) = (
            Vec::new(),
            [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]],
        );
        let (mut ours_mb, mut torch_mb) = (None, None);
        // `jem bench` of this measure, by this build or the `--before` one
        let jem_bench = |bin: &Path| {
            let mut cmd = Command::new(bin);
            cmd.args([
                "bench", "--device", "cpu", "--warmup", "1", "--iters", &iters,
            ])
            .args(["--measure", m.ours])
            .args(m.size_args());
            cmd
        };
        for round in 0..a.rounds {
            let text = run_stdout(jem_bench(&jem), "ours ", "jem bench")?;
            let before_rate = a.before.as_ref().and_then(|b| {
                match run_stdout(jem_bench(b), "ours ", "jem bench (--before)") {
                    Ok(t) => field(&t, "images_per_s"),
                    Err(e) => {
                        eprintln!("({}) --before: {e:#}", m.key);
                        None
                    }
                }
            });
            before.extend(before_rate);
            ours.extend(field(&text, "images_per_s"));
            for (i, key) in PHASES.iter().enumerate() {
                split[0][i].extend(field(&text, key));
            }
            // one process per measure: its peak is this measure's
            ours_mb = larger(ours_mb, field(&text, "peak_rss_mb"));
            if let (true, Some((measure, extra))) = (torch_ok, m.torch) {
                let mut cmd = Command::new(&a.python);
                cmd.arg(&a.script)
                    .args(["--warmup", "1", "--iters", &iters])
                    .args(["--measure", measure])
                    .args(m.size_args())
                    .args(extra);
                let line = run_stdout(cmd, "torch ", "torch_baseline.py")?;
                torch.extend(field(&line, "imgs_per_s"));
                for (i, key) in PHASES.iter().enumerate() {
                    split[1][i].extend(field(&line, key));
                }
                if let Some(t) = field(&line, "imgs_per_s") {
                    paired.extend(field(&text, "images_per_s").map(|o| o / t));
                    before_paired.extend(before_rate.map(|b| b / t));
                }
                torch_mb = larger(torch_mb, field(&line, "peak_rss_mb"));
                foreign.extend(field(&line, "foreign_cpu_frac"));
            }
            eprintln!(
                "({}) round {}/{}: ours {:?} torch {:?}",
                m.key,
                round + 1,
                a.rounds,
                ours.last(),
                torch.last()
            );
        }
        let (o, t) = (median(&mut ours), median(&mut torch));
        let b = median(&mut before.clone());
        let phases: Vec<Value> = split
            .iter_mut()
            .map(|side| json!(side.iter_mut().map(|v| median(v)).collect::<Vec<_>>()))
            .collect();
        let range = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (!v.is_empty()).then_some([lo, hi])
        };
        // direct-convolution FLOPs per image of this measure
        let [d, w, _] = m.sizes.map(|v| v.parse::<usize>());
        let (f, stem) = crate::flops::wrn_forward(d?, w?)?;
        let gf = crate::flops::per_image(m.ours, f, stem).map(|x| x / 1e9);
        rows.push(json!({
            "gflop_per_image": gf,
            "ours_gflops": o.zip(gf).map(|(o, g)| o * g),
            "torch_gflops": t.zip(gf).map(|(t, g)| t * g),
            "paired_ratio_median": median(&mut paired.clone()), "paired_ratio_range": range(&paired),
            "before_images_per_s": b, "before_rounds": before,
            "before_paired_ratio_median": median(&mut before_paired.clone()),
            "before_ratio": b.zip(t).map(|(b, t)| b / t),
            "paired_ratios": paired,
            "phases_ms": { "names": PHASES, "ours": phases[0], "torch": phases[1] },
            "measure": m.key, "what": m.what,
            "ours_images_per_s": o, "torch_images_per_s": t,
            "ratio": o.zip(t).map(|(o, t)| o / t),
            "torch_foreign_cpu_frac_max": foreign.iter().copied().map(Some).fold(None, larger),
            "ours_rounds": ours, "torch_rounds": torch,
            "ours_peak_rss_mb": ours_mb, "torch_peak_rss_mb": torch_mb,
        }));
    }
    let selected = |k: &str| a.only.as_ref().is_none_or(|o| o.iter().any(|x| x == k));
    let jobs = jobs::Jobs {
        jem: &jem,
        before: a.before.as_deref(),
        python: torch_ok.then_some(a.python.as_str()),
        root: &root,
        data_dir: a.data_dir.clone(),
        scratch: a.out.join("scratch"),
        rounds: a.rounds,
        job_iters: a.job_iters,
        images: a.inception_images,
    };
    std::fs::create_dir_all(&jobs.scratch)
        .with_context(|| format!("creating {}", jobs.scratch.display()))?;
    for key in ["e", "f"] {
        if !selected(key) {
            continue;
        }
        let measured = if key == "e" {
            jobs.real_job()
        } else {
            jobs.inception()
        };
        match measured {
            Ok(row) => rows.push(row),
            Err(e) => eprintln!("({key}) not measured: {e:#}"),
        }
    }
    let md = table(&rows, a.rounds, a.iters);
    println!("{md}");
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let json = serde_json::to_string_pretty(
        &json!({ "rows": rows, "rounds": a.rounds, "iters": a.iters }),
    )?;
    jem_data::fsutil::write_atomic(&a.out.join("bench-cpu.json"), json.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    jem_data::fsutil::write_atomic(&a.out.join("bench-cpu.md"), md.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("written: {}", a.out.join("bench-cpu.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_medians() {
        let l =
            "torch wrn16-4 b32 clf_step imgs_per_s=76.30 ms_per_iter=419.0 foreign_cpu_frac=0.012";
        assert_eq!(field(l, "imgs_per_s"), Some(76.3));
        assert_eq!(field(l, "foreign_cpu_frac"), Some(0.012));
        assert_eq!(field(l, "nope"), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn both_sides_get_the_same_sizes() {
        let d = MEASURES.iter().find(|m| m.key == "d").unwrap();
        assert_eq!(
            d.size_args(),
            ["--depth", "16", "--width", "4", "--batch", "32"]
        );
        assert_eq!(d.torch.map(|t| t.0), Some("sadajem_iter"));
        assert_eq!(MEASURES.iter().filter(|m| m.torch.is_none()).count(), 2);
    }

    #[test]
    fn arguments_are_checked() {
        let root = Path::new("/r");
        let a = parse(
            &["--rounds".into(), "2".into(), "--only".into(), "a,d".into()],
            root,
        )
        .unwrap();
        assert_eq!(a.rounds, 2);
        assert_eq!(a.only, Some(vec!["a".to_string(), "d".to_string()]));
        assert!(parse(&["--rounds".into(), "0".into()], root).is_err());
        assert!(parse(&["--bogus".into()], root).is_err());
        let b = parse(&["--before".into(), "/old/jem".into()], root).unwrap();
        assert_eq!(b.before, Some(PathBuf::from("/old/jem")));
        assert!(parse(&["--iters".into()], root).is_err());
    }

    /// A missing module fails before any timing and names what needs it; `true` and `false`
    /// stand in for interpreters that import everything and nothing.
    #[test]
    fn missing_python_modules_fail_first() {
        assert!(preflight("true", None).is_ok());
        let e = preflight("false", None).unwrap_err().to_string();
        assert!(
            e.contains("sklearn for (e)") && e.contains("pytorch_fid"),
            "{e}"
        );
        assert!(e.contains("bench/setup-torch.sh"), "{e}");
        let only_f = ["a".to_string(), "f".to_string()];
        let e = preflight("false", Some(&only_f)).unwrap_err().to_string();
        assert!(!e.contains("sklearn"), "{e}");
        assert!(preflight("false", Some(&["a".to_string()])).is_ok());
    }
}
