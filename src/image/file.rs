//! The file an image writer writes into, and how zeros get onto the disk.
//!
//! Owns: the [`ImageFile`] trait every writer goes through (so a file without `fallocate`
//! can be injected: [`NoFallocate`], and [`with_target`] picks it when a pool says so), how
//! the writers may write ([`Writing`]: `fallocate` or not, and who hears of their progress,
//! buffer by buffer of zeros), the zero-writing strategy (O_DIRECT in 8 MiB pieces for the
//! aligned middle of a range, the page cache for the ends and where O_DIRECT is refused),
//! and [`WriteReport`].
//! Must not: know image formats or choose what to write.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::progress::Progress;

/// How the writers may write: whether they may ask the filesystem to `fallocate`, and who
/// hears how many bytes of data and zeros they wrote.
#[derive(Clone, Copy)]
pub struct Writing<'a> {
    /// `fallocate` works (else reservations are written as zeros).
    pub fallocate: bool,
    /// Told of the bytes written.
    pub progress: Option<&'a dyn Progress>,
}

impl Default for Writing<'_> {
    fn default() -> Self {
        Writing {
            fallocate: true,
            progress: None,
        }
    }
}

impl std::fmt::Debug for Writing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writing")
            .field("fallocate", &self.fallocate)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Writing<'_> {
    /// Reports `bytes` written.
    pub fn advance(&self, bytes: u64) {
        if let Some(p) = self.progress {
            p.advance(bytes);
        }
    }
}

/// A file the image writers write into. `std::fs::File` implements it with the real
/// syscalls; tests wrap it to take `fallocate` away or to record calls.
pub trait ImageFile {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Sets the file length (`ftruncate`).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current file length.
    fn file_length(&self) -> io::Result<u64>;
    /// Allocates `len` bytes at `offset` (`fallocate` mode 0: may extend the file). Fails
    /// with `EOPNOTSUPP` where the filesystem cannot.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Writes `len` zero bytes at `offset`; `done` hears the bytes of each piece written.
    fn write_zeroes(&self, offset: u64, len: u64, done: &mut dyn FnMut(u64)) -> io::Result<()> {
        write_zeroes_buffered(self, offset, len, done)
    }
    /// Flushes data and metadata to stable storage.
    fn sync(&self) -> io::Result<()>;
    /// A hint: start writing `offset .. offset + len` back to the disk without waiting, so
    /// the final [`ImageFile::sync`] finds less to do. By default nothing.
    fn start_writeback(&self, _offset: u64, _len: u64) {}
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
    done: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut written = 0u64;
    while written < len {
        let n = usize::try_from(len - written).map_or(ZERO_CHUNK, |left| left.min(ZERO_CHUNK));
        file.write_all_at(&zeros[..n], offset + written)?;
        written += n as u64;
        done(n as u64);
    }
    Ok(())
}

impl ImageFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
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
    fn write_zeroes(&self, offset: u64, len: u64, done: &mut dyn FnMut(u64)) -> io::Result<()> {
        write_zeroes_direct(self, offset, len, done)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        // Only a hint: a failure shows up in the later sync.
        let _ = crate::sys::start_writeback(self, offset, len);
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
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
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
    fn write_zeroes(&self, offset: u64, len: u64, done: &mut dyn FnMut(u64)) -> io::Result<()> {
        (**self).write_zeroes(offset, len, done)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        (**self).start_writeback(offset, len)
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
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
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
    fn write_zeroes(&self, offset: u64, len: u64, done: &mut dyn FnMut(u64)) -> io::Result<()> {
        self.0.write_zeroes(offset, len, done)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.0.start_writeback(offset, len)
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

/// Runs `f` on `file`, seen as a file whose filesystem cannot `fallocate` when `fallocate` is
/// false (a pool's switch for filesystems that only pretend to reserve, and for tests).
pub fn with_target<R>(file: &File, writing: Writing<'_>, f: impl FnOnce(&dyn ImageFile) -> R) -> R {
    match (writing.fallocate, writing.progress) {
        (true, None) => f(file),
        (false, None) => f(&NoFallocate(file)),
        (true, Some(progress)) => f(&Reporting {
            inner: file,
            progress,
        }),
        (false, Some(progress)) => f(&Reporting {
            inner: NoFallocate(file),
            progress,
        }),
    }
}

/// A file whose zero writes are reported to a [`Progress`] (the metadata writes are too
/// small to count).
struct Reporting<'p, F> {
    inner: F,
    progress: &'p dyn Progress,
}

impl<F: ImageFile> ImageFile for Reporting<'_, F> {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn file_length(&self) -> io::Result<u64> {
        self.inner.file_length()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.allocate(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, done: &mut dyn FnMut(u64)) -> io::Result<()> {
        self.inner.write_zeroes(offset, len, &mut |n| {
            done(n);
            self.progress.advance(n);
        })
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.inner.start_writeback(offset, len)
    }
    fn holes(&self, offset: u64, len: u64) -> io::Result<Vec<std::ops::Range<u64>>> {
        self.inner.holes(offset, len)
    }
}

/// An aligned window into a zeroed buffer: no allocator tricks, no unsafe.
fn aligned_zeros(backing: &[u8]) -> &[u8] {
    let skew = backing.as_ptr().align_offset(DIRECT_ALIGN);
    &backing[skew..skew + DIRECT_CHUNK]
}

/// Writes zeros over the aligned `start .. end` of a file in O_DIRECT mode, two writes in
/// flight (this thread and one more, each taking the next chunk): the disk always has the
/// next request queued while one completes. The first chunk goes alone; a filesystem that
/// refuses its alignment (`EINVAL`) gets the rest through the page cache.
fn write_direct_zeroes(
    file: &File,
    start: u64,
    end: u64,
    done: &mut dyn FnMut(u64),
) -> io::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let chunk_at =
        |at: u64| usize::try_from(end - at).map_or(DIRECT_CHUNK, |left| left.min(DIRECT_CHUNK));
    let backing = vec![0u8; DIRECT_CHUNK + DIRECT_ALIGN];
    let zeros = aligned_zeros(&backing);
    let first = chunk_at(start);
    match FileExt::write_all_at(file, &zeros[..first], start) {
        Ok(()) => done(first as u64),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            crate::sys::set_direct(file, false)?;
            return write_zeroes_buffered(file, start, end - start, done);
        }
        Err(e) => return Err(e),
    }
    let next = AtomicU64::new(start + first as u64);
    let failed = AtomicBool::new(false);
    // Takes chunks until none is left or a writer failed; the first error wins.
    let writer = |zeros: &[u8], report: &mut dyn FnMut(u64)| -> io::Result<()> {
        while !failed.load(Ordering::Relaxed) {
            let at = next.fetch_add(DIRECT_CHUNK as u64, Ordering::Relaxed);
            if at >= end {
                break;
            }
            let n = chunk_at(at);
            if let Err(e) = FileExt::write_all_at(file, &zeros[..n], at) {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
            report(n as u64);
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let helper = scope.spawn(move || {
            let backing = vec![0u8; DIRECT_CHUNK + DIRECT_ALIGN];
            writer(aligned_zeros(&backing), &mut |n| {
                let _ = tx.send(n);
            })
        });
        // The helper's chunks are reported here too, as they complete.
        let mine = writer(zeros, &mut |n| {
            done(n);
            rx.try_iter().for_each(&mut *done);
        });
        let theirs = helper
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("zero writer panicked")));
        rx.try_iter().for_each(&mut *done);
        mine.and(theirs)
    })
}

/// Alignment of O_DIRECT buffers and offsets.
const DIRECT_ALIGN: usize = 4096;
/// Size of one O_DIRECT zero write.
const DIRECT_CHUNK: usize = 8 << 20;

/// Writes `len` zeros at `offset`, the aligned middle with O_DIRECT and 8 MiB buffers (no
/// page-cache copy, like `dd oflag=direct`), the unaligned ends through the page cache.
/// Falls back to buffered writes where O_DIRECT is refused (tmpfs, some FUSE).
pub fn write_zeroes_direct(
    file: &File,
    offset: u64,
    len: u64,
    done: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let end = offset + len;
    let align = DIRECT_ALIGN as u64;
    let mid_start = offset.next_multiple_of(align).min(end);
    let mid_end = (end / align * align).max(mid_start);
    if mid_end - mid_start < DIRECT_CHUNK as u64 || crate::sys::set_direct(file, true).is_err() {
        return write_zeroes_buffered(file, offset, len, done);
    }
    let result = write_direct_zeroes(file, mid_start, mid_end, done);
    let restored = crate::sys::set_direct(file, false);
    result?;
    restored?;
    write_zeroes_buffered(file, offset, mid_start - offset, done)?;
    write_zeroes_buffered(file, mid_end, end - mid_end, done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A file of `len` bytes of 0xAA.
    fn patterned(len: usize) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0xAAu8; len]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, file)
    }

    #[test]
    fn direct_zeroes_cover_exactly_the_range_and_report_every_byte_as_it_goes() {
        // Unaligned ends around several chunks: both writers, the buffered ends.
        let (s, e) = (1000usize, 1000 + 3 * DIRECT_CHUNK + 5000);
        let (start, len) = (s as u64, (e - s) as u64);
        let total = e + 777;
        let (_dir, mut file) = patterned(total);
        let mut reports = Vec::new();
        write_zeroes_direct(&file, start, len, &mut |n| reports.push(n)).unwrap();
        assert_eq!(reports.iter().sum::<u64>(), len);
        assert!(reports.len() >= 4, "{reports:?}");
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), total);
        assert!(back[..s].iter().all(|&b| b == 0xAA));
        assert!(back[s..e].iter().all(|&b| b == 0));
        assert!(back[e..].iter().all(|&b| b == 0xAA));
        // O_DIRECT is off again for later writes.
        let flags = nix::fcntl::fcntl(
            std::os::fd::AsFd::as_fd(&file),
            nix::fcntl::FcntlArg::F_GETFL,
        )
        .unwrap();
        assert_eq!(flags & libc::O_DIRECT, 0);
    }

    #[test]
    fn a_failing_direct_write_is_the_error() {
        let (dir, _file) = patterned(4 * DIRECT_CHUNK);
        let read_only = File::open(dir.path().join("f")).unwrap();
        let err =
            write_zeroes_direct(&read_only, 0, 4 * DIRECT_CHUNK as u64, &mut |_| {}).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
