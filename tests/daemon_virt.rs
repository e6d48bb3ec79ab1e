//! `qpoold` through the Rust `virt` crate: the same `libvirt.so` remote driver that virsh,
//! libvirt-python and virt-manager use, called as an application calls it. Connect, pool
//! lookups, info and XML, volume create / create-from / info / XML / path / key / resize /
//! wipe / delete, upload and download streams, storage pool events, and the libvirt error
//! codes a client sees (NO_STORAGE_VOL 50, STORAGE_VOL_EXIST 90, OPERATION_DENIED 29 on the
//! read-only socket, NO_SUPPORT 3 for procedures qpoold does not implement).
//!
//! Each test runs its own daemon on its own temporary socket and pool directory. The
//! expected sizes come from `stat` and `qemu-img`, not from qpool.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::daemon::Daemon;
use common::{alloc_and_size, assert_check_clean, have, qemu_info};
use virt::connect::Connect;
use virt::error::Error;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

// virErrorNumber / virErrorDomain values (libvirt-rpc.md §3.3).
const VIR_ERR_INTERNAL_ERROR: u32 = 1;
const VIR_ERR_NO_SUPPORT: u32 = 3;
const VIR_ERR_INVALID_ARG: u32 = 8;
const VIR_ERR_OPERATION_DENIED: u32 = 29;
const VIR_ERR_NO_STORAGE_POOL: u32 = 49;
const VIR_ERR_NO_STORAGE_VOL: u32 = 50;
const VIR_ERR_STORAGE_VOL_EXIST: u32 = 90;
const VIR_FROM_STORAGE: u32 = 18;

/// A libvirt connection that is closed when dropped.
struct Conn(Connect);

impl Conn {
    fn open(uri: &str) -> Conn {
        // libvirt's default error handler prints every error to stderr; the tests look at the
        // returned errors instead.
        virt::error::clear_error_callback();
        Conn(Connect::open(Some(uri)).unwrap_or_else(|e| panic!("connect {uri}: {e}")))
    }

    fn open_read_only(uri: &str) -> Conn {
        virt::error::clear_error_callback();
        Conn(Connect::open_read_only(Some(uri)).unwrap_or_else(|e| panic!("connect {uri}: {e}")))
    }

    fn pool(&self, name: &str) -> StoragePool {
        StoragePool::lookup_by_name(&self.0, name).unwrap_or_else(|e| panic!("pool {name}: {e}"))
    }
}

impl std::ops::Deref for Conn {
    type Target = Connect;
    fn deref(&self) -> &Connect {
        &self.0
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

/// The raw virErrorNumber of an error.
fn code(e: &Error) -> u32 {
    e.code().to_raw()
}

/// Asserts `r` failed with `expected` (and returns the error).
fn expect_code<T>(r: Result<T, Error>, expected: u32, what: &str) -> Error {
    match r {
        Ok(_) => panic!("{what}: expected error code {expected}, got success"),
        Err(e) => {
            assert_eq!(code(&e), expected, "{what}: {e}");
            e
        }
    }
}

/// Volume XML as an application writes it.
fn vol_xml(name: &str, capacity: u64, allocation: Option<u64>, format: &str) -> String {
    let allocation = allocation
        .map(|a| format!("  <allocation unit='bytes'>{a}</allocation>\n"))
        .unwrap_or_default();
    format!(
        "<volume>\n  <name>{name}</name>\n  <capacity unit='bytes'>{capacity}</capacity>\n{allocation}  <target>\n    <format type='{format}'/>\n  </target>\n</volume>\n"
    )
}

/// The text between `<tag…>` and `</tag>` in `xml` (first occurrence).
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = xml
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let start = open + xml[open..].find('>').unwrap() + 1;
    let end = start
        + xml[start..]
            .find(&format!("</{tag}>"))
            .unwrap_or_else(|| panic!("no </{tag}> in {xml}"));
    &xml[start..end]
}

fn as_u64(text: &str) -> u64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// Sends all of `data` into an upload stream and finishes it.
fn upload(conn: &Conn, vol: &StorageVol, offset: u64, data: &[u8]) {
    let stream = Stream::new(conn, 0).expect("new stream");
    let length = u64::try_from(data.len()).unwrap();
    vol.upload(&stream, offset, length, 0).expect("upload");
    // Chunks of different sizes, some larger than one RPC stream packet (262120 bytes).
    let mut rest = data;
    let mut size = 1000;
    while !rest.is_empty() {
        let n = stream
            .send(&rest[..size.min(rest.len())])
            .expect("stream send");
        assert!(n > 0, "stream send made no progress");
        rest = &rest[n..];
        size = size * 7 % 600_000 + 1;
    }
    stream.finish().expect("upload finish");
}

/// Receives a whole download stream.
fn download(conn: &Conn, vol: &StorageVol, offset: u64, length: u64) -> Vec<u8> {
    let stream = Stream::new(conn, 0).expect("new stream");
    vol.download(&stream, offset, length, 0).expect("download");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        let n = stream.recv(&mut buf).expect("stream recv");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    stream.finish().expect("download finish");
    out
}

/// Deterministic non-zero bytes.
fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..usize::try_from(len).unwrap())
        .map(|i| u8::try_from((i * 31 + usize::from(seed) * 7) % 251).unwrap() + 1)
        .collect()
}

/// `st_blocks × 512` and `st_size`, as libvirt reports allocation and physical.
fn stat(path: &Path) -> (u64, u64) {
    alloc_and_size(path)
}

#[test]
fn connect_and_pools_list_lookups_info_and_xml() {
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    assert!(conn.is_alive().unwrap());
    assert_eq!(conn.get_type().unwrap(), "storage");
    assert_eq!(conn.get_lib_version().unwrap(), 9_000_000);
    assert!(conn.is_secure().unwrap());

    // Listing: the new API (281) and the legacy calls (71/72/73/74) agree.
    let pools = conn.list_all_storage_pools(0).expect("list all pools");
    let names: Vec<String> = pools.iter().map(|p| p.get_name().unwrap()).collect();
    assert_eq!(names, ["default"]);
    assert_eq!(conn.num_of_storage_pools().unwrap(), 1);
    assert_eq!(conn.list_storage_pools().unwrap(), ["default"]);
    assert_eq!(conn.num_of_defined_storage_pools().unwrap(), 0);
    assert!(conn.list_defined_storage_pools().unwrap().is_empty());
    // Filters: active + persistent + autostart + dir match, inactive and transient do not.
    let want = sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE
        | sys::VIR_CONNECT_LIST_STORAGE_POOLS_PERSISTENT
        | sys::VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART
        | sys::VIR_CONNECT_LIST_STORAGE_POOLS_DIR;
    assert_eq!(conn.list_all_storage_pools(want).unwrap().len(), 1);
    for other in [
        sys::VIR_CONNECT_LIST_STORAGE_POOLS_INACTIVE,
        sys::VIR_CONNECT_LIST_STORAGE_POOLS_TRANSIENT,
        sys::VIR_CONNECT_LIST_STORAGE_POOLS_NO_AUTOSTART,
        sys::VIR_CONNECT_LIST_STORAGE_POOLS_LOGICAL,
    ] {
        assert!(conn.list_all_storage_pools(other).unwrap().is_empty());
    }

    // Every lookup finds the same pool.
    let pool = conn.pool("default");
    let uuid = pool.get_uuid().unwrap();
    let uuid_string = pool.get_uuid_string().unwrap();
    assert_eq!(uuid_string, uuid.hyphenated().to_string());
    let by_uuid = StoragePool::lookup_by_uuid(&conn, uuid).unwrap();
    assert_eq!(by_uuid.get_name().unwrap(), "default");
    let by_string = StoragePool::lookup_by_uuid_string(&conn, &uuid_string).unwrap();
    assert_eq!(by_string.get_name().unwrap(), "default");
    let target = d.pool_dir().to_str().unwrap();
    let by_path = StoragePool::lookup_by_target_path(&conn, target).unwrap();
    assert_eq!(by_path.get_uuid().unwrap(), uuid);
    assert!(pool.is_active().unwrap());
    assert!(pool.is_persistent().unwrap());
    assert!(pool.get_autostart().unwrap());

    // Info: running, and the sizes of the filesystem (statvfs), like libvirt's dir pool.
    let info = pool.get_info().unwrap();
    assert_eq!(info.state, sys::VIR_STORAGE_POOL_RUNNING);
    let fs = nix::sys::statvfs::statvfs(d.pool_dir()).unwrap();
    let capacity = fs.blocks() * fs.fragment_size();
    assert_eq!(info.capacity, capacity);
    assert!(info.allocation <= capacity, "{info:?}");
    assert!(info.available <= capacity - info.allocation, "{info:?}");

    // XML: name, UUID, the same sizes shape, the target path.
    let xml = pool.get_xml_desc(0).unwrap();
    assert!(xml.starts_with("<pool type='dir'>"), "{xml}");
    assert_eq!(element(&xml, "name"), "default");
    assert_eq!(element(&xml, "uuid"), uuid_string);
    assert_eq!(as_u64(element(&xml, "capacity")), capacity);
    assert_eq!(element(&xml, "path"), target);
    let inactive = pool
        .get_xml_desc(sys::VIR_STORAGE_XML_INACTIVE)
        .expect("inactive XML");
    assert_eq!(element(&inactive, "name"), "default");
    assert_eq!(element(&inactive, "path"), target);

    // Errors: an unknown pool is NO_STORAGE_POOL in the storage domain.
    let e = expect_code(
        StoragePool::lookup_by_name(&conn, "nosuchpool"),
        VIR_ERR_NO_STORAGE_POOL,
        "lookup nosuchpool",
    );
    assert_eq!(e.domain().to_raw(), VIR_FROM_STORAGE);
    assert_eq!(
        e.message(),
        "Storage pool not found: no storage pool with matching name 'nosuchpool'"
    );
    expect_code(
        StoragePool::lookup_by_uuid_string(&conn, "00000000-0000-0000-0000-000000000000"),
        VIR_ERR_NO_STORAGE_POOL,
        "lookup by uuid",
    );
}

#[test]
fn vol_create_info_xml_path_key_lookups_and_delete() {
    if !have("qemu-img") {
        return;
    }
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    let pool = conn.pool("default");

    let xml = vol_xml("v1.qcow2", GIB, None, "qcow2");
    let vol = StorageVol::create_xml(&pool, &xml, 0).expect("create");
    let path = d.vol("v1.qcow2");
    let path_str = path.to_str().unwrap();
    assert_eq!(vol.get_name().unwrap(), "v1.qcow2");
    assert_eq!(vol.get_key().unwrap(), path_str, "key = absolute path");
    assert_eq!(vol.get_path().unwrap(), path_str);
    assert_check_clean(&path);
    let qi = qemu_info(&path);
    assert_eq!(qi["format"], "qcow2");
    assert_eq!(qi["virtual-size"], GIB);

    // Info: capacity = virtual size, allocation = st_blocks × 512, physical = st_size.
    let (allocation, physical) = stat(&path);
    let info = vol.get_info().unwrap();
    assert_eq!(info.kind, sys::VIR_STORAGE_VOL_FILE);
    assert_eq!(info.capacity, GIB);
    assert_eq!(info.allocation, allocation);
    let info = vol
        .get_info_flags(sys::VIR_STORAGE_VOL_GET_PHYSICAL)
        .unwrap();
    assert_eq!(info.capacity, GIB);
    assert_eq!(info.allocation, physical);
    assert!(allocation < MIB, "a thin qcow2 volume: {allocation}");

    // XML: the same figures, path, format and permissions.
    let xml = vol.get_xml_desc(0).unwrap();
    assert!(xml.starts_with("<volume type='file'>"), "{xml}");
    assert!(xml.ends_with("</volume>\n"), "{xml}");
    assert_eq!(element(&xml, "name"), "v1.qcow2");
    assert_eq!(element(&xml, "key"), path_str);
    assert_eq!(as_u64(element(&xml, "capacity")), GIB);
    assert_eq!(as_u64(element(&xml, "allocation")), allocation);
    assert_eq!(as_u64(element(&xml, "physical")), physical);
    assert_eq!(element(&xml, "path"), path_str);
    assert!(xml.contains("<format type='qcow2'/>"), "{xml}");
    let mode = std::fs::metadata(&path).unwrap().mode() & 0o7777;
    assert_eq!(element(&xml, "mode"), format!("{mode:04o}"));

    // Lookups by name, key and path give the same volume; the pool by volume is `default`.
    for found in [
        StorageVol::lookup_by_name(&pool, "v1.qcow2").unwrap(),
        StorageVol::lookup_by_key(&conn, path_str).unwrap(),
        StorageVol::lookup_by_path(&conn, path_str).unwrap(),
    ] {
        assert_eq!(found.get_name().unwrap(), "v1.qcow2");
        assert_eq!(found.get_key().unwrap(), path_str);
        let owner = StoragePool::lookup_by_volume(&found).unwrap();
        assert_eq!(owner.get_name().unwrap(), "default");
    }

    // Listing: 282, and the legacy 91/92.
    let raw = StorageVol::create_xml(&pool, &vol_xml("v2.img", 8 * MIB, None, "raw"), 0)
        .expect("create raw");
    let mut listed: Vec<String> = pool
        .list_all_volumes(0)
        .unwrap()
        .iter()
        .map(|v| v.get_name().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ["v1.qcow2", "v2.img"]);
    assert_eq!(pool.num_of_volumes().unwrap(), 2);
    let mut legacy = pool.list_volumes().unwrap();
    legacy.sort();
    assert_eq!(legacy, ["v1.qcow2", "v2.img"]);
    // A raw volume without <allocation> is fully allocated, as libvirt does it.
    let info = raw.get_info().unwrap();
    assert_eq!(info.capacity, 8 * MIB);
    assert_eq!(info.allocation, stat(&d.vol("v2.img")).0);
    assert!(info.allocation >= 8 * MIB, "{info:?}");

    // Delete: the file goes, the lookups fail with NO_STORAGE_VOL.
    vol.delete(0).expect("delete");
    assert!(!path.exists());
    let e = expect_code(
        StorageVol::lookup_by_name(&pool, "v1.qcow2"),
        VIR_ERR_NO_STORAGE_VOL,
        "lookup deleted",
    );
    assert_eq!(e.domain().to_raw(), VIR_FROM_STORAGE);
    assert_eq!(
        e.message(),
        "Storage volume not found: no storage vol with matching name 'v1.qcow2'"
    );
    expect_code(
        StorageVol::lookup_by_key(&conn, path_str),
        VIR_ERR_NO_STORAGE_VOL,
        "lookup by key",
    );
    expect_code(
        StorageVol::lookup_by_path(&conn, path_str),
        VIR_ERR_NO_STORAGE_VOL,
        "lookup by path",
    );
    // The stale handle: info and a second delete fail the same way.
    expect_code(vol.get_info(), VIR_ERR_NO_STORAGE_VOL, "info of deleted");
    expect_code(vol.delete(0), VIR_ERR_NO_STORAGE_VOL, "delete twice");
    assert_eq!(pool.num_of_volumes().unwrap(), 1);
}

#[test]
fn create_flags_and_errors_carry_libvirt_codes() {
    if !have("qemu-img") {
        return;
    }
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    let pool = conn.pool("default");

    let xml = vol_xml("dup.qcow2", 64 * MIB, None, "qcow2");
    StorageVol::create_xml(&pool, &xml, 0).expect("create");
    let before = std::fs::read(d.vol("dup.qcow2")).unwrap();
    let e = expect_code(
        StorageVol::create_xml(&pool, &xml, 0),
        VIR_ERR_STORAGE_VOL_EXIST,
        "create twice",
    );
    assert_eq!(e.message(), "storage volume 'dup.qcow2' exists already");
    assert_eq!(
        std::fs::read(d.vol("dup.qcow2")).unwrap(),
        before,
        "the existing volume is untouched"
    );

    // PREALLOC_METADATA with allocation = capacity: falloc, as libvirt does it.
    let xml = vol_xml("pm.qcow2", 64 * MIB, Some(64 * MIB), "qcow2");
    let vol = StorageVol::create_xml(&pool, &xml, sys::VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA)
        .expect("create with PREALLOC_METADATA");
    assert_check_clean(&d.vol("pm.qcow2"));
    let info = vol.get_info().unwrap();
    assert_eq!(info.allocation, stat(&d.vol("pm.qcow2")).0);
    assert!(info.allocation > 64 * MIB, "falloc: {info:?}");

    // Unknown flag bits: INVALID_ARG, nothing created.
    expect_code(
        StorageVol::create_xml(&pool, &vol_xml("f.qcow2", MIB, None, "qcow2"), 0x80),
        VIR_ERR_INVALID_ARG,
        "unknown create flag",
    );
    assert!(!d.vol("f.qcow2").exists());

    // Malformed XML is refused, nothing created.
    assert!(StorageVol::create_xml(&pool, "<volume><name>x</name>", 0).is_err());
    assert!(!d.vol("x").exists());

    // qpoold runs no domains: the list is empty (what virt-manager needs to connect). A
    // procedure qpoold does not implement reaches the client as NO_SUPPORT ("unknown
    // procedure" mapped by the remote driver), and the connection stays usable.
    assert!(conn.list_all_domains(0).unwrap().is_empty(), "no domains");
    let e = expect_code(conn.num_of_domains(), VIR_ERR_NO_SUPPORT, "num of domains");
    assert!(e.message().contains("unknown procedure"), "{e}");
    expect_code(
        conn.get_sys_info(0),
        VIR_ERR_NO_SUPPORT,
        "sysinfo (as libvirtd's storage driver)",
    );
    assert_eq!(pool.num_of_volumes().unwrap(), 2);
}

#[test]
fn create_from_copies_the_source_volume() {
    if !have("qemu-img") {
        return;
    }
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    let pool = conn.pool("default");
    let src = StorageVol::create_xml(&pool, &vol_xml("src.img", 4 * MIB, Some(0), "raw"), 0)
        .expect("create source");
    let data = pattern(MIB, 3);
    upload(&conn, &src, MIB, &data);

    // Same format (raw → raw).
    let copy =
        StorageVol::create_xml_from(&pool, &vol_xml("copy.img", 4 * MIB, None, "raw"), &src, 0)
            .expect("create from");
    assert_eq!(copy.get_name().unwrap(), "copy.img");
    assert_eq!(
        std::fs::read(d.vol("copy.img")).unwrap(),
        std::fs::read(d.vol("src.img")).unwrap()
    );
    assert_eq!(copy.get_info().unwrap().capacity, 4 * MIB);

    // Converted (raw → qcow2): the guest sees the same bytes.
    let conv = StorageVol::create_xml_from(
        &pool,
        &vol_xml("conv.qcow2", 4 * MIB, None, "qcow2"),
        &src,
        0,
    )
    .expect("create from, converting");
    assert_eq!(conv.get_info().unwrap().capacity, 4 * MIB);
    let conv_path = d.vol("conv.qcow2");
    assert_check_clean(&conv_path);
    assert!(common::qemu_compare(&d.vol("src.img"), &conv_path, false));

    // The source's own XML with only the name replaced works too (what vol-clone sends).
    let clone_xml = src
        .get_xml_desc(0)
        .unwrap()
        .replace("<name>src.img</name>", "<name>clone.img</name>");
    StorageVol::create_xml_from(&pool, &clone_xml, &src, 0).expect("clone");
    assert_eq!(
        std::fs::read(d.vol("clone.img")).unwrap(),
        std::fs::read(d.vol("src.img")).unwrap()
    );

    // Into an existing name: STORAGE_VOL_EXIST.
    // libvirt reports a copy onto a name in use as an internal error.
    expect_code(
        StorageVol::create_xml_from(&pool, &clone_xml, &src, 0),
        VIR_ERR_INTERNAL_ERROR,
        "clone onto an existing volume",
    );
}

#[test]
fn resize_grows_and_shrinks_only_with_the_flag() {
    if !have("qemu-img") {
        return;
    }
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    let pool = conn.pool("default");
    let vol =
        StorageVol::create_xml(&pool, &vol_xml("r.qcow2", GIB, None, "qcow2"), 0).expect("create");
    let path = d.vol("r.qcow2");

    vol.resize(2 * GIB, 0).expect("grow");
    assert_eq!(vol.get_info().unwrap().capacity, 2 * GIB);
    assert_eq!(qemu_info(&path)["virtual-size"], 2 * GIB);
    vol.resize(GIB, sys::VIR_STORAGE_VOL_RESIZE_DELTA)
        .expect("grow by a delta");
    assert_eq!(vol.get_info().unwrap().capacity, 3 * GIB);

    let e = expect_code(
        vol.resize(GIB, 0),
        VIR_ERR_INVALID_ARG,
        "shrink without the flag",
    );
    assert!(e.message().contains("shrink"), "{e}");
    assert_eq!(vol.get_info().unwrap().capacity, 3 * GIB);

    vol.resize(GIB, sys::VIR_STORAGE_VOL_RESIZE_SHRINK)
        .expect("shrink");
    assert_eq!(vol.get_info().unwrap().capacity, GIB);
    assert_eq!(qemu_info(&path)["virtual-size"], GIB);
    assert_check_clean(&path);

    // A raw volume grows with ALLOCATE: the new range is allocated.
    let raw = StorageVol::create_xml(&pool, &vol_xml("r.img", 4 * MIB, Some(0), "raw"), 0)
        .expect("create raw");
    raw.resize(8 * MIB, sys::VIR_STORAGE_VOL_RESIZE_ALLOCATE)
        .expect("grow raw with ALLOCATE");
    let info = raw.get_info().unwrap();
    assert_eq!(info.capacity, 8 * MIB);
    let (allocation, size) = stat(&d.vol("r.img"));
    assert_eq!(size, 8 * MIB);
    assert_eq!(info.allocation, allocation);
    assert!(
        allocation >= 4 * MIB,
        "the grown range is allocated: {allocation}"
    );
}

#[test]
fn wipe_and_wipe_pattern_zero_the_volume() {
    if !have("qemu-img") {
        return;
    }
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    let pool = conn.pool("default");
    let vol =
        StorageVol::create_xml(&pool, &vol_xml("w.img", 2 * MIB, None, "raw"), 0).expect("create");
    let path = d.vol("w.img");

    // virStorageVolWipe (165).
    upload(&conn, &vol, 0, &pattern(2 * MIB, 1));
    assert!(std::fs::read(&path).unwrap().iter().any(|&b| b != 0));
    vol.wipe(0).expect("wipe");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(u64::try_from(bytes.len()).unwrap(), 2 * MIB);
    assert!(bytes.iter().all(|&b| b == 0), "wiped to zeros");

    // virStorageVolWipePattern (259) with ZERO, as virsh sends it.
    upload(&conn, &vol, 0, &pattern(2 * MIB, 2));
    vol.wipe_pattern(sys::VIR_STORAGE_VOL_WIPE_ALG_ZERO, 0)
        .expect("wipe pattern zero");
    assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));
    assert_eq!(vol.get_info().unwrap().capacity, 2 * MIB);

    // A qcow2 volume wiped stays a valid image of the same capacity.
    let q = StorageVol::create_xml(&pool, &vol_xml("w.qcow2", 64 * MIB, None, "qcow2"), 0)
        .expect("create qcow2");
    q.wipe(0).expect("wipe qcow2");
    assert_check_clean(&d.vol("w.qcow2"));
    assert_eq!(q.get_info().unwrap().capacity, 64 * MIB);

    // An algorithm qpool does not run (scrub's NNSA): refused, the data stays.
    upload(&conn, &vol, 0, &pattern(2 * MIB, 3));
    assert!(
        vol.wipe_pattern(sys::VIR_STORAGE_VOL_WIPE_ALG_NNSA, 0)
            .is_err()
    );
    assert_eq!(std::fs::read(&path).unwrap(), pattern(2 * MIB, 3));
}

#[test]
fn upload_and_download_streams_round_trip() {
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    let pool = conn.pool("default");
    let len = 3 * MIB + 12_345;
    let vol =
        StorageVol::create_xml(&pool, &vol_xml("s.img", len, Some(0), "raw"), 0).expect("create");
    let path = d.vol("s.img");

    // Whole volume up, whole volume down.
    let data = pattern(len, 9);
    upload(&conn, &vol, 0, &data);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(download(&conn, &vol, 0, 0), data);

    // A window: offset + length both ways.
    let window = pattern(700_000, 4);
    upload(&conn, &vol, 1_000_000, &window);
    let mut expected = data.clone();
    expected[1_000_000..1_700_000].copy_from_slice(&window);
    assert_eq!(std::fs::read(&path).unwrap(), expected);
    assert_eq!(download(&conn, &vol, 1_000_000, 700_000), window);
    assert_eq!(
        download(&conn, &vol, len - 10, 0),
        expected[expected.len() - 10..]
    );

    // The connection still answers calls after the streams, and the file size is unchanged.
    assert_eq!(vol.get_info().unwrap().capacity, len);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);

    // Several streams on several connections at once.
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            let uri = d.uri();
            std::thread::spawn(move || {
                let conn = Conn::open(&uri);
                let pool = conn.pool("default");
                let name = format!("par{i}.img");
                let vol = StorageVol::create_xml(&pool, &vol_xml(&name, MIB, Some(0), "raw"), 0)
                    .expect("create");
                let data = pattern(MIB, i);
                upload(&conn, &vol, 0, &data);
                assert_eq!(download(&conn, &vol, 0, 0), data);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("stream thread");
    }
    for i in 0..4u8 {
        assert_eq!(
            std::fs::read(d.vol(&format!("par{i}.img"))).unwrap(),
            pattern(MIB, i)
        );
    }
}

#[test]
fn read_only_connections_read_but_every_change_is_denied_with_29() {
    let d = Daemon::start();
    {
        let rw = Conn::open(&d.uri());
        let pool = rw.pool("default");
        StorageVol::create_xml(&pool, &vol_xml("ro.img", MIB, None, "raw"), 0).expect("create");
    }
    let before = std::fs::read(d.vol("ro.img")).unwrap();
    // The read-only socket (forced read-only), and VIR_CONNECT_RO on the read-write socket.
    for (what, conn) in [
        ("read-only socket", Conn::open(&d.uri_ro())),
        ("VIR_CONNECT_RO", Conn::open_read_only(&d.uri())),
    ] {
        let pool = conn.pool("default");
        // Reads work.
        assert_eq!(
            pool.get_info().unwrap().state,
            sys::VIR_STORAGE_POOL_RUNNING
        );
        assert!(
            pool.get_xml_desc(0)
                .unwrap()
                .contains("<name>default</name>")
        );
        assert_eq!(pool.list_all_volumes(0).unwrap().len(), 1);
        let vol = StorageVol::lookup_by_name(&pool, "ro.img").unwrap();
        assert_eq!(vol.get_info().unwrap().capacity, MIB);
        assert!(vol.get_xml_desc(0).unwrap().contains("<name>ro.img</name>"));
        assert_eq!(vol.get_path().unwrap(), d.vol("ro.img").to_str().unwrap());

        // Every change: OPERATION_DENIED with libvirt's message.
        let denied = |r: Result<(), Error>, api: &str| {
            let e = expect_code(r, VIR_ERR_OPERATION_DENIED, &format!("{what}: {api}"));
            assert_eq!(
                e.message(),
                format!("operation forbidden: read only access prevents {api}"),
                "{what}"
            );
        };
        denied(
            StorageVol::create_xml(&pool, &vol_xml("new.img", MIB, None, "raw"), 0).map(drop),
            "virStorageVolCreateXML",
        );
        denied(
            StorageVol::create_xml_from(&pool, &vol_xml("c.img", MIB, None, "raw"), &vol, 0)
                .map(drop),
            "virStorageVolCreateXMLFrom",
        );
        denied(vol.delete(0), "virStorageVolDelete");
        denied(vol.wipe(0), "virStorageVolWipe");
        denied(
            vol.wipe_pattern(sys::VIR_STORAGE_VOL_WIPE_ALG_ZERO, 0),
            "virStorageVolWipePattern",
        );
        denied(vol.resize(2 * MIB, 0).map(drop), "virStorageVolResize");
        denied(pool.refresh(0).map(drop), "virStoragePoolRefresh");
        denied(
            pool.set_autostart(false).map(drop),
            "virStoragePoolSetAutostart",
        );
        denied(pool.destroy(), "virStoragePoolDestroy");
        let stream = Stream::new(&conn, 0).unwrap();
        denied(vol.upload(&stream, 0, 0, 0), "virStorageVolUpload");
        let stream = Stream::new(&conn, 0).unwrap();
        denied(vol.download(&stream, 0, 0, 0), "virStorageVolDownload");
        // The connection survives its refusals.
        assert!(pool.is_active().unwrap());
    }
    assert_eq!(std::fs::read(d.vol("ro.img")).unwrap(), before);
    assert!(!d.vol("new.img").exists() && !d.vol("c.img").exists());
    let rw = Conn::open(&d.uri());
    assert!(rw.pool("default").get_autostart().unwrap());
}

// ---- storage pool events (virConnectStoragePoolEventRegisterAny) ------------------------

/// Starts libvirt's default event loop once for this test process, in a thread of its own
/// (events are delivered from it). Connections opened afterwards use it.
fn event_loop() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        virt::event::event_register_default_impl().expect("register the event loop");
        std::thread::spawn(|| {
            loop {
                if virt::event::event_run_default_impl().is_err() {
                    return;
                }
            }
        });
    });
}

/// What a callback saw: (event ID, pool name, lifecycle event).
type Seen = (u32, String, i32);

/// Sender handed to the callbacks as `opaque`.
struct Sink(mpsc::Sender<Seen>);

/// The pool name of a callback's pool argument.
///
/// # Safety
/// `pool` must be the valid pool pointer libvirt passed to the callback.
unsafe fn pool_name(pool: sys::virStoragePoolPtr) -> String {
    // SAFETY: libvirt passes a valid pool; the returned string belongs to the pool and
    // lives as long as it does.
    let name = unsafe { sys::virStoragePoolGetName(pool) };
    assert!(!name.is_null());
    // SAFETY: a NUL-terminated string owned by `pool`, copied before returning.
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

unsafe extern "C" fn on_refresh(
    _conn: sys::virConnectPtr,
    pool: sys::virStoragePoolPtr,
    opaque: *mut libc::c_void,
) {
    // SAFETY: `opaque` is the `Sink` registered with this callback, freed only by
    // `free_sink` after the registration ends; `pool` comes from libvirt.
    let (sink, name) = unsafe { (&*opaque.cast::<Sink>(), pool_name(pool)) };
    let _ = sink
        .0
        .send((sys::VIR_STORAGE_POOL_EVENT_ID_REFRESH, name, -1));
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    pool: sys::virStoragePoolPtr,
    event: libc::c_int,
    _detail: libc::c_int,
    opaque: *mut libc::c_void,
) {
    // SAFETY: as in `on_refresh`.
    let (sink, name) = unsafe { (&*opaque.cast::<Sink>(), pool_name(pool)) };
    let _ = sink
        .0
        .send((sys::VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, name, event));
}

unsafe extern "C" fn free_sink(opaque: *mut libc::c_void) {
    // SAFETY: `opaque` came from `Box::into_raw` in `register` and libvirt frees it once.
    drop(unsafe { Box::from_raw(opaque.cast::<Sink>()) });
}

/// Registers a callback for `event_id` (on `pool`, or all pools); returns the callback ID.
fn register(conn: &Conn, pool: Option<&StoragePool>, event_id: u32, tx: mpsc::Sender<Seen>) -> i32 {
    let opaque = Box::into_raw(Box::new(Sink(tx))).cast::<libc::c_void>();
    // SAFETY: the event API takes the generic callback type; libvirt calls it with the
    // signature of the event ID, which is the one each function here has.
    let cb: sys::virConnectStoragePoolEventGenericCallback = unsafe {
        if event_id == sys::VIR_STORAGE_POOL_EVENT_ID_REFRESH {
            Some(on_refresh)
        } else {
            Some(std::mem::transmute::<
                unsafe extern "C" fn(
                    sys::virConnectPtr,
                    sys::virStoragePoolPtr,
                    libc::c_int,
                    libc::c_int,
                    *mut libc::c_void,
                ),
                unsafe extern "C" fn(sys::virConnectPtr, sys::virStoragePoolPtr, *mut libc::c_void),
            >(on_lifecycle))
        }
    };
    let pool_ptr = pool.map_or(std::ptr::null_mut(), StoragePool::as_ptr);
    // SAFETY: valid connection and (optional) pool pointers; libvirt owns `opaque` from here
    // on and releases it with `free_sink`.
    let id = unsafe {
        sys::virConnectStoragePoolEventRegisterAny(
            conn.as_ptr(),
            pool_ptr,
            i32::try_from(event_id).unwrap(),
            cb,
            opaque,
            Some(free_sink),
        )
    };
    assert!(id >= 0, "register event: {}", Error::last_error());
    id
}

fn deregister(conn: &Conn, id: i32) {
    // SAFETY: a valid connection and a callback ID it returned.
    let rc = unsafe { sys::virConnectStoragePoolEventDeregisterAny(conn.as_ptr(), id) };
    assert_eq!(rc, 0, "deregister event: {}", Error::last_error());
}

/// The next event, within a generous deadline (events come from another thread).
fn next_event(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("an event within the deadline")
}

#[test]
fn storage_pool_events_refresh_and_lifecycle_register_and_deregister() {
    event_loop();
    let d = Daemon::start();
    let conn = Conn::open(&d.uri());
    let pool = conn.pool("default");

    // REFRESH on the default pool.
    let (tx, rx) = mpsc::channel();
    let refresh_id = register(
        &conn,
        Some(&pool),
        sys::VIR_STORAGE_POOL_EVENT_ID_REFRESH,
        tx,
    );
    pool.refresh(0).expect("refresh");
    assert_eq!(
        next_event(&rx),
        (sys::VIR_STORAGE_POOL_EVENT_ID_REFRESH, "default".into(), -1)
    );

    // LIFECYCLE on all pools: define, start, stop, undefine of a second pool.
    let (tx, lifecycle) = mpsc::channel();
    let lifecycle_id = register(&conn, None, sys::VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, tx);
    let target = d.scratch().join("second");
    std::fs::create_dir(&target).unwrap();
    let xml = format!(
        "<pool type='dir'><name>second</name><target><path>{}</path></target></pool>",
        target.display()
    );
    let second = StoragePool::define_xml(&conn, &xml, 0).expect("define");
    second.create(0).expect("start");
    assert!(second.is_active().unwrap());
    second.destroy().expect("stop");
    second.undefine().expect("undefine");
    let lc = |event: u32| {
        (
            sys::VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
            String::from("second"),
            i32::try_from(event).unwrap(),
        )
    };
    for event in [
        sys::VIR_STORAGE_POOL_EVENT_DEFINED,
        sys::VIR_STORAGE_POOL_EVENT_STARTED,
        sys::VIR_STORAGE_POOL_EVENT_STOPPED,
        sys::VIR_STORAGE_POOL_EVENT_UNDEFINED,
    ] {
        assert_eq!(next_event(&lifecycle), lc(event));
    }

    // After deregistering, a refresh reaches nobody: the sinks are freed (their channels
    // close) and nothing else arrived.
    deregister(&conn, refresh_id);
    deregister(&conn, lifecycle_id);
    pool.refresh(0).expect("refresh again");
    // A call on the same connection after the refresh: any event for it would have been
    // sent before this reply.
    assert!(pool.is_active().unwrap());
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
    assert!(matches!(
        lifecycle.recv_timeout(Duration::from_secs(10)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
}
