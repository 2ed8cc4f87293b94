//! Progress on stderr for what takes more than a moment (uploading a
//! component, the control plane compiling it): a bar, then a spinner.
//! Only when stderr is a terminal, so that scripts, pipes and `--json`
//! output never see it; `DELTA_NO_PROGRESS` turns it off too.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn at all.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("DELTA_NO_PROGRESS").is_none()
}

/// An upload's bar that turns into a spinner once every byte is sent (the
/// server then checks and compiles); nothing when [`enabled`] is false.
#[derive(Clone)]
pub struct Upload {
    bar: Option<ProgressBar>,
    len: u64,
    after: &'static str,
}

impl Upload {
    /// A bar for `len` bytes described as `what`; `after` is what the
    /// spinner says once they are sent.
    pub fn new(len: u64, what: &str, after: &'static str) -> Self {
        let bar = enabled().then(|| {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            // The template is a constant: a failure is a bug, and the
            // default style still draws a bar.
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("uploading {what}"));
            bar
        });
        Self { bar, len, after }
    }

    /// `n` more bytes sent.
    pub fn sent(&self, n: u64) {
        let Some(bar) = &self.bar else { return };
        bar.inc(n);
        if bar.position() >= self.len {
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(self.after);
            bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    /// Done: the bar or spinner is cleared.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
