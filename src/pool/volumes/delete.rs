//! The changes that destroy a volume's data: `vol-delete` and `vol-wipe`.
//!
//! Owns: deleting a volume (symlinks and directories refused, never followed; a volume
//! someone holds refused unless forced, and held locked while its name goes, also when it
//! may only be read) and wiping one in place with libvirt's algorithms.
//! Must not: decide how a format is wiped (that is `image::wipe`) or remove anything that is
//! not a volume by its parent's rule.

use std::io;
use std::os::fd::AsFd;

use super::{Access, WhenInUse};
use crate::image;
use crate::model::WipeAlgorithm;
use crate::pool::dir::{self, EntryKind};
use crate::pool::{Error, Pool};

impl Pool {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pool::temp_pool as pool;

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
}
