//! Money across two control-plane replicas on one database: the test
//! harness's (in process) and a `delta control` process, killed with
//! SIGKILL in the middle of a stream of approvals, cancellations and
//! deadline refunds racing each other across the two. Afterwards, from the
//! database itself: every account sums to zero, none is negative, every
//! bounty was paid once or refunded once (never both) and no escrow is
//! left pending; and the balances are exactly what the completed bounties
//! say.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::bounties::{Market, account, assert_books_sound, market, top_up};
use crate::common::{
    Control, Dialect, NODE_API_SECRET, Session, TEST_RETENTION_SECS, eventually, write_secret,
};
use crate::support::ControlProcess;
use delta_control::db::now_ms;

const EUR: &str = "EUR";
/// What alice holds in all (the market gives part of it).
const FUNDS: i64 = 1_000_000;
const REWARD: i64 = 1_000;
/// Bounties in the stream.
const N: i64 = 24;
/// Between two bounties' deadlines (and so their operations).
const SPACING_MS: i64 = 150;

/// What the stream does to a bounty (by its index).
#[derive(Debug, Clone, Copy)]
enum Race {
    /// Approved on both replicas at once.
    TwoApprovals,
    /// Approved on the process, cancelled in process, at once.
    ApproveVersusCancel,
    /// Cancelled on both at once.
    TwoCancels,
    /// Approved on one replica at its deadline, while the sweeps refund.
    ApproveAtTheDeadline,
}

impl Race {
    fn of(i: i64) -> Self {
        match i % 4 {
            0 => Self::TwoApprovals,
            1 => Self::ApproveVersusCancel,
            2 => Self::TwoCancels,
            _ => Self::ApproveAtTheDeadline,
        }
    }
}

/// One call's answer; `None` when the replica did not answer (killed).
type Answer = Option<(StatusCode, Value)>;

async fn call(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut req = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status();
    let text = resp.text().await.ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// The process replica's `control.toml`: this control plane's database,
/// access-token secret and node API secret (replicas behind one balancer).
pub(crate) fn replica_config(ctl: &Control, dir: &std::path::Path) {
    let jwt = ctl
        .state
        .config
        .jwt_secret_file
        .clone()
        .unwrap_or_else(|| ctl.state_dir().join("jwt-secret"));
    let node_secret = dir.join("node-api-secret");
    write_secret(&node_secret, NODE_API_SECRET);
    let config = format!(
        r#"listen = "127.0.0.1:0"
state_dir = "{state}"
database_url = "{db}"
jwt_secret_file = "{jwt}"
node_api_secret_file = "{node_secret}"
operators = ["{operator}"]
node_heartbeat_timeout_secs = 15
record_retention_secs = {retention}

[rate_limit]
per_key_per_sec = 0
per_key_burst = 0
per_tenant_per_sec = 0
per_tenant_burst = 0

[auth_limits]
per_ip_per_min = 0
"#,
        state = dir.join("state").display(),
        db = ctl.state.config.database_url(),
        jwt = jwt.display(),
        node_secret = node_secret.display(),
        operator = crate::common::OPERATOR_EMAIL,
        retention = TEST_RETENTION_SECS,
    );
    std::fs::write(dir.join("control.toml"), config).expect("control.toml");
}

/// What making a bounty of the stream needs.
struct Setup<'a> {
    client: &'a reqwest::Client,
    here: &'a str,
    there: &'a str,
    alice: &'a Session,
    bob: &'a Session,
    verifier: &'a str,
    agent: &'a str,
}

impl Setup<'_> {
    /// Bounty `i`: created and funded on one replica or the other (by
    /// `i`), with Bob's passing submission; its id and the submission's.
    async fn bounty(&self, i: i64, deadline: i64) -> (String, String) {
        let on = if i % 2 == 0 { self.here } else { self.there };
        let (status, b) = call(
            self.client,
            on,
            &self.alice.access,
            Method::POST,
            "/v1/bounties",
            Some(
                json!({ "title": format!("race {i}"), "spec": { "expected": { "answer": 42 } },
                         "reward_minor": REWARD, "currency": EUR, "deadline_ms": deadline,
                         "verifier": self.verifier }),
            ),
        )
        .await
        .expect("an answer");
        assert_eq!(status, StatusCode::CREATED, "{b}");
        let id = b["id"].as_str().expect("id").to_owned();
        let (status, f) = call(
            self.client,
            on,
            &self.alice.access,
            Method::POST,
            &format!("/v1/bounties/{id}/fund"),
            None,
        )
        .await
        .expect("an answer");
        assert_eq!(status, StatusCode::OK, "{f}");
        let (status, sub) = call(
            self.client,
            self.here,
            &self.bob.access,
            Method::POST,
            &format!("/v1/bounties/{id}/submissions"),
            Some(json!({ "agent_id": self.agent, "payload": { "answer": 42 } })),
        )
        .await
        .expect("an answer");
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        assert_eq!(sub["passed"], true, "{sub}");
        (id, sub["id"].as_str().expect("id").to_owned())
    }
}

async fn money_survives_two_replicas_and_a_kill(dialect: Dialect) {
    let Market {
        ctl,
        node: _node,
        op,
        alice,
        bob,
        verifier,
        agent,
    } = market(Control::start(dialect).await).await;
    // The market's funds, and enough for every bounty of the stream.
    top_up(
        &ctl,
        &op,
        &alice.tenant_id,
        FUNDS - crate::common::bounties::FUNDS,
        EUR,
    )
    .await;
    let dir = ctl.dir.path().join("replica-b");
    std::fs::create_dir_all(&dir).expect("replica dir");
    replica_config(&ctl, &dir);
    let spawn_dir = dir.clone();
    let mut replica = tokio::task::spawn_blocking(move || ControlProcess::spawn(&spawn_dir))
        .await
        .expect("join");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let (here, there) = (ctl.url.clone(), replica.url.clone());

    // The bounties, created and funded on both replicas in turn; each gets
    // a passing submission, verified by the in-process replica (the
    // verifier's bytes are in its state directory). Two first, cancelled,
    // to measure how long one takes here, so that the deadlines leave
    // room for all of them however loaded the machine is.
    let setup = Setup {
        client: &client,
        here: &here,
        there: &there,
        alice: &alice,
        bob: &bob,
        verifier: &verifier,
        agent: &agent,
    };
    let mut took = Duration::ZERO;
    for i in 0..2 {
        let started = Instant::now();
        let (id, _) = setup.bounty(i, now_ms() + 600_000).await;
        took = started.elapsed();
        let (status, body) = call(
            &client,
            &here,
            &alice.access,
            Method::POST,
            &format!("/v1/bounties/{id}/cancel"),
            None,
        )
        .await
        .expect("an answer");
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let room = i64::try_from(took.as_millis()).unwrap_or(i64::MAX / 4) * N * 2;
    let base = now_ms() + room.max(4_000) + 1_000;
    let mut bounties = Vec::new();
    for i in 0..N {
        let deadline = base + i * SPACING_MS;
        let (id, sub) = setup.bounty(i, deadline).await;
        bounties.push((id, sub, deadline));
    }
    assert!(now_ms() < base - 1_000, "the set-up outran its deadlines");
    let sound = assert_books_sound(&ctl.state.db, "funding").await;
    assert_eq!(
        (sound.open.len(), sound.refunded.len()),
        (N as usize, 2),
        "{sound:?}"
    );

    // The stream: each bounty's race a second before its deadline (the
    // last kind at it), 150 ms apart; the process is killed half-way.
    let kill_at = base + (N / 2) * SPACING_MS - 1_000;
    let mut tasks = Vec::new();
    for (i, (id, sub, deadline)) in bounties.iter().cloned().enumerate() {
        let race = Race::of(i as i64);
        let (client, here, there, token) = (
            client.clone(),
            here.clone(),
            there.clone(),
            alice.access.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let at = match race {
                Race::ApproveAtTheDeadline => deadline - 50 + (i as i64 % 3) * 50,
                _ => deadline - 1_000,
            };
            let wait = u64::try_from(at - now_ms()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let approve = format!("/v1/submissions/{sub}/approve");
            let cancel = format!("/v1/bounties/{id}/cancel");
            let go = |on: &'static str, path: &str| {
                let (client, token, path) = (client.clone(), token.clone(), path.to_owned());
                let base = if on == "here" {
                    here.clone()
                } else {
                    there.clone()
                };
                async move {
                    let answer = call(&client, &base, &token, Method::POST, &path, None).await;
                    let op = if path.ends_with("/approve") {
                        "approve"
                    } else {
                        "cancel"
                    };
                    (on.to_owned(), op.to_owned(), answer)
                }
            };
            let answers = match race {
                Race::TwoApprovals => {
                    let (a, b) = tokio::join!(go("here", &approve), go("there", &approve));
                    vec![a, b]
                }
                Race::ApproveVersusCancel => {
                    let (a, b) = tokio::join!(go("there", &approve), go("here", &cancel));
                    vec![a, b]
                }
                Race::TwoCancels => {
                    let (a, b) = tokio::join!(go("here", &cancel), go("there", &cancel));
                    vec![a, b]
                }
                // Every other one on each replica (i is 3 mod 4 here).
                Race::ApproveAtTheDeadline => {
                    vec![go(if i % 8 == 3 { "here" } else { "there" }, &approve).await]
                }
            };
            (id, race, answers)
        }));
    }
    let wait = u64::try_from(kill_at - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    replica.kill();
    let killed_at = now_ms();

    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("stream task"));
    }
    // The in-process replica's sweep refunds whatever is left at its
    // deadline.
    let started = Instant::now();
    let outcomes = eventually("every bounty to close", Duration::from_secs(60), || async {
        let o = assert_books_sound(&ctl.state.db, "the stream").await;
        o.open.is_empty().then_some(o)
    })
    .await;
    assert_eq!(
        outcomes.completed.len() + outcomes.refunded.len(),
        N as usize + 2,
        "{outcomes:?}"
    );

    // Every answer agrees with the outcome: one success at most per
    // bounty, a success is what happened, refusals are conflicts, and only
    // the killed replica may not have answered.
    let mut unanswered = 0;
    for (id, race, answers) in &results {
        let ok: Vec<&String> = answers
            .iter()
            .filter(|(_, _, a)| matches!(a, Some((StatusCode::OK, _))))
            .map(|(_, op, _)| op)
            .collect();
        assert!(ok.len() <= 1, "{id} ({race:?}): {answers:?}");
        let completed = outcomes.completed.contains(id);
        // A second before the deadline the in-process replica, alive
        // throughout, settles these two kinds whoever wins.
        match race {
            Race::TwoApprovals => assert!(completed, "{id} ({race:?}): {answers:?}"),
            Race::TwoCancels => assert!(!completed, "{id} ({race:?}): {answers:?}"),
            _ => {}
        }
        if let Some(op) = ok.first() {
            assert_eq!(
                completed,
                op.as_str() == "approve",
                "{id} ({race:?}): {answers:?}"
            );
        }
        for (replica, _, answer) in answers {
            match answer {
                Some((status, body)) => assert!(
                    *status == StatusCode::OK || *status == StatusCode::CONFLICT,
                    "{id} ({race:?}) on {replica}: {status} {body}"
                ),
                None => {
                    assert_eq!(replica, "there", "{id}: the live replica did not answer");
                    unanswered += 1;
                }
            }
        }
    }
    // The kill happened in the middle: later calls to it went unanswered.
    assert!(unanswered > 0, "nothing was sent to the killed replica");
    let completed = outcomes.completed.len() as i64;
    assert!(
        completed > 0 && !outcomes.refunded.is_empty(),
        "both outcomes happen: {outcomes:?}"
    );

    // The balances are exactly the completed bounties' (85 / 15).
    assert_eq!(account(&ctl, &bob, "tenant", EUR).await.0, completed * 850);
    let rest = FUNDS - completed * REWARD;
    assert_eq!(account(&ctl, &alice, "tenant", EUR).await, (rest, rest, 0));
    assert_eq!(account(&ctl, &alice, "escrow", EUR).await.0, 0);
    let platform: i64 = sqlx::query_scalar(
        "SELECT credits_posted - debits_posted FROM money_accounts WHERE id = 'platform:EUR'",
    )
    .fetch_one(ctl.state.db.pool())
    .await
    .expect("platform account");
    assert_eq!(platform, completed * 150);

    // The killed replica starts again on the same database and agrees.
    let spawn_dir = dir.clone();
    let again = tokio::task::spawn_blocking(move || ControlProcess::spawn(&spawn_dir))
        .await
        .expect("join");
    let (status, page) = call(
        &client,
        &again.url,
        &alice.access,
        Method::GET,
        "/v1/ledger/accounts",
        None,
    )
    .await
    .expect("the restarted replica answers");
    assert_eq!(status, StatusCode::OK, "{page}");
    let tenant = page["items"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["kind"] == "tenant"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(tenant["balance_minor"], rest, "{page}");
    assert_books_sound(&ctl.state.db, "the restart").await;
    eprintln!(
        "{completed} paid, {} refunded, {unanswered} calls lost with the replica \
         (killed {} ms before the last deadline); all closed {:?} after the stream",
        outcomes.refunded.len(),
        base + (N - 1) * SPACING_MS - killed_at,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_survives_two_replicas_and_a_kill_on_postgres() {
    money_survives_two_replicas_and_a_kill(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_survives_two_replicas_and_a_kill_on_sqlite() {
    money_survives_two_replicas_and_a_kill(Dialect::Sqlite).await;
}
