//! Pool XML: libvirt's `<pool type='dir'>` in ([`PoolDef`]) and out ([`PoolReport`]).
//!
//! Owns: the subset of a dir pool definition qpool honours (name, uuid, target path and
//! permissions) and the shape libvirt 9.0 prints for `pool-dumpxml`.
//! Must not: touch the directory it names.

use std::fmt::Write as _;

use super::volume::Permissions;
use super::{Element, Error, escape};

/// A dir pool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    /// `<name>`.
    pub name: String,
    /// `<uuid>` as written, if any (validated as a UUID).
    pub uuid: Option<uuid::Uuid>,
    /// `<target><path>`.
    pub target_path: String,
    /// `<target><permissions>`.
    pub permissions: Permissions,
}

impl PoolDef {
    /// Parses a `<pool type='dir'>` document.
    pub fn parse(src: &str) -> Result<Self, Error> {
        let root = Element::parse(src)?;
        if root.name != "pool" || !root.is_plain() {
            return Err(Error::WrongRoot {
                line: root.line,
                found: root.name,
                expected: "pool",
            });
        }
        match root.attr("type") {
            Some("dir") => {}
            Some(other) => {
                return Err(root.unsupported(format!(
                    "unsupported pool type '{other}' (qpool supports: dir)"
                )));
            }
            None => {
                return Err(Error::Missing {
                    path: root.path.clone(),
                    what: "attribute 'type'".into(),
                });
            }
        }
        let missing = |what: &str| Error::Missing {
            path: root.path.clone(),
            what: what.into(),
        };
        let name = root
            .child("name")
            .map(|n| n.trimmed().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| missing("<name> element"))?;
        let uuid = match root.child("uuid") {
            Some(u) => Some(
                uuid::Uuid::parse_str(u.trimmed())
                    .map_err(|_| u.bad_value(format!("malformed uuid '{}'", u.trimmed())))?,
            ),
            None => None,
        };
        let target = root
            .child("target")
            .ok_or_else(|| missing("<target> element"))?;
        let target_path = target
            .child("path")
            .map(|p| p.trimmed().to_string())
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| Error::Missing {
                path: target.path.clone(),
                what: "<path> element with an absolute path".into(),
            })?;
        let permissions = match target.child("permissions") {
            Some(p) => super::volume::parse_permissions(p)?,
            None => Permissions::default(),
        };
        Ok(Self {
            name,
            uuid,
            target_path,
            permissions,
        })
    }
}

impl PoolDef {
    /// The definition as libvirt writes an inactive dir pool (`pool-dumpxml --inactive`, and
    /// the file kept in the definitions directory).
    pub fn to_xml(&self, uuid: &uuid::Uuid) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<pool type='dir'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <uuid>{}</uuid>", uuid.hyphenated());
        let _ = writeln!(out, "  <capacity unit='bytes'>0</capacity>");
        let _ = writeln!(out, "  <allocation unit='bytes'>0</allocation>");
        let _ = writeln!(out, "  <available unit='bytes'>0</available>");
        let _ = writeln!(out, "  <source>");
        let _ = writeln!(out, "  </source>");
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(out, "    <path>{}</path>", escape(&self.target_path));
        let p = &self.permissions;
        if p.mode.is_some() || p.owner.is_some() || p.group.is_some() {
            let _ = writeln!(out, "    <permissions>");
            if let Some(mode) = p.mode {
                let _ = writeln!(out, "      <mode>0{mode:o}</mode>");
            }
            if let Some(owner) = p.owner {
                let _ = writeln!(out, "      <owner>{owner}</owner>");
            }
            if let Some(group) = p.group {
                let _ = writeln!(out, "      <group>{group}</group>");
            }
            let _ = writeln!(out, "    </permissions>");
        }
        let _ = writeln!(out, "  </target>");
        let _ = writeln!(out, "</pool>");
        out
    }
}

/// The outline of any libvirt pool, of any type, as another libvirt daemon describes it:
/// what the libvirt bridge needs to tell its own pools from others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOutline {
    /// `<pool type>`.
    pub pool_type: String,
    /// `<name>`.
    pub name: String,
    /// `<target><path>`, if any.
    pub target_path: Option<String>,
    /// `<source><vendor name>`, if any.
    pub vendor: Option<String>,
}

impl PoolOutline {
    /// Reads a `<pool>` document of any type.
    pub fn parse(src: &str) -> Result<Self, Error> {
        let root = Element::parse(src)?;
        if root.name != "pool" || !root.is_plain() {
            return Err(Error::WrongRoot {
                line: root.line,
                found: root.name,
                expected: "pool",
            });
        }
        let name = root
            .child("name")
            .map(|n| n.trimmed().to_string())
            .ok_or_else(|| Error::Missing {
                path: root.path.clone(),
                what: "<name> element".into(),
            })?;
        Ok(Self {
            pool_type: root.attr("type").unwrap_or_default().to_string(),
            name,
            target_path: root
                .child("target")
                .and_then(|t| t.child("path"))
                .map(|p| p.trimmed().to_string()),
            vendor: root
                .child("source")
                .and_then(|s| s.child("vendor"))
                .and_then(|v| v.attr("name"))
                .map(str::to_string),
        })
    }
}

/// A pool as it exists, for `pool-dumpxml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReport {
    /// Pool name.
    pub name: String,
    /// Pool UUID.
    pub uuid: uuid::Uuid,
    /// Filesystem size (statvfs).
    pub capacity: u64,
    /// Filesystem bytes in use.
    pub allocation: u64,
    /// Filesystem bytes available to unprivileged users.
    pub available: u64,
    /// Absolute target directory.
    pub path: String,
    /// Directory mode bits.
    pub mode: u32,
    /// Directory owner.
    pub owner: u32,
    /// Directory group.
    pub group: u32,
}

impl PoolReport {
    /// Formats the pool the way libvirt 9.0 prints a running dir pool.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<pool type='dir'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <uuid>{}</uuid>", self.uuid.hyphenated());
        let _ = writeln!(out, "  <capacity unit='bytes'>{}</capacity>", self.capacity);
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            self.allocation
        );
        let _ = writeln!(
            out,
            "  <available unit='bytes'>{}</available>",
            self.available
        );
        let _ = writeln!(out, "  <source>");
        let _ = writeln!(out, "  </source>");
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(out, "    <path>{}</path>", escape(&self.path));
        let _ = writeln!(out, "    <permissions>");
        let _ = writeln!(out, "      <mode>0{:o}</mode>", self.mode);
        let _ = writeln!(out, "      <owner>{}</owner>", self.owner);
        let _ = writeln!(out, "      <group>{}</group>", self.group);
        let _ = writeln!(out, "    </permissions>");
        let _ = writeln!(out, "  </target>");
        let _ = writeln!(out, "</pool>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_pool_is_read() {
        let def = PoolDef::parse(
            "<pool type='dir'><name>lv</name><uuid>298b18be-8fe0-4134-8044-8b5e03b856c4</uuid><target><path>/srv/lvpool</path><permissions><mode>0755</mode></permissions></target></pool>",
        )
        .unwrap();
        assert_eq!(def.name, "lv");
        assert_eq!(def.target_path, "/srv/lvpool");
        assert_eq!(def.permissions.mode, Some(0o755));
        assert!(def.uuid.is_some());
    }

    #[test]
    fn outline_reads_any_pool_type_and_its_vendor() {
        let o = PoolOutline::parse(
            "<pool type='logical'><name>vg</name><source><vendor name='qpool'/></source><target><path>/dev/vg</path></target></pool>",
        )
        .unwrap();
        assert_eq!(o.pool_type, "logical");
        assert_eq!(o.name, "vg");
        assert_eq!(o.target_path.as_deref(), Some("/dev/vg"));
        assert_eq!(o.vendor.as_deref(), Some("qpool"));
        let o = PoolOutline::parse("<pool type='rbd'><name>r</name></pool>").unwrap();
        assert_eq!((o.target_path, o.vendor), (None, None));
    }

    #[test]
    fn other_pool_types_are_refused() {
        let err = PoolDef::parse("<pool type='logical'><name>x</name></pool>").unwrap_err();
        assert!(
            err.to_string().contains("unsupported pool type 'logical'"),
            "{err}"
        );
    }

    #[test]
    fn relative_target_is_refused() {
        let err = PoolDef::parse(
            "<pool type='dir'><name>x</name><target><path>rel</path></target></pool>",
        )
        .unwrap_err();
        assert!(err.to_string().contains("absolute path"), "{err}");
    }
}
