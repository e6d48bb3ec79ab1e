//! The server: accepting connections, running calls, keepalive, idleness.
//!
//! Threads, not an async runtime: each connection has one reader thread ([`connection`])
//! that answers keepalive, connection-state calls and one-object queries at once and hands
//! every other call to its own worker thread, so a long operation (a full preallocation, a
//! stream, a clone) never blocks other calls on the same connection, other clients, or
//! keepalive. The engine is synchronous and blocking, so threads map onto it directly; the
//! number of concurrent workers per connection is bounded.
//!
//! Owns: accepting on a listener, the set of connections, running one call (with panics
//! answered as internal errors, and the debug log line of every call), server PINGs to idle
//! clients, and the counters that idle exit and clean shutdown read; its submodules own a
//! connection ([`connection`]), event registrations ([`events`]) and stream pumps
//! ([`streams`]).
//! Must not: implement procedures (`handlers` does).

pub mod connection;
pub mod events;
pub mod streams;

use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use connection::{Conn, Session, keepalive};
use events::Events;

use super::handlers::{self, Ctx, Outcome};
use super::proto::RemoteError;
use super::wire::{Header, KEEPALIVE_PING};
use crate::pool::registry::Registry;

/// Idle seconds before the server pings a client that asked for keepalive.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered pings before the server drops the connection.
const KEEPALIVE_COUNT: u64 = 5;

/// The server shared by all connections.
pub struct Server {
    registry: Arc<Registry>,
    events: Events,
    next_conn: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
    active: AtomicUsize,
    calls: AtomicUsize,
    last_activity: Mutex<Instant>,
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

    /// Accepts connections on `listener` forever, one thread per connection.
    pub fn serve(self: &Arc<Self>, listener: UnixListener, readonly: bool) {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
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
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let result = match procedure {
                Some(p) => handlers::dispatch(&ctx, p, args),
                None => Err(RemoteError::unknown_procedure(h.proc_)),
            };
            let code = result.as_ref().err().map(|e| e.code);
            match result {
                Ok(Outcome::Reply(payload)) => conn.reply_ok(h, &payload),
                Ok(Outcome::Upload { upload, name }) if may_stream => {
                    streams::upload(conn, h, upload, &name);
                }
                Ok(Outcome::Download { download }) if may_stream => {
                    streams::download(conn, h, download);
                }
                Ok(Outcome::Upload { .. } | Outcome::Download { .. }) => {
                    log::error!("procedure {} opened a stream in the reader thread", h.proc_);
                    conn.reply_error(
                        h,
                        &RemoteError::internal(format!("procedure {} cannot stream here", h.proc_)),
                    );
                }
                Err(e) => conn.reply_error(h, &e),
            }
            code
        }));
        match handled {
            Ok(code) => log::debug!(
                "connection {}: {name} ({}) serial {}: {} in {:.3} ms",
                conn.id,
                h.proc_,
                h.serial,
                code.map_or("ok".to_string(), |c| format!("error {c}")),
                started.elapsed().as_secs_f64() * 1000.0
            ),
            Err(_) => {
                log::error!(
                    "connection {}: procedure {name} ({}) panicked",
                    conn.id,
                    h.proc_
                );
                conn.reply_error(
                    h,
                    &RemoteError::internal(format!("procedure {} failed unexpectedly", h.proc_)),
                );
            }
        }
        self.calls.fetch_sub(1, Ordering::SeqCst);
        self.leave();
    }
}
