//! The tenant's records: `delta messages list` (the message audit log,
//! `/v1/messages`) and `delta audit list` (who did what, `/v1/audit`). Both
//! are cursor-paged: one page by default, `--cursor` for the next,
//! `--all` for every one.

use super::output::{Column, Output, PageArgs, emit_page, fetch_page, now_ms, time_ms};
use crate::client::Api;

/// `delta messages ...`.
#[derive(clap::Subcommand, Debug)]
pub enum MessagesCommand {
    /// Message attempts of the tenant's agents, newest first.
    List {
        /// Only this channel.
        #[arg(long, value_parser = ["email", "sms"])]
        channel: Option<String>,
        /// Only this outcome.
        #[arg(long, value_parser = ["sent", "refused", "failed"])]
        status: Option<String>,
        /// Only this agent's (id or name).
        #[arg(long)]
        agent: Option<String>,
        /// From this time: ms since the epoch, YYYY-MM-DD (UTC) or a
        /// duration ago (15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

/// `delta audit ...`.
#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// The tenant's audit log (sign-ins, role changes, keys, approvals).
    List {
        /// Only entries of this action (`login`, `role_changed`, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only this user's entries (user id).
        #[arg(long)]
        user: Option<String>,
        /// From this time: ms since the epoch, YYYY-MM-DD (UTC) or a
        /// duration ago (15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

const MESSAGE_COLUMNS: &[Column<'static>] = &[
    ("at_ms", "/at_ms"),
    ("agent", "/agent_id"),
    ("channel", "/channel"),
    ("status", "/status"),
    ("template", "/template_id"),
    ("tokens", "/tokens"),
    ("recipient", "/recipient"),
];

const AUDIT_COLUMNS: &[Column<'static>] = &[
    ("at_ms", "/at_ms"),
    ("action", "/action"),
    ("user", "/user_id"),
    ("request", "/request_id"),
    ("detail", "/detail"),
];

/// Run `delta messages ...`.
pub async fn messages(api: &Api, out: Output, command: MessagesCommand) -> anyhow::Result<()> {
    let MessagesCommand::List {
        channel,
        status,
        agent,
        since,
        until,
        page,
    } = command;
    let now = now_ms()?;
    let mut params = Vec::new();
    if let Some(c) = channel {
        params.push(("channel", c));
    }
    if let Some(s) = status {
        params.push(("status", s));
    }
    if let Some(s) = since {
        params.push(("since_ms", time_ms("since", &s, now)?.to_string()));
    }
    if let Some(u) = until {
        params.push(("until_ms", time_ms("until", &u, now)?.to_string()));
    }
    if let Some(a) = agent {
        params.push(("agent_id", api.agent_id(&a).await?));
    }
    let (items, next) = fetch_page(api, "/v1/messages", &params, &page).await?;
    emit_page(out, items, next, MESSAGE_COLUMNS, "no messages")
}

/// Run `delta audit ...`.
pub async fn audit(api: &Api, out: Output, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List {
        action,
        user,
        since,
        until,
        page,
    } = command;
    let now = now_ms()?;
    let mut params = Vec::new();
    if let Some(a) = action {
        params.push(("action", a));
    }
    if let Some(u) = user {
        params.push(("user_id", u));
    }
    if let Some(s) = since {
        params.push(("since_ms", time_ms("since", &s, now)?.to_string()));
    }
    if let Some(u) = until {
        params.push(("until_ms", time_ms("until", &u, now)?.to_string()));
    }
    let (items, next) = fetch_page(api, "/v1/audit", &params, &page).await?;
    emit_page(out, items, next, AUDIT_COLUMNS, "no audit entries")
}
