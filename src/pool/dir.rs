//! The directory backend: every filesystem operation on a pool directory.
//!
//! Owns: working relative to one directory file descriptor with `O_NOFOLLOW` (so no
//! operation follows a symlink out of the pool), building new volumes under hidden
//! temporary names that an OFD lock marks as "in progress", publishing them with a
//! no-replace rename, removing the leftovers of interrupted creates, and the locked journals
//! of in-place changes.
//! Must not: parse XML, pick preallocation modes or write image formats.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::{FileStat, SFlag};

use super::names::{JOURNAL_PREFIX, TEMP_PREFIX};
use crate::sys;

/// What a directory entry is, as far as the pool is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: a volume.
    File,
    /// A symbolic link: never followed, never a volume.
    Symlink,
    /// A directory, device, FIFO or socket.
    Other,
}

/// Classifies a `stat` result.
pub fn kind_of(st: &FileStat) -> EntryKind {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => EntryKind::File,
        SFlag::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// `Ok(None)` for the errors that mean a file went away under us: on a shared filesystem
/// another host may publish or discard a temporary file between our listing and our look.
fn gone_is_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESTALE) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// An open pool directory.
#[derive(Debug)]
pub struct PoolDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// A volume being built: a locked, hidden file in the pool directory.
#[derive(Debug)]
pub struct TempVolume {
    /// The open file; its OFD lock tells cleaners the create is in progress.
    pub file: File,
    name: String,
}

impl TempVolume {
    /// The hidden name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A journal: a hidden, locked, synced file that says what an in-place change is doing, so
/// that a change interrupted by a crash can be undone by whoever opens the pool next.
#[derive(Debug)]
pub struct Journal {
    /// The open file; its OFD lock says the change is still running.
    file: File,
    name: String,
    /// What the journal says.
    pub text: String,
}

impl PoolDir {
    /// Opens the directory at `path` (which must exist) and remembers its canonical path.
    pub fn open(path: &Path) -> io::Result<PoolDir> {
        let canonical = std::fs::canonicalize(path)?;
        let fd = sys::open_dir(&canonical)?;
        Ok(PoolDir {
            path: canonical,
            fd,
        })
    }

    /// Canonical absolute path of the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Absolute path of an entry.
    pub fn entry_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `stat` of the directory itself.
    pub fn stat_self(&self) -> io::Result<FileStat> {
        sys::fstat(self.fd.as_fd())
    }

    /// `lstat` of an entry.
    pub fn stat(&self, name: &str) -> io::Result<FileStat> {
        sys::stat_at(self.fd.as_fd(), OsStr::new(name))
    }

    /// Opens an entry for reading without following symlinks.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        sys::open_read_at(self.fd.as_fd(), OsStr::new(name))
    }

    /// Opens an entry read-write without following symlinks.
    pub fn open_rw(&self, name: &str) -> io::Result<File> {
        sys::open_rw_at(self.fd.as_fd(), OsStr::new(name))
    }

    /// Removes an entry (a symlink itself, never its target).
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        sys::unlink_at(self.fd.as_fd(), OsStr::new(name))
    }

    /// (total, used, free) bytes of the filesystem, as libvirt counts them ([`sys::fs_sizes`]).
    pub fn fs_sizes(&self) -> io::Result<(u64, u64, u64)> {
        sys::fs_sizes(self.fd.as_fd())
    }

    /// The type of the mount the directory lies on (`/proc/self/mountinfo`'s name for it).
    pub fn filesystem(&self) -> io::Result<Option<String>> {
        sys::mount_type(self.fd.as_fd())
    }

    /// Fragment size of the filesystem (the unit of allocation).
    pub fn block_size(&self) -> io::Result<u64> {
        sys::fs_block_size(self.fd.as_fd())
    }

    /// Names of the entries, excluding `.` and `..`, with the kind when `d_type` tells it.
    pub fn entries(&self) -> io::Result<Vec<(String, Option<EntryKind>)>> {
        let mut out = Vec::new();
        for (raw, dtype) in sys::read_dir_names(self.fd.as_fd())? {
            let Ok(name) = String::from_utf8(raw) else {
                log::debug!("skipping a directory entry whose name is not UTF-8");
                continue;
            };
            let kind = dtype.map(|t| match t {
                nix::dir::Type::File => EntryKind::File,
                nix::dir::Type::Symlink => EntryKind::Symlink,
                _ => EntryKind::Other,
            });
            out.push((name, kind));
        }
        Ok(out)
    }

    /// Creates a new hidden, locked file to build a volume in.
    pub fn create_temp(&self) -> io::Result<TempVolume> {
        loop {
            let name = format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple());
            let file = match sys::create_new_at(self.fd.as_fd(), OsStr::new(&name)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            if !sys::try_lock_exclusive(&file)? {
                // Someone else locked our fresh file: leave it to them and try another name.
                continue;
            }
            // A cleaner may have taken the lock and removed the file between our create and
            // our lock; only keep it if the name still refers to this very file.
            let ours = sys::fstat(file.as_fd())?;
            match self.stat(&name) {
                Ok(st) if st.st_ino == ours.st_ino && st.st_dev == ours.st_dev => {
                    return Ok(TempVolume { file, name });
                }
                _ => continue,
            }
        }
    }

    /// Publishes a finished temporary file under `name`; fails with `AlreadyExists` rather
    /// than replace anything. The directory is synced so the name is durable.
    pub fn commit(&self, temp: &TempVolume, name: &str) -> io::Result<()> {
        sys::rename_noreplace_at(self.fd.as_fd(), OsStr::new(&temp.name), OsStr::new(name))?;
        sys::sync_dir(self.fd.as_fd())
    }

    /// Removes an unfinished temporary file.
    pub fn discard(&self, temp: TempVolume) -> io::Result<()> {
        let result = self.unlink(&temp.name);
        drop(temp.file);
        result
    }

    /// Writes the journal `key` (its name is [`JOURNAL_PREFIX`] + `key`) holding `text`,
    /// synced and locked, before an in-place change starts. A journal left by a dead process
    /// is replaced.
    pub fn open_journal(&self, key: &str, text: &str) -> io::Result<Journal> {
        let name = format!("{JOURNAL_PREFIX}{key}");
        let file = match sys::create_new_at(self.fd.as_fd(), OsStr::new(&name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another change of this volume is running or was interrupted; refresh the pool",
                ));
            }
            Err(e) => return Err(e),
        };
        if !sys::try_lock_exclusive(&file)? {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        std::os::unix::fs::FileExt::write_all_at(&file, text.as_bytes(), 0)?;
        file.sync_all()?;
        sys::sync_dir(self.fd.as_fd())?;
        Ok(Journal {
            file,
            name,
            text: text.to_string(),
        })
    }

    /// Removes a journal once its change is complete (or undone).
    pub fn close_journal(&self, journal: Journal) -> io::Result<()> {
        let result = self.unlink(&journal.name);
        drop(journal.file);
        result
    }

    /// The journals that no running change holds, each now locked by the caller.
    pub fn orphan_journals(&self) -> io::Result<Vec<Journal>> {
        let mut out = Vec::new();
        for (name, kind) in self.entries()? {
            if !name.starts_with(JOURNAL_PREFIX) || kind == Some(EntryKind::Symlink) {
                continue;
            }
            let file = match sys::open_rw_at(self.fd.as_fd(), OsStr::new(&name)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let Some(locked) = gone_is_none(sys::fstat(file.as_fd()).and_then(|st| {
                Ok(kind_of(&st) == EntryKind::File && sys::try_lock_exclusive(&file)?)
            }))?
            else {
                continue;
            };
            if !locked {
                continue;
            }
            let mut text = String::new();
            io::Read::read_to_string(&mut &file, &mut text)?;
            out.push(Journal { file, name, text });
        }
        Ok(out)
    }

    /// Removes leftovers of interrupted creates: hidden temporary files that no live create
    /// holds locked. Returns how many were removed.
    pub fn remove_leftovers(&self) -> io::Result<usize> {
        let mut removed = 0;
        for (name, kind) in self.entries()? {
            if !name.starts_with(TEMP_PREFIX) || kind == Some(EntryKind::Symlink) {
                continue;
            }
            let file = match sys::open_rw_at(self.fd.as_fd(), OsStr::new(&name)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    log::warn!("cannot inspect leftover {name}: {e}");
                    continue;
                }
            };
            // Another host may have published or discarded it since the listing.
            let Some(ours) = gone_is_none(sys::fstat(file.as_fd()).and_then(|st| {
                Ok(kind_of(&st) == EntryKind::File && sys::try_lock_exclusive(&file)?)
            }))?
            else {
                continue;
            };
            if ours {
                match self.unlink(&name) {
                    Ok(()) => {
                        log::info!(
                            "removed {} left over by an interrupted create",
                            self.entry_path(&name).display()
                        );
                        removed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    /// Whether `fallocate` works on this directory's filesystem (probed on an unnamed or
    /// hidden temporary file that is removed again).
    pub fn probe_fallocate(&self) -> io::Result<bool> {
        let temp = self.create_temp()?;
        let result = sys::fallocate(&temp.file, 0, 4096);
        self.discard(temp)?;
        match result {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}
