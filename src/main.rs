//! The `sonde` command: run, check and explain eBPF telemetry pipelines.

use std::process::ExitCode;

use clap::Parser;
use sonde::cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(error) = cli::init_logging(&cli.log_level) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
