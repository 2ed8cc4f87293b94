//! `delta token-requests ...` and `delta usage`: the budget approvals of
//! seed 000 and the usage report from the command line. Tables for people;
//! `--json` prints the API's answers as they are, for scripts.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Api, ApiArgs, Body, print};

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
    /// Comma-separated subset of day, agent, user.
    #[arg(long)]
    group_by: Option<String>,
    /// Only this agent (id or name).
    #[arg(long)]
    agent: Option<String>,
    /// Only this kind (runs, fuel, llm_input_tokens, messages_sent, ...).
    #[arg(long)]
    kind: Option<String>,
}

/// Print the API's JSON answer instead of a table.
#[derive(clap::Args, Debug)]
pub struct Json {
    #[arg(long, global = true)]
    json: bool,
}

/// `delta token-requests ...`.
pub async fn token_requests(
    api: ApiArgs,
    out: Json,
    command: TokenRequestsCommand,
) -> anyhow::Result<()> {
    let api = Api::new(&api)?;
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
            if items.is_empty() {
                println!("no {status} token requests");
                return Ok(());
            }
            println!(
                "{:<34} {:<34} {:>10} {:<9} reason",
                "id", "bot", "amount", "status"
            );
            for r in &items {
                println!(
                    "{:<34} {:<34} {:>10} {:<9} {}",
                    text(&r["id"]),
                    text(&r["agent_id"]),
                    text(&r["amount"]),
                    text(&r["status"]),
                    text(&r["reason"])
                );
            }
            Ok(())
        }
        TokenRequestsCommand::Approve { id } => decide(&api, &out, &id, "approve").await,
        TokenRequestsCommand::Deny { id } => decide(&api, &out, &id, "deny").await,
    }
}

async fn decide(api: &Api, out: &Json, id: &str, verb: &str) -> anyhow::Result<()> {
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
pub async fn usage(api: ApiArgs, out: Json, args: UsageArgs) -> anyhow::Result<()> {
    let api = Api::new(&api)?;
    let mut params = Vec::new();
    for (name, value) in [
        ("from", args.from),
        ("to", args.to),
        ("group_by", args.group_by),
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
    if rows.is_empty() {
        println!("nothing used in this period");
        return Ok(());
    }
    println!(
        "{:<10} {:<34} {:<20} {:<24} {:>14}",
        "day", "agent", "kind", "detail", "quantity"
    );
    for row in &rows {
        println!(
            "{:<10} {:<34} {:<20} {:<24} {:>14}",
            text(&row["day"]),
            text(&row["agent_id"]),
            text(&row["kind"]),
            text(&row["detail"]),
            text(&row["quantity"])
        );
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `path?name=value&...`, the values percent-encoded (by `url`, through
/// reqwest's re-export).
fn with_query(path: &str, params: &[(&str, String)]) -> anyhow::Result<String> {
    if params.is_empty() {
        return Ok(path.to_owned());
    }
    let mut url = reqwest::Url::parse("http://localhost/")?;
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(format!("{path}?{}", url.query().unwrap_or_default()))
}

/// One path segment, percent-encoded.
fn segment(value: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse("http://localhost/")?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("no path segments"))?
        .push(value);
    Ok(url.path().trim_start_matches('/').to_owned())
}
