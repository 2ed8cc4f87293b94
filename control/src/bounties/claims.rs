//! Claims: an agent owner claims another tenant's open bounty for one of
//! its agents before submitting or attempting. A bounty allows at most
//! `max_claims` claims held at once (`active` or `submitted`), and an agent
//! has at most one claim per bounty (unique row; released, it can be taken
//! again while there is room).
//!
//! The limit holds under concurrency because taking a claim is one
//! conditional `UPDATE bounties SET claims_held = claims_held + 1 WHERE ...
//! claims_held < max_claims` inside the write transaction: on PostgreSQL
//! its row lock queues concurrent claims, which then see the new count; on
//! SQLite the writer's turn serialises them.

use delta_http::ApiError;
use serde_json::json;
use sqlx::AnyConnection;

use crate::db::{Db, new_id};
use crate::pagination::{Page, PageQuery};

use super::events::{Kind, publish};
use super::model::*;
use super::store::{Actor, audit_in, db_err, get_in};

/// Take the bounty's row lock (PostgreSQL; SQLite's writer turn is held
/// already) so that a concurrent claim by the same agent waits and then
/// finds this one's row instead of colliding with it.
async fn lock_bounty(c: &mut AnyConnection, bounty_id: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE bounties SET claims_held = claims_held WHERE id = $1")
        .bind(bounty_id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

async fn find_in(
    c: &mut AnyConnection,
    bounty_id: &str,
    agent_id: &str,
) -> Result<Option<Claim>, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {CLAIM_COLUMNS} FROM bounty_claims WHERE bounty_id = $1 AND agent_id = $2"
    ))
    .bind(bounty_id)
    .bind(agent_id)
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(claim_from_row).transpose()
}

/// Count one more claim on `bounty_id` if it is open and has room: 409
/// `not_open` or `claims_full` otherwise.
async fn take_slot(c: &mut AnyConnection, bounty_id: &str, now: i64) -> Result<(), ApiError> {
    let taken = sqlx::query(
        "UPDATE bounties SET claims_held = claims_held + 1 WHERE id = $1 AND status = 'open' \
         AND deadline_ms > $2 AND claims_held < max_claims",
    )
    .bind(bounty_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?
    .rows_affected();
    if taken == 1 {
        return Ok(());
    }
    let b = get_in(c, bounty_id)
        .await?
        .ok_or_else(|| ApiError::not_found("bounty"))?;
    Err(if b.status != "open" || b.deadline_ms <= now {
        ApiError::conflict("not_open", format!("the bounty is {}", b.status))
            .details(json!({ "status": b.status }))
    } else {
        ApiError::conflict(
            "claims_full",
            format!("the bounty allows {} claims at once", b.max_claims),
        )
        .details(json!({ "max_claims": b.max_claims }))
    })
}

/// Take (or take again, once released) a claim of `agent_id` (the actor's,
/// checked by the caller) on bounty `bounty_id`, in write transaction `c`.
/// An agent already holding one: 409 `already_claimed`.
pub(super) async fn claim_in(
    c: &mut AnyConnection,
    actor: Actor<'_>,
    bounty_id: &str,
    agent_id: &str,
    now: i64,
) -> Result<Claim, ApiError> {
    lock_bounty(c, bounty_id).await?;
    match find_in(c, bounty_id, agent_id).await? {
        Some(held) if held.status == "active" || held.status == "submitted" => {
            Err(ApiError::conflict(
                "already_claimed",
                "this agent already holds a claim on the bounty",
            )
            .details(json!({ "claim_id": held.id })))
        }
        found => {
            take_slot(c, bounty_id, now).await?;
            let id = match found {
                Some(old) => {
                    sqlx::query(
                        "UPDATE bounty_claims SET status = 'active', updated_at_ms = $2 \
                         WHERE id = $1",
                    )
                    .bind(&old.id)
                    .bind(now)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    old.id
                }
                None => {
                    let id = new_id(CLAIM_PREFIX);
                    sqlx::query(
                        "INSERT INTO bounty_claims (id, bounty_id, tenant_id, user_id, agent_id, \
                         status, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, 'active', $6, $6)",
                    )
                    .bind(&id)
                    .bind(bounty_id)
                    .bind(actor.tenant_id)
                    .bind(actor.user_id)
                    .bind(agent_id)
                    .bind(now)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    id
                }
            };
            let b = get_in(c, bounty_id)
                .await?
                .ok_or_else(|| ApiError::internal("claimed bounty vanished"))?;
            audit_in(
                c,
                actor.tenant_id,
                Some(actor),
                "bounty_claimed",
                json!({ "bounty_id": bounty_id, "claim_id": id, "agent_id": agent_id }),
            )
            .await?;
            publish(
                c,
                &b.tenant_id,
                bounty_id,
                Some(actor.tenant_id),
                Kind::ClaimCreated,
                json!({ "bounty_id": bounty_id, "claim_id": id, "agent_id": agent_id }),
                now,
            )
            .await?;
            find_in(c, bounty_id, agent_id)
                .await?
                .ok_or_else(|| ApiError::internal("claim vanished"))
        }
    }
}

/// The claim `agent_id` holds on `bounty_id`, taken now if it holds none
/// (what a submission or an attempt works under).
pub(super) async fn hold_in(
    c: &mut AnyConnection,
    actor: Actor<'_>,
    bounty_id: &str,
    agent_id: &str,
    now: i64,
) -> Result<Claim, ApiError> {
    lock_bounty(c, bounty_id).await?;
    match find_in(c, bounty_id, agent_id).await? {
        Some(held) if held.status == "active" || held.status == "submitted" => Ok(held),
        _ => claim_in(c, actor, bounty_id, agent_id, now).await,
    }
}

/// Release claim `id` of `actor`'s tenant (active or submitted): its slot
/// is free again; submissions already made stay. Another tenant's: 404.
pub(super) async fn release_in(
    c: &mut AnyConnection,
    actor: Actor<'_>,
    id: &str,
    now: i64,
) -> Result<Claim, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {CLAIM_COLUMNS} FROM bounty_claims WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(actor.tenant_id)
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    let claim = row
        .as_ref()
        .map(claim_from_row)
        .transpose()?
        .ok_or_else(|| ApiError::not_found("claim"))?;
    let released = sqlx::query(
        "UPDATE bounty_claims SET status = 'released', updated_at_ms = $2 \
         WHERE id = $1 AND status IN ('active', 'submitted')",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?
    .rows_affected();
    if released != 1 {
        return Err(
            ApiError::conflict("not_releasable", format!("the claim is {}", claim.status))
                .details(json!({ "status": claim.status })),
        );
    }
    sqlx::query(
        "UPDATE bounties SET claims_held = claims_held - 1 WHERE id = $1 AND claims_held > 0",
    )
    .bind(&claim.bounty_id)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    audit_in(
        c,
        actor.tenant_id,
        Some(actor),
        "bounty_claim_released",
        json!({ "bounty_id": claim.bounty_id, "claim_id": id }),
    )
    .await?;
    Ok(Claim {
        status: "released".to_owned(),
        updated_at_ms: now,
        ..claim
    })
}

/// Expire the claims held on bounty `bounty_id` (it closed), in `c`.
pub(super) async fn expire_in(
    c: &mut AnyConnection,
    bounty_id: &str,
    now: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE bounty_claims SET status = 'expired', updated_at_ms = $2 \
         WHERE bounty_id = $1 AND status IN ('active', 'submitted')",
    )
    .bind(bounty_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE bounties SET claims_held = 0 WHERE id = $1")
        .bind(bounty_id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// A bounty's claims as `tenant` may see them: all for the business, its
/// own for anyone else, oldest first.
pub(super) async fn list(
    db: &Db,
    tenant: &str,
    bounty: &Bounty,
    page: &PageQuery,
) -> Result<Page<Claim>, ApiError> {
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let mine_only = bounty.tenant_id != tenant;
    let rows = sqlx::query(&format!(
        "SELECT {CLAIM_COLUMNS} FROM bounty_claims WHERE bounty_id = $1 \
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
        .map(claim_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, limit, |c| {
        (c.created_at_ms, c.id.clone())
    }))
}
