//! Unit tests of `layout`.
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
    let err =
        Layout::plan_with_data(&opts(1 << 20, 65536), Preallocation::Off, &[10..20]).unwrap_err();
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

/// The LUKS header length of aes-256-xts: qemu-img's payload offset, 2,068,480 bytes.
const LUKS_256: u64 = 2_068_480;

fn encrypted(size: u64, cs: u64, p: Preallocation) -> Layout {
    let o = Options {
        luks_length: Some(LUKS_256),
        ..opts(size, cs)
    };
    Layout::plan(&o, p).unwrap()
}

#[test]
fn encrypted_layouts_put_the_luks_clusters_last_like_qemu() {
    // Measured with qemu-img 10.0.2 (encrypt.format=luks, 1 GiB, 64 KiB clusters): the
    // header's 32 clusters come after everything else, at 0x40000 thin and at 0x40060000
    // (cluster 16390) when preallocated; the file ends with them.
    let off = encrypted(GIB, 65536, Preallocation::Off);
    assert_eq!(off.luks, Some(4..36));
    assert_eq!(off.file_length, 2_359_296);
    assert_eq!(off.header.crypt_method, spec::CRYPT_LUKS);
    assert!(off.extensions.contains(&Extension::FullDiskEncryption {
        offset: 0x40000,
        length: LUKS_256
    }));
    for mode in [
        Preallocation::Metadata,
        Preallocation::Falloc,
        Preallocation::Full,
    ] {
        let l = encrypted(GIB, 65536, mode);
        assert_eq!(l.luks, Some(16390..16422), "{mode}");
        assert_eq!(l.file_length, 1_076_232_192, "{mode}");
        assert_eq!(l.refcount(16421), 1, "{mode}");
    }
    // 5 TiB thin: an L1 of two clusters, the header from cluster 5.
    assert_eq!(
        encrypted(5 << 40, 65536, Preallocation::Off).luks,
        Some(5..37)
    );
}

#[test]
fn the_encryption_extension_sits_between_backing_format_and_feature_table() {
    let o = Options {
        luks_length: Some(LUKS_256),
        backing: Some(("b.qcow2".into(), Some("qcow2".into()))),
        extended_l2: false,
        ..opts(GIB, 65536)
    };
    let l = Layout::plan(&o, Preallocation::Off).unwrap();
    assert!(matches!(
        l.extensions.as_slice(),
        [
            Extension::BackingFormat(_),
            Extension::FullDiskEncryption { .. },
            Extension::FeatureNameTable
        ]
    ));
    let plain = plan(GIB, 65536, Preallocation::Off);
    assert_eq!((plain.luks, plain.header.crypt_method), (None, 0));
}

#[test]
fn luks_clusters_that_need_a_refblock_beyond_a_full_table_get_room() {
    // 512-byte clusters, falloc: the header's 4040 clusters cross refcount ranges after
    // the table was sized; every range still has a refblock the table can point at.
    let l = encrypted(16 << 20, 512, Preallocation::Falloc);
    let luks = l.luks.clone().unwrap();
    let table_entries = (l.refcount_table.end - l.refcount_table.start) * 512 / 8;
    assert!(l.refblocks.len() as u64 <= table_entries);
    let last_range = usize::try_from((luks.end - 1) / l.refblock_entries).unwrap();
    assert!(l.refblocks[last_range].is_some());
}
