//! The lifecycle verbs never follow a symlink in the pool: resize, wipe, clone, create-from,
//! upload and download on a link to a file outside the pool are refused with one error
//! line, and the outside file keeps every byte.

mod common;

use common::TempPool;

#[test]
fn lifecycle_verbs_refuse_symlinks_and_leave_their_targets_alone() {
    let pool = TempPool::new();
    let outside = pool.scratch().join("outside.img");
    std::fs::write(&outside, vec![0x5au8; 1 << 20]).unwrap();
    std::os::unix::fs::symlink(&outside, pool.vol("link.img")).unwrap();
    let xml = pool.write_file(
        "new.xml",
        "<volume><name>new.img</name><capacity unit='M'>1</capacity></volume>",
    );
    let local = pool.scratch().join("local.bin");
    std::fs::write(&local, vec![1u8; 4096]).unwrap();
    let got = pool.scratch().join("got.bin");
    let cases: &[(&str, Vec<&str>)] = &[
        ("resize", vec!["vol-resize", "link.img", "2M"]),
        ("wipe", vec!["vol-wipe", "link.img"]),
        ("clone", vec!["vol-clone", "link.img", "copy.img"]),
        (
            "create-from",
            vec!["vol-create-from", xml.to_str().unwrap(), "link.img"],
        ),
        (
            "upload",
            vec!["vol-upload", "link.img", local.to_str().unwrap()],
        ),
        (
            "download",
            vec!["vol-download", "link.img", got.to_str().unwrap()],
        ),
    ];
    for (case, args) in cases {
        let before = pool.listing();
        let out = pool.qpool(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("symbolic link"),
            "{case}: {stderr}"
        );
        assert_eq!(pool.listing(), before, "{case}: the pool changed");
        assert_eq!(
            std::fs::read(&outside).unwrap(),
            vec![0x5au8; 1 << 20],
            "{case}: the file outside the pool changed"
        );
        assert!(!got.exists(), "{case}: a download was written");
    }
}
