//! `/v1/openapi.json` is generated from the routers; this checks it against
//! the real router: every documented operation is routed (no 404 "no such
//! route", no 405), every operation is documented with responses, and the
//! authenticated ones refuse a request without credentials.

mod common;

use common::{Control, Dialect};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_protected() {
    let ctl = Control::start(Dialect::Sqlite).await;
    let (status, doc) = ctl.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    assert!(
        paths.len() >= 10,
        "too few paths documented: {:?}",
        paths.keys()
    );
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/v1/"), "{path}");
        for (method, op) in item.as_object().expect("path item") {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            operations += 1;
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no responses"
            );
            let concrete = fill_params(path);
            let (status, body) = ctl.call(method.clone(), &concrete, None, None).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body["message"] == "no such route"),
                "{method} {path} is documented but not routed"
            );
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} is documented as authenticated but answered {status}: {body}"
                );
            }
            assert!(
                body["request_id"].is_string() || status.is_success(),
                "{method} {path}: {body}"
            );
        }
    }
    assert!(operations >= 15, "only {operations} operations documented");
    // And the reverse for a route that does not exist.
    let (status, body) = ctl.call(Method::GET, "/v1/nope", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
}

fn fill_params(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map_or(rest.len(), |e| start + e + 1);
        out.push('x');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conventions_hold_on_every_answer() {
    let ctl = Control::start_with(Dialect::Sqlite, |c| c.max_body_bytes = 16 << 10).await;
    let resp = ctl
        .client
        .get(ctl.url("/healthz"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-request-id"], "req-42");
    for header in ["x-content-type-options", "x-frame-options", "cache-control"] {
        assert!(resp.headers().contains_key(header), "{header} missing");
    }
    // Oversized and malformed bodies get the error shape too.
    let resp = ctl
        .client
        .post(ctl.url("/v1/auth/login"))
        .header("content-type", "application/json")
        // The server answers 413 without reading the whole body and closes
        // the connection; without this the client could pool that
        // connection and fail the next request with a reset.
        .header("connection", "close")
        .body(vec![b' '; 64 << 10])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "payload_too_large");
    let resp = ctl
        .client
        .post(ctl.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_json");
    assert!(body["request_id"].is_string());
    let (status, text) = ctl.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("delta_control_http_requests_total")),
        "{text}"
    );
}
