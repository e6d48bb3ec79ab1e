//! Passphrases from libvirt's secret driver (`virtsecretd` on hosts with modular daemons,
//! or a monolithic libvirtd), for qpoold's encrypted creates: qpoold.conf `secrets_uri`.
//!
//! Owns: looking a volume's `<secret>` up in libvirt (by UUID, or by usage as a volume
//! secret) and reading its value, one connection per create.
//! Must not: define, change or list libvirt's secrets, keep a value longer than the create
//! that needs it, or put one in an error or a log.

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
}

impl LibvirtSecrets {
    /// Secrets from the libvirt daemon at `uri` (`secret:///system`, say); nothing is
    /// connected until a create asks.
    pub fn new(uri: &str) -> Result<LibvirtSecrets, super::BridgeError> {
        Ok(LibvirtSecrets {
            uri: uri.to_string(),
        })
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
        let got = self.lookup(&conn, secret);
        let _ = conn.close();
        got
    }
}
