//! A real libvirtd as a peer (shared/docs/libvirtd-peer.md): the same volume XML and the same
//! virsh commands go to libvirt's own `dir` pool (libvirtd 9.0 with only its storage driver, on
//! a private socket) and to `qpoold`, and `vol-info`, `vol-dumpxml`, `vol-list`, `pool-info` and
//! the files must agree, except for qpool's documented differences:
//!
//! - compat default: without `<compat>`, qpool writes qcow2 compat 1.1, libvirt 0.10;
//! - partial reservation: a qcow2 with 0 < allocation < capacity and no PREALLOC_METADATA gets
//!   its first `allocation` bytes reserved by qpool, libvirt ignores the allocation;
//! - qpool's `vol-dumpxml` shows what libvirt only shows after a pool refresh re-probed the
//!   file (`<compat>`, `<clusterSize>`, `<features/>`) right after create.
//!
//! The peer tests need root and libvirtd (`libvirt-daemon`, installed with
//! `--no-install-recommends` by scripts/test). They run by default where both are there, and
//! fail under CI=true where they are not.

mod common;

use std::path::{Path, PathBuf};

use common::daemon::{Daemon, run_virsh};
use common::peer::{Libvirtd, Mount, peer_available};
use common::{alloc_and_size, assert_check_clean, qemu_info};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// qpoold and libvirtd side by side, each with a pool named `default`, so that the same
/// virsh command line works on both. Both pools live on one private tmpfs mounted for the
/// test: its sizes are exact (no extent-tree blocks in st_blocks, which on ext4 depend on the
/// free-space fragmentation of the moment) and nothing else writes there, so even the
/// filesystem figures of pool-info are the same for both daemons.
struct Peers {
    q: Daemon,
    l: Libvirtd,
    q_dir: PathBuf,
    l_dir: PathBuf,
    // Dropped last, after both daemons stopped.
    _fs: Mount,
}

impl Peers {
    fn start() -> Peers {
        let fs = Mount::tmpfs(3 * GIB);
        let q_dir = fs.path().join("qpool");
        let l_dir = fs.path().join("libvirt");
        std::fs::create_dir(&q_dir).expect("qpool pool directory");
        std::fs::create_dir(&l_dir).expect("libvirt pool directory");
        // qpoold's `default` pool is defined on the tmpfs (instead of the one it would make).
        let q = Daemon::start_with(&[], |pools| {
            std::fs::write(
                pools.join("default.xml"),
                format!(
                    "<pool type='dir'>\n  <name>default</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
                    q_dir.display()
                ),
            )
            .expect("pool definition");
            std::os::unix::fs::symlink("../default.xml", pools.join("autostart/default.xml"))
                .expect("autostart link");
        });
        // libvirtd starts after the mount, so its mount namespace has the tmpfs too.
        let l = Libvirtd::start();
        l.pool("default", &l_dir);
        Peers {
            q,
            l,
            q_dir,
            l_dir,
            _fs: fs,
        }
    }

    /// Runs the same virsh command on both; both must succeed with the same output (paths
    /// normalized).
    fn both_ok(&self, args: &[&str]) -> String {
        let q = self.q.virsh_ok(args);
        let l = self.l.virsh_ok(args);
        assert_eq!(
            self.norm_q(&q),
            self.norm_l(&l),
            "virsh {args:?}: qpoold (left) and libvirtd (right) differ"
        );
        self.norm_q(&q)
    }

    /// Runs a command on both and returns the normalized outputs (qpoold, libvirtd).
    fn both(&self, args: &[&str]) -> (String, String) {
        (
            self.norm_q(&self.q.virsh_ok(args)),
            self.norm_l(&self.l.virsh_ok(args)),
        )
    }

    /// Writes `xml` (with `POOL` standing for each pool's directory) and `vol-create`s it in
    /// both pools with `flags`.
    fn create(&self, file: &str, xml: &str, flags: &[&str]) {
        for (dir, peer) in [(self.q_dir.as_path(), "q"), (self.l_dir.as_path(), "l")] {
            let path = self.q.write_file(
                &format!("{peer}-{file}"),
                &xml.replace("POOL", dir.to_str().unwrap()),
            );
            let mut args = vec!["vol-create", "default", path.to_str().unwrap()];
            args.extend_from_slice(flags);
            if peer == "q" {
                self.q.virsh_ok(&args);
            } else {
                self.l.virsh_ok(&args);
            }
        }
    }

    fn norm_q(&self, text: &str) -> String {
        normalize(text, &self.q_dir)
    }

    fn norm_l(&self, text: &str) -> String {
        normalize(text, &self.l_dir)
    }

    fn q_vol(&self, name: &str) -> PathBuf {
        self.q_dir.join(name)
    }

    fn l_vol(&self, name: &str) -> PathBuf {
        self.l_dir.join(name)
    }

    /// vol-info (allocation and physical, in bytes) and the files' sizes agree.
    fn same_vol_info(&self, name: &str) {
        self.both_ok(&["vol-info", name, "--pool", "default", "--bytes"]);
        self.both_ok(&[
            "vol-info",
            name,
            "--pool",
            "default",
            "--bytes",
            "--physical",
        ]);
        assert_eq!(
            alloc_and_size(&self.q_vol(name)),
            alloc_and_size(&self.l_vol(name)),
            "{name}: (st_blocks × 512, st_size) of qpool's and libvirt's files"
        );
    }

    /// The volume XMLs, normalized (pool paths, atime/mtime/ctime).
    fn dumpxml(&self, name: &str) -> (String, String) {
        let (q, l) = self.both(&["vol-dumpxml", name, "--pool", "default"]);
        (strip_times(&q), strip_times(&l))
    }
}

/// Replaces the pool directory with `POOL`. virsh sizes its table columns to the longest
/// path, so tables (a line of dashes under the header) are compared cell by cell.
fn normalize(text: &str, pool: &Path) -> String {
    let text = text.replace(pool.to_str().unwrap(), "POOL");
    if !text.lines().any(|l| l.starts_with("---")) {
        return text;
    }
    text.lines()
        .map(|l| {
            if l.starts_with("---") {
                "---\n".to_string()
            } else {
                format!("{}\n", l.split_whitespace().collect::<Vec<_>>().join(" | "))
            }
        })
        .collect()
}

/// Drops the atime/mtime/ctime lines (the files were made at different moments).
fn strip_times(xml: &str) -> String {
    xml.lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("<atime>") || t.starts_with("<mtime>") || t.starts_with("<ctime>"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Drops what libvirt only reports after re-probing a file: `<compat>`, `<clusterSize>` and an
/// empty `<features/>`.
fn strip_probed(xml: &str) -> String {
    xml.lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("<compat>") || t.starts_with("<clusterSize") || t == "<features/>")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// qemu-img's view of an image, without its file names.
fn image_facts(path: &Path) -> serde_json::Value {
    let mut v = qemu_info(path);
    let obj = v.as_object_mut().unwrap();
    for key in [
        "filename",
        "children",
        "backing-filename",
        "full-backing-filename",
    ] {
        obj.remove(key);
    }
    v
}

fn vol_xml(name: &str, capacity: u64, allocation: Option<u64>, target_extra: &str) -> String {
    let allocation = allocation
        .map(|a| format!("  <allocation unit='bytes'>{a}</allocation>\n"))
        .unwrap_or_default();
    let format = if name.ends_with(".img") {
        "raw"
    } else {
        "qcow2"
    };
    format!(
        "<volume>\n  <name>{name}</name>\n  <capacity unit='bytes'>{capacity}</capacity>\n{allocation}  <target>\n    <format type='{format}'/>\n{target_extra}  </target>\n</volume>\n"
    )
}

/// The `Allocation:` of `vol-info --bytes` output.
fn allocation_of(vol_info: &str) -> u64 {
    let line = vol_info
        .lines()
        .find(|l| l.starts_with("Allocation:"))
        .unwrap_or_else(|| panic!("no Allocation in {vol_info}"));
    line["Allocation:".len()..]
        .trim()
        .trim_end_matches(" bytes")
        .parse()
        .unwrap()
}

// ---- tests ------------------------------------------------------------------------------

#[test]
fn peer_same_volume_xml_gives_the_same_info_xml_and_files() {
    if !peer_available() {
        return;
    }
    let p = Peers::start();
    let compat = "    <compat>1.1</compat>\n";
    // (name, XML, vol-create flags): everything where qpool and libvirt must agree exactly.
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("thin.qcow2", vol_xml("thin.qcow2", GIB, None, compat), &[]),
        (
            "cluster.qcow2",
            vol_xml(
                "cluster.qcow2",
                256 * MIB,
                None,
                "    <compat>1.1</compat>\n    <clusterSize unit='KiB'>128</clusterSize>\n",
            ),
            &[],
        ),
        (
            "lazy.qcow2",
            vol_xml(
                "lazy.qcow2",
                256 * MIB,
                None,
                "    <compat>1.1</compat>\n    <features>\n      <lazy_refcounts/>\n    </features>\n",
            ),
            &[],
        ),
        (
            "v2.qcow2",
            vol_xml("v2.qcow2", 256 * MIB, None, "    <compat>0.10</compat>\n"),
            &[],
        ),
        (
            "meta.qcow2",
            vol_xml("meta.qcow2", GIB, Some(0), compat),
            &["--prealloc-metadata"],
        ),
        (
            "meta-part.qcow2",
            vol_xml("meta-part.qcow2", GIB, Some(256 * MIB), compat),
            &["--prealloc-metadata"],
        ),
        (
            "falloc.qcow2",
            vol_xml("falloc.qcow2", 512 * MIB, Some(512 * MIB), compat),
            &["--prealloc-metadata"],
        ),
        ("full.img", vol_xml("full.img", 64 * MIB, None, ""), &[]),
        (
            "sparse.img",
            vol_xml("sparse.img", 64 * MIB, Some(0), ""),
            &[],
        ),
        (
            "part.img",
            vol_xml("part.img", 64 * MIB, Some(MIB), ""),
            &[],
        ),
    ];
    for (name, xml, flags) in &cases {
        p.create(&format!("{name}.xml"), xml, flags);
        p.same_vol_info(name);
        if name.ends_with(".qcow2") {
            assert_check_clean(&p.q_vol(name));
            assert_check_clean(&p.l_vol(name));
        }
        assert_eq!(
            image_facts(&p.q_vol(name)),
            image_facts(&p.l_vol(name)),
            "{name}: qemu-img info"
        );
        // Right after create libvirt has not probed the file yet: the same XML but for what
        // only a probe shows.
        let (q, l) = p.dumpxml(name);
        assert_eq!(strip_probed(&q), strip_probed(&l), "{name}: vol-dumpxml");
    }

    // An overlay on one of them: the same sizes and image.
    p.create(
        "overlay.xml",
        "<volume>\n  <name>overlay.qcow2</name>\n  <capacity unit='M'>256</capacity>\n  <target>\n    <format type='qcow2'/>\n    <compat>1.1</compat>\n  </target>\n  <backingStore>\n    <path>POOL/v2.qcow2</path>\n    <format type='qcow2'/>\n  </backingStore>\n</volume>\n",
        &[],
    );
    p.same_vol_info("overlay.qcow2");
    assert_check_clean(&p.q_vol("overlay.qcow2"));
    let backing = |path: &Path, pool: &Path| {
        let v = qemu_info(path);
        (
            normalize(v["backing-filename"].as_str().unwrap(), pool),
            v["backing-filename-format"].clone(),
        )
    };
    assert_eq!(
        backing(&p.q_vol("overlay.qcow2"), &p.q_dir),
        backing(&p.l_vol("overlay.qcow2"), &p.l_dir)
    );

    // After libvirt re-probed its files, its XML is qpool's, except that libvirt's probe
    // never reports compat 0.10 (it only maps version 3 to 1.1). (The overlay's XML is left
    // out: libvirt also describes the backing file's permissions and timestamps inside
    // <backingStore>, qpool does not.)
    p.l.virsh_ok(&["pool-refresh", "default"]);
    for (name, _, _) in &cases {
        let (q, l) = p.dumpxml(name);
        if *name == "v2.qcow2" {
            assert_eq!(
                q.replace("    <compat>0.10</compat>\n", ""),
                l,
                "{name}: vol-dumpxml after refresh"
            );
        } else {
            assert_eq!(q, l, "{name}: vol-dumpxml after refresh");
        }
    }
    p.same_vol_info("overlay.qcow2");

    // vol-list, both forms.
    p.both_ok(&["vol-list", "default"]);
    p.both_ok(&["vol-list", "default", "--details"]);
}

#[test]
fn peer_documented_differences_compat_default_partial_reservation_probed_xml() {
    if !peer_available() {
        return;
    }
    let p = Peers::start();

    // Compat default: no <compat> → qpool 1.1, libvirt 0.10. Sizes still agree.
    p.create("c.xml", &vol_xml("c.qcow2", GIB, None, ""), &[]);
    p.same_vol_info("c.qcow2");
    let compat = |path: &Path| qemu_info(path)["format-specific"]["data"]["compat"].clone();
    assert_eq!(compat(&p.q_vol("c.qcow2")), "1.1");
    assert_eq!(compat(&p.l_vol("c.qcow2")), "0.10");
    // qpool's dumpxml shows compat, clusterSize and features at once; libvirt shows none of
    // them right after create.
    let (q, l) = p.dumpxml("c.qcow2");
    assert!(q.contains("    <compat>1.1</compat>\n"), "{q}");
    assert!(
        q.contains("    <clusterSize unit='B'>65536</clusterSize>\n"),
        "{q}"
    );
    assert!(
        !l.contains("<compat>") && !l.contains("<clusterSize"),
        "{l}"
    );
    assert_eq!(strip_probed(&q), l);
    // After a refresh libvirt shows the cluster size, but still no compat for its v2 image.
    p.l.virsh_ok(&["pool-refresh", "default"]);
    let (q2, l2) = p.dumpxml("c.qcow2");
    assert!(
        l2.contains("    <clusterSize unit='B'>65536</clusterSize>\n"),
        "{l2}"
    );
    assert!(!l2.contains("<compat>"), "{l2}");
    assert_eq!(strip_probed(&q2), strip_probed(&l2));

    // Partial reservation: 0 < allocation < capacity without --prealloc-metadata. libvirt
    // makes a thin image; qpool reserves the first `allocation` bytes of guest data.
    p.create(
        "r.xml",
        &vol_xml(
            "r.qcow2",
            GIB,
            Some(256 * MIB),
            "    <compat>1.1</compat>\n",
        ),
        &[],
    );
    p.create(
        "t.xml",
        &vol_xml("t.qcow2", GIB, None, "    <compat>1.1</compat>\n"),
        &[],
    );
    let (q_info, l_info) = p.both(&["vol-info", "r.qcow2", "--pool", "default", "--bytes"]);
    let (_, l_thin) = p.both(&["vol-info", "t.qcow2", "--pool", "default", "--bytes"]);
    assert_eq!(
        allocation_of(&l_info),
        allocation_of(&l_thin),
        "libvirt ignores <allocation> for qcow2 without --prealloc-metadata"
    );
    let q_alloc = allocation_of(&q_info);
    assert!(
        (256 * MIB..GIB).contains(&q_alloc),
        "qpool reserves the first 256 MiB: {q_alloc}"
    );
    assert_eq!(q_alloc, alloc_and_size(&p.q_vol("r.qcow2")).0);
    // Same capacity and name lines; only the allocation differs.
    let without_alloc = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("Allocation:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_alloc(&q_info), without_alloc(&l_info));
    assert_check_clean(&p.q_vol("r.qcow2"));
    let q_img = image_facts(&p.q_vol("r.qcow2"));
    let l_img = image_facts(&p.l_vol("r.qcow2"));
    assert_eq!(q_img["virtual-size"], l_img["virtual-size"]);
    assert_eq!(q_img["format-specific"], l_img["format-specific"]);
}

#[test]
fn peer_same_commands_resize_clone_upload_download_wipe_delete() {
    if !peer_available() {
        return;
    }
    let p = Peers::start();

    // Raw: create (fully allocated), grow with --allocate, grow sparse, shrink.
    p.both_ok(&["vol-create-as", "default", "r.img", "8M"]);
    p.same_vol_info("r.img");
    p.both_ok(&[
        "vol-resize",
        "r.img",
        "16M",
        "--pool",
        "default",
        "--allocate",
    ]);
    p.same_vol_info("r.img");
    p.both_ok(&["vol-resize", "r.img", "24M", "--pool", "default"]);
    p.same_vol_info("r.img");
    p.both_ok(&["vol-resize", "r.img", "+4M", "--pool", "default", "--delta"]);
    p.same_vol_info("r.img");
    p.both_ok(&[
        "vol-resize",
        "r.img",
        "20M",
        "--pool",
        "default",
        "--shrink",
    ]);
    p.same_vol_info("r.img");

    // Upload a file, download it back; both daemons hold and return the same bytes.
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let input = p.q.scratch().join("upload.bin");
    std::fs::write(&input, &data).unwrap();
    p.both_ok(&[
        "vol-upload",
        "r.img",
        input.to_str().unwrap(),
        "--pool",
        "default",
        "--offset",
        "1048576",
    ]);
    p.same_vol_info("r.img");
    let q_bytes = std::fs::read(p.q_vol("r.img")).unwrap();
    assert_eq!(q_bytes, std::fs::read(p.l_vol("r.img")).unwrap());
    assert_eq!(&q_bytes[1 << 20..(1 << 20) + data.len()], &data[..]);
    for (peer, out) in [("q", "down-q.bin"), ("l", "down-l.bin")] {
        let path = p.q.scratch().join(out);
        let args = [
            "vol-download",
            "r.img",
            path.to_str().unwrap(),
            "--pool",
            "default",
            "--offset",
            "1048576",
            "--length",
            "3000000",
        ];
        if peer == "q" {
            p.q.virsh_ok(&args);
        } else {
            p.l.virsh_ok(&args);
        }
        assert_eq!(std::fs::read(&path).unwrap(), data, "{peer}: download");
    }

    // Clone the raw volume: the same bytes and size. The documented difference: qpool's
    // clone copies the source's allocated extents (on filesystems with FIEMAP, reserved
    // ones stay reserved), while libvirt copies only blocks that hold non-zero data. So
    // qpool's clone holds at least libvirt's allocation and at most the source's.
    p.both_ok(&["vol-clone", "r.img", "rc.img", "--pool", "default"]);
    assert_eq!(std::fs::read(p.q_vol("rc.img")).unwrap(), q_bytes);
    assert_eq!(std::fs::read(p.l_vol("rc.img")).unwrap(), q_bytes);
    let (q_alloc, q_size) = alloc_and_size(&p.q_vol("rc.img"));
    let (l_alloc, l_size) = alloc_and_size(&p.l_vol("rc.img"));
    assert_eq!(q_size, l_size, "rc.img: size");
    assert!(
        l_alloc <= q_alloc && q_alloc <= alloc_and_size(&p.q_vol("r.img")).0,
        "rc.img allocation: libvirt {l_alloc}, qpool {q_alloc}"
    );
    // Wipe a fully allocated raw volume: zeros, still fully allocated, on both.
    p.both_ok(&["vol-create-as", "default", "w.img", "4M"]);
    let small = p.q.write_file("small.bin", "qpool and libvirt");
    p.both_ok(&[
        "vol-upload",
        "w.img",
        small.to_str().unwrap(),
        "--pool",
        "default",
    ]);
    p.both_ok(&["vol-wipe", "w.img", "--pool", "default"]);
    p.same_vol_info("w.img");
    let zeros = vec![0u8; usize::try_from(4 * MIB).unwrap()];
    assert_eq!(std::fs::read(p.q_vol("w.img")).unwrap(), zeros);
    assert_eq!(std::fs::read(p.l_vol("w.img")).unwrap(), zeros);
    // Wiping a sparse raw volume: zeros on both. libvirt truncates a sparse file to nothing
    // and back (allocation 0); qpool overwrites its allocated extents with zeros (README), so
    // its allocation stays.
    let before = alloc_and_size(&p.q_vol("r.img"));
    p.both_ok(&["vol-wipe", "r.img", "--pool", "default"]);
    let zeros = vec![0u8; usize::try_from(20 * MIB).unwrap()];
    assert_eq!(std::fs::read(p.q_vol("r.img")).unwrap(), zeros);
    assert_eq!(std::fs::read(p.l_vol("r.img")).unwrap(), zeros);
    assert_eq!(alloc_and_size(&p.q_vol("r.img")), before);
    assert_eq!(alloc_and_size(&p.l_vol("r.img")), (0, 20 * MIB));

    // qcow2 (compat 1.1 on both): clones, thin and preallocated.
    let compat = "    <compat>1.1</compat>\n";
    p.create("q.xml", &vol_xml("q.qcow2", GIB, None, compat), &[]);
    p.both_ok(&["vol-clone", "q.qcow2", "qc.qcow2", "--pool", "default"]);
    p.same_vol_info("qc.qcow2");
    p.create(
        "m.xml",
        &vol_xml("m.qcow2", 256 * MIB, Some(0), compat),
        &["--prealloc-metadata"],
    );
    p.both_ok(&[
        "vol-clone",
        "m.qcow2",
        "mc.qcow2",
        "--pool",
        "default",
        "--prealloc-metadata",
    ]);
    p.same_vol_info("mc.qcow2");
    for name in ["qc.qcow2", "mc.qcow2"] {
        assert_check_clean(&p.q_vol(name));
        assert_eq!(
            image_facts(&p.q_vol(name)),
            image_facts(&p.l_vol(name)),
            "{name}"
        );
    }
    // vol-create-from with new XML (the new volume's options, the source's data).
    p.q.write_file("from.xml", &vol_xml("from.qcow2", GIB, None, compat));
    let from = p.q.scratch().join("from.xml");
    p.both_ok(&[
        "vol-create-from",
        "default",
        from.to_str().unwrap(),
        "q.qcow2",
        "--inputpool",
        "default",
    ]);
    p.same_vol_info("from.qcow2");

    // qcow2 resize: the same capacity on both, and clean images. (The allocation may differ
    // by a cluster: qemu-img, which libvirt runs, always moves a growing L1 table to new
    // clusters; qpool grows it in place while it fits.)
    p.both_ok(&["vol-resize", "q.qcow2", "3G", "--pool", "default"]);
    let (q_info, l_info) = p.both(&["vol-info", "q.qcow2", "--pool", "default", "--bytes"]);
    let capacity = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("Capacity:"))
            .map(str::to_owned)
    };
    assert_eq!(capacity(&q_info), capacity(&l_info));
    for path in [p.q_vol("q.qcow2"), p.l_vol("q.qcow2")] {
        assert_check_clean(&path);
        assert_eq!(qemu_info(&path)["virtual-size"], 3 * GIB);
    }

    // Delete everything: the same empty listing.
    for name in [
        "r.img",
        "rc.img",
        "w.img",
        "q.qcow2",
        "qc.qcow2",
        "m.qcow2",
        "mc.qcow2",
        "from.qcow2",
    ] {
        p.both_ok(&["vol-delete", name, "--pool", "default"]);
        assert!(!p.q_vol(name).exists() && !p.l_vol(name).exists(), "{name}");
    }
    p.both_ok(&["vol-list", "default", "--details"]);
}

#[test]
fn peer_errors_read_the_same() {
    if !peer_available() {
        return;
    }
    let p = Peers::start();
    p.both_ok(&[
        "vol-create-as",
        "default",
        "e.qcow2",
        "16M",
        "--format",
        "qcow2",
    ]);
    let both_fail = |args: &[&str]| {
        let (qs, qo, qe) = p.q.virsh(args);
        let (ls, lo, le) = p.l.virsh(args);
        assert_ne!(qs, 0, "{args:?} must fail");
        assert_eq!(
            (qs, p.norm_q(&qo), p.norm_q(&qe)),
            (ls, p.norm_l(&lo), p.norm_l(&le)),
            "virsh {args:?}: qpoold (left) and libvirtd (right) differ"
        );
    };
    both_fail(&["vol-info", "nosuch", "--pool", "default"]);
    both_fail(&["vol-info", "/nonexistent/nosuch.qcow2"]);
    both_fail(&["pool-info", "nosuchpool"]);
    both_fail(&["vol-create-as", "default", "e.qcow2", "1M"]);
    both_fail(&["vol-resize", "e.qcow2", "1M", "--pool", "default"]);
    both_fail(&[
        "vol-delete",
        "e.qcow2",
        "--pool",
        "default",
        "--delete-snapshots",
    ]);
    both_fail(&["vol-delete", "nosuch", "--pool", "default"]);
    both_fail(&["pool-start", "default"]);
    // The read-only sockets refuse changes with the same words.
    let q_ro = run_virsh(
        &p.q.uri_ro(),
        &["vol-delete", "e.qcow2", "--pool", "default"],
    );
    let l_uri_ro = p.l.uri_ro();
    let l_ro = run_virsh(&l_uri_ro, &["vol-delete", "e.qcow2", "--pool", "default"]);
    assert_eq!(q_ro, l_ro);
    assert!(
        q_ro.2
            .contains("read only access prevents virStorageVolDelete"),
        "{q_ro:?}"
    );
    assert!(p.q_vol("e.qcow2").exists());
}

#[test]
fn peer_pool_info_and_dumpxml_agree_on_a_shared_filesystem() {
    if !peer_available() {
        return;
    }
    // libvirt's pool-info figures come from its last refresh (adjusted by its own creates and
    // deletes, not by qpool's on the same filesystem), so it is refreshed before each look.
    let p = Peers::start();
    let compare = |what: &str| {
        p.l.virsh_ok(&["pool-refresh", "default"]);
        let q_uuid = p.q.virsh_ok(&["pool-uuid", "default"]);
        let l_uuid = p.l.virsh_ok(&["pool-uuid", "default"]);
        for args in [
            &["pool-info", "default", "--bytes"][..],
            &["pool-info", "default"][..],
            &["pool-dumpxml", "default"][..],
            &["vol-list", "default", "--details"][..],
        ] {
            assert_eq!(
                p.norm_q(&p.q.virsh_ok(args).replace(q_uuid.trim(), "UUID")),
                p.norm_l(&p.l.virsh_ok(args).replace(l_uuid.trim(), "UUID")),
                "{what}: virsh {args:?}: qpoold (left) and libvirtd (right) differ"
            );
        }
    };
    compare("empty pools");
    let compat = "    <compat>1.1</compat>\n";
    p.both_ok(&["vol-create-as", "default", "a.img", "8M"]);
    compare("after a raw volume");
    p.both_ok(&[
        "vol-create-as",
        "default",
        "b.img",
        "16M",
        "--allocation",
        "0",
    ]);
    compare("after a sparse raw volume");
    p.create(
        "c.xml",
        &vol_xml("c.qcow2", 64 * MIB, Some(64 * MIB), compat),
        &["--prealloc-metadata"],
    );
    compare("after a falloc qcow2 volume");
    for name in ["a.img", "c.qcow2"] {
        p.both_ok(&["vol-delete", name, "--pool", "default"]);
        compare(&format!("after deleting {name}"));
    }
}

#[test]
fn peer_falloc_qcow2_clone_stays_preallocated_without_fiemap() {
    // `vol-clone --prealloc-metadata` of a falloc qcow2 (the XML carries allocation >=
    // capacity): libvirt makes a falloc copy; qpool's copy path reserves the source's extents
    // from FIEMAP, falls back to SEEK_DATA where there is none, and tmpfs reports fallocated,
    // never written pages as holes, so the copy ends up thin (allocation 266240 for 256 MiB).
    if !peer_available() {
        return;
    }
    let p = Peers::start();
    p.create(
        "f.xml",
        &vol_xml(
            "f.qcow2",
            256 * MIB,
            Some(256 * MIB),
            "    <compat>1.1</compat>\n",
        ),
        &["--prealloc-metadata"],
    );
    p.same_vol_info("f.qcow2");
    p.both_ok(&[
        "vol-clone",
        "f.qcow2",
        "fc.qcow2",
        "--pool",
        "default",
        "--prealloc-metadata",
    ]);
    p.same_vol_info("fc.qcow2");
}
