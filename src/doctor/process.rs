//! `sonde doctor --pid PID`: what the `protocols` source can see of one
//! process's TLS: the OpenSSL libraries it maps or carries, and, for a Go
//! program, its release and whether its `crypto/tls` calls can be traced
//! (a stripped binary cannot).

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use sonde_sources::protocols::tls::{describe, ProcessTls};

/// Prints the report; exits 1 when the process cannot be read.
pub fn run(pid: u32, json: bool) -> anyhow::Result<ExitCode> {
    let report = match describe(pid) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("process {pid}: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let out = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        text(&report)
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn text(report: &ProcessTls) -> String {
    let mut out = format!("process {}\n", report.pid);
    let exe = report.executable.as_deref().unwrap_or("(unknown)");
    let _ = writeln!(out, "  {:<20} {exe}", "executable");
    for lib in &report.libssl {
        let _ = writeln!(out, "  {:<20} {lib} (OpenSSL: traceable)", "libssl");
    }
    if report.static_openssl {
        let _ = writeln!(out, "  {:<20} in the executable (traceable)", "openssl");
    }
    match &report.go {
        None => {}
        Some(go) => {
            let _ = writeln!(out, "  {:<20} {}", "go", go.version);
            if let Some(main) = &go.main_module {
                let _ = writeln!(out, "  {:<20} {main} ({} dependencies)", "go module", go.dependencies);
            }
            let tls = match (go.uses_crypto_tls, go.traceable, &go.reason) {
                (false, _, _) => "not used".to_string(),
                (true, true, _) => format!(
                    "traceable (conn offsets from {})",
                    go.offsets_source
                        .and_then(|s| serde_json::to_value(s).ok())
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                (true, false, reason) => format!("not traceable: {}", reason.as_deref().unwrap_or("unknown")),
            };
            let _ = writeln!(out, "  {:<20} {tls}", "go crypto/tls");
        }
    }
    if report.libssl.is_empty() && !report.static_openssl && report.go.as_ref().is_none_or(|g| !g.uses_crypto_tls) {
        let _ = writeln!(
            out,
            "  {:<20} no TLS library the probes know (its plaintext is not seen)",
            "tls"
        );
    }
    out
}
