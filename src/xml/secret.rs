//! Secret XML in and out: libvirt's `<secret>` document ([`SecretDef`]), as
//! `virsh secret-define` sends it and `virsh secret-dumpxml` prints it.
//!
//! Owns: what a secret definition may say (`ephemeral`, `private`, `<uuid>`,
//! `<description>`, `<usage>` of type volume, ceph, iscsi, tls or vtpm with its element),
//! libvirt's numbers for the usage types (`virSecretUsageType`), and the shape libvirt 9.0
//! prints.
//! Must not: hold or print a secret's value (there is none in this XML), or do I/O.

use std::fmt::Write as _;

use super::{Element, Error, escape};

/// `virSecretUsageType`: what a secret is for, and the element naming its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretUsageType {
    /// 1: a volume's passphrase; `<volume>` holds the volume's path.
    Volume,
    /// 2: a Ceph client key; `<name>`.
    Ceph,
    /// 3: an iSCSI CHAP password; `<target>`.
    Iscsi,
    /// 4: a TLS key passphrase; `<name>`.
    Tls,
    /// 5: a vTPM state key; `<name>`.
    Vtpm,
}

impl SecretUsageType {
    /// Every type, in libvirt's numbering from 1.
    pub const ALL: [SecretUsageType; 5] =
        [Self::Volume, Self::Ceph, Self::Iscsi, Self::Tls, Self::Vtpm];

    /// The `type` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Ceph => "ceph",
            Self::Iscsi => "iscsi",
            Self::Tls => "tls",
            Self::Vtpm => "vtpm",
        }
    }

    /// The element inside `<usage>` that names the secret's object.
    pub fn element(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Iscsi => "target",
            Self::Ceph | Self::Tls | Self::Vtpm => "name",
        }
    }

    /// libvirt's number (`VIR_SECRET_USAGE_TYPE_*`).
    pub fn number(self) -> i32 {
        match self {
            Self::Volume => 1,
            Self::Ceph => 2,
            Self::Iscsi => 3,
            Self::Tls => 4,
            Self::Vtpm => 5,
        }
    }

    /// The type with libvirt's number `n`.
    pub fn from_number(n: i32) -> Option<SecretUsageType> {
        Self::ALL.into_iter().find(|t| t.number() == n)
    }
}

/// `<usage>`: the type and the id of the object the secret is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUsage {
    /// The usage type.
    pub kind: SecretUsageType,
    /// The usage id (a volume's path, a Ceph name…).
    pub id: String,
}

/// A secret's definition (libvirt's `virSecretDef`), never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    /// `ephemeral='yes'`: kept in memory only.
    pub ephemeral: bool,
    /// `private='yes'`: its value is never given out.
    pub private: bool,
    /// `<uuid>`, when the document gives one.
    pub uuid: Option<uuid::Uuid>,
    /// `<description>`.
    pub description: Option<String>,
    /// `<usage>`.
    pub usage: Option<SecretUsage>,
}

fn yes_no(el: &Element, name: &str) -> Result<bool, Error> {
    match el.attr(name) {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(other) => Err(el.bad_attr(
            name,
            format!("invalid value '{other}' (expected yes or no)"),
        )),
    }
}

impl SecretDef {
    /// Parses a `<secret>` document.
    pub fn parse(src: &str) -> Result<SecretDef, Error> {
        let root = Element::parse(src)?;
        if root.name != "secret" || !root.is_plain() {
            return Err(Error::WrongRoot {
                line: root.line,
                found: root.name,
                expected: "secret",
            });
        }
        let uuid = root
            .child("uuid")
            .map(|u| {
                uuid::Uuid::parse_str(u.trimmed())
                    .map_err(|_| u.bad_value(format!("malformed uuid '{}'", u.trimmed())))
            })
            .transpose()?;
        let usage = root
            .child("usage")
            .map(|u| {
                let kind = u.attr("type").ok_or_else(|| Error::Missing {
                    path: u.path.clone(),
                    what: "attribute 'type'".into(),
                })?;
                let kind = SecretUsageType::ALL
                    .into_iter()
                    .find(|t| t.as_str() == kind)
                    .ok_or_else(|| {
                        u.bad_attr(
                            "type",
                            format!(
                                "unknown secret usage type '{kind}' (expected volume, ceph, iscsi, tls or vtpm)"
                            ),
                        )
                    })?;
                let id = u
                    .child(kind.element())
                    .map(|e| e.trimmed().to_string())
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| Error::Missing {
                        path: u.path.clone(),
                        what: format!("<{}> element", kind.element()),
                    })?;
                Ok(SecretUsage { kind, id })
            })
            .transpose()?;
        Ok(SecretDef {
            ephemeral: yes_no(&root, "ephemeral")?,
            private: yes_no(&root, "private")?,
            uuid,
            description: root.child("description").map(|d| d.text.clone()),
            usage,
        })
    }

    /// Formats the definition as libvirt 9.0 prints it, with `uuid` (a defined secret
    /// always has one).
    pub fn to_xml(&self, uuid: &uuid::Uuid) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<secret ephemeral='{}' private='{}'>",
            yn(self.ephemeral),
            yn(self.private)
        );
        let _ = writeln!(out, "  <uuid>{}</uuid>", uuid.hyphenated());
        if let Some(d) = &self.description {
            let _ = writeln!(out, "  <description>{}</description>", escape(d));
        }
        if let Some(u) = &self.usage {
            let _ = writeln!(out, "  <usage type='{}'>", u.kind.as_str());
            let _ = writeln!(out, "    <{0}>{1}</{0}>", u.kind.element(), escape(&u.id));
            let _ = writeln!(out, "  </usage>");
        }
        let _ = writeln!(out, "</secret>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_secret_round_trips_in_libvirts_shape() {
        let def = SecretDef::parse(
            "<secret ephemeral='no' private='yes'>
               <uuid>0A81F5B2-8403-7B23-C8D6-21CCC2F80D6F</uuid>
               <description>disk &amp; key</description>
               <usage type='volume'><volume>/var/lib/qpool/images/e.qcow2</volume></usage>
             </secret>",
        )
        .unwrap();
        assert!(def.private && !def.ephemeral);
        let uuid = def.uuid.unwrap();
        assert_eq!(
            def.usage,
            Some(SecretUsage {
                kind: SecretUsageType::Volume,
                id: "/var/lib/qpool/images/e.qcow2".into()
            })
        );
        assert_eq!(
            def.to_xml(&uuid),
            "<secret ephemeral='no' private='yes'>
  <uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid>
  <description>disk &amp; key</description>
  <usage type='volume'>
    <volume>/var/lib/qpool/images/e.qcow2</volume>
  </usage>
</secret>
"
        );
        assert_eq!(SecretDef::parse(&def.to_xml(&uuid)).unwrap(), def);
    }

    #[test]
    fn bad_secret_documents_are_refused_where_they_are_wrong() {
        for (doc, expected) in [
            ("<volume/>", "root element is <volume>, expected <secret>"),
            ("<secret private='maybe'/>", "/secret/@private"),
            ("<secret><uuid>x</uuid></secret>", "malformed uuid 'x'"),
            (
                "<secret><usage type='disk'/></secret>",
                "unknown secret usage type 'disk'",
            ),
            (
                "<secret><usage type='ceph'><volume>v</volume></usage></secret>",
                "missing <name> element",
            ),
        ] {
            let e = SecretDef::parse(doc).unwrap_err().to_string();
            assert!(e.contains(expected), "{doc}: {e}");
        }
        let bare = SecretDef::parse("<secret/>").unwrap();
        assert_eq!((bare.uuid, bare.usage, bare.private), (None, None, false));
        assert_eq!(
            SecretUsageType::from_number(3),
            Some(SecretUsageType::Iscsi)
        );
        assert_eq!(SecretUsageType::from_number(0), None);
    }
}
