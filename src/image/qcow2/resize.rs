//! Growing and shrinking a qcow2 image in place, natively.
//!
//! Owns: the new L1 size (a larger L1 table moves to the end of the file, as qemu moves
//! it), L2 tables and data clusters for the new area when it is preallocated, zeroing what
//! a backing file would otherwise show through, and the rule that a shrink never drops
//! allocated clusters. Every check happens before the first write, so a refused resize
//! leaves the file byte-identical.
//! Must not: decide the preallocation of the new area (the caller passes it; see
//! [`detect_preallocation`]), or apply libvirt's request rules (`image::resize` and the pool
//! do).

use std::fs::File;

use super::edit::Editor;
use super::spec::{self, OFLAG_COMPRESSED, OFLAG_ZERO};
use crate::image::file::{ImageFile, WriteReport};
use crate::image::prealloc::{self, allocate_or_zero, write_zeroes};
use crate::image::{Error, Unsupported};
use crate::model::Compat;
use crate::model::Preallocation;

/// Geometry of an open image.
struct Geometry {
    cs: u64,
    extended: bool,
    /// u64 words per L2 entry.
    step: usize,
    l2_entries: u64,
}

fn geometry(ed: &Editor<'_>) -> Geometry {
    let cs = ed.cluster_size();
    let extended = ed.header.incompatible_features & spec::INCOMPAT_EXTL2 != 0;
    let step = if extended { 2 } else { 1 };
    Geometry {
        cs,
        extended,
        step,
        l2_entries: cs / (8 * step as u64),
    }
}

/// Whether an L2 entry (first word) maps anything: data, a compressed cluster, or a
/// preallocated zero cluster.
fn is_allocated(entry: u64) -> bool {
    entry & OFLAG_COMPRESSED != 0 || entry & spec::L2E_OFFSET_MASK != 0
}

/// The preallocation an image was made with, judged from its mapping: anything unmapped
/// means off; every guest cluster mapped means metadata, or falloc when the file has at
/// least as many bytes allocated as the mapped data clusters hold (a metadata image the guest
/// has filled completely is then taken for falloc, which is what it has become).
pub fn detect_preallocation(file: &File) -> Result<Preallocation, Error> {
    let ed = Editor::open(file)?;
    let g = geometry(&ed);
    let guest = ed.header.size.div_ceil(g.cs);
    if guest == 0 {
        return Ok(Preallocation::Off);
    }
    let l1 = ed.l1_table()?;
    for (k, &l1_entry) in l1.iter().enumerate() {
        let first = k as u64 * g.l2_entries;
        if first >= guest {
            break;
        }
        let table = l1_entry & spec::L1E_OFFSET_MASK;
        if table == 0 {
            return Ok(Preallocation::Off);
        }
        let entries = ed.l2_table(table)?;
        let count = (guest - first).min(g.l2_entries);
        for i in 0..usize::try_from(count).unwrap_or(0) {
            let entry = entries[i * g.step];
            if entry & OFLAG_COMPRESSED != 0 || entry & spec::L2E_OFFSET_MASK == 0 {
                return Ok(Preallocation::Off);
            }
        }
    }
    use std::os::unix::fs::MetadataExt;
    let allocated = file.metadata().map_err(Error::ReadingImage)?.blocks() * 512;
    Ok(if allocated >= guest * g.cs {
        Preallocation::Falloc
    } else {
        Preallocation::Metadata
    })
}

/// Host byte ranges of every data cluster the image maps (merged), from its L1/L2 tables.
pub fn data_cluster_extents(file: &File) -> Result<Vec<std::ops::Range<u64>>, Error> {
    let ed = Editor::open(file)?;
    let g = geometry(&ed);
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for l1_entry in ed.l1_table()? {
        let table = l1_entry & spec::L1E_OFFSET_MASK;
        if table == 0 {
            continue;
        }
        let entries = ed.l2_table(table)?;
        for entry in entries.iter().step_by(g.step) {
            let host = entry & spec::L2E_OFFSET_MASK;
            if entry & OFLAG_COMPRESSED != 0 || host == 0 {
                continue;
            }
            match out.last_mut() {
                Some(prev) if prev.end == host => prev.end = host + g.cs,
                _ => out.push(host..host + g.cs),
            }
        }
    }
    Ok(out)
}

/// Grows the image to `new_size` bytes (rounded up to 512). The new area gets `prealloc`,
/// its data clusters filled through `fill` (the same file, or a wrapper of it).
/// `backing_size` is the size of the backing image, when there is one: where it reaches
/// into the new area, that area is written as zero clusters so the guest reads zeros there.
pub fn grow(
    file: &File,
    fill: &dyn ImageFile,
    new_size: u64,
    prealloc: Preallocation,
    backing_size: Option<u64>,
) -> Result<WriteReport, Error> {
    let mut ed = Editor::open(file)?;
    let g = geometry(&ed);
    let cs = g.cs;
    let old_size = ed.header.size;
    let new_size =
        crate::units::round_up(new_size, 512).ok_or(Unsupported::SizeTooLarge(new_size))?;
    if new_size <= old_size {
        return Err(Unsupported::NotLarger {
            new: new_size,
            current: old_size,
        }
        .into());
    }
    let old_guest = old_size.div_ceil(cs);
    let new_guest = new_size.div_ceil(cs);
    let new_l1_size = new_guest.div_ceil(g.l2_entries);
    if new_l1_size * spec::ENTRY_SIZE > spec::MAX_L1_BYTES {
        return Err(Error::Options(super::options::Error::L1TooLarge {
            size: new_size,
            cluster_size: cs,
        }));
    }
    let old_l1_size = u64::from(ed.header.l1_size);
    let mut l1 = ed.l1_table()?;
    l1.resize(
        usize::try_from(new_l1_size.max(old_l1_size)).unwrap_or(0),
        0,
    );

    // The guest must read zeros in the new area: the tail of a partial last cluster and
    // whatever part of the backing image the new area would uncover.
    let zero_until = backing_size
        .filter(|&b| b > old_size)
        .map_or(old_guest, |b| b.min(new_size).div_ceil(cs));
    if zero_until > old_guest
        && prealloc == Preallocation::Off
        && ed.header.version == Compat::V0_10
    {
        return Err(Unsupported::Compat010OverlayGrowth.into());
    }
    let mut tables: Vec<(usize, u64, Vec<u64>, bool)> = Vec::new(); // (k, offset, words, new)
    let mut tail_zero: Option<(u64, u64)> = None;
    if old_size % cs != 0 {
        let last = old_guest - 1;
        let k = usize::try_from(last / g.l2_entries).unwrap_or(0);
        let table = l1.get(k).copied().unwrap_or(0) & spec::L1E_OFFSET_MASK;
        let entry = if table == 0 {
            0
        } else {
            let w = ed.l2_table(table)?;
            w[usize::try_from(last % g.l2_entries).unwrap_or(0) * g.step]
        };
        if entry & OFLAG_COMPRESSED != 0 {
            return Err(Unsupported::CompressedPartialCluster.into());
        }
        let host = entry & spec::L2E_OFFSET_MASK;
        if host != 0 && (g.extended || entry & OFLAG_ZERO == 0) {
            tail_zero = Some((host + old_size % cs, cs - old_size % cs));
        } else if host == 0 && entry & OFLAG_ZERO == 0 && backing_size.is_some_and(|b| b > old_size)
        {
            return Err(Unsupported::UnalignedOverlayGrowth.into());
        }
    }

    // Map the new area: every cluster when preallocated, zero clusters over the backing.
    let mut data_runs: Vec<(u64, u64)> = Vec::new(); // (host cluster, count)
    let map_until = if prealloc == Preallocation::Off {
        zero_until
    } else {
        new_guest
    };
    let mut guest = old_guest;
    while guest < map_until {
        let k = usize::try_from(guest / g.l2_entries).unwrap_or(0);
        let table_end = (guest / g.l2_entries + 1) * g.l2_entries;
        let count = map_until.min(table_end) - guest;
        let index = match tables.iter().position(|t| t.0 == k) {
            Some(i) => i,
            None => {
                let existing = l1[k] & spec::L1E_OFFSET_MASK;
                if existing != 0 {
                    tables.push((k, existing, ed.l2_table(existing)?, false));
                } else {
                    let c = ed.alloc(1);
                    let table = vec![0u64; usize::try_from(cs / 8).unwrap_or(0)];
                    tables.push((k, c * cs, table, true));
                    l1[k] = spec::l1_entry(c * cs);
                }
                tables.len() - 1
            }
        };
        let first_index = usize::try_from(guest % g.l2_entries).unwrap_or(0);
        if prealloc == Preallocation::Off {
            for i in 0..usize::try_from(count).unwrap_or(0) {
                let at = (first_index + i) * g.step;
                if g.extended {
                    tables[index].2[at + 1] = spec::SUBCLUSTERS_ZERO;
                } else {
                    tables[index].2[at] = OFLAG_ZERO;
                }
            }
        } else {
            let host = ed.alloc(count);
            for i in 0..count {
                let at = (first_index + usize::try_from(i).unwrap_or(0)) * g.step;
                tables[index].2[at] = spec::l2_entry((host + i) * cs);
                if g.extended {
                    tables[index].2[at + 1] = 0;
                }
            }
            data_runs.push((host, count));
        }
        guest += count;
    }

    // The L1 table: like qemu (qcow2_grow_l1_table), a larger table always moves to new
    // clusters at the end and exactly its entries are written; the old clusters are freed.
    let old_l1_clusters = (old_l1_size * spec::ENTRY_SIZE).div_ceil(cs);
    let l1_bytes = spec::encode_entries(&l1);
    if l1.len() as u64 > old_l1_size {
        let clusters = (l1.len() as u64 * spec::ENTRY_SIZE).div_ceil(cs);
        let start = ed.alloc(clusters);
        if old_l1_size > 0 {
            ed.free(ed.header.l1_table_offset / cs, old_l1_clusters);
        }
        ed.header.l1_table_offset = start * cs;
        ed.write_new(start * cs, l1_bytes);
    } else if !l1.is_empty() {
        let offset = ed.header.l1_table_offset;
        ed.write_in_place(offset, l1_bytes);
    }
    ed.header.l1_size = u32::try_from(l1.len()).unwrap_or(u32::MAX);
    ed.header.size = new_size;
    for (_, offset, table, new) in tables {
        let bytes = spec::encode_entries(&table);
        if new {
            ed.write_new(offset, bytes);
        } else {
            ed.write_in_place(offset, bytes);
        }
    }
    if let Some((offset, len)) = tail_zero {
        // Like qemu: the bytes past the old end of the last cluster are written with zeros.
        ed.write_in_place(offset, vec![0u8; usize::try_from(len).unwrap_or(0)]);
    }

    // New data clusters read as zeros: holes past the old end of the file, reserved or
    // written as the mode asks, before anything references them.
    let mut report = WriteReport::default();
    // The file must reach the last new data cluster (metadata mode leaves them as holes);
    // metadata written past the end extends it by itself, exactly as far as qemu's does.
    let end = data_runs
        .iter()
        .map(|&(host, count)| (host + count) * cs)
        .max()
        .unwrap_or(0);
    if file.file_length().map_err(Error::ReadingImage)? < end {
        file.set_len(end)
            .map_err(|source| Error::SettingLength { len: end, source })?;
    }
    // Reserved before anything references it (falloc needs no more; full claims its space
    // before its zeros), so a full filesystem fails the resize before the header changes.
    for &(host, count) in &data_runs {
        match prealloc {
            Preallocation::Falloc => {
                allocate_or_zero(fill, host * cs, count * cs, &mut report)?;
            }
            Preallocation::Full => prealloc::reserve(fill, host * cs, count * cs)?,
            Preallocation::Off | Preallocation::Metadata => {}
        }
    }
    ed.commit()?;
    // The zeros of full preallocation go into space already reserved and referenced: an
    // interruption now leaves a complete image whose new area reads as zeros anyway.
    if prealloc == Preallocation::Full {
        for (host, count) in data_runs {
            write_zeroes(fill, host * cs, count * cs)?;
        }
        fill.sync().map_err(Error::Syncing)?;
    }
    Ok(report)
}

/// The end of everything the header of an image references, up to its L2 tables: the header
/// cluster, the refcount table and its refcount blocks, the L1 table and its L2 tables. (Data
/// clusters lie below their L2 tables' end in images qpool grows, and an interrupted grow
/// adds no L2 entry before its header.)
fn metadata_end(file: &File) -> Result<u64, Error> {
    let ed = Editor::open(file)?;
    let cs = ed.cluster_size();
    let h = &ed.header;
    let mut end = cs;
    end = end.max(h.refcount_table_offset + u64::from(h.refcount_table_clusters) * cs);
    for block in ed.refcount_block_offsets() {
        end = end.max(block + cs);
    }
    if h.l1_size > 0 {
        end = end.max(h.l1_table_offset + u64::from(h.l1_size) * spec::ENTRY_SIZE);
        for entry in ed.l1_table()? {
            let table = entry & spec::L1E_OFFSET_MASK;
            if table != 0 {
                end = end.max(table + cs);
            }
        }
    }
    Ok(end)
}

/// Undoes a grow that did not finish: while the header still gives `old_size`, nothing the
/// grow added past `old_length` is referenced except refcount structures it may already
/// have linked in, so the file is cut back to the larger of `old_length` and the end of what
/// the header references. Returns the bytes removed (0 when the grow had finished, or there
/// is no tail).
pub fn undo_grow(file: &File, old_length: u64, old_size: u64) -> Result<u64, Error> {
    let prefix =
        crate::image::read_prefix(file, spec::V3_HEADER_LENGTH).map_err(Error::ReadingHeader)?;
    // A header that does not decode was never written by the grow (the gate refused it).
    let Ok(header) = spec::Header::decode(&prefix) else {
        return Ok(0);
    };
    if header.size != old_size {
        return Ok(0);
    }
    let len = file.metadata().map_err(Error::ReadingImage)?.len();
    let keep = old_length.max(metadata_end(file)?);
    if len <= keep {
        return Ok(0);
    }
    file.set_len(keep)
        .map_err(|source| Error::SettingLength { len: keep, source })?;
    file.sync_all().map_err(Error::Syncing)?;
    Ok(len - keep)
}

/// Shrinks the image to `new_size` bytes (rounded up to 512), refusing when any cluster
/// past the new end is allocated. Only the header changes.
pub fn shrink(file: &File, new_size: u64) -> Result<(), Error> {
    let mut ed = Editor::open(file)?;
    let g = geometry(&ed);
    let new_size =
        crate::units::round_up(new_size, 512).ok_or(Unsupported::SizeTooLarge(new_size))?;
    if new_size >= ed.header.size {
        return Err(Unsupported::NotSmaller {
            new: new_size,
            current: ed.header.size,
        }
        .into());
    }
    let first_dropped = new_size.div_ceil(g.cs);
    let l1 = ed.l1_table()?;
    for (k, &l1_entry) in l1.iter().enumerate() {
        let table_first = k as u64 * g.l2_entries;
        if table_first + g.l2_entries <= first_dropped {
            continue;
        }
        let table = l1_entry & spec::L1E_OFFSET_MASK;
        if table == 0 {
            continue;
        }
        let entries = ed.l2_table(table)?;
        for i in 0..g.l2_entries {
            let guest = table_first + i;
            if guest < first_dropped {
                continue;
            }
            let entry = entries[usize::try_from(i).unwrap_or(0) * g.step];
            if is_allocated(entry) {
                return Err(Error::ShrinkWouldDropData {
                    offset: guest * g.cs,
                });
            }
        }
    }
    ed.header.size = new_size;
    ed.commit()
}
