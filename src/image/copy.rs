//! Copying volumes: file copies that keep holes, reflinks, and format conversion of guest
//! data into a freshly laid-out image.
//!
//! Owns: the data-moving half of `vol-clone` / `vol-create-from`. A same-format copy moves
//! the file's data extents with `copy_file_range` (holes stay holes); a reflink shares the
//! blocks; a conversion reads the guest data through [`GuestImage`] (qcow2 reader, backing
//! chains, compressed clusters) and writes it where the new image's layout maps it.
//! Must not: name, place or publish files, or decide the new image's options.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use super::qcow2::Layout;
use super::{BlockStatus, Error, GuestImage};

/// Size of the buffer guest data moves through.
const CHUNK: u64 = 4 << 20;

fn writing(offset: u64) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::WritingMetadata { offset, source }
}

/// Copies all of `src` into the empty `dst`, keeping holes: written extents of the source
/// are copied in the kernel, reserved-but-unwritten ones (FIEMAP) are reserved in the copy
/// without reading them. Where FIEMAP is unavailable, SEEK_DATA decides (and may call
/// reserved, never written blocks holes: callers that know the source was preallocated
/// reserve the copy themselves).
pub fn copy_sparse(src: &File, dst: &File) -> Result<(), Error> {
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
            crate::sys::copy_range(src, dst, start, end - start).map_err(writing(start))?;
        }
    }
    dst.set_len(len)
        .map_err(|source| Error::SettingLength { len, source })
}

/// Shares all of `src`'s blocks with the empty `dst` (FICLONE).
pub fn reflink(src: &File, dst: &File) -> Result<(), Error> {
    crate::sys::reflink(src, dst).map_err(|source| {
        if matches!(
            source.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(libc::EXDEV) | Some(libc::EINVAL) | Some(libc::ENOTTY)
        ) {
            Error::Unsupported(format!(
                "reflinks on this filesystem ({source}); copy without --reflink"
            ))
        } else {
            Error::WritingMetadata { offset: 0, source }
        }
    })
}

/// The runs of guest bytes below `limit` that hold data, as `Range`s of bytes.
pub fn data_extents(src: &mut dyn GuestImage, limit: u64) -> Result<Vec<Range<u64>>, Error> {
    let end = limit.min(src.size());
    let mut out: Vec<Range<u64>> = Vec::new();
    let mut at = 0;
    while at < end {
        let (status, len) = src.status(at, end - at)?;
        let next = (at + len.max(1)).min(end);
        if status == BlockStatus::Data {
            match out.last_mut() {
                Some(prev) if prev.end == at => prev.end = next,
                _ => out.push(at..next),
            }
        }
        at = next;
    }
    Ok(out)
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
) -> Result<(), Error> {
    let mut at = range.start;
    while at < range.end {
        let n = (range.end - at).min(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
        src.read_at(chunk, at)?;
        let host = host_of(at);
        dst.write_all_at(chunk, host).map_err(writing(host))?;
        at += n;
    }
    Ok(())
}

/// Writes the guest data `extents` of `src` into a new qcow2 image whose metadata `layout`
/// has already been written to `dst`: each extent goes to the host clusters the layout maps
/// its guest clusters to.
pub fn fill_qcow2(
    src: &mut dyn GuestImage,
    extents: &[Range<u64>],
    layout: &Layout,
    dst: &File,
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
            let run = *runs.peek().filter(|r| r.guest <= cluster).ok_or_else(|| {
                Error::CorruptImage(format!("guest cluster {cluster} has no mapping"))
            })?;
            let run_end = (run.guest + run.count) * cs;
            let until = extent.end.min(run_end);
            let base = run.guest * cs;
            let host_base = run.host * cs;
            copy_guest(src, dst, at..until, |g| host_base + (g - base), &mut buf)?;
            at = until;
        }
    }
    Ok(())
}

/// Writes the guest data `extents` of `src` into a raw file at the same offsets.
pub fn fill_raw(src: &mut dyn GuestImage, extents: &[Range<u64>], dst: &File) -> Result<(), Error> {
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(0)];
    for extent in extents {
        copy_guest(src, dst, extent.clone(), |g| g, &mut buf)?;
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
