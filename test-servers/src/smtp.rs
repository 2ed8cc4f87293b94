//! A real (plaintext) SMTP server on `127.0.0.1:0` that records every
//! message it accepts.
//!
//! It speaks enough ESMTP for lettre and other clients: `EHLO`/`HELO`
//! (advertising `AUTH PLAIN LOGIN` and `8BITMIME`), `AUTH PLAIN` and
//! `AUTH LOGIN` (with or without an initial response), `MAIL FROM`,
//! `RCPT TO`, `DATA` (with dot-unstuffing), `RSET`, `NOOP` and `QUIT`.
//! There is no TLS: point clients at it with TLS disabled.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use delta_test_servers::smtp::{SmtpServer, SmtpServerConfig};
//! let server = SmtpServer::start(SmtpServerConfig::with_credentials("user", "secret")).await?;
//! // ... send through 127.0.0.1:server.addr().port() ...
//! let mail = &server.messages()[0];
//! assert_eq!(mail.auth.as_ref().map(|a| a.username.as_str()), Some("user"));
//! assert_eq!(mail.header("Subject").as_deref(), Some("Hello"));
//! # Ok(()) }
//! ```
//!
//! Dropping the server stops accepting connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest command or data line accepted, in bytes; longer input ends the
/// connection (keeps a broken client from growing memory without bound).
const MAX_LINE: u64 = 64 * 1024;

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct SmtpServerConfig {
    /// Accepted `(username, password)`. `None`: any credentials succeed.
    pub credentials: Option<(String, String)>,
    /// Refuse `MAIL FROM` with `530` until the client authenticated.
    pub require_auth: bool,
}

impl SmtpServerConfig {
    /// Accept only these credentials and require AUTH before `MAIL FROM`.
    pub fn with_credentials(username: &str, password: &str) -> Self {
        Self {
            credentials: Some((username.to_owned(), password.to_owned())),
            require_auth: true,
        }
    }
}

/// The AUTH exchange a client completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAuth {
    /// `PLAIN` or `LOGIN`.
    pub mechanism: String,
    /// User name sent.
    pub username: String,
    /// Password sent.
    pub password: String,
}

/// One message the server accepted (`250` after `DATA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `EHLO`/`HELO` argument.
    pub helo: String,
    /// The successful AUTH on this connection, if any.
    pub auth: Option<SmtpAuth>,
    /// `MAIL FROM` address (without angle brackets or parameters).
    pub mail_from: String,
    /// `RCPT TO` addresses, in order.
    pub rcpt_to: Vec<String>,
    /// The message as received, dot-unstuffed, lines joined with CRLF,
    /// without the terminating `.` line.
    pub data: String,
}

impl ReceivedMail {
    /// The header section (before the first empty line).
    pub fn headers(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or(self.data.as_str(), |(h, _)| h)
    }

    /// The body (after the first empty line), as transferred (not decoded).
    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// Every header line name (in order, folded lines joined), for checking
    /// that nothing unexpected was added.
    pub fn header_names(&self) -> Vec<String> {
        self.unfolded()
            .iter()
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
            .collect()
    }

    /// The value of the first header called `name` (case-insensitive),
    /// unfolded and trimmed; not MIME-decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.unfolded().into_iter().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn unfolded(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in self.headers().split("\r\n") {
            if line.starts_with([' ', '\t'])
                && let Some(last) = out.last_mut()
            {
                last.push_str(line);
                continue;
            }
            out.push(line.to_owned());
        }
        out
    }
}

#[derive(Debug, Default)]
struct State {
    messages: Vec<ReceivedMail>,
    reject_data: Option<u16>,
    connections: usize,
    auth_attempts: usize,
}

/// A running SMTP server. See the module docs.
#[derive(Debug)]
pub struct SmtpServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    /// Bind `127.0.0.1:0` and serve until dropped.
    pub async fn start(config: SmtpServerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let config = Arc::new(config);
        let task = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    lock(&state).connections += 1;
                    let state = Arc::clone(&state);
                    let config = Arc::clone(&config);
                    tokio::spawn(async move {
                        // A client that misbehaves just loses its connection.
                        let _ = serve(stream, &config, &state).await;
                    });
                }
            })
        };
        Ok(Self { addr, state, task })
    }

    /// The bound address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.state).messages.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// `AUTH` commands received so far, successful or not.
    pub fn auth_attempts(&self) -> usize {
        lock(&self.state).auth_attempts
    }

    /// Answer the end of `DATA` with this code (e.g. `554` permanent, `451`
    /// transient) instead of `250`, without recording the message; `None`
    /// accepts again.
    pub fn reject_data(&self, code: Option<u16>) {
        lock(&self.state).reject_data = code;
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Text after `prefix` (case-insensitive) or `None`.
fn strip_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &line[prefix.len()..])
}

/// `<addr> PARAMS` -> `addr`.
fn path_arg(rest: &str) -> String {
    let rest = rest.trim();
    match (rest.find('<'), rest.find('>')) {
        (Some(a), Some(b)) if a < b => rest[a + 1..b].to_owned(),
        _ => rest.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    /// One line without its CRLF; `None` at EOF or when over-long.
    async fn line(&mut self) -> std::io::Result<Option<String>> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 || !buf.ends_with(b"\n") {
            return Ok(None);
        }
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.writer.write_all(text.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await?;
        self.writer.flush().await
    }

    async fn b64_line(&mut self) -> std::io::Result<Option<String>> {
        Ok(self
            .line()
            .await?
            .and_then(|l| B64.decode(l.trim()).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

async fn serve(
    stream: TcpStream,
    config: &SmtpServerConfig,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let (r, w) = stream.into_split();
    let mut c = Conn {
        reader: BufReader::new(r),
        writer: w,
    };
    c.reply("220 delta-test-smtp ESMTP ready").await?;

    let mut helo = String::new();
    let mut auth: Option<SmtpAuth> = None;
    let mut mail_from: Option<String> = None;
    let mut rcpt_to: Vec<String> = Vec::new();

    while let Some(line) = c.line().await? {
        if let Some(arg) = strip_ci(&line, "EHLO") {
            helo = arg.trim().to_owned();
            mail_from = None;
            rcpt_to.clear();
            c.reply("250-delta-test-smtp greets you\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN")
                .await?;
        } else if let Some(arg) = strip_ci(&line, "HELO") {
            helo = arg.trim().to_owned();
            c.reply("250 delta-test-smtp").await?;
        } else if let Some(arg) = strip_ci(&line, "AUTH ") {
            lock(state).auth_attempts += 1;
            let mut parts = arg.split_whitespace();
            let mechanism = parts.next().unwrap_or("").to_ascii_uppercase();
            let initial = parts.next().map(str::to_owned);
            let creds = match mechanism.as_str() {
                "PLAIN" => {
                    let encoded = match initial {
                        Some(i) => Some(i),
                        None => {
                            c.reply("334 ").await?;
                            c.line().await?
                        }
                    };
                    // authzid \0 authcid \0 password
                    encoded
                        .and_then(|e| B64.decode(e.trim()).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .and_then(|s| {
                            let mut it = s.split('\0');
                            let _authzid = it.next()?;
                            Some((it.next()?.to_owned(), it.next()?.to_owned()))
                        })
                }
                "LOGIN" => {
                    let user = match initial {
                        Some(i) => B64
                            .decode(i.trim())
                            .ok()
                            .map(|b| String::from_utf8_lossy(&b).into_owned()),
                        None => {
                            c.reply("334 VXNlcm5hbWU6").await?;
                            c.b64_line().await?
                        }
                    };
                    c.reply("334 UGFzc3dvcmQ6").await?;
                    let pass = c.b64_line().await?;
                    user.zip(pass)
                }
                _ => {
                    c.reply("504 5.5.4 unrecognized authentication type")
                        .await?;
                    continue;
                }
            };
            let Some((username, password)) = creds else {
                c.reply("501 5.5.2 cannot decode AUTH response").await?;
                continue;
            };
            let ok = config
                .credentials
                .as_ref()
                .is_none_or(|(u, p)| *u == username && *p == password);
            if ok {
                auth = Some(SmtpAuth {
                    mechanism,
                    username,
                    password,
                });
                c.reply("235 2.7.0 authentication successful").await?;
            } else {
                c.reply("535 5.7.8 authentication credentials invalid")
                    .await?;
            }
        } else if let Some(arg) = strip_ci(&line, "MAIL FROM:") {
            if config.require_auth && auth.is_none() {
                c.reply("530 5.7.0 authentication required").await?;
            } else {
                mail_from = Some(path_arg(arg));
                rcpt_to.clear();
                c.reply("250 2.1.0 ok").await?;
            }
        } else if let Some(arg) = strip_ci(&line, "RCPT TO:") {
            if mail_from.is_none() {
                c.reply("503 5.5.1 MAIL first").await?;
            } else {
                rcpt_to.push(path_arg(arg));
                c.reply("250 2.1.5 ok").await?;
            }
        } else if line.eq_ignore_ascii_case("DATA") {
            let Some(from) = mail_from.clone().filter(|_| !rcpt_to.is_empty()) else {
                c.reply("503 5.5.1 MAIL and RCPT first").await?;
                continue;
            };
            c.reply("354 end data with <CR><LF>.<CR><LF>").await?;
            let mut lines = Vec::new();
            loop {
                let Some(l) = c.line().await? else {
                    return Ok(());
                };
                if l == "." {
                    break;
                }
                // RFC 5321 4.5.2: a leading dot was doubled by the client.
                lines.push(l.strip_prefix('.').map_or(l.clone(), str::to_owned));
            }
            let reject = lock(state).reject_data;
            if let Some(code) = reject {
                c.reply(&format!("{code} message rejected by test server"))
                    .await?;
            } else {
                let id = {
                    let mut s = lock(state);
                    s.messages.push(ReceivedMail {
                        helo: helo.clone(),
                        auth: auth.clone(),
                        mail_from: from,
                        rcpt_to: rcpt_to.clone(),
                        data: lines.join("\r\n"),
                    });
                    s.messages.len()
                };
                c.reply(&format!("250 2.0.0 ok queued as test-{id}"))
                    .await?;
            }
            mail_from = None;
            rcpt_to.clear();
        } else if line.eq_ignore_ascii_case("RSET") {
            mail_from = None;
            rcpt_to.clear();
            c.reply("250 2.0.0 ok").await?;
        } else if line.eq_ignore_ascii_case("NOOP") {
            c.reply("250 2.0.0 ok").await?;
        } else if line.eq_ignore_ascii_case("QUIT") {
            c.reply("221 2.0.0 bye").await?;
            return Ok(());
        } else {
            c.reply("502 5.5.2 command not recognized").await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn client(server: &SmtpServer) -> Conn {
        let s = TcpStream::connect(server.addr()).await.expect("connect");
        let (r, w) = s.into_split();
        Conn {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn expect(c: &mut Conn, code: &str) {
        loop {
            let l = c.line().await.expect("read").expect("line");
            assert!(l.starts_with(code), "wanted {code}, got {l}");
            if l.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }

    #[tokio::test]
    async fn raw_session_with_login_rset_and_dot_unstuffing() {
        let server = SmtpServer::start(SmtpServerConfig::with_credentials("u", "p"))
            .await
            .expect("start");
        let mut c = client(&server).await;
        expect(&mut c, "220").await;
        c.reply("EHLO tester").await.expect("w");
        expect(&mut c, "250").await;
        c.reply("MAIL FROM:<a@x.test>").await.expect("w");
        expect(&mut c, "530").await;
        c.reply("AUTH LOGIN").await.expect("w");
        expect(&mut c, "334").await;
        c.reply(&B64.encode("u")).await.expect("w");
        expect(&mut c, "334").await;
        c.reply(&B64.encode("p")).await.expect("w");
        expect(&mut c, "235").await;
        c.reply("MAIL FROM:<old@x.test>").await.expect("w");
        expect(&mut c, "250").await;
        c.reply("RSET").await.expect("w");
        expect(&mut c, "250").await;
        c.reply("MAIL FROM:<a@x.test> BODY=8BITMIME")
            .await
            .expect("w");
        expect(&mut c, "250").await;
        c.reply("RCPT TO:<b@y.test>").await.expect("w");
        expect(&mut c, "250").await;
        c.reply("DATA").await.expect("w");
        expect(&mut c, "354").await;
        c.reply("Subject: t\r\n\r\n..leading dot\r\nend\r\n.")
            .await
            .expect("w");
        expect(&mut c, "250").await;
        c.reply("QUIT").await.expect("w");
        expect(&mut c, "221").await;

        let m = &server.messages()[0];
        assert_eq!(m.helo, "tester");
        assert_eq!(m.mail_from, "a@x.test");
        assert_eq!(m.rcpt_to, vec!["b@y.test".to_owned()]);
        assert_eq!(m.header("subject").as_deref(), Some("t"));
        assert_eq!(m.body(), ".leading dot\r\nend");
        let auth = m.auth.as_ref().expect("auth");
        assert_eq!(
            (
                auth.mechanism.as_str(),
                auth.username.as_str(),
                auth.password.as_str()
            ),
            ("LOGIN", "u", "p")
        );
    }

    #[tokio::test]
    async fn wrong_password_is_refused() {
        let server = SmtpServer::start(SmtpServerConfig::with_credentials("u", "p"))
            .await
            .expect("start");
        let mut c = client(&server).await;
        expect(&mut c, "220").await;
        c.reply("EHLO t").await.expect("w");
        expect(&mut c, "250").await;
        c.reply(&format!("AUTH PLAIN {}", B64.encode("\0u\0wrong")))
            .await
            .expect("w");
        expect(&mut c, "535").await;
    }
}
