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
    /// Autostart asked of a transient pool (libvirt's words: it has no definition file to
    /// link to).
    #[error("pool has no config file")]
    TransientAutostart {
        /// Pool name.
        name: String,
    },
    /// A transient pool whose name and UUID are those of a running pool.
    #[error("pool is already active as '{name}'")]
    AlreadyActiveAs {
        /// Pool name.
        name: String,
    },
    /// The pool has volumes being built: it cannot be stopped or refreshed meanwhile.
    #[error("pool '{name}' has asynchronous jobs running.")]
    AsyncJobs {
        /// Pool name.
        name: String,
    },
    /// A build asked to format the pool's source device; a dir pool has none (libvirt makes
    /// the directory first, then refuses).
    #[error("No source device specified when formatting pool '{name}'")]
    NoSourceDevice {
        /// Pool name.
        name: String,
    },
    /// Build flags a dir pool's builder does not take (REPAIR, RESIZE).
    #[error("unsupported flags ({flags:#x}) in function virStorageBackendFileSystemBuild")]
    UnsupportedBuildFlags {
        /// The flags refused.
        flags: u32,
    },
    /// OVERWRITE and NO_OVERWRITE asked together.
    #[error(
        "Flags 'VIR_STORAGE_POOL_BUILD_OVERWRITE' and 'VIR_STORAGE_POOL_BUILD_NO_OVERWRITE' are mutually exclusive"
    )]
    ExclusiveBuildFlags,
    /// A pool type libvirt does not know.
    #[error("unknown storage pool type {pool_type}")]
    UnknownPoolType {
        /// The type asked for.
        pool_type: String,
    },
    /// Source discovery asked of a pool type that has no sources (a directory).
    #[error("pool type '{pool_type}' does not support source discovery")]
    NoSourceDiscovery {
        /// The type asked for.
        pool_type: String,
    },
    /// A libvirt pool type qpool has no backend for (libvirt's words for a backend it was
    /// built without).
    #[error("missing backend for pool type {number} ({pool_type})")]
    NoBackend {
        /// libvirt's number of the type.
        number: usize,
        /// The type asked for.
        pool_type: String,
    },
    /// A copy onto a name the pool already has (libvirt reports it as an internal error).
    #[error("storage volume name '{name}' already in use.")]
    NameInUse {
        /// Volume name.
        name: String,
    },
    /// A volume still being built cannot be deleted, copied or changed.
    #[error("volume '{name}' is still being allocated.")]
    StillBuilding {
        /// Volume name.
        name: String,
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
            | Self::AlreadyActiveAs { .. }
            | Self::StillActive { .. }
            | Self::NotPersistent { .. }
            | Self::NoSourceDevice { .. }
            | Self::StillBuilding { .. } => ErrorKind::InvalidState,
            Self::TransientAutostart { .. }
            | Self::AsyncJobs { .. }
            | Self::NameInUse { .. }
            | Self::UnknownPoolType { .. }
            | Self::NoBackend { .. } => ErrorKind::Internal,
            Self::NoSourceDiscovery { .. } => ErrorKind::NoSupport,
            Self::UnsupportedBuildFlags { .. } | Self::ExclusiveBuildFlags => ErrorKind::InvalidArg,
            Self::Xml(e) => crate::error::xml_kind(e),
            Self::Start { source, .. } => match source.kind() {
                ErrorKind::NoPool => ErrorKind::Io,
                kind => kind,
            },
            Self::Io { source, .. } => crate::error::io_kind(Some(source)),
            Self::Engine(e) => e.kind(),
        }
    }
}
