//! The one check before anything writes into an existing qcow2 image.
//!
//! Owns: the conditions under which qemu would refuse to open an image read-write, or under
//! which qpool's editor cannot keep it consistent, each refused with the field it concerns
//! and the words qemu-img uses: an unreadable header (magic, version, cluster bits, header
//! length, refcount order), unknown incompatible feature bits, the corrupt bit, the dirty bit
//! without lazy refcounts, encryption other than LUKS (or LUKS without its header
//! extension), an external data file, internal snapshots, and L1 and
//! refcount tables that lie outside the file or beyond qemu's limits. Resize, wipe and
//! upload go through [`check`]; so must any later editor.
//! Must not: repair anything, or refuse reads (qemu opens such images read-only, and so may a
//! copy's reader).

use std::fs::File;

use super::spec::{self, Header};
use crate::image::{Error, read_prefix};

/// qemu's QCOW_MAX_SNAPSHOTS.
const MAX_SNAPSHOTS: u32 = 65536;

/// Why an image may not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRefusal {
    /// The header itself does not decode.
    #[error("its qcow2 header is invalid")]
    Header(#[source] spec::SpecError),
    /// Incompatible feature bits qemu does not know.
    #[error(
        "incompatible_features has unknown bits {0:#x} (qemu-img: \"Unsupported qcow2 feature(s): Unknown incompatible feature: {0:x}\")"
    )]
    UnknownIncompatible(u64),
    /// incompatible_features bit 1.
    #[error(
        "incompatible_features has the corrupt bit set (qemu-img: \"Image is corrupt; cannot be opened read/write\"); run 'qemu-img check -r all' first"
    )]
    Corrupt,
    /// incompatible_features bit 0 on an image without lazy refcounts.
    #[error(
        "incompatible_features has the dirty bit set but the image does not use lazy refcounts; run 'qemu-img check -r all' first"
    )]
    Dirty,
    /// crypt_method is neither 0 nor LUKS (2).
    #[error("crypt_method is {0}: qpool writes only LUKS-encrypted images (crypt_method 2)")]
    Encrypted(u32),
    /// crypt_method 2 without a full disk encryption extension pointing inside the file.
    #[error(
        "crypt_method is 2 but the full disk encryption header extension is missing or points outside the file (qemu-img: \"Could not read encryption header\")"
    )]
    LuksHeaderMissing,
    /// incompatible_features bit 2.
    #[error(
        "incompatible_features has the external data file bit set: qpool does not write such images"
    )]
    ExternalDataFile,
    /// nb_snapshots is not 0.
    #[error("nb_snapshots is {0}: qpool does not write images with internal snapshots")]
    Snapshots(u32),
    /// nb_snapshots above qemu's limit.
    #[error("nb_snapshots is {0} (qemu-img: \"Too many snapshots\")")]
    TooManySnapshots(u32),
    /// l1_size larger than qemu's 32 MiB L1 limit.
    #[error("l1_size is {0} (qemu-img: \"Active L1 table too large\")")]
    L1TooLarge(u32),
    /// l1_size smaller than the virtual size needs.
    #[error(
        "l1_size is {l1_size}, the virtual size {size} needs {needed} (qemu-img: \"L1 table is too small\")"
    )]
    L1TooSmall {
        /// l1_size.
        l1_size: u32,
        /// The header's size.
        size: u64,
        /// Entries the size needs.
        needed: u64,
    },
    /// l1_table_offset not cluster aligned, or the table beyond the end of the file.
    #[error(
        "l1_table_offset {offset:#x} ({len} bytes) is not a cluster inside the {file_len}-byte file (qemu-img: \"Invalid L1 table offset\")"
    )]
    L1OutOfPlace {
        /// l1_table_offset.
        offset: u64,
        /// Bytes of the table.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The refcount table larger than qemu's 8 MiB limit, or empty.
    #[error("refcount_table_clusters is {0} (qemu-img: \"Reference count table too large\")")]
    RefcountTableSize(u32),
    /// refcount_table_offset not cluster aligned, or the table beyond the end of the file.
    #[error(
        "refcount_table_offset {offset:#x} ({len} bytes) is not a cluster inside the {file_len}-byte file (qemu-img: \"Invalid reference count table offset\")"
    )]
    RefcountTableOutOfPlace {
        /// refcount_table_offset.
        offset: u64,
        /// Bytes of the table.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
}

/// Whether `offset .. offset + len` is cluster aligned and inside `file_len` bytes.
fn in_file(offset: u64, len: u64, cs: u64, file_len: u64) -> bool {
    offset.is_multiple_of(cs) && offset.checked_add(len).is_some_and(|end| end <= file_len)
}

/// Checks a decoded header of a file of `file_len` bytes.
pub fn check_header(h: &Header, file_len: u64) -> Result<(), WriteRefusal> {
    let unknown = h.incompatible_features & !spec::INCOMPAT_KNOWN;
    if unknown != 0 {
        return Err(WriteRefusal::UnknownIncompatible(unknown));
    }
    if h.incompatible_features & spec::INCOMPAT_CORRUPT != 0 {
        return Err(WriteRefusal::Corrupt);
    }
    if h.incompatible_features & spec::INCOMPAT_DIRTY != 0
        && h.compatible_features & spec::COMPAT_LAZY_REFCOUNTS == 0
    {
        return Err(WriteRefusal::Dirty);
    }
    if h.crypt_method != 0 && h.crypt_method != spec::CRYPT_LUKS {
        return Err(WriteRefusal::Encrypted(h.crypt_method));
    }
    if h.incompatible_features & spec::INCOMPAT_DATA_FILE != 0 {
        return Err(WriteRefusal::ExternalDataFile);
    }
    if h.nb_snapshots > MAX_SNAPSHOTS {
        return Err(WriteRefusal::TooManySnapshots(h.nb_snapshots));
    }
    if h.nb_snapshots != 0 {
        return Err(WriteRefusal::Snapshots(h.nb_snapshots));
    }
    let cs = h.cluster_size();
    let l1_len = u64::from(h.l1_size) * spec::ENTRY_SIZE;
    if l1_len > spec::MAX_L1_BYTES {
        return Err(WriteRefusal::L1TooLarge(h.l1_size));
    }
    let extended = h.incompatible_features & spec::INCOMPAT_EXTL2 != 0;
    let entry = if extended {
        spec::EXTENDED_L2_ENTRY_SIZE
    } else {
        spec::ENTRY_SIZE
    };
    let needed = h.size.div_ceil(cs).div_ceil(cs / entry);
    if u64::from(h.l1_size) < needed {
        return Err(WriteRefusal::L1TooSmall {
            l1_size: h.l1_size,
            size: h.size,
            needed,
        });
    }
    if l1_len > 0 && !in_file(h.l1_table_offset, l1_len, cs, file_len) {
        return Err(WriteRefusal::L1OutOfPlace {
            offset: h.l1_table_offset,
            len: l1_len,
            file_len,
        });
    }
    let rt_len = u64::from(h.refcount_table_clusters) * cs;
    if rt_len == 0 || rt_len > spec::MAX_REFTABLE_BYTES {
        return Err(WriteRefusal::RefcountTableSize(h.refcount_table_clusters));
    }
    if !in_file(h.refcount_table_offset, rt_len, cs, file_len) {
        return Err(WriteRefusal::RefcountTableOutOfPlace {
            offset: h.refcount_table_offset,
            len: rt_len,
            file_len,
        });
    }
    Ok(())
}

/// Reads the header of `file` and checks that qpool may write the image.
pub fn check(file: &File) -> Result<Header, Error> {
    let prefix = read_prefix(file, spec::V3_HEADER_LENGTH).map_err(Error::ReadingHeader)?;
    let header = Header::decode(&prefix).map_err(|e| Error::Refused(WriteRefusal::Header(e)))?;
    let file_len = file.metadata().map_err(Error::ReadingHeader)?.len();
    check_header(&header, file_len)?;
    if header.crypt_method == spec::CRYPT_LUKS {
        check_luks_area(file, &header, file_len)?;
    }
    Ok(header)
}

/// An encrypted image's LUKS header must be where its extension says, in whole clusters
/// inside the file (the editor then sees those clusters as in use, by their refcounts).
fn check_luks_area(file: &File, header: &Header, file_len: u64) -> Result<(), Error> {
    let want = usize::try_from(header.cluster_size()).unwrap_or(usize::MAX);
    let cluster0 = read_prefix(file, want).map_err(Error::ReadingHeader)?;
    let (extensions, _) = spec::decode_extensions(header, &cluster0)
        .map_err(|e| Error::Refused(WriteRefusal::Header(e)))?;
    let area = extensions.iter().find_map(|e| match e {
        spec::Extension::FullDiskEncryption { offset, length } => Some((*offset, *length)),
        _ => None,
    });
    match area {
        Some((offset, length))
            if length > 0 && in_file(offset, length, header.cluster_size(), file_len) =>
        {
            Ok(())
        }
        _ => Err(Error::Refused(WriteRefusal::LuksHeaderMissing)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::qcow2::{Layout, Options};
    use crate::model::Preallocation;

    fn header() -> (Header, u64) {
        let layout = Layout::plan(
            &Options {
                size: 1 << 30,
                ..Options::default()
            },
            Preallocation::Off,
        )
        .unwrap();
        (layout.header, layout.file_length)
    }

    #[test]
    fn a_fresh_image_may_be_written() {
        let (h, len) = header();
        assert_eq!(check_header(&h, len), Ok(()));
    }

    #[test]
    fn each_field_qemu_checks_is_refused_by_name() {
        let (good, len) = header();
        type Change = Box<dyn Fn(&mut Header)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|h| h.incompatible_features |= 0x400),
                "Unknown incompatible feature: 400",
            ),
            (
                Box::new(|h| h.incompatible_features |= spec::INCOMPAT_CORRUPT),
                "Image is corrupt",
            ),
            (
                Box::new(|h| h.incompatible_features |= spec::INCOMPAT_DIRTY),
                "dirty bit",
            ),
            (Box::new(|h| h.crypt_method = 1), "crypt_method is 1"),
            (
                Box::new(|h| h.incompatible_features |= spec::INCOMPAT_DATA_FILE),
                "external data file",
            ),
            (Box::new(|h| h.nb_snapshots = 1), "nb_snapshots is 1"),
            (Box::new(|h| h.nb_snapshots = 70000), "Too many snapshots"),
            (
                Box::new(|h| h.l1_size = 5 << 20),
                "Active L1 table too large",
            ),
            (Box::new(|h| h.size = 1 << 40), "L1 table is too small"),
            (
                Box::new(|h| h.l1_table_offset = 12345),
                "Invalid L1 table offset",
            ),
            (
                Box::new(|h| h.l1_table_offset = 1 << 40),
                "Invalid L1 table offset",
            ),
            (
                Box::new(|h| h.refcount_table_clusters = 0),
                "Reference count table too large",
            ),
            (
                Box::new(|h| h.refcount_table_clusters = 1 << 20),
                "Reference count table too large",
            ),
            (
                Box::new(|h| h.refcount_table_offset = 1 << 40),
                "Invalid reference count table offset",
            ),
        ];
        for (change, words) in cases {
            let mut h = good.clone();
            change(&mut h);
            let e = check_header(&h, len).unwrap_err();
            assert!(e.to_string().contains(words), "{e}");
        }
        let mut lazy = good;
        lazy.incompatible_features |= spec::INCOMPAT_DIRTY;
        lazy.compatible_features |= spec::COMPAT_LAZY_REFCOUNTS;
        assert_eq!(
            check_header(&lazy, len),
            Ok(()),
            "dirty with lazy refcounts is normal"
        );
    }
}
