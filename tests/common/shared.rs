//! Shared storage for tests: a single-node GlusterFS volume and a single-node Ceph cluster
//! with CephFS (memstore OSD), each mounted twice through FUSE as "host A" and "host B", and
//! a passthrough FUSE filesystem without `fallocate` (the stand-in for NFS before 4.2).
//! The recipes and measured behaviour: shared/docs/shared-storage.md.
//!
//! Isolation: [`in_private_namespace`] runs the test in a thread with a private mount
//! namespace (a tmpfs on `/run`, GlusterFS's fixed directories bound to the test's own), so
//! no mount, no `ip netns` name and no daemon state reaches the machine or another test.
//! Each cluster gets its own network: a server namespace with a bridge at [`SERVER_ADDR`] and
//! one namespace per host with its own veth address ([`HOST_ADDRS`]); the servers run in the
//! first, each host's FUSE client (and the qpoold a test starts for it) in its own, so the
//! two mounts really talk to the servers over a network. Every process is a child kept in a
//! guard, and every guard tears down on drop (also when the test panics): clients unmounted
//! first, then the servers, then the namespaces.
//!
//! Needs root, `ip`, `nsenter`, and the Debian packages scripts/test installs. Missing pieces
//! fail the test under `CI=true` and skip it elsewhere ([`have_glusterfs`], [`have_ceph`],
//! [`have_fusepy`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};

use super::in_ci;

/// The servers' address, on the bridge in the server namespace.
pub const SERVER_ADDR: &str = "10.251.0.1";
/// Host A's and host B's addresses, each on the veth in its own namespace.
pub const HOST_ADDRS: [&str; 2] = ["10.251.0.2", "10.251.0.3"];
/// The host names the tests use.
pub const HOST_NAMES: [&str; 2] = ["A", "B"];

/// How long a server or a mount may take to come up or go away before the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// Tells apart the namespaces of the clusters one test process starts.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Whether the programs of `package` are installed; under `CI=true` their absence fails.
fn have_all(package: &str, programs: &[&str]) -> bool {
    let missing: Vec<&&str> = programs.iter().filter(|p| !Path::new(p).exists()).collect();
    let root = nix::unistd::geteuid().is_root();
    if missing.is_empty() && root {
        return true;
    }
    let why = if root {
        format!("{package} is not installed (missing {missing:?})")
    } else {
        format!("{package} tests need root")
    };
    assert!(
        !in_ci(),
        "{why}; scripts/test installs it and CI runs as root"
    );
    eprintln!("SKIPPED: {why} (this test would fail under CI=true)");
    false
}

/// GlusterFS server and client (Debian `glusterfs-server`, `glusterfs-client`).
pub fn have_glusterfs() -> bool {
    have_all(
        "GlusterFS",
        &[
            "/usr/sbin/glusterd",
            "/usr/sbin/glusterfs",
            "/usr/sbin/gluster",
            "/usr/bin/nsenter",
            "/usr/bin/ip",
        ],
    )
}

/// Ceph's daemons, CLI and FUSE client (Debian `ceph-mon`, `ceph-mgr`, `ceph-osd`,
/// `ceph-mds`, `ceph-common`, `ceph-fuse`).
pub fn have_ceph() -> bool {
    have_all(
        "Ceph",
        &[
            "/usr/bin/ceph-mon",
            "/usr/bin/ceph-mgr",
            "/usr/bin/ceph-osd",
            "/usr/bin/ceph-mds",
            "/usr/bin/ceph-fuse",
            "/usr/bin/ceph",
            "/usr/bin/ceph-authtool",
            "/usr/bin/monmaptool",
            "/usr/bin/nsenter",
            "/usr/bin/ip",
        ],
    ) && python_module("ceph", "import rados")
}

/// Debian's `python3-fusepy` under Debian's own python3.
pub fn have_fusepy() -> bool {
    have_all(
        "python3-fusepy",
        &["/usr/bin/python3", "/usr/bin/fusermount"],
    ) && python_module("python3-fusepy", "import fusepy")
}

fn python_module(package: &str, import: &str) -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", import])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !in_ci(),
            "{package}: '{import}' fails under /usr/bin/python3"
        );
        eprintln!("SKIPPED: {package}: '{import}' fails (this test would fail under CI=true)");
    }
    ok
}

/// Runs `f` in a new thread with a private mount namespace (`/` private, a tmpfs on `/run`)
/// and returns its result; a panic in `f` fails the caller. Processes started from `f`
/// inherit the namespace.
pub fn in_private_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let worker = std::thread::Builder::new()
        .name("shared-storage".into())
        .spawn(move || {
            super::namespace::private_mounts_with_own_run();
            f()
        })
        .expect("start the namespace thread");
    match worker.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Polls `done` (never a fixed sleep) until it holds; panics after [`DEADLINE`] so a broken
/// set-up fails instead of hanging.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion; panics with its output unless it succeeds. Returns stdout.
pub fn must(cmd: &mut Command, what: &str) -> String {
    let out = output(cmd, what);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn output(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Whether `dir` is a mount point of type `fstype` in the calling thread's namespace.
pub fn is_mounted(dir: &Path, fstype: &str) -> bool {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    info.lines().any(|l| {
        let mut fields = l.split_whitespace();
        fields.nth(4) == Some(dir.as_ref())
            && l.split_once(" - ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                == Some(fstype)
    })
}

/// A child process killed (and reaped) when dropped.
pub struct Proc {
    child: Option<Child>,
    what: String,
}

impl Proc {
    /// Starts `cmd` with its output going to `log`.
    pub fn spawn(cmd: &mut Command, what: &str, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Proc {
            child: Some(child),
            what: what.to_string(),
        }
    }

    /// Panics if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("{} exited: {status}", self.what);
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to exit by itself (after an unmount, say), up to `within`;
    /// kills it after that. Returns whether it exited by itself.
    pub fn wait_or_kill(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A named network namespace (`ip netns`), deleted when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    fn add(name: String) -> Netns {
        must(
            Command::new("ip").args(["netns", "add", &name]),
            "ip netns add",
        );
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS…`.
    fn ip(&self, args: &[&str]) {
        must(
            Command::new("ip").arg("-n").arg(&self.name).args(args),
            &format!("ip -n {} {args:?}", self.name),
        );
    }

    /// A command that runs `program` in this network namespace (and nothing else of it:
    /// the mount namespace stays the caller's, so mounts made there are the caller's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    /// The words of [`Netns::command`] before the program, for `Daemon::run_through`.
    pub fn prefix(&self) -> Vec<std::ffi::OsString> {
        vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", self.name).into(),
            "--".into(),
        ]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A server namespace with a bridge at [`SERVER_ADDR`], and one namespace per host joined to
/// it by a veth pair, with the host's own address ([`HOST_ADDRS`]).
pub struct Network {
    /// The servers' namespace.
    pub server: Netns,
    /// Host A's and host B's namespaces.
    pub hosts: [Netns; 2],
}

impl Network {
    /// Builds the namespaces and links them.
    pub fn new(tag: &str) -> Network {
        let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
        let base = format!("qpool-{tag}{}-{n}", std::process::id());
        let server = Netns::add(format!("{base}-s"));
        server.ip(&["link", "add", "br0", "type", "bridge"]);
        server.ip(&["addr", "add", &format!("{SERVER_ADDR}/24"), "dev", "br0"]);
        server.ip(&["link", "set", "br0", "up"]);
        let hosts = [0, 1].map(|i| {
            let host = Netns::add(format!("{base}-{}", HOST_NAMES[i].to_lowercase()));
            let port = format!("v{}", HOST_NAMES[i].to_lowercase());
            must(
                Command::new("ip").args([
                    "link",
                    "add",
                    &port,
                    "netns",
                    server.name(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    host.name(),
                ]),
                "ip link add veth",
            );
            server.ip(&["link", "set", &port, "master", "br0", "up"]);
            host.ip(&[
                "addr",
                "add",
                &format!("{}/24", HOST_ADDRS[i]),
                "dev",
                "eth0",
            ]);
            host.ip(&["link", "set", "eth0", "up"]);
            host
        });
        Network { server, hosts }
    }
}

/// One "host": its mount of the shared volume and its network namespace.
pub struct Host<'a> {
    /// `A` or `B`.
    pub name: &'static str,
    /// Where this host mounts the shared volume (a pool target).
    pub mount: PathBuf,
    /// The host's network namespace (run its qpoold there).
    pub netns: &'a Netns,
}

/// A mounted FUSE client, unmounted (and its process reaped) when dropped.
struct FuseMount {
    dir: PathBuf,
    client: Proc,
}

impl FuseMount {
    /// Starts `cmd` (a FUSE client in the foreground that mounts `dir`) and waits for the
    /// mount of type `fstype`.
    fn start(cmd: &mut Command, what: &str, dir: &Path, fstype: &str, log: &Path) -> FuseMount {
        let mut client = Proc::spawn(cmd, what, log);
        wait_for(&format!("{what} to mount {}", dir.display()), || {
            client.assert_running();
            is_mounted(dir, fstype)
        });
        FuseMount {
            dir: dir.to_path_buf(),
            client,
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
        if !self.client.wait_or_kill(Duration::from_secs(30)) {
            let _ = Command::new("umount")
                .arg("--lazy")
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The GlusterFS volume options a shared qpool pool needs turned off: the client-side caches
/// of metadata (md-cache, which `stat-prefetch` switches) and data, and the deferred opens
/// and writes. With them on, host B saw another host's new volume as an empty file.
pub const GLUSTER_NO_CACHE: &[&str] = &[
    "performance.stat-prefetch",
    "performance.quick-read",
    "performance.io-cache",
    "performance.read-ahead",
    "performance.open-behind",
    "performance.write-behind",
    "performance.readdir-ahead",
];

/// A single-node GlusterFS volume (one brick), mounted by host A and host B.
pub struct Gluster {
    // Fields drop in order: the mounts first, then the servers, then the network.
    mounts: Vec<FuseMount>,
    glusterd: Option<Proc>,
    bricks: PathBuf,
    net: Network,
    root: tempfile::TempDir,
}

impl Gluster {
    /// The volume's name.
    pub const VOLUME: &'static str = "qvol";

    /// Starts glusterd in the server namespace, creates and starts the volume, and mounts
    /// it once from each host's namespace. Call inside [`in_private_namespace`].
    pub fn start() -> Gluster {
        let root = tempfile::Builder::new()
            .prefix("qpool-gluster-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        let r = root.path();
        for d in ["lib", "log", "brick", "hostA", "hostB"] {
            std::fs::create_dir(r.join(d)).expect("directory");
        }
        // glusterd keeps its state in fixed places: give it the test's own.
        std::fs::create_dir_all("/run/gluster").expect("/run/gluster");
        for (from, to) in [("lib", "/var/lib/glusterd"), ("log", "/var/log/glusterfs")] {
            std::fs::create_dir_all(to).expect("glusterd directory");
            mount(
                Some(&r.join(from)),
                to,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap_or_else(|e| panic!("bind {to}: {e}"));
        }
        let net = Network::new("g");
        let mut g = Gluster {
            mounts: Vec::new(),
            glusterd: None,
            bricks: PathBuf::from("/run/gluster/vols"),
            net,
            root,
        };
        let r = g.root.path().to_path_buf();
        let mut glusterd = g.net.server.command("/usr/sbin/glusterd");
        glusterd.args(["-N", "-l"]).arg(r.join("glusterd.log"));
        g.glusterd = Some(Proc::spawn(
            &mut glusterd,
            "glusterd",
            &r.join("glusterd.out"),
        ));
        wait_for("glusterd to answer", || {
            if let Some(p) = g.glusterd.as_mut() {
                p.assert_running();
            }
            g.gluster(&["volume", "list"]).status.success()
        });
        let brick = format!("{SERVER_ADDR}:{}", r.join("brick").display());
        g.gluster_ok(&["volume", "create", Self::VOLUME, &brick, "force"]);
        // No client-side caching of metadata or data: what one host does, the other sees at
        // once (README, "Shared storage": what the admin sets on a GlusterFS volume).
        for key in GLUSTER_NO_CACHE {
            g.set(key, "off");
        }
        g.gluster_ok(&["volume", "start", Self::VOLUME, "force"]);
        for (i, name) in HOST_NAMES.iter().enumerate() {
            let dir = r.join(format!("host{name}"));
            let mut client = g.net.hosts[i].command("/usr/sbin/glusterfs");
            // No kernel caching of names and attributes: another host's create, resize or
            // delete is seen at once (README, "Shared storage": what the admin sets).
            client
                .arg("-N")
                .args([
                    "--entry-timeout=0",
                    "--attribute-timeout=0",
                    "--negative-timeout=0",
                ])
                .arg(format!("--volfile-server={SERVER_ADDR}"))
                .arg(format!("--volfile-id={}", Self::VOLUME))
                .arg(format!(
                    "--log-file={}",
                    r.join(format!("host{name}.log")).display()
                ))
                .arg(&dir);
            let m = FuseMount::start(
                &mut client,
                &format!("glusterfs client of host {name}"),
                &dir,
                "fuse.glusterfs",
                &r.join(format!("host{name}.out")),
            );
            g.mounts.push(m);
        }
        g
    }

    fn gluster(&self, args: &[&str]) -> Output {
        let mut cmd = self.net.server.command("/usr/sbin/gluster");
        cmd.arg("--mode=script").args(args);
        output(&mut cmd, "gluster")
    }

    fn gluster_ok(&self, args: &[&str]) {
        let out = self.gluster(args);
        assert!(
            out.status.success(),
            "gluster {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets a volume option (`gluster volume set qvol KEY VALUE`).
    pub fn set(&self, key: &str, value: &str) {
        self.gluster_ok(&["volume", "set", Self::VOLUME, key, value]);
    }

    /// Host A and host B.
    pub fn hosts(&self) -> [Host<'_>; 2] {
        [0, 1].map(|i| Host {
            name: HOST_NAMES[i],
            mount: self.mounts[i].dir.clone(),
            netns: &self.net.hosts[i],
        })
    }

    /// The brick directory (what the servers store).
    pub fn brick(&self) -> PathBuf {
        self.root.path().join("brick")
    }

    /// Kills the brick processes glusterd started (they are not our children): only those
    /// whose command line names this cluster's brick.
    fn kill_bricks(&self) {
        let brick = self.brick();
        let Ok(entries) = std::fs::read_dir(self.bricks.join(Self::VOLUME)) else {
            return;
        };
        for e in entries.flatten() {
            let Some(pid) = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*brick.to_string_lossy());
            if ours {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let proc_dir = PathBuf::from(format!("/proc/{pid}"));
                let start = Instant::now();
                while proc_dir.exists() && start.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for Gluster {
    fn drop(&mut self) {
        self.mounts.clear();
        let _ = self.gluster(&["volume", "stop", Self::VOLUME, "force"]);
        self.kill_bricks();
        self.glusterd = None;
        for dir in ["/var/lib/glusterd", "/var/log/glusterfs"] {
            let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A single-node Ceph cluster (one monitor, one manager, one memstore OSD, one MDS) with
/// CephFS, mounted with ceph-fuse by host A and host B.
pub struct Ceph {
    // Fields drop in order: the mounts first, then the MDS, OSD, manager and monitor.
    mounts: Vec<FuseMount>,
    servers: Vec<Proc>,
    net: Network,
    root: tempfile::TempDir,
}

impl Ceph {
    /// The data pool of the filesystem.
    pub const DATA_POOL: &'static str = "cephfs_data";

    /// Creates and starts the cluster in the server namespace and mounts CephFS once from
    /// each host's namespace. Call inside [`in_private_namespace`].
    pub fn start() -> Ceph {
        let root = tempfile::Builder::new()
            .prefix("qpool-ceph-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        let net = Network::new("c");
        let mut c = Ceph {
            mounts: Vec::new(),
            servers: Vec::new(),
            net,
            root,
        };
        let r = c.root.path().to_path_buf();
        for d in [
            "run",
            "mon/mon.a",
            "mgr/mgr.x",
            "osd/osd.0",
            "mds/mds.a",
            "hostA",
            "hostB",
        ] {
            std::fs::create_dir_all(r.join(d)).expect("directory");
        }
        let fsid = uuid::Uuid::new_v4().hyphenated().to_string();
        let p = r.display();
        // `mon data avail crit = 0`: the monitor refuses to start when its filesystem has
        // under 5 % free, which on a well-filled test machine is no part of what is tested.
        let conf = format!(
            "[global]\n\
             fsid = {fsid}\n\
             mon host = v2:{SERVER_ADDR}:3300\n\
             public network = {SERVER_ADDR}/24\n\
             auth cluster required = none\n\
             auth service required = none\n\
             auth client required = none\n\
             ms bind ipv6 = false\n\
             osd pool default size = 1\n\
             osd pool default min size = 1\n\
             mon allow pool size one = true\n\
             mon data avail crit = 0\n\
             osd crush chooseleaf type = 0\n\
             osd objectstore = memstore\n\
             memstore device bytes = 4294967296\n\
             run dir = {p}/run\n\
             admin socket = {p}/run/$name.asok\n\
             log file = {p}/$name.log\n\
             pid file = {p}/run/$name.pid\n\
             mon data = {p}/mon/$name\n\
             mgr data = {p}/mgr/$name\n\
             osd data = {p}/osd/$name\n\
             mds data = {p}/mds/$name\n\
             keyring = {p}/keyring\n"
        );
        std::fs::write(c.conf(), conf).expect("ceph.conf");
        let keyring = r.join("keyring");
        must(
            Command::new("ceph-authtool")
                .arg("--create-keyring")
                .arg(&keyring)
                .args(["--gen-key", "-n", "mon.", "--cap", "mon", "allow *"]),
            "ceph-authtool",
        );
        let monmap = r.join("monmap");
        must(
            Command::new("monmaptool")
                .args(["--create", "--fsid", &fsid, "--addv", "a"])
                .arg(format!("[v2:{SERVER_ADDR}:3300]"))
                .arg(&monmap),
            "monmaptool",
        );
        must(
            c.server_command("ceph-mon")
                .args(["--mkfs", "-i", "a", "--monmap"])
                .arg(&monmap)
                .arg("--keyring")
                .arg(&keyring),
            "ceph-mon --mkfs",
        );
        c.serve("ceph-mon", &["-i", "a"]);
        c.serve("ceph-mgr", &["-i", "x"]);
        let osd_uuid = uuid::Uuid::new_v4().hyphenated().to_string();
        let id = c.ceph(&["osd", "new", &osd_uuid]);
        let id = id.trim();
        assert_eq!(id, "0", "the first OSD");
        must(
            c.server_command("ceph-osd")
                .args(["-i", id, "--mkfs", "--osd-uuid", &osd_uuid]),
            "ceph-osd --mkfs",
        );
        c.serve("ceph-osd", &["-i", id]);
        c.ceph(&["osd", "pool", "create", "cephfs_meta", "8"]);
        c.ceph(&["osd", "pool", "create", Self::DATA_POOL, "8"]);
        c.ceph(&["fs", "new", "cephfs", "cephfs_meta", Self::DATA_POOL]);
        c.serve("ceph-mds", &["-i", "a"]);
        wait_for("the MDS to become active", || {
            for s in &mut c.servers {
                s.assert_running();
            }
            c.ceph(&["mds", "stat"]).contains("up:active")
        });
        for (i, name) in HOST_NAMES.iter().enumerate() {
            let dir = r.join(format!("host{name}"));
            let mut client = c.net.hosts[i].command("/usr/bin/ceph-fuse");
            client
                .arg("-f")
                .arg("-c")
                .arg(c.conf())
                .args(["--id", "admin"])
                .arg(format!("--pid-file={}/run/host{name}.pid", p))
                .arg(format!("--admin-socket={}/run/host{name}.asok", p))
                .arg(format!("--log-file={}/host{name}.log", p))
                .arg(&dir);
            let m = FuseMount::start(
                &mut client,
                &format!("ceph-fuse of host {name}"),
                &dir,
                "fuse.ceph-fuse",
                &r.join(format!("host{name}.out")),
            );
            c.mounts.push(m);
        }
        c
    }

    fn conf(&self) -> PathBuf {
        self.root.path().join("ceph.conf")
    }

    /// A Ceph program run in the server namespace with this cluster's configuration.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = self.net.server.command(&format!("/usr/bin/{program}"));
        cmd.arg("-c").arg(self.conf());
        cmd
    }

    /// Starts a daemon in the foreground; the newest goes first on teardown.
    fn serve(&mut self, program: &str, args: &[&str]) {
        let log = self.root.path().join(format!("{program}.out"));
        let mut cmd = self.server_command(program);
        cmd.arg("-f").args(args);
        self.servers.insert(0, Proc::spawn(&mut cmd, program, &log));
    }

    /// `ceph ARGS…` against this cluster; panics unless it succeeds. Returns stdout.
    pub fn ceph(&self, args: &[&str]) -> String {
        let what = format!("ceph {args:?}");
        let out = output(
            self.server_command("ceph")
                .args(["--connect-timeout", "60"])
                .args(args),
            &what,
        );
        if !out.status.success() {
            let log = |n: &str| {
                let text = std::fs::read_to_string(self.root.path().join(n)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            };
            panic!(
                "{what} failed ({}):\n{}{}\n---- mon.a.log ----\n{}\n---- ceph-mon.out ----\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                log("mon.a.log"),
                log("ceph-mon.out"),
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The bytes the data pool stores, from `ceph df --format json` (the cluster's own
    /// accounting; it lags the clients by a few seconds, and lists the pool only once the
    /// manager has its first report, which this waits for).
    pub fn data_pool_stored(&self) -> u64 {
        let mut stored = None;
        wait_for("ceph df to list the data pool", || {
            let text = self.ceph(&["df", "--format", "json"]);
            let v: serde_json::Value = serde_json::from_str(&text).expect("ceph df json");
            stored = v["pools"].as_array().and_then(|pools| {
                pools
                    .iter()
                    .find(|p| p["name"] == Self::DATA_POOL)
                    .and_then(|p| p["stats"]["stored"].as_u64())
            });
            stored.is_some()
        });
        stored.unwrap_or_default()
    }

    /// Host A and host B.
    pub fn hosts(&self) -> [Host<'_>; 2] {
        [0, 1].map(|i| Host {
            name: HOST_NAMES[i],
            mount: self.mounts[i].dir.clone(),
            netns: &self.net.hosts[i],
        })
    }
}

/// A passthrough FUSE filesystem without `fallocate` (tests/python/nofalloc_fs.py over a
/// backing directory), unmounted when dropped.
pub struct NoFallocateFs {
    mount: Option<FuseMount>,
    root: tempfile::TempDir,
}

impl NoFallocateFs {
    /// Mounts it. Call inside [`in_private_namespace`].
    pub fn start() -> NoFallocateFs {
        let root = tempfile::Builder::new()
            .prefix("qpool-nofalloc-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        let r = root.path();
        std::fs::create_dir(r.join("backing")).expect("backing directory");
        std::fs::create_dir(r.join("mnt")).expect("mount point");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/nofalloc_fs.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).arg(r.join("backing")).arg(r.join("mnt"));
        let m = FuseMount::start(
            &mut cmd,
            "the no-fallocate FUSE filesystem",
            &r.join("mnt"),
            "fuse",
            &r.join("fuse.out"),
        );
        NoFallocateFs {
            mount: Some(m),
            root,
        }
    }

    /// The mount point.
    pub fn mount(&self) -> PathBuf {
        self.root.path().join("mnt")
    }

    /// The backing directory (the filesystem's own accounting: its files' `st_blocks`).
    pub fn backing(&self) -> PathBuf {
        self.root.path().join("backing")
    }
}

impl Drop for NoFallocateFs {
    fn drop(&mut self) {
        self.mount = None;
    }
}
