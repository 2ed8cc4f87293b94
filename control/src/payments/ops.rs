//! The outbox of calls to the payments provider (`payment_ops`).
//!
//! A bounty operation that settles an escrow held at Stripe inserts a row
//! here in its own transaction ([`enqueue_in`]); [`run_due`] (a sweep step,
//! one replica at a time) makes the call after the commit. The row's id is
//! the `Idempotency-Key`, so every retry is the same request to Stripe.
//! Retries back off 1, 2, 4 ... seconds up to an hour; a refusal that
//! retrying cannot change marks the row `failed`, the bounty's payment
//! `capture_failed` / `cancel_failed`, writes an audit entry and logs an
//! error for the operator.

use delta_http::ApiError;
use sqlx::{AnyConnection, Row as _};

use super::stripe::{PaymentIntent, StripeError};
use crate::audit;
use crate::state::AppState;

/// What a row asks of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Capture the authorized amount.
    Capture,
    /// Cancel the PaymentIntent (release the authorization).
    Cancel,
}

impl OpKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::Cancel => "cancel",
        }
    }
}

/// Longest wait between tries.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// How long a claimed call may take before another pass may try again.
const CLAIM_MS: i64 = 60_000;

/// Decide a call inside the caller's transaction; deciding the same call
/// again (same bounty, kind and PaymentIntent) is a no-op.
pub async fn enqueue_in(
    c: &mut AnyConnection,
    bounty_id: &str,
    tenant_id: &str,
    kind: OpKind,
    payment_intent_id: &str,
    amount_minor: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let id = format!("delta:{bounty_id}:{}:{payment_intent_id}", kind.as_str());
    sqlx::query(
        "INSERT INTO payment_ops (id, bounty_id, tenant_id, kind, payment_intent_id, \
         amount_minor, state, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(bounty_id)
    .bind(tenant_id)
    .bind(kind.as_str())
    .bind(payment_intent_id)
    .bind(amount_minor)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

struct Due {
    id: String,
    bounty_id: String,
    tenant_id: String,
    kind: String,
    intent: String,
    amount: i64,
    attempts: i64,
}

/// Make the due calls; how many finished (done or failed for good).
pub async fn run_due(state: &AppState, now: i64) -> Result<u64, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, bounty_id, tenant_id, kind, payment_intent_id, amount_minor, attempts \
         FROM payment_ops WHERE state = 'pending' AND next_attempt_at_ms <= $1 \
         ORDER BY next_attempt_at_ms LIMIT 20",
    )
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    let mut finished = 0;
    for row in rows {
        let due = Due {
            id: row.try_get("id")?,
            bounty_id: row.try_get("bounty_id")?,
            tenant_id: row.try_get("tenant_id")?,
            kind: row.try_get("kind")?,
            intent: row.try_get("payment_intent_id")?,
            amount: row.try_get("amount_minor")?,
            attempts: row.try_get("attempts")?,
        };
        let claimed = sqlx::query(
            "UPDATE payment_ops SET attempts = attempts + 1, next_attempt_at_ms = $2, \
             updated_at_ms = $3 WHERE id = $1 AND state = 'pending' AND next_attempt_at_ms <= $3",
        )
        .bind(&due.id)
        .bind(now.saturating_add(CLAIM_MS))
        .bind(now)
        .execute(state.db.pool())
        .await?
        .rows_affected();
        if claimed == 1 && run_one(state, &due, now).await? {
            finished += 1;
        }
    }
    Ok(finished)
}

/// One call; whether it finished.
async fn run_one(state: &AppState, due: &Due, now: i64) -> Result<bool, sqlx::Error> {
    let Some(stripe) = state.stripe.as_ref() else {
        let why = "payments.stripe is not configured, but a bounty funded through Stripe \
                   needs a call: configure [payments.stripe]";
        tracing::error!(op = %due.id, "{why}");
        retry_later(state, due, why, now).await?;
        return Ok(false);
    };
    let capture = due.kind == "capture";
    let result: Result<PaymentIntent, StripeError> = if capture {
        stripe
            .client
            .capture(&due.intent, due.amount, &due.id)
            .await
    } else {
        stripe.client.cancel(&due.intent, &due.id).await
    };
    let outcome = match result {
        Ok(_) => Ok(()),
        // Canceled already (the authorization lapsed, or a first try whose
        // answer was lost): what a cancel wants holds.
        Err(StripeError::Refused {
            intent_status: Some(s),
            ..
        }) if !capture && s == "canceled" => Ok(()),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {
            let status = if capture { "captured" } else { "canceled" };
            finish(state, due, "done", None, status, now).await?;
            tracing::info!(op = %due.id, "payment call done");
            Ok(true)
        }
        Err(e) if e.retryable() => {
            tracing::warn!(op = %due.id, error = %e, "payment call failed; retrying");
            retry_later(state, due, &e.to_string(), now).await?;
            Ok(false)
        }
        Err(e) => {
            tracing::error!(op = %due.id, bounty = %due.bounty_id, error = %e,
                "payment call refused for good: the operator must settle it at the provider");
            let status = if capture {
                "capture_failed"
            } else {
                "cancel_failed"
            };
            finish(state, due, "failed", Some(&e.to_string()), status, now).await?;
            Ok(true)
        }
    }
}

async fn retry_later(state: &AppState, due: &Due, why: &str, now: i64) -> Result<(), sqlx::Error> {
    let backoff = 1_000_i64
        .saturating_mul(1 << due.attempts.clamp(0, 20))
        .min(MAX_BACKOFF_MS);
    sqlx::query(
        "UPDATE payment_ops SET last_error = $2, next_attempt_at_ms = $3, updated_at_ms = $4 \
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(&due.id)
    .bind(why)
    .bind(now.saturating_add(backoff))
    .bind(now)
    .execute(state.db.pool())
    .await?;
    Ok(())
}

async fn finish(
    state: &AppState,
    due: &Due,
    op_state: &str,
    error: Option<&str>,
    payment_status: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE payment_ops SET state = $2, last_error = $3, updated_at_ms = $4 WHERE id = $1",
    )
    .bind(&due.id)
    .bind(op_state)
    .bind(error)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE bounties SET payment_status = $3, updated_at_ms = $4 \
         WHERE id = $1 AND payment_intent_id = $2",
    )
    .bind(&due.bounty_id)
    .bind(&due.intent)
    .bind(payment_status)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let action = if op_state == "done" {
        format!("payment_{}", due.kind)
    } else {
        format!("payment_{}_failed", due.kind)
    };
    audit::record_in(
        &mut tx,
        Some(&due.tenant_id),
        None,
        &action,
        serde_json::json!({ "bounty_id": due.bounty_id, "payment_intent_id": due.intent,
                            "amount_minor": due.amount, "error": error }),
        None,
    )
    .await
    .map_err(|e: ApiError| sqlx::Error::Protocol(e.message))?;
    tx.commit().await
}
