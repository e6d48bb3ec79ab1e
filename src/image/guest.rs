//! Guest data: what a VM reads from an image, whatever its format and backing chain.
//!
//! Owns: the [`GuestImage`] trait (read, and ask whether a range holds data or zeros), raw
//! files as guest images, opening an image with its backing chain (at most
//! [`MAX_BACKING_CHAIN`] deep), and [`backing_path`], the one rule for where a backing name
//! points (relative names resolve against the directory of the image that names them, as
//! qemu resolves them).
//! Must not: write anything.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Corruption, Error, Unsupported, probe, qcow2};
use crate::model::VolFormat;

/// Where the backing name `name` stored in an image in directory `dir` points: absolute
/// names as they are, relative ones under `dir`.
pub fn backing_path(dir: &Path, name: &str) -> PathBuf {
    if Path::new(name).is_absolute() {
        PathBuf::from(name)
    } else {
        dir.join(name)
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
    path: &Path,
    format: Option<VolFormat>,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    open_path(path, format, 0)
}

/// Like [`open_guest_image`] for an already open file; `path` names it (relative backing
/// file names are resolved against its directory).
pub fn open_guest_file(
    file: File,
    path: &Path,
    format: Option<VolFormat>,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    open_chain(file, path, format, 0)
}

fn open_path(
    path: &Path,
    format: Option<VolFormat>,
    depth: usize,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    open_chain(open_image_file(path)?, path, format, depth)
}

/// Opens an image file for reading, never blocking on a FIFO: only regular files and block
/// devices are images (a backing name is whatever an image says, so it may name anything).
pub fn open_image_file(path: &Path) -> Result<File, Error> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let opening = |source| Error::OpeningImage {
        path: path.display().to_string(),
        source,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(opening)?;
    let kind = file.metadata().map_err(opening)?.file_type();
    if !(kind.is_file() || kind.is_block_device()) {
        return Err(opening(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file or block device",
        )));
    }
    Ok(file)
}

fn open_chain(
    file: File,
    path: &Path,
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
        (VolFormat::Qcow2, None) => Err(Corruption::NotQcow2(path.to_path_buf()).into()),
        (VolFormat::Qcow2, Some(q)) => {
            let backing = open_backing(&q, path, depth)?;
            Ok(Box::new(qcow2::read::Qcow2Image::open(
                file, q.header, backing,
            )?))
        }
    }
}

/// The backing image of the qcow2 image `q` at `path` (`depth` deep in its chain), opened
/// for reading guest data; `None` without one.
pub(crate) fn open_backing(
    q: &qcow2::Qcow2Info,
    path: &Path,
    depth: usize,
) -> Result<Option<Box<dyn GuestImage + Send>>, Error> {
    let Some(name) = &q.backing_file else {
        return Ok(None);
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let backing = backing_path(dir, name);
    let backing_format = match q.backing_format.as_deref() {
        Some(name) if name.parse::<VolFormat>().is_ok() => name.parse().ok(),
        Some(other) => {
            return Err(Unsupported::BackingFormat {
                format: other.to_string(),
                image: path.to_path_buf(),
            }
            .into());
        }
        None => None,
    };
    Ok(Some(open_path(&backing, backing_format, depth + 1)?))
}
