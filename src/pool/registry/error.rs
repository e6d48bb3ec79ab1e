//! What the driver layer refuses, with libvirt's meaning.
//!
//! Owns: [`RegistryError`], one variant per refusal or failure of a pool or volume call, and
//! its [`ErrorKind`] (the faces map kinds to exit statuses and libvirt error codes).
//! Must not: decide anything; the registry does.

use std::path::PathBuf;

use thiserror::Error;
use uuid::Uuid;

use crate::error::ErrorKind;

/// Registry failures, with libvirt's meaning.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// No pool of that name or UUID.
    #[error("no storage pool with matching {what} '{value}'")]
    NoPool {
        /// "name", "uuid" or "target path".
        what: &'static str,
        /// What was looked for.
        value: String,
    },
    /// A definition names an existing pool with another UUID.
    #[error("pool '{name}' already exists with uuid {}", uuid.hyphenated())]
    UuidMismatch {
        /// Pool name.
        name: String,
        /// The existing pool's UUID.
        uuid: Uuid,
    },
    /// A transient pool of a name that exists.
    #[error("pool '{name}' already exists")]
    PoolExists {
        /// Pool name.
        name: String,
    },
    /// A definition takes another pool's UUID.
    #[error("pool '{other}' is already defined with uuid {}", uuid.hyphenated())]
    UuidTaken {
        /// The pool that has it.
        other: String,
        /// The UUID.
        uuid: Uuid,
    },
    /// A definition takes another pool's target directory.
    #[error("Storage source conflict with pool: '{other}'")]
    TargetTaken {
        /// The pool that has it.
        other: String,
    },
    /// The pool is not running.
    #[error("storage pool '{name}' is not active")]
    NotActive {
        /// Pool name.
        name: String,
    },
    /// The pool is running already.
    #[error("storage pool '{name}' is already active")]
    AlreadyActive {
        /// Pool name.
        name: String,
    },
    /// The pool must be stopped first.
    #[error("storage pool '{name}' is still active")]
    StillActive {
        /// Pool name.
        name: String,
    },
    /// The pool has no definition to remove.
    #[error("storage pool '{name}' is not persistent")]
    NotPersistent {
        /// Pool name.
        name: String,
    },
    /// Autostart asked of a transient pool.
    #[error("cannot set autostart for transient pool")]
    TransientAutostart {
        /// Pool name.
        name: String,
    },
    /// A volume still being built cannot be deleted, copied or changed.
    #[error("volume '{name}' is still being allocated.")]
    StillBuilding {
        /// Volume name.
        name: String,
    },
    /// A copy from a volume of another pool.
    #[error("copying a volume between pools is not supported by qpool yet")]
    CrossPoolCopy {
        /// The source's pool.
        source_pool: String,
        /// The new volume's pool.
        pool: String,
    },
    /// The pool XML was refused.
    #[error("invalid pool XML")]
    Xml(#[from] crate::xml::Error),
    /// Starting the pool failed.
    #[error("cannot start pool '{name}'")]
    Start {
        /// Pool name.
        name: String,
        /// Why.
        #[source]
        source: crate::Error,
    },
    /// A filesystem operation on a definition or target directory failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What failed.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused or failed a volume call.
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

impl RegistryError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoPool { .. } => ErrorKind::NoPool,
            Self::UuidMismatch { .. }
            | Self::PoolExists { .. }
            | Self::UuidTaken { .. }
            | Self::TargetTaken { .. } => ErrorKind::Conflict,
            Self::NotActive { .. }
            | Self::AlreadyActive { .. }
            | Self::StillActive { .. }
            | Self::NotPersistent { .. }
            | Self::TransientAutostart { .. }
            | Self::StillBuilding { .. } => ErrorKind::InvalidState,
            Self::CrossPoolCopy { .. } => ErrorKind::Unsupported,
            Self::Xml(_) => ErrorKind::InvalidXml,
            Self::Start { source, .. } => match source.kind() {
                ErrorKind::NoPool => ErrorKind::Io,
                kind => kind,
            },
            Self::Io { source, .. } => crate::error::io_kind(Some(source)),
            Self::Engine(e) => e.kind(),
        }
    }
}
