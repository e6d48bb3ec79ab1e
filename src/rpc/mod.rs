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
