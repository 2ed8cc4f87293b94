//! Against a loopback control plane that speaks the lease contract, with
//! its own books: every grant, return and expiry is checked against the
//! agent's budget as it happens.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode as Code;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use delta_host_api::budget::{BudgetError, RequestStatus};
use delta_host_api::{BudgetLedger, CallContext, LedgerError, Settlement};
use serde_json::{Value, json};

use super::*;
use crate::model::now_ms;

#[derive(Debug, Clone, Default)]
struct Account {
    allocated: u64,
    spent: u64,
    reserved: u64,
    parent: Option<String>,
}

impl Account {
    fn available(&self) -> u64 {
        self.allocated - self.spent - self.reserved
    }
}

#[derive(Debug, Clone)]
struct MockLease {
    agent: String,
    granted: u64,
    expires_at_ms: i64,
    /// `active`, `returned`, `expired`.
    status: &'static str,
    answer: Option<Value>,
}

#[derive(Debug, Default)]
struct Books {
    accounts: BTreeMap<String, Account>,
    leases: BTreeMap<String, MockLease>,
    requests: BTreeMap<String, (String, u64, String)>,
    ttl_ms: i64,
    next: u64,
    /// Answer every call with this status.
    fail: Option<u16>,
    /// Wait this long before answering.
    delay: Option<Duration>,
    /// Wait this long more before answering a return.
    return_delay: Option<Duration>,
    /// Wait this long after granting or taking back a lease before
    /// answering (a caller that gives up meanwhile does not undo it).
    answer_delay: Option<Duration>,
    /// Announce this expiry instead of the real one.
    expires_override: Option<i64>,
    /// Lease requests seen: `(amount, min_amount)`.
    asked: Vec<(u64, u64)>,
    /// Returns seen: `(lease, spent)`.
    returns: Vec<(String, u64)>,
    /// Broken invariants (must stay empty).
    violations: Vec<String>,
}

impl Books {
    fn expire(&mut self, now: i64) {
        for lease in self.leases.values_mut() {
            if lease.status == "active" && lease.expires_at_ms <= now {
                lease.status = "expired";
                if let Some(acc) = self.accounts.get_mut(&lease.agent) {
                    acc.reserved -= lease.granted;
                }
            }
        }
    }

    fn check(&mut self) {
        for (id, acc) in &self.accounts {
            if acc.spent + acc.reserved > acc.allocated {
                self.violations.push(format!("{id} overspent: {acc:?}"));
            }
        }
    }
}

type Shared = Arc<Mutex<Books>>;

struct Mock {
    url: String,
    books: Shared,
}

impl Mock {
    async fn start(ttl_ms: i64, accounts: &[(&str, u64, Option<&str>)]) -> Self {
        let books: Shared = Arc::new(Mutex::new(Books {
            ttl_ms,
            ..Books::default()
        }));
        for (id, allocated, parent) in accounts {
            lock(&books).accounts.insert(
                (*id).to_owned(),
                Account {
                    allocated: *allocated,
                    parent: parent.map(str::to_owned),
                    ..Account::default()
                },
            );
        }
        let app = Router::new()
            .route("/v1/nodes/leases", post(lease))
            .route("/v1/nodes/leases/{id}/return", post(give_back))
            .route("/v1/nodes/budgets/{agent}", get(budget))
            .route("/v1/nodes/token-requests", post(request))
            .route("/v1/nodes/token-requests/{id}", get(poll))
            .with_state(Arc::clone(&books));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, books }
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        lock(&self.books)
    }

    fn account(&self, id: &str) -> Account {
        let mut books = self.books();
        books.expire(now_ms());
        books.accounts[id].clone()
    }

    /// Every lease granted went back exactly once, charged no more
    /// than it was granted: answers the spent totals reported, by lease.
    fn returned_once(&self) -> BTreeMap<String, u64> {
        let b = self.books();
        let mut seen = BTreeMap::new();
        for (id, spent) in &b.returns {
            assert!(
                seen.insert(id.clone(), *spent).is_none(),
                "{id} returned twice: {:?}",
                b.returns
            );
            let lease = &b.leases[id];
            assert!(*spent <= lease.granted, "{id}: {spent} > {lease:?}");
            let answer = lease.answer.as_ref().expect("answer");
            assert!(answer["charged"].as_u64().expect("charged") <= lease.granted);
        }
        assert_eq!(seen.len(), b.leases.len(), "{:?}", b.returns);
        assert!(b.violations.is_empty(), "{:?}", b.violations);
        seen
    }

    fn all_back(&self, ledger: &LeaseLedger) -> bool {
        let b = self.books();
        b.leases.values().all(|l| l.status == "returned")
            && b.returns.len() >= b.leases.len()
            && ledger.snapshot().is_empty()
            && ledger.open_reservations() == 0
            && ledger.pending_returns() == 0
    }

    fn ledger(&self, settings: LeaseSettings) -> LeaseLedger {
        LeaseLedger::new(&self.url, Some("fleet".into()), "node-t", settings).expect("ledger")
    }
}

fn error(code: u16, name: &str, details: Value) -> Response {
    (
        Code::from_u16(code).expect("status"),
        axum::Json(json!({ "code": name, "message": name, "details": details })),
    )
        .into_response()
}

/// Every call: the bearer, the failure switch, the delay, expiry.
async fn enter(books: &Shared, headers: &axum::http::HeaderMap) -> Option<Response> {
    let (fail, delay) = {
        let b = lock(books);
        (b.fail, b.delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some(code) = fail {
        return Some(error(code, "unavailable", Value::Null));
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer fleet") {
        return Some(error(401, "unauthorized", Value::Null));
    }
    lock(books).expire(now_ms());
    None
}

/// What took effect is answered after `answer_delay`.
async fn answer_later(books: &Shared, answer: Response) -> Response {
    let delay = lock(books).answer_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    answer
}

async fn lease(
    State(books): State<Shared>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = enter(&books, &headers).await {
        return r;
    }
    let answer = grant(&books, &body);
    answer_later(&books, answer).await
}

fn grant(books: &Shared, body: &Value) -> Response {
    let mut b = lock(books);
    let agent = body["agent_id"].as_str().unwrap_or_default().to_owned();
    let amount = body["amount"].as_u64().unwrap_or(0);
    let min = body["min_amount"].as_u64().unwrap_or(0);
    assert_eq!(body["node_id"], "node-t");
    b.asked.push((amount, min));
    let (ttl, next) = (b.ttl_ms, b.next);
    let Some(acc) = b.accounts.get_mut(&agent) else {
        return error(404, "not_found", Value::Null);
    };
    let available = acc.available();
    if available < min.max(1) {
        return error(409, "budget_exhausted", json!({ "available": available }));
    }
    let granted = amount.min(available);
    acc.reserved += granted;
    let id = format!("lse_{next}");
    b.next += 1;
    let expires_at_ms = now_ms() + ttl;
    b.leases.insert(
        id.clone(),
        MockLease {
            agent: agent.clone(),
            granted,
            expires_at_ms,
            status: "active",
            answer: None,
        },
    );
    b.check();
    let expires_at_ms = b.expires_override.unwrap_or(expires_at_ms);
    (
        Code::CREATED,
        axum::Json(
            json!({ "lease_id": id, "agent_id": agent, "granted": granted,
                           "expires_at_ms": expires_at_ms }),
        ),
    )
        .into_response()
}

async fn give_back(
    State(books): State<Shared>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = enter(&books, &headers).await {
        return r;
    }
    let return_delay = lock(&books).return_delay;
    if let Some(d) = return_delay {
        tokio::time::sleep(d).await;
    }
    let answer = take_back(&books, id, &body);
    answer_later(&books, answer).await
}

fn take_back(books: &Shared, id: String, body: &Value) -> Response {
    let spent = body["spent"].as_u64().unwrap_or(0);
    let mut b = lock(books);
    b.returns.push((id.clone(), spent));
    let Some(lease) = b.leases.get(&id).cloned() else {
        return error(404, "not_found", Value::Null);
    };
    if let Some(answer) = lease.answer {
        return axum::Json(answer).into_response();
    }
    let acc = b.accounts.get_mut(&lease.agent).expect("account");
    let (charged, returned) = if lease.status == "active" {
        // Its tokens are released, then the spend is charged (as far as
        // the budget allows beyond the grant).
        acc.reserved -= lease.granted;
        let charged = spent.min(acc.available());
        (charged, lease.granted.saturating_sub(spent))
    } else {
        (spent.min(acc.available()), 0)
    };
    acc.spent += charged;
    let answer = json!({
        "lease_id": id, "charged": charged, "returned": returned,
        "uncovered": spent - charged,
        "status": if lease.status == "active" { "returned" } else { "expired" },
    });
    let l = b.leases.get_mut(&id).expect("lease");
    l.status = "returned";
    l.answer = Some(answer.clone());
    b.check();
    axum::Json(answer).into_response()
}

async fn budget(
    State(books): State<Shared>,
    Path(agent): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(r) = enter(&books, &headers).await {
        return r;
    }
    let b = lock(&books);
    match b.accounts.get(&agent) {
        Some(a) => axum::Json(json!({
            "allocated": a.allocated, "spent": a.spent, "reserved": a.reserved,
            "available": a.available(), "period": "2026-01",
        }))
        .into_response(),
        None => error(404, "not_found", Value::Null),
    }
}

async fn request(
    State(books): State<Shared>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = enter(&books, &headers).await {
        return r;
    }
    let mut b = lock(&books);
    let agent = body["agent_id"].as_str().unwrap_or_default().to_owned();
    let amount = body["amount"].as_u64().unwrap_or(0);
    let Some(acc) = b.accounts.get(&agent) else {
        return error(404, "not_found", Value::Null);
    };
    if acc.parent.is_none() {
        return error(409, "no_parent", Value::Null);
    }
    if amount == 0 || amount > 500 {
        return error(422, "invalid_amount", json!({ "limit": 500 }));
    }
    let id = format!("req_{}", b.next);
    b.next += 1;
    let reason = body["reason"].as_str().unwrap_or_default().to_owned();
    b.requests
        .insert(id.clone(), (agent, amount, reason.clone()));
    (
        Code::CREATED,
        axum::Json(json!({ "id": id, "amount": amount, "reason": reason, "status": "pending" })),
    )
        .into_response()
}

async fn poll(
    State(books): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(r) = enter(&books, &headers).await {
        return r;
    }
    let b = lock(&books);
    match b.requests.get(&id) {
        Some((agent, amount, reason)) if Some(agent) == q.get("agent_id") => axum::Json(
            json!({ "id": id, "amount": amount, "reason": reason, "status": "approved" }),
        )
        .into_response(),
        _ => error(404, "not_found", Value::Null),
    }
}

fn ctx(agent: &str) -> CallContext {
    CallContext {
        tenant_id: "t".into(),
        agent_id: agent.into(),
        run_id: "run".into(),
    }
}

/// Settings that never return a lease by themselves during a test.
fn patient() -> LeaseSettings {
    LeaseSettings {
        chunk: 1_000,
        idle_return: Duration::from_secs(600),
        expiry_margin: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        open_grace: Duration::from_secs(600),
    }
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_lease_serves_many_reservations_and_goes_back_at_shutdown() {
    let cp = Mock::start(60_000, &[("bot", 10_000, Some("main"))]).await;
    let ledger = cp.ledger(patient());
    for _ in 0..5 {
        let r = ledger
            .reserve(&ctx("bot"), 100, "llm:m")
            .await
            .expect("reserve");
        let s = ledger.settle(&r, 60).await.expect("settle");
        assert_eq!(
            s,
            Settlement {
                charged: 60,
                uncovered: 0
            }
        );
    }
    let r = ledger
        .reserve(&ctx("bot"), 100, "llm:m")
        .await
        .expect("reserve");
    ledger.release(&r).await.expect("release");
    assert_eq!(
        ledger.release(&r).await,
        Err(LedgerError::UnknownReservation(r.id.clone())),
        "a reservation ends once"
    );
    assert_eq!(cp.books().asked, vec![(1_000, 100)], "one lease, reused");
    let leases = ledger.snapshot();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].granted, leases[0].spent, leases[0].held),
        (1_000, 300, 0)
    );
    // The control plane holds the whole lease; the node's view adds what
    // it spent and its room.
    assert_eq!(cp.account("bot").reserved, 1_000);
    let balance = ledger.remaining(&ctx("bot")).await.expect("remaining");
    assert_eq!(
        (
            balance.allocated,
            balance.spent,
            balance.reserved,
            balance.available
        ),
        (10_000, 300, 0, 9_700)
    );

    let report = ledger.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            returned: 1,
            unreturned: 0
        }
    );
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 300)]);
    let acc = cp.account("bot");
    assert_eq!((acc.spent, acc.reserved), (300, 0));
    assert!(ledger.snapshot().is_empty());
    assert!(matches!(
        ledger.reserve(&ctx("bot"), 1, "x").await,
        Err(LedgerError::Storage(_))
    ));
    assert!(cp.books().violations.is_empty());
}

#[tokio::test]
async fn a_partial_grant_is_used_and_a_refusal_is_insufficient() {
    let cp = Mock::start(60_000, &[("bot", 300, Some("main"))]).await;
    let ledger = cp.ledger(patient());
    // Asks 1,000, gets the 300 there are.
    let a = ledger
        .reserve(&ctx("bot"), 200, "x")
        .await
        .expect("partial");
    let b = ledger
        .reserve(&ctx("bot"), 100, "x")
        .await
        .expect("rest of it");
    assert_eq!(cp.books().asked, vec![(1_000, 200)]);
    // Nothing left anywhere: the shortfall names what could be had.
    let err = ledger
        .reserve(&ctx("bot"), 50, "x")
        .await
        .expect_err("exhausted");
    assert_eq!(
        err,
        LedgerError::Insufficient {
            needed: 50,
            available: 0
        }
    );
    ledger.settle(&a, 200).await.expect("settle");
    ledger.release(&b).await.expect("release");
    // 100 of room again, on this node's lease: too small for 150, so it
    // goes back, and the control plane has no more.
    let err = ledger
        .reserve(&ctx("bot"), 150, "x")
        .await
        .expect_err("too big");
    assert_eq!(
        err,
        LedgerError::Insufficient {
            needed: 150,
            available: 100
        }
    );
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 200)]);
    ledger
        .reserve(&ctx("bot"), 100, "x")
        .await
        .expect("a lease of what is left");
    assert_eq!(cp.books().asked.last(), Some(&(1_000, 100)));
    // An agent the control plane does not know has no account.
    assert_eq!(
        ledger.reserve(&ctx("ghost"), 1, "x").await,
        Err(LedgerError::UnknownAccount("ghost".into()))
    );
    assert_eq!(
        ledger.remaining(&ctx("ghost")).await,
        Err(BudgetError::NotConfigured)
    );
    assert!(cp.books().violations.is_empty());
}

#[tokio::test]
async fn a_refusal_returns_idle_leases_and_asks_again() {
    let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        chunk: 400,
        ..patient()
    });
    let r = ledger
        .reserve(&ctx("bot"), 100, "x")
        .await
        .expect("reserve");
    ledger.settle(&r, 100).await.expect("settle");
    // 300 of room here, 600 at the control plane: 700 fits neither,
    // until the idle lease goes back.
    let big = ledger
        .reserve(&ctx("bot"), 700, "x")
        .await
        .expect("after a return");
    assert_eq!(big.amount, 700);
    let books = cp.books();
    // The small lease goes back (by the maintenance task, or after the
    // refusal) before the big one is granted.
    assert_eq!(books.asked.first(), Some(&(400, 100)));
    assert_eq!(books.asked.last(), Some(&(700, 700)));
    assert_eq!(books.returns, vec![("lse_0".to_owned(), 100)]);
    assert!(books.violations.is_empty());
}

#[tokio::test]
async fn a_lease_too_small_for_the_next_call_goes_back_when_its_holds_end() {
    let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        chunk: 100,
        ..patient()
    });
    let first = ledger.reserve(&ctx("bot"), 48, "x").await.expect("1");
    let second = ledger.reserve(&ctx("bot"), 48, "x").await.expect("2");
    // 4 left: the third call takes a new lease, and the first one is
    // retired rather than kept idle for the idle timeout (600 s here).
    let third = ledger.reserve(&ctx("bot"), 48, "x").await.expect("3");
    assert_eq!(cp.books().asked.len(), 2);
    let small = ledger.reserve(&ctx("bot"), 4, "x").await.expect("small");
    ledger.release(&small).await.expect("release");
    let leases = ledger.snapshot();
    assert_eq!(leases.len(), 2);
    assert!(
        !leases
            .iter()
            .find(|l| l.lease_id == "lse_0")
            .expect("lse_0")
            .usable
    );
    assert_eq!(
        leases
            .iter()
            .find(|l| l.lease_id == "lse_1")
            .expect("lse_1")
            .held,
        48
    );
    ledger.settle(&first, 30).await.expect("settle");
    assert!(cp.books().returns.is_empty(), "a hold is still open on it");
    ledger.settle(&second, 30).await.expect("settle");
    until("the retired lease returned", || {
        !cp.books().returns.is_empty()
    })
    .await;
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 60)]);
    ledger.settle(&third, 30).await.expect("settle");
    assert_eq!(
        ledger.snapshot().len(),
        1,
        "the new lease stays for the next call"
    );
}

#[tokio::test]
async fn an_idle_lease_goes_back_by_itself() {
    let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        idle_return: Duration::from_millis(300),
        ..patient()
    });
    let r = ledger
        .reserve(&ctx("bot"), 100, "x")
        .await
        .expect("reserve");
    // Open reservations keep it, however long.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ledger.snapshot().len(), 1);
    assert!(cp.books().returns.is_empty());
    ledger.settle(&r, 42).await.expect("settle");
    until("the idle return", || !cp.books().returns.is_empty()).await;
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 42)]);
    assert!(ledger.snapshot().is_empty());
    let acc = cp.account("bot");
    assert_eq!((acc.spent, acc.reserved, acc.available()), (42, 0, 4_958));
}

#[tokio::test]
async fn no_hold_is_taken_near_expiry_and_a_full_lease_goes_back() {
    // 2 s leases, 1 s margin: usable for the first second.
    let cp = Mock::start(2_000, &[("bot", 5_000, Some("main"))]).await;
    let ledger = cp.ledger(patient());
    let r = ledger
        .reserve(&ctx("bot"), 100, "x")
        .await
        .expect("reserve");
    ledger.settle(&r, 100).await.expect("settle");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = ledger
        .reserve(&ctx("bot"), 100, "x")
        .await
        .expect("a new lease");
    assert_eq!(cp.books().asked.len(), 2, "the old lease is not used");
    // The old one, unusable and idle, goes back before it expires.
    until("the old lease returned", || !cp.books().returns.is_empty()).await;
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 100)]);
    assert_eq!(
        cp.books().leases["lse_0"].answer.as_ref().expect("answer")["status"],
        "returned"
    );
    ledger.release(&r).await.expect("release");

    // A lease with no room left goes back as soon as its last hold ends.
    let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        chunk: 100,
        ..patient()
    });
    let r = ledger
        .reserve(&ctx("bot"), 100, "x")
        .await
        .expect("reserve");
    ledger.settle(&r, 100).await.expect("settle");
    until("the full lease returned", || !cp.books().returns.is_empty()).await;
    assert_eq!(cp.account("bot").spent, 100);
}

#[tokio::test]
async fn a_reservation_outliving_its_lease_charges_nothing_locally_and_is_reported() {
    // 600 ms leases; the margin is capped at half of that.
    let cp = Mock::start(600, &[("bot", 1_000, Some("main"))]).await;
    let ledger = cp.ledger(patient());
    let slow = ledger
        .reserve(&ctx("bot"), 200, "x")
        .await
        .expect("reserve");
    // The lease expires on the control plane: its tokens are back.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(cp.account("bot").reserved, 0);
    assert!(ledger.snapshot()[0].expired);
    // Someone else spends most of the budget meanwhile.
    let other = ledger
        .reserve(&ctx("bot"), 900, "x")
        .await
        .expect("new lease");
    ledger.settle(&other, 900).await.expect("settle");
    // That lease goes back when it nears its expiry: 900 spent.
    until("the second lease returned", || {
        cp.books().returns.len() == 1
    })
    .await;
    assert_eq!(cp.books().returns[0], ("lse_1".to_owned(), 900));
    // The late settlement is not covered locally...
    let s = ledger.settle(&slow, 150).await.expect("settle");
    assert_eq!(
        s,
        Settlement {
            charged: 0,
            uncovered: 150
        }
    );
    // ...but reported: the control plane charges what the budget still
    // has, never more.
    until("both returned", || cp.books().returns.len() == 2).await;
    let acc = cp.account("bot");
    assert_eq!((acc.spent, acc.reserved), (1_000, 0), "{acc:?}");
    let late = cp.books().leases["lse_0"].answer.clone().expect("answer");
    assert_eq!(late["status"], "expired");
    assert_eq!(late["charged"], 100);
    assert_eq!(late["uncovered"], 50);
    assert!(cp.books().violations.is_empty());
}

#[tokio::test]
async fn usage_above_the_hold_takes_free_room_only() {
    let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        chunk: 300,
        ..patient()
    });
    let a = ledger.reserve(&ctx("bot"), 100, "x").await.expect("a");
    let b = ledger.reserve(&ctx("bot"), 100, "x").await.expect("b");
    // 100 free in the lease: a's overrun takes that, not b's hold.
    let s = ledger.settle(&a, 250).await.expect("settle a");
    assert_eq!(
        s,
        Settlement {
            charged: 200,
            uncovered: 50
        }
    );
    let s = ledger.settle(&b, 100).await.expect("settle b");
    assert_eq!(
        s,
        Settlement {
            charged: 100,
            uncovered: 0
        }
    );
    // All 350 are reported; the control plane covers the excess from
    // the budget.
    until("the overdrawn lease returned", || {
        !cp.books().returns.is_empty()
    })
    .await;
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 350)]);
    assert_eq!(cp.account("bot").spent, 350);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_exceed_what_was_granted() {
    const BUDGET: u64 = 20_000;
    let cp = Mock::start(
        1_500,
        &[("bot", BUDGET, Some("main")), ("other", 5_000, None)],
    )
    .await;
    let ledger = Arc::new(cp.ledger(LeaseSettings {
        chunk: 700,
        idle_return: Duration::from_millis(100),
        expiry_margin: Duration::from_millis(300),
        timeout: Duration::from_secs(5),
        open_grace: Duration::from_secs(5),
    }));
    let charged = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..48u64 {
        let ledger = Arc::clone(&ledger);
        let charged = Arc::clone(&charged);
        tasks.push(tokio::spawn(async move {
            let agent = if t % 8 == 0 { "other" } else { "bot" };
            for i in 0..60u64 {
                let amount = 1 + (t * 37 + i * 11) % 250;
                match ledger.reserve(&ctx(agent), amount, "x").await {
                    Ok(r) => {
                        // Each lease's holds and spending stay within
                        // its grant while others reserve.
                        for l in ledger.snapshot() {
                            assert!(l.spent + l.held <= l.granted, "{l:?}");
                        }
                        tokio::time::sleep(Duration::from_millis(i % 3)).await;
                        if i % 5 == 0 {
                            ledger.release(&r).await.expect("release");
                        } else {
                            let s = ledger.settle(&r, amount / 2).await.expect("settle");
                            assert_eq!(s.uncovered, 0);
                            if agent == "bot" {
                                charged.fetch_add(s.charged, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(LedgerError::Insufficient { needed, available }) => {
                        assert!(available < needed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let report = ledger.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.unreturned, 0);
    let books = cp.books();
    assert!(books.violations.is_empty(), "{:?}", books.violations);
    let acc = &books.accounts["bot"];
    assert_eq!(acc.reserved, 0);
    assert_eq!(
        acc.spent,
        charged.load(Ordering::Relaxed),
        "every charge reached the control plane once"
    );
    assert!(acc.spent <= BUDGET);
    assert!(
        books.asked.len() > 10,
        "leases came and went: {}",
        books.asked.len()
    );
}

#[tokio::test]
async fn a_control_plane_that_fails_is_unavailable_and_returns_are_retried() {
    // Nothing listens here.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let ledger = LeaseLedger::new(&dead, None, "node-t", patient()).expect("ledger");
    assert!(matches!(
        ledger.reserve(&ctx("bot"), 10, "x").await,
        Err(LedgerError::Storage(m)) if m.contains("did not answer")
    ));
    assert!(matches!(
        ledger.remaining(&ctx("bot")).await,
        Err(BudgetError::Unavailable(_))
    ));
    assert!(matches!(
        ledger.request(&ctx("bot"), 10, "r".into()).await,
        Err(BudgetError::Unavailable(_))
    ));
    assert!(matches!(
        ledger.poll_request(&ctx("bot"), "req_1".into()).await,
        Err(BudgetError::Unavailable(_))
    ));

    let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        idle_return: Duration::from_millis(100),
        timeout: Duration::from_millis(400),
        ..patient()
    });
    let r = ledger.reserve(&ctx("bot"), 10, "x").await.expect("reserve");
    // 5xx: unavailable, and the reason names no URL.
    cp.books().fail = Some(503);
    let err = ledger
        .reserve(&ctx("other"), 10, "x")
        .await
        .expect_err("503");
    assert_eq!(
        err,
        LedgerError::Storage("the budget authority answered 503".into())
    );
    assert_eq!(
        ledger.remaining(&ctx("bot")).await,
        Err(BudgetError::Unavailable(
            "the budget authority answered 503".into()
        ))
    );
    // The lease's return fails while the control plane is down, and is
    // retried until it goes through.
    ledger.settle(&r, 7).await.expect("settle");
    until("a failed return", || ledger.pending_returns() == 1).await;
    cp.books().fail = None;
    // A retry leaves the pending queue before its answer arrives: wait
    // for the control plane to have it, then for the queue to be empty.
    until("the retried return", || cp.account("bot").spent == 7).await;
    until("no return pending", || ledger.pending_returns() == 0).await;
    assert_eq!(cp.account("bot").spent, 7);
    // Too slow: a timeout, not a hang.
    cp.books().delay = Some(Duration::from_secs(2));
    let started = Instant::now();
    assert!(matches!(
        ledger.reserve(&ctx("bot"), 10, "x").await,
        Err(LedgerError::Storage(m)) if m.contains("timed out")
    ));
    assert!(started.elapsed() < Duration::from_millis(1_500));
}

#[tokio::test]
async fn token_requests_map_the_contract_s_answers() {
    let cp = Mock::start(60_000, &[("main", 5_000, None), ("bot", 100, Some("main"))]).await;
    let ledger = cp.ledger(patient());
    let req = ledger
        .request(&ctx("bot"), 50, "more please".into())
        .await
        .expect("request");
    assert_eq!((req.amount, req.status), (50, RequestStatus::Pending));
    assert_eq!(req.reason, "more please");
    let polled = ledger
        .poll_request(&ctx("bot"), req.id.clone())
        .await
        .expect("poll");
    assert_eq!(
        (polled.id.as_str(), polled.status),
        (req.id.as_str(), RequestStatus::Approved)
    );
    // Another agent's request, or none: unknown.
    assert_eq!(
        ledger.poll_request(&ctx("main"), req.id.clone()).await,
        Err(BudgetError::UnknownRequest)
    );
    assert_eq!(
        ledger
            .poll_request(&ctx("bot"), "../budgets/bot".into())
            .await,
        Err(BudgetError::UnknownRequest),
        "the id is one escaped path segment"
    );
    assert_eq!(
        ledger.request(&ctx("main"), 50, "x".into()).await,
        Err(BudgetError::NoParent)
    );
    assert_eq!(
        ledger.request(&ctx("bot"), 0, "x".into()).await,
        Err(BudgetError::InvalidAmount(500))
    );
    assert_eq!(
        ledger.request(&ctx("bot"), 501, "x".into()).await,
        Err(BudgetError::InvalidAmount(500))
    );
}

#[tokio::test]
async fn a_reserve_dropped_at_any_await_leaks_no_lease_and_no_hold() {
    use futures_util::FutureExt;
    // Each call to the control plane takes 40 ms, half of it after the
    // grant or return took effect; the reserve calls are dropped before,
    // during and after the leftover's return, the lease requests (a
    // refused one and the one asked again) and the wait for the agent's
    // turn.
    for drop_after_ms in [0u64, 1, 15, 30, 50, 70, 90, 120, 160, 400] {
        let cp = Mock::start(60_000, &[("bot", 500, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            chunk: 300,
            idle_return: Duration::from_millis(150),
            ..patient()
        });
        let first = ledger.reserve(&ctx("bot"), 200, "x").await.expect("first");
        ledger.settle(&first, 120).await.expect("settle");
        // 180 of room left here, 200 at the control plane: 250 needs the
        // leftover back and a new lease.
        cp.books().delay = Some(Duration::from_millis(20));
        cp.books().answer_delay = Some(Duration::from_millis(20));
        let bot = ctx("bot");
        let a = ledger.reserve(&bot, 250, "x");
        let b = ledger.reserve(&bot, 250, "x");
        let outcomes = if drop_after_ms == 0 {
            // Polled once: the acquisition has just been handed to the
            // ledger's task.
            vec![a.now_or_never(), b.now_or_never()]
        } else {
            let d = Duration::from_millis(drop_after_ms);
            let (a, b) = tokio::join!(tokio::time::timeout(d, a), tokio::time::timeout(d, b));
            vec![a.ok(), b.ok()]
        };
        let mut charged = 120;
        for outcome in outcomes.into_iter().flatten() {
            match outcome {
                Ok(r) => {
                    let s = ledger.settle(&r, 100).await.expect("settle");
                    assert_eq!(s.uncovered, 0);
                    charged += s.charged;
                }
                Err(LedgerError::Insufficient { .. }) => {}
                Err(e) => panic!("after {drop_after_ms} ms: {e}"),
            }
        }
        cp.books().delay = None;
        cp.books().answer_delay = None;
        until("every lease back and no hold left", || cp.all_back(&ledger)).await;
        let returned = cp.returned_once();
        assert_eq!(returned["lse_0"], 120, "after {drop_after_ms} ms");
        assert_eq!(
            returned.values().sum::<u64>(),
            charged,
            "after {drop_after_ms} ms: {returned:?}"
        );
        let acc = cp.account("bot");
        assert_eq!(
            (acc.spent, acc.reserved),
            (charged, 0),
            "after {drop_after_ms} ms"
        );
        // The agent is still served.
        let r = ledger.reserve(&ctx("bot"), 10, "x").await.expect("again");
        ledger.release(&r).await.expect("release");
    }
}

#[tokio::test]
async fn a_reserve_dropped_while_leftovers_go_back_releases_the_new_hold() {
    let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        chunk: 300,
        idle_return: Duration::from_millis(300),
        ..patient()
    });
    let first = ledger.reserve(&ctx("bot"), 200, "x").await.expect("first");
    ledger.settle(&first, 120).await.expect("settle");
    cp.books().return_delay = Some(Duration::from_millis(500));
    let dropped = tokio::time::timeout(
        Duration::from_millis(150),
        ledger.reserve(&ctx("bot"), 250, "x"),
    )
    .await;
    assert!(dropped.is_err(), "the call was dropped");
    {
        let books = cp.books();
        assert_eq!(books.asked.len(), 2, "the new lease was granted");
        assert!(books.returns.is_empty(), "the leftover is still going back");
    }
    // The leftover's return completes without its caller, and the new
    // lease's hold is released, so the lease goes back when idle.
    until("both leases back", || cp.all_back(&ledger)).await;
    let returned = cp.returned_once();
    assert_eq!(
        returned.into_iter().collect::<Vec<_>>(),
        vec![("lse_0".to_owned(), 120), ("lse_1".to_owned(), 0)]
    );
    let acc = cp.account("bot");
    assert_eq!((acc.spent, acc.reserved), (120, 0));
    let report = ledger.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report, ShutdownReport::default());
}

#[tokio::test]
async fn returns_under_way_at_shutdown_are_waited_for_and_counted() {
    let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        chunk: 300,
        ..patient()
    });
    let first = ledger.reserve(&ctx("bot"), 200, "x").await.expect("first");
    ledger.settle(&first, 120).await.expect("settle");
    cp.books().return_delay = Some(Duration::from_millis(300));
    // Dropped while the leftover goes back; shutdown comes meanwhile.
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        ledger.reserve(&ctx("bot"), 250, "x"),
    )
    .await;
    assert!(dropped.is_err());
    let report = ledger.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            returned: 2,
            unreturned: 0
        }
    );
    let returned = cp.returned_once();
    assert_eq!(
        returned.into_iter().collect::<Vec<_>>(),
        vec![("lse_0".to_owned(), 120), ("lse_1".to_owned(), 0)]
    );
    assert_eq!(cp.account("bot").reserved, 0);
}

#[tokio::test]
async fn a_lease_held_open_past_its_expiry_goes_back_after_the_grace_period() {
    // 600 ms leases, 200 ms of grace.
    let cp = Mock::start(600, &[("bot", 1_000, Some("main"))]).await;
    let ledger = cp.ledger(LeaseSettings {
        open_grace: Duration::from_millis(200),
        ..patient()
    });
    let started = Instant::now();
    // A reservation whose caller hangs, and one that ends.
    let stuck = ledger.reserve(&ctx("bot"), 100, "x").await.expect("stuck");
    let done = ledger.reserve(&ctx("bot"), 50, "x").await.expect("done");
    ledger.settle(&done, 40).await.expect("settle");
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert!(ledger.snapshot()[0].expired);
    assert!(cp.books().returns.is_empty(), "within the grace period");
    until("the expired lease returned", || {
        !cp.books().returns.is_empty()
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 40)]);
    assert!(ledger.snapshot().is_empty(), "the lease is forgotten");
    assert_eq!(ledger.open_reservations(), 1);
    // The late settlement charges nothing and is reported uncovered.
    assert_eq!(
        ledger.settle(&stuck, 70).await,
        Ok(Settlement {
            charged: 0,
            uncovered: 70
        })
    );
    assert_eq!(ledger.open_reservations(), 0);
    let returned = cp.returned_once();
    assert_eq!(returned["lse_0"], 40);
    let late = cp.books().leases["lse_0"].answer.clone().expect("answer");
    assert_eq!(late["status"], "expired");
    let acc = cp.account("bot");
    assert_eq!((acc.spent, acc.reserved), (40, 0));
}

#[tokio::test]
async fn lease_lifetimes_are_capped_and_a_dead_lease_goes_straight_back() {
    let cp = Mock::start(
        60_000,
        &[("bot", 1_000, Some("main")), ("other", 1_000, None)],
    )
    .await;
    let ledger = cp.ledger(patient());
    // A lifetime that would overflow the clock: capped at an hour.
    cp.books().expires_override = Some(i64::MAX);
    let r = ledger.reserve(&ctx("bot"), 100, "x").await.expect("capped");
    let lease = ledger.snapshot().pop().expect("lease");
    assert!(lease.usable && !lease.expired);
    assert!(lease.expires_in <= MAX_LIFETIME, "{lease:?}");
    assert!(lease.expires_in > MAX_LIFETIME - Duration::from_secs(60));
    ledger.settle(&r, 10).await.expect("settle");
    // No lifetime left (the past, the earliest time there is): unusable,
    // and returned at once rather than kept.
    for (i, past) in [now_ms() - 1_000, 0, i64::MIN].into_iter().enumerate() {
        cp.books().expires_override = Some(past);
        assert!(matches!(
            ledger.reserve(&ctx("other"), 100, "x").await,
            Err(LedgerError::Storage(m)) if m.contains("unusable")
        ));
        until("the dead lease returned", || {
            cp.books().returns.len() == i + 1
        })
        .await;
        assert_eq!(cp.books().returns[i], (format!("lse_{}", i + 1), 0));
    }
    assert_eq!(ledger.snapshot().len(), 1, "only the capped lease is kept");
    let report = ledger.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            returned: 1,
            unreturned: 0
        }
    );
    let returned = cp.returned_once();
    assert_eq!(returned["lse_0"], 10);
}

#[tokio::test]
async fn a_wrong_token_is_unavailable_not_a_budget_answer() {
    let cp = Mock::start(60_000, &[("bot", 100, Some("main"))]).await;
    let ledger =
        LeaseLedger::new(&cp.url, Some("wrong".into()), "node-t", patient()).expect("ledger");
    assert_eq!(
        ledger.reserve(&ctx("bot"), 10, "x").await,
        Err(LedgerError::Storage(
            "the budget authority answered 401".into()
        ))
    );
    assert!(LeaseLedger::new("not a url", None, "n", patient()).is_err());
    assert!(LeaseLedger::new("mailto:x@y", None, "n", patient()).is_err());
}

mod journal;
