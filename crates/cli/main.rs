//! `jem`: the command line of sadajem, a thin layer over the library crates.

mod data;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Train, sample and evaluate joint energy-based models (SADA-JEM, JEM++, JEM).
#[derive(Parser)]
#[command(name = "jem", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Data sets: download, inspect.
    #[command(subcommand)]
    Data(data::DataCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(cmd) => data::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
