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

use super::{Element, Error};
use crate::model::{Compression, Preallocation};

/// The extension namespace URI.
pub const NAMESPACE: &str = "urn:qpool:volume:1";

/// Extension settings found inside `<target>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetExt {
    /// `<qpool:preallocation mode=…/>`.
    pub preallocation: Option<Preallocation>,
    /// `<qpool:refcount bits=…/>`.
    pub refcount_bits: Option<u32>,
    /// `<qpool:compression type=…/>`.
    pub compression: Option<Compression>,
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
                ext.preallocation =
                    Some(mode.parse().map_err(|e: crate::model::UnknownName| {
                        el.bad_attr("mode", e.to_string())
                    })?);
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
                ext.compression =
                    Some(kind.parse().map_err(|e: crate::model::UnknownName| {
                        el.bad_attr("type", e.to_string())
                    })?);
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
