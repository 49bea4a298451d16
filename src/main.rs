//! The `sonde` command: run, check and explain eBPF telemetry pipelines.

use std::process::ExitCode;

use clap::Parser;
use sonde::cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(&cli.log_level);
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
