//! qpool: a libvirt-compatible storage pool engine for qcow2 and raw volumes.
//!
//! One engine, three faces. The engine reads libvirt volume XML ([`xml`]), decides the
//! preallocation from `<allocation>`, `<capacity>` and `<format>` ([`policy`]), writes qcow2
//! and raw images natively ([`image`]) into a managed pool directory ([`pool`]), and reports
//! capacity, allocation and physical size the way libvirt does. The faces are the `qpool`
//! command line ([`cli`]), the `qpoold` daemon speaking libvirt's RPC protocol, and a bridge
//! that mirrors pools into a running libvirtd ([`bridge`], cargo feature `libvirt`).
//!
//! Layering (ARCHITECTURE.md, checked by `tests/architecture.rs`): the pure layers ([`model`],
//! [`units`], [`xml`], [`policy`], [`error`], [`paths`]) at the bottom; [`image`] over
//! [`sys`], the only module that makes raw system calls; [`pool`], the engine, the only one
//! that touches pool directories and the only caller of `image`'s front door; and the faces
//! ([`cli`], [`rpc`], [`daemon`]), which translate errors into exit codes or libvirt error
//! codes and import nothing but the engine and the pure layers.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bridge;
pub mod cli;
pub mod daemon;
pub mod error;
pub mod image;
pub mod logging;
pub mod model;
pub mod paths;
pub mod policy;
pub mod pool;
pub mod progress;
pub mod rpc;
pub mod sys;
pub mod units;
pub mod xml;

pub use error::{Error, ErrorKind};
pub use pool::Pool;
