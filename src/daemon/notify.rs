//! Telling the service manager what qpoold is doing (`sd_notify`, for `Type=notify` units).
//!
//! Owns: the messages sent to `$NOTIFY_SOCKET`: `READY=1` with a `STATUS=` once the sockets
//! serve, `RELOADING=1` (with `MONOTONIC_USEC=`, which systemd 253's `Type=notify-reload`
//! requires) and then `READY=1` around a reload, `STOPPING=1` when shutting down or idle,
//! and `STATUS=` lines. Without `$NOTIFY_SOCKET` every function does nothing. A failed
//! send is logged at debug level and never stops the daemon.
//! Must not: decide when to send them (the daemon does).

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("cannot notify the service manager: {e}");
    }
}

/// Start-up (or a reload) is finished: the sockets serve.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading qpoold.conf and the pool definitions"),
        ]),
        Err(e) => {
            log::debug!("cannot read the monotonic clock: {e}");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// Shutdown starts.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A status line alone (`systemctl status` shows it).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}
