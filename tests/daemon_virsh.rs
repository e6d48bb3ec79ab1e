//! Unmodified `virsh` against `qpoold`: every storage command a user types, with its output,
//! exit status and error messages, and the volumes it makes checked by oracles we did not
//! write (`qemu-img check`/`info`/`compare`, `xmllint --relaxng` with libvirt's schemas, stat).
//!
//! Each test runs its own daemon on its own temporary socket and pool directory. A missing
//! virsh, xmllint or qemu-img skips the test, except under CI=true where it fails.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{
    LIBVIRT_STORAGEPOOL_RNG, LIBVIRT_STORAGEVOL_RNG, alloc_and_size, assert_check_clean, have,
    have_libvirt_schemas, qemu_compare, qemu_info, xmllint_relaxng,
};

/// libvirt's pool capabilities schema.
const LIBVIRT_STORAGEPOOLCAPS_RNG: &str = "/usr/share/libvirt/schemas/storagepoolcaps.rng";

/// The oracles these tests need.
fn have_tools(tools: &[&str]) -> bool {
    tools.iter().all(|t| have(t))
}

/// virsh's `vshPrettyCapacity`: two decimals, binary units.
fn pretty(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// Filesystem capacity as a dir pool reports it: f_blocks × f_frsize.
fn fs_capacity(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks() * s.fragment_size()
}

/// The value of `<tag ...>VALUE</tag>` (first occurrence).
fn xml_value<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = xml
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let start = open + xml[open..].find('>').unwrap() + 1;
    let end = start + xml[start..].find('<').unwrap();
    &xml[start..end]
}

/// Validates `xml` against a RELAX NG schema with xmllint.
fn assert_valid(d: &Daemon, schema: &str, xml: &str, what: &str) {
    let file = d.write_file(&format!("{what}.xml"), xml);
    let (ok, err) = xmllint_relaxng(Path::new(schema), &file);
    assert!(
        ok,
        "{what} does not validate against {schema}: {err}\n{xml}"
    );
}

/// Asserts virsh failed with status 1 and exactly these `error:` lines on stderr.
fn assert_fails(out: (i32, String, String), lines: &[&str]) {
    let (status, stdout, stderr) = out;
    let expected: String = lines.iter().map(|l| format!("error: {l}\n")).collect();
    assert_eq!(
        (status, stderr.trim_end()),
        (1, expected.trim_end()),
        "stdout: {stdout}"
    );
}

const QCOW2_64M: &str = "<volume>\n  <name>a.qcow2</name>\n  <capacity unit=\"M\">64</capacity>\n  <target>\n    <format type=\"qcow2\"/>\n  </target>\n</volume>\n";

#[test]
fn pool_list_info_dumpxml_and_refresh_show_the_default_pool() {
    if !have_tools(&["virsh", "xmllint"]) || !have_libvirt_schemas() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        d.virsh_ok(&["pool-list", "--all"]),
        " Name      State    Autostart\n-------------------------------\n default   active   yes\n\n"
    );
    assert_eq!(
        d.virsh_ok(&["pool-list"]),
        " Name      State    Autostart\n-------------------------------\n default   active   yes\n\n"
    );
    let capacity = fs_capacity(d.pool_dir());
    let details = d.virsh_ok(&["pool-list", "--all", "--details"]);
    let row = details.lines().nth(2).expect("one pool row");
    assert!(
        row.starts_with(" default   running   yes         yes          ")
            && row.contains(&pretty(capacity)),
        "{details}"
    );

    let uuid = d.virsh_ok(&["pool-uuid", "default"]).trim().to_string();
    let info = d.virsh_ok(&["pool-info", "default"]);
    let head: Vec<&str> = info.lines().take(6).collect();
    assert_eq!(
        head,
        [
            "Name:           default",
            &format!("UUID:           {uuid}"),
            "State:          running",
            "Persistent:     yes",
            "Autostart:      yes",
            &format!("Capacity:       {}", pretty(capacity)),
        ]
    );
    assert!(info.contains("\nAllocation:     ") && info.contains("\nAvailable:      "));
    assert_eq!(d.virsh_ok(&["pool-name", &uuid]), "default\n\n");

    let xml = d.virsh_ok(&["pool-dumpxml", "default"]);
    assert_valid(&d, LIBVIRT_STORAGEPOOL_RNG, &xml, "pool");
    assert_eq!(xml_value(&xml, "uuid"), uuid);
    assert_eq!(xml_value(&xml, "path"), d.pool_dir().display().to_string());
    assert_eq!(xml_value(&xml, "capacity"), capacity.to_string());
    let allocation: u64 = xml_value(&xml, "allocation").parse().unwrap();
    let available: u64 = xml_value(&xml, "available").parse().unwrap();
    assert!(allocation + available <= capacity, "{xml}");
    let inactive = d.virsh_ok(&["pool-dumpxml", "default", "--inactive"]);
    assert_valid(&d, LIBVIRT_STORAGEPOOL_RNG, &inactive, "pool-inactive");

    assert_eq!(
        d.virsh_ok(&["pool-refresh", "default"]),
        "Pool default refreshed\n\n"
    );
    assert_fails(
        d.virsh(&["pool-info", "nosuchpool"]),
        &[
            "failed to get pool 'nosuchpool'",
            "Storage pool not found: no storage pool with matching name 'nosuchpool'",
        ],
    );
}

#[test]
fn pool_lifecycle_commands_change_state_and_definition_files() {
    if !have("virsh") {
        return;
    }
    let mut d = Daemon::start();
    let target = d.scratch().join("p2");
    let target_s = target.display().to_string();
    assert_eq!(
        d.virsh_ok(&["pool-define-as", "p2", "dir", "--target", &target_s]),
        "Pool p2 defined\n\n"
    );
    assert!(d.pools.join("p2.xml").is_file(), "definition file");
    assert!(!target.exists(), "define does not build");
    assert_eq!(
        d.virsh_ok(&["pool-list", "--all"]),
        " Name      State      Autostart\n---------------------------------\n default   active     yes\n p2        inactive   no\n\n"
    );
    let info = d.virsh_ok(&["pool-info", "p2"]);
    assert!(
        info.contains("State:          inactive\nPersistent:     yes\nAutostart:      no\n")
            && !info.contains("Capacity"),
        "{info}"
    );
    let details = d.virsh_ok(&["pool-list", "--all", "--details"]);
    let row: Vec<&str> = details
        .lines()
        .find(|l| l.starts_with(" p2 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row, ["p2", "inactive", "no", "yes", "-", "-", "-"]);
    assert_fails(
        d.virsh(&["vol-list", "p2"]),
        &[
            "Failed to list volumes",
            "Requested operation is not valid: storage pool 'p2' is not active",
        ],
    );

    assert_eq!(d.virsh_ok(&["pool-build", "p2"]), "Pool p2 built\n\n");
    assert!(target.is_dir());
    assert_eq!(d.virsh_ok(&["pool-start", "p2"]), "Pool p2 started\n\n");
    assert_fails(
        d.virsh(&["pool-start", "p2"]),
        &[
            "Failed to start pool p2",
            "Requested operation is not valid: storage pool 'p2' is already active",
        ],
    );
    assert_eq!(
        d.virsh_ok(&["pool-autostart", "p2"]),
        "Pool p2 marked as autostarted\n\n"
    );
    assert!(d.pools.join("autostart/p2.xml").symlink_metadata().is_ok());
    assert!(
        d.virsh_ok(&["pool-info", "p2"])
            .contains("State:          running\nPersistent:     yes\nAutostart:      yes\n")
    );

    // Definitions and autostart survive a restart.
    let uuid = d.virsh_ok(&["pool-uuid", "p2"]);
    d.restart();
    assert_eq!(
        d.virsh_ok(&["pool-list"]),
        " Name      State    Autostart\n-------------------------------\n default   active   yes\n p2        active   yes\n\n"
    );
    assert_eq!(d.virsh_ok(&["pool-uuid", "p2"]), uuid, "UUID kept");

    assert_eq!(
        d.virsh_ok(&["pool-autostart", "p2", "--disable"]),
        "Pool p2 unmarked as autostarted\n\n"
    );
    assert!(d.pools.join("autostart/p2.xml").symlink_metadata().is_err());
    assert_fails(
        d.virsh(&["pool-delete", "p2"]),
        &[
            "Failed to delete pool p2",
            "Requested operation is not valid: storage pool 'p2' is still active",
        ],
    );
    assert_eq!(d.virsh_ok(&["pool-destroy", "p2"]), "Pool p2 destroyed\n\n");
    assert_fails(
        d.virsh(&["pool-destroy", "p2"]),
        &[
            "Failed to destroy pool p2",
            "Requested operation is not valid: storage pool 'p2' is not active",
        ],
    );
    assert_fails(
        d.virsh(&["vol-info", "x", "--pool", "p2"]),
        &["pool 'p2' is not active"],
    );
    assert_eq!(d.virsh_ok(&["pool-delete", "p2"]), "Pool p2 deleted\n\n");
    assert!(!target.exists());
    assert_eq!(
        d.virsh_ok(&["pool-undefine", "p2"]),
        "Pool p2 has been undefined\n\n"
    );
    assert!(!d.pools.join("p2.xml").exists());
    assert_fails(
        d.virsh(&["pool-info", "p2"]),
        &[
            "failed to get pool 'p2'",
            "Storage pool not found: no storage pool with matching name 'p2'",
        ],
    );
}

#[test]
fn pool_define_of_an_existing_name_or_target_is_refused() {
    if !have("virsh") {
        return;
    }
    let d = Daemon::start();
    let uuid = d.virsh_ok(&["pool-uuid", "default"]).trim().to_string();
    let elsewhere = d.scratch().join("elsewhere").display().to_string();
    // pool-define-as sends no UUID, so libvirt gives the new definition a random one.
    assert_fails(
        d.virsh(&["pool-define-as", "default", "dir", "--target", &elsewhere]),
        &[
            "Failed to define pool default",
            &format!("operation failed: pool 'default' already exists with uuid {uuid}"),
        ],
    );
    let xml = d.virsh_ok(&["pool-dumpxml", "default"]);
    assert_eq!(
        xml_value(&xml, "path"),
        d.pool_dir().display().to_string(),
        "unchanged"
    );
    assert_fails(
        d.virsh(&[
            "pool-define-as",
            "twin",
            "dir",
            "--target",
            &d.pool_dir().display().to_string(),
        ]),
        &[
            "Failed to define pool twin",
            "operation failed: Storage source conflict with pool: 'default'",
        ],
    );
    // Redefining with the same UUID is allowed (libvirt's way to edit a definition).
    let redefined = d.write_file(
        "default.xml",
        &format!(
            "<pool type='dir'><name>default</name><uuid>{uuid}</uuid><target><path>{}</path></target></pool>",
            d.pool_dir().display()
        ),
    );
    assert_eq!(
        d.virsh_ok(&["pool-define", redefined.to_str().unwrap()]),
        "Pool default defined from ".to_string() + redefined.to_str().unwrap() + "\n\n"
    );
}

#[test]
fn volumes_created_by_virsh_match_stat_and_qemu_img() {
    if !have_tools(&["virsh", "qemu-img", "xmllint"]) || !have_libvirt_schemas() {
        return;
    }
    let d = Daemon::start();
    let file = d.write_file("a.xml", QCOW2_64M);
    let file_s = file.to_str().unwrap();
    assert_eq!(
        d.virsh_ok(&["vol-create", "default", file_s]),
        format!("Vol a.qcow2 created from {file_s}\n\n")
    );
    assert_fails(
        d.virsh(&["vol-create", "default", file_s]),
        &[
            &format!("Failed to create vol from {file_s}"),
            "storage volume 'a.qcow2' exists already",
        ],
    );
    assert_eq!(
        d.virsh_ok(&[
            "vol-create-as",
            "default",
            "r.img",
            "8M",
            "--allocation",
            "1M",
            "--format",
            "raw"
        ]),
        "Vol r.img created\n\n"
    );
    assert_eq!(
        d.virsh_ok(&[
            "vol-create-as",
            "default",
            "p.qcow2",
            "64M",
            "--format",
            "qcow2",
            "--prealloc-metadata"
        ]),
        "Vol p.qcow2 created\n\n"
    );

    // qemu-img agrees on format and virtual size, and finds the qcow2 images clean.
    for (name, format, size) in [
        ("a.qcow2", "qcow2", 64u64 << 20),
        ("r.img", "raw", 8 << 20),
        ("p.qcow2", "qcow2", 64 << 20),
    ] {
        let info = qemu_info(&d.vol(name));
        assert_eq!(info["format"], format, "{name}");
        assert_eq!(info["virtual-size"].as_u64(), Some(size), "{name}");
        if format == "qcow2" {
            assert_check_clean(&d.vol(name));
        }
    }
    // --allocation 1M on raw: exactly 1 MiB allocated (libvirt-rpc.md §6.1).
    assert_eq!(alloc_and_size(&d.vol("r.img")), (1 << 20, 8 << 20));
    // --prealloc-metadata: every L2 table and refcount block is allocated; the file holds
    // at least the 64 MiB of guest clusters' metadata span, allocated.
    let (p_alloc, p_size) = alloc_and_size(&d.vol("p.qcow2"));
    assert!(
        p_alloc >= 64 << 20 && p_size >= 64 << 20,
        "{p_alloc} {p_size}"
    );

    // vol-info, in its three forms, against stat.
    for name in ["a.qcow2", "r.img", "p.qcow2"] {
        let (allocation, physical) = alloc_and_size(&d.vol(name));
        let capacity = qemu_info(&d.vol(name))["virtual-size"].as_u64().unwrap();
        assert_eq!(
            d.virsh_ok(&["vol-info", name, "--pool", "default"]),
            format!(
                "Name:           {name}\nType:           file\nCapacity:       {}\nAllocation:     {}\n\n",
                pretty(capacity),
                pretty(allocation)
            )
        );
        assert_eq!(
            d.virsh_ok(&["vol-info", name, "--pool", "default", "--bytes"]),
            format!(
                "Name:           {name}\nType:           file\nCapacity:       {capacity} bytes\nAllocation:     {allocation} bytes\n\n"
            )
        );
        assert_eq!(
            d.virsh_ok(&["vol-info", name, "--pool", "default", "--physical"]),
            format!(
                "Name:           {name}\nType:           file\nCapacity:       {}\nPhysical:       {}\n\n",
                pretty(capacity),
                pretty(physical)
            )
        );
        // vol-dumpxml validates against libvirt's schema and carries the same numbers.
        let xml = d.virsh_ok(&["vol-dumpxml", name, "--pool", "default"]);
        assert_valid(&d, LIBVIRT_STORAGEVOL_RNG, &xml, name);
        let path = d.vol(name).display().to_string();
        assert_eq!(xml_value(&xml, "key"), path);
        assert_eq!(xml_value(&xml, "path"), path);
        assert_eq!(xml_value(&xml, "capacity"), capacity.to_string(), "{name}");
        assert_eq!(
            xml_value(&xml, "allocation"),
            allocation.to_string(),
            "{name}"
        );
        assert_eq!(xml_value(&xml, "physical"), physical.to_string(), "{name}");
        let format = if name.ends_with("qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        assert!(xml.contains(&format!("<format type='{format}'/>")), "{xml}");
    }

    // vol-list --details: sorted by name, sizes as vol-info shows them.
    let list = d.virsh_ok(&["vol-list", "default", "--details"]);
    let rows: Vec<Vec<String>> = list
        .lines()
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let expected: Vec<Vec<String>> = ["a.qcow2", "p.qcow2", "r.img"]
        .iter()
        .map(|name| {
            let (allocation, _) = alloc_and_size(&d.vol(name));
            let capacity = qemu_info(&d.vol(name))["virtual-size"].as_u64().unwrap();
            let mut row = vec![
                name.to_string(),
                d.vol(name).display().to_string(),
                "file".into(),
            ];
            row.extend(pretty(capacity).split(' ').map(String::from));
            row.extend(pretty(allocation).split(' ').map(String::from));
            row
        })
        .collect();
    assert_eq!(rows, expected, "{list}");
    assert!(list.starts_with(" Name      Path"), "{list}");
}

#[test]
fn volume_lookups_by_name_key_and_path_agree() {
    if !have("virsh") {
        return;
    }
    let d = Daemon::start();
    d.virsh_ok(&["vol-create-as", "default", "v.img", "1M"]);
    let path = d.vol("v.img").display().to_string();
    let uuid = d.virsh_ok(&["pool-uuid", "default"]);
    assert_eq!(
        d.virsh_ok(&["vol-path", "v.img", "--pool", "default"]),
        format!("{path}\n\n")
    );
    assert_eq!(
        d.virsh_ok(&["vol-key", "v.img", "--pool", "default"]),
        format!("{path}\n\n")
    );
    assert_eq!(d.virsh_ok(&["vol-name", &path]), "v.img\n\n");
    assert_eq!(d.virsh_ok(&["vol-pool", &path]), "default\n\n");
    assert_eq!(d.virsh_ok(&["vol-pool", &path, "--uuid"]), uuid);
    assert!(
        d.virsh_ok(&["vol-info", &path])
            .starts_with("Name:           v.img\nType:           file\nCapacity:       1.00 MiB\n")
    );
    assert_fails(
        d.virsh(&["vol-info", "nosuchvol", "--pool", "default"]),
        &[
            "failed to get vol 'nosuchvol'",
            "Storage volume not found: no storage vol with matching path 'nosuchvol'",
        ],
    );
    let missing = d.vol("nosuchvol").display().to_string();
    assert_fails(
        d.virsh(&["vol-info", &missing]),
        &[
            &format!("failed to get vol '{missing}', specifying --pool might help"),
            &format!("Storage volume not found: no storage vol with matching path '{missing}'"),
        ],
    );
    assert_fails(
        d.virsh(&["vol-info", "v.img", "--pool", "nosuchpool"]),
        &[
            "failed to get pool 'nosuchpool'",
            "Storage pool not found: no storage pool with matching name 'nosuchpool'",
        ],
    );
}

#[test]
fn clone_create_from_resize_wipe_and_delete_agree_with_qemu_img() {
    if !have_tools(&["virsh", "qemu-img", "qemu-io"]) {
        return;
    }
    let d = Daemon::start();
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "a.qcow2",
        "64M",
        "--format",
        "qcow2",
    ]);
    // Guest data in the source, written by qemu-io (an oracle we did not write).
    let a = d.vol("a.qcow2");
    let out = common::run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 0x5a 1M 3M",
            "-c",
            "write -P 0xa5 40M 64k",
            a.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        d.virsh_ok(&["vol-clone", "a.qcow2", "b.qcow2", "--pool", "default"]),
        "Vol b.qcow2 cloned from a.qcow2\n\n"
    );
    assert_check_clean(&d.vol("b.qcow2"));
    assert!(
        qemu_compare(&a, &d.vol("b.qcow2"), false),
        "clone has the source's data"
    );

    let xml = d.write_file("c.xml", &QCOW2_64M.replace("a.qcow2", "c.qcow2"));
    assert_eq!(
        d.virsh_ok(&[
            "vol-create-from",
            "default",
            xml.to_str().unwrap(),
            "a.qcow2",
            "--inputpool",
            "default"
        ]),
        "Vol c.qcow2 created from input vol a.qcow2\n\n"
    );
    assert_check_clean(&d.vol("c.qcow2"));
    assert!(qemu_compare(&a, &d.vol("c.qcow2"), false));
    let raw_xml = d.write_file(
        "craw.xml",
        "<volume><name>c.raw</name><capacity unit='M'>64</capacity><target><format type='raw'/></target></volume>",
    );
    d.virsh_ok(&[
        "vol-create-from",
        "default",
        raw_xml.to_str().unwrap(),
        "a.qcow2",
        "--inputpool",
        "default",
    ]);
    assert_eq!(qemu_info(&d.vol("c.raw"))["format"], "raw");
    assert!(
        qemu_compare(&a, &d.vol("c.raw"), false),
        "conversion to raw keeps the data"
    );

    // vol-resize: "128M" is absolute, --delta adds, shrinking needs --shrink.
    assert_eq!(
        d.virsh_ok(&["vol-resize", "b.qcow2", "128M", "--pool", "default"]),
        "Size of volume 'b.qcow2' successfully changed to 128M\n\n"
    );
    assert_eq!(
        qemu_info(&d.vol("b.qcow2"))["virtual-size"].as_u64(),
        Some(128 << 20)
    );
    assert_eq!(
        d.virsh_ok(&[
            "vol-resize",
            "b.qcow2",
            "--delta",
            "16M",
            "--pool",
            "default"
        ]),
        "Size of volume 'b.qcow2' successfully changed by 16M\n\n"
    );
    assert_eq!(
        qemu_info(&d.vol("b.qcow2"))["virtual-size"].as_u64(),
        Some(144 << 20)
    );
    assert!(
        d.virsh_ok(&["vol-info", "b.qcow2", "--pool", "default", "--bytes"])
            .contains("Capacity:       150994944 bytes\n")
    );
    assert_check_clean(&d.vol("b.qcow2"));
    let (status, _, err) = d.virsh(&["vol-resize", "b.qcow2", "10M", "--pool", "default"]);
    assert_eq!(status, 1);
    assert!(
        err.starts_with(
            "error: Failed to change size of volume 'b.qcow2' to 10M\nerror: invalid argument: "
        ) && err.contains("shrink"),
        "{err}"
    );
    d.virsh_ok(&["vol-create-as", "default", "r.img", "8M"]);
    // A fully allocated raw volume does not shrink below what it uses, as libvirt refuses.
    let (status, _, err) = d.virsh(&["vol-resize", "r.img", "4M", "--shrink", "--pool", "default"]);
    assert_eq!(status, 1);
    assert!(
        err.contains("invalid argument: can't shrink capacity below existing allocation"),
        "{err}"
    );
    assert_eq!(alloc_and_size(&d.vol("r.img")), (8 << 20, 8 << 20));
    d.virsh_ok(&["vol-delete", "r.img", "--pool", "default"]);
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "r.img",
        "8M",
        "--allocation",
        "0",
    ]);
    assert_eq!(
        d.virsh_ok(&["vol-resize", "r.img", "4M", "--shrink", "--pool", "default"]),
        "Size of volume 'r.img' successfully changed to 4M\n\n"
    );
    assert_eq!(alloc_and_size(&d.vol("r.img")).1, 4 << 20);

    // vol-wipe: zeros where the data was; the format and size stay.
    std::fs::File::options()
        .write(true)
        .open(d.vol("r.img"))
        .unwrap()
        .write_all_at(&[0x77; 65536], 4096)
        .unwrap();
    assert_eq!(
        d.virsh_ok(&["vol-wipe", "r.img", "--pool", "default"]),
        "Vol r.img wiped\n\n"
    );
    let content = std::fs::read(d.vol("r.img")).unwrap();
    assert_eq!(content.len(), 4 << 20);
    assert!(content.iter().all(|&b| b == 0), "wiped to zeros");
    assert_eq!(
        d.virsh_ok(&["vol-wipe", "c.qcow2", "--pool", "default"]),
        "Vol c.qcow2 wiped\n\n"
    );
    assert_check_clean(&d.vol("c.qcow2"));
    let out = common::run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "read -P 0 0 64M",
            d.vol("c.qcow2").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success()
            && !String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed"),
        "wiped qcow2 reads as zeros: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // vol-delete, then the volume is gone for every lookup.
    assert_eq!(
        d.virsh_ok(&["vol-delete", "c.qcow2", "--pool", "default"]),
        "Vol c.qcow2 deleted\n\n"
    );
    assert!(!d.vol("c.qcow2").exists());
    assert_fails(
        d.virsh(&["vol-delete", "c.qcow2", "--pool", "default"]),
        &[
            "failed to get vol 'c.qcow2'",
            "Storage volume not found: no storage vol with matching path 'c.qcow2'",
        ],
    );
    let path = d.vol("b.qcow2").display().to_string();
    assert_eq!(
        d.virsh_ok(&["vol-delete", &path]),
        format!("Vol {path} deleted\n\n")
    );
    assert!(!d.vol("b.qcow2").exists());
}

#[test]
fn upload_and_download_round_trip_with_and_without_sparse() {
    if !have("virsh") {
        return;
    }
    let d = Daemon::start();
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "v.img",
        "64M",
        "--allocation",
        "0",
    ]);
    // A sparse local file with three data islands.
    let local = d.scratch().join("in.raw");
    let f = std::fs::File::create(&local).unwrap();
    f.set_len(64 << 20).unwrap();
    for (offset, byte) in [(0u64, 1u8), (20 << 20, 2), ((64 << 20) - 300_000, 3)] {
        f.write_all_at(&vec![byte; 300_000], offset).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let local_s = local.to_str().unwrap();

    assert_eq!(
        d.virsh_ok(&["vol-upload", "v.img", local_s, "--pool", "default"]),
        "\n"
    );
    assert_eq!(
        std::fs::read(d.vol("v.img")).unwrap(),
        std::fs::read(&local).unwrap()
    );

    let back = d.scratch().join("out.raw");
    d.virsh_ok(&[
        "vol-download",
        "v.img",
        back.to_str().unwrap(),
        "--pool",
        "default",
    ]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert_eq!(
        alloc_and_size(&back).0,
        64 << 20,
        "without --sparse every byte is written"
    );

    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "w.img",
        "64M",
        "--allocation",
        "0",
    ]);
    d.virsh_ok(&[
        "vol-upload",
        "w.img",
        local_s,
        "--pool",
        "default",
        "--sparse",
    ]);
    assert_eq!(
        std::fs::read(d.vol("w.img")).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert!(
        alloc_and_size(&d.vol("w.img")).0 < 4 << 20,
        "sparse upload keeps the volume sparse"
    );

    // A sparse download of the sparse volume writes only the data.
    let sparse = d.scratch().join("sparse.raw");
    d.virsh_ok(&[
        "vol-download",
        "w.img",
        sparse.to_str().unwrap(),
        "--pool",
        "default",
        "--sparse",
    ]);
    assert_eq!(
        std::fs::read(&sparse).unwrap(),
        std::fs::read(&local).unwrap()
    );
    let (allocated, size) = alloc_and_size(&sparse);
    assert_eq!(size, 64 << 20);
    assert!(allocated < 4 << 20, "--sparse keeps the holes: {allocated}");

    // --offset / --length.
    let part = d.scratch().join("part.raw");
    d.virsh_ok(&[
        "vol-download",
        "v.img",
        part.to_str().unwrap(),
        "--pool",
        "default",
        "--offset",
        &(20u64 << 20).to_string(),
        "--length",
        "1000",
    ]);
    assert_eq!(std::fs::read(&part).unwrap(), vec![2u8; 1000]);
}

/// Lines a background virsh prints, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Triggers `probe` until `watcher` prints a line containing `marker` (so the watcher's
/// registration is in place), returning the lines seen so far.
fn wait_registered(rx: &mpsc::Receiver<String>, marker: &str, probe: impl Fn()) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        probe();
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
        if seen.iter().any(|l| l.contains(marker)) {
            return seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pool-event never printed {marker}: {seen:?}"
        );
    }
}

#[test]
fn pool_event_prints_lifecycle_and_refresh_events() {
    if !have("virsh") {
        return;
    }
    let d = Daemon::start();
    let probe_target = d.scratch().join("probe").display().to_string();
    // --timeout bounds the watchers; the test waits for their own exit.
    let mut lifecycle = d
        .virsh_command(&[
            "pool-event",
            "--event",
            "lifecycle",
            "--loop",
            "--timeout",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut refresh_once = d
        .virsh_command(&[
            "pool-event",
            "--event",
            "refresh",
            "--pool",
            "default",
            "--timeout",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lifecycle_rx = lines_of(&mut lifecycle);
    let refresh_rx = lines_of(&mut refresh_once);

    // Registration: a probe pool defined and undefined until the watcher reports it.
    let mut seen = wait_registered(&lifecycle_rx, "probe", || {
        d.virsh_ok(&["pool-define-as", "probe", "dir", "--target", &probe_target]);
        d.virsh_ok(&["pool-undefine", "probe"]);
    });
    // Without --loop, the refresh watcher ends after the first event.
    let refresh_seen = wait_registered(&refresh_rx, "refresh", || {
        d.virsh_ok(&["pool-refresh", "default"]);
    });
    let refresh_out = refresh_once.wait_with_output().unwrap();
    let refresh_seen: Vec<String> = refresh_seen.into_iter().chain(refresh_rx.iter()).collect();
    assert_eq!(
        refresh_out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&refresh_out.stderr)
    );
    assert_eq!(
        refresh_seen,
        [
            "event 'refresh' for storage pool default",
            "events received: 1",
            ""
        ]
    );

    let target = d.scratch().join("p3").display().to_string();
    for args in [
        vec!["pool-define-as", "p3", "dir", "--target", &target],
        vec!["pool-build", "p3"],
        vec!["pool-start", "p3"],
        vec!["pool-refresh", "p3"],
        vec!["pool-destroy", "p3"],
        vec!["pool-delete", "p3"],
        vec!["pool-undefine", "p3"],
    ] {
        d.virsh_ok(&args);
    }
    let out = lifecycle.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen.extend(lifecycle_rx.iter());
    let p3: Vec<&str> = seen
        .iter()
        .filter(|l| l.contains(" p3:"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        p3,
        [
            "event 'lifecycle' for storage pool p3: Defined",
            "event 'lifecycle' for storage pool p3: Created",
            "event 'lifecycle' for storage pool p3: Started",
            "event 'lifecycle' for storage pool p3: Stopped",
            "event 'lifecycle' for storage pool p3: Deleted",
            "event 'lifecycle' for storage pool p3: Undefined",
        ]
    );
    // Every event line is a probe's or p3's; the summary counts them all.
    let events = seen.iter().filter(|l| l.starts_with("event '")).count();
    assert!(
        seen.iter()
            .filter(|l| l.starts_with("event '"))
            .all(|l| l.contains(" p3:") || l.contains(" probe:"))
    );
    assert_eq!(
        seen[seen.len() - 3..],
        [
            "event loop timed out".to_string(),
            format!("events received: {events}"),
            String::new()
        ]
    );
}

#[test]
fn version_capabilities_and_pool_capabilities() {
    if !have_tools(&["virsh", "xmllint"]) {
        return;
    }
    let d = Daemon::start();
    let version = d.virsh_ok(&["version"]);
    assert!(version.contains("Using API: storage 9.0.0\n"), "{version}");
    assert!(
        version.contains(&format!(
            "Running hypervisor: storage {}\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    let caps = d.virsh_ok(&["capabilities"]);
    let file = d.write_file("caps.xml", &caps);
    let out = common::run("xmllint", &["--noout", file.to_str().unwrap()]);
    assert!(out.status.success(), "capabilities are XML: {caps}");
    assert!(caps.contains("<value>dir</value>"), "{caps}");
    let pool_caps = d.virsh_ok(&["pool-capabilities"]);
    // The schema ships with libvirt's packages, like storagevol.rng.
    if have_libvirt_schemas() {
        assert_valid(&d, LIBVIRT_STORAGEPOOLCAPS_RNG, &pool_caps, "poolcaps");
    }
    assert!(
        pool_caps.contains("<pool type='dir' supported='yes'>"),
        "{pool_caps}"
    );
    assert_eq!(d.virsh_ok(&["uri"]), format!("{}\n\n", d.uri()));
}

#[test]
fn read_only_socket_refuses_every_change_and_answers_queries() {
    if !have("virsh") {
        return;
    }
    let d = Daemon::start();
    d.virsh_ok(&["vol-create-as", "default", "v.img", "1M"]);
    let xml = d.write_file("w.xml", &QCOW2_64M.replace("a.qcow2", "w.qcow2"));
    let xml_s = xml.to_str().unwrap();
    let local = d.write_file("local.bin", "data");
    let local_s = local.to_str().unwrap();
    let target = d.scratch().join("p9").display().to_string();
    let download = d.scratch().join("down.bin").display().to_string();
    for (args, context, api) in [
        (
            vec!["pool-define-as", "p9", "dir", "--target", &target],
            "Failed to define pool p9".to_string(),
            "virStoragePoolDefineXML",
        ),
        (
            vec!["pool-create-as", "p9", "dir", "--target", &target],
            "Failed to create pool p9".to_string(),
            "virStoragePoolCreateXML",
        ),
        (
            vec!["pool-build", "default"],
            "Failed to build pool default".to_string(),
            "virStoragePoolBuild",
        ),
        (
            vec!["pool-start", "default"],
            "Failed to start pool default".to_string(),
            "virStoragePoolCreate",
        ),
        (
            vec!["pool-destroy", "default"],
            "Failed to destroy pool default".to_string(),
            "virStoragePoolDestroy",
        ),
        (
            vec!["pool-delete", "default"],
            "Failed to delete pool default".to_string(),
            "virStoragePoolDelete",
        ),
        (
            vec!["pool-undefine", "default"],
            "Failed to undefine pool default".to_string(),
            "virStoragePoolUndefine",
        ),
        (
            vec!["pool-refresh", "default"],
            "Failed to refresh pool default".to_string(),
            "virStoragePoolRefresh",
        ),
        (
            vec!["pool-autostart", "default", "--disable"],
            "failed to unmark pool default as autostarted".to_string(),
            "virStoragePoolSetAutostart",
        ),
        (
            vec!["find-storage-pool-sources-as", "dir"],
            "Failed to find any dir pool sources".to_string(),
            "virConnectFindStoragePoolSources",
        ),
        (
            vec!["vol-create", "default", xml_s],
            format!("Failed to create vol from {xml_s}"),
            "virStorageVolCreateXML",
        ),
        (
            vec!["vol-create-as", "default", "w.img", "1M"],
            "Failed to create vol w.img".to_string(),
            "virStorageVolCreateXML",
        ),
        (
            vec!["vol-clone", "v.img", "w.img", "--pool", "default"],
            "Failed to clone vol from v.img".to_string(),
            "virStorageVolCreateXMLFrom",
        ),
        (
            vec![
                "vol-create-from",
                "default",
                xml_s,
                "v.img",
                "--inputpool",
                "default",
            ],
            format!("Failed to create vol from {xml_s}"),
            "virStorageVolCreateXMLFrom",
        ),
        (
            vec!["vol-delete", "v.img", "--pool", "default"],
            "Failed to delete vol v.img".to_string(),
            "virStorageVolDelete",
        ),
        (
            vec!["vol-wipe", "v.img", "--pool", "default"],
            "Failed to wipe vol v.img".to_string(),
            "virStorageVolWipePattern",
        ),
        (
            vec!["vol-resize", "v.img", "2M", "--pool", "default"],
            "Failed to change size of volume 'v.img' to 2M".to_string(),
            "virStorageVolResize",
        ),
        (
            vec!["vol-upload", "v.img", local_s, "--pool", "default"],
            "cannot upload to volume v.img".to_string(),
            "virStorageVolUpload",
        ),
        (
            vec!["vol-download", "v.img", &download, "--pool", "default"],
            "cannot download from volume v.img".to_string(),
            "virStorageVolDownload",
        ),
    ] {
        let message = format!("operation forbidden: read only access prevents {api}");
        assert_fails(d.virsh_ro(&args), &[&context, &message]);
        // VIR_CONNECT_RO (virsh -r) on the read-write socket is read-only as well.
        let mut ro = vec!["-r"];
        ro.extend(args.iter().copied());
        assert_fails(d.virsh(&ro), &[&context, &message]);
    }
    // Nothing changed.
    assert_eq!(alloc_and_size(&d.vol("v.img")).1, 1 << 20);
    assert!(!d.vol("w.img").exists() && !d.vol("w.qcow2").exists());
    assert_eq!(d.virsh_ok(&["pool-list", "--all"]).lines().count(), 4);

    // Queries work on the read-only socket.
    for args in [
        vec!["pool-list", "--all", "--details"],
        vec!["pool-info", "default"],
        vec!["pool-dumpxml", "default"],
        vec!["pool-capabilities"],
        vec!["vol-list", "default", "--details"],
        vec!["vol-info", "v.img", "--pool", "default"],
        vec!["vol-dumpxml", "v.img", "--pool", "default"],
        vec!["vol-path", "v.img", "--pool", "default"],
        vec!["capabilities"],
    ] {
        let (status, out, err) = d.virsh_ro(&args);
        assert_eq!((status, err.as_str()), (0, ""), "{args:?}");
        // Filesystem sizes and access times may move between the two calls (other tests
        // write to the same filesystem); everything else must be the same.
        assert_eq!(
            without_moving_numbers(&out),
            without_moving_numbers(&d.virsh_ok(&args)),
            "{args:?}: same answer on both sockets"
        );
    }
}

/// `text` with the digits of filesystem-size and timestamp lines replaced by `#`.
fn without_moving_numbers(text: &str) -> String {
    text.lines()
        .map(|line| {
            let moving = [
                "iB",
                "bytes",
                "time>",
                "<capacity",
                "<allocation",
                "<available",
            ]
            .iter()
            .any(|m| line.contains(m));
            if moving {
                line.chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn long_full_preallocation_does_not_block_other_clients() {
    if !have("virsh") {
        return;
    }
    let d = Daemon::start();
    // ~2 GiB written in full: seconds of work for the daemon.
    let xml = d.write_file(
        "big.xml",
        "<volume>\n  <name>big.img</name>\n  <capacity unit='G'>2</capacity>\n  <target>\n    <format type='raw'/>\n    <qpool:preallocation xmlns:qpool='urn:qpool:volume:1' mode='full'/>\n  </target>\n</volume>\n",
    );
    // Completion order: every finisher sends its name on one channel.
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let creator = {
        let mut cmd = d.virsh_command(&["vol-create", "default", xml.to_str().unwrap()]);
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            let out = cmd.output().unwrap();
            let _ = tx.send("create");
            out
        })
    };
    // The volume shows up as being built (the create registered it), or the create is done.
    let start = Instant::now();
    loop {
        let (status, out, _) = d.virsh(&["vol-info", "big.img", "--pool", "default", "--bytes"]);
        if status == 0 {
            assert!(out.contains("Capacity:       2147483648 bytes\n"), "{out}");
            let allocation: u64 = out
                .lines()
                .find_map(|l| l.strip_prefix("Allocation:"))
                .unwrap()
                .trim()
                .trim_end_matches(" bytes")
                .parse()
                .unwrap();
            assert!(
                allocation <= (2 << 30) + (1 << 20),
                "current allocation {allocation}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "big.img never appeared"
        );
    }
    // While it is built: deletion is refused, other clients and keepalive are answered.
    assert_fails(
        d.virsh(&["vol-delete", "big.img", "--pool", "default"]),
        &[
            "Failed to delete vol big.img",
            "Requested operation is not valid: volume 'big.img' is still being allocated.",
        ],
    );
    let list = d.virsh_ok(&["pool-list", "--all"]);
    assert!(list.contains(" default   active   yes\n"));
    assert!(d.virsh_ok(&["vol-list", "default"]).contains(" big.img "));
    let pong = d.connect().ping();
    assert_eq!(pong.len(), 28);
    done_tx.send("queries").unwrap();

    let out = creator.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        [done_rx.recv().unwrap(), done_rx.recv().unwrap()],
        ["queries", "create"],
        "the queries finished before the create"
    );
    let (allocated, size) = alloc_and_size(&d.vol("big.img"));
    assert_eq!(size, 2 << 30);
    assert!(allocated >= 2 << 30, "full preallocation: {allocated}");
    assert!(
        d.virsh_ok(&["vol-info", "big.img", "--pool", "default", "--bytes"])
            .contains(&format!("Allocation:     {allocated} bytes\n"))
    );
    assert_eq!(
        d.virsh_ok(&["vol-delete", "big.img", "--pool", "default"]),
        "Vol big.img deleted\n\n"
    );
}

#[test]
fn transient_pools_list_filters_and_refused_flags() {
    if !have("virsh") {
        return;
    }
    let d = Daemon::start();
    let target = d.scratch().join("tp");
    let target_s = target.display().to_string();
    assert_eq!(
        d.virsh_ok(&[
            "pool-create-as",
            "tp",
            "dir",
            "--target",
            &target_s,
            "--build"
        ]),
        "Pool tp created\n\n"
    );
    assert!(target.is_dir(), "--build made the directory");
    assert!(
        !d.pools.join("tp.xml").exists(),
        "a transient pool has no definition file"
    );
    assert!(
        d.virsh_ok(&["pool-info", "tp"])
            .contains("State:          running\nPersistent:     no\nAutostart:      no\n")
    );
    // virConnectListAllStoragePools filters, applied by the daemon.
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["pool-list", "--name"];
        all.extend_from_slice(args);
        d.virsh_ok(&all)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(names(&["--all"]), ["default", "tp"]);
    assert_eq!(names(&["--transient"]), ["tp"]);
    assert_eq!(names(&["--persistent"]), ["default"]);
    assert_eq!(names(&["--autostart"]), ["default"]);
    assert_eq!(names(&["--no-autostart"]), ["tp"]);
    assert_eq!(names(&["--inactive"]), Vec::<String>::new());
    assert_eq!(names(&["--all", "--type", "dir"]), ["default", "tp"]);
    assert_eq!(names(&["--all", "--type", "logical"]), Vec::<String>::new());

    assert_fails(
        d.virsh(&["pool-autostart", "tp"]),
        &[
            "failed to mark pool tp as autostarted",
            "internal error: pool has no config file",
        ],
    );
    assert_fails(
        d.virsh(&["pool-undefine", "tp"]),
        &[
            "Failed to undefine pool tp",
            "Requested operation is not valid: storage pool 'tp' is still active",
        ],
    );
    let uuid = d.virsh_ok(&["pool-uuid", "tp"]);
    assert_fails(
        d.virsh(&["pool-create-as", "tp", "dir", "--target", &target_s]),
        &[
            "Failed to create pool tp",
            &format!(
                "operation failed: pool 'tp' already exists with uuid {}",
                uuid.trim()
            ),
        ],
    );
    assert_eq!(d.virsh_ok(&["pool-destroy", "tp"]), "Pool tp destroyed\n\n");
    assert_fails(
        d.virsh(&["pool-info", "tp"]),
        &[
            "failed to get pool 'tp'",
            "Storage pool not found: no storage pool with matching name 'tp'",
        ],
    );

    // vol-create --validate checks the document against libvirt's schema; without it,
    // unknown elements are ignored as libvirt ignores them.
    let bad = d.write_file(
        "bad.xml",
        "<volume>\n  <name>val.img</name>\n  <capacity>1048576</capacity>\n  <bogus/>\n</volume>\n",
    );
    let bad_s = bad.to_str().unwrap();
    let (status, _, err) = d.virsh(&["vol-create", "default", bad_s, "--validate"]);
    assert_eq!(status, 1);
    assert!(
        err.starts_with(&format!(
            "error: Failed to create vol from {bad_s}\nerror: XML document failed to validate against schema: Unable to validate doc against /usr/share/libvirt/schemas/storagevol.rng\n"
        )) && err.contains("bogus"),
        "{err}"
    );
    assert!(!d.vol("val.img").exists());
    d.virsh_ok(&["vol-create", "default", bad_s]);
    // Flags the dir backend does not support: libvirtd's exact message.
    assert_fails(
        d.virsh(&[
            "vol-delete",
            "val.img",
            "--pool",
            "default",
            "--delete-snapshots",
        ]),
        &[
            "Failed to delete vol val.img",
            "unsupported flags (0x2) in function virStorageBackendVolDeleteLocal",
        ],
    );
    assert!(d.vol("val.img").exists());
}
