//! Unit tests of naming and classification; the sink is tested against an
//! independent receiver in `tests/pyroscope.rs`.

use std::time::Duration;

use reqwest::StatusCode;
use sonde_core::event::{keys, Attributes};
use sonde_core::SinkError;

use super::service::{classify, PyroscopeError, PyroscopeSink};
use super::*;

fn config(extra: &str) -> PyroscopeSinkConfig {
    serde_json::from_str(&format!(r#"{{"endpoint": "http://127.0.0.1:4040"{extra}}}"#)).unwrap()
}

#[test]
fn app_names_carry_labels_as_pyroscope_expects() {
    let attributes = Attributes::new()
        .with(keys::PID, 42u32)
        .with(keys::COMM, "nginx")
        .with(keys::NAMESPACE, "web")
        .with("odd,value", "a=b}");
    let name = app_name(&config(""), &attributes);
    assert_eq!(
        name,
        "nginx{k8s_namespace_name=web,odd_value=a_b_,process_executable_name=nginx}"
    );
    let fixed = config(r#", "service_name": "shop", "exclude_labels": []"#);
    assert_eq!(
        app_name(&fixed, &Attributes::new().with(keys::PID, 1u32)),
        "shop{process_pid=1}"
    );
    assert_eq!(app_name(&config(""), &Attributes::new()), "unknown{}");
    assert_eq!(label_name("9lives.x"), "_9lives_x");
}

#[test]
fn statuses_are_classified() {
    let error = |status| PyroscopeError::Status {
        status,
        name: "a{}".into(),
        body: String::new(),
    };
    for status in [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::BAD_GATEWAY,
    ] {
        assert!(matches!(
            classify(status, error(status), Some(Duration::from_secs(2))),
            SinkError::Retriable { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
    }
    for status in [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED] {
        assert!(matches!(
            classify(status, error(status), None),
            SinkError::Permanent { .. }
        ));
    }
}

#[test]
fn endpoints_must_be_http() {
    assert!(PyroscopeSink::new(&config("")).is_ok());
    let mut bad = config("");
    bad.endpoint = "ftp://x".into();
    assert!(PyroscopeSink::new(&bad).is_err());
    let options: PyroscopeSinkConfig = serde_json::from_str(
        r#"{"endpoint": "https://p.example/prefix", "tenant_id": "t1",
            "basic_auth": {"username": "u", "password": "p"}}"#,
    )
    .unwrap();
    assert_eq!(options.tenant_id.as_deref(), Some("t1"));
    assert!(serde_json::from_str::<PyroscopeSinkConfig>(r#"{"endpoint": "http://x", "tenant": "t"}"#).is_err());
}
