//! Resizing an existing image in place: the format's own way.
//!
//! Owns: choosing how a volume file grows or shrinks: a qcow2 image grows natively with the
//! preallocation it was made with (falloc when asked to allocate), reading through to its
//! backing image's size so the new area reads as zeros, and shrinks only when no cluster
//! past the new end holds data; a raw file grows sparse or reserved and shrinks by
//! truncation.
//! Must not: apply libvirt's request rules (delta, shrink flag) or check free space; the
//! pool does that before calling.

use std::fs::File;
use std::path::Path;

use super::file::{WriteReport, with_target};
use super::guest::{backing_path, open_guest_image};
use super::{Error, ImageInfo, qcow2, raw};
use crate::model::{Preallocation, VolFormat};

/// Resizes the image `file` (described by `info`, in directory `dir`) to `new` bytes.
/// `allocate` reserves the new area; without `fallocate` reservations are written as zeros.
pub fn resize(
    file: &File,
    info: &ImageInfo,
    dir: &Path,
    new: u64,
    allocate: bool,
    fallocate: bool,
) -> Result<WriteReport, Error> {
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
            with_target(file, fallocate, |fill| {
                qcow2::resize::grow(file, fill, new, prealloc, backing_size)
            })
        }
        (VolFormat::Qcow2, Some(_)) => {
            qcow2::resize::shrink(file, new)?;
            Ok(WriteReport::default())
        }
        _ => with_target(file, fallocate, |fill| raw::resize(fill, new, allocate)),
    }
}
