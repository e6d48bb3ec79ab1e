//! A private mount namespace for tests that run libvirt's own daemons and clients, which use
//! fixed paths (`/run/libvirt`, `/var/lib/libvirt`, `/etc/libvirt`, the `libvirt-qemu` user):
//! the machine, and other tests running at the same time, see none of it.
//!
//! [`in_private_mounts`] runs a closure in a thread of its own that leaves the process's
//! mount namespace (`unshare(CLONE_NEWNS)` affects only the calling thread, and every
//! process it starts) and mounts:
//!
//! - a tmpfs on `/run`;
//! - an overlay on `/var` and on `/etc`, whose writable layer lives in that tmpfs: what the
//!   daemons write there (and the `libvirt-qemu` user, see [`ensure_libvirt_qemu_user`])
//!   vanishes with the namespace, and everything else of the machine stays visible.
//!
//! Needs root; [`available`] says whether this machine allows it.

use std::path::Path;
use std::process::Command;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use super::in_ci;

/// Where the overlays keep their writable layers (inside the private /run tmpfs).
const LAYERS: &str = "/run/.qpool-test-layers";

/// Whether private mount namespaces work here (root, and mounts allowed). In CI their
/// absence fails the test; elsewhere the caller skips.
pub fn available() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Command::new("unshare")
            .args(["-m", "--propagation", "private", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(!in_ci(), "root and mount namespaces are required in CI");
        eprintln!("SKIPPED: no private mount namespace here (needs root)");
    }
    ok
}

/// Runs `f` in a new thread with a private mount namespace set up as the module says, and
/// returns its result; a panic in `f` fails the caller.
pub fn in_private_mounts<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let worker = std::thread::Builder::new()
        .name("private-mounts".into())
        .spawn(move || {
            enter();
            f()
        })
        .expect("start the namespace thread");
    match worker.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn enter() {
    unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    // Nothing mounted from here on may reach the machine's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755"),
    )
    .expect("tmpfs on /run");
    for dir in ["/var", "/etc"] {
        overlay(Path::new(dir));
    }
}

/// An overlay on `dir` whose writes go to the private /run.
fn overlay(dir: &Path) {
    let name = dir.file_name().expect("directory name").to_string_lossy();
    let upper = Path::new(LAYERS).join(format!("{name}/upper"));
    let work = Path::new(LAYERS).join(format!("{name}/work"));
    std::fs::create_dir_all(&upper).expect("overlay upper directory");
    std::fs::create_dir_all(&work).expect("overlay work directory");
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        dir,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .unwrap_or_else(|e| panic!("overlay on {}: {e}", dir.display()));
}

/// Creates the `libvirt-qemu` user and group that libvirt's QEMU driver runs guests as (Debian's
/// libvirt-daemon-system would), unless they exist. Call it inside [`in_private_mounts`]: the
/// accounts go to the private `/etc`.
pub fn ensure_libvirt_qemu_user() {
    let exists = |db: &str| {
        Command::new("getent")
            .args([db, "libvirt-qemu"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !exists("group") {
        let s = Command::new("groupadd")
            .args(["-r", "libvirt-qemu"])
            .status()
            .expect("groupadd");
        assert!(s.success(), "groupadd libvirt-qemu: {s}");
    }
    if !exists("passwd") {
        let s = Command::new("useradd")
            .args(["-r", "-M", "-g", "libvirt-qemu", "libvirt-qemu"])
            .status()
            .expect("useradd");
        assert!(s.success(), "useradd libvirt-qemu: {s}");
    }
}
