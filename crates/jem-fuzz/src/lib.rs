//! Fuzzing of every file parser in sadajem, on the stable toolchain.
//!
//! Each [`Target`] has valid seed files; [`mutate`] changes them the way hostile or damaged
//! files differ from valid ones (truncations, bit flips, size fields at 0, 1 or a maximum,
//! repeated stretches), and proptest drives the search and shrinks what it finds. An input
//! fails when its parser panics or holds more memory at once than [`budget`] allows for its
//! size (measured by [`alloc::Tracking`], which the binaries install as their allocator).
//!
//! `cargo xtask fuzz [--seconds N] [TARGET...]` runs the targets for a while; the test
//! `tests/fuzz.rs` runs a short pass of each with a fixed seed in CI.

pub mod alloc;
pub mod mutate;
pub mod targets;

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

pub use targets::{Target, targets};

/// The most memory an input of `len` bytes may hold at once: 64 MiB, plus what deflate's
/// largest expansion (1032:1) could legitimately produce from it, twice (growing buffers).
pub fn budget(len: usize) -> usize {
    (64 << 20) + len.saturating_mul(2 * 1032)
}

/// What a fuzz run found.
#[derive(Debug)]
pub struct Finding {
    /// The smallest failing input proptest shrank to.
    pub input: Vec<u8>,
    /// What went wrong.
    pub message: String,
}

/// The outcome of a run on one target.
#[derive(Debug)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs tried (shrinking included).
    pub execs: u64,
    /// Wall-clock time.
    pub seconds: f64,
    /// The first failure, if any (the run stops there).
    pub finding: Option<Finding>,
}

thread_local! {
    static CURRENT: RefCell<(&'static str, Vec<u8>)> = const { RefCell::new(("", Vec::new())) };
}

/// Saves the input being parsed before an over-limit allocation aborts the process.
fn save_current(size: usize) {
    CURRENT.with(|c| {
        let (name, input) = &*c.borrow();
        let path = std::env::temp_dir().join(format!("jem-fuzz-crash-{name}.bin"));
        let _ = std::fs::write(&path, input);
        eprintln!(
            "jem-fuzz: target {name} asked for {size} bytes at once (over {} bytes); input \
             saved to {}",
            alloc::HARD_LIMIT,
            path.display()
        );
    });
}

/// Parses one input: whether the parser accepted it, or (`Err`) why it is a finding.
pub fn check(target: &Target, input: &[u8], scratch: &Path) -> Result<bool, String> {
    CURRENT.with(|c| *c.borrow_mut() = (target.name, input.to_vec()));
    let (out, peak) = alloc::measure(save_current, || (target.run)(input, scratch));
    if let Err(payload) = out {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        return Err(format!("panicked: {msg}"));
    }
    let limit = budget(input.len());
    if peak > limit {
        return Err(format!(
            "held {peak} bytes at once for a {}-byte input (budget {limit})",
            input.len()
        ));
    }
    Ok(out.unwrap_or(false))
}

/// Runs `cases` mutated inputs of `target` from the generator seeded with `seed`.
pub fn run(target: &Target, cases: u32, seed: u64, scratch: &Path) -> Report {
    let start = Instant::now();
    let seeds = (target.seeds)();
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let execs = std::cell::Cell::new(0u64);
    let pick = |(i, m): &(proptest::sample::Index, Vec<mutate::Mutation>)| {
        mutate::apply(&seeds[i.index(seeds.len())], m)
    };
    let result = runner.run(&mutate::case(seeds.len()), |c| {
        execs.set(execs.get() + 1);
        check(target, &pick(&c), scratch)
            .map(drop)
            .map_err(TestCaseError::fail)
    });
    let finding = match result {
        Ok(()) => None,
        Err(TestError::Fail(why, c)) => Some(Finding {
            input: pick(&c),
            message: why.to_string(),
        }),
        Err(TestError::Abort(why)) => Some(Finding {
            input: Vec::new(),
            message: format!("aborted: {why}"),
        }),
    };
    Report {
        target: target.name,
        execs: execs.get(),
        seconds: start.elapsed().as_secs_f64(),
        finding,
    }
}

/// Runs `target` in rounds of 500 cases (seeds `seed`, `seed + 1`, ...) until `time` has
/// passed or something is found.
pub fn run_for(target: &Target, time: Duration, seed: u64, scratch: &Path) -> Report {
    let start = Instant::now();
    let mut total = Report {
        target: target.name,
        execs: 0,
        seconds: 0.0,
        finding: None,
    };
    let mut round = 0;
    while start.elapsed() < time && total.finding.is_none() {
        let r = run(target, 500, seed.wrapping_add(round), scratch);
        total.execs += r.execs;
        total.finding = r.finding;
        round += 1;
    }
    total.seconds = start.elapsed().as_secs_f64();
    total
}

/// Silences the default panic message (panics are findings, reported with their message).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}
