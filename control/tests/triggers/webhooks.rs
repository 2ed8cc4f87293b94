//! Inbound webhooks: a signed delivery becomes a run with the request as
//! input; anything else starts nothing.

use delta_control::db::now_ms;
use delta_control::triggers::signature::sign;

use super::*;

/// Create a webhook of `agent`: (id, secret).
async fn webhook(ctl: &Control, who: &Session, agent: &str) -> (String, String) {
    let (status, hook) = ctl
        .call(
            Method::POST,
            &format!("/v1/agents/{agent}/webhooks"),
            Some(&who.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["url"], format!("/v1/hooks/{}", s(&hook["id"])));
    assert!(s(&hook["secret"]).starts_with("whsec_"), "{hook}");
    (s(&hook["id"]), s(&hook["secret"]))
}

/// POST `body` to webhook `id` with `signature` (none: no header).
async fn deliver(
    ctl: &Control,
    id: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
    signature: Option<String>,
) -> (StatusCode, Value) {
    let mut req = ctl
        .client
        .post(ctl.url(&format!("/v1/hooks/{id}{query}")))
        .header("content-type", content_type)
        .header("x-github-event", "push")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("x-delta-signature", sig);
    }
    let resp = req.send().await.expect("deliver");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A valid signature of `body` under `secret` at `t` (unix seconds).
fn signed(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

both!(
    a_signed_delivery_runs_the_agent_with_the_request,
    |ctl: Control| async move {
        let e = echo(ctl).await;
        let (id, secret) = webhook(&e.ctl, &e.alice, &e.agent).await;
        let body = br#"{"action":"opened","number":7}"#;
        let (status, accepted) = deliver(
            &e.ctl,
            &id,
            "",
            "application/json",
            body,
            Some(signed(&secret, now_secs(), body)),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let run = finished_run(&e.ctl, &e.alice, &s(&accepted["run_id"])).await;
        let input = echoed(&run);
        assert_eq!(
            input["webhook"]["body"],
            json!({ "action": "opened", "number": 7 }),
            "{input}"
        );
        assert_eq!(
            input["webhook"]["headers"]["content-type"],
            "application/json"
        );
        assert_eq!(input["webhook"]["headers"]["x-github-event"], "push");
        assert!(
            input["webhook"]["headers"]
                .get("x-delta-signature")
                .is_none(),
            "the signature is not passed on: {input}"
        );

        // Waiting: the finished run, output included; text stays text.
        let text = b"plain words";
        let (status, run) = deliver(
            &e.ctl,
            &id,
            "?wait=true",
            "text/plain",
            text,
            Some(signed(&secret, now_secs(), text)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{run}");
        assert_eq!(run["status"], "finished", "{run}");
        assert_eq!(echoed(&run)["webhook"]["body"], "plain words");
        assert_eq!(runs_of(&e.ctl, &e.agent).await, 2);
    }
);

both!(
    bad_stale_replayed_and_oversized_deliveries_start_nothing,
    |ctl: Control| async move {
        let ctl = Control::start_with(ctl.dialect(), |c| c.max_webhook_body_bytes = 1024).await;
        let e = echo(ctl).await;
        let bob = e.ctl.register("bob").await;
        let (id, secret) = webhook(&e.ctl, &e.alice, &e.agent).await;
        let body = br#"{"n":1}"#;
        let now = now_secs();
        let json = "application/json";
        for (signature, status, code) in [
            (None, StatusCode::BAD_REQUEST, "signature_malformed"),
            (
                Some("t=1,v1=zz".to_owned()),
                StatusCode::BAD_REQUEST,
                "signature_malformed",
            ),
            (
                Some(signed("whsec_wrong", now, body)),
                StatusCode::UNAUTHORIZED,
                "signature_invalid",
            ),
            (
                Some(signed(&secret, now, b"{\"n\":2}")),
                StatusCode::UNAUTHORIZED,
                "signature_invalid",
            ),
            (
                Some(signed(&secret, now - 400, body)),
                StatusCode::UNAUTHORIZED,
                "signature_expired",
            ),
            (
                Some(signed(&secret, now + 400, body)),
                StatusCode::UNAUTHORIZED,
                "signature_expired",
            ),
        ] {
            let (got, err) = deliver(&e.ctl, &id, "", json, body, signature.clone()).await;
            assert_eq!(got, status, "{signature:?}: {err}");
            assert_eq!(err["code"], code, "{signature:?}: {err}");
        }
        let big = vec![b'a'; 1025];
        let (status, err) = deliver(
            &e.ctl,
            &id,
            "",
            "text/plain",
            &big,
            Some(signed(&secret, now, &big)),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
        assert_eq!(err["code"], "payload_too_large");
        let (status, err) = deliver(
            &e.ctl,
            "whk_nope",
            "",
            json,
            body,
            Some(signed(&secret, now, body)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
        assert_eq!(runs_of(&e.ctl, &e.agent).await, 0, "nothing started");

        // A good one once; the same again is a replay.
        let good = signed(&secret, now, body);
        let (status, accepted) = deliver(&e.ctl, &id, "", json, body, Some(good.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let (status, err) = deliver(&e.ctl, &id, "", json, body, Some(good)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
        assert_eq!(err["code"], "signature_replayed");
        assert_eq!(runs_of(&e.ctl, &e.agent).await, 1);

        // A delivery no node can take now (the agent has none) is not
        // refused: its run waits in the run queue, and the same signed
        // request sent again is a replay.
        let stranded = common::insert_agent(&e.ctl, &e.alice, "stranded", None).await;
        let (stranded_hook, stranded_secret) = webhook(&e.ctl, &e.alice, &stranded).await;
        let sig = signed(&stranded_secret, now, body);
        let (status, accepted) =
            deliver(&e.ctl, &stranded_hook, "", json, body, Some(sig.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let state: String = sqlx::query_scalar("SELECT state FROM run_queue WHERE run_id = $1")
            .bind(s(&accepted["run_id"]))
            .fetch_one(e.ctl.state.db.pool())
            .await
            .expect("the run's queue row");
        assert_eq!(state, "pending");
        let (status, err) = deliver(&e.ctl, &stranded_hook, "", json, body, Some(sig)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
        assert_eq!(err["code"], "signature_replayed");

        // Rotation: the old secret stops, the new one works; only alice's
        // tenant may rotate, list or delete.
        for (method, path) in [
            (Method::POST, format!("/v1/webhooks/{id}/rotate-secret")),
            (Method::DELETE, format!("/v1/webhooks/{id}")),
            (Method::GET, format!("/v1/agents/{}/webhooks", e.agent)),
        ] {
            let (status, err) = e
                .ctl
                .call(method.clone(), &path, Some(&bob.access), None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {err}");
        }
        let (status, rotated) = e
            .ctl
            .call(
                Method::POST,
                &format!("/v1/webhooks/{id}/rotate-secret"),
                Some(&e.alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new_secret = s(&rotated["secret"]);
        assert_ne!(new_secret, secret);
        let body2 = br#"{"n":3}"#;
        let (status, _) = deliver(
            &e.ctl,
            &id,
            "",
            json,
            body2,
            Some(signed(&secret, now, body2)),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, accepted) = deliver(
            &e.ctl,
            &id,
            "",
            json,
            body2,
            Some(signed(&new_secret, now, body2)),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        assert_eq!(runs_of(&e.ctl, &e.agent).await, 2);

        // Listed without secrets; deleted, it answers 404.
        let (_, list) = e
            .ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{}/webhooks", e.agent),
                Some(&e.alice.access),
                None,
            )
            .await;
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
        assert!(list["items"][0].get("secret").is_none(), "{list}");
        let (status, _) = e
            .ctl
            .call(
                Method::DELETE,
                &format!("/v1/webhooks/{id}"),
                Some(&e.alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let body3 = br#"{"n":4}"#;
        let (status, _) = deliver(
            &e.ctl,
            &id,
            "",
            json,
            body3,
            Some(signed(&new_secret, now, body3)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(runs_of(&e.ctl, &e.agent).await, 2);
    }
);

both!(
    deliveries_are_rate_limited_per_webhook,
    |ctl: Control| async move {
        let ctl = Control::start_with(ctl.dialect(), |c| {
            c.rate_limit.per_key_per_sec = 1;
            c.rate_limit.per_key_burst = 3;
        })
        .await;
        let alice = ctl.register("alice").await;
        let agent = common::insert_agent(&ctl, &alice, "quiet", None).await;
        let (id, _) = webhook(&ctl, &alice, &agent).await;
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let (status, _) = deliver(&ctl, &id, "", "text/plain", b"x", None).await;
            statuses.push(status);
        }
        assert_eq!(
            &statuses[..3],
            &[StatusCode::BAD_REQUEST; 3],
            "{statuses:?}"
        );
        assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
        assert_eq!(runs_of(&ctl, &agent).await, 0);
    }
);

/// A node with one slot and room for one queued run: two slow runs fill it.
const FULL_AFTER_TWO: &str = "[scheduler]\nconcurrency = 1\nper_tenant_concurrency = 1\n\
                              queue_per_tenant = 1\nqueue_total = 1\n";

both_with!(
    a_delivery_the_node_cannot_take_now_stays_queued_and_runs_later,
    |c: &mut delta_control::config::ControlConfig| {
        c.runs.max_deliveries = 100;
        c.runs.retry_base_ms = 200;
        c.runs.retry_max_ms = 1_000;
        c.runs.poll_ms = 100;
    },
    |ctl: Control| async move {
        let _node = common::start_node_in(&ctl, "busy-node", "busy-node", FULL_AFTER_TWO).await;
        let alice = ctl.register("alice").await;
        let (status, script) = upload_script(&ctl, &alice.access, ECHO_JS).await;
        assert_eq!(status, StatusCode::CREATED, "{script}");
        let echo = create_agent(&ctl, &alice, "echo", &s(&script["sha256"])).await;
        let slow_sha = common::bounties::upload(
            &ctl,
            &alice,
            &std::fs::read(delta_guest_artifacts::SLOW_LOGGER).expect("guest"),
        )
        .await;
        let slow = create_agent(&ctl, &alice, "slow", &slow_sha).await;
        // One slow run executes, the next waits: the node is full.
        let mut slow_runs = Vec::new();
        for _ in 0..2 {
            let (status, run) = ctl
                .call(
                    Method::POST,
                    &format!("/v1/agents/{slow}/runs"),
                    Some(&alice.access),
                    Some(json!({ "input": { "lines": 15, "interval_ms": 100 } })),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{run}");
            slow_runs.push(s(&run["id"]));
        }
        // An API caller is told (and retries itself) ...
        let (status, refused) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{echo}/runs"),
                Some(&alice.access),
                Some(json!({ "input": {} })),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
        // ... a webhook's sender is not: its run waits in the queue.
        let (id, secret) = webhook(&ctl, &alice, &echo).await;
        let body = br#"{"n":1}"#;
        let (status, accepted) = deliver(
            &ctl,
            &id,
            "?wait=true",
            "application/json",
            body,
            Some(signed(&secret, now_secs(), body)),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let run_id = s(&accepted["run_id"]);
        let run = finished_run(&ctl, &alice, &run_id).await;
        assert_eq!(echoed(&run)["webhook"]["body"], json!({ "n": 1 }), "{run}");
        assert!(run["deliveries"].as_i64().is_some_and(|n| n >= 2), "{run}");
        assert!(
            s(&run["last_error"]).contains("429"),
            "the refusal it waited out: {run}"
        );
        assert_eq!(run["trigger"]["kind"], "webhook", "{run}");
        // The slow runs were not disturbed.
        for id in &slow_runs {
            let run = finished_run(&ctl, &alice, id).await;
            assert_eq!(run["outcome"]["status"], "completed", "{run}");
        }
    }
);
