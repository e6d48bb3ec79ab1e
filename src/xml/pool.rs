//! Pool XML: libvirt's `<pool type='dir'>` in ([`PoolDef`]) and out ([`PoolReport`]).
//!
//! Owns: the subset of a dir pool definition qpool honours (name, uuid, target path and
//! permissions, the copy-on-write feature), libvirt's pool types (all but `dir` refused by
//! name), the elements libvirt's `storagepool.rng` allows a dir pool (checked on request),
//! and the shape libvirt 9.0 prints for a definition and for `pool-dumpxml`.
//! Must not: touch the directory it names.

use std::fmt::Write as _;

use super::volume::{Permissions, parse_permissions};
use super::{Element, Error, escape};

/// libvirt 9.0's pool types, in the order of libvirt's `virStoragePoolType`; qpool serves
/// `dir` pools only.
pub const POOL_TYPES: &[&str] = &[
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
];

/// A dir pool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    /// `<name>`.
    pub name: String,
    /// `<uuid>` as written, if any (validated as a UUID).
    pub uuid: Option<uuid::Uuid>,
    /// `<target><path>`, cleaned as libvirt cleans it ([`sanitize_path`]).
    pub target_path: String,
    /// `<target><permissions>`.
    pub permissions: Permissions,
    /// `<target><permissions><label>`, kept to print it back.
    pub label: Option<String>,
    /// `<features><cow state='yes|no'/>`: whether files made in the directory use
    /// copy-on-write (btrfs); `None` leaves the filesystem's default.
    pub cow: Option<bool>,
}

/// A path cleaned as libvirt's `virFileSanitizePath` cleans one: runs of `/` become one
/// (a leading `//` alone is kept, as POSIX allows), and a trailing `/` goes, except for `/`
/// itself. `.` and `..` stay as written.
pub fn sanitize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let rest = if path.starts_with("//") && !path.starts_with("///") {
        out.push_str("//");
        &path[2..]
    } else {
        path
    };
    for c in rest.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

impl PoolDef {
    /// A dir pool on `target_path` with `permissions` and nothing else.
    pub fn new(name: impl Into<String>, target_path: &str, permissions: Permissions) -> PoolDef {
        PoolDef {
            name: name.into(),
            uuid: None,
            target_path: sanitize_path(target_path),
            permissions,
            label: None,
            cow: None,
        }
    }

    /// Parses a `<pool type='dir'>` document. Other libvirt pool types are refused by name;
    /// a type libvirt does not know is an XML error, as libvirt reports it.
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
            Some(other) if POOL_TYPES.contains(&other) => {
                return Err(root.unsupported(format!(
                    "unsupported pool type '{other}' (qpool supports: dir)"
                )));
            }
            Some(other) => {
                return Err(root.bad_attr("type", format!("unknown pool type '{other}'")));
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
        let cow = match root.child("features").and_then(|f| f.child("cow")) {
            None => None,
            Some(c) => match c.attr("state") {
                Some("yes") => Some(true),
                Some("no") => Some(false),
                other => {
                    return Err(c.bad_attr(
                        "state",
                        format!(
                            "invalid copy-on-write state '{}' (expected yes or no)",
                            other.unwrap_or("")
                        ),
                    ));
                }
            },
        };
        let target = root
            .child("target")
            .ok_or_else(|| missing("<target> element"))?;
        let target_path = target
            .child("path")
            .map(|p| sanitize_path(p.trimmed()))
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| Error::Missing {
                path: target.path.clone(),
                what: "<path> element with an absolute path".into(),
            })?;
        let (permissions, label) = match target.child("permissions") {
            Some(p) => (
                parse_permissions(p)?,
                p.child("label").map(|l| l.trimmed().to_string()),
            ),
            None => (Permissions::default(), None),
        };
        Ok(Self {
            name,
            uuid,
            target_path,
            permissions,
            label,
            cow,
        })
    }

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
        write_cow(&mut out, self.cow);
        let _ = writeln!(out, "  <source>");
        let _ = writeln!(out, "  </source>");
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(out, "    <path>{}</path>", escape(&self.target_path));
        let p = &self.permissions;
        if p.mode.is_some() || p.owner.is_some() || p.group.is_some() || self.label.is_some() {
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
            if let Some(label) = &self.label {
                let _ = writeln!(out, "      <label>{}</label>", escape(label));
            }
            let _ = writeln!(out, "    </permissions>");
        }
        let _ = writeln!(out, "  </target>");
        let _ = writeln!(out, "</pool>");
        out
    }
}

/// `<features><cow state=…/></features>` when the definition says.
fn write_cow(out: &mut String, cow: Option<bool>) {
    if let Some(cow) = cow {
        let state = if cow { "yes" } else { "no" };
        let _ = writeln!(out, "  <features>");
        let _ = writeln!(out, "    <cow state='{state}'/>");
        let _ = writeln!(out, "  </features>");
    }
}

/// libvirt's schema for pool XML.
const SCHEMA: &str = "storagepool.rng";

/// Checks that a dir pool document holds only what libvirt's `storagepool.rng` allows a dir
/// pool, and the elements it needs (a `<name>`, a `<target>` with a `<path>`), for
/// VIR_STORAGE_POOL_DEFINE_VALIDATE. The error names the first element that does not belong.
pub fn check_known_elements(src: &str) -> Result<(), Error> {
    fn allowed(parent: &str, child: &str) -> bool {
        let children: &[&str] = match parent {
            "/pool" => &[
                "name",
                "uuid",
                "capacity",
                "allocation",
                "available",
                "features",
                "source",
                "target",
                "refresh",
            ],
            "/pool/features" => &["cow"],
            "/pool/target" => &["path", "permissions"],
            "/pool/target/permissions" => &["mode", "owner", "group", "label"],
            "/pool/refresh" => &["volume"],
            _ => &[],
        };
        children.contains(&child)
    }
    let root = Element::parse(src)?;
    super::check_schema(&root, "pool", SCHEMA, &|el: &Element, child: &Element| {
        child.is_plain() && allowed(&el.path, &child.name)
    })?;
    let needed = |path: &str, el: Option<&Element>| match el {
        Some(_) => Ok(()),
        None => Err(Error::NotInSchema {
            schema: SCHEMA,
            path: path.to_string(),
            line: root.line,
        }),
    };
    needed("/pool/name", root.child("name"))?;
    let target = root.child("target");
    needed("/pool/target", target)?;
    needed("/pool/target/path", target.and_then(|t| t.child("path")))
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
    /// Filesystem bytes free (`f_bfree`, as libvirt reports them).
    pub available: u64,
    /// Absolute target directory.
    pub path: String,
    /// Directory mode bits.
    pub mode: u32,
    /// Directory owner.
    pub owner: u32,
    /// Directory group.
    pub group: u32,
    /// The definition's copy-on-write feature.
    pub cow: Option<bool>,
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
        write_cow(&mut out, self.cow);
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
    fn target_paths_are_cleaned_as_libvirt_cleans_them() {
        let cases = [
            ("///var/////lib/libvirt/images//", "/var/lib/libvirt/images"),
            ("//host/share", "//host/share"),
            ("/a/./b/", "/a/./b"),
            ("/", "/"),
            ("//", "/"),
        ];
        for (path, clean) in cases {
            assert_eq!(sanitize_path(path), clean, "{path}");
        }
    }

    #[test]
    fn a_definition_prints_back_its_features_and_label() {
        let def = PoolDef::parse(
            "<pool type='dir'><name>p</name><features><cow state='no'/></features><target><path>/srv//p/</path><permissions><mode>0700</mode><owner>-1</owner><label>l_t</label></permissions></target></pool>",
        )
        .unwrap();
        assert_eq!((def.target_path.as_str(), def.cow), ("/srv/p", Some(false)));
        let xml = def.to_xml(&uuid::Uuid::nil());
        assert!(
            xml.contains("  <features>\n    <cow state='no'/>\n  </features>\n  <source>"),
            "{xml}"
        );
        assert!(
            xml.contains("<permissions>\n      <mode>0700</mode>\n      <label>l_t</label>\n"),
            "{xml}"
        );
        assert_eq!(PoolDef::parse(&xml).unwrap().label.as_deref(), Some("l_t"));
    }

    #[test]
    fn known_pool_types_are_unsupported_and_unknown_ones_invalid() {
        let known = PoolDef::parse("<pool type='netfs'><name>x</name></pool>").unwrap_err();
        assert!(matches!(known, Error::Unsupported { .. }), "{known}");
        let unknown = PoolDef::parse("<pool type='bogus'><name>x</name></pool>").unwrap_err();
        assert!(matches!(unknown, Error::BadValue { .. }), "{unknown}");
    }

    #[test]
    fn validate_names_what_the_schema_does_not_allow() {
        let ok = "<pool type='dir'><name>p</name><target><path>/p</path></target></pool>";
        assert!(check_known_elements(ok).is_ok());
        let stray = ok.replace("<name>", "<bogus/><name>");
        let e = check_known_elements(&stray).unwrap_err();
        assert!(e.to_string().contains("/pool/bogus"), "{e}");
        let e = check_known_elements("<pool type='dir'><name>p</name></pool>").unwrap_err();
        assert!(e.to_string().contains("/pool/target"), "{e}");
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
