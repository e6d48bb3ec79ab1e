//! Volume XML: libvirt's `<volume>` document in ([`VolumeDef`]) and out ([`VolumeReport`]).
//!
//! Owns: which elements are read on create and what each may contain, and how a definition
//! is printed back; `<encryption>` in `encryption.rs` ([`EncryptionDef`]), the exact shape
//! libvirt 9.0 prints for a dir-pool file volume in `report.rs` ([`VolumeReport`]).
//! Must not: check names against a pool, read files, or pick a preallocation mode.
//!
//! Elements that a `vol-dumpxml` carries but a create ignores (`key`, `source`, `physical`,
//! `target/path`, `timestamps`, `permissions/label`) are accepted and ignored, so the output of
//! `vol-dumpxml` can be fed back to `vol-create` (this is what `virsh vol-clone` sends). The
//! ones libvirt prints back when it formats a definition are kept in [`AsWritten`].

use std::fmt::Write as _;

use super::ext::{self, TargetExt};
use super::{Element, Error, escape};
use crate::model::{Compat, VolFormat};

mod encryption;
mod report;

use encryption::parse_encryption;
pub use encryption::{EncryptionDef, EncryptionReport, MAX_ITER_TIME_MS, SecretRef};
pub use report::{BackingReport, FileAttributes, Qcow2Report, Timestamp, VolumeReport};

/// `<target><features>`: qcow2 features libvirt knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `<lazy_refcounts/>`.
    pub lazy_refcounts: bool,
    /// `<extended_l2/>`.
    pub extended_l2: bool,
}

/// `<permissions>`: `None` means "not given" (libvirt's -1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    /// File mode, at most 0777.
    pub mode: Option<u32>,
    /// Numeric owner.
    pub owner: Option<u32>,
    /// Numeric group.
    pub group: Option<u32>,
}

/// libvirt's default mode for a new volume.
pub const DEFAULT_VOLUME_MODE: u32 = 0o600;

/// `<target>` of a volume definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetDef {
    /// `<format type=…>`; absent means raw in a dir pool.
    pub format: Option<VolFormat>,
    /// `<permissions>`.
    pub permissions: Permissions,
    /// `<compat>`.
    pub compat: Option<Compat>,
    /// `<clusterSize>` in bytes.
    pub cluster_size: Option<u64>,
    /// `<features>`; `None` when the element is absent.
    pub features: Option<Features>,
    /// `<nocow/>`.
    pub nocow: bool,
    /// `<encryption>`.
    pub encryption: Option<EncryptionDef>,
    /// qpool extension elements.
    pub ext: TargetExt,
}

/// `<backingStore>`: the image an overlay reads through to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingStoreDef {
    /// Path as written (stored in the qcow2 header exactly like this).
    pub path: String,
    /// `<format type=…>`; probed from the file when absent.
    pub format: Option<VolFormat>,
}

/// What a document says that a create does not use, kept so that the definition prints
/// back as libvirt formats it ([`VolumeDef::to_xml`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsWritten {
    /// `<key>`.
    pub key: Option<String>,
    /// `<target><path>`.
    pub path: Option<String>,
    /// `<target><permissions><label>`.
    pub label: Option<String>,
    /// `<backingStore><permissions>`.
    pub backing_permissions: Permissions,
    /// `<backingStore><permissions><label>`.
    pub backing_label: Option<String>,
    /// `<encryption>` had a `<cipher>` or an `<ivgen>` (libvirt prints them back only then).
    pub encryption_cipher: bool,
}

/// Whether a volume document must give a `<capacity>` (libvirt's parse flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityRule {
    /// A create: only an overlay (with `<backingStore>`) may leave it out
    /// (VIR_VOL_XML_PARSE_OPT_CAPACITY).
    Required,
    /// A create-from: the source's capacity is taken where it is left out
    /// (VIR_VOL_XML_PARSE_NO_CAPACITY).
    FromSource,
}

/// The volume types libvirt knows (`<volume type=…>`); qpool's volumes are files.
const VOLUME_TYPES: &[&str] = &["file", "block", "dir", "network", "netdir", "ploop"];

/// What a volume XML asks for (libvirt's `virStorageVolDef` on create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDef {
    /// `<name>`, not yet checked against pool naming rules.
    pub name: String,
    /// `<capacity>` in bytes; may be absent for an overlay.
    pub capacity: Option<u64>,
    /// `<allocation>` in bytes, `None` when absent.
    pub allocation: Option<u64>,
    /// `<target>`.
    pub target: TargetDef,
    /// `<backingStore>`.
    pub backing_store: Option<BackingStoreDef>,
    /// The document is a `vol-dumpxml` report (it carries `<key>` or `<physical>`, which
    /// only libvirt's output has): its `<allocation>` describes the source's usage.
    pub from_report: bool,
    /// What the document said that a create does not use.
    pub written: AsWritten,
}

impl VolumeDef {
    /// A definition with just a name and capacity (what `vol-create-as` starts from).
    pub fn new(name: impl Into<String>, capacity: u64) -> Self {
        Self {
            name: name.into(),
            capacity: Some(capacity),
            allocation: None,
            target: TargetDef::default(),
            backing_store: None,
            from_report: false,
            written: AsWritten::default(),
        }
    }

    /// The format, with libvirt's dir-pool default (raw).
    pub fn format(&self) -> VolFormat {
        self.target.format.unwrap_or(VolFormat::Raw)
    }

    /// Parses a `<volume>` document for a create.
    pub fn parse(src: &str) -> Result<Self, Error> {
        Self::parse_with(src, CapacityRule::Required)
    }

    /// Parses a `<volume>` document under `rule`.
    pub fn parse_with(src: &str, rule: CapacityRule) -> Result<Self, Error> {
        let root = Element::parse(src)?;
        if root.name != "volume" || !root.is_plain() {
            return Err(Error::WrongRoot {
                line: root.line,
                found: root.name,
                expected: "volume",
            });
        }
        match root.attr("type") {
            None | Some("file") => {}
            Some(kind) if VOLUME_TYPES.contains(&kind) => {
                return Err(root.unsupported(format!(
                    "volume type '{kind}' is not supported (qpool's volumes are files)"
                )));
            }
            Some(kind) => {
                return Err(root.bad_attr("type", format!("unknown volume type '{kind}'")));
            }
        }
        if let Some(stray) = root.children_in(ext::NAMESPACE).next() {
            return Err(stray.unsupported("qpool extension elements belong inside <target>"));
        }
        let name = root
            .child("name")
            .map(|n| n.text.clone())
            .ok_or_else(|| Error::Missing {
                path: root.path.clone(),
                what: "<name> element".into(),
            })?;
        let capacity = root.child("capacity").map(Element::scaled).transpose()?;
        let allocation = root.child("allocation").map(Element::scaled).transpose()?;
        let mut written = AsWritten {
            key: root.child("key").map(|k| k.trimmed().to_string()),
            ..AsWritten::default()
        };
        let target = match root.child("target") {
            Some(t) => {
                written.path = t.child("path").map(|p| p.trimmed().to_string());
                written.label = t
                    .child("permissions")
                    .and_then(|p| p.child("label"))
                    .map(|l| l.trimmed().to_string());
                written.encryption_cipher = t
                    .child("encryption")
                    .is_some_and(|e| e.child("cipher").is_some() || e.child("ivgen").is_some());
                parse_target(t)?
            }
            None => TargetDef::default(),
        };
        let backing_store = match root.child("backingStore") {
            Some(b) => {
                if let Some(p) = b.child("permissions") {
                    written.backing_permissions = parse_permissions(p)?;
                    written.backing_label = p.child("label").map(|l| l.trimmed().to_string());
                }
                Some(parse_backing(b)?)
            }
            None => None,
        };
        if capacity.is_none() && backing_store.is_none() && rule == CapacityRule::Required {
            return Err(Error::Missing {
                path: root.path.clone(),
                what: "<capacity> element (only an overlay with <backingStore> may omit it)".into(),
            });
        }
        Ok(Self {
            name,
            capacity,
            allocation,
            target,
            backing_store,
            from_report: root.child("key").is_some() || root.child("physical").is_some(),
            written,
        })
    }
}

impl VolumeDef {
    /// The definition as libvirt's `virStorageVolDefFormat` prints a parsed definition (its
    /// `storagevolxml2xml` tests): the document's own key, path and labels, capacity 0 when
    /// there was none, allocation = capacity when there was none, the dir pool's default
    /// format (raw), and no timestamps.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        let w = &self.written;
        let capacity = self.capacity.unwrap_or(0);
        let _ = writeln!(out, "<volume type='file'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        if let Some(key) = &w.key {
            let _ = writeln!(out, "  <key>{}</key>", escape(key));
        }
        let _ = writeln!(out, "  <capacity unit='bytes'>{capacity}</capacity>");
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            self.allocation.unwrap_or(capacity)
        );
        let _ = writeln!(out, "  <target>");
        if let Some(path) = &w.path {
            let _ = writeln!(out, "    <path>{}</path>", escape(path));
        }
        let _ = writeln!(out, "    <format type='{}'/>", self.format().as_str());
        write_permissions(
            &mut out,
            "    ",
            &self.target.permissions,
            w.label.as_deref(),
        );
        if let Some(e) = &self.target.encryption {
            EncryptionReport {
                format: e.format,
                secret: e.secret.clone(),
                cipher: w.encryption_cipher.then_some(e.cipher),
            }
            .write(&mut out, "    ");
        }
        if let Some(compat) = self.target.compat {
            let _ = writeln!(out, "    <compat>{}</compat>", compat.as_str());
        }
        if let Some(size) = self.target.cluster_size {
            let _ = writeln!(out, "    <clusterSize unit='B'>{size}</clusterSize>");
        }
        if let Some(f) = self.target.features {
            write_features(&mut out, &f);
        }
        let _ = writeln!(out, "  </target>");
        if let Some(b) = &self.backing_store {
            let _ = writeln!(out, "  <backingStore>");
            let _ = writeln!(out, "    <path>{}</path>", escape(&b.path));
            let format = b.format.unwrap_or(VolFormat::Raw);
            let _ = writeln!(out, "    <format type='{}'/>", format.as_str());
            write_permissions(
                &mut out,
                "    ",
                &w.backing_permissions,
                w.backing_label.as_deref(),
            );
            let _ = writeln!(out, "  </backingStore>");
        }
        let _ = writeln!(out, "</volume>");
        out
    }
}

/// `<permissions>` of a definition, as libvirt prints it: only what was given.
fn write_permissions(out: &mut String, indent: &str, p: &Permissions, label: Option<&str>) {
    if p.mode.is_none() && p.owner.is_none() && p.group.is_none() && label.is_none() {
        return;
    }
    let _ = writeln!(out, "{indent}<permissions>");
    if let Some(mode) = p.mode {
        let _ = writeln!(out, "{indent}  <mode>0{mode:o}</mode>");
    }
    if let Some(owner) = p.owner {
        let _ = writeln!(out, "{indent}  <owner>{owner}</owner>");
    }
    if let Some(group) = p.group {
        let _ = writeln!(out, "{indent}  <group>{group}</group>");
    }
    if let Some(label) = label {
        let _ = writeln!(out, "{indent}  <label>{}</label>", escape(label));
    }
    let _ = writeln!(out, "{indent}</permissions>");
}

/// `<features>` inside `<target>`: `<features/>` when none is set.
fn write_features(out: &mut String, f: &Features) {
    if *f == Features::default() {
        let _ = writeln!(out, "    <features/>");
        return;
    }
    let _ = writeln!(out, "    <features>");
    if f.lazy_refcounts {
        let _ = writeln!(out, "      <lazy_refcounts/>");
    }
    if f.extended_l2 {
        let _ = writeln!(out, "      <extended_l2/>");
    }
    let _ = writeln!(out, "    </features>");
}

fn parse_format(el: &Element) -> Result<VolFormat, Error> {
    let kind = el.attr("type").ok_or_else(|| Error::Missing {
        path: el.path.clone(),
        what: "attribute 'type'".into(),
    })?;
    // libvirt refuses a format it does not know as an unsupported configuration too.
    kind.parse()
        .map_err(|e: crate::model::UnknownName| Error::Unsupported {
            path: el.attr_path("type"),
            line: el.line,
            message: e.to_string(),
        })
}

/// A numeric owner or group; `-1` (and its unsigned twin, 4294967295) means "not given", as
/// libvirt reads them.
fn parse_id(el: &Element, what: &str) -> Result<Option<u32>, Error> {
    match el.trimmed() {
        "-1" => Ok(None),
        text => match text.parse::<u32>() {
            Ok(u32::MAX) => Ok(None),
            Ok(id) => Ok(Some(id)),
            Err(_) => Err(el.bad_value(format!("malformed {what} '{text}'"))),
        },
    }
}

pub(super) fn parse_permissions(el: &Element) -> Result<Permissions, Error> {
    let mut perms = Permissions::default();
    if let Some(mode) = el.child("mode") {
        let text = mode.trimmed();
        let value = u32::from_str_radix(text, 8)
            .ok()
            .filter(|m| m & !0o777 == 0)
            .ok_or_else(|| {
                mode.bad_value(format!(
                    "malformed octal mode '{text}' (expected 0000 to 0777)"
                ))
            })?;
        perms.mode = Some(value);
    }
    if let Some(owner) = el.child("owner") {
        perms.owner = parse_id(owner, "owner")?;
    }
    if let Some(group) = el.child("group") {
        perms.group = parse_id(group, "group")?;
    }
    Ok(perms)
}

fn parse_target(target: &Element) -> Result<TargetDef, Error> {
    let mut def = TargetDef {
        format: target.child("format").map(parse_format).transpose()?,
        ..TargetDef::default()
    };
    if let Some(perms) = target.child("permissions") {
        def.permissions = parse_permissions(perms)?;
    }
    if let Some(compat) = target.child("compat") {
        def.compat = Some(
            compat
                .trimmed()
                .parse::<Compat>()
                .map_err(|e| compat.bad_value(e.to_string()))?,
        );
    }
    if let Some(cluster) = target.child("clusterSize") {
        def.cluster_size = Some(cluster.scaled()?);
    }
    if let Some(features) = target.child("features") {
        let mut f = Features::default();
        for feature in features.children.iter() {
            match (feature.is_plain(), feature.name.as_str()) {
                (true, "lazy_refcounts") => f.lazy_refcounts = true,
                (true, "extended_l2") => f.extended_l2 = true,
                _ => {
                    return Err(feature.unsupported(format!(
                        "unsupported feature '{}' (expected lazy_refcounts or extended_l2)",
                        feature.name
                    )));
                }
            }
        }
        def.features = Some(f);
        // libvirt: features without a compat level mean the level that has them.
        def.compat.get_or_insert(Compat::V1_1);
    }
    def.encryption = target
        .child("encryption")
        .map(parse_encryption)
        .transpose()?;
    def.nocow = target.child("nocow").is_some();
    def.ext = ext::parse_target_ext(target)?;
    Ok(def)
}

fn required<'a>(el: &'a Element, name: &str) -> Result<&'a str, Error> {
    el.attr(name).ok_or_else(|| Error::Missing {
        path: el.path.clone(),
        what: format!("attribute '{name}'"),
    })
}

fn parse_backing(el: &Element) -> Result<BackingStoreDef, Error> {
    let path = el
        .child("path")
        .map(|p| p.trimmed().to_string())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::Missing {
            path: el.path.clone(),
            what: "<path> element".into(),
        })?;
    if path.len() > 1023 {
        return Err(el.bad_value("backing store path is longer than qcow2's 1023 bytes"));
    }
    Ok(BackingStoreDef {
        path,
        format: el.child("format").map(parse_format).transpose()?,
    })
}

/// Checks that a volume document holds only elements libvirt's `storagevol.rng` allows (plus
/// qpool's extension inside `<target>`), for VIR_STORAGE_VOL_CREATE_VALIDATE. The error
/// names the first element that does not belong.
pub fn check_known_elements(src: &str) -> Result<(), Error> {
    fn allowed(parent: &str, child: &str) -> bool {
        let children: &[&str] = match parent {
            "/volume" => &[
                "name",
                "key",
                "source",
                "capacity",
                "allocation",
                "physical",
                "target",
                "backingStore",
            ],
            "/volume/source" => &["device"],
            "/volume/source/device" => &["extent"],
            "/volume/target" => &[
                "path",
                "format",
                "permissions",
                "timestamps",
                "encryption",
                "compat",
                "nocow",
                "clusterSize",
                "features",
            ],
            "/volume/backingStore" => &["path", "format", "permissions", "timestamps"],
            "/volume/target/permissions" | "/volume/backingStore/permissions" => {
                &["mode", "owner", "group", "label"]
            }
            "/volume/target/timestamps" | "/volume/backingStore/timestamps" => {
                &["atime", "btime", "ctime", "mtime"]
            }
            "/volume/target/features" => &["lazy_refcounts", "extended_l2"],
            "/volume/target/encryption" => &["secret", "cipher", "ivgen"],
            _ => &[],
        };
        children.contains(&child)
    }
    let root = Element::parse(src)?;
    super::check_schema(&root, "volume", SCHEMA, &|el: &Element, child: &Element| {
        (child.ns.as_deref() == Some(super::ext::NAMESPACE) && el.path == "/volume/target")
            || (child.is_plain() && allowed(&el.path, &child.name))
    })
}

/// libvirt's schema for volume XML.
const SCHEMA: &str = "storagevol.rng";

#[cfg(test)]
mod tests;
