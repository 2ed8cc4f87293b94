//! The bounty operations, callable without HTTP (the handlers, the
//! verification and the sweep call them): each state change is one database
//! transaction that first claims the bounty's row with a conditional
//! `UPDATE ... WHERE status = ...` (on PostgreSQL its row lock queues a
//! racing approval, cancellation or expiry, which then finds the status
//! changed; on SQLite the writer turn serialises them) and moves the money
//! in the same transaction (`crate::money`), whose pending-transfer rules
//! are the second guard: an escrow is posted or voided once.

use axum::http::StatusCode;
use delta_http::ApiError;
use delta_money::{Transfer, TransferKind};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row as _};

use crate::audit;
use crate::db::{Db, new_id};
use crate::money::{AccountKind, MoneyError, Write, account_id, apply_transfers, ensure_account};
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

use super::events::{Kind, publish};
use super::model::*;

/// Who acted (for the audit log); `None` for the platform (sweep, `auto`).
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The actor's tenant.
    pub tenant_id: &'a str,
    /// The actor.
    pub user_id: &'a str,
    /// The request.
    pub request_id: &'a str,
}

pub(super) fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::internal(e)
}

/// The ledger's refusal as an answer (see `crate::money::money_error`).
pub(super) fn money(e: MoneyError) -> ApiError {
    crate::money::money_error(e)
}

/// Ids of a bounty's transfers: fixed per bounty, so a retried step is
/// answered by the ledger as the same transfer.
pub(super) fn transfer_id(bounty: &str, step: &str) -> String {
    format!("bounty:{bounty}:{step}")
}

/// The escrow: a pending transfer from the business's balance to its escrow.
pub(super) fn escrow(b: &Bounty) -> Transfer {
    Transfer {
        id: transfer_id(&b.id, "escrow"),
        debit_account_id: account_id(AccountKind::Tenant, Some(&b.tenant_id), &b.currency),
        credit_account_id: account_id(AccountKind::Escrow, Some(&b.tenant_id), &b.currency),
        amount: b.reward_minor.unsigned_abs(),
        ledger: b.currency.clone(),
        kind: TransferKind::Pending,
    }
}

/// The escrow's settlement: `post` (approval) or void (refund).
pub(super) fn settle(b: &Bounty, post: bool) -> Transfer {
    let e = escrow(b);
    Transfer {
        id: transfer_id(&b.id, if post { "release" } else { "refund" }),
        kind: if post {
            TransferKind::PostPending {
                pending_id: e.id.clone(),
            }
        } else {
            TransferKind::VoidPending {
                pending_id: e.id.clone(),
            }
        },
        ..e
    }
}

pub(super) async fn audit_in(
    conn: &mut AnyConnection,
    tenant: &str,
    actor: Option<Actor<'_>>,
    action: &str,
    detail: Value,
) -> Result<(), ApiError> {
    audit::record_in(
        conn,
        Some(tenant),
        actor.map(|a| a.user_id),
        action,
        detail,
        actor.map(|a| a.request_id),
    )
    .await
}

// ---- reads -------------------------------------------------------------------

/// Bounty `id` as `tenant` may see it: its own, or another tenant's once
/// funded (drafts are private); otherwise 404.
pub async fn get_visible(db: &Db, tenant: &str, id: &str) -> Result<Bounty, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {BOUNTY_COLUMNS} FROM bounties WHERE id = $1 \
         AND (tenant_id = $2 OR status <> 'draft')"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    row.as_ref()
        .map(bounty_from_row)
        .transpose()?
        .ok_or_else(|| ApiError::not_found("bounty"))
}

pub(super) async fn get_in(conn: &mut AnyConnection, id: &str) -> Result<Option<Bounty>, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {BOUNTY_COLUMNS} FROM bounties WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?;
    row.as_ref().map(bounty_from_row).transpose()
}

/// Filters of the bounty list.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only rewards of at least this many minor units.
    pub min_reward: Option<i64>,
}

/// The bounties `tenant` may see (its own, and every funded one), oldest
/// first.
pub async fn list(
    db: &Db,
    tenant: &str,
    filter: &ListFilter,
    page: &PageQuery,
) -> Result<Page<Bounty>, ApiError> {
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(&format!(
        "SELECT {BOUNTY_COLUMNS} FROM bounties \
         WHERE (tenant_id = $1 OR status <> 'draft') \
         AND ($2 = '' OR status = $2) AND reward_minor >= $3 \
         AND (created_at_ms > $4 OR (created_at_ms = $4 AND id > $5)) \
         ORDER BY created_at_ms, id LIMIT $6"
    ))
    .bind(tenant)
    .bind(filter.status.clone().unwrap_or_default())
    .bind(filter.min_reward.unwrap_or(i64::MIN))
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    let items = rows
        .iter()
        .map(bounty_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, limit, |b| {
        (b.created_at_ms, b.id.clone())
    }))
}

/// Submission `id` as `tenant` may see it: the submitter's tenant, or the
/// bounty's business; otherwise 404.
pub async fn get_submission(db: &Db, tenant: &str, id: &str) -> Result<Submission, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM bounty_submissions s WHERE s.id = $1 \
         AND (s.tenant_id = $2 OR EXISTS (SELECT 1 FROM bounties b \
              WHERE b.id = s.bounty_id AND b.tenant_id = $2))"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    row.as_ref()
        .map(submission_from_row)
        .transpose()?
        .ok_or_else(|| ApiError::not_found("submission"))
}

/// A bounty's submissions as `tenant` may see them: all of them for the
/// business, its own for anyone else.
pub async fn list_submissions(
    db: &Db,
    tenant: &str,
    bounty: &Bounty,
    page: &PageQuery,
) -> Result<Page<Submission>, ApiError> {
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let mine_only = bounty.tenant_id != tenant;
    let rows = sqlx::query(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM bounty_submissions WHERE bounty_id = $1 \
         AND ($2 = 0 OR tenant_id = $3) \
         AND (created_at_ms > $4 OR (created_at_ms = $4 AND id > $5)) \
         ORDER BY created_at_ms, id LIMIT $6"
    ))
    .bind(&bounty.id)
    .bind(i64::from(mine_only))
    .bind(tenant)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    let items = rows
        .iter()
        .map(submission_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, limit, |s| {
        (s.created_at_ms, s.id.clone())
    }))
}

// ---- drafts --------------------------------------------------------------------

/// The world of the tenant's uploaded component `sha256` (`None`: no such
/// upload). A component no node has seen yet is prechecked here (the world
/// is derived from the bytes alone, so every tenant's row learns it).
async fn component_world(
    state: &AppState,
    tenant: &str,
    sha256: &str,
) -> Result<Option<String>, ApiError> {
    let world: Option<String> =
        sqlx::query_scalar("SELECT world FROM components WHERE tenant_id = $1 AND sha256 = $2")
            .bind(tenant)
            .bind(sha256)
            .fetch_optional(state.db.pool())
            .await
            .map_err(db_err)?;
    let Some(world) = world else { return Ok(None) };
    if world != crate::components::UNCHECKED {
        return Ok(Some(world));
    }
    let path = state.components_dir.join(format!("{sha256}.wasm"));
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    let shape = tokio::task::spawn_blocking(move || {
        delta_precheck::precheck(
            &bytes,
            &delta_precheck::PrecheckLimits::default(),
            &delta_precheck::SlotLimits::default(),
        )
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_verifier",
            e.to_string(),
        )
    })?;
    let Some(world) = shape.world.map(|w| w.name().to_owned()) else {
        return Ok(Some(crate::components::UNCHECKED.to_owned()));
    };
    sqlx::query("UPDATE components SET world = $1 WHERE sha256 = $2 AND world = $3")
        .bind(&world)
        .bind(sha256)
        .bind(crate::components::UNCHECKED)
        .execute(state.db.pool())
        .await
        .map_err(db_err)?;
    Ok(Some(world))
}

/// Create a draft.
pub async fn create(
    state: &AppState,
    actor: Actor<'_>,
    body: NewBounty,
    now: i64,
) -> Result<Bounty, ApiError> {
    validate(&body, now)?;
    match component_world(state, actor.tenant_id, &body.verifier).await? {
        None => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_verifier",
                "verifier is not a component uploaded by this tenant",
            ));
        }
        Some(w) if w != "verifier" => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_verifier",
                format!(
                    "component {} is a {w} component, not a verifier",
                    body.verifier
                ),
            ));
        }
        Some(_) => {}
    }
    let id = new_id(BOUNTY_PREFIX);
    let mut tx = state.db.begin().await.map_err(db_err)?;
    sqlx::query(
        "INSERT INTO bounties (id, tenant_id, created_by, title, description, spec, reward_minor, \
         currency, deadline_ms, verifier, verifier_limits, policy, status, escrow_transfer_id, \
         approved_submission_id, max_claims, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'draft', NULL, NULL, $14, $13, $13)",
    )
    .bind(&id)
    .bind(actor.tenant_id)
    .bind(actor.user_id)
    .bind(&body.title)
    .bind(&body.description)
    .bind(body.spec.to_string())
    .bind(body.reward_minor)
    .bind(&body.currency)
    .bind(body.deadline_ms)
    .bind(&body.verifier)
    .bind(serde_json::to_string(&body.verifier_limits).map_err(ApiError::internal)?)
    .bind(body.policy.as_str())
    .bind(now)
    .bind(body.max_claims.unwrap_or(DEFAULT_MAX_CLAIMS))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    audit_in(
        &mut tx,
        actor.tenant_id,
        Some(actor),
        "bounty_created",
        json!({ "bounty_id": id, "reward_minor": body.reward_minor, "currency": body.currency }),
    )
    .await?;
    tx.commit().await.map_err(db_err)?;
    get_visible(&state.db, actor.tenant_id, &id).await
}

// ---- state changes -------------------------------------------------------------

/// Why a bounty was not in the state an operation needs: 404 for another
/// tenant's (or no) bounty, 409 with the status otherwise.
pub(super) fn wrong_state(
    b: Option<&Bounty>,
    tenant: &str,
    code: &'static str,
    wanted: &str,
) -> ApiError {
    match b {
        Some(b) if b.tenant_id == tenant => ApiError::conflict(
            code,
            format!("the bounty is {}; this needs it {wanted}", b.status),
        )
        .details(json!({ "status": b.status })),
        _ => ApiError::not_found("bounty"),
    }
}

/// Run `body` in a ledger write transaction: commit on success, roll back
/// on error.
pub(super) async fn in_write<T>(
    db: &Db,
    body: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut w = Write::begin(db).await.map_err(db_err)?;
    match body(w.conn()).await {
        Ok(v) => {
            w.commit().await.map_err(db_err)?;
            Ok(v)
        }
        Err(e) => {
            w.abandon().await;
            Err(e)
        }
    }
}

/// Fund a draft: the reward moves from the business's balance into escrow
/// (a pending transfer) and the bounty opens. Insufficient funds: 409
/// `insufficient_funds`, nothing changed.
pub async fn fund(
    state: &AppState,
    actor: Actor<'_>,
    id: &str,
    now: i64,
) -> Result<Bounty, ApiError> {
    in_write(&state.db, async |c: &mut AnyConnection| {
        // The claim first: a write (SQLite's lock) and the row lock that
        // queues a concurrent funding.
        let claimed = sqlx::query(
            "UPDATE bounties SET status = 'open', escrow_transfer_id = $3, updated_at_ms = $4 \
             WHERE id = $1 AND tenant_id = $2 AND status = 'draft' AND deadline_ms > $4",
        )
        .bind(id)
        .bind(actor.tenant_id)
        .bind(transfer_id(id, "escrow"))
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        let b = get_in(c, id).await?;
        if claimed != 1 {
            if let Some(b) = &b
                && b.tenant_id == actor.tenant_id
                && b.status == "draft"
            {
                return Err(ApiError::conflict(
                    "deadline_passed",
                    "the bounty's deadline has passed",
                ));
            }
            return Err(wrong_state(
                b.as_ref(),
                actor.tenant_id,
                "not_draft",
                "a draft",
            ));
        }
        let b = b.ok_or_else(|| ApiError::internal("claimed bounty vanished"))?;
        ensure_account(c, AccountKind::Tenant, Some(&b.tenant_id), &b.currency, now)
            .await
            .map_err(db_err)?;
        ensure_account(c, AccountKind::Escrow, Some(&b.tenant_id), &b.currency, now)
            .await
            .map_err(db_err)?;
        apply_transfers(c, &[escrow(&b)], now)
            .await
            .map_err(money)?;
        publish(
            c,
            &b.tenant_id,
            &b.id,
            None,
            Kind::Funded,
            json!({ "bounty_id": b.id, "reward_minor": b.reward_minor, "currency": b.currency,
                    "deadline_ms": b.deadline_ms }),
            now,
        )
        .await?;
        audit_in(
            c,
            &b.tenant_id,
            Some(actor),
            "bounty_funded",
            json!({ "bounty_id": b.id, "reward_minor": b.reward_minor, "currency": b.currency }),
        )
        .await?;
        Ok(b)
    })
    .await
}

/// Close an open (or draft) bounty without a payout: `cancelled` by the
/// business or `expired` by the sweep (`actor` `None`); the escrow is voided
/// (a full refund) and the remaining submissions are rejected.
async fn close(
    db: &Db,
    actor: Option<Actor<'_>>,
    id: &str,
    to: &'static str,
    now: i64,
) -> Result<Bounty, ApiError> {
    in_write(db, async |c: &mut AnyConnection| {
        let claimed = match actor {
            Some(a) => sqlx::query(
                "UPDATE bounties SET status = $3, updated_at_ms = $4 \
                 WHERE id = $1 AND tenant_id = $2 AND status IN ('draft', 'open')",
            )
            .bind(id)
            .bind(a.tenant_id),
            None => sqlx::query(
                "UPDATE bounties SET status = $3, updated_at_ms = $4 \
                 WHERE id = $1 AND $2 = '' AND status = 'open' AND deadline_ms <= $4",
            )
            .bind(id)
            .bind(""),
        }
        .bind(to)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        let b = get_in(c, id).await?;
        let tenant = actor.map(|a| a.tenant_id).unwrap_or_default();
        if claimed != 1 {
            return Err(wrong_state(
                b.as_ref(),
                tenant,
                "not_cancellable",
                "a draft or open",
            ));
        }
        let b = b.ok_or_else(|| ApiError::internal("claimed bounty vanished"))?;
        let funded: Option<String> =
            sqlx::query_scalar("SELECT escrow_transfer_id FROM bounties WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *c)
                .await
                .map_err(db_err)?;
        if funded.is_some() {
            apply_transfers(c, &[settle(&b, false)], now)
                .await
                .map_err(money)?;
            publish(
                c,
                &b.tenant_id,
                &b.id,
                None,
                Kind::Refunded,
                json!({ "bounty_id": b.id, "status": to, "refunded_minor": b.reward_minor,
                        "currency": b.currency }),
                now,
            )
            .await?;
        }
        super::payment::after_close_in(c, &b, funded.is_some(), now).await?;
        super::claims::expire_in(c, id, now).await?;
        sqlx::query(
            "UPDATE bounty_submissions SET status = 'rejected', updated_at_ms = $2 \
             WHERE bounty_id = $1 AND status IN ('pending_verification', 'verified', \
             'verification_failed')",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
        let action = if to == "expired" {
            "bounty_expired"
        } else {
            "bounty_cancelled"
        };
        let refunded = if funded.is_some() { b.reward_minor } else { 0 };
        audit_in(
            c,
            &b.tenant_id,
            actor,
            action,
            json!({ "bounty_id": b.id, "refunded_minor": refunded }),
        )
        .await?;
        Ok(b)
    })
    .await
}

/// Cancel before approval: a draft closes, an open bounty is refunded in full.
pub async fn cancel(db: &Db, actor: Actor<'_>, id: &str, now: i64) -> Result<Bounty, ApiError> {
    close(db, Some(actor), id, "cancelled", now).await
}

/// Refund every open bounty whose deadline has passed (the sweep's step);
/// how many. Each in its own transaction, so one failure holds back none
/// of the others.
pub async fn expire_due(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM bounties WHERE status = 'open' AND deadline_ms <= $1 \
         ORDER BY deadline_ms LIMIT 100",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut expired = 0;
    for id in due {
        match close(db, None, &id, "expired", now).await {
            Ok(_) => expired += 1,
            // Approved or cancelled in between: nothing to do.
            Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::CONFLICT => {}
            Err(e) => tracing::warn!(bounty = %id, code = e.code, "expiring a bounty"),
        }
    }
    Ok(expired)
}

/// Approve a verified, passing submission (by the business, or `auto` with
/// `actor` `None`): the escrow is posted, the reward minus the platform's
/// fee (`fee_bps`) paid to the submitter's tenant, the fee booked to the
/// platform, the bounty completed and its other submissions rejected.
pub async fn approve(
    db: &Db,
    actor: Option<Actor<'_>>,
    submission_id: &str,
    fee_bps: u32,
    now: i64,
) -> Result<Bounty, ApiError> {
    in_write(db, async |c: &mut AnyConnection| {
        let row = sqlx::query(
            "SELECT s.bounty_id, s.tenant_id, b.tenant_id AS owner FROM bounty_submissions s \
             JOIN bounties b ON b.id = s.bounty_id WHERE s.id = $1",
        )
        .bind(submission_id)
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)?;
        let (bounty_id, payee, owner): (String, String, String) = match row {
            Some(r) => (
                r.try_get("bounty_id").map_err(db_err)?,
                r.try_get("tenant_id").map_err(db_err)?,
                r.try_get("owner").map_err(db_err)?,
            ),
            None => return Err(ApiError::not_found("submission")),
        };
        if let Some(a) = actor
            && a.tenant_id != owner
        {
            // The submitter may see its submission, but not approve it.
            return Err(if a.tenant_id == payee {
                ApiError::forbidden("only the bounty's business approves its submissions")
            } else {
                ApiError::not_found("submission")
            });
        }
        let claimed = sqlx::query(
            "UPDATE bounties SET status = 'completed', approved_submission_id = $2, \
             updated_at_ms = $3 WHERE id = $1 AND status = 'open' AND deadline_ms > $3",
        )
        .bind(&bounty_id)
        .bind(submission_id)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        let b = get_in(c, &bounty_id)
            .await?
            .ok_or_else(|| ApiError::internal("bounty vanished"))?;
        if claimed != 1 {
            return Err(if b.status == "open" {
                ApiError::conflict("deadline_passed", "the bounty's deadline has passed")
            } else {
                wrong_state(Some(&b), &owner, "not_open", "open")
            });
        }
        let approved = sqlx::query(
            "UPDATE bounty_submissions SET status = 'approved', updated_at_ms = $3 \
             WHERE id = $1 AND bounty_id = $2 AND status = 'verified' AND passed = 1",
        )
        .bind(submission_id)
        .bind(&bounty_id)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        if approved != 1 {
            return Err(ApiError::conflict(
                "not_approvable",
                "only a verified submission whose verdict passed can be approved",
            ));
        }
        let others = sqlx::query(
            "UPDATE bounty_submissions SET status = 'rejected', updated_at_ms = $3 \
             WHERE bounty_id = $1 AND id <> $2 AND status IN ('pending_verification', \
             'verified', 'verification_failed') RETURNING id, tenant_id",
        )
        .bind(&bounty_id)
        .bind(submission_id)
        .bind(now)
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?;
        publish(
            c,
            &owner,
            &bounty_id,
            Some(&payee),
            Kind::SubmissionApproved,
            json!({ "bounty_id": bounty_id, "submission_id": submission_id }),
            now,
        )
        .await?;
        for other in &others {
            let id: String = other.try_get("id").map_err(db_err)?;
            let submitter: String = other.try_get("tenant_id").map_err(db_err)?;
            publish(
                c,
                &owner,
                &bounty_id,
                Some(&submitter),
                Kind::SubmissionRejected,
                json!({ "bounty_id": bounty_id, "submission_id": id,
                        "reason": "another_submission_approved" }),
                now,
            )
            .await?;
        }
        let reward = b.reward_minor.unsigned_abs();
        let (payout, fee) = delta_money::fee_split(reward, fee_bps);
        let escrow_account = account_id(AccountKind::Escrow, Some(&b.tenant_id), &b.currency);
        let payee_account = ensure_account(c, AccountKind::Tenant, Some(&payee), &b.currency, now)
            .await
            .map_err(db_err)?;
        let platform = ensure_account(c, AccountKind::Platform, None, &b.currency, now)
            .await
            .map_err(db_err)?;
        let mut transfers = vec![settle(&b, true)];
        for (step, to, amount) in [("payout", payee_account, payout), ("fee", platform, fee)] {
            if amount > 0 {
                transfers.push(Transfer {
                    id: transfer_id(&b.id, step),
                    debit_account_id: escrow_account.clone(),
                    credit_account_id: to,
                    amount,
                    ledger: b.currency.clone(),
                    kind: TransferKind::SinglePhase,
                });
            }
        }
        apply_transfers(c, &transfers, now).await.map_err(money)?;
        super::payment::after_approve_in(c, &b, now).await?;
        publish(
            c,
            &b.tenant_id,
            &b.id,
            None,
            Kind::Completed,
            json!({ "bounty_id": b.id, "submission_id": submission_id, "payout_minor": payout,
                    "fee_minor": fee, "currency": b.currency }),
            now,
        )
        .await?;
        audit_in(
            c,
            &b.tenant_id,
            actor,
            "bounty_completed",
            json!({ "bounty_id": b.id, "submission_id": submission_id, "payee_tenant_id": payee,
                    "payout_minor": payout, "fee_minor": fee }),
        )
        .await?;
        get_in(c, &bounty_id)
            .await?
            .ok_or_else(|| ApiError::internal("bounty vanished"))
    })
    .await
}

/// Reject a submission (the business); the bounty stays open.
pub async fn reject(
    db: &Db,
    actor: Actor<'_>,
    submission_id: &str,
    now: i64,
) -> Result<(), ApiError> {
    // The change and its event in one transaction.
    let done = in_write(db, async |c: &mut AnyConnection| {
        let row = sqlx::query(
            "UPDATE bounty_submissions SET status = 'rejected', updated_at_ms = $3 \
             WHERE id = $1 AND status IN ('pending_verification', 'verified', \
             'verification_failed') AND bounty_id IN (SELECT id FROM bounties WHERE tenant_id = $2) \
             RETURNING bounty_id, tenant_id",
        )
        .bind(submission_id)
        .bind(actor.tenant_id)
        .bind(now)
        .fetch_optional(&mut *c)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(false) };
        let bounty_id: String = row.try_get("bounty_id").map_err(db_err)?;
        let submitter: String = row.try_get("tenant_id").map_err(db_err)?;
        publish(
            c,
            actor.tenant_id,
            &bounty_id,
            Some(&submitter),
            Kind::SubmissionRejected,
            json!({ "bounty_id": bounty_id, "submission_id": submission_id,
                    "reason": "rejected" }),
            now,
        )
        .await?;
        Ok(true)
    })
    .await?;
    if done {
        audit::record(
            &db.clone(),
            Some(actor.tenant_id),
            Some(actor.user_id),
            "submission_rejected",
            json!({ "submission_id": submission_id }),
            Some(actor.request_id),
        )
        .await;
        return Ok(());
    }
    let s = get_submission(db, actor.tenant_id, submission_id).await?;
    let owner = get_visible(db, actor.tenant_id, &s.bounty_id)
        .await?
        .tenant_id;
    if owner != actor.tenant_id {
        return Err(ApiError::forbidden(
            "only the bounty's business rejects its submissions",
        ));
    }
    Err(ApiError::conflict(
        "not_rejectable",
        format!("the submission is {}", s.status),
    ))
}

// ---- submissions ---------------------------------------------------------------

/// What verifying a submission found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// The verifier answered a verdict.
    Verdict {
        /// Passed.
        passed: bool,
        /// Score, thousandths.
        score_milli: i64,
        /// Reasons.
        reasons: Vec<String>,
    },
    /// The verifier trapped, timed out, or answered garbage: never approved.
    Failed(String),
    /// No node could run it: stays `pending_verification`.
    Unavailable(String),
}

/// Store what verification found on a submission still pending; whether it
/// changed (a concurrent verification may have stored first).
pub async fn record_verification(
    db: &Db,
    submission_id: &str,
    v: &Verification,
    now: i64,
) -> Result<bool, ApiError> {
    let (status, passed, score, report) = match v {
        Verification::Verdict {
            passed,
            score_milli,
            reasons,
        } => (
            "verified",
            Some(i64::from(*passed)),
            Some(*score_milli),
            json!(reasons),
        ),
        Verification::Failed(reason) => (
            "verification_failed",
            None,
            None,
            json!({ "error": reason }),
        ),
        Verification::Unavailable(reason) => (
            "pending_verification",
            None,
            None,
            json!({ "pending": reason }),
        ),
    };
    // One transaction: the verdict and its `submission.verified` event.
    let mut tx = db.begin().await.map_err(db_err)?;
    let done = sqlx::query(
        "UPDATE bounty_submissions SET status = $2, passed = $3, score_milli = $4, report = $5, \
         attempts = attempts + 1, updated_at_ms = $6 \
         WHERE id = $1 AND status = 'pending_verification'",
    )
    .bind(submission_id)
    .bind(status)
    .bind(passed)
    .bind(score)
    .bind(report.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if done == 1 && status != "pending_verification" {
        let row = sqlx::query(
            "SELECT s.bounty_id, s.tenant_id AS submitter, b.tenant_id FROM bounty_submissions s \
             JOIN bounties b ON b.id = s.bounty_id WHERE s.id = $1",
        )
        .bind(submission_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let bounty_id: String = row.try_get("bounty_id").map_err(db_err)?;
        let owner: String = row.try_get("tenant_id").map_err(db_err)?;
        let submitter: String = row.try_get("submitter").map_err(db_err)?;
        publish(
            &mut tx,
            &owner,
            &bounty_id,
            Some(&submitter),
            Kind::SubmissionVerified,
            json!({ "bounty_id": bounty_id, "submission_id": submission_id, "status": status,
                    "passed": passed.map(|p| p == 1), "score_milli": score }),
            now,
        )
        .await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(done == 1)
}

/// Submissions waiting for a node, not tried in the last `retry_ms`.
pub async fn pending_verifications(
    db: &Db,
    now: i64,
    retry_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.id FROM bounty_submissions s JOIN bounties b ON b.id = s.bounty_id \
         WHERE s.status = 'pending_verification' AND s.updated_at_ms <= $1 AND b.status = 'open' \
         ORDER BY s.updated_at_ms LIMIT 8",
    )
    .bind(now.saturating_sub(retry_ms))
    .fetch_all(db.pool())
    .await
}
