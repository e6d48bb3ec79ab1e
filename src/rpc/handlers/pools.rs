//! Pool procedures: listings, lookups, information, and the pool lifecycle.
//!
//! Owns: turning each pool call's typed arguments into [`Registry`] calls and its answer
//! into the typed reply, with libvirt's flag checks and how libvirt resolves a pool handle
//! (by UUID).
//! Must not: apply pool state rules (the registry does).

use super::{Ctx, allow_flags, driver, xml};
use crate::pool::registry::{BuildRequest, PoolSummary, Registry};
use crate::rpc::messages::{
    ConnectListAllStoragePoolsArgs, ConnectListAllStoragePoolsRet, ConnectListStoragePoolsArgs,
    ConnectListStoragePoolsRet, ConnectNumOfStoragePoolsRet, IntRet, StoragePoolArgs,
    StoragePoolCreateXmlArgs, StoragePoolDefineXmlArgs, StoragePoolFlagsArgs,
    StoragePoolGetInfoRet, StoragePoolGetXmlDescArgs, StoragePoolLookupByNameArgs,
    StoragePoolLookupByTargetPathArgs, StoragePoolLookupByUuidArgs, StoragePoolLookupByVolumeArgs,
    StoragePoolRet, StoragePoolSetAutostartArgs, XmlRet,
};
use crate::rpc::proto::{NonnullStoragePool, RemoteError, codes, flags};

/// The handle a client gets for a pool.
pub fn handle(p: &PoolSummary) -> NonnullStoragePool {
    NonnullStoragePool {
        name: p.name.clone(),
        uuid: *p.uuid.as_bytes(),
    }
}

fn pool_ret(p: &PoolSummary) -> StoragePoolRet {
    StoragePoolRet { pool: handle(p) }
}

/// The pool a handle names: libvirt resolves pools by UUID, and names the handle's name in
/// the error when there is none.
pub fn resolve(registry: &Registry, h: &NonnullStoragePool) -> Result<PoolSummary, RemoteError> {
    let uuid = uuid::Uuid::from_bytes(h.uuid);
    registry.by_uuid(&uuid).map_err(|_| {
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

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn names(registry: &Registry, active: bool, max: i32) -> ConnectListStoragePoolsRet {
    ConnectListStoragePoolsRet {
        names: registry
            .list()
            .into_iter()
            .filter(|p| p.active == active)
            .map(|p| p.name)
            .take(usize::try_from(max).unwrap_or(0))
            .collect(),
    }
}

/// `REMOTE_PROC_CONNECT_NUM_OF_STORAGE_POOLS`: active pools.
pub fn connect_num_of_storage_pools(
    ctx: &Ctx<'_>,
    (): (),
) -> Result<ConnectNumOfStoragePoolsRet, RemoteError> {
    let num = count(ctx.registry.list().iter().filter(|p| p.active).count());
    Ok(ConnectNumOfStoragePoolsRet { num })
}

/// `REMOTE_PROC_CONNECT_NUM_OF_DEFINED_STORAGE_POOLS`: inactive pools.
pub fn connect_num_of_defined_storage_pools(
    ctx: &Ctx<'_>,
    (): (),
) -> Result<ConnectNumOfStoragePoolsRet, RemoteError> {
    let num = count(ctx.registry.list().iter().filter(|p| !p.active).count());
    Ok(ConnectNumOfStoragePoolsRet { num })
}

/// `REMOTE_PROC_CONNECT_LIST_STORAGE_POOLS`: names of active pools.
pub fn connect_list_storage_pools(
    ctx: &Ctx<'_>,
    args: ConnectListStoragePoolsArgs,
) -> Result<ConnectListStoragePoolsRet, RemoteError> {
    Ok(names(ctx.registry, true, args.maxnames))
}

/// `REMOTE_PROC_CONNECT_LIST_DEFINED_STORAGE_POOLS`: names of inactive pools.
pub fn connect_list_defined_storage_pools(
    ctx: &Ctx<'_>,
    args: ConnectListStoragePoolsArgs,
) -> Result<ConnectListStoragePoolsRet, RemoteError> {
    Ok(names(ctx.registry, false, args.maxnames))
}

/// virConnectListAllStoragePoolsFlags: groups are AND-ed, bits inside a group OR-ed; of the
/// pool types, only `dir` matches.
fn pool_matches(p: &PoolSummary, f: u32) -> bool {
    use flags::*;
    let group = |inactive_or_no: u32, active_or_yes: u32, yes: bool| {
        f & (inactive_or_no | active_or_yes) == 0
            || (f & active_or_yes != 0 && yes)
            || (f & inactive_or_no != 0 && !yes)
    };
    let types = f & !(CONNECT_LIST_STORAGE_POOLS_DIR - 1);
    group(
        CONNECT_LIST_STORAGE_POOLS_INACTIVE,
        CONNECT_LIST_STORAGE_POOLS_ACTIVE,
        p.active,
    ) && group(
        CONNECT_LIST_STORAGE_POOLS_TRANSIENT,
        CONNECT_LIST_STORAGE_POOLS_PERSISTENT,
        p.persistent,
    ) && group(
        CONNECT_LIST_STORAGE_POOLS_NO_AUTOSTART,
        CONNECT_LIST_STORAGE_POOLS_AUTOSTART,
        p.autostart,
    ) && (types == 0 || types & CONNECT_LIST_STORAGE_POOLS_DIR != 0)
}

/// `REMOTE_PROC_CONNECT_LIST_ALL_STORAGE_POOLS`.
pub fn connect_list_all_storage_pools(
    ctx: &Ctx<'_>,
    args: ConnectListAllStoragePoolsArgs,
) -> Result<ConnectListAllStoragePoolsRet, RemoteError> {
    allow_flags(
        args.flags,
        flags::CONNECT_LIST_STORAGE_POOLS_FILTERS_ALL,
        "storageConnectListAllStoragePools",
    )?;
    let pools: Vec<NonnullStoragePool> = ctx
        .registry
        .list()
        .iter()
        .filter(|p| pool_matches(p, args.flags))
        .map(handle)
        .collect();
    let ret = u32::try_from(pools.len()).unwrap_or(u32::MAX);
    Ok(ConnectListAllStoragePoolsRet {
        pools: if args.need_results != 0 {
            pools
        } else {
            Vec::new()
        },
        ret,
    })
}

/// `REMOTE_PROC_STORAGE_POOL_LOOKUP_BY_NAME`.
pub fn storage_pool_lookup_by_name(
    ctx: &Ctx<'_>,
    args: StoragePoolLookupByNameArgs,
) -> Result<StoragePoolRet, RemoteError> {
    let p = ctx.registry.by_name(&args.name).map_err(driver)?;
    Ok(pool_ret(&p))
}

/// `REMOTE_PROC_STORAGE_POOL_LOOKUP_BY_UUID`.
pub fn storage_pool_lookup_by_uuid(
    ctx: &Ctx<'_>,
    args: StoragePoolLookupByUuidArgs,
) -> Result<StoragePoolRet, RemoteError> {
    let p = ctx
        .registry
        .by_uuid(&uuid::Uuid::from_bytes(args.uuid))
        .map_err(driver)?;
    Ok(pool_ret(&p))
}

/// `REMOTE_PROC_STORAGE_POOL_LOOKUP_BY_TARGET_PATH`.
pub fn storage_pool_lookup_by_target_path(
    ctx: &Ctx<'_>,
    args: StoragePoolLookupByTargetPathArgs,
) -> Result<StoragePoolRet, RemoteError> {
    let p = ctx.registry.by_target(&args.path).map_err(driver)?;
    Ok(pool_ret(&p))
}

/// `REMOTE_PROC_STORAGE_POOL_LOOKUP_BY_VOLUME`: the pool the handle names.
pub fn storage_pool_lookup_by_volume(
    ctx: &Ctx<'_>,
    args: StoragePoolLookupByVolumeArgs,
) -> Result<StoragePoolRet, RemoteError> {
    let p = ctx.registry.by_name(&args.vol.pool).map_err(driver)?;
    Ok(pool_ret(&p))
}

/// `REMOTE_PROC_STORAGE_POOL_GET_INFO`: state and sizes (a stopped pool's are the ones it
/// last had, or none).
pub fn storage_pool_get_info(
    ctx: &Ctx<'_>,
    args: StoragePoolArgs,
) -> Result<StoragePoolGetInfoRet, RemoteError> {
    let p = resolve(ctx.registry, &args.pool)?;
    let (summary, info) = ctx.registry.info(&p.name).map_err(driver)?;
    let (capacity, allocation, available) = info
        .map(|i| (i.capacity, i.allocation, i.available))
        .unwrap_or_default();
    Ok(StoragePoolGetInfoRet {
        state: if summary.active {
            flags::STORAGE_POOL_RUNNING
        } else {
            flags::STORAGE_POOL_INACTIVE
        },
        capacity,
        allocation,
        available,
    })
}

/// `REMOTE_PROC_STORAGE_POOL_GET_XML_DESC`: the running pool, or with
/// `VIR_STORAGE_XML_INACTIVE` (or when stopped) its definition.
pub fn storage_pool_get_xml_desc(
    ctx: &Ctx<'_>,
    args: StoragePoolGetXmlDescArgs,
) -> Result<XmlRet, RemoteError> {
    allow_flags(
        args.flags,
        flags::STORAGE_XML_INACTIVE,
        "virStoragePoolGetXMLDesc",
    )?;
    let p = resolve(ctx.registry, &args.pool)?;
    let inactive = args.flags & flags::STORAGE_XML_INACTIVE != 0;
    ctx.registry
        .xml_desc(&p.name, inactive)
        .map(xml)
        .map_err(driver)
}

fn int(value: bool) -> IntRet {
    IntRet {
        value: i32::from(value),
    }
}

/// `REMOTE_PROC_STORAGE_POOL_GET_AUTOSTART`.
pub fn storage_pool_get_autostart(
    ctx: &Ctx<'_>,
    args: StoragePoolArgs,
) -> Result<IntRet, RemoteError> {
    Ok(int(resolve(ctx.registry, &args.pool)?.autostart))
}

/// `REMOTE_PROC_STORAGE_POOL_IS_ACTIVE`.
pub fn storage_pool_is_active(ctx: &Ctx<'_>, args: StoragePoolArgs) -> Result<IntRet, RemoteError> {
    Ok(int(resolve(ctx.registry, &args.pool)?.active))
}

/// `REMOTE_PROC_STORAGE_POOL_IS_PERSISTENT`.
pub fn storage_pool_is_persistent(
    ctx: &Ctx<'_>,
    args: StoragePoolArgs,
) -> Result<IntRet, RemoteError> {
    Ok(int(resolve(ctx.registry, &args.pool)?.persistent))
}

/// `REMOTE_PROC_STORAGE_POOL_SET_AUTOSTART`.
pub fn storage_pool_set_autostart(
    ctx: &Ctx<'_>,
    args: StoragePoolSetAutostartArgs,
) -> Result<(), RemoteError> {
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry
        .set_autostart(&p.name, args.autostart != 0)
        .map_err(driver)
}

/// `REMOTE_PROC_STORAGE_POOL_DEFINE_XML`.
pub fn storage_pool_define_xml(
    ctx: &Ctx<'_>,
    args: StoragePoolDefineXmlArgs,
) -> Result<StoragePoolRet, RemoteError> {
    allow_flags(
        args.flags,
        flags::STORAGE_POOL_DEFINE_VALIDATE,
        "storagePoolDefineXML",
    )?;
    let validate = args.flags & flags::STORAGE_POOL_DEFINE_VALIDATE != 0;
    let p = ctx.registry.define(&args.xml, validate).map_err(driver)?;
    Ok(pool_ret(&p))
}

/// The build flags `virStoragePoolCreate*` accepts.
const CREATE_WITH_BUILD: u32 = flags::STORAGE_POOL_CREATE_WITH_BUILD
    | flags::STORAGE_POOL_CREATE_WITH_BUILD_OVERWRITE
    | flags::STORAGE_POOL_CREATE_WITH_BUILD_NO_OVERWRITE;

/// What the build flags of `virStoragePoolCreate*` ask: OVERWRITE or NO_OVERWRITE (either;
/// libvirt takes OVERWRITE when both are given) formats the source, WITH_BUILD makes the
/// directory.
fn build_on_start(f: u32) -> Option<BuildRequest> {
    if f & (flags::STORAGE_POOL_CREATE_WITH_BUILD_OVERWRITE
        | flags::STORAGE_POOL_CREATE_WITH_BUILD_NO_OVERWRITE)
        != 0
    {
        Some(BuildRequest::FormatSource)
    } else if f & flags::STORAGE_POOL_CREATE_WITH_BUILD != 0 {
        Some(BuildRequest::Directory)
    } else {
        None
    }
}

/// `REMOTE_PROC_STORAGE_POOL_CREATE_XML`: starts a pool without defining it, built first
/// when asked.
pub fn storage_pool_create_xml(
    ctx: &Ctx<'_>,
    args: StoragePoolCreateXmlArgs,
) -> Result<StoragePoolRet, RemoteError> {
    allow_flags(args.flags, CREATE_WITH_BUILD, "storagePoolCreateXML")?;
    let p = ctx
        .registry
        .create(&args.xml, build_on_start(args.flags))
        .map_err(driver)?;
    Ok(pool_ret(&p))
}

/// `REMOTE_PROC_STORAGE_POOL_CREATE`: starts a defined pool, built first when asked.
pub fn storage_pool_create(ctx: &Ctx<'_>, args: StoragePoolFlagsArgs) -> Result<(), RemoteError> {
    allow_flags(args.flags, CREATE_WITH_BUILD, "storagePoolCreate")?;
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry
        .start(&p.name, build_on_start(args.flags))
        .map_err(driver)
}

/// What `virStoragePoolBuild`'s flags ask of a dir pool. libvirt's API layer passes every
/// flag on; the dir pool's builder takes only OVERWRITE and NO_OVERWRITE, one at a time.
fn build_request(f: u32) -> BuildRequest {
    let taken = flags::STORAGE_POOL_BUILD_NO_OVERWRITE | flags::STORAGE_POOL_BUILD_OVERWRITE;
    if f & !taken != 0 {
        BuildRequest::UnsupportedFlags(f & !taken)
    } else if f == taken {
        BuildRequest::ExclusiveFlags
    } else if f != 0 {
        BuildRequest::FormatSource
    } else {
        BuildRequest::Directory
    }
}

/// `REMOTE_PROC_STORAGE_POOL_BUILD`.
pub fn storage_pool_build(ctx: &Ctx<'_>, args: StoragePoolFlagsArgs) -> Result<(), RemoteError> {
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry
        .build(&p.name, build_request(args.flags))
        .map_err(driver)
}

/// `REMOTE_PROC_STORAGE_POOL_DESTROY`.
pub fn storage_pool_destroy(ctx: &Ctx<'_>, args: StoragePoolArgs) -> Result<(), RemoteError> {
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry.destroy(&p.name).map_err(driver)
}

/// `REMOTE_PROC_STORAGE_POOL_DELETE`: removes an inactive pool's directory.
pub fn storage_pool_delete(ctx: &Ctx<'_>, args: StoragePoolFlagsArgs) -> Result<(), RemoteError> {
    allow_flags(args.flags, 0, "storagePoolDelete")?;
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry.delete(&p.name).map_err(driver)
}

/// `REMOTE_PROC_STORAGE_POOL_UNDEFINE`.
pub fn storage_pool_undefine(ctx: &Ctx<'_>, args: StoragePoolArgs) -> Result<(), RemoteError> {
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry.undefine(&p.name).map_err(driver)
}

/// `REMOTE_PROC_STORAGE_POOL_REFRESH`.
pub fn storage_pool_refresh(ctx: &Ctx<'_>, args: StoragePoolFlagsArgs) -> Result<(), RemoteError> {
    allow_flags(args.flags, 0, "storagePoolRefresh")?;
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry.refresh(&p.name).map_err(driver)
}
