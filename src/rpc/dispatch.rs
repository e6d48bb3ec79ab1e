//! Procedure handlers: decode a call's arguments, call the engine, encode the result or a
//! libvirt error.
//!
//! Owns: the mapping of each `REMOTE_PROC_*` of the storage subset to [`Registry`] and
//! [`Pool`] methods, libvirt's error codes and messages for each failure, the read-only
//! rule, and the answers to connection-level queries.
//! Must not: read or write sockets (that is `server`), or implement engine logic.

use std::path::Path;
use std::sync::Arc;

use super::proto::{PoolHandle, RemoteError, VolHandle, api_name, codes, domains, procs};
use super::xdr::{Decoder, Encoder, XdrError};
use crate::image::stream::{VolumeReader, VolumeWriter};
use crate::image::wipe::WipeAlgorithm;
use crate::policy::CreateFlags;
use crate::pool::registry::{Building, PoolSummary, Registry, RegistryError};
use crate::pool::{self, ErrorKind, Pool, ResizeRequest, VolumeInfo};
use crate::xml::VolumeDef;

/// libvirt version qpoold reports as its library version (the protocol it speaks).
pub const LIB_VERSION: u64 = 9_000_000;

/// Per-connection facts the handlers need.
#[derive(Debug)]
pub struct Session {
    /// The connection cannot change anything (read-only socket or VIR_CONNECT_RO).
    pub readonly: bool,
}

/// What a call produced.
pub enum Outcome {
    /// A reply payload.
    Reply(Vec<u8>),
    /// An upload stream: reply OK, then write the client's packets here.
    Upload {
        /// Where the bytes go.
        writer: VolumeWriter,
        /// The volume's name, for errors.
        name: String,
    },
    /// A download stream: reply OK, then send these bytes.
    Download {
        /// The bytes.
        reader: VolumeReader,
        /// Send holes as hole packets.
        sparse: bool,
        /// The volume's name, for errors.
        name: String,
    },
}

/// The handlers, with the daemon's pools.
pub struct Dispatcher {
    registry: Arc<Registry>,
}

type CallResult = Result<Outcome, RemoteError>;

fn reply(f: impl FnOnce(&mut Encoder)) -> CallResult {
    let mut e = Encoder::default();
    f(&mut e);
    Ok(Outcome::Reply(e.into_bytes()))
}

fn void() -> CallResult {
    Ok(Outcome::Reply(Vec::new()))
}

fn bad(e: XdrError) -> RemoteError {
    RemoteError::bad_payload(&e)
}

fn check_flags(flags: u32, allowed: u32, function: &str) -> Result<(), RemoteError> {
    if flags & !allowed != 0 {
        return Err(RemoteError::unsupported_flags(flags & !allowed, function));
    }
    Ok(())
}

fn uuid_bytes(u: &uuid::Uuid) -> [u8; 16] {
    *u.as_bytes()
}

fn pool_handle(p: &PoolSummary) -> PoolHandle {
    PoolHandle {
        name: p.name.clone(),
        uuid: uuid_bytes(&p.uuid),
    }
}

fn no_vol(what: &str, value: &str) -> RemoteError {
    let detail = if what == "key" {
        format!("no storage vol with matching key {value}")
    } else {
        format!("no storage vol with matching {what} '{value}'")
    };
    RemoteError::storage(
        codes::NO_STORAGE_VOL,
        "Storage volume not found: %s",
        detail,
    )
}

/// libvirt's error for a registry failure.
fn registry_error(e: &RegistryError) -> RemoteError {
    match e {
        RegistryError::NoPool { what, value } => RemoteError::storage(
            codes::NO_STORAGE_POOL,
            "Storage pool not found: %s",
            format!("no storage pool with matching {what} '{value}'"),
        ),
        RegistryError::InvalidState(m) => RemoteError::storage(
            codes::OPERATION_INVALID,
            "Requested operation is not valid: %s",
            m.clone(),
        ),
        RegistryError::Conflict(m) => {
            RemoteError::storage(codes::OPERATION_FAILED, "operation failed: %s", m.clone())
        }
        RegistryError::Xml(x) => {
            RemoteError::storage(codes::XML_ERROR, "XML error: %s", crate::cli::one_line(x))
        }
        RegistryError::Start { .. } | RegistryError::Io { .. } => {
            let mut err = RemoteError::storage(codes::SYSTEM_ERROR, "%s", crate::cli::one_line(e));
            err.int1 = io_errno(e).unwrap_or(-1);
            err
        }
    }
}

fn io_errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

/// libvirt's error for an engine failure.
pub fn engine_error(e: &pool::Error) -> RemoteError {
    let message = crate::cli::one_line(e);
    match e {
        pool::Error::VolumeExists { name, .. } => RemoteError::storage(
            codes::STORAGE_VOL_EXIST,
            "storage volume %s exists already",
            format!("'{name}'"),
        ),
        pool::Error::NoVolume { name, .. } => no_vol("name", name),
        // The reason alone, as libvirt words it (§3.3).
        pool::Error::InvalidResize { reason, .. } => RemoteError::invalid_arg(reason.clone()),
        _ => match e.kind() {
            ErrorKind::InvalidXml => {
                RemoteError::storage(codes::XML_ERROR, "XML error: %s", message)
            }
            ErrorKind::InvalidArg => RemoteError::invalid_arg(message),
            ErrorKind::NoVolume => RemoteError::storage(
                codes::NO_STORAGE_VOL,
                "Storage volume not found: %s",
                message,
            ),
            ErrorKind::NoPool => RemoteError::storage(
                codes::NO_STORAGE_POOL,
                "Storage pool not found: %s",
                message,
            ),
            ErrorKind::Unsupported => RemoteError::storage(
                codes::CONFIG_UNSUPPORTED,
                "unsupported configuration: %s",
                message,
            ),
            ErrorKind::VolumeExists => RemoteError::storage(
                codes::STORAGE_VOL_EXIST,
                "storage volume %s exists already",
                message,
            ),
            _ => {
                let mut err = RemoteError::storage(codes::SYSTEM_ERROR, "%s", message);
                err.int1 = io_errno(e).unwrap_or(-1);
                err
            }
        },
    }
}

/// The refusal of an operation on a volume that is still being built.
fn still_allocating(name: &str) -> RemoteError {
    RemoteError::storage(
        codes::OPERATION_INVALID,
        "Requested operation is not valid: %s",
        format!("volume '{name}' is still being allocated."),
    )
}

/// A volume as the daemon sees it: published, or still being built.
enum Vol {
    Ready(Box<VolumeInfo>),
    Building(Building),
}

impl Dispatcher {
    /// Handlers over `registry`.
    pub fn new(registry: Arc<Registry>) -> Dispatcher {
        Dispatcher { registry }
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn summary_by_handle(&self, h: &PoolHandle) -> Result<PoolSummary, RemoteError> {
        let uuid = uuid::Uuid::from_bytes(h.uuid);
        self.registry.by_uuid(&uuid).map_err(|_| {
            RemoteError::storage(
                codes::NO_STORAGE_POOL,
                "Storage pool not found: %s",
                format!(
                    "no storage pool with matching uuid '{}' ({})",
                    uuid.hyphenated(),
                    h.name
                ),
            )
        })
    }

    fn active_pool(&self, name: &str) -> Result<Arc<Pool>, RemoteError> {
        self.registry
            .open_pool(name)
            .map_err(|e| registry_error(&e))
    }

    fn vol_handle(pool: &str, name: &str, path: &Path) -> VolHandle {
        VolHandle {
            pool: pool.to_string(),
            name: name.to_string(),
            key: path.display().to_string(),
        }
    }

    fn lookup(&self, pool_name: &str, name: &str) -> Result<(Arc<Pool>, Vol), RemoteError> {
        let pool = self.active_pool(pool_name)?;
        match pool.volume(name) {
            Ok(info) => Ok((pool, Vol::Ready(Box::new(info)))),
            Err(pool::Error::NoVolume { .. }) | Err(pool::Error::InvalidName { .. }) => {
                match self.registry.building(pool_name, name) {
                    Some(building) => Ok((pool, Vol::Building(building))),
                    None => Err(no_vol("name", name)),
                }
            }
            Err(e) => Err(engine_error(&e)),
        }
    }

    fn ready(&self, pool_name: &str, name: &str) -> Result<(Arc<Pool>, VolumeInfo), RemoteError> {
        match self.lookup(pool_name, name)? {
            (pool, Vol::Ready(info)) => Ok((pool, *info)),
            (_, Vol::Building(_)) => Err(still_allocating(name)),
        }
    }

    /// Finds a volume by its key or path among the active pools.
    fn lookup_by_path(&self, path: &str, what: &str) -> Result<VolHandle, RemoteError> {
        let p = Path::new(path);
        if let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) {
            let canonical = std::fs::canonicalize(dir).ok();
            for summary in self.registry.list().into_iter().filter(|s| s.active) {
                let Ok(pool) = self.registry.open_pool(&summary.name) else {
                    continue;
                };
                let same_dir = pool.path() == dir || canonical.as_deref() == Some(pool.path());
                if same_dir && self.lookup(&summary.name, name).is_ok() {
                    return Ok(Self::vol_handle(
                        &summary.name,
                        name,
                        &pool.path().join(name),
                    ));
                }
            }
        }
        Err(no_vol(what, path))
    }

    fn denied(session: &Session, proc_: i32) -> Result<(), RemoteError> {
        if session.readonly
            && let Some(api) = api_name(proc_)
        {
            return Err(RemoteError::read_only(api));
        }
        Ok(())
    }

    /// Handles one call on an open connection.
    pub fn call(&self, session: &Session, proc_: i32, args: &[u8]) -> CallResult {
        Self::denied(session, proc_)?;
        let mut d = Decoder::new(args);
        let d = &mut d;
        use procs::*;
        match proc_ {
            CONNECT_GET_TYPE => reply(|e| {
                e.string("storage");
            }),
            CONNECT_GET_VERSION => reply(|e| {
                e.u64(qpool_version());
            }),
            CONNECT_GET_LIB_VERSION => reply(|e| {
                e.u64(LIB_VERSION);
            }),
            CONNECT_GET_HOSTNAME => {
                let host = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into());
                reply(|e| {
                    e.string(&host);
                })
            }
            CONNECT_GET_URI => reply(|e| {
                e.string("storage:///system");
            }),
            CONNECT_IS_SECURE => reply(|e| {
                e.i32(1);
            }),
            CONNECT_GET_CAPABILITIES => reply(|e| {
                e.string(CAPABILITIES);
            }),
            CONNECT_GET_STORAGE_POOL_CAPABILITIES => {
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 0, "virConnectGetStoragePoolCapabilities")?;
                reply(|e| {
                    e.string(POOL_CAPABILITIES);
                })
            }
            CONNECT_NUM_OF_STORAGE_POOLS | CONNECT_NUM_OF_DEFINED_STORAGE_POOLS => {
                let active = proc_ == CONNECT_NUM_OF_STORAGE_POOLS;
                let n = self
                    .registry
                    .list()
                    .iter()
                    .filter(|p| p.active == active)
                    .count();
                reply(|e| {
                    e.i32(i32::try_from(n).unwrap_or(i32::MAX));
                })
            }
            CONNECT_LIST_STORAGE_POOLS | CONNECT_LIST_DEFINED_STORAGE_POOLS => {
                let max = usize::try_from(d.i32().map_err(bad)?).unwrap_or(0);
                let active = proc_ == CONNECT_LIST_STORAGE_POOLS;
                let names: Vec<String> = self
                    .registry
                    .list()
                    .into_iter()
                    .filter(|p| p.active == active)
                    .map(|p| p.name)
                    .take(max)
                    .collect();
                reply(|e| {
                    e.count(names.len());
                    for n in &names {
                        e.string(n);
                    }
                })
            }
            CONNECT_LIST_ALL_STORAGE_POOLS => {
                let need = d.i32().map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                let pools: Vec<PoolSummary> = self
                    .registry
                    .list()
                    .into_iter()
                    .filter(|p| pool_matches(p, flags))
                    .collect();
                reply(|e| {
                    if need != 0 {
                        e.count(pools.len());
                        for p in &pools {
                            pool_handle(p).encode(e);
                        }
                    } else {
                        e.u32(0);
                    }
                    e.count(pools.len());
                })
            }
            STORAGE_POOL_LOOKUP_BY_NAME => {
                let name = d.string().map_err(bad)?;
                let p = self
                    .registry
                    .by_name(&name)
                    .map_err(|e| registry_error(&e))?;
                reply(|e| pool_handle(&p).encode(e))
            }
            STORAGE_POOL_LOOKUP_BY_UUID => {
                let raw = d.uuid().map_err(bad)?;
                let p = self
                    .registry
                    .by_uuid(&uuid::Uuid::from_bytes(raw))
                    .map_err(|e| registry_error(&e))?;
                reply(|e| pool_handle(&p).encode(e))
            }
            STORAGE_POOL_LOOKUP_BY_TARGET_PATH => {
                let path = d.string().map_err(bad)?;
                let p = self
                    .registry
                    .by_target(&path)
                    .map_err(|e| registry_error(&e))?;
                reply(|e| pool_handle(&p).encode(e))
            }
            STORAGE_POOL_LOOKUP_BY_VOLUME => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let p = self
                    .registry
                    .by_name(&v.pool)
                    .map_err(|e| registry_error(&e))?;
                reply(|e| pool_handle(&p).encode(e))
            }
            STORAGE_POOL_GET_INFO => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let p = self.summary_by_handle(&h)?;
                if !p.active {
                    return reply(|e| {
                        e.u32(0).u64(0).u64(0).u64(0);
                    });
                }
                let info = self
                    .active_pool(&p.name)?
                    .info()
                    .map_err(|e| engine_error(&e))?;
                reply(|e| {
                    e.u32(2)
                        .u64(info.capacity)
                        .u64(info.allocation)
                        .u64(info.available);
                })
            }
            STORAGE_POOL_GET_XML_DESC => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 1, "virStoragePoolGetXMLDesc")?;
                let p = self.summary_by_handle(&h)?;
                let xml = if p.active && flags & 1 == 0 {
                    self.active_pool(&p.name)?
                        .report()
                        .map_err(|e| engine_error(&e))?
                        .to_xml()
                } else {
                    let (def, uuid) = self
                        .registry
                        .definition(&p.name)
                        .map_err(|e| registry_error(&e))?;
                    def.to_xml(&uuid)
                };
                reply(|e| {
                    e.string(&xml);
                })
            }
            STORAGE_POOL_GET_AUTOSTART | STORAGE_POOL_IS_ACTIVE | STORAGE_POOL_IS_PERSISTENT => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let p = self.summary_by_handle(&h)?;
                let value = match proc_ {
                    STORAGE_POOL_GET_AUTOSTART => p.autostart,
                    STORAGE_POOL_IS_ACTIVE => p.active,
                    _ => p.persistent,
                };
                reply(|e| {
                    e.i32(i32::from(value));
                })
            }
            STORAGE_POOL_SET_AUTOSTART => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let autostart = d.i32().map_err(bad)? != 0;
                let p = self.summary_by_handle(&h)?;
                self.registry
                    .set_autostart(&p.name, autostart)
                    .map_err(|e| registry_error(&e))?;
                void()
            }
            STORAGE_POOL_DEFINE_XML | STORAGE_POOL_CREATE_XML => {
                let xml = d.string().map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                let p = if proc_ == STORAGE_POOL_DEFINE_XML {
                    check_flags(flags, 1, "storagePoolDefineXML")?;
                    self.registry.define(&xml)
                } else {
                    check_flags(flags, 0x7, "storagePoolCreateXML")?;
                    if flags & 0x7 != 0 {
                        let def = crate::xml::PoolDef::parse(&xml)
                            .map_err(|e| registry_error(&RegistryError::Xml(e)))?;
                        build_dir(&def)?;
                    }
                    self.registry.create(&xml)
                }
                .map_err(|e| registry_error(&e))?;
                reply(|e| pool_handle(&p).encode(e))
            }
            STORAGE_POOL_CREATE | STORAGE_POOL_BUILD | STORAGE_POOL_DELETE => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                let p = self.summary_by_handle(&h)?;
                let result = match proc_ {
                    STORAGE_POOL_CREATE => {
                        check_flags(flags, 0x7, "storagePoolCreate")?;
                        if flags & 0x7 != 0 {
                            self.registry
                                .build(&p.name)
                                .map_err(|e| registry_error(&e))?;
                        }
                        self.registry.start(&p.name)
                    }
                    STORAGE_POOL_BUILD => {
                        check_flags(flags, 0xf, "storagePoolBuild")?;
                        self.registry.build(&p.name)
                    }
                    _ => {
                        check_flags(flags, 0, "storagePoolDelete")?;
                        self.registry.delete(&p.name)
                    }
                };
                result.map_err(|e| registry_error(&e))?;
                void()
            }
            STORAGE_POOL_DESTROY | STORAGE_POOL_UNDEFINE => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let p = self.summary_by_handle(&h)?;
                if proc_ == STORAGE_POOL_DESTROY {
                    self.registry.destroy(&p.name)
                } else {
                    self.registry.undefine(&p.name)
                }
                .map_err(|e| registry_error(&e))?;
                void()
            }
            STORAGE_POOL_REFRESH => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 0, "storagePoolRefresh")?;
                let p = self.summary_by_handle(&h)?;
                self.registry
                    .refresh(&p.name)
                    .map_err(|e| registry_error(&e))?;
                void()
            }
            STORAGE_POOL_NUM_OF_VOLUMES
            | STORAGE_POOL_LIST_VOLUMES
            | STORAGE_POOL_LIST_ALL_VOLUMES => {
                // All arguments first: a short payload is a decode error, not a lookup.
                let h = PoolHandle::decode(d).map_err(bad)?;
                let (max, need, flags) = match proc_ {
                    STORAGE_POOL_LIST_VOLUMES => (d.i32().map_err(bad)?, 1, 0),
                    STORAGE_POOL_LIST_ALL_VOLUMES => {
                        (0, d.i32().map_err(bad)?, d.u32().map_err(bad)?)
                    }
                    _ => (0, 0, 0),
                };
                check_flags(flags, 0, "virStoragePoolListAllVolumes")?;
                let p = self.summary_by_handle(&h)?;
                let pool = self.active_pool(&p.name)?;
                let mut names = pool.volume_names().map_err(|e| engine_error(&e))?;
                names.extend(self.registry.building_names(&p.name));
                match proc_ {
                    STORAGE_POOL_NUM_OF_VOLUMES => reply(|e| {
                        e.i32(i32::try_from(names.len()).unwrap_or(i32::MAX));
                    }),
                    STORAGE_POOL_LIST_VOLUMES => {
                        names.truncate(usize::try_from(max).unwrap_or(0));
                        reply(|e| {
                            e.count(names.len());
                            for n in &names {
                                e.string(n);
                            }
                        })
                    }
                    _ => {
                        if names.len() > VOL_LIST_MAX {
                            return Err(RemoteError::storage(
                                codes::INTERNAL_ERROR,
                                "internal error: %s",
                                format!(
                                    "too many volumes ({}) for one reply (at most {VOL_LIST_MAX})",
                                    names.len()
                                ),
                            ));
                        }
                        reply(|e| {
                            if need != 0 {
                                e.count(names.len());
                                for n in &names {
                                    Self::vol_handle(&p.name, n, &pool.path().join(n)).encode(e);
                                }
                            } else {
                                e.u32(0);
                            }
                            e.count(names.len());
                        })
                    }
                }
            }
            STORAGE_VOL_LOOKUP_BY_NAME => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let name = d.string().map_err(bad)?;
                let p = self.summary_by_handle(&h)?;
                let (pool, _) = self.lookup(&p.name, &name)?;
                reply(|e| Self::vol_handle(&p.name, &name, &pool.path().join(&name)).encode(e))
            }
            STORAGE_VOL_LOOKUP_BY_KEY | STORAGE_VOL_LOOKUP_BY_PATH => {
                let key = d.string().map_err(bad)?;
                let what = if proc_ == STORAGE_VOL_LOOKUP_BY_KEY {
                    "key"
                } else {
                    "path"
                };
                let v = self.lookup_by_path(&key, what)?;
                reply(|e| v.encode(e))
            }
            STORAGE_VOL_GET_INFO | STORAGE_VOL_GET_INFO_FLAGS => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let flags = if proc_ == STORAGE_VOL_GET_INFO_FLAGS {
                    d.u32().map_err(bad)?
                } else {
                    0
                };
                check_flags(flags, 1, "storageVolGetInfoFlags")?;
                let (capacity, allocation, physical) = match self.lookup(&v.pool, &v.name)?.1 {
                    Vol::Ready(info) => (info.capacity, info.allocation, info.physical),
                    Vol::Building(building) => {
                        use std::os::unix::fs::MetadataExt;
                        let m = std::fs::metadata(&building.temp).ok();
                        (
                            building.capacity,
                            m.as_ref().map_or(0, |m| m.blocks() * 512),
                            m.as_ref().map_or(0, |m| m.len()),
                        )
                    }
                };
                let third = if flags & 1 != 0 { physical } else { allocation };
                reply(|e| {
                    e.u32(0).u64(capacity).u64(third);
                })
            }
            STORAGE_VOL_GET_XML_DESC => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 0, "storageVolGetXMLDesc")?;
                let (_, info) = self.ready(&v.pool, &v.name)?;
                let xml = info.report().to_xml();
                reply(|e| {
                    e.string(&xml);
                })
            }
            STORAGE_VOL_GET_PATH => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let (pool, _) = self.lookup(&v.pool, &v.name)?;
                let path = pool.path().join(&v.name).display().to_string();
                reply(|e| {
                    e.string(&path);
                })
            }
            STORAGE_VOL_CREATE_XML | STORAGE_VOL_CREATE_XML_FROM => {
                let h = PoolHandle::decode(d).map_err(bad)?;
                let xml = d.string().map_err(bad)?;
                let source = if proc_ == STORAGE_VOL_CREATE_XML_FROM {
                    Some(VolHandle::decode(d).map_err(bad)?)
                } else {
                    None
                };
                let flags = d.u32().map_err(bad)?;
                let allowed = if source.is_some() { 0x7 } else { 0x5 };
                check_flags(flags, allowed, "storageVolCreateXML")?;
                let p = self.summary_by_handle(&h)?;
                let pool = self.active_pool(&p.name)?;
                let def = VolumeDef::parse(&xml).map_err(|e| engine_error(&e.into()))?;
                if flags & 4 != 0 {
                    validate_strictly(&xml)?;
                }
                let create_flags = CreateFlags {
                    prealloc_metadata: flags & 1 != 0,
                };
                let name = def.name.clone();
                let capacity = def.capacity.unwrap_or(0);
                let registry = &self.registry;
                let pool_name = p.name.clone();
                let observer = |temp: Option<&Path>| match temp {
                    Some(t) => registry.mark_building(
                        &pool_name,
                        &name,
                        Building {
                            temp: t.to_path_buf(),
                            capacity,
                        },
                    ),
                    None => registry.unmark_building(&pool_name, &name),
                };
                let result = match &source {
                    None => pool.create_volume(&def, create_flags, Some(&observer)),
                    Some(src) => {
                        let src_pool = if src.pool == p.name {
                            Arc::clone(&pool)
                        } else {
                            self.active_pool(&src.pool)?
                        };
                        if self.registry.building(&src.pool, &src.name).is_some() {
                            return Err(still_allocating(&src.name));
                        }
                        if !Arc::ptr_eq(&src_pool, &pool) {
                            return Err(RemoteError::storage(
                                codes::CONFIG_UNSUPPORTED,
                                "unsupported configuration: %s",
                                "copying a volume between pools is not supported by qpool yet",
                            ));
                        }
                        pool.create_volume_from(
                            &def,
                            &src.name,
                            create_flags,
                            flags & 2 != 0,
                            Some(&observer),
                        )
                    }
                };
                let (info, _, _) = result.map_err(|e| engine_error(&e))?;
                reply(|e| Self::vol_handle(&p.name, &info.name, &info.path).encode(e))
            }
            STORAGE_VOL_DELETE => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 0, "virStorageBackendVolDeleteLocal")?;
                let (pool, _) = self.ready(&v.pool, &v.name)?;
                pool.delete(&v.name).map_err(|e| engine_error(&e))?;
                void()
            }
            STORAGE_VOL_WIPE | STORAGE_VOL_WIPE_PATTERN => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let algorithm = if proc_ == STORAGE_VOL_WIPE_PATTERN {
                    d.u32().map_err(bad)?
                } else {
                    0
                };
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 0, "storageVolWipePattern")?;
                let algorithm = match algorithm {
                    0 => WipeAlgorithm::Zero,
                    8 => WipeAlgorithm::Random,
                    9 => WipeAlgorithm::Trim,
                    n => {
                        let name = [
                            "zero",
                            "nnsa",
                            "dod",
                            "bsi",
                            "gutmann",
                            "schneier",
                            "pfitzner7",
                            "pfitzner33",
                        ]
                        .get(n as usize)
                        .copied()
                        .unwrap_or("unknown");
                        return Err(RemoteError::invalid_arg(
                            WipeAlgorithm::parse(name).err().unwrap_or_default(),
                        ));
                    }
                };
                let (pool, _) = self.ready(&v.pool, &v.name)?;
                pool.wipe_volume(&v.name, algorithm)
                    .map_err(|e| engine_error(&e))?;
                void()
            }
            STORAGE_VOL_RESIZE => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let capacity = d.u64().map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 0x7, "storageVolResize")?;
                let (pool, _) = self.ready(&v.pool, &v.name)?;
                pool.resize_volume(
                    &v.name,
                    ResizeRequest {
                        capacity,
                        allocate: flags & 1 != 0,
                        delta: flags & 2 != 0,
                        shrink: flags & 4 != 0,
                    },
                )
                .map_err(|e| engine_error(&e))?;
                void()
            }
            STORAGE_VOL_UPLOAD | STORAGE_VOL_DOWNLOAD => {
                let v = VolHandle::decode(d).map_err(bad)?;
                let offset = d.u64().map_err(bad)?;
                let length = d.u64().map_err(bad)?;
                let flags = d.u32().map_err(bad)?;
                check_flags(flags, 1, "storageVolUpload")?;
                let (pool, _) = self.ready(&v.pool, &v.name)?;
                if proc_ == STORAGE_VOL_UPLOAD {
                    let writer = pool
                        .upload(&v.name, offset, length)
                        .map_err(|e| engine_error(&e))?;
                    Ok(Outcome::Upload {
                        writer,
                        name: v.name,
                    })
                } else {
                    let sparse = flags & 1 != 0;
                    let reader = pool
                        .download(&v.name, offset, length, sparse)
                        .map_err(|e| engine_error(&e))?;
                    Ok(Outcome::Download {
                        reader,
                        sparse,
                        name: v.name,
                    })
                }
            }
            CONNECT_GET_SYSINFO => Err(RemoteError::new(
                codes::NO_SUPPORT,
                domains::DOMAIN,
                "this function is not supported by the connection driver: %s",
                "virConnectGetSysinfo",
            )),
            _ => Err(RemoteError::unknown_procedure(proc_)),
        }
    }
}

/// REMOTE_STORAGE_VOL_LIST_MAX in libvirt 9.0's client.
const VOL_LIST_MAX: usize = 16384;

/// Encodes qpool's own version as libvirt encodes versions (major·10⁶ + minor·10³ + micro).
fn qpool_version() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let micro = parts.next().unwrap_or(0);
    major * 1_000_000 + minor * 1000 + micro
}

/// virConnectListAllStoragePoolsFlags: groups are AND-ed, bits inside a group OR-ed.
fn pool_matches(p: &PoolSummary, flags: u32) -> bool {
    let group = |mask: u32, a: u32, b: u32, first: bool| {
        flags & mask == 0 || (flags & a != 0 && first) || (flags & b != 0 && !first)
    };
    let types = flags & !0x3f;
    group(0x3, 0x2, 0x1, p.active)
        && group(0xc, 0x4, 0x8, p.persistent)
        && group(0x30, 0x10, 0x20, p.autostart)
        && (types == 0 || types & 0x40 != 0)
}

fn build_dir(def: &crate::xml::PoolDef) -> Result<(), RemoteError> {
    crate::pool::registry::create_target(def).map_err(|e| {
        let mut err = RemoteError::storage(
            codes::SYSTEM_ERROR,
            "%s",
            format!("cannot create directory '{}': {e}", def.target_path),
        );
        err.int1 = e.raw_os_error().unwrap_or(-1);
        err
    })
}

/// VIR_STORAGE_VOL_CREATE_VALIDATE: the document may only contain what libvirt's
/// storagevol.rng allows (qpool's parser otherwise ignores unknown elements, like libvirt).
fn validate_strictly(xml: &str) -> Result<(), RemoteError> {
    crate::xml::volume::check_known_elements(xml).map_err(|m| {
        RemoteError::new(
            92,
            5,
            "%s",
            format!(
                "XML document failed to validate against schema: Unable to validate doc against /usr/share/libvirt/schemas/storagevol.rng\n{m}"
            ),
        )
    })
}

/// `virsh capabilities` on a storage connection.
const CAPABILITIES: &str = "<capabilities>\n\n  <host>\n    <cpu>\n      <arch>x86_64</arch>\n    </cpu>\n  </host>\n\n  <pool>\n    <enum name='type'>\n      <value>dir</value>\n    </enum>\n  </pool>\n\n</capabilities>\n";

/// `virsh pool-capabilities`.
const POOL_CAPABILITIES: &str = "<storagepoolCapabilities>\n  <pool type='dir' supported='yes'>\n    <volOptions>\n      <defaultFormat type='raw'/>\n      <enum name='targetFormatType'>\n        <value>raw</value>\n        <value>qcow2</value>\n      </enum>\n    </volOptions>\n  </pool>\n</storagepoolCapabilities>\n";
