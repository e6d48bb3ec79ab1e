//! What the benches share: a qpoold and a libvirtd peer (storage driver only, as
//! libvirtd-peer.md starts it) each serving a pool named `default`, and the statistics.

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::storage_pool::StoragePool;

/// The qpoold under test.
pub const QPOOLD: &str = env!("CARGO_BIN_EXE_qpoold");
/// Where benches work by default.
pub const DEFAULT_BASE: &str = env!("CARGO_TARGET_TMPDIR");
const LIBVIRTD: &str = "/usr/sbin/libvirtd";
const STORAGE_DRIVER: &str =
    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_storage.so";
const START_DEADLINE: Duration = Duration::from_secs(30);

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `connect()` until `socket` answers, `child` dies, or the deadline.
pub fn wait_for_socket(socket: &Path, child: &mut Child, what: &str, log: &dyn Fn() -> String) {
    let start = Instant::now();
    while UnixStream::connect(socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during start-up ({status}):\n{}", log());
        }
        assert!(
            start.elapsed() < START_DEADLINE,
            "{what} did not listen on {} within {START_DEADLINE:?}:\n{}",
            socket.display(),
            log()
        );
        std::thread::yield_now();
    }
}

/// Stops a daemon with SIGTERM, then SIGKILL if it does not exit in time.
pub fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < START_DEADLINE {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A running daemon (qpoold or libvirtd) with a pool named `default`.
pub struct Daemon {
    /// Which daemon.
    pub name: &'static str,
    /// The process.
    pub child: Child,
    /// The URI clients use.
    pub uri: String,
    /// Where the pool lives.
    pub pool_dir: PathBuf,
    _sockets: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

pub fn start_qpoold(work: &Path) -> Daemon {
    // Sockets under /tmp: sun_path is short.
    let sockets = tempfile::Builder::new()
        .prefix("qpool-rpc-bench-")
        .tempdir_in("/tmp")
        .expect("socket directory");
    let dir = work.join("qpoold");
    let pool_dir = dir.join("pool");
    std::fs::create_dir_all(dir.join("pools")).expect("qpoold directories");
    std::fs::write(dir.join("qpoold.conf"), "").expect("qpoold.conf");
    let socket = sockets.path().join("qpoold-sock");
    let log = dir.join("qpoold.log");
    let mut child = Command::new(QPOOLD)
        .arg("--socket")
        .arg(&socket)
        .arg("--pools")
        .arg(dir.join("pools"))
        .arg("--default-pool-dir")
        .arg(&pool_dir)
        .arg("--config")
        .arg(dir.join("qpoold.conf"))
        .env_remove("RUST_LOG")
        .env("QPOOL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("qpoold.log"))
        .spawn()
        .expect("start qpoold");
    wait_for_socket(&socket, &mut child, "qpoold", &|| {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
    Daemon {
        name: "qpoold",
        child,
        uri: format!("storage+unix:///system?socket={}", socket.display()),
        pool_dir,
        _sockets: sockets,
    }
}

/// Whether a peer libvirtd can run here (root, libvirtd and its storage driver, unshare).
pub fn libvirtd_available() -> bool {
    nix::unistd::geteuid().is_root()
        && Path::new(LIBVIRTD).exists()
        && Path::new(STORAGE_DRIVER).exists()
        && Command::new("unshare")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// libvirtd with only its storage driver, as libvirtd-peer.md starts it.
pub fn start_libvirtd(work: &Path) -> Daemon {
    let sockets = tempfile::Builder::new()
        .prefix("qpool-rpc-bench-lv-")
        .tempdir_in("/tmp")
        .expect("libvirtd directory");
    let d = sockets.path();
    for sub in ["run", "etc", "drivers"] {
        std::fs::create_dir(d.join(sub)).expect("libvirtd subdirectory");
    }
    std::os::unix::fs::symlink(STORAGE_DRIVER, d.join("drivers/libvirt_driver_storage.so"))
        .expect("driver link");
    let client_conf = std::fs::read_to_string("/etc/libvirt/libvirt.conf").unwrap_or_default();
    std::fs::write(d.join("etc/libvirt.conf"), client_conf).expect("libvirt.conf");
    let log = d.join("libvirtd.log");
    std::fs::write(
        d.join("libvirtd.conf"),
        format!(
            "unix_sock_dir = \"{run}\"\nunix_sock_group = \"root\"\nunix_sock_rw_perms = \"0770\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nlog_outputs = \"3:file:{log}\"\n",
            run = d.join("run").display(),
            log = log.display()
        ),
    )
    .expect("libvirtd.conf");
    let script = format!(
        "mount -t tmpfs tmpfs /run && mount --bind {etc} /etc/libvirt && exec env LIBVIRT_DRIVER_DIR={drivers} {LIBVIRTD} -f {conf} -p {run}/libvirtd.pid",
        etc = d.join("etc").display(),
        drivers = d.join("drivers").display(),
        conf = d.join("libvirtd.conf").display(),
        run = d.join("run").display(),
    );
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start libvirtd");
    let socket = d.join("run/libvirt-sock");
    wait_for_socket(&socket, &mut child, "libvirtd", &|| {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
    let uri = format!("storage+unix:///system?socket={}", socket.display());
    let pool_dir = work.join("libvirt-pool");
    std::fs::create_dir_all(&pool_dir).expect("libvirt pool directory");
    let conn = Connect::open(Some(&uri)).expect("connect to libvirtd");
    let xml = format!(
        "<pool type='dir'><name>default</name><target><path>{}</path></target></pool>",
        pool_dir.display()
    );
    let pool = StoragePool::define_xml(&conn, &xml, 0).expect("define the pool");
    pool.create(0).expect("start the pool");
    close(conn);
    Daemon {
        name: "libvirtd 9.0",
        child,
        uri,
        pool_dir,
        _sockets: sockets,
    }
}

pub fn close(mut conn: Connect) {
    let _ = conn.close();
}

/// The median of some samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
