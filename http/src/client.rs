//! Reading answers from peers (node <-> control plane) with a size cap.
//!
//! `reqwest::Response::bytes()`/`json()` buffer whatever the peer sends; a
//! broken or hostile peer could make the reader allocate without bound.

use bytes::{Bytes, BytesMut};

/// Why a capped read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body (or its announced `Content-Length`) exceeds the cap.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The connection failed mid-body.
    #[error("reading the answer: {0}")]
    Transport(String),
}

/// Read `resp`'s whole body, refusing one over `limit` bytes. A declared
/// `Content-Length` over the cap is refused before anything is read.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut buf = BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(ReadError::TooLarge { limit });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            // Display without the URL: callers name the operation.
            Err(e) => return Err(ReadError::Transport(e.without_url().to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn reads_up_to_the_cap_and_refuses_beyond_it() {
        let url = serve(
            axum::Router::new()
                .route("/small", get(|| async { "x".repeat(100) }))
                // A streamed body has no Content-Length: the cap applies
                // while reading.
                .route(
                    "/streamed",
                    get(|| async {
                        let chunks =
                            (0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 1024])));
                        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                    }),
                ),
        )
        .await;
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("{url}{path}")).send();

        let body = read_capped(get("/small").await.expect("small"), 100)
            .await
            .expect("exactly at the cap");
        assert_eq!(body.len(), 100);
        let err = read_capped(get("/small").await.expect("small"), 99)
            .await
            .expect_err("over the declared length");
        assert!(matches!(err, ReadError::TooLarge { limit: 99 }), "{err}");

        let resp = get("/streamed").await.expect("streamed");
        assert_eq!(resp.content_length(), None, "the test needs a chunked body");
        let err = read_capped(resp, 10_000).await.expect_err("streamed over");
        assert!(
            matches!(err, ReadError::TooLarge { limit: 10_000 }),
            "{err}"
        );
        let body = read_capped(get("/streamed").await.expect("streamed"), 64 * 1024)
            .await
            .expect("streamed within");
        assert_eq!(body.len(), 64 * 1024);
    }
}
