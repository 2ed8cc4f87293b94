//! Outbound events: `delta webhook-endpoints ...` (where the tenant's
//! bounty events are POSTed, `/v1/webhook-endpoints`) and `delta
//! webhook-deliveries ...` (each event's delivery, and replaying a dead
//! one).

use reqwest::Method;
use serde_json::{Value, json};

use super::output::{Column, Output, PageArgs, emit, emit_page, fetch_page, segment, table, text};
use super::triggers::secret_lines;
use crate::client::{Api, Body};

/// `delta webhook-endpoints ...`.
#[derive(clap::Subcommand, Debug)]
pub enum EndpointsCommand {
    /// The tenant's endpoints.
    List,
    /// Register an endpoint; its signing secret is printed once.
    Create {
        /// Where events are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// An event type to send (repeat): bounty.funded,
        /// submission.created, submission.verified, bounty.completed,
        /// bounty.refunded.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// A note for people.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an endpoint (its pending deliveries are dropped).
    Delete {
        /// Endpoint id (`whep_...`).
        id: String,
    },
}

/// `delta webhook-deliveries ...`.
#[derive(clap::Subcommand, Debug)]
pub enum DeliveriesCommand {
    /// Deliveries of events to the tenant's endpoints, newest first.
    List {
        /// Only pending, delivered or dead ones.
        #[arg(long, value_parser = ["pending", "delivered", "dead"])]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Try a delivery again (pending again, at once).
    Replay {
        /// Delivery id (`whd_...`).
        id: String,
    },
}

const ENDPOINT_COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("url", "/url"),
    ("events", "/event_types"),
    ("description", "/description"),
];

const DELIVERY_COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("endpoint", "/endpoint_id"),
    ("event", "/event_type"),
    ("status", "/status"),
    ("attempts", "/attempts"),
    ("next_attempt_at_ms", "/next_attempt_at_ms"),
    ("last_error", "/last_error"),
];

/// Run `delta webhook-endpoints ...`.
pub async fn endpoints(api: &Api, out: Output, command: EndpointsCommand) -> anyhow::Result<()> {
    match command {
        EndpointsCommand::List => {
            let items = api.list("/v1/webhook-endpoints").await?;
            emit(out, &Value::Array(items), |items| {
                table(
                    ENDPOINT_COLUMNS,
                    items.as_array().map(Vec::as_slice).unwrap_or_default(),
                    "no webhook endpoints",
                );
            })
        }
        EndpointsCommand::Create {
            url,
            events,
            description,
        } => {
            let mut body = json!({ "url": url, "event_types": events });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let e = api
                .send(
                    Method::POST,
                    "/v1/webhook-endpoints",
                    Some(Body::Json(body)),
                )
                .await?;
            emit(out, &e, |e| secret_lines("created", e))
        }
        EndpointsCommand::Delete { id } => {
            api.send(
                Method::DELETE,
                &format!("/v1/webhook-endpoints/{}", segment(&id)?),
                None,
            )
            .await?;
            emit(out, &json!({ "deleted": id }), |_| {
                println!("deleted {id}");
            })
        }
    }
}

/// Run `delta webhook-deliveries ...`.
pub async fn deliveries(api: &Api, out: Output, command: DeliveriesCommand) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List { status, page } => {
            let params: Vec<(&str, String)> = status.map(|s| ("status", s)).into_iter().collect();
            let (items, next) = fetch_page(api, "/v1/webhook-deliveries", &params, &page).await?;
            emit_page(out, items, next, DELIVERY_COLUMNS, "no deliveries")
        }
        DeliveriesCommand::Replay { id } => {
            let d = api
                .send(
                    Method::POST,
                    &format!("/v1/webhook-deliveries/{}/replay", segment(&id)?),
                    None,
                )
                .await?;
            emit(out, &d, |d| {
                println!(
                    "{} is {} again ({} attempts so far)",
                    text(&d["id"]),
                    text(&d["status"]),
                    text(&d["attempts"])
                );
            })
        }
    }
}
