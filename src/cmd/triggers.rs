//! What starts runs without a person: `delta schedules ...` (cron
//! schedules of an agent and their fires) and `delta webhooks ...`
//! (inbound webhooks of an agent, whose secret is shown at creation and
//! rotation only).

use reqwest::Method;
use serde_json::{Value, json};

use super::output::{
    Column, Output, PageArgs, bad_input, emit, emit_page, fetch_page, parse_json, record, segment,
    table, text,
};
use crate::client::{Api, Body};

/// `delta schedules ...`.
#[derive(clap::Subcommand, Debug)]
pub enum SchedulesCommand {
    /// An agent's schedules.
    List {
        /// Agent id or name.
        agent: String,
    },
    /// Run an agent at the ticks of a cron expression.
    Create {
        /// Agent id or name.
        agent: String,
        /// Five fields: minute hour day-of-month month day-of-week.
        #[arg(long)]
        cron: String,
        /// IANA time zone (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// Each run's input, as JSON (default `{}`).
        #[arg(long)]
        input: Option<String>,
        /// After downtime: skip the missed ticks, or run_once for them.
        #[arg(long, value_parser = ["skip", "run_once"])]
        catch_up: Option<String>,
        /// Delay each fire by up to this many seconds.
        #[arg(long)]
        jitter_secs: Option<u32>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// One schedule.
    Show {
        /// Schedule id.
        id: String,
    },
    /// Change a schedule (what is not given stays).
    Update {
        /// Schedule id.
        id: String,
        /// New cron expression.
        #[arg(long)]
        cron: Option<String>,
        /// New time zone.
        #[arg(long)]
        time_zone: Option<String>,
        /// New input, as JSON.
        #[arg(long)]
        input: Option<String>,
        /// skip or run_once.
        #[arg(long, value_parser = ["skip", "run_once"])]
        catch_up: Option<String>,
        /// New jitter.
        #[arg(long)]
        jitter_secs: Option<u32>,
        /// Enable it.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable it.
        #[arg(long)]
        disable: bool,
    },
    /// Delete a schedule.
    Delete {
        /// Schedule id.
        id: String,
    },
    /// A schedule's fires and the runs they started, newest first.
    Fires {
        /// Schedule id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
    },
}

/// `delta webhooks ...`.
#[derive(clap::Subcommand, Debug)]
pub enum WebhooksCommand {
    /// An agent's inbound webhooks.
    List {
        /// Agent id or name.
        agent: String,
    },
    /// A URL that starts runs of the agent; its secret is printed once.
    Create {
        /// Agent id or name.
        agent: String,
    },
    /// A new secret for a webhook (the old one stops working), printed once.
    RotateSecret {
        /// Webhook id (`whk_...`).
        id: String,
    },
    /// Delete a webhook.
    Delete {
        /// Webhook id.
        id: String,
    },
}

const SCHEDULE_COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("cron", "/cron"),
    ("time_zone", "/time_zone"),
    ("enabled", "/enabled"),
    ("catch_up", "/catch_up"),
    ("jitter_secs", "/jitter_secs"),
    ("input", "/input"),
];

const SCHEDULE_FIELDS: &[&str] = &[
    "id",
    "agent_id",
    "cron",
    "time_zone",
    "enabled",
    "catch_up",
    "jitter_secs",
    "input",
    "next_fire_at_ms",
    "created_at_ms",
    "updated_at_ms",
];

const FIRE_COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("tick_ms", "/tick_ms"),
    ("fired_at_ms", "/fired_at_ms"),
    ("run", "/run_id"),
    ("error", "/error"),
];

const WEBHOOK_COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("url", "/url"),
    ("created_at_ms", "/created_at_ms"),
    ("rotated_at_ms", "/rotated_at_ms"),
];

/// The fields a create or update sends, from the flags given.
fn schedule_body(
    cron: Option<String>,
    time_zone: Option<String>,
    input: Option<String>,
    catch_up: Option<String>,
    jitter_secs: Option<u32>,
) -> anyhow::Result<Value> {
    let mut body = json!({});
    if let Some(c) = cron {
        body["cron"] = json!(c);
    }
    if let Some(t) = time_zone {
        body["time_zone"] = json!(t);
    }
    if let Some(i) = input {
        body["input"] = parse_json("input", &i)?;
    }
    if let Some(c) = catch_up {
        body["catch_up"] = json!(c);
    }
    if let Some(j) = jitter_secs {
        body["jitter_secs"] = json!(j);
    }
    Ok(body)
}

fn schedule_path(id: &str) -> anyhow::Result<String> {
    Ok(format!("/v1/schedules/{}", segment(id)?))
}

/// Run `delta schedules ...`.
pub async fn schedules(api: &Api, out: Output, command: SchedulesCommand) -> anyhow::Result<()> {
    match command {
        SchedulesCommand::List { agent } => {
            let id = api.agent_id(&agent).await?;
            let items = api
                .list(&format!("/v1/agents/{}/schedules", segment(&id)?))
                .await?;
            emit(out, &Value::Array(items), |items| {
                table(
                    SCHEDULE_COLUMNS,
                    items.as_array().map(Vec::as_slice).unwrap_or_default(),
                    "no schedules",
                );
            })
        }
        SchedulesCommand::Create {
            agent,
            cron,
            time_zone,
            input,
            catch_up,
            jitter_secs,
            disabled,
        } => {
            let mut body = schedule_body(Some(cron), time_zone, input, catch_up, jitter_secs)?;
            if disabled {
                body["enabled"] = json!(false);
            }
            let id = api.agent_id(&agent).await?;
            let s = api
                .send(
                    Method::POST,
                    &format!("/v1/agents/{}/schedules", segment(&id)?),
                    Some(Body::Json(body)),
                )
                .await?;
            emit(out, &s, |s| schedule_line("created", s))
        }
        SchedulesCommand::Show { id } => {
            let s = api.send(Method::GET, &schedule_path(&id)?, None).await?;
            emit(out, &s, |s| record(s, SCHEDULE_FIELDS))
        }
        SchedulesCommand::Update {
            id,
            cron,
            time_zone,
            input,
            catch_up,
            jitter_secs,
            enable,
            disable,
        } => {
            let mut body = schedule_body(cron, time_zone, input, catch_up, jitter_secs)?;
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            if body.as_object().is_some_and(serde_json::Map::is_empty) {
                return Err(bad_input("nothing to change: give at least one option"));
            }
            let s = api
                .send(Method::PATCH, &schedule_path(&id)?, Some(Body::Json(body)))
                .await?;
            emit(out, &s, |s| schedule_line("updated", s))
        }
        SchedulesCommand::Delete { id } => {
            api.send(Method::DELETE, &schedule_path(&id)?, None).await?;
            emit(out, &json!({ "deleted": id }), |_| {
                println!("deleted {id}");
            })
        }
        SchedulesCommand::Fires { id, page } => {
            let path = format!("{}/fires", schedule_path(&id)?);
            let (items, next) = fetch_page(api, &path, &[], &page).await?;
            emit_page(out, items, next, FIRE_COLUMNS, "no fires yet")
        }
    }
}

fn schedule_line(verb: &str, s: &Value) {
    println!(
        "{verb} {} ({} {}, {})",
        text(&s["id"]),
        text(&s["cron"]),
        text(&s["time_zone"]),
        if s["enabled"] == true {
            "enabled"
        } else {
            "disabled"
        }
    );
}

/// Run `delta webhooks ...`.
pub async fn webhooks(api: &Api, out: Output, command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::List { agent } => {
            let id = api.agent_id(&agent).await?;
            let items = api
                .list(&format!("/v1/agents/{}/webhooks", segment(&id)?))
                .await?;
            emit(out, &Value::Array(items), |items| {
                table(
                    WEBHOOK_COLUMNS,
                    items.as_array().map(Vec::as_slice).unwrap_or_default(),
                    "no webhooks",
                );
            })
        }
        WebhooksCommand::Create { agent } => {
            let id = api.agent_id(&agent).await?;
            let w = api
                .send(
                    Method::POST,
                    &format!("/v1/agents/{}/webhooks", segment(&id)?),
                    None,
                )
                .await?;
            emit(out, &w, |w| secret_lines("created", w))
        }
        WebhooksCommand::RotateSecret { id } => {
            let w = api
                .send(
                    Method::POST,
                    &format!("/v1/webhooks/{}/rotate-secret", segment(&id)?),
                    None,
                )
                .await?;
            emit(out, &w, |w| secret_lines("rotated", w))
        }
        WebhooksCommand::Delete { id } => {
            api.send(
                Method::DELETE,
                &format!("/v1/webhooks/{}", segment(&id)?),
                None,
            )
            .await?;
            emit(out, &json!({ "deleted": id }), |_| {
                println!("deleted {id}");
            })
        }
    }
}

/// A webhook or endpoint with its one-time secret: the secret alone on the
/// second line (easy to cut), the warning on stderr.
pub(super) fn secret_lines(verb: &str, w: &Value) {
    println!("{verb} {} ({})", text(&w["id"]), text(&w["url"]));
    println!("{}", text(&w["secret"]));
    eprintln!("keep the secret now: it is not shown again");
}
