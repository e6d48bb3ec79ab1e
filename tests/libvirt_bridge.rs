//! The libvirt bridge against a real libvirtd with its qemu and storage drivers
//! (`qemu:///system` on a private socket, tests/common/libvirtd.rs): what qpool and qpoold
//! change, libvirtd lists at once, with the same capacity and allocation; a libvirt pool qpool
//! did not make is never changed or removed. `qpool` never links libvirt: it runs qpoold
//! for the bridge's work, found beside it, in `../sbin` or in `PATH`.
//!
//! Needs root, libvirtd and the `libvirt-qemu` user (scripts/test installs and creates them);
//! fails under CI=true where they are missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TempPool;
use common::daemon::Daemon;
use common::libvirtd::{Libvirtd, available};

/// `vol-info --bytes` of a volume: (capacity, allocation).
fn sizes(info: &str) -> (u64, u64) {
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {info}"))
    };
    (field("Capacity:"), field("Allocation:"))
}

/// The names `virsh vol-list POOL` prints.
fn libvirt_volumes(l: &Libvirtd, pool: &str) -> Vec<String> {
    l.virsh_ok(&["vol-list", pool])
        .lines()
        .skip(2)
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The libvirt pool names `virsh pool-list --all --name` prints.
fn libvirt_pools(l: &Libvirtd) -> Vec<String> {
    let mut names: Vec<String> = l
        .virsh_ok(&["pool-list", "--all", "--name"])
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn pool_xml(name: &str, target: &Path) -> String {
    format!(
        "<pool type='dir'>\n  <name>{name}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        target.display()
    )
}

/// The line `Autostart:` of `virsh pool-info`.
fn autostart(l: &Libvirtd, pool: &str) -> String {
    l.virsh_ok(&["pool-info", pool])
        .lines()
        .find_map(|line| line.strip_prefix("Autostart:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn qpool_changes_are_listed_by_libvirtd_at_once_with_the_same_sizes() {
    if !available() {
        return;
    }
    let l = Libvirtd::start();
    let pool = TempPool::new();
    let c = ["--connect", l.uri.as_str()];
    let with = |args: &[&str]| pool.ok(&[&c[..], args].concat());

    // The first change defines the mirror (the pool directory is named "pool").
    with(&[
        "vol-create-as",
        "disk.qcow2",
        "1G",
        "--format",
        "qcow2",
        "--allocation",
        "64M",
    ]);
    assert_eq!(libvirt_volumes(&l, "pool"), ["disk.qcow2"]);
    let dumpxml = l.virsh_ok(&["pool-dumpxml", "pool"]);
    assert!(dumpxml.contains("<vendor name='qpool'/>"), "{dumpxml}");
    assert_eq!(autostart(&l, "pool"), "no");
    let qpool_sizes = sizes(&pool.ok(&["vol-info", "--bytes", "disk.qcow2"]));
    let libvirt_sizes =
        sizes(&l.virsh_ok(&["vol-info", "--bytes", "disk.qcow2", "--pool", "pool"]));
    assert_eq!(libvirt_sizes, qpool_sizes);
    assert_eq!(qpool_sizes.0, 1 << 30);

    // Every other change is refreshed too.
    with(&["vol-resize", "disk.qcow2", "2G"]);
    let libvirt_sizes =
        sizes(&l.virsh_ok(&["vol-info", "--bytes", "disk.qcow2", "--pool", "pool"]));
    assert_eq!(
        libvirt_sizes,
        sizes(&pool.ok(&["vol-info", "--bytes", "disk.qcow2"]))
    );
    assert_eq!(libvirt_sizes.0, 2 << 30);
    with(&["vol-clone", "disk.qcow2", "copy.qcow2"]);
    assert_eq!(libvirt_volumes(&l, "pool"), ["copy.qcow2", "disk.qcow2"]);
    with(&["vol-delete", "disk.qcow2"]);
    assert_eq!(libvirt_volumes(&l, "pool"), ["copy.qcow2"]);

    // Without --connect, libvirtd is not told.
    pool.ok(&["vol-create-as", "quiet.raw", "1M", "--format", "raw"]);
    assert_eq!(libvirt_volumes(&l, "pool"), ["copy.qcow2"]);
}

#[test]
fn libvirt_sync_mirrors_the_definitions_and_undefines_only_its_own_pools() {
    if !available() {
        return;
    }
    let l = Libvirtd::start();
    let dirs = TempPool::new();
    let root = dirs.scratch();
    let defs = root.join("defs");
    std::fs::create_dir_all(defs.join("autostart")).unwrap();
    for name in ["a", "b", "theirs-dir", "other"] {
        std::fs::create_dir(root.join(name)).unwrap();
    }
    std::fs::write(defs.join("a.xml"), pool_xml("a", &root.join("a"))).unwrap();
    std::os::unix::fs::symlink("../a.xml", defs.join("autostart/a.xml")).unwrap();
    std::fs::write(defs.join("b.xml"), pool_xml("b", &root.join("b"))).unwrap();
    // A pool of libvirtd's own, named like a qpool pool defined below.
    l.virsh_ok(&[
        "pool-define-as",
        "theirs",
        "dir",
        "--target",
        root.join("theirs-dir").to_str().unwrap(),
    ]);
    l.virsh_ok(&["pool-start", "theirs"]);
    let sync = |expect_ok: bool| {
        let out = dirs.qpool(&[
            "libvirt-sync",
            "--connect",
            &l.uri,
            "--pools",
            defs.to_str().unwrap(),
        ]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.success(),
            expect_ok,
            "stdout: {stdout}\nstderr: {stderr}"
        );
        (stdout, stderr)
    };

    let (stdout, _) = sync(true);
    assert!(stdout.contains("Pool a defined"), "{stdout}");
    assert!(stdout.contains("Pool a marked as autostarted"), "{stdout}");
    assert!(stdout.contains("Pool b started"), "{stdout}");
    assert_eq!(libvirt_pools(&l), ["a", "b", "theirs"]);
    assert_eq!(autostart(&l, "a"), "yes");
    assert_eq!(autostart(&l, "b"), "no");

    // qpool gets a pool named like libvirtd's own, and loses b.
    std::fs::remove_file(defs.join("b.xml")).unwrap();
    std::fs::write(
        defs.join("theirs.xml"),
        pool_xml("theirs", &root.join("other")),
    )
    .unwrap();
    let (stdout, stderr) = sync(false);
    assert!(stdout.contains("Pool b has been undefined"), "{stdout}");
    assert!(
        stderr.contains("libvirt pool 'theirs' was not made by qpool"),
        "{stderr}"
    );
    assert!(
        stderr.lines().last().unwrap().starts_with("error: 1 of"),
        "{stderr}"
    );
    assert_eq!(libvirt_pools(&l), ["a", "theirs"]);
    let theirs = l.virsh_ok(&["pool-dumpxml", "theirs"]);
    assert!(
        theirs.contains(root.join("theirs-dir").to_str().unwrap()),
        "{theirs}"
    );

    // Gone from qpool again: libvirtd's own pool still stays.
    std::fs::remove_file(defs.join("theirs.xml")).unwrap();
    let (stdout, _) = sync(true);
    assert!(stdout.contains("Pool a refreshed"), "{stdout}");
    assert_eq!(libvirt_pools(&l), ["a", "theirs"]);
}

#[test]
fn qpoold_with_libvirt_uri_mirrors_its_pools_and_every_change() {
    if !available() {
        return;
    }
    let l = Libvirtd::start();
    let mut d = Daemon::unstarted(&[]);
    d.write_file(
        "qpoold.conf",
        &format!("libvirt_uri = \"{}\"\nlibvirt_prefix = \"q-\"\n", l.uri),
    );
    d.spawn();
    // The default pool is mirrored before qpoold listens.
    assert_eq!(libvirt_pools(&l), ["q-default"]);
    assert_eq!(autostart(&l, "q-default"), "yes");

    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "v.qcow2",
        "1G",
        "--format",
        "qcow2",
    ]);
    assert_eq!(libvirt_volumes(&l, "q-default"), ["v.qcow2"]);
    let q = sizes(&d.virsh_ok(&["vol-info", "--bytes", "v.qcow2", "--pool", "default"]));
    let lv = sizes(&l.virsh_ok(&["vol-info", "--bytes", "v.qcow2", "--pool", "q-default"]));
    assert_eq!(lv, q);

    // An upload changes the allocation once its stream has finished.
    let data = d.write_file("data.bin", &"x".repeat(1 << 20));
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "r.raw",
        "4M",
        "--format",
        "raw",
        "--allocation",
        "0",
    ]);
    d.virsh_ok(&[
        "vol-upload",
        "r.raw",
        data.to_str().unwrap(),
        "--pool",
        "default",
    ]);
    let q = sizes(&d.virsh_ok(&["vol-info", "--bytes", "r.raw", "--pool", "default"]));
    let lv = sizes(&l.virsh_ok(&["vol-info", "--bytes", "r.raw", "--pool", "q-default"]));
    assert_eq!(lv, q);
    assert!(q.1 >= 1 << 20, "{q:?}");

    d.virsh_ok(&["vol-wipe", "r.raw", "--pool", "default"]);
    d.virsh_ok(&["vol-delete", "v.qcow2", "--pool", "default"]);
    assert_eq!(libvirt_volumes(&l, "q-default"), ["r.raw"]);

    // A pool defined, started and autostarted through qpoold follows; undefined, it goes.
    let extra = d.scratch().join("extra");
    std::fs::create_dir(&extra).unwrap();
    let xml = d.write_file("extra.xml", &pool_xml("extra", &extra));
    d.virsh_ok(&["pool-define", xml.to_str().unwrap()]);
    d.virsh_ok(&["pool-start", "extra"]);
    d.virsh_ok(&["pool-autostart", "extra"]);
    assert_eq!(libvirt_pools(&l), ["q-default", "q-extra"]);
    assert_eq!(autostart(&l, "q-extra"), "yes");
    d.virsh_ok(&["pool-destroy", "extra"]);
    d.virsh_ok(&["pool-undefine", "extra"]);
    assert_eq!(libvirt_pools(&l), ["q-default"]);
}

#[test]
fn a_qpool_change_stands_when_libvirtd_cannot_be_reached() {
    let pool = TempPool::new();
    let uri = format!(
        "qemu+unix:///system?socket={}",
        pool.scratch().join("no-such-sock").display()
    );
    let out = pool.qpool(&[
        "--connect",
        &uri,
        "vol-create-as",
        "v.raw",
        "1M",
        "--format",
        "raw",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Vol v.raw created\n\n"
    );
    assert!(
        stderr.starts_with("warning: libvirt pool not refreshed: cannot connect to qemu+unix"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(pool.vol("v.raw").exists());
}

#[test]
fn qpoold_serves_without_libvirtd_and_syncs_every_pool_once_it_answers() {
    if !available() {
        return;
    }
    let mut d = Daemon::unstarted(&[]);
    // The URI names a link that leads nowhere until libvirtd runs.
    let link = d.scratch().join("libvirt-sock");
    d.write_file(
        "qpoold.conf",
        &format!(
            "libvirt_uri = \"qemu+unix:///system?socket={}\"\n",
            link.display()
        ),
    );
    d.spawn();
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "early.raw",
        "1M",
        "--format",
        "raw",
    ]);
    assert!(d.log().contains("warning: libvirt mirror"), "{}", d.log());

    let l = Libvirtd::start();
    let socket = l.uri.split_once("socket=").unwrap().1.to_string();
    std::os::unix::fs::symlink(&socket, &link).unwrap();
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "late.raw",
        "1M",
        "--format",
        "raw",
    ]);
    assert_eq!(libvirt_pools(&l), ["default"]);
    assert_eq!(libvirt_volumes(&l, "default"), ["early.raw", "late.raw"]);
}

/// The shared libraries `ldd` lists for a binary.
fn libraries(binary: &str) -> Vec<String> {
    let out = common::run("ldd", &[binary]);
    assert!(
        out.status.success(),
        "ldd {binary}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// libvirt and the ~50 libraries it needs cost every process that links them ~20 ms at start:
/// `qpool` leaves the bridge's work to qpoold, and the linker leaves libvirt out.
#[test]
fn qpool_does_not_link_libvirt_and_qpoold_does() {
    if !common::have("ldd") {
        return;
    }
    let qpool = libraries(common::QPOOL);
    let qpoold = libraries(env!("CARGO_BIN_EXE_qpoold"));
    let libvirt = |libs: &[String]| libs.iter().any(|l| l.starts_with("libvirt"));
    assert!(!libvirt(&qpool), "qpool links libvirt: {qpool:?}");
    // Not vacuous: the tests build both binaries with the bridge (Cargo.toml's dev-dependency
    // on qpool with the feature libvirt), and qpoold does link it.
    assert!(
        libvirt(&qpoold),
        "qpoold lacks libvirt (bridge built: {}): {qpoold:?}",
        qpool::bridge::BUILT
    );
    assert!(qpool.len() < 10, "{qpool:?}");
}

/// A copy of the `qpool` under test at `dir/bin/qpool` (a hard link when it can be), and an
/// empty directory to be the whole `PATH`.
fn lone_qpool(scratch: &Path) -> (PathBuf, PathBuf) {
    let bin = scratch.join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("qpool");
    if std::fs::hard_link(common::QPOOL, &copy).is_err() {
        std::fs::copy(common::QPOOL, &copy).unwrap();
    }
    let path = scratch.join("empty-path");
    std::fs::create_dir(&path).unwrap();
    (copy, path)
}

fn run_lone(qpool: &Path, path: &Path, pool: &TempPool, args: &[&str]) -> Output {
    Command::new(qpool)
        .arg("--pool-dir")
        .arg(pool.path())
        .args(args)
        .env("PATH", path)
        .env_remove("QPOOL_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run qpool")
}

fn unreachable_uri(pool: &TempPool) -> String {
    format!(
        "qemu+unix:///system?socket={}",
        pool.scratch().join("no-such-sock").display()
    )
}

#[test]
fn without_qpoold_a_change_stands_with_a_warning_and_libvirt_sync_fails() {
    let pool = TempPool::new();
    let (qpool, path) = lone_qpool(pool.scratch());
    let uri = unreachable_uri(&pool);
    let c = ["--connect", uri.as_str()];

    let out = run_lone(
        &qpool,
        &path,
        &pool,
        &[&c[..], &["vol-create-as", "v.raw", "1M", "--format", "raw"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Vol v.raw created\n\n"
    );
    assert!(
        stderr.starts_with("warning: libvirt pool not refreshed: cannot find qpoold"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(pool.vol("v.raw").exists());

    let defs = pool.scratch().join("defs");
    let out = run_lone(
        &qpool,
        &path,
        &pool,
        &[&c[..], &["libvirt-sync", "--pools", defs.to_str().unwrap()]].concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(stderr.starts_with("error: cannot find qpoold"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// As the packages install them: `/usr/bin/qpool` runs `/usr/sbin/qpoold`.
#[test]
fn qpool_runs_the_qpoold_in_sbin_beside_its_bin() {
    let pool = TempPool::new();
    let (qpool, path) = lone_qpool(pool.scratch());
    let sbin = pool.scratch().join("usr/sbin");
    std::fs::create_dir(&sbin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_qpoold"), sbin.join("qpoold")).unwrap();
    let uri = unreachable_uri(&pool);
    let defs = pool.scratch().join("defs");
    let out = run_lone(
        &qpool,
        &path,
        &pool,
        &[
            "--connect",
            &uri,
            "libvirt-sync",
            "--pools",
            defs.to_str().unwrap(),
        ],
    );
    // Only qpoold can have tried libvirtd.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(
        stderr.starts_with("error: cannot connect to qemu+unix"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
