//! Resizing a volume in place (`vol-resize`), and the journal that makes it safe to stop.
//!
//! Owns: libvirt's request rules for a resize (delta, shrink, allocate, and the order of its
//! refusals), the journal of an in-place change (written before the file changes, removed
//! after) and who recovers it: a resize whose process died is undone at the next open or
//! refresh of the pool, or when the next resize meets its journal, giving the volume back
//! the length its metadata references.
//! Must not: decide how a format grows or shrinks (that is `image::resize`), or open a
//! volume any other way than its parent's locked open (`Access::Write`).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use super::{Access, WhenInUse, physical_of};
use crate::image;
use crate::pool::{Error, Pool, ResizeRefusal, VolumeInfo};

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

impl Pool {
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
    fn begin_change(&self, journal: &ResizeJournal) -> Result<crate::pool::dir::Journal, Error> {
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
    pub(in crate::pool) fn recover_journals(&self) -> Result<usize, Error> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CreateFlags;
    use crate::xml::VolumeDef;

    use crate::pool::temp_pool as pool;

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
}
