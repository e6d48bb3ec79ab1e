//! The lifecycle libvirt gives a dir pool: create, start, build, destroy, delete, refresh,
//! with its state rules, build flags and events.
//!
//! Owns: the pool states (a pool runs while it has an open [`Pool`]; a transient pool goes
//! when it stops, a waiting definition takes over then, and a stopped pool keeps what it
//! last reported), building a pool's target as libvirt's dir pool builder does
//! ([`create_target`]), the refusal to stop or refresh a pool while volumes are being built
//! in it, and source discovery per pool type.
//! Must not: write or remove definition files (that is `definitions`), or touch a volume.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::{
    BuildRequest, Lifecycle, PoolEntry, PoolEvent, PoolSummary, Registry, RegistryError, io_err,
};
use crate::pool::Pool;
use crate::xml::PoolDef;

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
                    pools.insert(name.clone(), PoolEntry::new(def, uuid, false, false));
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
        let (def, uuid) = self.stopped(name)?;
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

    /// The definition and UUID of a pool that is not running, which a start or a build
    /// works from; [`RegistryError::AlreadyActive`] while it runs.
    fn stopped(&self, name: &str) -> Result<(PoolDef, Uuid), RegistryError> {
        let pools = self.lock();
        let entry = pools.get(name).ok_or_else(|| Self::no_pool("name", name))?;
        if entry.active() {
            return Err(RegistryError::AlreadyActive {
                name: name.to_string(),
            });
        }
        Ok((entry.def.clone(), entry.uuid))
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
        let (def, uuid) = self.stopped(name)?;
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
