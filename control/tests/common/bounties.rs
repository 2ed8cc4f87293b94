//! Helpers of the bounty and ledger tests: components, agents on a node,
//! top-ups and the conservation check.

use std::time::Duration;

use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Control, Session, eventually};

/// Upload `bytes` as a component of `who`'s tenant; its sha256.
pub async fn upload(ctl: &Control, who: &Session, bytes: &[u8]) -> String {
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&who.access)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("upload");
    assert!(resp.status().is_success(), "upload: {}", resp.status());
    let component: Value = resp.json().await.expect("json");
    component["sha256"].as_str().expect("sha256").to_owned()
}

/// A main agent of `who` running component `sha256`, retrying while no node
/// has registered yet; its id.
pub async fn create_agent(ctl: &Control, who: &Session, name: &str, sha256: &str) -> String {
    let agent = post_agent(
        ctl,
        who,
        json!({ "name": name, "kind": "main", "component": sha256 }),
    )
    .await;
    agent["id"].as_str().expect("agent id").to_owned()
}

/// `POST /v1/agents` with `body` as `who`, retried while no node has
/// registered yet (503); the created agent.
pub async fn post_agent(ctl: &Control, who: &Session, body: Value) -> Value {
    eventually(
        "a node to take the agent",
        Duration::from_secs(30),
        || async {
            let (status, agent) = ctl
                .call(
                    Method::POST,
                    "/v1/agents",
                    Some(&who.access),
                    Some(body.clone()),
                )
                .await;
            if status == StatusCode::CREATED {
                return Some(agent);
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{agent}");
            None
        },
    )
    .await
}

/// Credit `tenant` with `amount` minor units of `currency` (as the operator).
pub async fn top_up(ctl: &Control, operator: &Session, tenant: &str, amount: i64, currency: &str) {
    let (status, body) = ctl
        .call(
            Method::POST,
            "/v1/operator/ledger/topups",
            Some(&operator.access),
            Some(json!({ "tenant_id": tenant, "amount_minor": amount, "currency": currency })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "top-up: {body}");
}

/// `who`'s tenant's account of `kind` (`tenant` or `escrow`) in `currency`:
/// `(balance, available, debits_pending)`; zeros if it does not exist.
pub async fn account(ctl: &Control, who: &Session, kind: &str, currency: &str) -> (i64, i64, i64) {
    let (status, body) = ctl
        .call(Method::GET, "/v1/ledger/accounts", Some(&who.access), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|a| a["kind"] == kind && a["currency"] == currency)
        .map(|a| {
            let n = |k: &str| a[k].as_i64().expect("number");
            (
                n("balance_minor"),
                n("available_minor"),
                n("debits_pending"),
            )
        })
        .unwrap_or_default()
}

/// Assert the ledger of `currency` is conserved: Σ balances = 0 and
/// Σ pending = 0 over every account.
pub async fn assert_conserved(ctl: &Control, operator: &Session, currency: &str, step: &str) {
    let (status, totals) = ctl
        .call(
            Method::GET,
            &format!("/v1/operator/ledger/totals?currency={currency}"),
            Some(&operator.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    assert_eq!(
        (
            totals["posted_minor"].as_i64(),
            totals["pending_minor"].as_i64()
        ),
        (Some(0), Some(0)),
        "not conserved after {step}: {totals}"
    );
}

/// What [`assert_books_sound`] found, for the test's own totals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// Bounties whose escrow was posted (paid out once).
    pub completed: Vec<String>,
    /// Bounties whose escrow was voided (refunded once).
    pub refunded: Vec<String>,
    /// Funded bounties still open (escrow pending).
    pub open: Vec<String>,
}

/// Check the whole money ledger in the database, straight from its
/// tables (so a replica's API cannot hide anything): over every currency
/// Σ balances = 0 and Σ pending = 0; no account but a currency's
/// `external` one below zero, counting what it has reserved; every funded
/// bounty's escrow settled at most once and as its status says (a
/// completed bounty posted with a payout, a cancelled or expired one
/// voided, never both); no pending transfer left on a closed bounty.
pub async fn assert_books_sound(db: &delta_control::db::Db, step: &str) -> Outcomes {
    use sqlx::Row as _;
    let pool = db.pool();
    let sums = sqlx::query(
        "SELECT currency, CAST(SUM(credits_posted - debits_posted) AS BIGINT) AS posted, \
         CAST(SUM(credits_pending - debits_pending) AS BIGINT) AS pending \
         FROM money_accounts GROUP BY currency",
    )
    .fetch_all(pool)
    .await
    .expect("sums");
    for row in &sums {
        let (currency, posted, pending): (String, i64, i64) =
            (row.get("currency"), row.get("posted"), row.get("pending"));
        assert_eq!(
            (posted, pending),
            (0, 0),
            "{currency} not conserved after {step}"
        );
    }
    let negative: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT id, credits_posted - debits_posted, \
         credits_posted - debits_posted - debits_pending FROM money_accounts \
         WHERE kind <> 'external' AND \
         (credits_posted - debits_posted < 0 OR credits_posted - debits_posted - debits_pending < 0)",
    )
    .fetch_all(pool)
    .await
    .expect("balances");
    assert!(
        negative.is_empty(),
        "negative balances after {step}: {negative:?}"
    );

    let rows = sqlx::query(
        "SELECT b.id, b.status, b.approved_submission_id, p.state, \
         (SELECT COUNT(*) FROM money_transfers t WHERE t.id = 'bounty:' || b.id || ':release') \
           AS released, \
         (SELECT COUNT(*) FROM money_transfers t WHERE t.id = 'bounty:' || b.id || ':refund') \
           AS refunds, \
         (SELECT COUNT(*) FROM money_transfers t WHERE t.id = 'bounty:' || b.id || ':payout') \
           AS payouts \
         FROM bounties b LEFT JOIN money_pending p ON p.transfer_id = b.escrow_transfer_id \
         WHERE b.escrow_transfer_id IS NOT NULL ORDER BY b.id",
    )
    .fetch_all(pool)
    .await
    .expect("bounties");
    let mut out = Outcomes::default();
    for row in &rows {
        let id: String = row.get("id");
        let status: String = row.get("status");
        let approved: Option<String> = row.get("approved_submission_id");
        let state: Option<String> = row.get("state");
        let counts: (i64, i64, i64) = (row.get("released"), row.get("refunds"), row.get("payouts"));
        let what = format!(
            "bounty {id} after {step}: status {status}, escrow {state:?}, \
             (release, refund, payout) {counts:?}, approved {approved:?}"
        );
        match status.as_str() {
            "completed" => {
                assert_eq!(
                    (state.as_deref(), counts),
                    (Some("posted"), (1, 0, 1)),
                    "{what}"
                );
                assert!(approved.is_some(), "{what}");
                out.completed.push(id);
            }
            "cancelled" | "expired" => {
                assert_eq!(
                    (state.as_deref(), counts),
                    (Some("voided"), (0, 1, 0)),
                    "{what}"
                );
                assert!(approved.is_none(), "{what}");
                out.refunded.push(id);
            }
            "open" => {
                assert_eq!(
                    (state.as_deref(), counts),
                    (Some("pending"), (0, 0, 0)),
                    "{what}"
                );
                out.open.push(id);
            }
            other => panic!("{what}: unexpected status {other}"),
        }
    }
    out
}

/// A business (alice, funded), an agent owner (bob, with an agent), the
/// operator, a node and alice's uploaded verifier.
pub struct Market {
    pub ctl: Control,
    pub node: Option<delta_node::server::RunningNode>,
    pub op: Session,
    pub alice: Session,
    pub bob: Session,
    pub verifier: String,
    pub agent: String,
}

/// The currency of the bounty suites.
pub const EUR: &str = "EUR";
/// What the operator gives alice.
pub const FUNDS: i64 = 10_000;

/// Set up a [`Market`] on `ctl`.
pub async fn market(ctl: Control) -> Market {
    let node = super::start_node_in_process(&ctl, "bounty-node", "").await;
    let op = ctl.operator().await;
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let verifier = upload(
        &ctl,
        &alice,
        &std::fs::read(guests::JSON_VERIFIER).expect("guest"),
    )
    .await;
    let hello = upload(
        &ctl,
        &bob,
        &std::fs::read(guests::HELLO_AGENT).expect("guest"),
    )
    .await;
    let agent = create_agent(&ctl, &bob, "solver", &hello).await;
    top_up(&ctl, &op, &alice.tenant_id, FUNDS, EUR).await;
    Market {
        ctl,
        node: Some(node),
        op,
        alice,
        bob,
        verifier,
        agent,
    }
}
