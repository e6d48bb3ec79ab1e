//! The `qpoold` face: settings, sockets, signals and the idle timeout around
//! [`crate::rpc::server`].
//!
//! Owns: the command line and `qpoold.conf` (command line wins, then the file, then the
//! defaults of design.md), attaching the libvirt bridge when `libvirt_uri` is set, creating
//! the read-write (0600) and read-only (0666) sockets and removing them on exit, clean
//! shutdown on SIGTERM/SIGINT (no new connections, running calls may finish for a while, then
//! exit), and `--timeout` (exit after that many idle seconds).
//! Must not: handle protocol messages or touch volumes.

pub mod config;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use crate::paths;
use crate::pool::registry::Registry;
use crate::rpc::server::Server;

/// How long a clean shutdown waits for running calls.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// qpoold: serves qpool pools over libvirt's remote protocol.
#[derive(Debug, Parser)]
#[command(name = "qpoold", version, about, long_about = None)]
pub struct Args {
    /// Read-write socket (mode 0600).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Read-only socket (mode 0666); default: the read-write path with "-ro" appended.
    #[arg(long, value_name = "PATH")]
    pub socket_ro: Option<PathBuf>,
    /// Directory of libvirt pool XML definitions.
    #[arg(long, value_name = "DIR")]
    pub pools: Option<PathBuf>,
    /// Configuration file (`key = value` lines).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Exit after this many seconds without connections or calls (0: never).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Target directory of the `default` pool defined when no pool is.
    #[arg(long, value_name = "DIR")]
    pub default_pool_dir: Option<PathBuf>,
}

/// Settings after the command line, the file and the defaults are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Read-write socket.
    pub socket: PathBuf,
    /// Read-only socket.
    pub socket_ro: PathBuf,
    /// Pool definitions.
    pub pools: PathBuf,
    /// Idle timeout in seconds (0: never).
    pub timeout: u64,
    /// Target of the default pool.
    pub default_pool_dir: PathBuf,
    /// Mirror the pools into this libvirtd (qpoold.conf `libvirt_uri`, `libvirt_prefix`).
    pub libvirt: Option<crate::bridge::Settings>,
}

/// Merges command line, file and defaults.
pub fn settings(args: &Args) -> Result<Settings, config::ConfigError> {
    let file = match &args.config {
        Some(path) => config::load(path, true)?,
        None => config::load(Path::new(paths::CONFIG), false)?,
    };
    let socket = args
        .socket
        .clone()
        .or(file.socket)
        .unwrap_or_else(|| PathBuf::from(paths::SOCKET));
    let socket_ro = args
        .socket_ro
        .clone()
        .or(file.socket_ro)
        .unwrap_or_else(|| paths::read_only_socket(&socket));
    Ok(Settings {
        socket,
        socket_ro,
        pools: args
            .pools
            .clone()
            .or(file.pools)
            .unwrap_or_else(|| PathBuf::from(paths::POOL_DEFINITIONS)),
        timeout: args.timeout.or(file.timeout).unwrap_or(0),
        default_pool_dir: args
            .default_pool_dir
            .clone()
            .or(file.default_pool_dir)
            .unwrap_or_else(crate::paths::default_pool_dir),
        libvirt: file.libvirt_uri.map(|uri| crate::bridge::Settings {
            uri,
            prefix: file.libvirt_prefix.unwrap_or_default(),
        }),
    })
}

/// Binds a socket, replacing a stale one, and sets its mode.
fn bind(path: &Path, mode: u32) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("another daemon is listening on {}", path.display()));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(listener)
}

fn cleanup(settings: &Settings) {
    let _ = std::fs::remove_file(&settings.socket);
    let _ = std::fs::remove_file(&settings.socket_ro);
}

/// Runs the daemon until a signal or the idle timeout.
pub fn run(args: &Args) -> ExitCode {
    let settings = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::error::one_line(&e));
            return ExitCode::from(1);
        }
    };
    // Signals are taken by a dedicated thread; every other thread has them blocked.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    if let Err(e) = signals.thread_block() {
        eprintln!("error: cannot block signals: {e}");
        return ExitCode::from(1);
    }
    let registry = match Registry::load(&settings.pools, &settings.default_pool_dir) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("error: {}", crate::error::one_line(&e));
            return ExitCode::from(1);
        }
    };
    if let Some(bridge) = settings.libvirt.clone() {
        // Before the sockets: a client that gets an answer finds the mirrors in place.
        if let Err(e) = crate::bridge::attach(&registry, bridge) {
            eprintln!("error: libvirt_uri: {}", crate::error::one_line(&e));
            return ExitCode::from(1);
        }
    }
    let server = Server::new(registry);
    let rw = match bind(&settings.socket, 0o600) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let ro = match bind(&settings.socket_ro, 0o666) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(&settings.socket);
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    for (listener, readonly) in [(rw, false), (ro, true)] {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve(listener, readonly));
    }
    log::info!(
        "qpoold listening on {} and {} (pools in {})",
        settings.socket.display(),
        settings.socket_ro.display(),
        settings.pools.display()
    );
    {
        let settings = settings.clone();
        let server = Arc::clone(&server);
        std::thread::spawn(move || {
            let signal = signals.wait();
            log::info!("{signal:?}: shutting down");
            cleanup(&settings);
            let start = Instant::now();
            while server.running_calls() > 0 && start.elapsed() < SHUTDOWN_GRACE {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::process::exit(0);
        });
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        server.keepalive_tick();
        if settings.timeout > 0
            && server.busy() == 0
            && server.idle_since().elapsed() >= Duration::from_secs(settings.timeout)
        {
            log::info!("idle for {} s: exiting", settings.timeout);
            cleanup(&settings);
            return ExitCode::SUCCESS;
        }
    }
}
