//! Agents' reputation and the leaderboard (issue 17, phase 2), computed
//! from the bounty submissions table on each request.
//!
//! # Numbers
//! Per agent, over its bounty submissions:
//! - `approved`, `rejected`: submissions in those states; `decided` is
//!   their sum. A submission is `rejected` by the business, or when its
//!   bounty was completed by another submission, cancelled or expired.
//! - `verifier_pass_rate`: of the submissions with a verdict, the share
//!   whose verdict passed (absent without verdicts); a verification that
//!   failed (trap, timeout, garbage) is not a verdict and is not counted.
//! - `mean_ms_to_submit`: the mean time from the bounty's funding (its
//!   escrow transfer) to the submission.
//!
//! # Score
//! The lower bound of the Wilson score interval at 95 % (z = 1.96) for the
//! share of approvals among decided submissions, so that few results are
//! not over-trusted (1 of 1 scores 0.2065, 80 of 100 scores 0.7112):
//!
//! ```text
//! n = approved + rejected,  p = approved / n,  z = 1.96
//! score = (p + z²/(2n) − z·√(p(1−p)/n + z²/(4n²))) / (1 + z²/n)      (0 when n = 0)
//! ```
//!
//! # Cost
//! One grouped query over the submissions of the agent (reputation) or of
//! every agent (leaderboard), sorted in memory. With `redis_url` set the
//! leaderboard's ranking is cached in Redis ([`LeaderboardCache`]) for
//! [`LEADERBOARD_TTL_SECS`], so pages and replicas share one computation:
//! a verdict or decision shows on the leaderboard within that time (an
//! agent's own reputation is always read fresh). The ranking is one entry
//! rather than a sorted set: the API breaks score ties by ascending agent
//! id, a sorted set's reverse range by descending member, and one entry
//! replaced whole keeps the database path's order exactly. If the
//! leaderboard grows past a few thousand agents, keep the aggregates in a
//! table updated in the decision's transaction instead.

use axum::Json;
use axum::extract::{Path, Query, State};
use delta_http::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Role};
use crate::db::Db;
use crate::pagination::{Cursor, Page, PageQuery};
use crate::state::AppState;

/// z for a two-sided 95 % interval.
const Z: f64 = 1.96;
/// Scores in cursors: millionths of millionths, an integer that orders as
/// the score does.
const CURSOR_SCALE: f64 = 1e12;

/// The Wilson score interval's lower bound at 95 % for `approved` of
/// `decided` (see the module's documentation); 0 when nothing is decided.
pub fn wilson_lower_bound(approved: u64, decided: u64) -> f64 {
    if decided == 0 {
        return 0.0;
    }
    let n = decided as f64;
    let p = (approved.min(decided)) as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// An agent's record in bounties.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reputation {
    /// The agent.
    pub agent_id: String,
    /// Submissions made.
    pub submissions: i64,
    /// Submissions approved (paid).
    pub approved: i64,
    /// Submissions rejected (by the business, or closed with their bounty).
    pub rejected: i64,
    /// `approved + rejected`.
    pub decided: i64,
    /// Submissions with a verifier's verdict.
    pub verdicts: i64,
    /// Of those, the share that passed (0-1); absent without verdicts.
    pub verifier_pass_rate: Option<f64>,
    /// Mean milliseconds from the bounty's funding to the submission.
    pub mean_ms_to_submit: Option<i64>,
    /// The Wilson lower bound at 95 % of `approved / decided` (0-1).
    pub score: f64,
}

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agent_reputation))
        .routes(routes!(leaderboard))
}

fn reader(p: &Principal) -> Result<(), ApiError> {
    p.require_role(Role::Member)?;
    p.require_scope("bounties:read")
}

const AGGREGATE: &str = "SELECT s.agent_id, COUNT(*) AS submissions, \
     SUM(CASE WHEN s.status = 'approved' THEN 1 ELSE 0 END) AS approved, \
     SUM(CASE WHEN s.status = 'rejected' THEN 1 ELSE 0 END) AS rejected, \
     SUM(CASE WHEN s.passed IS NOT NULL THEN 1 ELSE 0 END) AS verdicts, \
     SUM(CASE WHEN s.passed = 1 THEN 1 ELSE 0 END) AS passes, \
     CAST(AVG(s.created_at_ms - t.created_at_ms) AS BIGINT) AS mean_ms \
     FROM bounty_submissions s JOIN bounties b ON b.id = s.bounty_id \
     LEFT JOIN money_transfers t ON t.id = b.escrow_transfer_id";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Reputation, sqlx::Error> {
    let approved: i64 = row.try_get("approved")?;
    let rejected: i64 = row.try_get("rejected")?;
    let verdicts: i64 = row.try_get("verdicts")?;
    let passes: i64 = row.try_get("passes")?;
    let decided = approved + rejected;
    Ok(Reputation {
        agent_id: row.try_get("agent_id")?,
        submissions: row.try_get("submissions")?,
        approved,
        rejected,
        decided,
        verdicts,
        verifier_pass_rate: (verdicts > 0).then(|| passes as f64 / verdicts as f64),
        mean_ms_to_submit: row.try_get("mean_ms")?,
        score: wilson_lower_bound(approved.unsigned_abs(), decided.unsigned_abs()),
    })
}

/// Agent `agent_id`'s reputation (zeros when it never submitted); 404 for
/// no such agent.
///
/// An agent is in the marketplace once it has submitted: from then on its
/// reputation is public (businesses judge whom to trust by it, as the
/// leaderboard shows). Before that, only its own tenant (`viewer`) sees it:
/// to anyone else such an agent answers 404 like one that does not exist,
/// so an id tells nothing about another tenant.
pub async fn reputation(db: &Db, agent_id: &str, viewer: &str) -> Result<Reputation, ApiError> {
    let owner: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM agents WHERE id = $1")
        .bind(agent_id)
        .fetch_optional(db.pool())
        .await
        .map_err(ApiError::internal)?;
    let Some(owner) = owner else {
        return Err(ApiError::not_found("agent"));
    };
    let row = sqlx::query(&format!(
        "{AGGREGATE} WHERE s.agent_id = $1 GROUP BY s.agent_id"
    ))
    .bind(agent_id)
    .fetch_optional(db.pool())
    .await
    .map_err(ApiError::internal)?;
    match row {
        Some(r) => from_row(&r).map_err(ApiError::internal),
        None if owner != viewer => Err(ApiError::not_found("agent")),
        None => Ok(Reputation {
            agent_id: agent_id.to_owned(),
            submissions: 0,
            approved: 0,
            rejected: 0,
            decided: 0,
            verdicts: 0,
            verifier_pass_rate: None,
            mean_ms_to_submit: None,
            score: 0.0,
        }),
    }
}

fn cursor_key(r: &Reputation) -> i64 {
    (r.score * CURSOR_SCALE).round() as i64
}

/// How long a computed leaderboard is served from Redis, seconds.
pub const LEADERBOARD_TTL_SECS: u64 = 10;
/// The Redis key of the cached ranking.
pub const LEADERBOARD_KEY: &str = "delta:leaderboard";

/// The leaderboard's ranking cached in Redis (none without `redis_url`).
/// Redis failing is not the caller's problem: the ranking is computed from
/// the database, as without Redis.
#[derive(Clone, Default)]
pub struct LeaderboardCache {
    conn: Option<redis::aio::ConnectionManager>,
}

impl LeaderboardCache {
    /// The cache on the Redis at `redis_url` (connected lazily), or none.
    pub fn open(redis_url: Option<&str>) -> Result<Self, String> {
        let Some(url) = redis_url else {
            return Ok(Self::default());
        };
        let client = redis::Client::open(url)
            .map_err(|e| format!("redis_url is not a valid Redis URL: {:?}", e.kind()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| e.to_string())?;
        Ok(Self { conn: Some(conn) })
    }

    async fn get(&self) -> Option<Vec<Reputation>> {
        let mut conn = self.conn.clone()?;
        let cached: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(LEADERBOARD_KEY)
            .query_async(&mut conn)
            .await;
        match cached {
            Ok(Some(text)) => serde_json::from_str(&text).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "leaderboard cache: Redis unreachable; computing");
                None
            }
        }
    }

    async fn put(&self, ranking: &[Reputation]) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let Ok(text) = serde_json::to_string(ranking) else {
            return;
        };
        let stored: redis::RedisResult<()> = redis::cmd("SET")
            .arg(LEADERBOARD_KEY)
            .arg(text)
            .arg("EX")
            .arg(LEADERBOARD_TTL_SECS)
            .query_async(&mut conn)
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "leaderboard cache: storing in Redis");
        }
    }
}

/// Agents with at least one decided submission, highest score first (ties:
/// by agent id), a page after `page`'s cursor; the ranking from `cache`
/// when it holds one.
pub async fn leaderboard_page(
    db: &Db,
    cache: &LeaderboardCache,
    page: &PageQuery,
) -> Result<Page<Reputation>, ApiError> {
    let after = page.cursor()?;
    let mut all = match cache.get().await {
        Some(all) => all,
        None => {
            let all = ranking(db).await?;
            cache.put(&all).await;
            all
        }
    };
    if let Some(Cursor { t, id }) = &after {
        all.retain(|r| {
            let k = cursor_key(r);
            k < *t || (k == *t && r.agent_id.as_str() > id.as_str())
        });
    }
    let limit = page.limit();
    all.truncate(limit as usize + 1);
    Ok(Page::from_rows(all, limit, |r| {
        (cursor_key(r), r.agent_id.clone())
    }))
}

/// Every agent with a decided submission, highest score first (ties: by
/// agent id).
async fn ranking(db: &Db) -> Result<Vec<Reputation>, ApiError> {
    let rows = sqlx::query(&format!("{AGGREGATE} GROUP BY s.agent_id"))
        .fetch_all(db.pool())
        .await
        .map_err(ApiError::internal)?;
    let mut all = rows
        .iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    all.retain(|r| r.decided > 0);
    all.sort_by(|a, b| {
        cursor_key(b)
            .cmp(&cursor_key(a))
            .then_with(|| a.agent_id.cmp(&b.agent_id))
    });
    Ok(all)
}

/// An agent's bounty record and score (any agent: reputation is public to
/// the marketplace, like the leaderboard).
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/reputation",
    tag = "bounties",
    params(("id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The reputation", body = Reputation),
        (status = 404, description = "No such agent"),
    ),
    security(("bearer" = []))
)]
async fn agent_reputation(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Reputation>, ApiError> {
    reader(&principal)?;
    reputation(&state.db, &id, &principal.tenant_id)
        .await
        .map(Json)
}

/// Paging of `GET /v1/leaderboard`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaderboardQuery {
    /// Items per page (1-200, default 50); outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "crate::pagination::page_limit")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as given.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_.:-]{1,200}$")]
    pub cursor: Option<String>,
}

/// Agents with at least one decided submission, highest score first.
#[utoipa::path(
    get,
    path = "/v1/leaderboard",
    tag = "bounties",
    params(LeaderboardQuery),
    responses((status = 200, description = "A page, highest score first", body = Page<Reputation>)),
    security(("bearer" = []))
)]
async fn leaderboard(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<LeaderboardQuery>,
) -> Result<Json<Page<Reputation>>, ApiError> {
    reader(&principal)?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    leaderboard_page(&state.db, &state.leaderboard, &page)
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::wilson_lower_bound;

    /// Values computed by hand from the formula, to six places.
    #[test]
    fn wilson_matches_hand_computed_values() {
        for (approved, decided, expected) in [
            (0, 0, 0.0),
            (0, 5, 0.0),
            (1, 1, 0.206_543),
            (8, 10, 0.490_157),
            (80, 100, 0.711_169),
            (5, 5, 0.565_509),
            (2, 3, 0.207_655),
        ] {
            let got = wilson_lower_bound(approved, decided);
            assert!(
                (got - expected).abs() < 1e-5,
                "{approved}/{decided}: {got} vs {expected}"
            );
        }
        // More evidence at the same rate scores higher.
        assert!(wilson_lower_bound(90, 100) > wilson_lower_bound(9, 10));
    }
}
