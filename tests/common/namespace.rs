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
//! Needs root; [`available`] says whether this machine allows it. [`modular_build`] gives
//! libvirt's modular daemons that Debian 12 does not ship (virtqemud, virtsecretd), built from
//! Debian's libvirt 9.0 source.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

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

/// The build directory of libvirt's modular daemons (`scripts/build-virtqemud`, run once per
/// test process and cached under target/): `src/virtqemud`, `src/virtsecretd`, and their
/// drivers in `src` (`LIBVIRT_DRIVER_DIR`). A failed build fails the test under CI=true and
/// skips it elsewhere.
pub fn modular_build() -> Option<PathBuf> {
    static BUILD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILD.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::create_dir_all(root.join("target")).map_err(|e| e.to_string())?;
        let log = root.join("target/build-virtqemud.log");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(root.join("scripts/build-virtqemud"))
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .output()
            .map_err(|e| format!("cannot run scripts/build-virtqemud: {e}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            return Err(format!(
                "scripts/build-virtqemud failed ({}); last lines of {}:\n{}",
                out.status,
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        eprintln!(
            "virtqemud and virtsecretd ready in {:.1} s (see {})",
            started.elapsed().as_secs_f64(),
            log.display()
        );
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    match built {
        Ok(dir) => Some(dir.clone()),
        Err(e) => {
            assert!(
                !in_ci(),
                "libvirt's modular daemons are required in CI: {e}"
            );
            eprintln!("SKIPPED: {e}");
            None
        }
    }
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

/// Leaves the process's mount namespace (this thread, and every process it starts): `/`
/// private, so that nothing mounted from here on reaches the machine, and a tmpfs on `/run`.
pub fn private_mounts_with_own_run() {
    unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
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
}

fn enter() {
    private_mounts_with_own_run();
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
