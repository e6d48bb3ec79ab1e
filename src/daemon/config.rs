//! `qpoold.conf`: `key = value` lines, as libvirt's `*.conf` files write them.
//!
//! Owns: reading the file (comments with `#`, strings in double quotes, integers bare) into
//! [`FileConfig`], with an error that names the line for anything else.
//! Must not: decide defaults or precedence (the daemon does: command line, then file, then
//! built-in defaults).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::model::FallocateMode;

/// A configuration file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("cannot read {}", path.display())]
    Reading {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `key = value`, or a value has the wrong type.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Settings from the file; `None` where the file says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// `socket = "/run/qpool/qpoold-sock"`.
    pub socket: Option<PathBuf>,
    /// `socket_ro = "/run/qpool/qpoold-sock-ro"`.
    pub socket_ro: Option<PathBuf>,
    /// `pools = "/etc/qpool/storage"`.
    pub pools: Option<PathBuf>,
    /// `secrets = "/etc/qpool/secrets"`.
    pub secrets: Option<PathBuf>,
    /// `secrets_uri = "secret:///system"`: passphrases qpoold's store does not have are read
    /// from libvirt's secret driver there.
    pub secrets_uri: Option<String>,
    /// `secrets_token = "/run/libvirt/common/system.token"`: the file of libvirt's system
    /// token, presented to `secrets_uri` so that private secrets are given too.
    pub secrets_token: Option<PathBuf>,
    /// `timeout = 120`.
    pub timeout: Option<u64>,
    /// `default_pool_dir = "/var/lib/qpool/images"`.
    pub default_pool_dir: Option<PathBuf>,
    /// `fallocate = "auto"` (or `"native"`, `"zero"`): how the pools reserve space.
    pub fallocate: Option<FallocateMode>,
    /// `libvirt_uri = "qemu:///system"`: mirror the pools into that libvirtd.
    pub libvirt_uri: Option<String>,
    /// `libvirt_prefix = "qpool-"`: put before each pool name in libvirtd.
    pub libvirt_prefix: Option<String>,
}

/// Parses the text of a configuration file (`path` is for messages).
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let mut config = FileConfig::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let syntax = |message: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| syntax(format!("expected 'key = value', found '{line}'")))?;
        let key = key.trim();
        let value = value.trim();
        let string = || -> Result<String, ConfigError> {
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains('"'))
                .map(str::to_string)
                .ok_or_else(|| syntax(format!("{key} expects a string in double quotes")))
        };
        match key {
            "socket" => config.socket = Some(PathBuf::from(string()?)),
            "socket_ro" => config.socket_ro = Some(PathBuf::from(string()?)),
            "pools" => config.pools = Some(PathBuf::from(string()?)),
            "secrets" => config.secrets = Some(PathBuf::from(string()?)),
            "secrets_uri" => config.secrets_uri = Some(string()?),
            "secrets_token" => config.secrets_token = Some(PathBuf::from(string()?)),
            "default_pool_dir" => config.default_pool_dir = Some(PathBuf::from(string()?)),
            "fallocate" => {
                config.fallocate = Some(
                    string()?
                        .parse()
                        .map_err(|e: crate::model::UnknownName| syntax(e.to_string()))?,
                );
            }
            "libvirt_uri" => config.libvirt_uri = Some(string()?),
            "libvirt_prefix" => config.libvirt_prefix = Some(string()?),
            "timeout" => {
                config.timeout =
                    Some(value.parse().map_err(|_| {
                        syntax(format!("timeout expects seconds, found '{value}'"))
                    })?);
            }
            other => return Err(syntax(format!("unknown setting '{other}'"))),
        }
    }
    Ok(config)
}

/// Reads a configuration file; a missing file at the default location is no error.
pub fn load(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(source) => Err(ConfigError::Reading {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_comments_and_quotes_are_read() {
        let c = parse(
            Path::new("q.conf"),
            "# qpoold\nsocket = \"/tmp/s\"\n\ntimeout = 30\npools=\"/etc/p\"\n",
        )
        .unwrap();
        assert_eq!(c.socket, Some(PathBuf::from("/tmp/s")));
        assert_eq!(c.timeout, Some(30));
        assert_eq!(c.pools, Some(PathBuf::from("/etc/p")));
    }

    #[test]
    fn the_libvirt_bridge_settings_are_read() {
        let c = parse(
            Path::new("q.conf"),
            "libvirt_uri = \"qemu:///system\"\nlibvirt_prefix = \"qpool-\"\n",
        )
        .unwrap();
        assert_eq!(c.libvirt_uri.as_deref(), Some("qemu:///system"));
        assert_eq!(c.libvirt_prefix.as_deref(), Some("qpool-"));
    }

    #[test]
    fn the_secret_driver_settings_are_read() {
        let c = parse(
            Path::new("q.conf"),
            "secrets_uri = \"secret:///system\"\nsecrets_token = \"/t/system.token\"\n",
        )
        .unwrap();
        assert_eq!(c.secrets_uri.as_deref(), Some("secret:///system"));
        assert_eq!(c.secrets_token, Some(PathBuf::from("/t/system.token")));
        assert_eq!(parse(Path::new("q.conf"), "").unwrap().secrets_token, None);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(Path::new("q.conf"), "socket = \"/s\"\ntimeout = soon\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "q.conf:2: timeout expects seconds, found 'soon'"
        );
        let e = parse(Path::new("q.conf"), "bogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown setting 'bogus'"));
        let e = parse(Path::new("q.conf"), "socket = /unquoted\n").unwrap_err();
        assert!(e.to_string().contains("double quotes"));
        let e = parse(Path::new("q.conf"), "fallocate = \"posix\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "q.conf:1: unknown fallocate setting 'posix' (expected auto, native or zero)"
        );
    }

    #[test]
    fn the_fallocate_setting_is_read() {
        for mode in FallocateMode::ALL {
            let c = parse(Path::new("q.conf"), &format!("fallocate = \"{mode}\"\n")).unwrap();
            assert_eq!(c.fallocate, Some(mode));
        }
        assert_eq!(parse(Path::new("q.conf"), "").unwrap().fallocate, None);
    }
}
