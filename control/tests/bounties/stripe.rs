//! The `stripe` payments backend against the Stripe-compatible fake in
//! `test-servers` (real HTTP both ways, signed webhooks): funding waits for
//! the card authorization, approval captures once, cancellation and a
//! lapsed authorization release the hold, replayed and forged events
//! change nothing, and the ledger is conserved after every step.

use std::time::Duration;

use delta_test_servers::stripe::{Failure, StripeServer, sign};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::common::bounties::account;
use super::common::{Control, Dialect, eventually, write_secret};
use super::{EUR, FUNDS, Market, market, s};

const KEY: &str = "sk_test_delta_0123456789";
const WHSEC: &str = "whsec_test_0123456789abcdef";

/// A control plane whose payments go to a fresh fake, and the fake with
/// its webhook pointed back at the control plane.
async fn stripe_market(dialect: Dialect) -> (Market, StripeServer) {
    let fake = StripeServer::start(KEY).await.expect("fake stripe");
    let secrets = tempfile::tempdir().expect("tempdir");
    write_secret(&secrets.path().join("key"), KEY);
    write_secret(&secrets.path().join("whsec"), WHSEC);
    let api_base = fake.base_url();
    let dir = secrets.path().to_owned();
    let ctl = Control::start_with(dialect, move |c| {
        c.payments.backend = delta_control::payments::PaymentsBackend::Stripe;
        c.payments.stripe = Some(delta_control::payments::StripeConfig {
            api_base,
            secret_key_file: dir.join("key"),
            webhook_secret_file: dir.join("whsec"),
            authorization_window_secs: 7 * 24 * 3600,
        });
    })
    .await;
    // The files were read at start.
    drop(secrets);
    fake.set_webhook(&ctl.url("/v1/payments/stripe/webhook"), WHSEC);
    (market(ctl).await, fake)
}

impl Market {
    /// Fund draft `id` through Stripe: the PaymentIntent's id.
    async fn fund_by_card(&self, id: &str) -> String {
        let (status, b) = self
            .call(
                &self.alice,
                Method::POST,
                &format!("/v1/bounties/{id}/fund"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "draft", "{b}");
        assert_eq!(b["payment"]["status"], "awaiting_payment", "{b}");
        assert!(
            s(&b["payment"]["client_secret"]).contains("_secret_"),
            "{b}"
        );
        s(&b["payment"]["payment_intent_id"])
    }

    async fn until(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(what, Duration::from_secs(20), || async {
            let b = self.bounty(id).await;
            check(&b).then_some(b)
        })
        .await
    }
}

async fn post_event(m: &Market, body: &[u8], signature: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(m.ctl.url("/v1/payments/stripe/webhook"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("webhook");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn now_secs() -> i64 {
    delta_control::db::now_ms() / 1000
}

macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)(Dialect::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)(Dialect::Postgres).await;
            }
        }
    };
}

on_both!(
    the_card_authorization_opens_and_approval_captures_once,
    |dialect| async move {
        let (m, fake) = stripe_market(dialect).await;
        let id = s(&m.draft(1_000, 600_000, json!({})).await["id"]);
        let pi = m.fund_by_card(&id).await;
        let create = &fake.requests()[0];
        assert_eq!(create.path, "/v1/payment_intents");
        assert_eq!(create.field("amount"), Some("1000"));
        assert_eq!(create.field("currency"), Some("eur"));
        assert_eq!(create.field("capture_method"), Some("manual"));
        assert_eq!(create.field("metadata[bounty_id]"), Some(id.as_str()));
        assert!(create.idempotency_key.is_some());
        // Asking again answers the same PaymentIntent (Stripe replays it).
        assert_eq!(m.fund_by_card(&id).await, pi);
        assert!(fake.requests()[1].replayed);
        // Nothing is escrowed before the card is authorized.
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );

        fake.confirm(&pi, "pm_card_visa").expect("confirm");
        let b = m
            .until(&id, "the authorization", |b| b["status"] == "open")
            .await;
        assert_eq!(b["payment"]["status"], "authorized", "{b}");
        assert!(b["payment"].get("client_secret").is_none(), "{b}");
        // The card's money came in and is held.
        assert_eq!(
            account(&m.ctl, &m.alice, "escrow", EUR).await.0,
            0,
            "pending, not posted"
        );
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS + 1_000, FUNDS, 1_000)
        );
        m.conserved("the authorization").await;

        // The same event again (a redelivery, or a replay within the
        // tolerance) changes nothing.
        let first = fake
            .deliveries()
            .into_iter()
            .find(|d| d.event_type == "payment_intent.amount_capturable_updated")
            .expect("delivered");
        let (status, receipt) = post_event(&m, &first.body, &first.signature).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["outcome"], "duplicate");
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS + 1_000, FUNDS, 1_000)
        );

        let (status, sub) = m.submit(&id, json!({ "answer": 42 })).await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        let approve = format!("/v1/submissions/{}/approve", s(&sub["id"]));
        let (status, done) = m.call(&m.alice, Method::POST, &approve, None).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        let (status, _) = m.call(&m.alice, Method::POST, &approve, None).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let b = m
            .until(&id, "the capture", |b| b["payment"]["status"] == "captured")
            .await;
        assert_eq!(b["status"], "completed");
        let intent = fake.intent(&pi).expect("intent");
        assert_eq!(intent["status"], "succeeded");
        assert_eq!(intent["amount_received"], 1_000);
        let captures = fake
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/capture"))
            .count();
        assert_eq!(captures, 1, "one capture for two approvals");
        assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 850);
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );
        m.conserved("the capture").await;
    }
);

on_both!(
    cancelling_releases_the_hold_and_books_it_out,
    |dialect| async move {
        let (m, fake) = stripe_market(dialect).await;
        let id = s(&m.draft(1_500, 600_000, json!({})).await["id"]);
        let pi = m.fund_by_card(&id).await;
        fake.confirm(&pi, "pm_card_visa").expect("confirm");
        m.until(&id, "the authorization", |b| b["status"] == "open")
            .await;
        let (status, b) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{id}/cancel"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "cancelled");
        m.until(&id, "the release", |b| b["payment"]["status"] == "canceled")
            .await;
        assert_eq!(fake.intent(&pi).expect("intent")["status"], "canceled");
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );
        assert_eq!(account(&m.ctl, &m.alice, "escrow", EUR).await.0, 0);
        m.conserved("the release").await;

        // A draft whose payment is still awaited: cancelling cancels the
        // PaymentIntent too, and a late authorization is released.
        let id = s(&m.draft(2_000, 600_000, json!({})).await["id"]);
        let pi = m.fund_by_card(&id).await;
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{id}/cancel"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        m.until(&id, "the draft's release", |b| {
            b["payment"]["status"] == "canceled"
        })
        .await;
        assert!(
            fake.confirm(&pi, "pm_card_visa").is_err(),
            "canceled at Stripe"
        );
        m.conserved("a cancelled draft").await;
    }
);

on_both!(
    a_lapsed_authorization_refunds_the_bounty,
    |dialect| async move {
        let (m, fake) = stripe_market(dialect).await;
        let id = s(&m.draft(1_000, 600_000, json!({})).await["id"]);
        let pi = m.fund_by_card(&id).await;
        fake.confirm(&pi, "pm_card_visa").expect("confirm");
        m.until(&id, "the authorization", |b| b["status"] == "open")
            .await;
        // Eight days on at Stripe: the hold is gone.
        fake.advance(8 * 24 * 3600);
        let b = m
            .until(&id, "the lapse", |b| b["status"] == "cancelled")
            .await;
        assert_eq!(b["payment"]["status"], "canceled", "{b}");
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );
        m.conserved("the lapse").await;
    }
);

on_both!(
    bad_requests_and_forged_events_change_nothing,
    |dialect| async move {
        let (m, fake) = stripe_market(dialect).await;
        // A deadline past the authorization window: refused before Stripe.
        let far = s(&m.draft(1_000, 8 * 24 * 3_600_000, json!({})).await["id"]);
        let (status, e) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{far}/fund"),
                None,
            )
            .await;
        assert_eq!(
            (status, s(&e["code"])),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "deadline_beyond_authorization".into()
            ),
            "{e}"
        );
        assert!(fake.requests().is_empty());
        // Below Stripe's minimum: Stripe's refusal, as bad input.
        let tiny = s(&m.draft(10, 600_000, json!({})).await["id"]);
        let (status, e) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{tiny}/fund"),
                None,
            )
            .await;
        assert_eq!(
            (status, s(&e["code"])),
            (StatusCode::UNPROCESSABLE_ENTITY, "payment_refused".into()),
            "{e}"
        );

        // A declined card leaves the draft waiting.
        let id = s(&m.draft(1_000, 600_000, json!({})).await["id"]);
        let pi = m.fund_by_card(&id).await;
        assert!(fake.confirm(&pi, "pm_card_chargeDeclined").is_err());
        // Forged: a made-up authorization signed with the wrong secret, one
        // signed too long ago, and one without a signature.
        let forged = json!({
            "id": "evt_forged", "object": "event",
            "type": "payment_intent.amount_capturable_updated",
            "data": { "object": { "id": pi, "status": "requires_capture", "amount": 1000,
                                   "amount_capturable": 1000, "currency": "eur" } },
        })
        .to_string();
        let t = now_secs();
        let wrong = format!("t={t},v1={}", sign("whsec_wrong", t, forged.as_bytes()));
        let (status, e) = post_event(&m, forged.as_bytes(), &wrong).await;
        assert_eq!(
            (status, s(&e["code"])),
            (StatusCode::BAD_REQUEST, "signature_invalid".into())
        );
        let old = t - 600;
        let stale = format!("t={old},v1={}", sign(WHSEC, old, forged.as_bytes()));
        let (status, e) = post_event(&m, forged.as_bytes(), &stale).await;
        assert_eq!(
            (status, s(&e["code"])),
            (StatusCode::BAD_REQUEST, "signature_expired".into())
        );
        let (status, e) = post_event(&m, forged.as_bytes(), "").await;
        assert_eq!(
            (status, s(&e["code"])),
            (StatusCode::BAD_REQUEST, "signature_malformed".into())
        );
        // Well signed but not an event.
        let junk = b"{\"hello\": 1}";
        let good = format!("t={t},v1={}", sign(WHSEC, t, junk));
        let (status, e) = post_event(&m, junk, &good).await;
        assert_eq!(
            (status, s(&e["code"])),
            (StatusCode::BAD_REQUEST, "invalid_event".into())
        );
        let b = m.bounty(&id).await;
        assert_eq!(b["status"], "draft", "{b}");
        assert_eq!(b["payment"]["status"], "awaiting_payment", "{b}");
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS, 0)
        );
        m.conserved("forged events").await;
    }
);

/// Without `[payments.stripe]` the endpoint says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_not_configured_without_stripe() {
    let ctl = Control::start(Dialect::Sqlite).await;
    let (status, e) = ctl
        .call(
            Method::POST,
            "/v1/payments/stripe/webhook",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, s(&e["code"])),
        (StatusCode::NOT_FOUND, "not_configured".into()),
        "{e}"
    );
}

/// An open card-funded bounty of alice's with a passing submission of
/// bob's, approved while the fake fails its next requests as `failures`;
/// the bounty once its payment reached `until`, and the capture requests.
async fn approve_through(
    dialect: Dialect,
    failures: &[Failure],
    until: &str,
) -> (
    Market,
    StripeServer,
    Value,
    Vec<delta_test_servers::stripe::StripeRequest>,
) {
    let (m, fake) = stripe_market(dialect).await;
    let id = s(&m.draft(1_000, 600_000, json!({})).await["id"]);
    let pi = m.fund_by_card(&id).await;
    fake.confirm(&pi, "pm_card_visa").expect("confirm");
    m.until(&id, "the authorization", |b| b["status"] == "open")
        .await;
    let (status, sub) = m.submit(&id, json!({ "answer": 42 })).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    for f in failures {
        fake.fail_with(*f);
    }
    let approve = format!("/v1/submissions/{}/approve", s(&sub["id"]));
    let (status, done) = m.call(&m.alice, Method::POST, &approve, None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let b = m
        .until(&id, until, |b| b["payment"]["status"] == until)
        .await;
    let captures = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/capture"))
        .collect();
    (m, fake, b, captures)
}

on_both!(
    a_capture_retried_after_a_5xx_and_a_lost_answer_charges_once,
    |dialect| async move {
        let (m, fake, b, captures) = approve_through(
            dialect,
            &[Failure::Status(503), Failure::LostAnswer],
            "captured",
        )
        .await;
        assert_eq!(b["status"], "completed");
        // A 503, then a capture done whose answer was lost: Stripe's
        // `payment_intent.succeeded` may settle the payment before the
        // outbox's next try, which (if made) is Stripe's replay.
        let statuses: Vec<u16> = captures.iter().map(|r| r.status).collect();
        assert_eq!(statuses[..2], [503, 500], "{captures:?}");
        assert!(
            captures[2..].iter().all(|r| r.replayed && r.status == 200),
            "{captures:?}"
        );
        let key = captures[0].idempotency_key.clone();
        assert!(key.is_some());
        assert!(captures.iter().all(|r| r.idempotency_key == key));
        let pi = s(&b["payment"]["payment_intent_id"]);
        let intent = fake.intent(&pi).expect("intent");
        assert_eq!(intent["status"], "succeeded", "{intent}");
        assert_eq!(intent["amount_received"], 1_000, "charged once");
        assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 850);
        m.conserved("a retried capture").await;
    }
);

on_both!(
    a_capture_refused_for_good_is_capture_failed,
    |dialect| async move {
        let (m, fake, b, captures) =
            approve_through(dialect, &[Failure::Status(400)], "capture_failed").await;
        // Refused for good: not retried, and nothing captured at Stripe.
        assert_eq!(captures.len(), 1, "{captures:?}");
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let again = fake
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/capture"))
            .count();
        assert_eq!(again, 1, "a refusal is not retried");
        let pi = s(&b["payment"]["payment_intent_id"]);
        let intent = fake.intent(&pi).expect("intent");
        assert_eq!(intent["status"], "requires_capture", "{intent}");
        assert_eq!(intent["amount_received"], 0);
        m.conserved("a refused capture").await;
    }
);
