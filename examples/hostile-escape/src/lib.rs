//! `hostile-escape`: tries to reach outside the sandbox and reports what it
//! saw. It never panics: every failure is reported, not raised.
//!
//! * Input: any JSON document (ignored).
//! * Output: `{"checks": {"<check>": {"allowed": <bool>, "detail": "<text>"}}}`
//!   with exactly these twelve checks (serialized with the keys in
//!   alphabetical order):
//!
//! | check | operation | `allowed` when |
//! | --- | --- | --- |
//! | `read-etc-passwd` | `std::fs::read("/etc/passwd")` | the read succeeded |
//! | `list-root` | `std::fs::read_dir("/")` | the directory could be opened |
//! | `list-cwd` | `std::fs::read_dir(".")` | the directory could be opened |
//! | `env-vars` | `std::env::vars_os()` | at least one variable is visible |
//! | `env-probe` | `std::env::var_os("DELTA_ESCAPE_PROBE")` | the variable is set |
//! | `args` | `std::env::args_os()` | more than one argument (anything beyond a program name) |
//! | `tcp-connect-localhost` | TCP connect to `127.0.0.1:22` (2 s timeout) | the connection was established |
//! | `tcp-connect-internet` | TCP connect to `1.1.1.1:443` (2 s timeout) | the connection was established |
//! | `udp-bind` | `UdpSocket::bind("0.0.0.0:0")` | the socket was bound |
//! | `dns-localhost` | resolve `localhost:80` | at least one address was returned |
//! | `dns-example-com` | resolve `example.com:443` | at least one address was returned |
//! | `create-tmp-file` | create and write `/tmp/delta-escape` | the file was created |
//!
//! `detail` is the error (`Display` of the `io::Error`) when the operation
//! failed, and a short description of what it got otherwise (byte counts,
//! up to 10 directory entries, variable count, argument list, peer or
//! local address, resolved addresses). Env var values are never echoed
//! except `DELTA_ESCAPE_PROBE`'s.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use delta_sdk::prelude::*;
use delta_sdk::serde::de::IgnoredAny;

/// Timeout of each TCP connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Check {
    allowed: bool,
    detail: String,
}

#[derive(Serialize)]
struct Output {
    checks: BTreeMap<&'static str, Check>,
}

fn outcome<T>(result: std::io::Result<T>, describe: impl FnOnce(T) -> (bool, String)) -> Check {
    match result {
        Ok(value) => {
            let (allowed, detail) = describe(value);
            Check { allowed, detail }
        }
        Err(e) => Check {
            allowed: false,
            detail: e.to_string(),
        },
    }
}

fn list_dir(path: &str) -> Check {
    outcome(std::fs::read_dir(path), |entries| {
        let names: Vec<String> = entries
            .take(10)
            .map(|entry| match entry {
                Ok(entry) => entry.file_name().to_string_lossy().into_owned(),
                Err(e) => format!("<error: {e}>"),
            })
            .collect();
        (true, format!("entries: {names:?}"))
    })
}

fn tcp_connect(addr: &str) -> Check {
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            return Check {
                allowed: false,
                detail: e.to_string(),
            };
        }
    };
    outcome(
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT),
        |stream| {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| format!("<unknown peer: {e}>"));
            (true, format!("connected to {peer}"))
        },
    )
}

fn resolve(host: &str) -> Check {
    outcome(host.to_socket_addrs(), |addrs| {
        let addrs: Vec<String> = addrs.take(10).map(|a| a.to_string()).collect();
        (!addrs.is_empty(), format!("addresses: {addrs:?}"))
    })
}

fn create_tmp_file() -> Check {
    use std::io::Write;
    outcome(std::fs::File::create("/tmp/delta-escape"), |mut file| {
        let written = match file.write_all(b"delta-escape\n") {
            Ok(()) => "written".to_owned(),
            Err(e) => format!("write failed: {e}"),
        };
        (true, format!("created /tmp/delta-escape ({written})"))
    })
}

struct HostileEscape;

impl Agent for HostileEscape {
    type Input = IgnoredAny;
    type Output = Output;

    fn run(_ctx: &Context, _input: IgnoredAny) -> Result<Output, AgentError> {
        let mut checks = BTreeMap::new();

        checks.insert(
            "read-etc-passwd",
            outcome(std::fs::read("/etc/passwd"), |bytes| {
                (true, format!("read {} bytes", bytes.len()))
            }),
        );
        checks.insert("list-root", list_dir("/"));
        checks.insert("list-cwd", list_dir("."));

        let vars = std::env::vars_os().count();
        checks.insert(
            "env-vars",
            Check {
                allowed: vars > 0,
                detail: format!("{vars} variables visible"),
            },
        );
        checks.insert(
            "env-probe",
            match std::env::var_os("DELTA_ESCAPE_PROBE") {
                Some(value) => Check {
                    allowed: true,
                    detail: format!("DELTA_ESCAPE_PROBE={}", value.to_string_lossy()),
                },
                None => Check {
                    allowed: false,
                    detail: "DELTA_ESCAPE_PROBE is not set".to_owned(),
                },
            },
        );
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        checks.insert(
            "args",
            Check {
                allowed: args.len() > 1,
                detail: format!("{} arguments: {args:?}", args.len()),
            },
        );

        checks.insert("tcp-connect-localhost", tcp_connect("127.0.0.1:22"));
        checks.insert("tcp-connect-internet", tcp_connect("1.1.1.1:443"));
        checks.insert(
            "udp-bind",
            outcome(UdpSocket::bind("0.0.0.0:0"), |socket| {
                let local = socket
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|e| format!("<unknown: {e}>"));
                (true, format!("bound {local}"))
            }),
        );
        checks.insert("dns-localhost", resolve("localhost:80"));
        checks.insert("dns-example-com", resolve("example.com:443"));
        checks.insert("create-tmp-file", create_tmp_file());

        Ok(Output { checks })
    }
}

delta_sdk::export_agent!(HostileEscape);
