//! Where an encrypted volume's passphrase comes from.
//!
//! Owns: the [`Secrets`] a pool asks when it creates an encrypted volume (the secret the
//! XML names, libvirt's `<secret type='passphrase' uuid|usage>`), its failures
//! ([`SecretError`]), and [`PassphraseFile`], the CLI's `--secret-file` (one file's bytes,
//! whatever secret the XML names).
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
