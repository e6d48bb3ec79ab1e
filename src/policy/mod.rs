//! The allocation policy: which preallocation a new volume gets (design.md, "Allocation →
//! preallocation").
//!
//! Owns: one pure function, [`decide`], from a volume definition, its capacity and the create
//! flags to a [`Decision`]: the mode, how many bytes of guest data to reserve, and the rule
//! that chose them, in words that the debug log and `qpool explain` both print.
//! Must not: read files, compute image layouts, or look at the pool directory.
//!
//! | `<allocation>` | qcow2 | raw |
//! |---|---|---|
//! | absent | pool default (`off`) | fully allocated (`falloc`) |
//! | 0 | `off` | sparse |
//! | 0 < a < capacity | `metadata` + first `a` bytes reserved | first `a` bytes reserved |
//! | a ≥ capacity | `falloc` | `falloc` |
//! | `<qpool:preallocation mode=…/>` | that mode | off / falloc / full |
//!
//! A document that is a `vol-dumpxml` report (it has `<key>` or `<physical>`, as what
//! `virsh vol-clone` sends) reports the source's usage in `<allocation>`; for qcow2 an
//! allocation below capacity there is not a reservation request, and the clone stays thin,
//! as libvirt keeps it.
//!
//! `--prealloc-metadata` (libvirt's flag) keeps libvirt's meaning for qcow2: allocation below
//! capacity → metadata, otherwise falloc. An overlay (backing store) without extended L2 stays
//! thin unless a mode is asked for explicitly, because qemu refuses a backing file with
//! preallocation unless extended_l2 is on.

use std::fmt;

use thiserror::Error;

use crate::model::{Preallocation, VolFormat};
use crate::xml::VolumeDef;

/// libvirt's create flags that matter to the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateFlags {
    /// `VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA` (`--prealloc-metadata`).
    pub prealloc_metadata: bool,
}

/// Pool-wide policy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPolicy {
    /// Mode for a qcow2 volume whose XML has no `<allocation>` (design.md: off).
    pub qcow2_default: Preallocation,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        Self {
            qcow2_default: Preallocation::Off,
        }
    }
}

/// The table row that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `<qpool:preallocation mode=…/>` was given.
    Explicit,
    /// `--prealloc-metadata` with allocation below capacity.
    FlagBelowCapacity,
    /// `--prealloc-metadata` with allocation at least capacity (or absent).
    FlagAtCapacity,
    /// An overlay without extended L2 stays thin.
    OverlayThin,
    /// qcow2 without `<allocation>`.
    Qcow2Absent,
    /// qcow2 with allocation 0.
    Qcow2Zero,
    /// qcow2 with 0 < allocation < capacity.
    Qcow2Partial,
    /// qcow2 from a `vol-dumpxml` report with allocation below capacity.
    Qcow2Report,
    /// qcow2 with allocation ≥ capacity.
    Qcow2AtCapacity,
    /// raw without `<allocation>`.
    RawAbsent,
    /// raw with allocation 0.
    RawZero,
    /// raw with 0 < allocation < capacity.
    RawPartial,
    /// raw with allocation ≥ capacity.
    RawAtCapacity,
}

impl Rule {
    /// A stable name for the row, for machine-readable output.
    pub fn id(self) -> &'static str {
        match self {
            Self::Explicit => "explicit",
            Self::FlagBelowCapacity => "prealloc-metadata-below-capacity",
            Self::FlagAtCapacity => "prealloc-metadata-at-capacity",
            Self::OverlayThin => "overlay-thin",
            Self::Qcow2Absent => "qcow2-allocation-absent",
            Self::Qcow2Zero => "qcow2-allocation-zero",
            Self::Qcow2Partial => "qcow2-allocation-partial",
            Self::Qcow2Report => "qcow2-from-report",
            Self::Qcow2AtCapacity => "qcow2-allocation-at-capacity",
            Self::RawAbsent => "raw-allocation-absent",
            Self::RawZero => "raw-allocation-zero",
            Self::RawPartial => "raw-allocation-partial",
            Self::RawAtCapacity => "raw-allocation-at-capacity",
        }
    }
}

/// What the policy decided for one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Preallocation mode of the image.
    pub mode: Preallocation,
    /// Bytes at the start of the guest data to reserve with fallocate on top of `mode`
    /// (only the partial rows; 0 otherwise).
    pub reserve: u64,
    /// The row that chose it.
    pub rule: Rule,
    /// The volume's format.
    pub format: VolFormat,
    /// `<allocation>` as written, for the description.
    pub allocation: Option<u64>,
}

impl fmt::Display for Decision {
    /// The rule in words, as the debug log and `qpool explain` print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.allocation.unwrap_or(0);
        match self.rule {
            Rule::Explicit => write!(
                f,
                "<qpool:preallocation mode='{}'/> asks for this mode exactly",
                self.mode
            ),
            Rule::FlagBelowCapacity => write!(
                f,
                "--prealloc-metadata with allocation {a} below capacity: metadata (libvirt's rule)"
            ),
            Rule::FlagAtCapacity => match self.allocation {
                Some(a) => write!(
                    f,
                    "--prealloc-metadata with allocation {a} at or above capacity: falloc (libvirt's rule)"
                ),
                None => write!(
                    f,
                    "--prealloc-metadata without <allocation> (libvirt reads it as = capacity): falloc (libvirt's rule)"
                ),
            },
            Rule::OverlayThin => write!(
                f,
                "overlay without extended_l2: off (qemu allows preallocation with a backing file only with extended_l2)"
            ),
            Rule::Qcow2Absent => write!(
                f,
                "qcow2 without <allocation>: the pool default, {}",
                self.mode
            ),
            Rule::Qcow2Zero => write!(f, "qcow2 with allocation 0: off (thin)"),
            Rule::Qcow2Partial => write!(
                f,
                "qcow2 with 0 < allocation {a} < capacity: metadata, and the first {} bytes of guest data reserved with fallocate",
                self.reserve
            ),
            Rule::Qcow2Report => write!(
                f,
                "qcow2 from a vol-dumpxml report (it has <key> or <physical>): allocation {a} below capacity is the source's usage, not a request: off (thin, as libvirt)"
            ),
            Rule::Qcow2AtCapacity => {
                write!(f, "qcow2 with allocation {a} at or above capacity: falloc")
            }
            Rule::RawAbsent => write!(
                f,
                "raw without <allocation> (libvirt reads it as = capacity): fully allocated with fallocate"
            ),
            Rule::RawZero => write!(f, "raw with allocation 0: sparse file"),
            Rule::RawPartial => write!(
                f,
                "raw with 0 < allocation {a} < capacity: the first {} bytes fallocated, the rest sparse",
                self.reserve
            ),
            Rule::RawAtCapacity => write!(
                f,
                "raw with allocation {a} at or above capacity: the whole file fallocated"
            ),
        }
    }
}

/// A combination the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// `metadata` asked for a raw volume.
    #[error(
        "preallocation mode 'metadata' needs format qcow2 (a raw volume takes off, falloc or full)"
    )]
    RawMetadata,
    /// `--prealloc-metadata` on a raw volume (libvirt refuses it too).
    #[error("metadata preallocation is not supported for raw volumes")]
    RawPreallocFlag,
    /// A raw volume with a backing store.
    #[error("backing storage is not supported for raw volumes")]
    RawBacking,
    /// Preallocation asked for an overlay without extended L2.
    #[error(
        "preallocation '{0}' with a backing store needs <features><extended_l2/></features> (qemu allows backing file and preallocation together only with extended_l2)"
    )]
    OverlayPrealloc(Preallocation),
}

/// Decides the preallocation of a new volume of `capacity` bytes.
pub fn decide(
    def: &VolumeDef,
    capacity: u64,
    flags: CreateFlags,
    policy: &PoolPolicy,
) -> Result<Decision, Error> {
    let format = def.format();
    let allocation = def.allocation;
    let overlay = def.backing_store.is_some();
    let extended_l2 = def.target.features.is_some_and(|f| f.extended_l2);
    let decision = |mode, reserve, rule| Decision {
        mode,
        reserve,
        rule,
        format,
        allocation,
    };

    if format == VolFormat::Raw {
        if overlay {
            return Err(Error::RawBacking);
        }
        if let Some(mode) = def.target.ext.preallocation {
            if mode == Preallocation::Metadata {
                return Err(Error::RawMetadata);
            }
            return Ok(decision(mode, 0, Rule::Explicit));
        }
        if flags.prealloc_metadata {
            return Err(Error::RawPreallocFlag);
        }
        return Ok(match allocation {
            None => decision(Preallocation::Falloc, 0, Rule::RawAbsent),
            Some(0) => decision(Preallocation::Off, 0, Rule::RawZero),
            Some(a) if a < capacity => decision(Preallocation::Off, a, Rule::RawPartial),
            Some(_) => decision(Preallocation::Falloc, 0, Rule::RawAtCapacity),
        });
    }

    let thin_overlay = overlay && !extended_l2;
    if let Some(mode) = def.target.ext.preallocation {
        if thin_overlay && mode != Preallocation::Off {
            return Err(Error::OverlayPrealloc(mode));
        }
        return Ok(decision(mode, 0, Rule::Explicit));
    }
    if flags.prealloc_metadata {
        let below = allocation.is_some_and(|a| a < capacity);
        let mode = if below {
            Preallocation::Metadata
        } else {
            Preallocation::Falloc
        };
        if thin_overlay {
            return Err(Error::OverlayPrealloc(mode));
        }
        let rule = if below {
            Rule::FlagBelowCapacity
        } else {
            Rule::FlagAtCapacity
        };
        return Ok(decision(mode, 0, rule));
    }
    if thin_overlay {
        return Ok(decision(Preallocation::Off, 0, Rule::OverlayThin));
    }
    Ok(match allocation {
        None => decision(policy.qcow2_default, 0, Rule::Qcow2Absent),
        Some(0) => decision(Preallocation::Off, 0, Rule::Qcow2Zero),
        Some(a) if a < capacity && def.from_report => {
            decision(Preallocation::Off, 0, Rule::Qcow2Report)
        }
        Some(a) if a < capacity => decision(Preallocation::Metadata, a, Rule::Qcow2Partial),
        Some(_) => decision(Preallocation::Falloc, 0, Rule::Qcow2AtCapacity),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{BackingStoreDef, Features};

    const CAP: u64 = 10 << 30;

    fn qcow2(allocation: Option<u64>) -> VolumeDef {
        let mut def = VolumeDef::new("v", CAP);
        def.target.format = Some(VolFormat::Qcow2);
        def.allocation = allocation;
        def
    }

    fn raw(allocation: Option<u64>) -> VolumeDef {
        let mut def = VolumeDef::new("v", CAP);
        def.allocation = allocation;
        def
    }

    fn no_flags(def: &VolumeDef) -> Result<Decision, Error> {
        decide(def, CAP, CreateFlags::default(), &PoolPolicy::default())
    }

    fn with_flag(def: &VolumeDef) -> Result<Decision, Error> {
        decide(
            def,
            CAP,
            CreateFlags {
                prealloc_metadata: true,
            },
            &PoolPolicy::default(),
        )
    }

    fn overlay(mut def: VolumeDef, extended_l2: bool) -> VolumeDef {
        def.backing_store = Some(BackingStoreDef {
            path: "/b.qcow2".into(),
            format: Some(VolFormat::Qcow2),
        });
        def.target.features = Some(Features {
            lazy_refcounts: false,
            extended_l2,
        });
        def
    }

    #[test]
    fn qcow2_allocation_absent_uses_pool_default_off() {
        let d = no_flags(&qcow2(None)).unwrap();
        assert_eq!(
            (d.mode, d.reserve, d.rule),
            (Preallocation::Off, 0, Rule::Qcow2Absent)
        );
    }

    #[test]
    fn qcow2_allocation_absent_follows_a_changed_pool_default() {
        let policy = PoolPolicy {
            qcow2_default: Preallocation::Metadata,
        };
        let d = decide(&qcow2(None), CAP, CreateFlags::default(), &policy).unwrap();
        assert_eq!(d.mode, Preallocation::Metadata);
    }

    #[test]
    fn qcow2_allocation_zero_is_off() {
        let d = no_flags(&qcow2(Some(0))).unwrap();
        assert_eq!(
            (d.mode, d.reserve, d.rule),
            (Preallocation::Off, 0, Rule::Qcow2Zero)
        );
    }

    #[test]
    fn qcow2_allocation_below_capacity_uses_metadata_and_reserves() {
        let d = no_flags(&qcow2(Some(2 << 30))).unwrap();
        assert_eq!(
            (d.mode, d.reserve, d.rule),
            (Preallocation::Metadata, 2 << 30, Rule::Qcow2Partial)
        );
        assert!(d.to_string().contains("first 2147483648 bytes"), "{d}");
    }

    #[test]
    fn qcow2_report_allocation_below_capacity_stays_thin() {
        let mut def = qcow2(Some(200_704));
        def.from_report = true;
        let d = no_flags(&def).unwrap();
        assert_eq!(
            (d.mode, d.reserve, d.rule),
            (Preallocation::Off, 0, Rule::Qcow2Report)
        );
    }

    #[test]
    fn qcow2_report_allocation_at_capacity_stays_falloc() {
        let mut def = qcow2(Some(CAP + 1_000_000));
        def.from_report = true;
        assert_eq!(no_flags(&def).unwrap().mode, Preallocation::Falloc);
    }

    #[test]
    fn qcow2_allocation_at_capacity_uses_falloc() {
        let d = no_flags(&qcow2(Some(CAP))).unwrap();
        assert_eq!(
            (d.mode, d.rule),
            (Preallocation::Falloc, Rule::Qcow2AtCapacity)
        );
    }

    #[test]
    fn qcow2_allocation_above_capacity_uses_falloc() {
        let d = no_flags(&qcow2(Some(CAP + 1))).unwrap();
        assert_eq!(d.mode, Preallocation::Falloc);
    }

    #[test]
    fn qcow2_explicit_mode_wins_over_allocation() {
        for mode in Preallocation::ALL {
            let mut def = qcow2(Some(1));
            def.target.ext.preallocation = Some(mode);
            let d = with_flag(&def).unwrap();
            assert_eq!(
                (d.mode, d.reserve, d.rule),
                (mode, 0, Rule::Explicit),
                "{mode}"
            );
        }
    }

    #[test]
    fn prealloc_metadata_flag_below_capacity_uses_metadata_without_reserve() {
        let d = with_flag(&qcow2(Some(1 << 30))).unwrap();
        assert_eq!(
            (d.mode, d.reserve, d.rule),
            (Preallocation::Metadata, 0, Rule::FlagBelowCapacity)
        );
    }

    #[test]
    fn prealloc_metadata_flag_with_allocation_zero_uses_metadata() {
        let d = with_flag(&qcow2(Some(0))).unwrap();
        assert_eq!(d.mode, Preallocation::Metadata);
    }

    #[test]
    fn prealloc_metadata_flag_at_capacity_uses_falloc() {
        let d = with_flag(&qcow2(Some(CAP))).unwrap();
        assert_eq!(
            (d.mode, d.rule),
            (Preallocation::Falloc, Rule::FlagAtCapacity)
        );
    }

    #[test]
    fn prealloc_metadata_flag_without_allocation_uses_falloc_like_libvirt() {
        let d = with_flag(&qcow2(None)).unwrap();
        assert_eq!(
            (d.mode, d.rule),
            (Preallocation::Falloc, Rule::FlagAtCapacity)
        );
    }

    #[test]
    fn raw_allocation_absent_is_fully_allocated() {
        let d = no_flags(&raw(None)).unwrap();
        assert_eq!((d.mode, d.rule), (Preallocation::Falloc, Rule::RawAbsent));
    }

    #[test]
    fn raw_allocation_zero_is_sparse() {
        let d = no_flags(&raw(Some(0))).unwrap();
        assert_eq!(
            (d.mode, d.reserve, d.rule),
            (Preallocation::Off, 0, Rule::RawZero)
        );
    }

    #[test]
    fn raw_partial_allocation_reserves_the_first_bytes() {
        let d = no_flags(&raw(Some(1 << 20))).unwrap();
        assert_eq!(
            (d.mode, d.reserve, d.rule),
            (Preallocation::Off, 1 << 20, Rule::RawPartial)
        );
    }

    #[test]
    fn raw_allocation_at_capacity_is_fallocated() {
        let d = no_flags(&raw(Some(CAP))).unwrap();
        assert_eq!(
            (d.mode, d.rule),
            (Preallocation::Falloc, Rule::RawAtCapacity)
        );
    }

    #[test]
    fn raw_explicit_modes_off_falloc_full_are_taken() {
        for mode in [
            Preallocation::Off,
            Preallocation::Falloc,
            Preallocation::Full,
        ] {
            let mut def = raw(Some(0));
            def.target.ext.preallocation = Some(mode);
            assert_eq!(no_flags(&def).unwrap().mode, mode);
        }
    }

    #[test]
    fn raw_explicit_metadata_is_refused() {
        let mut def = raw(None);
        def.target.ext.preallocation = Some(Preallocation::Metadata);
        assert_eq!(no_flags(&def), Err(Error::RawMetadata));
    }

    #[test]
    fn raw_with_prealloc_metadata_flag_is_refused_like_libvirt() {
        assert_eq!(with_flag(&raw(None)), Err(Error::RawPreallocFlag));
    }

    #[test]
    fn raw_with_backing_store_is_refused() {
        let mut def = raw(None);
        def.backing_store = Some(BackingStoreDef {
            path: "/b".into(),
            format: None,
        });
        assert_eq!(no_flags(&def), Err(Error::RawBacking));
    }

    #[test]
    fn overlay_without_extended_l2_stays_thin_whatever_the_allocation() {
        let d = no_flags(&overlay(qcow2(Some(CAP)), false)).unwrap();
        assert_eq!((d.mode, d.rule), (Preallocation::Off, Rule::OverlayThin));
    }

    #[test]
    fn overlay_without_extended_l2_refuses_explicit_preallocation() {
        let mut def = overlay(qcow2(None), false);
        def.target.ext.preallocation = Some(Preallocation::Metadata);
        assert_eq!(
            no_flags(&def),
            Err(Error::OverlayPrealloc(Preallocation::Metadata))
        );
    }

    #[test]
    fn overlay_with_extended_l2_follows_the_table() {
        let d = no_flags(&overlay(qcow2(Some(1 << 20)), true)).unwrap();
        assert_eq!(
            (d.mode, d.rule),
            (Preallocation::Metadata, Rule::Qcow2Partial)
        );
    }
}
