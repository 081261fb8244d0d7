//! `jem`: the command line of sadajem, a thin layer over the library crates.
//!
//! The command tree is built with clap's builder API (no derive macros: the `derive` feature
//! would change the features of `syn` shared with candle's dependencies, so that every
//! crate of the workspace would compile the heavy dependencies twice).

mod args;
mod bench;
mod data;
mod eval;
mod metric;
mod metric_images;
mod model;
mod train;

use std::process::ExitCode;

use clap::Command;

fn cli() -> Command {
    Command::new("jem")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Train, sample and evaluate joint energy-based models (SADA-JEM, JEM++, JEM).")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(bench::command())
        .subcommand(data::command())
        .subcommand(eval::command())
        .subcommand(metric::command())
        .subcommand(model::command())
        .subcommand(train::command())
        .subcommand(
            Command::new("completions")
                .about("Print a shell completion script: jem completions bash > /etc/bash_completion.d/jem")
                .arg(
                    clap::Arg::new("shell")
                        .value_name("SHELL")
                        .required(true)
                        .value_parser(clap::value_parser!(clap_complete::Shell)),
                ),
        )
}

fn completions(m: &clap::ArgMatches) -> anyhow::Result<()> {
    let shell = *m
        .get_one::<clap_complete::Shell>("shell")
        .expect("clap requires the shell");
    // into memory first: clap_complete panics on a failed write (`| head`)
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli(), "jem", &mut script);
    use std::io::Write;
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    jem_models::alloc::tune_allocator();
    jem_models::alloc::tune_threads();
    let matches = cli().get_matches();
    let result = match matches.subcommand() {
        Some(("bench", m)) => bench::run(m),
        Some(("data", m)) => data::run(m),
        Some(("eval", m)) => eval::run(m),
        Some(("metric", m)) => metric::run(m),
        Some(("model", m)) => model::run(m),
        Some(("train", m)) => train::run(m),
        Some(("completions", m)) => completions(m),
        _ => unreachable!("clap requires a subcommand"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `. A cause is left out when the messages before
/// it already say it: the libraries' errors name their cause in their own message and also
/// keep it as `source()`, for programs that walk the chain.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_tree_is_consistent() {
        super::cli().debug_assert();
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = jem_train::TrainError::io("/runs/a/last.safetensors", io);
        let e = anyhow::Error::new(e).context("resuming /runs/a");
        assert_eq!(
            super::error_chain(&e),
            "resuming /runs/a: /runs/a/last.safetensors: no such file"
        );
        // the cause is still there for programs
        let root = e.root_cause().to_string();
        assert_eq!(root, "no such file");
    }
}
