//! qcow2 on-disk format: the only place that knows byte offsets.
//!
//! Owns: the header (versions 2 and 3) as a `zerocopy` struct with a compile-time check of
//! every field's offset, header extensions, feature bits, L1/L2/refcount entry encodings and
//! qemu's implementation limits, all as qemu's `docs/interop/qcow2.rst` names them.
//! Must not: decide where anything goes in a file (that is `layout`) or do I/O.
//!
//! All integers on disk are big-endian.

use std::mem::{offset_of, size_of};

use thiserror::Error;

use crate::model::{Compat, Compression};
use zerocopy::byteorder::{BigEndian, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Magic bytes "QFI\xfb".
pub const MAGIC: u32 = 0x5146_49fb;
/// Smallest cluster_bits (512-byte clusters).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster_bits qemu supports (2 MiB clusters).
pub const MAX_CLUSTER_BITS: u32 = 21;
/// qemu's limit on the L1 table: 32 MiB, i.e. 4,194,304 entries.
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// qemu's limit on the refcount table: 8 MiB.
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Largest refcount_order (64-bit refcounts).
pub const MAX_REFCOUNT_ORDER: u32 = 6;
/// Longest backing file name qemu accepts.
pub const MAX_BACKING_FILE_NAME: usize = 1023;
/// Size of a version 2 header, as the header field's type.
pub const V2_HEADER_LENGTH_U32: u32 = 72;
/// Size of a version 2 header.
pub const V2_HEADER_LENGTH: usize = V2_HEADER_LENGTH_U32 as usize;
/// Smallest version 3 header (without the compression type byte).
pub const V3_MIN_HEADER_LENGTH: usize = 104;
/// Size of the version 3 header qemu writes (compression type byte and padding included),
/// as the header field's type.
pub const V3_HEADER_LENGTH_U32: u32 = 112;
/// [`V3_HEADER_LENGTH_U32`] as a byte count.
pub const V3_HEADER_LENGTH: usize = V3_HEADER_LENGTH_U32 as usize;

/// Bit 63 of L1 and standard L2 entries: refcount is exactly one (QCOW_OFLAG_COPIED).
pub const OFLAG_COPIED: u64 = 1 << 63;
/// Bits 9–55 of an L1 entry: offset of the L2 table.
pub const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bits 9–55 of a standard L2 entry: host offset of the data cluster.
pub const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bits 9–63 of a refcount table entry: offset of the refcount block.
pub const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
/// Size of one L1 entry, one standard L2 entry and one refcount table entry.
pub const ENTRY_SIZE: u64 = 8;
/// Size of one extended L2 entry (entry + subcluster bitmap).
pub const EXTENDED_L2_ENTRY_SIZE: u64 = 16;

/// Bit 62 of an L2 entry: the cluster is compressed.
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Bit 0 of a standard L2 entry: the cluster reads as zeros.
pub const OFLAG_ZERO: u64 = 1;
/// Subclusters per cluster with extended L2 entries.
pub const SUBCLUSTERS: u64 = 32;
/// Extended L2 subcluster bitmap with all 32 subclusters allocated (bits 0–31).
pub const SUBCLUSTERS_ALLOCATED: u64 = 0xffff_ffff;
/// Extended L2 subcluster bitmap with all 32 subclusters reading as zeros (bits 32–63).
pub const SUBCLUSTERS_ZERO: u64 = 0xffff_ffff << 32;

/// Header extension: backing file format name.
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Header extension: feature name table.
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
/// Header extension: full disk encryption header pointer (LUKS).
pub const EXT_FULL_DISK_ENCRYPTION: u32 = 0x0537_be77;
/// Header extension: end of the extension area.
pub const EXT_END: u32 = 0;
/// crypt_method 2: LUKS, its header in the clusters the full disk encryption extension
/// points at; guest data encrypted by guest offset.
pub const CRYPT_LUKS: u32 = 2;

/// Incompatible feature bit 0: refcounts may be stale.
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: image is corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: external data file.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 3: compression type in byte 104.
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible feature bit 4: extended L2 entries.
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Compatible feature bit 0: lazy refcounts.
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;
/// Every incompatible feature bit the qcow2 specification defines (qemu's
/// QCOW2_INCOMPAT_MASK); any other bit makes qemu refuse the image.
pub const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

/// The feature name table qemu writes for v3 images with clusters above 4 KiB:
/// `(type, bit, name)`, type 0 incompatible, 1 compatible, 2 autoclear.
pub const FEATURE_NAMES: [(u8, u8, &str); 8] = [
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
];
/// Size of one feature name table entry.
const FEATURE_ENTRY_SIZE: usize = 48;

/// The qcow2 header as stored: version 2 fields (bytes 0–71), then version 3 fields.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct RawHeader {
    /// "QFI\xfb".
    magic: U32<BigEndian>,
    /// 2 or 3.
    version: U32<BigEndian>,
    /// Offset of the backing file name (not NUL-terminated), 0 if none.
    backing_file_offset: U64<BigEndian>,
    /// Length of the backing file name, at most 1023.
    backing_file_size: U32<BigEndian>,
    /// log2 of the cluster size; qemu supports 9 (512 B) to 21 (2 MiB).
    cluster_bits: U32<BigEndian>,
    /// Virtual disk size in bytes.
    size: U64<BigEndian>,
    /// 0 none, 1 AES, 2 LUKS.
    crypt_method: U32<BigEndian>,
    /// Number of entries in the active L1 table.
    l1_size: U32<BigEndian>,
    /// Offset of the active L1 table, cluster aligned.
    l1_table_offset: U64<BigEndian>,
    /// Offset of the refcount table, cluster aligned.
    refcount_table_offset: U64<BigEndian>,
    /// Number of clusters the refcount table occupies.
    refcount_table_clusters: U32<BigEndian>,
    /// Number of snapshots.
    nb_snapshots: U32<BigEndian>,
    /// Offset of the snapshot table.
    snapshots_offset: U64<BigEndian>,
    /// v3: incompatible feature bits.
    incompatible_features: U64<BigEndian>,
    /// v3: compatible feature bits.
    compatible_features: U64<BigEndian>,
    /// v3: auto-clear feature bits.
    autoclear_features: U64<BigEndian>,
    /// v3: refcount_bits = 1 << refcount_order; at most 6.
    refcount_order: U32<BigEndian>,
    /// v3: length of the header structure (104, or 112 with the compression type byte).
    header_length: U32<BigEndian>,
    /// v3 with header_length > 104: 0 zlib, 1 zstd.
    compression_type: u8,
    /// Zero padding up to a multiple of 8.
    padding: [u8; 7],
}

const _: () = {
    assert!(size_of::<RawHeader>() == V3_HEADER_LENGTH);
    assert!(offset_of!(RawHeader, magic) == 0);
    assert!(offset_of!(RawHeader, version) == 4);
    assert!(offset_of!(RawHeader, backing_file_offset) == 8);
    assert!(offset_of!(RawHeader, backing_file_size) == 16);
    assert!(offset_of!(RawHeader, cluster_bits) == 20);
    assert!(offset_of!(RawHeader, size) == 24);
    assert!(offset_of!(RawHeader, crypt_method) == 32);
    assert!(offset_of!(RawHeader, l1_size) == 36);
    assert!(offset_of!(RawHeader, l1_table_offset) == 40);
    assert!(offset_of!(RawHeader, refcount_table_offset) == 48);
    assert!(offset_of!(RawHeader, refcount_table_clusters) == 56);
    assert!(offset_of!(RawHeader, nb_snapshots) == 60);
    assert!(offset_of!(RawHeader, snapshots_offset) == 64);
    assert!(offset_of!(RawHeader, incompatible_features) == V2_HEADER_LENGTH);
    assert!(offset_of!(RawHeader, compatible_features) == 80);
    assert!(offset_of!(RawHeader, autoclear_features) == 88);
    assert!(offset_of!(RawHeader, refcount_order) == 96);
    assert!(offset_of!(RawHeader, header_length) == 100);
    assert!(offset_of!(RawHeader, compression_type) == V3_MIN_HEADER_LENGTH);
};

/// A decoded header with host-endian fields and spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The version field, as the compat level it stands for (2: 0.10, 3: 1.1).
    pub version: Compat,
    /// Offset of the backing file name, 0 if none.
    pub backing_file_offset: u64,
    /// Length of the backing file name.
    pub backing_file_size: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual size in bytes.
    pub size: u64,
    /// Encryption method (0 = none).
    pub crypt_method: u32,
    /// L1 entries.
    pub l1_size: u32,
    /// L1 table offset.
    pub l1_table_offset: u64,
    /// Refcount table offset.
    pub refcount_table_offset: u64,
    /// Refcount table length in clusters.
    pub refcount_table_clusters: u32,
    /// Number of snapshots.
    pub nb_snapshots: u32,
    /// Snapshot table offset.
    pub snapshots_offset: u64,
    /// Incompatible feature bits (0 for v2).
    pub incompatible_features: u64,
    /// Compatible feature bits (0 for v2).
    pub compatible_features: u64,
    /// Auto-clear feature bits (0 for v2).
    pub autoclear_features: u64,
    /// log2 of refcount bits (4 for v2).
    pub refcount_order: u32,
    /// Header length (72 for v2).
    pub header_length: u32,
    /// Compression type byte (0 unless header_length > 104).
    pub compression_type: u8,
}

/// A header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// Fewer bytes than the header needs.
    #[error("file too short for a qcow2 header ({0} bytes)")]
    Truncated(usize),
    /// Wrong magic.
    #[error("not a qcow2 image (bad magic)")]
    BadMagic,
    /// A version other than 2 or 3.
    #[error("unsupported qcow2 version {0}")]
    BadVersion(u32),
    /// cluster_bits outside 9..=21.
    #[error("invalid cluster_bits {0}")]
    BadClusterBits(u32),
    /// refcount_order above 6.
    #[error("invalid refcount_order {0}")]
    BadRefcountOrder(u32),
    /// header_length below 104 for v3.
    #[error("invalid header_length {0}")]
    BadHeaderLength(u32),
    /// A header extension runs past the end of the header area.
    #[error("header extension at offset {0} runs past the header cluster")]
    BadExtension(usize),
    /// The backing file name is out of bounds or too long.
    #[error("invalid backing file name (offset {offset}, length {len})")]
    BadBackingName {
        /// backing_file_offset.
        offset: u64,
        /// backing_file_size.
        len: u32,
    },
}

impl Header {
    /// The compression type recorded in the header (version 3 only; zlib before).
    pub fn compression(&self) -> Compression {
        if self.version == Compat::V1_1 && self.compression_type == 1 {
            Compression::Zstd
        } else {
            Compression::Zlib
        }
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Encodes the header: 72 bytes for v2, `header_length` (112) bytes for v3.
    pub fn encode(&self) -> Vec<u8> {
        let v3 = self.version == Compat::V1_1;
        let raw = RawHeader {
            magic: MAGIC.into(),
            version: if v3 { 3u32 } else { 2u32 }.into(),
            backing_file_offset: self.backing_file_offset.into(),
            backing_file_size: self.backing_file_size.into(),
            cluster_bits: self.cluster_bits.into(),
            size: self.size.into(),
            crypt_method: self.crypt_method.into(),
            l1_size: self.l1_size.into(),
            l1_table_offset: self.l1_table_offset.into(),
            refcount_table_offset: self.refcount_table_offset.into(),
            refcount_table_clusters: self.refcount_table_clusters.into(),
            nb_snapshots: self.nb_snapshots.into(),
            snapshots_offset: self.snapshots_offset.into(),
            incompatible_features: self.incompatible_features.into(),
            compatible_features: self.compatible_features.into(),
            autoclear_features: self.autoclear_features.into(),
            refcount_order: self.refcount_order.into(),
            header_length: self.header_length.into(),
            compression_type: self.compression_type,
            padding: [0; 7],
        };
        let len = if v3 {
            V3_HEADER_LENGTH
        } else {
            V2_HEADER_LENGTH
        };
        raw.as_bytes()[..len].to_vec()
    }

    /// Decodes and checks a header from the start of a file.
    pub fn decode(bytes: &[u8]) -> Result<Header, SpecError> {
        if bytes.len() < V2_HEADER_LENGTH {
            return Err(SpecError::Truncated(bytes.len()));
        }
        let mut full = [0u8; V3_HEADER_LENGTH];
        let n = bytes.len().min(V3_HEADER_LENGTH);
        full[..n].copy_from_slice(&bytes[..n]);
        let raw = RawHeader::read_from_bytes(&full[..]).map_err(|_| SpecError::Truncated(n))?;
        if raw.magic.get() != MAGIC {
            return Err(SpecError::BadMagic);
        }
        let version = Compat::from_version(raw.version.get())
            .ok_or(SpecError::BadVersion(raw.version.get()))?;
        let cluster_bits = raw.cluster_bits.get();
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(SpecError::BadClusterBits(cluster_bits));
        }
        let mut header = Header {
            version,
            backing_file_offset: raw.backing_file_offset.get(),
            backing_file_size: raw.backing_file_size.get(),
            cluster_bits,
            size: raw.size.get(),
            crypt_method: raw.crypt_method.get(),
            l1_size: raw.l1_size.get(),
            l1_table_offset: raw.l1_table_offset.get(),
            refcount_table_offset: raw.refcount_table_offset.get(),
            refcount_table_clusters: raw.refcount_table_clusters.get(),
            nb_snapshots: raw.nb_snapshots.get(),
            snapshots_offset: raw.snapshots_offset.get(),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LENGTH_U32,
            compression_type: 0,
        };
        if version == Compat::V1_1 {
            if bytes.len() < V3_MIN_HEADER_LENGTH {
                return Err(SpecError::Truncated(bytes.len()));
            }
            let header_length = raw.header_length.get();
            if (header_length as usize) < V3_MIN_HEADER_LENGTH
                || u64::from(header_length) > header.cluster_size()
            {
                return Err(SpecError::BadHeaderLength(header_length));
            }
            let refcount_order = raw.refcount_order.get();
            if refcount_order > MAX_REFCOUNT_ORDER {
                return Err(SpecError::BadRefcountOrder(refcount_order));
            }
            header.incompatible_features = raw.incompatible_features.get();
            header.compatible_features = raw.compatible_features.get();
            header.autoclear_features = raw.autoclear_features.get();
            header.refcount_order = refcount_order;
            header.header_length = header_length;
            if header_length as usize > V3_MIN_HEADER_LENGTH && bytes.len() > V3_MIN_HEADER_LENGTH {
                header.compression_type = raw.compression_type;
            }
        }
        Ok(header)
    }
}

/// What libvirt's format probe reads from the start of a file: the magic and a version of 2
/// or 3 in the first 8 bytes make a file qcow2, whatever the rest of its header says.
/// `None` when `prefix` is not qcow2; else the virtual size field when the prefix holds it
/// (libvirt reports the file size for a shorter file).
pub fn sniff(prefix: &[u8]) -> Option<Option<u64>> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(prefix.get(at..at + 4)?.try_into().ok()?))
    };
    if word(0)? != MAGIC || Compat::from_version(word(4)?).is_none() {
        return None;
    }
    let at = offset_of!(RawHeader, size);
    Some(
        prefix
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes),
    )
}

/// One header extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// Backing file format name.
    BackingFormat(String),
    /// The feature name table ([`FEATURE_NAMES`]).
    FeatureNameTable,
    /// Full disk encryption header pointer: where the LUKS header lies in the file.
    FullDiskEncryption {
        /// Byte offset of the LUKS header (cluster aligned).
        offset: u64,
        /// Its length in bytes (the LUKS payload offset).
        length: u64,
    },
    /// Any other extension, kept as type and length.
    Other {
        /// Extension type.
        kind: u32,
        /// Data length.
        len: u32,
    },
}

fn push_extension(out: &mut Vec<u8>, kind: u32, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    // Extension data is bounded by the header cluster (at most 2 MiB).
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(data);
    let padded = data.len().next_multiple_of(8);
    out.resize(out.len() + (padded - data.len()), 0);
}

/// Encodes extensions followed by the end marker (type 0, length 0).
pub fn encode_extensions(extensions: &[Extension]) -> Vec<u8> {
    let mut out = Vec::new();
    for ext in extensions {
        match ext {
            Extension::BackingFormat(name) => {
                push_extension(&mut out, EXT_BACKING_FORMAT, name.as_bytes());
            }
            Extension::FullDiskEncryption { offset, length } => {
                let mut data = [0u8; 16];
                data[..8].copy_from_slice(&offset.to_be_bytes());
                data[8..].copy_from_slice(&length.to_be_bytes());
                push_extension(&mut out, EXT_FULL_DISK_ENCRYPTION, &data);
            }
            Extension::FeatureNameTable => {
                let mut table = Vec::with_capacity(FEATURE_NAMES.len() * FEATURE_ENTRY_SIZE);
                for (kind, bit, name) in FEATURE_NAMES {
                    let mut entry = [0u8; FEATURE_ENTRY_SIZE];
                    entry[0] = kind;
                    entry[1] = bit;
                    entry[2..2 + name.len()].copy_from_slice(name.as_bytes());
                    table.extend_from_slice(&entry);
                }
                push_extension(&mut out, EXT_FEATURE_TABLE, &table);
            }
            Extension::Other { .. } => {}
        }
    }
    out.extend_from_slice(&[0u8; 8]);
    out
}

/// Reads the extensions that start at `header.header_length` in `cluster0`.
///
/// Returns the extensions and whether the end marker was found inside `cluster0` (when it
/// was not, the caller may read more of the first cluster and try again).
pub fn decode_extensions(
    header: &Header,
    cluster0: &[u8],
) -> Result<(Vec<Extension>, bool), SpecError> {
    let mut out = Vec::new();
    let mut pos = header.header_length as usize;
    loop {
        let Some(head) = cluster0.get(pos..pos + 8) else {
            return Ok((out, false));
        };
        let kind = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if kind == EXT_END {
            return Ok((out, true));
        }
        let start = pos + 8;
        let Some(end) = start
            .checked_add(len as usize)
            .filter(|&e| e <= cluster0.len())
        else {
            if (start as u64).saturating_add(u64::from(len)) <= header.cluster_size() {
                return Ok((out, false));
            }
            return Err(SpecError::BadExtension(pos));
        };
        let data = &cluster0[start..end];
        out.push(match kind {
            EXT_BACKING_FORMAT => {
                Extension::BackingFormat(String::from_utf8_lossy(data).into_owned())
            }
            EXT_FEATURE_TABLE => Extension::FeatureNameTable,
            EXT_FULL_DISK_ENCRYPTION if data.len() == 16 => Extension::FullDiskEncryption {
                offset: u64::from_be_bytes(data[..8].try_into().unwrap_or([0; 8])),
                length: u64::from_be_bytes(data[8..].try_into().unwrap_or([0; 8])),
            },
            kind => Extension::Other { kind, len },
        });
        pos = end.next_multiple_of(8);
    }
}

/// Reads the backing file name the header points at, from the first cluster.
pub fn decode_backing_name(header: &Header, cluster0: &[u8]) -> Result<Option<String>, SpecError> {
    if header.backing_file_offset == 0 {
        return Ok(None);
    }
    let bad = SpecError::BadBackingName {
        offset: header.backing_file_offset,
        len: header.backing_file_size,
    };
    if header.backing_file_size as usize > MAX_BACKING_FILE_NAME {
        return Err(bad);
    }
    let start = usize::try_from(header.backing_file_offset).map_err(|_| bad.clone())?;
    let end = start
        .checked_add(header.backing_file_size as usize)
        .filter(|&e| e <= cluster0.len())
        .ok_or(bad)?;
    Ok(Some(
        String::from_utf8_lossy(&cluster0[start..end]).into_owned(),
    ))
}

/// An L1 entry pointing at an L2 table whose refcount is one.
pub fn l1_entry(l2_offset: u64) -> u64 {
    (l2_offset & L1E_OFFSET_MASK) | OFLAG_COPIED
}

/// A standard L2 entry mapping a data cluster whose refcount is one (no zero flag).
pub fn l2_entry(host_offset: u64) -> u64 {
    (host_offset & L2E_OFFSET_MASK) | OFLAG_COPIED
}

/// Decodes a table of big-endian 64-bit entries (L1, L2 or refcount table).
pub fn decode_entries(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// Encodes a table of 64-bit entries big-endian (see [`decode_entries`]).
pub fn encode_entries(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_be_bytes()).collect()
}

/// The host offset and the length in bytes of the compressed data a compressed L2 entry
/// (bit 62 set) describes, in an image with `cluster_bits` (9–21).
pub fn compressed_extent(entry: u64, cluster_bits: u32) -> (u64, u64) {
    let shift = 62 - (cluster_bits - 8);
    let host = entry & ((1u64 << shift) - 1);
    let sectors = ((entry >> shift) & ((1u64 << (cluster_bits - 8)) - 1)) + 1;
    (host, sectors * 512 - (host & 511))
}

/// Sets entry `index` of a refcount block with `1 << refcount_order`-bit entries.
///
/// Entries of 8 bits and more are big-endian; narrower ones are packed least significant
/// bits first within each byte (qcow2.rst, "Refcount blocks").
pub fn set_refcount(block: &mut [u8], index: usize, refcount_order: u32, value: u64) {
    let bits = 1usize << refcount_order;
    if bits >= 8 {
        let width = bits / 8;
        let bytes = value.to_be_bytes();
        block[index * width..(index + 1) * width].copy_from_slice(&bytes[8 - width..]);
    } else {
        let bit = index * bits;
        // bits < 8 here, so the mask and the masked value fit in a byte.
        let mask = u8::MAX >> (8 - bits);
        let shift = bit % 8;
        let low = value.to_le_bytes()[0] & mask;
        let byte = &mut block[bit / 8];
        *byte = (*byte & !(mask << shift)) | (low << shift);
    }
}

/// Reads entry `index` of a refcount block (see [`set_refcount`]).
pub fn get_refcount(block: &[u8], index: usize, refcount_order: u32) -> u64 {
    let bits = 1usize << refcount_order;
    if bits >= 8 {
        let width = bits / 8;
        let mut bytes = [0u8; 8];
        bytes[8 - width..].copy_from_slice(&block[index * width..(index + 1) * width]);
        u64::from_be_bytes(bytes)
    } else {
        let bit = index * bits;
        let mask = u8::MAX >> (8 - bits);
        u64::from((block[bit / 8] >> (bit % 8)) & mask)
    }
}

#[cfg(test)]
mod tests;
