//! The wire side: asking the control plane for leases, returning them (with retries) and the calls behind `remaining` and token requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use delta_budget_rules as rules;
use delta_host_api::budget::{BudgetError, RequestStatus, TokenRequest};
use delta_host_api::{LedgerError, Reservation};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::model::now_ms;

use super::*;

/// What the control plane answered to a lease request.
#[derive(Debug, Deserialize)]
pub(super) struct Grant {
    pub(super) lease_id: String,
    pub(super) granted: u64,
    pub(super) expires_at_ms: i64,
}

/// What the control plane answered to a return.
#[derive(Debug, Deserialize)]
pub(super) struct Returned {
    pub(super) charged: u64,
    #[serde(default)]
    pub(super) uncovered: u64,
    pub(super) status: String,
}

/// `GET /v1/nodes/leases`: this node's unreturned leases.
#[derive(Debug, Deserialize)]
pub(super) struct RemoteLeases {
    pub(super) items: Vec<RemoteLease>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RemoteLease {
    pub(super) lease_id: String,
    pub(super) agent_id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RemoteBalance {
    pub(super) allocated: u64,
    pub(super) spent: u64,
    pub(super) available: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct RemoteRequest {
    pub(super) id: String,
    pub(super) amount: u64,
    pub(super) reason: String,
    pub(super) status: String,
}

/// A failed call to the control plane.
#[derive(Debug)]
pub(super) enum CallError {
    /// No usable answer: connection, timeout, unreadable body.
    Network(String),
    /// An error status, with the body's `code` and `details`.
    Status {
        status: StatusCode,
        code: String,
        details: Value,
    },
}

impl CallError {
    /// A short account for guests and errors: no URL, no body text.
    pub(super) fn reason(&self) -> String {
        match self {
            Self::Network(what) => format!("the budget authority did not answer ({what})"),
            Self::Status { status, .. } => {
                format!("the budget authority answered {}", status.as_u16())
            }
        }
    }

    pub(super) fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Network(_) => None,
        }
    }

    pub(super) fn code(&self) -> &str {
        match self {
            Self::Status { code, .. } => code,
            Self::Network(_) => "",
        }
    }

    pub(super) fn detail(&self, key: &str) -> Option<u64> {
        match self {
            Self::Status { details, .. } => details.get(key).and_then(Value::as_u64),
            Self::Network(_) => None,
        }
    }
}

impl Inner {
    /// The slow path of `reserve`, run as a task of the ledger holding the
    /// agent's acquisition turn: return the agent's idle leftovers too small
    /// for `amount` while a new lease is asked for, and hold `amount` of it.
    /// It completes whether or not the caller still waits.
    pub(super) async fn acquire(
        self: Arc<Self>,
        agent: Arc<AgentLeases>,
        agent_id: String,
        amount: u64,
        _turn: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Hold, LedgerError> {
        let leftovers = self.take_leftovers(&agent, &agent_id, amount);
        let (ask, min) = rules::lease_ask(amount, self.settings.chunk);
        let (mut obtained, mut gave_back) = tokio::join!(
            self.obtain(&agent, &agent_id, ask, min),
            self.return_all(leftovers)
        );
        let mut retried = false;
        loop {
            match obtained {
                Ok(hold) => {
                    self.retire_leftovers(&agent, amount, &hold.reservation);
                    return Ok(hold);
                }
                Err(e) if e.status() == Some(StatusCode::CONFLICT) => {
                    // The tokens this node gave back (now, or idle leases
                    // still in the book) may be the missing ones: ask once
                    // more.
                    if !retried {
                        retried = true;
                        gave_back |= self.return_idle_with_room(&agent, &agent_id).await;
                        if gave_back {
                            obtained = self.obtain(&agent, &agent_id, ask, min).await;
                            continue;
                        }
                    }
                    self.count("refused");
                    let remote = e.detail("available").unwrap_or(0);
                    return Err(LedgerError::Insufficient {
                        needed: amount,
                        available: remote.max(self.largest_room(&agent)).min(amount - 1),
                    });
                }
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                    return Err(LedgerError::UnknownAccount(agent_id));
                }
                Err(e) => {
                    tracing::warn!(agent = %agent_id, error = %e.reason(), code = e.code(),
                        "leasing tokens from the control plane failed");
                    return Err(LedgerError::Storage(e.reason()));
                }
            }
        }
    }

    /// Ask for a lease of `amount` (at least `min`) and hold `min` of it.
    pub(super) async fn obtain(
        self: &Arc<Self>,
        agent: &Arc<AgentLeases>,
        agent_id: &str,
        amount: u64,
        min: u64,
    ) -> Result<Hold, CallError> {
        let url = self.url(&["v1", "nodes", "leases"]);
        let body = json!({
            "node_id": self.node_id,
            "agent_id": agent_id,
            "amount": amount,
            "min_amount": min,
        });
        let sent_at = Instant::now();
        let sent_ms = now_ms();
        let grant: Grant = self.call(Method::POST, url, Some(&body)).await?;
        self.count("granted");
        // Journaled before anything is spent on it, so that a node killed
        // from now on returns it (with its spend) when it starts again.
        if let Some(journal) = self.journal.get() {
            let op = JournalOp::Lease {
                lease_id: grant.lease_id.clone(),
                agent_id: agent_id.to_owned(),
                granted: grant.granted,
            };
            if let Err(e) = journal.write(op).await {
                tracing::error!(agent = %agent_id, lease = %grant.lease_id, error = %e,
                    "journaling a lease failed; it goes back at once");
                drop(self.spawn_return(PendingReturn {
                    agent_id: agent_id.to_owned(),
                    lease_id: grant.lease_id,
                    spent: 0,
                    attempts: 0,
                    next_try: Instant::now(),
                }));
                return Err(CallError::Network(
                    "the lease could not be journaled".into(),
                ));
            }
        }
        // Non-positive: expired on arrival. Capped: an `Instant` cannot hold
        // an arbitrary future, and a node keeps no lease for long anyway.
        let announced = grant.expires_at_ms.saturating_sub(sent_ms);
        let lifetime = u64::try_from(announced)
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO)
            .min(MAX_LIFETIME);
        if u64::try_from(announced).is_ok_and(|ms| ms > MAX_LIFETIME.as_millis() as u64) {
            tracing::debug!(agent = %agent_id, lease = %grant.lease_id, announced_ms = announced,
                "a lease announced a lifetime beyond the cap; it goes back within the cap");
        }
        let expires = sent_at.checked_add(lifetime).unwrap_or(sent_at);
        let usable_until = expires
            .checked_sub(self.settings.expiry_margin.min(lifetime / 2))
            .unwrap_or(sent_at);
        let now = Instant::now();
        let mut lease = Lease {
            id: grant.lease_id.clone(),
            granted: grant.granted,
            spent: 0,
            uncovered: 0,
            held: 0,
            open: 0,
            expires,
            usable_until,
            last_used: now,
            expiry_noted: false,
            retired: false,
        };
        if lifetime.is_zero() || !lease.usable(now) || lease.room() < min {
            // Nothing this node can use (expired on arrival: clocks apart,
            // or a grant below the minimum): give it back at once.
            tracing::warn!(agent = %agent_id, lease = %grant.lease_id, granted = grant.granted,
                lifetime_ms = lifetime.as_millis() as u64,
                "a lease arrived unusable (expired or below the minimum); check the clocks");
            drop(self.spawn_return(lease.into_return(agent_id, now)));
            return Err(CallError::Network("the lease arrived unusable".into()));
        }
        // Held in the same step that makes the lease visible, so that
        // nobody else takes the room it was asked for; the guard is made in
        // that step too, so the hold cannot outlive an absent caller.
        lease.held = min;
        lease.open = 1;
        let id = self.reservation_id();
        let mut book = lock(&agent.book);
        book.leases.push(lease);
        book.open.insert(
            id.clone(),
            Open {
                lease_id: Some(grant.lease_id),
                amount: min,
                detached: None,
            },
        );
        Ok(Hold {
            inner: Arc::clone(self),
            agent: Arc::clone(agent),
            reservation: Reservation {
                id,
                agent_id: agent_id.to_owned(),
                amount: min,
            },
            handed_over: false,
        })
    }

    /// Return a lease taken out of a book in a task of its own, so that the
    /// return is made (or queued for a retry) even if whoever asked for it
    /// stops waiting.
    pub(super) fn spawn_return(self: &Arc<Self>, r: PendingReturn) -> JoinHandle<bool> {
        let inner = Arc::clone(self);
        self.returning.fetch_add(1, Ordering::SeqCst);
        self.tracker.spawn(async move {
            let ok = inner.return_now(&r, true).await;
            inner.returning.fetch_sub(1, Ordering::SeqCst);
            ok
        })
    }

    /// Return these leases concurrently; answers whether any went back.
    pub(super) async fn return_all(self: &Arc<Self>, returns: Vec<PendingReturn>) -> bool {
        if returns.is_empty() {
            return false;
        }
        let tasks: Vec<JoinHandle<bool>> =
            returns.into_iter().map(|r| self.spawn_return(r)).collect();
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .any(|done| matches!(done, Ok(true)))
    }

    /// Take out of the agent's book every lease without open reservations
    /// that still has room, and return them now; answers whether any
    /// tokens went back.
    pub(super) async fn return_idle_with_room(
        self: &Arc<Self>,
        agent: &AgentLeases,
        agent_id: &str,
    ) -> bool {
        let now = Instant::now();
        let taken: Vec<PendingReturn> = {
            let mut book = lock(&agent.book);
            let (idle, keep): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut book.leases)
                .into_iter()
                .partition(|l| l.open == 0 && l.room() > 0);
            book.leases = keep;
            idle.into_iter()
                .map(|l| l.into_return(agent_id, now))
                .collect()
        };
        self.return_all(taken).await
    }

    /// Return what should go back now.
    pub(super) async fn return_due(self: &Arc<Self>) {
        let now = Instant::now();
        let idle = self.settings.idle_return;
        let grace = self.settings.open_grace;
        let agents: Vec<(String, Arc<AgentLeases>)> = lock(&self.agents)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut due = Vec::new();
        for (agent_id, agent) in &agents {
            let mut book = lock(&agent.book);
            for lease in &mut book.leases {
                if lease.open > 0 && lease.expired(now) && !lease.expiry_noted {
                    lease.expiry_noted = true;
                    self.count("expired_open");
                    tracing::warn!(agent = %agent_id, lease = %lease.id, open = lease.open,
                        "a lease expired with reservations open: their usage is reported \
                         at return and charged as far as the budget allows");
                }
            }
            let (ready, keep): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut book.leases)
                .into_iter()
                .partition(|l| l.returnable(now, idle, grace));
            book.leases = keep;
            for lease in &ready {
                if lease.open == 0 {
                    continue;
                }
                self.count("returned_open");
                tracing::warn!(agent = %agent_id, lease = %lease.id, open = lease.open,
                    "returning a lease whose reservations outlived it by the grace period; \
                     settling them later reports their usage as uncovered");
                for open in book.open.values_mut() {
                    if open.lease_id.as_deref() == Some(lease.id.as_str()) {
                        open.lease_id = None;
                        open.detached = Some(now);
                    }
                }
            }
            book.open.retain(|_, o| {
                o.detached
                    .is_none_or(|t| now.saturating_duration_since(t) < DETACHED_TTL)
            });
            due.extend(
                ready
                    .into_iter()
                    .map(|l: Lease| l.into_return(agent_id, now)),
            );
        }
        self.return_all(due).await;
        // Forget agents with nothing on this node that nobody is using.
        let mut map = lock(&self.agents);
        map.retain(|_, a| {
            Arc::strong_count(a) > 1 || {
                let book = lock(&a.book);
                !book.leases.is_empty() || !book.open.is_empty()
            }
        });
    }

    pub(super) async fn retry_pending(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<PendingReturn> = {
            let mut pending = lock(&self.pending);
            let (due, wait) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|r| r.next_try <= now);
            *pending = wait;
            due
        };
        self.return_all(due).await;
    }

    /// Return one lease; a transient failure queues it for a retry if
    /// `requeue` (shutdown's last attempts do not). Answers whether the
    /// control plane took it back.
    pub(super) async fn return_now(&self, r: &PendingReturn, requeue: bool) -> bool {
        let url = self.url(&["v1", "nodes", "leases", &r.lease_id, "return"]);
        let body = json!({ "node_id": self.node_id, "spent": r.spent });
        match self.call::<Returned>(Method::POST, url, Some(&body)).await {
            Ok(answer) => {
                self.count("returned");
                self.returned.fetch_add(1, Ordering::SeqCst);
                self.forget_journaled(&r.lease_id);
                if answer.uncovered > 0 {
                    tracing::warn!(agent = %r.agent_id, lease = %r.lease_id, spent = r.spent,
                        charged = answer.charged, uncovered = answer.uncovered,
                        status = %answer.status, "a returned lease's usage was not all covered");
                } else {
                    tracing::debug!(agent = %r.agent_id, lease = %r.lease_id, spent = r.spent,
                        status = %answer.status, "lease returned");
                }
                true
            }
            // The control plane does not know the lease, or refuses the
            // body: retrying will not change that.
            Err(e)
                if matches!(
                    e.status(),
                    Some(StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY)
                ) =>
            {
                self.count("lost");
                self.forget_journaled(&r.lease_id);
                tracing::error!(agent = %r.agent_id, lease = %r.lease_id, spent = r.spent,
                    error = %e.reason(), code = e.code(),
                    "the control plane refused a lease return; its usage is not reported");
                false
            }
            Err(e) => {
                self.count("return_failed");
                let attempts = r.attempts.saturating_add(1);
                let delay = RETURN_BACKOFF
                    .0
                    .saturating_mul(1 << attempts.min(8))
                    .min(RETURN_BACKOFF.1);
                tracing::warn!(agent = %r.agent_id, lease = %r.lease_id, attempts,
                    error = %e.reason(), retry_in_ms = delay.as_millis() as u64,
                    "returning a lease failed; will retry");
                if requeue {
                    lock(&self.pending).push(PendingReturn {
                        attempts,
                        next_try: Instant::now() + delay,
                        ..r.clone()
                    });
                }
                false
            }
        }
    }

    /// The control plane answered a lease's return: its journal rows have
    /// nothing more to report (if this write is lost, the lease is returned
    /// again at the next start, and the control plane answers the first
    /// return's result).
    fn forget_journaled(&self, lease_id: &str) {
        if let Some(journal) = self.journal.get() {
            journal.forget(JournalOp::Returned {
                lease_id: lease_id.to_owned(),
            });
        }
    }

    /// `{base}/a/b/c` with each segment escaped.
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One call; `2xx` bodies decode as `T`.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, CallError> {
        let mut req = self.http.request(method, url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Network(describe(&e)))?;
        let status = resp.status();
        let bytes = delta_http::client::read_capped(resp, MAX_BODY).await;
        if status.is_success() {
            return bytes
                .map_err(|e| CallError::Network(format!("a {status} answer: {e}")))
                .and_then(|b| {
                    serde_json::from_slice(&b)
                        .map_err(|_| CallError::Network(format!("an unreadable {status} answer")))
                });
        }
        let parsed: Value = bytes
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        Err(CallError::Status {
            status,
            code: parsed
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            details: parsed.get("details").cloned().unwrap_or(Value::Null),
        })
    }
}

/// A reqwest error in a few words (its `Display` names the URL).
pub(super) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_decode() || e.is_body() {
        "the answer was cut short".into()
    } else {
        "the request failed".into()
    }
}

pub(super) fn parse_status(s: &str) -> Option<RequestStatus> {
    Some(match s {
        "pending" => RequestStatus::Pending,
        "approved" => RequestStatus::Approved,
        "denied" => RequestStatus::Denied,
        "expired" => RequestStatus::Expired,
        _ => return None,
    })
}

pub(super) fn to_request(r: RemoteRequest) -> Result<TokenRequest, BudgetError> {
    let status = parse_status(&r.status).ok_or_else(|| {
        BudgetError::Unavailable("the budget authority answered an unknown status".into())
    })?;
    Ok(TokenRequest {
        id: r.id,
        amount: r.amount,
        reason: r.reason,
        status,
    })
}

/// The guest's view of a failed budget call.
pub(super) fn budget_error(e: &CallError) -> BudgetError {
    match (e.status(), e.code()) {
        (Some(StatusCode::CONFLICT), "no_parent") => BudgetError::NoParent,
        (Some(StatusCode::UNPROCESSABLE_ENTITY), "invalid_amount") => {
            BudgetError::InvalidAmount(e.detail("limit").unwrap_or(0))
        }
        _ => {
            tracing::warn!(error = %e.reason(), code = e.code(), "budget call to the control plane failed");
            BudgetError::Unavailable(e.reason())
        }
    }
}
