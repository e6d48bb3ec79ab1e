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

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;
use zeroize::Zeroizing;

pub use crate::error::SecretError;
pub use crate::image::luks::Passphrase;
use crate::xml::{SecretDef, SecretRef, SecretUsageType};

/// Gives the passphrase of an encrypted volume's secret.
pub trait Secrets: Send + Sync {
    /// The passphrase of `secret` (the XML's `<secret>`, when it has one).
    fn passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError>;

    /// The secret whose usage is the volume at `path` (libvirt's convention for a volume's
    /// passphrase), for `vol-dumpxml`; none by default.
    fn volume_secret(&self, _path: &Path) -> Option<SecretRef> {
        None
    }

    /// The secret to ask for the passphrase of the existing volume at `path` (a copy that
    /// re-encrypts reads its source with it): the one [`Secrets::volume_secret`] knows by
    /// default; a libvirt-backed source names libvirt's volume usage, which libvirt resolves.
    fn source_secret(&self, path: &Path) -> Option<SecretRef> {
        self.volume_secret(path)
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

/// Why a call on qpoold's secret store failed; each reads as libvirt's secret driver words
/// it.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// The secret XML was refused.
    #[error("invalid secret XML")]
    Xml(#[from] crate::xml::Error),
    /// No secret with this UUID.
    #[error("no secret with matching uuid '{0}'")]
    NoUuid(Uuid),
    /// No secret with this usage.
    #[error("no secret with matching usage '{0}'")]
    NoUsage(String),
    /// Another secret has this usage already (one secret per usage).
    #[error("a secret with UUID {uuid} already defined for use with {usage}")]
    UsageTaken {
        /// The other secret.
        uuid: Uuid,
        /// The usage id.
        usage: String,
    },
    /// A redefinition with another usage.
    #[error("a secret with UUID {uuid} is already defined for use with {usage}")]
    UsageChanged {
        /// The secret.
        uuid: Uuid,
        /// Its usage id ("" without one).
        usage: String,
    },
    /// A redefinition that would make a private secret public.
    #[error("cannot change private flag on existing secret")]
    PrivateFlag,
    /// The secret has no value.
    #[error("secret '{0}' does not have a value")]
    NoValue(Uuid),
    /// The value of a private secret is never given to a client.
    #[error("secret is private")]
    Private,
    /// A value larger than libvirt's protocol carries.
    #[error("a secret value of {0} bytes is larger than {MAX_VALUE} bytes")]
    ValueTooLarge(usize),
    /// Reading or writing the store.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The largest secret value (`REMOTE_SECRET_VALUE_MAX`).
pub const MAX_VALUE: usize = 65536;

/// Which secrets a listing keeps (`virConnectListAllSecretsFlags`: each pair filters only
/// when one of its two bits is set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecretFilter {
    /// `Some(true)`: ephemeral only; `Some(false)`: persistent only.
    pub ephemeral: Option<bool>,
    /// `Some(true)`: private only; `Some(false)`: public only.
    pub private: Option<bool>,
}

impl SecretFilter {
    fn keeps(&self, def: &SecretDef) -> bool {
        self.ephemeral.is_none_or(|e| e == def.ephemeral)
            && self.private.is_none_or(|p| p == def.private)
    }
}

struct StoredSecret {
    def: SecretDef,
    value: Option<Zeroizing<Vec<u8>>>,
}

type SecretMap = BTreeMap<Uuid, StoredSecret>;

/// qpoold's own secrets, as libvirt's secret driver keeps them: each persistent secret as
/// `UUID.xml` (its definition) and `UUID.base64` (its value) in a root-only directory
/// (mode 0700, files 0600), created at the first definition; ephemeral secrets in memory
/// only. Values are never logged, and a private secret's value is given only to the
/// encrypted creates of this daemon ([`Secrets`]), never to a client ([`SecretStore::value`]).
pub struct SecretStore {
    dir: PathBuf,
    secrets: Mutex<SecretMap>,
    /// Where a passphrase the store does not have is looked up next.
    fallback: Option<std::sync::Arc<dyn Secrets>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

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
    let temp = PathBuf::from(temp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(store_io("write", &temp)(e));
    }
    std::fs::rename(&temp, path).map_err(store_io("write", path))
}

/// Removes `path`; a missing file is no error.
fn remove_if_there(path: &Path) -> Result<(), SecretStoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(store_io("remove", path)(e)),
    }
}

impl SecretStore {
    /// Opens the store in `dir`, reading the secrets kept there (none when it does not
    /// exist yet). A definition that does not parse, or a value that is not base64, is
    /// logged and left out.
    pub fn open(dir: &Path) -> Result<SecretStore, SecretStoreError> {
        let mut secrets = BTreeMap::new();
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
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(store_io("read", &path))?;
            let mut def = match SecretDef::parse(&text) {
                Ok(def) if def.uuid.is_none_or(|u| u == uuid) => def,
                Ok(_) => {
                    log::warn!(
                        "secret {} ignored: its <uuid> does not match the file name",
                        path.display()
                    );
                    continue;
                }
                Err(e) => {
                    log::warn!("secret {} ignored: {e}", path.display());
                    continue;
                }
            };
            def.uuid = Some(uuid);
            let value = Self::read_value(dir, &uuid)?;
            secrets.insert(uuid, StoredSecret { def, value });
        }
        Ok(SecretStore {
            dir: dir.to_path_buf(),
            secrets: Mutex::new(secrets),
            fallback: None,
        })
    }

    /// The store, asking `fallback` for the passphrase of a secret it does not have (libvirt's
    /// secret driver, qpoold.conf `secrets_uri`).
    pub fn with_fallback(mut self, fallback: std::sync::Arc<dyn Secrets>) -> SecretStore {
        self.fallback = Some(fallback);
        self
    }

    fn read_value(dir: &Path, uuid: &Uuid) -> Result<Option<Zeroizing<Vec<u8>>>, SecretStoreError> {
        use base64::Engine as _;
        let path = dir.join(format!("{uuid}.base64"));
        let b64 = match std::fs::read(&path) {
            Ok(b64) => Zeroizing::new(b64),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(store_io("read", &path)(e)),
        };
        match base64::engine::general_purpose::STANDARD.decode(b64.trim_ascii()) {
            Ok(v) => Ok(Some(Zeroizing::new(v))),
            Err(_) => {
                log::warn!("the value of secret {uuid} is not base64; ignored");
                Ok(None)
            }
        }
    }

    /// The directory the store keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, SecretMap> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates the store's directory, mode 0700 (its parents as the system makes them).
    fn ensure_dir(&self) -> Result<(), SecretStoreError> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).map_err(store_io("create", parent))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.dir.is_dir() => Ok(()),
            Err(e) => Err(store_io("create", &self.dir)(e)),
        }
    }

    fn path(&self, uuid: &Uuid, ext: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.{ext}"))
    }

    fn write_value(&self, uuid: &Uuid, value: &[u8]) -> Result<(), SecretStoreError> {
        use base64::Engine as _;
        self.ensure_dir()?;
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(value));
        write_private(&self.path(uuid, "base64"), b64.as_bytes())
    }

    /// `secret-define`: defines a secret (a new UUID when the XML has none), or redefines
    /// the one with the same UUID, with libvirt's rules: the usage stays, a private secret
    /// stays private, no other secret may have the usage; a redefinition may make a secret
    /// ephemeral (its files are removed) or persistent (its value is written). Returns the
    /// UUID and the definition.
    pub fn define(&self, xml: &str) -> Result<(Uuid, SecretDef), SecretStoreError> {
        let mut def = SecretDef::parse(xml)?;
        let mut secrets = self.lock();
        let old = def.uuid.and_then(|u| secrets.get(&u));
        if let (Some(old), Some(uuid)) = (old, def.uuid) {
            let id = |d: &SecretDef| d.usage.as_ref().map(|u| u.id.clone());
            if id(&old.def) != id(&def) {
                return Err(SecretStoreError::UsageChanged {
                    uuid,
                    usage: id(&old.def).unwrap_or_default(),
                });
            }
            if old.def.private && !def.private {
                return Err(SecretStoreError::PrivateFlag);
            }
        } else if let Some(usage) = &def.usage
            && let Some((other, _)) = secrets
                .iter()
                .find(|(_, s)| s.def.usage.as_ref() == Some(usage))
        {
            return Err(SecretStoreError::UsageTaken {
                uuid: *other,
                usage: usage.id.clone(),
            });
        }
        let uuid = def.uuid.unwrap_or_else(Uuid::new_v4);
        def.uuid = Some(uuid);
        let old = secrets.remove(&uuid);
        let value = old.as_ref().and_then(|s| s.value.clone());
        let was_ephemeral = old.as_ref().is_some_and(|s| s.def.ephemeral);
        let written = if def.ephemeral {
            if old.as_ref().is_some_and(|s| !s.def.ephemeral) {
                remove_if_there(&self.path(&uuid, "xml"))
                    .and_then(|()| remove_if_there(&self.path(&uuid, "base64")))
            } else {
                Ok(())
            }
        } else {
            self.ensure_dir()
                .and_then(|()| match (&value, was_ephemeral) {
                    (Some(v), true) => self.write_value(&uuid, v),
                    _ => Ok(()),
                })
                .and_then(|()| {
                    write_private(&self.path(&uuid, "xml"), def.to_xml(&uuid).as_bytes())
                })
        };
        if let Err(e) = written {
            if let Some(old) = old {
                secrets.insert(uuid, old);
            }
            return Err(e);
        }
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

    /// `secret-undefine`: forgets the secret and removes its files.
    pub fn undefine(&self, uuid: &Uuid) -> Result<(), SecretStoreError> {
        let mut secrets = self.lock();
        let secret = secrets.get(uuid).ok_or(SecretStoreError::NoUuid(*uuid))?;
        if !secret.def.ephemeral {
            remove_if_there(&self.path(uuid, "xml"))?;
            remove_if_there(&self.path(uuid, "base64"))?;
        }
        secrets.remove(uuid);
        log::info!("undefined secret {uuid}");
        Ok(())
    }

    /// `secret-set-value`: the value, written (base64, 0600) for a persistent secret.
    pub fn set_value(&self, uuid: &Uuid, value: &[u8]) -> Result<(), SecretStoreError> {
        if value.len() > MAX_VALUE {
            return Err(SecretStoreError::ValueTooLarge(value.len()));
        }
        let mut secrets = self.lock();
        let secret = secrets
            .get_mut(uuid)
            .ok_or(SecretStoreError::NoUuid(*uuid))?;
        if !secret.def.ephemeral {
            self.write_value(uuid, value)?;
        }
        secret.value = Some(Zeroizing::new(value.to_vec()));
        log::info!("set the value of secret {uuid}");
        Ok(())
    }

    /// `secret-get-value` from a client: refused for a private secret, whoever asks.
    pub fn value(&self, uuid: &Uuid) -> Result<Zeroizing<Vec<u8>>, SecretStoreError> {
        let secrets = self.lock();
        let secret = secrets.get(uuid).ok_or(SecretStoreError::NoUuid(*uuid))?;
        if secret.def.private {
            return Err(SecretStoreError::Private);
        }
        secret.value.clone().ok_or(SecretStoreError::NoValue(*uuid))
    }

    /// The definition of the secret `uuid`.
    pub fn lookup_uuid(&self, uuid: &Uuid) -> Result<SecretDef, SecretStoreError> {
        self.lock()
            .get(uuid)
            .map(|s| s.def.clone())
            .ok_or(SecretStoreError::NoUuid(*uuid))
    }

    /// The secret with this usage.
    pub fn lookup_usage(
        &self,
        kind: SecretUsageType,
        id: &str,
    ) -> Result<(Uuid, SecretDef), SecretStoreError> {
        self.lock()
            .iter()
            .find(|(_, s)| {
                s.def
                    .usage
                    .as_ref()
                    .is_some_and(|u| u.kind == kind && u.id == id)
            })
            .map(|(u, s)| (*u, s.def.clone()))
            .ok_or_else(|| SecretStoreError::NoUsage(id.to_string()))
    }

    /// The secrets `filter` keeps, by UUID.
    pub fn list(&self, filter: SecretFilter) -> Vec<(Uuid, SecretDef)> {
        self.lock()
            .iter()
            .filter(|(_, s)| filter.keeps(&s.def))
            .map(|(u, s)| (*u, s.def.clone()))
            .collect()
    }
}

impl Secrets for SecretStore {
    fn passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError> {
        match (self.own_passphrase(secret), &self.fallback) {
            (Err(SecretError::NotFound(_)), Some(fallback)) => fallback.passphrase(secret),
            (got, _) => got,
        }
    }

    fn volume_secret(&self, path: &Path) -> Option<SecretRef> {
        let path = path.to_str()?;
        self.lookup_usage(SecretUsageType::Volume, path)
            .ok()
            .map(|(u, _)| SecretRef::Uuid(u.to_string()))
    }

    /// The store's own volume secret, else the fallback's (libvirt's, with `secrets_uri`).
    fn source_secret(&self, path: &Path) -> Option<SecretRef> {
        self.volume_secret(path)
            .or_else(|| self.fallback.as_ref()?.source_secret(path))
    }
}

impl SecretStore {
    /// The passphrase of a secret of the store itself.
    fn own_passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError> {
        let secret = secret.ok_or(SecretError::NoSecret)?;
        let not_found = || SecretError::NotFound(secret.clone());
        let secrets = self.lock();
        let (uuid, stored) = match secret {
            SecretRef::Uuid(text) => {
                let uuid = Uuid::parse_str(text).map_err(|_| not_found())?;
                secrets.get_key_value(&uuid).ok_or_else(not_found)?
            }
            SecretRef::Usage(id) => secrets
                .iter()
                .find(|(_, s)| {
                    s.def
                        .usage
                        .as_ref()
                        .is_some_and(|u| u.kind == SecretUsageType::Volume && &u.id == id)
                })
                .ok_or_else(not_found)?,
        };
        let value = stored.value.as_ref().ok_or(SecretError::NoValue(*uuid))?;
        Ok(Passphrase::new(value.to_vec()))
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

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    const VOLUME_SECRET: &str = "<secret ephemeral='no' private='yes'>
        <uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid>
        <usage type='volume'><volume>/p/e.qcow2</volume></usage></secret>";

    #[test]
    fn the_store_keeps_definitions_and_values_root_only_and_reads_them_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/secrets");
        let store = SecretStore::open(&dir).unwrap();
        assert!(!dir.exists(), "nothing is created before a definition");
        let (uuid, def) = store.define(VOLUME_SECRET).unwrap();
        assert!(def.private);
        store.set_value(&uuid, b"pass phrase").unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(format!("{uuid}.xml"))), 0o600);
        let b64 = dir.join(format!("{uuid}.base64"));
        assert_eq!(mode(&b64), 0o600);
        assert_eq!(std::fs::read_to_string(&b64).unwrap(), "cGFzcyBwaHJhc2U=");
        assert!(matches!(store.value(&uuid), Err(SecretStoreError::Private)));

        let again = SecretStore::open(&dir).unwrap();
        assert_eq!(again.lookup_uuid(&uuid).unwrap(), def);
        let by_usage = SecretRef::Usage("/p/e.qcow2".into());
        assert_eq!(
            again.passphrase(Some(&by_usage)).unwrap().bytes(),
            b"pass phrase"
        );
        assert_eq!(
            again.volume_secret(Path::new("/p/e.qcow2")),
            Some(SecretRef::Uuid(uuid.to_string()))
        );
        again.undefine(&uuid).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert!(matches!(
            again.passphrase(Some(&by_usage)),
            Err(SecretError::NotFound(_))
        ));
    }

    #[test]
    fn redefinitions_follow_libvirts_rules() {
        let root = tempfile::tempdir().unwrap();
        let store = SecretStore::open(root.path()).unwrap();
        let (uuid, _) = store.define(VOLUME_SECRET).unwrap();
        let e = store
            .define("<secret><usage type='volume'><volume>/p/e.qcow2</volume></usage></secret>")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("a secret with UUID {uuid} already defined for use with /p/e.qcow2")
        );
        let public = VOLUME_SECRET.replace("private='yes'", "private='no'");
        assert!(matches!(
            store.define(&public),
            Err(SecretStoreError::PrivateFlag)
        ));
        let moved = VOLUME_SECRET.replace("/p/e.qcow2", "/p/f.qcow2");
        assert!(matches!(
            store.define(&moved),
            Err(SecretStoreError::UsageChanged { .. })
        ));
        // Persistent to ephemeral and back: the files go, then come back with the value.
        store.set_value(&uuid, b"v").unwrap();
        let ephemeral = VOLUME_SECRET.replace("ephemeral='no'", "ephemeral='yes'");
        store.define(&ephemeral).unwrap();
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        store.define(VOLUME_SECRET).unwrap();
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 2);
        let only_ephemeral = SecretFilter {
            ephemeral: Some(true),
            private: None,
        };
        assert!(store.list(only_ephemeral).is_empty());
        assert_eq!(store.list(SecretFilter::default()).len(), 1);
        assert!(matches!(
            store.set_value(&uuid, &vec![0; MAX_VALUE + 1]),
            Err(SecretStoreError::ValueTooLarge(_))
        ));
        let missing = Uuid::nil();
        assert_eq!(
            store.undefine(&missing).unwrap_err().to_string(),
            "no secret with matching uuid '00000000-0000-0000-0000-000000000000'"
        );
    }

    #[test]
    fn a_secret_without_a_value_gives_no_passphrase() {
        let root = tempfile::tempdir().unwrap();
        let store = SecretStore::open(root.path()).unwrap();
        let (uuid, _) = store.define("<secret/>").unwrap();
        let by_uuid = SecretRef::Uuid(uuid.to_string());
        assert!(matches!(
            store.passphrase(Some(&by_uuid)),
            Err(SecretError::NoValue(_))
        ));
        assert!(matches!(
            store.value(&uuid),
            Err(SecretStoreError::NoValue(_))
        ));
        assert!(matches!(store.passphrase(None), Err(SecretError::NoSecret)));
    }

    /// A libvirt-like fallback: it names every volume's secret by usage and has none.
    struct ByUsage;

    impl Secrets for ByUsage {
        fn passphrase(&self, secret: Option<&SecretRef>) -> Result<Passphrase, SecretError> {
            Err(SecretError::NotFound(
                secret.cloned().ok_or(SecretError::NoSecret)?,
            ))
        }

        fn source_secret(&self, path: &Path) -> Option<SecretRef> {
            Some(SecretRef::Usage(path.to_str()?.to_string()))
        }
    }

    #[test]
    fn a_sources_secret_is_the_stores_own_then_the_fallbacks() {
        let root = tempfile::tempdir().unwrap();
        let store = SecretStore::open(root.path())
            .unwrap()
            .with_fallback(std::sync::Arc::new(ByUsage));
        let (uuid, _) = store
            .define("<secret><usage type='volume'><volume>/p/own.qcow2</volume></usage></secret>")
            .unwrap();
        assert_eq!(
            store.source_secret(Path::new("/p/own.qcow2")),
            Some(SecretRef::Uuid(uuid.to_string()))
        );
        assert_eq!(
            store.source_secret(Path::new("/p/other.qcow2")),
            Some(SecretRef::Usage("/p/other.qcow2".into()))
        );
        // vol-dumpxml names only the store's own.
        assert_eq!(store.volume_secret(Path::new("/p/other.qcow2")), None);
        let alone = SecretStore::open(&root.path().join("alone")).unwrap();
        assert_eq!(alone.source_secret(Path::new("/p/other.qcow2")), None);
    }
}
