//! One client connection: its state, its reader loop, and everything written to it.
//!
//! Owns: the per-connection protocol state (open, read-only, keepalive, unanswered pings,
//! running workers, open streams), reading messages and routing them (keepalive, calls,
//! stream packets), answering a call inline or handing it to a worker as the procedure
//! table says, the writer lock that keeps every message whole, and the queue thread that
//! carries events and server pings so that nobody blocks on a client that stopped reading.
//! Must not: implement procedures (the handlers do) or pump streams (`streams` does).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::Server;
use super::streams::StreamPacket;
use crate::rpc::handlers::{self, Connection, Runs};
use crate::rpc::proto::RemoteError;
use crate::rpc::wire::{
    self, Header, KEEPALIVE_PING, KEEPALIVE_PONG, KEEPALIVE_PROGRAM, PROTOCOL_VERSION,
    REMOTE_PROGRAM, msg_type, status,
};
use crate::rpc::xdr::Encoder;

/// Calls one connection may have running at once; a call beyond that is refused (never run
/// in the reader thread, which must stay free for keepalive and stream packets).
pub const MAX_WORKERS_PER_CONNECTION: usize = 256;
/// Events and pings one connection may have queued; a client that lets more pile up (it
/// stopped reading) is disconnected.
const MAX_QUEUED_MESSAGES: usize = 10_000;

/// An unsolicited message waiting for the connection's queue thread.
type Queued = (Header, Vec<u8>);

/// One client connection.
pub struct Conn {
    /// Number for the log.
    pub id: u64,
    writer: Mutex<UnixStream>,
    /// Another handle on the socket, to shut it down without waiting for the writer lock
    /// (a writer can block for as long as the client does not read).
    control: UnixStream,
    queue: Mutex<Option<Sender<Queued>>>,
    queued: Arc<AtomicUsize>,
    readonly_socket: bool,
    opened: AtomicBool,
    readonly: AtomicBool,
    /// The client asked about keepalive, so the server pings it when idle.
    pub keepalive: AtomicBool,
    /// When the client last sent anything.
    pub last_rx: Mutex<Instant>,
    /// Pings sent since then.
    pub pings_unanswered: AtomicU64,
    streams: Mutex<HashMap<u32, Sender<StreamPacket>>>,
    workers: AtomicUsize,
    /// The socket is gone or being shut down.
    pub closed: AtomicBool,
}

/// The keepalive message `proc_` (PING or PONG).
pub fn keepalive(proc_: i32) -> Header {
    Header {
        prog: KEEPALIVE_PROGRAM,
        vers: PROTOCOL_VERSION,
        proc_,
        mtype: msg_type::MESSAGE,
        serial: 0,
        status: status::OK,
    }
}

impl Conn {
    /// A connection over `stream`, accepted on the read-only socket when `readonly`.
    pub fn new(id: u64, stream: &UnixStream, readonly: bool) -> std::io::Result<Conn> {
        Ok(Conn {
            id,
            writer: Mutex::new(stream.try_clone()?),
            control: stream.try_clone()?,
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
        })
    }

    /// The open streams, by call serial.
    pub fn streams(&self) -> MutexGuard<'_, HashMap<u32, Sender<StreamPacket>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes one message whole; a failed write closes the connection.
    pub fn send(&self, header: &Header, payload: &[u8]) {
        let bytes = wire::encode(header, payload);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = w.write_all(&bytes) {
            log::debug!("connection {}: write failed: {e}", self.id);
            self.closed.store(true, Ordering::SeqCst);
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Queues an unsolicited message (event, PING); never blocks.
    pub fn enqueue(self: &Arc<Self>, header: Header, payload: Vec<u8>) {
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
    pub fn hang_up(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }

    /// The OK reply to `call`.
    pub fn reply_ok(&self, call: &Header, payload: &[u8]) {
        self.send(&call.reply(status::OK), payload);
    }

    /// The error reply to `call`.
    pub fn reply_error(&self, call: &Header, err: &RemoteError) {
        let mut e = Encoder::default();
        err.encode(&mut e);
        self.send(&call.reply(status::ERROR), &e.into_bytes());
    }

    /// Ends a stream with an error.
    pub fn stream_error(&self, call: &Header, err: &RemoteError) {
        let mut e = Encoder::default();
        err.encode(&mut e);
        self.stream_packet(call, msg_type::STREAM, status::ERROR, &e.into_bytes());
    }

    /// One packet of the stream opened by `call`.
    pub fn stream_packet(&self, call: &Header, mtype: u32, st: u32, payload: &[u8]) {
        let header = Header {
            mtype,
            status: st,
            ..*call
        };
        self.send(&header, payload);
    }

    /// Stops the queue thread and wakes any stream waiting for this connection's packets.
    pub fn shut(&self) {
        self.closed.store(true, Ordering::SeqCst);
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.streams().clear();
    }
}

/// A connection as the handlers see it, with the server its events come from.
pub struct Session<'a> {
    /// The connection.
    pub conn: &'a Arc<Conn>,
    /// The server.
    pub server: &'a Server,
}

impl Connection for Session<'_> {
    fn id(&self) -> u64 {
        self.conn.id
    }
    fn is_open(&self) -> bool {
        self.conn.opened.load(Ordering::SeqCst)
    }
    fn open(&self, readonly: bool) {
        self.conn
            .readonly
            .store(self.conn.readonly_socket || readonly, Ordering::SeqCst);
        self.conn.opened.store(true, Ordering::SeqCst);
    }
    fn close(&self) {
        self.conn.opened.store(false, Ordering::SeqCst);
    }
    fn is_readonly(&self) -> bool {
        self.conn.readonly.load(Ordering::SeqCst)
    }
    fn enable_keepalive(&self) {
        self.conn.keepalive.store(true, Ordering::SeqCst);
    }
    fn register_pool_events(&self, event_id: i32, pool: Option<[u8; 16]>) -> i32 {
        self.server.events.register(self.conn, event_id, pool)
    }
    fn deregister_pool_events(&self, callback_id: i32) -> bool {
        self.server.events.deregister(self.conn.id, callback_id)
    }
}

impl Server {
    /// Serves one connection until it closes.
    pub(super) fn connection(self: Arc<Self>, stream: UnixStream, readonly: bool) {
        let id = self.next_conn.fetch_add(1, Ordering::SeqCst);
        let conn = match Conn::new(id, &stream, readonly) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                log::warn!("cannot clone a connection socket: {e}");
                return;
            }
        };
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
        conn.shut();
        self.events.forget(conn.id);
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
            msg_type::STREAM | msg_type::STREAM_HOLE => stream_in(conn, &h, msg.payload),
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

    fn call(self: &Arc<Self>, conn: &Arc<Conn>, h: Header, args: Vec<u8>) {
        let Some(procedure) = handlers::procedure(h.proc_) else {
            let started = Instant::now();
            let open = conn.opened.load(Ordering::SeqCst);
            let err = if open {
                RemoteError::unknown_procedure(h.proc_)
            } else {
                RemoteError::not_open()
            };
            super::log_call(conn.id, "?", &h, Some(&err), started.elapsed());
            conn.reply_error(&h, &err);
            return;
        };
        if procedure.runs == Runs::Inline {
            // Answered here, in the reader thread: connection state, and one-object queries
            // for which a thread hand-off would cost more than the call.
            self.run_call(conn, &h, &args, false);
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
            server.run_call(&worker_conn, &h, &args, true);
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
}

/// Routes a stream packet from the client to the stream its serial names.
fn stream_in(conn: &Conn, h: &Header, payload: Vec<u8>) {
    let packet = StreamPacket::decode(h.mtype, h.status, payload);
    if let StreamPacket::Bad(reason) = &packet {
        log::warn!("connection {}: {reason}", conn.id);
    }
    let streams = conn.streams();
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
