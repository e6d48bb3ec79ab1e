//! Unit tests of `spec`.
use super::*;

/// The header of `qemu-img create -f qcow2 x 5G` (qcow2-create.md §1.1), annotated.
    #[rustfmt::skip]
    const DEFAULT_5G_V3: [u8; 112] = [
        0x51, 0x46, 0x49, 0xfb,                         // magic
        0x00, 0x00, 0x00, 0x03,                         // version 3
        0, 0, 0, 0, 0, 0, 0, 0,                         // backing_file_offset
        0, 0, 0, 0,                                     // backing_file_size
        0x00, 0x00, 0x00, 0x10,                         // cluster_bits 16
        0x00, 0x00, 0x00, 0x01, 0x40, 0x00, 0x00, 0x00, // size 5 GiB
        0, 0, 0, 0,                                     // crypt_method
        0x00, 0x00, 0x00, 0x0a,                         // l1_size 10
        0, 0, 0, 0, 0x00, 0x03, 0x00, 0x00,             // l1_table_offset 0x30000
        0, 0, 0, 0, 0x00, 0x01, 0x00, 0x00,             // refcount_table_offset 0x10000
        0x00, 0x00, 0x00, 0x01,                         // refcount_table_clusters
        0, 0, 0, 0,                                     // nb_snapshots
        0, 0, 0, 0, 0, 0, 0, 0,                         // snapshots_offset
        0, 0, 0, 0, 0, 0, 0, 0,                         // incompatible_features
        0, 0, 0, 0, 0, 0, 0, 0,                         // compatible_features
        0, 0, 0, 0, 0, 0, 0, 0,                         // autoclear_features
        0x00, 0x00, 0x00, 0x04,                         // refcount_order 4
        0x00, 0x00, 0x00, 0x70,                         // header_length 112
        0,                                              // compression_type zlib
        0, 0, 0, 0, 0, 0, 0,                            // padding
    ];

fn default_header() -> Header {
    Header {
        version: Compat::V1_1,
        backing_file_offset: 0,
        backing_file_size: 0,
        cluster_bits: 16,
        size: 5 << 30,
        crypt_method: 0,
        l1_size: 10,
        l1_table_offset: 0x30000,
        refcount_table_offset: 0x10000,
        refcount_table_clusters: 1,
        nb_snapshots: 0,
        snapshots_offset: 0,
        incompatible_features: 0,
        compatible_features: 0,
        autoclear_features: 0,
        refcount_order: 4,
        header_length: 112,
        compression_type: 0,
    }
}

#[test]
fn header_encode_matches_qemu_default_bytes() {
    assert_eq!(default_header().encode(), DEFAULT_5G_V3.to_vec());
}

#[test]
fn header_decode_inverts_encode() {
    assert_eq!(Header::decode(&DEFAULT_5G_V3).unwrap(), default_header());
}

#[test]
fn v2_header_is_72_bytes_and_round_trips() {
    let mut h = default_header();
    h.version = Compat::V0_10;
    h.header_length = 72;
    let bytes = h.encode();
    assert_eq!(bytes.len(), 72);
    assert_eq!(&bytes[4..8], &[0, 0, 0, 2]);
    assert_eq!(Header::decode(&bytes).unwrap(), h);
}

#[test]
fn header_decode_refuses_bad_magic() {
    let mut bytes = DEFAULT_5G_V3;
    bytes[3] = 0xfc;
    assert_eq!(Header::decode(&bytes), Err(SpecError::BadMagic));
}

#[test]
fn header_decode_refuses_bad_version() {
    let mut bytes = DEFAULT_5G_V3;
    bytes[7] = 4;
    assert_eq!(Header::decode(&bytes), Err(SpecError::BadVersion(4)));
}

#[test]
fn header_decode_refuses_bad_cluster_bits() {
    let mut bytes = DEFAULT_5G_V3;
    bytes[23] = 3;
    assert_eq!(Header::decode(&bytes), Err(SpecError::BadClusterBits(3)));
    bytes[23] = 22;
    assert_eq!(Header::decode(&bytes), Err(SpecError::BadClusterBits(22)));
}

#[test]
fn header_decode_refuses_huge_header_length() {
    let mut bytes = DEFAULT_5G_V3;
    bytes[100..104].copy_from_slice(&0x0010_0000u32.to_be_bytes());
    assert_eq!(
        Header::decode(&bytes),
        Err(SpecError::BadHeaderLength(0x0010_0000))
    );
}

#[test]
fn header_decode_refuses_truncated_input() {
    assert_eq!(
        Header::decode(&DEFAULT_5G_V3[..50]),
        Err(SpecError::Truncated(50))
    );
    assert_eq!(
        Header::decode(&DEFAULT_5G_V3[..80]),
        Err(SpecError::Truncated(80))
    );
}

#[test]
fn extensions_end_where_qemu_puts_the_backing_name() {
    // qcow2-create.md §1.3: v3 at 64K with -F qcow2: bfmt at 112 (16 bytes),
    // feature table at 128, end marker at 520, backing name at 528.
    let ext = encode_extensions(&[
        Extension::BackingFormat("qcow2".into()),
        Extension::FeatureNameTable,
    ]);
    assert_eq!(V3_HEADER_LENGTH + ext.len(), 528);
    assert_eq!(&ext[..8], &[0xe2, 0x79, 0x2a, 0xca, 0, 0, 0, 5]);
    assert_eq!(&ext[8..16], b"qcow2\0\0\0");
    // Only the feature table: end marker at 504, end at 512.
    assert_eq!(
        V3_HEADER_LENGTH + encode_extensions(&[Extension::FeatureNameTable]).len(),
        512
    );
}

#[test]
fn extensions_decode_inverts_encode() {
    let mut cluster = DEFAULT_5G_V3.to_vec();
    cluster.extend(encode_extensions(&[
        Extension::BackingFormat("raw".into()),
        Extension::FeatureNameTable,
    ]));
    cluster.resize(4096, 0);
    let (exts, terminated) = decode_extensions(&default_header(), &cluster).unwrap();
    assert!(terminated);
    assert_eq!(
        exts,
        vec![
            Extension::BackingFormat("raw".into()),
            Extension::FeatureNameTable
        ]
    );
}

#[test]
fn extension_running_past_the_cluster_is_refused() {
    let mut cluster = DEFAULT_5G_V3.to_vec();
    cluster.extend_from_slice(&[0xe2, 0x79, 0x2a, 0xca, 0xff, 0xff, 0xff, 0xff]);
    cluster.resize(65536, 0);
    assert_eq!(
        decode_extensions(&default_header(), &cluster),
        Err(SpecError::BadExtension(112))
    );
}

#[test]
fn refcount_block_bytes_match_qemu_for_every_width() {
    // qcow2-create.md §2.3: first bytes of refblock 0 with clusters 0..=3 in use.
    let expected: [(u32, &[u8]); 7] = [
        (0, &[0x0f]),
        (1, &[0x55]),
        (2, &[0x11, 0x11]),
        (3, &[1, 1, 1, 1]),
        (4, &[0, 1, 0, 1, 0, 1, 0, 1]),
        (5, &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]),
        (
            6,
            &[
                0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
                0, 0, 0, 1,
            ],
        ),
    ];
    for (order, bytes) in expected {
        let mut block = vec![0u8; 64];
        for i in 0..4 {
            set_refcount(&mut block, i, order, 1);
        }
        assert_eq!(&block[..bytes.len()], bytes, "refcount_order {order}");
        assert!(block[bytes.len()..].iter().all(|&b| b == 0));
        for i in 0..4 {
            assert_eq!(get_refcount(&block, i, order), 1);
        }
        assert_eq!(get_refcount(&block, 4, order), 0);
    }
}

proptest::proptest! {
    #[test]
    fn header_decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = Header::decode(&bytes);
    }

    #[test]
    fn v3_header_round_trips(size: u64, l1_size: u32, l1: u64, rt: u64, bits in 9u32..=21, order in 0u32..=6, compat: u64, incompat: u64) {
        let h = Header {
            size, l1_size, l1_table_offset: l1, refcount_table_offset: rt,
            cluster_bits: bits, refcount_order: order,
            compatible_features: compat, incompatible_features: incompat,
            ..default_header()
        };
        proptest::prop_assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn extensions_decode_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let mut cluster = DEFAULT_5G_V3.to_vec();
        cluster.extend(tail);
        let _ = decode_extensions(&default_header(), &cluster);
        let _ = decode_backing_name(&Header { backing_file_offset: 120, backing_file_size: 50, ..default_header() }, &cluster);
    }
}

#[test]
fn entries_set_copied_and_mask_offsets() {
    assert_eq!(l1_entry(0x40000), 0x8000_0000_0004_0000);
    assert_eq!(l2_entry(0x50000), 0x8000_0000_0005_0000);
}
