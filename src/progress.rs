//! Progress of long work: the engine says how many bytes an operation will move and how many
//! it has moved; a face decides whether and how to show it.
//!
//! Owns: the [`Progress`] trait the engine reports to.
//! Must not: draw anything or know about terminals (the CLI does), or import anything from
//! the crate.

/// Told about the bytes a long operation moves: `start` once with the total, `advance` as
/// pieces (tens of MiB) finish, `finish` at the end (also after a failure).
pub trait Progress: Sync + Send {
    /// The operation will move `total` bytes; `what` names it ("full preallocation of
    /// 'disk.img'").
    fn start(&self, what: &str, total: u64);
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);
    /// The operation ended.
    fn finish(&self);
}
