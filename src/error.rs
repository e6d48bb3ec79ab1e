//! The engine's errors and how they read.
//!
//! Owns: the crate error [`Error`](enum@Error) (one variant per failing engine operation, each naming the
//! volume, pool or path it concerned), its [`ErrorKind`] (what a face needs to choose an
//! exit status or a libvirt error code), and [`one_line`], the single rendering of an error
//! chain that the CLI, the daemon and the logs all print.
//! Must not: know exit codes, libvirt error numbers or any wire format; the faces translate
//! [`ErrorKind`] at their edge (`rpc::errors` holds the libvirt table).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::{image, policy, xml};

/// Kinds of failure, for the faces to map to exit codes and libvirt error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The XML is malformed or invalid.
    InvalidXml,
    /// A name, size, flag or option is invalid.
    InvalidArg,
    /// No pool of that name, UUID or path, or its directory cannot be used.
    NoPool,
    /// No volume of that name.
    NoVolume,
    /// A volume of that name exists.
    VolumeExists,
    /// Something qpool does not support.
    Unsupported,
    /// The operation does not fit the object's state (an active pool, a volume being built).
    InvalidState,
    /// A definition conflicts with another one (a name, UUID or target already taken).
    Conflict,
    /// Not enough space.
    NoSpace,
    /// An I/O error.
    Io,
    /// The XML text is not well-formed, or holds a character libvirt refuses there.
    MalformedXml,
    /// Well-formed XML that libvirt's schema does not allow (asked for with VALIDATE).
    InvalidSchema,
    /// A volume name qpool cannot use (a `/`, `.` or `..`, a hidden name, too long).
    BadName,
    /// Something the dir pool type has no support for at all (libvirt: "this function is
    /// not supported by the connection driver").
    NoSupport,
    /// What libvirt reports as an internal error: a copy onto a volume name in use,
    /// autostart of a pool that has no definition file.
    Internal,
    /// A resize that would need more than the pool has free, refused before trying.
    NotEnoughSpace,
}

/// Why a resize request itself was refused (libvirt's rules, before any file is touched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ResizeRefusal {
    /// The current capacity plus the delta does not fit in 64 bits.
    #[error("{old} + {delta} overflows")]
    Overflow {
        /// Current capacity.
        old: u64,
        /// The delta asked for.
        delta: u64,
    },
    /// A smaller size without the shrink flag (libvirt's words).
    #[error("Can't shrink capacity below current capacity unless shrink flag explicitly specified")]
    ShrinkWithoutFlag,
    /// A capacity below the bytes the volume already uses (libvirt's words).
    #[error("can't shrink capacity below existing allocation")]
    BelowAllocation,
    /// More new bytes to reserve than the pool has free (libvirt's words).
    #[error("Not enough space left in storage pool")]
    NotEnoughSpace,
}

impl ResizeRefusal {
    /// The kind of failure: libvirt refuses the request as an invalid argument, and a
    /// reservation the pool cannot hold as a failed operation.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotEnoughSpace => ErrorKind::NotEnoughSpace,
            Self::Overflow { .. } | Self::ShrinkWithoutFlag | Self::BelowAllocation => {
                ErrorKind::InvalidArg
            }
        }
    }
}

/// Why no passphrase could be had.
#[derive(Debug, Error)]
pub enum SecretError {
    /// The XML names no secret and no passphrase was given otherwise.
    #[error(
        "no secret provided for luks encryption (name one with <secret type='passphrase' uuid='…'/>, or give a passphrase file)"
    )]
    NoSecret,
    /// No secret with this UUID or usage exists.
    #[error("no secret with {0}")]
    NotFound(crate::xml::SecretRef),
    /// The secret exists but has no value yet (`secret-set-value` was not run).
    #[error("secret {0} has no value")]
    NoValue(uuid::Uuid),
    /// The passphrase file cannot be read.
    #[error("cannot read the passphrase file {path}")]
    ReadingFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The passphrase file is empty.
    #[error("the passphrase file {0} is empty")]
    Empty(PathBuf),
    /// The store of secrets cannot be read.
    #[error("cannot read the secret store")]
    Store(#[source] std::io::Error),
    /// libvirt's secret driver could not be asked (qpoold.conf `secrets_uri`).
    #[error("cannot read the secret from libvirt at {uri}")]
    Libvirt {
        /// The URI.
        uri: String,
        /// libvirt's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why the passphrase of an encrypted copy's source is not to be had (libvirt's way to
/// find it: the secret whose usage is the source volume's path).
#[derive(Debug, Error)]
pub enum SourceKeyMissing {
    /// The pool has no secrets to ask (the CLI's `--secret-file` gives one passphrase only).
    #[error("no secret store holds it (define a volume secret for the source in qpoold)")]
    NoStore,
    /// No secret has the source's path as its volume usage.
    #[error("no secret has the usage of volume {}", .0.display())]
    NoVolumeSecret(PathBuf),
    /// The source's volume secret exists but gives no passphrase.
    #[error("its volume secret gives no passphrase")]
    Secret(#[source] SecretError),
    /// The source's volume secret does not open it.
    #[error("the source's volume secret ({0}) does not open it")]
    WrongPassphrase(crate::xml::SecretRef),
}

/// Engine errors. Each names the operation and the volume or path it concerned.
#[derive(Debug, Error)]
pub enum Error {
    /// The volume XML was refused.
    #[error("invalid volume XML")]
    Xml(#[from] xml::Error),
    /// A volume name breaks the naming rules.
    #[error("invalid volume name '{name}': {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The policy refused the combination.
    #[error("volume '{name}'")]
    Policy {
        /// Volume name.
        name: String,
        /// What was refused.
        #[source]
        source: policy::Error,
    },
    /// The image options are invalid.
    #[error("volume '{name}'")]
    Options {
        /// Volume name.
        name: String,
        /// What was refused.
        #[source]
        source: image::Error,
    },
    /// A volume of that name exists already.
    #[error("volume '{name}' already exists in pool '{pool}'")]
    VolumeExists {
        /// Volume name.
        name: String,
        /// Pool name.
        pool: String,
    },
    /// No volume of that name.
    #[error("no storage volume with matching name '{name}' in pool '{pool}'")]
    NoVolume {
        /// Volume name.
        name: String,
        /// Pool name.
        pool: String,
    },
    /// The name exists but is not a regular file (a symlink, directory, device…).
    #[error("'{name}' in pool '{pool}' is a {what}, not a volume{}", if *what == "symbolic link" { " (qpool never follows symlinks)" } else { "" })]
    NotAVolume {
        /// Entry name.
        name: String,
        /// Pool name.
        pool: String,
        /// What it is.
        what: &'static str,
    },
    /// A volume whose file has other names too (a hard link): writing it would change files
    /// outside the pool.
    #[error(
        "volume '{name}' in pool '{pool}' has {links} hard links; qpool does not write a file that other names share (delete removes only this name)"
    )]
    HardLinked {
        /// Volume name.
        name: String,
        /// Pool name.
        pool: String,
        /// st_nlink.
        links: u64,
    },
    /// Another process holds a lock on the volume (a running QEMU, `qemu-img`, or another
    /// qpool copying, downloading or changing it), on this host or another one sharing the
    /// pool.
    #[error(
        "volume '{name}' in pool '{pool}' is in use: another process (such as a running QEMU, or a copy or download of it, on this host or another) holds a lock on it"
    )]
    InUse {
        /// Volume name.
        name: String,
        /// Pool name.
        pool: String,
    },
    /// Writing or removing the journal of an in-place change failed.
    #[error("cannot keep the journal of a change to volume '{name}'")]
    Journal {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The backing store cannot be read.
    #[error("cannot use backing store '{path}'")]
    Backing {
        /// Path as given.
        path: String,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// The backing store is not in the declared format.
    #[error("backing store '{path}' is not a {declared} image")]
    BackingFormat {
        /// Path as given.
        path: String,
        /// Declared format.
        declared: &'static str,
    },
    /// Not enough free space for the planned allocation.
    #[error(
        "not enough space in pool '{pool}' for volume '{name}': it needs {needed} bytes, {available} are available"
    )]
    NoSpace {
        /// Pool name.
        pool: String,
        /// Volume name.
        name: String,
        /// Bytes the volume needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// An encrypted volume's passphrase could not be had.
    #[error("cannot encrypt volume '{name}'")]
    Secret {
        /// The volume.
        name: String,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// A copy of an encrypted volume names a secret that does not open the source, and the
    /// source's own passphrase, which re-encrypting it under the new secret takes, is not
    /// to be had.
    #[error(
        "cannot copy '{from}' to '{name}': the secret named for the copy does not open the source, and re-encrypting it with the new secret needs the source's passphrase"
    )]
    CopyKeepsSourceKey {
        /// The new volume.
        name: String,
        /// The encrypted source.
        from: String,
        /// What is missing.
        #[source]
        missing: SourceKeyMissing,
    },
    /// An operation qpool cannot do on an encrypted volume.
    #[error("volume '{name}' is encrypted: {what}")]
    Encrypted {
        /// The volume.
        name: String,
        /// What is refused and why.
        what: &'static str,
    },
    /// The pool directory cannot be opened or created.
    #[error("cannot open pool directory {}", path.display())]
    OpeningPool {
        /// Directory path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading the pool directory failed.
    #[error("cannot read pool directory {}", path.display())]
    ReadingPool {
        /// Directory path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading a volume failed.
    #[error("cannot read volume '{name}'")]
    ReadingVolume {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Inspecting a volume's image failed.
    #[error("cannot inspect volume '{name}'")]
    InspectingVolume {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// Creating the temporary file or setting its attributes failed.
    #[error("cannot create volume '{name}' in {}", dir.display())]
    CreatingVolume {
        /// Volume name.
        name: String,
        /// Pool directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the image failed.
    #[error("cannot write volume '{name}'")]
    WritingVolume {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// `--reflink` on a copy that converts (another format, size or options).
    #[error(
        "cannot create volume '{name}': --reflink needs a copy in the same format with the same size and options; this one converts"
    )]
    ReflinkNeedsExactCopy {
        /// Volume name.
        name: String,
    },
    /// A resize the request itself rules out (libvirt's rules).
    #[error("cannot resize volume '{name}': {refusal}")]
    InvalidResize {
        /// Volume name.
        name: String,
        /// Why.
        refusal: ResizeRefusal,
    },
    /// Resizing the image failed or was refused by the image layer.
    #[error("cannot resize volume '{name}'")]
    ResizingVolume {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// Streaming a volume's bytes in or out failed.
    #[error("cannot stream volume '{name}'")]
    Streaming {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// A local file given as a stream's source or destination failed.
    #[error("cannot {} {}", if *writing { "write" } else { "read" }, path.display())]
    LocalFile {
        /// The file.
        path: PathBuf,
        /// Whether it was being written (else read).
        writing: bool,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// Wiping a volume failed.
    #[error("cannot wipe volume '{name}'")]
    WipingVolume {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// Deleting a volume failed.
    #[error("cannot delete volume '{name}'")]
    DeletingVolume {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A failed create whose temporary file could not be removed either.
    #[error("temporary file {temp} could not be removed after a failed create ({cleanup})")]
    Rollback {
        /// The original failure.
        #[source]
        cause: Box<Error>,
        /// The temporary file left behind (removed at the next refresh).
        temp: String,
        /// Why removing it failed.
        cleanup: io::Error,
    },
}

/// [`ErrorKind::NoSpace`] for a full filesystem or quota, else [`ErrorKind::Io`].
pub fn io_kind(e: Option<&io::Error>) -> ErrorKind {
    match e {
        Some(e)
            if e.kind() == io::ErrorKind::StorageFull
                || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) =>
        {
            ErrorKind::NoSpace
        }
        _ => ErrorKind::Io,
    }
}

/// The kind of an XML refusal: as libvirt's parser reports it, text that is not XML is an
/// "XML detail", a request qpool cannot carry out is unsupported, a unit libvirt does not
/// know an invalid argument, anything else an XML error.
pub fn xml_kind(e: &xml::Error) -> ErrorKind {
    match e {
        xml::Error::Malformed { .. } | xml::Error::IllegalChar { .. } => ErrorKind::MalformedXml,
        xml::Error::Unsupported { .. } => ErrorKind::Unsupported,
        xml::Error::BadSize {
            source: crate::units::SizeError::UnknownUnit(_),
            ..
        } => ErrorKind::InvalidArg,
        xml::Error::NotInSchema { .. } => ErrorKind::InvalidSchema,
        _ => ErrorKind::InvalidXml,
    }
}

/// The kind of a policy refusal: a backing store on a raw volume is a thing the dir pool
/// has no support for at all (libvirt's words), the rest unsupported configurations.
fn policy_kind(e: &policy::Error) -> ErrorKind {
    match e {
        policy::Error::RawBacking => ErrorKind::NoSupport,
        _ => ErrorKind::Unsupported,
    }
}

/// The kind of an image-layer failure inside an engine operation.
fn image_kind(e: &image::Error) -> ErrorKind {
    match e {
        image::Error::ShrinkWouldDropData { .. }
        | image::Error::OutOfRange { .. }
        | image::Error::Options(_)
        | image::Error::UnsupportedWipe(_)
        | image::Error::ReflinkConverts => ErrorKind::InvalidArg,
        image::Error::Unsupported(_) => ErrorKind::Unsupported,
        image::Error::Luks(image::luks::Error::TooManyIterations { .. }) => ErrorKind::InvalidArg,
        image::Error::Refused(_) => ErrorKind::InvalidState,
        _ => io_kind(e.io_error()),
    }
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Xml(e) => xml_kind(e),
            Self::InvalidName { .. } => ErrorKind::BadName,
            Self::Options { .. } | Self::BackingFormat { .. } => ErrorKind::InvalidArg,
            Self::Policy { source, .. } => policy_kind(source),
            Self::VolumeExists { .. } => ErrorKind::VolumeExists,
            Self::HardLinked { .. } | Self::InUse { .. } => ErrorKind::InvalidState,
            Self::NoVolume { .. } | Self::NotAVolume { .. } => ErrorKind::NoVolume,
            Self::NoSpace { .. } => ErrorKind::NoSpace,
            Self::OpeningPool { .. } => ErrorKind::NoPool,
            Self::Secret { .. } => ErrorKind::InvalidArg,
            Self::Encrypted { .. } | Self::CopyKeepsSourceKey { .. } => ErrorKind::Unsupported,
            Self::InvalidResize { refusal, .. } => refusal.kind(),
            Self::ReflinkNeedsExactCopy { .. } => ErrorKind::InvalidArg,
            Self::ResizingVolume { source, .. }
            | Self::WipingVolume { source, .. }
            | Self::Streaming { source, .. }
            | Self::LocalFile { source, .. } => image_kind(source),
            Self::WritingVolume { source, .. }
            | Self::InspectingVolume { source, .. }
            | Self::Backing { source, .. } => io_kind(source.io_error()),
            Self::ReadingPool { source, .. }
            | Self::ReadingVolume { source, .. }
            | Self::CreatingVolume { source, .. }
            | Self::DeletingVolume { source, .. }
            | Self::Journal { source, .. } => io_kind(Some(source)),
            Self::Rollback { cause, .. } => cause.kind(),
        }
    }
}

/// The whole error chain on one line: `outer: inner: innermost`. A link whose text the
/// previous one already ends with is left out, and newlines become spaces.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !next.is_empty() && !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text.replace('\n', " ")
}

/// The errno at the bottom of an error chain, if an I/O error is there.
pub fn errno(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_the_chain_without_repeating_itself() {
        let inner = io::Error::from_raw_os_error(libc::ENOSPC);
        let e = Error::DeletingVolume {
            name: "a".into(),
            source: inner,
        };
        let text = one_line(&e);
        assert!(text.starts_with("cannot delete volume 'a': "), "{text}");
        assert!(text.contains("No space left on device"), "{text}");
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert_eq!(errno(&e), Some(libc::ENOSPC));
    }

    #[test]
    fn a_rollback_has_the_kind_of_its_cause() {
        let e = Error::Rollback {
            cause: Box::new(Error::VolumeExists {
                name: "a".into(),
                pool: "p".into(),
            }),
            temp: ".qpool-tmp-x".into(),
            cleanup: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(e.kind(), ErrorKind::VolumeExists);
    }
}
