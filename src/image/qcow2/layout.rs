//! Pure arithmetic: checked qcow2 creation options → where every cluster of a fresh image
//! goes.
//!
//! Owns: the cluster placement of a new image for each preallocation mode, following qemu-img 10's allocator (qcow2-create.md §2–§4) so that
//! images with 64 KiB clusters come out byte-identical to `qemu-img create`. The one
//! deliberate difference: the refcount table is sized once, up front, where qemu would grow
//! it (tiny clusters or images beyond ~16 TiB).
//! Must not: do I/O or know byte offsets inside structures (that is `spec`).

use std::ops::Range;

use super::options::{Error, Geometry, Options, check};
use super::spec::{self, Extension, Header};
use crate::model::{Compat, Preallocation};
use crate::units::div_ceil;

/// One L2 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Table {
    /// Index of the L1 entry pointing at it.
    pub l1_index: u64,
    /// Host cluster index of the table.
    pub cluster: u64,
}

/// Guest clusters `guest .. guest + count` stored at host clusters `host .. host + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRun {
    /// First guest cluster.
    pub guest: u64,
    /// First host cluster.
    pub host: u64,
    /// Number of clusters.
    pub count: u64,
}

/// One structure the writer writes, for [`Layout::pieces`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Piece {
    /// Cluster 0: header, extensions, backing file name.
    Header,
    /// The refcount table.
    RefcountTable,
    /// The refcount block of this range.
    Refblock(usize),
    /// The L1 table (exactly `l1_size * 8` bytes).
    L1,
    /// L2 table number `k` of [`Layout::l2_tables`].
    L2(usize),
    /// Zeros after the end of a partial last data cluster (metadata mode).
    TailZeroes,
    /// The clusters of the LUKS header: reserved whole, the header written into them by the
    /// encryption writer (never rendered here).
    LuksArea,
}

/// Where everything of a fresh image goes. Cluster numbers are host cluster indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Final header.
    pub header: Header,
    /// Header extensions, in qemu's order.
    pub extensions: Vec<Extension>,
    /// Backing file name written after the extensions.
    pub backing_name: Option<String>,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Entries per L2 table.
    pub l2_entries: u64,
    /// Bytes per L2 entry (8, or 16 with extended L2).
    pub l2_entry_size: u64,
    /// Clusters one refcount block covers.
    pub refblock_entries: u64,
    /// Number of guest clusters (`ceil(size / cluster_size)`).
    pub guest_clusters: u64,
    /// First cluster of the L1 table (meaningless when `l1_size` is 0).
    pub l1_cluster: u64,
    /// Number of L1 entries.
    pub l1_size: u64,
    /// Refcount table: first cluster and number of clusters.
    pub refcount_table: Range<u64>,
    /// Refcount block cluster for each refcount range, by range index.
    pub refblocks: Vec<Option<u64>>,
    /// L2 tables in L1 order (empty for preallocation=off without data).
    pub l2_tables: Vec<L2Table>,
    /// Mapped data clusters in guest order (empty for preallocation=off without data).
    pub data_runs: Vec<DataRun>,
    /// Guest cluster ranges that will receive data (for extended L2 entries, whose
    /// subclusters must then be marked allocated).
    pub data_clusters: Vec<Range<u64>>,
    /// How the data runs are filled.
    pub preallocation: Preallocation,
    /// Clusters below `end_cluster` whose refcount is 0 (qemu's freed old refcount table).
    pub free: Vec<Range<u64>>,
    /// Clusters `0..end_cluster` are in use except `free`.
    pub end_cluster: u64,
    /// Length of the finished file in bytes.
    pub file_length: u64,
    /// Byte range of the last data cluster beyond the virtual size that metadata
    /// preallocation fills with zeros (qemu's copy-on-write of a partial last cluster).
    pub tail_zeroes: Option<Range<u64>>,
    /// The host clusters holding the LUKS header of an encrypted image: allocated after
    /// everything else, at the first free cluster, as qemu sets up encryption last.
    pub luks: Option<Range<u64>>,
}

/// qemu's first-free-cluster allocator, reduced to what a fresh image needs: a bump pointer
/// plus refcount blocks placed right after the run that first touches their range.
struct Allocator {
    next: u64,
    rb_bits: u32,
    refblocks: Vec<Option<u64>>,
}

impl Allocator {
    fn range_of(&self, cluster: u64) -> usize {
        usize::try_from(cluster >> self.rb_bits).unwrap_or(usize::MAX)
    }

    fn set_refblock(&mut self, range: usize, cluster: u64) {
        if self.refblocks.len() <= range {
            self.refblocks.resize(range + 1, None);
        }
        self.refblocks[range] = Some(cluster);
    }

    fn has_refblock(&self, range: usize) -> bool {
        self.refblocks.get(range).copied().flatten().is_some()
    }

    /// Reserves `n` clusters at the bump pointer, then gives every range they touch a
    /// refcount block, placed at the next free cluster (which may in turn need its own).
    fn alloc(&mut self, n: u64) -> u64 {
        let start = self.next;
        self.next += n;
        if n > 0 {
            self.cover(start, n);
        }
        start
    }

    fn cover(&mut self, start: u64, n: u64) {
        let first = self.range_of(start);
        let last = self.range_of(start + n - 1);
        for range in first..=last {
            if !self.has_refblock(range) {
                let block = self.next;
                self.next += 1;
                self.set_refblock(range, block);
                if self.range_of(block) != range {
                    self.cover(block, 1);
                }
            }
        }
    }
}

/// Result of placing the clusters, before the header is filled in.
struct Placement {
    luks: Option<Range<u64>>,
    refcount_table: Range<u64>,
    refblocks: Vec<Option<u64>>,
    l1_cluster: u64,
    l2_tables: Vec<L2Table>,
    data_runs: Vec<DataRun>,
    free: Vec<Range<u64>>,
    end_cluster: u64,
}

/// qemu's base layout (qcow2_co_create): header at 0, a refcount table of `rt_clusters` at
/// 1, refcount block 0 right after it, then the L1 table.
fn base(g: &Geometry, rt_clusters: u64) -> (Allocator, u64) {
    let mut a = Allocator {
        next: 1 + rt_clusters + 1,
        rb_bits: g.rb_bits,
        refblocks: Vec::new(),
    };
    a.set_refblock(0, 1 + rt_clusters);
    // With a large table the first clusters can reach past range 0 (tiny refcount blocks).
    a.cover(0, a.next);
    let l1 = a.alloc(g.l1_clusters);
    (a, l1)
}

fn rt_clusters_for(g: &Geometry, ranges: usize) -> u64 {
    div_ceil(ranges as u64 * spec::ENTRY_SIZE, g.cluster_size).max(1)
}

/// off and metadata: sequential allocation in guest order, each L2 table followed by the
/// data clusters it maps (all of them for metadata, only `data` for off). The refcount table
/// is sized up front by re-running the placement until every refcount block fits in it.
fn place_sequential(g: &Geometry, prealloc: Preallocation, data: &[Range<u64>]) -> Placement {
    let full = [0..g.guest_clusters];
    let mapped: &[Range<u64>] = if prealloc == Preallocation::Metadata {
        &full
    } else {
        data
    };
    let mut rt_clusters = 1;
    loop {
        let (mut a, l1_cluster) = base(g, rt_clusters);
        let mut l2_tables = Vec::new();
        let mut data_runs = Vec::new();
        let mut current_table = None;
        for range in mapped {
            let mut guest = range.start;
            while guest < range.end {
                let l1_index = guest / g.l2_entries;
                let table_end = (l1_index + 1) * g.l2_entries;
                if current_table != Some(l1_index) {
                    let cluster = a.alloc(1);
                    l2_tables.push(L2Table { l1_index, cluster });
                    current_table = Some(l1_index);
                }
                let count = range.end.min(table_end) - guest;
                let host = a.alloc(count);
                data_runs.push(DataRun { guest, host, count });
                guest += count;
            }
        }
        let luks = (g.luks_clusters > 0).then(|| {
            let start = a.alloc(g.luks_clusters);
            start..start + g.luks_clusters
        });
        let needed = rt_clusters_for(g, a.refblocks.len());
        if needed <= rt_clusters {
            return Placement {
                luks,
                refcount_table: 1..1 + rt_clusters,
                refblocks: a.refblocks,
                l1_cluster,
                l2_tables,
                data_runs,
                free: Vec::new(),
                end_cluster: a.next,
            };
        }
        rt_clusters = needed;
    }
}

/// falloc and full: qemu's `qcow2_refcount_area` — after the base layout, new refcount
/// blocks and a new refcount table sized once for everything, the old table freed, one
/// contiguous data area, then the L2 tables at the lowest free clusters.
fn place_preallocated(g: &Geometry) -> Placement {
    let p = place_preallocated_with(g, 0);
    if p.refblocks.len() as u64
        <= (p.refcount_table.end - p.refcount_table.start) * (g.cluster_size / spec::ENTRY_SIZE)
    {
        return p;
    }
    // The LUKS clusters, allocated after the table was sized, need a refcount block the
    // table has no room for (qemu would grow the table): size it for them up front.
    place_preallocated_with(g, g.luks_clusters)
}

fn place_preallocated_with(g: &Geometry, extra: u64) -> Placement {
    let mut base_rt = 1;
    let (mut a, l1_cluster) = loop {
        let (a, l1) = base(g, base_rt);
        let needed = rt_clusters_for(g, a.refblocks.len());
        if needed <= base_rt {
            break (a, l1);
        }
        base_rt = needed;
    };
    let area_start = a.next;
    let n = g.guest_clusters;
    let tables = div_ceil(n, g.l2_entries) + 1;
    let rb_entries = 1u64 << g.rb_bits;
    let pointers_per_cluster = g.cluster_size / spec::ENTRY_SIZE;
    let (mut blocks, mut rt) = (0u64, 0u64);
    loop {
        let nb = div_ceil(area_start + n + tables + rt + blocks + extra, rb_entries);
        let nt = div_ceil(nb, pointers_per_cluster);
        if (nb, nt) == (blocks, rt) {
            break;
        }
        (blocks, rt) = (nb, nt);
    }
    let first_new = usize::try_from(area_start >> g.rb_bits).unwrap_or(usize::MAX);
    let count = usize::try_from(blocks).unwrap_or(usize::MAX);
    for range in first_new..count {
        if !a.has_refblock(range) {
            let c = a.next;
            a.next += 1;
            a.set_refblock(range, c);
        }
    }
    let rt_start = a.next;
    a.next += rt;
    let data_start = a.next;
    a.next += n;
    let mut free: Vec<u64> = (1..1 + base_rt).collect();
    free.reverse();
    let mut l2_tables = Vec::with_capacity(usize::try_from(g.l1_size).unwrap_or(0));
    for k in 0..g.l1_size {
        let cluster = free.pop().unwrap_or_else(|| {
            let c = a.next;
            a.next += 1;
            c
        });
        l2_tables.push(L2Table {
            l1_index: k,
            cluster,
        });
    }
    free.reverse();
    let free = free.into_iter().map(|c| c..c + 1).collect();
    let luks = (g.luks_clusters > 0).then(|| {
        let start = a.alloc(g.luks_clusters);
        start..start + g.luks_clusters
    });
    Placement {
        luks,
        refcount_table: rt_start..rt_start + rt,
        refblocks: a.refblocks,
        l1_cluster,
        l2_tables,
        data_runs: if n > 0 {
            vec![DataRun {
                guest: 0,
                host: data_start,
                count: n,
            }]
        } else {
            Vec::new()
        },
        free,
        end_cluster: a.next,
    }
}

impl Layout {
    /// Plans a fresh image: checks the options like qemu-img does, then places every cluster.
    pub fn plan(opts: &Options, prealloc: Preallocation) -> Result<Layout, Error> {
        Self::plan_with_data(opts, prealloc, &[])
    }

    /// Plans a fresh image that will receive guest data in the guest cluster ranges `data`
    /// (sorted, disjoint): with preallocation=off those clusters, and only those, are mapped,
    /// in guest order, like `qemu-img convert` lays them out. The other modes map every
    /// cluster anyway.
    pub fn plan_with_data(
        opts: &Options,
        prealloc: Preallocation,
        data: &[Range<u64>],
    ) -> Result<Layout, Error> {
        let g = check(opts, prealloc)?;
        if let Some(bad) = data
            .iter()
            .find(|r| r.start >= r.end || r.end > g.guest_clusters)
        {
            return Err(Error::DataOutOfRange {
                start: bad.start,
                end: bad.end,
                clusters: g.guest_clusters,
            });
        }
        let p = match prealloc {
            Preallocation::Off | Preallocation::Metadata => place_sequential(&g, prealloc, data),
            Preallocation::Falloc | Preallocation::Full => place_preallocated(&g),
        };
        let rt_clusters = p.refcount_table.end - p.refcount_table.start;
        if rt_clusters * g.cluster_size > spec::MAX_REFTABLE_BYTES {
            return Err(Error::RefcountTableTooLarge {
                clusters: rt_clusters,
            });
        }
        let cs = g.cluster_size;
        let end_bytes = u128::from(p.end_cluster) * u128::from(cs);
        if end_bytes > u128::from(spec::L2E_OFFSET_MASK) {
            return Err(Error::FileTooLarge(end_bytes));
        }
        let l1_bytes = g.l1_size * spec::ENTRY_SIZE;
        let l1_end = p.l1_cluster * cs + l1_bytes;
        let metadata_end = [
            cs,
            p.refcount_table.end * cs,
            p.refblocks
                .iter()
                .flatten()
                .map(|&c| (c + 1) * cs)
                .max()
                .unwrap_or(0),
            p.l2_tables
                .iter()
                .map(|t| (t.cluster + 1) * cs)
                .max()
                .unwrap_or(0),
            if g.l1_size > 0 { l1_end } else { 0 },
            p.luks.as_ref().map_or(0, |r| r.end * cs),
        ]
        .into_iter()
        .max()
        .unwrap_or(cs);
        let data_end = p
            .data_runs
            .iter()
            .map(|r| (r.host + r.count) * cs)
            .max()
            .unwrap_or(0);
        let tail = g.size % cs;
        // qemu's copy-on-write of the partial last cluster covers the rest of the cluster,
        // or with extended L2 entries only the rest of the partial subcluster.
        let cow_unit = if opts.extended_l2 {
            cs / spec::SUBCLUSTERS
        } else {
            cs
        };
        let tail_zeroes = match (prealloc, p.data_runs.last()) {
            (Preallocation::Metadata, Some(run)) if tail != 0 => {
                let last = (run.host + run.count - 1) * cs;
                Some(last + tail..last + tail.next_multiple_of(cow_unit))
            }
            _ => None,
        };
        // The copy-on-write write, not an ftruncate, sets the length of a metadata image
        // whose last cluster is partial.
        let data_end = tail_zeroes.as_ref().map_or(data_end, |t| t.end);
        let file_length = metadata_end.max(data_end);

        let backing_name = opts.backing.as_ref().map(|(name, _)| name.clone());
        let (header_length, incompatible, compatible) = match opts.version {
            Compat::V0_10 => (spec::V2_HEADER_LENGTH_U32, 0, 0),
            Compat::V1_1 => (
                spec::V3_HEADER_LENGTH_U32,
                if opts.extended_l2 {
                    spec::INCOMPAT_EXTL2
                } else {
                    0
                } | if opts.compression_zstd {
                    spec::INCOMPAT_COMPRESSION
                } else {
                    0
                },
                if opts.lazy_refcounts {
                    spec::COMPAT_LAZY_REFCOUNTS
                } else {
                    0
                },
            ),
        };
        let ext_len = spec::encode_extensions(&g.extensions).len();
        let backing_offset = if backing_name.is_some() {
            u64::from(header_length) + ext_len as u64
        } else {
            0
        };
        let header = Header {
            version: opts.version,
            backing_file_offset: backing_offset,
            backing_file_size: backing_name
                .as_ref()
                .map_or(0, |n| u32::try_from(n.len()).unwrap_or(u32::MAX)),
            cluster_bits: g.cluster_bits,
            size: g.size,
            crypt_method: if p.luks.is_some() {
                spec::CRYPT_LUKS
            } else {
                0
            },
            l1_size: u32::try_from(g.l1_size).unwrap_or(u32::MAX),
            l1_table_offset: if g.l1_size > 0 { p.l1_cluster * cs } else { 0 },
            refcount_table_offset: p.refcount_table.start * cs,
            refcount_table_clusters: u32::try_from(rt_clusters).unwrap_or(u32::MAX),
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: incompatible,
            compatible_features: compatible,
            autoclear_features: 0,
            refcount_order: g.refcount_order,
            header_length,
            compression_type: u8::from(opts.compression_zstd),
        };
        let mut extensions = g.extensions.clone();
        for ext in &mut extensions {
            if let (Extension::FullDiskEncryption { offset, .. }, Some(r)) = (ext, &p.luks) {
                *offset = r.start * cs;
            }
        }
        Ok(Layout {
            header,
            extensions,
            backing_name,
            cluster_bits: g.cluster_bits,
            l2_entries: g.l2_entries,
            l2_entry_size: g.l2_entry_size,
            refblock_entries: 1 << g.rb_bits,
            guest_clusters: g.guest_clusters,
            l1_cluster: p.l1_cluster,
            l1_size: g.l1_size,
            refcount_table: p.refcount_table,
            refblocks: p.refblocks,
            l2_tables: p.l2_tables,
            data_runs: p.data_runs,
            data_clusters: data.to_vec(),
            preallocation: prealloc,
            free: p.free,
            end_cluster: p.end_cluster,
            file_length,
            tail_zeroes,
            luks: p.luks,
        })
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Refcount of a host cluster in the finished image (0 or 1).
    pub fn refcount(&self, cluster: u64) -> u64 {
        u64::from(cluster < self.end_cluster && !self.free.iter().any(|r| r.contains(&cluster)))
    }

    /// Host byte ranges holding the first `bytes` of guest data (rounded up to whole
    /// clusters, mapped clusters only), for the partial-allocation reservation.
    pub fn guest_prefix_extents(&self, bytes: u64) -> Vec<Range<u64>> {
        let cs = self.cluster_size();
        let limit = div_ceil(bytes, cs);
        let mut out: Vec<Range<u64>> = Vec::new();
        for run in &self.data_runs {
            if run.guest >= limit {
                break;
            }
            let count = run.count.min(limit - run.guest);
            let start = run.host * cs;
            match out.last_mut() {
                Some(prev) if prev.end == start => prev.end = start + count * cs,
                _ => out.push(start..start + count * cs),
            }
        }
        out
    }

    /// The data runs that map guest clusters of L2 table `l1_index`, clipped to it.
    pub fn runs_in_table(&self, l1_index: u64) -> impl Iterator<Item = DataRun> + '_ {
        let first = l1_index * self.l2_entries;
        let last = first + self.l2_entries;
        let start = self
            .data_runs
            .partition_point(|r| r.guest + r.count <= first);
        self.data_runs[start..]
            .iter()
            .take_while(move |r| r.guest < last)
            .map(move |r| {
                let guest = r.guest.max(first);
                let end = (r.guest + r.count).min(last);
                DataRun {
                    guest,
                    host: r.host + (guest - r.guest),
                    count: end - guest,
                }
            })
    }

    /// Every structure the writer writes, as `(offset, length, piece)` in file order: whole
    /// clusters for the header, refcount structures and L2 tables, exactly `l1_size * 8`
    /// bytes of L1 (qemu's write pattern).
    pub fn pieces(&self) -> Vec<(u64, u64, Piece)> {
        let cs = self.cluster_size();
        let mut out = vec![
            (0, cs, Piece::Header),
            (
                self.refcount_table.start * cs,
                (self.refcount_table.end - self.refcount_table.start) * cs,
                Piece::RefcountTable,
            ),
        ];
        out.extend(
            self.refblocks
                .iter()
                .enumerate()
                .filter_map(|(r, c)| c.map(|c| (c * cs, cs, Piece::Refblock(r)))),
        );
        if self.l1_size > 0 {
            out.push((
                self.l1_cluster * cs,
                self.l1_size * spec::ENTRY_SIZE,
                Piece::L1,
            ));
        }
        out.extend(
            self.l2_tables
                .iter()
                .enumerate()
                .map(|(k, t)| (t.cluster * cs, cs, Piece::L2(k))),
        );
        if let Some(r) = &self.tail_zeroes {
            out.push((r.start, r.end - r.start, Piece::TailZeroes));
        }
        if let Some(r) = &self.luks {
            out.push((r.start * cs, (r.end - r.start) * cs, Piece::LuksArea));
        }
        out.sort_unstable();
        out
    }

    /// Bytes of filesystem blocks the written metadata occupies: each written range is
    /// widened to whole `block`s and overlapping blocks are counted once (512-byte clusters
    /// scattered between holes each cost a whole block).
    pub fn metadata_allocation(&self, block: u64) -> u64 {
        let mut total = 0;
        let mut covered_until = 0u64;
        for (offset, len, _) in self.pieces() {
            if len == 0 {
                continue;
            }
            let start = (offset / block * block).max(covered_until);
            let end = crate::units::round_up(offset + len, block).unwrap_or(offset + len);
            if end > start {
                total += end - start;
                covered_until = end;
            }
        }
        total
    }

    /// Bytes in the data runs.
    pub fn data_bytes(&self) -> u64 {
        self.data_runs.iter().map(|r| r.count).sum::<u64>() * self.cluster_size()
    }
}

#[cfg(test)]
mod tests;
