//! Message templates, per-agent recipients, and what nodes are told about
//! both.
//!
//! # Templates
//! A template belongs to a tenant: a channel (`email` or `sms`), a subject
//! (email only) and a body in minijinja, `html` (email only) and the
//! variables a guest may pass, each with its longest accepted value. Its
//! `name` is the id a guest sends (`messaging.send(template-id: "welcome")`)
//! and is unique in the tenant; grants name templates by id (`tpl_...`) or
//! by name.
//!
//! Life cycle: created as `draft`; an admin approves it (`approved`, who and
//! when recorded) or rejects it (`rejected`, with a reason). Any change of
//! its content returns it to `draft` and bumps `version`, so an edit is
//! never usable before an admin approved that very version (approve and
//! reject take an optional `version` to make sure of it). Only approved
//! templates can be sent. Every change is audited in its transaction:
//! `template_created`, `template_updated`, `template_approved`,
//! `template_rejected`, `template_deleted`.
//!
//! Templates are checked when written, with the code nodes use
//! ([`delta_templates::check_template`]): the safe syntax subset, strict
//! compilation and a trial rendering, so a template that cannot render is a
//! 422 here, never a failure on a node.
//!
//! Roles: reading needs `member` and `templates:read`; creating, editing
//! and deleting need `member` and `templates:write` (a member may propose);
//! approving and rejecting need `admin` and `templates:write`.
//!
//! # Recipients
//! An agent's allowed recipients are its `grants.recipients` (the agents
//! row's JSON): one list, whether written through `PATCH /v1/agents/{id}` or
//! through `/v1/agents/{id}/recipients`, which checks each entry (an email
//! address, `*@domain` or an E.164 number) and changes only that list.
//! Changes are audited (`agent_recipients_set`, `agent_recipient_removed`).
//! Reading needs `member` and `agents:read`; changing needs `admin` and
//! `agents:write`, as for the rest of an agent's grants.
//!
//! # Reaching the nodes
//! A deployment's grants carry the definitions of the templates granted to
//! the agent ([`node_grants`]), approved or not (a draft then answers the
//! guest `template-not-approved`), and the node uses only those. When a
//! template or an agent's recipients change, the agents concerned are
//! redeployed to their nodes after the change is committed; a failure is
//! logged, and the node monitor's reconciliation, which compares each
//! deployment with [`desired_spec`], repairs it within a minute.

use std::collections::{BTreeMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId, record_ids};
use delta_node_api::{AgentLimits, AgentSpec, Grants};
use delta_templates::{ChannelId, TemplateConfig};
use futures_util::StreamExt as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::{self, AGENT_COLUMNS, Agent, Channel};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::{Db, new_id, now_ms};
use crate::pagination::{Page, PageQuery};

/// Prefix of template ids (`tpl_...`). Names may not start with it, so a
/// grant entry is unambiguously an id or a name.
pub const ID_PREFIX: &str = "tpl";

/// Longest template name, bytes.
const MAX_NAME: usize = 64;
/// Longest subject source, bytes (an email header line's limit).
const MAX_SUBJECT: usize = 998;
/// Longest body source, bytes.
const MAX_BODY: usize = 64 * 1024;
/// Most variables of one template.
const MAX_VARIABLES: usize = 64;
/// Largest per-variable maximum length, characters.
const MAX_VARIABLE_LEN: u32 = 4096;
/// Longest rejection reason, characters.
const MAX_REASON: usize = 1000;
/// Most recipients of one agent (as for every grant list), longest entry.
const MAX_RECIPIENTS: usize = 256;
const MAX_RECIPIENT_LEN: usize = 256;
/// Agents redeployed at once after a change.
const REDEPLOY_CONCURRENCY: usize = 4;
/// Attempts at a read-modify-write of an agent's grants that raced with
/// another change.
const GRANT_WRITE_ATTEMPTS: usize = 5;

pub(crate) const TEMPLATE_COLUMNS: &str = "id, tenant_id, name, channel, subject, body, html, variables, \
     status, version, created_by, created_at_ms, updated_by, updated_at_ms, approved_by, \
     approved_at_ms, rejected_by, rejected_at_ms, rejection_reason";

// ---- shapes ----------------------------------------------------------------

/// Where a template is in its review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateStatus {
    /// New or changed since its last review: not usable.
    Draft,
    /// Approved by a tenant admin, waiting for a platform operator's
    /// approval (`[templates] operator_review`): not usable.
    #[serde(rename = "pending_operator")]
    PendingOperator,
    /// Approved by an admin: usable by the agents granted it.
    Approved,
    /// Rejected by an admin: not usable.
    Rejected,
}

impl TemplateStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::PendingOperator => "pending_operator",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(Self::Draft),
            "pending_operator" => Some(Self::PendingOperator),
            "approved" => Some(Self::Approved),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

fn channel_str(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Sms => "sms",
    }
}

fn parse_channel(s: &str) -> Option<Channel> {
    match s {
        "email" => Some(Channel::Email),
        "sms" => Some(Channel::Sms),
        _ => None,
    }
}

fn channel_id(channel: Channel) -> ChannelId {
    match channel {
        Channel::Email => ChannelId::Email,
        Channel::Sms => ChannelId::Sms,
    }
}

/// A message template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Template {
    /// `tpl_...`.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// What guests send as the template id; unique in the tenant.
    pub name: String,
    /// `email` or `sms`.
    pub channel: Channel,
    /// Subject template (email only).
    pub subject: Option<String>,
    /// Body template.
    pub body: String,
    /// Whether the body is HTML (variables are escaped; email only).
    pub html: bool,
    /// Variables a guest may pass, each with its longest value in
    /// characters.
    pub variables: BTreeMap<String, u32>,
    /// `draft`, `approved` or `rejected`.
    pub status: TemplateStatus,
    /// Bumped by every change of content; approvals name the version.
    pub version: i64,
    /// Who created it.
    pub created_by: Option<String>,
    /// Created at.
    pub created_at_ms: i64,
    /// Who changed it last (content or review).
    pub updated_by: Option<String>,
    /// Last changed at.
    pub updated_at_ms: i64,
    /// Who approved this version.
    pub approved_by: Option<String>,
    /// When this version was approved.
    pub approved_at_ms: Option<i64>,
    /// Who rejected this version.
    pub rejected_by: Option<String>,
    /// When this version was rejected.
    pub rejected_at_ms: Option<i64>,
    /// Why it was rejected.
    pub rejection_reason: Option<String>,
}

impl Template {
    /// The definition a node compiles: the guest-facing id is the name.
    fn to_config(&self) -> TemplateConfig {
        TemplateConfig {
            id: self.name.clone(),
            channel: channel_id(self.channel),
            subject: self.subject.clone(),
            body: self.body.clone(),
            html: self.html,
            variables: self.variables.keys().cloned().collect(),
            // Every variable has its own limit below; this one is unused.
            max_variable_len: MAX_VARIABLE_LEN as usize,
            max_lengths: self
                .variables
                .iter()
                .map(|(name, len)| (name.clone(), *len as usize))
                .collect(),
            approved: self.status == TemplateStatus::Approved,
        }
    }

    /// The parts a change of which sends it back to draft.
    fn content(&self) -> impl PartialEq + '_ {
        (
            &self.name,
            self.channel,
            &self.subject,
            &self.body,
            self.html,
            &self.variables,
        )
    }
}

/// Body of `POST /v1/templates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    /// What guests send as the template id: 1-64 of letters, digits, `_`,
    /// `-`, `.`, starting with a letter or digit, not `tpl_...`.
    #[schema(pattern = r"^(?!tpl_)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    pub name: String,
    /// `email` or `sms`.
    pub channel: Channel,
    /// Required for email, absent for SMS; a single line.
    pub subject: Option<String>,
    /// The body template.
    pub body: String,
    /// HTML body (email only). Default false.
    #[serde(default)]
    pub html: bool,
    /// Variable name -> longest value in characters (1-4096). Every
    /// variable the subject and body use must be here. Default none.
    #[serde(default)]
    pub variables: BTreeMap<String, u32>,
}

/// Body of `PATCH /v1/templates/{id}`: what is given is replaced. A change
/// returns the template to `draft`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    /// New name.
    #[schema(pattern = r"^(?!tpl_)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    pub name: Option<String>,
    /// New channel.
    pub channel: Option<Channel>,
    /// New subject; `null` removes it (switching to SMS).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub subject: Option<Option<String>>,
    /// New body.
    pub body: Option<String>,
    /// New HTML flag.
    pub html: Option<bool>,
    /// New variables (the whole map).
    pub variables: Option<BTreeMap<String, u32>>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Body of `POST /v1/templates/{id}/approve` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Approve only if the template is still at this version (409
    /// `version_mismatch` otherwise).
    pub version: Option<i64>,
}

/// Body of `POST /v1/templates/{id}/reject` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// Reject only if the template is still at this version.
    pub version: Option<i64>,
    /// Why (up to 1000 characters), shown with the template.
    pub reason: Option<String>,
}

/// `?status=&channel=` of `GET /v1/templates`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateFilter {
    /// `draft`, `approved` or `rejected`.
    #[param(pattern = "^(draft|approved|rejected)$")]
    pub status: Option<String>,
    /// `email` or `sms`.
    #[param(pattern = "^(email|sms)$")]
    pub channel: Option<String>,
}

/// An agent's allowed recipients.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Recipients {
    /// The agent.
    pub agent_id: String,
    /// Email addresses, `*@domain` entries and E.164 numbers.
    pub recipients: Vec<String>,
}

/// Body of `PUT /v1/agents/{id}/recipients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRecipients {
    /// The whole list (duplicates are dropped; at most 256 entries).
    pub recipients: Vec<String>,
}

// ---- routes ----------------------------------------------------------------

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_template, list_templates))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(approve_template))
        .routes(routes!(reject_template))
        .routes(routes!(get_recipients, set_recipients))
        .routes(routes!(delete_recipient))
        .merge(crate::template_review::routes())
}

// ---- storage ---------------------------------------------------------------

pub(crate) fn template_from_row(row: &AnyRow) -> Result<Template, sqlx::Error> {
    let decode =
        |index: &str, source: Box<dyn std::error::Error + Send + Sync>| sqlx::Error::ColumnDecode {
            index: index.to_owned(),
            source,
        };
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let variables: String = row.try_get("variables")?;
    Ok(Template {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        channel: parse_channel(&channel)
            .ok_or_else(|| decode("channel", format!("unknown channel {channel:?}").into()))?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        html: row.try_get::<i64, _>("html")? != 0,
        variables: serde_json::from_str(&variables).map_err(|e| decode("variables", e.into()))?,
        status: TemplateStatus::parse(&status)
            .ok_or_else(|| decode("status", format!("unknown status {status:?}").into()))?,
        version: row.try_get("version")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_by: row.try_get("updated_by")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        approved_by: row.try_get("approved_by")?,
        approved_at_ms: row.try_get("approved_at_ms")?,
        rejected_by: row.try_get("rejected_by")?,
        rejected_at_ms: row.try_get("rejected_at_ms")?,
        rejection_reason: row.try_get("rejection_reason")?,
    })
}

/// The tenant's template `id`, or 404 (also for another tenant's id).
pub(crate) async fn load_template(db: &Db, tenant: &str, id: &str) -> Result<Template, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(db.pool())
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("template"))?;
    template_from_row(&row).map_err(ApiError::internal)
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(
        "name_taken",
        format!("this tenant already has a template named {name:?}"),
    )
}

/// Store `t` as a whole with its audit row, in one transaction: an insert,
/// or with `expected` an update of the row still at that version and status
/// (409 `conflict` when another change came first).
pub(crate) async fn write_template(
    state: &AppState,
    t: &Template,
    expected: Option<(i64, TemplateStatus)>,
    action: &str,
    detail: serde_json::Value,
    principal: &Principal,
    rid: &RequestId,
) -> Result<(), ApiError> {
    let variables = serde_json::to_string(&t.variables).map_err(ApiError::internal)?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let written = match expected {
        None => {
            sqlx::query(&format!(
                "INSERT INTO templates ({TEMPLATE_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
            ))
            .bind(&t.id)
            .bind(&t.tenant_id)
            .bind(&t.name)
            .bind(channel_str(t.channel))
            .bind(t.subject.clone())
            .bind(&t.body)
            .bind(i64::from(t.html))
            .bind(&variables)
            .bind(t.status.as_str())
            .bind(t.version)
            .bind(t.created_by.clone())
            .bind(t.created_at_ms)
            .bind(t.updated_by.clone())
            .bind(t.updated_at_ms)
            .bind(t.approved_by.clone())
            .bind(t.approved_at_ms)
            .bind(t.rejected_by.clone())
            .bind(t.rejected_at_ms)
            .bind(t.rejection_reason.clone())
            .execute(&mut *tx)
            .await
        }
        Some((version, status)) => {
            sqlx::query(
                "UPDATE templates SET name = $1, channel = $2, subject = $3, body = $4, html = $5, \
                 variables = $6, status = $7, version = $8, updated_by = $9, updated_at_ms = $10, \
                 approved_by = $11, approved_at_ms = $12, rejected_by = $13, rejected_at_ms = $14, \
                 rejection_reason = $15 \
                 WHERE id = $16 AND tenant_id = $17 AND version = $18 AND status = $19",
            )
            .bind(&t.name)
            .bind(channel_str(t.channel))
            .bind(t.subject.clone())
            .bind(&t.body)
            .bind(i64::from(t.html))
            .bind(&variables)
            .bind(t.status.as_str())
            .bind(t.version)
            .bind(t.updated_by.clone())
            .bind(t.updated_at_ms)
            .bind(t.approved_by.clone())
            .bind(t.approved_at_ms)
            .bind(t.rejected_by.clone())
            .bind(t.rejected_at_ms)
            .bind(t.rejection_reason.clone())
            .bind(&t.id)
            .bind(&t.tenant_id)
            .bind(version)
            .bind(status.as_str())
            .execute(&mut *tx)
            .await
        }
    };
    match written {
        Ok(done) if done.rows_affected() == 1 => {}
        Ok(_) => {
            return Err(ApiError::conflict(
                "conflict",
                "the template changed meanwhile; read it again and retry",
            ));
        }
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            return Err(name_taken(&t.name));
        }
        Err(e) => return Err(ApiError::internal(e)),
    }
    audit::record_in(
        &mut tx,
        Some(&t.tenant_id),
        Some(&principal.user_id),
        action,
        detail,
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)
}

// ---- validation ------------------------------------------------------------

fn validate_name(name: &str) -> Result<(), ApiError> {
    let mut bytes = name.bytes();
    let shape_ok = name.len() <= MAX_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !shape_ok || name.starts_with(&format!("{ID_PREFIX}_")) {
        return Err(ApiError::invalid(format!(
            "name must be 1-{MAX_NAME} letters, digits, '_', '-' or '.', start with a letter \
             or digit, and not start with {ID_PREFIX}_"
        )));
    }
    Ok(())
}

/// Sizes here, then everything a node checks (declaration, safe subset,
/// strict compilation, a trial rendering) through the messaging crate.
fn validate_template(t: &Template) -> Result<(), ApiError> {
    validate_name(&t.name)?;
    if t.subject.as_ref().is_some_and(|s| s.len() > MAX_SUBJECT) {
        return Err(ApiError::invalid(format!(
            "subject may have at most {MAX_SUBJECT} bytes"
        )));
    }
    if t.body.len() > MAX_BODY {
        return Err(ApiError::invalid(format!(
            "body may have at most {MAX_BODY} bytes"
        )));
    }
    if t.variables.len() > MAX_VARIABLES {
        return Err(ApiError::invalid(format!(
            "at most {MAX_VARIABLES} variables"
        )));
    }
    if let Some((name, _)) = t
        .variables
        .iter()
        .find(|(_, len)| **len == 0 || **len > MAX_VARIABLE_LEN)
    {
        return Err(ApiError::invalid(format!(
            "variables.{name}: the longest value must be 1-{MAX_VARIABLE_LEN} characters"
        )));
    }
    delta_templates::check_template(&t.to_config()).map_err(|e| {
        let reason = e.reason;
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_template",
            format!("the template cannot be used: {reason}"),
        )
        .details(json!({ "reason": reason }))
    })
}

/// A JSON body that may be empty (approve, reject).
pub(crate) fn optional_body<T: for<'de> Deserialize<'de> + Default>(
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // `null` is no body too (the body is optional).
    delta_http::from_json_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))
}

// ---- template handlers -----------------------------------------------------

/// Create a template (as a draft).
#[utoipa::path(
    post,
    path = "/v1/templates",
    tag = "templates",
    request_body = CreateTemplate,
    responses(
        (status = 201, description = "Created as a draft", body = Template),
        (status = 409, description = "`name_taken`"),
        (status = 422, description = "`invalid`, or `invalid_template` (it could not be \
                                      rendered; `details.reason` says why)"),
    ),
    security(("bearer" = []))
)]
async fn create_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<CreateTemplate>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:write")?;
    let now = now_ms();
    let template = Template {
        id: new_id(ID_PREFIX),
        tenant_id: principal.tenant_id.clone(),
        name: body.name,
        channel: body.channel,
        subject: body.subject,
        body: body.body,
        html: body.html,
        variables: body.variables,
        status: TemplateStatus::Draft,
        version: 1,
        created_by: Some(principal.user_id.clone()),
        created_at_ms: now,
        updated_by: Some(principal.user_id.clone()),
        updated_at_ms: now,
        approved_by: None,
        approved_at_ms: None,
        rejected_by: None,
        rejected_at_ms: None,
        rejection_reason: None,
    };
    validate_template(&template)?;
    write_template(
        &state,
        &template,
        None,
        "template_created",
        json!({ "template_id": template.id, "name": template.name,
                "channel": template.channel, "version": template.version }),
        &principal,
        &rid,
    )
    .await?;
    // A grant may name it already (by name): those agents learn it exists.
    redeploy_granted(&state, &template.tenant_id, &template_keys(&template, None)).await;
    Ok((StatusCode::CREATED, Json(template)).into_response())
}

/// List this tenant's templates, oldest first.
#[utoipa::path(
    get,
    path = "/v1/templates",
    tag = "templates",
    params(PageQuery, TemplateFilter),
    responses(
        (status = 200, description = "A page", body = Page<Template>),
        (status = 422, description = "Unknown status or channel"),
    ),
    security(("bearer" = []))
)]
async fn list_templates(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<TemplateFilter>,
) -> Result<Json<Page<Template>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:read")?;
    let status = match filter.status.as_deref() {
        None => "",
        Some(s) => TemplateStatus::parse(s)
            .ok_or_else(|| {
                ApiError::invalid("status must be draft, pending_operator, approved or rejected")
            })?
            .as_str(),
    };
    let channel = match filter.channel.as_deref() {
        None => "",
        Some(c) => channel_str(
            parse_channel(c).ok_or_else(|| ApiError::invalid("channel must be email or sms"))?,
        ),
    };
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM templates \
         WHERE tenant_id = $1 AND (created_at_ms, id) > ($2, $3) \
         AND ($5 = '' OR status = $5) AND ($6 = '' OR channel = $6) \
         ORDER BY created_at_ms, id LIMIT $4"
    ))
    .bind(&principal.tenant_id)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .bind(status)
    .bind(channel)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(template_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |t| {
        (t.created_at_ms, t.id.clone())
    })))
}

/// One template.
#[utoipa::path(
    get,
    path = "/v1/templates/{id}",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses(
        (status = 200, description = "The template", body = Template),
        (status = 404, description = "No such template in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_template(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:read")?;
    Ok(Json(
        load_template(&state.db, &principal.tenant_id, &id).await?,
    ))
}

/// Change a template. Any change of content returns it to `draft` (an
/// approved template stops being usable until an admin approves the new
/// version); a body that changes nothing changes nothing.
#[utoipa::path(
    patch,
    path = "/v1/templates/{id}",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body = UpdateTemplate,
    responses(
        (status = 200, description = "Changed (now a draft) or unchanged", body = Template),
        (status = 404, description = "No such template in this tenant"),
        (status = 409, description = "`name_taken`, or `conflict` (changed meanwhile)"),
        (status = 422, description = "`invalid` or `invalid_template`"),
    ),
    security(("bearer" = []))
)]
async fn update_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateTemplate>,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:write")?;
    let current = load_template(&state.db, &principal.tenant_id, &id).await?;
    let mut next = current.clone();
    if let Some(name) = body.name {
        next.name = name;
    }
    if let Some(channel) = body.channel {
        next.channel = channel;
    }
    if let Some(subject) = body.subject {
        next.subject = subject;
    }
    if let Some(text) = body.body {
        next.body = text;
    }
    if let Some(html) = body.html {
        next.html = html;
    }
    if let Some(variables) = body.variables {
        next.variables = variables;
    }
    if next.content() == current.content() {
        return Ok(Json(current));
    }
    validate_template(&next)?;
    next.status = TemplateStatus::Draft;
    next.version = current.version + 1;
    next.updated_by = Some(principal.user_id.clone());
    next.updated_at_ms = now_ms().max(current.updated_at_ms + 1);
    next.approved_by = None;
    next.approved_at_ms = None;
    next.rejected_by = None;
    next.rejected_at_ms = None;
    next.rejection_reason = None;
    write_template(
        &state,
        &next,
        Some((current.version, current.status)),
        "template_updated",
        json!({ "template_id": next.id, "name": next.name, "version": next.version,
                "from_status": current.status.as_str(), "from_name": current.name }),
        &principal,
        &rid,
    )
    .await?;
    redeploy_granted(
        &state,
        &next.tenant_id,
        &template_keys(&next, Some(&current.name)),
    )
    .await;
    Ok(Json(next))
}

/// Delete a template. Agents granted it can no longer send it
/// (`template-not-found`); their grants keep the id until changed.
#[utoipa::path(
    delete,
    path = "/v1/templates/{id}",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such template in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn delete_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:write")?;
    let template = load_template(&state.db, &principal.tenant_id, &id).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let deleted = sqlx::query("DELETE FROM templates WHERE id = $1 AND tenant_id = $2")
        .bind(&id)
        .bind(&principal.tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::not_found("template"));
    }
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "template_deleted",
        json!({ "template_id": template.id, "name": template.name,
                "version": template.version, "status": template.status }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    redeploy_granted(
        &state,
        &principal.tenant_id,
        &template_keys(&template, None),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Approve a template (its current version): agents granted it may send
/// it. Admins only. With `[templates] operator_review` set and the tenant
/// not yet trusted, it becomes `pending_operator` instead, usable once a
/// platform operator approves it (`/v1/operator/templates`).
#[utoipa::path(
    post,
    path = "/v1/templates/{id}/approve",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body(content = Option<Approve>, description = "Optional: the version being approved"),
    responses(
        (status = 200, description = "Approved (or `pending_operator`)", body = Template),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such template in this tenant"),
        (status = 409, description = "`already_approved`, `pending_operator`, `version_mismatch` or `conflict`"),
    ),
    security(("bearer" = []))
)]
async fn approve_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("templates:write")?;
    let current = load_template(&state.db, &principal.tenant_id, &id).await?;
    let approve: Approve = optional_body(&body)?;
    check_version(&current, approve.version)?;
    if current.status == TemplateStatus::Approved {
        return Err(ApiError::conflict(
            "already_approved",
            "this version is approved already",
        ));
    }
    if current.status == TemplateStatus::PendingOperator {
        return Err(ApiError::conflict(
            "pending_operator",
            "this version is approved here and waits for a platform operator",
        ));
    }
    // The platform's operators may want to see it first (a stranger's
    // template goes out through the operator's own mail and SMS accounts).
    let status = if crate::template_review::needs_operator(&state, &principal.tenant_id).await? {
        TemplateStatus::PendingOperator
    } else {
        TemplateStatus::Approved
    };
    let now = now_ms().max(current.updated_at_ms + 1);
    let next = Template {
        status,
        updated_by: Some(principal.user_id.clone()),
        updated_at_ms: now,
        approved_by: Some(principal.user_id.clone()),
        approved_at_ms: Some(now),
        rejected_by: None,
        rejected_at_ms: None,
        rejection_reason: None,
        ..current.clone()
    };
    write_template(
        &state,
        &next,
        Some((current.version, current.status)),
        "template_approved",
        json!({ "template_id": next.id, "name": next.name, "version": next.version,
                "from_status": current.status.as_str() }),
        &principal,
        &rid,
    )
    .await?;
    redeploy_granted(&state, &next.tenant_id, &template_keys(&next, None)).await;
    Ok(Json(next))
}

/// Reject a template (its current version), with an optional reason; an
/// approved one stops being usable. Admins only.
#[utoipa::path(
    post,
    path = "/v1/templates/{id}/reject",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body(content = Option<Reject>, description = "Optional: version and reason"),
    responses(
        (status = 200, description = "Rejected", body = Template),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such template in this tenant"),
        (status = 409, description = "`already_rejected`, `version_mismatch` or `conflict`"),
        (status = 422, description = "`invalid`: reason too long"),
    ),
    security(("bearer" = []))
)]
async fn reject_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("templates:write")?;
    let current = load_template(&state.db, &principal.tenant_id, &id).await?;
    let reject: Reject = optional_body(&body)?;
    if reject
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON)
    {
        return Err(ApiError::invalid(format!(
            "reason may have at most {MAX_REASON} characters"
        )));
    }
    check_version(&current, reject.version)?;
    if current.status == TemplateStatus::Rejected {
        return Err(ApiError::conflict(
            "already_rejected",
            "this version is rejected already",
        ));
    }
    let now = now_ms().max(current.updated_at_ms + 1);
    let next = Template {
        status: TemplateStatus::Rejected,
        updated_by: Some(principal.user_id.clone()),
        updated_at_ms: now,
        approved_by: None,
        approved_at_ms: None,
        rejected_by: Some(principal.user_id.clone()),
        rejected_at_ms: Some(now),
        rejection_reason: reject.reason,
        ..current.clone()
    };
    write_template(
        &state,
        &next,
        Some((current.version, current.status)),
        "template_rejected",
        json!({ "template_id": next.id, "name": next.name, "version": next.version,
                "from_status": current.status.as_str(), "reason": next.rejection_reason }),
        &principal,
        &rid,
    )
    .await?;
    redeploy_granted(&state, &next.tenant_id, &template_keys(&next, None)).await;
    Ok(Json(next))
}

pub(crate) fn check_version(current: &Template, expected: Option<i64>) -> Result<(), ApiError> {
    match expected {
        Some(v) if v != current.version => Err(ApiError::conflict(
            "version_mismatch",
            format!(
                "the template is at version {}, not {v}: review it again",
                current.version
            ),
        )
        .details(json!({ "version": current.version }))),
        _ => Ok(()),
    }
}

// ---- recipients ------------------------------------------------------------

/// Entries checked and de-duplicated (case-insensitively, as they match),
/// in their order.
fn validate_recipients(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        if entry.len() > MAX_RECIPIENT_LEN {
            return Err(ApiError::invalid(format!(
                "a recipient may have at most {MAX_RECIPIENT_LEN} bytes"
            )));
        }
        delta_templates::check_allow_entry(&entry).map_err(|e| {
            ApiError::invalid(e.to_string()).details(json!({ "recipient": e.entry }))
        })?;
        if seen.insert(entry.to_lowercase()) {
            out.push(entry);
        }
    }
    if out.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_RECIPIENTS} recipients"
        )));
    }
    Ok(out)
}

/// Read-modify-write of an agent's recipients: `change` edits the list and
/// answers whether it changed. Retried when another change of the agent
/// came in between (its `updated_at_ms` moved); audited with `action`.
async fn change_recipients(
    state: &AppState,
    principal: &Principal,
    rid: &RequestId,
    id: &str,
    action: &str,
    change: impl Fn(&mut Vec<String>) -> Result<bool, ApiError>,
) -> Result<Agent, ApiError> {
    for _ in 0..GRANT_WRITE_ATTEMPTS {
        let mut agent = agents::load_agent(state, &principal.tenant_id, id).await?;
        if !change(&mut agent.grants.recipients)? {
            return Ok(agent);
        }
        let previous = agent.updated_at_ms;
        agent.updated_at_ms = now_ms().max(previous + 1);
        let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
        let updated = sqlx::query(
            "UPDATE agents SET grants = $1, updated_at_ms = $2 \
             WHERE id = $3 AND tenant_id = $4 AND updated_at_ms = $5",
        )
        .bind(serde_json::to_string(&agent.grants).map_err(ApiError::internal)?)
        .bind(agent.updated_at_ms)
        .bind(id)
        .bind(&principal.tenant_id)
        .bind(previous)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
        if updated.rows_affected() == 0 {
            continue;
        }
        audit::record_in(
            &mut tx,
            Some(&principal.tenant_id),
            Some(&principal.user_id),
            action,
            json!({ "agent_id": id, "recipients": agent.grants.recipients }),
            Some(&rid.0),
        )
        .await?;
        tx.commit().await.map_err(ApiError::internal)?;
        redeploy(state, &agent).await;
        return Ok(agent);
    }
    Err(ApiError::conflict(
        "conflict",
        "the agent kept changing meanwhile; retry",
    ))
}

/// An agent's allowed recipients.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/recipients",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The list", body = Recipients),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_recipients(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Recipients>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    record_ids(None, Some(&id), None);
    let agent = agents::load_agent(&state, &principal.tenant_id, &id).await?;
    Ok(Json(Recipients {
        agent_id: agent.id,
        recipients: agent.grants.recipients,
    }))
}

/// Replace an agent's allowed recipients; its node is updated.
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/recipients",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    request_body = SetRecipients,
    responses(
        (status = 200, description = "Stored", body = Recipients),
        (status = 404, description = "No such agent in this tenant"),
        (status = 422, description = "`invalid`: an entry is not an email address, \
                                      `*@domain` or an E.164 number (`details.recipient`)"),
    ),
    security(("bearer" = []))
)]
async fn set_recipients(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetRecipients>,
) -> Result<Json<Recipients>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    // The agent first: another tenant's id is a 404 whatever the body.
    agents::load_agent(&state, &principal.tenant_id, &id).await?;
    let list = validate_recipients(body.recipients)?;
    let agent = change_recipients(
        &state,
        &principal,
        &rid,
        &id,
        "agent_recipients_set",
        |current| {
            let changed = *current != list;
            current.clone_from(&list);
            Ok(changed)
        },
    )
    .await?;
    Ok(Json(Recipients {
        agent_id: agent.id,
        recipients: agent.grants.recipients,
    }))
}

/// Remove one entry from an agent's allowed recipients (compared
/// case-insensitively); its node is updated.
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}/recipients/{recipient}",
    tag = "agents",
    params(
        ("id" = String, Path, description = "Agent id"),
        ("recipient" = String, Path, description = "The entry (URL-encoded)"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such agent in this tenant, or not on its list"),
    ),
    security(("bearer" = []))
)]
async fn delete_recipient(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path((id, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    let target = recipient.to_lowercase();
    change_recipients(
        &state,
        &principal,
        &rid,
        &id,
        "agent_recipient_removed",
        |current| {
            let before = current.len();
            current.retain(|r| r.to_lowercase() != target);
            if current.len() == before {
                return Err(ApiError::not_found("recipient"));
            }
            Ok(true)
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- what nodes get --------------------------------------------------------

/// Grant entries that name `t`: its id and name (and a previous name).
pub(crate) fn template_keys(t: &Template, previous_name: Option<&str>) -> Vec<String> {
    let mut keys = vec![t.id.clone(), t.name.clone()];
    if let Some(name) = previous_name
        && name != t.name
    {
        keys.push(name.to_owned());
    }
    keys
}

/// The templates of `tenant` that `entries` (ids or names) name, by name.
async fn granted_templates(
    db: &Db,
    tenant: &str,
    entries: &[String],
) -> Result<Vec<Template>, sqlx::Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let list = (0..entries.len())
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {TEMPLATE_COLUMNS} FROM templates \
         WHERE tenant_id = $1 AND (id IN ({list}) OR name IN ({list})) ORDER BY name"
    );
    let mut query = sqlx::query(&sql).bind(tenant);
    for entry in entries {
        query = query.bind(entry);
    }
    query
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(template_from_row)
        .collect()
}

/// The grants a node gets for `agent`: models, channels and recipients as
/// stored; `templates` the names of the granted templates that exist, and
/// `message_templates` their definitions (approved or not: a draft then
/// answers `template-not-approved`). Always `Some`, so the node never falls
/// back to its own configured templates for a control-plane agent.
pub async fn node_grants(db: &Db, agent: &Agent) -> Result<Grants, sqlx::Error> {
    let templates = granted_templates(db, &agent.tenant_id, &agent.grants.templates).await?;
    Ok(Grants {
        models: agent.grants.models.clone(),
        channels: agent
            .grants
            .channels
            .iter()
            .map(|c| channel_id(*c))
            .collect(),
        templates: templates.iter().map(|t| t.name.clone()).collect(),
        recipients: agent.grants.recipients.clone(),
        message_templates: Some(templates.iter().map(Template::to_config).collect()),
        kv: agent.grants.kv,
        http: agent
            .grants
            .http
            .as_ref()
            .map(|h| delta_node_api::HttpGrant {
                hosts: h.hosts.clone(),
                secrets: h.secrets.clone(),
            }),
        agents: agent.grants.agents.clone(),
    })
}

/// What `agent`'s deployment should be, as the node stores it; the node
/// monitor redeploys a deployment that differs.
pub async fn desired_spec(db: &Db, agent: &Agent) -> Result<AgentSpec, sqlx::Error> {
    Ok(AgentSpec {
        tenant_id: agent.tenant_id.clone(),
        component: agent.component.clone(),
        limits: AgentLimits {
            fuel: agent.limits.fuel,
            memory_bytes: agent.limits.memory_bytes,
            timeout_ms: agent.limits.timeout_ms,
        },
        grants: node_grants(db, agent).await?,
    })
}

/// Redeploy `agent` to its node if the node is up; failures are logged
/// (a node that is down gets the agent's current state when the monitor
/// re-places it, one that is up at its next reconciliation).
async fn redeploy(state: &AppState, agent: &Agent) -> bool {
    let Some(node_id) = &agent.node_id else {
        return false;
    };
    match crate::nodes::up_node(state, node_id).await {
        Ok(Some(node)) => match agents::redeploy_current(state, &node, &agent.id).await {
            Ok(deployed) => deployed,
            Err(e) => {
                tracing::warn!(agent = %agent.id, node = %node_id, error = %e,
                    "redeploying after a template or recipient change; reconciliation retries");
                false
            }
        },
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(agent = %agent.id, error = %e, "looking up an agent's node");
            false
        }
    }
}

/// Redeploy the tenant's agents whose grants name any of `keys`.
pub(crate) async fn redeploy_granted(state: &AppState, tenant: &str, keys: &[String]) {
    let rows = match sqlx::query(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND node_id IS NOT NULL"
    ))
    .bind(tenant)
    .fetch_all(state.db.pool())
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "listing agents to redeploy after a template change");
            return;
        }
    };
    let affected: Vec<Agent> = rows
        .iter()
        .filter_map(|row| match agents::agent_from_row(row) {
            Ok(agent) => Some(agent),
            Err(e) => {
                tracing::warn!(error = %e, "an agent row that does not decode");
                None
            }
        })
        .filter(|a| a.grants.templates.iter().any(|g| keys.contains(g)))
        .collect();
    if affected.is_empty() {
        return;
    }
    let total = affected.len();
    // Owned futures: borrowed ones would make the handlers' futures fail
    // the higher-ranked `Send` check axum needs.
    let redeployed = futures_util::stream::iter(affected)
        .map(|agent| {
            let state = state.clone();
            async move { redeploy(&state, &agent).await }
        })
        .buffer_unordered(REDEPLOY_CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    tracing::info!(
        tenant,
        agents = total,
        redeployed,
        "agents redeployed after a template change"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_recipients_are_checked() {
        for ok in [
            "welcome",
            "verify-code",
            "a",
            "v1.2_x",
            &"x".repeat(MAX_NAME),
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "has space",
            "a#body",
            "tpl_0123",
            "ümlaut",
            &"x".repeat(MAX_NAME + 1),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let list = validate_recipients(vec![
            "Bob@Example.com".into(),
            "bob@example.com".into(),
            "*@corp.test".into(),
            "+14155550100".into(),
        ])
        .expect("valid");
        assert_eq!(list, ["Bob@Example.com", "*@corp.test", "+14155550100"]);
        assert!(validate_recipients(vec!["nobody".into()]).is_err());
        let many = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}@example.com"))
            .collect();
        assert!(validate_recipients(many).is_err());
    }

    #[test]
    fn a_template_becomes_the_node_s_definition() {
        let t = Template {
            id: "tpl_1".into(),
            tenant_id: "t".into(),
            name: "welcome".into(),
            channel: Channel::Email,
            subject: Some("Hi {{ name }}".into()),
            body: "Hello {{ name }}".into(),
            html: true,
            variables: BTreeMap::from([("name".into(), 32)]),
            status: TemplateStatus::Approved,
            version: 3,
            created_by: None,
            created_at_ms: 1,
            updated_by: None,
            updated_at_ms: 1,
            approved_by: None,
            approved_at_ms: None,
            rejected_by: None,
            rejected_at_ms: None,
            rejection_reason: None,
        };
        let config = t.to_config();
        assert_eq!(config.id, "welcome");
        assert!(config.approved && config.html);
        assert_eq!(config.max_lengths["name"], 32);
        assert!(validate_template(&t).is_ok());
        let draft = Template {
            status: TemplateStatus::Draft,
            ..t.clone()
        };
        assert!(!draft.to_config().approved);
        let broken = Template {
            body: "{{ name | nosuch }}".into(),
            ..t
        };
        assert_eq!(
            validate_template(&broken).map_err(|e| e.code),
            Err("invalid_template")
        );
    }
}
