//! `delta up` and the CLI client end to end: the embedded platform starts,
//! creates its admin key once, deploys an example, and `delta agents` /
//! `delta runs` drive it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use delta_guest_artifacts as guests;

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    api: String,
}

impl Up {
    fn start(state: &Path, examples: &Path) -> (Self, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_delta"))
            .arg("up")
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state)
            .arg("--examples")
            .arg(examples)
            .env("DELTA_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("delta up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("delta up did not come up; it printed {seen:#?}"));
            let done = line.starts_with("Stop with Ctrl-C");
            seen.push(line);
            if done {
                break;
            }
        }
        let api = seen
            .iter()
            .find_map(|l| l.trim().strip_prefix("API"))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("API line")
            .to_owned();
        (
            Self {
                child,
                lines: rx,
                api,
            },
            seen,
        )
    }

    fn cli(&self, state: &Path, args: &[&str]) -> (i32, String, String) {
        let key = std::fs::read_to_string(state.join("admin-api-key")).expect("key");
        let out = Command::new(env!("CARGO_BIN_EXE_delta"))
            .args(args)
            .env("DELTA_API_URL", &self.api)
            .env("DELTA_API_KEY", key.trim())
            .output()
            .expect("delta cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let status = self.child.wait().expect("wait");
        drop(self.lines);
        status
    }
}

#[test]
fn up_deploys_examples_and_the_cli_drives_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = dir.path().join("examples");
    std::fs::create_dir_all(&examples).expect("examples");
    std::os::unix::fs::symlink(guests::HELLO_AGENT, examples.join("hello-agent.wasm"))
        .expect("link");
    // Hostile guests and verifiers in the folder are not deployed as agents
    // (a verifier once stopped `delta up --examples target/guests`).
    std::os::unix::fs::symlink(guests::HOSTILE_LOOP, examples.join("hostile-loop.wasm"))
        .expect("link");
    std::os::unix::fs::symlink(guests::JSON_VERIFIER, examples.join("json-verifier.wasm"))
        .expect("link");
    std::os::unix::fs::symlink(guests::JS_VERIFIER, examples.join("js-verifier.wasm"))
        .expect("link");
    let state = dir.path().join("state");

    let (up, printed) = Up::start(&state, &examples);
    let all = printed.join("\n");
    assert!(all.contains("admin API key"), "{all}");
    assert!(all.contains("-> {\"greeting\":\"Hello, Delta!\"}"), "{all}");
    let key_file = state.join("admin-api-key");
    let mode = std::fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");

    let (code, out, err) = up.cli(&state, &["agents", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hello-agent"), "{out}");
    assert!(!out.contains("hostile-loop"), "{out}");

    // Connection options anywhere on the line; --app-id is X-App-ID.
    let (code, out, err) = up.cli(&state, &["agents", "list", "--api-url", &up.api]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hello-agent"), "{out}");
    let (code, _, err) = up.cli(&state, &["agents", "list", "--app-id", "ten_somebody_else"]);
    assert_ne!(code, 0);
    assert!(err.contains("app_not_allowed"), "{err}");

    // Usage and token requests from the command line.
    let (code, out, err) = up.cli(&state, &["usage", "--group-by", "day", "--kind", "runs"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("runs"), "{out}");
    let (code, out, err) = up.cli(&state, &["usage", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"rows\""), "{out}");
    let (code, out, err) = up.cli(&state, &["token-requests", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no pending token requests"), "{out}");
    let (code, _, err) = up.cli(&state, &["token-requests", "approve", "tkr_nosuchrequest"]);
    assert_ne!(code, 0);
    assert!(err.contains("404"), "{err}");

    // `delta login` keeps a 0600 profile; later commands need no flags
    // (from another folder, without the environment), `delta logout`
    // forgets it.
    let config = dir.path().join("config");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("folder");
    let key = std::fs::read_to_string(state.join("admin-api-key")).expect("key");
    let delta = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_delta"))
            .args(args)
            .current_dir(&elsewhere)
            .env_remove("DELTA_API_URL")
            .env_remove("DELTA_API_KEY")
            .env("XDG_CONFIG_HOME", &config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("delta");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = delta(&["agents", "list"], "");
    assert_ne!(code, 0, "no profile, no key: refused");
    assert!(err.contains("delta login"), "{err}");
    let (code, _, err) = delta(&["login", "--api-url", &up.api], "dk_wrong_key\n");
    assert_ne!(code, 0, "a wrong key is not saved");
    assert!(err.contains("401"), "{err}");
    let (code, out, err) = delta(
        &["login", "--api-url", &up.api],
        &format!("{}\n", key.trim()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("admin@delta.local"), "{out}");
    let profile = config.join("delta/profile.json");
    let mode = std::fs::metadata(&profile)
        .expect("profile")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the profile is private");
    let (code, out, err) = delta(&["agents", "list"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hello-agent"), "{out}");
    let (code, out, _) = delta(&["logout"], "");
    assert_eq!(code, 0);
    assert!(out.contains("removed"), "{out}");
    assert!(!profile.exists());

    // The embedded node was enrolled through the API: its own credential,
    // private, listed without its secret.
    let credential_file = state.join("node-credential");
    let credential = std::fs::read_to_string(&credential_file).expect("node credential");
    let mode = |p: &Path| std::fs::metadata(p).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode(&credential_file), 0o600);
    let (id, secret) = credential
        .trim()
        .split_once('.')
        .expect("ncr_<id>.<secret>");
    assert!(id.starts_with("ncr_"), "{credential}");
    let (code, out, err) = up.cli(&state, &["nodes", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("local") && out.contains("up"), "{out}");
    let (code, out, err) = up.cli(&state, &["nodes", "credentials", "local"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(id) && !out.contains(secret), "{out}");
    // Enrol, rotate and revoke another node from the CLI.
    let first = dir.path().join("n2.credential");
    let second = dir.path().join("n2.rotated");
    let arg = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let token_file = dir.path().join("n2.token");
    let (code, _, err) = up.cli(
        &state,
        &[
            "nodes",
            "enroll",
            "n2",
            "--out",
            &arg(&first),
            "--node-token-out",
            &arg(&token_file),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&first), 0o600);
    // n2's own API token: not the embedded node's, which is derived alike.
    assert_eq!(mode(&token_file), 0o600);
    let n2_token = std::fs::read_to_string(&token_file).expect("n2 token");
    let local_token = std::fs::read_to_string(state.join("node-token")).expect("local token");
    assert!(n2_token.starts_with("nat_"), "{n2_token}");
    assert_ne!(n2_token.trim(), local_token.trim());
    // Only the operator moves a node's URL.
    let (code, out, err) = up.cli(&state, &["nodes", "set-url", "n2", "http://127.0.0.1:9"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("http://127.0.0.1:9"), "{out}");
    let (code, _, err) = up.cli(
        &state,
        &[
            "nodes",
            "credentials",
            "n2",
            "--rotate",
            "--retire-others-after",
            "0",
            "--out",
            &arg(&second),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let old_id = std::fs::read_to_string(&first).expect("first");
    let old_id = old_id.split('.').next().expect("id");
    let (code, out, err) = up.cli(&state, &["nodes", "credentials", "n2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, _, err) = up.cli(&state, &["nodes", "revoke", "n2", old_id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = up.cli(&state, &["nodes", "enroll", "n2"]);
    assert_ne!(code, 0);
    assert!(err.contains("node_enrolled"), "{err}");

    let (code, out, err) = up.cli(
        &state,
        &[
            "runs",
            "create",
            "hello-agent",
            "--input",
            r#"{"name":"CLI"}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let run: serde_json::Value = serde_json::from_str(&out).expect("run json");
    assert_eq!(
        run["outcome"]["output"], r#"{"greeting":"Hello, CLI!"}"#,
        "{run}"
    );
    let id = run["id"].as_str().expect("run id");
    let (code, out, err) = up.cli(&state, &["runs", "logs", id, "--follow"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("greeting CLI"), "{out}");
    let (code, _, err) = up.cli(&state, &["runs", "get", "run_nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("404"), "{err}");
    // A finished run is neither cancelled nor retried: conflict, exit 9.
    let (code, _, err) = up.cli(&state, &["runs", "cancel", id]);
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("not_running"), "{err}");
    let (code, _, err) = up.cli(&state, &["runs", "retry", id]);
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("not_dead"), "{err}");

    assert!(up.stop().success());

    // A second start keeps the key and the agents.
    let (up, printed) = Up::start(&state, &examples);
    let all = printed.join("\n");
    assert!(!all.contains("admin password"), "{all}");
    let (code, out, _) = up.cli(&state, &["agents", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("hello-agent").count(), 1, "{out}");
    assert!(up.stop().success());
}

#[test]
fn a_control_config_naming_the_old_fleet_token_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("control.toml");
    std::fs::write(&config, "node_token_file = \"node-token\"\n").expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_delta"))
        .args(["control", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("control"))
        .output()
        .expect("delta control");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node_token_file") && err.contains("node_api_secret_file"),
        "{err}"
    );
}

#[test]
fn delta_control_serves_alone_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_delta"))
        .args(["control", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path().join("control"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("delta control");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let health = client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(health.status(), reqwest::StatusCode::OK);
        let created = client
            .post(format!("{url}/v1/auth/register"))
            .json(&serde_json::json!({ "email": "ops@example.com", "password": "long enough password" }))
            .send()
            .await
            .expect("register");
        // Registration is closed unless control.toml opens it.
        assert_eq!(created.status(), reqwest::StatusCode::FORBIDDEN);
        let body: serde_json::Value = created.json().await.expect("json");
        assert_eq!(body["code"], "registration_closed", "{body}");
    });
    assert!(dir.path().join("control/control.db").exists());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    assert!(child.wait().expect("wait").success());

    // Accounts on a closed control plane are made on its host.
    std::fs::write(dir.path().join("pw"), "long enough password\n").expect("pw");
    let out = Command::new(env!("CARGO_BIN_EXE_delta"))
        .args([
            "control",
            "--create-account",
            "ops@example.com",
            "--password-file",
        ])
        .arg(dir.path().join("pw"))
        .arg("--state-dir")
        .arg(dir.path().join("control"))
        .stderr(Stdio::null())
        .output()
        .expect("delta control --create-account");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("created user usr"), "{stdout}");
    assert!(stdout.contains("ops@example.com"), "{stdout}");
    // A second time: the address is taken, and it says so.
    let again = Command::new(env!("CARGO_BIN_EXE_delta"))
        .args([
            "control",
            "--create-account",
            "OPS@example.com",
            "--password-file",
        ])
        .arg(dir.path().join("pw"))
        .arg("--state-dir")
        .arg(dir.path().join("control"))
        .output()
        .expect("delta control --create-account");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("email_taken"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
