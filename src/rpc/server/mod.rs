//! The server: accepting connections, running calls, keepalive, idleness.
//!
//! Threads, not an async runtime: each connection has one reader thread ([`connection`])
//! that answers keepalive, connection-state calls and one-object queries at once and hands
//! every other call to its own worker thread, so a long operation (a full preallocation, a
//! stream, a clone) never blocks other calls on the same connection, other clients, or
//! keepalive. The engine is synchronous and blocking, so threads map onto it directly; the
//! number of concurrent workers per connection is bounded.
//!
//! Owns: accepting on a listener until told to stop, the set of connections, running one
//! call (with panics answered as internal errors, and the debug log line of every call:
//! connection, procedure name and number, serial, `ok` or the libvirt error code and
//! domain, duration), server PINGs to idle clients, and the counters that idle exit and
//! clean shutdown read; its submodules own a
//! connection ([`connection`]), event registrations ([`events`]) and stream pumps
//! ([`streams`]).
//! Must not: implement procedures (`handlers` does).

pub mod connection;
pub mod events;
pub mod streams;

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use connection::{Conn, Session, keepalive};
use events::Events;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};

use super::handlers::{self, Ctx, Outcome};
use super::proto::RemoteError;
use super::wire::{Header, KEEPALIVE_PING};
use crate::pool::registry::Registry;

/// Idle seconds before the server pings a client that asked for keepalive.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered pings before the server drops the connection.
const KEEPALIVE_COUNT: u64 = 5;
/// How long an accepting thread waits before it looks at the stop flag again (ms).
const ACCEPT_WAIT: u16 = 500;

/// The server shared by all connections.
pub struct Server {
    registry: Arc<Registry>,
    events: Events,
    next_conn: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
    active: AtomicUsize,
    calls: AtomicUsize,
    last_activity: Mutex<Instant>,
    stopping: AtomicBool,
}

impl Server {
    /// A server over `registry`; its pool events reach registered clients.
    pub fn new(registry: Arc<Registry>) -> Arc<Server> {
        let server = Arc::new(Server {
            registry,
            events: Events::default(),
            next_conn: AtomicU64::new(1),
            conns: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
            stopping: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&server);
        server.registry.set_listener(move |event| {
            if let Some(server) = weak.upgrade() {
                server.events.deliver(event);
            }
        });
        server
    }

    /// The daemon's pools.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Connections plus running calls: what keeps an idle-timeout daemon alive.
    pub fn busy(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Calls running now (a clean shutdown waits for them).
    pub fn running_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// When the last connection or call ended.
    pub fn idle_since(&self) -> Instant {
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Stops accepting: every [`Server::serve`] returns soon, and connections that arrive
    /// from now on stay in the listen queue (under socket activation systemd hands them to
    /// the next qpoold). Connections already accepted go on.
    pub fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Accepts connections on `listener`, one thread per connection, until
    /// [`Server::stop_accepting`].
    pub fn serve(self: &Arc<Self>, listener: UnixListener, readonly: bool) {
        while !self.stopping.load(Ordering::SeqCst) {
            let mut ready = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut ready, ACCEPT_WAIT) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    log::error!("cannot wait for connections: {e}");
                    return;
                }
            }
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    let server = Arc::clone(self);
                    let spawned = std::thread::Builder::new()
                        .name("qpoold-conn".into())
                        .spawn(move || server.connection(stream, readonly));
                    if let Err(e) = spawned {
                        log::error!("cannot start a connection thread: {e}");
                    }
                }
                Err(e) => log::warn!("accept failed: {e}"),
            }
        }
    }

    /// Sends keepalive PINGs to idle clients that asked for keepalive and drops those that
    /// stopped answering. Call it about once a second.
    pub fn keepalive_tick(&self) {
        let conns: Vec<Arc<Conn>> = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for conn in conns {
            if !conn.keepalive.load(Ordering::SeqCst) {
                continue;
            }
            let idle = conn
                .last_rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed();
            let missed = conn.pings_unanswered.load(Ordering::SeqCst);
            if idle
                >= KEEPALIVE_INTERVAL
                    * (u32::try_from(missed).unwrap_or(u32::MAX).saturating_add(1))
            {
                if missed >= KEEPALIVE_COUNT {
                    log::info!("connection {}: no keepalive answer, closing", conn.id);
                    conn.hang_up();
                    continue;
                }
                conn.pings_unanswered.fetch_add(1, Ordering::SeqCst);
                conn.enqueue(keepalive(KEEPALIVE_PING), Vec::new());
            }
        }
    }

    /// Runs one call and answers it, keeping the idle counters right. A panic in a handler
    /// still answers the call (internal error) and leaves the connection serving. Streams
    /// only run in a worker (`may_stream`): the reader thread must stay free for their
    /// packets.
    fn run_call(&self, conn: &Arc<Conn>, h: &Header, args: &[u8], may_stream: bool) {
        self.enter();
        self.calls.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let session = Session { conn, server: self };
        let ctx = Ctx {
            registry: &self.registry,
            conn: &session,
        };
        let procedure = handlers::procedure(h.proc_);
        let name = procedure.map_or("?", |p| p.name);
        // The log line is written before the reply, so a client that has its answer finds
        // the line in the log.
        let log = |failure: Option<&RemoteError>| {
            log_call(conn.id, name, h, failure, started.elapsed());
        };
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let result = match procedure {
                Some(p) => handlers::dispatch(&ctx, p, args),
                None => Err(RemoteError::unknown_procedure(h.proc_)),
            };
            match result {
                Ok(Outcome::Reply(payload)) => {
                    log(None);
                    conn.reply_ok(h, &payload);
                }
                Ok(Outcome::Upload {
                    upload,
                    name: volume,
                }) if may_stream => {
                    log(None);
                    streams::upload(conn, h, upload, &volume);
                }
                Ok(Outcome::Download { download }) if may_stream => {
                    log(None);
                    streams::download(conn, h, download);
                }
                Ok(Outcome::Upload { .. } | Outcome::Download { .. }) => {
                    log::error!("procedure {} opened a stream in the reader thread", h.proc_);
                    let e =
                        RemoteError::internal(format!("procedure {} cannot stream here", h.proc_));
                    log(Some(&e));
                    conn.reply_error(h, &e);
                }
                Err(e) => {
                    log(Some(&e));
                    conn.reply_error(h, &e);
                }
            }
        }));
        if handled.is_err() {
            log::error!(
                "connection {}: procedure {name} ({}) panicked",
                conn.id,
                h.proc_
            );
            let e = RemoteError::internal(format!("procedure {} failed unexpectedly", h.proc_));
            log(Some(&e));
            conn.reply_error(h, &e);
        }
        self.calls.fetch_sub(1, Ordering::SeqCst);
        self.leave();
    }
}

/// The debug line of one answered call: what a client asked and how it ended, e.g.
/// `connection 3: STORAGE_VOL_CREATE_XML (93) serial 7: ok in 1.204 ms`, or
/// `… serial 6: error 49 domain 18 (Storage pool not found: …) in 0.051 ms`.
pub(crate) fn log_call(
    conn: u64,
    name: &str,
    h: &Header,
    failure: Option<&RemoteError>,
    elapsed: Duration,
) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let result = match failure {
        None => "ok".to_string(),
        Some(e) => format!("error {} domain {} ({})", e.code, e.domain, e.message),
    };
    log::debug!(
        "connection {conn}: {name} ({}) serial {}: {result} in {:.3} ms",
        h.proc_,
        h.serial,
        elapsed.as_secs_f64() * 1000.0
    );
}
