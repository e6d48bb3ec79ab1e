//! Image formats: writing new raw and qcow2 volumes natively, and reading back what an
//! existing volume file is.
//!
//! Owns: the [`ImageFile`] trait the writers go through (so tests can inject a file without
//! `fallocate`), the format-level [`Preallocation`] enum, format probing and the numbers
//! libvirt reports (capacity from the qcow2 header or the raw file size).
//! Must not: choose a preallocation (that is `policy`), name or place files in a pool (that
//! is `pool`), or know byte offsets (only `qcow2::spec` does).

pub mod copy;
pub mod prealloc;
pub mod qcow2;
pub mod raw;
pub mod stream;
pub mod wipe;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use thiserror::Error;

use crate::model::VolFormat;

/// A file the image writers write into. `std::fs::File` implements it with the real
/// syscalls; tests wrap it to take `fallocate` away or to record calls.
pub trait ImageFile {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Sets the file length (`ftruncate`).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current file length.
    fn file_length(&self) -> io::Result<u64>;
    /// Allocates `len` bytes at `offset` (`fallocate` mode 0: may extend the file). Fails
    /// with `EOPNOTSUPP` where the filesystem cannot.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Writes `len` zero bytes at `offset`.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        write_zeroes_buffered(self, offset, len)
    }
    /// Flushes data and metadata to stable storage.
    fn sync(&self) -> io::Result<()>;
    /// The holes (ranges that hold no data) within `offset .. offset + len`; by default the
    /// whole range, for files that cannot tell.
    fn holes(&self, offset: u64, len: u64) -> io::Result<Vec<std::ops::Range<u64>>> {
        Ok(vec![offset..offset + len])
    }
}

/// Size of the zero buffer used for buffered zero writes.
const ZERO_CHUNK: usize = 1 << 20;

/// Writes zeros through ordinary writes, one 1 MiB buffer at a time.
pub fn write_zeroes_buffered<F: ImageFile + ?Sized>(
    file: &F,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(len - done).map_or(ZERO_CHUNK, |left| left.min(ZERO_CHUNK));
        file.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

impl ImageFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn file_length(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        crate::sys::fallocate(self, offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        crate::sys::write_zeroes_direct(self, offset, len)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
    fn holes(&self, offset: u64, len: u64) -> io::Result<Vec<std::ops::Range<u64>>> {
        let end = offset + len;
        let size = self.metadata()?.len();
        let mut out = Vec::new();
        let mut at = offset;
        for data in crate::sys::data_ranges(self, offset, end.min(size))? {
            if data.start > at {
                out.push(at..data.start);
            }
            at = data.end;
        }
        if at < end {
            out.push(at..end);
        }
        Ok(out)
    }
}

impl<F: ImageFile + ?Sized> ImageFile for &F {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
    fn file_length(&self) -> io::Result<u64> {
        (**self).file_length()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).allocate(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).write_zeroes(offset, len)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
    fn holes(&self, offset: u64, len: u64) -> io::Result<Vec<std::ops::Range<u64>>> {
        (**self).holes(offset, len)
    }
}

/// A file whose filesystem cannot `fallocate` (like NFS before 4.2): every
/// [`ImageFile::allocate`] fails with `EOPNOTSUPP`. Used to exercise the fallback.
#[derive(Debug)]
pub struct NoFallocate<F>(pub F);

impl<F: ImageFile> ImageFile for NoFallocate<F> {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn file_length(&self) -> io::Result<u64> {
        self.0.file_length()
    }
    fn allocate(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.write_zeroes(offset, len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
    fn holes(&self, offset: u64, len: u64) -> io::Result<Vec<std::ops::Range<u64>>> {
        self.0.holes(offset, len)
    }
}

/// What a writer did, beyond the bytes: whether `fallocate` had to be replaced by zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// `fallocate` was not supported and zeros were written instead.
    pub fell_back_to_zeroes: bool,
}

/// What probing a volume file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Detected format.
    pub format: VolFormat,
    /// Guest-visible size: qcow2 virtual size, or the raw file's length.
    pub capacity: u64,
    /// qcow2 details.
    pub qcow2: Option<qcow2::Qcow2Info>,
}

/// Failures of the image layer, one variant per failing operation.
#[derive(Debug, Error)]
pub enum Error {
    /// The qcow2 options are invalid or exceed qcow2's limits.
    #[error("invalid qcow2 options")]
    Options(#[from] qcow2::layout::Error),
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
    CorruptImage(String),
    /// The image uses something qpool cannot read.
    #[error("unsupported image: {0}")]
    Unsupported(String),
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

/// Probes an open volume file like libvirt does: qcow2 when the magic and a valid header
/// are there, raw otherwise. `file_len` is the file's `st_size`.
pub fn probe(file: &File, file_len: u64) -> Result<ImageInfo, Error> {
    let prefix = read_prefix(file, PROBE_BYTES).map_err(Error::ReadingHeader)?;
    let raw = ImageInfo {
        format: VolFormat::Raw,
        capacity: file_len,
        qcow2: None,
    };
    if prefix.len() < 4 || prefix[..4] != qcow2::spec::MAGIC.to_be_bytes() {
        return Ok(raw);
    }
    match qcow2::Qcow2Info::read(file, &prefix) {
        Ok(info) => Ok(ImageInfo {
            format: VolFormat::Qcow2,
            capacity: info.header.size,
            qcow2: Some(info),
        }),
        Err(e) => {
            log::debug!("qcow2 magic but unreadable header ({e}); reporting the file as raw");
            Ok(raw)
        }
    }
}

/// What a range of guest data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    /// Holds data (which may still happen to be zeros).
    Data,
    /// Known to read as zeros (a hole, a zero cluster, unallocated without backing).
    Zero,
}

/// Guest-visible content of an image: what a VM would read.
pub trait GuestImage {
    /// Guest-visible size in bytes.
    fn size(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset`; the range must lie within [`GuestImage::size`].
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error>;
    /// Status of the bytes at `offset` and how many bytes (≥ 1, ≤ `max_len`) share it.
    fn status(&mut self, offset: u64, max_len: u64) -> Result<(BlockStatus, u64), Error>;
}

/// A raw file as a guest image; holes report as zeros.
pub struct RawImage {
    file: File,
    size: u64,
}

impl RawImage {
    /// Wraps an open raw file.
    pub fn new(file: File) -> Result<RawImage, Error> {
        let size = file.metadata().map_err(Error::ReadingImage)?.len();
        Ok(RawImage { file, size })
    }
}

impl GuestImage for RawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(Error::ReadingImage)
    }

    fn status(&mut self, offset: u64, max_len: u64) -> Result<(BlockStatus, u64), Error> {
        let end = offset.saturating_add(max_len).min(self.size);
        if offset >= end {
            return Ok((BlockStatus::Zero, max_len.max(1)));
        }
        let (status, until) =
            crate::sys::extent_at(&self.file, offset, self.size).map_err(Error::ReadingImage)?;
        let status = if status {
            BlockStatus::Data
        } else {
            BlockStatus::Zero
        };
        Ok((status, until.min(end).saturating_sub(offset).max(1)))
    }
}

/// Deepest backing chain followed.
pub const MAX_BACKING_CHAIN: usize = 16;

/// Opens the image at `path` for reading guest data, following its backing chain.
/// `format` is the declared format; without one the file is probed (like qemu without `-F`).
pub fn open_guest_image(
    path: &std::path::Path,
    format: Option<VolFormat>,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    open_path(path, format, 0)
}

/// Like [`open_guest_image`] for an already open file; `path` names it (relative backing
/// file names are resolved against its directory).
pub fn open_guest_file(
    file: File,
    path: &std::path::Path,
    format: Option<VolFormat>,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    open_chain(file, path, format, 0)
}

fn open_path(
    path: &std::path::Path,
    format: Option<VolFormat>,
    depth: usize,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    let file = File::open(path).map_err(|source| Error::OpeningImage {
        path: path.display().to_string(),
        source,
    })?;
    open_chain(file, path, format, depth)
}

fn open_chain(
    file: File,
    path: &std::path::Path,
    format: Option<VolFormat>,
    depth: usize,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    if depth >= MAX_BACKING_CHAIN {
        return Err(Error::BackingChainTooDeep(MAX_BACKING_CHAIN));
    }
    let opening = |source| Error::OpeningImage {
        path: path.display().to_string(),
        source,
    };
    let len = file.metadata().map_err(opening)?.len();
    let info = probe(&file, len)?;
    let format = format.unwrap_or(info.format);
    match (format, info.qcow2) {
        (VolFormat::Raw, _) => Ok(Box::new(RawImage::new(file)?)),
        (VolFormat::Qcow2, None) => Err(Error::CorruptImage(format!(
            "{} is not a qcow2 image",
            path.display()
        ))),
        (VolFormat::Qcow2, Some(q)) => {
            let backing = match &q.backing_file {
                None => None,
                Some(name) => {
                    let base = path.parent().unwrap_or(std::path::Path::new("/"));
                    let backing_path = base.join(name);
                    let backing_format = match q.backing_format.as_deref() {
                        Some(name) if name.parse::<VolFormat>().is_ok() => name.parse().ok(),
                        Some(other) => {
                            return Err(Error::Unsupported(format!(
                                "backing format '{other}' of {}",
                                path.display()
                            )));
                        }
                        None => None,
                    };
                    Some(open_path(&backing_path, backing_format, depth + 1)?)
                }
            };
            Ok(Box::new(qcow2::read::Qcow2Image::open(
                file, q.header, backing,
            )?))
        }
    }
}
