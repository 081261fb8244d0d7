//! `jem-fuzz [--seconds N] [--seed S] [TARGET...]`: fuzzes the targets (all by default) for N
//! seconds each, prints executions and findings, and saves each finding's input under
//! `target/fuzz-findings/`. Exits 1 when anything was found.

use std::time::Duration;

#[global_allocator]
static ALLOC: jem_fuzz::alloc::Tracking = jem_fuzz::alloc::Tracking;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seconds = 60.0f64;
    let mut seed = 1u64;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> String {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match a.as_str() {
            "--seconds" => {
                seconds = value(a)
                    .parse()
                    .unwrap_or_else(|_| fail("--seconds: a number"))
            }
            "--seed" => {
                seed = value(a)
                    .parse()
                    .unwrap_or_else(|_| fail("--seed: an integer"))
            }
            "-h" | "--help" => {
                println!(
                    "jem-fuzz [--seconds N (60)] [--seed S (1)] [TARGET...]\ntargets: {}",
                    all_names()
                );
                return;
            }
            name => names.push(name.to_string()),
        }
    }
    let targets: Vec<_> = jem_fuzz::targets()
        .into_iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
        .collect();
    if let Some(bad) = names
        .iter()
        .find(|n| !targets.iter().any(|t| t.name == n.as_str()))
    {
        fail(&format!("unknown target `{bad}`; targets: {}", all_names()));
    }
    jem_fuzz::quiet_panics();
    let scratch = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("scratch folder: {e}")));
    let out = std::path::Path::new("target/fuzz-findings");
    println!(
        "{:<18} {:>10} {:>9} {:>8}  result",
        "target", "execs", "seconds", "execs/s"
    );
    let mut found = 0;
    for t in &targets {
        let r = jem_fuzz::run_for(t, Duration::from_secs_f64(seconds), seed, scratch.path());
        let result = match &r.finding {
            None => "no finding".to_string(),
            Some(f) => {
                found += 1;
                let _ = std::fs::create_dir_all(out);
                let path = out.join(format!("{}.bin", t.name));
                let _ = std::fs::write(&path, &f.input);
                format!(
                    "FOUND: {} (input: {}, {} bytes)",
                    f.message,
                    path.display(),
                    f.input.len()
                )
            }
        };
        println!(
            "{:<18} {:>10} {:>9.1} {:>8.0}  {result}",
            r.target,
            r.execs,
            r.seconds,
            r.execs as f64 / r.seconds.max(1e-9)
        );
    }
    std::process::exit(i32::from(found > 0));
}

fn all_names() -> String {
    jem_fuzz::targets()
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn fail(msg: &str) -> ! {
    eprintln!("jem-fuzz: {msg}");
    std::process::exit(2)
}
