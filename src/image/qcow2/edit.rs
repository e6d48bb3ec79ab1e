//! In-place changes to an existing qcow2 image: new clusters at the end of the file, their
//! refcounts, and a crash-safe order of writes.
//!
//! Owns: loading the refcount table and blocks, handing out clusters first-fit as qemu does
//! (with new refcount blocks, and a new, larger refcount table when the old one is full),
//! freeing clusters, and [`Editor::commit`], which writes in this order, syncing between
//! steps: new clusters and raised refcounts; the new refcount table; the header and
//! in-place table updates; lowered refcounts. A crash at any point leaves at worst leaked
//! clusters, never a cluster in use with refcount 0.
//! Must not: decide what to allocate (that is `resize`), or read guest data.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::spec::{self, Header};
use crate::image::{Corruption, Error, Unsupported};

/// An open image being changed.
pub struct Editor<'f> {
    file: &'f File,
    /// The header; callers change fields, [`Editor::commit`] writes it.
    pub header: Header,
    cs: u64,
    rb_entries: u64,
    /// Refcount table entries (byte offsets of refcount blocks).
    rt: Vec<u64>,
    old_rt: Option<(u64, u64)>,
    /// Loaded refcount blocks by range index.
    blocks: BTreeMap<u64, Vec<u8>>,
    /// Ranges whose block must be written before the header (raised refcounts, new blocks).
    raised: BTreeSet<u64>,
    /// Ranges whose block must be written after the header (lowered refcounts).
    lowered: BTreeSet<u64>,
    /// Clusters freed, applied after the header is written.
    to_free: Vec<u64>,
    /// First cluster past everything in use.
    used_end: u64,
    /// Where the next first-fit search starts (qemu's `free_cluster_index`).
    free_hint: u64,
    /// New cluster contents to write before anything references them.
    new_data: Vec<(u64, Vec<u8>)>,
    /// Writes into clusters already in use, done together with the header.
    in_place: Vec<(u64, Vec<u8>)>,
}

fn io_err(source: io::Error) -> Error {
    Error::ReadingImage(source)
}

fn write_err(offset: u64) -> impl Fn(io::Error) -> Error {
    move |source| Error::WritingMetadata { offset, source }
}

impl<'f> Editor<'f> {
    /// Loads the header, refcount table and every refcount block of `file`.
    pub fn open(file: &'f File) -> Result<Editor<'f>, Error> {
        let prefix = crate::image::read_prefix(file, spec::V3_HEADER_LENGTH).map_err(io_err)?;
        let header = Header::decode(&prefix)?;
        if header.nb_snapshots != 0 {
            return Err(Unsupported::InternalSnapshots.into());
        }
        let cs = header.cluster_size();
        let file_len = file.metadata().map_err(io_err)?.len();
        let rt_bytes = u64::from(header.refcount_table_clusters) * cs;
        if rt_bytes == 0
            || rt_bytes > spec::MAX_REFTABLE_BYTES
            || header.refcount_table_offset.saturating_add(rt_bytes) > file_len + cs
        {
            return Err(Corruption::RefcountTableOutOfPlace.into());
        }
        let mut raw = vec![0u8; usize::try_from(rt_bytes).unwrap_or(0)];
        let got = file
            .read_at(&mut raw, header.refcount_table_offset)
            .map_err(io_err)?;
        raw[got..].fill(0);
        let rt: Vec<u64> = spec::decode_entries(&raw)
            .into_iter()
            .map(|e| e & spec::REFT_OFFSET_MASK)
            .collect();
        let rb_entries = cs * 8 / (1u64 << header.refcount_order);
        let mut editor = Editor {
            file,
            header,
            cs,
            rb_entries,
            rt,
            old_rt: None,
            blocks: BTreeMap::new(),
            raised: BTreeSet::new(),
            lowered: BTreeSet::new(),
            to_free: Vec::new(),
            used_end: file_len.div_ceil(cs),
            free_hint: 0,
            new_data: Vec::new(),
            in_place: Vec::new(),
        };
        for (range, &offset) in editor.rt.clone().iter().enumerate() {
            if offset == 0 {
                continue;
            }
            if offset % cs != 0 || offset.saturating_add(cs) > file_len + cs {
                return Err(Corruption::RefcountBlockOutOfPlace(offset).into());
            }
            let mut block = vec![0u8; usize::try_from(cs).unwrap_or(0)];
            let got = file.read_at(&mut block, offset).map_err(io_err)?;
            block[got..].fill(0);
            let range = range as u64;
            let order = editor.header.refcount_order;
            if let Some(last) = (0..editor.rb_entries)
                .rev()
                .find(|&i| spec::get_refcount(&block, usize::try_from(i).unwrap_or(0), order) != 0)
            {
                editor.used_end = editor.used_end.max(range * editor.rb_entries + last + 1);
            }
            editor.blocks.insert(range, block);
        }
        Ok(editor)
    }

    /// Where the refcount table says the refcount blocks are.
    pub fn refcount_block_offsets(&self) -> impl Iterator<Item = u64> + '_ {
        self.rt.iter().copied().filter(|&o| o != 0)
    }

    /// Cluster size.
    pub fn cluster_size(&self) -> u64 {
        self.cs
    }

    /// Refcount of a cluster.
    pub fn refcount(&self, cluster: u64) -> u64 {
        let range = cluster / self.rb_entries;
        let index = usize::try_from(cluster % self.rb_entries).unwrap_or(0);
        self.blocks.get(&range).map_or(0, |b| {
            spec::get_refcount(b, index, self.header.refcount_order)
        })
    }

    fn set_refcount(&mut self, cluster: u64, value: u64) {
        let range = cluster / self.rb_entries;
        if value == 0 && !self.blocks.contains_key(&range) {
            return;
        }
        if !self.blocks.contains_key(&range) {
            // A new refcount block at the end; it may describe itself or need its own.
            let block_cluster = self.find_free(1);
            self.free_hint = block_cluster + 1;
            self.used_end = self.used_end.max(block_cluster + 1);
            self.blocks
                .insert(range, vec![0u8; usize::try_from(self.cs).unwrap_or(0)]);
            let index = usize::try_from(range).unwrap_or(usize::MAX);
            if self.rt.len() <= index {
                self.rt.resize(index + 1, 0);
            }
            self.rt[index] = block_cluster * self.cs;
            self.raised.insert(range);
            self.set_refcount(block_cluster, 1);
        }
        let index = usize::try_from(cluster % self.rb_entries).unwrap_or(0);
        let order = self.header.refcount_order;
        if let Some(block) = self.blocks.get_mut(&range) {
            spec::set_refcount(block, index, order, value);
        }
        if value == 0 {
            self.lowered.insert(range);
        } else {
            self.raised.insert(range);
        }
    }

    /// The first run of `n` clusters with refcount 0 at or after the search hint.
    fn find_free(&self, n: u64) -> u64 {
        let mut start = self.free_hint;
        let mut c = start;
        while c < start + n && c < self.used_end {
            if self.refcount(c) != 0 {
                start = c + 1;
            }
            c += 1;
        }
        start
    }

    /// Allocates `n` clusters with refcount 1 at the first free run, as qemu's allocator
    /// does (clusters freed in this same change stay in use until the commit). Returns the
    /// first cluster.
    pub fn alloc(&mut self, n: u64) -> u64 {
        let start = self.find_free(n);
        self.free_hint = start + n;
        self.used_end = self.used_end.max(start + n);
        for c in start..start + n {
            self.set_refcount(c, 1);
        }
        start
    }

    /// Frees clusters (their refcounts drop to 0 after the header is written).
    pub fn free(&mut self, start: u64, n: u64) {
        self.to_free.extend(start..start + n);
    }

    /// Contents for a newly allocated cluster range (written before any reference).
    pub fn write_new(&mut self, offset: u64, bytes: Vec<u8>) {
        self.new_data.push((offset, bytes));
    }

    /// A change to structures already in use (written with the header).
    pub fn write_in_place(&mut self, offset: u64, bytes: Vec<u8>) {
        self.in_place.push((offset, bytes));
    }

    /// Reads `len` bytes at `offset` of the file.
    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let got = self.file.read_at(&mut buf, offset).map_err(io_err)?;
        buf[got..].fill(0);
        Ok(buf)
    }

    /// Reads the active L1 table.
    pub fn l1_table(&self) -> Result<Vec<u64>, Error> {
        let l1_bytes = u64::from(self.header.l1_size) * spec::ENTRY_SIZE;
        if l1_bytes > spec::MAX_L1_BYTES {
            return Err(Corruption::L1TooLarge(self.header.l1_size).into());
        }
        let bytes = self.read(self.header.l1_table_offset, l1_bytes)?;
        Ok(spec::decode_entries(&bytes))
    }

    /// Reads the L2 table at `offset`: its raw words, two per entry with extended L2.
    pub fn l2_table(&self, offset: u64) -> Result<Vec<u64>, Error> {
        Ok(spec::decode_entries(&self.read(offset, self.cs)?))
    }

    /// Makes sure the refcount table can point at every refcount block, moving it to a new,
    /// larger place at the end of the file when it cannot (the old one is freed).
    fn fit_refcount_table(&mut self) -> Result<(), Error> {
        let per_cluster = self.cs / spec::ENTRY_SIZE;
        let capacity = u64::from(self.header.refcount_table_clusters) * per_cluster;
        if self.rt.len() as u64 <= capacity {
            self.rt.resize(usize::try_from(capacity).unwrap_or(0), 0);
            return Ok(());
        }
        // Room for what exists, the table itself and its refcount blocks, with slack.
        let mut clusters = (self.rt.len() as u64 * 3 / 2).div_ceil(per_cluster);
        loop {
            let end = self.used_end + clusters;
            let ranges = end.div_ceil(self.rb_entries) + 1;
            if ranges <= clusters * per_cluster {
                break;
            }
            clusters = ranges.div_ceil(per_cluster);
        }
        if clusters * self.cs > spec::MAX_REFTABLE_BYTES {
            return Err(Unsupported::RefcountTableTooLarge.into());
        }
        let start = self.alloc(clusters);
        self.rt
            .resize(usize::try_from(clusters * per_cluster).unwrap_or(0), 0);
        self.old_rt = Some((
            self.header.refcount_table_offset / self.cs,
            u64::from(self.header.refcount_table_clusters),
        ));
        self.header.refcount_table_offset = start * self.cs;
        self.header.refcount_table_clusters = u32::try_from(clusters).unwrap_or(u32::MAX);
        Ok(())
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), Error> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(write_err(offset))
    }

    fn sync(&self) -> Result<(), Error> {
        self.file.sync_data().map_err(Error::Syncing)
    }

    fn write_blocks(&self, ranges: &BTreeSet<u64>) -> Result<(), Error> {
        for range in ranges {
            let offset = self.rt[usize::try_from(*range).unwrap_or(0)];
            if let Some(block) = self.blocks.get(range) {
                self.write_at(block, offset)?;
            }
        }
        Ok(())
    }

    /// Writes everything in the crash-safe order and syncs.
    pub fn commit(mut self) -> Result<(), Error> {
        self.fit_refcount_table()?;
        // 1. New clusters and raised refcounts: nothing references them yet.
        for (offset, bytes) in &self.new_data {
            self.write_at(bytes, *offset)?;
        }
        let raised = std::mem::take(&mut self.raised);
        self.write_blocks(&raised)?;
        // 2. The refcount table (its new place, or new entries in the old place).
        let rt = spec::encode_entries(&self.rt);
        self.write_at(&rt, self.header.refcount_table_offset)?;
        self.sync()?;
        // 3. Header and in-place table updates: the image now uses the new clusters.
        for (offset, bytes) in &self.in_place {
            self.write_at(bytes, *offset)?;
        }
        let header = self.header.encode();
        self.write_at(&header, 0)?;
        self.sync()?;
        // 4. Lower the refcounts of what is no longer used.
        if let Some((start, n)) = self.old_rt.take() {
            self.to_free.extend(start..start + n);
        }
        let to_free = std::mem::take(&mut self.to_free);
        for c in to_free {
            self.set_refcount(c, 0);
        }
        let lowered = std::mem::take(&mut self.lowered);
        self.write_blocks(&lowered)?;
        self.sync()
    }
}
