//! Usage ingestion from nodes and the usage queries, over real HTTP, on
//! SQLite and PostgreSQL.

use crate::common;

use common::{Control, Session};
use delta_node::model::{LlmTokens, MessageCounts, RunUsage};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// 2026-11-23T12:00:00Z and the next day, in milliseconds.
const DAY1: i64 = 1_795_435_200_000;
const DAY2: i64 = DAY1 + 86_400_000;

/// An agent row owned by `s`, placed on node-a (the reporting node).
async fn agent(ctl: &Control, s: &Session, name: &str) -> String {
    common::insert_agent(ctl, s, name, Some(NODE)).await
}

/// The node whose usage these tests send.
const NODE: &str = "node-a";

fn record(run: &str, s: &Session, agent: &str, at: i64) -> RunUsage {
    let mut r = RunUsage {
        run_id: run.into(),
        agent_id: agent.into(),
        tenant_id: s.tenant_id.clone(),
        outcome: "completed".into(),
        fuel_used: 1_000,
        wall_time_us: 50,
        finished_at_ms: at,
        ..RunUsage::default()
    };
    r.llm.insert(
        "model-a".into(),
        LlmTokens {
            calls: 1,
            input_tokens: 10,
            output_tokens: 20,
        },
    );
    r.messages.insert(
        "email".into(),
        MessageCounts {
            sent: 1,
            refused: 1,
            tokens: 3,
        },
    );
    r
}

async fn send(
    ctl: &Control,
    batch: &str,
    records: &[RunUsage],
    token: &str,
) -> (StatusCode, Value) {
    let resp = ctl
        .client
        .post(ctl.url("/v1/nodes/usage"))
        .bearer_auth(token)
        .json(&json!({ "batch_id": batch, "node_id": NODE, "records": records }))
        .send()
        .await
        .expect("send");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The quantity of `kind`/`detail` in a usage answer's rows (summed).
fn quantity(report: &Value, kind: &str, detail: &str) -> i64 {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["kind"] == kind && r["detail"] == detail)
        .map(|r| r["quantity"].as_i64().expect("quantity"))
        .sum()
}

async fn usage(ctl: &Control, s: &Session, query: &str) -> Value {
    let (status, body) = ctl
        .call(
            Method::GET,
            &format!("/v1/usage?{query}"),
            Some(&s.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

both!(
    batches_count_once_even_resent_or_concurrent,
    |ctl: Control| async move {
        let cred = ctl.node_credential(NODE).await;
        let alice = ctl.register("alice").await;
        let a = agent(&ctl, &alice, "a").await;
        let records: Vec<RunUsage> = (0..50)
            .map(|i| record(&format!("run-{i}"), &alice, &a, DAY1))
            .collect();

        // Wrong and missing node tokens store nothing.
        let (status, _) = send(&ctl, "b1", &records, "not-the-fleet-token-000000").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = send(&ctl, "b1", &records, &alice.access).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // The same batch twice at once, then once more.
        let (one, two) = tokio::join!(
            send(&ctl, "b1", &records, &cred),
            send(&ctl, "b1", &records, &cred)
        );
        assert_eq!(one.0, StatusCode::OK, "{}", one.1);
        assert_eq!(two.0, StatusCode::OK, "{}", two.1);
        let accepted = one.1["accepted"].as_u64().expect("accepted")
            + two.1["accepted"].as_u64().expect("accepted");
        assert_eq!(accepted, 50, "{} / {}", one.1, two.1);
        let (status, again) = send(&ctl, "b1", &records, &cred).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["accepted"], 0, "{again}");
        assert_eq!(again["duplicates"], 50, "{again}");

        // Another batch overlapping it counts only its new runs.
        let mut overlap: Vec<RunUsage> = records[40..].to_vec();
        overlap.push(record("run-new", &alice, &a, DAY2));
        let (_, ack) = send(&ctl, "b2", &overlap, &cred).await;
        assert_eq!(
            (ack["accepted"].as_u64(), ack["duplicates"].as_u64()),
            (Some(1), Some(10)),
            "{ack}"
        );

        let all = usage(&ctl, &alice, "from=2026-11-01&to=2026-11-30").await;
        assert_eq!(quantity(&all, "runs", "completed"), 51, "{all}");
        assert_eq!(quantity(&all, "fuel", ""), 51_000);
        assert_eq!(quantity(&all, "llm_input_tokens", "model-a"), 510);
        assert_eq!(quantity(&all, "llm_output_tokens", "model-a"), 1_020);
        assert_eq!(quantity(&all, "messages_sent", "email"), 51);
        assert_eq!(quantity(&all, "message_tokens", "email"), 153);
    }
);

both!(
    queries_group_filter_and_stay_in_the_tenant,
    |ctl: Control| async move {
        let cred = ctl.node_credential(NODE).await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let a1 = agent(&ctl, &alice, "a1").await;
        let a2 = agent(&ctl, &alice, "a2").await;
        let b1 = agent(&ctl, &bob, "b1").await;
        let mut records = vec![
            record("r1", &alice, &a1, DAY1),
            record("r2", &alice, &a1, DAY2),
            record("r3", &alice, &a2, DAY2),
            record("r4", &bob, &b1, DAY1),
        ];
        records[2].outcome = "out-of-fuel".into();
        // A record claiming another tenant's agent is rejected, not counted.
        let mut forged = record("r5", &alice, &b1, DAY1);
        forged.fuel_used = 999_999;
        records.push(forged);
        let (status, ack) = send(&ctl, "b1", &records, &cred).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(
            (ack["accepted"].as_u64(), ack["rejected"].as_u64()),
            (Some(4), Some(1)),
            "{ack}"
        );

        let by_day = usage(
            &ctl,
            &alice,
            "from=2026-11-23&to=2026-11-24&group_by=day&kind=runs",
        )
        .await;
        let rows = by_day["rows"].as_array().expect("rows");
        let day_runs = |day: &str| -> i64 {
            rows.iter()
                .filter(|r| r["day"] == day)
                .map(|r| r["quantity"].as_i64().expect("q"))
                .sum()
        };
        assert_eq!(day_runs("2026-11-23"), 1, "{by_day}");
        assert_eq!(day_runs("2026-11-24"), 2, "{by_day}");
        assert!(rows.iter().all(|r| r["kind"] == "runs"), "{by_day}");
        assert_eq!(quantity(&by_day, "runs", "out-of-fuel"), 1);

        let one_agent = usage(
            &ctl,
            &alice,
            &format!("from=2026-11-01&to=2026-11-30&agent_id={a1}"),
        )
        .await;
        assert_eq!(quantity(&one_agent, "fuel", ""), 2_000, "{one_agent}");
        let per_agent = usage(
            &ctl,
            &alice,
            "from=2026-11-01&to=2026-11-30&group_by=agent,user&kind=fuel",
        )
        .await;
        let rows = per_agent["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 2, "{per_agent}");
        assert!(
            rows.iter().all(|r| r["user_id"] == alice.user_id.as_str()),
            "{per_agent}"
        );
        let per_user = usage(
            &ctl,
            &alice,
            &format!("from=2026-11-01&to=2026-11-30&user_id={}", alice.user_id),
        )
        .await;
        assert_eq!(quantity(&per_user, "fuel", ""), 3_000, "{per_user}");
        // The budget comes alongside: the agent's, or the user's.
        let (status, body) = ctl
            .call(
                Method::PUT,
                &format!("/v1/agents/{a1}/budget"),
                Some(&alice.access),
                Some(json!({ "allocated": 500 })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let with_budget = usage(&ctl, &alice, &format!("agent_id={a1}")).await;
        assert_eq!(with_budget["budget"]["allocated"], 500, "{with_budget}");
        assert_eq!(with_budget["budget"]["available"], 500, "{with_budget}");
        let mine = usage(&ctl, &alice, "").await;
        assert_eq!(mine["budget"]["user_id"], alice.user_id.as_str(), "{mine}");
        assert_eq!(mine["budget"]["pool"], 10_000 - 500, "{mine}");
        // A range without data is empty, not an error.
        let empty = usage(&ctl, &alice, "from=2026-10-01&to=2026-10-31").await;
        assert_eq!(empty["rows"], json!([]));

        // Bob sees only his own usage; Alice's ids are 404 to him.
        let bobs = usage(&ctl, &bob, "from=2026-11-01&to=2026-11-30").await;
        assert_eq!(quantity(&bobs, "fuel", ""), 1_000, "{bobs}");
        for query in [
            format!("agent_id={a1}"),
            format!("user_id={}", alice.user_id),
        ] {
            let (status, body) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/usage?{query}"),
                    Some(&bob.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{query}: {body}");
        }
        // Bad input is a clear 422; no credentials 401.
        for query in [
            "from=2026-13-01",
            "from=2026-11-30&to=2026-11-01",
            "kind=bitcoin",
            "group_by=planet",
            "from=2024-01-01&to=2026-01-01",
        ] {
            let (status, body) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/usage?{query}"),
                    Some(&alice.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        }
        let (status, _) = ctl.call(Method::GET, "/v1/usage", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
);

both!(
    hostile_names_and_huge_numbers_do_not_fail_a_batch,
    |ctl: Control| async move {
        let cred = ctl.node_credential(NODE).await;
        let alice = ctl.register("alice").await;
        let a = agent(&ctl, &alice, "a").await;
        let mut records = Vec::new();
        for i in 0..2 {
            let mut r = record(&format!("huge-{i}"), &alice, &a, DAY1);
            r.fuel_used = u64::MAX;
            r.llm.insert(
                format!("bad\0model\n{}", "x".repeat(5_000)),
                LlmTokens {
                    calls: 1,
                    input_tokens: 1,
                    output_tokens: 1,
                },
            );
            records.push(r);
        }
        let (status, ack) = send(&ctl, "h1", &records, &cred).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack["accepted"], 2, "{ack}");
        let all = usage(&ctl, &alice, "from=2026-11-01&to=2026-11-30&kind=fuel").await;
        assert_eq!(quantity(&all, "fuel", ""), i64::MAX, "saturates: {all}");
        let models = usage(&ctl, &alice, "from=2026-11-01&to=2026-11-30&kind=llm_calls").await;
        let rows = models["rows"].as_array().expect("rows");
        let bad = rows
            .iter()
            .find(|r| r["detail"].as_str().is_some_and(|d| d.starts_with("bad")))
            .expect("the odd model is counted");
        let name = bad["detail"].as_str().expect("detail");
        assert!(
            name.len() <= 256 && !name.contains('\0') && !name.contains('\n'),
            "{name:?}"
        );
        assert_eq!(bad["quantity"], 2);
    }
);

both!(
    a_member_sees_another_members_usage_but_not_their_budget,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let carol = ctl.register("carol").await;
        let (status, body) = ctl.invite_and_accept(&alice.access, &carol, "member").await;
        assert!(status.is_success(), "{body}");
        let (status, login) = ctl
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": carol.email, "password": carol.password,
                         "tenant_id": alice.tenant_id })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        let carol_in_alices = Session {
            access: login["access_token"].as_str().expect("access").to_owned(),
            tenant_id: alice.tenant_id.clone(),
            ..carol.clone()
        };
        // Alice's own budget exists (made on first look).
        let (status, body) = ctl
            .call(Method::GET, "/v1/budget", Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let query = format!("user_id={}", alice.user_id);
        let as_member = usage(&ctl, &carol_in_alices, &query).await;
        assert!(
            as_member["budget"].is_null(),
            "a member sees no one else's budget: {as_member}"
        );
        // Her own, once she has one.
        let (status, body) = ctl
            .call(
                Method::GET,
                "/v1/budget",
                Some(&carol_in_alices.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let own = usage(&ctl, &carol_in_alices, "").await;
        assert_eq!(own["budget"]["user_id"], carol.user_id.as_str(), "{own}");
        let as_owner = usage(&ctl, &alice, &query).await;
        assert_eq!(
            as_owner["budget"]["user_id"],
            alice.user_id.as_str(),
            "{as_owner}"
        );
    }
);

both!(
    malformed_batches_are_refused_whole,
    |ctl: Control| async move {
        let cred = ctl.node_credential(NODE).await;
        let resp = ctl
            .client
            .post(ctl.url("/v1/nodes/usage"))
            .bearer_auth(&cred)
            .header("content-type", "application/json")
            .body("{\"batch_id\": \"x\", \"node_id\": \"n\", \"records\": [{\"run_id\": 5}]}")
            .send()
            .await
            .expect("send");
        assert!(resp.status().is_client_error(), "{}", resp.status());
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM usage_records")
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("count");
        assert_eq!(count, 0);
    }
);
