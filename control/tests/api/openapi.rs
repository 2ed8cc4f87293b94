//! `/v1/openapi.json` is generated from the routers; this checks it against
//! the real router: every documented operation is routed (no 404 "no such
//! route", no 405), every operation is documented with responses, and the
//! authenticated ones refuse a request without credentials.

use crate::common;

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

/// What the contract test (schemathesis) found, each pinned here: limits
/// outside the documented range are refused (not clamped), any cursor of
/// the documented shape is a position, a key on an undeclared method is the
/// router's 405, a missing credential is 401 before a malformed key's 400,
/// whole-number floats are integers (JSON Schema says they are), and the
/// document states the shared answers with the error envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_holds_to_what_its_document_states() {
    let ctl = Control::start(Dialect::Sqlite).await;
    let admin = ctl.register("contract").await;
    let token = Some(admin.access.as_str());
    for bad in [
        "limit=0",
        "limit=201",
        "limit=-3",
        "cursor=x.y",
        "cursor=12",
        "cursor=",
    ] {
        let (status, body) = ctl
            .call(Method::GET, &format!("/v1/agents?{bad}"), token, None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = ctl
        .call(
            Method::GET,
            "/v1/agents?limit=200&cursor=0.a:b-c_d.e",
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let client = reqwest::Client::new();
    let answer = client
        .put(ctl.url("/v1/components"))
        .bearer_auth(&admin.access)
        .header("Idempotency-Key", "k-1")
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    let answer = client
        .post(ctl.url("/v1/tenants"))
        .header("Idempotency-Key", "")
        .json(&serde_json::json!({ "name": "t" }))
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    let (status, body) = ctl
        .call(
            Method::POST,
            "/v1/api-keys",
            token,
            Some(serde_json::json!({ "name": "floats", "expires_in_days": 3.0 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = ctl
        .call(
            Method::POST,
            "/v1/api-keys",
            token,
            Some(serde_json::json!({ "name": "floats", "expires_in_days": 3.5 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (_, doc) = ctl.call(Method::GET, "/v1/openapi.json", None, None).await;
    let get_agent = &doc["paths"]["/v1/agents/{id}"]["get"]["responses"];
    for status in ["401", "403", "404", "429"] {
        assert_eq!(
            get_agent[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{status}: {get_agent}"
        );
    }
    let limit = &doc["paths"]["/v1/agents"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit")["schema"];
    assert_eq!(
        (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
        (Some(1), Some(200))
    );
}

/// The dashboard is served at `/` with a Content-Security-Policy of its own
/// (this origin's scripts, styles and requests only), its assets under
/// `/dashboard/`, and nothing else there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_with_its_own_policy() {
    let ctl = Control::start(Dialect::Sqlite).await;
    let client = reqwest::Client::new();
    let page = client.get(ctl.url("/")).send().await.expect("request");
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        page.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/html")),
    );
    let html = page.text().await.expect("html");
    assert!(html.contains("/dashboard/app.js"), "{html}");
    for asset in [
        "app.js",
        "style.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "favicon.svg",
    ] {
        let answer = client
            .get(ctl.url(&format!("/dashboard/{asset}")))
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
    }
    let (status, body) = ctl
        .call(Method::GET, "/dashboard/../Cargo.toml", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = ctl
        .call(Method::GET, "/dashboard/secrets.txt", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
