//! The CLI's libvirt bridge work, run in a `qpoold` child process: the `qpool` binary never
//! links libvirt, whose loading (libvirt and the ~50 libraries it needs) would cost every
//! `qpool` invocation ~20 ms at start, bridge or not.
//!
//! Owns: finding qpoold ([`find`]: beside the running `qpool`, then `../sbin/qpoold` from its
//! directory, as the packages install `/usr/bin/qpool` and `/usr/sbin/qpoold`, then `PATH`),
//! running it once with a bridge [`Job`] on the inherited stdout and stderr ([`run`]), and
//! what its exit status means ([`Outcome`]); and a libvirt secret's value read from such a
//! job through a pipe ([`LibvirtSecret`], `vol-create --secret-uri`). The only place the CLI
//! starts a process.
//! Must not: call the bridge's libvirt entry points (`Bridge`, `attach`): tests/architecture.rs
//! checks the source and tests/libvirt_bridge.rs the binary's libraries. Nor print what the
//! job prints: qpoold does (`daemon::oneshot`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use thiserror::Error;
use zeroize::Zeroizing;

use crate::bridge::job::{FAILED, Job};
use crate::pool::{Passphrase, SecretError, Secrets};
use crate::xml::SecretRef;

/// The daemon's file name.
pub const QPOOLD: &str = "qpoold";

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it was asked.
    Done,
    /// It failed, and qpoold has said why on stderr.
    Failed,
}

/// qpoold could not run a job.
#[derive(Debug, Error)]
pub enum QpooldError {
    /// No qpoold in any of the places looked in.
    #[error(
        "cannot find qpoold, which runs the libvirt bridge for qpool (looked in {} and PATH)",
        places(looked)
    )]
    NotFound {
        /// The directories looked in before `PATH`.
        looked: Vec<PathBuf>,
    },
    /// qpoold could not be started.
    #[error("cannot run {}", path.display())]
    Spawn {
        /// The qpoold found.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// qpoold ended in a way no job ends (a signal, a usage error of another version).
    #[error("{} failed ({status})", path.display())]
    Status {
        /// The qpoold found.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
    },
}

fn places(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    shown.join(", ")
}

/// Whether `path` is a file someone may execute.
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The qpoold to run: beside the running `qpool`, else in `../sbin` from its directory, else
/// the first in `PATH`.
pub fn find() -> Result<PathBuf, QpooldError> {
    let mut looked = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        if let Some(prefix) = dir.parent() {
            looked.push(dir.clone());
            looked.push(prefix.join("sbin"));
        } else {
            looked.push(dir);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    looked
        .iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(QPOOLD))
        .find(|candidate| executable(candidate))
        .ok_or(QpooldError::NotFound { looked })
}

/// Runs `job` in qpoold, which prints on this process's stdout and stderr, and waits for it.
pub fn run(job: &Job) -> Result<Outcome, QpooldError> {
    let path = find()?;
    let status = Command::new(&path)
        .args(job.to_args())
        .stdin(Stdio::null())
        .status()
        .map_err(|source| QpooldError::Spawn {
            path: path.clone(),
            source,
        })?;
    match status.code() {
        Some(0) => Ok(Outcome::Done),
        Some(code) if code == i32::from(FAILED) => Ok(Outcome::Failed),
        _ => Err(QpooldError::Status { path, status }),
    }
}

/// A libvirt secret's value, asked of libvirt's secret driver at a URI by a qpoold job
/// ([`Job::Secret`]) and read from its stdout through a pipe: `qpool vol-create
/// --secret-uri`. The value never passes through a command line, the environment or a file.
#[derive(Debug, Clone)]
pub struct LibvirtSecret {
    uri: String,
    token: Option<PathBuf>,
}

impl LibvirtSecret {
    /// The secrets of the libvirt daemon at `uri`, presenting the system token in the file
    /// `token` (qpoold.conf `secrets_token`; libvirt's own when `None`).
    pub fn new(uri: &str, token: Option<PathBuf>) -> LibvirtSecret {
        LibvirtSecret {
            uri: uri.to_string(),
            token,
        }
    }

    fn failed(&self, source: Box<dyn std::error::Error + Send + Sync>) -> SecretError {
        SecretError::Libvirt {
            uri: self.uri.clone(),
            source,
        }
    }
}

impl Secrets for LibvirtSecret {
    fn passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError> {
        let secret = secret.ok_or(SecretError::NoSecret)?;
        let job = Job::secret(&self.uri, secret, self.token.as_deref());
        let path = find().map_err(|e| self.failed(Box::new(e)))?;
        let out = Command::new(&path)
            .args(job.to_args())
            .stdin(Stdio::null())
            .output()
            .map_err(|source| {
                self.failed(Box::new(QpooldError::Spawn {
                    path: path.clone(),
                    source,
                }))
            })?;
        let value = Zeroizing::new(out.stdout);
        match out.status.code() {
            Some(0) => Ok(Passphrase::new(value.to_vec())),
            Some(code) if code == i32::from(FAILED) => {
                let said = String::from_utf8_lossy(&out.stderr);
                let message = said
                    .lines()
                    .filter_map(|l| l.strip_prefix("error: "))
                    .next_back()
                    .unwrap_or(said.trim())
                    .to_string();
                Err(self.failed(Box::new(crate::bridge::LibvirtError { message })))
            }
            _ => Err(self.failed(Box::new(QpooldError::Status {
                path,
                status: out.status,
            }))),
        }
    }

    /// libvirt's convention: the secret of usage type volume whose id is the volume's path.
    fn source_secret(&self, path: &std::path::Path) -> Option<SecretRef> {
        path.to_str().map(|p| SecretRef::Usage(p.to_string()))
    }
}
