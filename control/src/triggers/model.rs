//! The API's shapes of schedules and webhooks, and the checks of what a
//! caller sends (each stated in the OpenAPI document too).

use delta_http::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::cron::{CatchUp, MAX_CRON_LEN, MAX_TZ_LEN, Timing};

/// Characters of one cron field (digits, names such as `MON` or `JAN`, and
/// `* , - / L W # ?`); fields are separated by one space.
pub const CRON_PATTERN: &str = r"^[0-9A-Za-z*,/#?-]+( [0-9A-Za-z*,/#?-]+){4}$";
/// An IANA time zone name's characters (`Europe/Paris`, `Etc/GMT+5`).
pub const TZ_PATTERN: &str = r"^[A-Za-z0-9_+/-]+$";
/// Largest `jitter_secs`: an hour.
pub const MAX_JITTER_SECS: u32 = 3600;

/// After downtime: `skip` the missed ticks, or `run_once` for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpName {
    /// Fire nothing for missed ticks.
    #[default]
    Skip,
    /// Fire once for all missed ticks.
    RunOnce,
}

impl From<CatchUpName> for CatchUp {
    fn from(c: CatchUpName) -> Self {
        match c {
            CatchUpName::Skip => CatchUp::Skip,
            CatchUpName::RunOnce => CatchUp::RunOnce,
        }
    }
}

impl From<CatchUp> for CatchUpName {
    fn from(c: CatchUp) -> Self {
        match c {
            CatchUp::Skip => CatchUpName::Skip,
            CatchUp::RunOnce => CatchUpName::RunOnce,
        }
    }
}

/// A schedule: runs of an agent at the ticks of a cron expression.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// `sch_...`.
    pub id: String,
    /// The agent it runs.
    pub agent_id: String,
    /// Five fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    /// IANA time zone the expression is read in.
    pub time_zone: String,
    /// Each run's input.
    pub input: Value,
    /// After downtime.
    pub catch_up: CatchUpName,
    /// Each fire is delayed by up to this many seconds (the same delay on
    /// every replica).
    pub jitter_secs: u32,
    /// Disabled schedules do not fire.
    pub enabled: bool,
    /// When it fires next (none: disabled, or it never fires again).
    pub next_fire_at_ms: Option<i64>,
    /// When it last fired.
    pub last_fire_at_ms: Option<i64>,
    /// Created at.
    pub created_at_ms: i64,
    /// Last changed at.
    pub updated_at_ms: i64,
}

/// One fire of a schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Fire {
    /// `fire_...`.
    pub id: String,
    /// The cron tick it was for.
    pub tick_ms: i64,
    /// When it fired (the tick plus jitter, or later after downtime).
    pub fired_at_ms: i64,
    /// The run it started.
    pub run_id: Option<String>,
    /// Why no run started (`agent_paused: ...`, `node_unavailable: ...`).
    pub error: Option<String>,
}

/// Body of `POST /v1/agents/{id}/schedules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Five fields: minute hour day-of-month month day-of-week, one space
    /// apart (e.g. `*/15 9-17 * * MON-FRI`). 422 if croner refuses it or
    /// it never fires.
    #[schema(
        pattern = r"^[0-9A-Za-z*,/#?-]+( [0-9A-Za-z*,/#?-]+){4}$",
        max_length = 128
    )]
    pub cron: String,
    /// IANA time zone (default `UTC`); 422 if unknown.
    #[serde(default = "utc")]
    #[schema(
        pattern = r"^[A-Za-z0-9_+/-]+$",
        min_length = 1,
        max_length = 64,
        default = "UTC"
    )]
    pub time_zone: String,
    /// Each run's input: any JSON value (default `{}`).
    #[serde(default = "empty_object")]
    pub input: Value,
    /// After downtime (default `skip`).
    #[serde(default)]
    pub catch_up: CatchUpName,
    /// Delay each fire by up to this many seconds (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3600)]
    pub jitter_secs: u32,
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Body of `PATCH /v1/schedules/{id}`: what changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSchedule {
    /// As in creation.
    #[schema(
        pattern = r"^[0-9A-Za-z*,/#?-]+( [0-9A-Za-z*,/#?-]+){4}$",
        max_length = 128
    )]
    pub cron: Option<String>,
    /// As in creation.
    #[schema(pattern = r"^[A-Za-z0-9_+/-]+$", min_length = 1, max_length = 64)]
    pub time_zone: Option<String>,
    /// As in creation (`null` or absent: unchanged).
    pub input: Option<Value>,
    /// As in creation.
    pub catch_up: Option<CatchUpName>,
    /// As in creation.
    #[schema(minimum = 0, maximum = 3600)]
    pub jitter_secs: Option<u32>,
    /// As in creation.
    pub enabled: Option<bool>,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn empty_object() -> Value {
    json!({})
}

fn yes() -> bool {
    true
}

fn cron_shape_ok(cron: &str) -> bool {
    let field_ok = |f: &str| {
        !f.is_empty()
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*,/#?-".contains(&b))
    };
    cron.len() <= MAX_CRON_LEN && cron.split(' ').count() == 5 && cron.split(' ').all(field_ok)
}

fn tz_shape_ok(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= MAX_TZ_LEN
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+/-".contains(&b))
}

/// Check a schedule's timing fields: 422 `invalid_cron` / `invalid_time_zone`
/// naming what is wrong.
pub fn timing(cron: &str, time_zone: &str, jitter_secs: u32) -> Result<Timing, ApiError> {
    if !cron_shape_ok(cron) {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_cron",
            "cron: five fields (minute hour day-of-month month day-of-week) one space apart",
        ));
    }
    if !tz_shape_ok(time_zone) {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time_zone",
            "time_zone: an IANA name such as Europe/Paris",
        ));
    }
    if jitter_secs > MAX_JITTER_SECS {
        return Err(ApiError::invalid(format!(
            "jitter_secs: at most {MAX_JITTER_SECS}"
        )));
    }
    Timing::parse(cron, time_zone).map_err(|e| {
        let code = match e {
            super::cron::TimingError::TimeZone(_) => "invalid_time_zone",
            _ => "invalid_cron",
        };
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code,
            e.to_string(),
        )
    })
}

/// A webhook: a public URL that starts runs of an agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// `whk_...`.
    pub id: String,
    /// The agent it runs.
    pub agent_id: String,
    /// Where senders POST (relative to the control plane's address).
    pub url: String,
    /// Created at.
    pub created_at_ms: i64,
    /// When its secret was last set.
    pub rotated_at_ms: i64,
}

/// A webhook with its secret, answered once (creation, rotation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_...`: the HMAC-SHA256 key of `X-Delta-Signature`. Shown only
    /// here; rotate to get a new one.
    pub secret: String,
}

/// Query of `POST /v1/hooks/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HookQuery {
    /// Answer 200 with the finished run instead of 202.
    #[serde(default)]
    pub wait: bool,
}

/// The 202 answer of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HookAccepted {
    /// The run it started (`GET /v1/runs/{id}`).
    pub run_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_documented_patterns() {
        assert!(cron_shape_ok("*/15 9-17 * * MON-FRI"));
        assert!(!cron_shape_ok(" * * * * *"));
        assert!(!cron_shape_ok("*  * * * *"));
        assert!(!cron_shape_ok("* * * *\t*"));
        assert!(tz_shape_ok("Etc/GMT+5"));
        assert!(!tz_shape_ok("Europe Paris"));
        assert!(!tz_shape_ok(""));
        assert_eq!(
            timing("* * * * *", "Nowhere/Land", 0)
                .expect_err("refused")
                .code,
            "invalid_time_zone"
        );
    }
}
