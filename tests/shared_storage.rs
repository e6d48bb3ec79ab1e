//! One pool, many hosts: qpool on GlusterFS and CephFS with two qpoold, one per "host", each
//! serving a pool on its own host's FUSE mount of the same volume (tests/common/shared.rs
//! brings the clusters up, each host in its own network namespace); preallocation on a
//! filesystem without `fallocate` and on CephFS, whose `fallocate` reserves nothing; and
//! QEMU's image locks, on one host and across hosts.
//!
//! The oracles: qemu-img (check, compare) and qemu-io (QEMU's own image locks), virsh and
//! the `virt` crate (libvirt's error codes), the clusters' own accounting (`ceph df`, the
//! bricks' and backing files' `st_blocks`), and sha256 of the bytes.
//!
//! Each filesystem's cluster is brought up once and its scenarios run in turn, each named in
//! its failure messages (a cluster costs seconds to start and stop).

mod common;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::daemon::Daemon;
use common::shared::{self, Host, in_private_namespace, wait_for};
use common::{QPOOL, TEMP_PREFIX, alloc_and_size, assert_check_clean, have, sha256};
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

const MIB: u64 = 1 << 20;

/// libvirt's VIR_ERR_OPERATION_INVALID: "volume is in use".
const VIR_ERR_OPERATION_INVALID: u32 = 55;
/// libvirt's VIR_ERR_STORAGE_VOL_EXIST.
const VIR_ERR_STORAGE_VOL_EXIST: u32 = 90;
/// qpool's own "go ahead although the volume is in use" flag (src/rpc/proto.rs).
const QPOOL_FORCE: u32 = 1 << 30;

/// The pool's name in both daemons.
const POOL: &str = "shared";

/// The pool directory on a host's mount (the same directory seen from either host).
fn pool_dir(host: &Host<'_>) -> PathBuf {
    host.mount.join("pool")
}

/// `qpool --pool-dir POOL ARGS…` on `host`.
fn qpool(host: &Host<'_>, args: &[&str], env: &[(&str, &str)]) -> Output {
    qpool_command(host, args, env).output().expect("run qpool")
}

fn qpool_command(host: &Host<'_>, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(QPOOL);
    cmd.arg("--pool-dir").arg(pool_dir(host)).args(args);
    for k in ["QPOOL_LOG", "RUST_LOG", "QPOOL_POOL_DIR", "QPOOL_FALLOCATE"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied()).stdin(Stdio::null());
    cmd
}

fn qpool_ok(host: &Host<'_>, args: &[&str]) -> String {
    let out = qpool(host, args, &[]);
    assert!(
        out.status.success(),
        "qpool {args:?} on host {}: {}",
        host.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit status 1 and one `error: ` line holding every word of `words`.
fn assert_refused(out: &Output, words: &[&str], label: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{label}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{label}: {stderr}");
    for w in words {
        assert!(errors[0].contains(w), "{label}: {stderr:?} lacks {w:?}");
    }
}

/// A qpoold for `host`: in the host's network namespace, serving the autostarted pool
/// `shared` on the host's mount.
fn daemon_on(host: &Host<'_>) -> Daemon {
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).expect("pools directory");
    let xml = format!(
        "<pool type='dir'><name>{POOL}</name><target><path>{}</path></target></pool>\n",
        pool_dir(host).display()
    );
    std::fs::write(d.pools.join("shared.xml"), xml).expect("pool definition");
    std::os::unix::fs::symlink("../shared.xml", d.pools.join("autostart/shared.xml"))
        .expect("autostart link");
    let prefix = host.netns.prefix();
    let words: Vec<&std::ffi::OsStr> = prefix.iter().map(|w| w.as_os_str()).collect();
    d.run_through(&words);
    d.spawn();
    d
}

/// The volume names `virsh vol-list` shows through a daemon.
fn listed(d: &Daemon) -> Vec<String> {
    d.virsh_ok(&["vol-list", POOL])
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `(capacity, allocation)` from `virsh vol-info --bytes`.
fn virsh_sizes(d: &Daemon, name: &str) -> (u64, u64) {
    let out = d.virsh_ok(&["vol-info", "--pool", POOL, name, "--bytes"]);
    let field = |label: &str| {
        out.lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label} in {out}"))
    };
    (field("Capacity:"), field("Allocation:"))
}

/// The hidden temporary files qpool is building in the pool (seen from `host`).
fn temps(host: &Host<'_>) -> Vec<PathBuf> {
    std::fs::read_dir(pool_dir(host))
        .expect("read pool")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .map(|e| e.path())
        .collect()
}

/// A `virt` connection (closed when dropped) and the pool.
struct Conn(Connect);

impl Conn {
    fn open(d: &Daemon) -> Conn {
        virt::error::clear_error_callback();
        Conn(Connect::open(Some(&d.uri())).expect("connect"))
    }

    fn pool(&self) -> StoragePool {
        StoragePool::lookup_by_name(&self.0, POOL).expect("pool")
    }

    fn vol(&self, name: &str) -> StorageVol {
        StorageVol::lookup_by_name(&self.pool(), name).expect("volume")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

fn expect_code<T>(r: Result<T, virt::error::Error>, code: u32, label: &str) {
    match r {
        Ok(_) => panic!("{label}: succeeded, expected error {code}"),
        Err(e) => assert_eq!(e.code().to_raw(), code, "{label}: {e}"),
    }
}

/// A qemu-io process holding an image open read-write (QEMU's image locks) until dropped.
struct QemuHolds(Child);

impl QemuHolds {
    /// Opens `path` with qemu-io and waits for its prompt: the image is open and locked.
    fn start(path: &Path) -> QemuHolds {
        let mut child = Command::new("qemu-io")
            .args(["-f", "qcow2"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-io");
        let mut stdout = child.stdout.take().expect("qemu-io's stdout");
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"qemu-io> ") {
            match stdout.read(&mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => {
                    let mut err = String::new();
                    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                    panic!("qemu-io did not open {}: {err}", path.display());
                }
            }
        }
        QemuHolds(child)
    }
}

/// Whether QEMU (qemu-io, read-only) is kept from opening `path` by another's image locks.
fn qemu_is_locked_out(path: &Path) -> bool {
    let out = Command::new("qemu-io")
        .args(["-r", "-f", "qcow2", "-c", "read 0 512"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("qemu-io -r");
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("lock")
}

impl Drop for QemuHolds {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios, run on each shared filesystem with host A and host B
// ---------------------------------------------------------------------------------------

/// N creators of one name, split over both hosts, through the CLI, virsh and the `virt`
/// crate on both daemons: exactly one succeeds, the others get "exists" (libvirt code 90),
/// and the image is clean.
fn one_name_many_creators_one_winner(fs: &str, hosts: &[Host<'_>; 2], daemons: &[Daemon; 2]) {
    for round in 0..3 {
        let name = format!("race-{round}.qcow2");
        let label = format!("{fs}, race {round}");
        let mut cli: Vec<Child> = Vec::new();
        let mut virsh: Vec<Child> = Vec::new();
        let xml = format!(
            "<volume><name>{name}</name><capacity unit='M'>64</capacity><allocation unit='M'>8</allocation><target><format type='qcow2'/></target></volume>"
        );
        let mut apps = Vec::new();
        for (host, d) in hosts.iter().zip(daemons) {
            for _ in 0..2 {
                cli.push(
                    qpool_command(
                        host,
                        &[
                            "vol-create-as",
                            &name,
                            "64M",
                            "--allocation",
                            "8M",
                            "--format",
                            "qcow2",
                        ],
                        &[],
                    )
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("qpool"),
                );
            }
            virsh.push(
                d.virsh_command(&[
                    "vol-create-as",
                    POOL,
                    &name,
                    "64M",
                    "--allocation",
                    "8M",
                    "--format",
                    "qcow2",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("virsh"),
            );
            let uri = d.uri();
            let xml = xml.clone();
            apps.push(std::thread::spawn(move || {
                virt::error::clear_error_callback();
                let mut conn = Connect::open(Some(&uri)).expect("connect");
                let pool = StoragePool::lookup_by_name(&conn, POOL).expect("pool");
                let r = StorageVol::create_xml(&pool, &xml, 0).map(|_| ());
                let _ = conn.close();
                r.map_err(|e| (e.code().to_raw(), e.to_string()))
            }));
        }
        let mut winners = 0;
        for c in cli {
            let out = c.wait_with_output().expect("qpool");
            if out.status.success() {
                winners += 1;
            } else {
                assert_refused(&out, &[&name, "already exists"], &format!("{label}: qpool"));
            }
        }
        for v in virsh {
            let out = v.wait_with_output().expect("virsh");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                winners += 1;
            } else {
                assert!(
                    stderr.contains("exists already"),
                    "{label}: virsh: {stderr}"
                );
            }
        }
        for a in apps {
            match a.join().expect("virt thread") {
                Ok(()) => winners += 1,
                Err((code, text)) => {
                    assert_eq!(code, VIR_ERR_STORAGE_VOL_EXIST, "{label}: virt: {text}");
                }
            }
        }
        assert_eq!(winners, 1, "{label}: exactly one creator wins");
        assert_check_clean(&pool_dir(&hosts[1]).join(&name));
        assert!(
            temps(&hosts[0]).is_empty(),
            "{label}: no temporary file left"
        );
    }
}

/// A big `full` volume being built by host A's daemon is neither listed by host B nor
/// removed by B's `pool-refresh`; once A's builder is killed (-9), B's next refresh removes
/// what it left, since its lock went with it.
fn a_volume_being_built_is_invisible_and_kept_until_its_builder_dies(
    fs: &str,
    hosts: &[Host<'_>; 2],
    daemons: &mut [Daemon; 2],
) {
    let [a, b] = hosts;
    let xml = daemons[0].write_file(
        "big.xml",
        "<volume><name>big.img</name><capacity unit='G'>2</capacity><target><format type='raw'/><preallocation xmlns='urn:qpool:volume:1' mode='full'/></target></volume>",
    );
    let mut builder = daemons[0]
        .virsh_command(&["vol-create", POOL, xml.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("virsh");
    wait_for("host A to start building", || !temps(a).is_empty());
    // Hold A's daemon where it is: the build can neither finish nor go away meanwhile.
    daemons[0].signal(libc::SIGSTOP);
    let building = temps(b);
    assert_eq!(building.len(), 1, "{fs}: host B sees the temporary file");
    daemons[1].virsh_ok(&["pool-refresh", POOL]);
    qpool_ok(b, &["pool-refresh"]);
    assert!(building[0].exists(), "{fs}: B's refresh kept A's build");
    assert!(
        !listed(&daemons[1]).contains(&"big.img".to_string()),
        "{fs}: B does not list a volume still being built"
    );
    assert!(
        !qpool_ok(b, &["vol-list"]).contains("big.img"),
        "{fs}: nor does the CLI on B"
    );
    daemons[0].signal(libc::SIGKILL);
    daemons[0].wait_exit(std::time::Duration::from_secs(60));
    let _ = builder.wait();
    daemons[1].virsh_ok(&["pool-refresh", POOL]);
    assert!(
        !building[0].exists() && temps(b).is_empty(),
        "{fs}: B's refresh removed the leftover of A's killed build"
    );
    assert!(
        !pool_dir(b).join("big.img").exists(),
        "{fs}: no half-made volume"
    );
    daemons[0].spawn();
}

/// What host A creates, resizes and deletes, host B sees after its `pool-refresh`, with the
/// same capacity and allocation.
fn changes_on_a_are_seen_on_b(fs: &str, daemons: &[Daemon; 2]) {
    let [a, b] = daemons;
    let same = |what: &str| {
        b.virsh_ok(&["pool-refresh", POOL]);
        let (on_a, on_b) = (virsh_sizes(a, "seen.img"), virsh_sizes(b, "seen.img"));
        assert_eq!(
            on_a, on_b,
            "{fs}, {what}: (capacity, allocation) on A and on B"
        );
        on_b
    };
    a.virsh_ok(&[
        "vol-create-as",
        POOL,
        "seen.img",
        "64M",
        "--allocation",
        "16M",
        "--format",
        "raw",
    ]);
    assert_eq!(same("created").0, 64 * MIB);
    a.virsh_ok(&["vol-resize", "--pool", POOL, "seen.img", "128M"]);
    assert_eq!(same("resized").0, 128 * MIB);
    a.virsh_ok(&["vol-delete", "--pool", POOL, "seen.img"]);
    b.virsh_ok(&["pool-refresh", POOL]);
    let (status, _, err) = b.virsh(&["vol-info", "--pool", POOL, "seen.img"]);
    assert_ne!(status, 0, "{fs}: B still finds the deleted volume");
    assert!(err.contains("not found"), "{fs}: {err}");
}

/// Refusals on B of every change to `name` (CLI and virsh): "in use", nothing changed.
fn changes_on_b_are_refused(label: &str, b: &Host<'_>, d: &Daemon, name: &str) {
    let before = sha256(&pool_dir(b).join(name));
    for args in [
        vec!["vol-delete", name],
        vec!["vol-wipe", name],
        vec!["vol-resize", name, "1M", "--shrink"],
    ] {
        let out = qpool(b, &args, &[]);
        assert_refused(
            &out,
            &[name, "is in use"],
            &format!("{label}: qpool {args:?}"),
        );
        let mut virsh_args = args.clone();
        virsh_args.insert(1, POOL);
        virsh_args.insert(1, "--pool");
        let (status, _, err) = d.virsh(&virsh_args);
        assert_ne!(status, 0, "{label}: virsh {virsh_args:?} succeeded");
        assert!(
            err.contains("is in use"),
            "{label}: virsh {virsh_args:?}: {err}"
        );
    }
    assert_eq!(
        sha256(&pool_dir(b).join(name)),
        before,
        "{label}: unchanged"
    );
}

/// While host A clones or downloads a volume, host B's delete, wipe and shrink of it are
/// refused ("in use"); the copy comes out identical to the source.
fn copies_and_downloads_on_a_hold_off_changes_on_b(
    fs: &str,
    hosts: &[Host<'_>; 2],
    daemons: &[Daemon; 2],
) {
    let [a, b] = hosts;
    qpool_ok(
        a,
        &["vol-create-as", "src.img", "256M", "--allocation", "0"],
    );
    common::qemu_io(
        &pool_dir(a).join("src.img"),
        "raw",
        &["write -P 0x5a 0 256M"],
    );
    let source = sha256(&pool_dir(a).join("src.img"));

    // A clone, held mid-copy by stopping A's daemon.
    let clone = daemons[0]
        .virsh_command(&["vol-clone", "--pool", POOL, "src.img", "copy.img"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("virsh vol-clone");
    wait_for("host A to start the clone", || !temps(a).is_empty());
    daemons[0].signal(libc::SIGSTOP);
    assert!(!temps(b).is_empty(), "{fs}: the clone is still running");
    changes_on_b_are_refused(&format!("{fs}, clone"), b, &daemons[1], "src.img");
    daemons[0].signal(libc::SIGCONT);
    let out = clone.wait_with_output().expect("virsh");
    assert!(
        out.status.success(),
        "{fs}: clone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256(&pool_dir(b).join("copy.img")),
        source,
        "{fs}: the copy"
    );

    // A download into a pipe nobody reads: it stays open, the volume locked.
    let fifo = daemons[0].scratch().join("download.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let mut download = daemons[0]
        .virsh_command(&[
            "vol-download",
            "--pool",
            POOL,
            "src.img",
            fifo.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("virsh vol-download");
    let mut pipe = File::open(&fifo).expect("open the fifo");
    let mut first = vec![0u8; 4096];
    pipe.read_exact(&mut first).expect("the first bytes");
    changes_on_b_are_refused(&format!("{fs}, download"), b, &daemons[1], "src.img");
    let copy = daemons[0].scratch().join("downloaded.img");
    let mut out = File::create(&copy).expect("download copy");
    std::io::Write::write_all(&mut out, &first).expect("write");
    std::io::copy(&mut pipe, &mut out).expect("read the download");
    drop(out);
    let status = download.wait().expect("virsh");
    assert!(status.success(), "{fs}: download");
    assert_eq!(sha256(&copy), source, "{fs}: the downloaded bytes");
    assert_eq!(
        sha256(&pool_dir(b).join("src.img")),
        source,
        "{fs}: the source"
    );
    for name in ["src.img", "copy.img"] {
        qpool_ok(b, &["vol-delete", name]);
    }
}

/// A volume a QEMU process on host A holds open for writing (qemu-io) cannot be deleted,
/// wiped, resized or overwritten from host B, through the CLI or libvirt (code 55), until
/// forced (`--force`; qpool's flag bit 30 over RPC).
fn qemu_on_a_holds_off_changes_on_b(fs: &str, hosts: &[Host<'_>; 2], daemons: &[Daemon; 2]) {
    let [a, b] = hosts;
    for name in ["vm1.qcow2", "vm2.qcow2"] {
        qpool_ok(a, &["vol-create-as", name, "64M", "--format", "qcow2"]);
    }
    let held = pool_dir(a).join("vm1.qcow2");
    let qemu = QemuHolds::start(&held);
    assert!(
        qemu_is_locked_out(&pool_dir(b).join("vm1.qcow2")),
        "{fs}: QEMU's own image locks reach host B"
    );
    let before = sha256(&held);
    let payload = daemons[1].write_file("payload", "zz");
    for args in [
        vec!["vol-delete", "vm1.qcow2"],
        vec!["vol-wipe", "vm1.qcow2"],
        vec!["vol-resize", "vm1.qcow2", "128M"],
        vec!["vol-upload", "vm1.qcow2", payload.to_str().unwrap()],
    ] {
        let out = qpool(b, &args, &[]);
        assert_refused(
            &out,
            &["vm1.qcow2", "is in use"],
            &format!("{fs}: {args:?} on B"),
        );
    }
    let conn = Conn::open(&daemons[1]);
    let vol = conn.vol("vm1.qcow2");
    expect_code(vol.delete(0), VIR_ERR_OPERATION_INVALID, "virt delete on B");
    expect_code(vol.wipe(0), VIR_ERR_OPERATION_INVALID, "virt wipe on B");
    expect_code(
        vol.resize(128 * MIB, 0),
        VIR_ERR_OPERATION_INVALID,
        "virt resize on B",
    );
    assert_eq!(sha256(&held), before, "{fs}: the held image is unchanged");
    vol.delete(QPOOL_FORCE).expect("a forced delete over RPC");
    assert!(!held.exists(), "{fs}: forced away");
    drop(qemu);

    let held = pool_dir(a).join("vm2.qcow2");
    let qemu = QemuHolds::start(&held);
    qpool_ok(b, &["vol-delete", "vm2.qcow2", "--force"]);
    assert!(!held.exists(), "{fs}: forced away by the CLI");
    drop(qemu);
}

/// Brings up two daemons on a shared filesystem's two hosts and runs every scenario.
fn two_hosts_share_one_pool(fs: &str, hosts: &[Host<'_>; 2]) {
    std::fs::create_dir(pool_dir(&hosts[0])).expect("pool directory");
    let mut daemons = [daemon_on(&hosts[0]), daemon_on(&hosts[1])];
    one_name_many_creators_one_winner(fs, hosts, &daemons);
    a_volume_being_built_is_invisible_and_kept_until_its_builder_dies(fs, hosts, &mut daemons);
    changes_on_a_are_seen_on_b(fs, &daemons);
    copies_and_downloads_on_a_hold_off_changes_on_b(fs, hosts, &daemons);
    qemu_on_a_holds_off_changes_on_b(fs, hosts, &daemons);
}

fn have_oracles() -> bool {
    have("qemu-img") && have("qemu-io") && have("virsh")
}

#[test]
fn glusterfs_two_hosts_share_one_pool() {
    if !have_oracles() || !shared::have_glusterfs() {
        return;
    }
    in_private_namespace(|| {
        let cluster = shared::Gluster::start();
        let hosts = cluster.hosts();
        two_hosts_share_one_pool("GlusterFS", &hosts);
    });
}

#[test]
fn cephfs_two_hosts_share_one_pool_and_falloc_writes_what_the_cluster_counts() {
    if !have_oracles() || !shared::have_ceph() {
        return;
    }
    in_private_namespace(|| {
        let cluster = shared::Ceph::start();
        let hosts = cluster.hosts();
        falloc_on_cephfs_is_written_and_counted_by_the_cluster(&cluster, &hosts[0]);
        two_hosts_share_one_pool("CephFS", &hosts);
    });
}

// ---------------------------------------------------------------------------------------
// Preallocation that tells the truth
// ---------------------------------------------------------------------------------------

/// A raw `falloc` volume: its XML.
fn falloc_xml(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(
        &path,
        format!(
            "<volume><name>{name}</name><capacity unit='M'>{mib}</capacity><allocation unit='M'>{mib}</allocation><target><format type='raw'/></target></volume>"
        ),
    )
    .expect("volume XML");
    path
}

/// The `explain` line and the warning of the zero-fill fallback.
const FALLBACK_LINE: &str = "Fallback:";
const FALLBACK_WARNING: &str = "writing zeros instead";

/// On CephFS `fallocate` succeeds but reserves nothing: with `fallocate = auto` qpool writes
/// zeros instead (the same warning and `explain` line as without fallocate), and the data
/// pool's stored bytes (`ceph df`) grow by the reservation; `native` trusts fallocate.
fn falloc_on_cephfs_is_written_and_counted_by_the_cluster(cluster: &shared::Ceph, host: &Host<'_>) {
    std::fs::create_dir(host.mount.join("falloc")).expect("directory");
    let at = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(QPOOL);
        cmd.arg("--pool-dir")
            .arg(host.mount.join("falloc"))
            .args(args);
        for k in [
            "QPOOL_LOG",
            "RUST_LOG",
            "QPOOL_FALLOCATE",
            "QPOOL_NO_FALLOCATE",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied()).output().expect("qpool")
    };
    let scratch = tempfile::tempdir().expect("scratch");
    let xml = falloc_xml(scratch.path(), "z.img", 64);
    let explained = at(&["explain", xml.to_str().unwrap()], &[]);
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(text.contains(FALLBACK_LINE), "auto on CephFS: {text}");
    let native = at(
        &["explain", xml.to_str().unwrap()],
        &[("QPOOL_FALLOCATE", "native")],
    );
    let text = String::from_utf8_lossy(&native.stdout);
    assert!(!text.contains(FALLBACK_LINE), "native on CephFS: {text}");

    let before = cluster.data_pool_stored();
    let out = at(&["vol-create", xml.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(FALLBACK_WARNING), "the warning: {stderr}");
    wait_for("ceph df to count the zeros qpool wrote", || {
        cluster.data_pool_stored() >= before + 64 * MIB
    });
}

#[test]
fn falloc_on_a_filesystem_without_fallocate_writes_zeros_the_filesystem_counts() {
    if !have("qemu-img") || !shared::have_fusepy() {
        return;
    }
    in_private_namespace(|| {
        let fs = shared::NoFallocateFs::start();
        let pool = fs.mount().join("pool");
        std::fs::create_dir(&pool).expect("pool directory");
        let host_less = |args: &[&str]| {
            let mut cmd = Command::new(QPOOL);
            cmd.arg("--pool-dir").arg(&pool).args(args);
            for k in [
                "QPOOL_LOG",
                "RUST_LOG",
                "QPOOL_FALLOCATE",
                "QPOOL_NO_FALLOCATE",
            ] {
                cmd.env_remove(k);
            }
            cmd.output().expect("qpool")
        };
        let scratch = tempfile::tempdir().expect("scratch");
        let xml = falloc_xml(scratch.path(), "f.img", 32);
        let explained = host_less(&["explain", xml.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&explained.stdout);
        assert!(text.contains(FALLBACK_LINE), "{text}");
        let out = host_less(&["vol-create", xml.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains(FALLBACK_WARNING), "{stderr}");
        let (allocated, size) = alloc_and_size(&fs.backing().join("pool/f.img"));
        assert_eq!(size, 32 * MIB);
        assert!(
            allocated >= 32 * MIB,
            "the backing file holds the zeros: {allocated}"
        );

        let out = host_less(&[
            "vol-create-as",
            "q.qcow2",
            "32M",
            "--allocation",
            "32M",
            "--format",
            "qcow2",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_check_clean(&pool.join("q.qcow2"));
        let (allocated, _) = alloc_and_size(&fs.backing().join("pool/q.qcow2"));
        assert!(allocated >= 32 * MIB, "falloc qcow2 written: {allocated}");
    });
}

/// On one host: a volume qemu-io holds cannot be deleted (CLI, or libvirt's code 55 through
/// qpoold) until forced.
#[test]
fn a_volume_qemu_holds_is_not_deleted_on_the_same_host_unless_forced() {
    if !have("qemu-io") || !have("virsh") {
        return;
    }
    let d = Daemon::start();
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "vm.qcow2",
        "64M",
        "--format",
        "qcow2",
    ]);
    let vol = d.vol("vm.qcow2");
    let qemu = QemuHolds::start(&vol);
    let out = Command::new(QPOOL)
        .arg("--pool-dir")
        .arg(d.pool_dir())
        .args(["vol-delete", "vm.qcow2"])
        .env_remove("QPOOL_LOG")
        .output()
        .expect("qpool");
    assert_refused(&out, &["vm.qcow2", "is in use"], "qpool vol-delete");
    virt::error::clear_error_callback();
    let mut conn = Connect::open(Some(&d.uri())).expect("connect");
    let pool = StoragePool::lookup_by_name(&conn, "default").expect("pool");
    let v = StorageVol::lookup_by_name(&pool, "vm.qcow2").expect("volume");
    expect_code(v.delete(0), VIR_ERR_OPERATION_INVALID, "virt delete");
    let (status, _, err) = d.virsh(&["vol-delete", "--pool", "default", "vm.qcow2"]);
    assert_ne!(status, 0);
    assert!(err.contains("is in use"), "{err}");
    assert!(vol.exists());
    v.delete(QPOOL_FORCE).expect("forced delete");
    assert!(!vol.exists());
    let _ = conn.close();
    drop(qemu);
}
