//! libvirt's remote RPC protocol, storage subset: the face `qpoold` speaks.
//!
//! Owns: XDR ([`xdr`]), framing ([`wire`]), procedure numbers and error shapes ([`proto`]),
//! procedure handlers ([`dispatch`]) and connections ([`server`]).
//! Must not: implement engine logic; procedures call into [`crate::pool`].

pub mod dispatch;
pub mod proto;
pub mod server;
pub mod wire;
pub mod xdr;

/// Bytes from whitespace-separated 32-bit hex words, as libvirt-rpc.md writes its vectors.
#[cfg(test)]
pub(crate) fn words(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .flat_map(|w| u32::from_str_radix(w, 16).unwrap().to_be_bytes())
        .collect()
}
