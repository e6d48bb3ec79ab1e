//! Resizing an existing image in place: the format's own way.
//!
//! Owns: choosing how a volume file grows or shrinks: a qcow2 image grows natively with the
//! preallocation it was made with (falloc when asked to allocate), reading through to its
//! backing image's size so the new area reads as zeros, and shrinks only when no cluster
//! past the new end holds data; a raw file grows sparse or reserved and shrinks by
//! truncation (a raw LUKS file to its header plus the new payload). No key is needed: the
//! new area of an encrypted volume reads as qemu's resize leaves it (unallocated qcow2
//! clusters read as zeros, a raw LUKS payload as the decryption of what the file holds).
//! Every resize first passes the write gate (`qcow2::gate`).
//! Must not: apply libvirt's request rules (delta, shrink flag) or check free space; the
//! pool does that before calling.

use std::fs::File;
use std::path::Path;

use super::file::{WriteReport, Writing, with_target};
use super::guest::{backing_path, open_guest_image};
use super::{Error, ImageInfo, qcow2, raw};
use crate::model::{Preallocation, VolFormat};

/// Whether growing this image writes zeros into its new area (a `full` qcow2 image, whose
/// new area is preallocated the same way).
pub fn fills_with_zeros(file: &File, info: &ImageInfo) -> bool {
    info.format == VolFormat::Qcow2
        && qcow2::resize::detect_preallocation(file).is_ok_and(|p| p == Preallocation::Full)
}

/// Undoes a resize of `file` that did not finish (a crash, or a failure half-way): a qcow2
/// image whose header still gives `old_capacity` goes back to the length its metadata
/// references (at least `old_length`); a raw file's length is its capacity, so there is
/// nothing to undo. Returns the bytes removed.
pub fn undo_resize(file: &File, old_length: u64, old_capacity: u64) -> Result<u64, Error> {
    let len = file.metadata().map_err(Error::ReadingImage)?.len();
    match super::probe(file, len)?.format {
        VolFormat::Qcow2 => qcow2::resize::undo_grow(file, old_length, old_capacity),
        VolFormat::Raw => Ok(0),
    }
}

/// Resizes the image `file` (described by `info`, in directory `dir`) to `new` bytes.
/// `allocate` reserves the new area; without `fallocate` reservations are written as zeros,
/// reported to `writing`'s progress like the zeros of a `full` image.
pub fn resize(
    file: &File,
    info: &ImageInfo,
    dir: &Path,
    new: u64,
    allocate: bool,
    writing: Writing<'_>,
) -> Result<WriteReport, Error> {
    super::check_writable(file, info)?;
    match (info.format, &info.qcow2) {
        (VolFormat::Qcow2, Some(q)) if new > info.capacity => {
            let prealloc = if allocate {
                Preallocation::Falloc
            } else {
                qcow2::resize::detect_preallocation(file)?
            };
            let backing_size = match &q.backing_file {
                Some(name) => {
                    let format = q.backing_format.as_deref().and_then(|f| f.parse().ok());
                    Some(open_guest_image(&backing_path(dir, name), format)?.size())
                }
                None => None,
            };
            with_target(file, writing, |fill| {
                qcow2::resize::grow(file, fill, new, prealloc, backing_size)
            })
        }
        (VolFormat::Qcow2, _) => {
            qcow2::resize::shrink(file, new)?;
            Ok(WriteReport::default())
        }
        (VolFormat::Raw, _) => {
            // A raw LUKS volume's capacity is its payload, after the header.
            let len = match &info.luks {
                Some(l) => l
                    .payload_offset()
                    .checked_add(new)
                    .ok_or(Error::EncryptedTooLarge(new))?,
                None => new,
            };
            with_target(file, writing, |fill| raw::resize(fill, len, allocate))
        }
    }
}
