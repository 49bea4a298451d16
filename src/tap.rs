//! `sonde tap`: prints the events leaving (or entering) components of a
//! running agent, one JSON line each in the file sink's format, read from
//! the agent API's `/tap`. What the agent reports about the tap itself
//! (events this tap lost because it fell behind, events sampled out over
//! `--rate`) goes to stderr, so stdout stays plain JSON lines.

use std::io::Write;
use std::process::ExitCode;

use http_body_util::BodyExt;

use crate::client::ApiClient;

/// What to tap.
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// Component ids.
    pub components: Vec<String>,
    /// Inputs instead of outputs.
    pub inputs: bool,
    /// Event kinds (empty: all).
    pub kinds: Vec<String>,
    /// Stop after this many events.
    pub limit: Option<u64>,
    /// Events a second before sampling.
    pub rate: Option<u64>,
}

impl TapOptions {
    /// The `/tap` request.
    pub fn path(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for component in &self.components {
            query.append_pair("component", component);
        }
        query.append_pair("direction", if self.inputs { "inputs" } else { "outputs" });
        if !self.kinds.is_empty() {
            query.append_pair("kind", &self.kinds.join(","));
        }
        if let Some(limit) = self.limit {
            query.append_pair("limit", &limit.to_string());
        }
        if let Some(rate) = self.rate {
            query.append_pair("rate", &rate.to_string());
        }
        format!("/tap?{}", query.finish())
    }
}

/// The agent's report about a tap: `{"sonde_tap":{"lost":N,"sampled_out":M}}`.
#[derive(Debug, Default, serde::Deserialize)]
struct Notice {
    lost: u64,
    sampled_out: u64,
}

#[derive(serde::Deserialize)]
struct NoticeLine {
    sonde_tap: Notice,
}

/// Streams the tap to stdout until the limit, the agent stopping, or
/// stdout closing.
pub async fn run(client: ApiClient, options: TapOptions) -> anyhow::Result<ExitCode> {
    let response = client.get(&options.path()).await?;
    let mut body = response.into_body();
    let stdout = std::io::stdout();
    let mut pending: Vec<u8> = Vec::new();
    let mut last = Notice::default();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        pending.extend_from_slice(&data);
        let Some(end) = pending.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        let mut out = stdout.lock();
        for line in pending[..=end].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue; // the agent's heartbeat
            }
            if line.starts_with(b"{\"sonde_tap\"") {
                if let Ok(NoticeLine { sonde_tap }) = serde_json::from_slice(line) {
                    report(&sonde_tap, &last);
                    last = sonde_tap;
                }
                continue;
            }
            let written = out.write_all(line).and_then(|()| out.write_all(b"\n"));
            if written.is_err() {
                // The reader went away (`sonde tap … | head`): done.
                return Ok(ExitCode::SUCCESS);
            }
        }
        if out.flush().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        pending.drain(..=end);
    }
    Ok(ExitCode::SUCCESS)
}

fn report(now: &Notice, before: &Notice) {
    if now.lost > before.lost {
        eprintln!(
            "sonde tap: {} events lost in all: this tap fell behind (the pipeline did not wait; its own events are not affected)",
            now.lost
        );
    }
    if now.sampled_out > before.sampled_out {
        eprintln!(
            "sonde tap: {} events sampled out in all: over --rate events a second",
            now.sampled_out
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_request() {
        let options = TapOptions {
            components: vec!["a b".into(), "c".into()],
            inputs: true,
            kinds: vec!["log".into(), "metric".into()],
            limit: Some(3),
            rate: None,
        };
        assert_eq!(
            options.path(),
            "/tap?component=a+b&component=c&direction=inputs&kind=log%2Cmetric&limit=3"
        );
    }
}
