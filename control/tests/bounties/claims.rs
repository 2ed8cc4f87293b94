//! Claims (limits, releases, who sees them), agent attempts run on the
//! node (a JavaScript agent answers the bounty's spec: paid 85/15; a
//! failing agent: the attempt fails and the deadline refunds) and the
//! bounty's event stream followed while the lifecycle runs.

use super::*;
use common::upload_script;

/// Answers whatever the bounty's spec expects.
const SOLVER_JS: &str = "export function run(task) { return task.input.bounty.spec.expected; }";
/// Always fails.
const FAILING_JS: &str = "import { DeltaError } from \"delta\";\n\
     export function run(task) { throw new DeltaError(\"cannot\", \"no idea\"); }";

/// A JavaScript agent of `who`'s running `source`.
async fn js_agent(m: &Market, who: &Session, name: &str, source: &str) -> String {
    let (status, component) = upload_script(&m.ctl, &who.access, source).await;
    assert!(status.is_success(), "{status} {component}");
    create_agent(&m.ctl, who, name, &s(&component["sha256"])).await
}

/// Follow bounty `id`'s event stream as `who` until it ends: `(event,
/// data)` pairs in order.
fn follow(m: &Market, who: &Session, id: &str) -> tokio::task::JoinHandle<Vec<(String, Value)>> {
    let req = m
        .ctl
        .client
        .get(m.ctl.url(&format!("/v1/bounties/{id}/events")))
        .bearer_auth(&who.access);
    tokio::spawn(async move {
        let mut resp = req.send().await.expect("events");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().ok(),
            Some("text/event-stream")
        );
        let mut text = String::new();
        let read = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(chunk) = resp.chunk().await.expect("chunk") {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        });
        read.await.expect("the stream ends when the bounty closes");
        parse_events(&text)
    })
}

fn parse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let field = |name: &str| {
                e.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .to_owned()
            };
            let data: Value = serde_json::from_str(&field("data")).expect("event data");
            assert_eq!(data["type"], field("event").as_str());
            assert_eq!(data["seq"].to_string(), field("id"));
            (field("event"), data)
        })
        .collect()
}

async fn claim(m: &Market, who: &Session, claims: &str, agent: &str) -> (StatusCode, Value) {
    m.call(
        who,
        Method::POST,
        claims,
        Some(json!({ "agent_id": agent })),
    )
    .await
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

both!(
    claims_are_limited_released_and_expired,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let carol = m.ctl.register("carol").await;
        let (status, bad) = m
            .call(
                &m.alice,
                Method::POST,
                "/v1/bounties",
                Some(
                    json!({ "title": "t", "spec": {}, "reward_minor": 1, "currency": EUR,
                    "deadline_ms": now_ms() + 60_000, "verifier": m.verifier, "max_claims": 0 }),
                ),
            )
            .await;
        assert_eq!(
            (status, s(&bad["code"])),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_max_claims".into()
            )
        );
        let id = m.open(100, 60_000, json!({ "max_claims": 1 })).await;
        assert_eq!(m.bounty(&id).await["max_claims"], 1);
        let claims = format!("/v1/bounties/{id}/claims");

        // Not one's own bounty, not another tenant's agent.
        let (status, own) = claim(&m, &m.alice, &claims, &m.agent).await;
        assert_eq!(
            (status, s(&own["code"])),
            (StatusCode::FORBIDDEN, "own_bounty".into())
        );
        let (status, theirs) = claim(&m, &carol, &claims, &m.agent).await;
        assert_eq!(
            (status, s(&theirs["code"])),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_agent".into())
        );

        let (status, c) = claim(&m, &m.bob, &claims, &m.agent).await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        assert_eq!(
            (s(&c["status"]), s(&c["tenant_id"])),
            ("active".into(), m.bob.tenant_id.clone())
        );
        let (status, again) = claim(&m, &m.bob, &claims, &m.agent).await;
        assert_eq!(
            (status, s(&again["code"])),
            (StatusCode::CONFLICT, "already_claimed".into()),
            "{again}"
        );
        // The one slot is taken: carol's agent is refused, and so is its
        // submission (which would claim implicitly).
        let hello = upload(
            &m.ctl,
            &carol,
            &std::fs::read(guests::HELLO_AGENT).expect("guest"),
        )
        .await;
        let carols = create_agent(&m.ctl, &carol, "rival", &hello).await;
        let (status, full) = claim(&m, &carol, &claims, &carols).await;
        assert_eq!(
            (status, s(&full["code"])),
            (StatusCode::CONFLICT, "claims_full".into()),
            "{full}"
        );
        let (status, full) = m
            .call(
                &carol,
                Method::POST,
                &format!("/v1/bounties/{id}/submissions"),
                Some(json!({ "agent_id": carols, "payload": { "answer": 1 } })),
            )
            .await;
        assert_eq!(
            (status, s(&full["code"])),
            (StatusCode::CONFLICT, "claims_full".into()),
            "{full}"
        );

        // Who sees which claims.
        assert_eq!(
            m.call(&m.alice, Method::GET, &claims, None).await.1["items"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(
            m.call(&m.bob, Method::GET, &claims, None).await.1["items"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(
            m.call(&carol, Method::GET, &claims, None).await.1["items"]
                .as_array()
                .map(Vec::len),
            Some(0)
        );

        // Only its tenant releases a claim; then the slot is carol's.
        let release = format!("/v1/claims/{}", s(&c["id"]));
        let (status, _) = m.call(&carol, Method::DELETE, &release, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, released) = m.call(&m.bob, Method::DELETE, &release, None).await;
        assert_eq!(
            (status, s(&released["status"])),
            (StatusCode::OK, "released".into())
        );
        let (status, twice) = m.call(&m.bob, Method::DELETE, &release, None).await;
        assert_eq!(
            (status, s(&twice["code"])),
            (StatusCode::CONFLICT, "not_releasable".into())
        );
        let (status, sub) = m
            .call(
                &carol,
                Method::POST,
                &format!("/v1/bounties/{id}/submissions"),
                Some(json!({ "agent_id": carols, "payload": { "answer": 1 } })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        let (_, carol_claims) = m.call(&carol, Method::GET, &claims, None).await;
        assert_eq!(
            carol_claims["items"][0]["status"], "submitted",
            "{carol_claims}"
        );

        // Closing the bounty expires the claims.
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{id}/cancel"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, all) = m.call(&m.alice, Method::GET, &claims, None).await;
        let statuses: Vec<String> = all["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| s(&c["status"]))
            .collect();
        assert_eq!(statuses, ["released", "expired"], "{all}");
        m.conserved("claims").await;
    }
);

both!(
    concurrent_claims_never_exceed_the_limit,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let hello = upload(
            &m.ctl,
            &m.bob,
            &std::fs::read(guests::HELLO_AGENT).expect("guest"),
        )
        .await;
        let mut agents = Vec::new();
        for i in 0..8 {
            agents.push(create_agent(&m.ctl, &m.bob, &format!("racer-{i}"), &hello).await);
        }
        let id = m.open(100, 60_000, json!({ "max_claims": 3 })).await;
        let claims = format!("/v1/bounties/{id}/claims");
        let answers = futures_util::future::join_all(agents.iter().map(|a| {
            m.call(
                &m.bob,
                Method::POST,
                &claims,
                Some(json!({ "agent_id": a })),
            )
        }))
        .await;
        let created = answers
            .iter()
            .filter(|(st, _)| *st == StatusCode::CREATED)
            .count();
        assert_eq!(created, 3, "{answers:?}");
        for (status, body) in &answers {
            assert!(
                *status == StatusCode::CREATED
                    || (*status == StatusCode::CONFLICT && body["code"] == "claims_full"),
                "{status} {body}"
            );
        }
        let b = m.bounty(&id).await;
        assert_eq!(b["claims_held"], 3, "{b}");
        let (_, listed) = m.call(&m.alice, Method::GET, &claims, None).await;
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(3));
    }
);

both!(
    an_attempt_on_the_node_is_verified_and_paid,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let solver = js_agent(&m, &m.bob, "js-solver", SOLVER_JS).await;
        let id = m.open(1_000, 60_000, json!({ "policy": "auto" })).await;
        let business = follow(&m, &m.alice, &id);
        let (status, started) = m
            .call(
                &m.bob,
                Method::POST,
                &format!("/v1/bounties/{id}/attempts"),
                Some(json!({ "agent_id": solver })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        // The claimant may follow too, once it holds the claim.
        let claimant = follow(&m, &m.bob, &id);
        let attempt = format!("/v1/attempts/{}", s(&started["attempt_id"]));
        let done = eventually(
            "the attempt's submission",
            Duration::from_secs(60),
            || async {
                let (_, a) = m.call(&m.bob, Method::GET, &attempt, None).await;
                (a["status"] != "running").then_some(a)
            },
        )
        .await;
        assert_eq!(done["status"], "submitted", "{done}");
        assert_eq!(done["run_id"], started["run_id"]);
        let (_, run) = m
            .call(
                &m.bob,
                Method::GET,
                &format!("/v1/runs/{}", s(&started["run_id"])),
                None,
            )
            .await;
        assert_eq!(
            run["trigger"],
            json!({ "kind": "bounty_attempt", "id": started["attempt_id"] }),
            "{run}"
        );
        let b = eventually("the auto-approval", Duration::from_secs(30), || async {
            let b = m.bounty(&id).await;
            (b["status"] == "completed").then_some(b)
        })
        .await;
        assert_eq!(b["approved_submission_id"], done["submission_id"]);
        let (_, sub) = m
            .call(
                &m.bob,
                Method::GET,
                &format!("/v1/submissions/{}", s(&done["submission_id"])),
                None,
            )
            .await;
        assert_eq!(sub["payload"], json!({ "answer": 42 }), "{sub}");
        assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 850);
        m.conserved("an attempt paid").await;

        let seen = business.await.expect("business stream");
        assert_eq!(
            names(&seen),
            [
                "bounty.funded",
                "claim.created",
                "submission.created",
                "submission.verified",
                "submission.approved",
                "bounty.completed"
            ],
            "{seen:?}"
        );
        let seqs: Vec<i64> = seen.iter().filter_map(|(_, d)| d["seq"].as_i64()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        assert_eq!(seen[4].1["data"]["submission_id"], done["submission_id"]);
        assert_eq!(seen[5].1["data"]["payout_minor"], 850);
        assert_eq!(seen[3].1["data"]["passed"], true);
        // The claimant's stream replays from the start as well.
        assert_eq!(
            names(&claimant.await.expect("claimant stream")),
            names(&seen)
        );

        // Resuming after an event number; and nobody else may follow.
        let resp = m
            .ctl
            .client
            .get(m.ctl.url(&format!("/v1/bounties/{id}/events")))
            .bearer_auth(&m.alice.access)
            .header("last-event-id", "3")
            .send()
            .await
            .expect("events");
        let rest = parse_events(&resp.text().await.expect("text"));
        assert_eq!(
            names(&rest),
            [
                "submission.verified",
                "submission.approved",
                "bounty.completed"
            ]
        );
        let carol = m.ctl.register("carol").await;
        let (status, _) = m
            .call(
                &carol,
                Method::GET,
                &format!("/v1/bounties/{id}/events"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);

both!(
    a_failing_attempt_ends_in_a_refund_at_the_deadline,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let failing = js_agent(&m, &m.bob, "js-failing", FAILING_JS).await;
        let id = m.open(1_000, 4_000, json!({ "policy": "auto" })).await;
        let (status, started) = m
            .call(
                &m.bob,
                Method::POST,
                &format!("/v1/bounties/{id}/attempts"),
                Some(json!({ "agent_id": failing })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        let claimant = follow(&m, &m.bob, &id);
        let attempt = format!("/v1/attempts/{}", s(&started["attempt_id"]));
        let failed = eventually("the attempt to fail", Duration::from_secs(60), || async {
            let (_, a) = m.call(&m.bob, Method::GET, &attempt, None).await;
            (a["status"] != "running").then_some(a)
        })
        .await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert!(failed["submission_id"].is_null());
        assert!(
            s(&failed["reason"]).contains("the run ended with"),
            "{failed}"
        );
        let (_, subs) = m
            .call(
                &m.alice,
                Method::GET,
                &format!("/v1/bounties/{id}/submissions"),
                None,
            )
            .await;
        assert_eq!(subs["items"].as_array().map(Vec::len), Some(0));
        let b = eventually("the deadline's refund", Duration::from_secs(30), || async {
            let b = m.bounty(&id).await;
            (b["status"] == "expired").then_some(b)
        })
        .await;
        assert!(b["approved_submission_id"].is_null());
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );
        assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 0);
        m.conserved("a refund after a failed attempt").await;
        assert_eq!(
            names(&claimant.await.expect("claimant stream")),
            ["bounty.funded", "claim.created", "bounty.refunded"]
        );
    }
);
