//! Shared test helpers: a temporary pool, the `qpool` binary, and wrappers around the
//! oracles we did not write (qemu-img, xmllint). Inputs and assertions stay in the tests.
//!
//! An oracle that is missing fails the test when `CI=true`, and skips it loudly otherwise.

#![allow(dead_code)]

pub mod crypt;
pub mod daemon;
pub mod namespace;
pub mod notify;
pub mod peer;
pub mod shared;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `qpool` binary under test.
pub const QPOOL: &str = env!("CARGO_BIN_EXE_qpool");

/// True when running in CI, where missing oracles are failures.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` can run. In CI a missing tool panics; elsewhere the caller skips.
pub fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!in_ci(), "{tool} is required in CI but was not found");
        eprintln!("SKIPPED: {tool} not found (this test would fail under CI=true)");
    }
    found
}

/// A temporary pool directory on the same filesystem as the build (fallocate works there),
/// inside a scratch directory that also holds the test's XML files. Both go on drop.
pub struct TempPool {
    root: tempfile::TempDir,
    pool: PathBuf,
}

impl TempPool {
    /// Creates an empty pool directory.
    pub fn new() -> TempPool {
        let base = std::env::var_os("QPOOL_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        TempPool::new_in(&base)
    }

    /// Creates an empty pool directory under `base` (a small filesystem, say).
    pub fn new_in(base: &Path) -> TempPool {
        let root = tempfile::Builder::new()
            .prefix("qpool-test-")
            .tempdir_in(base)
            .expect("temporary directory");
        let pool = root.path().join("pool");
        std::fs::create_dir(&pool).expect("pool directory");
        TempPool { root, pool }
    }

    /// The pool path.
    pub fn path(&self) -> &Path {
        &self.pool
    }

    /// The scratch directory beside the pool.
    pub fn scratch(&self) -> &Path {
        self.root.path()
    }

    /// Path of a volume (or any entry) in the pool.
    pub fn vol(&self, name: &str) -> PathBuf {
        self.pool.join(name)
    }

    /// Runs `qpool --pool-dir POOL ARGS…`.
    pub fn qpool(&self, args: &[&str]) -> Output {
        self.qpool_env(args, &[])
    }

    /// Runs qpool with extra environment variables.
    pub fn qpool_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(QPOOL);
        cmd.arg("--pool-dir").arg(self.path()).args(args);
        cmd.env_remove("QPOOL_LOG")
            .env_remove("RUST_LOG")
            .env_remove("QPOOL_POOL_DIR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run qpool")
    }

    /// Runs qpool and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.qpool(args);
        assert!(
            out.status.success(),
            "qpool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Writes a file (an XML document, say) in the scratch directory, outside the pool.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Every name in the pool directory, hidden ones included, sorted.
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .expect("read pool")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Runs a command and returns its output.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

/// `qemu-img info --output=json` as JSON.
pub fn qemu_info(path: &Path) -> serde_json::Value {
    let out = run(
        "qemu-img",
        &["info", "--output=json", path.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "qemu-img info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("qemu-img info json")
}

/// `qemu-img check --output=json`; panics unless the image has no errors and no leaks.
pub fn assert_check_clean(path: &Path) {
    let out = run(
        "qemu-img",
        &["check", "--output=json", path.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qemu-img check {} exited {:?}: {text} {}",
        path.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
    for key in ["corruptions", "leaks", "check-errors"] {
        assert_eq!(
            v.get(key).and_then(|x| x.as_u64()).unwrap_or(0),
            0,
            "{key} in {text}"
        );
    }
}

/// `qemu-img compare [-s] a b`: true when identical.
pub fn qemu_compare(a: &Path, b: &Path, strict: bool) -> bool {
    let mut args = vec!["compare"];
    if strict {
        args.push("-s");
    }
    args.push(a.to_str().unwrap());
    args.push(b.to_str().unwrap());
    let out = run("qemu-img", &args);
    out.status.code() == Some(0)
}

/// Prefix of qpool's temporary files in a pool directory (never a volume name).
pub const TEMP_PREFIX: &str = ".qpool-tmp-";

/// `qemu-io -f FORMAT -c C1 -c C2 … PATH`: writes or reads through qemu's own block layer;
/// panics with qemu-io's output when it fails.
pub fn qemu_io(path: &Path, format: &str, commands: &[&str]) {
    let mut args = vec!["-f", format];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    args.push(path.to_str().unwrap());
    let out = run("qemu-io", &args);
    assert!(
        out.status.success(),
        "qemu-io {path:?} {commands:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How far a file's allocation may differ from a reference file's: filesystems place the
/// blocks of tiny files and of extents' ends differently, so a fixed 16 KiB (four blocks)
/// plus 1/256 of the reference.
pub fn allocation_slack(reference: u64) -> u64 {
    16 * 1024 + reference / 256
}

/// Asserts `actual` (`st_blocks * 512`) is within [`allocation_slack`] of `reference`.
pub fn assert_allocation_near(actual: u64, reference: u64, what: &str, label: &str) {
    let slack = allocation_slack(reference);
    assert!(
        actual.abs_diff(reference) <= slack,
        "{label}: st_blocks*512 = {actual}, {what} = {reference} (differ by {}, more than {slack})",
        actual.abs_diff(reference)
    );
}

/// `qemu-img create -f qcow2 -o OPTIONS PATH SIZE`.
pub fn qemu_create(path: &Path, options: &str, size: u64) {
    let size = size.to_string();
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            options,
            path.to_str().unwrap(),
            &size,
        ],
    );
    assert!(
        out.status.success(),
        "qemu-img create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `xmllint --noout --relaxng SCHEMA FILE`; returns (success, stderr).
pub fn xmllint_relaxng(schema: &Path, file: &Path) -> (bool, String) {
    let out = run(
        "xmllint",
        &[
            "--noout",
            "--relaxng",
            schema.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `st_blocks * 512` and `st_size` of a file.
pub fn alloc_and_size(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).expect("stat");
    (m.blocks() * 512, m.len())
}

/// libvirt's volume schema, installed by libvirt0.
pub const LIBVIRT_STORAGEVOL_RNG: &str = "/usr/share/libvirt/schemas/storagevol.rng";
/// libvirt's pool schema.
pub const LIBVIRT_STORAGEPOOL_RNG: &str = "/usr/share/libvirt/schemas/storagepool.rng";

/// Whether libvirt's schemas are installed (CI rule as for tools).
pub fn have_libvirt_schemas() -> bool {
    let found = Path::new(LIBVIRT_STORAGEVOL_RNG).exists();
    if !found {
        assert!(!in_ci(), "{LIBVIRT_STORAGEVOL_RNG} is required in CI");
        eprintln!("SKIPPED: libvirt schemas not installed");
    }
    found
}

/// SHA-256 of a file's bytes, from `sha256sum` (holes read as zeros).
pub fn sha256(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().unwrap()]);
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A tmpfs of a given size mounted on a fresh directory for one test (root only), lazily
/// unmounted when dropped: a small filesystem to run out of space on.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes; `None` (or a panic under CI) when not root.
    pub fn mount(size: u64) -> Option<Tmpfs> {
        if !nix_is_root() {
            assert!(!in_ci(), "mounting a tmpfs needs root in CI");
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("qpool-tmpfs-")
            .tempdir_in("/tmp")
            .expect("mount point");
        let out = run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
                dir.path().to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Tmpfs(dir))
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.0.path())
            .status();
    }
}

/// Whether the tests run as root.
pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
    })
}
