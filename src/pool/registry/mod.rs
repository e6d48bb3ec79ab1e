//! The set of pools a daemon serves: libvirt's storage driver layer.
//!
//! Owns: pool definitions persisted as libvirt pool XML files (`DIR/NAME.xml`, autostart as
//! a `DIR/autostart/NAME.xml` symlink, as libvirt keeps them), the lifecycle libvirt gives a
//! dir pool (define, create, build, start, destroy, delete, undefine, autostart, refresh)
//! with its state rules and events, persistence and autostart (their only owner), lookups
//! by name, UUID and target path, and in [`volumes`] the driver rules for volumes: the ones
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
use crate::xml::PoolDef;
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

/// One pool's entry.
#[derive(Debug)]
pub struct PoolEntry {
    /// Its definition.
    pub def: PoolDef,
    /// Its UUID.
    pub uuid: Uuid,
    /// Defined with a file (as opposed to created transient).
    pub persistent: bool,
    /// Started when the daemon starts.
    pub autostart: bool,
    /// The open pool while it is active.
    pub pool: Option<Arc<Pool>>,
    /// A new definition given while the pool runs; it takes effect at the next start, as in
    /// libvirt.
    pub next_def: Option<PoolDef>,
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

type Listener = Box<dyn Fn(&PoolEvent) + Send + Sync>;
type ChangeHook = Arc<dyn Fn(&Change) + Send + Sync>;

/// All pools of a daemon.
pub struct Registry {
    dir: PathBuf,
    pools: Mutex<BTreeMap<String, PoolEntry>>,
    building: Mutex<HashMap<(String, String), Building>>,
    listener: Mutex<Option<Listener>>,
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

/// Creates a pool's target directory and its parents (mode from the definition, else
/// 0711); an existing directory is left as it is.
pub fn create_target(def: &PoolDef) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(def.permissions.mode.unwrap_or(0o711))
        .create(&def.target_path)
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
        Self::load_with_secrets(dir, default_target, None)
    }

    /// [`Registry::load`], with the daemon's secrets: encrypted creates in every pool take
    /// their passphrase from `secrets`, and the secret procedures use it.
    pub fn load_with_secrets(
        dir: &Path,
        default_target: &Path,
        secrets: Option<Arc<crate::pool::SecretStore>>,
    ) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(dir.join("autostart")).map_err(io_err("cannot create", dir))?;
        let registry = Registry {
            dir: dir.to_path_buf(),
            pools: Mutex::new(BTreeMap::new()),
            building: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
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
                },
            );
        }
        if registry.lock().is_empty() {
            let def = PoolDef {
                name: "default".into(),
                uuid: None,
                target_path: default_target.display().to_string(),
                permissions: crate::xml::Permissions {
                    mode: Some(0o711),
                    owner: None,
                    group: None,
                },
            };
            let xml = def.to_xml(&Uuid::new_v4());
            registry.define(&xml)?;
            registry.set_autostart("default", true)?;
            registry.build("default")?;
        }
        let autostart: Vec<String> = registry
            .lock()
            .values()
            .filter(|e| e.autostart)
            .map(|e| e.def.name.clone())
            .collect();
        for name in autostart {
            if let Err(e) = registry.start(&name) {
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
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(listener));
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
        if let Some(listener) = &*self.listener.lock().unwrap_or_else(|e| e.into_inner()) {
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

    /// A pool by its target directory.
    pub fn by_target(&self, path: &str) -> Result<PoolSummary, RegistryError> {
        let wanted = Path::new(path);
        self.lock()
            .values()
            .find(|e| Path::new(&e.def.target_path) == wanted)
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

    /// `pool-info`: the pool's state, and its sizes while it is active.
    pub fn info(
        &self,
        name: &str,
    ) -> Result<(PoolSummary, Option<crate::pool::PoolInfo>), RegistryError> {
        let summary = self.by_name(name)?;
        if !summary.active {
            return Ok((summary, None));
        }
        let info = self
            .open_pool(name)?
            .info(summary.persistent, summary.autostart)?;
        Ok((summary, Some(info)))
    }

    /// `pool-dumpxml`: the running pool's report, or (inactive, or with `inactive`) its
    /// definition.
    pub fn xml_desc(&self, name: &str, inactive: bool) -> Result<String, RegistryError> {
        let summary = self.by_name(name)?;
        if summary.active && !inactive {
            return Ok(self.open_pool(name)?.report()?.to_xml());
        }
        let (def, uuid) = self.definition(name)?;
        Ok(def.to_xml(&uuid))
    }

    /// The definition of a pool.
    pub fn definition(&self, name: &str) -> Result<(PoolDef, Uuid), RegistryError> {
        let pools = self.lock();
        let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
        Ok((entry.def.clone(), entry.uuid))
    }

    fn insert_def(&self, xml: &str, persistent: bool) -> Result<(String, Uuid), RegistryError> {
        let def = PoolDef::parse(xml)?;
        let mut pools = self.lock();
        let uuid = match pools.get(&def.name) {
            Some(existing) => {
                // libvirt gives a definition without <uuid> a random one, so only the same
                // UUID redefines a pool; anything else is a second pool of the same name.
                if def.uuid != Some(existing.uuid) {
                    return Err(RegistryError::UuidMismatch {
                        name: def.name,
                        uuid: existing.uuid,
                    });
                }
                if !persistent {
                    return Err(RegistryError::PoolExists { name: def.name });
                }
                existing.uuid
            }
            None => {
                let uuid = def.uuid.unwrap_or_else(Uuid::new_v4);
                if let Some(other) = pools.values().find(|e| e.uuid == uuid) {
                    return Err(RegistryError::UuidTaken {
                        other: other.def.name.clone(),
                        uuid,
                    });
                }
                uuid
            }
        };
        // A redefinition may keep its own target; no other pool may share it.
        if let Some(other) = pools.values().find(|e| {
            e.def.name != def.name && Path::new(&e.def.target_path) == Path::new(&def.target_path)
        }) {
            return Err(RegistryError::TargetTaken {
                other: other.def.name.clone(),
            });
        }
        if persistent {
            let path = self.definition_path(&def.name);
            let text = def.to_xml(&uuid);
            let temp = self.dir.join(format!(".{}.xml.new", def.name));
            std::fs::write(&temp, text).map_err(io_err("cannot write", &temp))?;
            std::fs::rename(&temp, &path).map_err(io_err("cannot write", &path))?;
        }
        let name = def.name.clone();
        match pools.get_mut(&name) {
            Some(entry) if entry.active() => {
                entry.next_def = Some(def);
                entry.persistent = true;
            }
            Some(entry) => {
                entry.def = def;
                entry.persistent = true;
            }
            None => {
                pools.insert(
                    name.clone(),
                    PoolEntry {
                        def,
                        uuid,
                        persistent,
                        autostart: false,
                        pool: None,
                        next_def: None,
                    },
                );
            }
        }
        Ok((name, uuid))
    }

    /// `pool-define`: a persistent, inactive pool (or a new definition of an existing one).
    pub fn define(&self, xml: &str) -> Result<PoolSummary, RegistryError> {
        let (name, uuid) = self.insert_def(xml, true)?;
        self.lifecycle(&name, uuid, Lifecycle::Defined);
        self.by_name(&name)
    }

    /// `pool-create`: a transient pool, started at once; with `build`, its target directory
    /// is created first.
    pub fn create(&self, xml: &str, build: bool) -> Result<PoolSummary, RegistryError> {
        if build {
            let def = PoolDef::parse(xml)?;
            create_target(&def).map_err(io_err(
                "cannot create directory",
                Path::new(&def.target_path),
            ))?;
        }
        let (name, _) = self.insert_def(xml, false)?;
        if let Err(e) = self.start(&name) {
            self.lock().remove(&name);
            return Err(e);
        }
        self.by_name(&name)
    }

    /// `pool-start`.
    pub fn start(&self, name: &str) -> Result<(), RegistryError> {
        let (target, uuid) = {
            let mut pools = self.lock();
            let entry = pools
                .get_mut(name)
                .ok_or_else(|| Self::no_pool("name", name))?;
            if entry.active() {
                return Err(RegistryError::AlreadyActive {
                    name: name.to_string(),
                });
            }
            if let Some(def) = entry.next_def.take() {
                entry.def = def;
            }
            (PathBuf::from(&entry.def.target_path), entry.uuid)
        };
        let mut pool =
            Pool::open_with_uuid(&target, name, uuid).map_err(|source| RegistryError::Start {
                name: name.to_string(),
                source,
            })?;
        if let Some(secrets) = &self.secrets {
            pool.set_secrets(secrets.clone());
        }
        let mut pools = self.lock();
        if let Some(entry) = pools.get_mut(name) {
            entry.pool = Some(Arc::new(pool));
        }
        drop(pools);
        self.lifecycle(name, uuid, Lifecycle::Started);
        Ok(())
    }

    /// `pool-build`: creates the target directory (mode from the definition, else 0711).
    pub fn build(&self, name: &str) -> Result<(), RegistryError> {
        let (def, uuid) = self.definition(name)?;
        let path = PathBuf::from(&def.target_path);
        if !path.is_dir() {
            create_target(&def).map_err(io_err("cannot create directory", &path))?;
        }
        self.lifecycle(name, uuid, Lifecycle::Created);
        Ok(())
    }

    /// `pool-destroy`: stops the pool; a transient pool disappears.
    pub fn destroy(&self, name: &str) -> Result<(), RegistryError> {
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
            entry.pool = None;
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

    /// `pool-undefine`: forgets the definition; an active pool stays, as a transient one.
    pub fn undefine(&self, name: &str) -> Result<(), RegistryError> {
        let uuid = {
            let mut pools = self.lock();
            let entry = pools
                .get_mut(name)
                .ok_or_else(|| Self::no_pool("name", name))?;
            if !entry.persistent {
                return Err(RegistryError::NotPersistent {
                    name: name.to_string(),
                });
            }
            let path = self.definition_path(name);
            std::fs::remove_file(&path).map_err(io_err("cannot remove", &path))?;
            let link = self.autostart_path(name);
            let _ = std::fs::remove_file(&link);
            entry.persistent = false;
            entry.autostart = false;
            let uuid = entry.uuid;
            if !entry.active() {
                pools.remove(name);
            }
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

    /// `pool-refresh`: removes leftovers of interrupted creates and sends the refresh event.
    pub fn refresh(&self, name: &str) -> Result<(), RegistryError> {
        let pool = self.open_pool(name)?;
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
