//! The sockets qpoold listens on: its own, or the ones systemd passed.
//!
//! Owns: binding the read-write (0600) and read-only (0666) sockets when qpoold runs on its
//! own (replacing a stale socket file nobody listens on, refusing to start beside a live
//! daemon), taking the sockets of socket activation instead ([`super::activation`]), and
//! removing at exit exactly the socket files qpoold created, and only while they are still
//! the ones it created (same device and inode). A socket systemd created is never removed.
//! Must not: serve connections (the server does).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::activation::Inherited;

/// A socket qpoold cannot listen on.
#[derive(Debug, Error)]
pub enum ListenError {
    /// The socket's directory cannot be made.
    #[error("cannot create {}", dir.display())]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A daemon answers on the path already.
    #[error("another daemon is listening on {}", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// A stale socket file cannot be removed.
    #[error("cannot remove stale socket {}", path.display())]
    Stale {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `bind` failed.
    #[error("cannot bind {}", path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listening socket cannot be duplicated for its accepting thread.
    #[error("cannot duplicate the listening socket {path}")]
    Duplicate {
        /// The socket, as the log names it.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The mode cannot be set.
    #[error("cannot set the mode of {}", path.display())]
    Mode {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One listening socket.
#[derive(Debug)]
pub struct Listening {
    /// The socket.
    pub listener: UnixListener,
    /// Whether only queries are allowed on it.
    pub readonly: bool,
    /// Its path, for the log (an abstract or unnamed socket has none).
    pub path: Option<PathBuf>,
    /// Device and inode of the socket file when qpoold created it.
    created: Option<(u64, u64)>,
}

impl Listening {
    /// How the log and the status line name the socket.
    pub fn describe(&self) -> String {
        let path = self.path.as_ref().map_or_else(
            || "an unnamed socket".to_string(),
            |p| p.display().to_string(),
        );
        if self.readonly {
            format!("{path} (read-only)")
        } else {
            path
        }
    }
}

/// Every socket of the daemon.
#[derive(Debug)]
pub struct Listeners {
    /// The sockets.
    pub sockets: Vec<Listening>,
    /// Whether systemd passed them.
    pub activated: bool,
}

impl Listeners {
    /// Binds the read-write socket (0600) and the read-only one (0666).
    pub fn bind(socket: &Path, socket_ro: &Path) -> Result<Listeners, ListenError> {
        let rw = bind(socket, 0o600, false)?;
        let ro = match bind(socket_ro, 0o666, true) {
            Ok(ro) => ro,
            Err(e) => {
                rw.remove();
                return Err(e);
            }
        };
        Ok(Listeners {
            sockets: vec![rw, ro],
            activated: false,
        })
    }

    /// The sockets socket activation passed.
    pub fn inherited(sockets: Vec<Inherited>) -> Listeners {
        let sockets = sockets
            .into_iter()
            .map(|s| {
                let path = s
                    .listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf));
                log::debug!(
                    "socket '{}' from the service manager: {}",
                    s.name,
                    path.as_deref()
                        .map_or_else(|| "unnamed".to_string(), |p| p.display().to_string())
                );
                Listening {
                    listener: s.listener,
                    readonly: s.readonly,
                    path,
                    created: None,
                }
            })
            .collect();
        Listeners {
            sockets,
            activated: true,
        }
    }

    /// The sockets, one per line in the log.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.sockets.iter().map(Listening::describe).collect();
        names.join(", ")
    }

    /// Removes the socket files qpoold created (never the ones systemd passed).
    pub fn remove_created(&self) {
        for socket in &self.sockets {
            socket.remove();
        }
    }
}

impl Listening {
    /// Removes the socket file if qpoold created it and it is still that file.
    fn remove(&self) {
        let (Some(path), Some((dev, ino))) = (&self.path, self.created) else {
            return;
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.dev() == dev && m.ino() == ino => {
                if let Err(e) = std::fs::remove_file(path) {
                    log::warn!("cannot remove {}: {e}", path.display());
                }
            }
            Ok(_) => log::info!(
                "{} is another daemon's socket now; leaving it",
                path.display()
            ),
            Err(_) => {}
        }
    }
}

/// Binds a socket, replacing a stale one, and sets its mode.
fn bind(path: &Path, mode: u32, readonly: bool) -> Result<Listening, ListenError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ListenError::Directory {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    if path.symlink_metadata().is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err(ListenError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(|source| ListenError::Stale {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| ListenError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    let mode_err = |source| ListenError::Mode {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(mode_err)?;
    let socket = Listening {
        listener,
        readonly,
        path: Some(path.to_path_buf()),
        created: Some((meta.dev(), meta.ino())),
    };
    if let Err(source) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        socket.remove();
        return Err(mode_err(source));
    }
    Ok(socket)
}
