//! `delta:agent/log`: bounded per-run logging.
//!
//! A guest can call `write` in a tight loop, so every run has hard bounds:
//! a number of lines, a number of bytes, a per-line length and a rate
//! (GCRA through `governor`). Lines over a bound are dropped and counted;
//! an over-long line is cut at a UTF-8 boundary and counted as truncated.
//! Memory held per run is therefore at most `max_bytes` plus bookkeeping.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::bindings::delta::agent::log::{Host, Level};
use crate::{CallContext, HostState};

/// Bounds on one run's logging. Defaults are generous for real agents and
/// tight enough that a flood costs the node almost nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogLimits {
    /// Lines kept per run (default 1,000).
    pub max_lines: u32,
    /// Bytes of message text kept per run (default 256 KiB).
    pub max_bytes: u64,
    /// Bytes kept of a single line; longer lines are truncated (default 4 KiB).
    pub max_line_bytes: u32,
    /// Sustained lines per second (default 200).
    pub lines_per_second: u32,
    /// Lines allowed in a burst above the sustained rate (default 500).
    pub burst: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_lines: 1_000,
            max_bytes: 256 * 1024,
            max_line_bytes: 4 * 1024,
            lines_per_second: 200,
            burst: 500,
        }
    }
}

/// Severity of a log line (mirror of the WIT enum, with serde names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very fine-grained diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the agent handled.
    Warn,
    /// A failure.
    Error,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// One accepted log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the run's log state was created.
    pub at_ms: u64,
    /// Severity.
    pub level: LogLevel,
    /// Message text (possibly truncated to `max_line_bytes`).
    pub message: String,
}

/// Receives each accepted line as it is written (live streaming).
///
/// Called on the guest's thread during the host call: implementations must
/// not block (push into a bounded channel and drop when full).
pub trait LogSink: Send + Sync {
    /// One accepted line of the run `ctx`.
    fn line(&self, ctx: &CallContext, line: &LogLine);
}

/// Counters of one run's logging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// Lines accepted (kept and forwarded).
    pub lines: u64,
    /// Bytes of accepted message text.
    pub bytes: u64,
    /// Lines dropped because a bound was reached.
    pub dropped: u64,
    /// Accepted lines that were cut to `max_line_bytes`.
    pub truncated: u64,
}

/// A per-run GCRA limiter on `std::time::Instant`: governor's default
/// clock (quanta) calibrates itself with `cpuid` on creation, which cost more
/// than the rest of a small run's set-up together.
type LineRate = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

/// One run's log: accepted lines plus counters, within [`LogLimits`].
#[derive(Default)]
pub struct LogState {
    limits: LogLimits,
    sink: Option<Arc<dyn LogSink>>,
    // Created on the first line: most runs log little, and the cold path
    // should not pay for a rate limiter it never uses.
    rate: Option<LineRate>,
    started: Option<Instant>,
    lines: Vec<LogLine>,
    stats: LogStats,
}

impl LogState {
    /// Empty log bounded by `limits`, forwarding accepted lines to `sink`.
    pub fn new(limits: LogLimits, sink: Option<Arc<dyn LogSink>>) -> Self {
        Self {
            limits,
            sink,
            rate: None,
            started: None,
            lines: Vec::new(),
            stats: LogStats::default(),
        }
    }

    /// Record a line if the bounds allow; returns whether it was accepted.
    pub fn write(&mut self, ctx: &CallContext, level: LogLevel, message: &str) -> bool {
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.stats.lines >= u64::from(self.limits.max_lines)
            || self.stats.bytes >= self.limits.max_bytes
        {
            self.stats.dropped += 1;
            return false;
        }
        let limits = self.limits;
        let rate = self.rate.get_or_insert_with(|| {
            let per_second = NonZeroU32::new(limits.lines_per_second).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(limits.burst.max(1)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct_with_clock(
                Quota::per_second(per_second).allow_burst(burst),
                MonotonicClock,
            )
        });
        if rate.check().is_err() {
            self.stats.dropped += 1;
            return false;
        }
        let budget = (self.limits.max_bytes - self.stats.bytes)
            .min(u64::from(self.limits.max_line_bytes)) as usize;
        let kept = truncate_utf8(message, budget);
        if kept.len() < message.len() {
            self.stats.truncated += 1;
        }
        let line = LogLine {
            at_ms: started.elapsed().as_millis() as u64,
            level,
            message: kept.to_owned(),
        };
        if let Some(sink) = &self.sink {
            sink.line(ctx, &line);
        }
        self.stats.lines += 1;
        self.stats.bytes += line.message.len() as u64;
        self.lines.push(line);
        true
    }

    /// Accepted lines, oldest first.
    pub fn lines(&self) -> &[LogLine] {
        &self.lines
    }

    /// Take the accepted lines out.
    pub fn into_lines(self) -> Vec<LogLine> {
        self.lines
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        self.stats
    }
}

/// Longest prefix of `s` that is at most `max` bytes and ends on a char
/// boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Host for HostState {
    async fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        // Never fails and never waits: logging must not become a way to stall
        // or crash the host.
        let HostState { ctx, log, .. } = self;
        log.write(ctx, level.into(), &message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext {
            tenant_id: "t".into(),
            agent_id: "a".into(),
            run_id: "r".into(),
        }
    }

    #[test]
    fn lines_over_the_line_limit_are_dropped_and_counted() {
        let limits = LogLimits {
            max_lines: 3,
            burst: 100,
            ..LogLimits::default()
        };
        let mut log = LogState::new(limits, None);
        for i in 0..10 {
            log.write(&ctx(), LogLevel::Info, &format!("line {i}"));
        }
        assert_eq!(log.lines().len(), 3);
        assert_eq!(log.stats().lines, 3);
        assert_eq!(log.stats().dropped, 7);
        assert_eq!(log.lines()[2].message, "line 2");
    }

    #[test]
    fn bytes_are_bounded_and_long_lines_truncated_on_char_boundaries() {
        let limits = LogLimits {
            max_bytes: 10,
            max_line_bytes: 4,
            burst: 100,
            ..LogLimits::default()
        };
        let mut log = LogState::new(limits, None);
        // 'é' is two bytes: a 4-byte cut of "aéé" must keep "aé" (3 bytes).
        assert!(log.write(&ctx(), LogLevel::Warn, "aééé"));
        assert_eq!(log.lines()[0].message, "aé");
        assert_eq!(log.stats().truncated, 1);
        assert!(log.write(&ctx(), LogLevel::Info, "bbbb"));
        assert!(log.write(&ctx(), LogLevel::Info, "cccc"));
        // 3 + 4 + 3 (cut to the remaining budget) = 10 bytes: full now.
        assert_eq!(log.stats().bytes, 10);
        assert!(!log.write(&ctx(), LogLevel::Info, "d"));
        assert_eq!(log.stats().dropped, 1);
    }

    #[test]
    fn rate_limit_drops_a_burst_beyond_the_allowance() {
        let limits = LogLimits {
            lines_per_second: 1,
            burst: 5,
            ..LogLimits::default()
        };
        let mut log = LogState::new(limits, None);
        let accepted = (0..50)
            .filter(|_| log.write(&ctx(), LogLevel::Info, "x"))
            .count();
        // The burst allowance plus at most one refill during the loop.
        assert!((5..=6).contains(&accepted), "accepted {accepted}");
        assert_eq!(log.stats().dropped, 50 - accepted as u64);
    }

    #[test]
    fn sink_sees_only_accepted_lines() {
        use std::sync::Mutex;
        struct Collect(Mutex<Vec<String>>);
        impl LogSink for Collect {
            fn line(&self, _ctx: &CallContext, line: &LogLine) {
                self.0.lock().expect("lock").push(line.message.clone());
            }
        }
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let limits = LogLimits {
            max_lines: 2,
            ..LogLimits::default()
        };
        let mut log = LogState::new(limits, Some(sink.clone()));
        for m in ["a", "b", "c"] {
            log.write(&ctx(), LogLevel::Info, m);
        }
        assert_eq!(*sink.0.lock().expect("lock"), vec!["a", "b"]);
    }
}
