//! The control plane's API client every command group uses, and `delta
//! login`. The API URL and key come from flags, `DELTA_API_URL` /
//! `DELTA_API_KEY`, the `delta login` profile, or, for the key,
//! `./.delta/admin-api-key` written by `delta up`.

use std::path::Path;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Where the API is and how to authenticate. Global: accepted anywhere on
/// the command line (`delta agents create --api-url ...` as well as
/// `delta agents --api-url ... create`).
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// Control plane URL (default: the profile's, then http://127.0.0.1:7420).
    #[arg(long, global = true, env = "DELTA_API_URL")]
    pub api_url: Option<String>,
    /// API key (default: the profile's (`delta login`), then the key `delta
    /// up` wrote to ./.delta/admin-api-key).
    #[arg(long, global = true, env = "DELTA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The tenant to act in (`X-App-ID`; default: the API key's own).
    #[arg(long, global = true, env = "DELTA_APP_ID")]
    pub app_id: Option<String>,
}

/// A refusal from the API: its status, code and message (callers that
/// handle a particular code find it with `downcast_ref`).
#[derive(Debug)]
pub(crate) struct ApiFailure {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// `delta login`: check the key (`GET /v1/me`), then save the profile.
pub async fn login(mut args: ApiArgs) -> anyhow::Result<()> {
    if args.api_key.is_none() {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the API key from standard input")?;
        let key = line.trim();
        if key.is_empty() {
            anyhow::bail!(
                "no API key: pass --api-key, set DELTA_API_KEY or give it on standard input"
            );
        }
        args.api_key = Some(key.to_owned());
    }
    let url = args
        .api_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:7420".to_owned());
    args.api_url = Some(url.clone());
    let api = Api::new(&args)?;
    let me = api.send(Method::GET, "/v1/me", None).await?;
    let path = crate::profile::save(&crate::profile::Profile {
        api_url: url,
        api_key: args.api_key.clone().unwrap_or_default(),
        app_id: args.app_id.clone(),
    })?;
    println!(
        "signed in as {} ({} of {}); profile saved to {}",
        me["user"]["email"].as_str().unwrap_or("?"),
        me["role"].as_str().unwrap_or("?"),
        me["tenant_id"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// A client of the control plane's API.
pub(crate) struct Api {
    url: String,
    key: String,
    app_id: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        // Flags and environment first, then the profile (see profile.rs).
        let profile = if args.api_key.is_some() && args.api_url.is_some() {
            None
        } else {
            crate::profile::load()?
        };
        let url = args
            .api_url
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.api_url.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:7420".to_owned());
        let app_id = args
            .app_id
            .clone()
            .or_else(|| profile.as_ref().and_then(|p| p.app_id.clone()));
        let key = match args
            .api_key
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.api_key.clone()))
        {
            Some(k) => k,
            None => {
                let path = Path::new(".delta/admin-api-key");
                std::fs::read_to_string(path)
                    .map(|s| s.trim().to_owned())
                    .with_context(|| {
                        format!(
                            "no API key: pass --api-key, set DELTA_API_KEY, run `delta login`, \
                             or run `delta up` here (it writes {})",
                            path.display()
                        )
                    })?
            }
        };
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key,
            app_id,
            http: reqwest::Client::new(),
        })
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(app) = &self.app_id {
            req = req.header("x-app-id", app);
        }
        match body {
            Some(Body::Json(v)) => req = req.json(&v),
            Some(Body::Upload {
                bytes,
                content_type,
                progress,
            }) => {
                req = req
                    .header("content-type", content_type)
                    .header("content-length", bytes.len());
                req = if crate::progress::enabled() {
                    // In chunks, so that the bar moves as they are sent.
                    let chunks: Vec<Vec<u8>> =
                        bytes.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
                    let stream = futures_util::stream::iter(chunks.into_iter().map(move |c| {
                        progress.sent(c.len() as u64);
                        Ok::<_, std::io::Error>(c)
                    }));
                    req.body(reqwest::Body::wrap_stream(stream))
                } else {
                    req.body(bytes)
                };
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {}{path}", self.url))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            return Err(ApiFailure {
                status,
                code: value["code"].as_str().unwrap_or("").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            }
            .into());
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        Ok(value)
    }

    /// Open a streaming GET (server-sent events) with the same credentials
    /// and tenant header as [`Api::send`]; a refusal is an [`ApiFailure`].
    pub(crate) async fn open_stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(app) = &self.app_id {
            req = req.header("x-app-id", app);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("opening {}{path}", self.url))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(ApiFailure {
            status,
            code: body["code"].as_str().unwrap_or("").to_owned(),
            message: body["message"].as_str().unwrap_or("").to_owned(),
        }
        .into())
    }

    /// Every item of a paginated list.
    pub(crate) async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page_path = match &cursor {
                Some(c) => format!("{path}{sep}limit=200&cursor={c}"),
                None => format!("{path}{sep}limit=200"),
            };
            let page = self.send(Method::GET, &page_path, None).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }

    /// An agent id from an id or a name.
    pub(crate) async fn agent_id(&self, agent: &str) -> anyhow::Result<String> {
        if agent.starts_with("agt_") {
            return Ok(agent.to_owned());
        }
        let agents = self.list("/v1/agents").await?;
        agents
            .iter()
            .find(|a| a["name"] == agent)
            .and_then(|a| a["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| crate::cmd::output::not_found(format!("no agent named {agent}")))
    }
}

/// A request body.
pub(crate) enum Body {
    Json(Value),
    /// A file upload with its content type, drawing `progress`.
    Upload {
        bytes: Vec<u8>,
        content_type: &'static str,
        progress: crate::progress::Upload,
    },
}

pub(crate) fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
