//! README.md's bounty walkthrough, run as written: the ```sh block after
//! the `<!-- walkthrough: ... -->` marker is split into its paragraphs and
//! each is sourced, in order, by one `bash` (so variables and functions
//! carry over) under `set -euo pipefail`, with `delta` (this build) and
//! the README's `curl` and `jq` on the path, against a control plane and a
//! node of the test harness. A command that fails fails the test, naming
//! its paragraph. Afterwards the state it left is checked through the API
//! and the database: the attempted bounty completed with a passing
//! verdict, the agent owner got 85 %, the platform 15 %, and the bounty the
//! failing agent attempted was refunded in full at its deadline.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::common::bounties::{account, assert_conserved};
use crate::common::{Control, Dialect, Session, eventually, start_node_in_process};
use delta_guest_artifacts as guests;

/// What marks the block in README.md.
const MARKER: &str = "<!-- walkthrough:";

/// The longest a paragraph may take: the refund paragraph waits for a
/// 20-second deadline; compiles on a loaded machine take a while.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// The paragraphs of the first ```sh block after the marker (it must be
/// the very next line, so that an edit cannot silently detach the two).
fn walkthrough(readme: &str) -> Vec<String> {
    let at = readme
        .find(MARKER)
        .expect("README.md has no `<!-- walkthrough: -->` block");
    let after = &readme[at..];
    let (_, rest) = after
        .split_once('\n')
        .expect("a line after the walkthrough marker");
    let body = rest
        .strip_prefix("```sh\n")
        .expect("the walkthrough marker is followed by a ```sh fence");
    let (block, _) = body
        .split_once("\n```")
        .expect("the walkthrough block is closed");
    block
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One `bash` that the paragraphs are sourced into.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
    dir: PathBuf,
    /// Everything it printed, for failure messages.
    transcript: String,
    steps: usize,
}

impl Shell {
    fn start(dir: &Path, envs: &[(&str, String)]) -> Self {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env_remove("DELTA_API_KEY")
            .env_remove("DELTA_APP_ID")
            // No profile of the machine's user (`delta login`) applies.
            .env("HOME", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("bash");
        let stdin = child.stdin.take().expect("stdin");
        let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin,
            out,
            dir: dir.to_owned(),
            transcript: String::new(),
            steps: 0,
        }
    }

    /// Send `line` to the shell itself.
    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("writing to bash");
        self.stdin.flush().await.expect("flush");
    }

    /// Source `script` (from a file, with stdin closed so that no command
    /// in it eats the driver's next lines) and answer what it printed;
    /// panics with the transcript if the shell exits (a command failed) or
    /// it takes too long.
    async fn step(&mut self, script: &str) -> String {
        self.steps += 1;
        let n = self.steps;
        let file = self.dir.join(format!("step-{n}.sh"));
        std::fs::write(&file, script).expect("step file");
        let done = format!("@@walkthrough-step-{n}-done");
        self.send(&format!(
            ". {} < /dev/null; echo; echo {done}",
            file.display()
        ))
        .await;
        let mut printed = String::new();
        let read = tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match self.out.next_line().await.expect("reading bash") {
                    Some(line) if line == done => return true,
                    Some(line) => {
                        printed.push_str(&line);
                        printed.push('\n');
                    }
                    None => return false,
                }
            }
        })
        .await;
        self.transcript.push_str(&format!("$ {script}\n{printed}"));
        match read {
            Ok(true) => printed,
            Ok(false) => {
                let status = self.child.wait().await.ok();
                panic!(
                    "README walkthrough paragraph {n} failed ({status:?}):\n{script}\n\
                     --- transcript ---\n{}",
                    self.transcript
                )
            }
            Err(_) => panic!(
                "README walkthrough paragraph {n} took over {STEP_TIMEOUT:?}:\n{script}\n\
                 --- transcript ---\n{}",
                self.transcript
            ),
        }
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// A session holding only an access token (all the helpers use).
fn holder(access: &str) -> Session {
    Session {
        user_id: String::new(),
        tenant_id: String::new(),
        access: access.to_owned(),
        refresh: String::new(),
        email: String::new(),
        password: String::new(),
    }
}

async fn the_readme_walkthrough_runs(dialect: Dialect) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let steps = walkthrough(&readme);
    assert!(steps.len() >= 5, "too few paragraphs: {steps:#?}");

    let ctl = Control::start(dialect).await;
    let _node = start_node_in_process(&ctl, "walkthrough-node", "").await;
    let op = ctl.operator().await;
    // The README assumes a running platform: its node up before the first
    // agent is created.
    eventually("the node to be up", Duration::from_secs(30), || async {
        let (_, page) = ctl
            .call(Method::GET, "/v1/nodes", Some(&op.access), None)
            .await;
        page["items"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["status"] == "up"))
            .then_some(())
    })
    .await;

    let work = tempfile::tempdir().expect("tempdir");
    let delta = PathBuf::from(env!("CARGO_BIN_EXE_delta"));
    let path = format!(
        "{}:{}",
        delta.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let guests_dir = Path::new(guests::JSON_VERIFIER)
        .parent()
        .expect("guests dir")
        .display()
        .to_string();
    let mut sh = Shell::start(
        work.path(),
        &[
            ("PATH", path),
            ("DELTA_API_URL", ctl.url.clone()),
            ("OP", op.access.clone()),
            ("GUESTS", guests_dir),
        ],
    );
    sh.send("exec 2>&1; set -euo pipefail; shopt -s inherit_errexit")
        .await;
    let mut printed = Vec::new();
    for step in &steps {
        printed.push(sh.step(step).await);
    }
    let vars = sh.step(r#"echo "@@vars $ALICE $BOB $B $B2""#).await;
    let vars: Vec<&str> = vars
        .lines()
        .find_map(|l| l.strip_prefix("@@vars "))
        .unwrap_or_else(|| panic!("{vars}"))
        .split(' ')
        .collect();
    let [alice, bob, paid, refunded] = vars[..] else {
        panic!("the walkthrough's variables: {vars:?}")
    };
    let (alice, bob) = (holder(alice), holder(bob));
    let all = printed.join("");

    // The attempted bounty: completed by the solver's passing submission.
    let (status, b) = ctl
        .call(
            Method::GET,
            &format!("/v1/bounties/{paid}"),
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "completed", "{b}\n{}", sh.transcript);
    let (_, sub) = ctl
        .call(
            Method::GET,
            &format!("/v1/submissions/{}", s(&b["approved_submission_id"])),
            Some(&bob.access),
            None,
        )
        .await;
    assert_eq!(sub["passed"], true, "{sub}");
    assert_eq!(sub["payload"], serde_json::json!({ "answer": 42 }), "{sub}");

    // The failing agent's: its verdict failed, and the deadline refunded it.
    let (_, b2) = ctl
        .call(
            Method::GET,
            &format!("/v1/bounties/{refunded}"),
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(b2["status"], "expired", "{b2}\n{}", sh.transcript);
    assert!(b2["approved_submission_id"].is_null(), "{b2}");
    let (_, subs) = ctl
        .call(
            Method::GET,
            &format!("/v1/bounties/{refunded}/submissions"),
            Some(&alice.access),
            None,
        )
        .await;
    let subs = subs["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["passed"], false, "{subs:?}");
    assert!(
        all.contains("bounty.completed") && all.contains("bounty.refunded"),
        "the event streams the README follows: {all}"
    );

    // 85 % to Bob, 15 % to the platform, Alice down one reward (the
    // refunded one is all available again), nothing left in escrow.
    const EUR: &str = "EUR";
    assert_eq!(account(&ctl, &bob, "tenant", EUR).await.0, 850);
    assert_eq!(
        account(&ctl, &alice, "tenant", EUR).await,
        (9_000, 9_000, 0)
    );
    assert_eq!(account(&ctl, &alice, "escrow", EUR).await.0, 0);
    let platform: i64 = sqlx::query_scalar(
        "SELECT credits_posted - debits_posted FROM money_accounts WHERE id = 'platform:EUR'",
    )
    .fetch_one(ctl.state.db.pool())
    .await
    .expect("platform account");
    assert_eq!(platform, 150);
    assert_conserved(&ctl, &op, EUR, "the walkthrough").await;
    // What the README says the balance commands print.
    assert!(
        printed.iter().any(|p| p
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["tenant", "EUR", "850", "850"])),
        "Bob's balance as printed: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_on_sqlite() {
    the_readme_walkthrough_runs(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_on_postgres() {
    the_readme_walkthrough_runs(Dialect::Postgres).await;
}

#[test]
fn the_walkthrough_block_is_found_and_split() {
    let text = "intro\n<!-- walkthrough: x -->\n```sh\na=1\n\n# two\necho $a\n```\nmore";
    assert_eq!(walkthrough(text), ["a=1", "# two\necho $a"]);
}
