//! Logging set-up for both binaries.
//!
//! Owns: the `env_logger` configuration: stderr (journald picks it up under systemd), the
//! filter from `QPOOL_LOG`, else `RUST_LOG`, else `warn`, and the `level: message` line shape
//! that matches the CLI's `error: …` lines.
//! Must not: be called from the library's engine layers; only `main` functions set it up.

use std::io::Write as _;

/// The environment variable that filters qpool's log (before `RUST_LOG`).
pub const LOG_ENV: &str = "QPOOL_LOG";

/// Sets up `env_logger` to stderr, filtered by `QPOOL_LOG`, else `RUST_LOG`, else `warn`.
/// A second call does nothing.
pub fn init() {
    let filter = std::env::var(LOG_ENV)
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".to_string());
    let _ = env_logger::Builder::new()
        .parse_filters(&filter)
        .format(|buf, record| {
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            writeln!(buf, "{level}: {}", record.args())
        })
        .try_init();
}
