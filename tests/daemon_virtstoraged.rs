//! qpoold in place of libvirt's storage daemon (virtstoraged), on hosts with libvirt's
//! modular daemons (shared/docs/modular-libvirt.md), each test in a private mount namespace
//! (tests/common/namespace.rs: tmpfs on /run, overlays on /var and /etc) so that libvirt's
//! fixed paths and the `libvirt-qemu` user stay off the machine:
//!
//! - Debian's libvirt client resolves `storage:///system` by itself to qpoold on
//!   `/run/libvirt/virtstoraged-sock` (and `-sock-ro` for `virsh -r`);
//! - a real virtqemud, built from Debian's libvirt 9.0 source by `scripts/build-virtqemud`
//!   (cached under target/, so only the first run compiles), forwards the storage calls of
//!   `qemu:///system` to qpoold, `CONNECT_SET_IDENTITY` first: virsh's pool and volume
//!   commands, `pool-event`, read-only `virsh -r`, and virt-manager's `virtinst` creating a
//!   volume.
//!
//! Under CI=true a virtqemud that does not build fails these tests; elsewhere they skip.
//! The first test needs none of this: it sends `CONNECT_SET_IDENTITY` byte by byte.

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, RawConn, Xdr, run_virsh};
use common::namespace::{self, in_private_mounts};
use common::{assert_check_clean, have, in_ci};

/// libvirt's storage daemon socket, where qpoold listens instead.
const STORAGE_SOCKET: &str = "/run/libvirt/virtstoraged-sock";
/// virtqemud's socket.
const QEMU_SOCKET: &str = "/run/libvirt/virtqemud-sock";
/// How long a daemon may take to listen or to stop.
const DEADLINE: Duration = Duration::from_secs(30);
/// Debian's interpreter, which has python3-libvirt and virtinst.
const PYTHON: &str = "/usr/bin/python3";

/// Whether the tier can run here: root, mount namespaces, virsh.
fn available() -> bool {
    namespace::available() && have("virsh")
}

/// qpoold on libvirt's storage socket, with its autostarted `default` pool and an inactive
/// pool `spare`, and optionally a virtqemud; inside the caller's private mount namespace.
struct Modular {
    q: Daemon,
    virtqemud: Option<Child>,
    vq_log: PathBuf,
}

impl Modular {
    fn start(virtqemud: Option<&Path>) -> Modular {
        namespace::ensure_libvirt_qemu_user();
        let mut q = Daemon::unstarted(&[]);
        q.set_socket(Path::new(STORAGE_SOCKET));
        q.set_env("QPOOL_LOG", "debug");
        let spare = q.scratch().join("spare");
        std::fs::create_dir_all(q.pools.join("autostart")).unwrap();
        std::fs::create_dir(&spare).unwrap();
        for (name, target) in [("default", q.pool_dir()), ("spare", spare.as_path())] {
            std::fs::write(
                q.pools.join(format!("{name}.xml")),
                format!(
                    "<pool type='dir'>\n  <name>{name}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
                    target.display()
                ),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink("../default.xml", q.pools.join("autostart/default.xml"))
            .unwrap();
        q.spawn();
        let vq_log = q.scratch().join("virtqemud.log");
        let mut m = Modular {
            q,
            virtqemud: None,
            vq_log,
        };
        if let Some(build) = virtqemud {
            let log = std::fs::File::create(&m.vq_log).unwrap();
            let child = Command::new(build.join("src/virtqemud"))
                .env("LIBVIRT_DRIVER_DIR", build.join("src"))
                .env_remove("LIBVIRT_DEFAULT_URI")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start virtqemud");
            m.virtqemud = Some(child);
            m.wait_virtqemud();
        }
        m
    }

    fn wait_virtqemud(&mut self) {
        let start = Instant::now();
        while UnixStream::connect(QEMU_SOCKET).is_err() {
            if let Some(status) = self
                .virtqemud
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("virtqemud exited ({status}):\n{}", self.vq_log());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "virtqemud did not listen within {DEADLINE:?}:\n{}",
                self.vq_log()
            );
            std::thread::yield_now();
        }
    }

    fn vq_log(&self) -> String {
        std::fs::read_to_string(&self.vq_log).unwrap_or_default()
    }

    /// virsh on `uri` (with `-r` first in `args` for read-only): must succeed with an empty
    /// stderr; stdout.
    fn virsh_ok(&self, uri: &str, args: &[&str]) -> String {
        let (status, out, err) = run_virsh(uri, args);
        assert!(
            status == 0 && err.is_empty(),
            "virsh -c {uri} {args:?} exited {status}\nstdout: {out}\nstderr: {err}\nqpoold log:\n{}\nvirtqemud log:\n{}",
            self.q.log(),
            self.vq_log()
        );
        out
    }
}

impl Drop for Modular {
    fn drop(&mut self) {
        if let Some(mut child) = self.virtqemud.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let (tx, rx) = mpsc::channel();
            let waiter = std::thread::spawn(move || {
                let _ = tx.send(child.wait());
            });
            if rx.recv_timeout(DEADLINE).is_err() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = waiter.join();
        }
        if std::thread::panicking() {
            eprintln!("---- virtqemud log ----\n{}---- end ----", self.vq_log());
        }
    }
}

const CONNECT_SET_IDENTITY: i32 = 419;

/// `remote_connect_set_identity_args` with `params` as (field, type, value bytes), flags.
fn identity_args(params: &[(&str, i32, Xdr)], flags: u32) -> Vec<u8> {
    let mut x = Xdr::new().u32(u32::try_from(params.len()).unwrap());
    for (field, kind, value) in params {
        x = x.string(field).i32(*kind);
        x.0.extend_from_slice(&value.0);
    }
    x.u32(flags).done()
}

/// The six parameters virtqemud 9.0 sends (modular-libvirt.md), with virsh's pid 4242.
fn virtqemud_identity() -> Vec<(&'static str, i32, Xdr)> {
    vec![
        ("user-name", 7, Xdr::new().string("root")),
        ("unix-user-id", 4, Xdr::new().u64(0)),
        ("group-name", 7, Xdr::new().string("root")),
        ("unix-group-id", 4, Xdr::new().u64(0)),
        ("process-id", 3, Xdr::new().u64(4242)),
        ("process-time", 4, Xdr::new().u64(987_654)),
    ]
}

#[test]
fn set_identity_is_answered_on_both_sockets_and_checked_as_libvirt_does() {
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.set_env("QPOOL_LOG", "debug");
    d.spawn();
    for (socket, mut c) in [
        ("read-write", d.connect().open()),
        ("read-only", d.connect_ro().open()),
    ] {
        let reply = c.call_ok(
            CONNECT_SET_IDENTITY,
            &identity_args(&virtqemud_identity(), 0),
        );
        assert!(reply.is_empty(), "{socket}: void reply");
        // Storage calls go on after it.
        c.pool("default");
    }
    assert!(
        d.log().contains(
            ": identity user-name=\"root\" unix-user-id=0 group-name=\"root\" unix-group-id=0 process-id=4242 process-time=987654"
        ),
        "{}",
        d.log()
    );

    let mut c: RawConn = d.connect().open();
    let mut wrong_type = virtqemud_identity();
    wrong_type[1] = ("unix-user-id", 1, Xdr::new().i32(0));
    let mut unknown = virtqemud_identity();
    unknown.push(("shoe-size", 2, Xdr::new().u32(44)));
    let too_many: Vec<(&str, i32, Xdr)> = (0..21)
        .map(|_| ("user-name", 7, Xdr::new().string("x")))
        .collect();
    for (case, args, code, domain, message) in [
        (
            "wrong type",
            identity_args(&wrong_type, 0),
            8,
            0,
            "invalid argument: invalid type 'int' for parameter 'unix-user-id', expected 'ullong'",
        ),
        (
            "unknown field",
            identity_args(&unknown, 0),
            74,
            0,
            "argument unsupported: parameter 'shoe-size' not supported",
        ),
        (
            "21 parameters",
            identity_args(&too_many, 0),
            39,
            7,
            "Unable to decode message payload: length 21 exceeds the limit 20 at offset 0",
        ),
        (
            "flags",
            identity_args(&virtqemud_identity(), 1),
            8,
            18,
            "unsupported flags (0x1) in function virConnectSetIdentity",
        ),
    ] {
        let e = c.call_err(CONNECT_SET_IDENTITY, &args);
        assert_eq!(
            (e.code, e.domain, e.message.as_deref()),
            (code, domain, Some(message)),
            "{case}"
        );
    }
    // Before CONNECT_OPEN it is refused like any connection-level call.
    let mut fresh = d.connect();
    let e = fresh.call_err(CONNECT_SET_IDENTITY, &identity_args(&[], 0));
    assert_eq!(
        e.message.as_deref(),
        Some("internal error: hypervisor connection not open")
    );
    d.assert_alive();
}

/// Lines of `virsh pool-list --all` as (name, state, autostart).
fn pool_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn storage_system_uri_finds_qpoold_on_libvirts_storage_socket() {
    if !available() {
        return;
    }
    in_private_mounts(|| {
        let m = Modular::start(None);
        let uri = "storage:///system";
        let pools = m.virsh_ok(uri, &["pool-list", "--all"]);
        assert_eq!(
            pool_rows(&pools),
            [["default", "active", "yes"], ["spare", "inactive", "no"]]
        );
        m.virsh_ok(
            uri,
            &[
                "vol-create-as",
                "default",
                "a.qcow2",
                "16M",
                "--format",
                "qcow2",
            ],
        );
        let list = m.virsh_ok(uri, &["vol-list", "default", "--details"]);
        assert!(
            list.contains("a.qcow2") && list.contains("16.00 MiB"),
            "{list}"
        );
        let info = m.virsh_ok(
            uri,
            &["vol-info", "a.qcow2", "--pool", "default", "--bytes"],
        );
        assert!(info.contains("Capacity:       16777216 bytes"), "{info}");
        // -r takes libvirt's read-only storage socket, which is qpoold's read-only one.
        let ro = m.virsh_ok(uri, &["-r", "vol-list", "default"]);
        assert!(ro.contains("a.qcow2"), "{ro}");
        let (status, _, err) =
            run_virsh(uri, &["-r", "vol-delete", "a.qcow2", "--pool", "default"]);
        assert_eq!(status, 1);
        assert!(err.contains("read only access prevents"), "{err}");
        m.virsh_ok(uri, &["vol-delete", "a.qcow2", "--pool", "default"]);
        assert!(!m.q.vol("a.qcow2").exists());
        assert!(
            m.q.log().contains("opened on the read-only socket"),
            "{}",
            m.q.log()
        );
    });
}

#[test]
fn virtqemud_forwards_pool_and_volume_commands_of_qemu_system_to_qpoold() {
    if !available() {
        return;
    }
    let Some(build) = namespace::modular_build() else {
        return;
    };
    in_private_mounts(move || {
        let m = Modular::start(Some(&build));
        let uri = "qemu:///system";
        let pools = m.virsh_ok(uri, &["pool-list", "--all"]);
        assert_eq!(
            pool_rows(&pools),
            [["default", "active", "yes"], ["spare", "inactive", "no"]]
        );
        m.virsh_ok(uri, &["pool-start", "spare"]);
        m.virsh_ok(
            uri,
            &[
                "vol-create-as",
                "spare",
                "v.qcow2",
                "32M",
                "--format",
                "qcow2",
            ],
        );
        let path = m.q.scratch().join("spare/v.qcow2");
        assert_check_clean(&path);
        let list = m.virsh_ok(uri, &["vol-list", "spare", "--details"]);
        let row = list
            .lines()
            .find(|l| l.contains("v.qcow2"))
            .unwrap_or_else(|| panic!("vol-list --details: {list}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cols[..5],
            ["v.qcow2", path.to_str().unwrap(), "file", "32.00", "MiB"],
            "{list}"
        );
        let info = m.virsh_ok(uri, &["vol-info", "v.qcow2", "--pool", "spare", "--bytes"]);
        assert!(
            info.contains("Name:           v.qcow2")
                && info.contains("Capacity:       33554432 bytes"),
            "{info}"
        );
        let xml = m.virsh_ok(uri, &["vol-dumpxml", "v.qcow2", "--pool", "spare"]);
        assert!(
            xml.contains("<format type='qcow2'/>")
                && xml.contains(&format!("<path>{}</path>", path.display())),
            "{xml}"
        );
        m.virsh_ok(uri, &["vol-delete", "v.qcow2", "--pool", "spare"]);
        assert!(!path.exists());
        m.virsh_ok(uri, &["pool-destroy", "spare"]);

        // virtqemud named each of its clients to qpoold before forwarding their calls.
        let log = m.q.log();
        assert!(
            log.contains("CONNECT_SET_IDENTITY (419) serial ")
                && log.contains(": identity user-name=\"root\" unix-user-id=0"),
            "{log}"
        );
        assert!(!log.contains("unknown procedure"), "{log}");
    });
}

#[test]
fn virtqemud_relays_qpoolds_pool_events() {
    if !available() {
        return;
    }
    let Some(build) = namespace::modular_build() else {
        return;
    };
    in_private_mounts(move || {
        let m = Modular::start(Some(&build));
        let mut watcher = Command::new("virsh")
            .args([
                "-c",
                "qemu:///system",
                "pool-event",
                "--event",
                "refresh",
                "--pool",
                "default",
                "--timeout",
                "20",
            ])
            .env_remove("LIBVIRT_DEFAULT_URI")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = watcher.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        // Refresh until the watcher (registered at some point after it started) prints the
        // event; without --loop it then exits.
        let start = Instant::now();
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|l: &String| l == "event 'refresh' for storage pool default")
        {
            m.virsh_ok("qemu:///system", &["pool-refresh", "default"]);
            while let Ok(line) = rx.try_recv() {
                seen.push(line);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no refresh event through virtqemud: {seen:?}\nqpoold log:\n{}",
                m.q.log()
            );
        }
        let out = watcher.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            m.q.log()
                .contains("CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY (368) serial "),
            "{}",
            m.q.log()
        );
    });
}

#[test]
fn read_only_virsh_through_virtqemud_lists_and_cannot_change() {
    if !available() {
        return;
    }
    let Some(build) = namespace::modular_build() else {
        return;
    };
    in_private_mounts(move || {
        let m = Modular::start(Some(&build));
        let uri = "qemu:///system";
        m.virsh_ok(
            uri,
            &["vol-create-as", "default", "r.img", "1M", "--format", "raw"],
        );
        let pools = m.virsh_ok(uri, &["-r", "pool-list", "--all"]);
        assert_eq!(
            pool_rows(&pools),
            [["default", "active", "yes"], ["spare", "inactive", "no"]]
        );
        let vols = m.virsh_ok(uri, &["-r", "vol-list", "default"]);
        assert!(vols.contains("r.img"), "{vols}");
        let info = m.virsh_ok(uri, &["-r", "vol-info", "r.img", "--pool", "default"]);
        assert!(info.contains("Capacity:       1.00 MiB"), "{info}");
        let (status, _, err) = run_virsh(uri, &["-r", "vol-delete", "r.img", "--pool", "default"]);
        assert_eq!(status, 1, "{err}");
        assert!(err.contains("read only access prevents"), "{err}");
        assert!(m.q.vol("r.img").exists());
        // virtqemud's read-only clients reach qpoold's read-only socket.
        assert!(
            m.q.log().contains("opened on the read-only socket"),
            "{}",
            m.q.log()
        );
    });
}

#[test]
fn virtinst_creates_a_volume_through_qemu_system() {
    if !available() || !have("qemu-img") {
        return;
    }
    let importable = Command::new(PYTHON)
        .args([
            "-c",
            "import sys; sys.path.insert(0, '/usr/share/virt-manager'); import libvirt, virtinst",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        assert!(!in_ci(), "virtinst and python3-libvirt are required in CI");
        eprintln!("SKIPPED: virtinst / python3-libvirt not importable by {PYTHON}");
        return;
    }
    let Some(build) = namespace::modular_build() else {
        return;
    };
    in_private_mounts(move || {
        let m = Modular::start(Some(&build));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/virtinst_volume.py");
        let out = Command::new(PYTHON)
            .arg(script)
            .args([
                "create",
                "qemu:///system",
                "default",
                "vm-disk.qcow2",
                &(64u64 << 20).to_string(),
                "0",
                "qcow2",
            ])
            .env_remove("LIBVIRT_DEFAULT_URI")
            .env("LC_ALL", "C")
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "virtinst through qemu:///system failed\nstdout: {stdout}\nstderr: {}\nqpoold log:\n{}\nvirtqemud log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            m.q.log(),
            m.vq_log()
        );
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON from virtinst");
        let path = m.q.vol("vm-disk.qcow2");
        assert_eq!(v["name"], "vm-disk.qcow2");
        assert_eq!(v["path"], path.display().to_string());
        assert_eq!(v["capacity"], 64u64 << 20);
        assert!(v["meter"]["ended"].as_bool().unwrap_or(false), "{v}");
        assert_check_clean(&path);
        assert_eq!(common::qemu_info(&path)["virtual-size"], 64u64 << 20);
    });
}
