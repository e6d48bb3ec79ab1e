//! qcow2 creation options, checked as qemu-img checks them.
//!
//! Owns: [`Options`] (qemu-img's `-o` for qcow2) and their defaults (compat 1.1, 64 KiB
//! clusters, 16-bit refcounts: the only place these defaults live), qemu's option checks and
//! implementation limits with the error each refusal gives, and the geometry a checked set
//! of options implies (L2 entries per table, L1 size, refcount block coverage).
//! Must not: place clusters (that is `layout`) or do I/O.

use thiserror::Error;

use super::spec::{self, Extension};
use crate::model::{Compat, Preallocation};
use crate::units::div_ceil;

/// The qcow2 creation options, as qemu-img's `-o` would take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Virtual size in bytes (rounded up to 512 like qemu-img).
    pub size: u64,
    /// Header version (compat 0.10 → 2, 1.1 → 3).
    pub version: Compat,
    /// Cluster size in bytes: a power of two from 512 to 2 MiB.
    pub cluster_size: u64,
    /// Refcount width in bits: a power of two up to 64 (v2: 16 only).
    pub refcount_bits: u32,
    /// `lazy_refcounts=on` (v3 only).
    pub lazy_refcounts: bool,
    /// `extended_l2=on` (v3, clusters of 16 KiB and more).
    pub extended_l2: bool,
    /// `compression_type=zstd` (v3 only).
    pub compression_zstd: bool,
    /// Backing file name (stored as given) and format name (the backing-format header
    /// extension; qemu-img always writes it, older images may lack it).
    pub backing: Option<(String, Option<String>)>,
    /// `encrypt.format=luks`: the LUKS header's length in bytes (its payload offset), for
    /// the clusters that hold it and the full disk encryption extension (crypt_method 2).
    pub luks_length: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            size: 0,
            version: Compat::V1_1,
            cluster_size: 65536,
            refcount_bits: 16,
            lazy_refcounts: false,
            extended_l2: false,
            compression_zstd: false,
            backing: None,
            luks_length: None,
        }
    }
}

/// Options qemu-img would refuse, or an image too large for qcow2's limits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// Cluster size out of range or not a power of two.
    #[error("cluster size {0} is not a power of two between 512 and 2 MiB")]
    ClusterSize(u64),
    /// Refcount width out of range or not a power of two.
    #[error("refcount width {0} is not a power of two of at most 64 bits")]
    RefcountBits(u32),
    /// A v3-only option with compat 0.10.
    #[error("{0} needs compat 1.1 (qcow2 version 3)")]
    NeedsV3(&'static str),
    /// extended_l2 with clusters below 16 KiB.
    #[error("extended_l2 needs clusters of at least 16 KiB (cluster size is {0})")]
    ExtendedL2ClusterSize(u64),
    /// Backing file with preallocation, without extended_l2.
    #[error("a backing file and preallocation '{0}' can be used together only with extended_l2")]
    BackingWithPreallocation(&'static str),
    /// The virtual size rounded up to 512 overflows.
    #[error("virtual size {0} is too large")]
    SizeOverflow(u64),
    /// The L1 table would exceed qemu's 32 MiB limit.
    #[error(
        "virtual size {size} is too large for qcow2 with {cluster_size}-byte clusters (the L1 table would exceed 32 MiB; use larger clusters)"
    )]
    L1TooLarge {
        /// Requested virtual size.
        size: u64,
        /// Cluster size.
        cluster_size: u64,
    },
    /// The refcount table would exceed qemu's 8 MiB limit.
    #[error(
        "the refcount table would exceed 8 MiB ({clusters} clusters); use larger clusters or narrower refcounts"
    )]
    RefcountTableTooLarge {
        /// Clusters the table would need.
        clusters: u64,
    },
    /// The image file would be larger than qcow2 offsets can address.
    #[error("the image file would be {0} bytes, beyond what qcow2 offsets can address")]
    FileTooLarge(u128),
    /// A data range outside the image's guest clusters.
    #[error("guest clusters {start}..{end} lie outside the image's {clusters} clusters")]
    DataOutOfRange {
        /// First cluster of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// Guest clusters of the image.
        clusters: u64,
    },
    /// Header, extensions and backing name do not fit in the first cluster.
    #[error(
        "header, extensions and backing file name need {needed} bytes, more than one {cluster_size}-byte cluster"
    )]
    HeaderTooBig {
        /// Bytes needed.
        needed: usize,
        /// Cluster size.
        cluster_size: u64,
    },
}

/// Checked options with derived geometry.
#[derive(Debug, Clone)]
pub(super) struct Geometry {
    pub(super) size: u64,
    pub(super) cluster_bits: u32,
    pub(super) cluster_size: u64,
    pub(super) refcount_order: u32,
    pub(super) l2_entries: u64,
    pub(super) l2_entry_size: u64,
    pub(super) rb_bits: u32,
    pub(super) guest_clusters: u64,
    pub(super) l1_size: u64,
    pub(super) l1_clusters: u64,
    pub(super) extensions: Vec<Extension>,
    pub(super) luks_clusters: u64,
}

pub(super) fn check(opts: &Options, prealloc: Preallocation) -> Result<Geometry, Error> {
    let cs = opts.cluster_size;
    if !cs.is_power_of_two() || !(512..=(2 << 20)).contains(&cs) {
        return Err(Error::ClusterSize(cs));
    }
    let cluster_bits = cs.trailing_zeros();
    let rb = opts.refcount_bits;
    if !rb.is_power_of_two() || rb > 64 {
        return Err(Error::RefcountBits(rb));
    }
    if opts.version == Compat::V0_10 {
        if rb != 16 {
            return Err(Error::NeedsV3("a refcount width other than 16 bits"));
        }
        if opts.lazy_refcounts {
            return Err(Error::NeedsV3("lazy_refcounts"));
        }
        if opts.extended_l2 {
            return Err(Error::NeedsV3("extended_l2"));
        }
        if opts.compression_zstd {
            return Err(Error::NeedsV3("compression type zstd"));
        }
    }
    if opts.extended_l2 && cs < 16384 {
        return Err(Error::ExtendedL2ClusterSize(cs));
    }
    if opts.backing.is_some() && prealloc != Preallocation::Off && !opts.extended_l2 {
        return Err(Error::BackingWithPreallocation(prealloc.as_str()));
    }
    let size = crate::units::round_up(opts.size, 512).ok_or(Error::SizeOverflow(opts.size))?;
    let l2_entry_size = if opts.extended_l2 {
        spec::EXTENDED_L2_ENTRY_SIZE
    } else {
        spec::ENTRY_SIZE
    };
    let l2_entries = cs / l2_entry_size;
    let guest_clusters = div_ceil(size, cs);
    let l1_size = div_ceil(guest_clusters, l2_entries);
    if l1_size * spec::ENTRY_SIZE > spec::MAX_L1_BYTES {
        return Err(Error::L1TooLarge {
            size: opts.size,
            cluster_size: cs,
        });
    }
    let refcount_order = rb.trailing_zeros();
    // Refcount block entries = cs * 8 / refcount_bits, a power of two.
    let rb_bits = cluster_bits + 3 - refcount_order;

    let mut extensions = Vec::new();
    if let Some((_, Some(format))) = &opts.backing {
        extensions.push(Extension::BackingFormat(format.clone()));
    }
    // qemu's order: backing format, full disk encryption, feature table. The encryption
    // extension's offset is known once the layout places the header's clusters.
    if let Some(length) = opts.luks_length {
        extensions.push(Extension::FullDiskEncryption { offset: 0, length });
    }
    if opts.version == Compat::V1_1 && cs > 4096 {
        extensions.push(Extension::FeatureNameTable);
    }
    let header_length = match opts.version {
        Compat::V0_10 => spec::V2_HEADER_LENGTH,
        Compat::V1_1 => spec::V3_HEADER_LENGTH,
    };
    let needed = header_length
        + spec::encode_extensions(&extensions).len()
        + opts.backing.as_ref().map_or(0, |(name, _)| name.len());
    if needed as u64 > cs {
        return Err(Error::HeaderTooBig {
            needed,
            cluster_size: cs,
        });
    }
    Ok(Geometry {
        size,
        cluster_bits,
        cluster_size: cs,
        refcount_order,
        l2_entries,
        l2_entry_size,
        rb_bits,
        guest_clusters,
        l1_size,
        l1_clusters: div_ceil(l1_size * spec::ENTRY_SIZE, cs),
        extensions,
        luks_clusters: opts.luks_length.map_or(0, |len| div_ceil(len, cs)),
    })
}
