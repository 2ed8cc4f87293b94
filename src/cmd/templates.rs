//! `delta templates ...`: message templates and their review
//! (`/v1/templates`). Members create and edit drafts; admins approve or
//! reject them (the API refuses others with 403).

use reqwest::Method;
use serde_json::{Value, json};

use super::output::{Column, Output, bad_input, emit, record, segment, table, text, with_query};
use crate::client::{Api, Body};

/// `delta templates ...`.
#[derive(clap::Subcommand, Debug)]
pub enum TemplatesCommand {
    /// Create a draft template (it needs an admin's approval before use).
    Create {
        /// The name guests send (letters, digits, `_`, `-`, `.`).
        #[arg(long)]
        name: String,
        /// `email` or `sms`.
        #[arg(long, value_parser = ["email", "sms"])]
        channel: String,
        /// Subject line (email only).
        #[arg(long)]
        subject: Option<String>,
        /// The body template; `@file` reads it from a file.
        #[arg(long)]
        body: String,
        /// The body is HTML (email only).
        #[arg(long)]
        html: bool,
        /// A variable the subject or body uses and its longest value in
        /// characters, `name=64` (repeat for each).
        #[arg(long = "var")]
        vars: Vec<String>,
    },
    /// The tenant's templates.
    List {
        /// Only draft, approved or rejected ones.
        #[arg(long, value_parser = ["draft", "approved", "rejected"])]
        status: Option<String>,
        /// Only email or sms ones.
        #[arg(long, value_parser = ["email", "sms"])]
        channel: Option<String>,
    },
    /// One template (id or name).
    Show {
        /// Template id or name.
        template: String,
    },
    /// Approve a template (admins).
    Approve {
        /// Template id or name.
        template: String,
        /// Only if it is still at this version.
        #[arg(long)]
        version: Option<i64>,
    },
    /// Reject a template (admins).
    Reject {
        /// Template id or name.
        template: String,
        /// Why, shown with the template.
        #[arg(long)]
        reason: Option<String>,
        /// Only if it is still at this version.
        #[arg(long)]
        version: Option<i64>,
    },
    /// Delete a template.
    Delete {
        /// Template id or name.
        template: String,
    },
}

const COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("name", "/name"),
    ("channel", "/channel"),
    ("status", "/status"),
    ("version", "/version"),
    ("subject", "/subject"),
];

const FIELDS: &[&str] = &[
    "id",
    "name",
    "channel",
    "status",
    "version",
    "subject",
    "html",
    "variables",
    "rejection_reason",
    "approved_by",
    "body",
];

/// Run `delta templates ...`.
pub async fn run(api: &Api, out: Output, command: TemplatesCommand) -> anyhow::Result<()> {
    match command {
        TemplatesCommand::Create {
            name,
            channel,
            subject,
            body,
            html,
            vars,
        } => {
            let body = match body.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| bad_input(format!("--body @{file}: {e}")))?,
                None => body,
            };
            let mut request = json!({ "name": name, "channel": channel, "body": body });
            if let Some(s) = subject {
                request["subject"] = json!(s);
            }
            if html {
                request["html"] = json!(true);
            }
            let mut variables = serde_json::Map::new();
            for var in vars {
                let (name, max) = var
                    .split_once('=')
                    .and_then(|(n, m)| Some((n, m.parse::<u32>().ok()?)))
                    .ok_or_else(|| {
                        bad_input(format!(
                            "--var {var:?}: give name=longest-length, e.g. name=64"
                        ))
                    })?;
                variables.insert(name.to_owned(), json!(max));
            }
            if !variables.is_empty() {
                request["variables"] = Value::Object(variables);
            }
            let t = api
                .send(Method::POST, "/v1/templates", Some(Body::Json(request)))
                .await?;
            emit(out, &t, |t| line("created", t))
        }
        TemplatesCommand::List { status, channel } => {
            let mut params = Vec::new();
            if let Some(s) = status {
                params.push(("status", s));
            }
            if let Some(c) = channel {
                params.push(("channel", c));
            }
            let items = api.list(&with_query("/v1/templates", &params)?).await?;
            emit(out, &Value::Array(items), |items| {
                table(
                    COLUMNS,
                    items.as_array().map(Vec::as_slice).unwrap_or_default(),
                    "no templates",
                );
            })
        }
        TemplatesCommand::Show { template } => {
            let id = template_id(api, &template).await?;
            let t = api
                .send(
                    Method::GET,
                    &format!("/v1/templates/{}", segment(&id)?),
                    None,
                )
                .await?;
            emit(out, &t, |t| record(t, FIELDS))
        }
        TemplatesCommand::Approve { template, version } => {
            let id = template_id(api, &template).await?;
            let body = json!({ "version": version });
            let t = act(api, &id, "approve", body).await?;
            emit(out, &t, |t| line("approved", t))
        }
        TemplatesCommand::Reject {
            template,
            reason,
            version,
        } => {
            let id = template_id(api, &template).await?;
            let body = json!({ "reason": reason, "version": version });
            let t = act(api, &id, "reject", body).await?;
            emit(out, &t, |t| line("rejected", t))
        }
        TemplatesCommand::Delete { template } => {
            let id = template_id(api, &template).await?;
            api.send(
                Method::DELETE,
                &format!("/v1/templates/{}", segment(&id)?),
                None,
            )
            .await?;
            emit(out, &json!({ "deleted": id }), |_| {
                println!("deleted {id}");
            })
        }
    }
}

fn line(verb: &str, t: &Value) {
    println!(
        "{verb} {} {} ({}, {}, version {})",
        text(&t["id"]),
        text(&t["name"]),
        text(&t["channel"]),
        text(&t["status"]),
        text(&t["version"])
    );
}

async fn act(api: &Api, id: &str, verb: &str, body: Value) -> anyhow::Result<Value> {
    api.send(
        Method::POST,
        &format!("/v1/templates/{}/{verb}", segment(id)?),
        Some(Body::Json(body)),
    )
    .await
}

/// A template id from an id (`tpl_...`) or a name (names never start with
/// `tpl_`, the API refuses them).
async fn template_id(api: &Api, template: &str) -> anyhow::Result<String> {
    if template.starts_with("tpl_") {
        return Ok(template.to_owned());
    }
    let all = api.list("/v1/templates").await?;
    all.iter()
        .find(|t| t["name"] == template)
        .and_then(|t| t["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| super::output::not_found(format!("no template named {template}")))
}
