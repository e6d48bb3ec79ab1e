//! qpoold.conf `secrets_uri` on a host with libvirt's modular daemons (issue 11 item 3): the
//! passphrases of encrypted volumes come from libvirt's secret daemon, virtsecretd, built from
//! Debian's libvirt 9.0 source by `scripts/build-virtqemud` (cached under target/, so only the
//! first run compiles), and run in a private mount namespace (tests/common/namespace.rs: tmpfs
//! on /run, overlays on /var and /etc) so that its fixed paths stay off the machine.
//!
//! Debian's own virsh defines a public and a private volume secret on `secret:///system`
//! (which libvirt's client resolves by itself to `/run/libvirt/virtsecretd-sock`); qpoold,
//! with `secrets_uri = "secret:///system"`, creates encrypted volumes with them through virsh,
//! and qemu-io opens the images with the passphrase. The private one is refused ("secret is
//! private", nothing left in the pool) until qpoold presents virtsecretd's system token
//! (`secrets_token`), which never reaches qpoold's log.
//!
//! Under CI=true a virtsecretd that does not build fails the test; elsewhere it skips.

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::crypt::{
    Driver, assert_token_presented_not_logged, define_secret, encrypted_volume_xml, names_in,
    qemu_io_ok, volume_secret_xml,
};
use common::daemon::{Daemon, run_virsh};
use common::have;
use common::namespace::{self, in_private_mounts};

/// virtsecretd's socket.
const SECRET_SOCKET: &str = "/run/libvirt/virtsecretd-sock";
/// The URI of libvirt's secret driver; with no libvirtd socket, the client takes virtsecretd's.
const SECRET_URI: &str = "secret:///system";
/// The system token libvirt's daemons write (and share) at start.
const SYSTEM_TOKEN: &str = "/run/libvirt/common/system.token";
/// How long a daemon may take to listen, to write its token or to stop.
const DEADLINE: Duration = Duration::from_secs(30);
/// The passphrase of both secrets; it must never appear in qpoold's log.
const PASSPHRASE: &str = "a-passphrase-from-virtsecretd";

/// Whether the test can run here: root, mount namespaces, virsh and the qemu oracles.
fn available() -> bool {
    namespace::available() && ["virsh", "qemu-img", "qemu-io"].iter().all(|t| have(t))
}

/// A real virtsecretd in the caller's private mount namespace, its output in `log`.
struct VirtSecretd {
    child: Option<Child>,
    log: PathBuf,
}

impl VirtSecretd {
    fn start(build: &Path, log: PathBuf) -> VirtSecretd {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(build.join("src/virtsecretd"))
            .env("LIBVIRT_DRIVER_DIR", build.join("src"))
            .env_remove("LIBVIRT_DEFAULT_URI")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start virtsecretd");
        let mut s = VirtSecretd {
            child: Some(child),
            log,
        };
        let start = Instant::now();
        while UnixStream::connect(SECRET_SOCKET).is_err() {
            if let Some(status) = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("virtsecretd exited ({status}):\n{}", s.log());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "virtsecretd did not listen within {DEADLINE:?}:\n{}",
                s.log()
            );
            std::thread::yield_now();
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The system token file, once virtsecretd has written it (as `Libvirtd::system_token`).
    fn system_token(&self) -> PathBuf {
        let path = PathBuf::from(SYSTEM_TOKEN);
        let start = Instant::now();
        while std::fs::metadata(&path).map_or(true, |m| m.len() < 32) {
            assert!(
                start.elapsed() < DEADLINE,
                "virtsecretd wrote no system token in {SYSTEM_TOKEN} within {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::yield_now();
        }
        path
    }

    /// virsh on `secret:///system`: must succeed with an empty stderr; stdout.
    fn virsh_ok(&self, args: &[&str]) -> String {
        let (status, out, err) = run_virsh(SECRET_URI, args);
        assert!(
            status == 0 && err.is_empty(),
            "virsh -c {SECRET_URI} {args:?} exited {status}\nstdout: {out}\nstderr: {err}\nvirtsecretd log:\n{}",
            self.log()
        );
        out
    }

    /// Defines a volume secret for `path` with [`PASSPHRASE`] as its value, as an admin does
    /// (`secret-define`, then `secret-set-value --file` with base64); its UUID.
    fn volume_secret(&self, dir: &Path, path: &Path, private: bool) -> String {
        let name = path.file_name().unwrap().to_string_lossy();
        define_secret(
            &|args| self.virsh_ok(args),
            dir,
            &name,
            &volume_secret_xml(path, private),
            PASSPHRASE,
        )
    }
}

impl Drop for VirtSecretd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
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
            eprintln!("---- virtsecretd log ----\n{}---- end ----", self.log());
        }
    }
}

#[test]
fn with_secrets_uri_on_virtsecretd_passphrases_come_from_libvirts_secret_daemon() {
    if !available() {
        return;
    }
    let Some(build) = namespace::modular_build() else {
        return;
    };
    in_private_mounts(move || {
        let mut d = Daemon::unstarted(&[]);
        d.set_env("QPOOL_LOG", "trace");
        std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
        let s = VirtSecretd::start(&build, d.scratch().join("virtsecretd.log"));

        // The secrets live in virtsecretd only: no libvirtd socket in this namespace's /run.
        assert!(!Path::new("/run/libvirt/libvirt-sock").exists());
        let public = s.volume_secret(d.scratch(), &d.vol("pub.qcow2"), false);
        let private = s.volume_secret(d.scratch(), &d.vol("priv.qcow2"), true);
        let list = s.virsh_ok(&["secret-list"]);
        assert!(list.contains(&public) && list.contains(&private), "{list}");
        let (status, _, err) = run_virsh(SECRET_URI, &["secret-get-value", &private]);
        assert_eq!(status, 1, "{err}");
        assert!(err.contains("secret is private"), "{err}");

        // First without a readable token.
        let config = |token: &Path| {
            format!(
                "secrets_uri = \"{SECRET_URI}\"\nsecrets_token = \"{}\"\n",
                token.display()
            )
        };
        let no_token = d.scratch().join("no-system.token");
        std::fs::write(d.config_file(), config(&no_token)).unwrap();
        d.spawn();
        assert!(
            !d.virsh_ok(&["secret-list"]).contains(&public),
            "qpoold lists its own secrets only"
        );
        let pass = d.write_file("pass", PASSPHRASE);

        // The public secret's value comes from virtsecretd.
        let xml = d.write_file(
            "pub.xml",
            &encrypted_volume_xml("pub.qcow2", "qcow2", &format!("uuid='{public}'")),
        );
        d.virsh_ok(&["vol-create", "default", xml.to_str().unwrap()]);
        qemu_io_ok(
            Driver::Qcow2,
            &d.vol("pub.qcow2"),
            &pass,
            &["write -P 0x42 0 64k", "read -P 0x42 0 64k"],
        );

        // The private one is refused without virtsecretd's system token: one error, nothing
        // left behind.
        let before = names_in(d.pool_dir());
        let xml = d.write_file(
            "priv.xml",
            &encrypted_volume_xml("priv.qcow2", "qcow2", &format!("uuid='{private}'")),
        );
        let (status, out, err) = d.virsh(&["vol-create", "default", xml.to_str().unwrap()]);
        assert_eq!(
            (status, err.trim_end()),
            (
                1,
                format!(
                    "error: Failed to create vol from {}\nerror: invalid argument: cannot encrypt volume 'priv.qcow2': cannot read the secret from libvirt at {SECRET_URI}: Invalid secret: secret is private",
                    xml.display()
                )
                .as_str()
            ),
            "stdout: {out}\nqpoold log:\n{}",
            d.log()
        );
        assert_eq!(names_in(d.pool_dir()), before);

        // With virtsecretd's system token (the path a host's qpoold.conf names), qpoold is
        // given the private secret too.
        let token_file = s.system_token();
        std::fs::write(d.config_file(), config(&token_file)).unwrap();
        d.restart();
        d.virsh_ok(&["vol-create", "default", xml.to_str().unwrap()]);
        qemu_io_ok(
            Driver::Qcow2,
            &d.vol("priv.qcow2"),
            &pass,
            &["write -P 0x5a 0 64k", "read -P 0x5a 0 64k"],
        );

        assert_token_presented_not_logged(&d.log(), &token_file, PASSPHRASE);
        drop(d);
        drop(s);
    });
}
