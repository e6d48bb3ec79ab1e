//! Planning a new volume: definition → policy → image plan.
//!
//! Owns: the only mapping from a [`VolumeDef`] to image options (format, capacity — from the
//! backing image when the XML has none —, qcow2 options over the qcow2 defaults, the
//! policy's mode and reservation, the LUKS cipher and iteration time of an encrypted
//! volume), the overlay's backing store, and whether the filesystem
//! will make a reservation a zero fill ([`Plan`], which `qpool explain` prints).
//! Must not: write anything.

use super::{Error, Pool, names};
use crate::image::{self, Encryption, ImagePlan, Qcow2Options};
use crate::model::{Compression, Preallocation, VolFormat};
use crate::policy::{self, CreateFlags, Decision};
use crate::xml::{Permissions, SecretRef, VolumeDef};

/// A backing store resolved for an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// Path as written in the XML (stored in the qcow2 header like this).
    pub path: String,
    /// Format used.
    pub format: VolFormat,
    /// Its guest-visible size.
    pub capacity: u64,
}

/// Everything decided about a new volume before any byte is written. `qpool explain` prints
/// it; `create_volume` carries it out.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Volume name (checked).
    pub name: String,
    /// The policy's decision.
    pub decision: Decision,
    /// The image to write: format, capacity, options, expected sizes.
    pub image: ImagePlan,
    /// Resolved backing store.
    pub backing: Option<Backing>,
    /// Whether the plan needs fallocate and the filesystem lacks it (zeros are written).
    pub zero_fill_fallback: bool,
    /// Mode and ownership to apply.
    pub permissions: Permissions,
    /// Set the btrfs no-copy-on-write attribute.
    pub nocow: bool,
    /// The secret an encrypted volume's passphrase comes from, as the XML names it.
    pub secret: Option<SecretRef>,
}

impl Plan {
    /// The format.
    pub fn format(&self) -> VolFormat {
        self.image.format()
    }

    /// Guest-visible size (qcow2: rounded up to 512).
    pub fn capacity(&self) -> u64 {
        self.image.capacity()
    }

    /// Format-level preallocation.
    pub fn preallocation(&self) -> Preallocation {
        self.image.preallocation()
    }

    /// Expected `st_blocks * 512` of the new file.
    pub fn expected_allocation(&self) -> u64 {
        self.image.expected_allocation()
    }

    /// Expected `st_size` of the new file.
    pub fn expected_physical(&self) -> u64 {
        self.image.expected_physical()
    }
}

/// The qcow2 creation options a definition asks for: its `<compat>`, `<clusterSize>`,
/// `<features>` and extensions over the qcow2 defaults, and its backing store.
fn qcow2_options(def: &VolumeDef, capacity: u64, backing: Option<&Backing>) -> Qcow2Options {
    let defaults = Qcow2Options::default();
    let features = def.target.features.unwrap_or_default();
    Qcow2Options {
        size: capacity,
        version: def.target.compat.unwrap_or(defaults.version),
        cluster_size: def.target.cluster_size.unwrap_or(defaults.cluster_size),
        refcount_bits: def
            .target
            .ext
            .refcount_bits
            .unwrap_or(defaults.refcount_bits),
        lazy_refcounts: features.lazy_refcounts,
        extended_l2: features.extended_l2,
        compression_zstd: def.target.ext.compression == Some(Compression::Zstd),
        backing: backing.map(|b| (b.path.clone(), Some(b.format.as_str().to_string()))),
        luks_length: None,
    }
}

impl Pool {
    /// Resolves the backing store of an overlay definition.
    fn resolve_backing(&self, def: &VolumeDef) -> Result<Option<Backing>, Error> {
        let Some(b) = &def.backing_store else {
            return Ok(None);
        };
        let info =
            image::probe_path(&image::backing_path(self.path(), &b.path)).map_err(|source| {
                Error::Backing {
                    path: b.path.clone(),
                    source,
                }
            })?;
        if b.format == Some(VolFormat::Qcow2) && info.format != VolFormat::Qcow2 {
            return Err(Error::BackingFormat {
                path: b.path.clone(),
                declared: "qcow2",
            });
        }
        Ok(Some(Backing {
            path: b.path.clone(),
            format: b.format.unwrap_or(info.format),
            capacity: info.capacity,
        }))
    }

    /// Decides everything about a new volume without creating it (`qpool explain`).
    pub fn plan(&self, def: &VolumeDef, flags: CreateFlags) -> Result<Plan, Error> {
        let name = def.name.clone();
        names::check(&name).map_err(|reason| Error::InvalidName {
            name: name.clone(),
            reason,
        })?;
        if self.exists(&name)? {
            return Err(Error::VolumeExists {
                name,
                pool: self.name.clone(),
            });
        }
        let backing = self.resolve_backing(def)?;
        // A definition without capacity is only accepted with a backing store.
        let capacity = def
            .capacity
            .or(backing.as_ref().map(|b| b.capacity))
            .unwrap_or(0);
        let decision =
            policy::decide(def, capacity, flags, &self.policy).map_err(|source| Error::Policy {
                name: name.clone(),
                source,
            })?;
        let block = self.dir.block_size().unwrap_or(4096);
        let options = |source| Error::Options {
            name: name.clone(),
            source,
        };
        let image = match def.format() {
            VolFormat::Raw => ImagePlan::raw(capacity, decision.mode, decision.reserve, block),
            VolFormat::Qcow2 => ImagePlan::qcow2(
                qcow2_options(def, capacity, backing.as_ref()),
                decision.mode,
                decision.reserve,
                block,
            ),
        }
        .map_err(options)?;
        let image = match &def.target.encryption {
            Some(enc) => image
                .with_encryption(Encryption {
                    cipher: enc.cipher,
                    iter_time_ms: enc
                        .iter_time_ms
                        .unwrap_or(image::luks::DEFAULT_ITER_TIME_MS),
                })
                .map_err(options)?,
            None => image,
        };
        let zero_fill_fallback = image.needs_fallocate() && !self.fallocate_works()?;
        log::debug!(
            "volume '{name}': preallocation {} ({decision})",
            decision.mode
        );
        Ok(Plan {
            name,
            decision,
            image,
            backing,
            zero_fill_fallback,
            permissions: def.target.permissions,
            nocow: def.target.nocow,
            secret: def
                .target
                .encryption
                .as_ref()
                .and_then(|e| e.secret.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Compat;
    use crate::policy::Rule;
    use crate::xml::{BackingStoreDef, Features};

    const GIB: u64 = 1 << 30;

    use crate::pool::temp_pool as pool;

    fn def(name: &str, format: VolFormat, allocation: Option<u64>) -> VolumeDef {
        let mut def = VolumeDef::new(name, 8 * GIB);
        def.target.format = Some(format);
        def.allocation = allocation;
        def
    }

    fn plan(pool: &Pool, def: &VolumeDef) -> Plan {
        pool.plan(def, CreateFlags::default()).unwrap()
    }

    #[test]
    fn qcow2_rows_of_the_policy_reach_the_image_plan() {
        let (_d, pool) = pool();
        let cases = [
            (None, Preallocation::Off, Rule::Qcow2Absent),
            (Some(0), Preallocation::Off, Rule::Qcow2Zero),
            (Some(GIB), Preallocation::Metadata, Rule::Qcow2Partial),
            (Some(8 * GIB), Preallocation::Falloc, Rule::Qcow2AtCapacity),
        ];
        for (allocation, mode, rule) in cases {
            let p = plan(&pool, &def("q.qcow2", VolFormat::Qcow2, allocation));
            assert_eq!((p.preallocation(), p.decision.rule), (mode, rule));
            assert_eq!(p.format(), VolFormat::Qcow2);
            assert_eq!(p.capacity(), 8 * GIB);
            let reserved = allocation.filter(|&a| a < 8 * GIB).unwrap_or(0);
            assert_eq!(p.image.reserve(), reserved);
        }
    }

    #[test]
    fn raw_rows_of_the_policy_reach_the_image_plan() {
        let (_d, pool) = pool();
        let cases = [
            (None, Preallocation::Falloc, Rule::RawAbsent, 8 * GIB),
            (Some(0), Preallocation::Off, Rule::RawZero, 0),
            (Some(GIB), Preallocation::Off, Rule::RawPartial, GIB),
            (
                Some(9 * GIB),
                Preallocation::Falloc,
                Rule::RawAtCapacity,
                8 * GIB,
            ),
        ];
        for (allocation, mode, rule, expected) in cases {
            let p = plan(&pool, &def("r.img", VolFormat::Raw, allocation));
            assert_eq!((p.preallocation(), p.decision.rule), (mode, rule));
            assert_eq!(p.expected_allocation(), expected);
            assert_eq!(p.expected_physical(), 8 * GIB);
        }
    }

    #[test]
    fn explicit_mode_and_metadata_flag_rows() {
        let (_d, pool) = pool();
        let mut d = def("q.qcow2", VolFormat::Qcow2, Some(GIB));
        d.target.ext.preallocation = Some(Preallocation::Full);
        let p = plan(&pool, &d);
        assert_eq!(
            (p.preallocation(), p.decision.rule),
            (Preallocation::Full, Rule::Explicit)
        );
        let d = def("q.qcow2", VolFormat::Qcow2, Some(GIB));
        let flags = CreateFlags {
            prealloc_metadata: true,
        };
        let p = pool.plan(&d, flags).unwrap();
        assert_eq!(
            (p.preallocation(), p.decision.rule),
            (Preallocation::Metadata, Rule::FlagBelowCapacity)
        );
    }

    #[test]
    fn qcow2_options_come_from_the_xml_over_the_qcow2_defaults() {
        let (_d, pool) = pool();
        let mut d = def("q.qcow2", VolFormat::Qcow2, None);
        let p = plan(&pool, &d);
        let o = p.image.qcow2_options().unwrap();
        assert_eq!(
            (o.version, o.cluster_size, o.refcount_bits),
            (Compat::V1_1, 65536, 16)
        );
        d.target.compat = Some(Compat::V0_10);
        d.target.cluster_size = Some(2 << 20);
        d.target.features = Some(Features {
            lazy_refcounts: false,
            extended_l2: false,
        });
        let p = plan(&pool, &d);
        let o = p.image.qcow2_options().unwrap();
        assert_eq!((o.version, o.cluster_size), (Compat::V0_10, 2 << 20));
    }

    #[test]
    fn an_overlay_takes_its_capacity_from_the_backing_image_and_stays_thin() {
        let (dir, pool) = pool();
        let base = def("base.qcow2", VolFormat::Qcow2, None);
        pool.create_volume(&base, CreateFlags::default(), None)
            .unwrap();
        let mut overlay = def("top.qcow2", VolFormat::Qcow2, Some(8 * GIB));
        overlay.capacity = None;
        overlay.backing_store = Some(BackingStoreDef {
            path: "base.qcow2".into(),
            format: Some(VolFormat::Qcow2),
        });
        let p = plan(&pool, &overlay);
        assert_eq!(p.capacity(), 8 * GIB);
        assert_eq!(p.decision.rule, Rule::OverlayThin);
        let b = p.backing.unwrap();
        assert_eq!((b.format, b.capacity), (VolFormat::Qcow2, 8 * GIB));
        drop(dir);
    }

    #[test]
    fn an_existing_name_or_a_bad_name_is_refused_before_anything_else() {
        let (dir, pool) = pool();
        std::fs::write(dir.path().join("taken.img"), b"").unwrap();
        assert!(matches!(
            pool.plan(
                &def("taken.img", VolFormat::Raw, None),
                CreateFlags::default()
            ),
            Err(Error::VolumeExists { .. })
        ));
        assert!(matches!(
            pool.plan(&def("a/b", VolFormat::Raw, None), CreateFlags::default()),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn a_filesystem_without_fallocate_turns_reservations_into_zero_fills() {
        let (_d, mut pool) = pool();
        pool.set_fallocate_disabled(true);
        let p = plan(&pool, &def("r.img", VolFormat::Raw, Some(GIB)));
        assert!(p.zero_fill_fallback);
        let p = plan(&pool, &def("r.img", VolFormat::Raw, Some(0)));
        assert!(!p.zero_fill_fallback);
    }
}
