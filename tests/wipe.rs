//! `qpool vol-wipe`: the old bytes are gone from the file (searched for afterwards), a wiped
//! qcow2 is still a valid, empty image of the same size and options (`qemu-img check`,
//! `info`, `compare -s` with a fresh `qemu-img create` twin), and refusals change nothing.

mod common;

use std::path::Path;

use common::{TempPool, alloc_and_size, assert_check_clean, have, qemu_compare, qemu_info, run};

const SECRET: &[u8] = b"QPOOL-WIPE-SECRET-7f3a9c";

/// A raw file of `len` bytes whose first MiB and last MiB repeat the secret.
fn secret_raw(path: &Path, len: u64) {
    let mut data = vec![0u8; usize::try_from(len).unwrap()];
    for window in [0..(1 << 20), data.len() - (1 << 20)..data.len()] {
        for (i, b) in data[window].iter_mut().enumerate() {
            *b = SECRET[i % SECRET.len()];
        }
    }
    std::fs::write(path, data).unwrap();
}

fn contains_secret(path: &Path) -> bool {
    let data = std::fs::read(path).unwrap();
    data.windows(SECRET.len()).any(|w| w == SECRET)
}

fn sha256(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn qcow2_wipe_leaves_an_empty_image_with_the_same_options() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    let source = pool.scratch().join("secret.raw");
    secret_raw(&source, 8 << 20);
    // (case, qemu-img -o options, preallocation mode of the image)
    let cases: &[(&str, &str, &str)] = &[
        ("off-v3", "cluster_size=65536", "off"),
        ("metadata-v3", "preallocation=metadata", "metadata"),
        ("falloc-v3", "preallocation=falloc", "falloc"),
        (
            "off-v3-lazy-4k",
            "compat=1.1,lazy_refcounts=on,cluster_size=4096",
            "off",
        ),
        ("off-v2", "compat=0.10", "off"),
        ("extl2", "extended_l2=on,cluster_size=32768", "off"),
    ];
    for algorithm in ["zero", "trim", "random"] {
        for &(case, opts, mode) in cases {
            let name = format!("{case}-{algorithm}.qcow2");
            let vol = pool.vol(&name);
            let out = run(
                "qemu-img",
                &[
                    "convert",
                    "-O",
                    "qcow2",
                    "-o",
                    opts,
                    source.to_str().unwrap(),
                    vol.to_str().unwrap(),
                ],
            );
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                contains_secret(&vol),
                "{name}: the secret is in the image to begin with"
            );
            let before = qemu_info(&vol);
            let inode = std::fs::metadata(&vol)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap();

            let printed = pool.ok(&["vol-wipe", &name, "--algorithm", algorithm]);
            assert_eq!(printed, format!("Vol {name} wiped\n\n"));

            assert!(!contains_secret(&vol), "{name}: the secret survived");
            assert_check_clean(&vol);
            let after = qemu_info(&vol);
            for field in ["virtual-size", "cluster-size", "format"] {
                assert_eq!(after[field], before[field], "{name}: {field}");
            }
            assert_eq!(
                after["format-specific"]["data"], before["format-specific"]["data"],
                "{name}: format-specific data"
            );
            let inode_after = std::fs::metadata(&vol)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap();
            assert_eq!(inode, inode_after, "{name}: wiped in place");
            let twin = pool.scratch().join(format!("twin-{name}"));
            let size = before["virtual-size"].as_u64().unwrap();
            let twin_opts = if opts.contains("preallocation") {
                opts.to_string()
            } else {
                format!("{opts},preallocation={mode}")
            };
            common::qemu_create(&twin, &twin_opts, size);
            assert!(
                qemu_compare(&vol, &twin, true),
                "{name}: compare -s with a fresh twin"
            );
            std::fs::remove_file(&twin).unwrap();
            std::fs::remove_file(&vol).unwrap();
        }
    }
}

#[test]
fn qcow2_overlay_wipe_keeps_the_backing_file() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    let base = pool.vol("base.raw");
    secret_raw(&base, 4 << 20);
    let top = pool.vol("top.qcow2");
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            top.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let out = run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 0x42 0 1M",
            top.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    pool.ok(&["vol-wipe", "top.qcow2"]);
    assert_check_clean(&top);
    let info = qemu_info(&top);
    assert_eq!(info["backing-filename"], "base.raw");
    assert_eq!(info["backing-filename-format"], "raw");
    // The overlay's own data is gone: it reads through to the base again.
    assert!(qemu_compare(&top, &base, false));
}

#[test]
fn raw_wipe_zero_keeps_holes_and_removes_the_data() {
    let pool = TempPool::new();
    let vol = pool.vol("r.img");
    pool.ok(&["vol-create-as", "r.img", "16M", "--allocation", "0"]);
    let file = std::fs::OpenOptions::new().write(true).open(&vol).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&SECRET.repeat(1000), 5 << 20).unwrap();
    file.sync_all().unwrap();
    let (allocated_before, size) = alloc_and_size(&vol);
    pool.ok(&["vol-wipe", "r.img"]);
    assert!(!contains_secret(&vol));
    let (allocated_after, size_after) = alloc_and_size(&vol);
    assert_eq!(size_after, size);
    assert!(
        allocated_after <= allocated_before,
        "zero does not fill holes"
    );
    assert!(std::fs::read(&vol).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn raw_wipe_trim_frees_every_block() {
    let pool = TempPool::new();
    let vol = pool.vol("r.img");
    secret_raw(&vol, 8 << 20);
    pool.ok(&["vol-wipe", "r.img", "--algorithm", "trim"]);
    assert!(!contains_secret(&vol));
    assert_eq!(alloc_and_size(&vol), (0, 8 << 20));
}

#[test]
fn raw_wipe_random_overwrites_every_byte() {
    let pool = TempPool::new();
    let vol = pool.vol("r.img");
    pool.ok(&["vol-create-as", "r.img", "4M", "--allocation", "0"]);
    pool.ok(&["vol-wipe", "r.img", "--algorithm", "random"]);
    let data = std::fs::read(&vol).unwrap();
    assert_eq!(data.len(), 4 << 20);
    let zeros = data.iter().filter(|&&b| b == 0).count();
    assert!(
        zeros < data.len() / 100,
        "random data has few zero bytes: {zeros}"
    );
    assert_eq!(alloc_and_size(&vol).0, 4 << 20);
}

#[test]
fn unsupported_wipe_algorithms_are_refused_and_change_nothing() {
    let pool = TempPool::new();
    let vol = pool.vol("r.img");
    secret_raw(&vol, 2 << 20);
    let before = sha256(&vol);
    for algorithm in [
        "nnsa",
        "dod",
        "bsi",
        "gutmann",
        "schneier",
        "pfitzner7",
        "pfitzner33",
        "shred",
    ] {
        let out = pool.qpool(&["vol-wipe", "r.img", "--algorithm", algorithm]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{algorithm}");
        assert_eq!(stderr.lines().count(), 1, "{algorithm}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("qpool supports: zero, trim, random"),
            "{algorithm}: {stderr}"
        );
        assert_eq!(sha256(&vol), before, "{algorithm}: the volume changed");
    }
    let out = pool.qpool(&["vol-wipe", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}
