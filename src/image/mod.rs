//! Image formats: writing new raw and qcow2 volumes natively, reading back what an existing
//! volume file is, and changing one in place.
//!
//! Owns: the front door the pool goes through, and nothing deeper is called from above:
//! [`probe`] (what a file is, the numbers libvirt reports), [`ImagePlan`] and [`create`]
//! (a new image and its expected allocation), [`plan_copy`] and [`CopyPlan`] (clone,
//! convert and re-encrypt), [`unlock`] (an encrypted image's master key), [`resize()`],
//! [`wipe()`], [`VolumeReader`] / [`VolumeWriter`] (a file's bytes in and out),
//! [`backing_path`] and [`open_guest_image`] (guest data through a backing chain).
//! Must not: choose a preallocation (that is `policy`), name or place files in a pool (that
//! is `pool`), or know byte offsets (only `qcow2::spec` does).

pub mod copy;
pub mod crypt;
pub mod file;
pub mod guest;
pub mod luks;
pub mod plan;
pub mod prealloc;
pub mod qcow2;
pub mod raw;
pub mod resize;
pub mod stream;
pub mod wipe;

pub use copy::{CopyPlan, Reencrypt, Source, plan_copy};
pub use file::{WriteReport, Writing};
pub use guest::{BlockStatus, GuestImage, backing_path, open_guest_file, open_guest_image};
pub use plan::{Encryption, ImagePlan, create, create_encrypted};
pub use qcow2::Options as Qcow2Options;
pub use qcow2::Qcow2Info;
pub use resize::{fills_with_zeros, resize, undo_resize};
pub use stream::{Chunk, VolumeReader, VolumeWriter};
pub use wipe::{bytes_to_wipe, wipe};

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use thiserror::Error;

use crate::model::{VolFormat, WipeAlgorithm};

/// What probing a volume file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Detected format.
    pub format: VolFormat,
    /// Guest-visible size: qcow2 virtual size, or the raw file's length.
    pub capacity: u64,
    /// qcow2 details.
    pub qcow2: Option<qcow2::Qcow2Info>,
    /// The LUKS header of an encrypted volume (a raw LUKS file, or the header clusters of
    /// a qcow2 image with crypt_method 2).
    pub luks: Option<luks::LuksInfo>,
}

/// Failures of the image layer, one variant per failing operation.
#[derive(Debug, Error)]
pub enum Error {
    /// The qcow2 options are invalid or exceed qcow2's limits.
    #[error(transparent)]
    Options(#[from] qcow2::options::Error),
    /// Writing metadata (header, refcount structures, L1/L2 tables).
    #[error("failed to write image metadata at offset {offset}")]
    WritingMetadata {
        /// Offset of the failed write.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Allocating the data area with fallocate.
    #[error("failed to allocate {len} bytes at offset {offset}")]
    Allocating {
        /// Offset of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing zeros over the data area.
    #[error("failed to write {len} zero bytes at offset {offset}")]
    WritingZeroes {
        /// Offset of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Setting the file length.
    #[error("failed to set the file length to {len}")]
    SettingLength {
        /// Requested length.
        len: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Flushing the file to disk.
    #[error("failed to sync the image")]
    Syncing(#[source] io::Error),
    /// Reading the start of an image.
    #[error("failed to read the image header")]
    ReadingHeader(#[source] io::Error),
    /// The image's qcow2 header is invalid.
    #[error("invalid qcow2 header")]
    BadHeader(#[from] qcow2::spec::SpecError),
    /// The raw writer was asked for metadata preallocation.
    #[error("a raw image has no metadata to preallocate")]
    RawMetadata,
    /// Reading an image's data or metadata.
    #[error("failed to read the image")]
    ReadingImage(#[source] io::Error),
    /// The image's metadata is inconsistent.
    #[error("corrupt image: {0}")]
    CorruptImage(#[from] Corruption),
    /// The image uses something qpool cannot read or change.
    #[error("unsupported image: {0}")]
    Unsupported(#[from] Unsupported),
    /// The image may not be written (qemu would refuse it read-write, or qpool cannot keep
    /// it consistent).
    #[error("the qcow2 image may not be changed")]
    Refused(#[from] qcow2::gate::WriteRefusal),
    /// A wipe algorithm qpool does not implement.
    #[error("wipe algorithm '{0}' is not supported (qpool supports: zero, trim, random)")]
    UnsupportedWipe(WipeAlgorithm),
    /// The filesystem cannot share blocks between files (FICLONE refused).
    #[error("reflinks are not supported on this filesystem; copy without --reflink")]
    NoReflink(#[source] io::Error),
    /// `--reflink` asked of a copy that converts.
    #[error("a reflink needs a copy in the same format with the same size and options")]
    ReflinkConverts,
    /// A shrink would drop clusters that hold guest data.
    #[error("guest data is allocated at offset {offset}, beyond the new size")]
    ShrinkWouldDropData {
        /// Guest offset of the first allocated cluster past the new end.
        offset: u64,
    },
    /// An offset or length outside the file.
    #[error("offset {offset} is past the end ({size} bytes)")]
    OutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The end.
        size: u64,
    },
    /// An encrypted image was planned without its LUKS header, or a header was given for
    /// a plain one.
    #[error("the image's encryption and its LUKS header do not match")]
    LuksHeaderMismatch,
    /// Building the LUKS header of a new encrypted image.
    #[error("failed to set up LUKS encryption")]
    Luks(#[from] luks::Error),
    /// The LUKS header of an existing volume cannot be read.
    #[error("cannot read the LUKS header")]
    BadLuksHeader(#[source] luks::Error),
    /// A LUKS payload so large the file's length overflows.
    #[error("an encrypted volume of {0} bytes is too large")]
    EncryptedTooLarge(u64),
    /// A backing chain that is too deep or loops.
    #[error("backing chain deeper than {0} images")]
    BackingChainTooDeep(usize),
    /// Opening an image of the chain.
    #[error("cannot open {path}")]
    OpeningImage {
        /// The image's path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What is inconsistent in an image's metadata (qcow2 spec words).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// The refcount table is empty, too large or past the end of the file.
    #[error("refcount table out of place")]
    RefcountTableOutOfPlace,
    /// A refcount block is unaligned or past the end of the file.
    #[error("refcount block at {0:#x} out of place")]
    RefcountBlockOutOfPlace(u64),
    /// The L1 table is larger than qemu accepts.
    #[error("L1 table of {0} entries exceeds qemu's limit")]
    L1TooLarge(u32),
    /// The L1 table cannot map the virtual size.
    #[error("L1 table has {entries} entries, the virtual size needs {needed}")]
    L1TooSmall {
        /// `l1_size` of the header.
        entries: u32,
        /// Entries the virtual size needs.
        needed: u64,
    },
    /// The L1 table lies past the end of the file.
    #[error("L1 table lies outside the file")]
    L1OutOfPlace,
    /// An L2 table is unaligned or past the end of the file.
    #[error("L2 table at {0:#x} is out of place")]
    L2OutOfPlace(u64),
    /// A compressed cluster's data does not decompress.
    #[error("compressed cluster at {0:#x} does not decompress")]
    CompressedCluster(u64),
    /// A guest cluster the copy plan expected mapped is not.
    #[error("guest cluster {0} has no mapping")]
    UnmappedCluster(u64),
    /// A file read as qcow2 has no qcow2 header.
    #[error("{0} is not a qcow2 image")]
    NotQcow2(std::path::PathBuf),
}

/// What qpool cannot read or change in an otherwise valid image.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// Internal snapshots (`nb_snapshots` != 0).
    #[error("qcow2 images with internal snapshots")]
    InternalSnapshots,
    /// The refcount table would outgrow qemu's limit.
    #[error("the refcount table would exceed qemu's 8 MiB limit")]
    RefcountTableTooLarge,
    /// `crypt_method` != 0.
    #[error("encrypted qcow2 images")]
    Encrypted,
    /// The external data file incompatible feature.
    #[error("qcow2 images with an external data file")]
    ExternalDataFile,
    /// Incompatible feature bits qpool does not know.
    #[error("qcow2 incompatible features {0:#x}")]
    IncompatibleFeatures(u64),
    /// A size that cannot be rounded up to 512 bytes.
    #[error("size {0} is too large")]
    SizeTooLarge(u64),
    /// A grow to a size that is not larger.
    #[error("{new} is not larger than the current size {current}")]
    NotLarger {
        /// Asked-for size.
        new: u64,
        /// Current virtual size.
        current: u64,
    },
    /// A shrink to a size that is not smaller.
    #[error("{new} is not smaller than the current size {current}")]
    NotSmaller {
        /// Asked-for size.
        new: u64,
        /// Current virtual size.
        current: u64,
    },
    /// Growing a compat 0.10 overlay would uncover its larger backing image (0.10 has no
    /// zero clusters to hide it).
    #[error("growing a compat 0.10 overlay over its larger backing image")]
    Compat010OverlayGrowth,
    /// The partial last cluster is compressed and cannot be zero-filled in place.
    #[error("growing an image whose partial last cluster is compressed")]
    CompressedPartialCluster,
    /// An overlay whose size is not cluster-aligned over a larger backing image.
    #[error(
        "growing an overlay whose size is not a multiple of the cluster size over a larger backing image"
    )]
    UnalignedOverlayGrowth,
    /// Guest data copied into a new encrypted image (qpool encrypts only empty images).
    #[error("copying guest data into a new encrypted image")]
    EncryptingData,
    /// A copy of an encrypted volume with its key, in another format, with other options or
    /// another size.
    #[error(
        "an encrypted volume keeps its key only in a copy as it is (same format, options and size); a copy under a secret of its own is re-encrypted, and may convert or resize"
    )]
    ConvertingEncrypted,
    /// A plain copy of an encrypted volume.
    #[error(
        "a copy of an encrypted volume must be encrypted too (qpool does not decrypt into a plain volume)"
    )]
    DecryptingCopy,
    /// An encrypted copy of a plain volume.
    #[error(
        "encrypting a copy of a plain volume is not supported (create the encrypted volume, then write its data through qemu)"
    )]
    EncryptingCopy,
    /// A compressed cluster in an encrypted image (qemu writes none).
    #[error("compressed clusters in an encrypted qcow2 image")]
    EncryptedCompressed,
    /// A backing format other than raw or qcow2.
    #[error("backing format '{format}' of {image}")]
    BackingFormat {
        /// The header's backing format.
        format: String,
        /// The image naming it.
        image: std::path::PathBuf,
    },
}

impl Error {
    /// The underlying I/O error, if this failure came from the filesystem.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::WritingMetadata { source, .. }
            | Self::Allocating { source, .. }
            | Self::WritingZeroes { source, .. }
            | Self::SettingLength { source, .. }
            | Self::Syncing(source)
            | Self::ReadingHeader(source)
            | Self::ReadingImage(source)
            | Self::OpeningImage { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How many bytes probing reads first (enough for any header and its usual extensions).
const PROBE_BYTES: usize = 4096;

/// Reads up to `len` bytes from the start of `file`.
pub(crate) fn read_prefix(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Opens the image at `path` and probes it ([`probe`]).
pub fn probe_path(path: &std::path::Path) -> Result<ImageInfo, Error> {
    let file = guest::open_image_file(path)?;
    let len = file.metadata().map_err(Error::ReadingHeader)?.len();
    probe(&file, len)
}

/// Probes an open volume file like libvirt 9.0 does: qcow2 when the first 8 bytes hold the
/// magic and version 2 or 3, raw otherwise. A qcow2 file whose header does not decode is
/// still qcow2 (with the header's virtual size, or the file size when the file is too short
/// to hold it, as libvirt reports it) but has no details: nothing reads or writes through
/// it. `file_len` is the file's `st_size`.
pub fn probe(file: &File, file_len: u64) -> Result<ImageInfo, Error> {
    let prefix = read_prefix(file, PROBE_BYTES).map_err(Error::ReadingHeader)?;
    let Some(size_field) = qcow2::spec::sniff(&prefix) else {
        // libvirt reports a raw LUKS volume's payload: the file less the header.
        let luks = luks::sniff(&prefix)
            .then(|| luks::LuksInfo::decode(&prefix).ok())
            .flatten();
        let capacity = luks
            .as_ref()
            .map_or(file_len, |l| file_len.saturating_sub(l.payload_offset()));
        return Ok(ImageInfo {
            format: VolFormat::Raw,
            capacity,
            qcow2: None,
            luks,
        });
    };
    match qcow2::Qcow2Info::read(file, &prefix) {
        Ok(info) => {
            let luks = match (info.header.crypt_method, info.luks_area) {
                (qcow2::spec::CRYPT_LUKS, Some((offset, _))) => read_luks_at(file, offset),
                _ => None,
            };
            Ok(ImageInfo {
                format: VolFormat::Qcow2,
                capacity: info.header.size,
                qcow2: Some(info),
                luks,
            })
        }
        Err(e) => {
            log::debug!("qcow2 with an unreadable header ({e}): reported, never written");
            Ok(ImageInfo {
                format: VolFormat::Qcow2,
                capacity: size_field.unwrap_or(file_len),
                qcow2: None,
                luks: None,
            })
        }
    }
}

/// Whether `passphrase` opens the LUKS header of an encrypted image (`Ok(false)`: it opens
/// no key slot). An image without a readable LUKS header is an error. Costs one key
/// derivation per enabled slot, as long as the header's iteration counts make it.
pub fn opens_with(
    file: &File,
    info: &ImageInfo,
    passphrase: &luks::Passphrase,
) -> Result<bool, Error> {
    unlock(file, info, passphrase).map(|key| key.is_some())
}

/// The payload cipher of an encrypted image, keyed with its master key as `passphrase`
/// opens it (`Ok(None)`: the passphrase opens no key slot). The key is wiped when the
/// cipher is dropped.
pub fn unlock(
    file: &File,
    info: &ImageInfo,
    passphrase: &luks::Passphrase,
) -> Result<Option<luks::SectorCipher>, Error> {
    let header = info.luks.as_ref().ok_or(Error::LuksHeaderMismatch)?;
    let start = match &info.qcow2 {
        Some(q) => q.luks_area.ok_or(Error::LuksHeaderMismatch)?.0,
        None => 0,
    };
    let read = |offset: u64, len: usize| {
        let mut buf = vec![0u8; len];
        let at = start.checked_add(offset).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "key material offset overflows")
        })?;
        file.read_exact_at(&mut buf, at).map(|()| buf)
    };
    match luks::unlock(header, passphrase, read) {
        Ok(cipher) => Ok(Some(cipher)),
        Err(luks::Error::WrongPassphrase) => Ok(None),
        Err(e) => Err(Error::BadLuksHeader(e)),
    }
}

/// The LUKS header at `offset` of a qcow2 image, when it reads and decodes.
fn read_luks_at(file: &File, offset: u64) -> Option<luks::LuksInfo> {
    let mut buf = vec![0u8; luks::spec::PHDR_LEN];
    file.read_exact_at(&mut buf, offset).ok()?;
    luks::LuksInfo::decode(&buf).ok()
}

/// Checks that an image may be written in place (resize, wipe, upload): a qcow2 image must
/// pass the gate qemu's read-write open would ([`qcow2::gate`]); a raw file always may.
pub fn check_writable(file: &File, info: &ImageInfo) -> Result<(), Error> {
    match info.format {
        VolFormat::Qcow2 => qcow2::gate::check(file).map(|_| ()),
        VolFormat::Raw => Ok(()),
    }
}
