//! A volume's `<encryption format='luks'>`: the secret that holds its passphrase
//! ([`SecretRef`]), the cipher and IV generator (qemu-img's defaults for what is left out) and
//! qpool's `iter-time` in ([`EncryptionDef`]), and the element libvirt prints for an encrypted
//! volume ([`EncryptionReport`]).
//! Must not: look a secret up or hold a passphrase (that is `pool::secrets`).

use std::fmt::Write as _;

use super::super::ext;
use super::super::{Element, Error, escape};
use super::required;
use crate::model::{EncryptionFormat, HashAlg, IvGen, LuksCipher, UnknownName};

/// `<secret type='passphrase' …/>`: the libvirt secret that holds a volume's passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `uuid='…'`, in libvirt's canonical lower-case form.
    Uuid(String),
    /// `usage='…'`: the secret's usage id (for a volume secret, the volume's path).
    Usage(String),
}

impl std::fmt::Display for SecretRef {
    /// How a secret is named in messages: `uuid '…'` or `usage '…'`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Uuid(uuid) => write!(f, "uuid '{uuid}'"),
            SecretRef::Usage(usage) => write!(f, "usage '{usage}'"),
        }
    }
}

/// The longest iteration time `qpool:iter-time` takes, in milliseconds (an hour).
pub const MAX_ITER_TIME_MS: u32 = 3_600_000;

/// `<target><encryption>`: libvirt's volume encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionDef {
    /// `format='…'`.
    pub format: EncryptionFormat,
    /// `<secret>`; a document fed back from `vol-dumpxml` may have none (a copy with the
    /// source's key needs no passphrase).
    pub secret: Option<SecretRef>,
    /// `<cipher>` and `<ivgen>`, with qemu-img's defaults for what is left out.
    pub cipher: LuksCipher,
    /// Whether the XML has `<cipher>` or `<ivgen>` (a re-encrypted copy keeps its source's
    /// cipher otherwise).
    pub cipher_named: bool,
    /// `qpool:iter-time='MS'` (namespace `urn:qpool:volume:1`): the key-derivation time to
    /// calibrate PBKDF2 to, in milliseconds; qemu-img's 2000 when absent.
    pub iter_time_ms: Option<u32>,
}

/// libvirt's UUID forms: 32 hex digits, or dashed 8-4-4-4-12.
fn is_uuid(text: &str) -> bool {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    match text.len() {
        32 => hex(text),
        36 => text.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        }),
        _ => false,
    }
}

/// The canonical form libvirt prints a UUID in (lower case, dashed 8-4-4-4-12).
fn canonical_uuid(text: &str) -> String {
    let hex: String = text
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn parse_secret(el: &Element) -> Result<SecretRef, Error> {
    let kind = required(el, "type")?;
    if kind != "passphrase" {
        return Err(el.bad_attr(
            "type",
            format!("unsupported secret type '{kind}' (expected passphrase)"),
        ));
    }
    match (el.attr("uuid"), el.attr("usage")) {
        (Some(uuid), None) if is_uuid(uuid.trim()) => {
            Ok(SecretRef::Uuid(canonical_uuid(uuid.trim())))
        }
        (Some(uuid), None) => Err(el.bad_attr("uuid", format!("malformed UUID '{uuid}'"))),
        (None, Some(usage)) if !usage.is_empty() => Ok(SecretRef::Usage(usage.to_string())),
        (None, Some(_)) => Err(el.bad_attr("usage", "the usage is empty")),
        (Some(_), Some(_)) => Err(el.bad_value("give the secret's uuid or its usage, not both")),
        (None, None) => Err(Error::Missing {
            path: el.path.clone(),
            what: "attribute 'uuid' or 'usage'".into(),
        }),
    }
}

fn name_error(el: &Element, attr: &str) -> impl FnOnce(UnknownName) -> Error {
    move |e| el.bad_attr(attr, e.to_string())
}

pub(super) fn parse_encryption(el: &Element) -> Result<EncryptionDef, Error> {
    let format = required(el, "format")?
        .parse::<EncryptionFormat>()
        .map_err(name_error(el, "format"))?;
    if let Some(engine) = el.attr("engine")
        && engine != "qemu"
    {
        return Err(el.bad_attr(
            "engine",
            format!("unsupported encryption engine '{engine}' (qpool supports: qemu)"),
        ));
    }
    let mut secret = None;
    let mut cipher = LuksCipher::default();
    let mut cipher_named = false;
    for child in &el.children {
        cipher_named |= child.is_plain() && matches!(child.name.as_str(), "cipher" | "ivgen");
        match (child.is_plain(), child.name.as_str()) {
            (true, "secret") if secret.is_none() => secret = Some(parse_secret(child)?),
            (true, "secret") => {
                return Err(child.unsupported("too many secrets for luks encryption"));
            }
            (true, "cipher") => {
                cipher.bits =
                    LuksCipher::check_cipher(required(child, "name")?, required(child, "size")?)
                        .map_err(|e| child.bad_value(e.to_string()))?;
                if let Some(mode) = child.attr("mode") {
                    cipher.mode = mode.parse().map_err(name_error(child, "mode"))?;
                }
                if let Some(hash) = child.attr("hash") {
                    cipher.hash = hash.parse().map_err(name_error(child, "hash"))?;
                }
            }
            (true, "ivgen") => {
                cipher.ivgen = required(child, "name")?
                    .parse::<IvGen>()
                    .map_err(name_error(child, "name"))?;
                if let Some(hash) = child.attr("hash") {
                    cipher.ivgen_hash =
                        Some(hash.parse::<HashAlg>().map_err(name_error(child, "hash"))?);
                }
            }
            _ => {
                return Err(child.unsupported(format!(
                    "unsupported element '{}' (expected secret, cipher or ivgen)",
                    child.name
                )));
            }
        }
    }
    let mut iter_time_ms = None;
    for attr in el.attrs.iter().filter(|a| a.ns.is_some()) {
        if attr.ns.as_deref() != Some(ext::NAMESPACE) || attr.name != "iter-time" {
            return Err(el.unsupported(format!(
                "unknown attribute '{}' (the qpool extension has iter-time)",
                attr.name
            )));
        }
        let ms = attr
            .value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|ms| (1..=MAX_ITER_TIME_MS).contains(ms))
            .ok_or_else(|| {
                el.bad_attr(
                    "iter-time",
                    format!(
                        "iteration time '{}' must be 1 to {MAX_ITER_TIME_MS} milliseconds",
                        attr.value
                    ),
                )
            })?;
        iter_time_ms = Some(ms);
    }
    Ok(EncryptionDef {
        format,
        secret,
        cipher,
        cipher_named,
        iter_time_ms,
    })
}

/// An encrypted volume's `<encryption>`, for `vol-dumpxml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionReport {
    /// The format.
    pub format: EncryptionFormat,
    /// The secret holding the passphrase, when qpool knows it.
    pub secret: Option<SecretRef>,
    /// The cipher the LUKS header names, when qpool can name it in libvirt's words.
    pub cipher: Option<LuksCipher>,
}

impl EncryptionReport {
    /// Writes `<encryption>` as libvirt formats it. libvirt's schema allows `<cipher>` and
    /// `<ivgen>` only beside a `<secret>`, so without a known secret only the format is shown.
    pub(super) fn write(&self, out: &mut String, indent: &str) {
        let Some(secret) = &self.secret else {
            let _ = writeln!(out, "{indent}<encryption format='{}'/>", self.format);
            return;
        };
        let _ = writeln!(out, "{indent}<encryption format='{}'>", self.format);
        match secret {
            SecretRef::Uuid(uuid) => {
                let _ = writeln!(
                    out,
                    "{indent}  <secret type='passphrase' uuid='{}'/>",
                    escape(uuid)
                );
            }
            SecretRef::Usage(usage) => {
                let _ = writeln!(
                    out,
                    "{indent}  <secret type='passphrase' usage='{}'/>",
                    escape(usage)
                );
            }
        }
        if let Some(c) = &self.cipher {
            let _ = writeln!(
                out,
                "{indent}  <cipher name='{}' size='{}' mode='{}' hash='{}'/>",
                LuksCipher::NAME,
                c.bits,
                c.mode.as_str(),
                c.hash.as_str()
            );
            match c.ivgen_hash {
                Some(h) => {
                    let _ = writeln!(
                        out,
                        "{indent}  <ivgen name='{}' hash='{}'/>",
                        c.ivgen.as_str(),
                        h.as_str()
                    );
                }
                None => {
                    let _ = writeln!(out, "{indent}  <ivgen name='{}'/>", c.ivgen.as_str());
                }
            }
        }
        let _ = writeln!(out, "{indent}</encryption>");
    }
}
