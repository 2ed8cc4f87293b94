//! A minimal hyper 1.x hello-world server: the baseline `cargo xtask load`
//! compares the node against ("at least 25 % of the requests/s of a minimal
//! hyper hello-world server driven by the same load generator in the same
//! run").
//!
//! Usage: `hello-hyper [ADDR]` (default `127.0.0.1:7499`). Answers every
//! request on HTTP/1.1 with `200 Hello, World!`, keep-alive on, on tokio's
//! multi-thread runtime: what hyper's own hello example does, nothing more,
//! so the baseline stays the cost of the HTTP stack alone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:7499";

#[tokio::main]
async fn main() -> Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad listen address {addr:?} (expected IP:PORT)"))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    // The real address, so a caller passing port 0 learns the port.
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of fds, usually: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            // Errors here are clients hanging up (wrk does at the end).
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}
