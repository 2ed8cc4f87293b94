//! The shapes of bounties and submissions, their validation and their rows.

use axum::http::StatusCode;
use delta_http::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

/// Prefix of bounty ids.
pub const BOUNTY_PREFIX: &str = "bty";
/// Prefix of submission ids.
pub const SUBMISSION_PREFIX: &str = "sub";
/// Longest title, bytes.
pub const MAX_TITLE: usize = 200;
/// Longest description, bytes.
pub const MAX_DESCRIPTION: usize = 16 << 10;
/// Largest spec, bytes of its JSON.
pub const MAX_SPEC: usize = 64 << 10;
/// Claims held at once when the draft does not say.
pub const DEFAULT_MAX_CLAIMS: i64 = 10;
/// Most claims a bounty may allow.
pub const MAX_MAX_CLAIMS: i64 = 1000;

/// How submissions are approved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The business approves (a passing verdict is required).
    #[default]
    Manual,
    /// The first submission whose verdict passes is approved.
    Auto,
}

impl Policy {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Auto => "auto",
        }
    }
}

/// The verifier's limits (each clamped by the node's maximums).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifierLimits {
    /// Fuel.
    pub fuel: Option<u64>,
    /// Linear memory cap, bytes.
    pub memory_bytes: Option<u64>,
    /// Wall-clock deadline, milliseconds.
    pub timeout_ms: Option<u64>,
}

/// Body of `POST /v1/bounties`: a draft.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBounty {
    /// 1-200 bytes.
    pub title: String,
    /// Up to 16 KiB.
    #[serde(default)]
    pub description: String,
    /// The machine-readable specification handed to the verifier (any JSON
    /// document up to 64 KiB; for the json-verifier `{"expected": ...}`).
    #[schema(value_type = Object)]
    pub spec: Value,
    /// The reward in minor units (> 0).
    #[schema(minimum = 1)]
    pub reward_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Milliseconds since the epoch, in the future: unapproved at this
    /// time, the escrow is refunded.
    pub deadline_ms: i64,
    /// sha256 of an uploaded component of the tenant whose world is
    /// `verifier`.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub verifier: String,
    /// The verifier's limits.
    #[serde(default)]
    pub verifier_limits: VerifierLimits,
    /// `manual` (default) or `auto`.
    #[serde(default)]
    pub policy: Policy,
    /// How many agents may hold a claim at once (1-1000, default 10).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_claims: Option<i64>,
}

/// A bounty.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Bounty {
    /// `bty_...`.
    pub id: String,
    /// The business's tenant.
    pub tenant_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The specification.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// Minor units.
    pub reward_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Milliseconds since the epoch.
    pub deadline_ms: i64,
    /// The verifier component's sha256.
    pub verifier: String,
    /// The verifier's limits.
    pub verifier_limits: VerifierLimits,
    /// `manual` or `auto`.
    pub policy: Policy,
    /// How many agents may hold a claim at once.
    pub max_claims: i64,
    /// Claims held now (`active` or `submitted`).
    pub claims_held: i64,
    /// `draft`, `open` (funded), `completed`, `cancelled` or `expired`.
    pub status: String,
    /// The approved submission, once completed.
    pub approved_submission_id: Option<String>,
    /// Where the escrow is held, when a payments provider holds it (none:
    /// the ledger alone).
    pub payment: Option<Payment>,
    /// Created.
    pub created_at_ms: i64,
    /// Last changed.
    pub updated_at_ms: i64,
}

/// A bounty's payment at its provider.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    /// `stripe`.
    pub provider: String,
    /// The PaymentIntent (`pi_...`).
    pub payment_intent_id: String,
    /// `awaiting_payment` (the business confirms the payment with the
    /// client secret; the bounty opens when Stripe reports the card
    /// authorized), `authorized`, `capture_pending`, `captured`,
    /// `cancel_pending`, `canceled` or `capture_failed` (the operator
    /// must look: see the audit log).
    pub status: String,
    /// For Stripe.js to confirm the payment; only in the answer to
    /// `POST /v1/bounties/{id}/fund`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

pub(super) const BOUNTY_COLUMNS: &str = "id, tenant_id, title, description, spec, reward_minor, \
     currency, deadline_ms, verifier, verifier_limits, policy, status, approved_submission_id, \
     payment_provider, payment_intent_id, payment_status, max_claims, claims_held, created_at_ms, \
     updated_at_ms";

pub(super) fn bounty_from_row(row: &AnyRow) -> Result<Bounty, ApiError> {
    let e = ApiError::internal;
    let spec: String = row.try_get("spec").map_err(e)?;
    let limits: String = row.try_get("verifier_limits").map_err(e)?;
    let policy: String = row.try_get("policy").map_err(e)?;
    Ok(Bounty {
        id: row.try_get("id").map_err(e)?,
        tenant_id: row.try_get("tenant_id").map_err(e)?,
        title: row.try_get("title").map_err(e)?,
        description: row.try_get("description").map_err(e)?,
        spec: serde_json::from_str(&spec).map_err(ApiError::internal)?,
        reward_minor: row.try_get("reward_minor").map_err(e)?,
        currency: row.try_get("currency").map_err(e)?,
        deadline_ms: row.try_get("deadline_ms").map_err(e)?,
        verifier: row.try_get("verifier").map_err(e)?,
        verifier_limits: serde_json::from_str(&limits).map_err(ApiError::internal)?,
        policy: if policy == "auto" {
            Policy::Auto
        } else {
            Policy::Manual
        },
        max_claims: row.try_get("max_claims").map_err(e)?,
        claims_held: row.try_get("claims_held").map_err(e)?,
        status: row.try_get("status").map_err(e)?,
        approved_submission_id: row.try_get("approved_submission_id").map_err(e)?,
        payment: payment_from_row(row)?,
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(e)?,
    })
}

fn payment_from_row(row: &AnyRow) -> Result<Option<Payment>, ApiError> {
    let e = ApiError::internal;
    let provider: String = row.try_get("payment_provider").map_err(e)?;
    let intent: Option<String> = row.try_get("payment_intent_id").map_err(e)?;
    let status: Option<String> = row.try_get("payment_status").map_err(e)?;
    Ok(match (intent, status) {
        (Some(payment_intent_id), Some(status)) if provider != "ledger" => Some(Payment {
            provider,
            payment_intent_id,
            status,
            client_secret: None,
        }),
        _ => None,
    })
}

/// Body of `POST /v1/bounties/{id}/submissions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubmission {
    /// One of the caller's tenant's agents. It must hold a claim on the
    /// bounty; without one, a claim is made first if the bounty has room
    /// (409 `claims_full` otherwise), so a direct submission still works.
    pub agent_id: String,
    /// The work: any JSON document (a string for text), at most
    /// `max_submission_bytes` as JSON. The verifier receives it as is.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// A submission.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Submission {
    /// `sub_...`.
    pub id: String,
    /// The bounty.
    pub bounty_id: String,
    /// The submitter's tenant.
    pub tenant_id: String,
    /// The submitting agent.
    pub agent_id: String,
    /// sha256 of the payload's JSON text.
    pub sha256: String,
    /// The payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `pending_verification` (no node could verify it yet: retried by the
    /// sweep or `POST /v1/submissions/{id}/verify`), `verified` (see
    /// `passed`), `verification_failed` (the verifier trapped, timed out or
    /// answered garbage; never approved), `approved` or `rejected`.
    pub status: String,
    /// The verdict, once verified.
    pub passed: Option<bool>,
    /// The verdict's score in thousandths.
    pub score_milli: Option<i64>,
    /// The verdict's reasons, or why verification failed or is pending.
    #[schema(value_type = Object)]
    pub report: Option<Value>,
    /// Verification attempts made.
    pub attempts: i64,
    /// The uploaded file, for an artifact submission (its payload is then
    /// `{"artifact": {"sha256", "size_bytes"}}`); download it through
    /// `GET /v1/submissions/{id}/artifact`.
    pub artifact: Option<super::artifacts::ArtifactRef>,
    /// Created.
    pub created_at_ms: i64,
    /// Last changed.
    pub updated_at_ms: i64,
}

pub(super) const SUBMISSION_COLUMNS: &str = "id, bounty_id, tenant_id, agent_id, sha256, payload, \
     status, passed, score_milli, report, attempts, artifact_sha256, artifact_bytes, \
     created_at_ms, updated_at_ms";

pub(super) fn submission_from_row(row: &AnyRow) -> Result<Submission, ApiError> {
    let e = ApiError::internal;
    let payload: String = row.try_get("payload").map_err(e)?;
    let report: Option<String> = row.try_get("report").map_err(e)?;
    let passed: Option<i64> = row.try_get("passed").map_err(e)?;
    Ok(Submission {
        id: row.try_get("id").map_err(e)?,
        bounty_id: row.try_get("bounty_id").map_err(e)?,
        tenant_id: row.try_get("tenant_id").map_err(e)?,
        agent_id: row.try_get("agent_id").map_err(e)?,
        sha256: row.try_get("sha256").map_err(e)?,
        payload: serde_json::from_str(&payload).map_err(ApiError::internal)?,
        status: row.try_get("status").map_err(e)?,
        passed: passed.map(|p| p != 0),
        score_milli: row.try_get("score_milli").map_err(e)?,
        report: report
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(ApiError::internal)?,
        attempts: row.try_get("attempts").map_err(e)?,
        artifact: match (
            row.try_get::<Option<String>, _>("artifact_sha256")
                .map_err(e)?,
            row.try_get::<Option<i64>, _>("artifact_bytes").map_err(e)?,
        ) {
            (Some(sha256), Some(size_bytes)) => {
                Some(super::artifacts::ArtifactRef { sha256, size_bytes })
            }
            _ => None,
        },
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(e)?,
    })
}

/// Check a draft; 422 with a code naming what is wrong.
pub(super) fn validate(b: &NewBounty, now: i64) -> Result<(), ApiError> {
    let bad =
        |code: &'static str, m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, m);
    if b.title.trim().is_empty()
        || b.title.len() > MAX_TITLE
        || b.title.chars().any(char::is_control)
    {
        return Err(bad(
            "invalid_title",
            format!("title must be 1-{MAX_TITLE} bytes without control characters"),
        ));
    }
    if b.description.len() > MAX_DESCRIPTION {
        return Err(bad(
            "invalid_description",
            format!("description must be at most {MAX_DESCRIPTION} bytes"),
        ));
    }
    if b.spec.to_string().len() > MAX_SPEC {
        return Err(bad(
            "invalid_spec",
            format!("spec must be at most {MAX_SPEC} bytes of JSON"),
        ));
    }
    if b.reward_minor <= 0 {
        return Err(bad(
            "invalid_reward",
            "reward_minor must be a positive number of minor units".to_owned(),
        ));
    }
    if !delta_money::valid_currency(&b.currency) {
        return Err(bad(
            "invalid_currency",
            "currency must be an ISO 4217 code (three upper-case letters)".to_owned(),
        ));
    }
    if b.deadline_ms <= now {
        return Err(bad(
            "invalid_deadline",
            "deadline_ms must be in the future".to_owned(),
        ));
    }
    if let Some(n) = b.max_claims
        && !(1..=MAX_MAX_CLAIMS).contains(&n)
    {
        return Err(bad(
            "invalid_max_claims",
            format!("max_claims must be 1-{MAX_MAX_CLAIMS}"),
        ));
    }
    if b.verifier.len() != 64 || !b.verifier.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(
            "invalid_verifier",
            "verifier must be the sha256 (64 hex digits) of an uploaded component".to_owned(),
        ));
    }
    Ok(())
}

/// Prefix of claim ids.
pub const CLAIM_PREFIX: &str = "clm";
/// Prefix of attempt ids.
pub const ATTEMPT_PREFIX: &str = "att";

/// Body of `POST /v1/bounties/{id}/claims` and `POST /v1/bounties/{id}/attempts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// One of the caller's tenant's agents.
    pub agent_id: String,
}

/// An agent's claim on a bounty.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Claim {
    /// `clm_...`.
    pub id: String,
    /// The bounty.
    pub bounty_id: String,
    /// The claiming agent.
    pub agent_id: String,
    /// The agent's tenant.
    pub tenant_id: String,
    /// `active` (held, nothing submitted yet), `submitted` (held, work
    /// submitted), `released` (given up by its tenant) or `expired` (the
    /// bounty closed).
    pub status: String,
    /// Created.
    pub created_at_ms: i64,
    /// Last changed.
    pub updated_at_ms: i64,
}

pub(super) const CLAIM_COLUMNS: &str =
    "id, bounty_id, agent_id, tenant_id, status, created_at_ms, updated_at_ms";

pub(super) fn claim_from_row(row: &AnyRow) -> Result<Claim, ApiError> {
    let e = ApiError::internal;
    Ok(Claim {
        id: row.try_get("id").map_err(e)?,
        bounty_id: row.try_get("bounty_id").map_err(e)?,
        agent_id: row.try_get("agent_id").map_err(e)?,
        tenant_id: row.try_get("tenant_id").map_err(e)?,
        status: row.try_get("status").map_err(e)?,
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(e)?,
    })
}

/// An agent run dispatched to attempt a bounty.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// `att_...`.
    pub id: String,
    /// The bounty.
    pub bounty_id: String,
    /// The claim it works under.
    pub claim_id: String,
    /// The agent.
    pub agent_id: String,
    /// The agent's tenant.
    pub tenant_id: String,
    /// Who dispatched it (submits as this user).
    #[serde(skip)]
    pub(super) user_id: String,
    /// The run (`GET /v1/runs/{id}`).
    pub run_id: String,
    /// `running`, `submitted` (its output became `submission_id`) or
    /// `failed` (see `reason`; nothing was submitted).
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// The submission made from the run's output.
    pub submission_id: Option<String>,
    /// Created.
    pub created_at_ms: i64,
    /// Last changed.
    pub updated_at_ms: i64,
}

pub(super) const ATTEMPT_COLUMNS: &str = "id, bounty_id, claim_id, agent_id, tenant_id, user_id, \
     run_id, status, reason, submission_id, created_at_ms, updated_at_ms";

pub(super) fn attempt_from_row(row: &AnyRow) -> Result<Attempt, ApiError> {
    let e = ApiError::internal;
    Ok(Attempt {
        id: row.try_get("id").map_err(e)?,
        bounty_id: row.try_get("bounty_id").map_err(e)?,
        claim_id: row.try_get("claim_id").map_err(e)?,
        agent_id: row.try_get("agent_id").map_err(e)?,
        tenant_id: row.try_get("tenant_id").map_err(e)?,
        user_id: row.try_get("user_id").map_err(e)?,
        run_id: row.try_get("run_id").map_err(e)?,
        status: row.try_get("status").map_err(e)?,
        reason: row.try_get("reason").map_err(e)?,
        submission_id: row.try_get("submission_id").map_err(e)?,
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(e)?,
    })
}
