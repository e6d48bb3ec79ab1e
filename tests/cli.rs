//! The `qpool` command line: virsh's output formats, and every refusal.
//!
//! Output: `vol-list [--details]` tables, `vol-info [--bytes] [--physical]`, `pool-info`,
//! `vol-path` and the one-line messages, each followed by the empty line virsh prints; the
//! case-insensitive sort of `vol-list`.
//!
//! Refusals: each one exits with status 1, prints exactly one `error: …` line on stderr that
//! names the problem and where, leaves the pool directory listing (hidden files included)
//! as it was, and leaves no `.qpool-tmp-*` file behind ([`assert_refused`]).
//!
//! Leftovers: an unlocked `.qpool-tmp-*` file is removed by `pool-refresh` and by every
//! command that opens the pool; a locked one (a create in progress) is kept.

mod common;

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{TEMP_PREFIX, TempPool, alloc_and_size};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Runs `args` in `pool` and asserts a refusal: exit status 1, nothing on stdout, exactly
/// one stderr line that starts with `error: ` and contains every string of `expected`, the
/// pool listing unchanged, and no temporary file left. Returns the stderr line.
fn assert_refused(pool: &TempPool, case: &str, args: &[&str], expected: &[&str]) -> String {
    let before = pool.listing();
    let out = pool.qpool(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{case}: exit status (stderr: {stderr})"
    );
    assert!(
        out.stdout.is_empty(),
        "{case}: stdout is not empty: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.starts_with("error: "), "{case}: stderr {stderr:?}");
    assert!(
        stderr.ends_with('\n') && stderr.matches('\n').count() == 1,
        "{case}: stderr is not exactly one line: {stderr:?}"
    );
    for want in expected {
        assert!(
            stderr.contains(want),
            "{case}: stderr lacks {want:?}: {stderr}"
        );
    }
    let after = pool.listing();
    assert_eq!(after, before, "{case}: the pool listing changed");
    assert!(
        !after.iter().any(|n| n.starts_with(TEMP_PREFIX)),
        "{case}: a temporary file was left: {after:?}"
    );
    stderr
}

/// The canonical pool directory, as qpool prints it.
fn canonical(pool: &TempPool) -> PathBuf {
    std::fs::canonicalize(pool.path()).expect("canonical pool path")
}

/// The canonical path of a volume, as a string.
fn vol_path(pool: &TempPool, name: &str) -> String {
    canonical(pool).join(name).display().to_string()
}

/// Size of the pool's filesystem in bytes (statvfs).
fn fs_capacity(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks() * st.fragment_size()
}

/// An exclusive lock on a whole file, as `libc::flock` describes it.
fn write_lock_all() -> libc::flock {
    libc::flock {
        l_type: libc::c_short::try_from(libc::F_WRLCK).unwrap(),
        l_whence: libc::c_short::try_from(libc::SEEK_SET).unwrap(),
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Creates a leftover of an interrupted create in the pool: a hidden temporary file with
/// some bytes in it. The file is returned open (not locked).
fn make_leftover(pool: &TempPool, suffix: &str) -> File {
    let path = pool.vol(&format!("{TEMP_PREFIX}{suffix}"));
    std::fs::write(&path, b"half a volume").expect("write leftover");
    File::options()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open leftover")
}

/// Names in the first column of a `vol-list` table.
fn listed_names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// A pool with a few things to refuse around: a raw volume with known content, a qcow2
/// volume, a symlink out of the pool, a dangling symlink, a directory and a FIFO, plus a
/// file outside the pool that the symlink points to.
struct Fixture {
    pool: TempPool,
    /// The file `link` points to, outside the pool.
    outside: PathBuf,
    /// Where `dangling` points to (does not exist).
    nowhere: PathBuf,
}

/// Content written into `existing.img`, to prove it is never overwritten.
const EXISTING_CONTENT: &[u8] = b"precious data in existing.img";
/// Content of the file outside the pool.
const OUTSIDE_CONTENT: &[u8] = b"not qpool's to touch";

impl Fixture {
    fn new() -> Fixture {
        let pool = TempPool::new();
        pool.ok(&["vol-create-as", "existing.img", "1M", "--allocation", "0"]);
        std::fs::write(pool.vol("existing.img"), EXISTING_CONTENT).unwrap();
        pool.ok(&["vol-create-as", "base.qcow2", "64M", "--format", "qcow2"]);
        let outside = pool.scratch().join("outside.img");
        std::fs::write(&outside, OUTSIDE_CONTENT).unwrap();
        let nowhere = pool.scratch().join("nowhere.img");
        std::os::unix::fs::symlink(&outside, pool.vol("link")).unwrap();
        std::os::unix::fs::symlink(&nowhere, pool.vol("dangling")).unwrap();
        std::fs::create_dir(pool.vol("subdir")).unwrap();
        nix::unistd::mkfifo(&pool.vol("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        Fixture {
            pool,
            outside,
            nowhere,
        }
    }

    /// Asserts that nothing outside the pool and no volume content was touched.
    fn assert_untouched(&self, case: &str) {
        assert_eq!(
            std::fs::read(self.pool.vol("existing.img")).unwrap(),
            EXISTING_CONTENT,
            "{case}: existing.img was modified"
        );
        assert_eq!(
            std::fs::read(&self.outside).unwrap(),
            OUTSIDE_CONTENT,
            "{case}: the symlink's target was modified"
        );
        assert!(
            !self.nowhere.exists(),
            "{case}: the dangling symlink's target was created"
        );
        assert_eq!(
            std::fs::read_link(self.pool.vol("link")).unwrap(),
            self.outside,
            "{case}: the symlink was changed"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Messages and the trailing empty line
// ---------------------------------------------------------------------------------------

#[test]
fn vol_create_as_prints_vol_created_and_an_empty_line() {
    let pool = TempPool::new();
    let out = pool.ok(&["vol-create-as", "a.img", "1M", "--allocation", "0"]);
    assert_eq!(out, "Vol a.img created\n\n");
    assert_eq!(std::fs::metadata(pool.vol("a.img")).unwrap().len(), 1 << 20);
}

#[test]
fn vol_create_prints_created_from_the_file_as_given() {
    let pool = TempPool::new();
    let file = pool.write_file(
        "v.xml",
        "<volume><name>v.qcow2</name><capacity unit='M'>16</capacity><target><format type='qcow2'/></target></volume>",
    );
    let arg = file.to_str().unwrap();
    let out = pool.ok(&["vol-create", arg]);
    assert_eq!(out, format!("Vol v.qcow2 created from {arg}\n\n"));
    assert!(pool.vol("v.qcow2").is_file());
}

#[test]
fn vol_delete_prints_vol_deleted_and_removes_the_file() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "gone.img", "1M", "--allocation", "0"]);
    let out = pool.ok(&["vol-delete", "gone.img"]);
    assert_eq!(out, "Vol gone.img deleted\n\n");
    assert_eq!(pool.listing(), Vec::<String>::new());
}

#[test]
fn vol_delete_accepts_the_volume_path() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "gone.img", "1M", "--allocation", "0"]);
    let out = pool.ok(&["vol-delete", &vol_path(&pool, "gone.img")]);
    assert_eq!(out, "Vol gone.img deleted\n\n");
    assert!(!pool.vol("gone.img").exists());
}

#[test]
fn pool_refresh_prints_pool_refreshed_with_the_directory_name() {
    let pool = TempPool::new();
    // TempPool's directory is called "pool"; qpool names a --pool-dir pool after it.
    assert_eq!(pool.ok(&["pool-refresh"]), "Pool pool refreshed\n\n");
}

#[test]
fn vol_path_prints_the_canonical_absolute_path() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "p.img", "1M", "--allocation", "0"]);
    let out = pool.ok(&["vol-path", "p.img"]);
    assert_eq!(out, format!("{}\n\n", vol_path(&pool, "p.img")));
    assert!(Path::new(out.trim_end()).is_absolute());
}

#[test]
fn every_verb_ends_its_output_with_exactly_one_empty_line() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "a.qcow2", "16M", "--format", "qcow2"]);
    let xml = pool.write_file(
        "b.xml",
        "<volume><name>b.img</name><capacity unit='M'>1</capacity><allocation>0</allocation></volume>",
    );
    let xml = xml.to_str().unwrap();
    let fresh = pool.write_file(
        "fresh.xml",
        "<volume><name>fresh.img</name><capacity>512</capacity></volume>",
    );
    let fresh = fresh.to_str().unwrap();
    let verbs: &[&[&str]] = &[
        &["vol-create-as", "c.img", "1M", "--allocation", "0"],
        &["vol-create", xml],
        &["vol-list"],
        &["vol-list", "--details"],
        &["vol-info", "a.qcow2"],
        &["vol-info", "a.qcow2", "--bytes"],
        &["vol-info", "a.qcow2", "--physical"],
        &["vol-dumpxml", "a.qcow2"],
        &["vol-path", "a.qcow2"],
        &["pool-info"],
        &["pool-info", "--bytes"],
        &["pool-dumpxml"],
        &["pool-refresh"],
        &["explain", fresh],
        &["vol-delete", "c.img"],
    ];
    for args in verbs {
        let out = pool.ok(args);
        assert!(
            out.ends_with("\n\n") && !out.ends_with("\n\n\n"),
            "{args:?}: output does not end with exactly one empty line: {out:?}"
        );
        assert!(
            !out.trim_end().is_empty(),
            "{args:?}: prints nothing but the empty line"
        );
    }
}

// ---------------------------------------------------------------------------------------
// vol-list
// ---------------------------------------------------------------------------------------

#[test]
fn vol_list_of_an_empty_pool_prints_header_and_dashes() {
    let pool = TempPool::new();
    assert_eq!(pool.ok(&["vol-list"]), " Name   Path\n--------------\n\n");
}

#[test]
fn vol_list_details_of_an_empty_pool_prints_header_and_dashes() {
    let pool = TempPool::new();
    let header = " Name   Path   Type   Capacity   Allocation\n";
    // Each column is as wide as its widest cell plus three (one space before, two after).
    let dashes = "-".repeat(7 + 7 + 7 + 11 + 13);
    assert_eq!(
        pool.ok(&["vol-list", "--details"]),
        format!("{header}{dashes}\n\n")
    );
}

#[test]
fn vol_list_pads_columns_like_virsh() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "a.img", "1M", "--allocation", "0"]);
    pool.ok(&["vol-create-as", "disk.qcow2", "1G", "--format", "qcow2"]);
    let a = vol_path(&pool, "a.img");
    let disk = vol_path(&pool, "disk.qcow2");
    // Name column: "disk.qcow2" (10) is the widest cell; Path column is the last one and
    // is not padded.
    let expected = format!(
        " Name         Path\n{}\n a.img        {a}\n disk.qcow2   {disk}\n\n",
        "-".repeat(13 + disk.len() + 3)
    );
    assert_eq!(pool.ok(&["vol-list"]), expected);
}

#[test]
fn vol_list_details_adds_type_capacity_and_allocation_columns() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "full.img", "1M"]); // raw, fully allocated
    pool.ok(&["vol-create-as", "sparse.img", "5M", "--allocation", "0"]);
    pool.ok(&["vol-create-as", "thin.qcow2", "1G", "--format", "qcow2"]);
    let (thin_alloc, _) = alloc_and_size(&pool.vol("thin.qcow2"));
    assert!(
        (1024..1 << 20).contains(&thin_alloc),
        "a thin 1G qcow2 takes some KiB, not {thin_alloc}"
    );
    #[allow(clippy::cast_precision_loss)] // display only
    let thin_pretty = format!("{:.2} KiB", thin_alloc as f64 / 1024.0);
    let full = vol_path(&pool, "full.img");
    let sparse = vol_path(&pool, "sparse.img");
    let thin = vol_path(&pool, "thin.qcow2");
    let w = sparse.len().max(thin.len()); // widest path
    let aw = "Allocation".len().max(thin_pretty.len());
    let expected = [
        format!(
            " Name         {:<w$}   Type   Capacity   Allocation",
            "Path"
        ),
        "-".repeat(13 + (w + 3) + 7 + 11 + (aw + 3)),
        format!(" full.img     {full:<w$}   file   1.00 MiB   1.00 MiB"),
        format!(" sparse.img   {sparse:<w$}   file   5.00 MiB   0.00 B"),
        format!(" thin.qcow2   {thin:<w$}   file   1.00 GiB   {thin_pretty}"),
        String::new(),
    ]
    .join("\n")
        + "\n";
    assert_eq!(pool.ok(&["vol-list", "--details"]), expected);
}

#[test]
fn vol_list_sorts_names_case_insensitively_like_virsh() {
    let pool = TempPool::new();
    for name in ["beta", "Alpha", "_x", "gamma", "ALPHA2", "alpha1", "B"] {
        pool.ok(&["vol-create-as", name, "512", "--allocation", "0"]);
    }
    // virsh sorts with strcasecmp, which folds to lower case: '_' (0x5f) sorts before
    // 'a' (0x61) but after 'A' (0x41). Byte order would start ALPHA2, Alpha, B, _x.
    assert_eq!(
        listed_names(&pool.ok(&["vol-list"])),
        ["_x", "Alpha", "alpha1", "ALPHA2", "B", "beta", "gamma"]
    );
    assert_eq!(
        listed_names(&pool.ok(&["vol-list", "--details"])),
        ["_x", "Alpha", "alpha1", "ALPHA2", "B", "beta", "gamma"]
    );
}

#[test]
fn vol_list_skips_hidden_files_symlinks_directories_and_fifos() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    std::fs::write(pool.vol(".hidden"), b"x").unwrap();
    assert_eq!(
        listed_names(&pool.ok(&["vol-list"])),
        ["base.qcow2", "existing.img"]
    );
}

// ---------------------------------------------------------------------------------------
// vol-info, pool-info
// ---------------------------------------------------------------------------------------

#[test]
fn vol_info_prints_name_type_capacity_and_allocation_pretty() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "r.img", "3M"]); // raw, fully allocated
    assert_eq!(
        pool.ok(&["vol-info", "r.img"]),
        "Name:           r.img\nType:           file\nCapacity:       3.00 MiB\nAllocation:     3.00 MiB\n\n"
    );
}

#[test]
fn vol_info_bytes_prints_exact_sizes() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "q.qcow2", "1G", "--format", "qcow2"]);
    let (allocation, _) = alloc_and_size(&pool.vol("q.qcow2"));
    assert_eq!(
        pool.ok(&["vol-info", "q.qcow2", "--bytes"]),
        format!(
            "Name:           q.qcow2\nType:           file\nCapacity:       1073741824 bytes\nAllocation:     {allocation} bytes\n\n"
        )
    );
}

#[test]
fn vol_info_physical_replaces_allocation_with_the_file_size() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "q.qcow2", "1G", "--format", "qcow2"]);
    // A fresh 1 GiB qcow2 with 64 KiB clusters: header, refcount table, refcount block
    // (one cluster each) and a 16-byte L1 table: 3 * 65536 + 16 bytes.
    let physical = 3 * 65536 + 16;
    assert_eq!(alloc_and_size(&pool.vol("q.qcow2")).1, physical);
    assert_eq!(
        pool.ok(&["vol-info", "q.qcow2", "--bytes", "--physical"]),
        format!(
            "Name:           q.qcow2\nType:           file\nCapacity:       1073741824 bytes\nPhysical:       {physical} bytes\n\n"
        )
    );
    assert_eq!(
        pool.ok(&["vol-info", "q.qcow2", "--physical"]),
        "Name:           q.qcow2\nType:           file\nCapacity:       1.00 GiB\nPhysical:       192.02 KiB\n\n"
    );
}

#[test]
fn vol_info_accepts_the_volume_path() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "s.img", "2M", "--allocation", "0"]);
    assert_eq!(
        pool.ok(&["vol-info", &vol_path(&pool, "s.img")]),
        "Name:           s.img\nType:           file\nCapacity:       2.00 MiB\nAllocation:     0.00 B\n\n"
    );
}

#[test]
fn pool_info_prints_virshs_labels_and_states() {
    let pool = TempPool::new();
    let out = pool.ok(&["pool-info"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out:?}");
    assert_eq!(lines[0], "Name:           pool");
    let uuid = lines[1]
        .strip_prefix("UUID:           ")
        .expect("UUID line");
    assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{uuid}");
    assert_eq!(uuid.len(), 36, "hyphenated: {uuid}");
    assert_eq!(lines[2], "State:          running");
    assert_eq!(lines[3], "Persistent:     yes");
    assert_eq!(lines[4], "Autostart:      no");
    for (line, label) in lines[5..8]
        .iter()
        .zip(["Capacity:", "Allocation:", "Available:"])
    {
        let value = line
            .strip_prefix(&format!("{label:<15} "))
            .unwrap_or_else(|| panic!("{label} line: {line}"));
        let (number, unit) = value.split_once(' ').expect("number and unit");
        let (int, frac) = number.split_once('.').expect("two decimals");
        assert!(
            int.bytes().all(|b| b.is_ascii_digit()) && frac.len() == 2,
            "{line}"
        );
        assert!(
            ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"].contains(&unit),
            "{line}"
        );
    }
    assert_eq!(lines[8], "");
}

#[test]
fn pool_info_uuid_is_stable_across_runs() {
    let pool = TempPool::new();
    let first = pool.ok(&["pool-info"]);
    let second = pool.ok(&["pool-info"]);
    assert_eq!(first.lines().nth(1), second.lines().nth(1));
}

#[test]
fn pool_info_bytes_reports_the_filesystem_size() {
    let pool = TempPool::new();
    let out = pool.ok(&["pool-info", "--bytes"]);
    let value = |label: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{label:<15} ")))
            .and_then(|v| v.strip_suffix(" bytes"))
            .unwrap_or_else(|| panic!("{label} in {out}"))
            .parse()
            .unwrap()
    };
    let capacity = value("Capacity:");
    assert_eq!(capacity, fs_capacity(pool.path()));
    // Other tests write to the same filesystem meanwhile: only relations are stable.
    assert!(value("Allocation:") <= capacity, "{out}");
    assert!(
        value("Available:") <= capacity - value("Allocation:"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Names: the boundary that is accepted
// ---------------------------------------------------------------------------------------

#[test]
fn vol_create_as_name_of_255_bytes_is_accepted() {
    let pool = TempPool::new();
    // 253 ASCII bytes and one two-byte character: 255 bytes, 254 characters.
    let name = format!("{}é", "n".repeat(253));
    assert_eq!(name.len(), 255);
    let out = pool.ok(&["vol-create-as", &name, "512", "--allocation", "0"]);
    assert_eq!(out, format!("Vol {name} created\n\n"));
    assert_eq!(pool.listing(), [name]);
}

// ---------------------------------------------------------------------------------------
// Refusals on the command line
// ---------------------------------------------------------------------------------------

/// (case, arguments, what stderr must contain).
type Case<'a> = (&'a str, Vec<String>, Vec<&'a str>);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn run_refusals(fixture: &Fixture, cases: &[Case<'_>]) {
    for (case, args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&fixture.pool, case, &args, expected);
        fixture.assert_untouched(case);
    }
}

#[test]
fn vol_create_as_bad_names_are_refused() {
    let fixture = Fixture::new();
    let long = "x".repeat(256);
    let long_multibyte = "é".repeat(128); // 256 bytes, 128 characters
    let case = |case, name: &str, why| -> Case<'_> {
        (
            case,
            strings(&["vol-create-as", name, "1M"]),
            vec!["invalid volume name", why],
        )
    };
    run_refusals(
        &fixture,
        &[
            case("empty", "", "the name is empty"),
            case("dot", ".", "'.' and '..' are not volume names"),
            case("dot-dot", "..", "'.' and '..' are not volume names"),
            case("slash", "a/b", "contains '/'"),
            case("parent", "../x", "contains '/'"),
            case("absolute", "/tmp/x", "contains '/'"),
            case("hidden", ".x", "starts with '.'"),
            case("temp-prefix", ".qpool-tmp-x", "starts with '.'"),
            case("256-bytes", &long, "longer than 255 bytes"),
            case(
                "256-bytes-multibyte",
                &long_multibyte,
                "longer than 255 bytes",
            ),
            case("newline", "a\nb", "control character"),
            case("escape", "a\u{1b}b", "control character"),
        ],
    );
}

#[test]
fn vol_create_as_bad_sizes_are_refused() {
    let fixture = Fixture::new();
    let capacity = |case, size: &str, why| -> Case<'_> {
        (
            case,
            strings(&["vol-create-as", "n.img", "--", size]),
            vec!["malformed capacity", why],
        )
    };
    run_refusals(
        &fixture,
        &[
            capacity("negative", "-1", "invalid size '-1'"),
            capacity("garbage", "abc", "invalid size 'abc'"),
            capacity("empty", "", "invalid size ''"),
            capacity("unit-only", "G", "invalid size 'G'"),
            capacity("fraction", "1.5G", "'1.5G'"),
            capacity("hex", "0x10", "'0x10'"),
            capacity("above-64-bits", "18446744073709551616", "too large"),
            capacity("16-EiB", "16E", "size 16 E is too large"),
            capacity("2^64-in-GiB", "17179869184G", "too large"),
            capacity("unknown-unit", "1Z", "unknown unit 'Z'"),
            capacity("unknown-unit-kibb", "1KIBB", "unknown unit 'KIBB'"),
            capacity("space-before-unit", "1 G", "unknown unit ' G'"),
            (
                "negative-capacity-looks-like-a-flag",
                strings(&["vol-create-as", "n.img", "-1"]),
                vec!["unexpected argument '-1'"],
            ),
            (
                "allocation-negative",
                strings(&["vol-create-as", "n.img", "1M", "--allocation=-1"]),
                vec!["malformed allocation '-1'"],
            ),
            (
                "allocation-garbage",
                strings(&["vol-create-as", "n.img", "1M", "--allocation", "lots"]),
                vec!["malformed allocation 'lots'"],
            ),
            (
                "allocation-overflow",
                strings(&["vol-create-as", "n.img", "1M", "--allocation", "16EiB"]),
                vec!["malformed allocation '16EiB'", "too large"],
            ),
        ],
    );
}

#[test]
fn vol_create_as_bad_formats_and_combinations_are_refused() {
    let fixture = Fixture::new();
    let args = |a: &[&str]| strings(a);
    run_refusals(
        &fixture,
        &[
            (
                "format-vmdk",
                args(&["vol-create-as", "n.vmdk", "1M", "--format", "vmdk"]),
                vec!["--format: unsupported volume format 'vmdk' (qpool supports: raw, qcow2)"],
            ),
            (
                "format-upper-case",
                args(&["vol-create-as", "n.img", "1M", "--format", "QCOW2"]),
                vec!["unsupported volume format 'QCOW2'"],
            ),
            (
                "backing-format-vmdk",
                args(&[
                    "vol-create-as",
                    "o.qcow2",
                    "1M",
                    "--format",
                    "qcow2",
                    "--backing-vol",
                    "base.qcow2",
                    "--backing-vol-format",
                    "vmdk",
                ]),
                vec!["--backing-vol-format: unsupported volume format 'vmdk'"],
            ),
            (
                "raw-with-prealloc-metadata",
                args(&["vol-create-as", "n.img", "1M", "--prealloc-metadata"]),
                vec![
                    "volume 'n.img'",
                    "metadata preallocation is not supported for raw volumes",
                ],
            ),
            (
                "raw-with-backing-vol",
                args(&[
                    "vol-create-as",
                    "o.img",
                    "64M",
                    "--format",
                    "raw",
                    "--backing-vol",
                    "base.qcow2",
                ]),
                vec![
                    "volume 'o.img'",
                    "backing storage is not supported for raw volumes",
                ],
            ),
            (
                "overlay-with-prealloc-metadata",
                args(&[
                    "vol-create-as",
                    "o.qcow2",
                    "64M",
                    "--format",
                    "qcow2",
                    "--backing-vol",
                    "base.qcow2",
                    "--backing-vol-format",
                    "qcow2",
                    "--prealloc-metadata",
                ]),
                vec![
                    "volume 'o.qcow2'",
                    "needs <features><extended_l2/></features>",
                ],
            ),
            (
                "backing-vol-missing",
                args(&[
                    "vol-create-as",
                    "o.qcow2",
                    "64M",
                    "--format",
                    "qcow2",
                    "--backing-vol",
                    "/nonexistent/base.qcow2",
                ]),
                vec![
                    "cannot use backing store '/nonexistent/base.qcow2'",
                    "No such file",
                ],
            ),
            (
                "backing-vol-not-the-declared-format",
                args(&[
                    "vol-create-as",
                    "o.qcow2",
                    "64M",
                    "--format",
                    "qcow2",
                    "--backing-vol",
                    "existing.img",
                    "--backing-vol-format",
                    "qcow2",
                ]),
                vec!["existing.img' is not a qcow2 image"],
            ),
            (
                "backing-vol-format-without-backing-vol",
                args(&[
                    "vol-create-as",
                    "o.qcow2",
                    "64M",
                    "--backing-vol-format",
                    "qcow2",
                ]),
                vec!["--backing-vol"],
            ),
            (
                "unknown-flag",
                args(&["vol-create-as", "n.img", "1M", "--bogus"]),
                vec!["unexpected argument '--bogus'", "qpool --help"],
            ),
            (
                "missing-capacity",
                args(&["vol-create-as", "n.img"]),
                vec!["required arguments were not provided", "<CAPACITY>"],
            ),
            (
                "unknown-verb",
                args(&["vol-bogus"]),
                vec!["unrecognized subcommand 'vol-bogus'"],
            ),
        ],
    );
}

#[test]
fn vol_create_as_existing_names_are_refused_and_never_overwritten() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    let before = std::fs::metadata(pool.vol("existing.img")).unwrap();
    let args = |a: &[&str]| strings(a);
    run_refusals(
        &fixture,
        &[
            (
                "existing-volume",
                args(&["vol-create-as", "existing.img", "2M"]),
                vec!["volume 'existing.img' already exists in pool 'pool'"],
            ),
            (
                "existing-volume-other-format",
                args(&["vol-create-as", "existing.img", "2M", "--format", "qcow2"]),
                vec!["volume 'existing.img' already exists in pool 'pool'"],
            ),
            (
                "existing-directory",
                args(&["vol-create-as", "subdir", "1M"]),
                vec!["volume 'subdir' already exists in pool 'pool'"],
            ),
            (
                "existing-fifo",
                args(&["vol-create-as", "fifo", "1M"]),
                vec!["volume 'fifo' already exists in pool 'pool'"],
            ),
        ],
    );
    let after = std::fs::metadata(pool.vol("existing.img")).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.mtime(), after.mtime_nsec()),
        (
            before.ino(),
            before.len(),
            before.mtime(),
            before.mtime_nsec()
        ),
        "existing.img was replaced or rewritten"
    );
}

#[test]
fn symlinks_out_of_the_pool_are_never_followed() {
    let fixture = Fixture::new();
    let outside_before = std::fs::metadata(&fixture.outside).unwrap();
    let args = |a: &[&str]| strings(a);
    let link = "symbolic link, not a volume";
    run_refusals(
        &fixture,
        &[
            (
                "vol-info-link",
                args(&["vol-info", "link"]),
                vec!["'link' in pool 'pool' is a", link],
            ),
            (
                "vol-info-link-by-path",
                args(&["vol-info", &vol_path(&fixture.pool, "link")]),
                vec!["'link' in pool 'pool' is a", link],
            ),
            (
                "vol-dumpxml-link",
                args(&["vol-dumpxml", "link"]),
                vec!["'link'", link],
            ),
            (
                "vol-path-link",
                args(&["vol-path", "link"]),
                vec!["'link'", link],
            ),
            (
                "vol-delete-link",
                args(&["vol-delete", "link"]),
                vec!["'link'", link],
            ),
            (
                "vol-create-as-over-link",
                args(&["vol-create-as", "link", "1M"]),
                vec!["volume 'link' already exists in pool 'pool'"],
            ),
            (
                "vol-create-as-over-dangling-link",
                args(&["vol-create-as", "dangling", "1M"]),
                vec!["volume 'dangling' already exists in pool 'pool'"],
            ),
            (
                "vol-info-dangling-link",
                args(&["vol-info", "dangling"]),
                vec!["'dangling'", link],
            ),
            (
                "vol-delete-dangling-link",
                args(&["vol-delete", "dangling"]),
                vec!["'dangling'", link],
            ),
            (
                "vol-info-outside-path",
                args(&["vol-info", fixture.outside.to_str().unwrap()]),
                vec!["invalid volume name", "contains '/'"],
            ),
        ],
    );
    let outside_after = std::fs::metadata(&fixture.outside).unwrap();
    assert_eq!(
        (outside_after.len(), outside_after.mtime_nsec()),
        (outside_before.len(), outside_before.mtime_nsec()),
        "the file outside the pool was written"
    );
}

#[test]
fn lookups_of_missing_or_non_volume_entries_are_refused() {
    let fixture = Fixture::new();
    let args = |a: &[&str]| strings(a);
    let missing = "no storage volume with matching name 'nope' in pool 'pool'";
    run_refusals(
        &fixture,
        &[
            (
                "vol-info-missing",
                args(&["vol-info", "nope"]),
                vec![missing],
            ),
            (
                "vol-dumpxml-missing",
                args(&["vol-dumpxml", "nope"]),
                vec![missing],
            ),
            (
                "vol-path-missing",
                args(&["vol-path", "nope"]),
                vec![missing],
            ),
            (
                "vol-delete-missing",
                args(&["vol-delete", "nope"]),
                vec![missing],
            ),
            (
                "vol-info-directory",
                args(&["vol-info", "subdir"]),
                vec!["'subdir' in pool 'pool' is a directory or special file"],
            ),
            (
                "vol-delete-directory",
                args(&["vol-delete", "subdir"]),
                vec!["'subdir' in pool 'pool' is a directory or special file"],
            ),
            (
                "vol-info-fifo",
                args(&["vol-info", "fifo"]),
                vec!["'fifo' in pool 'pool' is a directory or special file"],
            ),
            (
                "vol-delete-hidden",
                args(&["vol-delete", ".qpool-tmp-x"]),
                vec!["invalid volume name '.qpool-tmp-x'"],
            ),
        ],
    );
}

#[test]
fn missing_pool_directory_is_refused() {
    let pool = TempPool::new();
    let missing = pool.scratch().join("no-such-pool");
    let out = std::process::Command::new(common::QPOOL)
        .arg("--pool-dir")
        .arg(&missing)
        .arg("vol-list")
        .env_remove("QPOOL_POOL_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches('\n').count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot open pool directory {}",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!missing.exists(), "--pool-dir must not be created");
}

#[test]
fn volume_larger_than_the_free_space_is_refused_up_front() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    // Twice the whole filesystem: more than is free, whatever else runs.
    let huge = (2 * fs_capacity(pool.path())).to_string();
    let full = pool.write_file(
        "full.xml",
        &format!(
            "<volume xmlns:qpool='urn:qpool:volume:1'><name>full.img</name><capacity>{huge}</capacity>\
             <target><qpool:preallocation mode='full'/></target></volume>"
        ),
    );
    let args = |a: &[&str]| strings(a);
    run_refusals(
        &fixture,
        &[
            (
                "raw-falloc",
                args(&["vol-create-as", "huge.img", &huge]),
                vec![
                    "not enough space in pool 'pool' for volume 'huge.img'",
                    &format!("it needs {huge} bytes"),
                ],
            ),
            (
                "qcow2-falloc",
                args(&[
                    "vol-create-as",
                    "huge.qcow2",
                    &huge,
                    "--format",
                    "qcow2",
                    "--allocation",
                    &huge,
                ]),
                vec!["not enough space in pool 'pool' for volume 'huge.qcow2'"],
            ),
            (
                "raw-full",
                args(&["vol-create", full.to_str().unwrap()]),
                vec!["not enough space in pool 'pool' for volume 'full.img'"],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Refusals of volume XML
// ---------------------------------------------------------------------------------------

/// (case, document, what stderr must contain besides the file name).
const XML_REFUSALS: &[(&str, &str, &[&str])] = &[
    // Not well-formed.
    (
        "unclosed-tag",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity\n</volume>\n",
        &["invalid volume XML: line 3: malformed XML"],
    ),
    (
        "mismatched-end-tag",
        "<volume>\n  <name>x</nam>\n</volume>\n",
        &["invalid volume XML: line 2: malformed XML"],
    ),
    (
        "empty-file",
        "",
        &["malformed XML: the document has no root element"],
    ),
    (
        "two-roots",
        "<volume><name>x</name><capacity>1</capacity></volume>\n<volume/>\n",
        &["malformed XML: content after the root element"],
    ),
    (
        "nul-character-reference",
        "<volume>\n  <name>x&#0;y</name>\n  <capacity>1</capacity>\n</volume>\n",
        &["line 2: malformed XML"],
    ),
    (
        "undefined-entity",
        "<volume>\n  <name>&nbsp;</name>\n  <capacity>1</capacity>\n</volume>\n",
        &["line 2: malformed XML", "nbsp"],
    ),
    (
        "doctype",
        "<!DOCTYPE volume [<!ENTITY x 'y'>]>\n<volume><name>&x;</name><capacity>1</capacity></volume>\n",
        &["document type declarations are not accepted"],
    ),
    (
        "duplicate-attribute",
        "<volume type='file' type='block'><name>x</name><capacity>1</capacity></volume>",
        &["malformed XML", "duplicated attribute"],
    ),
    (
        "unquoted-attribute",
        "<volume type=file><name>x</name><capacity>1</capacity></volume>",
        &["malformed XML"],
    ),
    (
        "double-hyphen-in-comment",
        "<volume>\n  <!-- made by -- someone -->\n  <name>x</name>\n  <capacity>1</capacity>\n</volume>\n",
        &["line 2: malformed XML"],
    ),
    (
        "less-than-in-attribute",
        "<volume>\n  <name>x</name>\n  <capacity unit='<'>1</capacity>\n</volume>\n",
        &["line 3: malformed XML"],
    ),
    (
        "cdata-end-in-text",
        "<volume>\n  <name>x</name>\n  <key>a]]>b</key>\n  <capacity>1</capacity>\n</volume>\n",
        &["line 3: malformed XML"],
    ),
    (
        "control-character-in-text",
        "<volume>\n  <name>x</name>\n  <key>a\u{1}b</key>\n  <capacity>1</capacity>\n</volume>\n",
        &["line 3: malformed XML"],
    ),
    (
        "undeclared-namespace-prefix",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target><qpool:preallocation mode='full'/></target>\n</volume>\n",
        &["line 4: malformed XML", "qpool"],
    ),
    (
        "xml-declaration-not-at-start",
        "<!-- c -->\n<?xml version='1.0'?>\n<volume><name>x</name><capacity>1</capacity></volume>\n",
        &["line 2: malformed XML"],
    ),
    (
        "invalid-element-name",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <1target/>\n</volume>\n",
        &["line 4: malformed XML"],
    ),
    // Well-formed, but not a volume qpool takes.
    (
        "root-is-pool",
        "<pool type='dir'><name>x</name></pool>",
        &["line 1: root element is <pool>, expected <volume>"],
    ),
    (
        "missing-name",
        "<volume>\n  <capacity>1</capacity>\n</volume>\n",
        &["/volume: missing <name> element"],
    ),
    (
        "missing-capacity",
        "<volume>\n  <name>x</name>\n</volume>\n",
        &["/volume: missing <capacity> element"],
    ),
    (
        "negative-capacity",
        "<volume>\n  <name>x</name>\n  <capacity>-1</capacity>\n</volume>\n",
        &["/volume/capacity (line 3): invalid size '-1'"],
    ),
    (
        "capacity-above-64-bits",
        "<volume>\n  <name>x</name>\n  <capacity>18446744073709551616</capacity>\n</volume>\n",
        &["/volume/capacity (line 3): size 18446744073709551616 bytes is too large"],
    ),
    (
        "capacity-16-exbibytes",
        "<volume>\n  <name>x</name>\n  <capacity unit='EiB'>16</capacity>\n</volume>\n",
        &["/volume/capacity (line 3): size 16 EiB is too large"],
    ),
    (
        "capacity-garbage",
        "<volume>\n  <name>x</name>\n  <capacity>12abc</capacity>\n</volume>\n",
        &["/volume/capacity (line 3): invalid size '12abc'"],
    ),
    (
        "capacity-unknown-unit",
        "<volume>\n  <name>x</name>\n  <capacity unit='ZiB'>1</capacity>\n</volume>\n",
        &["/volume/capacity (line 3): unknown unit 'ZiB'"],
    ),
    (
        "allocation-unknown-unit",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <allocation unit='kilo'>1</allocation>\n</volume>\n",
        &["/volume/allocation (line 4): unknown unit 'kilo'"],
    ),
    (
        "cluster-size-garbage",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <clusterSize>big</clusterSize>\n  </target>\n</volume>\n",
        &["/volume/target/clusterSize (line 5): invalid size 'big'"],
    ),
    (
        "unknown-format",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <format type='vmdk'/>\n  </target>\n</volume>\n",
        &[
            "/volume/target/format/@type (line 5): unsupported volume format 'vmdk' (qpool supports: raw, qcow2)",
        ],
    ),
    (
        "unsupported-compat",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <format type='qcow2'/>\n    <compat>1.2</compat>\n  </target>\n</volume>\n",
        &["/volume/target/compat (line 6): unsupported compat level '1.2' (expected 0.10 or 1.1)"],
    ),
    (
        "mode-not-octal",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <permissions>\n      <mode>rw-r--r--</mode>\n    </permissions>\n  </target>\n</volume>\n",
        &["/volume/target/permissions/mode (line 6): malformed octal mode 'rw-r--r--'"],
    ),
    (
        "mode-with-setuid",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <permissions>\n      <mode>4755</mode>\n    </permissions>\n  </target>\n</volume>\n",
        &[
            "/volume/target/permissions/mode (line 6): malformed octal mode '4755' (expected 0000 to 0777)",
        ],
    ),
    (
        "owner-by-name",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <permissions>\n      <owner>qemu</owner>\n    </permissions>\n  </target>\n</volume>\n",
        &["/volume/target/permissions/owner (line 6): malformed owner 'qemu'"],
    ),
    (
        "group-negative",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <permissions>\n      <group>-7</group>\n    </permissions>\n  </target>\n</volume>\n",
        &["/volume/target/permissions/group (line 6): malformed group '-7'"],
    ),
    (
        "unknown-qpool-extension",
        "<volume xmlns:qpool='urn:qpool:volume:1'>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <qpool:prealloc mode='full'/>\n  </target>\n</volume>\n",
        &[
            "/volume/target/prealloc (line 5): unknown qpool extension element 'prealloc' (expected preallocation, refcount or compression)",
        ],
    ),
    (
        "qpool-extension-outside-target",
        "<volume xmlns:qpool='urn:qpool:volume:1'>\n  <name>x</name>\n  <capacity>1</capacity>\n  <qpool:preallocation mode='full'/>\n</volume>\n",
        &["/volume/preallocation (line 4): qpool extension elements belong inside <target>"],
    ),
    (
        "unknown-preallocation-mode",
        "<volume xmlns:qpool='urn:qpool:volume:1'>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <qpool:preallocation mode='sparse'/>\n  </target>\n</volume>\n",
        &["/volume/target/preallocation/@mode (line 5): unknown preallocation mode 'sparse'"],
    ),
    (
        "refcount-bits-not-a-power-of-two",
        "<volume xmlns:qpool='urn:qpool:volume:1'>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <qpool:refcount bits='12'/>\n  </target>\n</volume>\n",
        &[
            "/volume/target/refcount/@bits (line 5): refcount bits '12' must be a power of two from 1 to 64",
        ],
    ),
    (
        "unknown-compression",
        "<volume xmlns:qpool='urn:qpool:volume:1'>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <qpool:compression type='lz4'/>\n  </target>\n</volume>\n",
        &["/volume/target/compression/@type (line 5): unknown compression type 'lz4'"],
    ),
    (
        "unknown-feature",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <features>\n      <dirty_bitmaps/>\n    </features>\n  </target>\n</volume>\n",
        &["/volume/target/features/dirty_bitmaps (line 6): unsupported feature 'dirty_bitmaps'"],
    ),
    (
        "encryption",
        "<volume>\n  <name>x</name>\n  <capacity>1</capacity>\n  <target>\n    <encryption format='luks2'/>\n  </target>\n</volume>\n",
        &[
            "/volume/target/encryption/@format (line 5): unsupported encryption format 'luks2' (qpool supports: luks)",
        ],
    ),
    (
        "unknown-volume-type",
        "<volume type='floppy'>\n  <name>x</name>\n  <capacity>1</capacity>\n</volume>\n",
        &["/volume/@type (line 1): unknown volume type 'floppy'"],
    ),
    (
        "backing-store-without-path",
        "<volume>\n  <name>x</name>\n  <target><format type='qcow2'/></target>\n  <backingStore>\n    <format type='qcow2'/>\n  </backingStore>\n</volume>\n",
        &["/volume/backingStore: missing <path> element"],
    ),
    // Well-formed and valid, refused when planned.
    (
        "name-empty",
        "<volume><name></name><capacity>1</capacity></volume>",
        &["invalid volume name '': the name is empty"],
    ),
    (
        "name-dot-dot",
        "<volume><name>..</name><capacity>1</capacity></volume>",
        &["invalid volume name '..'"],
    ),
    (
        "name-parent",
        "<volume><name>../escape.img</name><capacity>1</capacity></volume>",
        &["invalid volume name '../escape.img'", "contains '/'"],
    ),
    (
        "name-hidden",
        "<volume><name>.x</name><capacity>1</capacity></volume>",
        &["invalid volume name '.x'", "starts with '.'"],
    ),
    (
        "name-with-newline",
        "<volume><name>a&#10;b</name><capacity>1</capacity></volume>",
        &["invalid volume name", "control character"],
    ),
    (
        "name-existing",
        "<volume><name>existing.img</name><capacity>1</capacity></volume>",
        &["volume 'existing.img' already exists in pool 'pool'"],
    ),
    (
        "name-of-symlink",
        "<volume><name>link</name><capacity>1</capacity></volume>",
        &["volume 'link' already exists in pool 'pool'"],
    ),
    (
        "raw-explicit-metadata",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>r.img</name><capacity>1</capacity><target><qpool:preallocation mode='metadata'/></target></volume>",
        &[
            "volume 'r.img'",
            "preallocation mode 'metadata' needs format qcow2",
        ],
    ),
    (
        "l1-table-overflow",
        "<volume>\n  <name>big.qcow2</name>\n  <capacity unit='T'>1</capacity>\n  <target>\n    <format type='qcow2'/>\n    <clusterSize unit='B'>512</clusterSize>\n  </target>\n</volume>\n",
        &[
            "volume 'big.qcow2': virtual size 1099511627776 is too large for qcow2 with 512-byte clusters (the L1 table would exceed 32 MiB; use larger clusters)",
        ],
    ),
    (
        "cluster-size-not-a-power-of-two",
        "<volume><name>c.qcow2</name><capacity>1</capacity><target><format type='qcow2'/><clusterSize>1000</clusterSize></target></volume>",
        &["volume 'c.qcow2': cluster size 1000 is not a power of two between 512 and 2 MiB"],
    ),
    (
        "cluster-size-4-mib",
        "<volume><name>c.qcow2</name><capacity>1</capacity><target><format type='qcow2'/><clusterSize unit='MiB'>4</clusterSize></target></volume>",
        &["volume 'c.qcow2': cluster size 4194304 is not a power of two between 512 and 2 MiB"],
    ),
    (
        "lazy-refcounts-with-compat-0.10",
        "<volume><name>c.qcow2</name><capacity>1</capacity><target><format type='qcow2'/><compat>0.10</compat><features><lazy_refcounts/></features></target></volume>",
        &["volume 'c.qcow2': lazy_refcounts needs compat 1.1"],
    ),
    (
        "refcount-width-with-compat-0.10",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>c.qcow2</name><capacity>1</capacity><target><format type='qcow2'/><compat>0.10</compat><qpool:refcount bits='8'/></target></volume>",
        &["volume 'c.qcow2': a refcount width other than 16 bits needs compat 1.1"],
    ),
    (
        "extended-l2-with-small-clusters",
        "<volume><name>c.qcow2</name><capacity>1</capacity><target><format type='qcow2'/><clusterSize>4096</clusterSize><features><extended_l2/></features></target></volume>",
        &["volume 'c.qcow2': extended_l2 needs clusters of at least 16 KiB (cluster size is 4096)"],
    ),
    (
        "overlay-with-explicit-preallocation",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>o.qcow2</name><target><format type='qcow2'/><qpool:preallocation mode='falloc'/></target><backingStore><path>base.qcow2</path></backingStore></volume>",
        &[
            "volume 'o.qcow2': preallocation 'falloc' with a backing store needs <features><extended_l2/></features>",
        ],
    ),
    (
        "overlay-of-missing-backing-store",
        "<volume><name>o.qcow2</name><target><format type='qcow2'/></target><backingStore><path>missing.qcow2</path></backingStore></volume>",
        &["cannot use backing store 'missing.qcow2'", "No such file"],
    ),
];

#[test]
fn vol_create_refuses_bad_volume_xml() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    for (case, doc, expected) in XML_REFUSALS {
        let file = pool.write_file(&format!("{case}.xml"), doc);
        let file = file.to_str().unwrap();
        let stderr = assert_refused(pool, case, &["vol-create", file], expected);
        // Problems found while reading the document name the file too.
        if stderr.contains("invalid volume XML") {
            assert!(
                stderr.starts_with(&format!("error: {file}: invalid volume XML: ")),
                "{case}: {stderr}"
            );
        }
        fixture.assert_untouched(case);
    }
}

#[test]
fn explain_refuses_the_same_volume_xml_as_vol_create() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    for (case, doc, expected) in XML_REFUSALS {
        let file = pool.write_file(&format!("{case}.xml"), doc);
        assert_refused(pool, case, &["explain", file.to_str().unwrap()], expected);
    }
}

#[test]
fn vol_create_refuses_unreadable_files() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    let latin1 = pool.scratch().join("latin1.xml");
    std::fs::write(
        &latin1,
        b"<?xml version='1.0' encoding='ISO-8859-1'?><volume><name>\xe9</name><capacity>1</capacity></volume>",
    )
    .unwrap();
    let missing = pool.scratch().join("missing.xml");
    let dir = pool.scratch().display().to_string();
    let args = |a: &[&str]| strings(a);
    run_refusals(
        &fixture,
        &[
            (
                "missing-file",
                args(&["vol-create", missing.to_str().unwrap()]),
                vec![
                    &format!("cannot read {}", missing.display()),
                    "No such file",
                ],
            ),
            (
                "directory",
                args(&["vol-create", &dir]),
                vec![&format!("cannot read {dir}"), "directory"],
            ),
            (
                "not-utf-8",
                args(&["vol-create", latin1.to_str().unwrap()]),
                vec![&format!("cannot read {}", latin1.display()), "UTF-8"],
            ),
        ],
    );
}

#[test]
fn vol_create_raw_with_prealloc_metadata_flag_is_refused() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    let file = pool.write_file(
        "raw.xml",
        "<volume><name>r.img</name><capacity unit='M'>1</capacity><target><format type='raw'/></target></volume>",
    );
    let file = file.to_str().unwrap();
    for verb in ["vol-create", "explain"] {
        assert_refused(
            pool,
            verb,
            &[verb, file, "--prealloc-metadata"],
            &["volume 'r.img': metadata preallocation is not supported for raw volumes"],
        );
    }
}

#[test]
fn vol_create_existing_name_leaves_the_volume_unchanged() {
    let fixture = Fixture::new();
    let pool = &fixture.pool;
    let before = std::fs::metadata(pool.vol("existing.img")).unwrap();
    let file = pool.write_file(
        "again.xml",
        "<volume><name>existing.img</name><capacity unit='M'>2</capacity><target><format type='qcow2'/></target></volume>",
    );
    assert_refused(
        pool,
        "vol-create-existing",
        &["vol-create", file.to_str().unwrap()],
        &["volume 'existing.img' already exists in pool 'pool'"],
    );
    fixture.assert_untouched("vol-create-existing");
    let after = std::fs::metadata(pool.vol("existing.img")).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.mtime_nsec()),
        (before.ino(), before.len(), before.mtime_nsec())
    );
}

// ---------------------------------------------------------------------------------------
// Leftovers of interrupted creates
// ---------------------------------------------------------------------------------------

#[test]
fn pool_refresh_removes_an_unlocked_leftover() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "keep.img", "1M", "--allocation", "0"]);
    drop(make_leftover(&pool, "crashed"));
    assert_eq!(pool.listing(), [".qpool-tmp-crashed", "keep.img"]);
    assert_eq!(pool.ok(&["pool-refresh"]), "Pool pool refreshed\n\n");
    assert_eq!(pool.listing(), ["keep.img"]);
}

#[test]
fn every_command_opening_the_pool_removes_unlocked_leftovers() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "v.img", "1M", "--allocation", "0"]);
    let xml = pool.write_file(
        "n.xml",
        "<volume><name>n.img</name><capacity>512</capacity><allocation>0</allocation></volume>",
    );
    let xml = xml.to_str().unwrap();
    // (command, whether it succeeds)
    let commands: &[(&[&str], bool)] = &[
        (&["vol-list"], true),
        (&["vol-list", "--details"], true),
        (&["vol-info", "v.img"], true),
        (&["vol-dumpxml", "v.img"], true),
        (&["vol-path", "v.img"], true),
        (&["pool-info"], true),
        (&["pool-dumpxml"], true),
        (&["explain", xml], true),
        (&["vol-create", xml], true),
        (
            &["vol-create-as", "m.img", "512", "--allocation", "0"],
            true,
        ),
        (&["vol-delete", "m.img"], true),
        // Even a command that then fails has opened (and cleaned) the pool.
        (&["vol-info", "missing.img"], false),
    ];
    for (args, succeeds) in commands {
        drop(make_leftover(&pool, "crashed"));
        let out = pool.qpool(args);
        assert_eq!(
            out.status.success(),
            *succeeds,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !pool.listing().iter().any(|n| n.starts_with(TEMP_PREFIX)),
            "{args:?} left the leftover: {:?}",
            pool.listing()
        );
    }
}

#[test]
fn pool_refresh_keeps_a_leftover_held_by_an_ofd_lock() {
    let pool = TempPool::new();
    let file = make_leftover(&pool, "in-progress");
    nix::fcntl::fcntl(
        file.as_fd(),
        nix::fcntl::FcntlArg::F_OFD_SETLK(&write_lock_all()),
    )
    .expect("take an OFD write lock");
    pool.ok(&["pool-refresh"]);
    pool.ok(&["vol-list"]);
    assert_eq!(pool.listing(), [".qpool-tmp-in-progress"]);
    assert_eq!(
        std::fs::read(pool.vol(".qpool-tmp-in-progress")).unwrap(),
        b"half a volume"
    );
    // Once the creator is gone, the next refresh takes it. (A child another test thread
    // forks may hold a copy of the descriptor until it execs: wait until the lock is free.)
    drop(file);
    let path = pool.vol(".qpool-tmp-in-progress");
    let start = std::time::Instant::now();
    loop {
        let probe = File::options().read(true).write(true).open(&path).unwrap();
        let free = nix::fcntl::fcntl(
            probe.as_fd(),
            nix::fcntl::FcntlArg::F_OFD_SETLK(&write_lock_all()),
        )
        .is_ok();
        drop(probe);
        if free {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the lock stays"
        );
        std::thread::yield_now();
    }
    pool.ok(&["pool-refresh"]);
    assert_eq!(pool.listing(), Vec::<String>::new());
}

#[test]
fn pool_refresh_keeps_a_leftover_held_by_a_posix_record_lock() {
    let pool = TempPool::new();
    let file = make_leftover(&pool, "posix");
    nix::fcntl::fcntl(
        file.as_fd(),
        nix::fcntl::FcntlArg::F_SETLK(&write_lock_all()),
    )
    .expect("take a POSIX write lock");
    pool.ok(&["pool-refresh"]);
    assert_eq!(pool.listing(), [".qpool-tmp-posix"]);
    drop(file);
}

#[test]
fn pool_refresh_keeps_hidden_files_that_are_not_leftovers() {
    let pool = TempPool::new();
    std::fs::write(pool.vol(".hidden"), b"x").unwrap();
    std::fs::write(pool.vol(".qpool-tm"), b"x").unwrap();
    pool.ok(&["pool-refresh"]);
    assert_eq!(pool.listing(), [".hidden", ".qpool-tm"]);
}

#[test]
fn pool_refresh_neither_follows_nor_removes_a_symlink_named_like_a_leftover() {
    let pool = TempPool::new();
    let outside = pool.scratch().join("outside.img");
    std::fs::write(&outside, OUTSIDE_CONTENT).unwrap();
    std::os::unix::fs::symlink(&outside, pool.vol(".qpool-tmp-link")).unwrap();
    pool.ok(&["pool-refresh"]);
    assert_eq!(std::fs::read(&outside).unwrap(), OUTSIDE_CONTENT);
    assert_eq!(pool.listing(), [".qpool-tmp-link"]);
}
