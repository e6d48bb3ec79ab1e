//! Raw volumes: a plain file of `capacity` bytes.
//!
//! Owns: the raw preallocation modes — sparse (`off`), the first `reserve` bytes fallocated
//! (libvirt's partial allocation), fully fallocated (`falloc`) or zero-filled (`full`) — and
//! the raw LUKS volume (qemu's `-f luks`): the header at 0, the payload after it, the file
//! sized and preallocated first and the header written into it, as qemu-img does.
//! Must not: name or place the file.

use super::Error;
use super::file::{ImageFile, WriteReport};
use super::luks::LuksHeader;
use super::prealloc::{allocate_or_zero, reserve as reserve_space, write_zeroes, zero_holes};
use crate::model::Preallocation;

/// Writes a raw volume of `capacity` bytes into an empty `file`: the file gets its length,
/// then its preallocation ([`finish`]).
///
/// `reserve` bytes at the start are fallocated on top of `Off` (partial allocation).
pub fn create<F: ImageFile + ?Sized>(
    file: &F,
    capacity: u64,
    prealloc: Preallocation,
    reserve: u64,
) -> Result<WriteReport, Error> {
    if prealloc == Preallocation::Metadata {
        return Err(Error::RawMetadata);
    }
    if prealloc == Preallocation::Full {
        // Claimed first, then written: a full filesystem fails here, before any zero.
        reserve_space(file, 0, capacity)?;
        write_zeroes(file, 0, capacity)?;
        set_len(file, capacity)?;
        return Ok(WriteReport::default());
    }
    set_len(file, capacity)?;
    finish(file, capacity, prealloc, reserve)
}

/// Writes a raw LUKS volume with a payload of `capacity` bytes into an empty `file`: the
/// whole file (header and payload) gets its length and preallocation, the payload's first
/// `reserve` bytes are reserved on top of `Off`, then the header is written at 0.
pub fn create_luks<F: ImageFile + ?Sized>(
    file: &F,
    header: &LuksHeader,
    capacity: u64,
    prealloc: Preallocation,
    reserve: u64,
) -> Result<WriteReport, Error> {
    let total = header
        .length
        .checked_add(capacity)
        .ok_or(Error::EncryptedTooLarge(capacity))?;
    let mut report = WriteReport::default();
    match prealloc {
        Preallocation::Metadata => return Err(Error::RawMetadata),
        Preallocation::Full => {
            reserve_space(file, 0, total)?;
            write_zeroes(file, 0, total)?;
            set_len(file, total)?;
        }
        Preallocation::Falloc => {
            set_len(file, total)?;
            allocate_or_zero(file, 0, total, &mut report)?;
        }
        Preallocation::Off => {
            set_len(file, total)?;
            allocate_or_zero(file, header.length, reserve.min(capacity), &mut report)?;
        }
    }
    super::qcow2::write::write_luks(file, 0, header)?;
    file.sync().map_err(Error::Syncing)?;
    Ok(report)
}

/// Resizes a raw volume to `new_len` bytes: grows sparse, or with `allocate` reserves the
/// whole file as libvirt does (`posix_fallocate` from 0 to the new size: holes left before
/// are reserved too); shrinks by truncating.
pub fn resize<F: ImageFile + ?Sized>(
    file: &F,
    new_len: u64,
    allocate: bool,
) -> Result<WriteReport, Error> {
    let mut report = WriteReport::default();
    let old_len = file.file_length().map_err(|source| Error::SettingLength {
        len: new_len,
        source,
    })?;
    set_len(file, new_len)?;
    if allocate && new_len > old_len {
        allocate_or_zero(file, 0, new_len, &mut report)?;
    }
    file.sync().map_err(Error::Syncing)?;
    Ok(report)
}

/// Applies a raw volume's preallocation to a file of its length (new, or with data copied
/// in): the whole file reserved (`falloc`), its holes written with zeros (`full`), or the
/// first `reserve` bytes reserved (`off`).
pub fn finish<F: ImageFile + ?Sized>(
    file: &F,
    capacity: u64,
    prealloc: Preallocation,
    reserve: u64,
) -> Result<WriteReport, Error> {
    let mut report = WriteReport::default();
    match prealloc {
        Preallocation::Falloc => allocate_or_zero(file, 0, capacity, &mut report)?,
        Preallocation::Full => zero_holes(file, 0, capacity)?,
        Preallocation::Off | Preallocation::Metadata => {
            allocate_or_zero(file, 0, reserve.min(capacity), &mut report)?;
        }
    }
    Ok(report)
}

fn set_len<F: ImageFile + ?Sized>(file: &F, len: u64) -> Result<(), Error> {
    file.set_len(len)
        .map_err(|source| Error::SettingLength { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::file::NoFallocate;
    use std::os::unix::fs::MetadataExt;

    fn new_file(dir: &tempfile::TempDir) -> std::fs::File {
        std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("v.raw"))
            .unwrap()
    }

    #[test]
    fn sparse_raw_has_no_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let f = new_file(&dir);
        create(&f, 8 << 20, Preallocation::Off, 0).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 8 << 20);
        assert_eq!(m.blocks(), 0);
    }

    #[test]
    fn partial_raw_allocates_the_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let f = new_file(&dir);
        create(&f, 8 << 20, Preallocation::Off, 1 << 20).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 8 << 20);
        assert_eq!(m.blocks() * 512, 1 << 20);
    }

    #[test]
    fn falloc_raw_allocates_everything() {
        let dir = tempfile::tempdir().unwrap();
        let f = new_file(&dir);
        create(&f, 3 << 20, Preallocation::Falloc, 0).unwrap();
        assert_eq!(f.metadata().unwrap().blocks() * 512, 3 << 20);
    }

    #[test]
    fn falloc_raw_without_fallocate_writes_zeroes() {
        let dir = tempfile::tempdir().unwrap();
        let f = NoFallocate(new_file(&dir));
        let report = create(&f, 3 << 20, Preallocation::Falloc, 0).unwrap();
        assert!(report.fell_back_to_zeroes);
        assert_eq!(f.0.metadata().unwrap().blocks() * 512, 3 << 20);
    }

    #[test]
    fn full_raw_of_odd_size_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let f = new_file(&dir);
        create(&f, (1 << 20) + 123, Preallocation::Full, 0).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), (1 << 20) + 123);
        assert!(m.blocks() * 512 >= (1 << 20) + 123);
    }

    #[test]
    fn metadata_raw_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = new_file(&dir);
        assert!(matches!(
            create(&f, 1, Preallocation::Metadata, 0),
            Err(Error::RawMetadata)
        ));
    }
}
