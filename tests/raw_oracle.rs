//! raw volumes checked with oracles we did not write: `qemu-img info`, `qemu-img compare`
//! against a twin that `qemu-img create -f raw -o preallocation=M` makes, `cmp`, and
//! `st_blocks` (against the allocation `qpool explain` expects and against the twin's).
//!
//! Covered: the explicit modes off/falloc/full, design.md's allocation table for raw (absent,
//! 0, partial, at and above capacity), the zero-fill fallback (`QPOOL_NO_FALLOCATE=1`), and the
//! combinations qemu-img refuses for raw (backing file, metadata preallocation).
//!
//! qemu-img's raw driver allocates the first 4 KiB of every image it creates, even a sparse one
//! (file-posix `allocate_first_block`, to speed up alignment probing). libvirt creates raw
//! volumes itself and does not. So `compare -s` applies only where both files are written
//! (full), and the twin's st_blocks may exceed qpool's by that one block, which the allocation
//! slack covers.

mod common;

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, PoisonError};

use common::{
    TempPool, alloc_and_size, assert_allocation_near, have, qemu_compare, qemu_info, run,
};
use serde_json::json;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// 1 MiB + 512 B: a multiple of 512 (qemu-img rounds raw sizes up to 512) but not of the
/// filesystem's 4 KiB blocks.
const SIZE_1M_512: u64 = MIB + 512;
const SIZE_5G: u64 = 5 * GIB;

/// Block size of the filesystem under test (ext4 in CI): fallocate and st_blocks count whole
/// blocks, so a reservation of `a` bytes shows as `a` rounded up to it.
const FS_BLOCK: u64 = 4 * KIB;

/// The qpool extension namespace.
const QPOOL_NS: &str = "urn:qpool:volume:1";

/// Serializes the cases that allocate gigabytes (the volume plus its twin), so that at most
/// one of them holds its disk space at a time while cargo runs tests on several threads.
static BIG_ALLOCATION: Mutex<()> = Mutex::new(());

fn big_allocation() -> MutexGuard<'static, ()> {
    // A failed case poisons the lock; the next case may still run.
    BIG_ALLOCATION
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

/// A raw volume definition as libvirt volume XML.
fn raw_xml(name: &str, capacity: u64, allocation: Option<u64>, mode: Option<&str>) -> String {
    let mut xml = format!(
        "<volume>\n  <name>{name}</name>\n  <capacity unit='bytes'>{capacity}</capacity>\n"
    );
    if let Some(a) = allocation {
        xml += &format!("  <allocation unit='bytes'>{a}</allocation>\n");
    }
    xml += "  <target>\n    <format type='raw'/>\n";
    if let Some(m) = mode {
        xml += &format!("    <qpool:preallocation xmlns:qpool='{QPOOL_NS}' mode='{m}'/>\n");
    }
    xml + "  </target>\n</volume>\n"
}

/// What `qpool explain` printed.
struct Explained {
    text: String,
    mode: String,
    allocation: u64,
    physical: u64,
}

fn labelled_number(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn stdout_or_panic(out: &Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "qpool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// `qpool explain FILE` with `env`; panics unless it succeeds.
fn explain(pool: &TempPool, xml: &Path, env: &[(&str, &str)]) -> Explained {
    let args = ["explain", xml.to_str().unwrap()];
    let text = stdout_or_panic(&pool.qpool_env(&args, env), &args);
    let number = |label| {
        labelled_number(&text, label).unwrap_or_else(|| panic!("no {label} in explain: {text}"))
    };
    Explained {
        mode: text
            .lines()
            .find_map(|l| l.strip_prefix("Preallocation:"))
            .map(|m| m.trim().to_string())
            .unwrap_or_else(|| panic!("no Preallocation in explain: {text}")),
        allocation: number("Allocation"),
        physical: number("Physical"),
        text,
    }
}

/// `qpool vol-create FILE` with `env`; panics unless it succeeds.
fn vol_create(pool: &TempPool, xml: &Path, env: &[(&str, &str)]) {
    let args = ["vol-create", xml.to_str().unwrap()];
    stdout_or_panic(&pool.qpool_env(&args, env), &args);
}

/// Capacity and allocation that `qpool vol-info NAME --bytes` reports.
fn vol_info(pool: &TempPool, name: &str) -> (u64, u64) {
    let text = pool.ok(&["vol-info", name, "--bytes"]);
    (
        labelled_number(&text, "Capacity").expect("vol-info capacity"),
        labelled_number(&text, "Allocation").expect("vol-info allocation"),
    )
}

/// `qemu-img create -q -f raw -o preallocation=MODE PATH SIZE`.
fn qemu_create_raw(path: &Path, mode: &str, size: u64) {
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "raw",
            "-o",
            &format!("preallocation={mode}"),
            path.to_str().unwrap(),
            &size.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "qemu-img create -f raw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Byte identity with `cmp`.
fn assert_identical(a: &Path, b: &Path, label: &str) {
    let out = run("cmp", &[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{label}: not byte-identical to the qemu-img twin: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The data extents of a file, from SEEK_DATA/SEEK_HOLE (written blocks; ext4 reports
/// fallocated but unwritten blocks as holes).
fn data_extents(path: &Path) -> Vec<Range<u64>> {
    use nix::unistd::{Whence, lseek};
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        let start = match lseek(&file, i64::try_from(at).unwrap(), Whence::SeekData) {
            Ok(s) => u64::try_from(s).unwrap(),
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => panic!("SEEK_DATA: {e}"),
        };
        let end = lseek(&file, i64::try_from(start).unwrap(), Whence::SeekHole)
            .map(|e| u64::try_from(e).unwrap())
            .unwrap_or_else(|e| panic!("SEEK_HOLE: {e}"));
        out.push(start..end);
        at = end;
    }
    out
}

/// Growth of st_blocks*512 when one 4 KiB block is written at `offset`: 0 inside space that
/// is already allocated (fallocated or written), 4 KiB in a hole.
fn growth_when_written(path: &Path, offset: u64) -> u64 {
    let before = alloc_and_size(path).0;
    let file = File::options().write(true).open(path).unwrap();
    file.write_all_at(&vec![0x5a; usize::try_from(FS_BLOCK).unwrap()], offset)
        .unwrap();
    file.sync_all().unwrap();
    alloc_and_size(path).0 - before
}

/// A volume and its twin, deleted together as soon as the case is done (or fails).
struct Pair {
    vol: PathBuf,
    twin: PathBuf,
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.vol);
        let _ = std::fs::remove_file(&self.twin);
    }
}

/// One raw case: how the XML asks, what qpool must do, and the twin it is compared with.
struct RawCase {
    label: &'static str,
    capacity: u64,
    allocation: Option<u64>,
    /// `<qpool:preallocation mode=…/>`.
    mode: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    /// The mode the policy must pick (and explain print).
    expect_mode: &'static str,
    /// Bytes at the start fallocated (or zero-filled) on top of the mode.
    reserved: u64,
    /// Whether explain must print the `Fallback:` line.
    fallback: bool,
    /// The twin's `preallocation=`.
    twin: &'static str,
}

const CASE: RawCase = RawCase {
    label: "",
    capacity: SIZE_1M_512,
    allocation: None,
    mode: None,
    env: &[],
    expect_mode: "",
    reserved: 0,
    fallback: false,
    twin: "off",
};

fn check_raw(table: &[RawCase]) {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    for case in table {
        check_case(&pool, case);
    }
}

fn check_case(pool: &TempPool, case: &RawCase) {
    let _big = (case.capacity >= GIB && (case.expect_mode != "off" || case.reserved > 0))
        .then(big_allocation);
    let label = case.label;
    let name = format!("{label}.img");
    let xml = raw_xml(&name, case.capacity, case.allocation, case.mode);
    let xml = pool.write_file(&format!("{name}.xml"), &xml);
    let plan = explain(pool, &xml, case.env);
    assert_eq!(plan.mode, case.expect_mode, "{label}: explain mode");
    assert_eq!(plan.physical, case.capacity, "{label}: explain physical");
    assert_eq!(
        plan.text.contains("\nReserved:"),
        case.reserved > 0,
        "{label}: explain's Reserved line: {}",
        plan.text
    );
    assert_eq!(
        plan.text.contains("\nFallback:"),
        case.fallback,
        "{label}: explain's Fallback line: {}",
        plan.text
    );
    vol_create(pool, &xml, case.env);
    let pair = Pair {
        vol: pool.vol(&name),
        twin: pool.scratch().join(format!("twin-{name}")),
    };
    qemu_create_raw(&pair.twin, case.twin, case.capacity);

    let info = qemu_info(&pair.vol);
    let (allocation, length) = alloc_and_size(&pair.vol);
    assert_eq!(info["format"], json!("raw"), "{label}: format");
    assert_eq!(
        info["virtual-size"],
        json!(case.capacity),
        "{label}: virtual-size"
    );
    assert_eq!(
        info["actual-size"],
        json!(allocation),
        "{label}: actual-size"
    );
    assert_eq!(length, case.capacity, "{label}: st_size");
    assert_eq!(
        vol_info(pool, &name),
        (case.capacity, allocation),
        "{label}: vol-info capacity and allocation"
    );
    assert!(
        qemu_compare(&pair.vol, &pair.twin, false),
        "{label}: qemu-img compare with the {} twin",
        case.twin
    );
    if case.twin == "full" {
        assert!(
            qemu_compare(&pair.vol, &pair.twin, true),
            "{label}: qemu-img compare -s with the full twin"
        );
    }
    assert_identical(&pair.vol, &pair.twin, label);
    assert_allocation_near(allocation, plan.allocation, "explain's expectation", label);
    assert_allocation_near(
        allocation,
        alloc_and_size(&pair.twin).0 + round_up(case.reserved, FS_BLOCK),
        "the twin's plus the reserved bytes",
        label,
    );
}

/// Makes qpool behave as if the filesystem could not fallocate.
const NO_FALLOCATE: (&str, &str) = ("QPOOL_NO_FALLOCATE", "1");

#[test]
fn raw_explicit_modes_match_qemu_img_twin() {
    check_raw(&[
        RawCase {
            label: "off",
            mode: Some("off"),
            expect_mode: "off",
            twin: "off",
            ..CASE
        },
        RawCase {
            label: "off-5g",
            capacity: SIZE_5G,
            mode: Some("off"),
            expect_mode: "off",
            twin: "off",
            ..CASE
        },
        RawCase {
            label: "falloc",
            mode: Some("falloc"),
            expect_mode: "falloc",
            twin: "falloc",
            ..CASE
        },
        RawCase {
            label: "falloc-5g",
            capacity: SIZE_5G,
            mode: Some("falloc"),
            expect_mode: "falloc",
            twin: "falloc",
            ..CASE
        },
        RawCase {
            // full only at 1 MiB + 512 B: big full images belong to benches.
            label: "full",
            mode: Some("full"),
            expect_mode: "full",
            twin: "full",
            ..CASE
        },
    ]);
}

#[test]
fn raw_allocation_policy_picks_mode_and_matches_qemu_img_twin() {
    check_raw(&[
        RawCase {
            // libvirt reads a missing <allocation> as = capacity.
            label: "allocation-absent",
            expect_mode: "falloc",
            twin: "falloc",
            ..CASE
        },
        RawCase {
            label: "allocation-0",
            allocation: Some(0),
            expect_mode: "off",
            twin: "off",
            ..CASE
        },
        RawCase {
            // 10,000 bytes: not a whole number of filesystem blocks.
            label: "allocation-partial",
            allocation: Some(10_000),
            expect_mode: "off",
            reserved: 10_000,
            twin: "off",
            ..CASE
        },
        RawCase {
            label: "allocation-partial-5g",
            capacity: SIZE_5G,
            allocation: Some(SIZE_5G / 2 + 1),
            expect_mode: "off",
            reserved: SIZE_5G / 2 + 1,
            twin: "off",
            ..CASE
        },
        RawCase {
            label: "allocation-at-capacity",
            allocation: Some(SIZE_1M_512),
            expect_mode: "falloc",
            twin: "falloc",
            ..CASE
        },
        RawCase {
            label: "allocation-above-capacity",
            allocation: Some(2 * SIZE_1M_512),
            expect_mode: "falloc",
            twin: "falloc",
            ..CASE
        },
    ]);
}

#[test]
fn raw_partial_allocation_reserves_the_first_bytes() {
    if !have("qemu-img") {
        return;
    }
    // Writing into reserved space allocates nothing new; writing just past it does. Offsets
    // are whole 4 KiB blocks: 12 KiB is the reservation of 10,000 bytes rounded up.
    let table = [
        ("partial-10000", SIZE_1M_512, 10_000, 8 * KIB),
        ("partial-5g", SIZE_5G, SIZE_5G / 2 + 1, SIZE_5G / 2),
    ];
    let pool = TempPool::new();
    for (label, capacity, allocation, last_reserved_block) in table {
        let _big = (capacity >= GIB).then(big_allocation);
        let name = format!("{label}.img");
        let xml = raw_xml(&name, capacity, Some(allocation), None);
        let xml = pool.write_file(&format!("{name}.xml"), &xml);
        vol_create(&pool, &xml, &[]);
        let vol = pool.vol(&name);
        assert_eq!(
            growth_when_written(&vol, last_reserved_block),
            0,
            "{label}: block at {last_reserved_block} was not reserved"
        );
        assert_eq!(
            growth_when_written(&vol, last_reserved_block + FS_BLOCK),
            FS_BLOCK,
            "{label}: block at {} was reserved",
            last_reserved_block + FS_BLOCK
        );
        std::fs::remove_file(&vol).unwrap();
    }
}

#[test]
fn raw_without_fallocate_writes_zeros_matching_qemu_img_twin() {
    // Written zeros are data for `compare -s`, like qemu-img's full preallocation.
    check_raw(&[
        RawCase {
            label: "falloc-no-fallocate",
            mode: Some("falloc"),
            env: &[NO_FALLOCATE],
            expect_mode: "falloc",
            fallback: true,
            twin: "full",
            ..CASE
        },
        RawCase {
            label: "allocation-absent-no-fallocate",
            env: &[NO_FALLOCATE],
            expect_mode: "falloc",
            fallback: true,
            twin: "full",
            ..CASE
        },
        RawCase {
            label: "allocation-partial-no-fallocate",
            allocation: Some(10_000),
            env: &[NO_FALLOCATE],
            expect_mode: "off",
            reserved: 10_000,
            fallback: true,
            twin: "off",
            ..CASE
        },
        RawCase {
            // Nothing to fallocate: no fallback.
            label: "full-no-fallocate",
            mode: Some("full"),
            env: &[NO_FALLOCATE],
            expect_mode: "full",
            twin: "full",
            ..CASE
        },
        RawCase {
            label: "off-no-fallocate",
            allocation: Some(0),
            env: &[NO_FALLOCATE],
            expect_mode: "off",
            twin: "off",
            ..CASE
        },
        RawCase {
            // fallocate works here: no fallback.
            label: "falloc-with-fallocate",
            mode: Some("falloc"),
            expect_mode: "falloc",
            twin: "falloc",
            ..CASE
        },
    ]);
}

#[test]
fn raw_partial_allocation_without_fallocate_writes_the_first_bytes() {
    if !have("qemu-img") {
        return;
    }
    // The zeros written in place of fallocate are data extents: exactly the first 10,000
    // bytes rounded up to a 4 KiB block.
    let pool = TempPool::new();
    let xml = raw_xml("p.img", SIZE_1M_512, Some(10_000), None);
    let xml = pool.write_file("p.xml", &xml);
    vol_create(&pool, &xml, &[NO_FALLOCATE]);
    assert_eq!(
        data_extents(&pool.vol("p.img")),
        vec![0..round_up(10_000, FS_BLOCK)]
    );
}

#[test]
fn raw_capacity_not_multiple_of_512_is_kept_exact() {
    if !have("qemu-img") {
        return;
    }
    // libvirt creates raw files itself at the exact capacity (qemu-img create would round up
    // to 512), and reports the file size as capacity. qemu's block layer counts whole
    // 512-byte sectors, so qemu-img info shows the size rounded up.
    let pool = TempPool::new();
    let capacity = MIB + 100;
    let xml = raw_xml("odd.img", capacity, Some(0), None);
    let xml = pool.write_file("odd.xml", &xml);
    vol_create(&pool, &xml, &[]);
    let vol = pool.vol("odd.img");
    assert_eq!(alloc_and_size(&vol).1, capacity, "st_size");
    assert_eq!(vol_info(&pool, "odd.img").0, capacity, "vol-info capacity");
    let info = qemu_info(&vol);
    assert_eq!(info["format"], json!("raw"));
    assert_eq!(info["virtual-size"], json!(round_up(capacity, 512)));
}

#[test]
fn raw_with_backing_store_is_refused_like_qemu_img() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "base.img", "1M", "--allocation", "0"]);
    let base = pool.vol("base.img");
    let xml = format!(
        "<volume><name>o.img</name><capacity>1048576</capacity>\
         <target><format type='raw'/></target>\
         <backingStore><path>{}</path><format type='raw'/></backingStore></volume>",
        base.display()
    );
    let xml = pool.write_file("o.xml", &xml);
    let out = pool.qpool(&["vol-create", xml.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "qpool exit status: {stderr}");
    assert!(stderr.contains("backing"), "qpool error: {stderr}");
    assert!(!pool.vol("o.img").exists(), "volume left behind");

    let twin = pool.scratch().join("twin-o.img");
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "raw",
            "-b",
            base.to_str().unwrap(),
            "-F",
            "raw",
            twin.to_str().unwrap(),
            "1M",
        ],
    );
    assert!(!out.status.success(), "qemu-img accepted a raw overlay");
}

#[test]
fn raw_metadata_preallocation_is_refused_like_qemu_img() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    // Explicit mode, and libvirt's --prealloc-metadata flag (libvirt refuses it for raw too).
    let explicit = pool.write_file("m.xml", &raw_xml("m.img", MIB, None, Some("metadata")));
    let plain = pool.write_file("f.xml", &raw_xml("f.img", MIB, Some(0), None));
    let rows: [(&str, &Path, &[&str]); 2] = [
        ("explicit-metadata", &explicit, &[]),
        ("prealloc-metadata-flag", &plain, &["--prealloc-metadata"]),
    ];
    for (label, xml, flags) in rows {
        let mut args = vec!["vol-create", xml.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = pool.qpool(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{label}: qpool exit status: {stderr}"
        );
        assert!(
            stderr.contains("metadata"),
            "{label}: qpool error: {stderr}"
        );
        assert!(
            pool.listing().is_empty(),
            "{label}: left {:?}",
            pool.listing()
        );
    }

    let twin = pool.scratch().join("twin-m.img");
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "raw",
            "-o",
            "preallocation=metadata",
            twin.to_str().unwrap(),
            "1M",
        ],
    );
    assert!(
        !out.status.success(),
        "qemu-img accepted raw metadata preallocation"
    );
}
