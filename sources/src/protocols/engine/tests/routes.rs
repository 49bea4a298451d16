//! `http.route`: templates, the heuristic, the per-service cap.

use super::super::super::model::{Direction::*, Role};
use super::super::routes::{heuristic, Routes, Service};
use super::*;

#[test]
fn the_heuristic_collapses_ids_hashes_and_tokens() {
    let cases = [
        ("/api/users/42", "/api/users/{id}"),
        (
            "/api/v1/orders/9f1c2d3e-0a1b-4c5d-8e9f-0123456789ab/items",
            "/api/v1/orders/{id}/items",
        ),
        ("/blobs/3b18e512dba79e4c8300dd08aeb37f8e728b8dad", "/blobs/{id}"),
        ("/reset/ab12cd34ef", "/reset/*"),
        ("/static/app.js", "/static/app.js"),
        ("/", "/"),
        ("*", "/*"),
        ("/a/averyveryveryverylongopaquetokenwithoutdigitsxyz", "/a/*"),
    ];
    for (path, route) in cases {
        assert_eq!(heuristic(path), route, "{path}");
    }
}

#[test]
fn templates_win_then_the_heuristic_then_the_cap() {
    let templates = ["/api/users/{id}".to_string(), "/files/{name}/raw".to_string()];
    let mut routes = Routes::new(&templates, 3);
    let (svc, other) = (&Service::Process(1), &Service::Process(2));
    assert_eq!(routes.route(svc, "/api/users/alice").as_str(), "/api/users/{id}");
    assert_eq!(routes.route(svc, "/files/report.pdf/raw").as_str(), "/files/{name}/raw");
    assert_eq!(
        routes.route(svc, "/api/users/alice/extra").as_str(),
        "/api/users/alice/extra"
    );
    // The cap of 3 routes is reached: new routes of this service collapse.
    assert_eq!(routes.route(svc, "/health").as_str(), "/*");
    assert_eq!(
        routes.route(svc, "/api/users/bob").as_str(),
        "/api/users/{id}",
        "known routes stay"
    );
    assert_eq!(
        routes.route(other, "/health").as_str(),
        "/health",
        "the cap is per service"
    );
}

#[test]
fn spans_carry_the_route_and_are_named_by_it() {
    let settings = Settings {
        routes: vec!["/api/users/{id}".into()],
        max_routes_per_service: 2,
        ..Settings::default()
    };
    let mut h = Harness::new(settings);
    let c = id(1, 3);
    h.engine.open(info(c, Role::Server));
    for path in ["/api/users/7", "/orders/123", "/third/route", "/api/users/8"] {
        h.send(c, Ingress, &get(path));
        h.send(c, Egress, &ok(200, ""));
    }
    let names: Vec<_> = h.spans().iter().map(|s| s.name.as_str().to_owned()).collect();
    assert_eq!(
        names,
        [
            "GET /api/users/{id}",
            "GET /orders/{id}",
            "GET /*",
            "GET /api/users/{id}"
        ]
    );
    assert_eq!(field(h.spans()[2], "url.path"), Some("/third/route"));
}
