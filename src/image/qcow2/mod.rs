//! qcow2 images: the on-disk format ([`spec`]), creation options and their checks
//! ([`options`]), placement of a new image ([`layout`]), the
//! writer ([`mod@write`]), the reader ([`read`]), the in-place editor ([`edit`]) and the
//! resizer ([`resize`]).
//!
//! Owns: [`Qcow2Info`], what the header of an existing image says (version, cluster size,
//! features, virtual size, backing file) and the creation [`Options`] that would make an
//! image like it.
//! Must not: choose options or preallocation for a new volume; those come from the caller
//! through `image`'s front door.

pub mod edit;
pub mod gate;
pub mod layout;
pub mod options;
pub mod read;
pub mod resize;
pub mod spec;
pub mod write;

use std::fs::File;

pub use layout::Layout;
pub use options::Options;
pub use spec::Header;

use super::Error;
use crate::model::Compression;

/// What the header of an existing qcow2 image says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Info {
    /// The decoded header.
    pub header: Header,
    /// Backing file name as stored.
    pub backing_file: Option<String>,
    /// Backing format from the header extension.
    pub backing_format: Option<String>,
    /// Where the LUKS header lies (byte offset and length), from the full disk encryption
    /// extension of an encrypted image (crypt_method 2).
    pub luks_area: Option<(u64, u64)>,
}

impl Qcow2Info {
    /// Lazy refcounts (compatible feature bit 0).
    pub fn lazy_refcounts(&self) -> bool {
        self.header.compatible_features & spec::COMPAT_LAZY_REFCOUNTS != 0
    }

    /// Extended L2 entries (incompatible feature bit 4).
    pub fn extended_l2(&self) -> bool {
        self.header.incompatible_features & spec::INCOMPAT_EXTL2 != 0
    }

    /// The compression type recorded in the header (version 3 only; zlib before).
    pub fn compression(&self) -> Compression {
        self.header.compression()
    }

    /// The creation options that give an image like this one: same size, version, cluster
    /// size, refcount width, features, compression and backing file.
    pub fn options(&self) -> Options {
        let h = &self.header;
        Options {
            size: h.size,
            version: h.version,
            cluster_size: h.cluster_size(),
            refcount_bits: 1 << h.refcount_order,
            lazy_refcounts: self.lazy_refcounts(),
            extended_l2: self.extended_l2(),
            compression_zstd: self.compression() == Compression::Zstd,
            backing: self
                .backing_file
                .clone()
                .map(|name| (name, self.backing_format.clone())),
            luks_length: self.luks_area.map(|(_, length)| length),
        }
    }

    /// Reads header, extensions and backing name; `prefix` holds the file's first bytes.
    /// The rest of the first cluster is read only when the prefix does not cover them.
    pub fn read(file: &File, prefix: &[u8]) -> Result<Qcow2Info, Error> {
        let header = Header::decode(prefix)?;
        let name_end = header
            .backing_file_offset
            .saturating_add(u64::from(header.backing_file_size));
        let parsed = spec::decode_extensions(&header, prefix)?;
        let whole;
        let (cluster0, (extensions, _)) = if parsed.1 && name_end <= prefix.len() as u64 {
            (prefix, parsed)
        } else {
            let want = usize::try_from(header.cluster_size()).unwrap_or(usize::MAX);
            whole = super::read_prefix(file, want).map_err(Error::ReadingHeader)?;
            (&whole[..], spec::decode_extensions(&header, &whole)?)
        };
        let backing_format = extensions.iter().find_map(|e| match e {
            spec::Extension::BackingFormat(f) => Some(f.clone()),
            _ => None,
        });
        let luks_area = extensions.iter().find_map(|e| match e {
            spec::Extension::FullDiskEncryption { offset, length } => Some((*offset, *length)),
            _ => None,
        });
        let backing_file = spec::decode_backing_name(&header, cluster0)?;
        Ok(Qcow2Info {
            header,
            backing_file,
            backing_format,
            luks_area,
        })
    }
}
