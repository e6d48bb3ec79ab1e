//! qcow2 volumes checked with oracles we did not write: `qemu-img check` (clean), `qemu-img
//! info --output=json` (header fields), `qemu-img compare` (plain, and `-s` where both images
//! use the same preallocation mode) against a twin that `qemu-img create` makes with the same
//! options, `cmp` (byte identity where qpool mirrors qemu's allocator), and `st_blocks` (against
//! the allocation `qpool explain` expects and against the twin's).
//!
//! Covered: preallocation mode × cluster size {512 B, 4 KiB, 64 KiB, 2 MiB} × size {1 MiB +
//! 512 B, 5 GiB, 1 TiB for off/metadata} × compat {0.10, 1.1}; feature options and the option
//! checks qemu-img refuses; the allocation policy; overlays on qcow2 and raw backing files; the
//! zero-fill fallback (`QPOOL_NO_FALLOCATE=1`).
//!
//! Disk: falloc cases at 5 GiB really allocate 5 GiB for the volume and 5 GiB for the twin.
//! Every image and twin is deleted as soon as its case is checked, and the big-allocation cases
//! take [`big_allocation`] so that at most one of them runs at a time.

mod common;

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, PoisonError};

use common::{
    TempPool, alloc_and_size, assert_allocation_near, assert_check_clean, have, qemu_compare,
    qemu_create, qemu_info, run,
};
use serde_json::{Value, json};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// 1 MiB + 512 B: for every cluster size above 512 B the last cluster lies partly beyond the
/// virtual size (qemu zero-fills that tail in metadata mode; qcow2-create.md §3.2).
const SIZE_1M_512: u64 = MIB + 512;
const SIZE_5G: u64 = 5 * GIB;
const SIZE_1T: u64 = TIB;

/// Both qcow2 versions: compat 0.10 writes a version 2 header, 1.1 a version 3 header.
const COMPATS: [&str; 2] = ["0.10", "1.1"];

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

/// qemu-img's preallocation modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Metadata,
    Falloc,
    Full,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Metadata => "metadata",
            Mode::Falloc => "falloc",
            Mode::Full => "full",
        }
    }

    /// Whether the data area is really allocated (falloc, full).
    fn allocates_data(self) -> bool {
        matches!(self, Mode::Falloc | Mode::Full)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Short human-readable byte count for case labels and volume names: 64k, 5g, 1m+512.
fn bytes_label(bytes: u64) -> String {
    let units = [(TIB, "t"), (GIB, "g"), (MIB, "m"), (KIB, "k")];
    for (unit, suffix) in units {
        if bytes >= unit {
            let rest = bytes % unit;
            return if rest == 0 {
                format!("{}{suffix}", bytes / unit)
            } else {
                format!("{}{suffix}+{rest}", bytes / unit)
            };
        }
    }
    format!("{bytes}b")
}

/// Rounds up to a multiple of `to`.
fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

// ---------------------------------------------------------------------------------------------
// Volume XML

/// A qcow2 volume definition, rendered as libvirt volume XML.
#[derive(Debug, Default, Clone)]
struct QcowXml<'a> {
    name: &'a str,
    capacity: Option<u64>,
    allocation: Option<u64>,
    compat: Option<&'a str>,
    cluster: Option<u64>,
    mode: Option<Mode>,
    /// `<features>` children, e.g. `<lazy_refcounts/>`.
    features: &'a str,
    /// `<qpool:refcount bits='N'/>`.
    refcount_bits: Option<u32>,
    /// `<qpool:compression type='…'/>`.
    compression: Option<&'a str>,
    /// Backing path and, when given, its `<format type='…'/>`.
    backing: Option<(&'a str, Option<&'a str>)>,
}

impl QcowXml<'_> {
    fn render(&self) -> String {
        let mut xml = format!("<volume>\n  <name>{}</name>\n", self.name);
        if let Some(c) = self.capacity {
            xml += &format!("  <capacity unit='bytes'>{c}</capacity>\n");
        }
        if let Some(a) = self.allocation {
            xml += &format!("  <allocation unit='bytes'>{a}</allocation>\n");
        }
        xml += "  <target>\n    <format type='qcow2'/>\n";
        if let Some(c) = self.compat {
            xml += &format!("    <compat>{c}</compat>\n");
        }
        if let Some(cs) = self.cluster {
            xml += &format!("    <clusterSize unit='B'>{cs}</clusterSize>\n");
        }
        if !self.features.is_empty() {
            xml += &format!("    <features>{}</features>\n", self.features);
        }
        if let Some(mode) = self.mode {
            xml += &format!("    <qpool:preallocation xmlns:qpool='{QPOOL_NS}' mode='{mode}'/>\n");
        }
        if let Some(bits) = self.refcount_bits {
            xml += &format!("    <qpool:refcount xmlns:qpool='{QPOOL_NS}' bits='{bits}'/>\n");
        }
        if let Some(t) = self.compression {
            xml += &format!("    <qpool:compression xmlns:qpool='{QPOOL_NS}' type='{t}'/>\n");
        }
        xml += "  </target>\n";
        if let Some((path, format)) = self.backing {
            xml += &format!("  <backingStore>\n    <path>{path}</path>\n");
            if let Some(f) = format {
                xml += &format!("    <format type='{f}'/>\n");
            }
            xml += "  </backingStore>\n";
        }
        xml + "</volume>\n"
    }
}

// ---------------------------------------------------------------------------------------------
// qpool and oracle wrappers

/// What `qpool explain` printed.
#[derive(Debug)]
struct Explained {
    text: String,
    mode: String,
    capacity: u64,
    allocation: u64,
    physical: u64,
}

/// The first number after `label:` in virsh-style `label: value` output.
fn labelled_number(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn labelled_text<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(':'))
        .map(str::trim)
}

/// `qpool explain FILE [flags]` with `env`; panics unless it succeeds.
fn explain(pool: &TempPool, xml: &Path, flags: &[&str], env: &[(&str, &str)]) -> Explained {
    let mut args = vec!["explain", xml.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = pool.qpool_env(&args, env);
    let text = stdout_or_panic(&out, &args);
    let number = |label| {
        labelled_number(&text, label).unwrap_or_else(|| panic!("no {label} in explain: {text}"))
    };
    Explained {
        mode: labelled_text(&text, "Preallocation")
            .unwrap_or_else(|| panic!("no Preallocation in explain: {text}"))
            .to_string(),
        capacity: number("Capacity"),
        allocation: number("Allocation"),
        physical: number("Physical"),
        text,
    }
}

fn stdout_or_panic(out: &Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "qpool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// `qpool vol-create FILE [flags]` with `env`; panics unless it succeeds.
fn vol_create(pool: &TempPool, xml: &Path, flags: &[&str], env: &[(&str, &str)]) {
    let mut args = vec!["vol-create", xml.to_str().unwrap()];
    args.extend_from_slice(flags);
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

/// `qemu-img create -f qcow2 [-o OPTIONS] [-b BACKING -F FMT] PATH [SIZE]`, for the twins that
/// `common::qemu_create` cannot express (overlays without a size).
fn qemu_create_overlay(path: &Path, options: &str, backing: &str, fmt: &str, size: Option<u64>) {
    let size = size.map(|s| s.to_string());
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if !options.is_empty() {
        args.extend(["-o", options]);
    }
    args.extend(["-b", backing, "-F", fmt, path.to_str().unwrap()]);
    args.extend(size.as_deref());
    let out = run("qemu-img", &args);
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Above this apparent size `cmp` would read for minutes through holes (the 1 TiB metadata
/// images); there only the data extents are compared.
const CMP_LIMIT: u64 = 64 * GIB;

/// Byte identity: `cmp` for files up to [`CMP_LIMIT`]; above it, the union of both files' data
/// extents (SEEK_DATA/SEEK_HOLE) is read and compared, since everything outside it is a hole
/// in both files and reads as zeros.
fn assert_identical(a: &Path, b: &Path, label: &str) {
    let (_, len_a) = alloc_and_size(a);
    let (_, len_b) = alloc_and_size(b);
    assert_eq!(len_a, len_b, "{label}: file lengths differ from the twin");
    if len_a <= CMP_LIMIT {
        let out = run("cmp", &[a.to_str().unwrap(), b.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{label}: not byte-identical to the qemu-img twin: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let mut ranges = data_extents(&fa, len_a);
    ranges.extend(data_extents(&fb, len_b));
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    const CHUNK: usize = 4 << 20;
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    for r in merged {
        let mut at = r.start;
        while at < r.end {
            let n = usize::try_from(r.end - at).map_or(CHUNK, |left| left.min(CHUNK));
            fa.read_exact_at(&mut ba[..n], at).unwrap();
            fb.read_exact_at(&mut bb[..n], at).unwrap();
            if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
                panic!(
                    "{label}: not byte-identical to the qemu-img twin: first difference at byte {}",
                    at + i as u64
                );
            }
            at += n as u64;
        }
    }
}

/// The data extents of a file, from SEEK_DATA/SEEK_HOLE.
fn data_extents(file: &File, len: u64) -> Vec<Range<u64>> {
    use nix::unistd::{Whence, lseek};
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        let start = match lseek(file, i64::try_from(at).unwrap(), Whence::SeekData) {
            Ok(s) => u64::try_from(s).unwrap(),
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => panic!("SEEK_DATA: {e}"),
        };
        let end = lseek(file, i64::try_from(start).unwrap(), Whence::SeekHole)
            .map(|e| u64::try_from(e).unwrap())
            .unwrap_or_else(|e| panic!("SEEK_HOLE: {e}"));
        out.push(start..end);
        at = end;
    }
    out
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

/// The header fields `qemu-img info` shows for a qcow2 image without backing file.
fn assert_info_fields(info: &Value, size: u64, cluster: u64, compat: &str, label: &str) {
    assert_eq!(info["format"], json!("qcow2"), "{label}: format");
    assert_eq!(
        info["virtual-size"],
        json!(round_up(size, 512)),
        "{label}: virtual-size"
    );
    assert_eq!(
        info["cluster-size"],
        json!(cluster),
        "{label}: cluster-size"
    );
    assert_eq!(info["dirty-flag"], json!(false), "{label}: dirty-flag");
    let data = &info["format-specific"]["data"];
    assert_eq!(data["compat"], json!(compat), "{label}: compat");
    assert_eq!(data["refcount-bits"], json!(16), "{label}: refcount-bits");
    if compat == "1.1" {
        assert_eq!(
            data["lazy-refcounts"],
            json!(false),
            "{label}: lazy-refcounts"
        );
        assert_eq!(data["extended-l2"], json!(false), "{label}: extended-l2");
        assert_eq!(data["corrupt"], json!(false), "{label}: corrupt");
    } else {
        // Version 2 headers have no feature bits; qemu-img shows none.
        assert!(
            data.get("lazy-refcounts").is_none(),
            "{label}: v2 lazy-refcounts"
        );
        assert!(data.get("extended-l2").is_none(), "{label}: v2 extended-l2");
    }
    assert!(
        info.get("backing-filename").is_none(),
        "{label}: backing-filename"
    );
}

/// What qpool and qemu-img agree on for every image: `format-specific` and the sizes.
fn assert_info_like_twin(info: &Value, twin: &Value, label: &str) {
    for key in [
        "virtual-size",
        "cluster-size",
        "format-specific",
        "backing-filename",
        "backing-filename-format",
        "full-backing-filename",
    ] {
        assert_eq!(
            info.get(key),
            twin.get(key),
            "{label}: {key} differs from the twin"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The mode × cluster size × size × compat matrix

/// Which `qemu-img create` twin a matrix case is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Twin {
    /// The same options and mode: `compare -s`, `cmp` and the twin's st_blocks apply.
    Same,
    /// preallocation=off. qemu-img needs minutes for metadata/falloc with 512 B and 4 KiB
    /// clusters at 5 GiB (qcow2-create.md §5), while plain `compare` treats all modes alike
    /// (§4.2), so a thin twin serves for guest content.
    Off,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    mode: Mode,
    cluster: u64,
    size: u64,
    compat: &'static str,
    twin: Twin,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}-v{}",
            self.mode,
            bytes_label(self.cluster),
            bytes_label(self.size),
            self.compat
        )
    }
}

/// The fixture table of one mode and cluster size: every size in `sizes` (with the twin it
/// uses) at both compat levels.
fn cases(mode: Mode, cluster: u64, sizes: &[(u64, Twin)]) -> Vec<Case> {
    let mut out = Vec::new();
    for &(size, twin) in sizes {
        for compat in COMPATS {
            out.push(Case {
                mode,
                cluster,
                size,
                compat,
                twin,
            });
        }
    }
    out
}

fn check_matrix(table: &[Case]) {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    for case in table {
        check_case(&pool, case);
    }
}

/// One matrix case: explain, create, then every oracle; volume and twin are deleted at the end.
fn check_case(pool: &TempPool, case: &Case) {
    let _big = (case.mode.allocates_data() && case.size >= GIB).then(big_allocation);
    let label = case.to_string();
    let name = format!("{label}.qcow2");
    let xml = QcowXml {
        name: &name,
        capacity: Some(case.size),
        compat: Some(case.compat),
        cluster: Some(case.cluster),
        mode: Some(case.mode),
        ..QcowXml::default()
    };
    let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
    let plan = explain(pool, &xml, &[], &[]);
    assert_eq!(plan.mode, case.mode.as_str(), "{label}: explain mode");
    assert_eq!(
        plan.capacity,
        round_up(case.size, 512),
        "{label}: explain capacity"
    );

    vol_create(pool, &xml, &[], &[]);
    let pair = Pair {
        vol: pool.vol(&name),
        twin: pool.scratch().join(format!("twin-{name}")),
    };
    let twin_mode = match case.twin {
        Twin::Same => case.mode,
        Twin::Off => Mode::Off,
    };
    qemu_create(
        &pair.twin,
        &format!(
            "preallocation={twin_mode},cluster_size={},compat={}",
            case.cluster, case.compat
        ),
        case.size,
    );

    assert_check_clean(&pair.vol);
    let info = qemu_info(&pair.vol);
    assert_info_fields(&info, case.size, case.cluster, case.compat, &label);
    assert_info_like_twin(&info, &qemu_info(&pair.twin), &label);
    assert!(
        qemu_compare(&pair.vol, &pair.twin, false),
        "{label}: qemu-img compare with the {twin_mode} twin"
    );

    let (allocation, length) = alloc_and_size(&pair.vol);
    assert_eq!(length, plan.physical, "{label}: st_size vs explain");
    assert_allocation_near(allocation, plan.allocation, "explain's expectation", &label);
    assert_eq!(
        vol_info(pool, &name),
        (round_up(case.size, 512), allocation),
        "{label}: vol-info capacity and allocation"
    );

    if case.twin == Twin::Same {
        assert!(
            qemu_compare(&pair.vol, &pair.twin, true),
            "{label}: qemu-img compare -s with the {twin_mode} twin"
        );
        let (twin_allocation, _) = alloc_and_size(&pair.twin);
        assert_allocation_near(allocation, twin_allocation, "the twin's", &label);
        // qpool follows qemu's allocator (qcow2-create.md §4.4); qemu's refcount-table growth,
        // the one exception, happens only in the Twin::Off cases here.
        assert_identical(&pair.vol, &pair.twin, &label);
    }
}

#[test]
fn qcow2_off_512b_clusters_match_qemu_img_twin() {
    // 1 TiB with 512 B clusters: see qcow2_1t_with_512b_clusters_is_refused_like_qemu_img.
    check_matrix(&cases(
        Mode::Off,
        512,
        &[(SIZE_1M_512, Twin::Same), (SIZE_5G, Twin::Same)],
    ));
}

#[test]
fn qcow2_off_4k_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Off,
        4 * KIB,
        &[
            (SIZE_1M_512, Twin::Same),
            (SIZE_5G, Twin::Same),
            (SIZE_1T, Twin::Same),
        ],
    ));
}

#[test]
fn qcow2_off_64k_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Off,
        64 * KIB,
        &[
            (SIZE_1M_512, Twin::Same),
            (SIZE_5G, Twin::Same),
            (SIZE_1T, Twin::Same),
        ],
    ));
}

#[test]
fn qcow2_off_2m_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Off,
        2 * MIB,
        &[
            (SIZE_1M_512, Twin::Same),
            (SIZE_5G, Twin::Same),
            (SIZE_1T, Twin::Same),
        ],
    ));
}

#[test]
fn qcow2_metadata_512b_clusters_match_qemu_img_twin() {
    // 5 GiB: qemu-img takes minutes here, so the twin is thin (Twin::Off). 1 TiB is refused.
    check_matrix(&cases(
        Mode::Metadata,
        512,
        &[(SIZE_1M_512, Twin::Same), (SIZE_5G, Twin::Off)],
    ));
}

#[test]
fn qcow2_metadata_4k_clusters_match_qemu_img_twin() {
    // 5 GiB: thin twin, as above. 1 TiB is left out: its metadata alone is 2.5 GiB of L2
    // tables and refcount blocks written cluster by cluster, impractical for a test.
    check_matrix(&cases(
        Mode::Metadata,
        4 * KIB,
        &[(SIZE_1M_512, Twin::Same), (SIZE_5G, Twin::Off)],
    ));
}

#[test]
fn qcow2_metadata_64k_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Metadata,
        64 * KIB,
        &[
            (SIZE_1M_512, Twin::Same),
            (SIZE_5G, Twin::Same),
            (SIZE_1T, Twin::Same),
        ],
    ));
}

#[test]
fn qcow2_metadata_2m_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Metadata,
        2 * MIB,
        &[
            (SIZE_1M_512, Twin::Same),
            (SIZE_5G, Twin::Same),
            (SIZE_1T, Twin::Same),
        ],
    ));
}

#[test]
fn qcow2_falloc_512b_clusters_match_qemu_img_twin() {
    // 5 GiB: thin twin (qemu-img needs minutes for falloc at 512 B). No 1 TiB falloc: it
    // would allocate 1 TiB.
    check_matrix(&cases(
        Mode::Falloc,
        512,
        &[(SIZE_1M_512, Twin::Same), (SIZE_5G, Twin::Off)],
    ));
}

#[test]
fn qcow2_falloc_4k_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Falloc,
        4 * KIB,
        &[(SIZE_1M_512, Twin::Same), (SIZE_5G, Twin::Off)],
    ));
}

#[test]
fn qcow2_falloc_64k_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Falloc,
        64 * KIB,
        &[(SIZE_1M_512, Twin::Same), (SIZE_5G, Twin::Same)],
    ));
}

#[test]
fn qcow2_falloc_2m_clusters_match_qemu_img_twin() {
    check_matrix(&cases(
        Mode::Falloc,
        2 * MIB,
        &[(SIZE_1M_512, Twin::Same), (SIZE_5G, Twin::Same)],
    ));
}

#[test]
fn qcow2_full_small_images_match_qemu_img_twin() {
    // full writes every byte, so only the small size here; big full images belong to benches.
    let mut table = Vec::new();
    for cluster in [512, 4 * KIB, 64 * KIB, 2 * MIB] {
        table.extend(cases(Mode::Full, cluster, &[(SIZE_1M_512, Twin::Same)]));
    }
    check_matrix(&table);
}

#[test]
fn qcow2_1t_with_512b_clusters_is_refused_like_qemu_img() {
    if !have("qemu-img") {
        return;
    }
    // The L1 table would need 256 MiB, beyond qemu's 32 MiB limit (128 GiB at 512 B clusters).
    let pool = TempPool::new();
    for mode in [Mode::Off, Mode::Metadata] {
        let label = format!("{mode}-512-1t");
        let name = format!("{label}.qcow2");
        let xml = QcowXml {
            name: &name,
            capacity: Some(SIZE_1T),
            cluster: Some(512),
            mode: Some(mode),
            ..QcowXml::default()
        };
        let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
        let out = pool.qpool(&["vol-create", xml.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{label}: qpool exit status: {stderr}"
        );
        assert!(
            stderr.contains("too large"),
            "{label}: qpool error: {stderr}"
        );
        assert!(
            pool.listing().is_empty(),
            "{label}: left {:?}",
            pool.listing()
        );

        let twin = pool.scratch().join(format!("twin-{name}"));
        let out = run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                &format!("preallocation={mode},cluster_size=512"),
                twin.to_str().unwrap(),
                &SIZE_1T.to_string(),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{label}: qemu-img accepted it");
        assert!(
            stderr.contains("too large"),
            "{label}: qemu-img error: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Feature options and the option checks qemu-img applies

/// A feature option as volume XML and as qemu-img's `-o`, on a 1 GiB image.
struct Feature {
    label: &'static str,
    cluster: Option<u64>,
    /// `<features>` children.
    features: &'static str,
    refcount_bits: Option<u32>,
    compression: Option<&'static str>,
    mode: Mode,
    /// The same options for `qemu-img create -o` (preallocation is added).
    qemu: &'static str,
    /// The `format-specific.data` field of `qemu-img info` it sets, and its value as JSON.
    field: (&'static str, &'static str),
}

const FEATURES: [Feature; 12] = [
    Feature {
        label: "lazy_refcounts",
        cluster: None,
        features: "<lazy_refcounts/>",
        refcount_bits: None,
        compression: None,
        mode: Mode::Metadata,
        qemu: "lazy_refcounts=on",
        field: ("lazy-refcounts", "true"),
    },
    Feature {
        label: "extended_l2-metadata",
        cluster: None,
        features: "<extended_l2/>",
        refcount_bits: None,
        compression: None,
        mode: Mode::Metadata,
        qemu: "extended_l2=on",
        field: ("extended-l2", "true"),
    },
    Feature {
        label: "extended_l2-falloc",
        cluster: None,
        features: "<extended_l2/>",
        refcount_bits: None,
        compression: None,
        mode: Mode::Falloc,
        qemu: "extended_l2=on",
        field: ("extended-l2", "true"),
    },
    Feature {
        // 16 KiB is the smallest cluster size extended L2 allows.
        label: "extended_l2-16k-metadata",
        cluster: Some(16 * KIB),
        features: "<extended_l2/>",
        refcount_bits: None,
        compression: None,
        mode: Mode::Metadata,
        qemu: "extended_l2=on,cluster_size=16384",
        field: ("extended-l2", "true"),
    },
    Feature {
        label: "compression-zstd",
        cluster: None,
        features: "",
        refcount_bits: None,
        compression: Some("zstd"),
        mode: Mode::Off,
        qemu: "compression_type=zstd",
        field: ("compression-type", "\"zstd\""),
    },
    Feature {
        label: "refcount-1",
        cluster: None,
        features: "",
        refcount_bits: Some(1),
        compression: None,
        mode: Mode::Metadata,
        qemu: "refcount_bits=1",
        field: ("refcount-bits", "1"),
    },
    Feature {
        label: "refcount-2",
        cluster: None,
        features: "",
        refcount_bits: Some(2),
        compression: None,
        mode: Mode::Metadata,
        qemu: "refcount_bits=2",
        field: ("refcount-bits", "2"),
    },
    Feature {
        label: "refcount-4",
        cluster: None,
        features: "",
        refcount_bits: Some(4),
        compression: None,
        mode: Mode::Metadata,
        qemu: "refcount_bits=4",
        field: ("refcount-bits", "4"),
    },
    Feature {
        label: "refcount-8",
        cluster: None,
        features: "",
        refcount_bits: Some(8),
        compression: None,
        mode: Mode::Metadata,
        qemu: "refcount_bits=8",
        field: ("refcount-bits", "8"),
    },
    Feature {
        label: "refcount-32",
        cluster: None,
        features: "",
        refcount_bits: Some(32),
        compression: None,
        mode: Mode::Metadata,
        qemu: "refcount_bits=32",
        field: ("refcount-bits", "32"),
    },
    Feature {
        label: "refcount-64",
        cluster: None,
        features: "",
        refcount_bits: Some(64),
        compression: None,
        mode: Mode::Metadata,
        qemu: "refcount_bits=64",
        field: ("refcount-bits", "64"),
    },
    Feature {
        label: "refcount-64-2m-falloc",
        cluster: Some(2 * MIB),
        features: "",
        refcount_bits: Some(64),
        compression: None,
        mode: Mode::Falloc,
        qemu: "refcount_bits=64,cluster_size=2097152",
        field: ("refcount-bits", "64"),
    },
];

#[test]
fn qcow2_feature_options_match_qemu_img_twin() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    for feature in &FEATURES {
        let label = feature.label;
        let name = format!("{label}.qcow2");
        let xml = QcowXml {
            name: &name,
            capacity: Some(GIB),
            cluster: feature.cluster,
            mode: Some(feature.mode),
            features: feature.features,
            refcount_bits: feature.refcount_bits,
            compression: feature.compression,
            ..QcowXml::default()
        };
        let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
        let plan = explain(&pool, &xml, &[], &[]);
        vol_create(&pool, &xml, &[], &[]);
        let pair = Pair {
            vol: pool.vol(&name),
            twin: pool.scratch().join(format!("twin-{name}")),
        };
        qemu_create(
            &pair.twin,
            &format!("preallocation={},{}", feature.mode, feature.qemu),
            GIB,
        );

        assert_check_clean(&pair.vol);
        let info = qemu_info(&pair.vol);
        let (key, value) = feature.field;
        let value: Value = serde_json::from_str(value).unwrap();
        assert_eq!(
            info["format-specific"]["data"][key], value,
            "{label}: {key}"
        );
        assert_info_like_twin(&info, &qemu_info(&pair.twin), label);
        assert!(
            qemu_compare(&pair.vol, &pair.twin, true),
            "{label}: qemu-img compare -s"
        );
        let (allocation, _) = alloc_and_size(&pair.vol);
        assert_allocation_near(allocation, plan.allocation, "explain's expectation", label);
        assert_allocation_near(
            allocation,
            alloc_and_size(&pair.twin).0,
            "the twin's",
            label,
        );
        assert_identical(&pair.vol, &pair.twin, label);
    }
}

/// Options qemu-img refuses, as volume XML and as `-o`.
struct Refused {
    label: &'static str,
    compat: Option<&'static str>,
    cluster: Option<u64>,
    features: &'static str,
    refcount_bits: Option<u32>,
    compression: Option<&'static str>,
    qemu: &'static str,
}

const REFUSED: [Refused; 10] = [
    Refused {
        label: "v2-lazy_refcounts",
        compat: Some("0.10"),
        cluster: None,
        features: "<lazy_refcounts/>",
        refcount_bits: None,
        compression: None,
        qemu: "compat=0.10,lazy_refcounts=on",
    },
    Refused {
        label: "v2-extended_l2",
        compat: Some("0.10"),
        cluster: None,
        features: "<extended_l2/>",
        refcount_bits: None,
        compression: None,
        qemu: "compat=0.10,extended_l2=on",
    },
    Refused {
        label: "v2-refcount-8",
        compat: Some("0.10"),
        cluster: None,
        features: "",
        refcount_bits: Some(8),
        compression: None,
        qemu: "compat=0.10,refcount_bits=8",
    },
    Refused {
        label: "v2-zstd",
        compat: Some("0.10"),
        cluster: None,
        features: "",
        refcount_bits: None,
        compression: Some("zstd"),
        qemu: "compat=0.10,compression_type=zstd",
    },
    Refused {
        label: "extended_l2-8k",
        compat: None,
        cluster: Some(8 * KIB),
        features: "<extended_l2/>",
        refcount_bits: None,
        compression: None,
        qemu: "cluster_size=8192,extended_l2=on",
    },
    Refused {
        label: "cluster-256",
        compat: None,
        cluster: Some(256),
        features: "",
        refcount_bits: None,
        compression: None,
        qemu: "cluster_size=256",
    },
    Refused {
        label: "cluster-1000",
        compat: None,
        cluster: Some(1000),
        features: "",
        refcount_bits: None,
        compression: None,
        qemu: "cluster_size=1000",
    },
    Refused {
        label: "cluster-4m",
        compat: None,
        cluster: Some(4 * MIB),
        features: "",
        refcount_bits: None,
        compression: None,
        qemu: "cluster_size=4194304",
    },
    Refused {
        label: "refcount-3",
        compat: None,
        cluster: None,
        features: "",
        refcount_bits: Some(3),
        compression: None,
        qemu: "refcount_bits=3",
    },
    Refused {
        label: "refcount-128",
        compat: None,
        cluster: None,
        features: "",
        refcount_bits: Some(128),
        compression: None,
        qemu: "refcount_bits=128",
    },
];

#[test]
fn qcow2_options_qemu_img_refuses_are_refused() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    for r in &REFUSED {
        let label = r.label;
        let name = format!("{label}.qcow2");
        let xml = QcowXml {
            name: &name,
            capacity: Some(GIB),
            compat: r.compat,
            cluster: r.cluster,
            features: r.features,
            refcount_bits: r.refcount_bits,
            compression: r.compression,
            ..QcowXml::default()
        };
        let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
        let out = pool.qpool(&["vol-create", xml.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{label}: qpool exit status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            pool.listing().is_empty(),
            "{label}: left {:?}",
            pool.listing()
        );

        let twin = pool.scratch().join(format!("twin-{name}"));
        let out = run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                r.qemu,
                twin.to_str().unwrap(),
                "1G",
            ],
        );
        assert!(
            !out.status.success(),
            "{label}: qemu-img accepted -o {}",
            r.qemu
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The allocation policy

/// One row of design.md's allocation table for qcow2 (64 KiB clusters).
struct PolicyRow {
    label: &'static str,
    capacity: u64,
    allocation: Option<u64>,
    flags: &'static [&'static str],
    /// The mode the policy must pick.
    mode: Mode,
    /// Guest bytes reserved with fallocate on top of the mode, whole clusters.
    reserved: u64,
}

const CAP_64M: u64 = 64 * MIB;

const POLICY: [PolicyRow; 9] = [
    PolicyRow {
        label: "allocation-absent",
        capacity: CAP_64M,
        allocation: None,
        flags: &[],
        mode: Mode::Off,
        reserved: 0,
    },
    PolicyRow {
        label: "allocation-0",
        capacity: CAP_64M,
        allocation: Some(0),
        flags: &[],
        mode: Mode::Off,
        reserved: 0,
    },
    PolicyRow {
        // 100,000 bytes round up to two 64 KiB clusters.
        label: "allocation-partial",
        capacity: CAP_64M,
        allocation: Some(100_000),
        flags: &[],
        mode: Mode::Metadata,
        reserved: 2 * CLUSTER_64K,
    },
    PolicyRow {
        // Half of 5 GiB plus a byte: the reserved clusters span five L2 ranges of 512 MiB,
        // with L2 tables between them and refcount block 1 after the fourth data run
        // (qcow2-create.md §2.4), which the reservation must skip.
        label: "allocation-partial-5g",
        capacity: SIZE_5G,
        allocation: Some(SIZE_5G / 2 + 1),
        flags: &[],
        mode: Mode::Metadata,
        reserved: SIZE_5G / 2 + CLUSTER_64K,
    },
    PolicyRow {
        label: "allocation-at-capacity",
        capacity: CAP_64M,
        allocation: Some(CAP_64M),
        flags: &[],
        mode: Mode::Falloc,
        reserved: 0,
    },
    PolicyRow {
        label: "allocation-above-capacity",
        capacity: CAP_64M,
        allocation: Some(2 * CAP_64M),
        flags: &[],
        mode: Mode::Falloc,
        reserved: 0,
    },
    PolicyRow {
        // libvirt's flag: below capacity → metadata, without the reservation.
        label: "prealloc-metadata-flag-partial",
        capacity: CAP_64M,
        allocation: Some(MIB),
        flags: &["--prealloc-metadata"],
        mode: Mode::Metadata,
        reserved: 0,
    },
    PolicyRow {
        label: "prealloc-metadata-flag-zero",
        capacity: CAP_64M,
        allocation: Some(0),
        flags: &["--prealloc-metadata"],
        mode: Mode::Metadata,
        reserved: 0,
    },
    PolicyRow {
        // libvirt reads a missing <allocation> as = capacity.
        label: "prealloc-metadata-flag-absent",
        capacity: CAP_64M,
        allocation: None,
        flags: &["--prealloc-metadata"],
        mode: Mode::Falloc,
        reserved: 0,
    },
];

#[test]
fn qcow2_allocation_policy_picks_mode_and_matches_qemu_img_twin() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    for row in &POLICY {
        let _big = (row.capacity >= GIB && (row.mode.allocates_data() || row.reserved > 0))
            .then(big_allocation);
        let label = row.label;
        let name = format!("{label}.qcow2");
        let xml = QcowXml {
            name: &name,
            capacity: Some(row.capacity),
            allocation: row.allocation,
            ..QcowXml::default()
        };
        let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
        let plan = explain(&pool, &xml, row.flags, &[]);
        assert_eq!(plan.mode, row.mode.as_str(), "{label}: explain mode");
        assert_eq!(
            plan.text.contains("Reserved:"),
            row.reserved > 0,
            "{label}: explain's Reserved line: {}",
            plan.text
        );
        vol_create(&pool, &xml, row.flags, &[]);
        let pair = Pair {
            vol: pool.vol(&name),
            twin: pool.scratch().join(format!("twin-{name}")),
        };
        qemu_create(
            &pair.twin,
            &format!("preallocation={}", row.mode),
            row.capacity,
        );

        assert_check_clean(&pair.vol);
        let info = qemu_info(&pair.vol);
        assert_info_fields(&info, row.capacity, 64 * KIB, "1.1", label);
        assert_info_like_twin(&info, &qemu_info(&pair.twin), label);
        // fallocate changes neither the bytes nor the length, so even with a reservation the
        // image is the twin byte for byte; only st_blocks shows the reserved clusters.
        assert_identical(&pair.vol, &pair.twin, label);
        assert!(
            qemu_compare(&pair.vol, &pair.twin, false),
            "{label}: qemu-img compare"
        );
        let (allocation, _) = alloc_and_size(&pair.vol);
        let (twin_allocation, _) = alloc_and_size(&pair.twin);
        assert_allocation_near(allocation, plan.allocation, "explain's expectation", label);
        assert_allocation_near(
            allocation,
            twin_allocation + row.reserved,
            "the twin's plus the reserved clusters",
            label,
        );
        if row.reserved == 0 {
            assert!(
                qemu_compare(&pair.vol, &pair.twin, true),
                "{label}: qemu-img compare -s"
            );
        } else {
            // The reservation is the *first* guest clusters: a guest write into the last
            // reserved cluster needs no new blocks, a write into the next one does. (Less than
            // a cluster, not 0: ext4 may add an extent-tree block when the write splits an
            // extent.) This writes into the image, so it comes last.
            let last = row.reserved - CLUSTER_64K;
            assert!(
                guest_write_growth(&pair.vol, last) < CLUSTER_64K,
                "{label}: guest cluster at {last} was not reserved"
            );
            assert!(
                guest_write_growth(&pair.vol, row.reserved) >= CLUSTER_64K,
                "{label}: guest cluster at {} was reserved",
                row.reserved
            );
        }
    }
}

/// The default cluster size.
const CLUSTER_64K: u64 = 64 * KIB;

/// Growth of st_blocks*512 when qemu-io writes one 64 KiB guest cluster at `offset`.
fn guest_write_growth(path: &Path, offset: u64) -> u64 {
    assert!(have("qemu-io"));
    let before = alloc_and_size(path).0;
    let command = format!("write -P 0x5a {offset} {CLUSTER_64K}");
    let out = run(
        "qemu-io",
        &["-f", "qcow2", "-c", &command, path.to_str().unwrap()],
    );
    assert!(out.status.success(), "qemu-io {command}: {out:?}");
    alloc_and_size(path).0.saturating_sub(before)
}

// ---------------------------------------------------------------------------------------------
// Overlays

/// Which backing file an overlay sits on. Both hold data, so reading through to them is
/// visible to `qemu-img compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// `base.qcow2`: 1 GiB, 64 KiB clusters, converted by qemu-img from a patterned raw file.
    Qcow2,
    /// `base.raw`: 1 MiB + 100 bytes, not a multiple of 512, with a pattern.
    Raw,
}

impl Base {
    fn file(self) -> &'static str {
        match self {
            Base::Qcow2 => "base.qcow2",
            Base::Raw => "base.raw",
        }
    }

    fn format(self) -> &'static str {
        match self {
            Base::Qcow2 => "qcow2",
            Base::Raw => "raw",
        }
    }

    /// The overlay's virtual size when it takes its capacity from this backing file: the
    /// backing size rounded up to 512, as qemu-img does.
    fn capacity(self) -> u64 {
        match self {
            Base::Qcow2 => GIB,
            Base::Raw => round_up(RAW_BASE_SIZE, 512),
        }
    }
}

const RAW_BASE_SIZE: u64 = MIB + 100;

/// Writes `base.raw` and `base.qcow2` into the pool, each with a recognisable pattern at the
/// start and further in (the last bytes of the raw file, 700 MiB into the qcow2 one).
fn make_bases(pool: &TempPool) {
    let pattern: Vec<u8> = (0..64 * KIB).map(|i| (i % 251) as u8 + 1).collect();
    let raw = File::create(pool.vol("base.raw")).unwrap();
    raw.write_all_at(&pattern, 0).unwrap();
    raw.write_all_at(&pattern[..100], MIB).unwrap();
    assert_eq!(raw.metadata().unwrap().len(), RAW_BASE_SIZE);

    let source = pool.scratch().join("base-source.raw");
    let file = File::create(&source).unwrap();
    file.set_len(GIB).unwrap();
    file.write_all_at(&pattern, 0).unwrap();
    file.write_all_at(&pattern, 700 * MIB).unwrap();
    let out = run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            source.to_str().unwrap(),
            pool.vol("base.qcow2").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "qemu-img convert: {out:?}");
    std::fs::remove_file(source).unwrap();
}

/// One overlay case: how the XML names the backing file, and the twin's options.
struct OverlayCase {
    label: &'static str,
    base: Base,
    /// Backing path relative to the pool directory (as typed), rather than absolute.
    relative: bool,
    /// Whether the XML gives the backing store's `<format>` (qpool probes it otherwise).
    backing_format: bool,
    capacity: Option<u64>,
    allocation: Option<u64>,
    compat: Option<&'static str>,
    cluster: Option<u64>,
    features: &'static str,
    mode: Option<Mode>,
    /// The mode the policy must pick.
    expect_mode: Mode,
    /// Options for the twin's `-o` (besides `-b` and `-F`).
    qemu: &'static str,
    /// Guest bytes reserved with fallocate on top of the mode.
    reserved: u64,
}

const OVERLAY_DEFAULT: OverlayCase = OverlayCase {
    label: "",
    base: Base::Qcow2,
    relative: false,
    backing_format: true,
    capacity: None,
    allocation: None,
    compat: None,
    cluster: None,
    features: "",
    mode: None,
    expect_mode: Mode::Off,
    qemu: "",
    reserved: 0,
};

fn check_overlays(table: &[OverlayCase]) {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    make_bases(&pool);
    for case in table {
        check_overlay(&pool, case);
    }
}

fn check_overlay(pool: &TempPool, case: &OverlayCase) {
    let label = case.label;
    let name = format!("{label}.qcow2");
    let base_path = pool.vol(case.base.file());
    let backing = if case.relative {
        case.base.file().to_string()
    } else {
        base_path.to_str().unwrap().to_string()
    };
    let fmt = case.base.format();
    let xml = QcowXml {
        name: &name,
        capacity: case.capacity,
        allocation: case.allocation,
        compat: case.compat,
        cluster: case.cluster,
        features: case.features,
        mode: case.mode,
        backing: Some((&backing, case.backing_format.then_some(fmt))),
        ..QcowXml::default()
    };
    let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
    let capacity = case
        .capacity
        .map_or(case.base.capacity(), |c| round_up(c, 512));
    let plan = explain(pool, &xml, &[], &[]);
    assert_eq!(
        plan.mode,
        case.expect_mode.as_str(),
        "{label}: explain mode"
    );
    assert_eq!(plan.capacity, capacity, "{label}: explain capacity");
    let backing_line = labelled_text(&plan.text, "Backing store").unwrap_or_default();
    assert!(
        backing_line.starts_with(&format!("{backing} ({fmt}, ")),
        "{label}: explain's backing store: {}",
        plan.text
    );
    vol_create(pool, &xml, &[], &[]);
    // In the pool directory, so that qemu resolves a relative backing name the same way.
    let pair = Pair {
        vol: pool.vol(&name),
        twin: pool.vol(&format!("twin-{name}")),
    };
    qemu_create_overlay(&pair.twin, case.qemu, &backing, fmt, case.capacity);

    assert_check_clean(&pair.vol);
    let info = qemu_info(&pair.vol);
    assert_eq!(
        info["virtual-size"],
        json!(capacity),
        "{label}: virtual-size"
    );
    assert_eq!(
        info["backing-filename"],
        json!(backing),
        "{label}: backing-filename"
    );
    assert_eq!(
        info["backing-filename-format"],
        json!(fmt),
        "{label}: backing-filename-format (the header extension)"
    );
    assert_eq!(
        info["full-backing-filename"],
        json!(base_path.to_str().unwrap()),
        "{label}: full-backing-filename"
    );
    assert_info_like_twin(&info, &qemu_info(&pair.twin), label);
    assert!(
        qemu_compare(&pair.vol, &base_path, false),
        "{label}: guest content differs from the backing file"
    );
    assert!(
        qemu_compare(&pair.vol, &pair.twin, case.reserved == 0),
        "{label}: qemu-img compare{} with the twin",
        if case.reserved == 0 { " -s" } else { "" }
    );
    assert_identical(&pair.vol, &pair.twin, label);
    let (allocation, _) = alloc_and_size(&pair.vol);
    assert_allocation_near(allocation, plan.allocation, "explain's expectation", label);
    assert_allocation_near(
        allocation,
        alloc_and_size(&pair.twin).0 + case.reserved,
        "the twin's plus the reserved clusters",
        label,
    );
}

#[test]
fn qcow2_overlay_on_qcow2_backing_matches_qemu_img_twin() {
    check_overlays(&[
        OverlayCase {
            // No <capacity>: the overlay takes the backing file's 1 GiB.
            label: "qcow2-absolute-no-capacity",
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            label: "qcow2-relative-no-capacity",
            relative: true,
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            label: "qcow2-larger-capacity",
            capacity: Some(2 * GIB),
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            // qpool probes the backing format and still writes the backing-format extension,
            // as `-F qcow2` does; without it qemu would probe and warn.
            label: "qcow2-format-probed",
            backing_format: false,
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            // Version 2: the backing-format extension follows the 72-byte header.
            label: "qcow2-v2",
            compat: Some("0.10"),
            qemu: "compat=0.10",
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            label: "qcow2-512b-clusters",
            cluster: Some(512),
            qemu: "cluster_size=512",
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            // An overlay without extended L2 stays thin even when allocation asks for more.
            label: "qcow2-allocation-at-capacity-stays-thin",
            allocation: Some(GIB),
            ..OVERLAY_DEFAULT
        },
    ]);
}

#[test]
fn qcow2_overlay_on_raw_backing_matches_qemu_img_twin() {
    check_overlays(&[
        OverlayCase {
            // The backing file is 1 MiB + 100 bytes; the overlay gets 1 MiB + 512.
            label: "raw-no-capacity",
            base: Base::Raw,
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            label: "raw-format-probed",
            base: Base::Raw,
            backing_format: false,
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            label: "raw-capacity-5g",
            base: Base::Raw,
            capacity: Some(SIZE_5G),
            ..OVERLAY_DEFAULT
        },
    ]);
}

#[test]
fn qcow2_overlay_with_extended_l2_preallocation_matches_qemu_img_twin() {
    // qemu allows preallocation under a backing file only with extended L2: the subcluster
    // bitmaps stay 0, so every cluster still reads through to the backing file.
    check_overlays(&[
        OverlayCase {
            label: "extended_l2-metadata",
            features: "<extended_l2/>",
            mode: Some(Mode::Metadata),
            expect_mode: Mode::Metadata,
            qemu: "extended_l2=on,preallocation=metadata",
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            label: "extended_l2-metadata-2m",
            cluster: Some(2 * MIB),
            features: "<extended_l2/>",
            mode: Some(Mode::Metadata),
            expect_mode: Mode::Metadata,
            qemu: "extended_l2=on,preallocation=metadata,cluster_size=2097152",
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            label: "extended_l2-falloc",
            features: "<extended_l2/>",
            mode: Some(Mode::Falloc),
            expect_mode: Mode::Falloc,
            qemu: "extended_l2=on,preallocation=falloc",
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            // The policy's partial row on an overlay: metadata plus 1 MiB (16 clusters)
            // reserved; a twin in metadata mode holds the same bytes.
            label: "extended_l2-partial-allocation",
            capacity: Some(2 * GIB),
            allocation: Some(MIB),
            features: "<extended_l2/>",
            expect_mode: Mode::Metadata,
            qemu: "extended_l2=on,preallocation=metadata",
            reserved: MIB,
            ..OVERLAY_DEFAULT
        },
        OverlayCase {
            // A whole number of clusters: for a partial last cluster see
            // qcow2_extended_l2_metadata_partial_last_cluster_is_byte_identical_to_qemu_img.
            label: "extended_l2-raw-metadata",
            base: Base::Raw,
            capacity: Some(2 * GIB),
            features: "<extended_l2/>",
            mode: Some(Mode::Metadata),
            expect_mode: Mode::Metadata,
            qemu: "extended_l2=on,preallocation=metadata",
            ..OVERLAY_DEFAULT
        },
    ]);
}

#[test]
fn qcow2_extended_l2_metadata_partial_last_cluster_is_byte_identical_to_qemu_img() {
    if !have("qemu-img") {
        return;
    }
    // With extended L2, qemu's copy-on-write of a partial last data cluster works on
    // subclusters (cluster size / 32): it zero-fills from the virtual size's end only to the
    // end of that subcluster, so the file ends there, not at the end of the cluster.
    let table = [
        ("extl2-64k-1m+512", 64 * KIB, MIB + 512),
        ("extl2-64k-1m+3000", 64 * KIB, MIB + 3000),
        ("extl2-2m-1m+512", 2 * MIB, MIB + 512),
    ];
    let pool = TempPool::new();
    for (label, cluster, size) in table {
        let name = format!("{label}.qcow2");
        let xml = QcowXml {
            name: &name,
            capacity: Some(size),
            cluster: Some(cluster),
            features: "<extended_l2/>",
            mode: Some(Mode::Metadata),
            ..QcowXml::default()
        };
        let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
        let plan = explain(&pool, &xml, &[], &[]);
        vol_create(&pool, &xml, &[], &[]);
        let pair = Pair {
            vol: pool.vol(&name),
            twin: pool.scratch().join(format!("twin-{name}")),
        };
        qemu_create(
            &pair.twin,
            &format!("extended_l2=on,preallocation=metadata,cluster_size={cluster}"),
            size,
        );
        assert_check_clean(&pair.vol);
        assert!(
            qemu_compare(&pair.vol, &pair.twin, true),
            "{label}: qemu-img compare -s"
        );
        let (allocation, length) = alloc_and_size(&pair.vol);
        let (twin_allocation, twin_length) = alloc_and_size(&pair.twin);
        assert_eq!(length, plan.physical, "{label}: st_size vs explain");
        assert_eq!(length, twin_length, "{label}: st_size vs the twin's");
        assert_allocation_near(allocation, twin_allocation, "the twin's", label);
        assert_identical(&pair.vol, &pair.twin, label);
    }
}

#[test]
fn qcow2_overlay_with_preallocation_without_extended_l2_is_refused_like_qemu_img() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    make_bases(&pool);
    let base = pool.vol("base.qcow2");
    let base = base.to_str().unwrap();
    for mode in [Mode::Metadata, Mode::Falloc, Mode::Full] {
        let label = format!("overlay-{mode}");
        let name = format!("{label}.qcow2");
        let xml = QcowXml {
            name: &name,
            mode: Some(mode),
            backing: Some((base, Some("qcow2"))),
            ..QcowXml::default()
        };
        let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
        let out = pool.qpool(&["vol-create", xml.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{label}: qpool exit status: {stderr}"
        );
        assert!(
            stderr.contains("extended_l2"),
            "{label}: qpool error: {stderr}"
        );
        assert!(!pool.vol(&name).exists(), "{label}: volume left behind");

        let twin = pool.scratch().join(format!("twin-{name}"));
        let out = run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                &format!("preallocation={mode}"),
                "-b",
                base,
                "-F",
                "qcow2",
                twin.to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{label}: qemu-img accepted it");
        assert!(
            stderr.contains("extended_l2"),
            "{label}: qemu-img error: {stderr}"
        );
    }
}

#[test]
fn vol_create_as_with_backing_vol_matches_qemu_img_twin() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    make_bases(&pool);
    // Like virsh, a backing volume given by name is stored as its absolute path in the pool.
    let out = pool.ok(&[
        "vol-create-as",
        "o.qcow2",
        "2G",
        "--format",
        "qcow2",
        "--backing-vol",
        "base.qcow2",
        "--backing-vol-format",
        "qcow2",
    ]);
    assert_eq!(out, "Vol o.qcow2 created\n\n");
    let vol = pool.vol("o.qcow2");
    let base = pool.vol("base.qcow2");
    let twin = pool.scratch().join("twin-o.qcow2");
    qemu_create_overlay(&twin, "", base.to_str().unwrap(), "qcow2", Some(2 * GIB));
    assert_check_clean(&vol);
    let info = qemu_info(&vol);
    assert_eq!(info["backing-filename"], json!(base.to_str().unwrap()));
    assert_eq!(info["backing-filename-format"], json!("qcow2"));
    assert_info_like_twin(&info, &qemu_info(&twin), "vol-create-as");
    assert!(qemu_compare(&vol, &twin, true), "vol-create-as: compare -s");
    assert_identical(&vol, &twin, "vol-create-as");
}

// ---------------------------------------------------------------------------------------------
// The zero-fill fallback

/// Makes qpool behave as if the filesystem could not fallocate.
const NO_FALLOCATE: (&str, &str) = ("QPOOL_NO_FALLOCATE", "1");

/// One fallback case on a 64 MiB image with 64 KiB clusters.
struct FallbackRow {
    label: &'static str,
    allocation: Option<u64>,
    mode: Option<Mode>,
    env: &'static [(&'static str, &'static str)],
    /// The mode the policy picks (and the twin's).
    twin_mode: Mode,
    /// Whether explain must print the `Fallback:` line.
    fallback: bool,
    /// Guest bytes reserved (fallocated, or written as zeros) on top of the mode.
    reserved: u64,
}

const FALLBACK: [FallbackRow; 6] = [
    FallbackRow {
        label: "falloc-no-fallocate",
        allocation: None,
        mode: Some(Mode::Falloc),
        env: &[NO_FALLOCATE],
        twin_mode: Mode::Falloc,
        fallback: true,
        reserved: 0,
    },
    FallbackRow {
        label: "at-capacity-no-fallocate",
        allocation: Some(CAP_64M),
        mode: None,
        env: &[NO_FALLOCATE],
        twin_mode: Mode::Falloc,
        fallback: true,
        reserved: 0,
    },
    FallbackRow {
        label: "partial-no-fallocate",
        allocation: Some(8 * MIB),
        mode: None,
        env: &[NO_FALLOCATE],
        twin_mode: Mode::Metadata,
        fallback: true,
        reserved: 8 * MIB,
    },
    FallbackRow {
        // Neither writes anything that fallocate would have reserved.
        label: "metadata-no-fallocate",
        allocation: None,
        mode: Some(Mode::Metadata),
        env: &[NO_FALLOCATE],
        twin_mode: Mode::Metadata,
        fallback: false,
        reserved: 0,
    },
    FallbackRow {
        label: "full-no-fallocate",
        allocation: None,
        mode: Some(Mode::Full),
        env: &[NO_FALLOCATE],
        twin_mode: Mode::Full,
        fallback: false,
        reserved: 0,
    },
    FallbackRow {
        label: "falloc-with-fallocate",
        allocation: None,
        mode: Some(Mode::Falloc),
        env: &[],
        twin_mode: Mode::Falloc,
        fallback: false,
        reserved: 0,
    },
];

#[test]
fn qcow2_without_fallocate_writes_zeros_matching_qemu_img_twin() {
    if !have("qemu-img") {
        return;
    }
    let pool = TempPool::new();
    for row in &FALLBACK {
        let label = row.label;
        let name = format!("{label}.qcow2");
        let xml = QcowXml {
            name: &name,
            capacity: Some(CAP_64M),
            allocation: row.allocation,
            mode: row.mode,
            ..QcowXml::default()
        };
        let xml = pool.write_file(&format!("{name}.xml"), &xml.render());
        let plan = explain(&pool, &xml, &[], row.env);
        assert_eq!(plan.mode, row.twin_mode.as_str(), "{label}: explain mode");
        assert_eq!(
            plan.text.contains("\nFallback:"),
            row.fallback,
            "{label}: explain's Fallback line: {}",
            plan.text
        );
        vol_create(&pool, &xml, &[], row.env);
        let pair = Pair {
            vol: pool.vol(&name),
            twin: pool.scratch().join(format!("twin-{name}")),
        };
        qemu_create(
            &pair.twin,
            &format!("preallocation={}", row.twin_mode),
            CAP_64M,
        );

        assert_check_clean(&pair.vol);
        assert_info_like_twin(&qemu_info(&pair.vol), &qemu_info(&pair.twin), label);
        // Zeros written instead of fallocated change neither bytes nor length.
        assert_identical(&pair.vol, &pair.twin, label);
        if row.reserved == 0 {
            // falloc and full data areas both count as data for `-s`.
            assert!(
                qemu_compare(&pair.vol, &pair.twin, true),
                "{label}: qemu-img compare -s"
            );
        } else {
            assert!(
                qemu_compare(&pair.vol, &pair.twin, false),
                "{label}: compare"
            );
        }
        let (allocation, _) = alloc_and_size(&pair.vol);
        assert_allocation_near(allocation, plan.allocation, "explain's expectation", label);
        assert_allocation_near(
            allocation,
            alloc_and_size(&pair.twin).0 + row.reserved,
            "the twin's plus the reserved clusters",
            label,
        );
    }
}
