//! The `qpoold` face: settings, sockets, readiness, signals and the idle timeout around
//! [`crate::rpc::server`].
//!
//! Owns: the command line and `qpoold.conf` (command line wins, then the file, then the
//! defaults of design.md); opening the secret store (`--secrets`, read once at start-up, with
//! libvirt's secret driver behind it when `secrets_uri` is set, presented libvirt's system
//! token from `secrets_token`; a changed `secrets`, `secrets_uri` or `secrets_token` needs a
//! restart); attaching the libvirt bridge when `libvirt_uri` is set (before any
//! socket is served; a reload does not re-attach it, a changed `libvirt_uri` needs a restart);
//! the sockets ([`listeners`]: bound here, or passed by systemd's
//! socket activation, [`activation`]); telling systemd about start-up, reloads and shutdown
//! ([`notify`]); SIGHUP, which re-reads `qpoold.conf` and the pool definitions while every
//! connection stays open; clean shutdown on SIGTERM/SIGINT (no new connections, running
//! calls may finish for a while, then exit); and `--timeout` (exit after that many idle
//! seconds; under socket activation systemd keeps the sockets and starts qpoold again at
//! the next connection); and qpoold's one-shot mode ([`oneshot`]), the bridge jobs that
//! `qpool` hands over so that it never links libvirt.
//! Must not: handle protocol messages or touch volumes.

pub mod activation;
pub mod config;
pub mod listeners;
pub mod notify;
pub mod oneshot;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use thiserror::Error;

use crate::error::one_line;
use crate::paths;
use crate::pool::registry::{Registry, RegistryError};
use crate::rpc::server::Server;
use activation::ActivationError;
use listeners::{ListenError, Listeners};

/// How long a clean shutdown waits for running calls.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// qpoold: serves qpool pools over libvirt's remote protocol.
#[derive(Debug, Clone, Parser)]
#[command(name = "qpoold", version, about, long_about = None)]
pub struct Args {
    /// Read-write socket (mode 0600); ignored when systemd passes the sockets.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Read-only socket (mode 0666); default: the read-write path with "-ro" appended.
    #[arg(long, value_name = "PATH")]
    pub socket_ro: Option<PathBuf>,
    /// Directory of libvirt pool XML definitions.
    #[arg(long, value_name = "DIR")]
    pub pools: Option<PathBuf>,
    /// Directory of the secrets (libvirt secret XML and base64 values, kept mode 0700).
    #[arg(long, value_name = "DIR")]
    pub secrets: Option<PathBuf>,
    /// Configuration file (`key = value` lines).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Exit after this many seconds without connections or calls (0: never); the units
    /// pass 120, as libvirt's do, for socket activation.
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
    /// The secrets' directory.
    pub secrets: PathBuf,
    /// libvirt's secret driver, asked for the passphrases the store does not have.
    pub secrets_uri: Option<String>,
    /// The file of libvirt's system token presented to `secrets_uri` (`None`: libvirt's own).
    pub secrets_token: Option<PathBuf>,
    /// Idle timeout in seconds (0: never).
    pub timeout: u64,
    /// Target of the default pool.
    pub default_pool_dir: PathBuf,
    /// How the pools reserve space (`fallocate` in qpoold.conf; `auto` by default).
    pub fallocate: crate::model::FallocateMode,
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
        secrets: args
            .secrets
            .clone()
            .or(file.secrets)
            .unwrap_or_else(|| PathBuf::from(paths::SECRETS)),
        secrets_uri: file.secrets_uri,
        secrets_token: file.secrets_token,
        timeout: args.timeout.or(file.timeout).unwrap_or(0),
        default_pool_dir: args
            .default_pool_dir
            .clone()
            .or(file.default_pool_dir)
            .unwrap_or_else(crate::paths::default_pool_dir),
        fallocate: file.fallocate.unwrap_or_default(),
        libvirt: file.libvirt_uri.map(|uri| crate::bridge::Settings {
            uri,
            prefix: file.libvirt_prefix.unwrap_or_default(),
        }),
    })
}

/// Why qpoold cannot start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The secret store cannot be read.
    #[error("cannot open the secret store")]
    Secrets(#[source] crate::pool::SecretStoreError),
    /// `secrets_uri` cannot be used.
    #[error("secrets_uri")]
    SecretsUri(#[source] Box<crate::bridge::BridgeError>),
    /// `qpoold.conf` is unreadable or wrong.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The sockets systemd passed cannot be used.
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// A socket cannot be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The pool definitions cannot be loaded.
    #[error(transparent)]
    Registry(Box<RegistryError>),
    /// The libvirt bridge cannot be attached (`libvirt_uri`).
    #[error("libvirt_uri")]
    Bridge(#[source] Box<crate::bridge::BridgeError>),
    /// Signals cannot be blocked for the signal thread.
    #[error("cannot block signals")]
    Signals(#[source] nix::Error),
}

impl From<RegistryError> for DaemonError {
    fn from(e: RegistryError) -> DaemonError {
        DaemonError::Registry(Box::new(e))
    }
}

/// Runs the daemon until a signal or the idle timeout; a start-up failure is one
/// `error: …` line on stderr and exit status 1.
pub fn run(args: &Args) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = one_line(&e);
            eprintln!("error: {line}");
            notify::status(&format!("error: {line}"));
            ExitCode::from(1)
        }
    }
}

/// What the signal thread and the idle loop share.
struct Running {
    args: Args,
    server: Arc<Server>,
    listeners: Listeners,
    settings: Settings,
    /// `--timeout`, which a reload may change.
    timeout: AtomicU64,
}

impl Running {
    /// The `STATUS=` line while serving.
    fn status(&self) -> String {
        let pools = self.server.registry().list();
        let active = pools.iter().filter(|p| p.active).count();
        let plural = if pools.len() == 1 { "" } else { "s" };
        format!(
            "serving {} pool{plural} ({active} active) on {}",
            pools.len(),
            self.listeners.describe()
        )
    }

    /// SIGHUP: re-reads `qpoold.conf` (the idle timeout takes effect at once; new socket
    /// or pool directory paths at the next start) and the pool definitions. Connections,
    /// running calls and running pools are left alone; a broken file is logged and the
    /// previous settings stay.
    fn reload(&self) {
        notify::reloading();
        log::info!("SIGHUP: reloading qpoold.conf and the pool definitions");
        match settings(&self.args) {
            Ok(new) => {
                let old = self.timeout.swap(new.timeout, Ordering::SeqCst);
                if old != new.timeout {
                    log::info!("idle timeout: {} s (was {old} s)", new.timeout);
                }
                if new.pools != self.settings.pools {
                    log::warn!(
                        "pool definitions directory {} takes effect at the next start; still reading {}",
                        new.pools.display(),
                        self.settings.pools.display()
                    );
                }
                if !self.listeners.activated
                    && (new.socket != self.settings.socket
                        || new.socket_ro != self.settings.socket_ro)
                {
                    log::warn!("new socket paths take effect at the next start");
                }
            }
            Err(e) => log::error!("reload: {}; keeping the previous settings", one_line(&e)),
        }
        match self.server.registry().reload() {
            Ok(r) => {
                for skipped in &r.skipped {
                    log::warn!("reload: ignoring {skipped}");
                }
                log::info!(
                    "reloaded: {} defined, {} redefined, {} undefined, {} started",
                    r.defined.len(),
                    r.redefined.len(),
                    r.undefined.len(),
                    r.started.len()
                );
            }
            Err(e) => log::error!("reload: {}", one_line(&e)),
        }
        notify::ready(&self.status());
    }

    /// Stops accepting, removes the sockets qpoold created, and waits a while for running
    /// calls.
    fn stop(&self, why: &str) {
        notify::stopping(why);
        self.server.stop_accepting();
        self.listeners.remove_created();
        let start = Instant::now();
        while self.server.running_calls() > 0 && start.elapsed() < SHUTDOWN_GRACE {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(args: &Args) -> Result<(), DaemonError> {
    let settings = settings(args)?;
    // Before any thread starts: the signal thread must be the only one to take them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals.thread_block().map_err(DaemonError::Signals)?;
    let inherited = activation::take()?;
    let mut secrets =
        crate::pool::SecretStore::open(&settings.secrets).map_err(DaemonError::Secrets)?;
    if let Some(uri) = &settings.secrets_uri {
        let libvirt = crate::bridge::LibvirtSecrets::new(uri, settings.secrets_token.as_deref())
            .map_err(|e| DaemonError::SecretsUri(Box::new(e)))?;
        secrets = secrets.with_fallback(Arc::new(libvirt));
    }
    let registry = Arc::new(Registry::load_with(
        &settings.pools,
        &settings.default_pool_dir,
        settings.fallocate,
        Some(Arc::new(secrets)),
    )?);
    if let Some(bridge) = settings.libvirt.clone() {
        // Before the sockets: a client that gets an answer finds the mirrors in place.
        crate::bridge::attach(&registry, bridge).map_err(|e| DaemonError::Bridge(Box::new(e)))?;
    }
    let listeners = match inherited {
        Some(sockets) => Listeners::inherited(sockets),
        None => Listeners::bind(&settings.socket, &settings.socket_ro)?,
    };
    let server = Server::new(registry);
    let mut accepting = Vec::new();
    for socket in &listeners.sockets {
        let listener = match socket.listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                listeners.remove_created();
                return Err(ListenError::Duplicate {
                    path: socket.describe(),
                    source: e,
                }
                .into());
            }
        };
        accepting.push((listener, socket.readonly));
    }
    let running = Arc::new(Running {
        args: args.clone(),
        server: Arc::clone(&server),
        timeout: AtomicU64::new(settings.timeout),
        settings,
        listeners,
    });
    log::info!(
        "qpoold listening on {}{} (pools in {})",
        running.listeners.describe(),
        if running.listeners.activated {
            ", passed by the service manager"
        } else {
            ""
        },
        running.settings.pools.display()
    );
    // Ready before the first connection is accepted, so before any call is answered.
    notify::ready(&running.status());
    for (listener, readonly) in accepting {
        let server = Arc::clone(&server);
        std::thread::spawn(move || server.serve(listener, readonly));
    }
    {
        let running = Arc::clone(&running);
        std::thread::spawn(move || {
            loop {
                match signals.wait() {
                    Ok(Signal::SIGHUP) => running.reload(),
                    Ok(signal) => {
                        log::info!("{signal:?}: shutting down");
                        running.stop(&format!("{signal:?}: shutting down"));
                        std::process::exit(0);
                    }
                    Err(e) => log::error!("cannot wait for signals: {e}"),
                }
            }
        });
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        server.keepalive_tick();
        let timeout = running.timeout.load(Ordering::SeqCst);
        if timeout > 0
            && server.busy() == 0
            && server.idle_since().elapsed() >= Duration::from_secs(timeout)
        {
            log::info!("idle for {timeout} s: exiting");
            running.stop(&format!("idle for {timeout} s"));
            return Ok(());
        }
    }
}
