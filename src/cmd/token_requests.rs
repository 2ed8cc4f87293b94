//! `delta token-requests ...` and `delta usage`: the budget approvals of
//! seed 000 and the usage report from the command line. Tables for people;
//! `--json` prints the API's answers as they are, for scripts.

use reqwest::Method;
use serde_json::json;

use super::output::{Column, Output, print_json as print, segment, table, text, with_query};
use crate::client::{Api, Body};

/// `delta token-requests ...`.
#[derive(clap::Subcommand, Debug)]
pub enum TokenRequestsCommand {
    /// Token requests of this tenant's bots (default: the pending ones).
    List {
        /// pending, approved, denied or expired.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Only this bot's requests, or those to this main agent (id or name).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Approve a pending request: the tokens move from the main agent.
    Approve {
        /// Request id.
        id: String,
    },
    /// Deny a pending request.
    Deny {
        /// Request id.
        id: String,
    },
}

/// `delta usage` options.
#[derive(clap::Args, Debug)]
pub struct UsageArgs {
    /// First day, YYYY-MM-DD (default: the first of this month).
    #[arg(long)]
    from: Option<String>,
    /// Last day, inclusive (default: today).
    #[arg(long)]
    to: Option<String>,
    /// Comma-separated subset of day, agent, user (the API's `group_by`).
    #[arg(long, conflicts_with = "by")]
    group_by: Option<String>,
    /// One breakdown: per day, per agent, or per kind only (totals of the
    /// period).
    #[arg(long, value_parser = ["day", "agent", "kind"])]
    by: Option<String>,
    /// Only this agent (id or name).
    #[arg(long)]
    agent: Option<String>,
    /// Only this kind (runs, fuel, llm_input_tokens, messages_sent, ...).
    #[arg(long)]
    kind: Option<String>,
}

/// `delta token-requests ...`.
pub async fn token_requests(
    api: &Api,
    out: Output,
    command: TokenRequestsCommand,
) -> anyhow::Result<()> {
    match command {
        TokenRequestsCommand::List { status, agent } => {
            let mut params = vec![("status", status.clone())];
            if let Some(agent) = agent {
                params.push(("agent_id", api.agent_id(&agent).await?));
            }
            let items = api
                .list(&with_query("/v1/token-requests", &params)?)
                .await?;
            if out.json {
                return print(&json!(items));
            }
            table(
                &[
                    ("id", "/id"),
                    ("bot", "/agent_id"),
                    ("amount", "/amount"),
                    ("status", "/status"),
                    ("reason", "/reason"),
                ],
                &items,
                &format!("no {status} token requests"),
            );
            Ok(())
        }
        TokenRequestsCommand::Approve { id } => decide(api, out, &id, "approve").await,
        TokenRequestsCommand::Deny { id } => decide(api, out, &id, "deny").await,
    }
}

async fn decide(api: &Api, out: Output, id: &str, verb: &str) -> anyhow::Result<()> {
    let path = format!("/v1/token-requests/{}/{verb}", segment(id)?);
    let answer = api
        .send(Method::POST, &path, Some(Body::Json(json!({}))))
        .await?;
    if out.json {
        return print(&answer);
    }
    println!(
        "{}: {} ({} tokens for {})",
        text(&answer["id"]),
        text(&answer["status"]),
        text(&answer["amount"]),
        text(&answer["agent_id"])
    );
    Ok(())
}

/// `delta usage`.
pub async fn usage(api: &Api, out: Output, args: UsageArgs) -> anyhow::Result<()> {
    let mut params = Vec::new();
    // `--by kind` asks for no grouping: the API always breaks down by kind.
    let group_by = match args.by.as_deref() {
        Some("kind") => None,
        Some(by) => Some(by.to_owned()),
        None => args.group_by,
    };
    for (name, value) in [
        ("from", args.from),
        ("to", args.to),
        ("group_by", group_by),
        ("kind", args.kind),
    ] {
        if let Some(value) = value {
            params.push((name, value));
        }
    }
    if let Some(agent) = args.agent {
        params.push(("agent_id", api.agent_id(&agent).await?));
    }
    let report = api
        .send(Method::GET, &with_query("/v1/usage", &params)?, None)
        .await?;
    if out.json {
        return print(&report);
    }
    println!("usage {} to {}", text(&report["from"]), text(&report["to"]));
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    // The grouping columns the API filled in (day, agent, user), then kind.
    let mut columns: Vec<Column<'_>> = [
        ("day", "/day"),
        ("agent", "/agent_id"),
        ("user", "/user_id"),
    ]
    .into_iter()
    .filter(|(_, p)| {
        rows.iter()
            .any(|r| r.pointer(p).is_some_and(|v| !v.is_null()))
    })
    .collect();
    columns.extend([
        ("kind", "/kind"),
        ("detail", "/detail"),
        ("quantity", "/quantity"),
    ]);
    table(&columns, &rows, "nothing used in this period");
    Ok(())
}
