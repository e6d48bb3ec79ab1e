//! Where an encrypted volume's passphrase comes from.
//!
//! Owns: the [`Secrets`] a pool asks when it creates an encrypted volume (the secret the
//! XML names, libvirt's `<secret type='passphrase' uuid|usage>`), its failures
//! ([`SecretError`]), [`PassphraseFile`], the CLI's `--secret-file` (one file's bytes,
//! whatever secret the XML names), and [`SecretStore`], qpoold's own secrets as libvirt's
//! secret driver keeps them (definitions and values under a root-only directory, lookups by
//! UUID and usage, one secret per usage, private values never given out).
//! Must not: log, print or return a passphrase anywhere but to the image writer; keep one
//! in memory longer than the create that needs it ([`Passphrase`] wipes itself).

use std::io::Read;
use std::path::Path;

pub use crate::error::SecretError;
pub use crate::image::luks::Passphrase;
use crate::xml::SecretRef;

/// How a secret is named in messages.
pub fn describe(secret: &SecretRef) -> String {
    match secret {
        SecretRef::Uuid(uuid) => format!("uuid '{uuid}'"),
        SecretRef::Usage(usage) => format!("usage '{usage}'"),
    }
}

/// Gives the passphrase of an encrypted volume's secret.
pub trait Secrets: Send + Sync {
    /// The passphrase of `secret` (the XML's `<secret>`, when it has one).
    fn passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError>;

    /// The secret whose usage is the volume at `path` (libvirt's convention for a volume's
    /// passphrase), for `vol-dumpxml`; none by default.
    fn volume_secret(&self, _path: &Path) -> Option<SecretRef> {
        None
    }
}

/// A passphrase read from a file, given for any secret (`qpool --secret-file`).
#[derive(Debug)]
pub struct PassphraseFile(Passphrase);

/// The longest passphrase file read (libvirt's secret values are small too).
const MAX_PASSPHRASE: u64 = 64 * 1024;

impl PassphraseFile {
    /// Reads the passphrase from `path`: its bytes, less one final newline (what `echo`
    /// leaves).
    pub fn read(path: &Path) -> Result<PassphraseFile, SecretError> {
        let reading = |source| SecretError::ReadingFile {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(reading)?;
        let mut bytes = Vec::new();
        file.take(MAX_PASSPHRASE)
            .read_to_end(&mut bytes)
            .map_err(reading)?;
        let mut passphrase = Passphrase::new(bytes);
        if passphrase.bytes().ends_with(b"\n") {
            let mut trimmed = passphrase.bytes().to_vec();
            trimmed.pop();
            passphrase = Passphrase::new(trimmed);
        }
        if passphrase.bytes().is_empty() {
            return Err(SecretError::Empty(path.to_path_buf()));
        }
        Ok(PassphraseFile(passphrase))
    }
}

impl Secrets for PassphraseFile {
    fn passphrase(&self, _secret: Option<&SecretRef>) -> Result<Passphrase, SecretError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_file_loses_one_final_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, b"pass\n\n").unwrap();
        let got = PassphraseFile::read(&path)
            .unwrap()
            .passphrase(None)
            .unwrap();
        assert_eq!(got.bytes(), b"pass\n");
        std::fs::write(&path, b"\n").unwrap();
        assert!(matches!(
            PassphraseFile::read(&path),
            Err(SecretError::Empty(_))
        ));
        assert!(matches!(
            PassphraseFile::read(&dir.path().join("missing")),
            Err(SecretError::ReadingFile { .. })
        ));
    }
}

/// Why a secret call of qpoold's store failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// The secret XML was refused.
    #[error("invalid secret XML")]
    Xml(#[from] crate::xml::Error),
    /// No secret with this UUID or usage.
    #[error("no secret with matching {0}")]
    NoSecret(String),
    /// Another secret has this usage already (libvirt's rule: one secret per usage).
    #[error("a secret with UUID {uuid} is already defined for use with {usage}")]
    UsageTaken {
        /// The other secret.
        uuid: uuid::Uuid,
        /// The usage.
        usage: String,
    },
    /// A redefinition may not make a persistent secret ephemeral or the other way round,
    /// nor change its privacy (libvirt's rules).
    #[error("cannot change the {0} of an existing secret")]
    Immutable(&'static str),
    /// The secret has no value.
    #[error("secret '{0}' does not have a value")]
    NoValue(uuid::Uuid),
    /// The value of a private secret is never given out.
    #[error("secret is private")]
    Private,
    /// The value is larger than libvirt allows.
    #[error("a secret value of {0} bytes is larger than {MAX_VALUE} bytes")]
    ValueTooLarge(usize),
    /// Reading or writing the store.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The largest secret value (`REMOTE_SECRET_VALUE_MAX`).
pub const MAX_VALUE: usize = 65536;

struct StoredSecret {
    def: crate::xml::SecretDef,
    value: Option<Zeroizing<Vec<u8>>>,
}

/// qpoold's own secrets, as libvirt's secret driver keeps them: each persistent secret as
/// `UUID.xml` (its definition) and `UUID.base64` (its value) in a root-only directory
/// (mode 0700, files 0600), created at the first definition; ephemeral secrets in memory
/// only. Values are never logged, and a private secret's value is given only to the
/// encrypted creates of this daemon ([`Secrets`]), never to a client.
pub struct SecretStore {
    dir: std::path::PathBuf,
    secrets: std::sync::Mutex<std::collections::BTreeMap<uuid::Uuid, StoredSecret>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

use zeroize::Zeroizing;

fn store_io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SecretStoreError {
    let path = path.to_path_buf();
    move |source| SecretStoreError::Io { what, path, source }
}

/// Writes `bytes` to `path` with mode 0600, through a temporary name and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretStoreError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = std::path::PathBuf::from(temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(store_io("write", &temp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(store_io("write", &temp))?;
    std::fs::rename(&temp, path).map_err(store_io("write", path))
}

fn usage_text(u: &crate::xml::SecretUsage) -> String {
    format!("{} {}", u.kind.as_str(), u.id)
}

impl SecretStore {
    /// Opens the store in `dir`, reading the secrets kept there (none when it does not
    /// exist yet). A definition that does not parse is logged and left out.
    pub fn open(dir: &Path) -> Result<SecretStore, SecretStoreError> {
        use base64::Engine as _;
        let mut secrets = std::collections::BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(store_io("read", dir)(e)),
        };
        for entry in entries.into_iter().flatten() {
            let path = entry.map_err(store_io("read", dir))?.path();
            let Some(uuid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".xml"))
                .and_then(|n| uuid::Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(store_io("read", &path))?;
            let mut def = match crate::xml::SecretDef::parse(&text) {
                Ok(def) => def,
                Err(e) => {
                    log::warn!("secret {} ignored: {e}", path.display());
                    continue;
                }
            };
            def.uuid = Some(uuid);
            let value_path = dir.join(format!("{uuid}.base64"));
            let value = match std::fs::read(&value_path) {
                Ok(b64) => {
                    let b64 = Zeroizing::new(b64);
                    match base64::engine::general_purpose::STANDARD.decode(b64.trim_ascii()) {
                        Ok(v) => Some(Zeroizing::new(v)),
                        Err(_) => {
                            log::warn!("the value of secret {uuid} is not base64; ignored");
                            None
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(store_io("read", &value_path)(e)),
            };
            secrets.insert(uuid, StoredSecret { def, value });
        }
        Ok(SecretStore {
            dir: dir.to_path_buf(),
            secrets: std::sync::Mutex::new(secrets),
        })
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<uuid::Uuid, StoredSecret>> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ensure_dir(&self) -> Result<(), SecretStoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(store_io("create", &self.dir))
    }

    /// `secret-define`: defines a secret, or redefines the one with the same UUID; returns
    /// its UUID and definition.
    pub fn define(
        &self,
        xml: &str,
    ) -> Result<(uuid::Uuid, crate::xml::SecretDef), SecretStoreError> {
        let mut def = crate::xml::SecretDef::parse(xml)?;
        let mut secrets = self.lock();
        if let Some(usage) = &def.usage
            && let Some((other, _)) = secrets
                .iter()
                .find(|(u, s)| Some(**u) != def.uuid && s.def.usage.as_ref() == Some(usage))
        {
            return Err(SecretStoreError::UsageTaken {
                uuid: *other,
                usage: usage_text(usage),
            });
        }
        let uuid = def.uuid.unwrap_or_else(uuid::Uuid::new_v4);
        def.uuid = Some(uuid);
        if let Some(old) = secrets.get(&uuid) {
            if old.def.ephemeral != def.ephemeral {
                return Err(SecretStoreError::Immutable("ephemeral flag"));
            }
            if old.def.private != def.private {
                return Err(SecretStoreError::Immutable("private flag"));
            }
        }
        if !def.ephemeral {
            self.ensure_dir()?;
            write_private(
                &self.dir.join(format!("{uuid}.xml")),
                def.to_xml(&uuid).as_bytes(),
            )?;
        }
        let value = secrets.remove(&uuid).and_then(|s| s.value);
        secrets.insert(
            uuid,
            StoredSecret {
                def: def.clone(),
                value,
            },
        );
        log::info!("defined secret {uuid}");
        Ok((uuid, def))
    }

    /// `secret-undefine`.
    pub fn undefine(&self, uuid: &uuid::Uuid) -> Result<(), SecretStoreError> {
        let mut secrets = self.lock();
        let secret = secrets
            .get(uuid)
            .ok_or_else(|| SecretStoreError::NoSecret(format!("uuid '{uuid}'")))?;
        if !secret.def.ephemeral {
            for ext in ["xml", "base64"] {
                let path = self.dir.join(format!("{uuid}.{ext}"));
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(store_io("remove", &path)(e)),
                }
            }
        }
        secrets.remove(uuid);
        log::info!("undefined secret {uuid}");
        Ok(())
    }

    /// `secret-set-value`.
    pub fn set_value(&self, uuid: &uuid::Uuid, value: &[u8]) -> Result<(), SecretStoreError> {
        use base64::Engine as _;
        if value.len() > MAX_VALUE {
            return Err(SecretStoreError::ValueTooLarge(value.len()));
        }
        let mut secrets = self.lock();
        let secret = secrets
            .get_mut(uuid)
            .ok_or_else(|| SecretStoreError::NoSecret(format!("uuid '{uuid}'")))?;
        if !secret.def.ephemeral {
            self.ensure_dir()?;
            let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(value));
            write_private(&self.dir.join(format!("{uuid}.base64")), b64.as_bytes())?;
        }
        secret.value = Some(Zeroizing::new(value.to_vec()));
        log::info!("set the value of secret {uuid}");
        Ok(())
    }

    /// `secret-get-value` from a client: refused for a private secret.
    pub fn value(&self, uuid: &uuid::Uuid) -> Result<Zeroizing<Vec<u8>>, SecretStoreError> {
        let secrets = self.lock();
        let secret = secrets
            .get(uuid)
            .ok_or_else(|| SecretStoreError::NoSecret(format!("uuid '{uuid}'")))?;
        if secret.def.private {
            return Err(SecretStoreError::Private);
        }
        secret.value.clone().ok_or(SecretStoreError::NoValue(*uuid))
    }

    /// The definition of the secret `uuid`.
    pub fn lookup_uuid(
        &self,
        uuid: &uuid::Uuid,
    ) -> Result<crate::xml::SecretDef, SecretStoreError> {
        self.lock()
            .get(uuid)
            .map(|s| s.def.clone())
            .ok_or_else(|| SecretStoreError::NoSecret(format!("uuid '{uuid}'")))
    }

    /// The secret with this usage.
    pub fn lookup_usage(
        &self,
        kind: crate::xml::SecretUsageType,
        id: &str,
    ) -> Result<(uuid::Uuid, crate::xml::SecretDef), SecretStoreError> {
        self.lock()
            .iter()
            .find(|(_, s)| {
                s.def
                    .usage
                    .as_ref()
                    .is_some_and(|u| u.kind == kind && u.id == id)
            })
            .map(|(u, s)| (*u, s.def.clone()))
            .ok_or_else(|| SecretStoreError::NoSecret(format!("usage '{id}'")))
    }

    /// Every secret, by UUID.
    pub fn list(&self) -> Vec<(uuid::Uuid, crate::xml::SecretDef)> {
        self.lock()
            .iter()
            .map(|(u, s)| (*u, s.def.clone()))
            .collect()
    }
}

impl Secrets for SecretStore {
    fn passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError> {
        let secret = secret.ok_or(SecretError::NoSecret)?;
        let not_found = || SecretError::NotFound(describe(secret));
        let secrets = self.lock();
        let (uuid, stored) = match secret {
            SecretRef::Uuid(text) => {
                let uuid = uuid::Uuid::parse_str(text).map_err(|_| not_found())?;
                secrets.get_key_value(&uuid).ok_or_else(not_found)?
            }
            SecretRef::Usage(id) => secrets
                .iter()
                .find(|(_, s)| {
                    s.def.usage.as_ref().is_some_and(|u| {
                        u.kind == crate::xml::SecretUsageType::Volume && &u.id == id
                    })
                })
                .ok_or_else(not_found)?,
        };
        let value = stored
            .value
            .as_ref()
            .ok_or_else(|| SecretError::NoValue(uuid.to_string()))?;
        Ok(Passphrase::new(value.to_vec()))
    }

    fn volume_secret(&self, path: &Path) -> Option<SecretRef> {
        let path = path.to_str()?;
        self.lock()
            .iter()
            .find(|(_, s)| {
                s.def
                    .usage
                    .as_ref()
                    .is_some_and(|u| u.kind == crate::xml::SecretUsageType::Volume && u.id == path)
            })
            .map(|(u, _)| SecretRef::Uuid(u.to_string()))
    }
}
