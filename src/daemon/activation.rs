//! Socket activation: the listening sockets systemd (or `systemd-socket-activate`) passes.
//!
//! Owns: reading `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` (through the `sd-notify`
//! crate, which checks that `LISTEN_PID` is this process and marks the descriptors
//! close-on-exec), checking that each descriptor is a listening UNIX stream socket, and
//! telling the read-write sockets from the read-only ones by their names: a name that ends
//! in `-ro` (`FileDescriptorName=qpoold-ro`, or the unit name `qpoold-ro.socket` that
//! systemd uses when the unit sets no name) is read-only, any other name read-write. Two
//! unnamed sockets (`LISTEN_FDNAMES` unset) are taken in order: read-write, then read-only.
//! Must not: bind, unlink or change the mode of these sockets: systemd created them and
//! keeps them across restarts and idle exits.
//!
//! `sd-notify` is used rather than `libsystemd` or `listenfd`: it is small, pure Rust, and
//! covers both halves qpoold needs (these descriptors with their names, and the `notify`
//! messages in [`super::notify`]); `listenfd` has no names and `libsystemd` brings much
//! more than qpoold uses.

use std::os::unix::net::UnixListener;

use thiserror::Error;

/// Sockets passed by the service manager that qpoold cannot use.
#[derive(Debug, Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` or `LISTEN_PID` is malformed.
    #[error("cannot read the sockets passed by the service manager (LISTEN_FDS)")]
    Environment(#[source] std::io::Error),
    /// A descriptor is not a listening UNIX stream socket.
    #[error("file descriptor {fd} ('{name}') passed by the service manager")]
    NotListening {
        /// The descriptor.
        fd: i32,
        /// Its name in `LISTEN_FDNAMES`.
        name: String,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
    /// More unnamed sockets than qpoold can tell apart.
    #[error(
        "{count} unnamed sockets passed by the service manager; name them (FileDescriptorName=qpoold or qpoold-ro)"
    )]
    Unnamed {
        /// How many.
        count: usize,
    },
}

/// One listening socket systemd passed.
#[derive(Debug)]
pub struct Inherited {
    /// The socket.
    pub listener: UnixListener,
    /// Its name (`LISTEN_FDNAMES`), `unknown` when unnamed.
    pub name: String,
    /// Whether it is a read-only socket.
    pub readonly: bool,
}

/// The name systemd gives a descriptor whose unit sets no `FileDescriptorName=` and that
/// `LISTEN_FDNAMES` leaves out.
const UNNAMED: &str = "unknown";

/// Whether a socket of this name is read-only: its name, without a `.socket` suffix, ends
/// in `-ro`.
pub fn is_read_only_name(name: &str) -> bool {
    name.strip_suffix(".socket")
        .unwrap_or(name)
        .ends_with("-ro")
}

/// The sockets passed to this process, or `None` when it was not socket-activated.
pub fn take() -> Result<Option<Vec<Inherited>>, ActivationError> {
    let fds: Vec<(i32, String)> = sd_notify::listen_fds_with_names()
        .map_err(ActivationError::Environment)?
        .collect();
    if fds.is_empty() {
        return Ok(None);
    }
    let unnamed = fds.iter().all(|(_, name)| name == UNNAMED);
    if unnamed && fds.len() > 2 {
        return Err(ActivationError::Unnamed { count: fds.len() });
    }
    let mut sockets = Vec::with_capacity(fds.len());
    for (i, (fd, name)) in fds.into_iter().enumerate() {
        let listener = crate::sys::adopt_unix_listener(fd).map_err(|source| {
            ActivationError::NotListening {
                fd,
                name: name.clone(),
                source,
            }
        })?;
        let readonly = if unnamed {
            i == 1
        } else {
            is_read_only_name(&name)
        };
        sockets.push(Inherited {
            listener,
            name,
            readonly,
        });
    }
    Ok(Some(sockets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_sockets_are_named_with_ro() {
        for (name, readonly) in [
            ("qpoold", false),
            ("qpoold-ro", true),
            ("qpoold.socket", false),
            ("qpoold-ro.socket", true),
            ("qpoold-virtstoraged-ro.socket", true),
            ("virtstoraged", false),
            ("rover", false),
        ] {
            assert_eq!(is_read_only_name(name), readonly, "{name}");
        }
    }
}
