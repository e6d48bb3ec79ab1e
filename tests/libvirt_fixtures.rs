//! libvirt 9.0's own XML fixtures as a second oracle for qpool's parsers.
//!
//! `scripts/libvirt-source` unpacks Debian's libvirt 9.0 source under `target/` (nothing of it
//! is copied into this repository). Every document of its `tests/storagevolxml2xmlin/` and
//! `tests/storagepoolxml2xmlin/` goes through qpool's parser, and [`VOLUMES`] and [`POOLS`]
//! say, for each, what must happen:
//!
//! - [`Expect::Same`]: accepted, and the definition qpool prints back is libvirt's
//!   `…xml2xmlout` twin, byte for byte (a file volume or a dir pool);
//! - [`Expect::SameWithoutCapacity`]: the same, read as a create-from reads it (libvirt's
//!   test parses it with VIR_VOL_XML_PARSE_NO_CAPACITY);
//! - [`Expect::Accepted`]: accepted; libvirt's own xml2xml test does not use it (its twin,
//!   where there is one, is stale), so there is nothing to compare;
//! - [`Expect::Refused`]: refused, with an error that names what qpool does not support
//!   (other pool types, volume types and formats, encryption formats and ciphers).
//!
//! Both tables must name every fixture, and only those. Without the source (no root, or no
//! package registry), the test fails under CI=true and is skipped loudly elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::in_ci;
use qpool::xml::{CapacityRule, PoolDef, VolumeDef};

/// What a fixture must do.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Accepted; printed back as libvirt's twin.
    Same,
    /// Accepted without a capacity (create-from rules); printed back as libvirt's twin.
    SameWithoutCapacity,
    /// Accepted; not compared (libvirt's xml2xml test leaves it out).
    Accepted,
    /// Refused, the error naming this.
    Refused(&'static str),
}

use Expect::*;

/// Every volume fixture of libvirt 9.0 (`tests/storagevolxml2xmlin/`).
const VOLUMES: &[(&str, Expect)] = &[
    (
        "vol-file-backing.xml",
        Refused("unsupported volume format 'vmdk'"),
    ),
    (
        "vol-file-iso.xml",
        Refused("unsupported volume format 'iso'"),
    ),
    ("vol-file-naming.xml", Same),
    ("vol-file-qcow2.xml", Accepted),
    ("vol-file.xml", Same),
    (
        "vol-gluster-dir-neg-uid.xml",
        Refused("volume type 'netdir'"),
    ),
    ("vol-gluster-dir.xml", Refused("volume type 'netdir'")),
    ("vol-logical-backing.xml", Refused("volume type 'block'")),
    ("vol-logical.xml", Refused("volume type 'block'")),
    (
        "vol-luks-cipher.xml",
        Refused("unsupported cipher 'serpent'"),
    ),
    ("vol-luks-convert.xml", Accepted),
    ("vol-luks.xml", Same),
    ("vol-partition.xml", Refused("volume type 'block'")),
    ("vol-qcow2-0.10-lazy.xml", Same),
    ("vol-qcow2-1.1.xml", Same),
    ("vol-qcow2-clusterSize.xml", Same),
    (
        "vol-qcow2-encryption.xml",
        Refused("unsupported encryption format 'qcow'"),
    ),
    ("vol-qcow2-lazy.xml", Same),
    ("vol-qcow2-luks-convert.xml", Accepted),
    ("vol-qcow2-luks.xml", Same),
    ("vol-qcow2-nobacking.xml", Same),
    ("vol-qcow2-nocapacity-backing.xml", Accepted),
    ("vol-qcow2-nocapacity.xml", SameWithoutCapacity),
    ("vol-qcow2-nocow.xml", Accepted),
    ("vol-qcow2-zerocapacity.xml", Accepted),
    ("vol-qcow2.xml", Same),
];

/// Every pool fixture of libvirt 9.0 (`tests/storagepoolxml2xmlin/`).
const POOLS: &[(&str, Expect)] = &[
    ("pool-dir-cow.xml", Same),
    ("pool-dir-naming.xml", Same),
    ("pool-dir.xml", Same),
    (
        "pool-disk-device-nopartsep.xml",
        Refused("pool type 'disk'"),
    ),
    ("pool-disk.xml", Refused("pool type 'disk'")),
    ("pool-fs.xml", Refused("pool type 'fs'")),
    ("pool-gluster-sub.xml", Refused("pool type 'gluster'")),
    ("pool-gluster.xml", Refused("pool type 'gluster'")),
    ("pool-iscsi-auth.xml", Refused("pool type 'iscsi'")),
    (
        "pool-iscsi-direct-auth.xml",
        Refused("pool type 'iscsi-direct'"),
    ),
    ("pool-iscsi-direct.xml", Refused("pool type 'iscsi-direct'")),
    ("pool-iscsi-multiiqn.xml", Refused("pool type 'iscsi'")),
    (
        "pool-iscsi-vendor-product.xml",
        Refused("pool type 'iscsi'"),
    ),
    ("pool-iscsi.xml", Refused("pool type 'iscsi'")),
    ("pool-logical-create.xml", Refused("pool type 'logical'")),
    ("pool-logical-noname.xml", Refused("pool type 'logical'")),
    ("pool-logical-nopath.xml", Refused("pool type 'logical'")),
    ("pool-logical.xml", Refused("pool type 'logical'")),
    ("pool-mpath.xml", Refused("pool type 'mpath'")),
    ("pool-netfs-auto.xml", Refused("pool type 'netfs'")),
    ("pool-netfs-cifs.xml", Refused("pool type 'netfs'")),
    (
        "pool-netfs-gluster-without-slash.xml",
        Refused("pool type 'netfs'"),
    ),
    ("pool-netfs-gluster.xml", Refused("pool type 'netfs'")),
    ("pool-netfs-ns-mountopts.xml", Refused("pool type 'netfs'")),
    ("pool-netfs-protocol-ver.xml", Refused("pool type 'netfs'")),
    ("pool-netfs-slash.xml", Refused("pool type 'netfs'")),
    ("pool-netfs.xml", Refused("pool type 'netfs'")),
    ("pool-rbd-ipv6.xml", Refused("pool type 'rbd'")),
    ("pool-rbd-ns-configopts.xml", Refused("pool type 'rbd'")),
    (
        "pool-rbd-refresh-volume-allocation.xml",
        Refused("pool type 'rbd'"),
    ),
    ("pool-rbd.xml", Refused("pool type 'rbd'")),
    (
        "pool-scsi-type-fc-host-managed.xml",
        Refused("pool type 'scsi'"),
    ),
    ("pool-scsi-type-fc-host.xml", Refused("pool type 'scsi'")),
    (
        "pool-scsi-type-scsi-host-stable.xml",
        Refused("pool type 'scsi'"),
    ),
    ("pool-scsi-type-scsi-host.xml", Refused("pool type 'scsi'")),
    ("pool-scsi.xml", Refused("pool type 'scsi'")),
    ("pool-vstorage.xml", Refused("pool type 'vstorage'")),
    ("pool-zfs-sourcedev.xml", Refused("pool type 'zfs'")),
    ("pool-zfs.xml", Refused("pool type 'zfs'")),
];

/// libvirt's unpacked source tree, from `scripts/libvirt-source`; `None` (skipped loudly)
/// where it cannot be had outside CI.
fn libvirt_source() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/libvirt-source");
    let out = Command::new("bash").arg(&script).output();
    let tree = match &out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        _ => {
            let why = match out {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                !in_ci(),
                "scripts/libvirt-source is required in CI and failed: {why}"
            );
            eprintln!("SKIPPED: libvirt's source is not available here: {why}");
            return None;
        }
    };
    assert!(
        tree.join("tests/storagevolxml2xmlin").is_dir(),
        "{} has no tests/storagevolxml2xmlin",
        tree.display()
    );
    Some(tree)
}

/// The `.xml` files of a fixture directory, sorted.
fn fixtures(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    names.sort();
    names
}

/// Runs every fixture of `kind` (`storagevol` or `storagepool`) against `table`, with
/// `parse` reading a document and printing qpool's definition back; returns the failures.
fn check(
    tree: &Path,
    kind: &str,
    table: &[(&str, Expect)],
    parse: impl Fn(&str, Expect) -> Result<String, String>,
) -> Vec<String> {
    let input = tree.join(format!("tests/{kind}xml2xmlin"));
    let output = tree.join(format!("tests/{kind}xml2xmlout"));
    let mut listed: Vec<String> = table.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        fixtures(&input),
        listed,
        "the {kind} table must name every fixture of libvirt 9.0, and only those"
    );
    let mut failures = Vec::new();
    for &(name, expect) in table {
        let text = std::fs::read_to_string(input.join(name)).expect("fixture");
        match (expect, parse(&text, expect)) {
            (Same | SameWithoutCapacity, Ok(ours)) => {
                let twin = std::fs::read_to_string(output.join(name)).expect("xml2xmlout twin");
                if ours != twin {
                    failures.push(format!(
                        "{name}: qpool prints\n{ours}\nlibvirt's twin is\n{twin}"
                    ));
                }
            }
            (Accepted, Ok(_)) => {}
            (Refused(needle), Err(e)) if e.contains(needle) => {}
            (Refused(needle), Err(e)) => {
                failures.push(format!(
                    "{name}: refused, but the error does not name {needle:?}: {e}"
                ));
            }
            (Refused(_), Ok(ours)) => {
                failures.push(format!("{name}: must be refused, qpool read it as\n{ours}"));
            }
            (_, Err(e)) => failures.push(format!("{name}: must be accepted: {e}")),
        }
    }
    failures
}

#[test]
fn libvirt_volume_and_pool_fixtures_are_read_or_refused_as_the_tables_say() {
    let Some(tree) = libvirt_source() else {
        return;
    };
    let mut failures = check(&tree, "storagevol", VOLUMES, |text, expect| {
        let rule = match expect {
            SameWithoutCapacity => CapacityRule::FromSource,
            _ => CapacityRule::Required,
        };
        VolumeDef::parse_with(text, rule)
            .map(|def| def.to_xml())
            .map_err(|e| qpool::error::one_line(&e))
    });
    failures.extend(check(&tree, "storagepool", POOLS, |text, _| {
        PoolDef::parse(text)
            .map(|def| def.to_xml(&def.uuid.expect("every fixture has a UUID")))
            .map_err(|e| qpool::error::one_line(&e))
    }));
    assert!(
        failures.is_empty(),
        "{} fixture(s) not as the tables say:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
