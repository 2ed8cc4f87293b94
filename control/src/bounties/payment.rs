//! Bounties funded through Stripe (see `crate::payments` for the design).
//!
//! - [`fund_with_stripe`]: a draft gets a PaymentIntent (manual capture)
//!   and stays a draft, `payment.status = awaiting_payment`, until Stripe
//!   reports the card authorized.
//! - [`stripe_event`]: the authorization opens the bounty (the ledger books
//!   the amount in from `external` and escrows it); a cancellation at
//!   Stripe before that lets the business fund again, after it (the hold
//!   lapsed) refunds the bounty.
//! - [`after_approve_in`] / [`after_close_in`]: inside the approval's or
//!   the refund's transaction, the capture or the cancel goes to the
//!   `payment_ops` outbox, and a refund books the amount back out.

use axum::http::StatusCode;
use delta_http::ApiError;
use delta_money::{Transfer, TransferKind};
use serde_json::json;
use sqlx::{AnyConnection, Row as _};

use super::model::Bounty;
use super::store::{
    Actor, audit_in, db_err, escrow, get_in, in_write, money, settle, transfer_id, wrong_state,
};
use crate::money::{AccountKind, account_id, apply_transfers, ensure_account};
use crate::payments::ops::{OpKind, enqueue_in};
use crate::payments::stripe::{PaymentIntent, StripeError};
use crate::state::AppState;

/// The provider's name in `bounties.payment_provider`.
const STRIPE: &str = "stripe";

fn is_stripe(b: &Bounty) -> bool {
    b.payment.as_ref().is_some_and(|p| p.provider == STRIPE)
}

/// The authorized amount entering the system: `external` → the business.
fn card_in(b: &Bounty) -> Transfer {
    Transfer {
        id: transfer_id(&b.id, "card"),
        debit_account_id: account_id(AccountKind::External, None, &b.currency),
        credit_account_id: account_id(AccountKind::Tenant, Some(&b.tenant_id), &b.currency),
        amount: b.reward_minor.unsigned_abs(),
        ledger: b.currency.clone(),
        kind: TransferKind::SinglePhase,
    }
}

/// A refund leaving it again: the hold is released at Stripe.
fn card_out(b: &Bounty) -> Transfer {
    Transfer {
        id: transfer_id(&b.id, "card_release"),
        debit_account_id: account_id(AccountKind::Tenant, Some(&b.tenant_id), &b.currency),
        credit_account_id: account_id(AccountKind::External, None, &b.currency),
        ..card_in(b)
    }
}

fn provider_error(e: &StripeError) -> ApiError {
    match e {
        // Stripe refusing the request itself (e.g. an amount below its
        // minimum) is the bounty's problem, not a fault here.
        StripeError::Refused {
            status, message, ..
        } if *status < 500 && *status != 429 => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "payment_refused",
            format!("Stripe refused the payment: {message}"),
        ),
        StripeError::Key(_) => ApiError::internal(e.to_string()),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payment_provider_unavailable",
            format!("{e}; retry (the same request is idempotent)"),
        ),
    }
}

/// Start funding draft `id` through Stripe: the answer's `payment` holds
/// the PaymentIntent and its client secret. Funding again while the
/// payment is awaited answers the same PaymentIntent.
pub async fn fund_with_stripe(
    state: &AppState,
    actor: Actor<'_>,
    id: &str,
    now: i64,
) -> Result<Bounty, ApiError> {
    let Some(stripe) = state.stripe.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "payments.backend is stripe but [payments.stripe] could not be loaded",
        ));
    };
    let mut conn = state.db.pool().acquire().await.map_err(db_err)?;
    let row = sqlx::query(
        "SELECT payment_status, payment_attempts FROM bounties WHERE id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(actor.tenant_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let b = get_in(&mut conn, id).await?;
    drop(conn);
    let (Some(row), Some(b)) = (row, b) else {
        return Err(ApiError::not_found("bounty"));
    };
    if b.status != "draft" {
        return Err(wrong_state(
            Some(&b),
            actor.tenant_id,
            "not_draft",
            "a draft",
        ));
    }
    if b.deadline_ms <= now {
        return Err(ApiError::conflict(
            "deadline_passed",
            "the bounty's deadline has passed",
        ));
    }
    if b.deadline_ms > now.saturating_add(stripe.authorization_window_ms) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "deadline_beyond_authorization",
            format!(
                "with Stripe the deadline must be within {} days: a card authorization lapses \
                 after that, before the bounty could pay",
                stripe.authorization_window_ms / 86_400_000
            ),
        ));
    }
    let status: Option<String> = row.try_get("payment_status").map_err(db_err)?;
    let attempts: i64 = row.try_get("payment_attempts").map_err(db_err)?;
    // A canceled PaymentIntent is replaced by a new one (a new key); one
    // that is awaited is asked for again (the same key: Stripe answers it).
    let attempt = match status.as_deref() {
        None => 1,
        Some("awaiting_payment") => attempts,
        Some("canceled") => attempts + 1,
        Some(_) => {
            return Err(ApiError::conflict(
                "payment_in_progress",
                "this draft's previous payment is still being cancelled; retry shortly",
            ));
        }
    };
    let key = format!("delta:{id}:fund:{attempt}");
    let intent = stripe
        .client
        .create_escrow(b.reward_minor, &b.currency, id, &b.tenant_id, &key)
        .await
        .map_err(|e| provider_error(&e))?;
    let b = in_write(&state.db, async |c: &mut AnyConnection| {
        let claimed = sqlx::query(
            "UPDATE bounties SET payment_provider = 'stripe', payment_intent_id = $3, \
             payment_status = 'awaiting_payment', payment_attempts = $4, updated_at_ms = $5 \
             WHERE id = $1 AND tenant_id = $2 AND status = 'draft' \
             AND (payment_status IS NULL OR payment_status IN ('awaiting_payment', 'canceled'))",
        )
        .bind(id)
        .bind(actor.tenant_id)
        .bind(&intent.id)
        .bind(attempt)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        let b = get_in(c, id).await?;
        if claimed != 1 {
            return Err(wrong_state(b.as_ref(), actor.tenant_id, "not_draft", "a draft"));
        }
        audit_in(
            c,
            actor.tenant_id,
            Some(actor),
            "bounty_payment_started",
            json!({ "bounty_id": id, "payment_intent_id": intent.id, "amount_minor": intent.amount }),
        )
        .await?;
        b.ok_or_else(|| ApiError::internal("claimed bounty vanished"))
    })
    .await?;
    Ok(with_secret(b, intent.client_secret))
}

fn with_secret(mut b: Bounty, secret: Option<String>) -> Bounty {
    if let Some(p) = b.payment.as_mut() {
        p.client_secret = secret;
    }
    b
}

/// Act on Stripe event `event_id` about `intent`, once: `acted`,
/// `duplicate` or `ignored`.
pub async fn stripe_event(
    state: &AppState,
    event_id: &str,
    kind: &str,
    intent: &PaymentIntent,
    now: i64,
) -> Result<&'static str, ApiError> {
    in_write(&state.db, async |c: &mut AnyConnection| {
        let first = sqlx::query(
            "INSERT INTO stripe_events (id, event_type, payment_intent_id, received_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(event_id)
        .bind(kind)
        .bind(&intent.id)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        if first != 1 {
            return Ok("duplicate");
        }
        let bounty_id: Option<String> =
            sqlx::query_scalar("SELECT id FROM bounties WHERE payment_intent_id = $1")
                .bind(&intent.id)
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?;
        let Some(b) = (match bounty_id {
            Some(id) => get_in(c, &id).await?,
            None => None,
        }) else {
            return Ok("ignored");
        };
        let payment = b.payment.as_ref().map(|p| p.status.as_str()).unwrap_or("");
        match (kind, b.status.as_str(), payment) {
            ("payment_intent.amount_capturable_updated", "draft", "awaiting_payment") => {
                authorized(c, &b, intent, now).await?;
            }
            ("payment_intent.amount_capturable_updated", _, _) => {
                // Authorized after the bounty stopped wanting it.
                cancel_later(c, &b, &intent.id, "authorized_too_late", now).await?;
            }
            ("payment_intent.canceled", "draft", _) => {
                set_payment_status(c, &b.id, &intent.id, "canceled", now).await?;
            }
            ("payment_intent.canceled", "open", "authorized") => {
                lapsed(c, &b, now).await?;
            }
            ("payment_intent.canceled", _, "cancel_pending") => {
                set_payment_status(c, &b.id, &intent.id, "canceled", now).await?;
            }
            ("payment_intent.succeeded", _, "capture_pending") => {
                set_payment_status(c, &b.id, &intent.id, "captured", now).await?;
            }
            ("payment_intent.payment_failed", _, _) => {
                audit_in(
                    c,
                    &b.tenant_id,
                    None,
                    "bounty_payment_failed",
                    json!({ "bounty_id": b.id, "payment_intent_id": intent.id }),
                )
                .await?;
            }
            _ => return Ok("ignored"),
        }
        Ok("acted")
    })
    .await
}

async fn set_payment_status(
    c: &mut AnyConnection,
    bounty: &str,
    intent: &str,
    status: &str,
    now: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE bounties SET payment_status = $3, updated_at_ms = $4 \
         WHERE id = $1 AND payment_intent_id = $2",
    )
    .bind(bounty)
    .bind(intent)
    .bind(status)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn cancel_later(
    c: &mut AnyConnection,
    b: &Bounty,
    intent: &str,
    why: &str,
    now: i64,
) -> Result<(), ApiError> {
    enqueue_in(
        c,
        &b.id,
        &b.tenant_id,
        OpKind::Cancel,
        intent,
        b.reward_minor,
        now,
    )
    .await
    .map_err(db_err)?;
    set_payment_status(c, &b.id, intent, "cancel_pending", now).await?;
    audit_in(
        c,
        &b.tenant_id,
        None,
        "bounty_payment_released",
        json!({ "bounty_id": b.id, "payment_intent_id": intent, "reason": why }),
    )
    .await
}

/// The card is authorized: open the bounty, or release the hold when the
/// amount is not the reward or the deadline has passed meanwhile.
async fn authorized(
    c: &mut AnyConnection,
    b: &Bounty,
    intent: &PaymentIntent,
    now: i64,
) -> Result<(), ApiError> {
    if intent.amount_capturable < b.reward_minor
        || !intent.currency.eq_ignore_ascii_case(&b.currency)
    {
        return cancel_later(c, b, &intent.id, "amount_mismatch", now).await;
    }
    let opened = sqlx::query(
        "UPDATE bounties SET status = 'open', escrow_transfer_id = $2, \
         payment_status = 'authorized', updated_at_ms = $3 \
         WHERE id = $1 AND status = 'draft' AND payment_status = 'awaiting_payment' \
         AND deadline_ms > $3",
    )
    .bind(&b.id)
    .bind(transfer_id(&b.id, "escrow"))
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?
    .rows_affected();
    if opened != 1 {
        return cancel_later(c, b, &intent.id, "deadline_passed", now).await;
    }
    for kind in [AccountKind::Tenant, AccountKind::Escrow] {
        ensure_account(c, kind, Some(&b.tenant_id), &b.currency, now)
            .await
            .map_err(db_err)?;
    }
    ensure_account(c, AccountKind::External, None, &b.currency, now)
        .await
        .map_err(db_err)?;
    apply_transfers(c, &[card_in(b), escrow(b)], now)
        .await
        .map_err(money)?;
    super::events::publish(
        c,
        &b.tenant_id,
        &b.id,
        None,
        super::events::Kind::Funded,
        json!({ "bounty_id": b.id, "reward_minor": b.reward_minor, "currency": b.currency,
                "deadline_ms": b.deadline_ms }),
        now,
    )
    .await?;
    audit_in(
        c,
        &b.tenant_id,
        None,
        "bounty_funded",
        json!({ "bounty_id": b.id, "reward_minor": b.reward_minor, "currency": b.currency,
                "payment_intent_id": intent.id }),
    )
    .await
}

/// The authorization of an open bounty lapsed (or was cancelled at
/// Stripe): nothing can pay it any more, so it closes as a refund.
async fn lapsed(c: &mut AnyConnection, b: &Bounty, now: i64) -> Result<(), ApiError> {
    let closed = sqlx::query(
        "UPDATE bounties SET status = 'cancelled', payment_status = 'canceled', \
         updated_at_ms = $2 WHERE id = $1 AND status = 'open'",
    )
    .bind(&b.id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?
    .rows_affected();
    if closed != 1 {
        return Ok(());
    }
    apply_transfers(c, &[settle(b, false), card_out(b)], now)
        .await
        .map_err(money)?;
    sqlx::query(
        "UPDATE bounty_submissions SET status = 'rejected', updated_at_ms = $2 \
         WHERE bounty_id = $1 AND status IN ('pending_verification', 'verified', \
         'verification_failed')",
    )
    .bind(&b.id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    super::claims::expire_in(c, &b.id, now).await?;
    super::events::publish(
        c,
        &b.tenant_id,
        &b.id,
        None,
        super::events::Kind::Refunded,
        json!({ "bounty_id": b.id, "status": "cancelled", "refunded_minor": b.reward_minor,
                "currency": b.currency, "reason": "authorization_lapsed" }),
        now,
    )
    .await?;
    audit_in(
        c,
        &b.tenant_id,
        None,
        "bounty_authorization_lapsed",
        json!({ "bounty_id": b.id, "refunded_minor": b.reward_minor }),
    )
    .await
}

/// In an approval's transaction: the whole authorized reward is captured
/// (the ledger splits it between the agent owner and the platform).
pub(super) async fn after_approve_in(
    c: &mut AnyConnection,
    b: &Bounty,
    now: i64,
) -> Result<(), ApiError> {
    let Some(p) = b.payment.as_ref().filter(|_| is_stripe(b)) else {
        return Ok(());
    };
    enqueue_in(
        c,
        &b.id,
        &b.tenant_id,
        OpKind::Capture,
        &p.payment_intent_id,
        b.reward_minor,
        now,
    )
    .await
    .map_err(db_err)?;
    set_payment_status(c, &b.id, &p.payment_intent_id, "capture_pending", now).await
}

/// In a cancellation's or expiry's transaction (after the escrow was
/// voided when `funded`): the hold is released and, when it had been
/// booked in, the amount is booked back out.
pub(super) async fn after_close_in(
    c: &mut AnyConnection,
    b: &Bounty,
    funded: bool,
    now: i64,
) -> Result<(), ApiError> {
    let Some(p) = b.payment.as_ref().filter(|_| is_stripe(b)) else {
        return Ok(());
    };
    if funded {
        apply_transfers(c, &[card_out(b)], now)
            .await
            .map_err(money)?;
    } else if p.status != "awaiting_payment" {
        return Ok(());
    }
    cancel_later(c, b, &p.payment_intent_id.clone(), "bounty_closed", now).await
}
