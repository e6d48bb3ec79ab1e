//! The qpool extension namespace `urn:qpool:volume:1` (prefix `qpool` by convention).
//!
//! Owns: the extension elements qpool reads inside a volume's `<target>`:
//!
//! | element | meaning |
//! |---|---|
//! | `<qpool:preallocation mode='off\|metadata\|falloc\|full'/>` | this preallocation mode exactly, whatever `<allocation>` says |
//! | `<qpool:refcount bits='16'/>` | qcow2 refcount width: 1, 2, 4, 8, 16, 32 or 64 (v3 only; default 16) |
//! | `<qpool:compression type='zlib\|zstd'/>` | qcow2 compression type recorded in the header (v3 only; default zlib) |
//!
//! The schema is `xml-schemas/volume.rng`. Must not: interpret the values beyond parsing them.

use std::fmt;
use std::str::FromStr;

use super::{Element, Error};

/// The extension namespace URI.
pub const NAMESPACE: &str = "urn:qpool:volume:1";

/// A preallocation mode as the XML names it (qemu-img's `preallocation=` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreallocMode {
    /// Thin: only the metadata a fresh image needs.
    Off,
    /// qcow2: every L2 table and data cluster mapped, data left as holes.
    Metadata,
    /// Metadata plus the data area reserved with `fallocate` (reads as zeros).
    Falloc,
    /// Metadata plus the data area written with zeros.
    Full,
}

impl PreallocMode {
    /// All modes, in the order the documentation lists them.
    pub const ALL: [PreallocMode; 4] = [Self::Off, Self::Metadata, Self::Falloc, Self::Full];

    /// The name used in XML, on the command line and by qemu-img.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Metadata => "metadata",
            Self::Falloc => "falloc",
            Self::Full => "full",
        }
    }
}

impl fmt::Display for PreallocMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PreallocMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown preallocation mode '{s}' (expected off, metadata, falloc or full)")
            })
    }
}

/// qcow2 compression type recorded in the image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionType {
    /// zlib/deflate (qemu's default; header byte 104 = 0).
    #[default]
    Zlib,
    /// zstd (incompatible feature bit 3, header byte 104 = 1).
    Zstd,
}

impl CompressionType {
    /// The name used in XML and by qemu-img.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zlib => "zlib",
            Self::Zstd => "zstd",
        }
    }
}

/// Extension settings found inside `<target>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetExt {
    /// `<qpool:preallocation mode=…/>`.
    pub preallocation: Option<PreallocMode>,
    /// `<qpool:refcount bits=…/>`.
    pub refcount_bits: Option<u32>,
    /// `<qpool:compression type=…/>`.
    pub compression: Option<CompressionType>,
}

fn required_attr<'a>(el: &'a Element, name: &str) -> Result<&'a str, Error> {
    el.attr(name).ok_or_else(|| Error::Missing {
        path: el.path.clone(),
        what: format!("attribute '{name}'"),
    })
}

/// Reads the extension elements among `target`'s children.
pub(crate) fn parse_target_ext(target: &Element) -> Result<TargetExt, Error> {
    let mut ext = TargetExt::default();
    for el in target.children_in(NAMESPACE) {
        match el.name.as_str() {
            "preallocation" => {
                let mode = required_attr(el, "mode")?;
                ext.preallocation = Some(mode.parse().map_err(|m: String| el.bad_attr("mode", m))?);
            }
            "refcount" => {
                let bits = required_attr(el, "bits")?;
                let value: u32 = bits
                    .trim()
                    .parse()
                    .ok()
                    .filter(|b: &u32| b.is_power_of_two() && *b <= 64)
                    .ok_or_else(|| {
                        el.bad_attr(
                            "bits",
                            format!("refcount bits '{bits}' must be a power of two from 1 to 64"),
                        )
                    })?;
                ext.refcount_bits = Some(value);
            }
            "compression" => {
                let kind = required_attr(el, "type")?;
                ext.compression = Some(match kind {
                    "zlib" => CompressionType::Zlib,
                    "zstd" => CompressionType::Zstd,
                    other => {
                        return Err(el.bad_attr(
                            "type",
                            format!("unknown compression type '{other}' (expected zlib or zstd)"),
                        ));
                    }
                });
            }
            other => {
                return Err(el.unsupported(format!(
                    "unknown qpool extension element '{other}' (expected preallocation, refcount or compression)"
                )));
            }
        }
    }
    Ok(ext)
}
