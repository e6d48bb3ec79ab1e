//! The driver rules for volumes: what a client may do with a volume, given the daemon's
//! pools and the volumes being built in them.
//!
//! Owns: the volumes under construction (visible to lookups and `vol-info` with their
//! current allocation, as libvirt shows them, but refused as the target of a delete, wipe,
//! resize, stream or copy: "still being allocated"), duplicate names (a name being built is
//! taken; a copy onto a name in use is libvirt's internal error), lookups by key and by path
//! across the active pools (compared as strings, as libvirt compares them), copies within
//! and between pools, the refresh event once an upload's stream is closed, and each volume
//! call, which runs on the pool it names only while that pool is active.
//! Must not: speak any protocol or decide image contents.

use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};

use super::{Change, PoolEvent, Registry, RegistryError};
use crate::Error;
use crate::model::WipeAlgorithm;
use crate::policy::CreateFlags;
use crate::pool::names;
use crate::pool::{Download, Pool, ResizeRequest, Upload, VolumeInfo, WhenInUse};
use crate::xml::VolumeDef;
use crate::xml::pool::sanitize_path;

/// A volume being built: where its temporary file is, and its planned capacity.
#[derive(Debug, Clone)]
pub struct Building {
    /// Hidden temporary file in the pool directory.
    pub temp: PathBuf,
    /// Planned capacity.
    pub capacity: u64,
}

/// A volume as a client sees it: published, or still being built.
#[derive(Debug, Clone)]
pub enum VolumeState {
    /// Complete and under its name.
    Ready(Box<VolumeInfo>),
    /// Being built; its sizes so far.
    Building {
        /// Planned capacity.
        capacity: u64,
        /// `st_blocks × 512` of the file being written.
        allocation: u64,
        /// `st_size` of the file being written.
        physical: u64,
    },
}

impl VolumeState {
    /// `(capacity, allocation, physical)`, as `vol-info` reports them.
    pub fn sizes(&self) -> (u64, u64, u64) {
        match self {
            Self::Ready(info) => (info.capacity, info.allocation, info.physical),
            Self::Building {
                capacity,
                allocation,
                physical,
            } => (*capacity, *allocation, *physical),
        }
    }
}

/// Marks a volume as being built for as long as it lives.
struct BuildMark<'r> {
    registry: &'r Registry,
    key: (String, String),
}

impl Drop for BuildMark<'_> {
    fn drop(&mut self) {
        self.registry.builds().remove(&self.key);
    }
}

impl Registry {
    pub(super) fn builds(
        &self,
    ) -> MutexGuard<'_, std::collections::HashMap<(String, String), Building>> {
        self.building.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The volume being built under this name, if any.
    pub fn building(&self, pool: &str, volume: &str) -> Option<Building> {
        self.builds()
            .get(&(pool.to_string(), volume.to_string()))
            .cloned()
    }

    /// A volume by name in an active pool: ready, or being built.
    pub fn volume(
        &self,
        pool: &str,
        name: &str,
    ) -> Result<(Arc<Pool>, VolumeState), RegistryError> {
        let open = self.open_pool(pool)?;
        match open.volume(name) {
            Ok(info) => Ok((open, VolumeState::Ready(Box::new(info)))),
            // A lookup does not judge names: a bad one is simply not there.
            Err(Error::NoVolume { .. } | Error::InvalidName { .. }) => {
                match self.building(pool, name) {
                    Some(b) => {
                        let (allocation, physical) = open.file_sizes(&b.temp).unwrap_or((0, 0));
                        Ok((
                            open,
                            VolumeState::Building {
                                capacity: b.capacity,
                                allocation,
                                physical,
                            },
                        ))
                    }
                    None => Err(RegistryError::Engine(Error::NoVolume {
                        name: name.to_string(),
                        pool: pool.to_string(),
                    })),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A complete volume by name; one still being built is refused.
    pub fn ready_volume(
        &self,
        pool: &str,
        name: &str,
    ) -> Result<(Arc<Pool>, VolumeInfo), RegistryError> {
        match self.volume(pool, name)? {
            (open, VolumeState::Ready(info)) => Ok((open, *info)),
            (_, VolumeState::Building { .. }) => Err(RegistryError::StillBuilding {
                name: name.to_string(),
            }),
        }
    }

    /// The names of a pool's volumes, those being built included.
    pub fn volume_names(&self, pool: &str) -> Result<Vec<String>, RegistryError> {
        let open = self.open_pool(pool)?;
        let mut names = open.volume_names()?;
        names.extend(
            self.builds()
                .keys()
                .filter(|(p, _)| p == pool)
                .map(|(_, v)| v.clone()),
        );
        Ok(names)
    }

    /// The pool and name of the volume whose key is `key` (its path as qpool hands it out),
    /// among the active pools; compared as a string, as libvirt compares keys.
    pub fn find_volume_by_key(&self, key: &str) -> Option<(String, String)> {
        self.find_volume(key)
    }

    /// The pool and name of the volume at `path`, among the active pools: the path is
    /// cleaned as libvirt cleans it (runs of `/`, a trailing `/`), then compared as a string.
    pub fn find_volume_by_path(&self, path: &str) -> Option<(String, String)> {
        self.find_volume(&sanitize_path(path))
    }

    fn find_volume(&self, path: &str) -> Option<(String, String)> {
        let (_, name) = path.rsplit_once('/')?;
        self.list().into_iter().filter(|s| s.active).find_map(|s| {
            let open = self.open_pool(&s.name).ok()?;
            if open.volume_path(name).to_str()? != path {
                return None;
            }
            self.volume(&s.name, name).ok()?;
            Some((s.name, name.to_string()))
        })
    }

    /// Tells the change hook that a volume changed; passes `result` through.
    fn volume_changed<T>(
        &self,
        pool: &str,
        volume: &str,
        result: Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        if result.is_ok() {
            self.changed(Change::Volume {
                pool: pool.to_string(),
                volume: volume.to_string(),
            });
        }
        result
    }

    /// Runs a create in `pool` with the volume `name` marked as being built while it runs.
    pub(super) fn building_while<T>(
        &self,
        pool: &str,
        name: &str,
        capacity: u64,
        create: impl FnOnce(&(dyn Fn(Option<&std::path::Path>) + Sync)) -> Result<T, Error>,
    ) -> Result<T, RegistryError> {
        let key = (pool.to_string(), name.to_string());
        if self.builds().contains_key(&key) {
            return Err(RegistryError::Engine(Error::VolumeExists {
                name: name.to_string(),
                pool: pool.to_string(),
            }));
        }
        let mark: std::sync::Mutex<Option<BuildMark<'_>>> = std::sync::Mutex::new(None);
        let observe = |temp: Option<&std::path::Path>| {
            let mut mark = mark.lock().unwrap_or_else(|e| e.into_inner());
            match temp {
                Some(t) => {
                    self.builds().insert(
                        key.clone(),
                        Building {
                            temp: t.to_path_buf(),
                            capacity,
                        },
                    );
                    *mark = Some(BuildMark {
                        registry: self,
                        key: key.clone(),
                    });
                }
                None => *mark = None,
            }
        };
        let result = create(&observe);
        drop(mark);
        result.map_err(RegistryError::from)
    }

    /// `vol-create`: a new volume in an active pool, visible while it is built.
    pub fn create_volume(
        &self,
        pool: &str,
        def: &VolumeDef,
        flags: CreateFlags,
    ) -> Result<VolumeInfo, RegistryError> {
        let open = self.open_pool(pool)?;
        let capacity = def.capacity.unwrap_or(0);
        let result = self.building_while(pool, &def.name, capacity, |observe| {
            open.create_volume(def, flags, Some(observe))
                .map(|created| created.volume)
        });
        self.volume_changed(pool, &def.name, result)
    }

    /// `vol-create-from` / `vol-clone`: a new volume in `pool` with the data of `source` in
    /// `source_pool` (the same pool or another), with libvirt's checks in libvirt's order:
    /// both pools active, the source there, the new name not in use (an internal error in
    /// libvirt, unlike a create's "exists already"), the source complete.
    pub fn create_volume_from(
        &self,
        pool: &str,
        def: &VolumeDef,
        source_pool: &str,
        source: &str,
        flags: CreateFlags,
        reflink: bool,
    ) -> Result<VolumeInfo, RegistryError> {
        let open = self.open_pool(pool)?;
        let source_open = self.open_pool(source_pool)?;
        self.volume(source_pool, source)?;
        let taken = names::check(&def.name).is_ok()
            && (self.building(pool, &def.name).is_some() || open.exists(&def.name)?);
        if taken {
            return Err(RegistryError::NameInUse {
                name: def.name.clone(),
            });
        }
        if self.building(source_pool, source).is_some() {
            return Err(RegistryError::StillBuilding {
                name: source.to_string(),
            });
        }
        let capacity = def.capacity.unwrap_or(0);
        let result = self.building_while(pool, &def.name, capacity, |observe| {
            open.create_volume_from(def, &source_open, source, flags, reflink, Some(observe))
                .map(|created| created.volume)
        });
        self.volume_changed(pool, &def.name, result)
    }

    /// `vol-delete` of a complete volume (one held by another process only when forced).
    pub fn delete_volume(
        &self,
        pool: &str,
        name: &str,
        when: WhenInUse,
    ) -> Result<(), RegistryError> {
        let (open, _) = self.ready_volume(pool, name)?;
        self.volume_changed(
            pool,
            name,
            open.delete(name, when).map_err(RegistryError::from),
        )
    }

    /// `vol-wipe` of a complete volume.
    pub fn wipe_volume(
        &self,
        pool: &str,
        name: &str,
        algorithm: WipeAlgorithm,
        when: WhenInUse,
    ) -> Result<(), RegistryError> {
        let (open, _) = self.ready_volume(pool, name)?;
        let result = open.wipe_volume(name, algorithm, when);
        self.volume_changed(pool, name, result.map_err(RegistryError::from))
    }

    /// `vol-resize` of a complete volume.
    pub fn resize_volume(
        &self,
        pool: &str,
        name: &str,
        request: ResizeRequest,
        when: WhenInUse,
    ) -> Result<VolumeInfo, RegistryError> {
        let (open, _) = self.ready_volume(pool, name)?;
        let result = open.resize_volume(name, request, when);
        self.volume_changed(pool, name, result.map_err(RegistryError::from))
    }

    /// `vol-upload` into a complete volume.
    pub fn upload(
        &self,
        pool: &str,
        name: &str,
        offset: u64,
        length: u64,
        when: WhenInUse,
    ) -> Result<Upload, RegistryError> {
        let (open, _) = self.ready_volume(pool, name)?;
        let upload = open.upload(name, offset, length, when)?;
        // The volume changes when the stream finishes, after this call has returned.
        let upload = match self.change_hook() {
            Some(hook) => {
                let change = Change::Volume {
                    pool: pool.to_string(),
                    volume: name.to_string(),
                };
                upload.on_finish(Box::new(move || hook(&change)))
            }
            None => upload,
        };
        // libvirt refreshes the pool once an upload's stream is closed, however it ended,
        // and says so.
        let (listener, hook) = (self.listener(), self.change_hook());
        if listener.is_none() && hook.is_none() {
            return Ok(upload);
        }
        let (name, uuid) = (pool.to_string(), open.uuid());
        Ok(upload.on_close(move || {
            if let Some(listener) = listener {
                listener(&PoolEvent::Refresh {
                    name: name.clone(),
                    uuid,
                });
            }
            if let Some(hook) = hook {
                hook(&Change::Pool { name });
            }
        }))
    }

    /// `vol-download` from a complete volume.
    pub fn download(
        &self,
        pool: &str,
        name: &str,
        offset: u64,
        length: u64,
        sparse: bool,
    ) -> Result<Download, RegistryError> {
        let (open, _) = self.ready_volume(pool, name)?;
        Ok(open.download(name, offset, length, sparse)?)
    }
}
