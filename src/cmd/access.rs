//! Who may act in a tenant: `delta keys ...` (API keys, `/v1/api-keys`),
//! `delta members ...` (`/v1/tenants/current/members`) and `delta
//! invitations ...` (the caller's own, `/v1/invitations`).

use reqwest::Method;
use serde_json::{Value, json};

use super::output::{Column, Output, emit, not_found, segment, table, text};
use crate::client::{Api, Body};

/// `delta keys ...`.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key; its secret is printed this once only.
    Create {
        /// A label.
        #[arg(long)]
        name: String,
        /// A scope the key gets (repeat; default: all of yours).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Days until it expires (default: never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// The tenant's keys (never their secrets).
    List,
    /// Revoke a key at once.
    Revoke {
        /// Key id (`key_...`).
        id: String,
    },
}

/// `delta members ...`.
#[derive(clap::Subcommand, Debug)]
pub enum MembersCommand {
    /// The members of the current tenant and their roles.
    List,
    /// Invite someone by email (they accept with `delta invitations accept`).
    Invite {
        /// Their email.
        email: String,
        /// member, admin or owner.
        #[arg(long, default_value = "member", value_parser = ["member", "admin", "owner"])]
        role: String,
    },
    /// Change a member's role.
    Role {
        /// User id or email.
        member: String,
        /// member, admin or owner.
        #[arg(value_parser = ["member", "admin", "owner"])]
        role: String,
    },
    /// Remove a member from the tenant.
    Remove {
        /// User id or email.
        member: String,
    },
}

/// `delta invitations ...`.
#[derive(clap::Subcommand, Debug)]
pub enum InvitationsCommand {
    /// Invitations waiting for you.
    List,
    /// Join the inviting tenant.
    Accept {
        /// Invitation id.
        id: String,
    },
    /// Decline an invitation.
    Decline {
        /// Invitation id.
        id: String,
    },
}

const KEY_COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("name", "/name"),
    ("prefix", "/prefix"),
    ("user", "/user_id"),
    ("last_used_at_ms", "/last_used_at_ms"),
    ("expires_at_ms", "/expires_at_ms"),
    ("revoked_at_ms", "/revoked_at_ms"),
    ("scopes", "/scopes"),
];

const MEMBER_COLUMNS: &[Column<'static>] = &[
    ("user", "/user_id"),
    ("email", "/email"),
    ("role", "/role"),
    ("since_ms", "/created_at_ms"),
];

const INVITATION_COLUMNS: &[Column<'static>] = &[
    ("id", "/id"),
    ("tenant", "/tenant_id"),
    ("tenant_name", "/tenant_name"),
    ("role", "/role"),
    ("expires_at_ms", "/expires_at_ms"),
];

fn list_table(columns: &[Column<'_>], empty: &str) -> impl FnOnce(&Value) {
    move |items: &Value| {
        table(
            columns,
            items.as_array().map(Vec::as_slice).unwrap_or_default(),
            empty,
        );
    }
}

/// Run `delta keys ...`.
pub async fn keys(api: &Api, out: Output, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            expires_in_days,
        } => {
            let mut body = json!({ "name": name });
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            if let Some(d) = expires_in_days {
                body["expires_in_days"] = json!(d);
            }
            let key = api
                .send(Method::POST, "/v1/api-keys", Some(Body::Json(body)))
                .await?;
            emit(out, &key, |k| {
                println!(
                    "created {} ({}), scopes {}",
                    text(&k["id"]),
                    text(&k["name"]),
                    text(&k["scopes"])
                );
                println!("{}", text(&k["key"]));
                eprintln!("keep the key now: it is not shown again");
            })
        }
        KeysCommand::List => {
            let items = api.list("/v1/api-keys").await?;
            emit(
                out,
                &Value::Array(items),
                list_table(KEY_COLUMNS, "no API keys"),
            )
        }
        KeysCommand::Revoke { id } => {
            api.send(
                Method::DELETE,
                &format!("/v1/api-keys/{}", segment(&id)?),
                None,
            )
            .await?;
            emit(out, &json!({ "revoked": id }), |_| {
                println!("revoked {id}");
            })
        }
    }
}

/// Run `delta members ...`.
pub async fn members(api: &Api, out: Output, command: MembersCommand) -> anyhow::Result<()> {
    match command {
        MembersCommand::List => {
            let items = api.list("/v1/tenants/current/members").await?;
            emit(
                out,
                &Value::Array(items),
                list_table(MEMBER_COLUMNS, "no members"),
            )
        }
        MembersCommand::Invite { email, role } => {
            let answer = api
                .send(
                    Method::POST,
                    "/v1/tenants/current/members",
                    Some(Body::Json(json!({ "email": email, "role": role }))),
                )
                .await?;
            emit(out, &answer, |a| {
                println!(
                    "invited {} as {} ({}, expires at {} ms)",
                    text(&a["email"]),
                    text(&a["role"]),
                    text(&a["status"]),
                    text(&a["expires_at_ms"])
                );
            })
        }
        MembersCommand::Role { member, role } => {
            let user = member_id(api, &member).await?;
            let answer = api
                .send(
                    Method::PATCH,
                    &format!("/v1/tenants/current/members/{}", segment(&user)?),
                    Some(Body::Json(json!({ "role": role }))),
                )
                .await?;
            emit(out, &answer, |m| {
                println!("{} is now {}", text(&m["email"]), text(&m["role"]));
            })
        }
        MembersCommand::Remove { member } => {
            let user = member_id(api, &member).await?;
            api.send(
                Method::DELETE,
                &format!("/v1/tenants/current/members/{}", segment(&user)?),
                None,
            )
            .await?;
            emit(out, &json!({ "removed": user }), |_| {
                println!("removed {member}");
            })
        }
    }
}

/// A member's user id from an id or an email (a `@` tells them apart).
async fn member_id(api: &Api, member: &str) -> anyhow::Result<String> {
    if !member.contains('@') {
        return Ok(member.to_owned());
    }
    let all = api.list("/v1/tenants/current/members").await?;
    all.iter()
        .find(|m| {
            m["email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(member))
        })
        .and_then(|m| m["user_id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| not_found(format!("no member with the email {member}")))
}

/// Run `delta invitations ...`.
pub async fn invitations(
    api: &Api,
    out: Output,
    command: InvitationsCommand,
) -> anyhow::Result<()> {
    match command {
        InvitationsCommand::List => {
            let items = api.list("/v1/invitations").await?;
            emit(
                out,
                &Value::Array(items),
                list_table(INVITATION_COLUMNS, "no invitations"),
            )
        }
        InvitationsCommand::Accept { id } => {
            let answer = api
                .send(
                    Method::POST,
                    &format!("/v1/invitations/{}/accept", segment(&id)?),
                    None,
                )
                .await?;
            emit(out, &answer, |a| {
                println!(
                    "accepted {id}: {} is now {}",
                    text(&a["email"]),
                    text(&a["role"])
                );
            })
        }
        InvitationsCommand::Decline { id } => {
            api.send(
                Method::POST,
                &format!("/v1/invitations/{}/decline", segment(&id)?),
                None,
            )
            .await?;
            emit(out, &json!({ "declined": id }), |_| {
                println!("declined {id}");
            })
        }
    }
}
