//! `qpool vol-clone` and `vol-create-from` against qemu-img: copies are `qemu-img compare`
//! identical to their source (strictly, allocation included, for same-format copies),
//! conversions go through qpool's own qcow2 reader (compressed clusters, backing chains)
//! and pass `qemu-img check`, and the new XML's options are what `qemu-img info` shows.

mod common;

use common::{
    TempPool, alloc_and_size, assert_check_clean, have, qemu_compare, qemu_info, qemu_io, run,
};

fn qemu_img(args: &[&str]) {
    let out = run("qemu-img", args);
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Non-zero, compressible data written at a few places of a qcow2 volume.
const WRITES: &[&str] = &[
    "write -P 0x11 0 1M",
    "write -P 0x22 5M 100k",
    "write -P 0x33 100M 64k",
];

#[test]
fn vol_clone_of_qcow2_is_a_byte_identical_copy_in_every_mode() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    for mode in ["off", "metadata", "falloc"] {
        let src = format!("{mode}.qcow2");
        let xml = format!(
            "<volume><name>{src}</name><capacity unit='M'>256</capacity><target><format type='qcow2'/><qpool:preallocation xmlns:qpool='urn:qpool:volume:1' mode='{mode}'/></target></volume>"
        );
        let file = pool.write_file(&format!("{mode}.xml"), &xml);
        pool.ok(&["vol-create", file.to_str().unwrap()]);
        qemu_io(&pool.vol(&src), "qcow2", WRITES);
        let copy = format!("copy-{src}");
        let out = pool.ok(&["vol-clone", &src, &copy]);
        assert_eq!(out, format!("Vol {copy} cloned from {src}\n\n"));
        assert_check_clean(&pool.vol(&copy));
        // Strict: reserved-but-unwritten extents of the source (qemu-io's copy-on-write
        // tails, falloc's data area) are reserved in the copy too.
        assert!(
            qemu_compare(&pool.vol(&src), &pool.vol(&copy), true),
            "{mode}: compare -s"
        );
        assert_eq!(
            std::fs::read(pool.vol(&src)).unwrap(),
            std::fs::read(pool.vol(&copy)).unwrap(),
            "{mode}: bytes"
        );
        let (src_alloc, src_len) = alloc_and_size(&pool.vol(&src));
        let (copy_alloc, copy_len) = alloc_and_size(&pool.vol(&copy));
        assert_eq!(copy_len, src_len, "{mode}: size");
        assert!(
            copy_alloc <= src_alloc + (1 << 20),
            "{mode}: holes kept ({copy_alloc} vs {src_alloc})"
        );
    }
}

#[test]
fn vol_clone_with_prealloc_metadata_preallocates_a_thin_source() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "thin.qcow2", "256M", "--format", "qcow2"]);
    qemu_io(&pool.vol("thin.qcow2"), "qcow2", WRITES);
    pool.ok(&[
        "vol-clone",
        "thin.qcow2",
        "pre.qcow2",
        "--prealloc-metadata",
    ]);
    let copy = pool.vol("pre.qcow2");
    assert_check_clean(&copy);
    assert!(qemu_compare(&pool.vol("thin.qcow2"), &copy, false));
    // Metadata preallocation maps every cluster: the file spans the whole capacity.
    assert!(alloc_and_size(&copy).1 >= 256 << 20);
    let twin = pool.scratch().join("twin.qcow2");
    qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        "-o",
        "preallocation=metadata",
        pool.vol("thin.qcow2").to_str().unwrap(),
        twin.to_str().unwrap(),
    ]);
    assert!(qemu_compare(&copy, &twin, false));
}

#[test]
fn vol_create_from_converts_between_formats_and_options() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "src.qcow2", "128M", "--format", "qcow2"]);
    qemu_io(&pool.vol("src.qcow2"), "qcow2", &WRITES[..2]);
    // (case, target XML inside <volume>, input volume, expected qemu-img info fields)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "qcow2-to-raw",
            "<capacity unit='M'>128</capacity><allocation>0</allocation><target><format type='raw'/></target>",
            "src.qcow2",
            &[("format", "raw")],
        ),
        (
            "qcow2-to-v2-4k",
            "<capacity unit='M'>128</capacity><target><format type='qcow2'/><compat>0.10</compat><clusterSize>4096</clusterSize></target>",
            "src.qcow2",
            &[("format", "qcow2"), ("cluster-size", "4096")],
        ),
        (
            "qcow2-to-bigger-extl2",
            "<capacity unit='M'>512</capacity><target><format type='qcow2'/><features><extended_l2/><lazy_refcounts/></features></target>",
            "src.qcow2",
            &[("format", "qcow2"), ("virtual-size", "536870912")],
        ),
        (
            "qcow2-to-falloc",
            "<capacity unit='M'>128</capacity><allocation unit='M'>128</allocation><target><format type='qcow2'/><clusterSize>2097152</clusterSize></target>",
            "src.qcow2",
            &[("cluster-size", "2097152")],
        ),
        (
            "raw-to-qcow2-512",
            "<capacity unit='M'>128</capacity><target><format type='qcow2'/><clusterSize>512</clusterSize></target>",
            "qcow2-to-raw.img",
            &[("format", "qcow2"), ("cluster-size", "512")],
        ),
    ];
    for &(case, body, input, fields) in cases {
        let name = if case.ends_with("raw") {
            format!("{case}.img")
        } else {
            format!("{case}.qcow2")
        };
        let xml = format!("<volume><name>{name}</name>{body}</volume>");
        let file = pool.write_file(&format!("{case}.xml"), &xml);
        let out = pool.ok(&["vol-create-from", file.to_str().unwrap(), input]);
        assert_eq!(
            out,
            format!("Vol {name} created from input vol {input}\n\n"),
            "{case}"
        );
        let vol = pool.vol(&name);
        let info = qemu_info(&vol);
        for (field, want) in fields {
            assert_eq!(
                info[*field].to_string().trim_matches('"'),
                *want,
                "{case}: {field}"
            );
        }
        if info["format"] == "qcow2" {
            assert_check_clean(&vol);
        }
        assert!(
            qemu_compare(&pool.vol("src.qcow2"), &vol, false),
            "{case}: compare"
        );
    }
}

#[test]
fn conversion_reads_compressed_clusters_and_backing_chains() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    let data = pool.scratch().join("data.raw");
    let mut bytes = Vec::new();
    for i in 0u32..(4 << 20) / 4 {
        bytes.extend_from_slice(&(i / 3).to_le_bytes());
    }
    std::fs::write(&data, &bytes).unwrap();
    qemu_img(&[
        "convert",
        "-c",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
        data.to_str().unwrap(),
        pool.vol("base.qcow2").to_str().unwrap(),
    ]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        pool.vol("top.qcow2").to_str().unwrap(),
    ]);
    qemu_io(&pool.vol("top.qcow2"), "qcow2", &["write -P 0x5a 1M 64k"]);
    let xml = "<volume><name>flat.qcow2</name><capacity unit='M'>4</capacity><target><format type='qcow2'/></target></volume>";
    let file = pool.write_file("flat.xml", xml);
    pool.ok(&["vol-create-from", file.to_str().unwrap(), "top.qcow2"]);
    let flat = pool.vol("flat.qcow2");
    assert_check_clean(&flat);
    assert!(
        qemu_info(&flat).get("backing-filename").is_none(),
        "the chain is flattened"
    );
    assert!(qemu_compare(&pool.vol("top.qcow2"), &flat, false));
}

#[test]
fn raw_clone_keeps_holes_and_raw_create_from_applies_the_allocation() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "r.img", "64M", "--allocation", "0"]);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(pool.vol("r.img"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[7u8; 1 << 20], 10 << 20).unwrap();
    file.sync_all().unwrap();
    pool.ok(&["vol-clone", "r.img", "c.img"]);
    assert_eq!(alloc_and_size(&pool.vol("c.img")), (1 << 20, 64 << 20));
    assert_eq!(
        std::fs::read(pool.vol("r.img")).unwrap(),
        std::fs::read(pool.vol("c.img")).unwrap()
    );
    let xml = "<volume><name>full.img</name><capacity unit='M'>96</capacity><allocation unit='M'>96</allocation></volume>";
    let xml_file = pool.write_file("full.xml", xml);
    pool.ok(&["vol-create-from", xml_file.to_str().unwrap(), "r.img"]);
    let (allocated, size) = alloc_and_size(&pool.vol("full.img"));
    assert_eq!((allocated, size), (96 << 20, 96 << 20));
    let content = std::fs::read(pool.vol("full.img")).unwrap();
    assert!(content[10 << 20..11 << 20].iter().all(|&b| b == 7));
    assert!(content[..10 << 20].iter().all(|&b| b == 0));
}

#[test]
fn clone_refusals_leave_the_pool_unchanged() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "a.img", "1M", "--allocation", "0"]);
    pool.ok(&["vol-create-as", "b.img", "1M", "--allocation", "0"]);
    let bad_xml = pool.write_file("bad.xml", "<volume><name>n.img</name><capacity>1</capacity><target><format type='vmdk'/></target></volume>");
    let cases: &[(&str, Vec<&str>, &str)] = &[
        (
            "unknown source",
            vec!["vol-clone", "nope", "x.img"],
            "no storage volume",
        ),
        (
            "existing target",
            vec!["vol-clone", "a.img", "b.img"],
            "already exists",
        ),
        (
            "bad new name",
            vec!["vol-clone", "a.img", "../x"],
            "invalid volume name",
        ),
        (
            "reflink on ext4 or tmpfs",
            vec!["vol-clone", "a.img", "r.img", "--reflink"],
            "reflink",
        ),
        (
            "bad format in XML",
            vec!["vol-create-from", bad_xml.to_str().unwrap(), "a.img"],
            "unsupported volume format",
        ),
    ];
    for (case, args, expected) in cases {
        let before = pool.listing();
        let out = pool.qpool(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if *case == "reflink on ext4 or tmpfs" && out.status.success() {
            // A filesystem with reflinks (btrfs, XFS): then the copy must be exact.
            assert_eq!(
                std::fs::read(pool.vol("a.img")).unwrap(),
                std::fs::read(pool.vol("r.img")).unwrap()
            );
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{case}: {stderr}"
        );
        assert_eq!(pool.listing(), before, "{case}: the pool changed");
    }
}
