//! Structured logging to the run's log stream (`delta:agent/log`).
//!
//! Logging never fails and never blocks. The host bounds it per run (lines,
//! bytes, bytes per line, lines per second) and silently drops or truncates
//! what is over a bound, so log freely but not in a hot loop.
//!
//! Use the functions here for plain strings and the crate-level macros
//! ([`info!`](crate::info), [`warn!`](crate::warn), ...) for `format!`-style
//! arguments:
//!
//! ```
//! use delta_sdk::log;
//!
//! log::info("starting");
//! delta_sdk::info!("processing {} items", 3);
//! log::write(log::Level::Debug, "details");
//! ```
//!
//! Outside WebAssembly (unit tests on the host) lines go to stderr.

use core::fmt;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected the agent recovered from.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// The level's lowercase name (`"info"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Record one log line at `level`.
pub fn write(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::verifier::delta::agent::log as raw;
        let level = match level {
            Level::Trace => raw::Level::Trace,
            Level::Debug => raw::Level::Debug,
            Level::Info => raw::Level::Info,
            Level::Warn => raw::Level::Warn,
            Level::Error => raw::Level::Error,
        };
        raw::write(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Write as _;
        // Ignore errors: logging never fails.
        let _ = writeln!(std::io::stderr(), "[{level}] {message}");
    }
}

/// Record one log line from pre-built format arguments (what the logging
/// macros call). Does not allocate when the arguments are a plain literal.
pub fn write_fmt(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(message) => write(level, message),
        None => write(level, &std::fmt::format(args)),
    }
}

/// Record a line at [`Level::Trace`].
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Record a line at [`Level::Debug`].
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Record a line at [`Level::Info`].
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Record a line at [`Level::Warn`].
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Record a line at [`Level::Error`].
pub fn error(message: &str) {
    write(Level::Error, message);
}

/// Log a `format!`-style line at [`Level::Trace`](crate::log::Level::Trace).
///
/// ```
/// delta_sdk::trace!("step {} of {}", 1, 3);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Trace, ::core::format_args!($($arg)+))
    };
}

/// Log a `format!`-style line at [`Level::Debug`](crate::log::Level::Debug).
///
/// ```
/// delta_sdk::debug!("state = {:?}", (1, 2));
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Debug, ::core::format_args!($($arg)+))
    };
}

/// Log a `format!`-style line at [`Level::Info`](crate::log::Level::Info).
///
/// ```
/// let name = "Ada";
/// delta_sdk::info!("greeting {name}");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Info, ::core::format_args!($($arg)+))
    };
}

/// Log a `format!`-style line at [`Level::Warn`](crate::log::Level::Warn).
///
/// ```
/// delta_sdk::warn!("retrying after {} ms", 250);
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Warn, ::core::format_args!($($arg)+))
    };
}

/// Log a `format!`-style line at [`Level::Error`](crate::log::Level::Error).
///
/// ```
/// delta_sdk::error!("upstream failed: {}", "timeout");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::Error, ::core::format_args!($($arg)+))
    };
}
