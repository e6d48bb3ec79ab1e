//! The volumes of a pool: what counts as one, finding one, and changing one in place.
//!
//! Owns: the one rule for what is a volume (a regular file directly in the pool directory
//! whose name is not hidden; symlinks, directories and devices never are, and are never
//! followed), the one rule for naming a volume by name or by path (its libvirt key),
//! reading what libvirt reports about a volume (capacity from the image; allocation =
//! `st_blocks × 512`; physical = `st_size`), listing, delete, resize (libvirt's request
//! rules), wipe, and the byte streams of upload and download, with errors in pool terms;
//! and the locks that keep them apart from each other and from QEMU on any host sharing the
//! directory: a change (delete, resize, wipe, upload) holds the whole file exclusively and is
//! refused while anyone holds a lock on it (QEMU's image locks, a copy or download reading
//! it, another change), unless forced; a copy or a download holds [`READER_LOCK_BYTE`]
//! shared, where QEMU never looks.
//! Must not: publish new volumes (that is `create`) or know the daemon's pool states.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;

use super::dir::{self, EntryKind};
use super::{Error, Pool, ResizeRefusal, names};
use crate::image::{self, Chunk, ImageInfo, VolumeReader, VolumeWriter};
use crate::model::WipeAlgorithm;
use crate::xml::volume::Timestamp;

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

/// A `vol-resize` request, with virsh's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizeRequest {
    /// The size, or the change with `delta`.
    pub capacity: u64,
    /// `--delta`: change by `capacity` (down with `shrink`) instead of to it.
    pub delta: bool,
    /// `--shrink`: a smaller size is allowed.
    pub shrink: bool,
    /// `--allocate`: reserve the new area.
    pub allocate: bool,
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

/// What an in-place resize journals before it starts: enough to undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResizeJournal {
    name: String,
    ino: u64,
    /// The file's length before.
    length: u64,
    /// The volume's capacity before.
    capacity: u64,
}

impl ResizeJournal {
    fn to_text(&self) -> String {
        format!(
            "ino={}\nlength={}\ncapacity={}\nname={}\n",
            self.ino, self.length, self.capacity, self.name
        )
    }

    fn parse(text: &str) -> Option<ResizeJournal> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            fields.insert(k, v);
        }
        Some(ResizeJournal {
            ino: fields.get("ino")?.parse().ok()?,
            length: fields.get("length")?.parse().ok()?,
            capacity: fields.get("capacity")?.parse().ok()?,
            name: fields.get("name")?.to_string(),
        })
    }
}

/// A volume's bytes going out (`vol-download`).
#[derive(Debug)]
pub struct Download {
    reader: VolumeReader,
    name: String,
}

impl Download {
    /// The next chunk: data copied into `buf`, a hole (sparse downloads only), or the end.
    pub fn next_chunk(&mut self, buf: &mut [u8]) -> Result<Chunk, Error> {
        self.reader
            .next_chunk(buf)
            .map_err(|source| Error::Streaming {
                name: self.name.clone(),
                source,
            })
    }
}

/// Bytes coming into a volume (`vol-upload`).
#[derive(Debug)]
pub struct Upload {
    writer: VolumeWriter,
    name: String,
    on_finish: Option<FinishHook>,
    closed: OnClose,
}

/// What runs once an upload has finished well.
struct FinishHook(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for FinishHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinishHook")
    }
}

/// A function run once, when the upload it belongs to is over (finished, failed or
/// dropped).
#[derive(Default)]
struct OnClose(Option<Box<dyn FnOnce() + Send>>);

impl std::fmt::Debug for OnClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnClose(set)"
        } else {
            "OnClose"
        })
    }
}

impl Drop for OnClose {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Upload {
    fn streaming(&self) -> impl FnOnce(image::Error) -> Error + '_ {
        |source| Error::Streaming {
            name: self.name.clone(),
            source,
        }
    }

    /// Writes a data chunk at the current position.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), Error> {
        let result = self.writer.write_data(data);
        result.map_err(self.streaming())
    }

    /// Skips `len` bytes that must read as zeros.
    pub fn write_hole(&mut self, len: u64) -> Result<(), Error> {
        let result = self.writer.write_hole(len);
        result.map_err(self.streaming())
    }

    /// Sets what runs after a successful [`finish`](Self::finish) (a daemon tells its
    /// mirrors that the volume changed).
    pub fn on_finish(mut self, hook: Box<dyn FnOnce() + Send>) -> Self {
        self.on_finish = Some(FinishHook(hook));
        self
    }

    /// Syncs what was written.
    pub fn finish(self) -> Result<(), Error> {
        let Upload {
            writer,
            name,
            on_finish,
            closed,
        } = self;
        let result = writer
            .finish()
            .map_err(|source| Error::Streaming { name, source });
        if result.is_ok()
            && let Some(FinishHook(hook)) = on_finish
        {
            hook();
        }
        drop(closed);
        result
    }

    /// Runs `f` once the upload is over, however it ends (libvirt refreshes the pool then).
    pub fn on_close(mut self, f: impl FnOnce() + Send + 'static) -> Upload {
        self.closed = OnClose(Some(Box::new(f)));
        self
    }
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

    /// Deletes a volume. Symlinks and directories are refused, never followed. A volume
    /// another process holds (a running QEMU, a copy or download reading it, a change) is
    /// [`Error::InUse`] unless forced: the file is held locked while its name goes.
    pub fn delete(&self, name: &str, when: WhenInUse) -> Result<(), Error> {
        let deleting = |source| Error::DeletingVolume {
            name: name.to_string(),
            source,
        };
        let not_found = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        let st = match self.dir.stat(name) {
            Ok(st) => st,
            Err(e) if not_found(&e) => return Err(self.no_volume(name)),
            Err(source) => return Err(deleting(source)),
        };
        let what = match dir::kind_of(&st) {
            EntryKind::File => None,
            EntryKind::Symlink => Some("symbolic link"),
            EntryKind::Other => Some("directory or special file"),
        };
        if let Some(what) = what {
            return Err(Error::NotAVolume {
                name: name.to_string(),
                pool: self.name.clone(),
                what,
            });
        }
        // Locked read-write where we may write it; a file we may only read is still asked
        // whether anyone holds it.
        let held = match self.dir.open_rw(name) {
            Ok(file) => Some((
                crate::sys::try_lock_exclusive(&file).map(|ours| !ours),
                file,
            )),
            Err(e) if not_found(&e) => return Err(self.no_volume(name)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EACCES | libc::EPERM | libc::EROFS)
                ) =>
            {
                match self.dir.open_read(name) {
                    Ok(file) => Some((crate::sys::locked_by_other(&file), file)),
                    Err(e) if not_found(&e) => return Err(self.no_volume(name)),
                    Err(source) => return Err(deleting(source)),
                }
            }
            Err(source) => return Err(deleting(source)),
        };
        let _holding = match held {
            Some((locked, file)) => {
                let same = crate::sys::fstat(file.as_fd())
                    .is_ok_and(|f| f.st_ino == st.st_ino && f.st_dev == st.st_dev);
                if !same {
                    // Replaced between the look and the open: judge it again.
                    return self.delete(name, when);
                }
                if locked.map_err(deleting)? {
                    self.held(name, when)?;
                }
                Some(file)
            }
            None => None,
        };
        self.dir
            .unlink(name)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => self.no_volume(name),
                _ => deleting(source),
            })?;
        log::info!("deleted volume '{name}' from pool '{}'", self.name);
        Ok(())
    }

    /// Resizes a volume (virsh's `vol-resize`): raw grows sparse or reserved and shrinks by
    /// truncation; qcow2 grows natively with the volume's preallocation for the new area
    /// (falloc with `allocate`) and shrinks only when no allocated cluster lies past the end.
    /// Every refusal leaves the file byte-identical. A volume someone holds is refused
    /// unless forced ([`WhenInUse`]).
    pub fn resize_volume(
        &self,
        name: &str,
        req: ResizeRequest,
        when: WhenInUse,
    ) -> Result<VolumeInfo, Error> {
        let info = self.volume(name)?;
        // libvirt refuses a volume in use before it looks at the request.
        let (file, st) = self.open_volume_file(name, Access::Write(when))?;
        let old = info.capacity;
        let refuse = |refusal| Error::InvalidResize {
            name: name.to_string(),
            refusal,
        };
        let new = match (req.delta, req.shrink) {
            (true, true) => old.saturating_sub(req.capacity),
            (true, false) => {
                old.checked_add(req.capacity)
                    .ok_or(refuse(ResizeRefusal::Overflow {
                        old,
                        delta: req.capacity,
                    }))?
            }
            (false, _) => req.capacity,
        };
        // Then libvirt's order: below what the file already uses, then below the capacity
        // without the shrink flag, then a reservation the pool cannot hold.
        if new < info.allocation {
            return Err(refuse(ResizeRefusal::BelowAllocation));
        }
        if new < old && !req.shrink {
            return Err(refuse(ResizeRefusal::ShrinkWithoutFlag));
        }
        if req.allocate && new - info.allocation > self.available()? {
            return Err(refuse(ResizeRefusal::NotEnoughSpace));
        }
        if new == old {
            return Ok(info);
        }
        let journal = ResizeJournal {
            name: name.to_string(),
            ino: st.st_ino,
            length: physical_of(&st),
            capacity: old,
        };
        let open = self.begin_change(&journal)?;
        // Only zeros take time: a full image's new area, or a reservation without fallocate.
        let zeroing = new > old
            && (req.allocate && !self.writing().fallocate
                || image::fills_with_zeros(&file, &info.image));
        let _watch = self.watch(
            &format!("resizing {name}"),
            if zeroing { new - old } else { 0 },
        );
        let resized = image::resize(
            &file,
            &info.image,
            self.path(),
            new,
            req.allocate,
            self.writing(),
        );
        if resized.is_err() {
            // A failed resize leaves what a crash would: undo it the same way.
            self.undo_resize(&file, &journal);
        }
        self.dir
            .close_journal(open)
            .map_err(|source| Error::Journal {
                name: name.to_string(),
                source,
            })?;
        resized.map_err(|source| Error::ResizingVolume {
            name: name.to_string(),
            source,
        })?;
        log::info!(
            "resized volume '{name}' in pool '{}' from {old} to {new} bytes",
            self.name
        );
        self.volume(name)
    }

    /// Journals a resize before it starts. A journal another process left behind (it died)
    /// is resolved first.
    fn begin_change(&self, journal: &ResizeJournal) -> Result<super::dir::Journal, Error> {
        let key = journal.ino.to_string();
        let opening = || self.dir.open_journal(&key, &journal.to_text());
        let journaling = |source| Error::Journal {
            name: journal.name.clone(),
            source,
        };
        match opening() {
            Ok(j) => Ok(j),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.recover_journals()?;
                opening().map_err(|_| Error::InUse {
                    name: journal.name.clone(),
                    pool: self.name.clone(),
                })
            }
            Err(e) => Err(journaling(e)),
        }
    }

    /// Undoes an interrupted resize ([`image::undo_resize`]) of the file the journal names.
    fn undo_resize(&self, file: &File, journal: &ResizeJournal) {
        let same = crate::sys::fstat(file.as_fd()).is_ok_and(|st| st.st_ino == journal.ino);
        if !same {
            return;
        }
        match image::undo_resize(file, journal.length, journal.capacity) {
            Ok(0) => {}
            Ok(removed) => log::warn!(
                "volume '{}' in pool '{}': an interrupted resize left {removed} bytes past the end its metadata references; they were removed",
                journal.name,
                self.name
            ),
            Err(e) => log::warn!(
                "volume '{}': cannot undo an interrupted resize: {}",
                journal.name,
                crate::error::one_line(&e)
            ),
        }
    }

    /// Resolves the journals of resizes whose process died: each volume gets back the length
    /// its metadata references, and the journal goes. A volume someone holds is left alone.
    /// Returns how many journals were resolved.
    pub(super) fn recover_journals(&self) -> Result<usize, Error> {
        let journals = self
            .dir
            .orphan_journals()
            .map_err(|source| self.reading_pool(source))?;
        let mut resolved = 0;
        for open in journals {
            if let Some(journal) = ResizeJournal::parse(&open.text) {
                match self.open_volume_file(&journal.name, Access::Write(WhenInUse::Refuse)) {
                    Ok((file, _)) => self.undo_resize(&file, &journal),
                    Err(Error::InUse { .. }) => continue,
                    Err(e) => log::debug!("journal of '{}': {e}", journal.name),
                }
            }
            if let Err(e) = self.dir.close_journal(open) {
                log::warn!("cannot remove a resize journal: {e}");
            }
            resolved += 1;
        }
        Ok(resolved)
    }

    /// Wipes a volume in place (virsh's `vol-wipe`); see [`image::wipe()`]. A volume someone
    /// holds is refused unless forced ([`WhenInUse`]).
    pub fn wipe_volume(
        &self,
        name: &str,
        algorithm: WipeAlgorithm,
        when: WhenInUse,
    ) -> Result<(), Error> {
        let (file, info) = self.open_volume(name, Access::Write(when))?;
        let total = image::bytes_to_wipe(&file, info.image.format, algorithm);
        let _watch = self.watch(&format!("wiping {name}"), total);
        image::wipe(&file, info.image.format, algorithm, self.writing()).map_err(|source| {
            Error::WipingVolume {
                name: name.to_string(),
                source,
            }
        })?;
        log::info!(
            "wiped volume '{name}' in pool '{}' ({algorithm})",
            self.name
        );
        Ok(())
    }

    /// Opens a volume's file bytes for `vol-download`: `[offset, offset + length)`, length 0
    /// meaning to the end; `sparse` reports holes instead of zeros.
    pub fn download(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        sparse: bool,
    ) -> Result<Download, Error> {
        let (file, _) = self.open_volume(name, Access::Read)?;
        let reader =
            VolumeReader::new(file, offset, length, sparse).map_err(|source| Error::Streaming {
                name: name.to_string(),
                source,
            })?;
        Ok(Download {
            reader,
            name: name.to_string(),
        })
    }

    /// Opens a volume's file for `vol-upload` at `offset`, at most `length` bytes (0: no
    /// limit). A volume someone holds is refused unless forced ([`WhenInUse`]).
    pub fn upload(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        when: WhenInUse,
    ) -> Result<Upload, Error> {
        let (file, info) = self.open_volume(name, Access::Write(when))?;
        image::check_writable(&file, &info.image).map_err(|source| Error::Streaming {
            name: name.to_string(),
            source,
        })?;
        let writer =
            VolumeWriter::new(file, offset, length).map_err(|source| Error::Streaming {
                name: name.to_string(),
                source,
            })?;
        Ok(Upload {
            writer,
            name: name.to_string(),
            on_finish: None,
            closed: OnClose::default(),
        })
    }

    /// `vol-download` into a local file: the bytes move in the kernel; with `sparse` the
    /// volume's holes stay holes in `local`.
    pub fn download_to_file(
        &self,
        name: &str,
        local: &File,
        local_path: &Path,
        offset: u64,
        length: u64,
        sparse: bool,
    ) -> Result<(), Error> {
        let download = self.download(name, offset, length, sparse)?;
        let _watch = self.watch(&format!("downloading {name}"), download.reader.remaining());
        let writing = self.writing();
        download
            .reader
            .copy_to(local, 0, &mut |n| writing.advance(n))
            .map_err(|source| Error::Streaming {
                name: name.to_string(),
                source,
            })?;
        local.sync_all().map_err(|e| Error::LocalFile {
            path: local_path.to_path_buf(),
            writing: true,
            source: image::Error::Syncing(e),
        })
    }

    /// `vol-upload` from a local file: `length` bytes of it (0: all) into the volume at
    /// `offset`; with `sparse` the file's holes are punched into the volume.
    #[allow(clippy::too_many_arguments)]
    pub fn upload_from_file(
        &self,
        name: &str,
        local: File,
        local_path: &Path,
        offset: u64,
        length: u64,
        sparse: bool,
        when: WhenInUse,
    ) -> Result<(), Error> {
        /// Size of the chunks moved between two local files.
        const CHUNK: usize = 4 << 20;
        let local_error = |source| Error::LocalFile {
            path: local_path.to_path_buf(),
            writing: false,
            source,
        };
        let mut upload = self.upload(name, offset, length, when)?;
        let mut reader = VolumeReader::new(local, 0, length, sparse).map_err(local_error)?;
        let _watch = self.watch(&format!("uploading to {name}"), reader.remaining());
        let writing = self.writing();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.next_chunk(&mut buf).map_err(local_error)? {
                Chunk::Data(n) => {
                    upload.write_data(&buf[..n])?;
                    writing.advance(n as u64);
                }
                Chunk::Hole(n) => {
                    upload.write_hole(n)?;
                    writing.advance(n);
                }
                Chunk::End => break,
            }
        }
        upload.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CreateFlags;
    use crate::xml::VolumeDef;

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

    #[test]
    fn resize_applies_virshs_request_rules_before_touching_the_file() {
        let (_dir, pool) = pool();
        let mut def = VolumeDef::new("r.img", 1 << 20);
        def.allocation = Some(0);
        pool.create_volume(&def, CreateFlags::default(), None)
            .unwrap();
        let req = |capacity, delta, shrink| ResizeRequest {
            capacity,
            delta,
            shrink,
            allocate: false,
        };
        let err = pool
            .resize_volume("r.img", req(1 << 19, false, false), WhenInUse::Refuse)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidResize {
                    refusal: ResizeRefusal::ShrinkWithoutFlag,
                    ..
                }
            ),
            "{err}"
        );
        let err = pool
            .resize_volume("r.img", req(u64::MAX, true, false), WhenInUse::Refuse)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidResize { .. }), "{err}");
        assert_eq!(
            pool.resize_volume("r.img", req(1 << 20, true, false), WhenInUse::Refuse)
                .unwrap()
                .capacity,
            2 << 20
        );
        assert_eq!(
            pool.resize_volume("r.img", req(1 << 20, true, true), WhenInUse::Refuse)
                .unwrap()
                .capacity,
            1 << 20
        );
    }

    #[test]
    fn an_unsupported_wipe_algorithm_changes_nothing() {
        let (dir, pool) = pool();
        std::fs::write(dir.path().join("w.img"), b"secret").unwrap();
        let err = pool
            .wipe_volume("w.img", WipeAlgorithm::Gutmann, WhenInUse::Refuse)
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArg);
        assert_eq!(std::fs::read(dir.path().join("w.img")).unwrap(), b"secret");
    }

    #[test]
    fn upload_then_download_move_the_files_bytes() {
        let (dir, pool) = pool();
        let mut def = VolumeDef::new("u.img", 8192);
        def.allocation = Some(0);
        pool.create_volume(&def, CreateFlags::default(), None)
            .unwrap();
        let src = dir.path().join(".src");
        std::fs::write(&src, vec![7u8; 4096]).unwrap();
        pool.upload_from_file(
            "u.img",
            File::open(&src).unwrap(),
            &src,
            4096,
            0,
            false,
            WhenInUse::Refuse,
        )
        .unwrap();
        let out = dir.path().join(".out");
        let local = File::create(&out).unwrap();
        pool.download_to_file("u.img", &local, &out, 4096, 0, false)
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 4096]);
    }
}
