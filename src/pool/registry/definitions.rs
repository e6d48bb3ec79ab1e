//! Pool definitions kept on disk, as libvirt keeps them: `DIR/NAME.xml`, and autostart as a
//! `DIR/autostart/NAME.xml` symlink to it.
//!
//! Owns: persistence and autostart (their only owner): reading the stored definitions,
//! `pool-define` with libvirt's duplicate rules (a UUID, a name or a target another pool
//! has), `pool-undefine`, and `pool-autostart`; each file written whole (a temporary file,
//! then a rename).
//! Must not: start, stop or build a pool (that is `lifecycle`), or read the definitions
//! again while the daemon runs (that is `reload`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{
    Change, Lifecycle, PoolEntry, PoolSummary, Registry, RegistryError, StoredPool, io_err,
};
use crate::xml::PoolDef;

/// Where a definitions directory marks a pool autostart, as libvirt does.
fn autostart_link(dir: &Path, name: &str) -> PathBuf {
    dir.join("autostart").join(format!("{name}.xml"))
}

impl Registry {
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

    pub(super) fn definition_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    pub(super) fn autostart_path(&self, name: &str) -> PathBuf {
        autostart_link(&self.dir, name)
    }

    /// libvirt's duplicate rules for a new definition (`virStoragePoolObjIsDuplicate`): the
    /// UUID of another pool's name, a name with another UUID, or another pool's target are
    /// refused. Returns the UUID the definition gets: its own, the existing pool's, or a
    /// new one.
    pub(super) fn check_duplicates(
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
                    pools.insert(name.clone(), PoolEntry::new(def, uuid, true, false));
                }
            }
            uuid
        };
        self.lifecycle(&name, uuid, Lifecycle::Defined);
        self.by_name(&name)
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
}
