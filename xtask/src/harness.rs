//! What `cargo xtask load`, `peers` and `soak` share: starting and
//! stopping servers, set-up requests without an HTTP client dependency,
//! driving a URL with Debian's `wrk` and reading its report, the node and
//! control-plane set-ups, and scratch files.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::step;

/// wrk's settings for one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrkSettings {
    /// wrk `-t`.
    pub threads: u32,
    /// wrk `-c`.
    pub connections: u32,
    /// wrk `-d`, in seconds.
    pub duration_secs: u64,
}

/// The deployed agent and its tenant.
pub(crate) const AGENT_ID: &str = "bench-hello";
pub(crate) const TENANT_ID: &str = "bench";
/// The run's input, sent by every request.
pub(crate) const RUN_BODY: &str = r#"{"input":{"name":"wrk"}}"#;
/// `delta up` prints this on stdout once it serves, hello-agent deployed.
pub(crate) const UP_READY_LINE: &str = "Stop with Ctrl-C.";
/// How long `delta up` may take to print [`UP_READY_LINE`]: it creates the
/// admin user (argon2id), compiles hello-agent, waits for its node's first
/// heartbeat and runs the agent once.
pub(crate) const UP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `delta up` may take to stop after SIGTERM (its node drains for
/// up to 10 s).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to answer its readiness probe.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of each set-up request (the first run compiles the component).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `30`, `30s`, `5m`, `1h` (wrk's own duration syntax) into seconds.
pub(crate) fn parse_duration(value: &str) -> Result<u64> {
    let (digits, scale) = match value.char_indices().last() {
        Some((i, 's')) => (&value[..i], 1),
        Some((i, 'm')) => (&value[..i], 60),
        Some((i, 'h')) => (&value[..i], 3600),
        _ => (value, 1),
    };
    match digits.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * scale),
        _ => bail!("--duration wants e.g. 30, 10s, 5m or 1h, not {value:?}"),
    }
}

/// Make sure `wrk` (the load generator every HTTP measurement uses) is on
/// `PATH`, installing Debian's package when it is missing, as the test
/// command installs what its suites run: a fresh machine (CI) has none.
pub(crate) fn check_wrk() -> Result<()> {
    xtask::services::ensure_binaries(
        &[("wrk", "wrk")],
        "the benchmark harness drives HTTP with it",
    )
}

/// hello-hyper's figures, one per entry of `runs` (the server stays up
/// between them).
pub(crate) fn bench_hyper(
    binary: &Path,
    work: &Path,
    runs: &[WrkSettings],
) -> Result<Vec<WrkReport>> {
    let addr = free_loopback_addr()?;
    step(&format!("hello-hyper on {addr}"));
    let mut server = Server::spawn(
        "hello-hyper",
        Command::new(binary).arg(addr.to_string()),
        &work.join("hello-hyper.log"),
    )?;
    server.wait_ready(addr, "/")?;
    let url = format!("http://{addr}/");
    let reports = runs
        .iter()
        .map(|settings| wrk(settings, &url, None))
        .collect::<Result<Vec<_>>>()?;
    drop(server);
    Ok(reports)
}

/// A server's figures under load.
pub(crate) struct ServerRun {
    pub(crate) wrk: WrkReport,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    pub(crate) rss_peak_kib: u64,
}

/// A `delta node` serving, hello-agent deployed as [`AGENT_ID`] and run
/// once.
pub(crate) struct Node {
    pub(crate) server: Server,
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    /// The component's address (sha256, hex).
    pub(crate) component: String,
    /// `POST` it with [`RUN_BODY`] for a run that answers when finished.
    pub(crate) run_path: String,
    /// The wrk script of that request (it holds the token).
    pub(crate) script: PathBuf,
}

/// The node's figures, one per entry of `runs` (the node stays up between
/// them).
pub(crate) fn bench_node(
    binary: &Path,
    wasm: &Path,
    work: &Path,
    runs: &[WrkSettings],
) -> Result<Vec<ServerRun>> {
    let node = start_node(binary, wasm, work)?;
    let url = format!("http://{}{}", node.addr, node.run_path);
    runs.iter()
        .map(|settings| wrk_with_rss(&node.server, settings, &url, &node.script))
        .collect()
}

/// Start `delta node` in `work/state`, upload hello-agent, deploy it and run
/// it once.
pub(crate) fn start_node(binary: &Path, wasm: &Path, work: &Path) -> Result<Node> {
    let component = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let sha256 = sha256_hex(wasm)?;
    let token = random_token()?;
    let token_file = work.join("token");
    write_private(&token_file, token.as_bytes())?;
    let state_dir = work.join("state");
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;

    let addr = free_loopback_addr()?;
    step(&format!("delta node on {addr}"));
    let mut server = Server::spawn(
        "delta node",
        Command::new(binary)
            .arg("node")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--allow-plain-http"),
        &work.join("node.log"),
    )?;
    server.wait_ready(addr, "/healthz")?;

    let auth = Some(token.as_str());
    let path = format!("/v1/components/{sha256}");
    expect_2xx(
        &server,
        &format!("PUT {path}"),
        http(
            addr,
            "PUT",
            &path,
            auth,
            Some("application/wasm"),
            &component,
        ),
    )?;
    let path = format!("/v1/agents/{AGENT_ID}");
    let spec = serde_json::json!({ "tenant_id": TENANT_ID, "component": sha256 }).to_string();
    expect_2xx(
        &server,
        &format!("PUT {path}"),
        http(
            addr,
            "PUT",
            &path,
            auth,
            Some("application/json"),
            spec.as_bytes(),
        ),
    )?;
    // One run before the load: compiles the component and proves the whole
    // path works, so a broken API fails here with a readable error rather
    // than as a wall of non-2xx in wrk's summary.
    let path = format!("/v1/agents/{AGENT_ID}/runs?wait=true");
    let first = expect_2xx(
        &server,
        &format!("POST {path}"),
        http(
            addr,
            "POST",
            &path,
            auth,
            Some("application/json"),
            RUN_BODY.as_bytes(),
        ),
    )?;
    println!("first run: {}", truncate(&first.body, 300));

    let script = work.join("runs.lua");
    // Private: the script holds the token.
    write_private(
        &script,
        wrk_script("POST", Some(RUN_BODY), &token).as_bytes(),
    )?;
    Ok(Node {
        server,
        addr,
        token,
        component: sha256,
        run_path: path,
        script,
    })
}

/// `delta up`'s figures, and how it took SIGTERM.
pub(crate) struct ControlRun {
    pub(crate) load: ServerRun,
    pub(crate) stopped: Result<()>,
}

pub(crate) fn bench_control(
    binary: &Path,
    wasm: &Path,
    work: &Path,
    options: &WrkSettings,
) -> Result<ControlRun> {
    let mut up = start_up(binary, wasm, work)?;
    let (addr, key) = (up.addr, up.key.clone());
    let auth = Some(key.as_str());
    // One request before the load, as for the node: a wrong key or route
    // fails here readably rather than as non-2xx in wrk's summary.
    let path = format!("/v1/agents/{}", up.hello_agent);
    let first = expect_2xx(
        &up.server,
        &format!("GET {path}"),
        http(addr, "GET", &path, auth, None, b""),
    )?;
    if first.status != 200 {
        bail!(
            "GET {path} answered {}, not 200: {}",
            first.status,
            truncate(&first.body, 500)
        );
    }
    println!("GET {path}: {}", truncate(&first.body, 300));

    let script = work.join("get-agent.lua");
    // Private: the script holds the API key.
    write_private(&script, wrk_script("GET", None, &key).as_bytes())?;
    let load = wrk_with_rss(
        &up.server,
        options,
        &format!("http://{addr}{path}"),
        &script,
    )?;
    let stopped = up.server.terminate(STOP_TIMEOUT);
    Ok(ControlRun { load, stopped })
}

/// `delta up` started by [`start_up`].
pub(crate) struct Up {
    pub(crate) server: Server,
    pub(crate) addr: SocketAddr,
    /// The admin API key `delta up` wrote.
    pub(crate) key: String,
    /// The id of the hello-agent it deployed.
    pub(crate) hello_agent: String,
}

/// Start `delta up` (control plane on SQLite, one node, rate limits off)
/// on a fresh state directory under `work`, with hello-agent deployed.
pub(crate) fn start_up(binary: &Path, wasm: &Path, work: &Path) -> Result<Up> {
    // `--examples` deploys every agent it finds: a directory holding only
    // hello-agent keeps start-up to one compile and the agent list known.
    let wasm =
        std::fs::canonicalize(wasm).with_context(|| format!("finding {}", wasm.display()))?;
    let examples = work.join("examples");
    std::fs::create_dir_all(&examples)
        .with_context(|| format!("creating {}", examples.display()))?;
    let link = examples.join("hello-agent.wasm");
    std::os::unix::fs::symlink(&wasm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), wasm.display()))?;
    // Fresh state (callers empty `work` already; this keeps the function
    // honest on its own): on an old one, `delta up` would skip creating the
    // admin key and find hello-agent already deployed.
    let state_dir = work.join("up");
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir)
            .with_context(|| format!("removing {}", state_dir.display()))?;
    }

    let listen = free_loopback_addr()?;
    step(&format!(
        "delta up on {listen} (control plane on SQLite, one node)"
    ));
    let mut server = Server::spawn(
        "delta up",
        Command::new(binary)
            .arg("up")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--examples")
            .arg(&examples)
            // Load generators send thousands of requests a second with one
            // key: the limiter would answer most of them 429.
            .arg("--no-rate-limits")
            // As the systemd units run it (see `malloc_arena_max`).
            .env("MALLOC_ARENA_MAX", malloc_arena_max()),
        &work.join("up.log"),
    )?;
    let log = server.wait_for_line(UP_READY_LINE, UP_TIMEOUT)?;
    // The address it says it serves on; the one we asked for otherwise.
    let addr = parse_api_addr(&log).unwrap_or(listen);
    let key_file = state_dir.join("admin-api-key");
    let key = std::fs::read_to_string(&key_file)
        .with_context(|| format!("reading {}", key_file.display()))?
        .trim()
        .to_owned();
    // It goes into a header line and a Lua string as it is.
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("{} does not hold an API key", key_file.display());
    }
    let path = "/v1/agents?limit=200";
    let list = expect_2xx(
        &server,
        &format!("GET {path}"),
        http(addr, "GET", path, Some(&key), None, b""),
    )?;
    let hello_agent = agent_id(&list.body, "hello-agent").with_context(|| {
        format!(
            "GET {path} answered {}{}",
            truncate(&list.body, 500),
            server.log_tail()
        )
    })?;
    Ok(Up {
        server,
        addr,
        key,
        hello_agent,
    })
}

/// Drive `url` with wrk (the request from `script`) and sample the server's
/// RSS meanwhile.
pub(crate) fn wrk_with_rss(
    server: &Server,
    options: &WrkSettings,
    url: &str,
    script: &Path,
) -> Result<ServerRun> {
    let pid = server.child.id();
    let rss_before_kib = rss_kib(pid)?;
    let stop = AtomicBool::new(false);
    let (report, rss_peak_kib) = std::thread::scope(|scope| {
        // Sampled while wrk runs: a leak shows as a climb, not just in the
        // end figure.
        let sampler = scope.spawn(|| {
            let mut peak = rss_before_kib;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    peak = peak.max(kib);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            peak
        });
        let report = wrk(options, url, Some(script));
        stop.store(true, Ordering::Relaxed);
        (report, sampler.join().unwrap_or(rss_before_kib))
    });
    let report = report?;
    let rss_after_kib =
        rss_kib(pid).with_context(|| format!("{} did not survive the load", server.name))?;
    Ok(ServerRun {
        wrk: report,
        rss_before_kib,
        rss_after_kib,
        rss_peak_kib: rss_peak_kib.max(rss_after_kib),
    })
}

/// A child server, killed when dropped (also on every error path).
pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn spawn(name: &'static str, command: &mut Command, log: &Path) -> Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name,
            child,
            log: log.to_owned(),
        })
    }

    /// Poll `GET path` until it answers 200.
    pub(crate) fn wait_ready(&mut self, addr: SocketAddr, path: &str) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("checking the server")? {
                bail!(
                    "{} exited ({status}) before it was ready{}",
                    self.name,
                    self.log_tail()
                );
            }
            let last = match http(addr, "GET", path, None, None, b"") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => format!("GET {path} answered {}", r.status),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {READY_TIMEOUT:?} ({last}){}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Poll the log until a line reads `line` (trailing blanks aside), and
    /// return the log. stdout and stderr share the log: the servers here
    /// print `line` on stdout only, and nothing on stderr looks like it.
    pub(crate) fn wait_for_line(&mut self, line: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read(&self.log)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .with_context(|| format!("reading {}", self.log.display()))?;
            if log.lines().any(|l| l.trim_end() == line) {
                return Ok(log);
            }
            if let Some(status) = self.child.try_wait().context("checking the server")? {
                bail!(
                    "{} exited ({status}) before printing {line:?}{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {line:?} within {timeout:?}{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server the way an operator or systemd would, SIGTERM, and
    /// wait for it: a hang or a failure on the way down is a finding too.
    /// (Past the timeout, `Drop` kills it.)
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Result<()> {
        let pid = self.child.id().to_string();
        // procps' `kill` rather than a libc dependency for xtask. The pid is
        // still ours: the child is not reaped before `try_wait` sees it exit.
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {pid} ({}) failed ({status})", self.name);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the server")? {
                if !status.success() {
                    bail!(
                        "{} exited with {status} after SIGTERM{}",
                        self.name,
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still running {timeout:?} after SIGTERM{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("; the end of {}:\n{tail}", self.log.display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port the kernel just handed out, released for the server to take. Racy
/// in principle, fine on a loopback benchmark machine.
/// glibc's `MALLOC_ARENA_MAX` for the `delta` processes xtask starts: the
/// caller's value, else 2, as in `systemd/*.service`. glibc's default (eight
/// arenas per core) let `delta up`'s RSS grow 10-17 % over a 10-minute soak
/// while its live heap stayed flat (heaptrack: 1.5 MB live at the end), i.e.
/// fragmentation across arenas; with 2 the growth was 4.3 % (benches/README.md,
/// Soak). An environment variable, not `mallopt` in `main`: that would need
/// `unsafe` in a crate that denies it, and operators can tune it per unit.
pub(crate) fn malloc_arena_max() -> String {
    std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".to_owned())
}

pub(crate) fn free_loopback_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    listener
        .local_addr()
        .context("finding a free loopback port")
}

/// An HTTP response from [`http`].
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): enough
/// for set-up calls without an HTTP client dependency in xtask.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = bearer {
        let _ = write!(head, "Authorization: Bearer {token}\r\n");
    }
    if let Some(content_type) = content_type {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    parse_response(&raw).with_context(|| format!("answer to {method} {path}"))
}

/// Status and body of a raw response (the body as sent: a chunked one keeps
/// its chunk sizes, which is fine for the messages it is used in).
pub(crate) fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {:?}", truncate(&text, 200)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok(HttpResponse { status, body })
}

pub(crate) fn expect_2xx(
    server: &Server,
    what: &str,
    response: Result<HttpResponse>,
) -> Result<HttpResponse> {
    let response = response.with_context(|| format!("{what}{}", server.log_tail()))?;
    if !(200..300).contains(&response.status) {
        bail!(
            "{what} answered {}: {}{}",
            response.status,
            truncate(&response.body, 500),
            server.log_tail()
        );
    }
    Ok(response)
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// The component's address on the node: sha256 of its bytes, hex.
pub(crate) fn sha256_hex(path: &Path) -> Result<String> {
    // coreutils' sha256sum rather than a hashing dependency for xtask.
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    if !output.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.split_whitespace().next() {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(hex.to_ascii_lowercase())
        }
        _ => bail!("unexpected sha256sum output: {stdout:?}"),
    }
}

/// A fresh bearer token: 32 random bytes, hex.
pub(crate) fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Write a secret readable only by us (the node may insist on that).
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .with_context(|| format!("writing {}", path.display()))
}

/// The node's resident set size, from `/proc/PID/status`.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
}

pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// wrk script: every request the same, with a JSON body if given, and the
/// bearer token. (Set once, not per request: no Lua in wrk's hot path.)
pub(crate) fn wrk_script(method: &str, json_body: Option<&str>, token: &str) -> String {
    let mut script = format!(
        "-- written by cargo xtask load\nwrk.method = {}\n",
        lua_string(method)
    );
    if let Some(body) = json_body {
        let _ = write!(
            script,
            "wrk.body = {}\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n",
            lua_string(body)
        );
    }
    let _ = writeln!(
        script,
        "wrk.headers[\"Authorization\"] = {}",
        lua_string(&format!("Bearer {token}"))
    );
    script
}

/// The address in `delta up`'s `  API       http://127.0.0.1:PORT   (OpenAPI:
/// ...)` line.
pub(crate) fn parse_api_addr(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "API" {
            return None;
        }
        words
            .next()?
            .strip_prefix("http://")?
            .trim_end_matches('/')
            .parse()
            .ok()
    })
}

/// The id of the agent called `name` in a `GET /v1/agents` page
/// (`{"items":[{"id":...,"name":...},...],...}`).
pub(crate) fn agent_id(page: &str, name: &str) -> Result<String> {
    let page: serde_json::Value = serde_json::from_str(page).context("not JSON")?;
    let items = page["items"].as_array().context("no \"items\" array")?;
    let agent = items
        .iter()
        .find(|agent| agent["name"] == name)
        .with_context(|| format!("no agent named {name:?} among the {} listed", items.len()))?;
    let id = agent["id"]
        .as_str()
        .with_context(|| format!("agent {name:?} has no string \"id\""))?;
    // It goes into a request line and wrk's URL as it is.
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if id.is_empty() || !id.bytes().all(url_safe) {
        bail!("agent {name:?} has an id that is not URL-safe: {id:?}");
    }
    Ok(id.to_owned())
}

pub(crate) fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What wrk reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrkReport {
    pub(crate) requests_per_sec: f64,
    /// Microseconds.
    pub(crate) p50_us: f64,
    /// Microseconds.
    pub(crate) p99_us: f64,
    pub(crate) requests: u64,
    pub(crate) non_2xx: u64,
    /// The "Socket errors:" line, if wrk printed one.
    pub(crate) socket_errors: Option<String>,
}

pub(crate) fn wrk(options: &WrkSettings, url: &str, script: Option<&Path>) -> Result<WrkReport> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", options.threads))
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{}s", options.duration_secs))
        .arg("--latency");
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    command.arg(url);
    println!(
        "wrk -t{} -c{} -d{}s --latency{} {url}",
        options.threads,
        options.connections,
        options.duration_secs,
        script
            .map(|s| format!(" -s {}", s.display()))
            .unwrap_or_default()
    );
    let output = command.output().context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report = parse_wrk(&stdout)?;
    if report.requests == 0 {
        bail!("wrk completed no request against {url}");
    }
    Ok(report)
}

pub(crate) fn parse_wrk(out: &str) -> Result<WrkReport> {
    let mut requests_per_sec = None;
    let mut p50_us = None;
    let mut p99_us = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = None;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50_us = parse_wrk_time(rest.trim());
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99_us = parse_wrk_time(rest.trim());
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest
                .trim()
                .parse()
                .with_context(|| format!("bad wrk line {line:?}"))?;
        } else if line.starts_with("Socket errors:") {
            socket_errors = Some(line.to_owned());
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse().ok();
        }
    }
    let missing = |what: &str| format!("no {what} in wrk's output (run with --latency?)");
    Ok(WrkReport {
        requests_per_sec: requests_per_sec.with_context(|| missing("Requests/sec"))?,
        p50_us: p50_us.with_context(|| missing("50% latency"))?,
        p99_us: p99_us.with_context(|| missing("99% latency"))?,
        requests: requests.with_context(|| missing("request count"))?,
        non_2xx,
        socket_errors,
    })
}

/// wrk's latency figures (`612.00us`, `1.20ms`, `2.00s`, `1.50m`) in µs.
pub(crate) fn parse_wrk_time(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(value * scale)
}

pub(crate) fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 10s test @ http://127.0.0.1:7499/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   277.41us  110.57us   4.47ms   85.54%
    Req/Sec   106.77k     6.04k  117.47k    73.00%
  Latency Distribution
     50%  268.00us
     75%  309.00us
     90%  368.00us
     99%    1.20ms
  1062448 requests in 10.00s, 89.17MB read
  Non-2xx or 3xx responses: 5
  Socket errors: connect 0, read 2, write 0, timeout 0
Requests/sec: 106227.78
Transfer/sec:      8.92MB
";

    #[test]
    fn parses_wrk_output() {
        let r = parse_wrk(WRK_OUTPUT).expect("parse");
        assert_eq!(r.requests_per_sec, 106227.78);
        assert_eq!(r.p50_us, 268.0);
        assert_eq!(r.p99_us, 1200.0);
        assert_eq!(r.requests, 1062448);
        assert_eq!(r.non_2xx, 5);
        assert_eq!(
            r.socket_errors.as_deref(),
            Some("Socket errors: connect 0, read 2, write 0, timeout 0")
        );
    }

    #[test]
    fn wrk_output_without_latency_is_an_error() {
        let out = "  10 requests in 1.00s, 1KB read\nRequests/sec: 10.00\n";
        assert!(parse_wrk(out).is_err());
    }

    #[test]
    fn parses_wrk_times() {
        assert_eq!(parse_wrk_time("612.00us"), Some(612.0));
        assert_eq!(parse_wrk_time("2.00s"), Some(2e6));
        assert_eq!(parse_wrk_time("1.50m"), Some(90e6));
        assert_eq!(parse_wrk_time("12"), None);
        assert_eq!(parse_wrk_time("1.0xs"), None);
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tdelta\nVmPeak:\t  100 kB\nVmRSS:\t   45312 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(45312));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
            .expect("response");
        assert_eq!((r.status, r.body.as_str()), (201, "{}"));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn lua_strings_are_escaped() {
        assert_eq!(lua_string(r#"{"a":"b\c"}"#), r#""{\"a\":\"b\\c\"}""#);
        let script = wrk_script("POST", Some(RUN_BODY), "abc");
        assert!(script.contains("wrk.method = \"POST\""));
        assert!(script.contains(r#"wrk.body = "{\"input\":{\"name\":\"wrk\"}}""#));
        assert!(script.contains("wrk.headers[\"Content-Type\"] = \"application/json\""));
        assert!(script.contains("wrk.headers[\"Authorization\"] = \"Bearer abc\""));
        let script = wrk_script("GET", None, "dk_x\"y");
        assert_eq!(
            script,
            "-- written by cargo xtask load\n\
             wrk.method = \"GET\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer dk_x\\\"y\"\n"
        );
    }

    #[test]
    fn parses_the_api_address_of_delta_up() {
        let log = "==> starting the control plane\n\
                   admin API key   dk_abc   (also in /x/admin-api-key)\n\
                   \n\
                   Delta is up.\n\
                   \x20 API       http://127.0.0.1:41234   (OpenAPI: http://127.0.0.1:41234/v1/openapi.json)\n\
                   \x20 API key   /x/admin-api-key\n\
                   Stop with Ctrl-C.\n";
        assert_eq!(
            parse_api_addr(log),
            Some(SocketAddr::from(([127, 0, 0, 1], 41234)))
        );
        assert_eq!(parse_api_addr("  API key   /x/admin-api-key\n"), None);
        assert_eq!(parse_api_addr("  API       https://example.com\n"), None);
        assert_eq!(parse_api_addr(""), None);
    }

    #[test]
    fn finds_an_agent_id_by_name() {
        let page = r#"{"items":[
            {"id":"agt_0190a","name":"email-bot","kind":"main"},
            {"id":"agt_0190b","name":"hello-agent","kind":"main"}
        ],"next_cursor":null}"#;
        assert_eq!(
            agent_id(page, "hello-agent").ok().as_deref(),
            Some("agt_0190b")
        );
        let err = agent_id(page, "sms-bot").expect_err("absent");
        assert!(format!("{err}").contains("among the 2 listed"), "{err}");
        assert!(agent_id("not json", "hello-agent").is_err());
        assert!(agent_id(r#"{"items":{}}"#, "hello-agent").is_err());
        assert!(agent_id(r#"[{"id":"a","name":"hello-agent"}]"#, "hello-agent").is_err());
        assert!(
            agent_id(
                r#"{"items":[{"id":7,"name":"hello-agent"}]}"#,
                "hello-agent"
            )
            .is_err()
        );
        assert!(
            agent_id(
                r#"{"items":[{"id":"","name":"hello-agent"}]}"#,
                "hello-agent"
            )
            .is_err()
        );
        let unsafe_id = r#"{"items":[{"id":"a b\r\nX: y","name":"hello-agent"}]}"#;
        assert!(agent_id(unsafe_id, "hello-agent").is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30").ok(), Some(30));
        assert_eq!(parse_duration("10s").ok(), Some(10));
        assert_eq!(parse_duration("5m").ok(), Some(300));
        assert_eq!(parse_duration("1h").ok(), Some(3600));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("m").is_err());
    }
}
