//! Volume procedures: listings, lookups, information, create/clone, delete, wipe, resize and
//! the upload/download streams.
//!
//! Owns: turning each volume call's typed arguments into [`Registry`] calls and its answer
//! into the typed reply, with libvirt's flag checks, libvirt's wording for a missing volume,
//! and VIR_STORAGE_VOL_CREATE_VALIDATE (the document against the elements storagevol.rng
//! allows).
//! Must not: apply volume rules (still being built, duplicates: the registry does).

use std::path::Path;

use super::pools::resolve;
use super::{Ctx, Outcome, allow_flags, driver, engine, xml};
use crate::model::WipeAlgorithm;
use crate::policy::CreateFlags;
use crate::pool::registry::Registry;
use crate::pool::{ResizeRequest, WhenInUse};
use crate::rpc::errors::no_volume;
use crate::rpc::messages::{
    IntRet, StoragePoolArgs, StoragePoolListAllVolumesArgs, StoragePoolListAllVolumesRet,
    StoragePoolListVolumesArgs, StoragePoolListVolumesRet, StorageVolArgs, StorageVolCreateXmlArgs,
    StorageVolCreateXmlFromArgs, StorageVolFlagsArgs, StorageVolGetInfoRet, StorageVolGetPathRet,
    StorageVolLookupByKeyArgs, StorageVolLookupByNameArgs, StorageVolLookupByPathArgs,
    StorageVolResizeArgs, StorageVolRet, StorageVolStreamArgs, StorageVolWipePatternArgs, XmlRet,
};
use crate::rpc::proto::{NonnullStorageVol, RemoteError, codes, flags};
use crate::xml::{CapacityRule, VolumeDef};

/// REMOTE_STORAGE_VOL_LIST_MAX in libvirt 9.0's client.
const VOL_LIST_MAX: usize = 16384;

/// The handle a client gets for a volume: its key is its path.
fn handle(pool: &str, name: &str, path: &Path) -> NonnullStorageVol {
    NonnullStorageVol {
        pool: pool.to_string(),
        name: name.to_string(),
        key: path.display().to_string(),
    }
}

fn vol_ret(registry: &Registry, pool: &str, name: &str) -> Result<StorageVolRet, RemoteError> {
    let open = registry.open_pool(pool).map_err(driver)?;
    Ok(StorageVolRet {
        vol: handle(pool, name, &open.volume_path(name)),
    })
}

/// The names of the volumes (those being built included) of the pool a handle names.
fn names(
    ctx: &Ctx<'_>,
    pool: &crate::rpc::proto::NonnullStoragePool,
) -> Result<(String, Vec<String>), RemoteError> {
    let p = resolve(ctx.registry, pool)?;
    let names = ctx.registry.volume_names(&p.name).map_err(driver)?;
    Ok((p.name, names))
}

/// `REMOTE_PROC_STORAGE_POOL_NUM_OF_VOLUMES`.
pub fn storage_pool_num_of_volumes(
    ctx: &Ctx<'_>,
    args: StoragePoolArgs,
) -> Result<IntRet, RemoteError> {
    let (_, names) = names(ctx, &args.pool)?;
    Ok(IntRet {
        value: i32::try_from(names.len()).unwrap_or(i32::MAX),
    })
}

/// `REMOTE_PROC_STORAGE_POOL_LIST_VOLUMES`: at most `maxnames` names.
pub fn storage_pool_list_volumes(
    ctx: &Ctx<'_>,
    args: StoragePoolListVolumesArgs,
) -> Result<StoragePoolListVolumesRet, RemoteError> {
    let (_, mut names) = names(ctx, &args.pool)?;
    names.truncate(usize::try_from(args.maxnames).unwrap_or(0));
    Ok(StoragePoolListVolumesRet { names })
}

/// `REMOTE_PROC_STORAGE_POOL_LIST_ALL_VOLUMES`.
pub fn storage_pool_list_all_volumes(
    ctx: &Ctx<'_>,
    args: StoragePoolListAllVolumesArgs,
) -> Result<StoragePoolListAllVolumesRet, RemoteError> {
    allow_flags(args.flags, 0, "virStoragePoolListAllVolumes")?;
    let (pool, names) = names(ctx, &args.pool)?;
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
    let ret = u32::try_from(names.len()).unwrap_or(u32::MAX);
    let vols = if args.need_results != 0 {
        let open = ctx.registry.open_pool(&pool).map_err(driver)?;
        names
            .iter()
            .map(|n| handle(&pool, n, &open.volume_path(n)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(StoragePoolListAllVolumesRet { vols, ret })
}

/// `REMOTE_PROC_STORAGE_VOL_LOOKUP_BY_NAME`: a volume being built is found too.
pub fn storage_vol_lookup_by_name(
    ctx: &Ctx<'_>,
    args: StorageVolLookupByNameArgs,
) -> Result<StorageVolRet, RemoteError> {
    let p = resolve(ctx.registry, &args.pool)?;
    ctx.registry.volume(&p.name, &args.name).map_err(driver)?;
    vol_ret(ctx.registry, &p.name, &args.name)
}

/// The reply to a key or path lookup, or libvirt's "not found" naming what was asked.
fn found(
    ctx: &Ctx<'_>,
    found: Option<(String, String)>,
    what: &str,
    value: &str,
) -> Result<StorageVolRet, RemoteError> {
    let (pool, name) = found.ok_or_else(|| no_volume(what, value))?;
    vol_ret(ctx.registry, &pool, &name)
}

/// `REMOTE_PROC_STORAGE_VOL_LOOKUP_BY_KEY`: the key is the path, matched exactly.
pub fn storage_vol_lookup_by_key(
    ctx: &Ctx<'_>,
    args: StorageVolLookupByKeyArgs,
) -> Result<StorageVolRet, RemoteError> {
    found(
        ctx,
        ctx.registry.find_volume_by_key(&args.key),
        "key",
        &args.key,
    )
}

/// `REMOTE_PROC_STORAGE_VOL_LOOKUP_BY_PATH`: the path cleaned as libvirt cleans it.
pub fn storage_vol_lookup_by_path(
    ctx: &Ctx<'_>,
    args: StorageVolLookupByPathArgs,
) -> Result<StorageVolRet, RemoteError> {
    found(
        ctx,
        ctx.registry.find_volume_by_path(&args.path),
        "path",
        &args.path,
    )
}

fn info(
    ctx: &Ctx<'_>,
    vol: &NonnullStorageVol,
    physical: bool,
) -> Result<StorageVolGetInfoRet, RemoteError> {
    let (_, state) = ctx.registry.volume(&vol.pool, &vol.name).map_err(driver)?;
    let (capacity, allocation, size) = state.sizes();
    Ok(StorageVolGetInfoRet {
        type_: 0,
        capacity,
        allocation: if physical { size } else { allocation },
    })
}

/// `REMOTE_PROC_STORAGE_VOL_GET_INFO`: a volume being built shows its allocation so far.
pub fn storage_vol_get_info(
    ctx: &Ctx<'_>,
    args: StorageVolArgs,
) -> Result<StorageVolGetInfoRet, RemoteError> {
    info(ctx, &args.vol, false)
}

/// `REMOTE_PROC_STORAGE_VOL_GET_INFO_FLAGS`: with `VIR_STORAGE_VOL_GET_PHYSICAL`, the file
/// size in place of the allocation.
pub fn storage_vol_get_info_flags(
    ctx: &Ctx<'_>,
    args: StorageVolFlagsArgs,
) -> Result<StorageVolGetInfoRet, RemoteError> {
    allow_flags(
        args.flags,
        flags::STORAGE_VOL_GET_PHYSICAL,
        "storageVolGetInfoFlags",
    )?;
    info(
        ctx,
        &args.vol,
        args.flags & flags::STORAGE_VOL_GET_PHYSICAL != 0,
    )
}

/// `REMOTE_PROC_STORAGE_VOL_GET_XML_DESC`.
pub fn storage_vol_get_xml_desc(
    ctx: &Ctx<'_>,
    args: StorageVolFlagsArgs,
) -> Result<XmlRet, RemoteError> {
    allow_flags(args.flags, 0, "storageVolGetXMLDesc")?;
    let (pool, info) = ctx
        .registry
        .ready_volume(&args.vol.pool, &args.vol.name)
        .map_err(driver)?;
    Ok(xml(pool.volume_report(&info).to_xml()))
}

/// `REMOTE_PROC_STORAGE_VOL_GET_PATH`.
pub fn storage_vol_get_path(
    ctx: &Ctx<'_>,
    args: StorageVolArgs,
) -> Result<StorageVolGetPathRet, RemoteError> {
    let (open, _) = ctx
        .registry
        .volume(&args.vol.pool, &args.vol.name)
        .map_err(driver)?;
    Ok(StorageVolGetPathRet {
        name: open.volume_path(&args.vol.name).display().to_string(),
    })
}

/// The volume definition of a create call (`rule`: whether it may leave the capacity out),
/// checked as its flags ask: VIR_STORAGE_VOL_CREATE_VALIDATE holds the document to the
/// elements libvirt's storagevol.rng allows first (qpool's parser otherwise ignores unknown
/// elements, like libvirt's).
fn definition(
    xml: &str,
    flags: u32,
    rule: CapacityRule,
) -> Result<(VolumeDef, CreateFlags), RemoteError> {
    if flags & flags::STORAGE_VOL_CREATE_VALIDATE != 0 {
        crate::xml::volume::check_known_elements(xml).map_err(|e| engine(e.into()))?;
    }
    let def = VolumeDef::parse_with(xml, rule).map_err(|e| engine(e.into()))?;
    let create = CreateFlags {
        prealloc_metadata: flags & flags::STORAGE_VOL_CREATE_PREALLOC_METADATA != 0,
    };
    Ok((def, create))
}

/// The flags `virStorageVolCreateXML` accepts (create-from adds REFLINK).
const CREATE_FLAGS: u32 =
    flags::STORAGE_VOL_CREATE_PREALLOC_METADATA | flags::STORAGE_VOL_CREATE_VALIDATE;

/// The flags `virStorageVolResize` accepts.
const RESIZE_FLAGS: u32 = flags::STORAGE_VOL_RESIZE_ALLOCATE
    | flags::STORAGE_VOL_RESIZE_DELTA
    | flags::STORAGE_VOL_RESIZE_SHRINK;

/// `REMOTE_PROC_STORAGE_VOL_CREATE_XML`.
pub fn storage_vol_create_xml(
    ctx: &Ctx<'_>,
    args: StorageVolCreateXmlArgs,
) -> Result<StorageVolRet, RemoteError> {
    allow_flags(args.flags, CREATE_FLAGS, "storageVolCreateXML")?;
    let p = resolve(ctx.registry, &args.pool)?;
    let (def, create) = definition(&args.xml, args.flags, CapacityRule::Required)?;
    let info = ctx
        .registry
        .create_volume(&p.name, &def, create)
        .map_err(driver)?;
    Ok(StorageVolRet {
        vol: handle(&p.name, &info.name, &info.path),
    })
}

/// `REMOTE_PROC_STORAGE_VOL_CREATE_XML_FROM`: `vol-create-from` and `vol-clone`.
pub fn storage_vol_create_xml_from(
    ctx: &Ctx<'_>,
    args: StorageVolCreateXmlFromArgs,
) -> Result<StorageVolRet, RemoteError> {
    allow_flags(
        args.flags,
        CREATE_FLAGS | flags::STORAGE_VOL_CREATE_REFLINK,
        "storageVolCreateXML",
    )?;
    let p = resolve(ctx.registry, &args.pool)?;
    let (def, create) = definition(&args.xml, args.flags, CapacityRule::FromSource)?;
    let info = ctx
        .registry
        .create_volume_from(
            &p.name,
            &def,
            &args.clonevol.pool,
            &args.clonevol.name,
            create,
            args.flags & flags::STORAGE_VOL_CREATE_REFLINK != 0,
        )
        .map_err(driver)?;
    Ok(StorageVolRet {
        vol: handle(&p.name, &info.name, &info.path),
    })
}

/// What a change does about a volume someone holds: refused, unless the call carries
/// qpool's [`flags::QPOOL_FORCE`].
fn when_in_use(flags: u32) -> WhenInUse {
    if flags & flags::QPOOL_FORCE != 0 {
        WhenInUse::Force
    } else {
        WhenInUse::Refuse
    }
}

/// `REMOTE_PROC_STORAGE_VOL_DELETE`.
pub fn storage_vol_delete(ctx: &Ctx<'_>, args: StorageVolFlagsArgs) -> Result<(), RemoteError> {
    allow_flags(
        args.flags,
        flags::QPOOL_FORCE,
        "virStorageBackendVolDeleteLocal",
    )?;
    ctx.registry
        .delete_volume(&args.vol.pool, &args.vol.name, when_in_use(args.flags))
        .map_err(driver)
}

fn wipe(
    ctx: &Ctx<'_>,
    vol: &NonnullStorageVol,
    algorithm: u32,
    flags: u32,
) -> Result<(), RemoteError> {
    allow_flags(flags, flags::QPOOL_FORCE, "storageVolWipePattern")?;
    let algorithm = WipeAlgorithm::from_libvirt(algorithm).ok_or_else(|| {
        RemoteError::invalid_arg(
            crate::model::UnknownName::WipeAlgorithm(algorithm.to_string()).to_string(),
        )
    })?;
    ctx.registry
        .wipe_volume(&vol.pool, &vol.name, algorithm, when_in_use(flags))
        .map_err(driver)
}

/// `REMOTE_PROC_STORAGE_VOL_WIPE`: zeros.
pub fn storage_vol_wipe(ctx: &Ctx<'_>, args: StorageVolFlagsArgs) -> Result<(), RemoteError> {
    wipe(ctx, &args.vol, 0, args.flags)
}

/// `REMOTE_PROC_STORAGE_VOL_WIPE_PATTERN`: libvirt's algorithm numbers.
pub fn storage_vol_wipe_pattern(
    ctx: &Ctx<'_>,
    args: StorageVolWipePatternArgs,
) -> Result<(), RemoteError> {
    wipe(ctx, &args.vol, args.algorithm, args.flags)
}

/// `REMOTE_PROC_STORAGE_VOL_RESIZE`.
pub fn storage_vol_resize(ctx: &Ctx<'_>, args: StorageVolResizeArgs) -> Result<(), RemoteError> {
    use flags::*;
    allow_flags(args.flags, RESIZE_FLAGS | QPOOL_FORCE, "storageVolResize")?;
    let request = ResizeRequest {
        capacity: args.capacity,
        allocate: args.flags & STORAGE_VOL_RESIZE_ALLOCATE != 0,
        delta: args.flags & STORAGE_VOL_RESIZE_DELTA != 0,
        shrink: args.flags & STORAGE_VOL_RESIZE_SHRINK != 0,
    };
    ctx.registry
        .resize_volume(
            &args.vol.pool,
            &args.vol.name,
            request,
            when_in_use(args.flags),
        )
        .map(|_| ())
        .map_err(driver)
}

/// `REMOTE_PROC_STORAGE_VOL_UPLOAD`: the reply, then the client's stream into the volume.
pub fn storage_vol_upload(
    ctx: &Ctx<'_>,
    args: StorageVolStreamArgs,
) -> Result<Outcome, RemoteError> {
    allow_flags(
        args.flags,
        flags::STORAGE_VOL_UPLOAD_SPARSE_STREAM | flags::QPOOL_FORCE,
        "storageVolUpload",
    )?;
    let upload = ctx
        .registry
        .upload(
            &args.vol.pool,
            &args.vol.name,
            args.offset,
            args.length,
            when_in_use(args.flags),
        )
        .map_err(driver)?;
    Ok(Outcome::Upload {
        upload,
        name: args.vol.name,
    })
}

/// `REMOTE_PROC_STORAGE_VOL_DOWNLOAD`: the reply, then the volume's bytes (holes as hole
/// packets with `VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM`).
pub fn storage_vol_download(
    ctx: &Ctx<'_>,
    args: StorageVolStreamArgs,
) -> Result<Outcome, RemoteError> {
    allow_flags(
        args.flags,
        flags::STORAGE_VOL_DOWNLOAD_SPARSE_STREAM,
        "storageVolUpload",
    )?;
    let sparse = args.flags & flags::STORAGE_VOL_DOWNLOAD_SPARSE_STREAM != 0;
    let download = ctx
        .registry
        .download(
            &args.vol.pool,
            &args.vol.name,
            args.offset,
            args.length,
            sparse,
        )
        .map_err(driver)?;
    Ok(Outcome::Download { download })
}
