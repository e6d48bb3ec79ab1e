//! The `qpool` command line: virsh's storage verbs on a pool directory, no daemon needed.
//!
//! Owns: the command's run from start to exit: parsing the arguments (`args`), opening the
//! pool they name, running the verb (`verbs`: arguments into engine calls), printing what
//! it returns (virsh-compatible output from [`output`]), and translating every error into
//! one `error: …` line and exit status 1. The libvirt bridge's work (`libvirt-sync`, the
//! mirror's refresh after a change) is handed to qpoold ([`qpoold`]).
//! Must not: implement engine logic (everything it does is a call into [`crate::pool`]), call
//! libvirt (the `qpool` binary must not link it), or be imported by any other module: it is a
//! face.

mod args;
pub mod output;
pub mod progress;
pub mod qpoold;
mod verbs;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use thiserror::Error;

use crate::bridge::job::{Job, NOT_REFRESHED};
use crate::error::one_line;
use crate::model::{FallocateMode, UnknownName};
use crate::pool::Pool;
use crate::units::SizeError;
pub use args::{
    Args, Command, FALLOCATE_ENV, LIBVIRT_URI_ENV, NO_FALLOCATE_ENV, OutputFormat, POOL_DIR_ENV,
    Transfer,
};

/// Command-line failures: an engine error, or an argument the engine never saw.
#[derive(Debug, Error)]
pub enum Error {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] crate::Error),
    /// The passphrase of an encrypted volume could not be had.
    #[error(transparent)]
    Secret(crate::pool::SecretError),
    /// A volume XML file could not be read.
    #[error("cannot read {}", path.display())]
    ReadingFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A local file could not be created.
    #[error("cannot write {}", path.display())]
    WritingFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A volume XML file was refused.
    #[error("{}", path.display())]
    XmlFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::Error,
    },
    /// A size argument is malformed.
    #[error("malformed {what} '{value}'")]
    Size {
        /// Which argument.
        what: &'static str,
        /// As given.
        value: String,
        /// Why.
        #[source]
        source: SizeError,
    },
    /// An unknown wipe algorithm.
    #[error(transparent)]
    Algorithm(UnknownName),
    /// `QPOOL_FALLOCATE` names no setting.
    #[error("{FALLOCATE_ENV}")]
    Fallocate(#[source] UnknownName),
    /// A negative size without `--shrink` (virsh's rule).
    #[error("negative size requires --shrink")]
    NegativeSize,
    /// The libvirt bridge failed.
    #[error(transparent)]
    Bridge(#[from] crate::bridge::BridgeError),
    /// qpoold could not run the bridge's job.
    #[error(transparent)]
    Qpoold(#[from] qpoold::QpooldError),
    /// qpoold ran the bridge's job, which failed; qpoold has said why (its `error:` line).
    #[error("the libvirt bridge failed in qpoold")]
    Reported,
    /// qpoold.conf could not be read for the bridge settings.
    #[error(transparent)]
    Config(#[from] crate::daemon::config::ConfigError),
    /// A format argument is not supported.
    #[error("--{option}")]
    Format {
        /// Which option.
        option: &'static str,
        /// What is wrong.
        #[source]
        source: UnknownName,
    },
}

impl Error {
    /// Exit status: every failure is a user-visible error, status 1 (as virsh).
    pub fn exit_code(&self) -> u8 {
        1
    }

    /// Whether the failure has been said already (by qpoold), so that no `error:` line is due.
    pub fn is_reported(&self) -> bool {
        matches!(self, Error::Reported)
    }
}

/// Entry point of the `qpool` binary.
pub fn main() -> ExitCode {
    crate::logging::init();
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first paragraph says what is wrong; for a missing argument its name is
            // on the indented line(s) after the first, so join the whole paragraph.
            let rendered = e.to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            let message = match paragraph.join(" ") {
                m if m.is_empty() => "invalid arguments".to_string(),
                m => m,
            };
            let message = message.trim_start_matches("error: ");
            eprintln!("error: {message} (see 'qpool --help')");
            return ExitCode::from(1);
        }
    };
    match run(&args) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            let _ = match args.output {
                // virsh ends every command's output with an empty line.
                OutputFormat::Human => writeln!(stdout, "{text}"),
                OutputFormat::Json => write!(stdout, "{text}"),
            };
            ExitCode::SUCCESS
        }
        Err(e) => {
            if !e.is_reported() {
                eprintln!("error: {}", one_line(&e));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// The pool the arguments name, and whether it is autostarted (the default pool is, as
/// libvirt's is): the default pool, created on first use, when none is named.
pub fn open_pool(pool_dir: Option<&Path>) -> Result<(Pool, bool), Error> {
    let default = crate::paths::default_pool_dir();
    let (mut pool, autostart) = match pool_dir {
        Some(dir) if dir != default => {
            let name = std::fs::canonicalize(dir)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "default".to_string());
            (Pool::open(dir, &name)?, false)
        }
        _ => (Pool::open_or_create(&default, "default")?, true),
    };
    if let Some(mode) = std::env::var_os(FALLOCATE_ENV).filter(|v| !v.is_empty()) {
        let mode: FallocateMode = mode.to_string_lossy().parse().map_err(Error::Fallocate)?;
        pool.set_fallocate_mode(mode);
    }
    if std::env::var_os(NO_FALLOCATE_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        pool.set_fallocate_disabled(true);
    }
    Ok((pool, autostart))
}

impl Command {
    /// Whether the verb changes the pool's volumes (a mirror in libvirtd is refreshed after
    /// it).
    fn changes_volumes(&self) -> bool {
        matches!(
            self,
            Self::VolCreate { .. }
                | Self::VolCreateAs { .. }
                | Self::VolClone { .. }
                | Self::VolCreateFrom { .. }
                | Self::VolDelete { .. }
                | Self::VolUpload { .. }
                | Self::VolWipe { .. }
                | Self::VolResize { .. }
                | Self::PoolRefresh
        )
    }
}

/// The bridge settings: `--connect` (or the environment), else qpoold.conf's `libvirt_uri`;
/// the prefix from `--prefix`, else qpoold.conf's `libvirt_prefix`. `None` when no URI is set.
fn bridge_settings(
    connect: Option<&str>,
    prefix: Option<&str>,
    config: &Path,
) -> Result<Option<crate::bridge::Settings>, Error> {
    let file = crate::daemon::config::load(config, false)?;
    let Some(uri) = connect.map(str::to_string).or(file.libvirt_uri) else {
        return Ok(None);
    };
    let prefix = prefix
        .map(str::to_string)
        .or(file.libvirt_prefix)
        .unwrap_or_default();
    Ok(Some(crate::bridge::Settings { uri, prefix }))
}

/// `libvirt-sync`, run by qpoold, which prints what was done; each pool that failed gets a
/// warning line, and the whole command fails. What is left to print here is virsh's empty
/// line after the output.
fn libvirt_sync(settings: &crate::bridge::Settings, pools: &Path) -> Result<String, Error> {
    if !crate::bridge::BUILT {
        return Err(crate::bridge::BridgeError::NotBuilt.into());
    }
    let job = Job::sync(settings, pools, &crate::paths::default_pool_dir());
    match qpoold::run(&job)? {
        qpoold::Outcome::Done => Ok(String::new()),
        qpoold::Outcome::Failed => Err(Error::Reported),
    }
}

/// After a change: refreshes the libvirt mirror of the pool (defining it when missing), in
/// qpoold. The change stands whatever happens here; a failure is a warning (qpoold's, or
/// here when qpoold cannot run).
fn mirror_change(settings: &crate::bridge::Settings, pool: &Pool, autostart: bool) {
    let mirrored = crate::bridge::Mirrored {
        name: pool.name().to_string(),
        uuid: Some(pool.uuid()),
        target: pool.path().to_path_buf(),
        autostart,
        active: true,
    };
    let result = if crate::bridge::BUILT {
        qpoold::run(&Job::changed(settings, &mirrored)).map_err(Error::from)
    } else {
        Err(crate::bridge::BridgeError::NotBuilt.into())
    };
    match result {
        // Failed: qpoold has printed the warning.
        Ok(qpoold::Outcome::Done | qpoold::Outcome::Failed) => {}
        Err(e) => eprintln!("warning: {NOT_REFRESHED}: {}", one_line(&e)),
    }
}

/// Runs one verb and returns what it prints on success.
pub fn run(args: &Args) -> Result<String, Error> {
    let config = Path::new(crate::paths::CONFIG);
    if let Command::LibvirtSync { pools, prefix } = &args.command {
        let settings = bridge_settings(args.connect.as_deref(), prefix.as_deref(), config)?
            .unwrap_or_else(|| crate::bridge::Settings {
                uri: crate::bridge::DEFAULT_URI.to_string(),
                prefix: prefix.clone().unwrap_or_default(),
            });
        return libvirt_sync(&settings, pools);
    }
    let bridge = if args.command.changes_volumes() {
        // An unreadable qpoold.conf does not stop a change; it only leaves libvirtd untold.
        bridge_settings(args.connect.as_deref(), None, config).unwrap_or_else(|e| {
            eprintln!("warning: no libvirt mirror: {}", one_line(&e));
            None
        })
    } else {
        None
    };
    // Asked for on the command line, a bridge this build lacks is an error before anything
    // changes; asked for by qpoold.conf, mirror_change warns.
    if args.connect.is_some() && bridge.is_some() && !crate::bridge::BUILT {
        return Err(crate::bridge::BridgeError::NotBuilt.into());
    }
    let (mut pool, autostart) = open_pool(args.pool_dir.as_deref())?;
    if let Some(bar) = progress::Bar::for_stderr(args.quiet) {
        pool.set_progress(Box::new(bar));
    }
    if let Command::VolCreate {
        secret_file,
        secret_uri,
        ..
    }
    | Command::VolCreateFrom {
        secret_file,
        secret_uri,
        ..
    } = &args.command
    {
        if let Some(path) = secret_file {
            let secret = crate::pool::PassphraseFile::read(path).map_err(Error::Secret)?;
            pool.set_secrets(std::sync::Arc::new(secret));
        }
        if let Some(uri) = secret_uri {
            // qpoold.conf's `secrets_token`, as qpoold reads it; an unreadable file was
            // warned of above and leaves libvirt's own token.
            let token = crate::daemon::config::load(config, false)
                .ok()
                .and_then(|file| file.secrets_token);
            pool.set_secrets(std::sync::Arc::new(qpoold::LibvirtSecret::new(uri, token)));
        }
    }
    let text = verbs::run_verb(args, &pool, autostart)?;
    if let Some(settings) = &bridge {
        mirror_change(settings, &pool, autostart);
    }
    Ok(text)
}
