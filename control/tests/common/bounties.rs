//! Helpers of the bounty and ledger tests: components, agents on a node,
//! top-ups and the conservation check.

use std::time::Duration;

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
    let body = json!({ "name": name, "kind": "main", "component": sha256 });
    let agent = eventually(
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
    .await;
    agent["id"].as_str().expect("agent id").to_owned()
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
