//! `delta bounties ...` and `delta ledger balance`: the bounty marketplace
//! through the control plane's API (`/v1/bounties`, `/v1/submissions`,
//! `/v1/ledger/accounts`). Tables for people; `--json` prints the API's
//! answers as they are, for scripts.

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use super::output::{Output, parse_json as parse, print_json as print, text};
use crate::client::{Api, Body};

/// `delta bounties ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BountiesCommand {
    /// Create a draft bounty (nothing is escrowed until `fund`).
    Create {
        /// Title (1-200 bytes).
        #[arg(long)]
        title: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// The specification handed to the verifier, as JSON.
        #[arg(long)]
        spec: String,
        /// Reward in minor units (cents).
        #[arg(long)]
        reward: i64,
        /// ISO 4217 currency code.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Seconds from now until the deadline (unapproved then: refunded).
        #[arg(long)]
        deadline_in: u64,
        /// sha256 of an uploaded `verifier` component of this tenant.
        #[arg(long)]
        verifier: String,
        /// Most claims the bounty takes (1-1000; default: the API's, 10).
        #[arg(long)]
        max_claims: Option<u32>,
        /// Approve the first passing submission without review.
        #[arg(long)]
        auto: bool,
    },
    /// Fund a draft: its reward moves into escrow and it opens.
    Fund {
        /// Bounty id.
        id: String,
    },
    /// Bounties this tenant may see: its own and every funded one.
    List {
        /// Only this status (draft, open, completed, cancelled, expired).
        #[arg(long)]
        status: Option<String>,
        /// Only rewards of at least this many minor units.
        #[arg(long)]
        min_reward: Option<i64>,
    },
    /// One bounty and the submissions this tenant may see.
    Show {
        /// Bounty id.
        id: String,
    },
    /// Submit a payload, or a file, to another tenant's open bounty with
    /// one of this tenant's agents (verified on a node before the answer).
    Submit {
        /// Bounty id.
        id: String,
        /// The submitting agent (id or name).
        #[arg(long)]
        agent: String,
        /// The payload, as JSON.
        #[arg(
            long,
            required_unless_present = "artifact",
            conflicts_with = "artifact"
        )]
        payload: Option<String>,
        /// A file to submit as the artifact (stored by its SHA-256; the
        /// verifier receives `{"artifact": {"sha256", "size_bytes"}}`).
        #[arg(long)]
        artifact: Option<std::path::PathBuf>,
    },
    /// Approve a verified, passing submission: the reward is paid out.
    Approve {
        /// Submission id.
        submission_id: String,
    },
    /// Reject a submission; the bounty stays open.
    Reject {
        /// Submission id.
        submission_id: String,
    },
    /// Cancel a draft or open bounty; an open one is refunded in full.
    Cancel {
        /// Bounty id.
        id: String,
    },
    /// Claim another tenant's open bounty for one of this tenant's agents
    /// (each bounty takes at most its `max_claims`).
    Claim {
        /// Bounty id.
        id: String,
        /// The claiming agent (id or name).
        #[arg(long)]
        agent: String,
    },
    /// A bounty's claims (the business: all; a claimant: its own).
    Claims {
        /// Bounty id.
        id: String,
    },
    /// Release a claim, freeing its place.
    Release {
        /// Claim id.
        claim_id: String,
    },
    /// Dispatch an agent to attempt a bounty: a run on its node whose output
    /// becomes a submission (claims first if needed).
    Attempt {
        /// Bounty id.
        id: String,
        /// The attempting agent (id or name).
        #[arg(long)]
        agent: String,
        /// Wait until the attempt is over and print it.
        #[arg(long)]
        follow: bool,
    },
    /// Follow a bounty's events (replayed from the start, then live) until
    /// it closes.
    Events {
        /// Bounty id.
        id: String,
    },
}

/// `delta ledger ...`.
#[derive(clap::Subcommand, Debug)]
pub enum LedgerCommand {
    /// This tenant's accounts: balance, and what is available to spend.
    Balance,
}

fn bounty_table(items: &[Value]) {
    println!(
        "{:<36} {:<10} {:>12} {:<4} {:>14}  title",
        "id", "status", "reward", "cur", "deadline_ms"
    );
    for b in items {
        println!(
            "{:<36} {:<10} {:>12} {:<4} {:>14}  {}",
            text(&b["id"]),
            text(&b["status"]),
            text(&b["reward_minor"]),
            text(&b["currency"]),
            text(&b["deadline_ms"]),
            text(&b["title"]),
        );
    }
}

fn submission_table(items: &[Value]) {
    println!(
        "{:<36} {:<20} {:<6} {:>6}  agent",
        "id", "status", "passed", "score"
    );
    for s in items {
        println!(
            "{:<36} {:<20} {:<6} {:>6}  {}",
            text(&s["id"]),
            text(&s["status"]),
            text(&s["passed"]),
            text(&s["score_milli"]),
            text(&s["agent_id"]),
        );
    }
}

/// One line about a bounty after a change.
fn bounty_line(verb: &str, b: &Value) {
    println!(
        "{verb} {} ({}, {} {})",
        text(&b["id"]),
        text(&b["status"]),
        text(&b["reward_minor"]),
        text(&b["currency"])
    );
}

/// Run `delta bounties ...`.
pub async fn bounties(api: &Api, out: Output, command: BountiesCommand) -> anyhow::Result<()> {
    let post = |path: String, body: Option<Value>| async move {
        api.send(Method::POST, &path, body.map(Body::Json)).await
    };
    match command {
        BountiesCommand::Create {
            title,
            description,
            spec,
            reward,
            currency,
            deadline_in,
            verifier,
            max_claims,
            auto,
        } => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_millis();
            let deadline_ms = i64::try_from(now_ms + u128::from(deadline_in) * 1000)
                .context("--deadline-in is too far away")?;
            let mut body = json!({
                "title": title, "description": description, "spec": parse("spec", &spec)?,
                "reward_minor": reward, "currency": currency, "deadline_ms": deadline_ms,
                "verifier": verifier, "policy": if auto { "auto" } else { "manual" },
            });
            if let Some(n) = max_claims {
                body["max_claims"] = json!(n);
            }
            let b = post("/v1/bounties".into(), Some(body)).await?;
            if out.json {
                return print(&b);
            }
            bounty_line("created", &b);
        }
        BountiesCommand::Fund { id } => {
            let b = post(format!("/v1/bounties/{id}/fund"), None).await?;
            if out.json {
                return print(&b);
            }
            bounty_line("funded", &b);
        }
        BountiesCommand::Cancel { id } => {
            let b = post(format!("/v1/bounties/{id}/cancel"), None).await?;
            if out.json {
                return print(&b);
            }
            bounty_line("cancelled", &b);
        }
        BountiesCommand::List { status, min_reward } => {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            if let Some(r) = min_reward {
                query.push(format!("min_reward={r}"));
            }
            let path = if query.is_empty() {
                "/v1/bounties".to_owned()
            } else {
                format!("/v1/bounties?{}", query.join("&"))
            };
            let items = api.list(&path).await?;
            if out.json {
                return print(&Value::Array(items));
            }
            bounty_table(&items);
        }
        BountiesCommand::Show { id } => {
            let b = api
                .send(Method::GET, &format!("/v1/bounties/{id}"), None)
                .await?;
            let subs = api.list(&format!("/v1/bounties/{id}/submissions")).await?;
            if out.json {
                return print(&json!({ "bounty": b, "submissions": subs }));
            }
            for key in [
                "id",
                "title",
                "status",
                "reward_minor",
                "currency",
                "deadline_ms",
                "policy",
                "verifier",
                "approved_submission_id",
            ] {
                println!("{key:<24} {}", text(&b[key]));
            }
            println!("{:<24} {}", "spec", b["spec"]);
            println!();
            submission_table(&subs);
        }
        BountiesCommand::Submit {
            id,
            agent,
            payload,
            artifact,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            let s = match (payload, artifact) {
                (_, Some(file)) => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let progress = crate::progress::Upload::new(
                        bytes.len() as u64,
                        &file.display().to_string(),
                        "the control plane is verifying the submission",
                    );
                    let s = api
                        .send(
                            Method::POST,
                            &format!("/v1/bounties/{id}/submissions?agent_id={agent_id}"),
                            Some(Body::Upload {
                                bytes,
                                content_type: "application/octet-stream",
                                progress: progress.clone(),
                            }),
                        )
                        .await;
                    progress.finish();
                    s?
                }
                (Some(payload), None) => {
                    let body =
                        json!({ "agent_id": agent_id, "payload": parse("payload", &payload)? });
                    post(format!("/v1/bounties/{id}/submissions"), Some(body)).await?
                }
                (None, None) => anyhow::bail!("give --payload JSON or --artifact FILE"),
            };
            if out.json {
                return print(&s);
            }
            submission_table(std::slice::from_ref(&s));
        }
        BountiesCommand::Approve { submission_id } => {
            let b = post(format!("/v1/submissions/{submission_id}/approve"), None).await?;
            if out.json {
                return print(&b);
            }
            bounty_line(&format!("approved {submission_id}:"), &b);
        }
        BountiesCommand::Reject { submission_id } => {
            let s = post(format!("/v1/submissions/{submission_id}/reject"), None).await?;
            if out.json {
                return print(&s);
            }
            println!("rejected {submission_id} ({})", text(&s["status"]));
        }
        BountiesCommand::Claim { id, agent } => {
            let agent_id = api.agent_id(&agent).await?;
            let c = post(
                format!("/v1/bounties/{id}/claims"),
                Some(json!({ "agent_id": agent_id })),
            )
            .await?;
            if out.json {
                return print(&c);
            }
            println!("claimed {id}: {} ({})", text(&c["id"]), text(&c["status"]));
        }
        BountiesCommand::Claims { id } => {
            let claims = api.list(&format!("/v1/bounties/{id}/claims")).await?;
            if out.json {
                return print(&Value::Array(claims));
            }
            if claims.is_empty() {
                println!("no claims");
            }
            for c in &claims {
                println!(
                    "{:<36} {:<10} {}",
                    text(&c["id"]),
                    text(&c["status"]),
                    text(&c["agent_id"])
                );
            }
        }
        BountiesCommand::Release { claim_id } => {
            let c = api
                .send(Method::DELETE, &format!("/v1/claims/{claim_id}"), None)
                .await?;
            if out.json {
                return print(&c);
            }
            println!("released {claim_id}");
        }
        BountiesCommand::Attempt { id, agent, follow } => {
            let agent_id = api.agent_id(&agent).await?;
            let started = post(
                format!("/v1/bounties/{id}/attempts"),
                Some(json!({ "agent_id": agent_id })),
            )
            .await?;
            let attempt_id = text(&started["attempt_id"]);
            let mut shown = started;
            if follow {
                loop {
                    let a = api
                        .send(Method::GET, &format!("/v1/attempts/{attempt_id}"), None)
                        .await?;
                    if a["status"] != "running" {
                        shown = a;
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            if out.json {
                return print(&shown);
            }
            println!(
                "attempt {attempt_id}: run {} {}{}",
                text(&shown["run_id"]),
                shown["status"].as_str().unwrap_or("running"),
                shown["submission_id"]
                    .as_str()
                    .map(|s| format!(", submission {s}"))
                    .unwrap_or_default()
            );
        }
        BountiesCommand::Events { id } => events(api, out, &id).await?,
    }
    Ok(())
}

/// Print a bounty's event stream, one line (or JSON object) per event,
/// until the server ends it.
async fn events(api: &Api, out: Output, id: &str) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let resp = api
        .open_stream(&format!("/v1/bounties/{id}/events"))
        .await?;
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(
            &chunk.context("reading the event stream")?,
        ));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut kind, mut seq, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    seq = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if kind.is_empty() && data.is_empty() {
                continue; // a keep-alive comment
            }
            if out.json {
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                println!("{}", json!({ "seq": seq, "type": kind, "data": value }));
            } else {
                println!("{seq:>4} {kind:<22} {data}");
            }
        }
    }
    Ok(())
}

/// Run `delta ledger ...`.
pub async fn ledger(api: &Api, out: Output, command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Balance => {
            let accounts = api.send(Method::GET, "/v1/ledger/accounts", None).await?;
            if out.json {
                return print(&accounts);
            }
            println!(
                "{:<8} {:<4} {:>14} {:>14}",
                "kind", "cur", "balance", "available"
            );
            for a in accounts["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                println!(
                    "{:<8} {:<4} {:>14} {:>14}",
                    text(&a["kind"]),
                    text(&a["currency"]),
                    text(&a["balance_minor"]),
                    text(&a["available_minor"]),
                );
            }
        }
    }
    Ok(())
}
