//! The volumes of a pool: what counts as one, finding one, and opening one under its locks.
//!
//! Owns: the one rule for what is a volume (a regular file directly in the pool directory
//! whose name is not hidden; symlinks, directories and devices never are, and are never
//! followed), the one rule for naming a volume by name or by path (its libvirt key),
//! reading what libvirt reports about a volume (capacity from the image; allocation =
//! `st_blocks × 512`; physical = `st_size`), listing, with errors in pool terms; and the
//! locks that keep the changes apart from each other and from QEMU on any host sharing the
//! directory: a change (delete, resize, wipe, upload) holds the whole file exclusively and is
//! refused while anyone holds a lock on it (QEMU's image locks, a copy or download reading
//! it, another change), unless forced; a copy or a download holds [`READER_LOCK_BYTE`]
//! shared, where QEMU never looks. Each change is a submodule, and opens its volume only
//! through this one: `delete` (delete, wipe), `resize` (resize and its journal),
//! `stream` (upload and download).
//! Must not: publish new volumes (that is `create`) or know the daemon's pool states.

mod delete;
mod resize;
mod stream;

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;

use super::dir::{self, EntryKind};
use super::{Error, Pool, names};
use crate::image::{self, ImageInfo};
use crate::xml::volume::Timestamp;

pub use resize::ResizeRequest;
pub use stream::{Download, Upload};

/// A volume as found in the pool.
#[derive(Debug, Clone)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// Absolute path (also the libvirt key).
    pub path: PathBuf,
    /// Guest-visible size.
    pub capacity: u64,
    /// `st_blocks * 512`.
    pub allocation: u64,
    /// `st_size`.
    pub physical: u64,
    /// What the file is.
    pub image: ImageInfo,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// atime, mtime, ctime.
    pub times: [Timestamp; 3],
}

/// What a change does about a volume that another process holds (a running QEMU, a copy or
/// a download, on this host or another one sharing the pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenInUse {
    /// Refuse with [`Error::InUse`] and change nothing (the default).
    #[default]
    Refuse,
    /// Go ahead anyway, with a warning (`--force`).
    Force,
}

/// The byte a copy or download locks shared while it reads a volume. QEMU's image locks
/// live at bytes 100 and up (`raw_apply_lock_bytes`), so a reader never stops a VM from
/// starting, while every change, which locks the whole file, sees it.
pub const READER_LOCK_BYTE: u64 = 0;

/// How a volume's file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Read-only, no lock: to look at it.
    Inspect,
    /// Read-only, [`READER_LOCK_BYTE`] locked shared: to copy or stream it out.
    Read,
    /// Read-write, the whole file locked exclusively: to change it in place.
    Write(WhenInUse),
}

/// What libvirt reports as a file's allocation: `st_blocks × 512`.
pub fn allocation_of(st: &FileStat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512)
}

/// What libvirt reports as a file's physical size: `st_size`.
pub fn physical_of(st: &FileStat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

fn timestamp(sec: i64, nsec: i64) -> Timestamp {
    Timestamp { sec, nsec }
}

impl Pool {
    /// Whether anything (a volume or not) has this name in the pool directory.
    pub(super) fn exists(&self, name: &str) -> Result<bool, Error> {
        match self.dir.stat(name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::ReadingVolume {
                name: name.to_string(),
                source,
            }),
        }
    }

    /// The name of the volume at `path` when it lies directly in this pool's directory (as
    /// given, or once its directory is canonicalized); `None` otherwise. Whether such a
    /// volume exists is not checked.
    pub fn name_of_path(&self, path: &Path) -> Option<String> {
        if !path.is_absolute() {
            return None;
        }
        let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
        let here = dir == self.path()
            || std::fs::canonicalize(dir).is_ok_and(|canonical| canonical == self.path());
        here.then(|| name.to_string())
    }

    /// Maps a volume argument to a checked name: a plain name, or the absolute path of a
    /// file in this pool (virsh accepts a volume's path or key where it takes a name).
    pub fn volume_name(&self, arg: &str) -> Result<String, Error> {
        let name = self
            .name_of_path(Path::new(arg))
            .unwrap_or_else(|| arg.to_string());
        names::check(&name).map_err(|reason| Error::InvalidName {
            name: arg.to_string(),
            reason,
        })?;
        Ok(name)
    }

    /// Looks a volume up by name and reads what libvirt reports about it.
    pub fn volume(&self, name: &str) -> Result<VolumeInfo, Error> {
        self.open_volume(name, Access::Inspect)
            .map(|(_, info)| info)
    }

    /// Opens a volume's file to read its data (a copy's source, a download): read-only, and
    /// locked shared at [`READER_LOCK_BYTE`] for as long as it is open, so that no change
    /// on any host starts meanwhile. A volume being changed is [`Error::InUse`].
    pub(super) fn open_volume_to_read(&self, name: &str) -> Result<(File, VolumeInfo), Error> {
        self.open_volume(name, Access::Read)
    }

    /// Opens a volume's file without following a symlink, and reads what libvirt reports
    /// about it from that same open file.
    fn open_volume(&self, name: &str, access: Access) -> Result<(File, VolumeInfo), Error> {
        let (file, st) = self.open_volume_file(name, access)?;
        let info = self.inspect(name, &file, &st)?;
        Ok((file, info))
    }

    fn in_use(&self, name: &str) -> Error {
        Error::InUse {
            name: name.to_string(),
            pool: self.name.clone(),
        }
    }

    /// Handles a volume someone else holds: refused, or (forced) a warning.
    fn held(&self, name: &str, when: WhenInUse) -> Result<(), Error> {
        match when {
            WhenInUse::Refuse => Err(self.in_use(name)),
            WhenInUse::Force => {
                log::warn!(
                    "volume '{name}' in pool '{}' is in use (another process holds a lock on it); going ahead as forced",
                    self.name
                );
                Ok(())
            }
        }
    }

    /// Opens a volume's file without following a symlink: a missing name is
    /// [`Error::NoVolume`], anything but a regular file [`Error::NotAVolume`]. For writing,
    /// a file with other hard links is refused ([`Error::HardLinked`]), and so is one
    /// another process holds locked ([`Error::InUse`]) unless forced; a file opened to write
    /// or to read stays locked (see [`Access`]) until it is closed.
    fn open_volume_file(&self, name: &str, access: Access) -> Result<(File, FileStat), Error> {
        let write = matches!(access, Access::Write(_));
        let not_a_volume = |what| Error::NotAVolume {
            name: name.to_string(),
            pool: self.name.clone(),
            what,
        };
        let reading = |source| Error::ReadingVolume {
            name: name.to_string(),
            source,
        };
        if name.starts_with('.') {
            // Hidden names are qpool's own temporary files, never volumes.
            return Err(self.no_volume(name));
        }
        let opened = if write {
            self.dir.open_rw(name)
        } else {
            self.dir.open_read(name)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.no_volume(name)),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(not_a_volume("symbolic link"));
            }
            // Only a read-write open reaches this: a directory cannot be opened for writing.
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                return Err(not_a_volume("directory or special file"));
            }
            Err(source) => return Err(reading(source)),
        };
        let st = crate::sys::fstat(file.as_fd()).map_err(reading)?;
        if dir::kind_of(&st) != EntryKind::File {
            return Err(not_a_volume("directory or special file"));
        }
        if write && st.st_nlink > 1 {
            return Err(Error::HardLinked {
                name: name.to_string(),
                pool: self.name.clone(),
                links: st.st_nlink,
            });
        }
        match access {
            Access::Inspect => {}
            // A reader holds one byte shared, which every writer's whole-file lock sees.
            Access::Read => {
                if !crate::sys::try_lock_shared(&file, READER_LOCK_BYTE, 1).map_err(reading)? {
                    return Err(self.in_use(name));
                }
            }
            // A writer holds the whole file locked for as long as it has it open, which
            // QEMU's own image locks (byte ranges from 100 and 200) and other writers
            // respect, on every host where the filesystem carries OFD locks.
            Access::Write(when) => {
                if !crate::sys::try_lock_exclusive(&file).map_err(reading)? {
                    self.held(name, when)?;
                }
            }
        }
        Ok((file, st))
    }

    /// What libvirt reports about an open volume file.
    fn inspect(&self, name: &str, file: &File, st: &FileStat) -> Result<VolumeInfo, Error> {
        let physical = physical_of(st);
        let image = image::probe(file, physical).map_err(|source| Error::InspectingVolume {
            name: name.to_string(),
            source,
        })?;
        Ok(VolumeInfo {
            name: name.to_string(),
            path: self.dir.entry_path(name),
            capacity: image.capacity,
            allocation: allocation_of(st),
            physical,
            image,
            mode: st.st_mode & 0o777,
            uid: st.st_uid,
            gid: st.st_gid,
            times: [
                timestamp(st.st_atime, st.st_atime_nsec),
                timestamp(st.st_mtime, st.st_mtime_nsec),
                timestamp(st.st_ctime, st.st_ctime_nsec),
            ],
        })
    }

    /// The current `(allocation, physical)` of a file in the pool directory that is not a
    /// volume yet (one being built), by the same rules as a volume's.
    pub fn file_sizes(&self, path: &Path) -> Option<(u64, u64)> {
        let name = path.file_name()?;
        let st = self.dir.stat(name.to_str()?).ok()?;
        Some((allocation_of(&st), physical_of(&st)))
    }

    /// Names of the volumes, sorted, without reading them: entries whose names are not
    /// hidden and that are regular files (symlinks are not followed).
    pub fn volume_names(&self) -> Result<Vec<String>, Error> {
        let entries = self
            .dir
            .entries()
            .map_err(|source| self.reading_pool(source))?;
        let mut names = Vec::with_capacity(entries.len());
        for (name, kind) in entries {
            if name.starts_with('.') {
                continue;
            }
            let kind = match kind {
                Some(k) => k,
                None => match self.dir.stat(&name) {
                    Ok(st) => dir::kind_of(&st),
                    Err(_) => continue,
                },
            };
            if kind == EntryKind::File {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// All volumes ([`Pool::volume_names`], each inspected), sorted like virsh sorts them
    /// (case-insensitively).
    pub fn list(&self) -> Result<Vec<VolumeInfo>, Error> {
        let mut out = Vec::new();
        for name in self.volume_names()? {
            match self.volume(&name) {
                Ok(v) => out.push(v),
                // Raced with a delete, or replaced by something that is not a volume.
                Err(Error::NoVolume { .. } | Error::NotAVolume { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_cached_key(|v| (v.name.to_lowercase(), v.name.clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pool::temp_pool as pool;

    #[test]
    fn only_visible_regular_files_are_volumes() {
        let (dir, pool) = pool();
        let d = dir.path();
        std::fs::write(d.join("b.img"), b"x").unwrap();
        std::fs::write(d.join("A.img"), b"x").unwrap();
        std::fs::write(d.join(".hidden"), b"x").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::os::unix::fs::symlink("b.img", d.join("link")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(pool.volume_names().unwrap(), vec!["A.img", "b.img"]);
        let listed: Vec<String> = pool.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(listed, vec!["A.img", "b.img"]);
        assert!(matches!(pool.volume("link"), Err(Error::NotAVolume { .. })));
        assert!(matches!(pool.volume("sub"), Err(Error::NotAVolume { .. })));
        assert!(matches!(pool.volume("fifo"), Err(Error::NotAVolume { .. })));
        assert!(matches!(
            pool.volume(".hidden"),
            Err(Error::NoVolume { .. })
        ));
        assert!(matches!(
            pool.delete("link", WhenInUse::Refuse),
            Err(Error::NotAVolume { .. })
        ));
        assert!(d.join("b.img").exists(), "the link's target is untouched");
    }

    #[test]
    fn a_volume_is_named_by_name_or_by_its_path() {
        let (dir, pool) = pool();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        let path = canonical.join("v.img");
        assert_eq!(pool.volume_name("v.img").unwrap(), "v.img");
        assert_eq!(pool.volume_name(path.to_str().unwrap()).unwrap(), "v.img");
        let dotted = format!("{}/./v.img", canonical.display());
        assert_eq!(pool.volume_name(&dotted).unwrap(), "v.img");
        assert!(pool.volume_name("/elsewhere/v.img").is_err());
        assert_eq!(pool.name_of_path(Path::new("/elsewhere/v.img")), None);
        assert!(pool.volume_name("..").is_err());
    }

    #[test]
    fn allocation_and_physical_follow_libvirts_rules() {
        let (dir, pool) = pool();
        let f = File::create(dir.path().join("s.img")).unwrap();
        f.set_len(1 << 20).unwrap();
        let v = pool.volume("s.img").unwrap();
        assert_eq!(
            (v.capacity, v.physical, v.allocation),
            (1 << 20, 1 << 20, 0)
        );
        assert_eq!(
            pool.file_sizes(&dir.path().join("s.img")),
            Some((0, 1 << 20))
        );
    }
}
