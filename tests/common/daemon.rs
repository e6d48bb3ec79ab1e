//! A `qpoold` under test: spawned on a temporary socket pair and pool directory, waited for by
//! polling `connect()` (never by sleeping), killed on drop. Plus the two ways the tests talk to
//! it: real `virsh` with the right `-c` URI, and a raw UNIX-socket client that sends and reads
//! libvirt RPC frames byte for byte (written here, independently of `qpool::rpc`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::TempPool;

/// Path of the `qpoold` binary under test.
pub const QPOOLD: &str = env!("CARGO_BIN_EXE_qpoold");

/// How long the daemon may take to bind its sockets, or to exit when asked.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running `qpoold` with its own directories:
///
/// - `scratch()/pools`: pool definitions (`--pools`);
/// - `pool_dir()` (`scratch()/pool`): target of the `default` pool (`--default-pool-dir`);
/// - the sockets, in `scratch()` (or a short directory under /tmp when that path is too long
///   for `sun_path`);
/// - `scratch()/secrets`: the secret store (`--secrets`);
/// - `scratch()/qpoold.log`: the daemon's stderr, printed when a test fails.
pub struct Daemon {
    child: Option<Child>,
    dirs: TempPool,
    /// A short directory for the sockets, kept until drop (only when `dirs` is too deep).
    sock_dir: Option<tempfile::TempDir>,
    /// Read-write socket.
    pub socket: PathBuf,
    /// Read-only socket (the default: the read-write path plus `-ro`).
    pub socket_ro: PathBuf,
    /// `--pools` directory.
    pub pools: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    /// Extra environment of the daemon (after the defaults, so it can override `QPOOL_LOG`).
    env: Vec<(String, String)>,
    /// Started by `systemd-socket-activate` with both sockets passed instead of binding its
    /// own; `Some` names them (`--fdname`).
    activated: bool,
    fd_names: Option<String>,
    /// A command that runs qpoold (`strace -f -o FILE`, say): its words, then qpoold's path
    /// and arguments.
    wrapper: Vec<std::ffi::OsString>,
}

impl Daemon {
    /// A daemon with an empty `--pools` directory: it defines the autostarted pool `default`.
    pub fn start() -> Daemon {
        Daemon::start_with(&[], |_| {})
    }

    /// A daemon with extra command-line arguments, after `prepare` has filled the `--pools`
    /// directory (pool XML files, `autostart/` links).
    pub fn start_with(extra: &[&str], prepare: impl FnOnce(&Path)) -> Daemon {
        let mut d = Daemon::unstarted(extra);
        std::fs::create_dir_all(d.pools.join("autostart")).expect("pools directory");
        prepare(&d.pools);
        d.spawn();
        d
    }

    /// The directories and paths of a daemon, without starting it.
    pub fn unstarted(extra: &[&str]) -> Daemon {
        let dirs = TempPool::new();
        let scratch = dirs.scratch().to_path_buf();
        // sun_path holds 108 bytes; keep the sockets well inside it.
        let (sock_dir, base) = if scratch.join("qpoold-sock-ro").as_os_str().len() < 100 {
            (None, scratch.clone())
        } else {
            let t = tempfile::Builder::new()
                .prefix("qpoold-")
                .tempdir_in("/tmp")
                .expect("socket directory");
            let p = t.path().to_path_buf();
            (Some(t), p)
        };
        let socket = base.join("qpoold-sock");
        // An empty configuration file: no /etc/qpool/qpoold.conf of the machine leaks in.
        std::fs::write(scratch.join("qpoold.conf"), "").expect("qpoold.conf");
        let mut ro = socket.clone().into_os_string();
        ro.push("-ro");
        Daemon {
            child: None,
            sock_dir,
            socket,
            socket_ro: PathBuf::from(ro),
            pools: scratch.join("pools"),
            log: scratch.join("qpoold.log"),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            activated: false,
            fd_names: None,
            wrapper: Vec::new(),
            dirs,
        }
    }

    /// Moves the read-write socket to `socket` and the read-only one beside it (`-ro`),
    /// before `spawn` (libvirt's `/run/libvirt/virtstoraged-sock`, say).
    pub fn set_socket(&mut self, socket: &Path) {
        self.socket = socket.to_path_buf();
        let mut ro = socket.as_os_str().to_owned();
        ro.push("-ro");
        self.socket_ro = PathBuf::from(ro);
    }

    /// Sets an environment variable of the daemon (before `spawn`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Makes `spawn` start the daemon the way systemd's socket units do: the real
    /// `systemd-socket-activate` (package `systemd`) listens on both socket paths and execs
    /// qpoold with them as `LISTEN_FDS` at the first connection, named by `LISTEN_FDNAMES`
    /// when `names` (`qpoold:qpoold-ro`, as the units name them) is given; the daemon's
    /// environment is only what `set_env` gave.
    pub fn activate_by_sockets(&mut self, names: Option<&str>) {
        self.activated = true;
        self.fd_names = names.map(str::to_string);
    }

    /// Makes `spawn` run qpoold through `wrapper` (its program and arguments, qpoold's path
    /// and arguments follow).
    pub fn run_through(&mut self, wrapper: &[&std::ffi::OsStr]) {
        self.wrapper = wrapper.iter().map(|w| w.to_os_string()).collect();
    }

    /// qpoold's arguments (without `--socket` under socket activation, which passes them).
    fn qpoold_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if !self.activated {
            args.push("--socket".into());
            args.push(self.socket.clone().into());
        }
        for (k, v) in [
            ("--pools", self.pools.as_path()),
            ("--default-pool-dir", self.pool_dir()),
            ("--config", &self.dirs.scratch().join("qpoold.conf")),
            ("--secrets", &self.secrets_dir()),
        ] {
            args.push(k.into());
            args.push(v.as_os_str().to_owned());
        }
        args.extend(self.args.iter().map(Into::into));
        args
    }

    /// The daemon's secret store (`--secrets`; created at the first `secret-define`).
    pub fn secrets_dir(&self) -> PathBuf {
        self.dirs.scratch().join("secrets")
    }

    /// The configuration file the daemon reads (empty unless a test writes it).
    pub fn config_file(&self) -> PathBuf {
        self.dirs.scratch().join("qpoold.conf")
    }

    /// The command line this daemon runs with.
    pub fn command(&self) -> Command {
        let mut env = self.env.clone();
        if !env.iter().any(|(k, _)| k == "QPOOL_LOG") {
            env.push(("QPOOL_LOG".into(), log_level()));
        }
        let mut cmd = if self.activated {
            let mut cmd = Command::new("systemd-socket-activate");
            cmd.arg("-l")
                .arg(&self.socket)
                .arg("-l")
                .arg(&self.socket_ro);
            if let Some(names) = &self.fd_names {
                cmd.arg(format!("--fdname={names}"));
            }
            for (k, v) in &env {
                cmd.arg("-E").arg(format!("{k}={v}"));
            }
            cmd.arg(QPOOLD);
            cmd
        } else if let Some((program, words)) = self.wrapper.split_first() {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(QPOOLD);
            cmd
        } else {
            Command::new(QPOOLD)
        };
        // Nothing of the test runner's own service manager reaches the daemon.
        for k in [
            "RUST_LOG",
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ] {
            cmd.env_remove(k);
        }
        if !self.activated {
            cmd.envs(env);
        }
        cmd.args(self.qpoold_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Starts the daemon process and waits until both sockets accept connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let child = self
            .command()
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start qpoold");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls `connect()` on both sockets until they answer, the daemon dies, or the deadline.
    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("qpoold exited during start-up ({status}):\n{}", self.log());
            }
            // The read-only socket is bound last.
            if UnixStream::connect(&self.socket_ro).is_ok()
                && UnixStream::connect(&self.socket).is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "qpoold did not listen on {} within {DEADLINE:?}:\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::yield_now();
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("running daemon").id()).expect("pid")
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Asserts the process is still running, with its log if not.
    pub fn assert_alive(&mut self) {
        assert!(self.is_alive(), "qpoold died:\n{}", self.log());
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid and a valid signal number has no memory
        // effects on this process.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for the daemon to exit on its own (or after a signal), failing after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running daemon");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(within) {
            Ok(status) => status.expect("wait for qpoold"),
            Err(_) => {
                // SAFETY: as in `signal`; the waiting thread reaps the process.
                unsafe { libc::kill(i32::try_from(pid).expect("pid"), libc::SIGKILL) };
                panic!("qpoold did not exit within {within:?}:\n{}", self.log());
            }
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(DEADLINE)
    }

    /// Stops the daemon with SIGTERM and starts a new one on the same directories.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "qpoold exited with {status}");
        self.spawn();
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Target directory of the `default` pool.
    pub fn pool_dir(&self) -> &Path {
        self.dirs.path()
    }

    /// Path of a volume in the `default` pool.
    pub fn vol(&self, name: &str) -> PathBuf {
        self.dirs.vol(name)
    }

    /// A scratch directory beside the pools, for XML files and downloads.
    pub fn scratch(&self) -> &Path {
        self.dirs.scratch()
    }

    /// Writes a file in the scratch directory.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        self.dirs.write_file(name, text)
    }

    /// The read-write URI virsh connects with.
    pub fn uri(&self) -> String {
        format!("storage+unix:///system?socket={}", self.socket.display())
    }

    /// The read-only URI.
    pub fn uri_ro(&self) -> String {
        format!("storage+unix:///system?socket={}", self.socket_ro.display())
    }

    /// Runs `virsh -c URI ARGS…` on the read-write socket: (exit status, stdout, stderr).
    pub fn virsh(&self, args: &[&str]) -> (i32, String, String) {
        run_virsh(&self.uri(), args)
    }

    /// Runs virsh on the read-only socket.
    pub fn virsh_ro(&self, args: &[&str]) -> (i32, String, String) {
        run_virsh(&self.uri_ro(), args)
    }

    /// Runs virsh, asserts exit status 0 and an empty stderr, returns stdout.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        let (status, out, err) = self.virsh(args);
        assert!(
            status == 0 && err.is_empty(),
            "virsh {args:?} exited {status}\nstdout: {out}\nstderr: {err}\nqpoold log:\n{}",
            self.log()
        );
        out
    }

    /// A `virsh` command line for this daemon, to run in the background.
    pub fn virsh_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("virsh");
        cmd.arg("-c").arg(self.uri()).args(args);
        virsh_env(&mut cmd);
        cmd
    }

    /// A raw connection to the read-write socket.
    pub fn connect(&self) -> RawConn {
        RawConn::connect(&self.socket)
    }

    /// A raw connection to the read-only socket.
    pub fn connect_ro(&self) -> RawConn {
        RawConn::connect(&self.socket_ro)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- qpoold log ----\n{}---- end ----", self.log());
        }
    }
}

/// The daemon logs at `info` (some tests read those lines), or more when QPOOL_LOG asks.
fn log_level() -> String {
    match std::env::var("QPOOL_LOG") {
        Ok(v) if v.contains("debug") || v.contains("trace") => v,
        _ => "info".into(),
    }
}

fn virsh_env(cmd: &mut Command) {
    // Only the -c URI may decide where virsh connects; no user config, no history.
    cmd.env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("VIRSH_DEFAULT_CONNECT_URI")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
}

/// Runs virsh with `uri`: (exit status, stdout, stderr).
pub fn run_virsh(uri: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new("virsh");
    cmd.arg("-c").arg(uri).args(args);
    virsh_env(&mut cmd);
    let out = cmd.output().expect("run virsh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- libvirt RPC, as the tests speak it -------------------------------------------------

/// REMOTE_PROGRAM.
pub const REMOTE: u32 = 0x2000_8086;
/// KEEPALIVE_PROGRAM ("keep").
pub const KEEPALIVE: u32 = 0x6b65_6570;
/// VIR_NET_CALL.
pub const CALL: u32 = 0;
/// VIR_NET_REPLY.
pub const REPLY: u32 = 1;
/// VIR_NET_MESSAGE.
pub const MESSAGE: u32 = 2;
/// VIR_NET_STREAM.
pub const STREAM: u32 = 3;
/// VIR_NET_STREAM_HOLE.
pub const STREAM_HOLE: u32 = 6;
/// VIR_NET_OK.
pub const OK: u32 = 0;
/// VIR_NET_ERROR.
pub const ERROR: u32 = 1;
/// VIR_NET_CONTINUE.
pub const CONTINUE: u32 = 2;

/// Bytes from 4-byte hex words as libvirt-rpc.md §7 prints them ("0000001c 20008086 …");
/// an `NNNN:` offset column is skipped.
pub fn words(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .filter(|w| !w.ends_with(':'))
        .flat_map(|w| {
            u32::from_str_radix(w, 16)
                .unwrap_or_else(|_| panic!("bad hex word {w}"))
                .to_be_bytes()
        })
        .collect()
}

/// A message with its length word.
pub fn frame(
    prog: u32,
    proc_: i32,
    mtype: u32,
    serial: u32,
    status: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + payload.len());
    out.extend_from_slice(
        &u32::try_from(28 + payload.len())
            .expect("message length")
            .to_be_bytes(),
    );
    for w in [prog, 1, proc_ as u32, mtype, serial, status] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// A REMOTE_PROGRAM call.
pub fn call(proc_: i32, serial: u32, payload: &[u8]) -> Vec<u8> {
    frame(REMOTE, proc_, CALL, serial, OK, payload)
}

/// The keepalive PING of §7.
pub fn ping() -> Vec<u8> {
    frame(KEEPALIVE, 1, MESSAGE, 0, OK, &[])
}

/// XDR encoder for call payloads.
#[derive(Default)]
pub struct Xdr(pub Vec<u8>);

impl Xdr {
    /// An empty payload.
    pub fn new() -> Xdr {
        Xdr(Vec::new())
    }
    /// `unsigned int`.
    pub fn u32(mut self, v: u32) -> Xdr {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// `int`.
    pub fn i32(mut self, v: i32) -> Xdr {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// `unsigned hyper`.
    pub fn u64(mut self, v: u64) -> Xdr {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Raw bytes, padded to 4.
    pub fn fixed(mut self, b: &[u8]) -> Xdr {
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len().div_ceil(4) * 4, 0);
        self
    }
    /// `remote_nonnull_string`.
    pub fn string(self, s: &str) -> Xdr {
        self.u32(u32::try_from(s.len()).expect("string length"))
            .fixed(s.as_bytes())
    }
    /// `remote_string`.
    pub fn opt_string(self, s: Option<&str>) -> Xdr {
        match s {
            Some(s) => self.u32(1).string(s),
            None => self.u32(0),
        }
    }
    /// `remote_nonnull_storage_pool`.
    pub fn pool(self, p: &PoolRef) -> Xdr {
        self.string(&p.name).fixed(&p.uuid)
    }
    /// `remote_nonnull_storage_vol`.
    pub fn vol(self, v: &VolRef) -> Xdr {
        self.string(&v.pool).string(&v.name).string(&v.key)
    }
    /// The bytes.
    pub fn done(self) -> Vec<u8> {
        self.0
    }
}

/// A pool handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRef {
    /// Name.
    pub name: String,
    /// UUID bytes.
    pub uuid: [u8; 16],
}

/// A volume handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolRef {
    /// Pool name.
    pub pool: String,
    /// Volume name.
    pub name: String,
    /// Key.
    pub key: String,
}

/// XDR decoder for reply payloads; panics on short payloads (a test failure).
pub struct Rd<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Rd<'a> {
        Rd { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.pos + n <= self.buf.len(),
            "payload too short: need {n} bytes at {} of {}",
            self.pos,
            self.buf.len()
        );
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    /// `unsigned int`.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    /// `int`.
    pub fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    /// `unsigned hyper`.
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    /// `remote_nonnull_string`.
    pub fn string(&mut self) -> String {
        let n = self.u32() as usize;
        let s = String::from_utf8(self.take(n).to_vec()).expect("utf-8");
        self.take((4 - n % 4) % 4);
        s
    }
    /// `remote_string`.
    pub fn opt_string(&mut self) -> Option<String> {
        match self.u32() {
            0 => None,
            1 => Some(self.string()),
            x => panic!("bad optional marker {x}"),
        }
    }
    /// `remote_nonnull_storage_pool`.
    pub fn pool(&mut self) -> PoolRef {
        let name = self.string();
        PoolRef {
            name,
            uuid: self.take(16).try_into().unwrap(),
        }
    }
    /// `remote_nonnull_storage_vol`.
    pub fn vol(&mut self) -> VolRef {
        VolRef {
            pool: self.string(),
            name: self.string(),
            key: self.string(),
        }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// A decoded `remote_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// virErrorNumber.
    pub code: i32,
    /// virErrorDomain.
    pub domain: i32,
    /// The text.
    pub message: Option<String>,
    /// virErrorLevel.
    pub level: i32,
    /// Generic format.
    pub str1: Option<String>,
    /// Detail.
    pub str2: Option<String>,
    /// Usually NULL.
    pub str3: Option<String>,
    /// errno or -1.
    pub int1: i32,
    /// -1.
    pub int2: i32,
}

/// One message read from the daemon.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The whole message, length word included.
    pub raw: Vec<u8>,
    /// Program.
    pub prog: u32,
    /// Version.
    pub vers: u32,
    /// Procedure.
    pub proc_: i32,
    /// virNetMessageType.
    pub mtype: u32,
    /// Serial.
    pub serial: u32,
    /// virNetMessageStatus.
    pub status: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Msg {
    /// A reader over the payload.
    pub fn rd(&self) -> Rd<'_> {
        Rd::new(&self.payload)
    }

    /// The `remote_error` of an error reply; panics on anything else.
    pub fn error(&self) -> RemoteError {
        assert_eq!(
            (self.mtype == REPLY || self.mtype == STREAM, self.status),
            (true, ERROR),
            "not an error reply: {self:?}"
        );
        let mut r = self.rd();
        let code = r.i32();
        let domain = r.i32();
        let message = r.opt_string();
        let level = r.i32();
        assert_eq!(r.u32(), 0, "dom is NULL");
        let str1 = r.opt_string();
        let str2 = r.opt_string();
        let str3 = r.opt_string();
        let int1 = r.i32();
        let int2 = r.i32();
        assert_eq!(r.u32(), 0, "net is NULL");
        assert_eq!(r.remaining(), 0, "trailing bytes after remote_error");
        RemoteError {
            code,
            domain,
            message,
            level,
            str1,
            str2,
            str3,
            int1,
            int2,
        }
    }

    /// Panics unless this is a successful reply to `proc_` / `serial`.
    pub fn expect_ok(&self, proc_: i32, serial: u32) -> &Msg {
        assert!(
            self.prog == REMOTE
                && self.proc_ == proc_
                && self.mtype == REPLY
                && self.serial == serial
                && self.status == OK,
            "expected an OK reply to proc {proc_} serial {serial}, got {self:?} {:?}",
            (self.status == ERROR).then(|| self.error())
        );
        self
    }
}

/// A raw client connection. Reads have a 60 s deadline so a hung daemon fails the test
/// instead of hanging it.
pub struct RawConn {
    /// The socket.
    pub stream: UnixStream,
    serial: u32,
}

impl RawConn {
    /// Connects to `path`.
    pub fn connect(path: &Path) -> RawConn {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        RawConn { stream, serial: 0 }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to qpoold");
    }

    /// Writes bytes; false when the daemon already closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads one message; `None` when the daemon closed the connection (EOF or reset).
    pub fn recv(&mut self) -> Option<Msg> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if is_closed(&e) => return None,
            Err(e) => panic!("read from qpoold: {e}"),
        }
        let total = u32::from_be_bytes(len) as usize;
        assert!(
            (28..=(32 << 20) + 4).contains(&total),
            "qpoold sent a bad length word {total}"
        );
        let mut raw = len.to_vec();
        raw.resize(total, 0);
        match self.stream.read_exact(&mut raw[4..]) {
            Ok(()) => {}
            Err(e) if is_closed(&e) => panic!("qpoold closed the connection inside a message"),
            Err(e) => panic!("read from qpoold: {e}"),
        }
        let w = |i: usize| u32::from_be_bytes(raw[i..i + 4].try_into().unwrap());
        Some(Msg {
            prog: w(4),
            vers: w(8),
            proc_: w(12) as i32,
            mtype: w(16),
            serial: w(20),
            status: w(24),
            payload: raw[28..].to_vec(),
            raw,
        })
    }

    /// Reads one message, which must come.
    pub fn next(&mut self) -> Msg {
        self.recv().expect("qpoold closed the connection")
    }

    /// Reads messages until the reply with `serial`, skipping keepalive PINGs (answered) and
    /// events.
    pub fn reply(&mut self, serial: u32) -> Msg {
        loop {
            let m = self.next();
            if m.prog == KEEPALIVE {
                if m.proc_ == 1 {
                    self.send(&frame(KEEPALIVE, 2, MESSAGE, 0, OK, &[]));
                }
                continue;
            }
            if m.mtype == REPLY && m.serial == serial {
                return m;
            }
            assert_eq!(m.mtype, MESSAGE, "unexpected message {m:?}");
        }
    }

    /// Sends a call with the next serial and returns its reply.
    pub fn call(&mut self, proc_: i32, payload: &[u8]) -> Msg {
        let serial = self.serial;
        self.serial += 1;
        self.send(&call(proc_, serial, payload));
        self.reply(serial)
    }

    /// A call that must succeed; returns the reply payload.
    pub fn call_ok(&mut self, proc_: i32, payload: &[u8]) -> Vec<u8> {
        let serial = self.serial;
        let m = self.call(proc_, payload);
        m.expect_ok(proc_, serial);
        m.payload
    }

    /// A call that must fail; returns the error.
    pub fn call_err(&mut self, proc_: i32, payload: &[u8]) -> RemoteError {
        let m = self.call(proc_, payload);
        assert_eq!(m.proc_, proc_);
        m.error()
    }

    /// The next serial `call` will use.
    pub fn next_serial(&mut self) -> u32 {
        let s = self.serial;
        self.serial += 1;
        s
    }

    /// virsh's prologue: AUTH_LIST, then CONNECT_OPEN "storage:///system" with `flags`.
    pub fn open_with(mut self, flags: u32) -> RawConn {
        let types = self.call_ok(66, &[]);
        assert_eq!(types, words("00000001 00000000"), "AUTH_LIST = [NONE]");
        self.call_ok(
            1,
            &Xdr::new()
                .opt_string(Some("storage:///system"))
                .u32(flags)
                .done(),
        );
        self
    }

    /// AUTH_LIST + CONNECT_OPEN with flags 0.
    pub fn open(self) -> RawConn {
        self.open_with(0)
    }

    /// STORAGE_POOL_LOOKUP_BY_NAME.
    pub fn pool(&mut self, name: &str) -> PoolRef {
        let p = self.call_ok(84, &Xdr::new().string(name).done());
        let mut r = Rd::new(&p);
        let pool = r.pool();
        assert_eq!(r.remaining(), 0);
        pool
    }

    /// STORAGE_VOL_LOOKUP_BY_NAME.
    pub fn vol(&mut self, pool: &PoolRef, name: &str) -> VolRef {
        let p = self.call_ok(95, &Xdr::new().pool(pool).string(name).done());
        Rd::new(&p).vol()
    }

    /// Whether the daemon closed the connection: the next read sees EOF or a reset.
    pub fn is_closed(&mut self) -> bool {
        loop {
            match self.recv() {
                None => return true,
                // A PING from the server may precede the close; anything else is an answer.
                Some(m) if m.prog == KEEPALIVE => continue,
                Some(_) => return false,
            }
        }
    }

    /// Sends a PING and waits for the PONG (skipping other messages); returns its bytes.
    pub fn ping(&mut self) -> Vec<u8> {
        self.send(&ping());
        loop {
            let m = self.next();
            if m.prog == KEEPALIVE && m.proc_ == 2 {
                return m.raw;
            }
        }
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
    )
}
