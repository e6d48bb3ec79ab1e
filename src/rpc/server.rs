//! Connections: reading messages, answering keepalive, running calls and streams, delivering
//! events.
//!
//! Threads, not an async runtime: each connection has one reader thread that answers
//! keepalive, connection-state calls and one-object queries (vol-info, lookups: see
//! `quick`) at once and hands every other call to its own worker thread, so a long
//! operation (a full preallocation, a stream, a clone) never blocks other calls on the same
//! connection, other clients, or keepalive. Replies, stream packets
//! and events go out through one writer lock per connection, each message written whole.
//! The engine is synchronous and blocking, so threads map onto it directly; the number of
//! concurrent workers per connection is bounded.
//!
//! Owns: the per-connection protocol state (auth, open, read-only, keepalive), stream
//! plumbing between the socket and [`VolumeReader`]/[`VolumeWriter`], event registrations,
//! and logging and surviving bad frames.
//! Must not: implement procedures (that is `dispatch`).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::dispatch::{Dispatcher, Outcome, Session};
use super::proto::{PoolHandle, RemoteError, procs};
use super::wire::{
    self, Header, KEEPALIVE_PING, KEEPALIVE_PONG, KEEPALIVE_PROGRAM, PROTOCOL_VERSION,
    REMOTE_PROGRAM, STREAM_CHUNK_MAX, msg_type, status,
};
use super::xdr::{Decoder, Encoder};
use crate::image::stream::{Chunk, VolumeReader, VolumeWriter};
use crate::pool::registry::PoolEvent;

/// Calls one connection may have running at once; a call beyond that is refused (never run
/// in the reader thread, which must stay free for keepalive and stream packets).
const MAX_WORKERS_PER_CONNECTION: usize = 256;
/// Idle seconds before the server pings a client that asked for keepalive.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered pings before the server drops the connection.
const KEEPALIVE_COUNT: u64 = 5;
/// Events and pings one connection may have queued; a client that lets more pile up (it
/// stopped reading) is disconnected.
const MAX_QUEUED_MESSAGES: usize = 10_000;

/// A stream packet from the client.
enum StreamPacket {
    Data(Vec<u8>),
    Hole(u64),
    Finish,
    Abort,
    /// A packet that does not decode; the stream fails with this reason.
    Bad(&'static str),
}

/// An unsolicited message waiting for the connection's queue thread.
type Queued = (Header, Vec<u8>);

/// One client connection.
struct Conn {
    id: u64,
    writer: Mutex<UnixStream>,
    /// Another handle on the socket, to shut it down without waiting for the writer lock
    /// (a writer can block for as long as the client does not read).
    control: UnixStream,
    /// Events and server PINGs, written by the connection's own queue thread so that the
    /// thread raising an event (or the keepalive timer) never blocks on a client's socket.
    queue: Mutex<Option<Sender<Queued>>>,
    queued: Arc<AtomicUsize>,
    readonly_socket: bool,
    opened: AtomicBool,
    readonly: AtomicBool,
    keepalive: AtomicBool,
    last_rx: Mutex<Instant>,
    pings_unanswered: AtomicU64,
    streams: Mutex<HashMap<u32, Sender<StreamPacket>>>,
    workers: AtomicUsize,
    closed: AtomicBool,
}

impl Conn {
    fn send(&self, header: &Header, payload: &[u8]) {
        let bytes = wire::encode(header, payload);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = w.write_all(&bytes) {
            log::debug!("connection {}: write failed: {e}", self.id);
            self.closed.store(true, Ordering::SeqCst);
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Queues an unsolicited message (event, PING); never blocks.
    fn enqueue(self: &Arc<Self>, header: Header, payload: Vec<u8>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        if self.queued.load(Ordering::SeqCst) >= MAX_QUEUED_MESSAGES {
            log::warn!(
                "connection {}: {MAX_QUEUED_MESSAGES} messages queued and not read; closing it",
                self.id
            );
            self.hang_up();
            return;
        }
        if queue.is_none() {
            let (tx, rx) = channel::<Queued>();
            let conn = Arc::downgrade(self);
            let queued = Arc::clone(&self.queued);
            let spawned = std::thread::Builder::new()
                .name("qpoold-queue".into())
                .spawn(move || {
                    for (header, payload) in rx {
                        queued.fetch_sub(1, Ordering::SeqCst);
                        match conn.upgrade() {
                            Some(conn) => conn.send(&header, &payload),
                            None => break,
                        }
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start a queue thread: {e}");
                return;
            }
            *queue = Some(tx);
        }
        if let Some(tx) = queue.as_ref() {
            self.queued.fetch_add(1, Ordering::SeqCst);
            if tx.send((header, payload)).is_err() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Shuts the socket down: blocked writes fail, the reader sees the end.
    fn hang_up(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }

    fn reply_ok(&self, call: &Header, payload: &[u8]) {
        self.send(&call.reply(status::OK), payload);
    }

    fn reply_error(&self, call: &Header, err: &RemoteError) {
        let mut e = Encoder::default();
        err.encode(&mut e);
        self.send(&call.reply(status::ERROR), &e.into_bytes());
    }

    /// Ends a stream with an error.
    fn stream_error(&self, call: &Header, err: &RemoteError) {
        let mut e = Encoder::default();
        err.encode(&mut e);
        self.stream_packet(call, msg_type::STREAM, status::ERROR, &e.into_bytes());
    }

    fn stream_packet(&self, call: &Header, mtype: u32, st: u32, payload: &[u8]) {
        let header = Header {
            mtype,
            status: st,
            ..*call
        };
        self.send(&header, payload);
    }
}

/// A storage pool event registration.
struct Callback {
    conn: Weak<Conn>,
    id: i32,
    event_id: i32,
    pool: Option<[u8; 16]>,
}

/// The server shared by all connections.
pub struct Server {
    dispatcher: Arc<Dispatcher>,
    callbacks: Mutex<Vec<Callback>>,
    next_callback: AtomicI32,
    next_conn: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
    active: AtomicUsize,
    calls: AtomicUsize,
    last_activity: Mutex<Instant>,
}

impl Server {
    /// A server over `dispatcher`; pool events of its registry reach registered clients.
    pub fn new(dispatcher: Arc<Dispatcher>) -> Arc<Server> {
        let server = Arc::new(Server {
            dispatcher,
            callbacks: Mutex::new(Vec::new()),
            next_callback: AtomicI32::new(0),
            next_conn: AtomicU64::new(1),
            conns: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
        });
        let weak = Arc::downgrade(&server);
        server.dispatcher.registry().set_listener(move |event| {
            if let Some(server) = weak.upgrade() {
                server.deliver(event);
            }
        });
        server
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

    fn connection(self: Arc<Self>, stream: UnixStream, readonly: bool) {
        let (writer, control) = match (stream.try_clone(), stream.try_clone()) {
            (Ok(w), Ok(c)) => (w, c),
            (Err(e), _) | (_, Err(e)) => {
                log::warn!("cannot clone a connection socket: {e}");
                return;
            }
        };
        let conn = Arc::new(Conn {
            id: self.next_conn.fetch_add(1, Ordering::SeqCst),
            writer: Mutex::new(writer),
            control,
            queue: Mutex::new(None),
            queued: Arc::new(AtomicUsize::new(0)),
            readonly_socket: readonly,
            opened: AtomicBool::new(false),
            readonly: AtomicBool::new(readonly),
            keepalive: AtomicBool::new(false),
            last_rx: Mutex::new(Instant::now()),
            pings_unanswered: AtomicU64::new(0),
            streams: Mutex::new(HashMap::new()),
            workers: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        self.enter();
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&conn));
        log::debug!(
            "connection {} opened on the {} socket",
            conn.id,
            if readonly { "read-only" } else { "read-write" }
        );
        let mut reader = stream;
        loop {
            let msg = match wire::read_message(&mut reader) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("connection {}: {e}; closing it", conn.id);
                    break;
                }
            };
            *conn.last_rx.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            conn.pings_unanswered.store(0, Ordering::SeqCst);
            self.handle(&conn, msg);
            if conn.closed.load(Ordering::SeqCst) {
                break;
            }
        }
        // Stop the queue thread, and wake any stream waiting for this connection's packets.
        conn.closed.store(true, Ordering::SeqCst);
        *conn.queue.lock().unwrap_or_else(|e| e.into_inner()) = None;
        conn.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.conn.upgrade().is_some_and(|o| o.id != conn.id));
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.upgrade().is_some_and(|o| o.id != conn.id));
        log::debug!("connection {} closed", conn.id);
        self.leave();
    }

    fn handle(self: &Arc<Self>, conn: &Arc<Conn>, msg: wire::Message) {
        let h = msg.header;
        if h.prog == KEEPALIVE_PROGRAM {
            if h.vers == PROTOCOL_VERSION && h.proc_ == KEEPALIVE_PING {
                conn.send(&keepalive(KEEPALIVE_PONG), &[]);
            }
            return;
        }
        if h.prog != REMOTE_PROGRAM || h.vers != PROTOCOL_VERSION {
            if h.mtype == msg_type::CALL {
                conn.reply_error(&h, &RemoteError::unknown_program(h.prog, h.vers));
            } else {
                log::warn!(
                    "connection {}: message for unknown program {:#x} version {}",
                    conn.id,
                    h.prog,
                    h.vers
                );
            }
            return;
        }
        match h.mtype {
            msg_type::CALL => self.call(conn, h, msg.payload),
            msg_type::STREAM | msg_type::STREAM_HOLE => self.stream_in(conn, &h, msg.payload),
            msg_type::CALL_WITH_FDS => {
                conn.reply_error(&h, &RemoteError::unknown_procedure(h.proc_));
            }
            other => log::warn!(
                "connection {}: unexpected message type {other} (proc {})",
                conn.id,
                h.proc_
            ),
        }
    }

    fn stream_in(&self, conn: &Conn, h: &Header, payload: Vec<u8>) {
        let packet = match (h.mtype, h.status) {
            (msg_type::STREAM_HOLE, _) => {
                let mut d = Decoder::new(&payload);
                match d.i64().map(u64::try_from) {
                    Ok(Ok(len)) => StreamPacket::Hole(len),
                    _ => {
                        log::warn!("connection {}: malformed hole packet", conn.id);
                        StreamPacket::Bad("malformed hole packet")
                    }
                }
            }
            (_, status::CONTINUE) => StreamPacket::Data(payload),
            (_, status::OK) => StreamPacket::Finish,
            _ => StreamPacket::Abort,
        };
        let streams = conn.streams.lock().unwrap_or_else(|e| e.into_inner());
        match streams.get(&h.serial) {
            Some(tx) => {
                let _ = tx.send(packet);
            }
            None => log::warn!(
                "connection {}: stream packet for no stream (serial {}, proc {})",
                conn.id,
                h.serial,
                h.proc_
            ),
        }
    }

    fn call(self: &Arc<Self>, conn: &Arc<Conn>, h: Header, args: Vec<u8>) {
        // Connection state first, in the reader thread.
        if let Some(result) = self.connection_call(conn, &h, &args) {
            match result {
                Ok(payload) => conn.reply_ok(&h, &payload),
                Err(e) => conn.reply_error(&h, &e),
            }
            return;
        }
        if !conn.opened.load(Ordering::SeqCst) {
            conn.reply_error(&h, &RemoteError::not_open());
            return;
        }
        let session = Session {
            readonly: conn.readonly.load(Ordering::SeqCst),
        };
        if quick(h.proc_) {
            // A one-object query: answered here, in the reader thread. Starting a thread
            // would cost more than the call (one `stat` and a header read), and on a busy
            // machine every extra thread hand-off adds a scheduling delay to the round trip.
            self.run_call(conn, &session, &h, &args, false);
            return;
        }
        if conn.workers.fetch_add(1, Ordering::SeqCst) >= MAX_WORKERS_PER_CONNECTION {
            conn.workers.fetch_sub(1, Ordering::SeqCst);
            log::warn!("connection {}: too many concurrent calls", conn.id);
            conn.reply_error(
                &h,
                &RemoteError::internal(format!(
                    "too many concurrent calls (at most {MAX_WORKERS_PER_CONNECTION})"
                )),
            );
            return;
        }
        let server = Arc::clone(self);
        let worker_conn = Arc::clone(conn);
        let run = move || {
            server.run_call(&worker_conn, &session, &h, &args, true);
            worker_conn.workers.fetch_sub(1, Ordering::SeqCst);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("qpoold-call".into())
            .spawn(run)
        {
            // The closure never ran: release its slot and answer the call here.
            conn.workers.fetch_sub(1, Ordering::SeqCst);
            log::error!("cannot start a worker thread: {e}");
            conn.reply_error(
                &h,
                &RemoteError::internal(format!("cannot start a worker thread: {e}")),
            );
        }
    }

    /// Runs one call and answers it, keeping the idle counters right. A panic in a handler
    /// still answers the call (internal error) and leaves the connection serving. Streams
    /// only run in a worker (`may_stream`): the reader thread must stay free for their
    /// packets.
    fn run_call(&self, conn: &Conn, session: &Session, h: &Header, args: &[u8], may_stream: bool) {
        self.enter();
        self.calls.fetch_add(1, Ordering::SeqCst);
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match self.dispatcher.call(session, h.proc_, args) {
                Ok(Outcome::Reply(payload)) => conn.reply_ok(h, &payload),
                Ok(Outcome::Upload { writer, name }) if may_stream => {
                    upload(conn, h, writer, &name);
                }
                Ok(Outcome::Download {
                    reader,
                    sparse,
                    name,
                }) if may_stream => {
                    download(conn, h, reader, sparse, &name);
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
        }));
        if handled.is_err() {
            log::error!("connection {}: procedure {} panicked", conn.id, h.proc_);
            conn.reply_error(
                h,
                &RemoteError::internal(format!("procedure {} failed unexpectedly", h.proc_)),
            );
        }
        self.calls.fetch_sub(1, Ordering::SeqCst);
        self.leave();
    }

    /// Calls that change or query the connection itself; `None` for everything else.
    fn connection_call(
        &self,
        conn: &Arc<Conn>,
        h: &Header,
        args: &[u8],
    ) -> Option<Result<Vec<u8>, RemoteError>> {
        let mut d = Decoder::new(args);
        let opened = conn.opened.load(Ordering::SeqCst);
        let mut e = Encoder::default();
        let result = match h.proc_ {
            procs::AUTH_LIST => {
                e.u32(1).u32(0); // [REMOTE_AUTH_NONE]
                Ok(())
            }
            procs::CONNECT_SUPPORTS_FEATURE => match d.i32() {
                Ok(feature) if opened || feature == 10 => {
                    if feature == 10 {
                        conn.keepalive.store(true, Ordering::SeqCst);
                    }
                    e.i32(i32::from(matches!(feature, 10 | 14 | 15)));
                    Ok(())
                }
                Ok(_) => Err(RemoteError::not_open()),
                Err(x) => Err(RemoteError::bad_payload(&x)),
            },
            procs::CONNECT_OPEN => match (d.opt_string(), d.u32()) {
                (Ok(name), Ok(flags)) => {
                    if opened {
                        Err(RemoteError::internal("connection already open"))
                    } else {
                        log::debug!(
                            "connection {}: open {:?} flags {flags:#x}",
                            conn.id,
                            name.as_deref().unwrap_or("")
                        );
                        conn.readonly
                            .store(conn.readonly_socket || flags & 1 != 0, Ordering::SeqCst);
                        conn.opened.store(true, Ordering::SeqCst);
                        Ok(())
                    }
                }
                (Err(x), _) | (_, Err(x)) => Err(RemoteError::bad_payload(&x)),
            },
            procs::CONNECT_CLOSE => {
                conn.opened.store(false, Ordering::SeqCst);
                Ok(())
            }
            procs::CONNECT_REGISTER_CLOSE_CALLBACK | procs::CONNECT_UNREGISTER_CLOSE_CALLBACK
                if opened =>
            {
                Ok(())
            }
            procs::CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY if opened => {
                match (d.i32(), d.present()) {
                    (Ok(event_id), Ok(has_pool)) => {
                        let pool = if has_pool {
                            match PoolHandle::decode(&mut d) {
                                Ok(p) => Some(p.uuid),
                                Err(x) => return Some(Err(RemoteError::bad_payload(&x))),
                            }
                        } else {
                            None
                        };
                        if !(0..=1).contains(&event_id) {
                            Err(RemoteError::invalid_arg(format!(
                                "unsupported storage pool event ID {event_id}"
                            )))
                        } else {
                            let id = self.next_callback.fetch_add(1, Ordering::SeqCst);
                            self.callbacks
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(Callback {
                                    conn: Arc::downgrade(conn),
                                    id,
                                    event_id,
                                    pool,
                                });
                            e.i32(id);
                            Ok(())
                        }
                    }
                    (Err(x), _) | (_, Err(x)) => Err(RemoteError::bad_payload(&x)),
                }
            }
            procs::CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY if opened => match d.i32() {
                Ok(id) => {
                    let mut callbacks = self.callbacks.lock().unwrap_or_else(|e| e.into_inner());
                    let before = callbacks.len();
                    callbacks.retain(|c| {
                        !(c.id == id && c.conn.upgrade().is_some_and(|o| o.id == conn.id))
                    });
                    if callbacks.len() == before {
                        Err(RemoteError::invalid_arg(format!(
                            "callback ID {id} not registered"
                        )))
                    } else {
                        Ok(())
                    }
                }
                Err(x) => Err(RemoteError::bad_payload(&x)),
            },
            _ => return None,
        };
        Some(result.map(|()| e.into_bytes()))
    }

    /// Sends a pool event to every matching registration.
    fn deliver(&self, event: &PoolEvent) {
        let (event_id, name, uuid, lifecycle) = match event {
            PoolEvent::Lifecycle { name, uuid, event } => (0, name, uuid, Some(*event as i32)),
            PoolEvent::Refresh { name, uuid } => (1, name, uuid, None),
        };
        let handle = PoolHandle {
            name: name.clone(),
            uuid: *uuid.as_bytes(),
        };
        let targets: Vec<(Arc<Conn>, i32)> = self
            .callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|c| c.event_id == event_id && c.pool.is_none_or(|p| p == *uuid.as_bytes()))
            .filter_map(|c| c.conn.upgrade().map(|conn| (conn, c.id)))
            .collect();
        for (conn, id) in targets {
            let mut e = Encoder::default();
            e.i32(id);
            handle.encode(&mut e);
            let proc_ = match lifecycle {
                Some(kind) => {
                    e.i32(kind).i32(0);
                    procs::STORAGE_POOL_EVENT_LIFECYCLE
                }
                None => procs::STORAGE_POOL_EVENT_REFRESH,
            };
            let header = Header {
                prog: REMOTE_PROGRAM,
                vers: PROTOCOL_VERSION,
                proc_,
                mtype: msg_type::MESSAGE,
                serial: 1,
                status: status::OK,
            };
            conn.enqueue(header, e.into_bytes());
        }
    }
}

/// Procedures that read one object (or the connection's facts) without walking a pool or
/// touching data: cheap enough to answer in the reader thread. Everything else, and
/// everything that can take long (creates, copies, wipes, resizes, streams, pool listings
/// and refreshes), runs in a worker thread of its own.
fn quick(proc_: i32) -> bool {
    use procs::*;
    matches!(
        proc_,
        CONNECT_GET_TYPE
            | CONNECT_GET_VERSION
            | CONNECT_GET_LIB_VERSION
            | CONNECT_GET_HOSTNAME
            | CONNECT_GET_URI
            | CONNECT_IS_SECURE
            | CONNECT_GET_CAPABILITIES
            | CONNECT_GET_STORAGE_POOL_CAPABILITIES
            | STORAGE_POOL_LOOKUP_BY_NAME
            | STORAGE_POOL_LOOKUP_BY_UUID
            | STORAGE_POOL_LOOKUP_BY_VOLUME
            | STORAGE_POOL_GET_INFO
            | STORAGE_POOL_GET_AUTOSTART
            | STORAGE_POOL_IS_ACTIVE
            | STORAGE_POOL_IS_PERSISTENT
            | STORAGE_VOL_LOOKUP_BY_NAME
            | STORAGE_VOL_GET_INFO
            | STORAGE_VOL_GET_INFO_FLAGS
            | STORAGE_VOL_GET_PATH
    )
}

fn keepalive(proc_: i32) -> Header {
    Header {
        prog: KEEPALIVE_PROGRAM,
        vers: PROTOCOL_VERSION,
        proc_,
        mtype: msg_type::MESSAGE,
        serial: 0,
        status: status::OK,
    }
}

fn register_stream(conn: &Conn, serial: u32) -> Receiver<StreamPacket> {
    let (tx, rx) = channel();
    conn.streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(serial, tx);
    rx
}

fn unregister_stream(conn: &Conn, serial: u32) {
    conn.streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&serial);
}

fn stream_error(conn: &Conn, h: &Header, err: &crate::pool::Error) {
    conn.stream_error(h, &super::dispatch::engine_error(err));
}

/// Runs an upload: OK reply, then the client's packets into the volume.
fn upload(conn: &Conn, h: &Header, mut writer: VolumeWriter, name: &str) {
    let rx = register_stream(conn, h.serial);
    conn.reply_ok(h, &[]);
    let streaming = |source| crate::pool::Error::Streaming {
        name: name.to_string(),
        source,
    };
    let mut failed = false;
    loop {
        match rx.recv() {
            Ok(StreamPacket::Data(bytes)) if !failed => {
                if let Err(e) = writer.write_data(&bytes) {
                    stream_error(conn, h, &streaming(e));
                    failed = true;
                }
            }
            Ok(StreamPacket::Hole(len)) if !failed => {
                if let Err(e) = writer.write_hole(len) {
                    stream_error(conn, h, &streaming(e));
                    failed = true;
                }
            }
            Ok(StreamPacket::Bad(reason)) if !failed => {
                conn.stream_error(
                    h,
                    &RemoteError::invalid_arg(format!("cannot stream volume '{name}': {reason}")),
                );
                failed = true;
            }
            Ok(StreamPacket::Data(_) | StreamPacket::Hole(_) | StreamPacket::Bad(_)) => {}
            Ok(StreamPacket::Finish) => {
                if !failed {
                    match writer.finish() {
                        Ok(()) => conn.stream_packet(h, msg_type::STREAM, status::OK, &[]),
                        Err(e) => stream_error(conn, h, &streaming(e)),
                    }
                }
                break;
            }
            Ok(StreamPacket::Abort) => {
                conn.stream_packet(h, msg_type::STREAM, status::OK, &[]);
                break;
            }
            Err(_) => break,
        }
    }
    unregister_stream(conn, h.serial);
}

/// Runs a download: OK reply, data (and hole) packets, the empty EOF packet, then the
/// client's finish is confirmed.
fn download(conn: &Conn, h: &Header, mut reader: VolumeReader, sparse: bool, name: &str) {
    let rx = register_stream(conn, h.serial);
    conn.reply_ok(h, &[]);
    let mut buf = vec![0u8; STREAM_CHUNK_MAX];
    let mut aborted = false;
    loop {
        match rx.try_recv() {
            Ok(StreamPacket::Abort) | Err(TryRecvError::Disconnected) => {
                aborted = true;
                break;
            }
            _ => {}
        }
        match reader.next_chunk(&mut buf) {
            Ok(Chunk::Data(n)) => {
                conn.stream_packet(h, msg_type::STREAM, status::CONTINUE, &buf[..n]);
            }
            Ok(Chunk::Hole(len)) if sparse => {
                let mut e = Encoder::default();
                e.u64(len).u32(0);
                conn.stream_packet(h, msg_type::STREAM_HOLE, status::CONTINUE, &e.into_bytes());
            }
            Ok(Chunk::Hole(len)) => {
                // Not sparse: holes go as zeros (a reader opened sparse never gets here).
                let zeros = vec![0u8; STREAM_CHUNK_MAX];
                let mut left = len;
                while left > 0 {
                    let n =
                        usize::try_from(left).map_or(STREAM_CHUNK_MAX, |l| l.min(STREAM_CHUNK_MAX));
                    conn.stream_packet(h, msg_type::STREAM, status::CONTINUE, &zeros[..n]);
                    left -= n as u64;
                }
            }
            Ok(Chunk::End) => {
                conn.stream_packet(h, msg_type::STREAM, status::CONTINUE, &[]);
                break;
            }
            Err(e) => {
                stream_error(
                    conn,
                    h,
                    &crate::pool::Error::Streaming {
                        name: name.to_string(),
                        source: e,
                    },
                );
                unregister_stream(conn, h.serial);
                return;
            }
        }
        if conn.closed.load(Ordering::SeqCst) {
            aborted = true;
            break;
        }
    }
    if !aborted {
        // Wait for the client's finish (or abort) and confirm it.
        loop {
            match rx.recv() {
                Ok(StreamPacket::Finish) | Ok(StreamPacket::Abort) => break,
                Ok(_) => {}
                Err(_) => {
                    unregister_stream(conn, h.serial);
                    return;
                }
            }
        }
    }
    conn.stream_packet(h, msg_type::STREAM, status::OK, &[]);
    unregister_stream(conn, h.serial);
}
