//! The `qpool` command line: virsh's storage verbs on a pool directory, no daemon needed.
//!
//! Owns: argument parsing (virsh's verb names, flags and size suffixes), turning arguments
//! into engine calls, printing virsh-compatible output ([`output`]), and translating every
//! error into one `error: …` line and exit status 1. The libvirt bridge's work (`libvirt-sync`,
//! the mirror's refresh after a change) is handed to qpoold ([`qpoold`]).
//! Must not: implement engine logic (everything it does is a call into [`crate::pool`]), call
//! libvirt (the `qpool` binary must not link it), or be imported by any other module: it is a
//! face.

pub mod output;
pub mod progress;
pub mod qpoold;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use thiserror::Error;

use crate::bridge::job::{Job, NOT_REFRESHED};
use crate::error::one_line;
use crate::model::{FallocateMode, UnknownName, VolFormat, WipeAlgorithm};
use crate::policy::CreateFlags;
use crate::pool::{Pool, ResizeRequest, WhenInUse};
use crate::units::{SizeError, parse_virsh_size};
use crate::xml::{BackingStoreDef, CapacityRule, VolumeDef};

/// Environment variable naming the pool directory (like `--pool-dir`).
pub const POOL_DIR_ENV: &str = "QPOOL_POOL_DIR";
/// Environment variable naming the libvirt URI to mirror changes into (like `--connect`).
pub const LIBVIRT_URI_ENV: &str = "QPOOL_LIBVIRT_URI";
/// Environment variable that makes qpool behave as if the filesystem had no `fallocate`
/// (to exercise the zero-fill fallback in tests).
pub const NO_FALLOCATE_ENV: &str = "QPOOL_NO_FALLOCATE";
/// Environment variable with the pool's `fallocate` setting: `auto` (the default), `native`
/// or `zero` (what a pool definition or qpoold.conf says for qpoold's pools).
pub const FALLOCATE_ENV: &str = "QPOOL_FALLOCATE";

/// qpool: libvirt-compatible storage pool tool for qcow2 and raw volumes.
#[derive(Debug, Parser)]
#[command(name = "qpool", version, about, long_about = None)]
pub struct Args {
    /// Pool directory (default: /var/lib/qpool/images as root, else
    /// $XDG_DATA_HOME/qpool/images).
    #[arg(long, global = true, env = POOL_DIR_ENV, value_name = "DIR")]
    pub pool_dir: Option<PathBuf>,
    /// libvirtd to mirror the pool into after each change (default: libvirt_uri in
    /// /etc/qpool/qpoold.conf, if set); for libvirt-sync, the libvirtd to sync (default:
    /// that, else qemu:///system).
    #[arg(long, short = 'c', global = true, env = LIBVIRT_URI_ENV, value_name = "URI")]
    pub connect: Option<String>,
    /// Output: `human` (virsh's text) or `json` (one JSON document, sizes in bytes) for
    /// vol-info, vol-list, pool-info, explain and the vol-create verbs.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// No progress bar on long work.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// What the verbs that report print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// virsh's text.
    Human,
    /// One JSON document on stdout; the field names are stable (README, "JSON output").
    Json,
}

/// The verbs, with virsh's names and flags.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a volume from an XML file.
    #[command(name = "vol-create")]
    VolCreate {
        /// Volume XML file.
        file: PathBuf,
        /// libvirt's VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA.
        #[arg(long)]
        prealloc_metadata: bool,
        /// The passphrase of an encrypted volume (`<encryption format='luks'>`): the file's
        /// bytes, less one final newline. Never taken from the command line or the
        /// environment.
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
        /// The passphrase from the libvirt secret the XML's `<secret>` names, asked of the
        /// libvirt daemon at this URI (`secret:///system`, qpoold's socket, …); only secrets
        /// that are not private can be read.
        #[arg(long, value_name = "URI", conflicts_with = "secret_file")]
        secret_uri: Option<String>,
    },
    /// Create a volume from a set of arguments.
    #[command(name = "vol-create-as")]
    VolCreateAs {
        /// Volume name.
        name: String,
        /// Size of the volume, as a scaled integer (default bytes).
        capacity: String,
        /// Initial allocation size, as a scaled integer (default bytes).
        #[arg(long)]
        allocation: Option<String>,
        /// File format type: raw or qcow2.
        #[arg(long)]
        format: Option<String>,
        /// Backing volume (a name in this pool, or a path).
        #[arg(long)]
        backing_vol: Option<String>,
        /// Format of the backing volume.
        #[arg(long, requires = "backing_vol")]
        backing_vol_format: Option<String>,
        /// libvirt's VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA.
        #[arg(long)]
        prealloc_metadata: bool,
    },
    /// Clone a volume.
    #[command(name = "vol-clone")]
    VolClone {
        /// Source volume name or path.
        vol: String,
        /// Name of the new volume.
        newname: String,
        /// libvirt's VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA.
        #[arg(long)]
        prealloc_metadata: bool,
        /// Share the source's blocks (FICLONE) instead of copying them.
        #[arg(long)]
        reflink: bool,
    },
    /// Create a volume from an XML file, using another volume as input.
    #[command(name = "vol-create-from")]
    VolCreateFrom {
        /// Volume XML file.
        file: PathBuf,
        /// Input volume name or path.
        vol: String,
        /// libvirt's VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA.
        #[arg(long)]
        prealloc_metadata: bool,
        /// Share the input volume's blocks (FICLONE) instead of copying them.
        #[arg(long)]
        reflink: bool,
    },
    /// List volumes.
    #[command(name = "vol-list")]
    VolList {
        /// Add Type, Capacity and Allocation columns.
        #[arg(long)]
        details: bool,
    },
    /// Storage volume information.
    #[command(name = "vol-info")]
    VolInfo {
        /// Volume name or path.
        vol: String,
        /// Sizes in bytes rather than pretty-printed.
        #[arg(long)]
        bytes: bool,
        /// Show the physical size instead of the allocation.
        #[arg(long)]
        physical: bool,
    },
    /// Volume information in XML.
    #[command(name = "vol-dumpxml")]
    VolDumpxml {
        /// Volume name or path.
        vol: String,
    },
    /// Path of a volume.
    #[command(name = "vol-path")]
    VolPath {
        /// Volume name or path.
        vol: String,
    },
    /// Delete a volume.
    #[command(name = "vol-delete")]
    VolDelete {
        /// Volume name or path.
        vol: String,
        /// Delete it even though another process (a running QEMU, a copy) holds it.
        #[arg(long)]
        force: bool,
    },
    /// Upload file contents to a volume.
    #[command(name = "vol-upload")]
    VolUpload(Transfer),
    /// Download volume contents to a file.
    #[command(name = "vol-download")]
    VolDownload(Transfer),
    /// Wipe a volume's data.
    #[command(name = "vol-wipe")]
    VolWipe {
        /// Volume name or path.
        vol: String,
        /// Wipe algorithm: zero, trim or random.
        #[arg(long, default_value = "zero")]
        algorithm: String,
        /// Wipe it even though another process (a running QEMU, a copy) holds it.
        #[arg(long)]
        force: bool,
    },
    /// Resize a volume.
    #[command(name = "vol-resize")]
    VolResize {
        /// Volume name or path.
        vol: String,
        /// New capacity as a scaled integer (default bytes); `-N` with --shrink shrinks by N.
        #[arg(allow_hyphen_values = true)]
        capacity: String,
        /// Allocate the new capacity, rather than leaving it sparse.
        #[arg(long)]
        allocate: bool,
        /// Use capacity as a delta to the current size, rather than the new size.
        #[arg(long)]
        delta: bool,
        /// Allow the resize to shrink the volume.
        #[arg(long)]
        shrink: bool,
        /// Resize it even though another process (a running QEMU, a copy) holds it.
        #[arg(long)]
        force: bool,
    },
    /// Pool information.
    #[command(name = "pool-info")]
    PoolInfo {
        /// Sizes in bytes rather than pretty-printed.
        #[arg(long)]
        bytes: bool,
    },
    /// Refresh the pool: remove leftovers of interrupted creates.
    #[command(name = "pool-refresh")]
    PoolRefresh,
    /// Pool information in XML.
    #[command(name = "pool-dumpxml")]
    PoolDumpxml,
    /// Mirror qpoold's pools into libvirtd as dir pools; undefine the mirrors qpool made of
    /// pools it no longer has.
    #[command(name = "libvirt-sync")]
    LibvirtSync {
        /// Directory of qpoold's pool definitions (without any: the default pool).
        #[arg(long, value_name = "DIR", default_value = crate::paths::POOL_DEFINITIONS)]
        pools: PathBuf,
        /// Put before each pool name in libvirtd (default: libvirt_prefix in
        /// /etc/qpool/qpoold.conf, else none).
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
    /// Show the preallocation a volume XML would get, and why; creates nothing.
    Explain {
        /// Volume XML file.
        file: PathBuf,
        /// libvirt's VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA.
        #[arg(long)]
        prealloc_metadata: bool,
    },
}

/// `vol-upload` and `vol-download`: a volume's file bytes to or from a local file.
#[derive(Debug, clap::Args)]
pub struct Transfer {
    /// Volume name or path.
    pub vol: String,
    /// The local file: read from on upload, written to on download.
    pub file: PathBuf,
    /// Volume offset to start at.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Amount of data to move (0: to the end).
    #[arg(long, default_value_t = 0)]
    pub length: u64,
    /// Keep holes: the source's holes read as zeros in the destination without being written.
    #[arg(long)]
    pub sparse: bool,
    /// vol-upload: write the volume even though another process (a running QEMU) holds it.
    #[arg(long)]
    pub force: bool,
}

/// Command-line failures: an engine error, or an argument the engine never saw.
#[derive(Debug, Error)]
pub enum Error {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] crate::Error),
    /// The passphrase file of an encrypted volume could not be used.
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

fn read_volume_xml(path: &Path) -> Result<VolumeDef, Error> {
    read_volume_xml_with(path, CapacityRule::Required)
}

/// Reads a volume XML file under `rule` (a create-from may leave the capacity out).
fn read_volume_xml_with(path: &Path, rule: CapacityRule) -> Result<VolumeDef, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadingFile {
        path: path.to_path_buf(),
        source,
    })?;
    VolumeDef::parse_with(&text, rule).map_err(|e| Error::XmlFile {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

fn size_arg(what: &'static str, value: &str) -> Result<u64, Error> {
    parse_virsh_size(value).map_err(|source| Error::Size {
        what,
        value: value.to_string(),
        source,
    })
}

fn format_arg(option: &'static str, value: &str) -> Result<VolFormat, Error> {
    value
        .parse()
        .map_err(|source| Error::Format { option, source })
}

/// `--force`: go ahead with a volume another process holds.
fn when_in_use(force: bool) -> WhenInUse {
    if force {
        WhenInUse::Force
    } else {
        WhenInUse::Refuse
    }
}

fn flags(prealloc_metadata: bool) -> CreateFlags {
    CreateFlags { prealloc_metadata }
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
        secret_file: Some(path),
        ..
    } = &args.command
    {
        let secret = crate::pool::PassphraseFile::read(path).map_err(Error::Secret)?;
        pool.set_secrets(std::sync::Arc::new(secret));
    }
    if let Command::VolCreate {
        secret_uri: Some(uri),
        ..
    } = &args.command
    {
        pool.set_secrets(std::sync::Arc::new(qpoold::LibvirtSecret::new(uri)));
    }
    let text = run_verb(args, &pool, autostart)?;
    if let Some(settings) = &bridge {
        mirror_change(settings, &pool, autostart);
    }
    Ok(text)
}

fn run_verb(args: &Args, pool: &Pool, autostart: bool) -> Result<String, Error> {
    Ok(match &args.command {
        Command::VolCreate {
            file,
            prealloc_metadata,
            secret_file,
            secret_uri,
        } => {
            // Both were made the pool's secrets before the verb runs.
            let _ = (secret_file, secret_uri);
            let def = read_volume_xml(file)?;
            let created = pool.create_volume(&def, flags(*prealloc_metadata), None)?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => {
                    format!(
                        "Vol {} created from {}\n",
                        created.volume.name,
                        file.display()
                    )
                }
            }
        }
        Command::VolCreateAs {
            name,
            capacity,
            allocation,
            format,
            backing_vol,
            backing_vol_format,
            prealloc_metadata,
        } => {
            let mut def = VolumeDef::new(name.clone(), size_arg("capacity", capacity)?);
            def.allocation = allocation
                .as_deref()
                .map(|a| size_arg("allocation", a))
                .transpose()?;
            def.target.format = format
                .as_deref()
                .map(|f| format_arg("format", f))
                .transpose()?;
            if let Some(backing) = backing_vol {
                // Like virsh: a volume of this pool by name, else a path.
                let path = match pool.volume_name(backing) {
                    Ok(n) if pool.volume(&n).is_ok() => pool.volume_path(&n).display().to_string(),
                    _ => backing.clone(),
                };
                def.backing_store = Some(BackingStoreDef {
                    path,
                    format: backing_vol_format
                        .as_deref()
                        .map(|f| format_arg("backing-vol-format", f))
                        .transpose()?,
                });
            }
            let created = pool.create_volume(&def, flags(*prealloc_metadata), None)?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => format!("Vol {} created\n", created.volume.name),
            }
        }
        Command::VolClone {
            vol,
            newname,
            prealloc_metadata,
            reflink,
        } => {
            let source = pool.volume_name(vol)?;
            let created =
                pool.clone_volume(&source, newname, flags(*prealloc_metadata), *reflink)?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => {
                    format!("Vol {} cloned from {source}\n", created.volume.name)
                }
            }
        }
        Command::VolCreateFrom {
            file,
            vol,
            prealloc_metadata,
            reflink,
        } => {
            let def = read_volume_xml_with(file, CapacityRule::FromSource)?;
            let source = pool.volume_name(vol)?;
            let created = pool.create_volume_from(
                &def,
                pool,
                &source,
                flags(*prealloc_metadata),
                *reflink,
                None,
            )?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => {
                    format!(
                        "Vol {} created from input vol {source}\n",
                        created.volume.name
                    )
                }
            }
        }
        Command::VolList { details } => match args.output {
            OutputFormat::Json => output::json::vol_list(pool.name(), &pool.list()?),
            OutputFormat::Human => output::vol_list(&pool.list()?, *details),
        },
        Command::VolInfo {
            vol,
            bytes,
            physical,
        } => {
            let info = pool.volume(&pool.volume_name(vol)?)?;
            match args.output {
                OutputFormat::Json => output::json::volume(&info),
                OutputFormat::Human => output::vol_info(&info, *bytes, *physical),
            }
        }
        Command::VolDumpxml { vol } => pool.volume(&pool.volume_name(vol)?)?.report().to_xml(),
        Command::VolPath { vol } => {
            let info = pool.volume(&pool.volume_name(vol)?)?;
            format!("{}\n", info.path.display())
        }
        Command::VolDelete { vol, force } => {
            let name = pool.volume_name(vol)?;
            pool.delete(&name, when_in_use(*force))?;
            format!("Vol {name} deleted\n")
        }
        Command::VolUpload(t) => {
            let name = pool.volume_name(&t.vol)?;
            let local = std::fs::File::open(&t.file).map_err(|source| Error::ReadingFile {
                path: t.file.clone(),
                source,
            })?;
            pool.upload_from_file(
                &name,
                local,
                &t.file,
                t.offset,
                t.length,
                t.sparse,
                when_in_use(t.force),
            )?;
            String::new()
        }
        Command::VolDownload(t) => {
            let name = pool.volume_name(&t.vol)?;
            // The volume is checked before the local file is created.
            pool.volume(&name)?;
            // As virsh: a file this download made is removed again when it fails; a file
            // that was there is truncated and left.
            let writing_file = |source| Error::WritingFile {
                path: t.file.clone(),
                source,
            };
            let (local, created) = match std::fs::File::create_new(&t.file) {
                Ok(f) => (f, true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    (std::fs::File::create(&t.file).map_err(writing_file)?, false)
                }
                Err(e) => return Err(writing_file(e)),
            };
            let done = pool.download_to_file(&name, &local, &t.file, t.offset, t.length, t.sparse);
            if done.is_err() && created {
                let _ = std::fs::remove_file(&t.file);
            }
            done?;
            String::new()
        }
        Command::VolWipe {
            vol,
            algorithm,
            force,
        } => {
            let name = pool.volume_name(vol)?;
            let algorithm: WipeAlgorithm = algorithm.parse().map_err(Error::Algorithm)?;
            pool.wipe_volume(&name, algorithm, when_in_use(*force))?;
            format!("Vol {name} wiped\n")
        }
        Command::VolResize {
            vol,
            capacity,
            allocate,
            delta,
            shrink,
            force,
        } => {
            let name = pool.volume_name(vol)?;
            // virsh: "+N" is absolute; "-N" needs --shrink and means "shrink by N".
            let mut text = capacity.trim_start();
            let mut delta = *delta;
            if let Some(rest) = text.strip_prefix('-') {
                if !*shrink {
                    return Err(Error::NegativeSize);
                }
                text = rest;
                delta = true;
            }
            let value = size_arg("size", text.strip_prefix('+').unwrap_or(text))?;
            pool.resize_volume(
                &name,
                ResizeRequest {
                    capacity: value,
                    delta,
                    shrink: *shrink,
                    allocate: *allocate,
                },
                when_in_use(*force),
            )?;
            if delta {
                format!("Size of volume '{name}' successfully changed by {text}\n")
            } else {
                format!("Size of volume '{name}' successfully changed to {text}\n")
            }
        }
        Command::PoolInfo { bytes } => {
            let info = pool.info(true, autostart)?;
            match args.output {
                OutputFormat::Json => output::json::pool_info(&info),
                OutputFormat::Human => output::pool_info(&info, *bytes),
            }
        }
        Command::PoolRefresh => {
            pool.refresh()?;
            format!("Pool {} refreshed\n", pool.name())
        }
        Command::PoolDumpxml => pool.report()?.to_xml(),
        Command::LibvirtSync { .. } => unreachable!("libvirt-sync opens no pool"),
        Command::Explain {
            file,
            prealloc_metadata,
        } => {
            let def = read_volume_xml(file)?;
            let plan = pool.plan(&def, flags(*prealloc_metadata))?;
            match args.output {
                OutputFormat::Json => output::json::plan(&plan),
                OutputFormat::Human => output::explain(&plan),
            }
        }
    })
}
