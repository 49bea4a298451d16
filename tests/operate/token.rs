//! Off loopback the API wants its token for everything but `/health`:
//! the page, `/tap`, `/stats`, `/metrics`; `sonde tap` carries it from a
//! file or `SONDE_API_TOKEN`. Without a token such a config is refused.

use crate::common::sonde;
use crate::{assert_consecutive, get, sequences, Agent};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// This machine's first IPv4 address other than loopback, if it has one.
fn outside_address() -> Option<String> {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = text.split_whitespace().skip_while(|f| *f != "inet").nth(1)?;
    field.split('/').next().map(str::to_string)
}

#[test]
fn an_open_api_without_a_token_is_refused_at_validate_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.hcl");
    std::fs::write(
        &path,
        "agent {\n  api = \"0.0.0.0:8686\"\n}\nsource \"demo\" \"gen\" {}\nsink \"blackhole\" \"out\" {\n  inputs = [\"gen\"]\n}\n",
    )
    .unwrap();
    let output = sonde().arg("validate").arg("-c").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("open.hcl:2:9"), "{stderr}");
    assert!(
        stderr.contains("no token") && stderr.contains("api_token_file"),
        "{stderr}"
    );
}

#[test]
fn an_api_off_loopback_needs_its_token() {
    // The machine's own address when it has one, else every address.
    let host = outside_address().unwrap_or_else(|| "0.0.0.0".to_string());
    let connect = if host == "0.0.0.0" { "127.0.0.1" } else { host.as_str() };
    let config = format!(
        "agent {{\n  api = \"{host}:{{api}}\"\n  api_token_file = \"{{dir}}/token\"\n}}\n\
         source \"demo\" \"gen\" {{\n  rate = 100\n  kind = \"log\"\n}}\n\
         sink \"blackhole\" \"out\" {{\n  inputs = [\"gen\"]\n}}\n"
    );
    let agent = Agent::start_with(&config, &[("token", &format!("{TOKEN}\n"))], connect);
    let address = agent.address();

    assert!(get(&address, "/health", None).starts_with("HTTP/1.1 200"));
    for path in [
        "/",
        "/tap?component=gen",
        "/stats",
        "/graph",
        "/metrics",
        "/flamegraph/gen",
    ] {
        let refused = get(&address, path, None);
        assert!(refused.starts_with("HTTP/1.1 401"), "{path} without a token: {refused}");
        let wrong = get(&address, path, Some("0123456789abcdef0123456789abcdeX"));
        assert!(wrong.starts_with("HTTP/1.1 401"), "{path} with a wrong token: {wrong}");
    }
    assert!(get(&address, "/", Some(TOKEN)).starts_with("HTTP/1.1 200"));
    assert!(get(&address, "/tap?component=gen", Some(TOKEN)).starts_with("HTTP/1.1 200"));
    // The browser's way: the token in the page's URL.
    assert!(get(&address, &format!("/?token={TOKEN}"), None).starts_with("HTTP/1.1 200"));

    // `sonde tap` without the token is told why; with it (file or
    // variable) it shows the events.
    let output = sonde()
        .args(["tap", "gen", "--limit", "5", "--api", &address])
        .env_remove("SONDE_API_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("401") && stderr.contains("missing token"), "{stderr}");
    let output = sonde()
        .args(["tap", "gen", "--limit", "5", "--api", &address, "--token-file"])
        .arg(agent.path("token"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_consecutive(&sequences(&String::from_utf8(output.stdout).unwrap()), 5);
    let output = sonde()
        .args(["tap", "gen", "--limit", "5", "--api", &address])
        .env("SONDE_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_consecutive(&sequences(&String::from_utf8(output.stdout).unwrap()), 5);
}
