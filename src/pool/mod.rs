//! Pools: the engine's entry point for everything that happens in a pool directory.
//!
//! Owns: resolving a volume definition into a plan (capacity from a backing image, qcow2
//! options, the policy's decision, the expected allocation), creating volumes atomically,
//! listing, inspecting and deleting them, and the numbers libvirt reports for volumes and
//! pools. This is the only layer that touches directories (through [`dir`]).
//! Must not: print, exit, or speak any wire protocol; the faces translate its [`Error`].

pub mod dir;
pub mod names;
pub mod registry;

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::image::qcow2::{self, Layout};
use crate::image::{self, ImageFile, ImageInfo, NoFallocate, WriteReport};
use crate::model::{Compat, Compression, Preallocation, VolFormat};
use crate::policy::{self, CreateFlags, Decision, PoolPolicy};
use crate::xml::volume::{DEFAULT_VOLUME_MODE, Qcow2Report, Timestamp};
use crate::xml::{Features, PoolReport, VolumeDef, VolumeReport};
use dir::{EntryKind, PoolDir, TempVolume};
use nix::sys::stat::FileStat;

/// Kinds of failure, for the faces to map to exit codes and libvirt error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The XML is malformed or invalid.
    InvalidXml,
    /// A name, size or option is invalid.
    InvalidArg,
    /// The pool directory cannot be used.
    NoPool,
    /// No volume of that name.
    NoVolume,
    /// A volume of that name exists.
    VolumeExists,
    /// Something qpool does not support.
    Unsupported,
    /// Not enough space.
    NoSpace,
    /// An I/O error.
    Io,
}

/// Engine errors. Each names the operation and the volume or path it concerned.
#[derive(Debug, Error)]
pub enum Error {
    /// The volume XML was refused.
    #[error("invalid volume XML")]
    Xml(#[from] crate::xml::Error),
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
    /// The qcow2 options are invalid.
    #[error("volume '{name}'")]
    Options {
        /// Volume name.
        name: String,
        /// What was refused.
        #[source]
        source: qcow2::layout::Error,
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
    /// The backing store cannot be read.
    #[error("cannot use backing store '{path}'")]
    Backing {
        /// Path as given.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
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
    /// A copy the request rules out.
    #[error("cannot create volume '{name}': {reason}")]
    InvalidCopy {
        /// Volume name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A resize the request itself rules out (libvirt's rules).
    #[error("cannot resize volume '{name}': {reason}")]
    InvalidResize {
        /// Volume name.
        name: String,
        /// Why.
        reason: String,
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
fn io_kind(e: Option<&io::Error>) -> ErrorKind {
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

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Xml(_) => ErrorKind::InvalidXml,
            Self::InvalidName { .. } | Self::Options { .. } | Self::BackingFormat { .. } => {
                ErrorKind::InvalidArg
            }
            Self::Policy { .. } => ErrorKind::Unsupported,
            Self::VolumeExists { .. } => ErrorKind::VolumeExists,
            Self::NoVolume { .. } | Self::NotAVolume { .. } => ErrorKind::NoVolume,
            Self::NoSpace { .. } => ErrorKind::NoSpace,
            Self::OpeningPool { .. } => ErrorKind::NoPool,
            Self::InvalidResize { .. } | Self::InvalidCopy { .. } => ErrorKind::InvalidArg,
            Self::ResizingVolume { source, .. }
            | Self::WipingVolume { source, .. }
            | Self::Streaming { source, .. } => match source {
                image::Error::ShrinkWouldDropData { .. }
                | image::Error::OutOfRange { .. }
                | image::Error::Options(_) => ErrorKind::InvalidArg,
                image::Error::Unsupported(_) => ErrorKind::Unsupported,
                _ => io_kind(source.io_error()),
            },
            Self::WritingVolume { source, .. } | Self::InspectingVolume { source, .. } => {
                io_kind(source.io_error())
            }
            Self::Backing { source, .. }
            | Self::ReadingPool { source, .. }
            | Self::ReadingVolume { source, .. }
            | Self::CreatingVolume { source, .. }
            | Self::DeletingVolume { source, .. } => io_kind(Some(source)),
            Self::Rollback { cause, .. } => cause.kind(),
        }
    }
}

/// The default pool directory of design.md: `/var/lib/qpool/images` as root, else
/// `$XDG_DATA_HOME/qpool/images` or `~/.local/share/qpool/images`.
pub fn default_pool_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/qpool/images");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
            home.join(".local/share")
        });
    data.join("qpool/images")
}

/// A backing store resolved for an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// Path as written in the XML (stored in the qcow2 header like this).
    pub path: String,
    /// Format used.
    pub format: VolFormat,
    /// Its guest-visible size.
    pub capacity: u64,
}

/// Everything decided about a new volume before any byte is written. `qpool explain` prints
/// it; `create_volume` carries it out.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Volume name (checked).
    pub name: String,
    /// Format.
    pub format: VolFormat,
    /// Guest-visible size (qcow2: rounded up to 512).
    pub capacity: u64,
    /// The policy's decision.
    pub decision: Decision,
    /// Format-level preallocation.
    pub preallocation: Preallocation,
    /// qcow2 options and layout.
    pub qcow2: Option<(qcow2::Options, Layout)>,
    /// Resolved backing store.
    pub backing: Option<Backing>,
    /// Expected `st_blocks * 512` of the new file.
    pub expected_allocation: u64,
    /// Expected `st_size` of the new file.
    pub expected_physical: u64,
    /// Whether the plan needs fallocate and the filesystem lacks it (zeros are written).
    pub zero_fill_fallback: bool,
    /// Mode and ownership to apply.
    pub permissions: crate::xml::Permissions,
    /// Set the btrfs no-copy-on-write attribute.
    pub nocow: bool,
}

/// A volume as found in the pool.
#[derive(Debug, Clone)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// Absolute path (also the libvirt key).
    pub path: PathBuf,
    /// Guest-visible size.
    pub capacity: u64,
    /// `st_blocks * 512`.
    pub allocation: u64,
    /// `st_size`.
    pub physical: u64,
    /// What the file is.
    pub image: ImageInfo,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// atime, mtime, ctime.
    pub times: [Timestamp; 3],
}

/// A `vol-resize` request, with virsh's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizeRequest {
    /// The size, or the change with `delta`.
    pub capacity: u64,
    /// `--delta`: change by `capacity` (down with `shrink`) instead of to it.
    pub delta: bool,
    /// `--shrink`: a smaller size is allowed.
    pub shrink: bool,
    /// `--allocate`: reserve the new area.
    pub allocate: bool,
}

/// The numbers `pool-info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// Pool name.
    pub name: String,
    /// Pool UUID.
    pub uuid: uuid::Uuid,
    /// Filesystem size.
    pub capacity: u64,
    /// Filesystem bytes used.
    pub allocation: u64,
    /// Filesystem bytes available.
    pub available: u64,
    /// Persistent (always, for a directory).
    pub persistent: bool,
    /// Autostart.
    pub autostart: bool,
}

/// Told where a volume is being built (`Some(temporary file)`) and when that is over
/// (`None`), so a daemon can show the volume to its clients while it grows.
pub type BuildObserver<'a> = &'a (dyn Fn(Option<&Path>) + Sync);

/// An open pool directory.
#[derive(Debug)]
pub struct Pool {
    name: String,
    uuid: uuid::Uuid,
    dir: PoolDir,
    policy: PoolPolicy,
    autostart: bool,
    fallocate_disabled: bool,
}

fn timestamp(sec: i64, nsec: i64) -> Timestamp {
    Timestamp { sec, nsec }
}

impl Pool {
    /// Opens an existing pool directory and removes leftovers of interrupted creates.
    ///
    /// The UUID is derived from the canonical path, so it is stable across runs.
    pub fn open(path: &Path, name: &str) -> Result<Pool, Error> {
        let dir = PoolDir::open(path).map_err(|source| Error::OpeningPool {
            path: path.to_path_buf(),
            source,
        })?;
        let uuid = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("file://{}", dir.path().display()).as_bytes(),
        );
        let pool = Pool {
            name: name.to_string(),
            uuid,
            dir,
            policy: PoolPolicy::default(),
            autostart: false,
            fallocate_disabled: false,
        };
        pool.refresh()?;
        Ok(pool)
    }

    /// Opens an existing pool directory with the UUID its definition gives it.
    pub fn open_with_uuid(path: &Path, name: &str, uuid: uuid::Uuid) -> Result<Pool, Error> {
        let mut pool = Self::open(path, name)?;
        pool.uuid = uuid;
        Ok(pool)
    }

    /// Opens the pool at `path`, creating the directory (mode 0711, like libvirt's default
    /// pool) when it does not exist yet.
    pub fn open_or_create(path: &Path, name: &str) -> Result<Pool, Error> {
        if !path.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(path)
                .map_err(|source| Error::OpeningPool {
                    path: path.to_path_buf(),
                    source,
                })?;
            log::info!("created pool directory {}", path.display());
        }
        Self::open(path, name)
    }

    /// Sets the pool's policy (the default for qcow2 volumes without `<allocation>`).
    pub fn set_policy(&mut self, policy: PoolPolicy) {
        self.policy = policy;
    }

    /// Marks the pool as autostarted (reported by `pool-info`).
    pub fn set_autostart(&mut self, autostart: bool) {
        self.autostart = autostart;
    }

    /// Pretends the filesystem cannot `fallocate`, to exercise the zero-fill fallback.
    pub fn set_fallocate_disabled(&mut self, disabled: bool) {
        self.fallocate_disabled = disabled;
    }

    /// Pool name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pool UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.uuid
    }

    /// Canonical directory path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Removes leftovers of interrupted creates (`pool-refresh`). Returns how many.
    pub fn refresh(&self) -> Result<usize, Error> {
        self.dir
            .remove_leftovers()
            .map_err(|source| Error::ReadingPool {
                path: self.dir.path().to_path_buf(),
                source,
            })
    }

    /// Maps a volume argument to a name: a plain name, or an absolute path inside this
    /// pool (virsh accepts a volume's path or key where it takes a name).
    pub fn resolve_name<'a>(&self, arg: &'a str) -> Result<&'a str, Error> {
        let name = match arg.strip_prefix(self.dir.path().to_str().unwrap_or("\0")) {
            Some(rest) if arg.starts_with('/') => rest.strip_prefix('/').unwrap_or(rest),
            _ => arg,
        };
        names::check(name).map_err(|reason| Error::InvalidName {
            name: arg.to_string(),
            reason,
        })?;
        Ok(name)
    }

    fn no_volume(&self, name: &str) -> Error {
        Error::NoVolume {
            name: name.to_string(),
            pool: self.name.clone(),
        }
    }

    /// Resolves the backing store of an overlay definition.
    fn resolve_backing(&self, def: &VolumeDef) -> Result<Option<Backing>, Error> {
        let Some(b) = &def.backing_store else {
            return Ok(None);
        };
        let full = if Path::new(&b.path).is_absolute() {
            PathBuf::from(&b.path)
        } else {
            self.dir.path().join(&b.path)
        };
        let backing_err = |source| Error::Backing {
            path: b.path.clone(),
            source,
        };
        let file = File::open(&full).map_err(backing_err)?;
        let len = file.metadata().map_err(backing_err)?.len();
        let info = image::probe(&file, len).map_err(|e| Error::Backing {
            path: b.path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let probed = info.format;
        if b.format == Some(VolFormat::Qcow2) && probed != VolFormat::Qcow2 {
            return Err(Error::BackingFormat {
                path: b.path.clone(),
                declared: "qcow2",
            });
        }
        Ok(Some(Backing {
            path: b.path.clone(),
            format: b.format.unwrap_or(probed),
            capacity: info.capacity,
        }))
    }

    /// Decides everything about a new volume without creating it (`qpool explain`).
    pub fn plan(&self, def: &VolumeDef, flags: CreateFlags) -> Result<Plan, Error> {
        let name = def.name.clone();
        names::check(&name).map_err(|reason| Error::InvalidName {
            name: name.clone(),
            reason,
        })?;
        match self.dir.stat(&name) {
            Ok(_) => {
                return Err(Error::VolumeExists {
                    name,
                    pool: self.name.clone(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::ReadingVolume { name, source }),
        }
        let backing = self.resolve_backing(def)?;
        // A definition without capacity is only accepted with a backing store.
        let capacity = def
            .capacity
            .or(backing.as_ref().map(|b| b.capacity))
            .unwrap_or(0);
        let decision =
            policy::decide(def, capacity, flags, &self.policy).map_err(|source| Error::Policy {
                name: name.clone(),
                source,
            })?;
        let preallocation = decision.mode;
        let block = self.dir.block_size().unwrap_or(4096);
        let round = |v: u64| crate::units::round_up(v, block).unwrap_or(v);
        let format = def.format();
        let (qcow2, capacity, expected_allocation, expected_physical) = match format {
            VolFormat::Raw => {
                let allocation = match preallocation {
                    Preallocation::Falloc | Preallocation::Full => round(capacity),
                    _ => round(decision.reserve.min(capacity)),
                };
                (None, capacity, allocation, capacity)
            }
            VolFormat::Qcow2 => {
                let features = def.target.features.unwrap_or_default();
                let opts = qcow2::Options {
                    size: capacity,
                    version: def.target.compat.unwrap_or(Compat::V1_1),
                    cluster_size: def.target.cluster_size.unwrap_or(65536),
                    refcount_bits: def.target.ext.refcount_bits.unwrap_or(16),
                    lazy_refcounts: features.lazy_refcounts,
                    extended_l2: features.extended_l2,
                    compression_zstd: def.target.ext.compression == Some(Compression::Zstd),
                    backing: backing
                        .as_ref()
                        .map(|b| (b.path.clone(), Some(b.format.as_str().to_string()))),
                };
                let layout =
                    Layout::plan(&opts, preallocation).map_err(|source| Error::Options {
                        name: name.clone(),
                        source,
                    })?;
                let data = match preallocation {
                    Preallocation::Falloc | Preallocation::Full => layout.data_bytes(),
                    _ => 0,
                };
                let reserved: u64 = layout
                    .guest_prefix_extents(decision.reserve)
                    .iter()
                    .map(|r| r.end - r.start)
                    .sum();
                let allocation = layout.metadata_allocation(block) + data + reserved;
                let physical = layout.file_length;
                let size = layout.header.size;
                (Some((opts, layout)), size, allocation, physical)
            }
        };
        let needs_fallocate = preallocation == Preallocation::Falloc || decision.reserve > 0;
        let zero_fill_fallback = needs_fallocate && !self.fallocate_works()?;
        log::debug!(
            "volume '{name}': preallocation {} ({decision})",
            decision.mode
        );
        Ok(Plan {
            name,
            format,
            capacity,
            decision,
            preallocation,
            qcow2,
            backing,
            expected_allocation,
            expected_physical,
            zero_fill_fallback,
            permissions: def.target.permissions,
            nocow: def.target.nocow,
        })
    }

    fn fallocate_works(&self) -> Result<bool, Error> {
        if self.fallocate_disabled {
            return Ok(false);
        }
        self.dir
            .probe_fallocate()
            .map_err(|source| Error::ReadingPool {
                path: self.dir.path().to_path_buf(),
                source,
            })
    }

    /// Creates a volume: plans it, builds it under a hidden locked name, and publishes it
    /// with a no-replace rename. On any failure nothing is left under the volume's name.
    /// `observer`, if any, is told where the volume is being built.
    pub fn create_volume(
        &self,
        def: &VolumeDef,
        flags: CreateFlags,
        observer: Option<BuildObserver<'_>>,
    ) -> Result<(VolumeInfo, Plan, WriteReport), Error> {
        let plan = self.plan(def, flags)?;
        let (info, report) = self.publish(&plan, observer, |file| self.write_image(&plan, file))?;
        Ok((info, plan, report))
    }

    /// Checks space, builds the volume in a hidden locked file (attributes first, then
    /// `fill`), publishes it under its name, and removes the file on any failure.
    fn publish(
        &self,
        plan: &Plan,
        observer: Option<BuildObserver<'_>>,
        fill: impl FnOnce(&File) -> Result<WriteReport, Error>,
    ) -> Result<(VolumeInfo, WriteReport), Error> {
        let (_, _, available) = self.dir.fs_sizes().map_err(|source| Error::ReadingPool {
            path: self.dir.path().to_path_buf(),
            source,
        })?;
        if plan.expected_allocation > available {
            return Err(Error::NoSpace {
                pool: self.name.clone(),
                name: plan.name.clone(),
                needed: plan.expected_allocation,
                available,
            });
        }
        let creating = |source| Error::CreatingVolume {
            name: plan.name.clone(),
            dir: self.dir.path().to_path_buf(),
            source,
        };
        let temp = self.dir.create_temp().map_err(creating)?;
        if let Some(observe) = observer {
            observe(Some(&self.dir.entry_path(temp.name())));
        }
        let result = self
            .set_attributes(plan, &temp)
            .and_then(|()| fill(&temp.file))
            .and_then(|report| match self.dir.commit(&temp, &plan.name) {
                Ok(()) => Ok(report),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::VolumeExists {
                    name: plan.name.clone(),
                    pool: self.name.clone(),
                }),
                Err(e) => Err(creating(e)),
            });
        if let Some(observe) = observer {
            observe(None);
        }
        let report = match result {
            Ok(report) => report,
            Err(cause) => {
                let temp_name = temp.name().to_string();
                return match self.dir.discard(temp) {
                    Ok(()) => Err(cause),
                    Err(cleanup) => Err(Error::Rollback {
                        cause: Box::new(cause),
                        temp: temp_name,
                        cleanup,
                    }),
                };
            }
        };
        drop(temp);
        log::info!(
            "created volume '{}' in pool '{}' ({}, {}, {} bytes)",
            plan.name,
            self.name,
            plan.format.as_str(),
            plan.preallocation,
            plan.capacity
        );
        let info = self.volume(&plan.name)?;
        Ok((info, report))
    }

    /// Sets no-copy-on-write, mode and ownership on the new, still empty file.
    fn set_attributes(&self, plan: &Plan, temp: &TempVolume) -> Result<(), Error> {
        let file = &temp.file;
        let creating = |source| Error::CreatingVolume {
            name: plan.name.clone(),
            dir: self.dir.path().to_path_buf(),
            source,
        };
        if plan.nocow {
            match crate::sys::set_nocow(file) {
                Ok(true) => log::debug!("set no-copy-on-write on '{}'", plan.name),
                Ok(false) => log::debug!("nocow ignored: the filesystem is not btrfs"),
                Err(e) => return Err(creating(e)),
            }
        }
        let perms = plan.permissions;
        crate::sys::fchmod(file, perms.mode.unwrap_or(DEFAULT_VOLUME_MODE)).map_err(creating)?;
        let st = crate::sys::fstat(file.as_fd()).map_err(creating)?;
        let owner = perms.owner.filter(|&u| u != st.st_uid);
        let group = perms.group.filter(|&g| g != st.st_gid);
        if owner.is_some() || group.is_some() {
            crate::sys::fchown(file, owner, group).map_err(creating)?;
        }
        Ok(())
    }

    /// A definition that reproduces `source`: its name replaced, capacity, format, qcow2
    /// options and permissions kept, and its allocation as a `vol-dumpxml` report carries it
    /// (what `virsh vol-clone` sends).
    pub fn clone_definition(&self, source: &VolumeInfo, new_name: &str) -> VolumeDef {
        let mut def = VolumeDef::new(new_name, source.capacity);
        def.allocation = Some(source.allocation);
        def.from_report = true;
        def.target.permissions = crate::xml::Permissions {
            mode: Some(source.mode),
            owner: Some(source.uid),
            group: Some(source.gid),
        };
        match &source.image.qcow2 {
            None => def.target.format = Some(VolFormat::Raw),
            Some(q) => {
                let report = qcow2_report(q);
                def.target.format = Some(VolFormat::Qcow2);
                def.target.compat = Some(report.compat);
                def.target.cluster_size = Some(report.cluster_size);
                def.target.features = Some(report.features);
                def.target.ext.refcount_bits = Some(1 << q.header.refcount_order);
                if uses_zstd(q) {
                    def.target.ext.compression = Some(Compression::Zstd);
                }
                if let Some(b) = &q.backing_file {
                    def.backing_store = Some(crate::xml::BackingStoreDef {
                        path: b.clone(),
                        format: q.backing_format.as_deref().and_then(|f| f.parse().ok()),
                    });
                }
            }
        }
        def
    }

    /// `vol-clone`: a copy of `source` named `new_name`, made from the definition
    /// [`Pool::clone_definition`] gives. Without `prealloc_metadata` it is an exact copy
    /// (same format, options and preallocation; holes kept, or shared blocks with
    /// `reflink`); with it, the new volume gets libvirt's metadata/falloc rule.
    pub fn clone_volume(
        &self,
        source: &str,
        new_name: &str,
        flags: CreateFlags,
        reflink: bool,
    ) -> Result<(VolumeInfo, Plan, WriteReport), Error> {
        let (src_file, src) = self.open_volume(source, false)?;
        let def = self.clone_definition(&src, new_name);
        self.create_from(&def, src_file, &src, flags, reflink, None)
    }

    /// `vol-create-from`: a new volume described by `def` holding the data of `source`.
    /// The new XML is honoured (format, capacity — raised to the source's if smaller, as
    /// libvirt does —, permissions, and preallocation by the policy). A `vol-dumpxml` of the
    /// source with a new name (what virsh vol-clone sends) asks for an exact copy.
    /// `observer`, if any, is told where the volume is being built.
    pub fn create_volume_from(
        &self,
        def: &VolumeDef,
        source: &str,
        flags: CreateFlags,
        reflink: bool,
        observer: Option<BuildObserver<'_>>,
    ) -> Result<(VolumeInfo, Plan, WriteReport), Error> {
        let (src_file, src) = self.open_volume(source, false)?;
        self.create_from(def, src_file, &src, flags, reflink, observer)
    }

    /// [`Pool::create_volume_from`] with the source already open and inspected.
    fn create_from(
        &self,
        def: &VolumeDef,
        src_file: File,
        src: &VolumeInfo,
        flags: CreateFlags,
        reflink: bool,
        observer: Option<BuildObserver<'_>>,
    ) -> Result<(VolumeInfo, Plan, WriteReport), Error> {
        let exact = def.from_report && !flags.prealloc_metadata;
        let mut def = def.clone();
        let capacity = def.capacity.unwrap_or(0).max(src.capacity);
        def.capacity = Some(capacity);
        let mut plan = self.plan(&def, flags)?;
        let name = plan.name.clone();
        let copying = |source| Error::WritingVolume {
            name: name.clone(),
            source,
        };
        let same_format = match (plan.format, src.image.format) {
            (VolFormat::Raw, VolFormat::Raw) => true,
            (VolFormat::Qcow2, VolFormat::Qcow2) => {
                let src_prealloc =
                    qcow2::resize::detect_preallocation(&src_file).map_err(|source| {
                        Error::InspectingVolume {
                            name: src.name.clone(),
                            source,
                        }
                    })?;
                let same_options = match (&plan.qcow2, &src.image.qcow2) {
                    (Some((opts, _)), Some(q)) => same_qcow2_options(opts, q),
                    _ => false,
                };
                same_options
                    && plan.capacity == src.capacity
                    && (exact || (plan.preallocation == src_prealloc && plan.decision.reserve == 0))
            }
            _ => false,
        };
        // (A qcow2 copy in the same format has the source's capacity already.)
        if reflink && !(same_format && plan.capacity == src.capacity) {
            return Err(Error::InvalidCopy {
                name: name.clone(),
                reason: "--reflink needs a copy in the same format with the same size and options; this one converts".into(),
            });
        }
        if same_format {
            // A file copy keeps the source's layout; the estimate is the source's usage.
            plan.expected_allocation = if reflink { 0 } else { src.allocation };
            let (info, report) = self.publish(&plan, observer, |file| {
                if reflink {
                    image::copy::reflink(&src_file, file).map_err(copying)?;
                } else {
                    image::copy::copy_sparse(&src_file, file).map_err(copying)?;
                }
                let report = if plan.format == VolFormat::Raw && !exact {
                    self.raw_finish(file, &plan, src.capacity)
                        .map_err(copying)?
                } else {
                    WriteReport::default()
                };
                if plan.format == VolFormat::Raw
                    && exact
                    && src.allocation.saturating_mul(100) >= src.physical.saturating_mul(99)
                    && src.physical > 0
                {
                    // A fully allocated raw source gives a fully allocated copy, even where
                    // the filesystem cannot tell reserved blocks from holes.
                    if let Err(e) = crate::sys::fallocate_keep_size(file, 0, src.physical) {
                        log::debug!("cannot reserve the copy of '{}': {e}", src.name);
                    }
                }
                if plan.format == VolFormat::Qcow2
                    && matches!(
                        plan.preallocation,
                        Preallocation::Falloc | Preallocation::Full
                    )
                {
                    // A preallocated copy stays preallocated whatever the filesystem could
                    // tell about the source's reserved extents: its data clusters are
                    // reserved (a no-op where the copy already holds them).
                    let extents = qcow2::resize::data_cluster_extents(file).map_err(copying)?;
                    for r in extents {
                        if let Err(e) =
                            crate::sys::fallocate_keep_size(file, r.start, r.end - r.start)
                        {
                            log::debug!("cannot reserve the copy of '{}': {e}", src.name);
                            break;
                        }
                    }
                }
                file.sync_all()
                    .map_err(|e| copying(image::Error::Syncing(e)))?;
                Ok(report)
            })?;
            return Ok((info, plan, report));
        }
        // Conversion: read the guest data, lay the new image out around it.
        let src_format = src.image.format;
        let mut guest =
            image::open_guest_file(src_file, &src.path, Some(src_format)).map_err(|source| {
                Error::InspectingVolume {
                    name: src.name.clone(),
                    source,
                }
            })?;
        let extents =
            image::copy::data_extents(guest.as_mut(), plan.capacity).map_err(|source| {
                Error::InspectingVolume {
                    name: src.name.clone(),
                    source,
                }
            })?;
        let data_bytes: u64 = extents.iter().map(|e| e.end - e.start).sum();
        if let Some((opts, _)) = &plan.qcow2 {
            let cs = opts.cluster_size;
            let clusters = image::copy::clusters_of(&extents, cs);
            let layout =
                Layout::plan_with_data(opts, plan.preallocation, &clusters).map_err(|source| {
                    Error::Options {
                        name: name.clone(),
                        source,
                    }
                })?;
            plan.expected_physical = layout.file_length;
            plan.expected_allocation = plan.expected_allocation.max(
                layout.metadata_allocation(4096)
                    + clusters.iter().map(|r| r.end - r.start).sum::<u64>() * cs,
            );
            plan.qcow2 = Some((opts.clone(), layout));
        } else {
            plan.expected_allocation = plan.expected_allocation.max(data_bytes);
        }
        let (info, report) = self.publish(&plan, observer, |file| {
            let report = match &plan.qcow2 {
                Some((_, layout)) => {
                    let report = self.write_image(&plan, file)?;
                    image::copy::fill_qcow2(guest.as_mut(), &extents, layout, file)
                        .map_err(copying)?;
                    report
                }
                None => {
                    file.set_len(plan.capacity).map_err(|source| {
                        copying(image::Error::SettingLength {
                            len: plan.capacity,
                            source,
                        })
                    })?;
                    image::copy::fill_raw(guest.as_mut(), &extents, file).map_err(copying)?;
                    self.raw_finish(file, &plan, plan.capacity)
                        .map_err(copying)?
                }
            };
            file.sync_all()
                .map_err(|e| copying(image::Error::Syncing(e)))?;
            Ok(report)
        })?;
        Ok((info, plan, report))
    }

    /// Writes the planned image (qcow2 metadata, or the raw file) into `file`.
    fn write_image(&self, plan: &Plan, file: &File) -> Result<WriteReport, Error> {
        self.with_fill_target(file, |file| match &plan.qcow2 {
            Some((_, layout)) => qcow2::write::write(layout, file, plan.decision.reserve),
            None => image::raw::create(
                file,
                plan.capacity,
                plan.preallocation,
                plan.decision.reserve,
            ),
        })
        .map_err(|source| Error::WritingVolume {
            name: plan.name.clone(),
            source,
        })
    }

    /// Runs `f` on `file`, seen as a file that cannot `fallocate` when that is disabled
    /// ([`Pool::set_fallocate_disabled`]).
    fn with_fill_target<R>(&self, file: &File, f: impl FnOnce(&dyn ImageFile) -> R) -> R {
        if self.fallocate_disabled {
            f(&NoFallocate(file))
        } else {
            f(file)
        }
    }

    /// Applies a raw volume's preallocation after its data was copied in: the first
    /// `reserve` bytes or the whole file reserved, or the holes written with zeros for
    /// `full`.
    fn raw_finish(
        &self,
        file: &File,
        plan: &Plan,
        copied_len: u64,
    ) -> Result<WriteReport, image::Error> {
        file.set_len(plan.capacity.max(copied_len))
            .map_err(|source| image::Error::SettingLength {
                len: plan.capacity,
                source,
            })?;
        let mut report = WriteReport::default();
        self.with_fill_target(file, |target| match plan.preallocation {
            Preallocation::Falloc => {
                image::prealloc::allocate_or_zero(target, 0, plan.capacity, &mut report)
            }
            Preallocation::Full => image::prealloc::zero_holes(target, 0, plan.capacity),
            Preallocation::Off | Preallocation::Metadata => {
                let reserve = plan.decision.reserve.min(plan.capacity);
                image::prealloc::allocate_or_zero(target, 0, reserve, &mut report)
            }
        })?;
        Ok(report)
    }

    /// Looks a volume up by name and reads what libvirt reports about it.
    pub fn volume(&self, name: &str) -> Result<VolumeInfo, Error> {
        self.open_volume(name, false).map(|(_, info)| info)
    }

    /// Opens a volume's file (read-write with `write`) without following a symlink, and
    /// reads what libvirt reports about it from that same open file.
    fn open_volume(&self, name: &str, write: bool) -> Result<(File, VolumeInfo), Error> {
        let (file, st) = self.open_volume_file(name, write)?;
        let info = self.inspect(name, &file, &st)?;
        Ok((file, info))
    }

    /// Opens a volume's file (read-write with `write`) without following a symlink: a
    /// missing name is [`Error::NoVolume`], anything but a regular file
    /// [`Error::NotAVolume`].
    fn open_volume_file(&self, name: &str, write: bool) -> Result<(File, FileStat), Error> {
        let not_a_volume = |what| Error::NotAVolume {
            name: name.to_string(),
            pool: self.name.clone(),
            what,
        };
        let reading = |source| Error::ReadingVolume {
            name: name.to_string(),
            source,
        };
        let opened = if write {
            self.dir.open_rw(name)
        } else {
            self.dir.open_read(name)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.no_volume(name)),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(not_a_volume("symbolic link"));
            }
            // Only a read-write open reaches this: a directory cannot be opened for writing.
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                return Err(not_a_volume("directory or special file"));
            }
            Err(source) => return Err(reading(source)),
        };
        let st = crate::sys::fstat(file.as_fd()).map_err(reading)?;
        if dir::kind_of(&st) != EntryKind::File {
            return Err(not_a_volume("directory or special file"));
        }
        Ok((file, st))
    }

    /// What libvirt reports about an open volume file.
    fn inspect(&self, name: &str, file: &File, st: &FileStat) -> Result<VolumeInfo, Error> {
        let physical = u64::try_from(st.st_size).unwrap_or(0);
        let image = image::probe(file, physical).map_err(|source| Error::InspectingVolume {
            name: name.to_string(),
            source,
        })?;
        Ok(VolumeInfo {
            name: name.to_string(),
            path: self.dir.entry_path(name),
            capacity: image.capacity,
            allocation: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
            physical,
            image,
            mode: st.st_mode & 0o777,
            uid: st.st_uid,
            gid: st.st_gid,
            times: [
                timestamp(st.st_atime, st.st_atime_nsec),
                timestamp(st.st_mtime, st.st_mtime_nsec),
                timestamp(st.st_ctime, st.st_ctime_nsec),
            ],
        })
    }

    /// Names of the volumes (regular files not starting with '.'), without reading them.
    pub fn volume_names(&self) -> Result<Vec<String>, Error> {
        let entries = self.dir.entries().map_err(|source| Error::ReadingPool {
            path: self.dir.path().to_path_buf(),
            source,
        })?;
        let mut names = Vec::with_capacity(entries.len());
        for (name, kind) in entries {
            if name.starts_with('.') {
                continue;
            }
            let kind = match kind {
                Some(k) => k,
                None => match self.dir.stat(&name) {
                    Ok(st) => dir::kind_of(&st),
                    Err(_) => continue,
                },
            };
            if kind == EntryKind::File {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// All volumes (regular files not starting with '.'), sorted like virsh sorts them
    /// (case-insensitively). Symlinks and directories are skipped.
    pub fn list(&self) -> Result<Vec<VolumeInfo>, Error> {
        let entries = self.dir.entries().map_err(|source| Error::ReadingPool {
            path: self.dir.path().to_path_buf(),
            source,
        })?;
        let mut out = Vec::with_capacity(entries.len());
        for (name, kind) in entries {
            if name.starts_with('.') || matches!(kind, Some(EntryKind::Symlink | EntryKind::Other))
            {
                continue;
            }
            match self.volume(&name) {
                Ok(v) => out.push(v),
                // Raced with a delete, or not a regular file after all.
                Err(Error::NoVolume { .. } | Error::NotAVolume { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_cached_key(|v| (v.name.to_lowercase(), v.name.clone()));
        Ok(out)
    }

    /// Resizes a volume (virsh's `vol-resize`): raw grows sparse or reserved and shrinks by
    /// truncation; qcow2 grows natively with the volume's preallocation for the new area
    /// (falloc with `allocate`) and shrinks only when no allocated cluster lies past the end.
    /// Every refusal leaves the file byte-identical.
    pub fn resize_volume(&self, name: &str, req: ResizeRequest) -> Result<VolumeInfo, Error> {
        let info = self.volume(name)?;
        let old = info.capacity;
        let invalid = |reason: String| Error::InvalidResize {
            name: name.to_string(),
            reason,
        };
        let new = match (req.delta, req.shrink) {
            (true, true) => old.saturating_sub(req.capacity),
            (true, false) => old
                .checked_add(req.capacity)
                .ok_or_else(|| invalid(format!("{old} + {} overflows", req.capacity)))?,
            (false, _) => req.capacity,
        };
        if new < old && !req.shrink {
            return Err(invalid(
                "Can't shrink capacity below current capacity unless shrink flag explicitly specified".into(),
            ));
        }
        if new == old {
            return Ok(info);
        }
        if req.allocate && new > old {
            let (_, _, available) = self.dir.fs_sizes().map_err(|source| Error::ReadingPool {
                path: self.dir.path().to_path_buf(),
                source,
            })?;
            if new - old > available {
                return Err(Error::NoSpace {
                    pool: self.name.clone(),
                    name: name.to_string(),
                    needed: new - old,
                    available,
                });
            }
        }
        // Opened only now: a refused or empty request needs no write access.
        let (file, _) = self.open_volume_file(name, true)?;
        let resizing = |source| Error::ResizingVolume {
            name: name.to_string(),
            source,
        };
        match (info.image.format, info.image.qcow2.as_ref()) {
            (VolFormat::Qcow2, Some(q)) if new > old => {
                let prealloc = if req.allocate {
                    Preallocation::Falloc
                } else {
                    qcow2::resize::detect_preallocation(&file).map_err(resizing)?
                };
                let backing_size = match &q.backing_file {
                    Some(b) => {
                        let path = self.dir.path().join(b);
                        let format = q.backing_format.as_deref().and_then(|f| f.parse().ok());
                        Some(
                            image::open_guest_image(&path, format)
                                .map_err(resizing)?
                                .size(),
                        )
                    }
                    None => None,
                };
                self.with_fill_target(&file, |fill| {
                    qcow2::resize::grow(&file, fill, new, prealloc, backing_size)
                })
                .map_err(resizing)?;
            }
            (VolFormat::Qcow2, Some(_)) => qcow2::resize::shrink(&file, new).map_err(resizing)?,
            _ => {
                self.with_fill_target(&file, |fill| image::raw::resize(fill, new, req.allocate))
                    .map_err(resizing)?;
            }
        }
        log::info!(
            "resized volume '{name}' in pool '{}' from {old} to {new} bytes",
            self.name
        );
        self.volume(name)
    }

    /// Opens a volume's file bytes for `vol-download`: `[offset, offset + length)`, length 0
    /// meaning to the end; `sparse` reports holes instead of zeros.
    pub fn download(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        sparse: bool,
    ) -> Result<image::stream::VolumeReader, Error> {
        let (file, _) = self.open_volume(name, false)?;
        image::stream::VolumeReader::new(file, offset, length, sparse).map_err(|source| {
            Error::Streaming {
                name: name.to_string(),
                source,
            }
        })
    }

    /// Opens a volume's file for `vol-upload` at `offset`, at most `length` bytes (0: no
    /// limit).
    pub fn upload(
        &self,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<image::stream::VolumeWriter, Error> {
        let (file, _) = self.open_volume(name, true)?;
        image::stream::VolumeWriter::new(file, offset, length).map_err(|source| Error::Streaming {
            name: name.to_string(),
            source,
        })
    }

    /// Wipes a volume in place (virsh's `vol-wipe`); see [`image::wipe`].
    pub fn wipe_volume(
        &self,
        name: &str,
        algorithm: image::wipe::WipeAlgorithm,
    ) -> Result<(), Error> {
        let (file, info) = self.open_volume(name, true)?;
        image::wipe::wipe(&file, info.image.format, algorithm).map_err(|source| {
            Error::WipingVolume {
                name: name.to_string(),
                source,
            }
        })?;
        log::info!(
            "wiped volume '{name}' in pool '{}' ({})",
            self.name,
            algorithm.as_str()
        );
        Ok(())
    }

    /// Deletes a volume. Symlinks and directories are refused, never followed.
    pub fn delete(&self, name: &str) -> Result<(), Error> {
        let st = match self.dir.stat(name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.no_volume(name)),
            Err(source) => {
                return Err(Error::DeletingVolume {
                    name: name.to_string(),
                    source,
                });
            }
        };
        match dir::kind_of(&st) {
            EntryKind::File => {}
            EntryKind::Symlink => {
                return Err(Error::NotAVolume {
                    name: name.to_string(),
                    pool: self.name.clone(),
                    what: "symbolic link",
                });
            }
            EntryKind::Other => {
                return Err(Error::NotAVolume {
                    name: name.to_string(),
                    pool: self.name.clone(),
                    what: "directory or special file",
                });
            }
        }
        self.dir
            .unlink(name)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => self.no_volume(name),
                _ => Error::DeletingVolume {
                    name: name.to_string(),
                    source,
                },
            })?;
        log::info!("deleted volume '{name}' from pool '{}'", self.name);
        Ok(())
    }

    /// Pool sizes from statvfs, as libvirt's dir pool reports them.
    pub fn info(&self) -> Result<PoolInfo, Error> {
        let (capacity, allocation, available) =
            self.dir.fs_sizes().map_err(|source| Error::ReadingPool {
                path: self.dir.path().to_path_buf(),
                source,
            })?;
        Ok(PoolInfo {
            name: self.name.clone(),
            uuid: self.uuid,
            capacity,
            allocation,
            available,
            persistent: true,
            autostart: self.autostart,
        })
    }

    /// `pool-dumpxml`.
    pub fn report(&self) -> Result<PoolReport, Error> {
        let info = self.info()?;
        let st = self.dir.stat_self().map_err(|source| Error::ReadingPool {
            path: self.dir.path().to_path_buf(),
            source,
        })?;
        Ok(PoolReport {
            name: info.name,
            uuid: info.uuid,
            capacity: info.capacity,
            allocation: info.allocation,
            available: info.available,
            path: self.dir.path().display().to_string(),
            mode: st.st_mode & 0o777,
            owner: st.st_uid,
            group: st.st_gid,
        })
    }
}

/// The qcow2 details `vol-dumpxml` shows (and a clone's definition repeats).
fn qcow2_report(q: &qcow2::Qcow2Info) -> Qcow2Report {
    Qcow2Report {
        compat: q.header.version,
        cluster_size: q.header.cluster_size(),
        features: Features {
            lazy_refcounts: q.lazy_refcounts(),
            extended_l2: q.extended_l2(),
        },
    }
}

/// Whether a qcow2 image compresses with zstd (a version 3 header field).
fn uses_zstd(q: &qcow2::Qcow2Info) -> bool {
    q.header.version == Compat::V1_1 && q.header.compression_type == 1
}

/// Whether a new image's options equal those of an existing qcow2 image.
fn same_qcow2_options(opts: &qcow2::Options, q: &qcow2::Qcow2Info) -> bool {
    let h = &q.header;
    opts.version == h.version
        && opts.cluster_size == h.cluster_size()
        && opts.refcount_bits == 1 << h.refcount_order
        && opts.lazy_refcounts == q.lazy_refcounts()
        && opts.extended_l2 == q.extended_l2()
        && opts.compression_zstd == uses_zstd(q)
        && opts.backing.as_ref().map(|(name, _)| name) == q.backing_file.as_ref()
}

impl VolumeInfo {
    /// The volume as `vol-dumpxml` prints it; relative backing paths are resolved against
    /// the pool directory (where qemu resolves them).
    pub fn report(&self) -> VolumeReport {
        let format = self.image.format;
        let qcow2 = self.image.qcow2.as_ref().map(qcow2_report);
        let backing = self.image.qcow2.as_ref().and_then(|q| {
            let name = q.backing_file.as_ref()?;
            let path = if Path::new(name).is_absolute() {
                PathBuf::from(name)
            } else {
                self.path.parent().unwrap_or(Path::new("/")).join(name)
            };
            let format = q.backing_format.as_deref().and_then(|f| f.parse().ok());
            let attributes = std::fs::metadata(&path).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                crate::xml::FileAttributes {
                    mode: m.mode() & 0o777,
                    owner: m.uid(),
                    group: m.gid(),
                    times: [
                        timestamp(m.atime(), m.atime_nsec()),
                        timestamp(m.mtime(), m.mtime_nsec()),
                        timestamp(m.ctime(), m.ctime_nsec()),
                    ],
                }
            });
            Some(crate::xml::BackingReport {
                path: path.display().to_string(),
                format,
                attributes,
            })
        });
        VolumeReport {
            name: self.name.clone(),
            path: self.path.display().to_string(),
            capacity: self.capacity,
            allocation: self.allocation,
            physical: self.physical,
            format,
            mode: self.mode,
            owner: self.uid,
            group: self.gid,
            times: self.times,
            qcow2,
            backing,
        }
    }
}
