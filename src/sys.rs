//! The only module that makes raw system calls (through `nix` where it has a wrapper).
//!
//! Owns: `fallocate` (also hole punching), switching O_DIRECT on and off, extent maps
//! (`SEEK_DATA`/`SEEK_HOLE`, FIEMAP), in-kernel copies (`copy_file_range`, FICLONE),
//! directory-relative opens with `O_NOFOLLOW`, `renameat2(RENAME_NOREPLACE)` with its
//! link/unlink fallback, open file description (OFD) locks, `statvfs`, the type of the
//! mount a descriptor lies on, the btrfs no-copy-on-write flag, a thread's CPU time; and (feature `libvirt`)
//! the one libvirt call the `virt` crate does not wrap, [`libvirt::set_system_token`].
//! Must not: know about volumes, pools or image formats, or import anything from the crate
//! (it is the bottom layer; strategies built from these calls live in `image`).

#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FallocateFlags, FcntlArg, OFlag, RenameFlags};
use nix::sys::stat::{FileStat, Mode};

fn to_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn to_off(value: u64) -> io::Result<i64> {
    i64::try_from(value).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

/// `fallocate(fd, 0, offset, len)`: allocates and extends the file if needed.
pub fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    nix::fcntl::fallocate(
        file.as_fd(),
        FallocateFlags::empty(),
        to_off(offset)?,
        to_off(len)?,
    )
    .map_err(to_io)
}

/// `struct fiemap_extent` of linux/fiemap.h.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    fe_logical: u64,
    fe_physical: u64,
    fe_length: u64,
    fe_reserved64: [u64; 2],
    fe_flags: u32,
    fe_reserved: [u32; 3],
}

/// Extents asked for per FS_IOC_FIEMAP call, as the field's type.
const FIEMAP_BATCH_U32: u32 = 128;
/// [`FIEMAP_BATCH_U32`] as an array length.
const FIEMAP_BATCH: usize = FIEMAP_BATCH_U32 as usize;

/// `struct fiemap` of linux/fiemap.h with room for [`FIEMAP_BATCH`] extents.
#[repr(C)]
struct Fiemap {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
    fm_extents: [FiemapExtent; FIEMAP_BATCH],
}

const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;

/// The byte ranges of `file` that have blocks allocated, as `(start, end, unwritten)`:
/// `unwritten` for blocks reserved but never written (they read as zeros). Adjacent ranges of
/// the same kind are merged. From FS_IOC_FIEMAP after a sync of the file; `Ok(None)` where
/// the filesystem cannot tell (then SEEK_DATA is the best one can do).
pub fn allocated_extents(file: &File, len: u64) -> io::Result<Option<Vec<(u64, u64, bool)>>> {
    let mut out: Vec<(u64, u64, bool)> = Vec::new();
    let mut start = 0u64;
    loop {
        let mut map = Fiemap {
            fm_start: start,
            fm_length: u64::MAX - start,
            fm_flags: FIEMAP_FLAG_SYNC,
            fm_mapped_extents: 0,
            fm_extent_count: FIEMAP_BATCH_U32,
            fm_reserved: 0,
            fm_extents: [FiemapExtent::default(); FIEMAP_BATCH],
        };
        // SAFETY: `map` is a properly laid out `struct fiemap` with `fm_extent_count`
        // entries of writable space after its header, and the fd is open for the call.
        match unsafe { ioctl::fiemap(file.as_raw_fd(), &mut map) } {
            Ok(_) => {}
            Err(Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::EINVAL) => return Ok(None),
            Err(e) => return Err(to_io(e)),
        }
        let n = (map.fm_mapped_extents as usize).min(FIEMAP_BATCH);
        if n == 0 {
            break;
        }
        let mut last = false;
        for e in &map.fm_extents[..n] {
            let begin = e.fe_logical.min(len);
            let end = e.fe_logical.saturating_add(e.fe_length).min(len);
            let unwritten = e.fe_flags & FIEMAP_EXTENT_UNWRITTEN != 0;
            if begin < end {
                match out.last_mut() {
                    Some(prev) if prev.1 >= begin && prev.2 == unwritten => {
                        prev.1 = prev.1.max(end);
                    }
                    _ => out.push((begin, end, unwritten)),
                }
            }
            start = e.fe_logical.saturating_add(e.fe_length);
            last |= e.fe_flags & FIEMAP_EXTENT_LAST != 0;
        }
        if last || start >= len {
            break;
        }
    }
    Ok(Some(out))
}

/// `fallocate(KEEP_SIZE)`: allocates without changing the file length.
pub fn fallocate_keep_size(file: &File, offset: u64, len: u64) -> io::Result<()> {
    nix::fcntl::fallocate(
        file.as_fd(),
        FallocateFlags::FALLOC_FL_KEEP_SIZE,
        to_off(offset)?,
        to_off(len)?,
    )
    .map_err(to_io)
}

/// `fallocate(PUNCH_HOLE | KEEP_SIZE)`: the range reads as zeros, whole blocks are freed.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    nix::fcntl::fallocate(
        file.as_fd(),
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        to_off(offset)?,
        to_off(len)?,
    )
    .map_err(to_io)
}

/// A range to copy: `len` bytes from offset `from` of the source to offset `to` of the
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset in the source.
    pub from: u64,
    /// Offset in the destination.
    pub to: u64,
    /// Bytes.
    pub len: u64,
}

impl Span {
    /// The same offsets in both files.
    pub fn same(offset: u64, len: u64) -> Span {
        Span {
            from: offset,
            to: offset,
            len,
        }
    }

    /// The part of this span from `done` bytes on, at most `max` bytes long.
    fn skip(self, done: u64, max: u64) -> Span {
        Span {
            from: self.from + done,
            to: self.to + done,
            len: (self.len - done).min(max),
        }
    }
}

/// Copies `span` from `src` to `dst`, in the kernel where it can (`copy_file_range`), else
/// through a buffer. A copy longer than 32 MiB goes in 32 MiB pieces and a second thread
/// starts the writeback of each finished piece, so the disk writes while the next piece is
/// copied and the final sync has little left to do. `done` hears the bytes of each finished
/// piece.
pub fn copy_span(src: &File, dst: &File, span: Span, done: &mut dyn FnMut(u64)) -> io::Result<()> {
    const PIECE: u64 = 32 << 20;
    if span.len <= PIECE {
        // One piece: nothing to overlap with, so no flusher thread (callers copy extent by
        // extent, and a fragmented file has many small ones).
        copy_piece(src, dst, span)?;
        done(span.len);
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Span>();
        let flusher = scope.spawn(move || {
            for piece in rx {
                // Only a hint: a failure here shows up in the caller's sync.
                let _ = start_writeback(dst, piece.to, piece.len);
            }
        });
        let mut copied = 0u64;
        let result = (|| {
            while copied < span.len {
                let piece = span.skip(copied, PIECE);
                copy_piece(src, dst, piece)?;
                let _ = tx.send(piece);
                copied += piece.len;
                done(piece.len);
            }
            Ok(())
        })();
        drop(tx);
        let _ = flusher.join();
        result
    })
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writing back a range without waiting.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (offset, len) = (to_off(offset)?, to_off(len)?);
    // SAFETY: the descriptor belongs to `file`, which outlives the call; sync_file_range
    // takes plain integers and touches no memory of ours.
    let r = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One `copy_file_range` loop; a kernel or filesystem that cannot hands the rest to
/// [`copy_buffered`].
fn copy_piece(src: &File, dst: &File, span: Span) -> io::Result<()> {
    let mut done = 0u64;
    while done < span.len {
        let mut off_in = to_off(span.from + done)?;
        let mut off_out = to_off(span.to + done)?;
        let chunk = usize::try_from(span.len - done).unwrap_or(usize::MAX);
        match nix::fcntl::copy_file_range(
            src.as_fd(),
            Some(&mut off_in),
            dst.as_fd(),
            Some(&mut off_out),
            chunk,
        ) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source ended before the range",
                ));
            }
            Ok(n) => done += n as u64,
            Err(Errno::EINTR) => {}
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL) => {
                return copy_buffered(src, dst, span.skip(done, u64::MAX));
            }
            Err(e) => return Err(to_io(e)),
        }
    }
    Ok(())
}

/// Copies `span` through a 4 MiB buffer.
fn copy_buffered(src: &File, dst: &File, span: Span) -> io::Result<()> {
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0u64;
    while done < span.len {
        let n = usize::try_from(span.len - done).map_or(buf.len(), |l| l.min(buf.len()));
        src.read_exact_at(&mut buf[..n], span.from + done)?;
        dst.write_all_at(&buf[..n], span.to + done)?;
        done += n as u64;
    }
    Ok(())
}

/// `ioctl(FICLONE)`: makes `dst` share all of `src`'s blocks (btrfs, XFS with reflink).
pub fn reflink(src: &File, dst: &File) -> io::Result<()> {
    // SAFETY: both descriptors are open files owned by their `File`s for the duration of
    // the call; FICLONE takes the source descriptor as its integer argument.
    unsafe { ioctl::ficlone(dst.as_raw_fd(), src.as_raw_fd() as libc::c_ulong) }
        .map(|_| ())
        .map_err(to_io)
}

/// Turns O_DIRECT on or off for an open file description.
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_GETFL).map_err(to_io)?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_DIRECT, on);
    nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_SETFL(flags))
        .map(|_| ())
        .map_err(to_io)
}

/// Whether the byte at `offset` of a file lies in data (`true`) or a hole, and where that
/// extent ends (at most `size`). Uses `SEEK_DATA`/`SEEK_HOLE`.
pub fn extent_at(file: &File, offset: u64, size: u64) -> io::Result<(bool, u64)> {
    use nix::unistd::{Whence, lseek};
    let off = to_off(offset)?;
    let data = match lseek(file.as_fd(), off, Whence::SeekData) {
        Ok(d) => u64::try_from(d).unwrap_or(size),
        Err(Errno::ENXIO) => size,
        Err(e) => return Err(to_io(e)),
    };
    if data > offset {
        return Ok((false, data.min(size)));
    }
    let hole = match lseek(file.as_fd(), off, Whence::SeekHole) {
        Ok(h) => u64::try_from(h).unwrap_or(size),
        Err(Errno::ENXIO) => size,
        Err(e) => return Err(to_io(e)),
    };
    Ok((true, hole.min(size)))
}

/// The data extents of `file` within `start .. end`, in order ([`extent_at`] walked over
/// the range); the rest of the range is holes.
pub fn data_ranges(file: &File, start: u64, end: u64) -> io::Result<Vec<Range<u64>>> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let (is_data, until) = extent_at(file, at, end)?;
        let until = until.max(at + 1);
        if is_data {
            out.push(at..until);
        }
        at = until;
    }
    Ok(out)
}

/// Opens a directory (following the path the user gave) for `*at` calls.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(to_io)
}

/// `fstat` of an open file.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    nix::sys::stat::fstat(fd).map_err(to_io)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`: never follows a symlink.
fn open_at(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag, mode: Mode) -> io::Result<File> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        mode,
    )
    .map_err(to_io)?;
    Ok(File::from(fd))
}

/// Opens `name` in `dir` for reading, never following a symlink and never blocking on a
/// FIFO or device.
pub fn open_read_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    open_at(dir, name, flags, Mode::empty())
}

/// Opens `name` in `dir` read-write, never following a symlink (for locking leftovers).
pub fn open_rw_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    open_at(dir, name, flags, Mode::empty())
}

/// Creates `name` in `dir`, which must not exist (`O_CREAT | O_EXCL | O_NOFOLLOW`), mode 0600.
pub fn create_new_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
    open_at(dir, name, flags, Mode::from_bits_truncate(0o600))
}

/// `unlinkat(dir, name, 0)`.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(to_io)
}

/// Moves `from` to `to` inside `dir` without ever replacing `to`.
///
/// `renameat2(RENAME_NOREPLACE)`; where the filesystem does not support the flag (EINVAL),
/// `linkat` + `unlinkat`, which also fails with EEXIST instead of replacing.
pub fn rename_noreplace_at(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    match nix::fcntl::renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            nix::unistd::linkat(dir, from, dir, to, AtFlags::empty()).map_err(to_io)?;
            unlink_at(dir, from)
        }
        Err(e) => Err(to_io(e)),
    }
}

/// An OFD lock request of `kind` (`F_RDLCK`, `F_WRLCK`) on `len` bytes from `start` (0: to
/// the end of the file, whatever it grows to).
fn ofd_lock(kind: libc::c_int, start: u64, len: u64) -> io::Result<libc::flock> {
    Ok(libc::flock {
        // F_RDLCK (0), F_WRLCK (1) and SEEK_SET (0) fit any c_short.
        l_type: libc::c_short::try_from(kind).unwrap_or(1),
        l_whence: libc::c_short::try_from(libc::SEEK_SET).unwrap_or(0),
        l_start: to_off(start)?,
        l_len: to_off(len)?,
        l_pid: 0,
    })
}

/// Sets an OFD lock without waiting: `Ok(false)` when another open file description holds
/// a conflicting one.
fn try_ofd_lock(file: &File, lock: &libc::flock) -> io::Result<bool> {
    match nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(lock)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(false),
        Err(e) => Err(to_io(e)),
    }
}

/// Takes an exclusive OFD lock on the whole file without waiting. `Ok(false)` when another
/// open file description holds a lock (a create in progress).
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    try_ofd_lock(file, &ofd_lock(libc::F_WRLCK, 0, 0)?)
}

/// Takes a shared OFD lock on `len` bytes from `start` without waiting (the file may be
/// open read-only). `Ok(false)` when another open file description holds an exclusive lock
/// over any of them.
pub fn try_lock_shared(file: &File, start: u64, len: u64) -> io::Result<bool> {
    try_ofd_lock(file, &ofd_lock(libc::F_RDLCK, start, len)?)
}

/// Whether another open file description holds any lock on the file (`F_OFD_GETLK` for a
/// whole-file exclusive lock; works on a file open read-only).
pub fn locked_by_other(file: &File) -> io::Result<bool> {
    let mut probe = ofd_lock(libc::F_WRLCK, 0, 0)?;
    nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_OFD_GETLK(&mut probe)).map_err(to_io)?;
    Ok(i32::from(probe.l_type) != libc::F_UNLCK)
}

/// The type of the mount an open file or directory lies on, as `mountinfo` names it
/// (`ext4`, `fuse.glusterfs`, `fuse.ceph-fuse`, `ceph`, …): the mount is the one whose ID
/// `fdinfo` gives for the descriptor. Both are read from `/proc/thread-self`, the calling
/// thread's mount namespace. `Ok(None)` where /proc does not tell.
pub fn mount_type(fd: BorrowedFd<'_>) -> io::Result<Option<String>> {
    let fdinfo = format!("/proc/thread-self/fdinfo/{}", fd.as_raw_fd());
    let fdinfo = match std::fs::read_to_string(fdinfo) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(id) = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .map(str::trim)
    else {
        return Ok(None);
    };
    let mountinfo = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
    Ok(mount_type_in(&mountinfo, id))
}

/// The filesystem type of mount `id` in the text of a `mountinfo` file: the first field
/// after the ` - ` separator of its line.
fn mount_type_in(mountinfo: &str, id: &str) -> Option<String> {
    mountinfo
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_once(" - "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_string)
}

/// `fsync` on a directory, so a rename in it is durable.
pub fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::fsync(dir).map_err(to_io)
}

/// Sets the permission bits of an open file.
pub fn fchmod(file: &File, mode: u32) -> io::Result<()> {
    nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode)).map_err(to_io)
}

/// Sets the owner and/or group of an open file.
pub fn fchown(file: &File, owner: Option<u32>, group: Option<u32>) -> io::Result<()> {
    nix::unistd::fchown(
        file.as_fd(),
        owner.map(nix::unistd::Uid::from_raw),
        group.map(nix::unistd::Gid::from_raw),
    )
    .map_err(to_io)
}

/// Filesystem sizes of the filesystem holding `fd`, in bytes, as libvirt's dir pool counts
/// them: (total `f_blocks`, used `f_blocks - f_bfree`, free `f_bfree`). Free counts the
/// blocks kept for root too, as libvirt does (its daemon runs as root).
pub fn fs_sizes(fd: BorrowedFd<'_>) -> io::Result<(u64, u64, u64)> {
    let st = nix::sys::statvfs::fstatvfs(fd).map_err(to_io)?;
    let frsize = st.fragment_size();
    let blocks = st.blocks();
    let free = st.blocks_free();
    Ok((
        blocks.saturating_mul(frsize),
        blocks.saturating_sub(free).saturating_mul(frsize),
        free.saturating_mul(frsize),
    ))
}

/// Preferred I/O block size of the filesystem holding `fd`.
pub fn fs_block_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = nix::sys::statvfs::fstatvfs(fd).map_err(to_io)?;
    Ok(st.fragment_size().max(512))
}

/// Names in a directory (excluding `.` and `..`), with their `d_type` when the filesystem
/// reports one.
pub fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Option<nix::dir::Type>)>> {
    let mut d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(to_io)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((name.to_vec(), entry.file_type()));
    }
    Ok(out)
}

/// Makes an OsStr from bytes.
pub fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// `FS_IOC_SETFLAGS` / `FS_IOC_GETFLAGS` for the no-copy-on-write flag.
mod ioctl {
    nix::ioctl_read!(get_flags, b'f', 1, libc::c_long);
    nix::ioctl_write_ptr!(set_flags, b'f', 2, libc::c_long);
    nix::ioctl_write_int!(ficlone, 0x94, 9);
    // FS_IOC_FIEMAP is _IOWR('f', 11, struct fiemap) with the 32-byte header as its size.
    nix::ioctl_readwrite_bad!(
        fiemap,
        nix::request_code_readwrite!(b'f', 11, 32),
        super::Fiemap
    );
}

/// `FS_NOCOW_FL`.
const FS_NOCOW_FL: libc::c_long = 0x0080_0000;
/// `BTRFS_SUPER_MAGIC`.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;

/// Sets the no-copy-on-write attribute on a new, empty file if its filesystem is btrfs
/// (the only one that has it). Returns whether the flag was set.
pub fn set_nocow(file: &File) -> io::Result<bool> {
    let fs = nix::sys::statfs::fstatfs(file.as_fd()).map_err(to_io)?;
    if fs.filesystem_type().0 != BTRFS_SUPER_MAGIC {
        return Ok(false);
    }
    let fd = file.as_raw_fd();
    let mut flags: libc::c_long = 0;
    // SAFETY: `fd` is an open file owned by `file` for the duration of the call, and
    // `flags` is a valid, writable c_long that FS_IOC_GETFLAGS fills in.
    unsafe { ioctl::get_flags(fd, &mut flags) }.map_err(to_io)?;
    flags |= FS_NOCOW_FL;
    // SAFETY: as above; FS_IOC_SETFLAGS only reads `flags`.
    unsafe { ioctl::set_flags(fd, &flags) }.map_err(to_io)?;
    Ok(true)
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): what qemu times its
/// PBKDF2 calibration with, so that other work on the machine does not shorten the result.
pub fn thread_cpu_time() -> io::Result<std::time::Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_err(to_io)?;
    Ok(std::time::Duration::from(t))
}

/// The libvirt calls the `virt` crate does not wrap (feature `libvirt`); the bridge is the
/// only module that may name this one (tests/architecture.rs).
#[cfg(feature = "libvirt")]
pub mod libvirt {
    use std::ffi::CStr;

    use virt::connect::Connect;
    use virt::sys;

    /// The typed parameter libvirt's daemons compare with their system token
    /// (`VIR_CONNECT_IDENTITY_SYSTEM_TOKEN`).
    const SYSTEM_TOKEN: &CStr = c"system.token";

    /// `virConnectSetIdentity(conn, [system.token = token], 1, 0)`: the connection's identity
    /// carries the daemon's system token, as libvirt's own daemons present it to each other.
    /// The token is only read (and not kept) by libvirt; a refusal is libvirt's last error,
    /// which never holds the token.
    pub fn set_system_token(conn: &Connect, token: &CStr) -> Result<(), virt::error::Error> {
        // SAFETY: an all-zero virTypedParameter is a valid value (an empty field name,
        // type 0, a zero union); every field is set below.
        let mut param: sys::virTypedParameter = unsafe { std::mem::zeroed() };
        let name = SYSTEM_TOKEN.to_bytes_with_nul();
        // The field holds 80 bytes; the name and its NUL take 13.
        for (dst, src) in param.field.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        param.type_ = sys::VIR_TYPED_PARAM_STRING as libc::c_int;
        param.value.s = token.as_ptr().cast_mut();
        // The pointer of an open connection (`as_ptr` panics on a closed one), kept open by
        // the borrow for the whole call.
        let ptr = conn.as_ptr();
        // SAFETY: `ptr` is a live connection (above); `param` is one initialised parameter
        // whose string points into `token`, alive and NUL-terminated until the call returns;
        // libvirt copies what it sends and neither frees nor writes through the pointer.
        let rc = unsafe { sys::virConnectSetIdentity(ptr, &mut param, 1, 0) };
        if rc < 0 {
            return Err(virt::error::Error::last_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_type_is_the_field_after_the_separator() {
        let mountinfo = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                         70 22 0:40 / /mnt/a rw,nosuid - fuse.ceph-fuse ceph-fuse rw,allow_other\n\
                         71 22 0:41 / /mnt/b rw - fuse.glusterfs srv:/qvol rw\n";
        assert_eq!(
            mount_type_in(mountinfo, "70").as_deref(),
            Some("fuse.ceph-fuse")
        );
        assert_eq!(
            mount_type_in(mountinfo, "71").as_deref(),
            Some("fuse.glusterfs")
        );
        assert_eq!(mount_type_in(mountinfo, "22").as_deref(), Some("ext4"));
        assert_eq!(mount_type_in(mountinfo, "7"), None);
    }

    #[test]
    fn a_directory_reports_the_type_of_its_mount() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_dir(dir.path()).unwrap();
        let kind = mount_type(fd.as_fd()).unwrap().expect("/proc tells");
        assert!(!kind.is_empty() && !kind.contains(' '), "{kind}");
    }

    #[test]
    fn a_shared_lock_keeps_out_an_exclusive_one_but_not_another_shared_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let reader = File::open(&path).unwrap();
        let other = File::options().read(true).write(true).open(&path).unwrap();
        assert!(!locked_by_other(&other).unwrap());
        assert!(try_lock_shared(&reader, 0, 1).unwrap());
        assert!(locked_by_other(&other).unwrap());
        assert!(!try_lock_exclusive(&other).unwrap());
        assert!(try_lock_shared(&other, 0, 1).unwrap());
        drop(reader);
        drop(other);
        let writer = File::options().read(true).write(true).open(&path).unwrap();
        assert!(try_lock_exclusive(&writer).unwrap());
        let late = File::open(&path).unwrap();
        assert!(!try_lock_shared(&late, 0, 1).unwrap());
    }
}
