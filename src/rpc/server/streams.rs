//! Stream pumps: the bytes of `vol-upload` and `vol-download` between a connection and a
//! volume.
//!
//! Owns: the stream protocol after the call's OK reply: data packets (at most
//! `STREAM_CHUNK_MAX` bytes), hole packets when sparse, the empty end packet, the client's
//! finish or abort, and an error packet when the volume side fails.
//! Must not: decide which volume or check anything about it (the call did).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

use super::connection::Conn;
use crate::pool::{Chunk, Download, Upload};
use crate::rpc::errors;
use crate::rpc::proto::RemoteError;
use crate::rpc::wire::{Header, STREAM_CHUNK_MAX, msg_type, status};
use crate::rpc::xdr::{Decoder, Encoder};

/// A stream packet from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamPacket {
    /// Bytes.
    Data(Vec<u8>),
    /// That many bytes of zeros, not sent.
    Hole(u64),
    /// The client is done.
    Finish,
    /// The client gave up.
    Abort,
    /// A packet that does not decode; the stream fails with this reason.
    Bad(&'static str),
}

impl StreamPacket {
    /// What a stream message from the client says: data (`VIR_NET_CONTINUE`), the end
    /// (`VIR_NET_OK`), an abort (anything else), or a hole whose `remote_stream_hole` payload
    /// must decode to a non-negative length.
    pub fn decode(mtype: u32, st: u32, payload: Vec<u8>) -> StreamPacket {
        match (mtype, st) {
            (msg_type::STREAM_HOLE, _) => {
                let mut d = Decoder::new(&payload);
                match (d.i64().map(u64::try_from), d.u32()) {
                    (Ok(Ok(len)), Ok(_flags)) => StreamPacket::Hole(len),
                    _ => StreamPacket::Bad("malformed hole packet"),
                }
            }
            (_, status::CONTINUE) => StreamPacket::Data(payload),
            (_, status::OK) => StreamPacket::Finish,
            _ => StreamPacket::Abort,
        }
    }
}

fn register(conn: &Conn, serial: u32) -> Receiver<StreamPacket> {
    let (tx, rx) = channel();
    conn.streams().insert(serial, tx);
    rx
}

fn unregister(conn: &Conn, serial: u32) {
    conn.streams().remove(&serial);
}

fn engine_error(conn: &Conn, h: &Header, e: &crate::Error) {
    conn.stream_error(h, &errors::engine(e));
}

/// Runs an upload: OK reply, then the client's packets into the volume. The volume is
/// released (its writer closed, its lock dropped) before the packet that ends the stream
/// goes out, so a client that uses the volume again as soon as it has read that packet
/// finds it free.
pub fn upload(conn: &Conn, h: &Header, upload: Upload, name: &str) {
    let rx = register(conn, h.serial);
    conn.reply_ok(h, &[]);
    // `None` once the stream failed: later packets are read and dropped until the end.
    let mut upload = Some(upload);
    loop {
        match rx.recv() {
            Ok(StreamPacket::Data(bytes)) => {
                let written = upload.as_mut().map(|u| u.write_data(&bytes));
                if let Some(Err(e)) = written {
                    upload = None;
                    engine_error(conn, h, &e);
                }
            }
            Ok(StreamPacket::Hole(len)) => {
                let written = upload.as_mut().map(|u| u.write_hole(len));
                if let Some(Err(e)) = written {
                    upload = None;
                    engine_error(conn, h, &e);
                }
            }
            Ok(StreamPacket::Bad(reason)) => {
                if upload.take().is_some() {
                    conn.stream_error(
                        h,
                        &RemoteError::invalid_arg(format!(
                            "cannot stream volume '{name}': {reason}"
                        )),
                    );
                }
            }
            Ok(StreamPacket::Finish) => {
                if let Some(u) = upload.take() {
                    match u.finish() {
                        Ok(()) => conn.stream_packet(h, msg_type::STREAM, status::OK, &[]),
                        Err(e) => engine_error(conn, h, &e),
                    }
                }
                break;
            }
            Ok(StreamPacket::Abort) => {
                upload = None;
                conn.stream_packet(h, msg_type::STREAM, status::OK, &[]);
                break;
            }
            Err(_) => break,
        }
    }
    drop(upload);
    unregister(conn, h.serial);
}

/// Runs a download: OK reply, data packets and (for a sparse download, the only kind whose
/// reader reports holes) hole packets, the empty end packet, then the client's finish is
/// confirmed.
pub fn download(conn: &Conn, h: &Header, mut download: Download) {
    let rx = register(conn, h.serial);
    conn.reply_ok(h, &[]);
    let mut buf = vec![0u8; STREAM_CHUNK_MAX];
    loop {
        match rx.try_recv() {
            Ok(StreamPacket::Abort) | Err(TryRecvError::Disconnected) => {
                unregister(conn, h.serial);
                conn.stream_packet(h, msg_type::STREAM, status::OK, &[]);
                return;
            }
            _ => {}
        }
        match download.next_chunk(&mut buf) {
            Ok(Chunk::Data(n)) => {
                conn.stream_packet(h, msg_type::STREAM, status::CONTINUE, &buf[..n]);
            }
            Ok(Chunk::Hole(len)) => {
                let mut e = Encoder::default();
                e.i64(i64::try_from(len).unwrap_or(i64::MAX)).u32(0);
                conn.stream_packet(h, msg_type::STREAM_HOLE, status::CONTINUE, &e.into_bytes());
            }
            Ok(Chunk::End) => {
                conn.stream_packet(h, msg_type::STREAM, status::CONTINUE, &[]);
                break;
            }
            Err(e) => {
                engine_error(conn, h, &e);
                unregister(conn, h.serial);
                return;
            }
        }
        if conn.closed.load(Ordering::SeqCst) {
            unregister(conn, h.serial);
            return;
        }
    }
    // Wait for the client's finish (or abort) and confirm it.
    loop {
        match rx.recv() {
            Ok(StreamPacket::Finish | StreamPacket::Abort) => break,
            Ok(_) => {}
            Err(_) => {
                unregister(conn, h.serial);
                return;
            }
        }
    }
    conn.stream_packet(h, msg_type::STREAM, status::OK, &[]);
    unregister(conn, h.serial);
}
