//! The `qpool` command line as clap reads it: the verbs with virsh's names and flags, the
//! global options, and the environment variables that stand for them.
//!
//! Owns: every verb, argument, flag and default of `qpool` (the man page and the shell
//! completions are made from these definitions), and the names of its environment
//! variables.
//! Must not: parse a value further than clap does (sizes, formats and algorithms are read
//! where the verb runs), or call the engine.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// One JSON document on stdout; the field names are stable (qpool(1) JSON OUTPUT, README).
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
        /// The passphrase of the new volume when its XML names a `<secret>` (as vol-create's);
        /// it must open an encrypted input, since one passphrase cannot re-encrypt.
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
        /// The passphrases from libvirt's secrets at this URI: the new volume's from the
        /// secret its XML names, an encrypted input's from the secret whose usage is the
        /// input's path; with two different passphrases the copy is re-encrypted.
        #[arg(long, value_name = "URI", conflicts_with = "secret_file")]
        secret_uri: Option<String>,
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
