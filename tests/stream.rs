//! `qpool vol-upload` and `vol-download`: they move the volume file's bytes (not guest data),
//! with `--offset` / `--length`, and `--sparse` keeps holes both ways: the allocation of a
//! round-tripped sparse file stays small and its content is identical.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{TempPool, Tmpfs, alloc_and_size, assert_check_clean, have};

/// A sparse raw file: `len` bytes with a few data islands.
fn sparse_file(path: &Path, len: u64, islands: &[(u64, u8)]) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
    for &(offset, byte) in islands {
        file.write_all_at(&vec![byte; 300_000], offset).unwrap();
    }
    file.sync_all().unwrap();
}

#[test]
fn sparse_upload_then_sparse_download_round_trips_and_stays_sparse() {
    let pool = TempPool::new();
    let local = pool.scratch().join("in.raw");
    sparse_file(
        &local,
        256 << 20,
        &[(0, 1), (100 << 20, 2), ((256 << 20) - 300_000, 3)],
    );
    pool.ok(&["vol-create-as", "v.img", "256M", "--allocation", "0"]);
    let out = pool.ok(&["vol-upload", "v.img", local.to_str().unwrap(), "--sparse"]);
    assert_eq!(out, "\n");
    let (allocated, size) = alloc_and_size(&pool.vol("v.img"));
    assert_eq!(size, 256 << 20);
    assert!(allocated < 2 << 20, "the volume stays sparse: {allocated}");
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(pool.vol("v.img")).unwrap()
    );

    let back = pool.scratch().join("out.raw");
    pool.ok(&["vol-download", "v.img", back.to_str().unwrap(), "--sparse"]);
    let (allocated, size) = alloc_and_size(&back);
    assert_eq!(size, 256 << 20);
    assert!(
        allocated < 2 << 20,
        "the download stays sparse: {allocated}"
    );
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(&back).unwrap()
    );
}

#[test]
fn download_without_sparse_writes_every_byte() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "v.img", "8M", "--allocation", "0"]);
    let back = pool.scratch().join("out.raw");
    pool.ok(&["vol-download", "v.img", back.to_str().unwrap()]);
    assert_eq!(alloc_and_size(&back), (8 << 20, 8 << 20));
}

#[test]
fn sparse_upload_over_old_data_leaves_zeros_in_the_holes() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "v.img", "4M"]);
    let vol = std::fs::OpenOptions::new()
        .write(true)
        .open(pool.vol("v.img"))
        .unwrap();
    vol.write_all_at(&[9u8; 4 << 20], 0).unwrap();
    vol.sync_all().unwrap();
    let local = pool.scratch().join("in.raw");
    sparse_file(&local, 4 << 20, &[(1 << 20, 5)]);
    pool.ok(&["vol-upload", "v.img", local.to_str().unwrap(), "--sparse"]);
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(pool.vol("v.img")).unwrap()
    );
}

#[test]
fn offset_and_length_select_the_bytes() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "v.img", "1M", "--allocation", "0"]);
    let local = pool.scratch().join("in.raw");
    std::fs::write(&local, b"0123456789").unwrap();
    pool.ok(&[
        "vol-upload",
        "v.img",
        local.to_str().unwrap(),
        "--offset",
        "1000",
        "--length",
        "4",
    ]);
    let content = std::fs::read(pool.vol("v.img")).unwrap();
    assert_eq!(&content[998..1006], b"\0\x000123\0\0");
    let back = pool.scratch().join("out.raw");
    pool.ok(&[
        "vol-download",
        "v.img",
        back.to_str().unwrap(),
        "--offset",
        "1001",
        "--length",
        "2",
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), b"12");
}

#[test]
fn qcow2_download_is_the_image_file_itself() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    pool.ok(&[
        "vol-create-as",
        "q.qcow2",
        "256M",
        "--format",
        "qcow2",
        "--allocation",
        "1M",
    ]);
    let back = pool.scratch().join("q-copy.qcow2");
    pool.ok(&[
        "vol-download",
        "q.qcow2",
        back.to_str().unwrap(),
        "--sparse",
    ]);
    assert_eq!(
        std::fs::read(pool.vol("q.qcow2")).unwrap(),
        std::fs::read(&back).unwrap()
    );
    assert_check_clean(&back);
}

#[test]
fn stream_refusals_change_nothing() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "v.img", "1M", "--allocation", "0"]);
    let local = pool.scratch().join("in.raw");
    std::fs::write(&local, vec![1u8; 4096]).unwrap();
    let missing = pool.scratch().join("missing.raw");
    let cases: &[(&str, Vec<&str>, &str)] = &[
        (
            "unknown volume",
            vec!["vol-upload", "nope", local.to_str().unwrap()],
            "no storage volume",
        ),
        (
            "missing local file",
            vec!["vol-upload", "v.img", missing.to_str().unwrap()],
            "cannot read",
        ),
    ];
    for (case, args, expected) in cases {
        let before = std::fs::read(pool.vol("v.img")).unwrap();
        let listing = pool.listing();
        let out = pool.qpool(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{case}: {stderr}"
        );
        assert_eq!(std::fs::read(pool.vol("v.img")).unwrap(), before, "{case}");
        assert_eq!(pool.listing(), listing, "{case}");
    }
}

/// As virsh: a local file a failed download made is removed again; one that was there
/// before stays. The download fails by running out of space on a small tmpfs.
#[test]
fn failed_download_removes_the_file_it_made() {
    let Some(small) = Tmpfs::mount(64 << 10) else {
        return;
    };
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "v.img", "1M", "--allocation", "1M"]);
    let data = pool.scratch().join("data.raw");
    std::fs::write(&data, vec![7u8; 1 << 20]).unwrap();
    pool.ok(&["vol-upload", "v.img", data.to_str().unwrap()]);
    let download = small.path().join("download.raw");
    let out = pool.qpool(&["vol-download", "v.img", download.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!download.exists(), "the file the download made is left");
    std::fs::write(&download, b"old").unwrap();
    let out = pool.qpool(&["vol-download", "v.img", download.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(download.exists(), "a file that was there is removed");
}

/// As libvirt's streams: an upload at an offset past the end extends the volume, a download
/// from past the end is empty.
#[test]
fn streams_past_the_end_extend_or_read_nothing() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "v.img", "1M", "--allocation", "0"]);
    let local = pool.scratch().join("in.raw");
    std::fs::write(&local, vec![1u8; 4096]).unwrap();
    pool.ok(&[
        "vol-upload",
        "v.img",
        local.to_str().unwrap(),
        "--offset",
        "2000000",
    ]);
    let content = std::fs::read(pool.vol("v.img")).unwrap();
    assert_eq!(content.len(), 2_000_000 + 4096);
    assert!(content[2_000_000..].iter().all(|&b| b == 1));
    assert!(content[..2_000_000].iter().all(|&b| b == 0));
    let out = pool.scratch().join("out.raw");
    pool.ok(&[
        "vol-download",
        "v.img",
        out.to_str().unwrap(),
        "--offset",
        "3000000",
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), Vec::<u8>::new());
}
