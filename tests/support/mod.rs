//! Shared scaffolding of the root crate's integration tests: a real
//! `delta node` process started from a `node.toml` its test wrote.
//!
//! Included with `mod support;` (Cargo does not build this file as a test of
//! its own). Polling (`eventually`) lives in `control/tests/common`, which
//! the tests that need it include.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// A `delta node` child process on a state directory `dir` holding its
/// `node.toml`; its stderr goes to `dir/node.log`. Killed on drop.
pub struct NodeProcess {
    pub child: Child,
    /// The address from its `listening on ...` line.
    pub addr: String,
    pub dir: PathBuf,
    /// What it is called in failures ("node", "node node-a", ...).
    name: String,
}

/// Compiled components are shared between tests (the cache is keyed by
/// content and engine), so each test does not recompile.
fn share_compile_cache(dir: &Path) {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state");
    let cache = state.join("cache");
    if !cache.exists() {
        let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-test-cache");
        std::fs::create_dir_all(&shared).expect("shared cache");
        std::os::unix::fs::symlink(shared, &cache).expect("cache link");
    }
}

impl NodeProcess {
    /// Start `delta node --config dir/node.toml` and wait (up to a minute)
    /// for it to say where it listens; `name` names it if it does not.
    pub fn spawn(dir: &Path, name: &str) -> Self {
        share_compile_cache(dir);
        let (child, addr) = spawn_daemon(dir, "node", &["DELTA_LISTEN"], name);
        Self {
            addr,
            child,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Start again on the same state directory and config (a new port).
    pub fn restart(&mut self) {
        *self = Self::spawn(&self.dir, &self.name);
    }

    /// `kill -9`: no drain, no goodbye, no lease returned.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal");
    }

    /// Wait (blocking the thread) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and wait (without blocking the runtime) for a clean exit.
    pub async fn terminate(&mut self) {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "{} exited with {status}\n{}",
                    self.name,
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `delta control` child process on `dir/control.toml` (which its test
/// wrote); its stderr goes to `dir/control.log`. Killed on drop.
pub struct ControlProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, from its `listening on ...` line.
    pub url: String,
    pub dir: PathBuf,
}

impl ControlProcess {
    /// Start `delta control --config dir/control.toml` and wait (up to a
    /// minute) for it to say where it listens.
    pub fn spawn(dir: &Path) -> Self {
        let (child, url) = spawn_daemon(
            dir,
            "control",
            &[
                "DELTA_CONTROL_LISTEN",
                "DELTA_DATABASE_URL",
                "DELTA_CONTROL_STATE_DIR",
            ],
            "delta control",
        );
        Self {
            url,
            child,
            dir: dir.to_owned(),
        }
    }

    /// `kill -9`: open transactions die with their connections.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("control.log")).unwrap_or_default()
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `delta <command> --config dir/<command>.toml` (its log in
/// `dir/<command>.log`, the variables `env_remove` names cleared so the
/// file decides) and wait up to a minute for it to print where it listens:
/// the child and that address.
fn spawn_daemon(dir: &Path, command: &str, env_remove: &[&str], name: &str) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_delta"));
    cmd.args([command, "--config"])
        .arg(dir.join(format!("{command}.toml")))
        .env("DELTA_LOG", "info");
    for var in env_remove {
        cmd.env_remove(var);
    }
    let log = dir.join(format!("{command}.log"));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log file"),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("start delta {command}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("{name} did not start: {line:?}\n{text}");
    };
    (child, addr.to_owned())
}
