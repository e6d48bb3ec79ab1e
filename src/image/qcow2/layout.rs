//! Pure arithmetic: qcow2 creation options → where every cluster of a fresh image goes.
//!
//! Owns: qemu's option checks and limits, and the cluster placement of a new image for each
//! preallocation mode, following qemu-img 10's allocator (qcow2-create.md §2–§4) so that
//! images with 64 KiB clusters come out byte-identical to `qemu-img create`. The one
//! deliberate difference: the refcount table is sized once, up front, where qemu would grow
//! it (tiny clusters or images beyond ~16 TiB).
//! Must not: do I/O or know byte offsets inside structures (that is `spec`).

use std::ops::Range;

use thiserror::Error;

use super::spec::{self, Extension, Header};
use crate::model::{Compat, Preallocation};
use crate::units::div_ceil;

/// The qcow2 creation options, as qemu-img's `-o` would take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Virtual size in bytes (rounded up to 512 like qemu-img).
    pub size: u64,
    /// Header version (compat 0.10 → 2, 1.1 → 3).
    pub version: Compat,
    /// Cluster size in bytes: a power of two from 512 to 2 MiB.
    pub cluster_size: u64,
    /// Refcount width in bits: a power of two up to 64 (v2: 16 only).
    pub refcount_bits: u32,
    /// `lazy_refcounts=on` (v3 only).
    pub lazy_refcounts: bool,
    /// `extended_l2=on` (v3, clusters of 16 KiB and more).
    pub extended_l2: bool,
    /// `compression_type=zstd` (v3 only).
    pub compression_zstd: bool,
    /// Backing file name (stored as given) and format name (the backing-format header
    /// extension; qemu-img always writes it, older images may lack it).
    pub backing: Option<(String, Option<String>)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            size: 0,
            version: Compat::V1_1,
            cluster_size: 65536,
            refcount_bits: 16,
            lazy_refcounts: false,
            extended_l2: false,
            compression_zstd: false,
            backing: None,
        }
    }
}

/// Options qemu-img would refuse, or an image too large for qcow2's limits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// Cluster size out of range or not a power of two.
    #[error("cluster size {0} is not a power of two between 512 and 2 MiB")]
    ClusterSize(u64),
    /// Refcount width out of range or not a power of two.
    #[error("refcount width {0} is not a power of two of at most 64 bits")]
    RefcountBits(u32),
    /// A v3-only option with compat 0.10.
    #[error("{0} needs compat 1.1 (qcow2 version 3)")]
    NeedsV3(&'static str),
    /// extended_l2 with clusters below 16 KiB.
    #[error("extended_l2 needs clusters of at least 16 KiB (cluster size is {0})")]
    ExtendedL2ClusterSize(u64),
    /// Backing file with preallocation, without extended_l2.
    #[error("a backing file and preallocation '{0}' can be used together only with extended_l2")]
    BackingWithPreallocation(&'static str),
    /// The virtual size rounded up to 512 overflows.
    #[error("virtual size {0} is too large")]
    SizeOverflow(u64),
    /// The L1 table would exceed qemu's 32 MiB limit.
    #[error(
        "virtual size {size} is too large for qcow2 with {cluster_size}-byte clusters (the L1 table would exceed 32 MiB; use larger clusters)"
    )]
    L1TooLarge {
        /// Requested virtual size.
        size: u64,
        /// Cluster size.
        cluster_size: u64,
    },
    /// The refcount table would exceed qemu's 8 MiB limit.
    #[error(
        "the refcount table would exceed 8 MiB ({clusters} clusters); use larger clusters or narrower refcounts"
    )]
    RefcountTableTooLarge {
        /// Clusters the table would need.
        clusters: u64,
    },
    /// The image file would be larger than qcow2 offsets can address.
    #[error("the image file would be {0} bytes, beyond what qcow2 offsets can address")]
    FileTooLarge(u128),
    /// A data range outside the image's guest clusters.
    #[error("guest clusters {start}..{end} lie outside the image's {clusters} clusters")]
    DataOutOfRange {
        /// First cluster of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// Guest clusters of the image.
        clusters: u64,
    },
    /// Header, extensions and backing name do not fit in the first cluster.
    #[error(
        "header, extensions and backing file name need {needed} bytes, more than one {cluster_size}-byte cluster"
    )]
    HeaderTooBig {
        /// Bytes needed.
        needed: usize,
        /// Cluster size.
        cluster_size: u64,
    },
}

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

/// Checked options with derived geometry.
#[derive(Debug, Clone)]
struct Geometry {
    size: u64,
    cluster_bits: u32,
    cluster_size: u64,
    refcount_order: u32,
    l2_entries: u64,
    l2_entry_size: u64,
    rb_bits: u32,
    guest_clusters: u64,
    l1_size: u64,
    l1_clusters: u64,
    extensions: Vec<Extension>,
}

fn check(opts: &Options, prealloc: Preallocation) -> Result<Geometry, Error> {
    let cs = opts.cluster_size;
    if !cs.is_power_of_two() || !(512..=(2 << 20)).contains(&cs) {
        return Err(Error::ClusterSize(cs));
    }
    let cluster_bits = cs.trailing_zeros();
    let rb = opts.refcount_bits;
    if !rb.is_power_of_two() || rb > 64 {
        return Err(Error::RefcountBits(rb));
    }
    if opts.version == Compat::V0_10 {
        if rb != 16 {
            return Err(Error::NeedsV3("a refcount width other than 16 bits"));
        }
        if opts.lazy_refcounts {
            return Err(Error::NeedsV3("lazy_refcounts"));
        }
        if opts.extended_l2 {
            return Err(Error::NeedsV3("extended_l2"));
        }
        if opts.compression_zstd {
            return Err(Error::NeedsV3("compression type zstd"));
        }
    }
    if opts.extended_l2 && cs < 16384 {
        return Err(Error::ExtendedL2ClusterSize(cs));
    }
    if opts.backing.is_some() && prealloc != Preallocation::Off && !opts.extended_l2 {
        return Err(Error::BackingWithPreallocation(prealloc.as_str()));
    }
    let size = crate::units::round_up(opts.size, 512).ok_or(Error::SizeOverflow(opts.size))?;
    let l2_entry_size = if opts.extended_l2 {
        spec::EXTENDED_L2_ENTRY_SIZE
    } else {
        spec::ENTRY_SIZE
    };
    let l2_entries = cs / l2_entry_size;
    let guest_clusters = div_ceil(size, cs);
    let l1_size = div_ceil(guest_clusters, l2_entries);
    if l1_size * spec::ENTRY_SIZE > spec::MAX_L1_BYTES {
        return Err(Error::L1TooLarge {
            size: opts.size,
            cluster_size: cs,
        });
    }
    let refcount_order = rb.trailing_zeros();
    // Refcount block entries = cs * 8 / refcount_bits, a power of two.
    let rb_bits = cluster_bits + 3 - refcount_order;

    let mut extensions = Vec::new();
    if let Some((_, Some(format))) = &opts.backing {
        extensions.push(Extension::BackingFormat(format.clone()));
    }
    if opts.version == Compat::V1_1 && cs > 4096 {
        extensions.push(Extension::FeatureNameTable);
    }
    let header_length = match opts.version {
        Compat::V0_10 => spec::V2_HEADER_LENGTH,
        Compat::V1_1 => spec::V3_HEADER_LENGTH,
    };
    let needed = header_length
        + spec::encode_extensions(&extensions).len()
        + opts.backing.as_ref().map_or(0, |(name, _)| name.len());
    if needed as u64 > cs {
        return Err(Error::HeaderTooBig {
            needed,
            cluster_size: cs,
        });
    }
    Ok(Geometry {
        size,
        cluster_bits,
        cluster_size: cs,
        refcount_order,
        l2_entries,
        l2_entry_size,
        rb_bits,
        guest_clusters,
        l1_size,
        l1_clusters: div_ceil(l1_size * spec::ENTRY_SIZE, cs),
        extensions,
    })
}

/// Result of placing the clusters, before the header is filled in.
struct Placement {
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
        let needed = rt_clusters_for(g, a.refblocks.len());
        if needed <= rt_clusters {
            return Placement {
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
        let nb = div_ceil(area_start + n + tables + rt + blocks, rb_entries);
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
    Placement {
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
            crypt_method: 0,
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
        Ok(Layout {
            header,
            extensions: g.extensions.clone(),
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
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn opts(size: u64, cluster_size: u64) -> Options {
        Options {
            size,
            cluster_size,
            ..Options::default()
        }
    }

    fn plan(size: u64, cs: u64, p: Preallocation) -> Layout {
        Layout::plan(&opts(size, cs), p).unwrap()
    }

    #[test]
    fn off_5g_64k_matches_qemu() {
        // qcow2-create.md §2.4: H0, RT1, RB0 2, L1 3; 196,688 bytes.
        let l = plan(5 * GIB, 65536, Preallocation::Off);
        assert_eq!(l.refcount_table, 1..2);
        assert_eq!(l.refblocks, vec![Some(2)]);
        assert_eq!(l.l1_cluster, 3);
        assert_eq!(l.l1_size, 10);
        assert_eq!(l.file_length, 196_688);
        assert_eq!(l.header.l1_table_offset, 0x30000);
    }

    #[test]
    fn off_1t_64k_matches_qemu() {
        let l = plan(1 << 40, 65536, Preallocation::Off);
        assert_eq!(l.l1_size, 2048);
        assert_eq!(l.file_length, 212_992);
    }

    #[test]
    fn off_5g_512b_puts_refblocks_after_l1() {
        // §2.4: L1 3–2562, RB1..RB10 in 2563–2572, 1,317,376 bytes.
        let l = plan(5 * GIB, 512, Preallocation::Off);
        assert_eq!(l.l1_cluster, 3);
        assert_eq!(l.l1_size, 163_840);
        let blocks: Vec<u64> = l.refblocks.iter().skip(1).flatten().copied().collect();
        assert_eq!(blocks.len(), 10);
        assert!(blocks.iter().all(|c| (2563..=2572).contains(c)));
        assert_eq!(l.file_length, 1_317_376);
    }

    #[test]
    fn metadata_5g_64k_matches_qemu() {
        // §2.4: L2#0 4, D 5–8196, L2#1 8197, …, RB1 32776, L2#4 32777, RB2 65549.
        let l = plan(5 * GIB, 65536, Preallocation::Metadata);
        assert_eq!(
            l.l2_tables[0],
            L2Table {
                l1_index: 0,
                cluster: 4
            }
        );
        assert_eq!(
            l.data_runs[0],
            DataRun {
                guest: 0,
                host: 5,
                count: 8192
            }
        );
        assert_eq!(l.l2_tables[1].cluster, 8197);
        assert_eq!(l.refblocks[1], Some(32776));
        assert_eq!(l.l2_tables[4].cluster, 32777);
        assert_eq!(l.refblocks[2], Some(65549));
        assert_eq!(l.file_length, 5_369_757_696);
    }

    #[test]
    fn metadata_1t_64k_ends_with_refblock_512() {
        // §2.4: the last cluster of the file is RB512, at 16779779.
        let l = plan(1 << 40, 65536, Preallocation::Metadata);
        assert_eq!(l.refblocks.len(), 513);
        assert_eq!(l.refblocks[512], Some(16_779_779));
        assert_eq!(l.file_length, 1_099_679_662_080);
        assert_eq!(l.refcount_table, 1..2);
    }

    #[test]
    fn metadata_1t_2m_matches_qemu() {
        let l = plan(1 << 40, 2 << 20, Preallocation::Metadata);
        assert_eq!(l.l2_tables[0].cluster, 4);
        assert_eq!(l.l2_tables[1].cluster, 262_149);
        assert_eq!(l.file_length, 1_099_524_210_688);
    }

    #[test]
    fn falloc_5g_64k_matches_qemu() {
        // §2.4: H0, L2#0 1, RB0 2, L1 3, RB1 4, RB2 5, RT 6, D 7–81926, L2#1.. 81927–81935.
        let l = plan(5 * GIB, 65536, Preallocation::Falloc);
        assert_eq!(l.l2_tables[0].cluster, 1);
        assert_eq!(l.refblocks, vec![Some(2), Some(4), Some(5)]);
        assert_eq!(l.refcount_table, 6..7);
        assert_eq!(
            l.data_runs,
            vec![DataRun {
                guest: 0,
                host: 7,
                count: 81920
            }]
        );
        assert_eq!(l.l2_tables[1].cluster, 81927);
        assert_eq!(l.l2_tables[9].cluster, 81935);
        assert_eq!(l.file_length, 5_369_757_696);
        assert!(l.free.is_empty());
    }

    #[test]
    fn falloc_1t_64k_matches_qemus_model() {
        // §2.4 [M]: RB1..RB512 at 4–515, RT 516, D 517–16777732, L2#1.. up to 16779779.
        let l = plan(1 << 40, 65536, Preallocation::Falloc);
        assert_eq!(l.refblocks[1], Some(4));
        assert_eq!(l.refblocks[512], Some(515));
        assert_eq!(l.refcount_table, 516..517);
        assert_eq!(
            l.data_runs,
            vec![DataRun {
                guest: 0,
                host: 517,
                count: 16_777_216
            }]
        );
        assert_eq!(l.l2_tables[2047].cluster, 16_779_779);
        assert_eq!(l.file_length, 1_099_679_662_080);
    }

    #[test]
    fn falloc_5g_2m_matches_qemu() {
        let l = plan(5 * GIB, 2 << 20, Preallocation::Falloc);
        assert_eq!(l.l2_tables[0].cluster, 1);
        assert_eq!(l.refcount_table, 4..5);
        assert_eq!(
            l.data_runs,
            vec![DataRun {
                guest: 0,
                host: 5,
                count: 2560
            }]
        );
        assert_eq!(l.file_length, 5_379_194_880);
    }

    #[test]
    fn falloc_zero_size_moves_the_refcount_table_like_qemu() {
        let l = plan(0, 65536, Preallocation::Falloc);
        assert_eq!(l.refcount_table, 3..4);
        assert_eq!(l.free, vec![1..2]);
        assert_eq!(l.header.l1_table_offset, 0);
        assert_eq!(l.file_length, 4 * 65536);
    }

    #[test]
    fn metadata_unaligned_size_zeroes_the_tail_of_the_last_cluster() {
        let l = plan((1 << 20) + 512, 65536, Preallocation::Metadata);
        assert_eq!(l.file_length, 1_441_792);
        let last = 21 * 65536;
        assert_eq!(l.tail_zeroes, Some(last + 512..last + 65536));
    }

    #[test]
    fn size_rounds_up_to_512() {
        assert_eq!(plan(1, 65536, Preallocation::Off).header.size, 512);
    }

    #[test]
    fn every_used_cluster_has_a_refblock_and_a_refcount() {
        for p in [
            Preallocation::Off,
            Preallocation::Metadata,
            Preallocation::Falloc,
        ] {
            for cs in [512, 4096, 65536] {
                let l = plan(64 << 20, cs, p);
                for c in 0..l.end_cluster {
                    let range = usize::try_from(c / l.refblock_entries).unwrap();
                    assert!(l.refblocks[range].is_some(), "{p:?} cs {cs} cluster {c}");
                }
                let rt_entries = (l.refcount_table.end - l.refcount_table.start) * cs / 8;
                assert!(l.refblocks.len() as u64 <= rt_entries);
            }
        }
    }

    #[test]
    fn small_clusters_get_a_refcount_table_sized_up_front() {
        // 128 GiB at 512 B: qemu grows the table to 7 clusters; qpool sizes it once.
        let l = plan(128 * GIB, 512, Preallocation::Off);
        let rt = l.refcount_table.end - l.refcount_table.start;
        assert!(rt > 1);
        assert_eq!(l.refcount_table.start, 1);
        assert!(l.refblocks.len() as u64 <= rt * 512 / 8);
    }

    #[test]
    fn l1_limit_refuses_128g_plus_at_512b() {
        let err = Layout::plan(&opts(128 * GIB + 512, 512), Preallocation::Off).unwrap_err();
        assert!(matches!(err, Error::L1TooLarge { .. }), "{err}");
    }

    #[test]
    fn option_checks_follow_qemu() {
        let bad = |o: Options, p| Layout::plan(&o, p).unwrap_err();
        assert_eq!(
            bad(opts(GIB, 1000), Preallocation::Off),
            Error::ClusterSize(1000)
        );
        assert_eq!(
            bad(opts(GIB, 4 << 20), Preallocation::Off),
            Error::ClusterSize(4 << 20)
        );
        assert_eq!(
            bad(
                Options {
                    refcount_bits: 3,
                    ..opts(GIB, 65536)
                },
                Preallocation::Off
            ),
            Error::RefcountBits(3)
        );
        assert_eq!(
            bad(
                Options {
                    refcount_bits: 128,
                    ..opts(GIB, 65536)
                },
                Preallocation::Off
            ),
            Error::RefcountBits(128)
        );
        let v2 = Options {
            version: Compat::V0_10,
            ..opts(GIB, 65536)
        };
        let needs_v3 = [
            Options {
                lazy_refcounts: true,
                ..v2.clone()
            },
            Options {
                refcount_bits: 8,
                ..v2.clone()
            },
            Options {
                extended_l2: true,
                ..v2
            },
        ];
        for o in needs_v3 {
            assert!(matches!(bad(o, Preallocation::Off), Error::NeedsV3(_)));
        }
        assert_eq!(
            bad(
                Options {
                    extended_l2: true,
                    ..opts(GIB, 8192)
                },
                Preallocation::Off
            ),
            Error::ExtendedL2ClusterSize(8192)
        );
        let overlay = Options {
            backing: Some(("/b".into(), Some("qcow2".into()))),
            ..opts(GIB, 65536)
        };
        assert_eq!(
            bad(overlay.clone(), Preallocation::Metadata),
            Error::BackingWithPreallocation("metadata")
        );
        assert!(
            Layout::plan(
                &Options {
                    extended_l2: true,
                    ..overlay
                },
                Preallocation::Metadata
            )
            .is_ok()
        );
    }

    #[test]
    fn long_backing_name_does_not_fit_a_512_byte_cluster() {
        let o = Options {
            backing: Some(("/".repeat(600), Some("qcow2".into()))),
            ..opts(GIB, 512)
        };
        assert!(matches!(
            Layout::plan(&o, Preallocation::Off),
            Err(Error::HeaderTooBig { .. })
        ));
    }

    #[test]
    fn backing_name_goes_after_the_extensions() {
        let o = Options {
            backing: Some(("base.qcow2".into(), Some("qcow2".into()))),
            ..opts(GIB, 65536)
        };
        let l = Layout::plan(&o, Preallocation::Off).unwrap();
        assert_eq!(l.header.backing_file_offset, 528);
        assert_eq!(l.header.backing_file_size, 10);
    }

    #[test]
    fn refcount_table_limit_is_enforced() {
        // 512 B clusters with 64-bit refcounts: 64 clusters per refblock; 100 GiB of
        // metadata preallocation needs far more than 8 MiB of refcount table.
        let o = Options {
            refcount_bits: 64,
            ..opts(100 * GIB, 512)
        };
        assert!(matches!(
            Layout::plan(&o, Preallocation::Metadata),
            Err(Error::RefcountTableTooLarge { .. })
        ));
    }

    #[test]
    fn off_with_data_maps_only_the_data_like_qemu_img_convert() {
        // 64 MiB at 64 KiB: 1024 clusters, one L2 table covers 8192.
        let l = Layout::plan_with_data(&opts(64 << 20, 65536), Preallocation::Off, &[2..4, 10..11])
            .unwrap();
        assert_eq!(
            l.l2_tables,
            vec![L2Table {
                l1_index: 0,
                cluster: 4
            }]
        );
        assert_eq!(
            l.data_runs,
            vec![
                DataRun {
                    guest: 2,
                    host: 5,
                    count: 2
                },
                DataRun {
                    guest: 10,
                    host: 7,
                    count: 1
                }
            ]
        );
        assert_eq!(l.file_length, 8 * 65536);
    }

    #[test]
    fn data_spanning_tables_gets_one_table_each() {
        // 512 B clusters: 64 entries per L2 table.
        let l = Layout::plan_with_data(&opts(1 << 20, 512), Preallocation::Off, &[60..70]).unwrap();
        assert_eq!(
            l.l2_tables.iter().map(|t| t.l1_index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        let in_first: Vec<DataRun> = l.runs_in_table(0).collect();
        assert_eq!(in_first.len(), 1);
        assert_eq!((in_first[0].guest, in_first[0].count), (60, 4));
        let in_second: Vec<DataRun> = l.runs_in_table(1).collect();
        assert_eq!((in_second[0].guest, in_second[0].count), (64, 6));
    }

    #[test]
    fn data_outside_the_image_is_refused() {
        let err = Layout::plan_with_data(&opts(1 << 20, 65536), Preallocation::Off, &[10..20])
            .unwrap_err();
        assert!(matches!(err, Error::DataOutOfRange { .. }), "{err}");
    }

    #[test]
    fn guest_prefix_extents_follow_the_l2_runs() {
        let l = plan(2 * GIB, 65536, Preallocation::Metadata);
        // 600 MiB spans L2 #0 (512 MiB) and part of #1.
        let ext = l.guest_prefix_extents(600 << 20);
        assert_eq!(ext.len(), 2);
        assert_eq!(ext[0], 5 * 65536..(5 + 8192) * 65536);
        assert_eq!(ext[1].end - ext[1].start, (88 << 20) as u64);
    }
}
