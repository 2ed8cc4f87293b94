//! `wasi:http/proxy` hello-world: answers every request `200 Hello, wrk!`.
//!
//! Not a Delta agent: it is what an operator would run with `wasmtime serve`
//! instead of Delta, so `cargo xtask peers` (benches/README.md) serves it
//! with `wasmtime serve` and drives it with the same load as Delta's node.
//! The work is kept as trivial as hello-agent's (a fixed greeting, no
//! parsing) so the comparison is about the runtimes, not the guests.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const BODY: &[u8] = b"Hello, wrk!\n";

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::new();
        // Fixed, valid header: `append` fails only on invalid names/values or
        // immutable fields, neither possible here; the response goes out
        // without it rather than not at all.
        let _ = headers.append("content-type", b"text/plain");
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(stream) = body.write() {
            // One small write: within the stream's permitted size.
            let _ = stream.blocking_write_and_flush(BODY);
            drop(stream);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Hello);
