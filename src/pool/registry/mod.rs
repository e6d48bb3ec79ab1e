//! The set of pools a daemon serves: libvirt's storage driver layer.
//!
//! Owns: the registry itself (its pools and their entries, what a stopped pool still
//! reports), its events and change hook, loading the definitions at start (a `default` pool
//! when there are none, then autostart), and lookups by name, UUID and target path. Each job
//! is a submodule: `definitions` (persistence and autostart, libvirt's duplicate rules),
//! `lifecycle` (create, start, build, destroy, delete, refresh, with their state rules and
//! build flags; source discovery per pool type), `reload` (re-reading
//! the definitions on SIGHUP), and [`volumes`] (the driver rules for volumes: the ones still
//! being built, duplicate names, lookups by path across pools, and every volume call a
//! client makes).
//! Must not: speak any protocol; the daemon face turns calls into these methods.

mod definitions;
mod error;
mod lifecycle;
mod reload;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::Pool;
use crate::error::one_line;
use crate::model::FallocateMode;
use crate::xml::pool::sanitize_path;
use crate::xml::{PoolDef, PoolReport};
pub use error::RegistryError;
pub use lifecycle::create_target;
pub use reload::Reloaded;
pub use volumes::{Building, VolumeState};

/// libvirt's storage pool lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// VIR_STORAGE_POOL_EVENT_DEFINED.
    Defined = 0,
    /// VIR_STORAGE_POOL_EVENT_UNDEFINED.
    Undefined = 1,
    /// VIR_STORAGE_POOL_EVENT_STARTED.
    Started = 2,
    /// VIR_STORAGE_POOL_EVENT_STOPPED.
    Stopped = 3,
    /// VIR_STORAGE_POOL_EVENT_CREATED (built).
    Created = 4,
    /// VIR_STORAGE_POOL_EVENT_DELETED.
    Deleted = 5,
}

/// An event about a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A lifecycle change.
    Lifecycle {
        /// Pool name.
        name: String,
        /// Pool UUID.
        uuid: Uuid,
        /// What happened.
        event: Lifecycle,
    },
    /// The pool was refreshed.
    Refresh {
        /// Pool name.
        name: String,
        /// Pool UUID.
        uuid: Uuid,
    },
}

/// A change to a pool or to the volumes in it, for whoever mirrors the pools elsewhere (the
/// libvirt bridge). Not a libvirt event: libvirt has none for volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A pool event was sent, or the pool's autostart flag changed.
    Pool {
        /// Pool name.
        name: String,
    },
    /// A volume was created, deleted, resized, wiped or written (an upload finished).
    Volume {
        /// Pool name.
        pool: String,
        /// Volume name.
        volume: String,
    },
}

/// What a build asks of a dir pool (`pool-build`'s virStoragePoolBuildFlags, or the build
/// flags of a start), as libvirt's dir pool builder reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildRequest {
    /// Create the target directory (no flags; VIR_STORAGE_POOL_CREATE_WITH_BUILD).
    Directory,
    /// Also format the pool's source device (OVERWRITE or NO_OVERWRITE): a dir pool has
    /// none, so libvirt makes the directory, then refuses.
    FormatSource,
    /// Flags a dir pool's builder does not take (REPAIR, RESIZE), with their value.
    UnsupportedFlags(u32),
    /// OVERWRITE together with NO_OVERWRITE.
    ExclusiveFlags,
}

/// One pool's entry.
#[derive(Debug)]
pub struct PoolEntry {
    /// Its definition (while it runs, the running one).
    pub def: PoolDef,
    /// Its UUID.
    pub uuid: Uuid,
    /// Defined with a file (as opposed to created transient).
    pub persistent: bool,
    /// Started when the daemon starts.
    pub autostart: bool,
    /// The open pool while it is active.
    pub pool: Option<Arc<Pool>>,
    /// The definition that takes over when the pool stops: one given while it ran, or the
    /// persistent one while a transient definition of the same pool runs (libvirt's
    /// `newDef`).
    pub next_def: Option<PoolDef>,
    /// What libvirt's definition keeps from the pool's last run once it stopped: the sizes
    /// and directory permissions it last read (dropped when a new definition takes over).
    pub last: Option<PoolReport>,
}

impl PoolEntry {
    /// A pool that is not running and has never run here.
    fn new(def: PoolDef, uuid: Uuid, persistent: bool, autostart: bool) -> PoolEntry {
        PoolEntry {
            def,
            uuid,
            persistent,
            autostart,
            pool: None,
            next_def: None,
            last: None,
        }
    }

    /// Whether the pool is running.
    pub fn active(&self) -> bool {
        self.pool.is_some()
    }

    fn summary(&self) -> PoolSummary {
        PoolSummary {
            name: self.def.name.clone(),
            uuid: self.uuid,
            active: self.active(),
            persistent: self.persistent,
            autostart: self.autostart,
            target: self.def.target_path.clone(),
        }
    }

    /// The running pool's report, in the terms of its definition (its target path as
    /// written, its copy-on-write feature).
    fn live_report(&self) -> Result<Option<PoolReport>, crate::Error> {
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        let mut report = pool.report()?;
        report.path = self.def.target_path.clone();
        report.cow = self.def.cow;
        Ok(Some(report))
    }
}

/// A snapshot of one pool for listing.
#[derive(Debug, Clone)]
pub struct PoolSummary {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: Uuid,
    /// Running.
    pub active: bool,
    /// Persistent.
    pub persistent: bool,
    /// Autostart.
    pub autostart: bool,
    /// Target directory.
    pub target: String,
}

/// A pool definition as kept on disk.
#[derive(Debug, Clone)]
pub struct StoredPool {
    /// The definition.
    pub def: PoolDef,
    /// Whether it is marked autostart.
    pub autostart: bool,
}

type Listener = Arc<dyn Fn(&PoolEvent) + Send + Sync>;
type ChangeHook = Arc<dyn Fn(&Change) + Send + Sync>;

/// All pools of a daemon.
pub struct Registry {
    dir: PathBuf,
    pools: Mutex<BTreeMap<String, PoolEntry>>,
    building: Mutex<HashMap<(String, String), Building>>,
    listener: Mutex<Option<Listener>>,
    /// How every pool reserves space (qpoold.conf's `fallocate`).
    fallocate: FallocateMode,
    change_hook: Mutex<Option<ChangeHook>>,
    secrets: Option<Arc<crate::pool::SecretStore>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("dir", &self.dir).finish()
    }
}

/// Locks one of the registry's mutexes, also one a panicking thread left poisoned (the
/// daemon goes on serving its other calls).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
    let path = path.to_path_buf();
    move |source| RegistryError::Io { what, path, source }
}

impl Registry {
    /// The daemon's secrets, when it keeps any.
    pub fn secrets(&self) -> Option<&Arc<crate::pool::SecretStore>> {
        self.secrets.as_ref()
    }

    /// Loads the definitions in `dir` (created if missing). When there are none, a
    /// `default` pool on `default_target` is defined, marked autostart. Autostart pools are
    /// started; a pool that fails to start is logged and left inactive.
    pub fn load(dir: &Path, default_target: &Path) -> Result<Registry, RegistryError> {
        Self::load_with(dir, default_target, FallocateMode::default(), None)
    }

    /// [`Registry::load`], with the `fallocate` setting every pool starts with and the
    /// daemon's secrets: encrypted creates in every pool take their passphrase from
    /// `secrets`, and the secret procedures use it.
    pub fn load_with(
        dir: &Path,
        default_target: &Path,
        fallocate: FallocateMode,
        secrets: Option<Arc<crate::pool::SecretStore>>,
    ) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(dir.join("autostart")).map_err(io_err("cannot create", dir))?;
        let registry = Registry {
            dir: dir.to_path_buf(),
            pools: Mutex::new(BTreeMap::new()),
            building: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
            fallocate,
            change_hook: Mutex::new(None),
            secrets,
        };
        for stored in Self::stored(dir)? {
            let uuid = stored.def.uuid.unwrap_or_else(Uuid::new_v4);
            registry.lock().insert(
                stored.def.name.clone(),
                PoolEntry::new(stored.def, uuid, true, stored.autostart),
            );
        }
        if registry.lock().is_empty() {
            let def = PoolDef::new(
                "default",
                &default_target.display().to_string(),
                crate::xml::Permissions {
                    mode: Some(0o711),
                    owner: None,
                    group: None,
                },
            );
            let xml = def.to_xml(&Uuid::new_v4());
            registry.define(&xml, false)?;
            registry.set_autostart("default", true)?;
            registry.build("default", BuildRequest::Directory)?;
        }
        let autostart: Vec<String> = registry
            .lock()
            .values()
            .filter(|e| e.autostart)
            .map(|e| e.def.name.clone())
            .collect();
        for name in autostart {
            if let Err(e) = registry.start(&name, None) {
                log::warn!("autostart of pool '{name}' failed: {}", one_line(&e));
            }
        }
        Ok(registry)
    }

    /// Sets the function told about every pool event.
    pub fn set_listener(&self, listener: impl Fn(&PoolEvent) + Send + Sync + 'static) {
        *locked(&self.listener) = Some(Arc::new(listener));
    }

    /// The function told about pool events, to call later (after a stream has closed).
    fn listener(&self) -> Option<Listener> {
        locked(&self.listener).clone()
    }

    /// Sets the function told about every [`Change`], after the change and before the call
    /// that made it returns.
    pub fn set_change_hook(&self, hook: impl Fn(&Change) + Send + Sync + 'static) {
        *locked(&self.change_hook) = Some(Arc::new(hook));
    }

    fn change_hook(&self) -> Option<ChangeHook> {
        locked(&self.change_hook).clone()
    }

    fn changed(&self, change: Change) {
        if let Some(hook) = self.change_hook() {
            hook(&change);
        }
    }

    fn emit(&self, event: PoolEvent) {
        if let Some(listener) = self.listener() {
            listener(&event);
        }
        let (PoolEvent::Lifecycle { name, .. } | PoolEvent::Refresh { name, .. }) = event;
        self.changed(Change::Pool { name });
    }

    fn lifecycle(&self, name: &str, uuid: Uuid, event: Lifecycle) {
        self.emit(PoolEvent::Lifecycle {
            name: name.to_string(),
            uuid,
            event,
        });
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, PoolEntry>> {
        locked(&self.pools)
    }

    fn no_pool(what: &'static str, value: &str) -> RegistryError {
        RegistryError::NoPool {
            what,
            value: value.to_string(),
        }
    }

    /// Every pool, sorted by name.
    pub fn list(&self) -> Vec<PoolSummary> {
        self.lock().values().map(PoolEntry::summary).collect()
    }

    /// A pool by name.
    pub fn by_name(&self, name: &str) -> Result<PoolSummary, RegistryError> {
        self.lock()
            .get(name)
            .map(PoolEntry::summary)
            .ok_or_else(|| Self::no_pool("name", name))
    }

    /// A pool by UUID.
    pub fn by_uuid(&self, uuid: &Uuid) -> Result<PoolSummary, RegistryError> {
        self.lock()
            .values()
            .find(|e| &e.uuid == uuid)
            .map(PoolEntry::summary)
            .ok_or_else(|| Self::no_pool("uuid", &uuid.hyphenated().to_string()))
    }

    /// An active pool by its target directory (the path cleaned as libvirt cleans it, then
    /// compared as a string, as libvirt compares it).
    pub fn by_target(&self, path: &str) -> Result<PoolSummary, RegistryError> {
        let wanted = sanitize_path(path);
        self.lock()
            .values()
            .find(|e| e.active() && e.def.target_path == wanted)
            .map(PoolEntry::summary)
            .ok_or_else(|| Self::no_pool("target path", path))
    }

    /// The open pool of an active pool.
    pub fn open_pool(&self, name: &str) -> Result<Arc<Pool>, RegistryError> {
        let pools = self.lock();
        let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
        entry.pool.clone().ok_or_else(|| RegistryError::NotActive {
            name: name.to_string(),
        })
    }

    /// `pool-info`: the pool's state, and its sizes: live while it runs, and once it
    /// stopped the ones it last had (libvirt keeps them in the definition).
    pub fn info(
        &self,
        name: &str,
    ) -> Result<(PoolSummary, Option<crate::pool::PoolInfo>), RegistryError> {
        let (summary, last, pool) = {
            let pools = self.lock();
            let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
            (entry.summary(), entry.last.clone(), entry.pool.clone())
        };
        let info = match (pool, last) {
            (Some(pool), _) => Some(pool.info(summary.persistent, summary.autostart)?),
            (None, Some(last)) => Some(crate::pool::PoolInfo {
                name: last.name,
                uuid: last.uuid,
                capacity: last.capacity,
                allocation: last.allocation,
                available: last.available,
                persistent: summary.persistent,
                autostart: summary.autostart,
            }),
            (None, None) => None,
        };
        Ok((summary, info))
    }

    /// `pool-dumpxml`: the running pool as it is; with `inactive`, the definition that
    /// takes over when it stops, if one is waiting. A stopped pool shows its definition
    /// with what its last run left there, as libvirt's does.
    pub fn xml_desc(&self, name: &str, inactive: bool) -> Result<String, RegistryError> {
        let pools = self.lock();
        let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
        if inactive && let Some(next) = &entry.next_def {
            return Ok(next.to_xml(&entry.uuid));
        }
        if let Some(report) = entry.live_report()? {
            return Ok(report.to_xml());
        }
        Ok(match &entry.last {
            Some(last) => last.to_xml(),
            None => entry.def.to_xml(&entry.uuid),
        })
    }

    /// The definition of a pool.
    pub fn definition(&self, name: &str) -> Result<(PoolDef, Uuid), RegistryError> {
        let pools = self.lock();
        let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
        Ok((entry.def.clone(), entry.uuid))
    }
}

#[cfg(test)]
mod tests;
