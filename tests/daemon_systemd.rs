//! qpoold under systemd's protocols, without systemd as PID 1: socket activation through the
//! real `systemd-socket-activate` (both sockets passed and named, as `qpoold.socket` and
//! `qpoold-ro.socket` pass them), readiness and state on a test-owned `NOTIFY_SOCKET`, SIGHUP
//! reloads (`systemctl reload`) that keep connections, and the debug line each call leaves
//! in the log.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::{Daemon, RawConn, Xdr};
use common::notify::NotifySocket;
use common::{have, in_ci};

/// How long the daemon may take to reach a state the test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

const AUTH_LIST: i32 = 66;
const POOL_LOOKUP_BY_NAME: i32 = 84;
const POOL_REFRESH: i32 = 83;
const POOL_IS_ACTIVE: i32 = 154;
const LIST_ALL_POOLS: i32 = 281;

/// Whether `systemd-socket-activate` is here (package `systemd`); fails under CI.
fn have_socket_activate() -> bool {
    let found = std::process::Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !in_ci(),
            "systemd-socket-activate (package systemd) is required in CI"
        );
        eprintln!("SKIPPED: systemd-socket-activate not found");
    }
    found
}

/// A daemon started by `systemd-socket-activate`, reporting to `notify`.
fn activated(extra: &[&str], notify: &NotifySocket) -> Daemon {
    let mut d = Daemon::unstarted(extra);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.activate_by_sockets(Some("qpoold:qpoold-ro"));
    d.set_env("NOTIFY_SOCKET", &notify.path().display().to_string());
    d.spawn();
    d
}

fn pool_xml(name: &str, target: &Path) -> String {
    format!(
        "<pool type='dir'>\n  <name>{name}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        target.display()
    )
}

#[test]
fn socket_activation_serves_virsh_on_both_named_sockets() {
    if !have_socket_activate() || !have("virsh") {
        return;
    }
    let notify = NotifySocket::new();
    let d = activated(&[], &notify);

    let list = d.virsh_ok(&["pool-list", "--name"]);
    assert_eq!(list.trim(), "default");
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "a.qcow2",
        "1M",
        "--format",
        "qcow2",
    ]);
    let (status, out, _) = d.virsh_ro(&["vol-list", "default"]);
    assert_eq!(status, 0);
    assert!(out.contains("a.qcow2"), "read-only vol-list: {out}");
    // The socket named qpoold-ro is the read-only one.
    let (status, _, err) = d.virsh_ro(&["vol-delete", "a.qcow2", "--pool", "default"]);
    assert_eq!(status, 1);
    assert!(
        err.contains("read only access prevents virStorageVolDelete"),
        "vol-delete on the read-only socket: {err}"
    );
    assert!(d.vol("a.qcow2").exists());
    let log = d.log();
    assert!(
        log.contains("passed by the service manager"),
        "qpoold did not take the sockets from LISTEN_FDS:\n{log}"
    );
}

#[test]
fn two_unnamed_activated_sockets_are_read_write_then_read_only() {
    if !have_socket_activate() {
        return;
    }
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.activate_by_sockets(None);
    d.spawn();
    d.connect().open().pool("default");
    let mut ro = d.connect_ro().open();
    let pool = ro.pool("default");
    let e = ro.call_err(POOL_REFRESH, &Xdr::new().pool(&pool).u32(0).done());
    assert_eq!(e.code, 29, "refresh on the second socket: {e:?}");
}

#[test]
fn three_unnamed_activated_sockets_are_refused_with_one_error_line() {
    if !have_socket_activate() {
        return;
    }
    let d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    let third = d.scratch().join("third-sock");
    let child = std::process::Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&d.socket)
        .arg("-l")
        .arg(&d.socket_ro)
        .arg("-l")
        .arg(&third)
        .arg(common::daemon::QPOOLD)
        .args(["--pools", d.pools.to_str().unwrap()])
        .arg("--config")
        .arg(d.config_file())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first connection makes systemd-socket-activate start qpoold.
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
        assert!(start.elapsed() < DEADLINE, "no socket");
        std::thread::yield_now();
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(DEADLINE) else {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        panic!("qpoold did not exit within {DEADLINE:?}");
    };
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors,
        [
            "error: 3 unnamed sockets passed by the service manager; name them (FileDescriptorName=qpoold or qpoold-ro)"
        ],
        "{err}"
    );
}

#[test]
fn activated_qpoold_is_ready_before_its_first_answer_and_stops_on_sigterm() {
    if !have_socket_activate() {
        return;
    }
    let notify = NotifySocket::new();
    let mut d = activated(&[], &notify);

    // systemd-socket-activate execs qpoold at the first connection; its first answer...
    let mut c = d.connect();
    c.call_ok(AUTH_LIST, &[]);
    // ...comes after READY=1, which is already waiting on the notify socket.
    let before = notify.received();
    let ready = before
        .iter()
        .position(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 before the first reply: {before:?}"));
    assert!(
        before[ready]
            .lines()
            .any(|l| l.starts_with("STATUS=serving 1 pool (1 active) on ")),
        "status with READY=1: {before:?}"
    );

    let status = d.terminate();
    assert!(status.success(), "exit status {status}");
    notify.wait_for("STOPPING=1", ready + 1, DEADLINE);
    // systemd made the sockets; qpoold leaves them for the next start.
    assert!(d.socket.exists(), "read-write socket removed");
    assert!(d.socket_ro.exists(), "read-only socket removed");
}

#[test]
fn idle_exit_under_activation_says_stopping_and_leaves_the_sockets() {
    if !have_socket_activate() {
        return;
    }
    let notify = NotifySocket::new();
    let mut d = activated(&["--timeout", "1"], &notify);
    // The probe connections of `spawn` started it; with none left, it exits after 1 s.
    let status = d.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}");
    let ready = notify.wait_for("READY=1", 0, DEADLINE);
    notify.wait_for("STOPPING=1", ready + 1, DEADLINE);
    assert!(d.log().contains("idle for 1 s: exiting"), "{}", d.log());
    assert!(d.socket.exists() && d.socket_ro.exists(), "sockets removed");
}

#[test]
fn sighup_defines_a_new_pool_and_keeps_open_connections() {
    let notify = NotifySocket::new();
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.set_env("NOTIFY_SOCKET", &notify.path().display().to_string());
    d.spawn();
    let ready = notify.wait_for("READY=1", 0, DEADLINE);
    let mut c = d.connect().open();
    c.pool("default");

    // A new definition, autostarted, appears while the connection is open.
    let target = d.scratch().join("extra");
    std::fs::write(d.pools.join("extra.xml"), pool_xml("extra", &target)).unwrap();
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink("../extra.xml", d.pools.join("autostart/extra.xml")).unwrap();
    d.signal(libc::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", ready + 1, DEADLINE);
    assert!(
        notify.received()[reloading]
            .lines()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC: {:?}",
        notify.received()
    );
    notify.wait_for("READY=1", reloading + 1, DEADLINE);

    // The same connection sees it, running.
    let extra = c.pool("extra");
    let active = c.call_ok(POOL_IS_ACTIVE, &Xdr::new().pool(&extra).done());
    assert_eq!(active, vec![0, 0, 0, 1], "extra is active");
    let all = c.call_ok(LIST_ALL_POOLS, &Xdr::new().i32(1).u32(0).done());
    assert_eq!(&all[..4], &[0, 0, 0, 2], "two pools listed");
    d.assert_alive();
    assert!(
        d.log()
            .contains("reloaded: 1 defined, 0 redefined, 0 undefined, 1 started"),
        "{}",
        d.log()
    );
}

#[test]
fn sighup_rereads_the_idle_timeout_from_qpoold_conf() {
    let notify = NotifySocket::new();
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.set_env("NOTIFY_SOCKET", &notify.path().display().to_string());
    d.spawn();
    let ready = notify.wait_for("READY=1", 0, DEADLINE);
    let c = d.connect().open();

    std::fs::write(d.config_file(), "timeout = 1\n").unwrap();
    d.signal(libc::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", ready + 1, DEADLINE);
    notify.wait_for("READY=1", reloading + 1, DEADLINE);
    // The open connection keeps it running; once it is closed, the new timeout applies.
    d.assert_alive();
    drop(c);
    let status = d.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}");
    assert!(
        d.log().contains("idle timeout: 1 s (was 0 s)"),
        "{}",
        d.log()
    );
}

#[test]
fn sighup_with_a_broken_qpoold_conf_keeps_serving_with_the_old_settings() {
    let notify = NotifySocket::new();
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.set_env("NOTIFY_SOCKET", &notify.path().display().to_string());
    d.spawn();
    let ready = notify.wait_for("READY=1", 0, DEADLINE);
    let mut c = d.connect().open();

    std::fs::write(d.config_file(), "timeout = soon\n").unwrap();
    d.signal(libc::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", ready + 1, DEADLINE);
    notify.wait_for("READY=1", reloading + 1, DEADLINE);
    c.pool("default");
    d.assert_alive();
    let log = d.log();
    assert!(
        log.contains("timeout expects seconds, found 'soon'; keeping the previous settings"),
        "{log}"
    );
}

#[test]
fn debug_log_names_each_call_with_its_serial_result_and_duration() {
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.set_env("QPOOL_LOG", "debug");
    d.spawn();
    let mut c: RawConn = d.connect().open();
    c.pool("default"); // serial 2
    let e = c.call_err(POOL_LOOKUP_BY_NAME, &Xdr::new().string("nosuchpool").done()); // 3
    assert_eq!(e.code, 49);
    let e = c.call_err(9999, &[]); // 4
    assert_eq!(e.code, 39);
    let log = d.log();
    let line = |serial: u32| {
        let prefix = format!(" serial {serial}: ");
        log.lines()
            .find(|l| l.starts_with("debug: connection ") && l.contains(&prefix))
            .unwrap_or_else(|| panic!("no debug line for serial {serial}:\n{log}"))
            .to_string()
    };
    for (serial, procedure, result) in [
        (0, "AUTH_LIST (66)", "ok"),
        (1, "CONNECT_OPEN (1)", "ok"),
        (2, "STORAGE_POOL_LOOKUP_BY_NAME (84)", "ok"),
        (
            3,
            "STORAGE_POOL_LOOKUP_BY_NAME (84)",
            "error 49 domain 18 (Storage pool not found: no storage pool with matching name 'nosuchpool')",
        ),
        (4, "? (9999)", "error 39 domain 7 (unknown procedure: 9999)"),
    ] {
        let l = line(serial);
        let (head, duration) = l
            .rsplit_once(" in ")
            .unwrap_or_else(|| panic!("no duration: {l}"));
        assert!(
            head.ends_with(&format!("{procedure} serial {serial}: {result}")),
            "serial {serial}: {l}"
        );
        let ms = duration
            .strip_suffix(" ms")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("duration in ms: {l}"));
        assert!(ms >= 0.0, "{l}");
    }
}
