//! The bridge in a build without the cargo feature `libvirt`: every entry point answers
//! [`BridgeError::NotBuilt`], so the faces need no conditional code.
//!
//! Owns: nothing but that answer.
//! Must not: pretend to mirror anything.

use std::convert::Infallible;
use std::sync::Arc;

use super::{BridgeError, Done, Mirrored, Settings, SyncReport};
use crate::pool::registry::Registry;

/// A connection to libvirtd; none can exist in this build.
#[derive(Debug)]
pub struct Bridge {
    never: Infallible,
}

impl Bridge {
    /// Always [`BridgeError::NotBuilt`].
    pub fn connect(_settings: &Settings) -> Result<Bridge, BridgeError> {
        Err(BridgeError::NotBuilt)
    }

    /// Unreachable: no bridge exists.
    pub fn is_alive(&self) -> bool {
        match self.never {}
    }

    /// Unreachable: no bridge exists.
    pub fn mirror(&self, _pool: &Mirrored) -> Result<Vec<Done>, BridgeError> {
        match self.never {}
    }

    /// Unreachable: no bridge exists.
    pub fn remove(&self, _qpool_name: &str) -> Result<Vec<Done>, BridgeError> {
        match self.never {}
    }

    /// Unreachable: no bridge exists.
    pub fn changed(&self, _pool: &Mirrored) -> Result<Vec<Done>, BridgeError> {
        match self.never {}
    }

    /// Unreachable: no bridge exists.
    pub fn sync(&self, _pools: &[Mirrored]) -> SyncReport {
        match self.never {}
    }
}

/// Always [`BridgeError::NotBuilt`].
pub fn attach(_registry: &Arc<Registry>, _settings: Settings) -> Result<(), BridgeError> {
    Err(BridgeError::NotBuilt)
}

/// libvirt's secrets; none can be read in this build.
#[derive(Debug)]
pub struct LibvirtSecrets {
    never: Infallible,
}

impl LibvirtSecrets {
    /// Always [`BridgeError::NotBuilt`].
    pub fn new(
        _uri: &str,
        _token: Option<&std::path::Path>,
    ) -> Result<LibvirtSecrets, BridgeError> {
        Err(BridgeError::NotBuilt)
    }
}

impl crate::pool::Secrets for LibvirtSecrets {
    fn passphrase(
        &self,
        _secret: Option<&crate::xml::SecretRef>,
    ) -> Result<crate::pool::Passphrase, crate::pool::SecretError> {
        match self.never {}
    }
}
