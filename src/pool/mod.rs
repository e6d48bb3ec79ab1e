//! Pools: the engine's entry point for everything that happens in a pool directory.
//!
//! Owns: an open pool ([`Pool`]: its name, UUID, directory and policy) and, in its
//! submodules, each job done in it: [`plan`] (a volume definition → policy → image plan:
//! the only mapping from XML to image options), [`create`] (atomic publish, attributes,
//! create, clone and create-from), [`volumes`] (what counts as a volume, lookups by name or
//! path, listing, delete, resize, wipe, streams), [`report`] (the numbers and XML libvirt
//! reports), [`registry`] (the daemon's set of pools, libvirt's driver rules), [`dir`] (every
//! filesystem call on the directory) and [`names`] (the naming rule). This is the only layer
//! that touches pool directories, and it reaches images only through `image`'s front door.
//! Must not: print, exit, or speak any wire protocol; the faces translate its
//! [`Error`].

pub mod create;
pub mod dir;
pub mod names;
pub mod plan;
pub mod registry;
pub mod report;
pub mod secrets;
pub mod volumes;

use std::path::{Path, PathBuf};

pub use crate::error::{Error, ErrorKind, ResizeRefusal};
pub use crate::image::Chunk;
pub use create::Created;
pub use plan::{Backing, Plan};
pub use report::PoolInfo;
pub use secrets::{
    Passphrase, PassphraseFile, SecretError, SecretFilter, SecretStore, SecretStoreError, Secrets,
};
pub use volumes::{Download, ResizeRequest, Upload, VolumeInfo, WhenInUse};

use crate::image::Writing;
use crate::model::FallocateMode;
use crate::policy::PoolPolicy;
use crate::progress::Progress;
use dir::PoolDir;

/// Told where a volume is being built (`Some(temporary file)`) and when that is over
/// (`None`), so a daemon can show the volume to its clients while it grows.
pub type BuildObserver<'a> = &'a (dyn Fn(Option<&Path>) + Sync);

/// An open pool directory.
pub struct Pool {
    name: String,
    uuid: uuid::Uuid,
    dir: PoolDir,
    policy: PoolPolicy,
    fallocate: FallocateMode,
    /// The type of the mount the directory lies on (`/proc/self/mountinfo`), when known.
    filesystem: Option<String>,
    progress: Option<Box<dyn Progress>>,
    secrets: Option<std::sync::Arc<dyn Secrets>>,
}

/// Filesystems whose `fallocate` answers success but reserves nothing, so that a `falloc`
/// volume there is not really reserved (shared-storage.md): CephFS 16, through ceph-fuse
/// (`fuse.ceph-fuse`) or the kernel client (`ceph`, which newer kernels make refuse).
/// `fallocate = auto` writes zeros on them.
pub const FALLOCATE_RESERVES_NOTHING: &[&str] = &["ceph", "fuse.ceph-fuse", "fuse.ceph"];

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Tells a [`Progress`] that an operation is over when dropped (after a failure too).
struct Watching<'a>(Option<&'a dyn Progress>);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            p.finish();
        }
    }
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
        let filesystem = dir.filesystem().unwrap_or_else(|e| {
            log::debug!("cannot tell the filesystem of {}: {e}", path.display());
            None
        });
        let pool = Pool {
            name: name.to_string(),
            uuid,
            dir,
            policy: PoolPolicy::default(),
            fallocate: FallocateMode::Auto,
            filesystem,
            progress: None,
            secrets: None,
        };
        pool.log_fallocate();
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

    /// Pretends the filesystem cannot `fallocate`, to exercise the zero-fill fallback
    /// (`fallocate = zero`; `false` goes back to `auto`).
    pub fn set_fallocate_disabled(&mut self, disabled: bool) {
        self.set_fallocate_mode(if disabled {
            FallocateMode::Zero
        } else {
            FallocateMode::Auto
        });
    }

    /// Sets how the pool reserves space (a pool definition's or qpoold.conf's `fallocate`).
    pub fn set_fallocate_mode(&mut self, mode: FallocateMode) {
        let changed = self.fallocate != mode;
        self.fallocate = mode;
        if changed {
            self.log_fallocate();
        }
    }

    /// How the pool reserves space.
    pub fn fallocate_mode(&self) -> FallocateMode {
        self.fallocate
    }

    /// The type of the mount the pool directory lies on (`ext4`, `fuse.glusterfs`,
    /// `fuse.ceph-fuse`, …), when /proc tells it.
    pub fn filesystem(&self) -> Option<&str> {
        self.filesystem.as_deref()
    }

    /// Whether writers may trust `fallocate` to reserve: never with `zero`, always with
    /// `native`, and with `auto` unless the filesystem is one that only pretends to
    /// ([`FALLOCATE_RESERVES_NOTHING`]). Where this is false, reservations are written as
    /// zeros, with the same warning and `explain` line as a filesystem that refuses
    /// `fallocate`.
    fn fallocate_trusted(&self) -> bool {
        match self.fallocate {
            FallocateMode::Zero => false,
            FallocateMode::Native => true,
            FallocateMode::Auto => !self
                .filesystem
                .as_deref()
                .is_some_and(|fs| FALLOCATE_RESERVES_NOTHING.contains(&fs)),
        }
    }

    /// Says once, when it matters, that this pool writes zeros where `fallocate` was asked.
    fn log_fallocate(&self) {
        let fs = self.filesystem.as_deref().unwrap_or("unknown");
        match self.fallocate {
            FallocateMode::Auto if !self.fallocate_trusted() => log::info!(
                "pool '{}': fallocate on this filesystem ({fs}) reserves nothing; reservations are written as zeros (fallocate = auto)",
                self.name
            ),
            FallocateMode::Zero => log::info!(
                "pool '{}': reservations are written as zeros (fallocate = zero)",
                self.name
            ),
            FallocateMode::Native if FALLOCATE_RESERVES_NOTHING.contains(&fs) => {
                log::warn!(
                    "pool '{}': fallocate = native on {fs}, where fallocate reserves nothing: falloc volumes are not really reserved",
                    self.name
                )
            }
            _ => {}
        }
    }

    /// Reports the progress of long work (full creates, copies, allocating resizes, wipes,
    /// uploads and downloads) to `progress`.
    pub fn set_progress(&mut self, progress: Box<dyn Progress>) {
        self.progress = Some(progress);
    }

    /// Where encrypted creates get their passphrase.
    pub fn set_secrets(&mut self, secrets: std::sync::Arc<dyn Secrets>) {
        self.secrets = Some(secrets);
    }

    /// How this pool's writers write: `fallocate` unless disabled, and to its progress.
    fn writing(&self) -> Writing<'_> {
        Writing {
            fallocate: self.fallocate_trusted(),
            progress: self.progress.as_deref(),
        }
    }

    /// Starts watching an operation that moves `total` bytes (none: nothing to show).
    fn watch(&self, what: &str, total: u64) -> Watching<'_> {
        match self.progress.as_deref() {
            Some(p) if total > 0 => {
                p.start(what, total);
                Watching(Some(p))
            }
            _ => Watching(None),
        }
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

    /// Removes what interrupted work left (`pool-refresh`, and at every open): the tails of
    /// resizes that died half-way, and the temporary files of creates that did. Returns how
    /// many leftovers went.
    pub fn refresh(&self) -> Result<usize, Error> {
        let journals = self.recover_journals()?;
        let temps = self
            .dir
            .remove_leftovers()
            .map_err(|source| self.reading_pool(source))?;
        Ok(journals + temps)
    }

    /// Whether a reservation in this pool is made with `fallocate` (else with zeros): the
    /// setting allows it ([`Pool::fallocate_trusted`]) and the filesystem does not refuse it.
    fn fallocate_works(&self) -> Result<bool, Error> {
        if !self.fallocate_trusted() {
            return Ok(false);
        }
        self.dir
            .probe_fallocate()
            .map_err(|source| self.reading_pool(source))
    }

    /// Free bytes for new volumes, from statvfs.
    fn available(&self) -> Result<u64, Error> {
        let (_, _, available) = self
            .dir
            .fs_sizes()
            .map_err(|source| self.reading_pool(source))?;
        Ok(available)
    }

    fn reading_pool(&self, source: std::io::Error) -> Error {
        Error::ReadingPool {
            path: self.dir.path().to_path_buf(),
            source,
        }
    }

    fn no_volume(&self, name: &str) -> Error {
        Error::NoVolume {
            name: name.to_string(),
            pool: self.name.clone(),
        }
    }

    /// Where a volume of this pool lives.
    pub fn volume_path(&self, name: &str) -> PathBuf {
        self.dir.entry_path(name)
    }
}

/// A pool in a fresh temporary directory, for the engine's unit tests.
#[cfg(test)]
pub(crate) fn temp_pool() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pool = Pool::open(dir.path(), "p").expect("a pool on it");
    (dir, pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_writes_zeros_only_where_fallocate_reserves_nothing() {
        let (_dir, mut pool) = temp_pool();
        assert!(pool.filesystem().is_some(), "/proc names the mount");
        assert!(
            pool.fallocate_trusted(),
            "auto on the test's own filesystem"
        );
        pool.filesystem = Some("fuse.ceph-fuse".to_string());
        assert!(!pool.fallocate_trusted(), "auto on CephFS writes zeros");
        assert!(!pool.writing().fallocate);
        pool.set_fallocate_mode(FallocateMode::Native);
        assert!(pool.fallocate_trusted(), "native trusts CephFS");
        pool.filesystem = Some("fuse.glusterfs".to_string());
        pool.set_fallocate_mode(FallocateMode::Zero);
        assert!(!pool.fallocate_trusted(), "zero writes zeros everywhere");
        pool.set_fallocate_mode(FallocateMode::Auto);
        assert!(pool.fallocate_trusted(), "GlusterFS really allocates");
    }
}
