//! The one-shot bridge jobs that `qpool` hands to `qpoold`, so that the `qpool` binary never
//! links libvirt (loading libvirt and the libraries it needs costs every process ~20 ms at
//! start): a whole sync (`qpool libvirt-sync`), the refresh of one pool's mirror after a
//! change, or the value of a libvirt secret for `qpool vol-create --secret-uri`.
//!
//! Owns: both sides of the contract between the two binaries: what a [`Job`] carries, its
//! command line as qpoold reads it (clap subcommands, `qpoold libvirt-sync …`, which qpoold
//! parses apart from its documented options, so that `--help`, the man page and the
//! completions do not show them) and as `qpool` writes it ([`Job::to_args`]), and what the
//! job's exit status means ([`FAILED`]).
//! Must not: run a job (qpoold does, in `daemon::oneshot`), or find and spawn qpoold (the
//! CLI does, in `cli::qpoold`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{Mirrored, Settings};
use crate::xml::SecretRef;

/// qpoold's subcommand for [`Job::Sync`].
pub const SYNC: &str = "libvirt-sync";
/// qpoold's subcommand for [`Job::Changed`].
pub const CHANGED: &str = "libvirt-changed";
/// qpoold's subcommand for [`Job::Secret`].
pub const SECRET: &str = "libvirt-secret";
/// The exit status of a job that failed and said why on stderr (its `error:` line, or for
/// [`Job::Changed`] its `warning:` line); 0 is success, anything else is qpoold's own failure.
pub const FAILED: u8 = 1;
/// How the warning after a change that libvirtd was not told of begins.
pub const NOT_REFRESHED: &str = "libvirt pool not refreshed";

/// A job, as qpoold's (undocumented) subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Job {
    /// `qpool libvirt-sync`: mirror the pools of a definitions directory, print what was
    /// done.
    #[command(name = SYNC)]
    Sync(SyncJob),
    /// After a `qpool` change: refresh one pool's mirror, defining it when missing.
    #[command(name = CHANGED)]
    Changed(ChangedJob),
    /// `qpool vol-create --secret-uri`: write a libvirt secret's value on stdout (a pipe to
    /// `qpool`), nothing else.
    #[command(name = SECRET)]
    Secret(SecretJob),
}

/// The arguments of [`Job::Secret`]: the URI and the secret, by UUID or by usage.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SecretJob {
    /// libvirt URI.
    #[arg(long)]
    pub uri: String,
    /// The secret's UUID.
    #[arg(long, conflicts_with = "usage", required_unless_present = "usage")]
    pub uuid: Option<String>,
    /// The usage id of a volume secret.
    #[arg(long)]
    pub usage: Option<String>,
    /// The file of libvirt's system token (qpoold.conf `secrets_token`); libvirt's own when
    /// absent. The path only: the token never passes through the command line.
    #[arg(long)]
    pub token: Option<PathBuf>,
}

impl SecretJob {
    /// The secret, as a volume's `<secret>` names it.
    pub fn secret(&self) -> SecretRef {
        match (&self.uuid, &self.usage) {
            (Some(uuid), _) => SecretRef::Uuid(uuid.clone()),
            (None, usage) => SecretRef::Usage(usage.clone().unwrap_or_default()),
        }
    }
}

/// The arguments of [`Job::Sync`].
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SyncJob {
    /// libvirt URI.
    #[arg(long)]
    pub uri: String,
    /// Put before each pool name in libvirtd.
    #[arg(long)]
    pub prefix: String,
    /// Directory of the pool definitions.
    #[arg(long)]
    pub pools: PathBuf,
    /// Target of the `default` pool mirrored when there are no definitions.
    #[arg(long)]
    pub default_pool_dir: PathBuf,
}

impl SyncJob {
    /// Where the mirrors go.
    pub fn settings(&self) -> Settings {
        Settings {
            uri: self.uri.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

/// The arguments of [`Job::Changed`]: the settings and the [`Mirrored`] pool.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ChangedJob {
    /// libvirt URI.
    #[arg(long)]
    pub uri: String,
    /// Put before the pool name in libvirtd.
    #[arg(long)]
    pub prefix: String,
    /// qpool's name for the pool.
    #[arg(long)]
    pub name: String,
    /// qpool's UUID for the pool.
    #[arg(long)]
    pub uuid: Option<Uuid>,
    /// Target directory.
    #[arg(long)]
    pub target: PathBuf,
    /// Autostart in qpool.
    #[arg(long)]
    pub autostart: bool,
    /// Whether the libvirt pool should run.
    #[arg(long)]
    pub active: bool,
}

impl ChangedJob {
    /// Where the mirror goes.
    pub fn settings(&self) -> Settings {
        Settings {
            uri: self.uri.clone(),
            prefix: self.prefix.clone(),
        }
    }

    /// The pool to mirror.
    pub fn pool(&self) -> Mirrored {
        Mirrored {
            name: self.name.clone(),
            uuid: self.uuid,
            target: self.target.clone(),
            autostart: self.autostart,
            active: self.active,
        }
    }
}

impl Job {
    /// A whole sync of the definitions in `pools` (without any: the `default` pool on
    /// `default_pool_dir`).
    pub fn sync(settings: &Settings, pools: &Path, default_pool_dir: &Path) -> Job {
        Job::Sync(SyncJob {
            uri: settings.uri.clone(),
            prefix: settings.prefix.clone(),
            pools: pools.to_path_buf(),
            default_pool_dir: default_pool_dir.to_path_buf(),
        })
    }

    /// The refresh of one pool's mirror.
    pub fn changed(settings: &Settings, pool: &Mirrored) -> Job {
        Job::Changed(ChangedJob {
            uri: settings.uri.clone(),
            prefix: settings.prefix.clone(),
            name: pool.name.clone(),
            uuid: pool.uuid,
            target: pool.target.clone(),
            autostart: pool.autostart,
            active: pool.active,
        })
    }

    /// The value of `secret` from libvirt's secret driver at `uri`, presenting the system
    /// token in the file `token` (libvirt's own when `None`).
    pub fn secret(uri: &str, secret: &SecretRef, token: Option<&Path>) -> Job {
        let (uuid, usage) = match secret {
            SecretRef::Uuid(u) => (Some(u.clone()), None),
            SecretRef::Usage(u) => (None, Some(u.clone())),
        };
        Job::Secret(SecretJob {
            uri: uri.to_string(),
            uuid,
            usage,
            token: token.map(Path::to_path_buf),
        })
    }

    /// qpoold's arguments for this job (after the program name). Every value is joined to
    /// its option with `=`, so that one starting with `-` stays a value.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        match self {
            Job::Sync(j) => {
                args.push(OsString::from(SYNC));
                args.push(option("uri", j.uri.as_ref()));
                args.push(option("prefix", j.prefix.as_ref()));
                args.push(option("pools", j.pools.as_os_str()));
                args.push(option("default-pool-dir", j.default_pool_dir.as_os_str()));
            }
            Job::Changed(j) => {
                args.push(OsString::from(CHANGED));
                args.push(option("uri", j.uri.as_ref()));
                args.push(option("prefix", j.prefix.as_ref()));
                args.push(option("name", j.name.as_ref()));
                if let Some(uuid) = &j.uuid {
                    args.push(option("uuid", uuid.hyphenated().to_string().as_ref()));
                }
                args.push(option("target", j.target.as_os_str()));
                if j.autostart {
                    args.push(OsString::from("--autostart"));
                }
                if j.active {
                    args.push(OsString::from("--active"));
                }
            }
            Job::Secret(j) => {
                args.push(OsString::from(SECRET));
                args.push(option("uri", j.uri.as_ref()));
                if let Some(uuid) = &j.uuid {
                    args.push(option("uuid", uuid.as_ref()));
                }
                if let Some(usage) = &j.usage {
                    args.push(option("usage", usage.as_ref()));
                }
                if let Some(token) = &j.token {
                    args.push(option("token", token.as_os_str()));
                }
            }
        }
        args
    }
}

/// `--name=value`.
fn option(name: &str, value: &OsStr) -> OsString {
    let mut arg = OsString::from(format!("--{name}="));
    arg.push(value);
    arg
}
