//! Secrets never leave the engine: canaries in credentials headers, cookies
//! and query strings are searched for in every event, serialized to JSON.

use super::super::super::model::{Direction::*, Role};
use super::*;

const CANARIES: [&str; 5] = [
    "CANARY-AUTH-7f3a",
    "CANARY-COOKIE-91bc",
    "CANARY-QUERY-c0de",
    "CANARY-SETCOOKIE-44aa",
    "CANARY-PROXY-1234",
];

fn exchange(h: &mut Harness, c: ConnId) {
    let request = format!(
        "GET /login?user=alice&token={}&{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nCookie: session={}\r\n\
         Proxy-Authorization: Basic {}\r\nUser-Agent: curl/8.5\r\nContent-Type: text/plain\r\n\r\n",
        CANARIES[2], CANARIES[2], CANARIES[0], CANARIES[1], CANARIES[4]
    );
    h.send(c, Ingress, request.as_bytes());
    let response = format!(
        "HTTP/1.1 200 OK\r\nSet-Cookie: id={}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        CANARIES[3]
    );
    h.send(c, Egress, response.as_bytes());
}

fn all_json(h: &mut Harness) -> String {
    let mut text = serde_json::to_string(&h.events).unwrap();
    let metrics = h.engine.metrics(Timestamp::from_nanos(h.clock));
    text.push_str(&serde_json::to_string(&metrics).unwrap());
    text
}

#[test]
fn credentials_cookies_and_query_values_never_appear_even_when_allow_listed() {
    let mut settings = Settings::default();
    // Asking for them does not help.
    settings
        .headers
        .extend(["authorization", "Cookie", "set-cookie", "proxy-authorization"].map(String::from));
    let mut h = Harness::new(settings);
    let c = id(1, 3);
    h.engine.open(info(c, Role::Server));
    exchange(&mut h, c);
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        field(spans[0], "url.query"),
        Some("user=REDACTED&token=REDACTED&REDACTED")
    );
    assert_eq!(field(spans[0], "user_agent.original"), Some("curl/8.5"));
    assert_eq!(field(spans[0], "http.request.header.content-type"), Some("text/plain"));
    assert_eq!(
        field(spans[0], "http.response.header.content-type"),
        Some("application/json")
    );
    assert!(spans[0].fields.get("http.request.header.authorization").is_none());
    let json = all_json(&mut h);
    assert!(json.contains("curl/8.5"), "the search sees the events");
    for canary in CANARIES {
        assert!(!json.contains(canary), "{canary} leaked: {json}");
    }
}

#[test]
fn bodies_are_off_by_default_and_kept_only_for_listed_types_when_asked() {
    let c = id(1, 3);
    let body = r#"{"secret":"CANARY-BODY-5e5e"}"#;
    let run = |settings: Settings, content_type: &str| {
        let mut h = Harness::new(settings);
        h.engine.open(info(c, Role::Server));
        let request = format!(
            "POST /b HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        h.send(c, Ingress, request.as_bytes());
        h.send(c, Egress, &ok(200, ""));
        assert_eq!(h.spans().len(), 1);
        all_json(&mut h)
    };
    assert!(!run(Settings::default(), "application/json").contains("CANARY-BODY"));
    let mut asked = Settings::default();
    asked.bodies.max_bytes = 12;
    assert!(
        !run(asked.clone(), "text/html").contains("CANARY-BODY"),
        "type not listed"
    );
    let kept = run(asked, "application/json; charset=utf-8");
    assert!(
        kept.contains(r#""http.request.body.content":"{\"secret\":\"C""#),
        "{kept}"
    );
    assert!(!kept.contains("CANARY-BODY"), "cut at max_bytes");
}
