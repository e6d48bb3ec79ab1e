//! Copying volumes: file copies that keep holes, reflinks, and format conversion of guest
//! data into a freshly laid-out image.
//!
//! Owns: the data-moving half of `vol-clone` / `vol-create-from`, and the choice between its
//! two ways ([`plan_copy`]): when the new image has the source's format, size, options and
//! preallocation, the file's extents are copied with `copy_file_range` (holes stay holes,
//! reserved extents stay reserved) or shared with a reflink; otherwise the guest data is read
//! through [`GuestImage`] (qcow2 reader, backing chains, compressed clusters) and written
//! where the new image's layout maps it, as `qemu-img convert` does. An encrypted volume is
//! copied as it is (same key) or, given its master key and a new passphrase
//! ([`Reencrypt`]), re-encrypted: a new LUKS header with a new master key, and the guest
//! data read decrypted and written encrypted ([`super::crypt`]).
//! Must not: name, place or publish files, or decide the new image's options.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::file::{WriteReport, Writing, with_target};
use super::guest::{BlockStatus, GuestImage, open_guest_file};
use super::luks::{LuksHeader, Passphrase, SectorCipher};
use super::plan::{ImagePlan, create};
use super::qcow2::{self, Layout, Options};
use super::{Corruption, Error, ImageInfo, Unsupported, crypt, raw};
use crate::model::{Preallocation, VolFormat};

/// The volume a copy reads, opened and inspected by the caller.
#[derive(Debug)]
pub struct Source<'a> {
    /// The open source file.
    pub file: File,
    /// Its path (relative backing names resolve against its directory).
    pub path: &'a Path,
    /// What probing it found.
    pub info: &'a ImageInfo,
    /// Its `st_blocks * 512`.
    pub allocation: u64,
    /// Its `st_size`.
    pub physical: u64,
}

/// What re-encrypting a copy of an encrypted volume takes: the source's master key (its
/// payload cipher, from [`super::unlock`]) and the new volume's passphrase. Neither is
/// printed; both are wiped when dropped.
pub struct Reencrypt {
    /// The source's payload cipher.
    pub source_key: SectorCipher,
    /// The passphrase of the new volume's key slot.
    pub passphrase: Passphrase,
}

impl std::fmt::Debug for Reencrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reencrypt(<keys hidden>)")
    }
}

/// How a planned copy moves the data.
enum How {
    /// The source file's bytes, holes kept, or its blocks shared.
    File {
        src: File,
        reflink: bool,
        exact: bool,
        /// The source is a raw file with (nearly) every block allocated.
        fully_allocated_raw: bool,
        physical: u64,
        src_capacity: u64,
        expected_allocation: u64,
    },
    /// The guest data, read and laid out anew.
    Convert {
        guest: Box<dyn GuestImage + Send>,
        extents: Vec<Range<u64>>,
    },
    /// The guest data, read decrypted and written encrypted under a new key.
    Reencrypt {
        guest: Box<dyn GuestImage + Send>,
        passphrase: Passphrase,
        /// The guest bytes written (every mapped cluster, or the whole raw payload).
        bytes: u64,
    },
}

/// A copy decided before anything is written: the new image and how its data gets there.
pub struct CopyPlan {
    plan: ImagePlan,
    how: How,
}

impl std::fmt::Debug for CopyPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyPlan")
            .field("plan", &self.plan)
            .field("converts", &self.converts())
            .finish()
    }
}

/// Whether two qcow2 option sets make the same image apart from the size and the backing
/// format name (what a file copy would keep).
fn same_image_options(a: &Options, b: &Options) -> bool {
    a.version == b.version
        && a.cluster_size == b.cluster_size
        && a.refcount_bits == b.refcount_bits
        && a.lazy_refcounts == b.lazy_refcounts
        && a.extended_l2 == b.extended_l2
        && a.compression_zstd == b.compression_zstd
        && a.backing.as_ref().map(|(name, _)| name) == b.backing.as_ref().map(|(name, _)| name)
}

/// Decides how the new image `plan` gets the data of `src`. `exact` asks for an exact copy
/// (a clone: the source's own preallocation is kept); `reflink` asks to share blocks, which
/// only a same-format copy can ([`Error::ReflinkConverts`] otherwise). `reencrypt` makes an
/// encrypted copy of an encrypted source under a new key (the new image's format, size and
/// options are then free, as in a conversion). Nothing is written.
pub fn plan_copy(
    src: Source<'_>,
    plan: ImagePlan,
    exact: bool,
    reflink: bool,
    reencrypt: Option<Reencrypt>,
) -> Result<CopyPlan, Error> {
    if let Some(reencrypt) = reencrypt {
        return plan_reencrypt(src, plan, reflink, reencrypt);
    }
    let same_format = match (plan.format(), src.info.format, &src.info.qcow2) {
        (VolFormat::Raw, VolFormat::Raw, _) => true,
        (VolFormat::Qcow2, VolFormat::Qcow2, Some(q)) => {
            let src_prealloc = qcow2::resize::detect_preallocation(&src.file)?;
            plan.qcow2_options()
                .is_some_and(|o| same_image_options(o, &q.options()))
                && plan.capacity() == src.info.capacity
                && (exact || (plan.preallocation() == src_prealloc && plan.reserve() == 0))
        }
        _ => false,
    };
    // Without a new key (see `plan_reencrypt`), an encrypted volume is copied byte for byte
    // (the copy keeps its key), never through its guest data.
    let encrypted = match (src.info.luks.is_some(), plan.encryption().is_some()) {
        (false, false) => false,
        (true, true) => {
            let same_image = match (plan.qcow2_options(), &src.info.qcow2) {
                (Some(o), Some(q)) => same_image_options(o, &q.options()),
                (None, None) => true,
                _ => false,
            };
            if !same_image || plan.capacity() != src.info.capacity {
                return Err(Unsupported::ConvertingEncrypted.into());
            }
            true
        }
        (true, false) => {
            return Err(Unsupported::DecryptingCopy.into());
        }
        (false, true) => return Err(Unsupported::EncryptingCopy.into()),
    };
    let same_format = same_format || encrypted;
    let exact = exact || encrypted;
    if reflink && !(same_format && plan.capacity() == src.info.capacity) {
        return Err(Error::ReflinkConverts);
    }
    if same_format {
        return Ok(CopyPlan {
            how: How::File {
                reflink,
                exact,
                fully_allocated_raw: src.info.format == VolFormat::Raw
                    && src.physical > 0
                    && src.allocation.saturating_mul(100) >= src.physical.saturating_mul(99),
                physical: src.physical,
                src_capacity: src.info.capacity,
                // A file copy keeps the source's layout: the estimate is the source's usage.
                expected_allocation: if reflink { 0 } else { src.allocation },
                src: src.file,
            },
            plan,
        });
    }
    let mut guest = open_guest_file(src.file, src.path, Some(src.info.format))?;
    let extents = data_extents(guest.as_mut(), plan.capacity())?;
    Ok(CopyPlan {
        plan: plan.with_data(&extents)?,
        how: How::Convert { guest, extents },
    })
}

/// [`plan_copy`] of an encrypted source into an encrypted image under a new key: the
/// source's guest data, decrypted, decides the new layout as in a conversion (clusters that
/// read as zeros stay unmapped in a qcow2 image with preallocation off).
fn plan_reencrypt(
    src: Source<'_>,
    plan: ImagePlan,
    reflink: bool,
    reencrypt: Reencrypt,
) -> Result<CopyPlan, Error> {
    if src.info.luks.is_none() || plan.encryption().is_none() {
        return Err(Error::LuksHeaderMismatch);
    }
    if reflink {
        return Err(Error::ReflinkConverts);
    }
    let Reencrypt {
        source_key,
        passphrase,
    } = reencrypt;
    let mut guest = crypt::open_encrypted(src.file, src.path, src.info, source_key)?;
    let extents = match plan.format() {
        // Every sector of a raw LUKS payload is written (a hole reads as garbage).
        VolFormat::Raw => vec![0..plan.capacity()],
        VolFormat::Qcow2 => data_extents(guest.as_mut(), plan.capacity())?,
    };
    let plan = plan.with_data(&extents)?;
    let bytes = match plan.layout() {
        Some(layout) => crypt::qcow2_fill_bytes(layout, plan.capacity()),
        None => plan.capacity(),
    };
    Ok(CopyPlan {
        plan,
        how: How::Reencrypt {
            guest,
            passphrase,
            bytes,
        },
    })
}

impl CopyPlan {
    /// The new image.
    pub fn image(&self) -> &ImagePlan {
        &self.plan
    }

    /// Whether the copy converts (reads guest data) rather than copying the file.
    pub fn converts(&self) -> bool {
        matches!(self.how, How::Convert { .. } | How::Reencrypt { .. })
    }

    /// Whether the copy re-encrypts under a new key.
    pub fn reencrypts(&self) -> bool {
        matches!(self.how, How::Reencrypt { .. })
    }

    /// The expected `st_blocks * 512` of the copy.
    pub fn expected_allocation(&self) -> u64 {
        match &self.how {
            How::File {
                expected_allocation,
                ..
            } => *expected_allocation,
            How::Convert { .. } | How::Reencrypt { .. } => self.plan.expected_allocation(),
        }
    }

    /// The bytes the copy moves: the source's data extents for a file copy (none for a
    /// reflink), the guest data for a conversion.
    pub fn bytes_to_copy(&self) -> u64 {
        match &self.how {
            How::File { reflink: true, .. } => 0,
            How::File {
                expected_allocation,
                ..
            } => *expected_allocation,
            How::Convert { extents, .. } => extents.iter().map(|e| e.end - e.start).sum(),
            How::Reencrypt { bytes, .. } => *bytes,
        }
    }

    /// Writes the copy into the empty `dst` and syncs it. Without `fallocate`,
    /// reservations are written as zeros; the bytes copied are reported to `writing`'s
    /// progress.
    pub fn write(&mut self, dst: &File, writing: Writing<'_>) -> Result<WriteReport, Error> {
        let plan = &self.plan;
        let report = match &mut self.how {
            How::File {
                src,
                reflink,
                exact,
                fully_allocated_raw,
                physical,
                src_capacity,
                ..
            } => {
                if *reflink {
                    self::reflink(src, dst)?;
                } else {
                    copy_sparse(src, dst, *exact, writing)?;
                }
                let mut report = WriteReport::default();
                if plan.format() == VolFormat::Raw && !*exact {
                    report = finish_raw(dst, plan, *src_capacity, writing)?;
                }
                if plan.format() == VolFormat::Raw && *exact && *fully_allocated_raw {
                    // A fully allocated raw source gives a fully allocated copy, even where
                    // the filesystem cannot tell reserved blocks from holes.
                    if let Err(e) = crate::sys::fallocate_keep_size(dst, 0, *physical) {
                        log::debug!("cannot reserve the copy: {e}");
                    }
                }
                if plan.format() == VolFormat::Qcow2
                    && matches!(
                        plan.preallocation(),
                        Preallocation::Falloc | Preallocation::Full
                    )
                {
                    // A preallocated copy stays preallocated whatever the filesystem could
                    // tell about the source's reserved extents: its data clusters are
                    // reserved (a no-op where the copy already holds them).
                    for r in qcow2::resize::data_cluster_extents(dst)? {
                        if let Err(e) =
                            crate::sys::fallocate_keep_size(dst, r.start, r.end - r.start)
                        {
                            log::debug!("cannot reserve the copy: {e}");
                            break;
                        }
                    }
                }
                report
            }
            How::Convert { guest, extents } => match plan.layout() {
                Some(layout) => {
                    let report = create(plan, dst, writing)?;
                    fill_qcow2(guest.as_mut(), extents, layout, dst, writing)?;
                    report
                }
                None => {
                    dst.set_len(plan.capacity())
                        .map_err(|source| Error::SettingLength {
                            len: plan.capacity(),
                            source,
                        })?;
                    fill_raw(guest.as_mut(), extents, dst, writing)?;
                    allocate_first_block(dst, plan.capacity())?;
                    finish_raw(dst, plan, plan.capacity(), writing)?
                }
            },
            How::Reencrypt {
                guest, passphrase, ..
            } => write_reencrypted(plan, guest.as_mut(), passphrase, dst, writing)?,
        };
        dst.sync_all().map_err(Error::Syncing)?;
        Ok(report)
    }
}

/// Writes the re-encrypted copy `plan` into the empty `dst`: a new LUKS header (a new master
/// key, its slot under `passphrase`, PBKDF2 at the plan's iteration time), the image around
/// it as a fresh encrypted image of the plan is written, then the guest data of `guest`
/// encrypted with the new key.
fn write_reencrypted(
    plan: &ImagePlan,
    guest: &mut dyn GuestImage,
    passphrase: &Passphrase,
    dst: &File,
    writing: Writing<'_>,
) -> Result<WriteReport, Error> {
    let encryption = plan.encryption().ok_or(Error::LuksHeaderMismatch)?;
    let header = LuksHeader::new(passphrase, &encryption.cipher, encryption.iter_time_ms)?;
    if header.length != plan.luks_length() {
        return Err(Error::LuksHeaderMismatch);
    }
    let key = header.payload_cipher().ok_or(Error::LuksHeaderMismatch)?;
    match plan.layout() {
        Some(layout) => {
            // Every mapped cluster is written next: a `full` image's data area is reserved,
            // not zeroed first.
            let mut layout = layout.clone();
            if layout.preallocation == Preallocation::Full {
                layout.preallocation = Preallocation::Falloc;
            }
            let report = with_target(dst, writing, |target| {
                qcow2::write::write(
                    &layout,
                    target,
                    plan.reserve(),
                    Some(qcow2::write::LuksArea::New(&header)),
                )
            })?;
            crypt::fill_qcow2(guest, &layout, plan.capacity(), &key, dst, writing)?;
            Ok(report)
        }
        None => {
            // Every payload byte is written next: reserving it first is all the
            // preallocation there is to do.
            let report = with_target(dst, writing, |target| {
                raw::create_luks(target, &header, plan.capacity(), Preallocation::Falloc, 0)
            })?;
            crypt::fill_raw(guest, header.length, plan.capacity(), &key, dst, writing)?;
            Ok(report)
        }
    }
}

/// Applies a raw volume's preallocation after its data was copied in: the first `reserve`
/// bytes or the whole file reserved, or the holes written with zeros for `full`.
fn finish_raw(
    file: &File,
    plan: &ImagePlan,
    copied_len: u64,
    writing: Writing<'_>,
) -> Result<WriteReport, Error> {
    let len = plan.capacity().max(copied_len);
    file.set_len(len)
        .map_err(|source| Error::SettingLength { len, source })?;
    with_target(file, writing, |target| {
        raw::finish(
            target,
            plan.capacity(),
            plan.preallocation(),
            plan.reserve(),
        )
    })
}

/// Size of the buffer guest data moves through.
const CHUNK: u64 = 4 << 20;

fn write_error(offset: u64) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::WritingMetadata { offset, source }
}

/// Copies all of `src` into the empty `dst`, keeping holes: written extents of the source
/// are copied in the kernel; reserved-but-unwritten ones (FIEMAP) hold only zeros, so an
/// exact copy (`keep_reserved`) reserves them in the copy without reading them and any other
/// copy leaves them holes (its own preallocation is applied afterwards). Where FIEMAP is
/// unavailable, SEEK_DATA decides (and may call reserved, never written blocks holes:
/// callers that know the source was preallocated reserve the copy themselves).
fn copy_sparse(
    src: &File,
    dst: &File,
    keep_reserved: bool,
    writing: Writing<'_>,
) -> Result<(), Error> {
    let len = src.metadata().map_err(Error::ReadingImage)?.len();
    let extents = match crate::sys::allocated_extents(src, len).map_err(Error::ReadingImage)? {
        Some(extents) => extents,
        None => crate::sys::data_ranges(src, 0, len)
            .map_err(Error::ReadingImage)?
            .into_iter()
            .map(|r| (r.start, r.end, false))
            .collect(),
    };
    for (start, end, unwritten) in extents {
        if unwritten && !keep_reserved {
            continue;
        }
        if unwritten {
            // Reserved, never written: reserve it in the copy too, nothing to read.
            crate::sys::fallocate_keep_size(dst, start, end - start).map_err(|source| {
                Error::Allocating {
                    offset: start,
                    len: end - start,
                    source,
                }
            })?;
        } else {
            crate::sys::copy_span(
                src,
                dst,
                crate::sys::Span::same(start, end - start),
                &mut |n| writing.advance(n),
            )
            .map_err(write_error(start))?;
        }
    }
    dst.set_len(len)
        .map_err(|source| Error::SettingLength { len, source })
}

/// Shares all of `src`'s blocks with the empty `dst` (FICLONE).
fn reflink(src: &File, dst: &File) -> Result<(), Error> {
    crate::sys::reflink(src, dst).map_err(|source| {
        if matches!(
            source.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(libc::EXDEV) | Some(libc::EINVAL) | Some(libc::ENOTTY)
        ) {
            Error::NoReflink(source)
        } else {
            Error::WritingMetadata { offset: 0, source }
        }
    })
}

/// Blocks of guest data that read as zeros are left out of a conversion, as `qemu-img
/// convert` leaves them out (its default `-S 4k`): holes stay holes, and a raw file's
/// reserved but never written blocks stay unallocated in the copy.
const ZERO_BLOCK: u64 = 4096;

/// The runs of guest bytes below `limit` that hold data, as `Range`s of bytes: what the
/// image maps as data, less the aligned [`ZERO_BLOCK`]s of it that read as zeros.
fn data_extents(src: &mut dyn GuestImage, limit: u64) -> Result<Vec<Range<u64>>, Error> {
    let end = limit.min(src.size());
    let mut mapped: Vec<Range<u64>> = Vec::new();
    let mut at = 0;
    while at < end {
        let (status, len) = src.status(at, end - at)?;
        let next = (at + len.max(1)).min(end);
        if status == BlockStatus::Data {
            push_range(&mut mapped, at..next);
        }
        at = next;
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(0)];
    for extent in mapped {
        let mut at = extent.start;
        while at < extent.end {
            let n = (extent.end - at).min(CHUNK);
            let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
            src.read_at(chunk, at)?;
            let mut block = at;
            while block < at + n {
                let block_end = ((block / ZERO_BLOCK + 1) * ZERO_BLOCK).min(at + n);
                let bytes = &chunk[usize::try_from(block - at).unwrap_or(0)
                    ..usize::try_from(block_end - at).unwrap_or(0)];
                if bytes.iter().any(|&b| b != 0) {
                    push_range(&mut out, block..block_end);
                }
                block = block_end;
            }
            at += n;
        }
    }
    Ok(out)
}

/// Appends `r` to sorted, disjoint `ranges`, merging it with the last one when they touch.
fn push_range(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    match ranges.last_mut() {
        Some(prev) if prev.end == r.start => prev.end = r.end,
        _ => ranges.push(r),
    }
}

/// The guest clusters (of `cluster_size`) that hold any of `extents`, merged.
pub fn clusters_of(extents: &[Range<u64>], cluster_size: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for e in extents {
        let first = e.start / cluster_size;
        let end = e.end.div_ceil(cluster_size);
        match out.last_mut() {
            Some(prev) if prev.end >= first => prev.end = prev.end.max(end),
            _ => out.push(first..end),
        }
    }
    out
}

/// Copies guest bytes `range` of `src` to `dst`, guest offset `g` going to `host_of(g)`.
fn copy_guest(
    src: &mut dyn GuestImage,
    dst: &File,
    range: Range<u64>,
    host_of: impl Fn(u64) -> u64,
    buf: &mut [u8],
    progress: Writing<'_>,
) -> Result<(), Error> {
    let mut at = range.start;
    while at < range.end {
        let n = (range.end - at).min(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
        src.read_at(chunk, at)?;
        let host = host_of(at);
        dst.write_all_at(chunk, host).map_err(write_error(host))?;
        progress.advance(n);
        at += n;
    }
    Ok(())
}

/// Writes the guest data `extents` of `src` into a new qcow2 image whose metadata `layout`
/// has already been written to `dst`: each extent goes to the host clusters the layout maps
/// its guest clusters to.
fn fill_qcow2(
    src: &mut dyn GuestImage,
    extents: &[Range<u64>],
    layout: &Layout,
    dst: &File,
    writing: Writing<'_>,
) -> Result<(), Error> {
    let cs = layout.cluster_size();
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(0)];
    let mut runs = layout.data_runs.iter().peekable();
    for extent in extents {
        let mut at = extent.start;
        while at < extent.end {
            let cluster = at / cs;
            while runs.peek().is_some_and(|r| r.guest + r.count <= cluster) {
                runs.next();
            }
            let run = *runs
                .peek()
                .filter(|r| r.guest <= cluster)
                .ok_or(Corruption::UnmappedCluster(cluster))?;
            let run_end = (run.guest + run.count) * cs;
            let until = extent.end.min(run_end);
            let base = run.guest * cs;
            let host_base = run.host * cs;
            copy_guest(
                src,
                dst,
                at..until,
                |g| host_base + (g - base),
                &mut buf,
                writing,
            )?;
            at = until;
        }
    }
    Ok(())
}

/// Writes zeros into the first block of a converted raw file when it is a hole, as
/// `qemu-img convert` does (qemu allocates it when it creates a raw file, so that the
/// alignment of the file can be probed): 4 KiB, or 512 bytes of a smaller file.
fn allocate_first_block(dst: &File, size: u64) -> Result<(), Error> {
    let len = if size < 4096 { 512.min(size) } else { 4096 };
    if len == 0
        || !crate::sys::data_ranges(dst, 0, len)
            .map_err(Error::ReadingImage)?
            .is_empty()
    {
        return Ok(());
    }
    dst.write_all_at(&vec![0u8; usize::try_from(len).unwrap_or(0)], 0)
        .map_err(write_error(0))
}

/// Writes the guest data `extents` of `src` into a raw file at the same offsets.
fn fill_raw(
    src: &mut dyn GuestImage,
    extents: &[Range<u64>],
    dst: &File,
    writing: Writing<'_>,
) -> Result<(), Error> {
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(0)];
    for extent in extents {
        copy_guest(src, dst, extent.clone(), |g| g, &mut buf, writing)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_of_merges_touching_extents() {
        assert_eq!(
            clusters_of(&[0..10, 100..200, 65536..65537, 131072..200000], 65536),
            vec![0..4]
        );
        assert_eq!(
            clusters_of(&[0..1, 300_000..300_001], 65536),
            vec![0..1, 4..5]
        );
    }
}
