//! Outbound webhooks' receiving end for tests: a receiver on loopback and
//! a Standard Webhooks signature check written independently of the
//! control plane's signer.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// HMAC-SHA256 (RFC 2104) over sha2, written here so that the check does
/// not share code with the signer.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Whether `headers` carry a valid Standard Webhooks signature of `body`
/// under `secret` (`whsec_<base64>`).
pub fn signed(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secret is base64");
    let mut content = format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).into_bytes();
    content.extend_from_slice(body);
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &content)));
    h("webhook-signature").split(' ').any(|s| s == expected)
}

/// One request the receiver got.
#[derive(Clone)]
pub struct Hit {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on loopback that answers 500 to its first `fail_first`
/// requests and 200 after; its URL and what it got.
pub async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let seen = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let mut seen = seen.lock().expect("lock");
                seen.push(Hit {
                    at: Instant::now(),
                    headers,
                    body,
                });
                if seen.len() <= fail_first {
                    AxumStatus::INTERNAL_SERVER_ERROR
                } else {
                    AxumStatus::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), hits)
}

/// What `receiver` got so far.
pub fn hits(h: &Arc<Mutex<Vec<Hit>>>) -> Vec<Hit> {
    h.lock().expect("lock").clone()
}
