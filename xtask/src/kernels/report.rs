//! What the guests said: parsing their data channel, judging each
//! (kernel, source) against the declared expectations, the terminal
//! table, and the README's support matrix.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{Expected, Kernel};

/// One source on one kernel, as `sonde conformance` reported it.
#[derive(Clone, Debug)]
pub struct SourceResult {
    pub source: String,
    pub ok: bool,
    /// Evidence when ok, `stage: reason` when not.
    pub detail: String,
    /// The source's declared minimum kernel.
    pub min_kernel: String,
}

/// One kernel's run.
#[derive(Clone, Debug)]
pub struct Run {
    pub kernel: &'static str,
    /// The Debian package booted, and its version.
    pub package: String,
    /// `uname -r` in the guest.
    pub release: String,
    pub sources: Vec<SourceResult>,
    /// `sonde doctor --json` in the guest (only run after a failure).
    pub doctor: Option<Value>,
    /// Why there are no results at all (no image, no boot, a crash).
    pub broken: Option<String>,
}

impl Run {
    /// A kernel that gave no results.
    pub fn broken(kernel: &Kernel, why: String) -> Run {
        Run {
            kernel: kernel.name,
            package: String::new(),
            release: String::new(),
            sources: Vec::new(),
            doctor: None,
            broken: Some(why),
        }
    }

    /// Parses the guest's `@@`-framed data channel.
    pub fn parse(kernel: &Kernel, package: String, data: &str) -> Result<Run> {
        let mut section = "";
        let mut sections: Vec<(String, String)> = Vec::new();
        for line in data.lines() {
            if let Some(name) = line.strip_prefix("@@") {
                section = if name.starts_with("rc ") { "" } else { name };
                sections.push((section.to_string(), String::new()));
            } else if let Some((_, text)) = sections.last_mut().filter(|_| !section.is_empty()) {
                text.push_str(line);
                text.push('\n');
            }
        }
        if !sections.iter().any(|(name, _)| name == "end") {
            bail!("the guest stopped before the end of its script");
        }
        let text = |name: &str| sections.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str());
        let mut run = Run {
            kernel: kernel.name,
            package,
            release: String::new(),
            sources: Vec::new(),
            doctor: None,
            broken: None,
        };
        for line in text("conformance").unwrap_or_default().lines() {
            let value: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
            let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            match value.get("kind").and_then(Value::as_str) {
                Some("kernel") => run.release = field("release"),
                Some("source") => {
                    let ok = value.get("ok").and_then(Value::as_bool) == Some(true);
                    run.sources.push(SourceResult {
                        source: field("source"),
                        ok,
                        detail: if ok {
                            field("evidence")
                        } else {
                            format!("{}: {}", field("stage"), field("reason"))
                        },
                        min_kernel: field("min_kernel"),
                    });
                }
                _ => {}
            }
        }
        if run.sources.is_empty() {
            bail!("sonde conformance reported no source");
        }
        run.doctor = text("doctor").and_then(|t| serde_json::from_str(t).ok());
        Ok(run)
    }

    /// Whether `sonde doctor` in this guest says `feature` is missing for `source`.
    fn doctor_confirms(&self, source: &str, feature: &str) -> bool {
        let Some(doctor) = &self.doctor else { return false };
        let list = |key| doctor.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        let feature_missing = list("features").iter().any(|f| {
            f.get("name").and_then(Value::as_str) == Some(feature)
                && f.get("ok").and_then(Value::as_bool) == Some(false)
        });
        let source_names_it = list("sources").iter().any(|s| {
            s.get("type").and_then(Value::as_str) == Some(source)
                && s.get("ok").and_then(Value::as_bool) == Some(false)
                && ["reason", "fix"]
                    .iter()
                    .any(|k| s.get(*k).and_then(Value::as_str).is_some_and(|t| t.contains(feature)))
        });
        feature_missing || source_names_it
    }
}

/// How a source fared on a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Failed as declared, and doctor agrees: the missing feature.
    Expected(String),
    /// Anything else: why.
    Failed(String),
    /// Not run (the kernel gave no results).
    Missing,
}

/// Every kernel's run, judged.
pub struct Matrix {
    runs: Vec<Run>,
    sources: Vec<String>,
    verdicts: Vec<Vec<Verdict>>,
}

impl Matrix {
    pub fn new(runs: Vec<Run>, expected: &[Expected]) -> Matrix {
        let mut sources: Vec<String> = Vec::new();
        for s in runs.iter().flat_map(|r| &r.sources) {
            if !sources.contains(&s.source) {
                sources.push(s.source.clone());
            }
        }
        let verdicts = runs
            .iter()
            .map(|run| sources.iter().map(|source| judge(run, source, expected)).collect())
            .collect();
        Matrix {
            runs,
            sources,
            verdicts,
        }
    }

    /// Cells that fail the run (a broken kernel counts once).
    pub fn failures(&self) -> usize {
        self.runs
            .iter()
            .zip(&self.verdicts)
            .map(|(run, row)| {
                let failed = row.iter().filter(|v| matches!(v, Verdict::Failed(_))).count();
                failed + usize::from(run.broken.is_some())
            })
            .sum()
    }

    /// kernel × source, then every failure's reason.
    pub fn table(&self) -> String {
        let mut notes = String::new();
        let mut rows = vec![[vec!["kernel".to_string(), "release".to_string()], self.sources.clone()].concat()];
        for (run, row) in self.runs.iter().zip(&self.verdicts) {
            let mut cells = vec![run.kernel.to_string(), run.release.clone()];
            if let Some(why) = &run.broken {
                cells.push("BROKEN".to_string());
                let _ = writeln!(notes, "{}: {why}", run.kernel);
            }
            for (source, verdict) in self.sources.iter().zip(row) {
                cells.push(match verdict {
                    Verdict::Ok => "ok".to_string(),
                    Verdict::Expected(f) => format!("expected: no {f}"),
                    Verdict::Failed(why) => {
                        let _ = writeln!(notes, "{} {source}: {why}", run.kernel);
                        "FAILED".to_string()
                    }
                    Verdict::Missing if run.broken.is_some() => continue,
                    Verdict::Missing => "-".to_string(),
                });
            }
            rows.push(cells);
        }
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        if !notes.is_empty() {
            out.push_str("\nfailures:\n");
            out.push_str(&notes);
        }
        out
    }

    /// Rewrites the README's support matrix between its markers.
    pub fn update_readme(&self, readme: &Path, wall: Duration) -> Result<()> {
        const BEGIN: &str = "<!-- kernel-matrix:begin";
        const END: &str = "<!-- kernel-matrix:end -->";
        let text = std::fs::read_to_string(readme)?;
        let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            bail!("{} has no {BEGIN} … {END} markers", readme.display());
        };
        let start = start + text[start..].find('\n').map_or(0, |n| n + 1);
        let updated = format!("{}{}{}", &text[..start], self.markdown(wall), &text[end..]);
        if updated != text {
            std::fs::write(readme, updated)?;
            eprintln!("xtask: updated the support matrix in {}", readme.display());
        }
        Ok(())
    }

    fn markdown(&self, wall: Duration) -> String {
        let mut out = String::from("| source | declared minimum | oldest that works here |");
        for run in &self.runs {
            let _ = write!(out, " {} |", run.kernel);
        }
        out.push_str("\n|---|---|---|");
        out.push_str(&"---|".repeat(self.runs.len()));
        out.push('\n');
        for (i, source) in self.sources.iter().enumerate() {
            let min = self.runs.iter().flat_map(|r| &r.sources).find(|s| &s.source == source);
            // The matrix lists kernels oldest first.
            let oldest = self
                .runs
                .iter()
                .zip(&self.verdicts)
                .find(|(_, row)| row[i] == Verdict::Ok)
                .map_or("none", |(run, _)| run.kernel);
            let _ = write!(
                out,
                "| `{source}` | {} | {oldest} |",
                min.map_or("", |s| s.min_kernel.as_str())
            );
            for row in &self.verdicts {
                let cell = match &row[i] {
                    Verdict::Ok => "✓".to_string(),
                    Verdict::Expected(feature) => format!("✗ (no {feature})"),
                    Verdict::Failed(_) => "✗ failed".to_string(),
                    Verdict::Missing => "–".to_string(),
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        let booted: Vec<String> = self
            .runs
            .iter()
            .map(|r| match r.package.split_once(' ') {
                Some((package, version)) => format!("{} = `{package}` {version}", r.kernel),
                None => format!("{} = ?", r.kernel),
            })
            .collect();
        let _ = writeln!(
            out,
            "\nKernels (Debian cloud images): {}. Last run: {:.0} s wall for the whole matrix under qemu TCG.",
            booted.join(", "),
            wall.as_secs_f64()
        );
        out
    }
}

fn judge(run: &Run, source: &str, expected: &[Expected]) -> Verdict {
    let declared = expected.iter().find(|e| e.kernel == run.kernel && e.source == source);
    let Some(result) = run.sources.iter().find(|s| s.source == source) else {
        return if run.broken.is_some() {
            Verdict::Missing
        } else {
            Verdict::Failed("no result from sonde conformance".to_string())
        };
    };
    match (result.ok, declared) {
        (true, None) => Verdict::Ok,
        (true, Some(e)) => Verdict::Failed(format!(
            "works, but is declared to fail for lack of {}: remove the declaration",
            e.feature
        )),
        (false, Some(e)) if run.doctor_confirms(source, e.feature) => Verdict::Expected(e.feature.to_string()),
        (false, Some(e)) => Verdict::Failed(format!(
            "{} (declared to fail for lack of {}, but sonde doctor does not say so)",
            result.detail, e.feature
        )),
        (false, None) => Verdict::Failed(result.detail.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: Kernel = Kernel {
        name: "6.1",
        suite: "bookworm",
        sources: "",
        meta: "",
        flavour: "",
    };

    /// What a guest writes: a passing and a failing source, and doctor's
    /// view of the failure.
    const DATA: &str = r#"@@conformance
{"kind":"kernel","release":"6.1.0-56-cloud-amd64"}
{"kind":"source","source":"tcp","ok":true,"evidence":"exact","min_kernel":"5.5"}
{"kind":"source","source":"net_flows","ok":false,"stage":"load","reason":"rejected: helper `bpf_get_current_comm` is not available","min_kernel":"5.9"}
@@rc 1
@@doctor
{"features": [{"name": "fentry", "ok": true}],
 "sources": [{"type": "net_flows", "ok": false, "reason": "rejected: helper `bpf_get_current_comm` is not available"}]}
@@rc 1
@@end
"#;

    fn run() -> Run {
        Run::parse(&KERNEL, "linux-image-6.1.0-56-cloud-amd64 6.1.192-2".into(), DATA).unwrap()
    }

    #[test]
    fn guest_output_parses() {
        let run = run();
        assert_eq!(run.release, "6.1.0-56-cloud-amd64");
        assert_eq!(run.sources.len(), 2);
        assert!(run.sources[0].ok && !run.sources[1].ok);
        assert!(run.sources[1].detail.starts_with("load: rejected"));
        assert!(run.doctor.is_some());
        assert!(
            Run::parse(&KERNEL, String::new(), "@@conformance\n").is_err(),
            "no @@end"
        );
    }

    #[test]
    fn failures_pass_only_when_declared_and_confirmed_by_doctor() {
        let declared = |feature| Expected {
            kernel: "6.1",
            source: "net_flows",
            feature,
        };
        let judged = |expected: &[Expected]| Matrix::new(vec![run()], expected);
        assert_eq!(judged(&[]).failures(), 1);
        let confirmed = judged(&[declared("bpf_get_current_comm")]);
        assert_eq!(confirmed.failures(), 0);
        assert!(confirmed.table().contains("expected: no bpf_get_current_comm"));
        // Declared, but doctor names something else: still a failure.
        assert_eq!(judged(&[declared("fentry")]).failures(), 1);
        // Declared for a source that works: the declaration is stale (and
        // net_flows fails undeclared).
        let stale = Expected {
            source: "tcp",
            ..declared("ringbuf")
        };
        let matrix = judged(&[stale]);
        assert_eq!(matrix.failures(), 2);
        assert!(matrix.table().contains("remove the declaration"));
    }

    #[test]
    fn the_readme_matrix_is_replaced_between_markers() {
        let dir = std::env::temp_dir().join(format!("xtask-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let readme = dir.join("README.md");
        std::fs::write(
            &readme,
            "a\n<!-- kernel-matrix:begin x -->\nSTALE\n<!-- kernel-matrix:end -->\nb\n",
        )
        .unwrap();
        Matrix::new(vec![run()], &[])
            .update_readme(&readme, Duration::from_secs(42))
            .unwrap();
        let text = std::fs::read_to_string(&readme).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!text.contains("STALE"));
        assert!(text.contains("| `tcp` | 5.5 | 6.1 | ✓ |"), "{text}");
        assert!(text.contains("| `net_flows` | 5.9 | none | ✗ failed |"), "{text}");
        assert!(text.ends_with("<!-- kernel-matrix:end -->\nb\n"));
    }
}
