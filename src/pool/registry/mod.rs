//! The set of pools a daemon serves: libvirt's storage driver layer.
//!
//! Owns: pool definitions persisted as libvirt pool XML files (`DIR/NAME.xml`, autostart as
//! a `DIR/autostart/NAME.xml` symlink, as libvirt keeps them), the lifecycle libvirt gives a
//! dir pool (define, create, build, start, destroy, delete, undefine, autostart, refresh)
//! with its state rules, build flags, duplicate rules and events, what a stopped pool still
//! reports, persistence and autostart (their only owner), lookups by name, UUID and target
//! path, source discovery per pool type, and in [`volumes`] the driver rules for volumes: the ones
//! still being built (visible, but not to be deleted or copied), duplicate names, lookups by
//! path across pools, and every volume call a client makes.
//! Must not: speak any protocol; the daemon face turns calls into these methods.

mod error;
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

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
    let path = path.to_path_buf();
    move |source| RegistryError::Io { what, path, source }
}

/// Where a definitions directory marks a pool autostart, as libvirt does.
fn autostart_link(dir: &Path, name: &str) -> PathBuf {
    dir.join("autostart").join(format!("{name}.xml"))
}

/// Makes a pool's target directory as libvirt's dir pool builder does: missing parents
/// with default permissions, the directory itself with the definition's mode (0711 when
/// it has none), owner and group; an existing directory gets the definition's mode, owner
/// and group where it gives them. A definition with copy-on-write off marks the directory
/// no-copy-on-write (btrfs only; elsewhere nothing to do).
pub fn create_target(def: &PoolDef) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new(&def.target_path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mode = match std::fs::create_dir(path) {
        Ok(()) => Some(def.permissions.mode.unwrap_or(0o711)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
            def.permissions.mode
        }
        Err(e) => return Err(e),
    };
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    let (owner, group) = (def.permissions.owner, def.permissions.group);
    if owner.is_some() || group.is_some() {
        std::os::unix::fs::chown(path, owner, group)?;
    }
    if def.cow == Some(false) {
        crate::sys::set_nocow(&std::fs::File::open(path)?)?;
    }
    Ok(())
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
            registry.lock().insert(
                stored.def.name.clone(),
                PoolEntry {
                    uuid: stored.def.uuid.unwrap_or_else(Uuid::new_v4),
                    def: stored.def,
                    persistent: true,
                    autostart: stored.autostart,
                    pool: None,
                    next_def: None,
                    last: None,
                },
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

    /// The pool definitions kept in `dir`, sorted by file name, without loading or changing
    /// anything (a missing directory holds none). A file that is not a pool definition is
    /// logged and left out.
    pub fn stored(dir: &Path) -> Result<Vec<StoredPool>, RegistryError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot read", dir)(e)),
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "xml") && p.is_file())
            .collect();
        names.sort();
        let mut stored = Vec::new();
        for path in names {
            let text = std::fs::read_to_string(&path).map_err(io_err("cannot read", &path))?;
            match PoolDef::parse(&text) {
                Ok(def) => {
                    let autostart = autostart_link(dir, &def.name).exists();
                    stored.push(StoredPool { def, autostart });
                }
                Err(e) => log::warn!("ignoring pool definition {}: {e}", path.display()),
            }
        }
        Ok(stored)
    }

    /// Sets the function told about every pool event.
    pub fn set_listener(&self, listener: impl Fn(&PoolEvent) + Send + Sync + 'static) {
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(listener));
    }

    /// The function told about pool events, to call later (after a stream has closed).
    fn listener(&self) -> Option<Listener> {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the function told about every [`Change`], after the change and before the call
    /// that made it returns.
    pub fn set_change_hook(&self, hook: impl Fn(&Change) + Send + Sync + 'static) {
        *self.change_hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    fn change_hook(&self) -> Option<ChangeHook> {
        self.change_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn definition_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    fn autostart_path(&self, name: &str) -> PathBuf {
        autostart_link(&self.dir, name)
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

    /// libvirt's duplicate rules for a new definition (`virStoragePoolObjIsDuplicate`): the
    /// UUID of another pool's name, a name with another UUID, or another pool's target are
    /// refused. Returns the UUID the definition gets: its own, the existing pool's, or a
    /// new one.
    fn check_duplicates(
        pools: &BTreeMap<String, PoolEntry>,
        def: &PoolDef,
    ) -> Result<Uuid, RegistryError> {
        let uuid = match def.uuid.and_then(|u| pools.values().find(|e| e.uuid == u)) {
            Some(same) if same.def.name != def.name => {
                return Err(RegistryError::UuidTaken {
                    other: same.def.name.clone(),
                    uuid: same.uuid,
                });
            }
            Some(same) => same.uuid,
            None => {
                // libvirt gives a definition without <uuid> a random one, so only the same
                // UUID redefines a pool; anything else is a second pool of the same name.
                if let Some(existing) = pools.get(&def.name) {
                    return Err(RegistryError::UuidMismatch {
                        name: def.name.clone(),
                        uuid: existing.uuid,
                    });
                }
                def.uuid.unwrap_or_else(Uuid::new_v4)
            }
        };
        if let Some(other) = pools
            .values()
            .find(|e| e.def.name != def.name && e.def.target_path == def.target_path)
        {
            return Err(RegistryError::TargetTaken {
                other: other.def.name.clone(),
            });
        }
        Ok(uuid)
    }

    /// `pool-define`: a persistent, inactive pool, or a new definition of an existing one
    /// (taking over at once while it is stopped, when it stops while it runs). With
    /// `validate`, the document must be what libvirt's schema allows.
    pub fn define(&self, xml: &str, validate: bool) -> Result<PoolSummary, RegistryError> {
        if validate {
            crate::xml::pool::check_known_elements(xml)?;
        }
        let def = PoolDef::parse(xml)?;
        if let Some(c) = def.name.chars().find(|&c| c == '\n') {
            return Err(RegistryError::Xml(crate::xml::Error::IllegalChar {
                path: "/pool/name".into(),
                what: "name",
                char: c,
            }));
        }
        let name = def.name.clone();
        let uuid = {
            let mut pools = self.lock();
            let uuid = Self::check_duplicates(&pools, &def)?;
            let path = self.definition_path(&name);
            let temp = self.dir.join(format!(".{name}.xml.new"));
            std::fs::write(&temp, def.to_xml(&uuid)).map_err(io_err("cannot write", &temp))?;
            std::fs::rename(&temp, &path).map_err(io_err("cannot write", &path))?;
            match pools.get_mut(&name) {
                Some(entry) => {
                    if entry.active() {
                        entry.next_def = Some(def);
                    } else {
                        entry.def = def;
                        entry.last = None;
                    }
                    entry.persistent = true;
                }
                None => {
                    pools.insert(
                        name.clone(),
                        PoolEntry {
                            def,
                            uuid,
                            persistent: true,
                            autostart: false,
                            pool: None,
                            next_def: None,
                            last: None,
                        },
                    );
                }
            }
            uuid
        };
        self.lifecycle(&name, uuid, Lifecycle::Defined);
        self.by_name(&name)
    }

    /// `pool-create`: starts a pool from `xml` (built first when asked) without defining
    /// it. A new name makes a transient pool; the name and UUID of a stopped persistent
    /// pool start that pool with this definition until it stops, as libvirt does.
    pub fn create(
        &self,
        xml: &str,
        build: Option<BuildRequest>,
    ) -> Result<PoolSummary, RegistryError> {
        let def = PoolDef::parse(xml)?;
        let name = def.name.clone();
        let existed = {
            let mut pools = self.lock();
            let uuid = Self::check_duplicates(&pools, &def)?;
            match pools.get_mut(&name) {
                Some(entry) if entry.active() => {
                    return Err(RegistryError::AlreadyActiveAs { name });
                }
                Some(entry) => {
                    entry.next_def = Some(std::mem::replace(&mut entry.def, def));
                    entry.last = None;
                    true
                }
                None => {
                    pools.insert(
                        name.clone(),
                        PoolEntry {
                            def,
                            uuid,
                            persistent: false,
                            autostart: false,
                            pool: None,
                            next_def: None,
                            last: None,
                        },
                    );
                    false
                }
            }
        };
        if let Err(e) = self.start(&name, build) {
            let mut pools = self.lock();
            if existed {
                if let Some(entry) = pools.get_mut(&name)
                    && let Some(def) = entry.next_def.take()
                {
                    entry.def = def;
                }
            } else {
                pools.remove(&name);
            }
            return Err(e);
        }
        self.by_name(&name)
    }

    /// `pool-start`, built first when asked (no CREATED event then, as in libvirt).
    pub fn start(&self, name: &str, build: Option<BuildRequest>) -> Result<(), RegistryError> {
        let (def, uuid) = {
            let pools = self.lock();
            let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
            if entry.active() {
                return Err(RegistryError::AlreadyActive {
                    name: name.to_string(),
                });
            }
            (entry.def.clone(), entry.uuid)
        };
        if let Some(request) = build {
            Self::build_target(&def, request)?;
        }
        let mut pool =
            Pool::open_with_uuid(Path::new(&def.target_path), name, uuid).map_err(|source| {
                RegistryError::Start {
                    name: name.to_string(),
                    source,
                }
            })?;
        pool.set_fallocate_mode(self.fallocate);
        if let Some(secrets) = &self.secrets {
            pool.set_secrets(secrets.clone());
        }
        let mut pools = self.lock();
        if let Some(entry) = pools.get_mut(name) {
            entry.pool = Some(Arc::new(pool));
            entry.last = None;
        }
        drop(pools);
        self.lifecycle(name, uuid, Lifecycle::Started);
        Ok(())
    }

    /// Builds a pool's target as `request` asks: refuses the flags a dir pool does not
    /// take, makes the directory, then refuses formatting a source device it does not have.
    fn build_target(def: &PoolDef, request: BuildRequest) -> Result<(), RegistryError> {
        match request {
            BuildRequest::UnsupportedFlags(flags) => {
                return Err(RegistryError::UnsupportedBuildFlags { flags });
            }
            BuildRequest::ExclusiveFlags => return Err(RegistryError::ExclusiveBuildFlags),
            BuildRequest::Directory | BuildRequest::FormatSource => {}
        }
        let path = Path::new(&def.target_path);
        create_target(def).map_err(io_err("cannot create directory", path))?;
        if request == BuildRequest::FormatSource {
            return Err(RegistryError::NoSourceDevice {
                name: def.name.clone(),
            });
        }
        Ok(())
    }

    /// `pool-build` of a stopped pool.
    pub fn build(&self, name: &str, request: BuildRequest) -> Result<(), RegistryError> {
        let (def, uuid) = {
            let pools = self.lock();
            let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
            if entry.active() {
                return Err(RegistryError::AlreadyActive {
                    name: name.to_string(),
                });
            }
            (entry.def.clone(), entry.uuid)
        };
        Self::build_target(&def, request)?;
        self.lifecycle(name, uuid, Lifecycle::Created);
        Ok(())
    }

    /// Refuses to stop or refresh a pool while volumes are being built in it.
    fn no_jobs(&self, name: &str) -> Result<(), RegistryError> {
        if self.builds().keys().any(|(pool, _)| pool == name) {
            return Err(RegistryError::AsyncJobs {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// `pool-destroy`: stops the pool; a transient pool disappears, a waiting definition
    /// takes over, and otherwise the definition keeps what the pool last reported.
    pub fn destroy(&self, name: &str) -> Result<(), RegistryError> {
        self.no_jobs(name)?;
        let uuid = {
            let mut pools = self.lock();
            let entry = pools
                .get_mut(name)
                .ok_or_else(|| Self::no_pool("name", name))?;
            if !entry.active() {
                return Err(RegistryError::NotActive {
                    name: name.to_string(),
                });
            }
            let last = entry.live_report().ok().flatten();
            entry.pool = None;
            match entry.next_def.take() {
                Some(def) => {
                    entry.def = def;
                    entry.last = None;
                }
                None => entry.last = last,
            }
            let uuid = entry.uuid;
            if !entry.persistent {
                pools.remove(name);
            }
            uuid
        };
        self.lifecycle(name, uuid, Lifecycle::Stopped);
        Ok(())
    }

    /// `pool-delete`: removes the (empty) target directory of an inactive pool.
    pub fn delete(&self, name: &str) -> Result<(), RegistryError> {
        let (path, uuid) = {
            let pools = self.lock();
            let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
            if entry.active() {
                return Err(RegistryError::StillActive {
                    name: name.to_string(),
                });
            }
            (PathBuf::from(&entry.def.target_path), entry.uuid)
        };
        std::fs::remove_dir(&path).map_err(io_err("cannot remove directory", &path))?;
        self.lifecycle(name, uuid, Lifecycle::Deleted);
        Ok(())
    }

    /// `pool-undefine` of a stopped pool: its definition and autostart link go, and so does
    /// the pool.
    pub fn undefine(&self, name: &str) -> Result<(), RegistryError> {
        let uuid = {
            let mut pools = self.lock();
            let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
            if entry.active() {
                return Err(RegistryError::StillActive {
                    name: name.to_string(),
                });
            }
            if !entry.persistent {
                return Err(RegistryError::NotPersistent {
                    name: name.to_string(),
                });
            }
            let path = self.definition_path(name);
            std::fs::remove_file(&path).map_err(io_err("cannot remove", &path))?;
            let link = self.autostart_path(name);
            let _ = std::fs::remove_file(&link);
            let uuid = entry.uuid;
            pools.remove(name);
            uuid
        };
        self.lifecycle(name, uuid, Lifecycle::Undefined);
        Ok(())
    }

    /// `pool-autostart [--disable]`.
    pub fn set_autostart(&self, name: &str, autostart: bool) -> Result<(), RegistryError> {
        let mut pools = self.lock();
        let entry = pools
            .get_mut(name)
            .ok_or_else(|| Self::no_pool("name", name))?;
        if !entry.persistent {
            return Err(RegistryError::TransientAutostart {
                name: name.to_string(),
            });
        }
        let link = self.autostart_path(name);
        if autostart {
            if !link.exists() {
                std::os::unix::fs::symlink(format!("../{name}.xml"), &link)
                    .map_err(io_err("cannot create", &link))?;
            }
        } else if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).map_err(io_err("cannot remove", &link))?;
        }
        entry.autostart = autostart;
        drop(pools);
        self.changed(Change::Pool {
            name: name.to_string(),
        });
        Ok(())
    }

    /// `find-storage-pool-sources TYPE`, as libvirt's storage driver answers it here: a
    /// type it does not know is an internal error, a `dir` pool has no sources to discover,
    /// and the other types have no backend in qpool.
    pub fn find_pool_sources(&self, pool_type: &str) -> Result<String, RegistryError> {
        match crate::xml::pool::POOL_TYPES
            .iter()
            .position(|t| *t == pool_type)
        {
            None => Err(RegistryError::UnknownPoolType {
                pool_type: pool_type.to_string(),
            }),
            Some(_) if pool_type == "dir" => Err(RegistryError::NoSourceDiscovery {
                pool_type: pool_type.to_string(),
            }),
            Some(number) => Err(RegistryError::NoBackend {
                number,
                pool_type: pool_type.to_string(),
            }),
        }
    }

    /// `pool-refresh`: removes leftovers of interrupted creates and sends the refresh event.
    pub fn refresh(&self, name: &str) -> Result<(), RegistryError> {
        let pool = self.open_pool(name)?;
        self.no_jobs(name)?;
        pool.refresh().map_err(|source| RegistryError::Start {
            name: name.to_string(),
            source,
        })?;
        self.emit(PoolEvent::Refresh {
            name: name.to_string(),
            uuid: pool.uuid(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
