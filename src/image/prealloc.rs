//! Reserving and zero-filling ranges of a new image file.
//!
//! Owns: reserving before writing zeros ([`reserve`]: a `full` image claims its space first,
//! so running out of it fails before a byte is written), and the `falloc` → `full`
//! fallback. Where the filesystem answers `EOPNOTSUPP` to
//! `fallocate` (NFS before 4.2, some FUSE filesystems), the holes of the range are written
//! with zeros instead (data already there is kept, as fallocate keeps it), with a `warn!`,
//! and the caller is told so it can report it.
//! Must not: decide which ranges to reserve.

use std::io;

use super::Error;
use super::file::{ImageFile, WriteReport};

/// True for the errors that mean "this filesystem cannot fallocate".
fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
    )
}

/// Reserves `len` bytes at `offset`: `fallocate`, or zeros where that is unsupported.
pub fn allocate_or_zero<F: ImageFile + ?Sized>(
    file: &F,
    offset: u64,
    len: u64,
    report: &mut WriteReport,
) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    if !report.fell_back_to_zeroes {
        match file.allocate(offset, len) {
            Ok(()) => return Ok(()),
            Err(e) if is_unsupported(&e) => {
                log::warn!(
                    "fallocate is not supported on this filesystem; writing zeros instead (falloc falls back to full)"
                );
                report.fell_back_to_zeroes = true;
            }
            Err(source) => {
                return Err(Error::Allocating {
                    offset,
                    len,
                    source,
                });
            }
        }
    }
    zero_holes(file, offset, len)
}

/// Reserves `len` bytes at `offset` before they are written with zeros (`full`), so a full
/// filesystem fails the write before its first byte rather than half-way. Where the
/// filesystem cannot `fallocate`, nothing is reserved: the caller checked the free space.
pub fn reserve<F: ImageFile + ?Sized>(file: &F, offset: u64, len: u64) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    match file.allocate(offset, len) {
        Ok(()) => Ok(()),
        Err(e) if is_unsupported(&e) => Ok(()),
        Err(source) => Err(Error::Allocating {
            offset,
            len,
            source,
        }),
    }
}

/// Writes zeros into the holes of `offset .. offset + len`, leaving data as it is. What the
/// filesystem calls data but reads as zeros is written too, a chunk at a time: filesystems
/// that report no holes at all (CephFS, FUSE filesystems without `lseek`) call every byte
/// below the end of the file data, and zeros read from a hole look the same.
pub fn zero_holes<F: ImageFile + ?Sized>(file: &F, offset: u64, len: u64) -> Result<(), Error> {
    let end = offset + len;
    let mut at = offset;
    for hole in file.holes(offset, len).map_err(Error::ReadingImage)? {
        zero_zero_chunks(file, at, hole.start)?;
        write_zeroes(file, hole.start, hole.end - hole.start)?;
        at = hole.end;
    }
    zero_zero_chunks(file, at, end)
}

/// Size of the pieces [`zero_zero_chunks`] reads.
const CHECK_CHUNK: u64 = 1 << 20;
/// The unit it judges: a block that reads as zeros is written.
const CHECK_BLOCK: usize = 4096;

/// Rewrites, as written zeros, the blocks of `start .. end` (reported as data) that read as
/// zeros; data is left as it is.
fn zero_zero_chunks<F: ImageFile + ?Sized>(file: &F, start: u64, end: u64) -> Result<(), Error> {
    let end = end.min(file.file_length().map_err(Error::ReadingImage)?);
    let mut buf = Vec::new();
    let mut at = start;
    while at < end {
        let n = (end - at).min(CHECK_CHUNK);
        buf.resize(usize::try_from(n).unwrap_or(0), 0);
        file.read_exact_at(&mut buf, at)
            .map_err(Error::ReadingImage)?;
        // Runs of zero blocks, each written in one go.
        let mut run: Option<u64> = None;
        let mut pos = 0u64;
        for block in buf.chunks(CHECK_BLOCK) {
            let zero = block.iter().all(|&b| b == 0);
            match (zero, run) {
                (true, None) => run = Some(pos),
                (false, Some(from)) => {
                    write_zeroes(file, at + from, pos - from)?;
                    run = None;
                }
                _ => {}
            }
            pos += block.len() as u64;
        }
        if let Some(from) = run {
            write_zeroes(file, at + from, pos - from)?;
        }
        at += n;
    }
    Ok(())
}

/// Writes `len` zeros at `offset`.
pub fn write_zeroes<F: ImageFile + ?Sized>(file: &F, offset: u64, len: u64) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    file.write_zeroes(offset, len, &mut |_| {})
        .map_err(|source| Error::WritingZeroes {
            offset,
            len,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::file::NoFallocate;

    /// An empty read-write file in a fresh directory (kept alive by the returned guard).
    fn new_file() -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        (dir, file)
    }

    #[test]
    fn unsupported_fallocate_falls_back_to_zeroes() {
        let (_dir, file) = new_file();
        let no_falloc = NoFallocate(file);
        let mut report = WriteReport::default();
        allocate_or_zero(&no_falloc, 4096, 1 << 20, &mut report).unwrap();
        assert!(report.fell_back_to_zeroes);
        let meta = no_falloc.0.metadata().unwrap();
        assert_eq!(meta.len(), 4096 + (1 << 20));
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 >= 1 << 20,
            "zeros were written, so blocks are allocated"
        );
    }

    #[test]
    fn fallback_keeps_data_already_in_the_range() {
        let (_dir, file) = new_file();
        std::os::unix::fs::FileExt::write_all_at(&file, &[7u8; 8192], 1 << 20).unwrap();
        let no_falloc = NoFallocate(file);
        let mut report = WriteReport::default();
        allocate_or_zero(&no_falloc, 0, 4 << 20, &mut report).unwrap();
        let mut buf = [0u8; 8192];
        std::os::unix::fs::FileExt::read_exact_at(&no_falloc.0, &mut buf, 1 << 20).unwrap();
        assert!(
            buf.iter().all(|&b| b == 7),
            "the data survived the zero fill"
        );
        assert_eq!(no_falloc.0.metadata().unwrap().len(), 4 << 20);
    }

    /// A file whose filesystem reports no holes (CephFS, FUSE without `lseek`): everything
    /// below the end of the file is "data".
    struct NoHoles(NoFallocate<std::fs::File>);

    impl ImageFile for NoHoles {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_all_at(buf, offset)
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.0.read_exact_at(buf, offset)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
        fn file_length(&self) -> io::Result<u64> {
            self.0.file_length()
        }
        fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
            self.0.allocate(offset, len)
        }
        fn sync(&self) -> io::Result<()> {
            self.0.sync()
        }
        fn holes(&self, offset: u64, len: u64) -> io::Result<Vec<std::ops::Range<u64>>> {
            let size = self.file_length()?;
            Ok((offset + len > size)
                .then(|| size.max(offset)..offset + len)
                .into_iter()
                .collect())
        }
    }

    #[test]
    fn the_fallback_writes_zeros_where_the_filesystem_reports_no_holes() {
        let (_dir, file) = new_file();
        file.set_len(4 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[7u8; 4096], 1 << 20).unwrap();
        let no_holes = NoHoles(NoFallocate(file));
        let mut report = WriteReport::default();
        allocate_or_zero(&no_holes, 0, 4 << 20, &mut report).unwrap();
        assert!(report.fell_back_to_zeroes);
        use std::os::unix::fs::MetadataExt;
        let meta = no_holes.0.0.metadata().unwrap();
        assert!(
            meta.blocks() * 512 >= 4 << 20,
            "every byte is written: {}",
            meta.blocks() * 512
        );
        let mut buf = [0u8; 4096];
        std::os::unix::fs::FileExt::read_exact_at(&no_holes.0.0, &mut buf, 1 << 20).unwrap();
        assert!(buf.iter().all(|&b| b == 7), "the data survived");
    }

    #[test]
    fn supported_fallocate_allocates_without_writing() {
        let (_dir, file) = new_file();
        let mut report = WriteReport::default();
        allocate_or_zero(&file, 0, 1 << 20, &mut report).unwrap();
        assert!(!report.fell_back_to_zeroes);
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    }
}
