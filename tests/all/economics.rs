//! Token budgets across a fleet under load and a crash (issues 7 and 13):
//! the control plane in this process (SQLite, then PostgreSQL) as the budget
//! authority with short leases, two real `delta node` processes that lease
//! tokens from it, each calling its own loopback LLM provider (which counts
//! what it served), and a main agent with bots running `llm-task-bot` on
//! both nodes at once. Node A is killed (`kill -9`) mid-way while it holds
//! leases; its agents move to node B and carry on until their budgets
//! refuse them.
//!
//! While node A's leases are unreported (expired, settled provisionally:
//! their whole grant counted as spent) no agent's spent + leased exceeds
//! its allocation, and every agent's spent is at least what the providers
//! served it. Then node A starts again on its state directory, finds its
//! unreturned leases in its spend journal and reports them; the control
//! plane corrects each provisional charge once. After that:
//!
//! - every lease is returned with a reported spend, none provisional;
//! - each agent's spent is exactly what its leases reported (nothing
//!   counted twice, nothing uncovered), at most its allocation, and at
//!   least what the providers served it; the difference is only the
//!   reservations in flight at the kill (journaled whole: what the provider
//!   served them is unknown), read from node A's journal;
//! - per account and per user, the entries sum to the balances, and pool +
//!   allocations + retired == the tier's allocation.

use crate::common;
use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Control, Dialect, eventually, node_api_token};
use delta_guest_artifacts as guests;
use delta_test_servers::llm::{Reply, ScriptedLlm};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row as _;
use support::NodeProcess;

/// Lease lifetime on the control plane.
const LEASE_TTL_SECS: u64 = 3;
const BOTS: usize = 8;
const MAIN_BUDGET: u64 = 6_000;
const BOT_BUDGET: u64 = 600;
/// Tokens each provider answer reports (input, output): at most what the
/// gateway reserves (`max_tokens` 20 plus its input estimate), so that a
/// reservation in flight at the kill covers what the provider served it.
const USAGE: (u64, u64) = (5, 15);
/// Successful runs before node A is killed.
const RUNS_BEFORE_KILL: u64 = 60;

/// `scenario!(name)`: the async fn `name(dialect)` as a test per database.
macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Dialect::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Dialect::Postgres).await;
            }
        }
    };
}

/// A `delta node` process leasing from the control plane.
/// Enrolled through the API first: it presents its own credential.
async fn start_node(ctl: &Control, dir: &Path, id: &str, llm_url: &str) -> NodeProcess {
    let control_url = &ctl.url;
    std::fs::create_dir_all(dir.join("state")).expect("state dir");
    common::write_secret(&dir.join("token"), &node_api_token(id));
    common::write_secret(&dir.join("credential"), &ctl.node_credential(id).await);
    std::fs::write(dir.join("llm-key"), "sk-economics").expect("llm key");
    let config = format!(
        r#"
node_id = "{id}"
listen = "127.0.0.1:0"
state_dir = "{state}"
token_file = "{token}"
drain_grace_secs = 2

[scheduler]
concurrency = 8
per_tenant_concurrency = 8

[control_plane]
url = "{control_url}"
token_file = "{credential}"
heartbeat_secs = 1
lease_chunk = 100
lease_idle_secs = 1
lease_margin_secs = 1
budget_timeout_secs = 5

[llm]
aliases = {{ default = "test-model" }}
[[llm.providers]]
name = "local"
kind = "openai"
base_url = "{llm_url}"
api_key_file = "{key}"
models = ["test-model"]
max_retries = 0
"#,
        state = dir.join("state").display(),
        token = dir.join("token").display(),
        credential = dir.join("credential").display(),
        key = dir.join("llm-key").display(),
    );
    std::fs::write(dir.join("node.toml"), config).expect("config");
    NodeProcess::spawn(dir, &format!("node {id}"))
}

async fn node_status(ctl: &Control, token: &str) -> HashMap<String, String> {
    let (status, page) = ctl.call(Method::GET, "/v1/nodes", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| (s(&n["id"]), s(&n["status"])))
        .collect()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Active leases held by `node` (all nodes: `None`).
async fn active_leases(ctl: &Control, node: Option<&str>) -> i64 {
    let rows = sqlx::query("SELECT node_id FROM budget_leases WHERE status = 'active'")
        .fetch_all(ctl.state.db.pool())
        .await
        .expect("leases");
    rows.iter()
        .filter(|r| node.is_none_or(|n| r.get::<String, _>("node_id") == n))
        .count() as i64
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    completed: AtomicU64,
    budget_refusals: AtomicU64,
    unavailable: AtomicU64,
}

/// Run `llm-task-bot` as `agent` until its budget refuses it three times in
/// a row or `stop` is set. Runs that fail because a node is gone are
/// retried.
async fn client(
    ctl: Arc<Control>,
    token: String,
    agent: String,
    name: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut refusals = 0;
    for i in 0.. {
        if stop.load(Ordering::Relaxed) || refusals >= 3 {
            return;
        }
        let input =
            json!({ "input": { "task": format!("[{name}] question {i}"), "max_tokens": 20 } });
        let resp = ctl
            .client
            .post(ctl.url(&format!("/v1/agents/{agent}/runs?wait=true")))
            .bearer_auth(&token)
            .json(&input)
            .send()
            .await;
        let Ok(resp) = resp else {
            tally.unavailable.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let outcome = &body["outcome"];
        if status == StatusCode::OK && outcome["status"] == "completed" {
            refusals = 0;
            tally.completed.fetch_add(1, Ordering::Relaxed);
        } else if status == StatusCode::OK && s(&outcome["code"]).contains("budget") {
            refusals += 1;
            tally.budget_refusals.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            // The node died under the run, or the agent is being moved.
            tally.unavailable.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Tokens each provider served, by agent name (from the task text).
fn served(llm: &ScriptedLlm, names: &[String]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for req in llm.requests() {
        let text = req.body.to_string();
        if let Some(name) = names.iter().find(|n| text.contains(&format!("[{n}]"))) {
            *out.entry(name.clone()).or_default() += USAGE.0 + USAGE.1;
        }
    }
    out
}

#[derive(Debug, Default, Clone)]
struct Account {
    user: String,
    allocated: i64,
    spent: i64,
    leased: i64,
}

scenario!(a_node_killed_mid_way_leaves_nothing_uncharged_or_overspent);

async fn a_node_killed_mid_way_leaves_nothing_uncharged_or_overspent(dialect: Dialect) {
    let started = Instant::now();
    let ctl = Arc::new(
        Control::start_with(dialect, |c| {
            c.lease_ttl_secs = LEASE_TTL_SECS;
            // A killed node is noticed quickly and its agents move.
            c.node_heartbeat_timeout_secs = 3;
        })
        .await,
    );
    let alice = ctl.register("alice").await;
    let operator = ctl.operator().await;
    let llm_a = ScriptedLlm::start().await.expect("llm a");
    let llm_b = ScriptedLlm::start().await.expect("llm b");
    for llm in [&llm_a, &llm_b] {
        llm.set_fallback(Reply::ok("an answer", USAGE.0, USAGE.1));
    }
    let dir = ctl.dir.path().to_owned();
    let mut node_a = start_node(&ctl, &dir.join("node-a"), "node-a", &llm_a.base_url()).await;
    let mut node_b = start_node(&ctl, &dir.join("node-b"), "node-b", &llm_b.base_url()).await;
    eventually("both nodes up", Duration::from_secs(30), || async {
        let nodes = node_status(&ctl, &operator.access).await;
        (nodes.get("node-a").map(String::as_str) == Some("up")
            && nodes.get("node-b").map(String::as_str) == Some("up"))
        .then_some(())
    })
    .await;

    // A main agent and its bots, each with a budget, spread over the nodes.
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&alice.access)
        .header("content-type", "application/wasm")
        .body(std::fs::read(guests::LLM_TASK_BOT).expect("guest"))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let sha = s(&resp.json::<Value>().await.expect("json")["sha256"]);
    let grants = json!({ "models": ["default"] });
    let create = |body: Value| {
        let ctl = Arc::clone(&ctl);
        let token = alice.access.clone();
        async move {
            let (status, agent) = ctl
                .call(Method::POST, "/v1/agents", Some(&token), Some(body.clone()))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}: {agent}");
            agent
        }
    };
    let main = create(json!({ "name": "main", "kind": "main", "component": sha,
                              "grants": grants, "budget": MAIN_BUDGET }))
    .await;
    let mut agents = vec![("main".to_owned(), main.clone())];
    for i in 0..BOTS {
        let name = format!("bot-{i}");
        let bot = create(
            json!({ "name": name, "kind": "bot", "parent_agent_id": main["id"],
                                 "component": sha, "grants": grants, "budget": BOT_BUDGET }),
        )
        .await;
        agents.push((name, bot));
    }
    let names: Vec<String> = agents.iter().map(|(n, _)| n.clone()).collect();
    let ids: HashMap<String, String> = agents
        .iter()
        .map(|(n, a)| (n.clone(), s(&a["id"])))
        .collect();
    let on_a: Vec<&String> = agents
        .iter()
        .filter(|(_, a)| a["node_id"] == "node-a")
        .map(|(n, _)| n)
        .collect();
    assert!(
        !on_a.is_empty() && on_a.len() < agents.len(),
        "agents on both nodes: {agents:?}"
    );

    // Everyone spends at once.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = agents
        .iter()
        .map(|(name, agent)| {
            tokio::spawn(client(
                Arc::clone(&ctl),
                alice.access.clone(),
                s(&agent["id"]),
                name.clone(),
                Arc::clone(&tally),
                Arc::clone(&stop),
            ))
        })
        .collect();

    // Mid-way, while node A holds leases: kill -9.
    eventually(
        "runs completing and node A holding leases",
        Duration::from_secs(40),
        || async {
            (tally.completed.load(Ordering::Relaxed) >= RUNS_BEFORE_KILL
                && active_leases(&ctl, Some("node-a")).await > 0)
                .then_some(())
        },
    )
    .await;
    node_a.kill();
    // Requests node A wrote before it died may still be on their way to the
    // fake provider (socket buffers): count once the count stops moving.
    // Anything after that would be a call from a dead node.
    let mut served_a_at_kill = llm_a.request_count();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = llm_a.request_count();
        if now == served_a_at_kill {
            break;
        }
        served_a_at_kill = now;
    }
    assert!(
        served_a_at_kill > 0,
        "node A served nothing before the kill"
    );

    // Its agents move to node B and carry on there; the clients end when
    // the budgets refuse them.
    let deadline = Instant::now() + Duration::from_secs(40);
    for c in clients {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, c).await.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for name in &on_a {
        let (status, agent) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{}", ids[*name]),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{agent}");
        assert_eq!(agent["node_id"], "node-b", "{name} was not moved: {agent}");
    }
    assert_eq!(
        llm_a.request_count(),
        served_a_at_kill,
        "a dead node called its provider"
    );
    let served_b_agents = served(&llm_b, &names);
    for name in &on_a {
        assert!(
            served_b_agents.get(*name).copied().unwrap_or(0) > 0,
            "{name} never ran on node B after the move"
        );
    }
    assert!(
        tally.budget_refusals.load(Ordering::Relaxed) > 0,
        "no budget ran out: the test spent too little"
    );

    // ---- while node A's leases are unreported ------------------------------
    // Node B returns its idle leases; node A's expire and are settled
    // provisionally.
    eventually(
        "every lease returned or expired",
        Duration::from_secs(LEASE_TTL_SECS + 15),
        || async { (active_leases(&ctl, None).await == 0).then_some(()) },
    )
    .await;
    let served_a = served(&llm_a, &names);
    let served_b = served(&llm_b, &names);
    let served_by = |name: &str| {
        served_a.get(name).copied().unwrap_or(0) as i64
            + served_b.get(name).copied().unwrap_or(0) as i64
    };
    let provisional = provisional_leases(&ctl, &alice.access).await;
    assert!(
        !provisional.is_empty(),
        "node A died holding no lease: the crash was not exercised"
    );
    for l in &provisional {
        assert_eq!(l["node_id"], "node-a", "only the killed node's: {l}");
        assert_eq!(l["status"], "expired", "{l}");
    }
    let accounts = load_accounts(&ctl).await;
    for (name, id) in &ids {
        let a = &accounts[id];
        assert!(
            a.spent + a.leased <= a.allocated,
            "{name} overspent while node A was down: {a:?}"
        );
        assert!(
            a.spent >= served_by(name),
            "{name}: spent {} below the {} served while node A was down",
            a.spent,
            served_by(name)
        );
    }
    check_books(&ctl, &accounts).await;
    // What node A had in flight at the kill, from its journal: counted
    // whole, since what its provider served those calls is unknown to it.
    let in_flight = journal_in_flight(&dir.join("node-a").join("state").join("node.db")).await;

    // ---- node A comes back and reports ---------------------------------------
    node_a.restart();
    let reported_by = Instant::now() + Duration::from_secs(60);
    while !provisional_leases(&ctl, &alice.access).await.is_empty() {
        assert!(
            Instant::now() < reported_by,
            "node A did not report the leases it died with\n{}",
            node_a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accounts = load_accounts(&ctl).await;
    check_books(&ctl, &accounts).await;
    let pool = ctl.state.db.pool();
    let mut reported: BTreeMap<String, i64> = BTreeMap::new();
    let mut late = 0;
    for row in
        sqlx::query("SELECT node_id, agent_id, spent, status, provisional_spent FROM budget_leases")
            .fetch_all(pool)
            .await
            .expect("leases")
    {
        let (node, agent, status): (String, String, String) =
            (row.get("node_id"), row.get("agent_id"), row.get("status"));
        let spent: Option<i64> = row.get("spent");
        let spent = spent.unwrap_or_else(|| panic!("a lease of {agent} on {node} unreported"));
        *reported.entry(agent).or_default() += spent;
        if row.get::<i64, _>("provisional_spent") > 0 {
            assert_eq!(node, "node-a", "node B let a lease expire");
            assert_eq!(status, "expired");
            late += 1;
        }
    }
    assert_eq!(late, provisional.len(), "every provisional lease corrected");
    let mut summary = Vec::new();
    for (name, id) in &ids {
        let a = &accounts[id];
        let served = served_by(name);
        let rep = reported.get(id).copied().unwrap_or(0);
        let slack = in_flight.get(id).copied().unwrap_or(0);
        summary.push(format!(
            "{name}: allocated {} spent {} served A {} B {} reported {rep} in flight at the kill {slack}",
            a.allocated,
            a.spent,
            served_a.get(name).copied().unwrap_or(0),
            served_b.get(name).copied().unwrap_or(0),
        ));
        assert_eq!(a.leased, 0, "{name}: {a:?}");
        assert_eq!(a.spent, rep, "{name}: spent != reported (counted twice?)");
        assert!(a.spent <= a.allocated, "{name} overspent: {a:?}");
        assert!(
            a.spent >= served,
            "{name}: spent {} below the {served} served",
            a.spent
        );
        assert!(
            a.spent <= served + slack,
            "{name}: spent {} beyond the {served} served and the {slack} in flight at the kill",
            a.spent
        );
    }
    eprintln!(
        "economics ({dialect:?}, {:.1} s): {} runs completed, {} budget refusals, {} retried, \
         {} leases settled provisionally then corrected\n{}",
        started.elapsed().as_secs_f64(),
        tally.completed.load(Ordering::Relaxed),
        tally.budget_refusals.load(Ordering::Relaxed),
        tally.unavailable.load(Ordering::Relaxed),
        provisional.len(),
        summary.join("\n")
    );
    node_a.terminate().await;
    node_b.terminate().await;
    assert!(!node_a.log().is_empty());
}

/// The tenant's provisional leases, from the API (as an operator sees them).
async fn provisional_leases(ctl: &Control, token: &str) -> Vec<Value> {
    let (status, page) = ctl
        .call(
            Method::GET,
            "/v1/budget/leases?provisional=true",
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

async fn load_accounts(ctl: &Control) -> BTreeMap<String, Account> {
    let mut accounts = BTreeMap::new();
    for row in
        sqlx::query("SELECT agent_id, user_id, allocated, spent, leased FROM budget_accounts")
            .fetch_all(ctl.state.db.pool())
            .await
            .expect("accounts")
    {
        accounts.insert(
            row.get("agent_id"),
            Account {
                user: row.get("user_id"),
                allocated: row.get("allocated"),
                spent: row.get("spent"),
                leased: row.get("leased"),
            },
        );
    }
    assert_eq!(accounts.len(), BOTS + 1, "{accounts:?}");
    accounts
}

/// Reservations open in a dead node's spend journal, by agent.
async fn journal_in_flight(db: &Path) -> BTreeMap<String, i64> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
    let pool = sqlx::SqlitePool::connect_with(opts)
        .await
        .expect("node A's journal");
    let mut out = BTreeMap::new();
    for row in sqlx::query(
        "SELECT agent_id, CAST(SUM(tokens) AS INTEGER) AS held FROM spend_journal \
         WHERE settled = 0 GROUP BY agent_id",
    )
    .fetch_all(&pool)
    .await
    .expect("journal")
    {
        out.insert(row.get("agent_id"), row.get("held"));
    }
    pool.close().await;
    out
}

/// Conservation: no negative balance, every account's and user's entries
/// sum to its balance, pool + allocations + retired == the tier's
/// allocation, and nothing was uncovered.
async fn check_books(ctl: &Control, accounts: &BTreeMap<String, Account>) {
    let pool = ctl.state.db.pool();
    for (id, a) in accounts {
        assert!(
            a.allocated - a.spent - a.leased >= 0 && a.spent >= 0 && a.leased >= 0,
            "{id} negative: {a:?}"
        );
    }
    // Entries sum to balances, per account and per user.
    let mut from_entries: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    let mut uncovered: BTreeMap<String, i64> = BTreeMap::new();
    let mut user_entries: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for row in sqlx::query(
        "SELECT agent_id, user_id, d_allocated, d_spent, d_leased, d_monthly, d_carved, \
         d_retired, uncovered FROM budget_entries",
    )
    .fetch_all(pool)
    .await
    .expect("entries")
    {
        let agent: Option<String> = row.get("agent_id");
        match agent {
            Some(agent) => {
                let e = from_entries.entry(agent.clone()).or_default();
                e.0 += row.get::<i64, _>("d_allocated");
                e.1 += row.get::<i64, _>("d_spent");
                e.2 += row.get::<i64, _>("d_leased");
                *uncovered.entry(agent).or_default() += row.get::<i64, _>("uncovered");
            }
            None => {
                let e = user_entries.entry(row.get("user_id")).or_default();
                e.0 += row.get::<i64, _>("d_monthly");
                e.1 += row.get::<i64, _>("d_carved");
                e.2 += row.get::<i64, _>("d_retired");
            }
        }
    }
    for (id, a) in accounts {
        assert_eq!(
            from_entries.get(id).copied().unwrap_or_default(),
            (a.allocated, a.spent, a.leased),
            "{id}'s entries do not sum to its balance"
        );
    }
    let users =
        sqlx::query("SELECT user_id, monthly_allocation, carved, retired FROM budget_users")
            .fetch_all(pool)
            .await
            .expect("users");
    assert_eq!(users.len(), 1);
    for row in &users {
        let user: String = row.get("user_id");
        let (monthly, carved, retired): (i64, i64, i64) = (
            row.get("monthly_allocation"),
            row.get("carved"),
            row.get("retired"),
        );
        let pool_left = monthly - carved;
        assert!(pool_left >= 0, "{user}'s pool is negative");
        let held: i64 = accounts
            .values()
            .filter(|a| a.user == user)
            .map(|a| a.allocated)
            .sum();
        assert_eq!(
            pool_left + held + retired,
            monthly,
            "{user}: pool + allocations + retired != the tier's allocation"
        );
        assert_eq!(
            user_entries.get(&user).copied().unwrap_or_default(),
            (monthly, carved, retired),
            "{user}'s entries do not sum to the user row"
        );
    }
    let total_uncovered: i64 = uncovered.values().sum();
    assert_eq!(
        total_uncovered, 0,
        "usage beyond the budgets: {uncovered:?}"
    );
}
