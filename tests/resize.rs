//! `qpool vol-resize` against qemu-img: every grown or shrunk image passes `qemu-img check`,
//! `qemu-img info` shows the new size, and `qemu-img compare` finds it identical (strictly,
//! allocation state included, where the modes match) to a twin that `qemu-img create` made
//! and `qemu-img resize` resized after the same guest writes. Every refusal leaves the file
//! byte-identical.

mod common;

use std::path::Path;

use common::{
    TempPool, alloc_and_size, assert_check_clean, have, qemu_compare, qemu_info, qemu_io, run,
};

const GIB: u64 = 1 << 30;

fn sha256(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Creates `name` with qpool in the given mode and its qemu-img twin, with the same writes.
fn pair(pool: &TempPool, name: &str, size: u64, opts: &str, mode: &str, writes: &[&str]) {
    let xml = format!(
        "<volume><name>{name}</name><capacity>{size}</capacity><target><format type='qcow2'/>{}<qpool:preallocation xmlns:qpool='urn:qpool:volume:1' mode='{mode}'/></target></volume>",
        qcow2_target_extra(opts)
    );
    let file = pool.write_file(&format!("{name}.xml"), &xml);
    pool.ok(&["vol-create", file.to_str().unwrap()]);
    let twin = pool.scratch().join(format!("twin-{name}"));
    let options = if opts.is_empty() {
        format!("preallocation={mode}")
    } else {
        format!("preallocation={mode},{opts}")
    };
    common::qemu_create(&twin, &options, size);
    if !writes.is_empty() {
        qemu_io(&pool.vol(name), "qcow2", writes);
        qemu_io(&twin, "qcow2", writes);
    }
}

/// libvirt XML for the qemu-img options the tests use.
fn qcow2_target_extra(opts: &str) -> String {
    let mut out = String::new();
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = opt.split_once('=').unwrap();
        match k {
            "cluster_size" => out.push_str(&format!("<clusterSize>{v}</clusterSize>")),
            "compat" => out.push_str(&format!("<compat>{v}</compat>")),
            "extended_l2" => out.push_str("<features><extended_l2/></features>"),
            other => panic!("option {other} not mapped"),
        }
    }
    out
}

fn qemu_resize(path: &Path, mode: &str, size: &str) {
    let pre = format!("--preallocation={mode}");
    let mut args = vec!["resize", "-q", "-f", "qcow2"];
    if mode != "off" {
        args.push(&pre);
    }
    args.push(path.to_str().unwrap());
    args.push(size);
    let out = run("qemu-img", &args);
    assert!(
        out.status.success(),
        "qemu-img resize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn qcow2_grow_matches_qemu_img_resize_in_every_mode() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    // (case, size, options, mode, new size)
    let cases: &[(&str, u64, &str, &str, &str)] = &[
        ("off-64k", GIB + 512, "", "off", "3G"),
        ("metadata-64k", GIB + 512, "", "metadata", "3G"),
        ("falloc-64k", GIB, "", "falloc", "2G"),
        ("off-v2", GIB, "compat=0.10", "off", "5G"),
        (
            "metadata-4k",
            64 << 20,
            "cluster_size=4096",
            "metadata",
            "200M",
        ),
        ("off-512", 2 << 20, "cluster_size=512", "off", "40M"),
        (
            "metadata-extl2",
            64 << 20,
            "extended_l2=on,cluster_size=32768",
            "metadata",
            "100M",
        ),
    ];
    for &(case, size, opts, mode, new_size) in cases {
        let name = format!("{case}.qcow2");
        pair(
            &pool,
            &name,
            size,
            opts,
            mode,
            &["write -P 0x5a 0 64k", "write -P 0x11 1M 4k"],
        );
        pool.ok(&["vol-resize", &name, new_size]);
        let twin = pool.scratch().join(format!("twin-{name}"));
        qemu_resize(&twin, mode, new_size);
        let vol = pool.vol(&name);
        assert_check_clean(&vol);
        assert_eq!(
            qemu_info(&vol)["virtual-size"],
            qemu_info(&twin)["virtual-size"],
            "{case}: virtual size"
        );
        assert!(qemu_compare(&vol, &twin, false), "{case}: compare");
        assert!(qemu_compare(&vol, &twin, true), "{case}: compare -s");
        std::fs::remove_file(&vol).unwrap();
        std::fs::remove_file(&twin).unwrap();
    }
}

#[test]
fn qcow2_grow_past_the_l1_cluster_moves_the_l1_table() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    // 512-byte clusters: one L1 cluster holds 64 entries of 32 KiB each = 2 MiB.
    pair(&pool, "l1.qcow2", 1 << 20, "cluster_size=512", "off", &[]);
    let before = qemu_info(&pool.vol("l1.qcow2"));
    pool.ok(&["vol-resize", "l1.qcow2", "64M"]);
    let vol = pool.vol("l1.qcow2");
    assert_check_clean(&vol);
    let after = qemu_info(&vol);
    assert_eq!(after["virtual-size"], 64 << 20);
    assert_ne!(before["virtual-size"], after["virtual-size"]);
    let twin = pool.scratch().join("twin-l1.qcow2");
    qemu_resize(&twin, "off", "64M");
    assert!(qemu_compare(&vol, &twin, true));
}

#[test]
fn qcow2_grow_with_allocate_needing_a_bigger_refcount_table_stays_clean() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    // 512-byte clusters with 64-bit refcounts: 64 clusters per refcount block, so 32 MiB of
    // new data needs ~1000 refcount blocks, far more than one table cluster (64 entries).
    let xml = "<volume><name>rt.qcow2</name><capacity>1048576</capacity><target><format type='qcow2'/><clusterSize>512</clusterSize><qpool:refcount xmlns:qpool='urn:qpool:volume:1' bits='64'/></target></volume>";
    let file = pool.write_file("rt.xml", xml);
    pool.ok(&["vol-create", file.to_str().unwrap()]);
    pool.ok(&["vol-resize", "rt.qcow2", "32M", "--allocate"]);
    let vol = pool.vol("rt.qcow2");
    assert_check_clean(&vol);
    assert_eq!(qemu_info(&vol)["virtual-size"], 32 << 20);
    let (allocated, _) = alloc_and_size(&vol);
    assert!(
        allocated >= 31 << 20,
        "the new area is allocated: {allocated}"
    );
}

#[test]
fn qcow2_grow_of_an_overlay_hides_the_larger_backing_image() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    let base = pool.vol("base.qcow2");
    common::qemu_create(&base, "cluster_size=65536", 4 << 20);
    qemu_io(&base, "qcow2", &["write -P 0x77 0 4M"]);
    pool.ok(&[
        "vol-create-as",
        "top.qcow2",
        "1M",
        "--format",
        "qcow2",
        "--backing-vol",
        "base.qcow2",
        "--backing-vol-format",
        "qcow2",
    ]);
    let twin = pool.scratch().join("twin-top.qcow2");
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            base.to_str().unwrap(),
            "-F",
            "qcow2",
            twin.to_str().unwrap(),
            "1M",
        ],
    );
    assert!(out.status.success());
    pool.ok(&["vol-resize", "top.qcow2", "8M"]);
    qemu_resize(&twin, "off", "8M");
    let vol = pool.vol("top.qcow2");
    assert_check_clean(&vol);
    // The area 1M..4M must read as zeros, not as the backing image's 0x77.
    assert!(qemu_compare(&vol, &twin, false));
    let raw = pool.scratch().join("top.raw");
    let out = run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            vol.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let bytes = std::fs::read(&raw).unwrap();
    assert!(bytes[..1 << 20].iter().all(|&b| b == 0x77));
    assert!(bytes[1 << 20..].iter().all(|&b| b == 0));
}

#[test]
fn qcow2_shrink_without_data_past_the_end_changes_only_the_size() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    pair(
        &pool,
        "s.qcow2",
        4 * GIB,
        "",
        "off",
        &["write -P 0x5a 0 1M"],
    );
    pool.ok(&["vol-resize", "s.qcow2", "1G", "--shrink"]);
    let vol = pool.vol("s.qcow2");
    assert_check_clean(&vol);
    assert_eq!(qemu_info(&vol)["virtual-size"], GIB);
    let twin = pool.scratch().join("twin-s.qcow2");
    let out = run(
        "qemu-img",
        &["resize", "-q", "--shrink", twin.to_str().unwrap(), "1G"],
    );
    assert!(out.status.success());
    assert!(qemu_compare(&vol, &twin, true));
}

#[test]
fn qcow2_shrink_by_delta_with_a_negative_size() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "d.qcow2", "3G", "--format", "qcow2"]);
    let out = pool.ok(&["vol-resize", "d.qcow2", "-1G", "--shrink"]);
    assert_eq!(
        out,
        "Size of volume 'd.qcow2' successfully changed by 1G\n\n"
    );
    assert_eq!(qemu_info(&pool.vol("d.qcow2"))["virtual-size"], 2 * GIB);
    let out = pool.ok(&["vol-resize", "d.qcow2", "+1G", "--delta"]);
    assert_eq!(
        out,
        "Size of volume 'd.qcow2' successfully changed by +1G\n\n"
    );
    assert_eq!(qemu_info(&pool.vol("d.qcow2"))["virtual-size"], 3 * GIB);
    assert_check_clean(&pool.vol("d.qcow2"));
}

#[test]
fn raw_grow_is_sparse_and_allocate_reserves_the_whole_file_like_libvirt() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "r.img", "1M", "--allocation", "0"]);
    pool.ok(&["vol-resize", "r.img", "64M"]);
    assert_eq!(alloc_and_size(&pool.vol("r.img")), (0, 64 << 20));
    pool.ok(&["vol-resize", "r.img", "96M", "--allocate"]);
    let (allocated, size) = alloc_and_size(&pool.vol("r.img"));
    assert_eq!(size, 96 << 20);
    assert_eq!(
        allocated,
        96 << 20,
        "the whole file is reserved, as libvirt's posix_fallocate(0, capacity)"
    );
}

#[test]
fn raw_shrink_truncates_with_the_shrink_flag() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "r.img", "8M", "--allocation", "0"]);
    pool.ok(&["vol-resize", "r.img", "2M", "--shrink"]);
    assert_eq!(alloc_and_size(&pool.vol("r.img")).1, 2 << 20);
}

#[test]
fn raw_grow_without_fallocate_writes_zeros_and_keeps_the_data() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "r.img", "1M", "--allocation", "0"]);
    let vol = std::fs::OpenOptions::new()
        .write(true)
        .open(pool.vol("r.img"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&vol, &[9u8; 4096], 8192).unwrap();
    vol.sync_all().unwrap();
    let out = pool.qpool_env(
        &["vol-resize", "r.img", "9M", "--allocate"],
        &[("QPOOL_NO_FALLOCATE", "1")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (allocated, size) = alloc_and_size(&pool.vol("r.img"));
    assert_eq!((allocated, size), (9 << 20, 9 << 20));
    let content = std::fs::read(pool.vol("r.img")).unwrap();
    assert!(
        content[8192..12288].iter().all(|&b| b == 9),
        "the data is kept"
    );
    assert!(content[..8192].iter().all(|&b| b == 0));
}

#[test]
fn refused_resizes_leave_the_file_byte_identical() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    pair(&pool, "q.qcow2", GIB, "", "off", &["write -P 0x5a 900M 4k"]);
    pool.ok(&["vol-create-as", "r.img", "4M", "--allocation", "0"]);
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "smaller without --shrink",
            &["vol-resize", "q.qcow2", "512M"],
            "unless shrink flag",
        ),
        (
            "negative without --shrink",
            &["vol-resize", "q.qcow2", "-1M"],
            "negative size requires --shrink",
        ),
        (
            "data past the new end",
            &["vol-resize", "q.qcow2", "512M", "--shrink"],
            "allocated at offset",
        ),
        (
            "garbage size",
            &["vol-resize", "q.qcow2", "12Q"],
            "malformed size",
        ),
        (
            "larger than the disk",
            &["vol-resize", "r.img", "100T", "--allocate"],
            "Not enough space left in storage pool",
        ),
        (
            "unknown volume",
            &["vol-resize", "nope", "2G"],
            "no storage volume",
        ),
        ("l1 limit", &["vol-resize", "q.qcow2", "8E"], "too large"),
    ];
    for &(case, args, expected) in cases {
        let before = (sha256(&pool.vol("q.qcow2")), sha256(&pool.vol("r.img")));
        let listing = pool.listing();
        let out = pool.qpool(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{case}: {stderr}"
        );
        assert_eq!(
            (sha256(&pool.vol("q.qcow2")), sha256(&pool.vol("r.img"))),
            before,
            "{case}: a file changed"
        );
        assert_eq!(pool.listing(), listing, "{case}: the pool changed");
    }
}

#[test]
fn qcow2_grow_is_byte_identical_to_qemu_img_resize() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "g.qcow2", "1G", "--format", "qcow2"]);
    let twin = pool.scratch().join("twin.qcow2");
    common::qemu_create(&twin, "cluster_size=65536", GIB);
    // Each step grows the L1 table: qemu moves it to the first free clusters and frees the
    // old ones, and so does qpool.
    for size in ["2G", "600G", "3T"] {
        pool.ok(&["vol-resize", "g.qcow2", size]);
        qemu_resize(&twin, "off", size);
        assert_eq!(
            std::fs::read(pool.vol("g.qcow2")).unwrap(),
            std::fs::read(&twin).unwrap(),
            "{size}: bytes differ from qemu-img resize"
        );
        assert_check_clean(&pool.vol("g.qcow2"));
    }
}
