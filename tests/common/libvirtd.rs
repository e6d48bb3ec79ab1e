//! A real monolithic libvirtd with its qemu and storage drivers, and its secret driver where
//! installed (libvirtd-peer.md), for the libvirt bridge's and qpoold's `secrets_uri` tests: `qemu:///system` on a private socket. Its writes stay out of the
//! host: a private mount namespace with a tmpfs on /run, its own /etc/libvirt, and an
//! overlay on /var (the qemu driver makes /var/lib/libvirt/qemu, /var/cache/libvirt, …).
//! Waited for by polling `connect()`, stopped with SIGTERM on drop.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::daemon::run_virsh;
use super::in_ci;

const LIBVIRTD: &str = "/usr/sbin/libvirtd";
const DRIVERS: &str = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver";
/// How long libvirtd may take to listen, or to exit on SIGTERM.
const DEADLINE: Duration = Duration::from_secs(60);

/// Whether libvirtd with both drivers can run here: root, the drivers, `unshare`, and the
/// `libvirt-qemu` user and group that the qemu driver needs (scripts/test creates them).
/// Missing pieces fail under CI and skip the test loudly elsewhere.
pub fn available() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for driver in ["libvirt_driver_qemu.so", "libvirt_driver_storage.so"] {
        if !Path::new(DRIVERS).join(driver).exists() {
            missing.push(format!("{DRIVERS}/{driver}"));
        }
    }
    if !Path::new(LIBVIRTD).exists() {
        missing.push(LIBVIRTD.to_string());
    }
    let user = Command::new("getent")
        .args(["passwd", "libvirt-qemu"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !user {
        missing.push("the libvirt-qemu user (scripts/test creates it)".to_string());
    }
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "the libvirtd tests need {} in CI",
            missing.join(", ")
        );
        eprintln!(
            "SKIPPED: no libvirtd here (missing: {}); this test fails under CI=true",
            missing.join(", ")
        );
        return false;
    }
    true
}

/// A libvirtd answering `qemu:///system` on a private socket.
pub struct Libvirtd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `qemu+unix:///system?socket=…`.
    pub uri: String,
}

impl Libvirtd {
    /// Starts libvirtd and waits until its socket accepts connections.
    pub fn start() -> Libvirtd {
        // Under /tmp: the socket path must fit sun_path.
        let dir = tempfile::Builder::new()
            .prefix("qpool-libvirtd-")
            .tempdir_in("/tmp")
            .expect("libvirtd directory");
        let d = dir.path();
        for sub in ["run", "etc", "drivers", "var-upper", "var-work"] {
            std::fs::create_dir(d.join(sub)).expect("libvirtd subdirectory");
        }
        // The secret driver too where it is installed (qpoold's secrets_uri tests use it).
        for driver in [
            "libvirt_driver_qemu.so",
            "libvirt_driver_storage.so",
            "libvirt_driver_secret.so",
        ]
        .into_iter()
        .filter(|d| Path::new(DRIVERS).join(d).exists())
        {
            std::os::unix::fs::symlink(
                Path::new(DRIVERS).join(driver),
                d.join("drivers").join(driver),
            )
            .expect("driver link");
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
        let script = format!(
            "mount -t tmpfs tmpfs /run && mount --bind {etc} /etc/libvirt && mount -t overlay overlay -o lowerdir=/var,upperdir={upper},workdir={work} /var && exec env LIBVIRT_DRIVER_DIR={drivers} {LIBVIRTD} -f {conf} -p {run}/libvirtd.pid",
            etc = d.join("etc").display(),
            upper = d.join("var-upper").display(),
            work = d.join("var-work").display(),
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
        let uri = format!("qemu+unix:///system?socket={}", socket.display());
        let mut l = Libvirtd {
            child: Some(child),
            dir,
            uri,
        };
        let start = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            if let Some(status) = l.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("libvirtd exited during start-up ({status}):\n{}", l.log());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "libvirtd did not listen within {DEADLINE:?}:\n{}",
                l.log()
            );
            std::thread::yield_now();
        }
        l
    }

    /// Whether this libvirtd has the secret driver.
    pub fn has_secrets() -> bool {
        Path::new(DRIVERS).join("libvirt_driver_secret.so").exists()
    }

    /// Runs virsh on this libvirtd: (exit status, stdout, stderr).
    pub fn virsh(&self, args: &[&str]) -> (i32, String, String) {
        run_virsh(&self.uri, args)
    }

    /// Runs virsh and asserts success; returns stdout.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        let (status, out, err) = self.virsh(args);
        assert!(
            status == 0 && err.is_empty(),
            "libvirtd: virsh {args:?} exited {status}\nstdout: {out}\nstderr: {err}\nlog:\n{}",
            self.log()
        );
        out
    }

    /// libvirtd's output and log.
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
