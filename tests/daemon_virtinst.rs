//! virt-manager's own storage code against `qpoold`: Debian's `virtinst` module (the library
//! behind virt-manager's "new volume" dialog and virt-install's `--disk pool=…,size=…`) with
//! Debian's python3-libvirt, run by `tests/python/virtinst_volume.py`.
//!
//! virtinst passes libvirt's PREALLOC_METADATA flag for every qcow2 volume without a backing
//! store, so a thin request (allocation 0) must come out as qemu-img's `preallocation=metadata`
//! and allocation = capacity as `preallocation=falloc`, as libvirt makes them. The oracle is
//! qemu-img: `check` (clean, every cluster mapped), `info`, and a reference image that
//! `qemu-img create` makes with the same options beside the pool, whose size and allocation
//! must be the volume's. virsh's `vol-info --bytes` must report that allocation.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::daemon::Daemon;
use common::{alloc_and_size, assert_check_clean, have, in_ci, qemu_create, qemu_info, run};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Debian's interpreter: python3-libvirt and virtinst are installed for it, not for whatever
/// `python3` comes first in PATH.
const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/virtinst_volume.py")
}

/// Whether virtinst and python3-libvirt can be imported (and qemu-img runs). In CI their
/// absence fails the test; elsewhere the test is skipped loudly.
fn have_virtinst() -> bool {
    if !have("qemu-img") {
        return false;
    }
    let ok = Command::new(PYTHON)
        .args([
            "-c",
            "import sys; sys.path.insert(0, '/usr/share/virt-manager'); import libvirt, virtinst",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "virtinst and python3-libvirt are required in CI (apt-get install --no-install-recommends virtinst python3-libvirt)"
        );
        eprintln!("SKIPPED: virtinst / python3-libvirt not importable by {PYTHON}");
    }
    ok
}

/// Runs the script; (success, stdout, stderr).
fn virtinst_raw(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(PYTHON)
        .arg(script())
        .args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("LC_ALL", "C")
        .output()
        .expect("run python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the script, which must succeed; its JSON answer.
fn virtinst(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = virtinst_raw(args);
    assert!(
        ok,
        "virtinst {args:?} failed\nstdout: {out}\nstderr: {err}\nqpoold log:\n{}",
        d.log()
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from the script ({e}): {out}"))
}

/// `virsh vol-info NAME --pool default --bytes`: (capacity, allocation).
fn virsh_vol_info(d: &Daemon, name: &str) -> (u64, u64) {
    let out = d.virsh_ok(&["vol-info", name, "--pool", "default", "--bytes"]);
    let field = |label: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in {out}"));
        line[label.len()..]
            .trim()
            .trim_end_matches(" bytes")
            .parse()
            .unwrap_or_else(|_| panic!("bad {label} line {line:?}"))
    };
    assert!(out.contains(&format!("Name:           {name}\n")), "{out}");
    assert!(out.contains("Type:           file\n"), "{out}");
    (field("Capacity:"), field("Allocation:"))
}

/// `qemu-img check --output=json` as JSON (the image must be clean).
fn qemu_check(path: &Path) -> serde_json::Value {
    assert_check_clean(path);
    let out = run(
        "qemu-img",
        &["check", "--output=json", path.to_str().unwrap()],
    );
    serde_json::from_slice(&out.stdout).expect("check json")
}

/// Asserts `vol` (a qcow2 volume of `capacity` made by virtinst) is exactly what
/// `qemu-img create -o preallocation=MODE,compat=1.1` makes: same file size, same allocation,
/// clean, every cluster mapped; and that libvirt's figures report it.
fn assert_like_qemu_img(d: &Daemon, answer: &serde_json::Value, capacity: u64, mode: &str) {
    let name = answer["name"].as_str().unwrap();
    let path = d.vol(name);
    assert_eq!(answer["path"], path.to_str().unwrap());
    assert_eq!(answer["key"], path.to_str().unwrap());
    assert_eq!(answer["type"], 0, "VIR_STORAGE_VOL_FILE");

    let info = qemu_info(&path);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], capacity);
    assert_eq!(info["cluster-size"], 65536);
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert!(info.get("backing-filename").is_none());
    let check = qemu_check(&path);
    assert_eq!(
        check["allocated-clusters"], check["total-clusters"],
        "{mode}: every guest cluster is mapped: {check}"
    );

    let reference = d.scratch().join(format!("reference-{mode}-{name}"));
    qemu_create(
        &reference,
        &format!("preallocation={mode},compat=1.1"),
        capacity,
    );
    let (ref_allocation, ref_size) = alloc_and_size(&reference);
    let (allocation, size) = alloc_and_size(&path);
    assert_eq!(size, ref_size, "{mode}: file size as qemu-img makes it");
    assert_eq!(
        allocation, ref_allocation,
        "{mode}: allocation as qemu-img makes it"
    );
    assert_eq!(check["image-end-offset"], size);

    // What virtinst, the libvirt API and virsh report.
    assert_eq!(answer["capacity"], capacity);
    assert_eq!(answer["allocation"], allocation);
    assert_eq!(virsh_vol_info(d, name), (capacity, allocation));
    let xml = answer["xml"].as_str().unwrap();
    assert!(
        xml.contains(&format!(
            "<allocation unit='bytes'>{allocation}</allocation>"
        )),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("<physical unit='bytes'>{size}</physical>")),
        "{xml}"
    );
    assert!(xml.contains("<format type='qcow2'/>"), "{xml}");

    // virtinst's meter saw the whole creation.
    assert_eq!(
        answer["meter"]["started"][0],
        format!("Allocating '{name}'")
    );
    assert_eq!(answer["meter"]["started"][1], capacity);
    assert_eq!(answer["meter"]["ended"], true);
}

#[test]
fn thin_qcow2_from_virtinst_is_metadata_preallocated_like_qemu_img() {
    if !have_virtinst() {
        return;
    }
    let d = Daemon::start();
    let cap = GIB.to_string();
    let answer = virtinst(
        &d,
        &[
            "create",
            &d.uri(),
            "default",
            "thin.qcow2",
            &cap,
            "0",
            "qcow2",
        ],
    );
    let sent = answer["sent_xml"].as_str().unwrap();
    assert!(sent.contains("<allocation>0</allocation>"), "{sent}");
    assert_like_qemu_img(&d, &answer, GIB, "metadata");
    let (allocation, _) = alloc_and_size(&d.vol("thin.qcow2"));
    assert!(allocation < 2 * MIB, "metadata only: {allocation}");
}

#[test]
fn fully_allocated_qcow2_from_virtinst_is_falloc_like_qemu_img() {
    if !have_virtinst() {
        return;
    }
    let d = Daemon::start();
    let cap = GIB.to_string();
    let answer = virtinst(
        &d,
        &[
            "create",
            &d.uri(),
            "default",
            "full.qcow2",
            &cap,
            &cap,
            "qcow2",
        ],
    );
    let sent = answer["sent_xml"].as_str().unwrap();
    assert!(
        sent.contains(&format!("<allocation>{GIB}</allocation>")),
        "{sent}"
    );
    assert_like_qemu_img(&d, &answer, GIB, "falloc");
    let (allocation, _) = alloc_and_size(&d.vol("full.qcow2"));
    assert!(
        allocation > GIB,
        "reserved for the whole guest: {allocation}"
    );
}

#[test]
fn partial_allocation_with_virtinst_is_metadata_as_libvirt_reads_prealloc_metadata() {
    // virtinst sends PREALLOC_METADATA with 0 < allocation < capacity: libvirt's meaning of the
    // flag is `metadata` then, and qpool keeps that meaning (no partial reservation).
    if !have_virtinst() {
        return;
    }
    let d = Daemon::start();
    let cap = GIB.to_string();
    let alloc = (256 * MIB).to_string();
    let answer = virtinst(
        &d,
        &[
            "create",
            &d.uri(),
            "default",
            "part.qcow2",
            &cap,
            &alloc,
            "qcow2",
        ],
    );
    assert_like_qemu_img(&d, &answer, GIB, "metadata");
}

#[test]
fn virt_install_disk_builds_sparse_and_non_sparse_qcow2_volumes() {
    // virt-install --disk pool=default,size=1,sparse=yes|no,format=qcow2
    if !have_virtinst() {
        return;
    }
    let d = Daemon::start();
    let sparse = virtinst(
        &d,
        &[
            "disk",
            &d.uri(),
            "default",
            "sparse.qcow2",
            "1",
            "1",
            "qcow2",
        ],
    );
    assert_eq!(
        sparse["source_path"],
        d.vol("sparse.qcow2").to_str().unwrap()
    );
    assert_like_qemu_img(&d, &sparse, GIB, "metadata");

    let dense = virtinst(
        &d,
        &[
            "disk",
            &d.uri(),
            "default",
            "dense.qcow2",
            "1",
            "0",
            "qcow2",
        ],
    );
    assert_eq!(dense["source_path"], d.vol("dense.qcow2").to_str().unwrap());
    assert_like_qemu_img(&d, &dense, GIB, "falloc");
}

#[test]
fn raw_volumes_from_virtinst_are_sparse_or_fully_allocated() {
    // No PREALLOC_METADATA for raw: allocation 0 is a sparse file, allocation = capacity a
    // fully allocated one.
    if !have_virtinst() {
        return;
    }
    let d = Daemon::start();
    let cap = (64 * MIB).to_string();
    let sparse = virtinst(
        &d,
        &[
            "create",
            &d.uri(),
            "default",
            "sparse.img",
            &cap,
            "0",
            "raw",
        ],
    );
    let dense = virtinst(
        &d,
        &[
            "create",
            &d.uri(),
            "default",
            "dense.img",
            &cap,
            &cap,
            "raw",
        ],
    );
    for (answer, name, fully) in [(&sparse, "sparse.img", false), (&dense, "dense.img", true)] {
        let path = d.vol(name);
        assert_eq!(qemu_info(&path)["format"], "raw");
        let (allocation, size) = alloc_and_size(&path);
        assert_eq!(size, 64 * MIB, "{name}");
        if fully {
            assert!(allocation >= 64 * MIB, "{name}: {allocation}");
        } else {
            assert_eq!(allocation, 0, "{name}");
        }
        assert_eq!(answer["capacity"], 64 * MIB);
        assert_eq!(answer["allocation"], allocation);
        assert_eq!(virsh_vol_info(&d, name), (64 * MIB, allocation));
        let xml = answer["xml"].as_str().unwrap();
        assert!(xml.contains("<format type='raw'/>"), "{xml}");
    }
}

#[test]
fn virtinst_refuses_a_used_name_and_finds_a_free_one() {
    if !have_virtinst() {
        return;
    }
    let d = Daemon::start();
    let cap = (64 * MIB).to_string();
    virtinst(
        &d,
        &[
            "create",
            &d.uri(),
            "default",
            "disk.qcow2",
            &cap,
            "0",
            "qcow2",
        ],
    );
    let before = std::fs::read(d.vol("disk.qcow2")).unwrap();

    // virt-manager's name suggestion: refreshes the pool, then probes names by lookup.
    let free = virtinst(&d, &["free-name", &d.uri(), "default", "disk", ".qcow2"]);
    assert_eq!(free["name"], "disk-1.qcow2");
    let free = virtinst(&d, &["free-name", &d.uri(), "default", "other", ".qcow2"]);
    assert_eq!(free["name"], "other.qcow2");

    // validate() looks the name up and refuses it; nothing is touched.
    let (ok, _, err) = virtinst_raw(&[
        "create",
        &d.uri(),
        "default",
        "disk.qcow2",
        &cap,
        "0",
        "qcow2",
    ]);
    assert!(!ok);
    assert!(
        err.contains("Name 'disk.qcow2' already in use by another volume"),
        "{err}"
    );
    assert_eq!(std::fs::read(d.vol("disk.qcow2")).unwrap(), before);
    let listed = d.virsh_ok(&["vol-list", "default"]);
    let volumes: Vec<&str> = listed.lines().filter(|l| l.contains(".qcow2")).collect();
    assert_eq!(volumes.len(), 1, "only the first volume: {listed}");
}
