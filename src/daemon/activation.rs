//! Socket activation: the listening sockets systemd (or `systemd-socket-activate`) passes.
//!
//! Owns: reading `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`, checking that each
//! descriptor is a listening UNIX stream socket, and telling the read-write sockets from the
//! read-only ones by their names: a name that ends in `-ro` (`FileDescriptorName=qpoold-ro`,
//! or the unit name `qpoold-ro.socket` that systemd uses when the unit sets no name) is
//! read-only, any other name read-write. Two unnamed sockets (`LISTEN_FDNAMES` unset) are
//! taken in order: read-write, then read-only.
//! Must not: bind, unlink or change the mode of these sockets: systemd created them and
//! keeps them across restarts and idle exits.
//!
//! The descriptors are taken with the `listenfd` crate, which checks that each is a UNIX
//! stream socket, marks it close-on-exec and wraps it without unsafe code here (qpool keeps
//! unsafe code in `sys`, which the faces may not use). `listenfd` knows no names and also
//! accepts a missing `LISTEN_PID`, so this module checks `LISTEN_PID` as `sd_listen_fds(3)`
//! does (it must be this process), reads the names itself, and asks each socket whether it
//! listens. `sd-notify` (in [`super::notify`]) sends the readiness messages.

use std::os::unix::net::UnixListener;

use nix::sys::socket::{getsockopt, sockopt};
use thiserror::Error;

/// Sockets passed by the service manager that qpoold cannot use.
#[derive(Debug, Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS='{value}' passed by the service manager is not a number")]
    Count {
        /// The value.
        value: String,
    },
    /// `LISTEN_FDNAMES` names another number of sockets than `LISTEN_FDS` counts.
    #[error("LISTEN_FDNAMES names {names} sockets, LISTEN_FDS counts {count}")]
    Names {
        /// Names given.
        names: usize,
        /// Sockets passed.
        count: usize,
    },
    /// A descriptor is not a listening UNIX stream socket.
    #[error("file descriptor {fd} ('{name}') passed by the service manager")]
    NotListening {
        /// The descriptor.
        fd: usize,
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

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: usize = 3;

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

/// The sockets passed to this process, or `None` when it was not socket-activated. Call it
/// before any thread starts: `listenfd` removes `LISTEN_PID` and `LISTEN_FDS` from the
/// environment.
pub fn take() -> Result<Option<Vec<Inherited>>, ActivationError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = match std::env::var("LISTEN_FDS") {
        Ok(v) => v
            .parse::<usize>()
            .map_err(|_| ActivationError::Count { value: v })?,
        Err(_) => 0,
    };
    if !for_us || count == 0 {
        return Ok(None);
    }
    let names: Vec<String> = match std::env::var("LISTEN_FDNAMES") {
        Ok(v) => v.split(':').map(str::to_string).collect(),
        Err(_) => vec![UNNAMED.to_string(); count],
    };
    if names.len() != count {
        return Err(ActivationError::Names {
            names: names.len(),
            count,
        });
    }
    let unnamed = names.iter().all(|n| n == UNNAMED);
    if unnamed && count > 2 {
        return Err(ActivationError::Unnamed { count });
    }
    let mut fds = listenfd::ListenFd::from_env();
    let mut sockets = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        let not_listening = |source| ActivationError::NotListening {
            fd: SD_LISTEN_FDS_START + i,
            name: name.clone(),
            source,
        };
        let listener = fds
            .take_unix_listener(i)
            .map_err(not_listening)?
            .ok_or_else(|| not_listening(std::io::ErrorKind::NotFound.into()))?;
        let listening = getsockopt(&listener, sockopt::AcceptConn)
            .map_err(|e| not_listening(std::io::Error::from(e)))?;
        if !listening {
            return Err(not_listening(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the socket does not listen",
            )));
        }
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
