//! The spend journal: what the node spent against budget leases, made
//! durable by the store's group commit before a guest sees it (issue 13).
//!
//! The lease client ([`crate::leases`]) records each lease it is granted,
//! each reservation (at its whole amount) before the guest's call proceeds,
//! and each settlement (what was used) before the call returns. Writes go
//! through the node's one group-commit writer (`Node`'s recorder), so
//! concurrent callers share an fsync and the store keeps its single write
//! connection. When the control plane confirms a lease's return, its rows
//! are deleted. A node that was killed finds its unreturned leases here when
//! it starts and returns each with its journaled spend
//! ([`crate::store::Store::journal_unreturned`]): the control plane, which
//! counted their whole grant as spent at expiry, corrects that once.

use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// One change to the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOp {
    /// A lease was granted.
    Lease {
        /// Control-plane lease id.
        lease_id: String,
        /// Its agent.
        agent_id: String,
        /// Tokens granted.
        granted: u64,
    },
    /// A reservation of `tokens` against a lease (an operation in flight).
    Hold {
        /// Unique per lease and reservation.
        spend_id: String,
        /// The lease.
        lease_id: String,
        /// Its agent.
        agent_id: String,
        /// Tokens reserved.
        tokens: u64,
    },
    /// What a reservation used (charged and uncovered alike).
    Spend {
        /// The reservation's spend id.
        spend_id: String,
        /// The lease.
        lease_id: String,
        /// Its agent.
        agent_id: String,
        /// Tokens used.
        tokens: u64,
    },
    /// A reservation ended without usage.
    Release {
        /// The reservation's spend id.
        spend_id: String,
    },
    /// The control plane confirmed the lease's return (or no longer knows
    /// it): nothing left to report.
    Returned {
        /// The lease.
        lease_id: String,
    },
}

/// The spend id of reservation `reservation` against lease `lease`: lease
/// ids are unique across nodes and restarts, reservation ids within a
/// process, so the pair is unique.
pub fn spend_id(lease: &str, reservation: &str) -> String {
    format!("{lease}/{reservation}")
}

/// A queued journal write, answered once committed (if anyone waits).
#[derive(Debug)]
pub struct JournalJob {
    pub(crate) op: JournalOp,
    pub(crate) done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A handle on the group-commit writer for journal writes.
#[derive(Debug, Clone)]
pub struct Journal {
    tx: mpsc::Sender<JournalJob>,
}

impl Journal {
    /// A journal writing through `tx` (the recorder's journal queue).
    pub fn new(tx: mpsc::Sender<JournalJob>) -> Self {
        Self { tx }
    }

    /// Write `op` and wait until it is committed (fsynced).
    pub async fn write(&self, op: JournalOp) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        let stopped = || StoreError::Invalid("the journal writer stopped".into());
        self.tx
            .send(JournalJob {
                op,
                done: Some(done),
            })
            .await
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(|e| StoreError::Invalid(format!("journal: {e}")))
    }

    /// Queue `op` without waiting. For writes whose loss is conservative
    /// (a release: the hold stays counted as spent; a confirmed return: the
    /// lease is returned again, idempotently, after a restart).
    pub fn forget(&self, op: JournalOp) {
        if let Err(e) = self.tx.try_send(JournalJob { op, done: None }) {
            tracing::debug!(error = %e, "journal queue full; a conservative write is dropped");
        }
    }
}
