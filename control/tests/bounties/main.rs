//! Bounties and the money ledger (issue 17) over real HTTP, on SQLite and
//! PostgreSQL, with the json-verifier example run on a real in-process
//! node: the full lifecycle (85 % to the agent owner, 15 % to the
//! platform), refunds on cancel and at the deadline, failing and failed
//! verifications, and after every step the conservation check (Σ of all
//! accounts = 0). `races` has the concurrent approvals and cancellations;
//! `access` the tenant isolation and bad input.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod artifacts;
mod claims;
mod ledger;
mod races;
mod reputation;
mod stripe;
mod webhooks;

use std::time::Duration;

use common::bounties::{
    EUR, FUNDS, Market, account, assert_conserved, create_agent, market, upload,
};
use common::{Control, Session, eventually, start_node_in_process};
use delta_control::db::now_ms;
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl Market {
    async fn call(
        &self,
        who: &Session,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.ctl.call(method, path, Some(&who.access), body).await
    }

    /// A draft of alice's asking for `{"answer": 42}`, with `extra` fields.
    async fn draft(&self, reward: i64, deadline_in_ms: i64, extra: Value) -> Value {
        let mut body = json!({
            "title": "The answer", "description": "Produce the answer as JSON",
            "spec": { "expected": { "answer": 42 } }, "reward_minor": reward,
            "currency": EUR, "deadline_ms": now_ms() + deadline_in_ms,
            "verifier": self.verifier,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, bounty) = self
            .call(&self.alice, Method::POST, "/v1/bounties", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{bounty}");
        assert_eq!(bounty["status"], "draft");
        bounty
    }

    /// A funded (open) bounty of alice's.
    async fn open(&self, reward: i64, deadline_in_ms: i64, extra: Value) -> String {
        let id = s(&self.draft(reward, deadline_in_ms, extra).await["id"]);
        let (status, b) = self
            .call(
                &self.alice,
                Method::POST,
                &format!("/v1/bounties/{id}/fund"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "open");
        id
    }

    /// Bob submits `payload` to bounty `id` with his agent.
    async fn submit(&self, id: &str, payload: Value) -> (StatusCode, Value) {
        self.call(
            &self.bob,
            Method::POST,
            &format!("/v1/bounties/{id}/submissions"),
            Some(json!({ "agent_id": self.agent, "payload": payload })),
        )
        .await
    }

    async fn bounty(&self, id: &str) -> Value {
        let (status, b) = self
            .call(
                &self.alice,
                Method::GET,
                &format!("/v1/bounties/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        b
    }

    async fn conserved(&self, step: &str) {
        assert_conserved(&self.ctl, &self.op, EUR, step).await;
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

both!(
    full_lifecycle_pays_the_owner_85_percent,
    |ctl: Control| async move {
        let m = market(ctl).await;
        m.conserved("the top-up").await;
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );

        let id = m.open(1_000, 60_000, json!({})).await;
        m.conserved("funding").await;
        // Reserved, not moved: the balance stays, what can be spent drops.
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS - 1_000, 1_000)
        );

        // A failing verdict: verified, not passed; the bounty stays open and
        // the submission cannot be approved.
        let (status, wrong) = m.submit(&id, json!({ "answer": 41 })).await;
        assert_eq!(status, StatusCode::CREATED, "{wrong}");
        assert_eq!(wrong["status"], "verified", "{wrong}");
        assert_eq!(wrong["passed"], false);
        assert_eq!(wrong["score_milli"], 0);
        assert_eq!(m.bounty(&id).await["status"], "open");
        let (status, refused) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&wrong["id"])),
                None,
            )
            .await;
        assert_eq!(
            (status, s(&refused["code"])),
            (StatusCode::CONFLICT, "not_approvable".into()),
            "{refused}"
        );
        m.conserved("a failing verdict").await;

        // A passing one.
        let (status, right) = m.submit(&id, json!({ "answer": 42 })).await;
        assert_eq!(status, StatusCode::CREATED, "{right}");
        assert_eq!(right["status"], "verified", "{right}");
        assert_eq!(right["passed"], true);
        assert_eq!(right["score_milli"], 1000);
        assert_eq!(right["sha256"].as_str().map(str::len), Some(64));

        // The business sees both submissions; the owner sees his own.
        let (_, all) = m
            .call(
                &m.alice,
                Method::GET,
                &format!("/v1/bounties/{id}/submissions"),
                None,
            )
            .await;
        assert_eq!(all["items"].as_array().map(Vec::len), Some(2), "{all}");

        let (status, done) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&right["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["approved_submission_id"], right["id"]);
        m.conserved("the approval").await;
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS - 1_000, FUNDS - 1_000, 0)
        );
        assert_eq!(account(&m.ctl, &m.alice, "escrow", EUR).await.0, 0);
        assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 850);
        let platform: i64 = sqlx::query_scalar(
            "SELECT credits_posted - debits_posted FROM money_accounts WHERE id = 'platform:EUR'",
        )
        .fetch_one(m.ctl.state.db.pool())
        .await
        .expect("platform account");
        assert_eq!(platform, 150);

        // The other submission was rejected; approving again pays nothing.
        let (_, w) = m
            .call(
                &m.bob,
                Method::GET,
                &format!("/v1/submissions/{}", s(&wrong["id"])),
                None,
            )
            .await;
        assert_eq!(w["status"], "rejected");
        let (status, again) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&right["id"])),
                None,
            )
            .await;
        assert_eq!(
            (status, s(&again["code"])),
            (StatusCode::CONFLICT, "not_open".into()),
            "{again}"
        );
        assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 850);
        m.conserved("a second approval").await;

        // Listing: filters by status and reward.
        let (_, open) = m
            .call(
                &m.bob,
                Method::GET,
                "/v1/bounties?status=completed&min_reward=1000",
                None,
            )
            .await;
        assert_eq!(open["items"].as_array().map(Vec::len), Some(1), "{open}");
        let (_, none) = m
            .call(&m.bob, Method::GET, "/v1/bounties?min_reward=1001", None)
            .await;
        assert_eq!(none["items"], json!([]), "{none}");
    }
);

both!(
    cancel_and_deadline_refund_in_full,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let id = m.open(2_000, 60_000, json!({})).await;
        let (_, sub) = m.submit(&id, json!({ "answer": 42 })).await;
        let (status, cancelled) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{id}/cancel"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{cancelled}");
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );
        m.conserved("the cancellation").await;
        let (_, sub) = m
            .call(
                &m.bob,
                Method::GET,
                &format!("/v1/submissions/{}", s(&sub["id"])),
                None,
            )
            .await;
        assert_eq!(sub["status"], "rejected");
        // Neither approval nor a second cancellation after it.
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&sub["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{id}/cancel"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);

        // The deadline: the sweep voids the escrow.
        let id = m.open(3_000, 3_000, json!({})).await;
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await.1,
            FUNDS - 3_000
        );
        let b = eventually("the deadline's refund", Duration::from_secs(20), || async {
            let b = m.bounty(&id).await;
            (b["status"] == "expired").then_some(b)
        })
        .await;
        assert_eq!(b["status"], "expired");
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );
        m.conserved("the deadline").await;
        let (status, late) = m.submit(&id, json!({ "answer": 42 })).await;
        assert_eq!(
            (status, s(&late["code"])),
            (StatusCode::CONFLICT, "not_open".into()),
            "{late}"
        );
    }
);

both!(
    failed_and_pending_verifications_never_approve,
    |ctl: Control| async move {
        let mut m = market(ctl).await;
        // One unit of fuel: the verifier cannot finish.
        let id = m
            .open(
                500,
                60_000,
                json!({ "verifier_limits": { "fuel": 1 }, "policy": "auto" }),
            )
            .await;
        let (status, sub) = m.submit(&id, json!({ "answer": 42 })).await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        assert_eq!(sub["status"], "verification_failed", "{sub}");
        assert!(sub["passed"].is_null());
        assert!(s(&sub["report"]["error"]).contains("fuel"), "{sub}");
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&sub["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(m.bounty(&id).await["status"], "open");

        // `auto`: the first passing verdict is approved without the business.
        let auto = m.open(1_000, 60_000, json!({ "policy": "auto" })).await;
        let (_, first) = m.submit(&auto, json!({ "answer": 42 })).await;
        assert_eq!(first["status"], "approved", "{first}");
        assert_eq!(m.bounty(&auto).await["status"], "completed");
        assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 850);
        m.conserved("an automatic approval").await;

        // No node: the submission waits, visibly, and is never approved.
        let pending = m.open(700, 60_000, json!({ "policy": "auto" })).await;
        if let Some(node) = m.node.take() {
            node.shutdown().await;
        }
        sqlx::query("UPDATE nodes SET status = 'down'")
            .execute(m.ctl.state.db.pool())
            .await
            .expect("mark down");
        let (status, waiting) = m.submit(&pending, json!({ "answer": 42 })).await;
        assert_eq!(status, StatusCode::CREATED, "{waiting}");
        assert_eq!(waiting["status"], "pending_verification", "{waiting}");
        assert!(
            s(&waiting["report"]["pending"]).contains("no node"),
            "{waiting}"
        );
        let (status, again) = m
            .call(
                &m.bob,
                Method::POST,
                &format!("/v1/submissions/{}/verify", s(&waiting["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["status"], "pending_verification");
        assert!(again["attempts"].as_i64() >= Some(2), "{again}");
        assert_eq!(m.bounty(&pending).await["status"], "open");
        m.conserved("waiting for a node").await;

        // A node again: the sweep verifies the waiting submission, and
        // `auto` approves it.
        let node = start_node_in_process(&m.ctl, "bounty-node", "").await;
        let done = eventually("the sweep's retry", Duration::from_secs(30), || async {
            let (_, sub) = m
                .call(
                    &m.bob,
                    Method::GET,
                    &format!("/v1/submissions/{}", s(&waiting["id"])),
                    None,
                )
                .await;
            // `verified` is passed through: the verdict commits before
            // the automatic approval's own transaction.
            (sub["status"] != "pending_verification" && sub["status"] != "verified").then_some(sub)
        })
        .await;
        assert_eq!(done["status"], "approved", "{done}");
        assert_eq!(m.bounty(&pending).await["status"], "completed");
        m.conserved("a retried verification").await;
        node.shutdown().await;
    }
);
