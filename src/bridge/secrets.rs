//! Passphrases from libvirt's secret driver (`virtsecretd` on hosts with modular daemons,
//! or a monolithic libvirtd), for qpoold's encrypted creates: qpoold.conf `secrets_uri`.
//!
//! Owns: looking a volume's `<secret>` up in libvirt (by UUID, or by usage as a volume
//! secret) and reading its value, one connection per create; and presenting libvirt's system
//! token (qpoold.conf `secrets_token`, by default [`crate::paths::LIBVIRT_SYSTEM_TOKEN`]) as
//! the connection's identity when the file is readable, so that libvirt gives out private
//! secrets too, as it does to its own daemons (`virIdentityIsCurrentElevated`).
//! Must not: define, change or list libvirt's secrets, keep a value or the token longer than
//! the create that needs it, or put either in an error or a log.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use virt::connect::Connect;
use virt::error::ErrorNumber;
use virt::secret::Secret;

use super::LibvirtError;
use crate::pool::{Passphrase, SecretError, Secrets};
use crate::xml::{SecretRef, SecretUsageType};

/// libvirt's secrets at a URI, asked at each encrypted create.
#[derive(Debug, Clone)]
pub struct LibvirtSecrets {
    uri: String,
    token: PathBuf,
}

impl LibvirtSecrets {
    /// Secrets from the libvirt daemon at `uri` (`secret:///system`, say), presenting the
    /// system token in the file `token` (by default libvirt's own) where it can be read;
    /// nothing is connected or read until a create asks.
    pub fn new(uri: &str, token: Option<&Path>) -> Result<LibvirtSecrets, super::BridgeError> {
        Ok(LibvirtSecrets {
            uri: uri.to_string(),
            token: token.map_or_else(
                || PathBuf::from(crate::paths::LIBVIRT_SYSTEM_TOKEN),
                Path::to_path_buf,
            ),
        })
    }

    /// Presents libvirt's system token as `conn`'s identity when the token file can be
    /// read. Without it (no file, not root, a refusal) the read goes on as before: public
    /// secrets are given, private ones refused by libvirt. Neither the token nor its length
    /// is logged.
    fn present_token(&self, conn: &Connect) {
        let Some(token) = read_token(&self.token) else {
            return;
        };
        match crate::sys::libvirt::set_system_token(conn, &token) {
            Ok(()) => log::debug!(
                "libvirt at {}: identity set with the system token of {}",
                self.uri,
                self.token.display()
            ),
            Err(e) => log::warn!(
                "libvirt at {} refused the system token of {}: {}; private secrets stay refused",
                self.uri,
                self.token.display(),
                e.message()
            ),
        }
        wipe(token);
    }

    fn failed(&self, e: &virt::error::Error) -> SecretError {
        SecretError::Libvirt {
            uri: self.uri.clone(),
            source: Box::new(LibvirtError {
                message: e.message().to_string(),
            }),
        }
    }

    fn lookup(&self, conn: &Connect, secret: &SecretRef) -> Result<Passphrase, SecretError> {
        let found = match secret {
            SecretRef::Uuid(uuid) => Secret::lookup_by_uuid_string(conn, uuid),
            SecretRef::Usage(id) => {
                Secret::lookup_by_usage(conn, SecretUsageType::Volume.number(), id)
            }
        };
        let found = found.map_err(|e| match e.code() {
            ErrorNumber::NoSecret => SecretError::NotFound(secret.clone()),
            _ => self.failed(&e),
        })?;
        let value = found.get_value(0).map_err(|e| match e.code() {
            ErrorNumber::NoSecret => match found
                .get_uuid_string()
                .ok()
                .and_then(|u| uuid::Uuid::parse_str(&u).ok())
            {
                Some(uuid) => SecretError::NoValue(uuid),
                None => self.failed(&e),
            },
            _ => self.failed(&e),
        })?;
        // The virt crate hands the value over in a plain Vec: it is moved into the
        // passphrase, which wipes it.
        Ok(Passphrase::new(value))
    }
}

impl Secrets for LibvirtSecrets {
    fn passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError> {
        let secret = secret.ok_or(SecretError::NoSecret)?;
        // libvirt prints every error on stderr unless told not to; ours are returned.
        virt::error::clear_error_callback();
        let mut conn = Connect::open(Some(&self.uri)).map_err(|e| self.failed(&e))?;
        self.present_token(&conn);
        let got = self.lookup(&conn, secret);
        let _ = conn.close();
        got
    }

    /// libvirt's convention: the secret of usage type volume whose id is the volume's path.
    fn source_secret(&self, path: &Path) -> Option<SecretRef> {
        path.to_str().map(|p| SecretRef::Usage(p.to_string()))
    }
}

/// The token in `path` (libvirt writes 32 hex digits, no newline), surrounding white space
/// left out; `None`, logged without the content, when it cannot be read or is not a token.
fn read_token(path: &Path) -> Option<CString> {
    // The file's bytes are wiped when dropped; the copy below is wiped by the caller.
    let bytes = match std::fs::read(path) {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(e) => {
            log::debug!(
                "no libvirt system token from {}: {e}; private secrets stay refused",
                path.display()
            );
            return None;
        }
    };
    let token: Vec<u8> = bytes.trim_ascii().to_vec();
    if token.is_empty() {
        log::debug!("{} is empty: no libvirt system token", path.display());
        return None;
    }
    match CString::new(token) {
        Ok(token) => Some(token),
        Err(e) => {
            wipe_bytes(e.into_vec());
            log::warn!(
                "{} holds no libvirt system token (a NUL byte); private secrets stay refused",
                path.display()
            );
            None
        }
    }
}

/// Zeroes a token's bytes before they are freed.
fn wipe(token: CString) {
    wipe_bytes(token.into_bytes_with_nul());
}

fn wipe_bytes(mut bytes: Vec<u8>) {
    zeroize::Zeroize::zeroize(&mut bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_files_content_without_surrounding_white_space() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("system.token");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(
            read_token(&path).unwrap().as_bytes(),
            b"0123456789abcdef0123456789abcdef"
        );
        std::fs::write(&path, "  \n").unwrap();
        assert!(read_token(&path).is_none());
        std::fs::write(&path, b"ab\0cd").unwrap();
        assert!(read_token(&path).is_none());
        assert!(read_token(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn the_default_token_is_libvirts() {
        let s = LibvirtSecrets::new("secret:///system", None).unwrap();
        assert_eq!(s.token, Path::new("/run/libvirt/common/system.token"));
        let s = LibvirtSecrets::new("secret:///system", Some(Path::new("/t"))).unwrap();
        assert_eq!(s.token, Path::new("/t"));
    }
}
