//! Hostile files and faults, through the `qpool` command: images qemu would refuse to open
//! read-write, damaged headers, hard links, volumes another process holds, full
//! filesystems, and kill -9 in the middle of data-moving work. The oracles are qemu-img
//! (check, info, resize), the kernel's lock table, and the filesystem's own accounting.

mod common;

use std::io::Write as _;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{QPOOL, TempPool, Tmpfs, alloc_and_size, have, qemu_info, run, sha256};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Exit status 1, nothing on stdout, one `error: ` line holding every word of `words`.
fn assert_refused(out: &Output, words: &[&str], label: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{label}: {stderr}");
    assert!(out.stdout.is_empty(), "{label}: stdout {:?}", out.stdout);
    assert_eq!(stderr.lines().count(), 1, "{label}: {stderr}");
    assert!(stderr.starts_with("error: "), "{label}: {stderr}");
    for w in words {
        assert!(stderr.contains(w), "{label}: {stderr:?} lacks {w:?}");
    }
}

/// Names in the pool that qpool keeps for itself (temporary files, journals).
fn leftovers(pool: &TempPool) -> Vec<String> {
    pool.listing()
        .into_iter()
        .filter(|n| n.starts_with(".qpool-"))
        .collect()
}

fn qemu_img_create(path: &Path, size: u64) {
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            path.to_str().unwrap(),
            &size.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-img check`'s verdict: exit 0 (clean) or 3 (leaked clusters only) is no corruption.
fn assert_no_corruption(path: &Path, label: &str) {
    let out = run(
        "qemu-img",
        &["check", "--output=json", path.to_str().unwrap()],
    );
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "{label}: qemu-img check exited {code:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
    assert_eq!(v["corruptions"].as_u64().unwrap_or(0), 0, "{label}: {v}");
}

/// Changes bytes of a file in place.
fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Waits (polling the condition, never a fixed sleep) until `done` holds; panics after a
/// generous bound so a broken test fails instead of hanging.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts `qpool --pool-dir POOL ARGS` without waiting for it.
fn spawn_qpool(pool: &TempPool, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(QPOOL);
    cmd.arg("--pool-dir").arg(pool.path()).args(args);
    cmd.env_remove("QPOOL_LOG").env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn qpool")
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The first temporary file qpool is building in the pool, if any.
fn temp_file(pool: &TempPool) -> Option<std::path::PathBuf> {
    pool.listing()
        .into_iter()
        .find(|n| n.starts_with(".qpool-tmp-"))
        .map(|n| pool.vol(&n))
}

// ---------------------------------------------------------------------------------------
// One gate for writing an image
// ---------------------------------------------------------------------------------------

/// The damages of the issue: each gets the field named and qemu-img's words where qemu-img
/// refuses too (qemu repairs a dirty image itself; qpool refuses it).
/// `(label, offset, bytes written there, words the refusal says, qemu-img refuses too)`.
type Damage = (
    &'static str,
    u64,
    &'static [u8],
    &'static [&'static str],
    bool,
);

const DAMAGES: &[Damage] = &[
    (
        "corrupt-bit",
        79,
        &[0x02],
        &[
            "corrupt bit",
            "Image is corrupt; cannot be opened read/write",
        ],
        true,
    ),
    (
        "unknown-bit-400",
        78,
        &[0x04],
        &["incompatible_features", "Unknown incompatible feature: 400"],
        true,
    ),
    (
        "dirty-bit",
        79,
        &[0x01],
        &["dirty bit", "lazy refcounts"],
        false,
    ),
    (
        "cluster-bits-31",
        20,
        &[0, 0, 0, 31],
        &["qcow2 header is invalid", "cluster_bits 31"],
        true,
    ),
];

#[test]
fn writes_to_images_qemu_would_refuse_are_refused_and_change_nothing() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    let upload = pool.write_file("payload", "0123456789");
    for (label, offset, bytes, words, qemu_refuses) in DAMAGES {
        let name = format!("{label}.qcow2");
        let vol = pool.vol(&name);
        qemu_img_create(&vol, GIB);
        poke(&vol, *offset, bytes);
        if *qemu_refuses {
            let copy = pool.scratch().join("oracle.qcow2");
            std::fs::copy(&vol, &copy).unwrap();
            let out = run(
                "qemu-img",
                &["resize", "-f", "qcow2", copy.to_str().unwrap(), "2G"],
            );
            assert!(
                !out.status.success(),
                "{label}: qemu-img resize must refuse it too"
            );
        }
        let before = sha256(&vol);
        for args in [
            vec!["vol-resize", name.as_str(), "2G"],
            vec!["vol-resize", name.as_str(), "2G", "--allocate"],
            vec!["vol-wipe", name.as_str()],
            vec!["vol-upload", name.as_str(), upload.to_str().unwrap()],
        ] {
            let out = pool.qpool(&args);
            assert_refused(&out, words, &format!("{label} {args:?}"));
            assert_eq!(sha256(&vol), before, "{label} {args:?}: the file changed");
        }
        // Reading is still allowed: the volume is listed and reported as qcow2.
        let xml = pool.ok(&["vol-dumpxml", &name]);
        assert!(xml.contains("<format type='qcow2'/>"), "{label}: {xml}");
        assert!(
            leftovers(&pool).is_empty(),
            "{label}: {:?}",
            leftovers(&pool)
        );
    }
}

#[test]
fn a_file_with_the_qcow2_magic_is_never_taken_for_raw() {
    let pool = TempPool::new();
    // libvirt 9.0 (measured side by side): magic plus version 2 or 3 is qcow2 whatever the
    // rest says, with the header's virtual size, or the file size when the file is shorter
    // than the size field; another version, or fewer than 8 bytes, is raw.
    let mut header = vec![0u8; 104];
    header[..4].copy_from_slice(b"QFI\xfb");
    header[4..8].copy_from_slice(&3u32.to_be_bytes());
    header[20..24].copy_from_slice(&31u32.to_be_bytes()); // cluster_bits 31: invalid
    header[24..32].copy_from_slice(&GIB.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, &str, u64)> = vec![
        ("broken.qcow2", header.clone(), "qcow2", GIB),
        ("eight.qcow2", header[..8].to_vec(), "qcow2", 8),
        ("thirty-one.qcow2", header[..31].to_vec(), "qcow2", 31),
        ("magic-only.img", header[..4].to_vec(), "raw", 4),
        (
            "version-9.img",
            {
                let mut h = header.clone();
                h[4..8].copy_from_slice(&9u32.to_be_bytes());
                h
            },
            "raw",
            104,
        ),
    ];
    for (name, bytes, format, capacity) in &cases {
        std::fs::write(pool.vol(name), bytes).unwrap();
        let xml = pool.ok(&["vol-dumpxml", name]);
        assert!(
            xml.contains(&format!("<format type='{format}'/>")),
            "{name}: {xml}"
        );
        assert!(
            xml.contains(&format!("<capacity unit='bytes'>{capacity}</capacity>")),
            "{name}: {xml}"
        );
    }
    // Nothing writes through the broken header, and a raw one grows as raw.
    let out = pool.qpool(&["vol-resize", "broken.qcow2", "2G"]);
    assert_refused(
        &out,
        &["may not be changed", "cluster_bits"],
        "broken resize",
    );
    assert_eq!(std::fs::read(pool.vol("broken.qcow2")).unwrap(), header);
    pool.ok(&["vol-resize", "version-9.img", "1M"]);
    assert_eq!(alloc_and_size(&pool.vol("version-9.img")).1, MIB);
}

// ---------------------------------------------------------------------------------------
// Hard links and volumes other processes hold
// ---------------------------------------------------------------------------------------

#[test]
fn hard_linked_volumes_are_not_written_and_delete_removes_only_the_name() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "h.img", "1M", "--allocation", "0"]);
    poke(&pool.vol("h.img"), 0, b"outside data");
    let outside = pool.scratch().join("outside.img");
    std::fs::hard_link(pool.vol("h.img"), &outside).unwrap();
    let before = sha256(&outside);
    let payload = pool.write_file("payload", "xxxx");
    for args in [
        vec!["vol-wipe", "h.img"],
        vec!["vol-wipe", "h.img", "--algorithm", "trim"],
        vec!["vol-resize", "h.img", "2M"],
        vec!["vol-resize", "h.img", "512K", "--shrink"],
        vec!["vol-upload", "h.img", payload.to_str().unwrap()],
    ] {
        let out = pool.qpool(&args);
        assert_refused(&out, &["h.img", "2 hard links"], &format!("{args:?}"));
        assert_eq!(
            sha256(&outside),
            before,
            "{args:?} changed the file outside the pool"
        );
    }
    pool.ok(&["vol-delete", "h.img"]);
    assert!(!pool.vol("h.img").exists());
    assert_eq!(sha256(&outside), before, "delete removes the name only");
    assert_eq!(std::fs::metadata(&outside).unwrap().nlink(), 1);
}

/// The inode numbers that hold a lock in the kernel's lock table.
fn locked_inodes() -> Vec<u64> {
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let dev_ino = l.split_whitespace().nth(5)?;
            dev_ino.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn a_volume_qemu_holds_open_is_in_use_for_every_writer() {
    if !have("qemu-io") {
        return;
    }
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "vm.qcow2", "64M", "--format", "qcow2"]);
    let vol = pool.vol("vm.qcow2");
    let ino = std::fs::metadata(&vol).unwrap().ino();
    // qemu-io opens the image read-write, takes QEMU's image locks, and waits for commands.
    let mut qemu = Command::new("qemu-io")
        .args(["-f", "qcow2", vol.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-io");
    wait_for("QEMU's locks on the image", || {
        locked_inodes().contains(&ino)
    });
    let before = sha256(&vol);
    let payload = pool.write_file("payload", "zz");
    for args in [
        vec!["vol-resize", "vm.qcow2", "128M"],
        vec!["vol-wipe", "vm.qcow2"],
        vec!["vol-upload", "vm.qcow2", payload.to_str().unwrap()],
    ] {
        let out = pool.qpool(&args);
        assert_refused(&out, &["vm.qcow2", "is in use"], &format!("{args:?}"));
    }
    assert_eq!(sha256(&vol), before);
    // Reads need no lock.
    pool.ok(&["vol-info", "vm.qcow2"]);
    drop(qemu.stdin.take());
    qemu.wait().unwrap();
    pool.ok(&["vol-resize", "vm.qcow2", "128M"]);
    assert_eq!(qemu_info(&vol)["virtual-size"].as_u64(), Some(128 * MIB));
}

// ---------------------------------------------------------------------------------------
// Crashes: kill -9 timed from observed progress
// ---------------------------------------------------------------------------------------

/// A neighbour volume whose bytes must survive anything done to other volumes.
fn neighbour(pool: &TempPool) -> String {
    pool.ok(&[
        "vol-create-as",
        "neighbour.qcow2",
        "16M",
        "--format",
        "qcow2",
    ]);
    if have("qemu-io") {
        common::qemu_io(
            &pool.vol("neighbour.qcow2"),
            "qcow2",
            &["write -P 0x6e 0 1M"],
        );
    }
    sha256(&pool.vol("neighbour.qcow2"))
}

fn after_crash(pool: &TempPool, neighbour_sha: &str, missing: &str, label: &str) {
    assert!(
        !pool.vol(missing).exists(),
        "{label}: '{missing}' appeared half-made"
    );
    pool.ok(&["pool-refresh"]);
    assert!(leftovers(pool).is_empty(), "{label}: {:?}", leftovers(pool));
    assert_eq!(
        sha256(&pool.vol("neighbour.qcow2")),
        neighbour_sha,
        "{label}"
    );
    assert!(
        !pool.ok(&["vol-list"]).contains(missing),
        "{label}: '{missing}' listed"
    );
}

#[test]
fn a_killed_full_create_or_clone_leaves_no_name_and_no_leftover() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    let sha = neighbour(&pool);
    let full = pool.write_file(
        "full.xml",
        "<volume><name>big.qcow2</name><capacity unit='G'>2</capacity><target><format type='qcow2'/><preallocation xmlns='urn:qpool:volume:1' mode='full'/></target></volume>",
    );
    for label in ["full create", "clone"] {
        let (args, missing): (Vec<&str>, &str) = match label {
            "full create" => (vec!["vol-create", full.to_str().unwrap()], "big.qcow2"),
            _ => (vec!["vol-clone", "src.img", "copy.img"], "copy.img"),
        };
        if label == "clone" {
            // A raw source with 512 MiB of data to copy.
            pool.ok(&["vol-create-as", "src.img", "512M", "--allocation", "0"]);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(pool.vol("src.img"))
                .unwrap();
            let chunk = vec![0x5au8; 4 << 20];
            for i in 0..128u64 {
                f.write_all_at(&chunk, i * (4 << 20)).unwrap();
            }
            f.sync_all().unwrap();
        }
        let mut child = spawn_qpool(&pool, &args, &[("QPOOL_NO_FALLOCATE", "1")]);
        wait_for("the temporary file to grow", || {
            temp_file(&pool).is_some_and(|t| alloc_and_size(&t).0 > 16 * MIB)
        });
        kill9(&mut child);
        after_crash(&pool, &sha, missing, label);
    }
}

#[test]
fn a_killed_allocating_resize_is_undone_at_the_next_refresh() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    let sha = neighbour(&pool);
    // Two moments: early in the fill, and well into it.
    for (round, progress) in [16 * MIB, 256 * MIB].into_iter().enumerate() {
        let name = format!("r{round}.qcow2");
        pool.ok(&["vol-create-as", &name, "1G", "--format", "qcow2"]);
        let vol = pool.vol(&name);
        let (alloc_before, len_before) = alloc_and_size(&vol);
        let mut child = spawn_qpool(
            &pool,
            &["vol-resize", &name, "4G", "--allocate"],
            &[("QPOOL_NO_FALLOCATE", "1")],
        );
        wait_for("the resize to fill", || {
            alloc_and_size(&vol).0 > alloc_before + progress
        });
        kill9(&mut child);
        assert!(
            leftovers(&pool)
                .iter()
                .any(|n| n.starts_with(".qpool-resize-")),
            "the resize journal is there: {:?}",
            pool.listing()
        );
        pool.ok(&["pool-refresh"]);
        assert!(leftovers(&pool).is_empty(), "{:?}", leftovers(&pool));
        let (alloc_after, len_after) = alloc_and_size(&vol);
        assert_no_corruption(&vol, &name);
        // The fill comes before the header changes, and the kill came during the fill: the
        // image is what it was, without the tail nothing references.
        assert_eq!(
            qemu_info(&vol)["virtual-size"].as_u64(),
            Some(GIB),
            "{name}"
        );
        assert_eq!(
            len_after, len_before,
            "{name}: the unreferenced tail is cut"
        );
        assert!(alloc_after <= alloc_before + MIB, "{name}: {alloc_after}");
        pool.ok(&["vol-resize", &name, "2G"]);
        assert_no_corruption(&vol, &name);
        assert_eq!(sha256(&pool.vol("neighbour.qcow2")), sha);
    }
}

#[test]
fn a_killed_upload_leaves_the_volume_and_its_neighbours() {
    let pool = TempPool::new();
    let sha = neighbour(&pool);
    pool.ok(&["vol-create-as", "up.img", "512M", "--allocation", "0"]);
    let source = pool.scratch().join("source.bin");
    {
        let mut f = std::fs::File::create(&source).unwrap();
        let chunk = vec![0xa5u8; 4 << 20];
        for _ in 0..128 {
            f.write_all(&chunk).unwrap();
        }
    }
    let vol = pool.vol("up.img");
    let mut child = spawn_qpool(
        &pool,
        &["vol-upload", "up.img", source.to_str().unwrap()],
        &[],
    );
    wait_for("the upload to write", || alloc_and_size(&vol).0 > 8 * MIB);
    kill9(&mut child);
    assert_eq!(
        alloc_and_size(&vol).1,
        512 * MIB,
        "the volume keeps its size"
    );
    pool.ok(&["pool-refresh"]);
    assert!(leftovers(&pool).is_empty());
    assert_eq!(sha256(&pool.vol("neighbour.qcow2")), sha);
    pool.ok(&["vol-info", "up.img"]);
}

// ---------------------------------------------------------------------------------------
// Full filesystems
// ---------------------------------------------------------------------------------------

#[test]
fn every_data_moving_verb_fails_cleanly_on_a_full_filesystem() {
    let Some(fs) = Tmpfs::mount(64 * MIB) else {
        return;
    };
    let pool = TempPool::new_in(fs.path());
    // 36 MiB used, about 28 MiB left: no verb below fits.
    pool.ok(&["vol-create-as", "keep.img", "36M"]);
    let keep = sha256(&pool.vol("keep.img"));
    pool.ok(&["vol-create-as", "sparse.img", "100M", "--allocation", "0"]);
    let outside = tempfile::tempdir().unwrap();
    let big_source = outside.path().join("source.bin");
    std::fs::File::create(&big_source).unwrap();
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&big_source)
            .unwrap();
        let chunk = vec![1u8; 4 << 20];
        for i in 0..25u64 {
            f.write_all_at(&chunk, i * (4 << 20)).unwrap();
        }
    }
    let full_xml = pool.write_file(
        "full.xml",
        "<volume><name>f.img</name><capacity unit='M'>60</capacity><target><preallocation xmlns='urn:qpool:volume:1' mode='full'/></target></volume>",
    );
    let raw_copy_xml = pool.write_file(
        "copy.xml",
        "<volume><name>c.img</name><capacity unit='M'>36</capacity></volume>",
    );
    let download = fs.path().join("download.bin");
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "full create",
            vec!["vol-create".into(), full_xml.display().to_string()],
        ),
        (
            "falloc create",
            vec!["vol-create-as".into(), "a.img".into(), "60M".into()],
        ),
        (
            "clone",
            vec!["vol-clone".into(), "keep.img".into(), "k2.img".into()],
        ),
        (
            "create-from",
            vec![
                "vol-create-from".into(),
                raw_copy_xml.display().to_string(),
                "keep.img".into(),
            ],
        ),
        (
            "allocating resize",
            vec![
                "vol-resize".into(),
                "keep.img".into(),
                "90M".into(),
                "--allocate".into(),
            ],
        ),
        (
            "upload",
            vec![
                "vol-upload".into(),
                "sparse.img".into(),
                big_source.display().to_string(),
            ],
        ),
        (
            "random wipe",
            vec![
                "vol-wipe".into(),
                "sparse.img".into(),
                "--algorithm".into(),
                "random".into(),
            ],
        ),
        (
            "download",
            vec![
                "vol-download".into(),
                "keep.img".into(),
                download.display().to_string(),
            ],
        ),
    ];
    for (label, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pool.qpool(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{label}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{label}: {stderr}");
        assert!(
            stderr.contains("No space left on device")
                || stderr.contains("not enough space")
                || stderr.contains("Not enough space left in storage pool"),
            "{label}: {stderr}"
        );
        assert!(
            leftovers(&pool).is_empty(),
            "{label}: {:?}",
            leftovers(&pool)
        );
        assert_eq!(sha256(&pool.vol("keep.img")), keep, "{label}");
        for name in ["f.img", "a.img", "k2.img", "c.img"] {
            assert!(!pool.vol(name).exists(), "{label}: {name} exists");
        }
        let _ = std::fs::remove_file(&download);
    }
    assert_eq!(alloc_and_size(&pool.vol("keep.img")).1, 36 * MIB);
}

#[test]
fn concurrent_full_creates_on_a_nearly_full_filesystem_fit_or_fail_cleanly() {
    let Some(fs) = Tmpfs::mount(64 * MIB) else {
        return;
    };
    let pool = TempPool::new_in(fs.path());
    let mut children = Vec::new();
    for i in 0..4 {
        let xml = pool.write_file(
            &format!("v{i}.xml"),
            &format!(
                "<volume><name>v{i}.img</name><capacity unit='M'>30</capacity><target><preallocation xmlns='urn:qpool:volume:1' mode='full'/></target></volume>"
            ),
        );
        children.push(spawn_qpool(
            &pool,
            &["vol-create", xml.to_str().unwrap()],
            &[],
        ));
    }
    let mut made = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            made += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains("No space left on device")
                    || stderr.contains("not enough space")
                    || stderr.contains("Not enough space left in storage pool"),
                "{stderr}"
            );
        }
    }
    assert!((1..=2).contains(&made), "{made} of 4 were made in 64 MiB");
    assert!(leftovers(&pool).is_empty(), "{:?}", leftovers(&pool));
    for i in 0..4 {
        let vol = pool.vol(&format!("v{i}.img"));
        if vol.exists() {
            let (alloc, len) = alloc_and_size(&vol);
            assert_eq!(len, 30 * MIB);
            assert!(
                alloc >= 30 * MIB,
                "a full volume is fully allocated: {alloc}"
            );
        }
    }
}

#[test]
fn a_killed_qpoold_leaves_no_half_made_volume() {
    if !have("virsh") {
        return;
    }
    let mut d = common::daemon::Daemon::start();
    let xml = d.write_file(
        "big.xml",
        "<volume><name>big.qcow2</name><capacity unit='G'>2</capacity><target><format type='qcow2'/><preallocation xmlns='urn:qpool:volume:1' mode='full'/></target></volume>",
    );
    let mut virsh = Command::new("virsh")
        .args([
            "-c",
            &d.uri(),
            "vol-create",
            "default",
            xml.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("virsh");
    let pool_dir = d.pool_dir().to_path_buf();
    let building = || {
        std::fs::read_dir(&pool_dir)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with(".qpool-tmp-"))
            .map(|e| e.path())
    };
    wait_for("qpoold to build the volume", || {
        building().is_some_and(|t| alloc_and_size(&t).0 > 16 * MIB)
    });
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(30));
    let _ = virsh.wait();
    assert!(
        !d.vol("big.qcow2").exists(),
        "no half-made volume under its name"
    );
    d.spawn();
    assert!(
        building().is_none(),
        "the restarted daemon removed the leftover"
    );
    let listing = d.virsh_ok(&["vol-list", "default"]);
    assert!(!listing.contains("big.qcow2"), "{listing}");
}
