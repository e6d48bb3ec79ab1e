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

/// Writes zeros into the holes of `offset .. offset + len`, leaving data as it is.
pub fn zero_holes<F: ImageFile + ?Sized>(file: &F, offset: u64, len: u64) -> Result<(), Error> {
    for hole in file.holes(offset, len).map_err(Error::ReadingImage)? {
        write_zeroes(file, hole.start, hole.end - hole.start)?;
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

    #[test]
    fn supported_fallocate_allocates_without_writing() {
        let (_dir, file) = new_file();
        let mut report = WriteReport::default();
        allocate_or_zero(&file, 0, 1 << 20, &mut report).unwrap();
        assert!(!report.fell_back_to_zeroes);
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    }
}
