//! Where qpool keeps things by default (design.md, "Names and paths").
//!
//! Owns: every default path: the default pool directory (root and per user), the daemon's
//! sockets, its pool definitions, its secrets and its configuration file; and where libvirt
//! keeps its system token.
//! Must not: create, open or check any of them; callers do that.

use std::path::PathBuf;

/// Default read-write socket of qpoold.
pub const SOCKET: &str = "/run/qpool/qpoold-sock";
/// Suffix that names the read-only socket after the read-write one.
pub const READ_ONLY_SUFFIX: &str = "-ro";
/// Default directory of qpoold's pool definitions (libvirt pool XML files).
pub const POOL_DEFINITIONS: &str = "/etc/qpool/storage";
/// Default directory of qpoold's secrets (`UUID.xml` and `UUID.base64`, root only), as
/// libvirt keeps them in `/etc/libvirt/secrets`.
pub const SECRETS: &str = "/etc/qpool/secrets";
/// libvirt's system token (root-only, written by its daemons at start): presented by qpoold
/// to read private secrets from libvirt's secret driver (qpoold.conf `secrets_token`).
pub const LIBVIRT_SYSTEM_TOKEN: &str = "/run/libvirt/common/system.token";
/// Default configuration file of qpoold.
pub const CONFIG: &str = "/etc/qpool/qpoold.conf";
/// The default pool's directory when running as root.
pub const SYSTEM_POOL_DIR: &str = "/var/lib/qpool/images";

/// The read-only socket that goes with a read-write socket path.
pub fn read_only_socket(socket: &std::path::Path) -> PathBuf {
    let mut s = socket.as_os_str().to_owned();
    s.push(READ_ONLY_SUFFIX);
    PathBuf::from(s)
}

/// The default pool directory: [`SYSTEM_POOL_DIR`] as root, else `$XDG_DATA_HOME/qpool/images`
/// or `~/.local/share/qpool/images`.
pub fn default_pool_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(SYSTEM_POOL_DIR);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
            home.join(".local/share")
        });
    data.join("qpool/images")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_only_socket_is_the_read_write_one_with_ro() {
        assert_eq!(
            read_only_socket(std::path::Path::new(SOCKET)),
            PathBuf::from("/run/qpool/qpoold-sock-ro")
        );
    }
}
