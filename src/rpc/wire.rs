//! Framing of libvirt's remote protocol: the length word, the 24-byte header, the limits.
//!
//! ```text
//!  0       4       8       12      16      20      24      28 ...
//!  +-------+-------+-------+-------+-------+-------+-------+-------------
//!  |length | prog  | vers  | proc  | type  |serial |status | payload (XDR)
//!  +-------+-------+-------+-------+-------+-------+-------+-------------
//!  length counts itself: 28 for an empty payload, at most 4 + 32 MiB.
//! ```
//!
//! Owns: reading one message from a byte stream (refusing undersized and oversized length
//! words before allocating) and encoding one.
//! Must not: interpret procedures or payloads.

use std::io::{self, Read};

use thiserror::Error;

/// REMOTE_PROGRAM: every API call.
pub const REMOTE_PROGRAM: u32 = 0x2000_8086;
/// KEEPALIVE_PROGRAM ("keep").
pub const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;
/// The only protocol version of both programs.
pub const PROTOCOL_VERSION: u32 = 1;
/// Size of the header after the length word.
pub const HEADER_LEN: usize = 24;
/// VIR_NET_MESSAGE_MAX: header plus payload.
pub const MESSAGE_MAX: usize = 32 << 20;
/// VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX: the largest stream data chunk.
pub const STREAM_CHUNK_MAX: usize = 262_120;

/// Keepalive PING.
pub const KEEPALIVE_PING: i32 = 1;
/// Keepalive PONG.
pub const KEEPALIVE_PONG: i32 = 2;

/// virNetMessageType.
pub mod msg_type {
    /// VIR_NET_CALL.
    pub const CALL: u32 = 0;
    /// VIR_NET_REPLY.
    pub const REPLY: u32 = 1;
    /// VIR_NET_MESSAGE (events, keepalive).
    pub const MESSAGE: u32 = 2;
    /// VIR_NET_STREAM.
    pub const STREAM: u32 = 3;
    /// VIR_NET_CALL_WITH_FDS.
    pub const CALL_WITH_FDS: u32 = 4;
    /// VIR_NET_STREAM_HOLE.
    pub const STREAM_HOLE: u32 = 6;
}

/// virNetMessageStatus.
pub mod status {
    /// VIR_NET_OK.
    pub const OK: u32 = 0;
    /// VIR_NET_ERROR.
    pub const ERROR: u32 = 1;
    /// VIR_NET_CONTINUE.
    pub const CONTINUE: u32 = 2;
}

/// The 24-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_: i32,
    /// virNetMessageType.
    pub mtype: u32,
    /// Call serial.
    pub serial: u32,
    /// virNetMessageStatus.
    pub status: u32,
}

impl Header {
    /// The reply header for a call: same program, procedure and serial.
    pub fn reply(&self, status: u32) -> Header {
        Header {
            mtype: msg_type::REPLY,
            status,
            ..*self
        }
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Header.
    pub header: Header,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// A frame that cannot be read.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The length word is below the 28-byte minimum.
    #[error("message length {0} is below the 28-byte minimum")]
    Undersized(u32),
    /// The length word exceeds the 32 MiB limit.
    #[error("message length {0} exceeds the limit of {max}", max = MESSAGE_MAX + 4)]
    Oversized(u32),
    /// The stream ended inside a message.
    #[error("connection closed inside a message")]
    Truncated,
    /// Reading failed.
    #[error("read failed")]
    Io(#[source] io::Error),
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(true)
}

/// Reads one message; `Ok(None)` on a clean end of stream between messages.
pub fn read_message(r: &mut impl Read) -> Result<Option<Message>, FrameError> {
    let mut len = [0u8; 4];
    if !read_full(r, &mut len)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len);
    let total = len as usize;
    if total < 4 + HEADER_LEN {
        return Err(FrameError::Undersized(len));
    }
    if total > 4 + MESSAGE_MAX {
        return Err(FrameError::Oversized(len));
    }
    // The header apart from the payload, so the payload is read where it stays.
    let mut head = [0u8; HEADER_LEN];
    let mut payload = vec![0u8; total - 4 - HEADER_LEN];
    if !read_full(r, &mut head)? || !read_full(r, &mut payload)? {
        return Err(FrameError::Truncated);
    }
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let header = Header {
        prog: word(0),
        vers: word(4),
        proc_: i32::from_be_bytes([head[8], head[9], head[10], head[11]]),
        mtype: word(12),
        serial: word(16),
        status: word(20),
    };
    Ok(Some(Message { header, payload }))
}

/// Encodes a message with its length word.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    let total = 4 + HEADER_LEN + payload.len();
    let mut out = Vec::with_capacity(total);
    // Payloads are bounded by MESSAGE_MAX, far below u32::MAX.
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&header.prog.to_be_bytes());
    out.extend_from_slice(&header.vers.to_be_bytes());
    out.extend_from_slice(&header.proc_.to_be_bytes());
    out.extend_from_slice(&header.mtype.to_be_bytes());
    out.extend_from_slice(&header.serial.to_be_bytes());
    out.extend_from_slice(&header.status.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::words;

    #[test]
    fn auth_list_call_vector_decodes() {
        // libvirt-rpc.md §7: AUTH_LIST call.
        let bytes = words("0000001c 20008086 00000001 00000042 00000000 00000000 00000000");
        let m = read_message(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(
            m.header,
            Header {
                prog: REMOTE_PROGRAM,
                vers: 1,
                proc_: 66,
                mtype: msg_type::CALL,
                serial: 0,
                status: status::OK
            }
        );
        assert!(m.payload.is_empty());
    }

    #[test]
    fn keepalive_pong_vector_encodes() {
        let pong = Header {
            prog: KEEPALIVE_PROGRAM,
            vers: 1,
            proc_: KEEPALIVE_PONG,
            mtype: msg_type::MESSAGE,
            serial: 0,
            status: status::OK,
        };
        assert_eq!(
            encode(&pong, &[]),
            words("0000001c 6b656570 00000001 00000002 00000002 00000000 00000000")
        );
    }

    #[test]
    fn undersized_and_oversized_length_words_are_refused() {
        let small = words("0000001b 20008086");
        assert!(matches!(
            read_message(&mut &small[..]),
            Err(FrameError::Undersized(27))
        ));
        let huge = words("02000005 20008086");
        assert!(matches!(
            read_message(&mut &huge[..]),
            Err(FrameError::Oversized(_))
        ));
    }

    #[test]
    fn truncated_messages_are_refused() {
        let cut = words("00000024 20008086 00000001");
        assert!(matches!(
            read_message(&mut &cut[..]),
            Err(FrameError::Truncated)
        ));
        let empty: &[u8] = &[];
        assert!(read_message(&mut &empty[..]).unwrap().is_none());
    }
}
