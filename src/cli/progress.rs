//! The progress bar of long work on a terminal.
//!
//! Owns: drawing [`Progress`] reports as an `indicatif` bar on stderr (what, bytes done of
//! the total, rate, time left), only when stderr is a terminal and `--quiet` was not given;
//! the finished bar stays as the last line.
//! Must not: draw anything when stderr is a pipe or a file (scripts get no escape codes), or
//! before an operation says what it will move.

use std::io::IsTerminal as _;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

/// Where the bar draws.
type Target = Box<dyn Fn() -> ProgressDrawTarget + Send + Sync>;

/// A bar, drawn from the first `start` on.
pub struct Bar {
    target: Target,
    bar: Mutex<Option<ProgressBar>>,
}

impl std::fmt::Debug for Bar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bar").finish_non_exhaustive()
    }
}

impl Bar {
    /// A bar on stderr, unless `quiet` or stderr is not a terminal.
    pub fn for_stderr(quiet: bool) -> Option<Bar> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Bar::drawing_to(Box::new(ProgressDrawTarget::stderr)))
    }

    /// A bar that draws where `target` says (benches draw into a sink).
    pub fn drawing_to(target: Target) -> Bar {
        Bar {
            target,
            bar: Mutex::new(None),
        }
    }

    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            f(bar);
        }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        let bar = ProgressBar::with_draw_target(Some(total), (self.target)());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn advance(&self, bytes: u64) {
        self.with(|bar| bar.inc(bytes));
    }

    fn finish(&self) {
        self.with(ProgressBar::finish);
    }
}
