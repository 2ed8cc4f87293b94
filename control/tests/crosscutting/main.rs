//! Cross-cutting rules of issue 7 over real HTTP, on SQLite and PostgreSQL:
//! `Idempotency-Key` on mutating requests, and rate limits per API key and
//! per tenant, in process and shared through a real `redis-server` started
//! by the test.

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Control, Dialect, Session};
use delta_control::db::{Backend, now_ms};
use delta_control::idempotency::{self, Claim};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Run `$f(Dialect)` on SQLite and on PostgreSQL (for tests that start
/// their control planes with their own configuration).
macro_rules! on_both {
    ($name:ident, $f:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($f)(Dialect::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($f)(Dialect::Postgres).await;
            }
        }
    };
}

/// An answer with its headers and raw body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::String(self.text.clone()))
    }

    fn replayed(&self) -> bool {
        self.headers
            .get("idempotency-replayed")
            .is_some_and(|v| v == "true")
    }

    fn retry_after(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// A request with optional bearer, Idempotency-Key and JSON body.
async fn send(
    ctl: &Control,
    method: Method,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = ctl.client.request(method, ctl.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    Answer {
        status,
        headers,
        text,
    }
}

async fn api_key_names(ctl: &Control, token: &str) -> Vec<String> {
    let (status, page) = ctl
        .call(Method::GET, "/v1/api-keys?limit=100", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|k| k["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn idempotency_rows(ctl: &Control) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count")
}

async fn new_api_key(ctl: &Control, s: &Session, name: &str) -> String {
    let (status, body) = ctl
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(&s.access),
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("key").to_owned()
}

// ---- Idempotency-Key -------------------------------------------------------

both!(
    a_replay_is_the_same_answer_and_the_effect_happens_once,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let body = json!({ "name": "ci" });
        let first = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some(&alice.access),
            Some("create-ci-key"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        assert!(!first.replayed());
        let again = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some(&alice.access),
            Some("create-ci-key"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert!(again.replayed(), "{:?}", again.headers);
        assert_eq!(
            again.text, first.text,
            "the replay is byte for byte the answer"
        );
        assert_eq!(
            again.headers.get("content-type"),
            first.headers.get("content-type")
        );
        // One key exists, and it is the one both answers show.
        assert_eq!(api_key_names(&ctl, &alice.access).await, vec!["ci"]);
        let key = first.json()["key"].as_str().expect("key").to_owned();
        let (status, me) = ctl.call(Method::GET, "/v1/me", Some(&key), None).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        // The stored answer does not hold the new key in the clear (nor the
        // answer in base64, as an unsealed record would).
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT response FROM idempotency_keys WHERE response IS NOT NULL")
                .fetch_all(ctl.state.db.pool())
                .await
                .expect("rows");
        assert_eq!(stored.len(), 1);
        let raw = STANDARD.decode(&stored[0]).expect("base64");
        let raw = String::from_utf8_lossy(&raw);
        let encoded_answer = STANDARD.encode(first.text.as_bytes());
        for text in [stored[0].as_str(), &raw] {
            assert!(!text.contains(&key) && !text.contains(&encoded_answer));
        }

        // A new access token of the same session user keeps the key's scope.
        let (status, login) = ctl
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": alice.email, "password": alice.password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        let fresh = login["access_token"].as_str().expect("access");
        assert_ne!(fresh, alice.access);
        let third = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some(fresh),
            Some("create-ci-key"),
            Some(body),
        )
        .await;
        assert!(third.replayed());
        assert_eq!(third.text, first.text);

        // Tenants too: the same key twice makes one tenant.
        let tenants = |token: String| {
            let ctl = &ctl;
            async move {
                let (status, page) = ctl
                    .call(Method::GET, "/v1/tenants", Some(&token), None)
                    .await;
                assert_eq!(status, StatusCode::OK, "{page}");
                page["items"].as_array().expect("items").len()
            }
        };
        let before = tenants(alice.access.clone()).await;
        for _ in 0..2 {
            let t = send(
                &ctl,
                Method::POST,
                "/v1/tenants",
                Some(&alice.access),
                Some("new-tenant-1"),
                Some(json!({ "name": "Side project" })),
            )
            .await;
            assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        }
        assert_eq!(tenants(alice.access.clone()).await, before + 1);
        // Without a key, two requests are two tenants (the rule is the key).
        for _ in 0..2 {
            let t = send(
                &ctl,
                Method::POST,
                "/v1/tenants",
                Some(&alice.access),
                None,
                Some(json!({ "name": "Side project" })),
            )
            .await;
            assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
            assert!(!t.replayed());
        }
        assert_eq!(tenants(alice.access.clone()).await, before + 3);
    }
);

both!(
    another_request_with_the_same_key_is_422_and_callers_are_independent,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let create = |token: String, key: &'static str, name: &'static str| {
            let ctl = &ctl;
            async move {
                send(
                    ctl,
                    Method::POST,
                    "/v1/api-keys",
                    Some(&token),
                    Some(key),
                    Some(json!({ "name": name })),
                )
                .await
            }
        };
        let first = create(alice.access.clone(), "k1", "one").await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        // Another body, same key: refused, nothing created.
        let other = create(alice.access.clone(), "k1", "two").await;
        assert_eq!(
            other.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            other.text
        );
        let err = other.json();
        assert_eq!(err["code"], "idempotency_key_reused");
        assert!(err["request_id"].is_string(), "{err}");
        // Another path, same key: refused too.
        let elsewhere = send(
            &ctl,
            Method::POST,
            "/v1/tenants",
            Some(&alice.access),
            Some("k1"),
            Some(json!({ "name": "one" })),
        )
        .await;
        assert_eq!(elsewhere.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(elsewhere.json()["code"], "idempotency_key_reused");
        assert_eq!(api_key_names(&ctl, &alice.access).await, vec!["one"]);

        // Bob's "k1" is his own: executed, not Alice's answer, not a 422.
        let bobs = create(bob.access.clone(), "k1", "two").await;
        assert_eq!(bobs.status, StatusCode::CREATED, "{}", bobs.text);
        assert!(!bobs.replayed());
        assert_ne!(bobs.json()["id"], first.json()["id"]);
        assert_eq!(api_key_names(&ctl, &bob.access).await, vec!["two"]);
        // Alice's API key is another credential than her session.
        let alice_key = first.json()["key"].as_str().expect("key").to_owned();
        let via_key = create(alice_key, "k1", "three").await;
        assert_eq!(via_key.status, StatusCode::CREATED, "{}", via_key.text);
        assert!(!via_key.replayed());
        let mut names = api_key_names(&ctl, &alice.access).await;
        names.sort();
        assert_eq!(names, vec!["one", "three"]);
    }
);

both!(
    malformed_keys_are_400_and_change_nothing,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let long = "k".repeat(256);
        let exactly = "k".repeat(255);
        for bad in [long.as_bytes(), b"".as_slice(), "caf\u{e9}".as_bytes()] {
            let value = reqwest::header::HeaderValue::from_bytes(bad).expect("value");
            let resp = ctl
                .client
                .post(ctl.url("/v1/api-keys"))
                .bearer_auth(&alice.access)
                .header("Idempotency-Key", value)
                .json(&json!({ "name": "bad" }))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad:?}");
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["code"], "invalid_idempotency_key", "{body}");
            assert!(body["request_id"].is_string(), "{body}");
        }
        let two = ctl
            .client
            .post(ctl.url("/v1/api-keys"))
            .bearer_auth(&alice.access)
            .header("Idempotency-Key", "a")
            .header("Idempotency-Key", "b")
            .json(&json!({ "name": "bad" }))
            .send()
            .await
            .expect("request");
        assert_eq!(two.status(), StatusCode::BAD_REQUEST);
        assert!(api_key_names(&ctl, &alice.access).await.is_empty());
        assert_eq!(idempotency_rows(&ctl).await, 0);
        // 255 characters are fine; a key on a GET is ignored.
        let ok = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some(&alice.access),
            Some(&exactly),
            Some(json!({ "name": "good" })),
        )
        .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
        let get = send(
            &ctl,
            Method::GET,
            "/v1/me",
            Some(&alice.access),
            Some(&long),
            None,
        )
        .await;
        assert_eq!(get.status, StatusCode::OK, "{}", get.text);
    }
);

both!(
    errors_replay_with_a_fresh_request_id_and_refusals_are_not_stored,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        // A validation error is the operation's answer: stored, replayed
        // with the new request's id.
        let bad = json!({ "name": "x", "expires_in_days": 0 });
        let first = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some(&alice.access),
            Some("bad-expiry"),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(
            first.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            first.text
        );
        let again = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some(&alice.access),
            Some("bad-expiry"),
            Some(bad),
        )
        .await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(again.replayed());
        let (a, b) = (first.json(), again.json());
        assert_eq!(a["code"], b["code"]);
        assert_eq!(a["message"], b["message"]);
        assert!(b["request_id"].is_string());
        assert_ne!(a["request_id"], b["request_id"]);
        assert_eq!(
            again
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            b["request_id"].as_str()
        );
        assert_eq!(idempotency_rows(&ctl).await, 1);

        // 401 (bad credential) and 403 (missing scope) are not stored: the
        // operation never ran, and a retry with a fixed credential runs.
        let unauth = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some("not-a-token"),
            Some("refused"),
            Some(json!({ "name": "r" })),
        )
        .await;
        assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
        let (status, limited) = ctl
            .call(
                Method::POST,
                "/v1/api-keys",
                Some(&alice.access),
                Some(json!({ "name": "reader", "scopes": ["agents:read"] })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{limited}");
        let reader = limited["key"].as_str().expect("key");
        let forbidden = send(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            Some(reader),
            Some("refused"),
            Some(json!({ "name": "r" })),
        )
        .await;
        assert_eq!(
            forbidden.status,
            StatusCode::FORBIDDEN,
            "{}",
            forbidden.text
        );
        assert_eq!(idempotency_rows(&ctl).await, 1);
    }
);

both!(
    node_usage_batches_replay_their_ack,
    |ctl: Control| async move {
        let cred = ctl.node_credential("node-a").await;
        let batch = json!({ "batch_id": "b-1", "node_id": "node-a", "records": [] });
        let first = send(
            &ctl,
            Method::POST,
            "/v1/nodes/usage",
            Some(&cred),
            Some("b-1"),
            Some(batch.clone()),
        )
        .await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        assert!(!first.replayed());
        let again = send(
            &ctl,
            Method::POST,
            "/v1/nodes/usage",
            Some(&cred),
            Some("b-1"),
            Some(batch),
        )
        .await;
        assert_eq!(again.status, StatusCode::OK);
        assert!(again.replayed());
        assert_eq!(again.text, first.text);
        // A wrong node credential is another scope, and refused (not stored).
        let wrong = send(
            &ctl,
            Method::POST,
            "/v1/nodes/usage",
            Some("not-the-fleet-token-0123456789"),
            Some("b-1"),
            Some(json!({ "batch_id": "b-1", "node_id": "node-a", "records": [] })),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(!wrong.replayed());
    }
);

/// A node that holds `PUT /v1/agents/{id}` until the test lets it answer
/// (the deployment when `accept`, a 500 otherwise), and answers 500 to
/// anything else.
struct SlowNode {
    url: String,
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: Arc<tokio::sync::Semaphore>,
    deploys: Arc<AtomicUsize>,
}

async fn slow_node(accept: bool) -> SlowNode {
    use axum::extract::Path;
    use axum::response::IntoResponse as _;
    use axum::routing::put;
    let (tx, arrived) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let deploys = Arc::new(AtomicUsize::new(0));
    let (r, d) = (Arc::clone(&release), Arc::clone(&deploys));
    let app = axum::Router::new()
        .route(
            "/v1/agents/{id}",
            put(
                move |Path(id): Path<String>, axum::Json(spec): axum::Json<Value>| {
                    let (tx, r, d) = (tx.clone(), Arc::clone(&r), Arc::clone(&d));
                    async move {
                        d.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.send(());
                        if let Ok(permit) = r.acquire().await {
                            permit.forget();
                        }
                        if !accept {
                            return (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                axum::Json(json!({ "code": "boom", "message": "boom" })),
                            )
                                .into_response();
                        }
                        // The node's AgentRecord: the spec as deployed.
                        let mut record = spec;
                        record["id"] = json!(id);
                        record["paused"] = json!(false);
                        record["created_at_ms"] = json!(now_ms());
                        record["updated_at_ms"] = json!(now_ms());
                        axum::Json(record).into_response()
                    }
                },
            ),
        )
        .fallback(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    SlowNode {
        url: format!("http://{addr}"),
        arrived,
        release,
        deploys,
    }
}

/// Register `node` with the control plane, and a user with an uploaded
/// component: the user and the component's sha256.
async fn deployable(ctl: &Control, node: &SlowNode) -> (Session, Value) {
    let (status, hb) = ctl
        .call(
            Method::POST,
            "/v1/nodes/heartbeat",
            Some(&ctl.node_credential("slow").await),
            Some(json!({ "node_id": "slow", "url": node.url, "capacity": 4, "load": 0 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hb}");
    let alice = ctl.register("alice").await;
    let upload = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&alice.access)
        .header("content-type", "application/wasm")
        .body(common::fake_component("slow"))
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::CREATED);
    let component: Value = upload.json().await.expect("json");
    (alice, component["sha256"].clone())
}

both!(
    a_key_in_flight_is_409_and_a_5xx_is_not_stored,
    |ctl: Control| async move {
        let mut node = slow_node(false).await;
        let (alice, sha256) = deployable(&ctl, &node).await;
        let component = json!({ "sha256": sha256 });
        let body = json!({ "name": "slow-agent", "kind": "main",
                           "component": component["sha256"] });

        // The first request waits on the node...
        let first = {
            let (client, url, token, body) = (
                ctl.client.clone(),
                ctl.url("/v1/agents"),
                alice.access.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", "deploy-1")
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                let replayed = resp.headers().contains_key("idempotency-replayed");
                (resp.status(), replayed)
            })
        };
        tokio::time::timeout(Duration::from_secs(20), node.arrived.recv())
            .await
            .expect("the deployment reached the node")
            .expect("channel");
        // ...so the same key is in flight.
        let busy = send(
            &ctl,
            Method::POST,
            "/v1/agents",
            Some(&alice.access),
            Some("deploy-1"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
        assert_eq!(busy.json()["code"], "idempotency_key_in_flight");
        assert!(busy.json()["request_id"].is_string());
        assert_eq!(busy.retry_after(), Some(1));
        // A different request with that key is still a 422.
        let other = send(
            &ctl,
            Method::POST,
            "/v1/agents",
            Some(&alice.access),
            Some("deploy-1"),
            Some(json!({ "name": "other", "kind": "main", "component": component["sha256"] })),
        )
        .await;
        assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(node.deploys.load(Ordering::SeqCst), 1);

        // The node fails: a 5xx, not stored.
        node.release.add_permits(1);
        let (status, replayed) = first.await.expect("first request");
        assert!(status.is_server_error(), "{status}");
        assert!(!replayed);
        assert_eq!(idempotency_rows(&ctl).await, 0);
        // So a retry with the same key runs again (the node sees it).
        node.release.add_permits(1);
        let retry = send(
            &ctl,
            Method::POST,
            "/v1/agents",
            Some(&alice.access),
            Some("deploy-1"),
            Some(body),
        )
        .await;
        assert!(retry.status.is_server_error(), "{}", retry.text);
        assert!(!retry.replayed());
        assert_eq!(node.deploys.load(Ordering::SeqCst), 2);
    }
);

both!(
    a_client_that_goes_away_still_gets_its_answer_and_the_operation_runs_once,
    |ctl: Control| async move {
        let mut node = slow_node(true).await;
        let (alice, sha256) = deployable(&ctl, &node).await;
        let body = json!({ "name": "patient-agent", "kind": "main", "component": sha256 });
        // The client sends its request and goes away while the node holds
        // the deployment (the request future is dropped: the connection
        // closes).
        let gone = {
            let (client, url, token, body) = (
                ctl.client.clone(),
                ctl.url("/v1/agents"),
                alice.access.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", "deploy-gone")
                    .json(&body)
                    .send()
                    .await
            })
        };
        tokio::time::timeout(Duration::from_secs(20), node.arrived.recv())
            .await
            .expect("the deployment reached the node")
            .expect("channel");
        gone.abort();
        assert!(gone.await.is_err_and(|e| e.is_cancelled()));
        // Time for the server to see the connection close.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The operation goes on without its client: a retry waits...
        let busy = send(
            &ctl,
            Method::POST,
            "/v1/agents",
            Some(&alice.access),
            Some("deploy-gone"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
        assert_eq!(busy.json()["code"], "idempotency_key_in_flight");
        // ...and once the node answers, the retry gets the stored answer.
        node.release.add_permits(4);
        let deadline = Instant::now() + Duration::from_secs(20);
        let retry = loop {
            let a = send(
                &ctl,
                Method::POST,
                "/v1/agents",
                Some(&alice.access),
                Some("deploy-gone"),
                Some(body.clone()),
            )
            .await;
            if a.status != StatusCode::CONFLICT || Instant::now() > deadline {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
        assert!(retry.replayed(), "{:?}", retry.headers);
        assert_eq!(retry.json()["name"], "patient-agent");
        // Deployed once, one agent, and that agent is the answer's.
        assert_eq!(node.deploys.load(Ordering::SeqCst), 1);
        let (status, page) = ctl
            .call(Method::GET, "/v1/agents", Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "{page}");
        assert_eq!(items[0]["id"], retry.json()["id"]);
    }
);

/// Count the claims written to the idempotency table from now on (a
/// trigger on its inserts); read with [`claims_written`].
async fn count_claims(ctl: &Control) {
    let statements: &[&str] = match ctl.state.db.backend() {
        Backend::Sqlite => &[
            "CREATE TABLE test_claims (n BIGINT NOT NULL)",
            "CREATE TRIGGER test_count_claims AFTER INSERT ON idempotency_keys \
             BEGIN INSERT INTO test_claims (n) VALUES (1); END",
        ],
        Backend::Postgres => &[
            "CREATE TABLE test_claims (n BIGINT NOT NULL)",
            "CREATE FUNCTION test_count_claims() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN INSERT INTO test_claims (n) VALUES (1); RETURN NEW; END $$",
            "CREATE TRIGGER test_count_claims AFTER INSERT ON idempotency_keys \
             FOR EACH ROW EXECUTE FUNCTION test_count_claims()",
        ],
    };
    for sql in statements {
        sqlx::raw_sql(sql)
            .execute(ctl.state.db.pool())
            .await
            .expect("test trigger");
    }
}

async fn claims_written(ctl: &Control) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM test_claims")
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count")
}

both!(
    callers_are_authenticated_before_a_key_is_claimed_or_replayed,
    |ctl: Control| async move {
        count_claims(&ctl).await;
        let alice = ctl.register("alice").await;
        let (status, parent) = ctl
            .call(
                Method::POST,
                "/v1/api-keys",
                Some(&alice.access),
                Some(json!({ "name": "parent" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{parent}");
        let parent_key = parent["key"].as_str().expect("key").to_owned();
        let parent_id = parent["id"].as_str().expect("id").to_owned();
        // The parent key makes a child key under an Idempotency-Key: the
        // stored answer holds the child's secret.
        let create_child = || {
            send(
                &ctl,
                Method::POST,
                "/v1/api-keys",
                Some(&parent_key),
                Some("child-key"),
                Some(json!({ "name": "child" })),
            )
        };
        let first = create_child().await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        let child_secret = first.json()["key"].as_str().expect("key").to_owned();
        assert!(create_child().await.replayed());
        assert_eq!(claims_written(&ctl).await, 1);
        // Revoked, the parent key cannot read the stored answer back.
        let (status, body) = ctl
            .call(
                Method::DELETE,
                &format!("/v1/api-keys/{parent_id}"),
                Some(&alice.access),
                None,
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        let revoked = create_child().await;
        assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "{}", revoked.text);
        assert!(!revoked.replayed());
        assert!(!revoked.text.contains(&child_secret), "{}", revoked.text);
        assert_eq!(revoked.json()["code"], "unauthorized", "{}", revoked.text);

        // A bogus credential with a key: 401, no claim written, and its
        // body not even read (an oversized one is not a 413).
        let before = idempotency_rows(&ctl).await;
        for token in [Some("not-a-token"), Some("dk_nope_nope"), None] {
            let bogus = send(
                &ctl,
                Method::POST,
                "/v1/tenants",
                token,
                Some("bogus"),
                Some(json!({ "name": "x" })),
            )
            .await;
            assert_eq!(bogus.status, StatusCode::UNAUTHORIZED, "{}", bogus.text);
        }
        let huge = ctl
            .client
            .post(ctl.url("/v1/tenants"))
            .bearer_auth("not-a-token")
            .header("Idempotency-Key", "bogus")
            .header("content-type", "application/json")
            // Answered before the body is read: do not pool the connection.
            .header("connection", "close")
            .body(vec![
                b' ';
                usize::try_from(ctl.state.config.max_body_bytes)
                    .expect("size")
                    + 1
            ])
            .send()
            .await
            .expect("request");
        assert_eq!(huge.status(), StatusCode::UNAUTHORIZED);
        // A session on a node route likewise.
        let node = send(
            &ctl,
            Method::POST,
            "/v1/nodes/usage",
            Some(&alice.access),
            Some("b-1"),
            Some(json!({ "batch_id": "b-1", "node_id": "n", "records": [] })),
        )
        .await;
        assert_eq!(node.status, StatusCode::UNAUTHORIZED, "{}", node.text);
        assert_eq!(claims_written(&ctl).await, 1);
        assert_eq!(idempotency_rows(&ctl).await, before);

        // Routes without credentials keep their keys, whatever stale
        // Authorization a client sends along. (Login and refresh ignore
        // keys altogether: control/tests/api/security.rs.)
        let registration =
            json!({ "email": "carol@example.com", "password": "pw-carol-long-enough" });
        let registered = send(
            &ctl,
            Method::POST,
            "/v1/auth/register",
            Some("stale-token"),
            Some("register-1"),
            Some(registration.clone()),
        )
        .await;
        assert_eq!(
            registered.status,
            StatusCode::CREATED,
            "{}",
            registered.text
        );
        assert_eq!(claims_written(&ctl).await, 2);
        let again = send(
            &ctl,
            Method::POST,
            "/v1/auth/register",
            Some("stale-token"),
            Some("register-1"),
            Some(registration),
        )
        .await;
        assert!(again.replayed());
        assert_eq!(again.text, registered.text);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_without_credentials_are_exactly_the_documented_ones() {
    let ctl = Control::start(Dialect::Sqlite).await;
    let (status, doc) = ctl.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut public = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["post", "put", "patch", "delete"] {
            let op = &item[method];
            if op.is_object() && op["security"].as_array().is_none_or(|s| s.is_empty()) {
                public.push(path.clone());
            }
        }
    }
    public.sort();
    public.dedup();
    let mut expected: Vec<String> = idempotency::PUBLIC_ROUTES
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    expected.sort();
    assert_eq!(
        public, expected,
        "a mutating route without credentials must be in idempotency::PUBLIC_ROUTES (and only those)"
    );
}

both!(
    stored_answers_expire_and_are_swept,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let create = |key: &'static str, name: &'static str| {
            let ctl = &ctl;
            let token = alice.access.clone();
            async move {
                send(
                    ctl,
                    Method::POST,
                    "/v1/api-keys",
                    Some(&token),
                    Some(key),
                    Some(json!({ "name": name })),
                )
                .await
            }
        };
        assert_eq!(create("old", "one").await.status, StatusCode::CREATED);
        let ttl_ms = i64::try_from(ctl.state.config.idempotency_ttl_secs * 1000).expect("ttl");
        // Not yet expired: nothing swept.
        assert_eq!(
            idempotency::sweep_expired(&ctl.state.db, now_ms(), ttl_ms)
                .await
                .expect("sweep"),
            0
        );
        assert_eq!(
            create("old", "two").await.status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // A day later the record is swept, and the key is free again.
        let swept = idempotency::sweep_expired(&ctl.state.db, now_ms() + ttl_ms + 1, ttl_ms)
            .await
            .expect("sweep");
        assert_eq!(swept, 1);
        assert_eq!(idempotency_rows(&ctl).await, 0);
        let reused = create("old", "two").await;
        assert_eq!(reused.status, StatusCode::CREATED, "{}", reused.text);
        assert!(!reused.replayed());
        let mut names = api_key_names(&ctl, &alice.access).await;
        names.sort();
        assert_eq!(names, vec!["one", "two"]);
    }
);

on_both!(
    an_expired_record_is_not_replayed_even_before_the_sweep,
    |dialect| async move {
        let ctl = Control::start_with(dialect, |c| c.idempotency_ttl_secs = 2).await;
        let alice = ctl.register("alice").await;
        let create = |name: &'static str| {
            send(
                &ctl,
                Method::POST,
                "/v1/api-keys",
                Some(&alice.access),
                Some("short-lived"),
                Some(json!({ "name": name })),
            )
        };
        assert_eq!(create("one").await.status, StatusCode::CREATED);
        assert!(create("one").await.replayed());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let after = create("one").await;
        assert_eq!(after.status, StatusCode::CREATED, "{}", after.text);
        assert!(!after.replayed(), "replayed after its ttl");
        assert_eq!(api_key_names(&ctl, &alice.access).await, vec!["one", "one"]);
    }
);

both!(
    the_claim_state_machine_on_the_database,
    |ctl: Control| async move {
        let db = &ctl.state.db;
        let t0 = now_ms();
        let lease = i64::try_from(idempotency::LEASE.as_millis()).expect("lease");
        let ttl = 10 * lease;
        let Claim::Acquired { token } = idempotency::claim(db, "s", "k", "h1", t0, ttl)
            .await
            .expect("claim")
        else {
            panic!("the first claim acquires");
        };
        // Held: the same request is in flight, another is a mismatch.
        let again = idempotency::claim(db, "s", "k", "h1", t0 + 1, ttl).await;
        assert_eq!(again.expect("claim"), Claim::InFlight);
        let other = idempotency::claim(db, "s", "k", "h2", t0 + 1, ttl).await;
        assert_eq!(other.expect("claim"), Claim::Mismatch);
        // Another scope is independent.
        let Claim::Acquired {
            token: long_running,
        } = idempotency::claim(db, "s2", "k", "h2", t0 + 1, ttl)
            .await
            .expect("claim")
        else {
            panic!("another scope acquires");
        };
        // Renewed, the claim outlives its first lease; lapsed, it is taken
        // over and the old holder can no longer complete.
        assert!(
            idempotency::renew(db, "s", "k", &token, t0 + 2 * lease)
                .await
                .expect("renew")
        );
        let renewed = idempotency::claim(db, "s", "k", "h1", t0 + lease + 1, ttl).await;
        assert_eq!(renewed.expect("claim"), Claim::InFlight);
        let Claim::Acquired { token: second } =
            idempotency::claim(db, "s", "k", "h1", t0 + 2 * lease + 1, ttl)
                .await
                .expect("claim")
        else {
            panic!("a lapsed claim is taken over");
        };
        assert!(
            !idempotency::complete(db, "s", "k", &token, 200, "x", t0)
                .await
                .expect("complete")
        );
        assert!(
            idempotency::complete(db, "s", "k", &second, 201, "sealed", t0)
                .await
                .expect("complete")
        );
        assert_eq!(
            idempotency::claim(db, "s", "k", "h1", t0 + 2 * lease + 2, ttl)
                .await
                .expect("claim"),
            Claim::Replay {
                status: 201,
                sealed: "sealed".into()
            }
        );
        // A complete record is not released; a pending one is.
        assert!(
            !idempotency::release(db, "s", "k", &second)
                .await
                .expect("release")
        );
        let Claim::Acquired { token: third } = idempotency::claim(db, "s", "k3", "h", t0, ttl)
            .await
            .expect("claim")
        else {
            panic!("acquires");
        };
        assert!(
            idempotency::release(db, "s", "k3", &third)
                .await
                .expect("release")
        );
        assert!(matches!(
            idempotency::claim(db, "s", "k3", "other", t0, ttl)
                .await
                .expect("claim"),
            Claim::Acquired { .. }
        ));
        // After the ttl a record counts as absent, even a different request.
        assert!(matches!(
            idempotency::claim(db, "s", "k", "h9", t0 + ttl + 1, ttl)
                .await
                .expect("claim"),
            Claim::Acquired { .. }
        ));
        // The sweep deletes what is older than the ttl, except a claim
        // whose request is still running (its lease renewed).
        assert!(
            idempotency::renew(db, "s2", "k", &long_running, t0 + 100 * ttl)
                .await
                .expect("renew")
        );
        let swept = idempotency::sweep_expired(db, t0 + ttl + 2, ttl)
            .await
            .expect("sweep");
        assert_eq!(swept, 1, "only (s, k3): lapsed and old");
        assert_eq!(idempotency_rows(&ctl).await, 2);
        assert_eq!(
            idempotency::claim(db, "s2", "k", "h2", t0 + ttl + 3, ttl)
                .await
                .expect("claim"),
            Claim::InFlight
        );
        let all = idempotency::sweep_expired(db, t0 + 200 * ttl, ttl)
            .await
            .expect("sweep");
        assert_eq!(all, 2);
        assert_eq!(idempotency_rows(&ctl).await, 0);
    }
);

// After the macros above: `macro_rules!` are in scope textually.
mod apps;
mod history;
mod keycache;
mod pool;
mod ratelimits;
mod registration;
