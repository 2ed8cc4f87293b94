//! The message audit log: one record per send attempt, sent or not.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::ChannelId;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditStatus {
    /// The provider (or outbox) accepted the message.
    Sent,
    /// A check refused the message before any delivery was attempted.
    Refused,
    /// Rendering, the ledger or the provider failed (`delivery-failed`).
    Failed,
}

/// One send attempt, as appended to the audit log (one JSON object per line
/// in [`JsonlAuditLog`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Host-assigned id of the attempt; the receipt's `message-id` when sent.
    pub message_id: String,
    /// Tenant of the calling agent (from the host's call context).
    pub tenant_id: String,
    /// The calling agent.
    pub agent_id: String,
    /// The run that made the call.
    pub run_id: String,
    /// Channel requested by the agent.
    pub channel: ChannelId,
    /// Template id requested by the agent (truncated to 256 bytes).
    pub template_id: String,
    /// Recipient requested by the agent (truncated to 256 bytes).
    pub recipient: String,
    /// How the attempt ended.
    pub status: AuditStatus,
    /// The `send-error` case that ended the attempt, in the WIT's kebab-case
    /// (`template-not-found`, `rate-limited`, ...); `None` when sent.
    pub reason: Option<String>,
    /// The error's payload: the variable name, the retry delay in ms, the
    /// shortfall (`needed N, available M`) or the failure summary.
    pub detail: Option<String>,
    /// Tokens charged to the agent's budget.
    pub tokens_charged: u64,
    /// The provider's id for the message (SMTP reply text, Twilio `sid`,
    /// outbox file name); `None` unless sent.
    pub provider_message_id: Option<String>,
    /// When the call arrived (RFC 3339, UTC, milliseconds).
    pub requested_at: String,
    /// When the attempt ended (RFC 3339, UTC, milliseconds).
    pub finished_at: String,
}

/// The audit log could not be written.
#[derive(Debug, thiserror::Error)]
#[error("message audit log: {0}")]
pub struct AuditError(#[from] pub std::io::Error);

/// Where attempts are recorded.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Append one record.
    async fn append(&self, record: &AuditRecord) -> Result<(), AuditError>;
}

/// An audit log that appends JSON lines to a file.
#[derive(Debug)]
pub struct JsonlAuditLog {
    path: PathBuf,
    // One writer at a time, so lines from concurrent sends never interleave.
    file: tokio::sync::Mutex<tokio::fs::File>,
}

impl JsonlAuditLog {
    /// Open (or create) `path` for appending.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        Ok(Self {
            path,
            file: tokio::sync::Mutex::new(file),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl AuditLog for JsonlAuditLog {
    async fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().await;
        // One write of the whole line in append mode; flush so the record is
        // in the file (not in tokio's buffer) when `send` returns.
        file.write_all(&line).await?;
        file.flush().await?;
        Ok(())
    }
}

/// An audit log kept in memory (tests, local runs).
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every record so far, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record.clone());
        Ok(())
    }
}

/// Format a Unix time in milliseconds as RFC 3339 UTC
/// (`2025-01-02T03:04:05.678Z`).
pub(crate) fn rfc3339_millis(unix_ms: u128) -> String {
    let ms = (unix_ms % 1000) as u32;
    let secs = (unix_ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_735_787_045_678),
            "2025-01-02T03:04:05.678Z"
        );
    }
}
