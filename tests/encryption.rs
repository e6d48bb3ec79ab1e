//! Encrypted volumes (`<encryption format='luks'>`), with qemu's own tools as the oracle:
//! `qemu-img info` names the cipher and the key slots, `qemu-img check` finds nothing wrong,
//! `qemu-io` writes a pattern and reads it back from qpool's image and from a twin
//! `qemu-img create` made with the same options, `qemu-img compare` finds them identical,
//! and a wrong passphrase is refused by qemu. The bytes of a qcow2 image outside the LUKS
//! header (whose keys and salts are random) are those of qemu-img's twin. Refusals print one
//! `error:` line, exit 1 and leave the pool as it was.

mod common;

use std::path::{Path, PathBuf};

use common::crypt::{
    Driver, assert_check_clean, first_difference_outside, luks_clusters, luks_digest_and_salt,
    qemu_compare, qemu_compare_keys, qemu_img_create, qemu_info, qemu_io, qemu_io_ok,
};
use common::{
    LIBVIRT_STORAGEVOL_RNG, TempPool, alloc_and_size, assert_allocation_near, have,
    have_libvirt_schemas, xmllint_relaxng,
};

const MIB: u64 = 1 << 20;

/// The LUKS header qemu-img writes for aes-256-xts (64-byte master key): the header, eight
/// key-material areas of 4000 stripes, so the payload starts at 2,068,480 bytes.
const PAYLOAD_OFFSET_AES_256: u64 = 2_068_480;

fn oracles() -> bool {
    have("qemu-img") && have("qemu-io")
}

/// A pool with a passphrase file beside it.
fn pool_with_passphrase(passphrase: &str) -> (TempPool, PathBuf) {
    let pool = TempPool::new();
    let file = pool.write_file("passphrase", passphrase);
    (pool, file)
}

/// Volume XML for an encrypted volume; `extra` goes inside `<encryption>`.
fn encrypted_xml(name: &str, format: &str, capacity: u64, mode: &str, extra: &str) -> String {
    format!(
        "<volume xmlns:qpool='urn:qpool:volume:1'>
  <name>{name}</name>
  <capacity>{capacity}</capacity>
  <target>
    <format type='{format}'/>
    <qpool:preallocation mode='{mode}'/>
    <encryption format='luks' qpool:iter-time='1'>
      <secret type='passphrase' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/>
      {extra}
    </encryption>
  </target>
</volume>
"
    )
}

fn create(pool: &TempPool, xml: &str, passphrase: &Path) {
    let file = pool.write_file("v.xml", xml);
    pool.ok(&[
        "vol-create",
        file.to_str().unwrap(),
        "--secret-file",
        passphrase.to_str().unwrap(),
    ]);
}

/// Runs qpool, expects exactly one `error:` line containing `expected` and exit status 1.
fn assert_refused(pool: &TempPool, args: &[&str], expected: &str) {
    let out = pool.qpool(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expected),
        "{args:?}: {stderr}\nwanted: {expected}"
    );
}

#[test]
fn encrypted_qcow2_in_every_mode_is_qemu_img_s_twin() {
    if !oracles() {
        return;
    }
    // 64 MiB and a size that leaves the last cluster partial.
    for (mode, size) in [
        ("off", 64 * MIB),
        ("metadata", 64 * MIB + 512),
        ("falloc", 64 * MIB),
        ("full", 64 * MIB),
    ] {
        let (pool, pass) = pool_with_passphrase("correct horse");
        create(
            &pool,
            &encrypted_xml("e.qcow2", "qcow2", size, mode, ""),
            &pass,
        );
        let ours = pool.vol("e.qcow2");
        let twin = pool.scratch().join("twin.qcow2");
        qemu_img_create(
            Driver::Qcow2,
            &twin,
            &pass,
            &format!("preallocation={mode}"),
            size,
        );

        let info = qemu_info(Driver::Qcow2, &ours, &pass);
        assert_eq!(info["encrypted"], true, "{mode}: {info}");
        assert_eq!(info["virtual-size"], size.next_multiple_of(512), "{mode}");
        let enc = &info["format-specific"]["data"]["encrypt"];
        assert_eq!(enc["format"], "luks", "{mode}: {info}");
        assert_eq!(enc["cipher-alg"], "aes-256", "{mode}");
        assert_eq!(enc["cipher-mode"], "xts", "{mode}");
        assert_eq!(enc["ivgen-alg"], "plain64", "{mode}");
        assert_eq!(enc["hash-alg"], "sha256", "{mode}");
        assert_eq!(enc["payload-offset"], PAYLOAD_OFFSET_AES_256, "{mode}");
        let slots = enc["slots"].as_array().unwrap();
        assert_eq!(slots.len(), 8, "{mode}");
        assert_eq!(slots[0]["active"], true, "{mode}");
        assert_eq!(slots[0]["stripes"], 4000, "{mode}");
        assert!(slots[1..].iter().all(|s| s["active"] == false), "{mode}");
        assert_check_clean(&ours, &pass);

        // Same bytes as qemu-img's image outside the LUKS header, same allocation.
        let (ours_area, twin_area) = (luks_clusters(&ours), luks_clusters(&twin));
        assert_eq!(
            first_difference_outside(&ours, ours_area, &twin, twin_area),
            None,
            "{mode}: the image differs from qemu-img's outside the LUKS header"
        );
        let (ours_alloc, _) = alloc_and_size(&ours);
        let (twin_alloc, _) = alloc_and_size(&twin);
        assert_allocation_near(ours_alloc, twin_alloc, "qemu-img's allocation", mode);

        // What the guest reads: unallocated clusters read as zeros; preallocated clusters
        // are the decryption of the zeros on disk, not zeros, in qemu-img's image as in
        // qpool's.
        for image in [&ours, &twin] {
            let zeros = qemu_io(Driver::Qcow2, image, &pass, &["read -P 0 0 512"]);
            let read_zeros = !String::from_utf8_lossy(&zeros.stdout).contains("failed");
            assert_eq!(read_zeros, mode == "off", "{mode}: {}", image.display());
        }
        for image in [&ours, &twin] {
            qemu_io_ok(
                Driver::Qcow2,
                image,
                &pass,
                &["write -P 0xa5 1M 192k", "read -P 0xa5 1M 192k"],
            );
        }
        if mode == "off" {
            assert!(qemu_compare(Driver::Qcow2, &ours, &twin, &pass), "{mode}");
        }
    }
}

#[test]
fn encrypted_raw_in_every_mode_is_qemu_img_s_twin() {
    if !oracles() {
        return;
    }
    for mode in ["off", "falloc", "full"] {
        let (pool, pass) = pool_with_passphrase("correct horse");
        create(
            &pool,
            &encrypted_xml("e.img", "raw", 16 * MIB, mode, ""),
            &pass,
        );
        let ours = pool.vol("e.img");
        let twin = pool.scratch().join("twin.luks");
        qemu_img_create(
            Driver::Luks,
            &twin,
            &pass,
            &format!("preallocation={mode}"),
            16 * MIB,
        );
        let info = qemu_info(Driver::Luks, &ours, &pass);
        assert_eq!(info["format"], "luks", "{mode}: {info}");
        assert_eq!(info["virtual-size"], 16 * MIB, "{mode}");
        assert_eq!(
            info["format-specific"]["data"]["payload-offset"], PAYLOAD_OFFSET_AES_256,
            "{mode}"
        );
        let (ours_alloc, ours_len) = alloc_and_size(&ours);
        let (twin_alloc, twin_len) = alloc_and_size(&twin);
        assert_eq!(ours_len, twin_len, "{mode}");
        assert_eq!(ours_len, PAYLOAD_OFFSET_AES_256 + 16 * MIB, "{mode}");
        assert_allocation_near(ours_alloc, twin_alloc, "qemu-img's allocation", mode);
        qemu_io_ok(
            Driver::Luks,
            &ours,
            &pass,
            &["write -P 0x5a 4M 64k", "read -P 0x5a 4M 64k"],
        );

        // libvirt reports a raw LUKS volume's payload as its capacity.
        let info = pool.ok(&["vol-info", "e.img", "--bytes"]);
        assert!(
            info.contains(&format!("Capacity:       {} bytes", 16 * MIB)),
            "{mode}: {info}"
        );
    }
}

#[test]
fn qemu_refuses_a_wrong_passphrase() {
    if !oracles() {
        return;
    }
    let (pool, pass) = pool_with_passphrase("correct horse");
    create(
        &pool,
        &encrypted_xml("e.qcow2", "qcow2", 8 * MIB, "off", ""),
        &pass,
    );
    let wrong = pool.write_file("wrong", "battery staple");
    let out = qemu_io(Driver::Qcow2, &pool.vol("e.qcow2"), &wrong, &["read 0 512"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("Invalid password"),
        "{text}"
    );
    qemu_io_ok(Driver::Qcow2, &pool.vol("e.qcow2"), &pass, &["read 0 512"]);
}

#[test]
fn cipher_and_ivgen_choices_reach_the_luks_header() {
    if !oracles() {
        return;
    }
    let (pool, pass) = pool_with_passphrase("p");
    create(
        &pool,
        &encrypted_xml(
            "e.img",
            "raw",
            4 * MIB,
            "off",
            "<cipher name='aes' size='128' mode='xts' hash='sha1'/><ivgen name='plain'/>",
        ),
        &pass,
    );
    let info = qemu_info(Driver::Luks, &pool.vol("e.img"), &pass);
    let data = &info["format-specific"]["data"];
    assert_eq!(data["cipher-alg"], "aes-128", "{info}");
    assert_eq!(data["hash-alg"], "sha1", "{info}");
    assert_eq!(data["ivgen-alg"], "plain", "{info}");
    // A 32-byte key: 4000 stripes of 32 bytes are 250 sectors, rounded to 256, eight of
    // them after the 8 header sectors: 2056 sectors.
    assert_eq!(data["payload-offset"], 2056 * 512, "{info}");
    qemu_io_ok(
        Driver::Luks,
        &pool.vol("e.img"),
        &pass,
        &["write -P 7 0 4k", "read -P 7 0 4k"],
    );
}

#[test]
fn a_longer_iteration_time_gives_more_pbkdf2_iterations() {
    if !oracles() {
        return;
    }
    let (pool, pass) = pool_with_passphrase("p");
    let iterations = |name: &str, ms: u32| {
        let xml = encrypted_xml(name, "qcow2", MIB, "off", "")
            .replace("qpool:iter-time='1'", &format!("qpool:iter-time='{ms}'"));
        create(&pool, &xml, &pass);
        let info = qemu_info(Driver::Qcow2, &pool.vol(name), &pass);
        info["format-specific"]["data"]["encrypt"]["slots"][0]["iters"]
            .as_u64()
            .unwrap()
    };
    let short = iterations("short.qcow2", 1);
    let long = iterations("long.qcow2", 300);
    // 1 ms stays at qemu's floor of 1000 iterations; 300 ms of PBKDF2 are far more.
    assert_eq!(short, 1000);
    assert!(long > 2 * short, "300 ms gave {long} iterations");
}

#[test]
fn dumpxml_of_encrypted_volumes_is_valid_libvirt_xml() {
    if !oracles() || !have("xmllint") || !have_libvirt_schemas() {
        return;
    }
    let (pool, pass) = pool_with_passphrase("p");
    create(
        &pool,
        &encrypted_xml("e.qcow2", "qcow2", MIB, "off", ""),
        &pass,
    );
    create(&pool, &encrypted_xml("e.img", "raw", MIB, "off", ""), &pass);
    for name in ["e.qcow2", "e.img"] {
        let xml = pool.ok(&["vol-dumpxml", name]);
        assert!(xml.contains("<encryption format='luks'/>"), "{xml}");
        let file = pool.write_file("dump.xml", &xml);
        let (ok, stderr) = xmllint_relaxng(Path::new(LIBVIRT_STORAGEVOL_RNG), &file);
        assert!(ok, "{name}: {stderr}\n{xml}");
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("xml-schemas/volume.rng");
        let (ok, stderr) = xmllint_relaxng(&schema, &file);
        assert!(ok, "{name}: {stderr}\n{xml}");
    }
}

#[test]
fn refused_encrypted_creates_leave_the_pool_as_it_was() {
    let (pool, pass) = pool_with_passphrase("p");
    let good = pool.write_file(
        "good.xml",
        &encrypted_xml("e.qcow2", "qcow2", MIB, "off", ""),
    );
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            "an encryption format qpool does not write".into(),
            vec![
                "vol-create".into(),
                pool.write_file(
                    "qcow.xml",
                    &encrypted_xml("e.qcow2", "qcow2", MIB, "off", "")
                        .replace("format='luks'", "format='qcow'"),
                )
                .display()
                .to_string(),
                "--secret-file".into(),
                pass.display().to_string(),
            ],
            "unsupported encryption format 'qcow' (qpool supports: luks)",
        ),
        (
            "no passphrase".into(),
            vec!["vol-create".into(), good.display().to_string()],
            "no secret provided for luks encryption",
        ),
        (
            "a passphrase file that does not exist".into(),
            vec![
                "vol-create".into(),
                good.display().to_string(),
                "--secret-file".into(),
                pool.scratch().join("nowhere").display().to_string(),
            ],
            "cannot read the passphrase file",
        ),
        (
            "a passphrase file that is a directory".into(),
            vec![
                "vol-create".into(),
                good.display().to_string(),
                "--secret-file".into(),
                pool.scratch().display().to_string(),
            ],
            "cannot read the passphrase file",
        ),
        (
            "an empty passphrase file".into(),
            vec![
                "vol-create".into(),
                good.display().to_string(),
                "--secret-file".into(),
                pool.write_file("empty", "").display().to_string(),
            ],
            "is empty",
        ),
    ];
    for (case, args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&pool, &args, expected);
        assert!(pool.listing().is_empty(), "{case}: {:?}", pool.listing());
    }
}

#[test]
fn the_passphrase_never_reaches_the_command_line_or_the_log() {
    let (pool, pass) = pool_with_passphrase("a-very-recognisable-passphrase");
    let file = pool.write_file("v.xml", &encrypted_xml("e.qcow2", "qcow2", MIB, "off", ""));
    let out = pool.qpool_env(
        &[
            "vol-create",
            file.to_str().unwrap(),
            "--secret-file",
            pass.to_str().unwrap(),
        ],
        &[("QPOOL_LOG", "trace")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stream in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains("recognisable"));
    }
    let image = std::fs::read(pool.vol("e.qcow2")).unwrap();
    assert!(!image.windows(12).any(|w| w == b"recognisable"));
}

#[test]
fn resized_encrypted_volumes_keep_their_data_and_open_with_their_passphrase() {
    if !oracles() {
        return;
    }
    let (pool, pass) = pool_with_passphrase("p");
    create(
        &pool,
        &encrypted_xml("e.qcow2", "qcow2", 8 * MIB, "off", ""),
        &pass,
    );
    create(
        &pool,
        &encrypted_xml("e.img", "raw", 8 * MIB, "off", ""),
        &pass,
    );
    for (name, driver) in [("e.qcow2", Driver::Qcow2), ("e.img", Driver::Luks)] {
        let path = pool.vol(name);
        qemu_io_ok(driver, &path, &pass, &["write -P 0x3c 7M 1M"]);
        pool.ok(&["vol-resize", name, "24M"]);
        let info = qemu_info(driver, &path, &pass);
        assert_eq!(info["virtual-size"], 24 * MIB, "{name}: {info}");
        qemu_io_ok(driver, &path, &pass, &["read -P 0x3c 7M 1M"]);
        pool.ok(&["vol-resize", name, "16M", "--shrink"]);
        assert_eq!(
            qemu_info(driver, &path, &pass)["virtual-size"],
            16 * MIB,
            "{name}"
        );
        qemu_io_ok(driver, &path, &pass, &["read -P 0x3c 7M 1M"]);
    }
    assert_check_clean(&pool.vol("e.qcow2"), &pass);
    assert_eq!(
        std::fs::metadata(pool.vol("e.img")).unwrap().len(),
        PAYLOAD_OFFSET_AES_256 + 16 * MIB
    );
}

#[test]
fn a_clone_is_a_byte_copy_that_opens_with_the_same_passphrase() {
    if !oracles() {
        return;
    }
    let (pool, pass) = pool_with_passphrase("p");
    create(
        &pool,
        &encrypted_xml("e.qcow2", "qcow2", 8 * MIB, "off", ""),
        &pass,
    );
    create(
        &pool,
        &encrypted_xml("e.img", "raw", 8 * MIB, "off", ""),
        &pass,
    );
    for (name, copy, driver) in [
        ("e.qcow2", "c.qcow2", Driver::Qcow2),
        ("e.img", "c.img", Driver::Luks),
    ] {
        qemu_io_ok(driver, &pool.vol(name), &pass, &["write -P 0x42 1M 64k"]);
        pool.ok(&["vol-clone", name, copy]);
        assert!(
            qemu_compare(driver, &pool.vol(name), &pool.vol(copy), &pass),
            "{copy}"
        );
        assert_eq!(
            std::fs::read(pool.vol(name)).unwrap(),
            std::fs::read(pool.vol(copy)).unwrap(),
            "{copy} is not a byte copy"
        );
    }
    // Decrypting into a plain volume is not done: one error, nothing left.
    let before = pool.listing();
    let plain = pool.write_file(
        "plain.xml",
        "<volume><name>p.qcow2</name><capacity unit='M'>8</capacity><target><format type='qcow2'/></target></volume>",
    );
    assert_refused(
        &pool,
        &["vol-create-from", plain.to_str().unwrap(), "e.qcow2"],
        "must be encrypted too",
    );
    assert_eq!(pool.listing(), before);
}

#[test]
fn a_wiped_encrypted_volume_keeps_its_key_and_loses_its_data() {
    if !oracles() {
        return;
    }
    let (pool, pass) = pool_with_passphrase("p");
    create(
        &pool,
        &encrypted_xml("e.qcow2", "qcow2", 8 * MIB, "off", ""),
        &pass,
    );
    create(
        &pool,
        &encrypted_xml("e.img", "raw", 8 * MIB, "off", ""),
        &pass,
    );
    for (name, driver) in [("e.qcow2", Driver::Qcow2), ("e.img", Driver::Luks)] {
        let path = pool.vol(name);
        qemu_io_ok(driver, &path, &pass, &["write -P 0x99 1M 64k"]);
        pool.ok(&["vol-wipe", name]);
        let out = qemu_io(driver, &path, &pass, &["read -P 0x99 1M 64k"]);
        let text = String::from_utf8_lossy(&out.stdout);
        // It opens with the passphrase and reads, but the pattern is gone.
        assert!(text.contains("read 65536/65536 bytes"), "{name}: {text}");
        assert!(
            text.contains("Pattern verification failed"),
            "{name}: {text}"
        );
        assert_eq!(
            qemu_info(driver, &path, &pass)["virtual-size"],
            8 * MIB,
            "{name}"
        );
    }
    // The qcow2 image is an empty image again: its clusters read as zeros.
    qemu_io_ok(
        Driver::Qcow2,
        &pool.vol("e.qcow2"),
        &pass,
        &["read -P 0 0 8M"],
    );
    assert_check_clean(&pool.vol("e.qcow2"), &pass);
}

/// The library's pool on `pool`'s directory with qpoold's secret store: a private volume
/// secret for each `(volume name, passphrase)`, its usage the volume's path (libvirt's way
/// to find a volume's passphrase). Returns the pool and the secrets' UUIDs.
fn library_pool(pool: &TempPool, secrets: &[(&str, &str)]) -> (qpool::Pool, Vec<String>) {
    let mut lib = qpool::Pool::open(pool.path(), "p").unwrap();
    let store = qpool::pool::SecretStore::open(&pool.scratch().join("secrets")).unwrap();
    let mut uuids = Vec::new();
    for (name, value) in secrets {
        let xml = format!(
            "<secret ephemeral='no' private='yes'><usage type='volume'><volume>{}</volume></usage></secret>",
            lib.path().join(name).display()
        );
        let (uuid, _) = store.define(&xml).unwrap();
        store.set_value(&uuid, value.as_bytes()).unwrap();
        uuids.push(uuid.to_string());
    }
    lib.set_secrets(std::sync::Arc::new(store));
    (lib, uuids)
}

/// [`encrypted_xml`] naming the secret `uuid`.
fn xml_with_secret(name: &str, format: &str, capacity: u64, mode: &str, uuid: &str) -> String {
    encrypted_xml(name, format, capacity, mode, "")
        .replace("0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f", uuid)
}

fn def(xml: &str) -> qpool::xml::VolumeDef {
    qpool::xml::VolumeDef::parse(xml).unwrap()
}

/// `vol-create-from` through the library: `xml` holding the data of volume `source`.
fn copy_from(
    lib: &qpool::Pool,
    xml: &str,
    source: &str,
) -> Result<qpool::pool::Created, qpool::Error> {
    lib.create_volume_from(
        &def(xml),
        lib,
        source,
        qpool::policy::CreateFlags::default(),
        false,
        None,
    )
}

/// Every name in the pool directory, hidden ones included.
fn all_files(pool: &TempPool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pool.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Where the LUKS header of an encrypted image starts.
fn luks_offset(driver: Driver, path: &Path) -> u64 {
    match driver {
        Driver::Qcow2 => luks_clusters(path).start,
        Driver::Luks => 0,
    }
}

#[test]
fn a_copy_under_a_new_secret_is_re_encrypted_with_a_new_key() {
    if !oracles() {
        return;
    }
    let pool = TempPool::new();
    let (old, new) = ("the old passphrase", "the new passphrase");
    let (lib, uuids) = library_pool(&pool, &[("e.qcow2", old), ("e.img", old), ("c", new)]);
    let (old_file, new_file) = (pool.write_file("old", old), pool.write_file("new", new));
    let writes = [
        "write -P 0x42 1M 64k",
        "write -P 0x17 5M 1M",
        "write -P 0 9M 64k",
        "write -P 0x99 16380k 4k",
    ];
    let reads = [
        "read -P 0x42 1M 64k",
        "read -P 0x17 5M 1M",
        "read -P 0 9M 64k",
        "read -P 0x99 16380k 4k",
        "read -P 0 12M 1M",
    ];
    for (source, format, driver) in [
        ("e.qcow2", "qcow2", Driver::Qcow2),
        ("e.img", "raw", Driver::Luks),
    ] {
        let xml = xml_with_secret(source, format, 16 * MIB, "off", &uuids[0]);
        let xml = if format == "raw" {
            xml.replace(&uuids[0], &uuids[1])
        } else {
            xml
        };
        lib.create_volume(&def(&xml), qpool::policy::CreateFlags::default(), None)
            .unwrap();
        let src = pool.vol(source);
        // The raw source's unwritten payload reads as garbage: 12M is written too.
        qemu_io_ok(driver, &src, &old_file, &writes);
        qemu_io_ok(driver, &src, &old_file, &["write -P 0 12M 1M"]);
        let copies = [
            ("c-off.qcow2", "qcow2", "off", Driver::Qcow2),
            ("c-meta.qcow2", "qcow2", "metadata", Driver::Qcow2),
            ("c-full.qcow2", "qcow2", "full", Driver::Qcow2),
            ("c-off.img", "raw", "off", Driver::Luks),
        ];
        for (copy, format, mode, copy_driver) in copies {
            let copy = format!("{source}-{copy}");
            let xml = xml_with_secret(&copy, format, 16 * MIB, mode, &uuids[2]);
            let created = copy_from(&lib, &xml, source)
                .unwrap_or_else(|e| panic!("{copy}: {}", qpool::error::one_line(&e)));
            assert_eq!(created.volume.capacity, 16 * MIB, "{copy}");
            let dst = pool.vol(&copy);
            let (same, text) =
                qemu_compare_keys((driver, &src, &old_file), (copy_driver, &dst, &new_file));
            assert!(same, "{copy}: {text}");
            qemu_io_ok(copy_driver, &dst, &new_file, &reads);
            let refused = qemu_io(copy_driver, &dst, &old_file, &["read 0 512"]);
            let text = String::from_utf8_lossy(&refused.stderr);
            assert!(
                !refused.status.success() && text.contains("Invalid password"),
                "{copy}: {text}"
            );
            if copy_driver == Driver::Qcow2 {
                assert_check_clean(&dst, &new_file);
            }
            // A new header: a new UUID, master-key digest and salt.
            let (si, di) = (
                qemu_info(driver, &src, &old_file),
                qemu_info(copy_driver, &dst, &new_file),
            );
            let uuid = |info: &serde_json::Value| {
                let data = &info["format-specific"]["data"];
                data["encrypt"]["uuid"]
                    .as_str()
                    .or(data["uuid"].as_str())
                    .unwrap()
                    .to_string()
            };
            assert_ne!(uuid(&si), uuid(&di), "{copy}");
            assert_ne!(
                luks_digest_and_salt(&src, luks_offset(driver, &src)),
                luks_digest_and_salt(&dst, luks_offset(copy_driver, &dst)),
                "{copy}"
            );
            assert!(!all_files(&pool).iter().any(|n| n.starts_with('.')));
            if mode == "full" {
                // Reserved and written once: the whole data area is allocated.
                let (alloc, _) = alloc_and_size(&dst);
                assert!(alloc >= 16 * MIB, "{copy}: {alloc} bytes allocated");
            }
            if mode == "off" && copy_driver == Driver::Qcow2 && driver == Driver::Qcow2 {
                // Holes stay holes: the copy holds the written clusters only.
                let (alloc, _) = alloc_and_size(&dst);
                assert!(alloc < 6 * MIB, "{copy}: {alloc} bytes allocated");
            }
        }
    }
}

#[test]
fn copies_keep_the_key_or_the_cipher_and_need_the_sources_passphrase() {
    if !oracles() {
        return;
    }
    let pool = TempPool::new();
    let (lib, uuids) = library_pool(
        &pool,
        &[
            ("e.qcow2", "p"),
            ("elsewhere", "q"),
            ("k.img", "p"),
            ("w.qcow2", "p"),
        ],
    );
    let pass = pool.write_file("pass", "p");
    // A re-encrypted copy keeps its source's cipher when its XML names none.
    let cipher = "<cipher name='aes' size='128' mode='xts' hash='sha1'/><ivgen name='plain'/>";
    lib.create_volume(
        &def(&encrypted_xml("k.img", "raw", MIB, "off", cipher)
            .replace("0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f", &uuids[2])),
        qpool::policy::CreateFlags::default(),
        None,
    )
    .unwrap();
    qemu_io_ok(
        Driver::Luks,
        &pool.vol("k.img"),
        &pass,
        &["write -P 3 4k 4k"],
    );
    copy_from(
        &lib,
        &xml_with_secret("k2.img", "raw", MIB, "off", &uuids[1]),
        "k.img",
    )
    .unwrap();
    let q = pool.write_file("q", "q");
    let data = qemu_info(Driver::Luks, &pool.vol("k2.img"), &q)["format-specific"]["data"].clone();
    assert_eq!(
        (&data["cipher-alg"], &data["hash-alg"], &data["ivgen-alg"]),
        (&"aes-128".into(), &"sha1".into(), &"plain".into()),
        "{data}"
    );
    let (same, text) = qemu_compare_keys(
        (Driver::Luks, &pool.vol("k.img"), &pass),
        (Driver::Luks, &pool.vol("k2.img"), &q),
    );
    assert!(same, "{text}");
    lib.create_volume(
        &def(&xml_with_secret(
            "e.qcow2",
            "qcow2",
            8 * MIB,
            "off",
            &uuids[0],
        )),
        qpool::policy::CreateFlags::default(),
        None,
    )
    .unwrap();
    qemu_io_ok(
        Driver::Qcow2,
        &pool.vol("e.qcow2"),
        &pass,
        &["write -P 0x42 1M 64k"],
    );
    // The source's own secret: a byte copy, as before.
    copy_from(
        &lib,
        &xml_with_secret("same.qcow2", "qcow2", 8 * MIB, "off", &uuids[0]),
        "e.qcow2",
    )
    .unwrap();
    assert_eq!(
        std::fs::read(pool.vol("e.qcow2")).unwrap(),
        std::fs::read(pool.vol("same.qcow2")).unwrap()
    );
    // A source with no volume secret (its secret's usage is another path): one error
    // naming what is missing, nothing left.
    lib.create_volume(
        &def(&xml_with_secret(
            "n.qcow2",
            "qcow2",
            8 * MIB,
            "off",
            &uuids[1],
        )),
        qpool::policy::CreateFlags::default(),
        None,
    )
    .unwrap();
    let before = all_files(&pool);
    let err = copy_from(
        &lib,
        &xml_with_secret("m.qcow2", "qcow2", 8 * MIB, "off", &uuids[0]),
        "n.qcow2",
    )
    .unwrap_err();
    assert_eq!(
        qpool::error::one_line(&err),
        format!(
            "cannot copy 'n.qcow2' to 'm.qcow2': the secret named for the copy does not open the source, and re-encrypting it with the new secret needs the source's passphrase: no secret has the usage of volume {}",
            lib.path().join("n.qcow2").display()
        )
    );
    assert_eq!(all_files(&pool), before);
    // A source whose volume secret does not open it (made under another secret).
    lib.create_volume(
        &def(&xml_with_secret(
            "w.qcow2",
            "qcow2",
            8 * MIB,
            "off",
            &uuids[1],
        )),
        qpool::policy::CreateFlags::default(),
        None,
    )
    .unwrap();
    let before = all_files(&pool);
    let err = copy_from(
        &lib,
        &xml_with_secret("w2.qcow2", "qcow2", 8 * MIB, "off", &uuids[0]),
        "w.qcow2",
    )
    .unwrap_err();
    assert!(
        qpool::error::one_line(&err).ends_with(&format!(
            "needs the source's passphrase: the source's volume secret (uuid '{}') does not open it",
            uuids[3]
        )),
        "{}",
        qpool::error::one_line(&err)
    );
    assert_eq!(all_files(&pool), before);
}
