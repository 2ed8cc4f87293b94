//! `delta budgets ...`: seed 000's token budgets. `show` draws the tree
//! user → main agents → bots with the user's reserve pool (from
//! `GET /v1/budget` and each bot's `GET /v1/agents/{id}/budget`);
//! `allocate` and `auto-approve` are `PUT /v1/agents/{id}/budget`; `tier`
//! is the operators' `PUT /v1/budget/users/{id}`.

use reqwest::Method;
use serde_json::{Value, json};

use super::output::{Output, emit, print_json, segment, text};
use crate::client::{Api, Body};

/// `delta budgets ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BudgetsCommand {
    /// Your budget as a tree: the user's pool, main agents, their bots.
    Show,
    /// Set an agent's allocation: the difference moves from or to its
    /// parent (your pool for a main agent, the main agent for a bot).
    Allocate {
        /// Agent id or name.
        agent: String,
        /// Tokens it holds this period (and its per-period grant).
        tokens: u64,
    },
    /// Bound a main agent's bots' token requests: those up to `--limit` are
    /// approved at once, none may ask for more than `--max-request`.
    AutoApprove {
        /// Main agent id or name.
        agent: String,
        /// Requests up to this many tokens are approved without a person
        /// (0: every request waits for approval).
        #[arg(long)]
        limit: Option<u64>,
        /// The most a bot may ask for in one request.
        #[arg(long)]
        max_request: Option<u64>,
    },
    /// Put a user on a tier of the configuration (platform operators).
    Tier {
        /// User id.
        user: String,
        /// Tier name (`[tiers]` of the control plane's configuration).
        tier: String,
        /// The tenant whose account of the user changes (default: yours).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Run `delta budgets ...`.
pub async fn run(api: &Api, out: Output, command: BudgetsCommand) -> anyhow::Result<()> {
    match command {
        BudgetsCommand::Show => show(api, out).await,
        BudgetsCommand::Allocate { agent, tokens } => {
            let id = api.agent_id(&agent).await?;
            let answer = set(api, &id, json!({ "allocated": tokens })).await?;
            emit(out, &answer, |b| {
                println!(
                    "{}: allocated {}, available {} ({})",
                    text(&b["agent_id"]),
                    text(&b["allocated"]),
                    text(&b["available"]),
                    text(&b["period"])
                );
            })
        }
        BudgetsCommand::AutoApprove {
            agent,
            limit,
            max_request,
        } => {
            if limit.is_none() && max_request.is_none() {
                return Err(super::output::bad_input(
                    "give --limit and/or --max-request",
                ));
            }
            let id = api.agent_id(&agent).await?;
            let mut body = json!({});
            if let Some(l) = limit {
                body["auto_approve_limit"] = json!(l);
            }
            if let Some(m) = max_request {
                body["max_request"] = json!(m);
            }
            let answer = set(api, &id, body).await?;
            emit(out, &answer, |b| {
                println!(
                    "{}: bots' requests up to {} approved at once, at most {} per request",
                    text(&b["agent_id"]),
                    text(&b["auto_approve_limit"]),
                    text(&b["max_request"])
                );
            })
        }
        BudgetsCommand::Tier { user, tier, tenant } => {
            let mut body = json!({ "tier": tier });
            if let Some(t) = tenant {
                body["tenant_id"] = json!(t);
            }
            let answer = api
                .send(
                    Method::PUT,
                    &format!("/v1/budget/users/{}", segment(&user)?),
                    Some(Body::Json(body)),
                )
                .await?;
            emit(out, &answer, |b| {
                println!(
                    "{}: tier {}, {} tokens a month",
                    text(&b["user_id"]),
                    text(&b["tier"]),
                    text(&b["monthly_allocation"])
                );
            })
        }
    }
}

async fn set(api: &Api, agent_id: &str, body: Value) -> anyhow::Result<Value> {
    api.send(
        Method::PUT,
        &format!("/v1/agents/{}/budget", segment(agent_id)?),
        Some(Body::Json(body)),
    )
    .await
}

/// `budgets show`: the user's budget, and under each main agent its bots'
/// accounts (`--json`: `{user, bots}` with the bots' accounts by id).
async fn show(api: &Api, out: Output) -> anyhow::Result<()> {
    let user = api.send(Method::GET, "/v1/budget", None).await?;
    let agents = api.list("/v1/agents").await?;
    let mains: Vec<Value> = user["main_agents"].as_array().cloned().unwrap_or_default();
    let main_ids: Vec<&str> = mains
        .iter()
        .filter_map(|m| m["agent_id"].as_str())
        .collect();
    let mut bots = Vec::new();
    for bot in agents.iter().filter(|a| {
        a["kind"] == "bot"
            && a["parent_agent_id"]
                .as_str()
                .is_some_and(|p| main_ids.contains(&p))
    }) {
        let id = bot["id"].as_str().unwrap_or_default();
        bots.push(
            api.send(
                Method::GET,
                &format!("/v1/agents/{}/budget", segment(id)?),
                None,
            )
            .await?,
        );
    }
    if out.json {
        return print_json(&json!({ "user": user, "bots": bots }));
    }
    let name = |id: &Value| {
        agents
            .iter()
            .find(|a| &a["id"] == id)
            .and_then(|a| a["name"].as_str())
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "user {} ({} tier, {}): {} a month, {} allocated, pool {}, retired {}",
        text(&user["user_id"]),
        text(&user["tier"]),
        text(&user["period"]),
        text(&user["monthly_allocation"]),
        text(&user["allocated"]),
        text(&user["pool"]),
        text(&user["retired"])
    );
    let line = |prefix: &str, b: &Value| {
        println!(
            "{prefix}{} {}: allocated {}, spent {}, leased {}, available {}",
            name(&b["agent_id"]),
            text(&b["agent_id"]),
            text(&b["allocated"]),
            text(&b["spent"]),
            text(&b["leased"]),
            text(&b["available"])
        );
    };
    if mains.is_empty() {
        println!("└─ no main agents");
    }
    for (i, main) in mains.iter().enumerate() {
        let last_main = i + 1 == mains.len();
        line(if last_main { "└─ " } else { "├─ " }, main);
        let indent = if last_main { "   " } else { "│  " };
        println!(
            "{indent}   bots' requests up to {} approved at once, at most {} per request",
            text(&main["auto_approve_limit"]),
            text(&main["max_request"])
        );
        let own: Vec<&Value> = bots
            .iter()
            .filter(|b| b["parent_agent_id"] == main["agent_id"])
            .collect();
        for (j, bot) in own.iter().enumerate() {
            let branch = if j + 1 == own.len() {
                "└─ "
            } else {
                "├─ "
            };
            line(&format!("{indent}{branch}"), bot);
        }
    }
    Ok(())
}
