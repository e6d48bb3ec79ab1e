//! A real libvirtd (shared/docs/libvirtd-peer.md), the one harness every test that runs
//! libvirtd uses: libvirtd 9.0 on a private socket, its /etc/libvirt and /run kept out of the
//! host by a private mount namespace, with only its storage driver (the peer qpoold's answers
//! are compared with), or with its qemu driver too (`qemu:///system`, for the libvirt bridge;
//! /var is then an overlay, since that driver makes /var/lib/libvirt/qemu and more); and the
//! private filesystems the peer tests put pools on (a tmpfs, or an ext4 image on a loop
//! device), mounted for one test and unmounted after it.
//!
//! The peer needs root, libvirtd (`libvirt-daemon`, installed with `--no-install-recommends`
//! by scripts/test), `unshare` and qemu-img. Where one is missing, [`peer_available`] fails
//! the test under CI=true and skips it loudly elsewhere.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::daemon::run_virsh;
use super::{have, in_ci};

/// libvirt's monolithic daemon.
pub const LIBVIRTD: &str = "/usr/sbin/libvirtd";
/// Its storage driver, the only driver the peer loads.
pub const STORAGE_DRIVER: &str =
    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_storage.so";
/// Its qemu driver, which the bridge's libvirtd loads too.
const QEMU_DRIVER: &str =
    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so";
/// Its secret driver, loaded beside the qemu driver where it is installed (qpoold's
/// `secrets_uri` reads passphrases from it).
const SECRET_DRIVER: &str =
    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_secret.so";
/// How long libvirtd may take to listen, or to exit on SIGTERM.
const DEADLINE: Duration = Duration::from_secs(60);

/// Whether a peer libvirtd can run here: root, libvirtd and its storage driver, `unshare`,
/// and qemu-img (libvirtd runs it to create qcow2 volumes). Missing pieces fail under CI and
/// skip the test loudly elsewhere.
pub fn peer_available() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root");
    }
    if !Path::new(LIBVIRTD).exists() || !Path::new(STORAGE_DRIVER).exists() {
        missing.push("libvirtd with its storage driver (apt-get install --no-install-recommends libvirt-daemon)");
    }
    if !Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("unshare");
    }
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "the libvirtd peer tests need {} in CI",
            missing.join(", ")
        );
        eprintln!(
            "SKIPPED: no libvirtd peer here (missing: {}); this test fails under CI=true",
            missing.join(", ")
        );
        return false;
    }
    have("qemu-img")
}

/// Whether a libvirtd with its qemu driver too can run here: what [`peer_available`] needs,
/// the qemu driver, and the `libvirt-qemu` user and group that driver needs (scripts/test
/// creates them). Missing pieces fail under CI and skip the test loudly elsewhere.
pub fn qemu_driver_available() -> bool {
    if !peer_available() {
        return false;
    }
    let mut missing = Vec::new();
    if !Path::new(QEMU_DRIVER).exists() {
        missing.push(QEMU_DRIVER);
    }
    let user = Command::new("getent")
        .args(["passwd", "libvirt-qemu"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !user {
        missing.push("the libvirt-qemu user (scripts/test creates it)");
    }
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "the libvirtd tests need {} in CI",
            missing.join(", ")
        );
        eprintln!(
            "SKIPPED: no libvirtd with its qemu driver here (missing: {}); this test fails under CI=true",
            missing.join(", ")
        );
        return false;
    }
    true
}

/// A libvirtd on a private socket, its /etc/libvirt and /run kept out of the host by a
/// private mount namespace (libvirtd-peer.md). Mounts made before `start` (a private
/// filesystem for the pools) are visible to it. Stopped with SIGTERM on drop.
pub struct Libvirtd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `storage+unix:///system?socket=…` (or `qemu+unix:…` with the qemu driver) of its
    /// read-write socket.
    pub uri: String,
}

impl Libvirtd {
    /// Starts one with only its storage driver and waits until its socket accepts
    /// connections.
    pub fn start() -> Libvirtd {
        Self::launch(false)
    }

    /// Starts one with its qemu and storage drivers (`qemu:///system`, as the libvirt bridge
    /// meets it on a host) and its secret driver where installed, /var an overlay whose
    /// writes vanish with it.
    pub fn start_with_qemu() -> Libvirtd {
        Self::launch(true)
    }

    /// Whether [`Libvirtd::start_with_qemu`] has the secret driver.
    pub fn has_secrets() -> bool {
        Path::new(SECRET_DRIVER).exists()
    }

    fn launch(qemu: bool) -> Libvirtd {
        // Under /tmp: the socket path must fit sun_path.
        let dir = tempfile::Builder::new()
            .prefix("qpool-peer-")
            .tempdir_in("/tmp")
            .expect("libvirtd directory");
        let d = dir.path();
        for sub in ["run", "etc", "drivers", "var-upper", "var-work"] {
            std::fs::create_dir(d.join(sub)).expect("libvirtd subdirectory");
        }
        let drivers: &[&str] = if qemu {
            &[STORAGE_DRIVER, QEMU_DRIVER, SECRET_DRIVER]
        } else {
            &[STORAGE_DRIVER]
        };
        for driver in drivers.iter().filter(|d| Path::new(d).exists()) {
            let name = Path::new(driver).file_name().expect("driver file name");
            std::os::unix::fs::symlink(driver, d.join("drivers").join(name)).expect("driver link");
        }
        let client_conf = std::fs::read_to_string("/etc/libvirt/libvirt.conf").unwrap_or_default();
        std::fs::write(d.join("etc/libvirt.conf"), client_conf).expect("libvirt.conf");
        std::fs::write(
            d.join("libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{run}\"\nunix_sock_group = \"root\"\nunix_sock_rw_perms = \"0770\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nlog_outputs = \"3:file:{log}\"\n",
                run = d.join("run").display(),
                log = d.join("libvirtd.log").display()
            ),
        )
        .expect("libvirtd.conf");
        let var = if qemu {
            format!(
                "mount -t overlay overlay -o lowerdir=/var,upperdir={},workdir={} /var && ",
                d.join("var-upper").display(),
                d.join("var-work").display()
            )
        } else {
            String::new()
        };
        let script = format!(
            "mount -t tmpfs tmpfs /run && mount --bind {etc} /etc/libvirt && {var}exec env LIBVIRT_DRIVER_DIR={drivers} {LIBVIRTD} -f {conf} -p {run}/libvirtd.pid",
            etc = d.join("etc").display(),
            drivers = d.join("drivers").display(),
            conf = d.join("libvirtd.conf").display(),
            run = d.join("run").display(),
        );
        let out = std::fs::File::create(d.join("libvirtd.out")).expect("libvirtd.out");
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start libvirtd");
        let socket = d.join("run/libvirt-sock");
        let driver = if qemu { "qemu" } else { "storage" };
        let uri = format!("{driver}+unix:///system?socket={}", socket.display());
        let mut peer = Libvirtd {
            child: Some(child),
            dir,
            uri,
        };
        let start = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            if let Some(status) = peer
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "libvirtd exited during start-up ({status}):\n{}",
                    peer.log()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "libvirtd did not listen within {DEADLINE:?}:\n{}",
                peer.log()
            );
            std::thread::yield_now();
        }
        peer
    }

    /// libvirtd's process id (`unshare` and the shell exec it, so it is the child's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running libvirtd").id()
    }

    /// The file of libvirtd's system token (`/run/libvirt/common/system.token` in its private
    /// /run, reached from outside through `/proc/PID/root`, as root), once libvirtd has
    /// written it: it does so when it first sets up an identity, in its start-up thread, which
    /// may finish after the socket listens. libvirt writes 32 hex digits.
    pub fn system_token(&self) -> std::path::PathBuf {
        let path = Path::new("/proc")
            .join(self.pid().to_string())
            .join("root/run/libvirt/common/system.token");
        let start = Instant::now();
        while std::fs::metadata(&path).map_or(true, |m| m.len() < 32) {
            assert!(
                start.elapsed() < DEADLINE,
                "libvirtd wrote no system token in {} within {DEADLINE:?}:\n{}",
                path.display(),
                self.log()
            );
            std::thread::yield_now();
        }
        path
    }

    /// The read-only URI.
    pub fn uri_ro(&self) -> String {
        self.uri.replace("libvirt-sock", "libvirt-sock-ro")
    }

    /// Defines, starts and autostarts a `dir` pool (as qpoold's `default` pool is).
    pub fn pool(&self, name: &str, target: &Path) {
        self.virsh_ok(&[
            "pool-define-as",
            name,
            "dir",
            "--target",
            target.to_str().unwrap(),
        ]);
        self.virsh_ok(&["pool-start", name]);
        self.virsh_ok(&["pool-autostart", name]);
    }

    /// Runs `virsh -c URI ARGS…`: (exit status, stdout, stderr).
    pub fn virsh(&self, args: &[&str]) -> (i32, String, String) {
        run_virsh(&self.uri, args)
    }

    /// Runs virsh, asserts exit status 0 and an empty stderr, returns stdout.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        let (status, out, err) = self.virsh(args);
        assert!(
            status == 0 && err.is_empty(),
            "libvirtd: virsh {args:?} exited {status}\nstdout: {out}\nstderr: {err}\nlog:\n{}",
            self.log()
        );
        out
    }

    /// What libvirtd printed and logged.
    pub fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("libvirtd.out"), read("libvirtd.log"))
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait());
            child
        });
        if rx.recv_timeout(DEADLINE).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = waiter.join();
        if std::thread::panicking() {
            eprintln!("---- libvirtd log ----\n{}---- end ----", self.log());
        }
    }
}

/// A filesystem mounted for one test on a fresh directory under /tmp, lazily unmounted on
/// drop (its loop device, if any, goes with it).
pub struct Mount {
    dir: tempfile::TempDir,
    /// The ext4 image behind a loop mount, removed after the unmount.
    _image: Option<tempfile::NamedTempFile>,
}

impl Mount {
    /// A tmpfs of `size` bytes: sizes are exact (no extent-tree blocks in st_blocks) and
    /// nothing else writes there.
    pub fn tmpfs(size: u64) -> Mount {
        let dir = mount_point();
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
            dir.path().to_str().unwrap(),
        ]);
        Mount { dir, _image: None }
    }

    /// A fresh ext4 filesystem of `size` bytes on a loop device: a real disk filesystem
    /// (fallocate, FIEMAP, holes, no reflinks) that keeps 5 % of its blocks for root, so that
    /// statvfs's `f_bfree` and `f_bavail` differ.
    pub fn ext4(size: u64) -> Mount {
        let image = tempfile::Builder::new()
            .prefix("qpool-ext4-")
            .tempfile_in(std::env::temp_dir())
            .expect("ext4 image");
        image.as_file().set_len(size).expect("size the ext4 image");
        let out = super::run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                image.path().to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = mount_point();
        mount(&[
            "-o",
            "loop",
            image.path().to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ]);
        Mount {
            dir,
            _image: Some(image),
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn mount_point() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qpool-peer-fs-")
        .tempdir_in("/tmp")
        .expect("mount point")
}

fn mount(args: &[&str]) {
    let out = super::run("mount", args);
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .status();
    }
}
