//! The packages and what they ship: man pages (generated from the clap definitions by the
//! `qpool-manpages` example, plus qpoold.conf(5)) rendered by `man` without warnings, the
//! completions, the default qpoold.conf, the .deb (built by packaging/build-deb from the
//! binaries under test, checked by lintian, installed, verified, used, removed and purged)
//! and the RPM (its spec parsed by rpmspec, built by rpmbuild, listing the .deb's files).
//!
//! dpkg runs in a private mount namespace whose /etc, /usr and /var are overlays on the
//! machine's, with a tmpfs on /run: it installs and removes for real, the machine's own
//! package database and files never change, and what the package left behind is exactly what
//! the overlays' upper directories hold.
//!
//! Needs root, man, dpkg-deb, lintian and rpmbuild (scripts/test installs them); fails under
//! CI=true where they are missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::in_ci;

const TOP: &str = env!("CARGO_MANIFEST_DIR");

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_qpool"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The pages and completions `qpool-manpages` writes, once per test run.
fn generated() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let example = bin_dir().join("examples/qpool-manpages");
        assert!(
            example.exists(),
            "{} is missing: `cargo build --examples` builds it (scripts/test does)",
            example.display()
        );
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging-generated");
        let _ = std::fs::remove_dir_all(&dir);
        ok(
            Command::new(&example)
                .arg(&dir)
                .output()
                .expect("run qpool-manpages"),
            "qpool-manpages",
        );
        dir
    })
}

/// The .deb of the binaries under test, once per test run.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging-deb");
        let _ = std::fs::remove_dir_all(&out);
        let built = Command::new(Path::new(TOP).join("packaging/build-deb"))
            .arg("--bins")
            .arg(bin_dir())
            .arg("--gen")
            .arg(generated())
            .arg(&out)
            .output()
            .expect("run build-deb");
        PathBuf::from(ok(built, "packaging/build-deb").trim())
    })
}

/// Whether every tool is here (CI: must be).
fn tools(names: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(!in_ci(), "the packaging tests need root in CI");
        eprintln!("SKIPPED: not root");
        return false;
    }
    names.iter().all(|t| {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(!in_ci(), "{t} is required in CI but was not found");
            eprintln!("SKIPPED: {t} not found (this test would fail under CI=true)");
        }
        found
    })
}

#[test]
fn man_pages_render_without_warnings_and_name_every_verb() {
    if !tools(&["man"]) {
        return;
    }
    let generated_dir = generated();
    let pages = [
        generated_dir.join("man/qpool.1"),
        generated_dir.join("man/qpoold.8"),
        Path::new(TOP).join("packaging/man/qpoold.conf.5"),
    ];
    for page in &pages {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("run man");
        let rendered = ok(out.clone(), "man");
        assert_eq!(text(&out.stderr), "", "{}: warnings", page.display());
        assert!(rendered.contains("NAME"), "{}:\n{rendered}", page.display());
    }
    let qpool = ok(
        Command::new("man")
            .arg("-l")
            .arg(&pages[0])
            .env("MANWIDTH", "80")
            .output()
            .unwrap(),
        "man qpool.1",
    );
    let help = ok(
        Command::new(common::QPOOL).arg("--help").output().unwrap(),
        "qpool --help",
    );
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .collect();
    assert!(verbs.len() > 15, "{help}");
    for verb in verbs {
        assert!(
            qpool.contains(&format!("qpool {verb}")),
            "qpool(1) lacks {verb}"
        );
    }
}

#[test]
fn completions_are_valid_scripts_that_know_every_verb() {
    let generated_dir = generated();
    let bash = std::fs::read_to_string(generated_dir.join("completions/qpool")).unwrap();
    let zsh = std::fs::read_to_string(generated_dir.join("completions/_qpool")).unwrap();
    for verb in ["vol-create-as", "libvirt-sync", "pool-refresh"] {
        assert!(bash.contains(verb), "bash completion lacks {verb}");
        assert!(zsh.contains(verb), "zsh completion lacks {verb}");
    }
    assert!(zsh.starts_with("#compdef qpool"), "{}", &zsh[..40]);
    for file in ["qpool", "qpoold"] {
        ok(
            Command::new("bash")
                .arg("-n")
                .arg(generated_dir.join("completions").join(file))
                .output()
                .unwrap(),
            "bash -n",
        );
    }
}

#[test]
fn the_default_qpoold_conf_parses_with_and_without_its_comments() {
    let path = Path::new(TOP).join("packaging/qpoold.conf");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let config = qpool::daemon::config::parse(&path, &shipped).unwrap();
    assert_eq!(config, qpool::daemon::config::FileConfig::default());
    let settings: Vec<&str> = shipped
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .collect();
    assert_eq!(settings.len(), 11, "{settings:?}");
    let uncommented = qpool::daemon::config::parse(&path, &settings.join("\n")).unwrap();
    assert_eq!(uncommented.libvirt_uri.as_deref(), Some("qemu:///system"));
    assert_eq!(uncommented.timeout, Some(0));
    assert_eq!(
        uncommented.fallocate,
        Some(qpool::model::FallocateMode::Auto)
    );
    assert_eq!(
        uncommented.secrets_token.as_deref(),
        Some(Path::new("/run/libvirt/common/system.token"))
    );
}

/// A private mount namespace with overlays on /etc, /usr and /var (upper directories under
/// `dir`) and a tmpfs on /run; every `run` mounts the same uppers again, so state carries
/// over from one command to the next.
struct Overlay {
    dir: tempfile::TempDir,
}

impl Overlay {
    fn new() -> Overlay {
        let dir = tempfile::Builder::new()
            .prefix("qpool-dpkg-")
            .tempdir_in("/tmp")
            .unwrap();
        for t in ["etc", "usr", "var"] {
            std::fs::create_dir(dir.path().join(format!("{t}-upper"))).unwrap();
            std::fs::create_dir(dir.path().join(format!("{t}-work"))).unwrap();
        }
        Overlay { dir }
    }

    fn run(&self, script: &str) -> Output {
        let d = self.dir.path().display();
        let setup = format!(
            "set -e; for t in etc usr var; do mount -t overlay overlay -o lowerdir=/$t,upperdir={d}/$t-upper,workdir={d}/$t-work /$t; done; mount -t tmpfs tmpfs /run; exec sh -c \"$0\""
        );
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &setup, script])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("unshare")
    }

    /// Files and symbolic links the package changes left (relative to /), without dpkg's own
    /// bookkeeping and the man-db index its trigger updates.
    fn left(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in ["etc", "usr", "var"] {
            walk(
                &self.dir.path().join(format!("{t}-upper")),
                &format!("/{t}"),
                &mut out,
            );
        }
        out.retain(|p| {
            !p.starts_with("/var/lib/dpkg/")
                && p != "/var/log/dpkg.log"
                && !p.starts_with("/var/cache/man/")
        });
        out.sort();
        out
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            walk(&entry.path(), &path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_deb_passes_lintian_installs_works_and_removes_cleanly() {
    if !tools(&["dpkg-deb", "lintian", "unshare", "systemd-analyze"]) {
        return;
    }
    let deb = deb();
    let lintian = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .unwrap();
    let report = text(&lintian.stdout);
    eprintln!("lintian:\n{report}{}", text(&lintian.stderr));
    // Errors and warnings fail; what lintian reports besides is printed above.
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian errors or warnings:\n{report}"
    );

    let o = Overlay::new();
    ok(o.run(&format!("dpkg -i {}", deb.display())), "dpkg -i");
    let units: Vec<String> = [
        "qpoold.service",
        "qpoold.socket",
        "qpoold-ro.socket",
        "qpoold-virtstoraged.socket",
        "qpoold-virtstoraged-ro.socket",
    ]
    .iter()
    .map(|u| format!("/lib/systemd/system/{u}"))
    .collect();
    let verify = o.run(&format!("systemd-analyze verify {}", units.join(" ")));
    ok(verify.clone(), "systemd-analyze verify");
    assert_eq!(text(&verify.stderr), "", "systemd-analyze verify");
    let version = ok(o.run("qpool --version"), "qpool --version");
    assert_eq!(
        version.trim(),
        format!("qpool {}", env!("CARGO_PKG_VERSION"))
    );
    let created = ok(
        o.run("d=$(mktemp -d) && qpool --pool-dir $d vol-create-as v.qcow2 1G --format qcow2 && test -s $d/v.qcow2 && rm -r $d"),
        "installed qpool vol-create-as",
    );
    assert_eq!(created.trim(), "Vol v.qcow2 created");
    // Directories made on install, and the socket enabled (not the virtstoraged one).
    let state = ok(
        o.run("stat -c '%a %n' /etc/qpool/storage /var/lib/qpool/images; ls /etc/systemd/system/sockets.target.wants"),
        "state after install",
    );
    assert!(state.contains("711 /etc/qpool/storage"), "{state}");
    assert!(state.contains("711 /var/lib/qpool/images"), "{state}");
    assert!(state.lines().any(|l| l == "qpoold.socket"), "{state}");
    assert!(!state.contains("virtstoraged"), "{state}");
    // A volume in the default pool: the one thing a purge must leave.
    ok(
        o.run("qpool vol-create-as keep.raw 1M --format raw"),
        "default pool volume",
    );

    ok(o.run("dpkg -r qpool"), "dpkg -r");
    assert_eq!(
        o.left(),
        [
            "/etc/qpool/qpoold.conf",
            "/var/lib/qpool/images/keep.raw",
            "/var/lib/systemd/deb-systemd-helper-enabled/qpoold-ro.socket.dsh-also",
            "/var/lib/systemd/deb-systemd-helper-enabled/qpoold.socket.dsh-also",
        ],
        "after dpkg -r: the conffile, deb-systemd-helper's state and the volume"
    );
    ok(o.run("dpkg -P qpool"), "dpkg -P");
    assert_eq!(
        o.left(),
        ["/var/lib/qpool/images/keep.raw"],
        "after dpkg -P"
    );
}

/// The files (not directories) a package lists, with the distributions' differences mapped
/// to one name: the unit directory (/lib on Debian 12), zsh's completion directory, and the
/// Debian-only changelog, copyright and lintian overrides.
fn normalized(paths: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = paths
        .map(|p| {
            let p = match p.strip_prefix("/lib/") {
                Some(rest) => format!("/usr/lib/{rest}"),
                None => p,
            };
            p.replacen(
                "/usr/share/zsh/vendor-completions/",
                "/usr/share/zsh/site-functions/",
                1,
            )
        })
        .filter(|p| {
            !p.ends_with("/changelog.Debian.gz")
                && !p.ends_with("/doc/qpool/copyright")
                && !p.starts_with("/usr/share/lintian/")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_rpm_spec_parses_and_the_rpm_lists_the_same_files_as_the_deb() {
    if !tools(&["rpmspec", "rpmbuild", "rpm", "dpkg-deb"]) {
        return;
    }
    let spec = Path::new(TOP).join("packaging/rpm/qpool.spec");
    let parsed = ok(
        Command::new("rpmspec")
            .arg("-P")
            .arg(&spec)
            .output()
            .unwrap(),
        "rpmspec -P",
    );
    assert!(parsed.contains("Name:           qpool"), "{parsed}");

    let top = tempfile::Builder::new()
        .prefix("qpool-rpm-")
        .tempdir()
        .unwrap();
    let define = |k: &str, v: &Path| format!("{k} {}", v.display());
    ok(
        Command::new("rpmbuild")
            .args(["-bb", "--nodeps", "--define"])
            .arg(define("_topdir", top.path()))
            .arg("--define")
            .arg(define("qpool_srcdir", Path::new(TOP)))
            .arg("--define")
            .arg(define("qpool_bins", &bin_dir()))
            .arg("--define")
            .arg(define("qpool_gen", generated()))
            .arg(&spec)
            .output()
            .unwrap(),
        "rpmbuild",
    );
    let arch = ok(
        Command::new("rpm")
            .args(["--eval", "%{_arch}"])
            .output()
            .unwrap(),
        "rpm --eval",
    );
    let rpm = top.path().join(format!(
        "RPMS/{0}/qpool-{1}-1.{0}.rpm",
        arch.trim(),
        env!("CARGO_PKG_VERSION")
    ));
    let listed = ok(
        Command::new("rpm").arg("-qlp").arg(&rpm).output().unwrap(),
        "rpm -qlp",
    );
    let modes = ok(
        Command::new("rpm")
            .args(["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\\n]"])
            .arg(&rpm)
            .output()
            .unwrap(),
        "rpm -qp --qf",
    );
    let rpm_files = normalized(
        modes
            .lines()
            .filter(|l| !l.starts_with('d'))
            .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string())),
    );
    for f in &rpm_files {
        assert!(listed.lines().any(|l| l == f), "rpm -qlp lacks {f}");
    }
    let contents = ok(
        Command::new("dpkg-deb")
            .arg("-c")
            .arg(deb())
            .output()
            .unwrap(),
        "dpkg-deb -c",
    );
    let deb_files = normalized(
        contents
            .lines()
            .filter(|l| !l.starts_with('d'))
            .filter_map(|l| l.split_whitespace().nth(5))
            .map(|p| p.trim_start_matches('.').to_string()),
    );
    assert_eq!(rpm_files, deb_files);
    assert!(rpm_files.len() > 30, "{rpm_files:?}");
}
