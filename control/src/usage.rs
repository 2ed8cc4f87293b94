//! Usage: what nodes report, counted once, and the queries over it.
//!
//! # Ingestion ([`ingest`])
//! A node's reporter sends batches of [`RunUsage`] records (one per
//! finished run) to `POST /v1/nodes/usage`. Records are deduplicated by run
//! id with `INSERT ... ON CONFLICT DO NOTHING RETURNING`, so a batch sent
//! twice, or twice at once, counts each run once: only the rows this
//! transaction inserted are added to the daily aggregates and the message
//! log, in the same transaction. Records are written sorted by run id and
//! aggregates by key, so that concurrent batches on PostgreSQL take row
//! locks in one order and cannot deadlock. A record that cannot be counted
//! (no run id, an agent of another tenant than it claims) is rejected and
//! reported in the answer rather than failing the batch: one bad row must
//! not stall a node's reporter forever.
//!
//! Statements are multi-row (hundreds of rows per statement): each statement
//! is a round trip through sqlx, and per-row statements capped ingestion at
//! a few thousand records a second.
//!
//! # Queries (`GET /v1/usage`)
//! Sums of the daily aggregates for the caller's tenant, filtered by date
//! range, agent, user and kind, grouped by any of day, agent and user (the
//! kind and its detail — model, channel or outcome — are always part of a
//! row), with the budget of the agent or user asked about alongside.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use delta_http::ApiError;
use delta_node_api::RunUsage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::db::{Db, now_ms, utc_day};

/// Rows per multi-row statement: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters at seven columns.
const CHUNK: usize = 500;
/// Longest id accepted in a record.
const MAX_ID: usize = 128;
/// Most rows one query answers.
const MAX_ROWS: usize = 10_000;
/// Longest date range of one query, days.
const MAX_RANGE_DAYS: i64 = 366;

/// The kinds of quantity counted, with what their `detail` is.
pub const KINDS: &[(&str, &str)] = &[
    ("runs", "outcome"),
    ("fuel", ""),
    ("wall_time_us", ""),
    ("llm_calls", "model"),
    ("llm_input_tokens", "model"),
    ("llm_output_tokens", "model"),
    ("messages_sent", "channel"),
    ("messages_refused", "channel"),
    ("message_tokens", "channel"),
];

/// What one ingestion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ingested {
    /// Records counted now.
    pub accepted: u64,
    /// Records counted before (a resent batch or record).
    pub duplicates: u64,
    /// Records that cannot be counted (see the log).
    pub rejected: u64,
}

/// Why a batch could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The database failed; nothing of the batch was stored.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Aggregate key: (tenant, day number since the epoch, agent, user, kind,
/// detail), borrowed from the records: a batch adds up to nine quantities
/// per record, and owned keys made allocation the largest cost.
type Key<'a> = (&'a str, i64, &'a str, &'a str, &'static str, Cow<'a, str>);

/// A model, channel or outcome name from a node, fit to be a key: control
/// characters replaced (PostgreSQL refuses NUL) and clipped, so that no
/// record can make a whole batch fail (and its node resend it forever).
fn detail(s: &str) -> Cow<'_, str> {
    if s.len() <= 256 && !s.chars().any(char::is_control) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(crate::messages::clean(s))
    }
}

const DAY_MS: i64 = 86_400_000;

/// Store a node's batch: new records, their aggregates and message
/// attempts in one transaction; then mark the runs they finish. Records
/// that finished before `oldest_ms` are rejected: the sweep deletes stored
/// run ids after the record retention, so such a record could no longer be
/// recognised as a duplicate. Each record's `result` (the run's output, for
/// its result webhook only) is taken out of it here, never stored.
pub async fn ingest(
    db: &Db,
    node_id: &str,
    batch_id: &str,
    records: &mut [RunUsage],
    oldest_ms: i64,
) -> Result<Ingested, IngestError> {
    let now = now_ms();
    let results: HashMap<String, serde_json::Value> = records
        .iter_mut()
        .filter_map(|r| r.result.take().map(|v| (r.run_id.clone(), v)))
        .collect();
    let records: &[RunUsage] = records;
    let owners = agent_owners(db, records).await?;
    let mut result = Ingested::default();
    // Valid records, one per run id, sorted (lock order, see the module doc).
    let mut valid: BTreeMap<&str, &RunUsage> = BTreeMap::new();
    for record in records {
        let claimed_ok = !record.run_id.is_empty()
            && record.run_id.len() <= MAX_ID
            && !record.agent_id.is_empty()
            && record.agent_id.len() <= MAX_ID
            && !record.tenant_id.is_empty()
            && record.tenant_id.len() <= MAX_ID;
        // A known agent must be the claimed tenant's: a node cannot move
        // usage between tenants.
        let tenant_ok = owners
            .get(record.agent_id.as_str())
            .is_none_or(|(tenant, _)| *tenant == record.tenant_id);
        if !(claimed_ok && tenant_ok) {
            tracing::warn!(node = node_id, batch = batch_id, run = %record.run_id,
                agent = %record.agent_id, "usage record rejected");
            result.rejected += 1;
            continue;
        }
        if record.finished_at_ms < oldest_ms {
            tracing::warn!(node = node_id, batch = batch_id, run = %record.run_id,
                finished_at_ms = record.finished_at_ms,
                "usage record older than the record retention rejected");
            result.rejected += 1;
            continue;
        }
        if valid.insert(record.run_id.as_str(), record).is_some() {
            result.duplicates += 1;
        }
    }
    let valid: Vec<&RunUsage> = valid.into_values().collect();

    let mut tx = db.begin().await?;
    let mut fresh: Vec<&RunUsage> = Vec::with_capacity(valid.len());
    for chunk in valid.chunks(CHUNK) {
        let inserted = insert_records(db, &mut tx, node_id, chunk, now).await?;
        fresh.extend(
            chunk
                .iter()
                .copied()
                .filter(|r| inserted.contains(&r.run_id)),
        );
    }
    result.accepted = fresh.len() as u64;
    result.duplicates += (valid.len() - fresh.len()) as u64;

    // Hashed, then sorted once: a B-tree keyed by these six-part tuples
    // compared strings for every counter of every record (9 % of a batch).
    let mut totals: HashMap<Key, i64> = HashMap::with_capacity(fresh.len().min(1_024));
    for record in &fresh {
        let user = owners
            .get(record.agent_id.as_str())
            .map_or("", |(_, user)| user.as_str());
        add_quantities(&mut totals, record, user);
    }
    let mut totals: Vec<(Key<'_>, i64)> = totals.into_iter().filter(|(_, q)| *q != 0).collect();
    // In key order, as every batch writes them: concurrent batches lock
    // shared rows in the same order.
    totals.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for chunk in totals.chunks(CHUNK) {
        upsert_totals(db, &mut tx, chunk).await?;
    }
    crate::messages::record_attempts(&mut tx, node_id, &fresh, now).await?;
    sqlx::query(
        "INSERT INTO usage_batches (batch_id, node_id, records, accepted, received_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (batch_id) DO NOTHING",
    )
    .bind(batch_id)
    .bind(node_id)
    .bind(records.len() as i64)
    .bind(result.accepted as i64)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    // Runs are finished after the records are committed: a run row stored
    // concurrently (`runs::insert_run` stores the row, then looks for its
    // usage) is then either updated here or finds the record there. For
    // duplicates too, in case a crash came between the commit and this.
    let open = unfinished_runs(db, &valid).await?;
    if !open.is_empty() {
        let mut conn = db.pool().acquire().await?;
        let mut endpoints = crate::webhooks::Endpoints::default();
        for record in valid.iter().filter(|r| open.contains(&r.run_id)) {
            let result = results.get(&record.run_id);
            crate::runs::finish_from_usage(&mut conn, &mut endpoints, record, result).await?;
        }
    }
    Ok(result)
}

/// Tenant and owner of each agent the records name (unknown agents are
/// absent: deleted, or never created through this control plane).
async fn agent_owners(
    db: &Db,
    records: &[RunUsage],
) -> Result<HashMap<String, (String, String)>, sqlx::Error> {
    let mut ids: Vec<&str> = records.iter().map(|r| r.agent_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut owners = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, tenant_id, owner_user_id FROM agents WHERE id IN ({})",
            db.param_list(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(db.pool()).await? {
            owners.insert(
                row.try_get::<String, _>("id")?,
                (
                    row.try_get::<String, _>("tenant_id")?,
                    row.try_get::<Option<String>, _>("owner_user_id")?
                        .unwrap_or_default(),
                ),
            );
        }
    }
    Ok(owners)
}

/// Insert `records`, answering the run ids that were new.
async fn insert_records(
    db: &Db,
    tx: &mut sqlx::AnyConnection,
    node_id: &str,
    records: &[&RunUsage],
    now: i64,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let values = db.values_list(records.len(), 6);
    let sql = format!(
        "INSERT INTO usage_records (run_id, node_id, tenant_id, agent_id, payload, received_at_ms) \
         VALUES {values} ON CONFLICT (run_id) DO NOTHING RETURNING run_id"
    );
    let mut query = sqlx::query(&sql);
    for record in records {
        // No result here: `ingest` took it out (it is for the webhook).
        let payload =
            serde_json::to_string(record).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        query = query
            .bind(record.run_id.as_str())
            .bind(node_id)
            .bind(record.tenant_id.as_str())
            .bind(record.agent_id.as_str())
            .bind(payload)
            .bind(now);
    }
    query
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("run_id"))
        .collect()
}

/// Add one record's quantities under `user`.
fn add_quantities<'a>(totals: &mut HashMap<Key<'a>, i64>, record: &'a RunUsage, user: &'a str) {
    let day = record.finished_at_ms.div_euclid(DAY_MS);
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut add = |kind: &'static str, detail_name: &'a str, quantity: u64| {
        let key = (
            record.tenant_id.as_str(),
            day,
            record.agent_id.as_str(),
            user,
            kind,
            detail(detail_name),
        );
        let slot = totals.entry(key).or_default();
        *slot = slot.saturating_add(clamp(quantity));
    };
    add("runs", &record.outcome, 1);
    add("fuel", "", record.fuel_used);
    add("wall_time_us", "", record.wall_time_us);
    for (model, tokens) in &record.llm {
        add("llm_calls", model, tokens.calls);
        add("llm_input_tokens", model, tokens.input_tokens);
        add("llm_output_tokens", model, tokens.output_tokens);
    }
    for (channel, counts) in &record.messages {
        add("messages_sent", channel, counts.sent);
        add("messages_refused", channel, counts.refused);
        add("message_tokens", channel, counts.tokens);
    }
}

async fn upsert_totals(
    db: &Db,
    tx: &mut sqlx::AnyConnection,
    totals: &[(Key<'_>, i64)],
) -> Result<(), sqlx::Error> {
    let values = db.values_list(totals.len(), 7);
    let sql = format!(
        "INSERT INTO usage_daily (tenant_id, day, agent_id, user_id, kind, detail, quantity) \
         VALUES {values} ON CONFLICT (tenant_id, day, agent_id, kind, detail) \
         DO UPDATE SET quantity = CASE \
             WHEN usage_daily.quantity > 9223372036854775807 - excluded.quantity \
             THEN 9223372036854775807 \
             ELSE usage_daily.quantity + excluded.quantity END"
    );
    let mut query = sqlx::query(&sql);
    for ((tenant, day, agent, user, kind, detail), quantity) in totals {
        query = query
            .bind(*tenant)
            .bind(utc_day(day * DAY_MS))
            .bind(*agent)
            .bind(*user)
            .bind(*kind)
            .bind(detail.as_ref())
            .bind(*quantity);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Which of the records' runs the control plane holds unfinished.
async fn unfinished_runs(
    db: &Db,
    records: &[&RunUsage],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut open = std::collections::HashSet::new();
    for chunk in records.chunks(CHUNK) {
        let sql = format!(
            "SELECT id FROM runs WHERE status <> 'finished' AND id IN ({})",
            db.param_list(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for record in chunk {
            query = query.bind(record.run_id.as_str());
        }
        for row in query.fetch_all(db.pool()).await? {
            open.insert(row.try_get::<String, _>("id")?);
        }
    }
    Ok(open)
}

// ---- queries ---------------------------------------------------------------

/// Query of `GET /v1/usage`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// First day, `YYYY-MM-DD` (UTC; default: the first of this month).
    /// At most 366 days before `to`, and not after it (422 otherwise).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day, inclusive (default: today).
    #[param(format = Date)]
    pub to: Option<String>,
    /// Only this agent.
    pub agent_id: Option<String>,
    /// Only this user's agents.
    pub user_id: Option<String>,
    /// Only this kind (`runs`, `fuel`, `wall_time_us`, `llm_calls`,
    /// `llm_input_tokens`, `llm_output_tokens`, `messages_sent`,
    /// `messages_refused`, `message_tokens`).
    #[param(
        pattern = "^(runs|fuel|wall_time_us|llm_calls|llm_input_tokens|llm_output_tokens|messages_sent|messages_refused|message_tokens)$"
    )]
    pub kind: Option<String>,
    /// Comma-separated subset of `day`, `agent`, `user` to group by (default:
    /// none: totals per kind and detail over the range).
    #[param(pattern = "^((day|agent|user)(,(day|agent|user))*)?$")]
    pub group_by: Option<String>,
}

/// One summed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    /// The day, when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// The agent, when grouped by agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The agent's owner, when grouped by user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What is counted.
    pub kind: String,
    /// Model (LLM kinds), channel (message kinds), outcome (`runs`), or empty.
    pub detail: String,
    /// The sum.
    pub quantity: i64,
}

/// Answer of `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// First day of the range.
    pub from: String,
    /// Last day of the range.
    pub to: String,
    /// The grouping applied.
    pub group_by: Vec<String>,
    /// The sums, ordered by the grouping, then kind and detail.
    pub rows: Vec<UsageRow>,
    /// True when more than the maximum number of rows matched (narrow the
    /// query).
    pub truncated: bool,
    /// The budget of the agent (with `agent_id`) or of the user (with
    /// `user_id`, or the caller's own otherwise): what remains alongside
    /// what was used.
    #[schema(value_type = Option<Object>)]
    pub budget: Option<Value>,
}

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(query_usage))
}

fn parse_day(s: &str) -> Result<time::Date, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, format)
        .map_err(|_| ApiError::invalid(format!("{s:?} is not a date (YYYY-MM-DD)")))
}

/// Usage of the caller's tenant, summed over days and grouped as asked.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "Sums", body = UsageReport),
        (status = 404, description = "The agent or user is not in this tenant"),
        (status = 422, description = "Bad dates, kind or grouping"),
    ),
    security(("bearer" = []))
)]
async fn query_usage(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("usage:read")?;
    let today = parse_day(&utc_day(now_ms()))?;
    let to = match &q.to {
        Some(s) => parse_day(s)?,
        None => today,
    };
    let from = match &q.from {
        Some(s) => parse_day(s)?,
        None => to.replace_day(1).map_err(ApiError::internal)?,
    };
    if from > to {
        return Err(ApiError::invalid("from is after to"));
    }
    if (to - from).whole_days() >= MAX_RANGE_DAYS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_RANGE_DAYS} days per query"
        )));
    }
    if let Some(kind) = &q.kind
        && !KINDS.iter().any(|(k, _)| k == kind)
    {
        return Err(ApiError::invalid(format!("unknown kind {kind:?}")).details(
            serde_json::json!({ "kinds": KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>() }),
        ));
    }
    let mut group_by: Vec<&'static str> = Vec::new();
    // Exactly the document's pattern: empty, or names joined by commas.
    let parts = q.group_by.as_deref().filter(|s| !s.is_empty());
    for part in parts.into_iter().flat_map(|s| s.split(',')) {
        let column = match part {
            "day" => "day",
            "agent" => "agent_id",
            "user" => "user_id",
            other => {
                return Err(ApiError::invalid(format!(
                    "cannot group by {other:?} (day, agent, user)"
                )));
            }
        };
        if !group_by.contains(&column) {
            group_by.push(column);
        }
    }
    let tenant = principal.tenant_id.as_str();
    if let Some(agent) = &q.agent_id {
        let found = sqlx::query("SELECT 1 FROM agents WHERE id = $1 AND tenant_id = $2")
            .bind(agent)
            .bind(tenant)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
        // Usage of a deleted agent stays queryable: the aggregates are the
        // tenant's own rows.
        if found.is_none() && !has_usage(&state.db, tenant, "agent_id", agent).await? {
            return Err(ApiError::not_found("agent"));
        }
    }
    if let Some(user) = &q.user_id {
        let member = sqlx::query("SELECT 1 FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
        if member.is_none() && !has_usage(&state.db, tenant, "user_id", user).await? {
            return Err(ApiError::not_found("user"));
        }
    }

    // Column names come from the whitelist above, values are bound.
    let mut clauses = vec![
        "tenant_id = $1".to_owned(),
        "day >= $2".into(),
        "day <= $3".into(),
    ];
    let mut binds: Vec<String> = vec![tenant.to_owned(), from.to_string(), to.to_string()];
    for (column, value) in [
        ("agent_id", &q.agent_id),
        ("user_id", &q.user_id),
        ("kind", &q.kind),
    ] {
        if let Some(v) = value {
            binds.push(v.clone());
            clauses.push(format!("{column} = ${}", binds.len()));
        }
    }
    let mut keys: Vec<&str> = group_by.clone();
    keys.extend(["kind", "detail"]);
    let keys = keys.join(", ");
    let sql = format!(
        "SELECT {keys}, CAST(SUM(quantity) AS BIGINT) AS quantity FROM usage_daily WHERE {} \
         GROUP BY {keys} ORDER BY {keys} LIMIT {}",
        clauses.join(" AND "),
        MAX_ROWS + 1
    );
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b.as_str());
    }
    let rows = query
        .fetch_all(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
    let truncated = rows.len() > MAX_ROWS;
    let get = |row: &sqlx::any::AnyRow, column: &str| -> Result<Option<String>, ApiError> {
        if group_by.contains(&column) {
            row.try_get::<String, _>(column)
                .map(Some)
                .map_err(ApiError::internal)
        } else {
            Ok(None)
        }
    };
    let rows = rows
        .iter()
        .take(MAX_ROWS)
        .map(|row| {
            Ok(UsageRow {
                day: get(row, "day")?,
                agent_id: get(row, "agent_id")?,
                user_id: get(row, "user_id")?,
                kind: row.try_get("kind").map_err(ApiError::internal)?,
                detail: row.try_get("detail").map_err(ApiError::internal)?,
                // Cast in SQL: SUM of BIGINT is NUMERIC on PostgreSQL, which
                // the Any driver cannot decode.
                quantity: row.try_get("quantity").map_err(ApiError::internal)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    // The budget under the budgets routes' own rules: `budgets:read`, and
    // admin for another user's.
    let user = q.user_id.as_deref().unwrap_or(&principal.user_id);
    let may_see_budget = principal.require_scope("budgets:read").is_ok()
        && (q.agent_id.is_some() || user == principal.user_id || principal.role >= Role::Admin);
    let budget = if may_see_budget {
        budget_alongside(&state, tenant, q.agent_id.as_deref(), user).await?
    } else {
        None
    };
    Ok(Json(UsageReport {
        from: from.to_string(),
        to: to.to_string(),
        group_by: group_by
            .iter()
            .map(|c| c.trim_end_matches("_id").to_owned())
            .collect(),
        rows,
        truncated,
        budget,
    }))
}

/// The budget shown alongside usage: the agent's when the query names one
/// (already checked to be the tenant's), otherwise the user's. `None` when
/// there is no budget account (yet).
async fn budget_alongside(
    state: &AppState,
    tenant: &str,
    agent: Option<&str>,
    user: &str,
) -> Result<Option<Value>, ApiError> {
    let value = match agent {
        Some(agent) => crate::budgets::agent_budget(&state.db, agent)
            .await
            .map_err(ApiError::internal)?
            .map(serde_json::to_value),
        None => crate::budgets::user_budget(&state.db, tenant, user)
            .await
            .map_err(ApiError::internal)?
            .map(serde_json::to_value),
    };
    value.transpose().map_err(ApiError::internal)
}

async fn has_usage(db: &Db, tenant: &str, column: &str, value: &str) -> Result<bool, ApiError> {
    let sql = format!("SELECT 1 FROM usage_daily WHERE tenant_id = $1 AND {column} = $2 LIMIT 1");
    Ok(sqlx::query(&sql)
        .bind(tenant)
        .bind(value)
        .fetch_optional(db.pool())
        .await
        .map_err(ApiError::internal)?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use delta_node_api::{LlmTokens, MessageCounts};

    #[test]
    fn a_record_adds_every_kind_once() {
        let mut record = RunUsage {
            run_id: "r1".into(),
            agent_id: "agt_a".into(),
            tenant_id: "t1".into(),
            outcome: "completed".into(),
            fuel_used: 7,
            wall_time_us: 9,
            finished_at_ms: 1_795_478_399_999,
            ..RunUsage::default()
        };
        record.llm.insert(
            "m1".into(),
            LlmTokens {
                calls: 2,
                input_tokens: 30,
                output_tokens: 40,
            },
        );
        record.messages.insert(
            "email".into(),
            MessageCounts {
                sent: 1,
                refused: 2,
                tokens: 5,
            },
        );
        let mut totals = HashMap::new();
        add_quantities(&mut totals, &record, "usr_1");
        add_quantities(&mut totals, &record, "usr_1");
        let get = |kind: &str, detail: &str| {
            totals
                .iter()
                .find(|((_, day, _, user, k, d), _)| {
                    utc_day(day * DAY_MS) == "2026-11-23"
                        && *user == "usr_1"
                        && *k == kind
                        && *d == detail
                })
                .map(|(_, q)| *q)
        };
        assert_eq!(get("runs", "completed"), Some(2));
        assert_eq!(get("fuel", ""), Some(14));
        assert_eq!(get("llm_input_tokens", "m1"), Some(60));
        assert_eq!(get("llm_output_tokens", "m1"), Some(80));
        assert_eq!(get("messages_refused", "email"), Some(4));
        assert_eq!(totals.len(), 9);
    }
}
