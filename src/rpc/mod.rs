//! libvirt's remote RPC protocol, storage subset: the face `qpoold` speaks.
//!
//! Owns: XDR ([`xdr`]), framing ([`wire`]), libvirt's constants and error shapes
//! ([`proto`]), the argument and return structs of each procedure ([`messages`]), the
//! procedure table and one handler per procedure ([`handlers`]), the translation of engine
//! failures into libvirt errors ([`errors`]), and connections ([`server`]).
//! Must not: implement engine logic or driver rules; handlers call the registry
//! ([`crate::pool::registry`]), and nothing outside the faces imports this module.

pub mod errors;
pub mod handlers;
pub mod messages;
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
