//! `delta nodes ...`: the operator's side of node identity, through the
//! control plane's API (`/v1/operator/nodes`, `/v1/nodes`). Each node has
//! its own credential (`ncr_...`), shown once: `enroll` and `credentials
//! --rotate` print it or write it to a file (mode 0600) for the node's
//! `[control_plane] token_file`, and the node's API token (what the control
//! plane presents to that node alone) for its `token_file`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Api, ApiArgs, ApiFailure, Body, print};

/// `delta nodes ...`.
#[derive(clap::Subcommand, Debug)]
pub enum NodesCommand {
    /// Enrol a node: record it and issue its credential (shown once).
    Enroll {
        /// The node's id (`node_id` in its configuration).
        node_id: String,
        /// Where the control plane reaches it (default: its first heartbeat).
        #[arg(long)]
        url: Option<String>,
        /// Write the credential to this file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the node's API token (what the control plane presents to
        /// it: the node's own `token_file`) to this file (mode 0600).
        #[arg(long)]
        node_token_out: Option<PathBuf>,
    },
    /// The fleet: each node's status, capacity, load and agents.
    List,
    /// A node's credentials (never their secrets); `--rotate` issues another.
    Credentials {
        /// Node id.
        node_id: String,
        /// Issue a new credential; the others keep working until retired or revoked.
        #[arg(long)]
        rotate: bool,
        /// With `--rotate`: the others stop working this many seconds from now.
        #[arg(long, requires = "rotate")]
        retire_others_after: Option<u64>,
        /// With `--rotate`: write the new credential here (mode 0600).
        #[arg(long, requires = "rotate")]
        out: Option<PathBuf>,
        /// With `--rotate`: write the node's API token here (mode 0600).
        #[arg(long, requires = "rotate")]
        node_token_out: Option<PathBuf>,
    },
    /// Change where the control plane reaches a node (its heartbeats cannot).
    SetUrl {
        /// Node id.
        node_id: String,
        /// The node's new URL (https, or http on loopback).
        url: String,
    },
    /// Revoke one of a node's credentials (refused from the next request on).
    Revoke {
        /// Node id.
        node_id: String,
        /// Credential id (`ncr_...`, as `credentials` lists it).
        credential_id: String,
    },
}

/// Run `delta nodes ...`.
pub async fn nodes(api: ApiArgs, command: NodesCommand) -> anyhow::Result<()> {
    let api = Api::new(&api)?;
    match command {
        NodesCommand::Enroll {
            node_id,
            url,
            out,
            node_token_out,
        } => {
            let issued = enrol(&api, &node_id, url.as_deref()).await?;
            hand_over(&issued, out.as_deref(), node_token_out.as_deref())
        }
        NodesCommand::List => {
            let nodes = api.list("/v1/nodes").await?;
            println!(
                "{:<24} {:<6} {:>8} {:>6} {:>7}",
                "id", "status", "capacity", "load", "agents"
            );
            for n in nodes {
                println!(
                    "{:<24} {:<6} {:>8} {:>6} {:>7}",
                    n["id"].as_str().unwrap_or(""),
                    n["status"].as_str().unwrap_or(""),
                    n["capacity"].as_i64().unwrap_or(0),
                    n["load"].as_i64().unwrap_or(0),
                    n["agents"].as_i64().unwrap_or(0),
                );
            }
            Ok(())
        }
        NodesCommand::Credentials {
            node_id,
            rotate: true,
            retire_others_after,
            out,
            node_token_out,
        } => {
            let issued = rotate(&api, &node_id, retire_others_after).await?;
            hand_over(&issued, out.as_deref(), node_token_out.as_deref())
        }
        NodesCommand::Credentials { node_id, .. } => {
            let items = api
                .list(&format!("/v1/operator/nodes/{node_id}/credentials"))
                .await?;
            println!(
                "{:<22} {:<7} {:>15} {:>15} {:>15}",
                "id", "active", "created_at_ms", "expires_at_ms", "revoked_at_ms"
            );
            let ms = |v: &Value| v.as_i64().map_or("-".to_owned(), |n| n.to_string());
            for c in items {
                println!(
                    "{:<22} {:<7} {:>15} {:>15} {:>15}",
                    c["id"].as_str().unwrap_or(""),
                    c["active"].as_bool().unwrap_or(false),
                    ms(&c["created_at_ms"]),
                    ms(&c["expires_at_ms"]),
                    ms(&c["revoked_at_ms"]),
                );
            }
            Ok(())
        }
        NodesCommand::SetUrl { node_id, url } => {
            api.send(
                Method::PATCH,
                &format!("/v1/operator/nodes/{node_id}"),
                Some(Body::Json(json!({ "url": url }))),
            )
            .await
            .with_context(|| format!("changing the URL of {node_id}"))?;
            println!("{node_id} is now reached at {url}");
            Ok(())
        }
        NodesCommand::Revoke {
            node_id,
            credential_id,
        } => {
            api.send(
                Method::DELETE,
                &format!("/v1/operator/nodes/{node_id}/credentials/{credential_id}"),
                None,
            )
            .await?;
            println!("revoked {credential_id} of {node_id}");
            Ok(())
        }
    }
}

/// `POST /v1/operator/nodes`: the answer (with the credential).
pub(crate) async fn enrol(api: &Api, node_id: &str, url: Option<&str>) -> anyhow::Result<Value> {
    let mut body = json!({ "node_id": node_id });
    if let Some(url) = url {
        body["url"] = json!(url);
    }
    api.send(Method::POST, "/v1/operator/nodes", Some(Body::Json(body)))
        .await
        .with_context(|| format!("enrolling {node_id}"))
}

/// `POST /v1/operator/nodes/{id}/credentials`: the answer.
pub(crate) async fn rotate(
    api: &Api,
    node_id: &str,
    retire_others_after: Option<u64>,
) -> anyhow::Result<Value> {
    let body = match retire_others_after {
        Some(secs) => json!({ "retire_others_after_secs": secs }),
        None => json!({}),
    };
    api.send(
        Method::POST,
        &format!("/v1/operator/nodes/{node_id}/credentials"),
        Some(Body::Json(body)),
    )
    .await
    .with_context(|| format!("issuing a credential for {node_id}"))
}

/// A credential for `node_id`: enrolled now, or, if it already was (its
/// credential file lost), a new one by rotation (the others are retired at
/// once: whoever had the lost file cannot use it).
pub(crate) async fn enrol_or_rotate(api: &Api, node_id: &str) -> anyhow::Result<String> {
    let issued = match enrol(api, node_id, None).await {
        Ok(issued) => issued,
        Err(e)
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|f| f.code == "node_enrolled") =>
        {
            rotate(api, node_id, Some(0)).await?
        }
        Err(e) => return Err(e),
    };
    issued["credential"]
        .as_str()
        .map(str::to_owned)
        .context("no credential in the answer")
}

/// Print the credential, or write it to `out` (0600) and say where; the
/// node's API token likewise to `node_token_out`.
fn hand_over(
    issued: &Value,
    out: Option<&Path>,
    node_token_out: Option<&Path>,
) -> anyhow::Result<()> {
    let credential = issued["credential"]
        .as_str()
        .context("no credential in the answer")?;
    if let Some(path) = node_token_out {
        let token = issued["node_api_token"].as_str().context(
            "the control plane has no node_api_secret_file: it cannot call nodes (set it in \
             control.toml)",
        )?;
        write_private(path, token)?;
        println!(
            "node {} API token written to {} (set it as the node's token_file)",
            issued["node_id"].as_str().unwrap_or(""),
            path.display()
        );
    }
    match out {
        Some(path) => {
            write_private(path, credential)?;
            println!(
                "node {} credential {} written to {} (set it as the node's [control_plane] token_file)",
                issued["node_id"].as_str().unwrap_or(""),
                issued["credential_id"].as_str().unwrap_or(""),
                path.display()
            );
            Ok(())
        }
        None => {
            eprintln!(
                "the credential is shown once: put it in the node's [control_plane] token_file \
                 (and node_api_token in its token_file)"
            );
            print(issued)
        }
    }
}

/// Write `contents` to `path`, created with mode 0600 (and made 0600 if it
/// existed).
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
