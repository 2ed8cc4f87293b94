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

mod handlers;
mod nodes;
mod recipients;

pub(crate) use handlers::check_version;
use handlers::*;
use nodes::*;
pub use nodes::{desired_spec, node_grants};
pub(crate) use nodes::{redeploy_granted, template_keys};
use recipients::*;

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
