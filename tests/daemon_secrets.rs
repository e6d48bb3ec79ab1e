//! libvirt's secrets through `qpoold`, with unmodified `virsh`: `secret-define`,
//! `secret-set-value --file`, `secret-list`, `secret-dumpxml` (checked against libvirt's
//! `secret.rng` with xmllint), `secret-get-value`, `secret-undefine`, the read-only socket, the
//! store on disk (0700, 0600, kept over a restart), and `vol-create` of encrypted volumes
//! whose passphrase comes from the store, opened by `qemu-img` and `qemu-io` with the
//! passphrase and refused with a wrong one; `vol-create-from` under another secret
//! re-encrypts the copy with a new key, the source's passphrase coming from its volume
//! secret.
//!
//! With qpoold.conf `secrets_uri`, the passphrase of a secret qpoold does not keep comes from
//! libvirt's secret driver: a real libvirtd (tests/common/peer.rs) holds it; a private one
//! too once qpoold presents libvirtd's system token (qpoold.conf `secrets_token`), and the
//! token never reaches qpoold's log.
//!
//! A missing virsh, qemu-img, qemu-io or xmllint (or libvirtd, for the second test) skips the
//! test, except under CI=true where it fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::crypt::{
    Driver, assert_token_presented_not_logged, define_secret, encrypted_volume_xml, names_in,
    qemu_compare_keys, qemu_io, qemu_io_ok, volume_secret_xml,
};
use common::daemon::Daemon;
use common::peer::{Libvirtd, qemu_driver_available};
use common::{have, qemu_info, xmllint_relaxng};

/// libvirt's secret schema.
const LIBVIRT_SECRET_RNG: &str = "/usr/share/libvirt/schemas/secret.rng";

/// The passphrase the tests set; it must never appear in the daemon's log.
const PASSPHRASE: &str = "an-unmistakable-passphrase";

fn oracles() -> bool {
    ["virsh", "qemu-img", "qemu-io", "xmllint"]
        .iter()
        .all(|t| have(t))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
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

/// Defines a secret from `xml`; returns its UUID as virsh printed it.
fn define(d: &Daemon, name: &str, xml: &str) -> String {
    let file = d.write_file(name, xml);
    let out = d.virsh_ok(&["secret-define", file.to_str().unwrap()]);
    out.trim()
        .strip_prefix("Secret ")
        .and_then(|s| s.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("secret-define printed {out:?}"))
        .to_string()
}

/// Sets a secret's value the way an admin does: base64 in a file.
fn set_value(d: &Daemon, uuid: &str, value: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    let file = d.write_file(&format!("{uuid}.b64"), &b64);
    let out = d.virsh_ok(&["secret-set-value", uuid, "--file", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "Secret value set");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn virsh_defines_secrets_and_creates_encrypted_volumes_with_them() {
    if !oracles() {
        return;
    }
    let mut d = Daemon::unstarted(&[]);
    // The most the daemon ever logs; the passphrase must be in none of it.
    d.set_env("QPOOL_LOG", "trace");
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.spawn();
    let store = d.secrets_dir();
    assert!(!store.exists(), "the store is made at the first definition");

    // secret-define, secret-set-value --file: the store is root-only.
    let qcow2 = d.vol("e.qcow2");
    let uuid = define(&d, "secret.xml", &volume_secret_xml(&qcow2, true));
    set_value(&d, &uuid, PASSPHRASE);
    assert_eq!(mode(&store), 0o700);
    for ext in ["xml", "base64"] {
        assert_eq!(mode(&store.join(format!("{uuid}.{ext}"))), 0o600, "{ext}");
    }

    // secret-list and secret-dumpxml, in libvirt's shape and valid against its schema.
    let list = d.virsh_ok(&["secret-list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [uuid.as_str(), "volume", qcow2.to_str().unwrap()]),
        "{list}"
    );
    let xml = d.virsh_ok(&["secret-dumpxml", &uuid]);
    assert_eq!(
        xml.trim_end(),
        format!(
            "<secret ephemeral='no' private='yes'>\n  <uuid>{uuid}</uuid>\n  <description>passphrase of {p}</description>\n  <usage type='volume'>\n    <volume>{p}</volume>\n  </usage>\n</secret>",
            p = qcow2.display()
        )
    );
    if Path::new(LIBVIRT_SECRET_RNG).exists() {
        let file = d.write_file("dumped.xml", &xml);
        let (ok, err) = xmllint_relaxng(Path::new(LIBVIRT_SECRET_RNG), &file);
        assert!(ok, "secret-dumpxml does not validate: {err}\n{xml}");
    }

    // A private secret's value is never given out.
    assert_fails(
        d.virsh(&["secret-get-value", &uuid]),
        &["Invalid secret: secret is private"],
    );

    // The read-only socket lists and reads definitions, and refuses every change and the
    // value.
    let ro_list = run_ro(&d, &["secret-list"]);
    assert!(ro_list.contains(&uuid), "{ro_list}");
    let file = d.write_file("other.xml", "<secret/>");
    for (args, api) in [
        (
            vec!["secret-define", file.to_str().unwrap()],
            "virSecretDefineXML",
        ),
        (
            vec!["secret-set-value", &uuid, "--base64", "eA=="],
            "virSecretSetValue",
        ),
        (vec!["secret-get-value", &uuid], "virSecretGetValue"),
        (vec!["secret-undefine", &uuid], "virSecretUndefine"),
    ] {
        let (status, _, err) = d.virsh_ro(&args);
        assert!(
            status == 1
                && err.contains(&format!(
                    "operation forbidden: read only access prevents {api}"
                )),
            "{args:?}: {err}"
        );
    }

    // vol-create of an encrypted qcow2 naming the secret by UUID: qemu opens it with the
    // passphrase, and refuses a wrong one.
    let pass = d.write_file("pass", PASSPHRASE);
    let wrong = d.write_file("wrong", "not-the-passphrase");
    let vol = d.write_file(
        "e.xml",
        &encrypted_volume_xml("e.qcow2", "qcow2", &format!("uuid='{uuid}'")),
    );
    let out = d.virsh_ok(&["vol-create", "default", vol.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        format!("Vol e.qcow2 created from {}", vol.display())
    );
    let info = qemu_info(&qcow2);
    assert_eq!(info["encrypted"], true, "{info}");
    assert_eq!(info["format-specific"]["data"]["encrypt"]["format"], "luks");
    qemu_io_ok(
        Driver::Qcow2,
        &qcow2,
        &pass,
        &["write -P 0x5a 0 1M", "read -P 0x5a 0 1M"],
    );
    let refused = qemu_io(Driver::Qcow2, &qcow2, &wrong, &["read 0 512"]);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && text.contains("Invalid password"),
        "{text}"
    );
    // The volume's secret is the one whose usage is its path.
    let dumped = d.virsh_ok(&["vol-dumpxml", "--pool", "default", "e.qcow2"]);
    assert!(
        dumped.contains(&format!("<secret type='passphrase' uuid='{uuid}'/>")),
        "{dumped}"
    );

    // A raw LUKS volume naming the secret by usage.
    let raw = d.vol("r.img");
    let raw_uuid = define(&d, "raw.xml", &volume_secret_xml(&raw, true));
    set_value(&d, &raw_uuid, PASSPHRASE);
    let vol = d.write_file(
        "r.xml",
        &encrypted_volume_xml("r.img", "raw", &format!("usage='{}'", raw.display())),
    );
    d.virsh_ok(&["vol-create", "default", vol.to_str().unwrap()]);
    assert_eq!(qemu_info(&raw)["format"], "luks");
    qemu_io_ok(
        Driver::Luks,
        &raw,
        &pass,
        &["write -P 0x11 0 64k", "read -P 0x11 0 64k"],
    );

    // A copy under another secret is re-encrypted with a new key, the source's passphrase
    // coming from its volume secret (the one whose usage is its path): qemu reads the data
    // with the new passphrase only, and finds the guest data identical.
    let other = define(&d, "other.xml", &volume_secret_xml(&d.vol("c.qcow2"), true));
    set_value(&d, &other, "another passphrase");
    let other_pass = d.write_file("other-pass", "another passphrase");
    for (copy, format, source, driver, source_driver) in [
        ("c.qcow2", "qcow2", "e.qcow2", Driver::Qcow2, Driver::Qcow2),
        ("c.img", "raw", "r.img", Driver::Luks, Driver::Luks),
        ("cr.img", "raw", "e.qcow2", Driver::Luks, Driver::Qcow2),
    ] {
        let xml = d.write_file(
            &format!("{copy}.xml"),
            &encrypted_volume_xml(copy, format, &format!("uuid='{other}'")),
        );
        d.virsh_ok(&[
            "vol-create-from",
            "default",
            xml.to_str().unwrap(),
            source,
            "--inputpool",
            "default",
        ]);
        let (src, dst) = (d.vol(source), d.vol(copy));
        let (same, text) =
            qemu_compare_keys((source_driver, &src, &pass), (driver, &dst, &other_pass));
        assert!(same, "{copy}: {text}");
        let refused = qemu_io(driver, &dst, &pass, &["read 0 512"]);
        let text = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && text.contains("Invalid password"),
            "{copy}: {text}"
        );
    }
    qemu_io_ok(
        Driver::Qcow2,
        &d.vol("c.qcow2"),
        &other_pass,
        &["read -P 0x5a 0 1M"],
    );
    // Without the source's passphrase (o.qcow2's secret has another volume's usage): one
    // error naming what is missing, before anything is made.
    let o = d.write_file(
        "o.xml",
        &encrypted_volume_xml("o.qcow2", "qcow2", &format!("uuid='{other}'")),
    );
    d.virsh_ok(&["vol-create", "default", o.to_str().unwrap()]);
    let before = names_in(d.pool_dir());
    let copy = d.write_file(
        "p.xml",
        &encrypted_volume_xml("p.qcow2", "qcow2", &format!("uuid='{uuid}'")),
    );
    let (status, _, err) = d.virsh(&[
        "vol-create-from",
        "default",
        copy.to_str().unwrap(),
        "o.qcow2",
        "--inputpool",
        "default",
    ]);
    assert!(
        status == 1
            && err.contains(&format!(
                "unsupported configuration: cannot copy 'o.qcow2' to 'p.qcow2': the secret named for the copy does not open the source, and re-encrypting it with the new secret needs the source's passphrase: no secret has the usage of volume {}",
                d.vol("o.qcow2").display()
            )),
        "{err}"
    );
    assert_eq!(names_in(d.pool_dir()), before);
    // The source's own secret: a copy with the source's key, as before.
    let copy = d.write_file(
        "s.xml",
        &encrypted_volume_xml("s.qcow2", "qcow2", &format!("uuid='{uuid}'")),
    );
    d.virsh_ok(&[
        "vol-create-from",
        "default",
        copy.to_str().unwrap(),
        "e.qcow2",
        "--inputpool",
        "default",
    ]);
    qemu_io_ok(
        Driver::Qcow2,
        &d.vol("s.qcow2"),
        &pass,
        &["read -P 0x5a 0 1M"],
    );
    assert_eq!(
        std::fs::read(&qcow2).unwrap(),
        std::fs::read(d.vol("s.qcow2")).unwrap()
    );

    // A missing secret, or one without a value: one error, and the pool as it was.
    let before = names_in(d.pool_dir());
    let missing = "11111111-2222-3333-4444-555555555555";
    let vol = d.write_file(
        "m.xml",
        &encrypted_volume_xml("m.qcow2", "qcow2", &format!("uuid='{missing}'")),
    );
    assert_fails(
        d.virsh(&["vol-create", "default", vol.to_str().unwrap()]),
        &[
            &format!("Failed to create vol from {}", vol.display()),
            &format!(
                "Secret not found: cannot encrypt volume 'm.qcow2': no secret with uuid '{missing}'"
            ),
        ],
    );
    let empty = define(&d, "empty.xml", "<secret ephemeral='no' private='no'/>");
    let vol = d.write_file(
        "n.xml",
        &encrypted_volume_xml("n.qcow2", "qcow2", &format!("uuid='{empty}'")),
    );
    assert_fails(
        d.virsh(&["vol-create", "default", vol.to_str().unwrap()]),
        &[
            &format!("Failed to create vol from {}", vol.display()),
            &format!(
                "Secret not found: cannot encrypt volume 'n.qcow2': secret {empty} has no value"
            ),
        ],
    );
    assert_eq!(names_in(d.pool_dir()), before);

    // A public secret's value is given back, as virsh prints it (base64).
    set_value(&d, &empty, "visible");
    assert_eq!(
        d.virsh_ok(&["secret-get-value", &empty]).trim(),
        "dmlzaWJsZQ=="
    );

    // The CLI takes a secret over a URI too, here qpoold's own (a public secret).
    let xml = d.write_file(
        "cli.xml",
        &encrypted_volume_xml("cli.qcow2", "qcow2", &format!("uuid='{empty}'")),
    );
    let out = qpool_create(&d, &xml, &d.uri());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let visible = d.write_file("visible", "visible");
    qemu_io_ok(
        Driver::Qcow2,
        &d.vol("cli.qcow2"),
        &visible,
        &["read 0 512"],
    );
    // A private one is not handed over the URI: one error, nothing made.
    let xml = d.write_file(
        "cli-private.xml",
        &encrypted_volume_xml("cli-p.qcow2", "qcow2", &format!("uuid='{uuid}'")),
    );
    let out = qpool_create(&d, &xml, &d.uri());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: cannot encrypt volume 'cli-p.qcow2': cannot read the secret from libvirt at {}: Invalid secret: secret is private\n",
            d.uri()
        )
    );
    assert!(!d.vol("cli-p.qcow2").exists());

    // The store outlives the daemon: after a restart the secret still encrypts.
    d.restart();
    let vol = d.write_file(
        "after.xml",
        &encrypted_volume_xml("after.qcow2", "qcow2", &format!("uuid='{uuid}'")),
    );
    d.virsh_ok(&["vol-create", "default", vol.to_str().unwrap()]);
    qemu_io_ok(Driver::Qcow2, &d.vol("after.qcow2"), &pass, &["read 0 512"]);

    // secret-undefine removes its files.
    let out = d.virsh_ok(&["secret-undefine", &uuid]);
    assert_eq!(out.trim(), format!("Secret {uuid} deleted"));
    for ext in ["xml", "base64"] {
        assert!(!store.join(format!("{uuid}.{ext}")).exists(), "{ext}");
    }
    assert_fails(
        d.virsh(&["secret-dumpxml", &uuid]),
        &[
            &format!("failed to get secret '{uuid}'"),
            &format!("Secret not found: no secret with matching uuid '{uuid}'"),
        ],
    );

    let log = d.log();
    assert!(log.contains("secret"), "the log is the daemon's: {log}");
    assert!(!log.contains(PASSPHRASE), "the passphrase reached the log");
    {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(PASSPHRASE);
        assert!(!log.contains(&b64), "the base64 passphrase reached the log");
    }
}

/// `qpool vol-create XML --secret-uri URI` on the daemon's default pool directory.
fn qpool_create(d: &Daemon, xml: &Path, uri: &str) -> std::process::Output {
    std::process::Command::new(common::QPOOL)
        .arg("--pool-dir")
        .arg(d.pool_dir())
        .arg("vol-create")
        .arg(xml)
        .arg("--secret-uri")
        .arg(uri)
        .env_remove("QPOOL_LOG")
        .output()
        .expect("run qpool")
}

/// virsh on the read-only socket, which must succeed.
fn run_ro(d: &Daemon, args: &[&str]) -> String {
    let (status, out, err) = d.virsh_ro(args);
    assert!(status == 0 && err.is_empty(), "{args:?}: {status} {err}");
    out
}

#[test]
fn with_secrets_uri_passphrases_come_from_libvirts_secret_driver() {
    if !oracles() || !qemu_driver_available() {
        return;
    }
    assert!(
        Libvirtd::has_secrets() || !common::in_ci(),
        "libvirt's secret driver is required in CI"
    );
    if !Libvirtd::has_secrets() {
        eprintln!("SKIPPED: no libvirt secret driver here");
        return;
    }
    let l = Libvirtd::start_with_qemu();
    let mut d = Daemon::unstarted(&[]);
    d.set_env("QPOOL_LOG", "trace");
    // First without a readable token (the host's own libvirt token, if any, is not this
    // libvirtd's either).
    let config = |token: &Path| {
        format!(
            "secrets_uri = \"{}\"\nsecrets_token = \"{}\"\n",
            l.uri,
            token.display()
        )
    };
    let no_token = d.scratch().join("no-system.token");
    std::fs::write(d.config_file(), config(&no_token)).unwrap();
    std::fs::create_dir_all(d.pools.join("autostart")).unwrap();
    d.spawn();

    // The secrets live in libvirt only, volume secrets with the passphrase as their value.
    let libvirt_secret = |name: &str, path: &Path, private: bool| -> String {
        define_secret(
            &|args| l.virsh_ok(args),
            d.scratch(),
            name,
            &volume_secret_xml(path, private),
            PASSPHRASE,
        )
    };
    let raw = d.vol("l.img");
    let uuid = libvirt_secret("public", &raw, false);
    assert!(
        !d.virsh_ok(&["secret-list"]).contains(&uuid),
        "qpoold lists its own secrets only"
    );
    let pass = d.write_file("pass", PASSPHRASE);

    // By UUID (qcow2) and by usage (raw LUKS).
    let vol = d.write_file(
        "l.xml",
        &encrypted_volume_xml("l.qcow2", "qcow2", &format!("uuid='{uuid}'")),
    );
    d.virsh_ok(&["vol-create", "default", vol.to_str().unwrap()]);
    qemu_io_ok(
        Driver::Qcow2,
        &d.vol("l.qcow2"),
        &pass,
        &["write -P 0x33 0 64k", "read -P 0x33 0 64k"],
    );
    let vol = d.write_file(
        "lr.xml",
        &encrypted_volume_xml("l.img", "raw", &format!("usage='{}'", raw.display())),
    );
    d.virsh_ok(&["vol-create", "default", vol.to_str().unwrap()]);
    qemu_io_ok(Driver::Luks, &raw, &pass, &["read 0 4k"]);

    // libvirt gives a private secret's value only to its own daemons (the ones that hold
    // its system token): without it qpoold is refused it, one error, nothing left behind.
    let before = names_in(d.pool_dir());
    let private = libvirt_secret("private", &d.vol("p.qcow2"), true);
    let vol = d.write_file(
        "lp.xml",
        &encrypted_volume_xml("p.qcow2", "qcow2", &format!("uuid='{private}'")),
    );
    assert_fails(
        d.virsh(&["vol-create", "default", vol.to_str().unwrap()]),
        &[
            &format!("Failed to create vol from {}", vol.display()),
            &format!(
                "invalid argument: cannot encrypt volume 'p.qcow2': cannot read the secret from libvirt at {}: Invalid secret: secret is private",
                l.uri
            ),
        ],
    );

    // A secret neither has: libvirt's answer, one error, nothing left behind.
    let missing = "11111111-2222-3333-4444-555555555555";
    let vol = d.write_file(
        "lm.xml",
        &encrypted_volume_xml("lm.qcow2", "qcow2", &format!("uuid='{missing}'")),
    );
    assert_fails(
        d.virsh(&["vol-create", "default", vol.to_str().unwrap()]),
        &[
            &format!("Failed to create vol from {}", vol.display()),
            &format!(
                "Secret not found: cannot encrypt volume 'lm.qcow2': no secret with uuid '{missing}'"
            ),
        ],
    );
    assert_eq!(names_in(d.pool_dir()), before);

    // The CLI reads libvirt's (public) secret over the same URI.
    let xml = d.write_file(
        "lc.xml",
        &encrypted_volume_xml("lc.qcow2", "qcow2", &format!("uuid='{uuid}'")),
    );
    let out = qpool_create(&d, &xml, &l.uri);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSPHRASE));
    qemu_io_ok(Driver::Qcow2, &d.vol("lc.qcow2"), &pass, &["read 0 512"]);

    // With libvirtd's system token, qpoold is given the private secret too.
    let token_file = l.system_token();
    std::fs::write(d.config_file(), config(&token_file)).unwrap();
    d.restart();
    let vol = d.write_file(
        "lp.xml",
        &encrypted_volume_xml("p.qcow2", "qcow2", &format!("uuid='{private}'")),
    );
    d.virsh_ok(&["vol-create", "default", vol.to_str().unwrap()]);
    qemu_io_ok(
        Driver::Qcow2,
        &d.vol("p.qcow2"),
        &pass,
        &["write -P 0x5a 0 64k", "read -P 0x5a 0 64k"],
    );
    // By usage too.
    let vol = d.write_file(
        "lpu.xml",
        &encrypted_volume_xml(
            "p.qcow2-copy",
            "qcow2",
            &format!("usage='{}'", d.vol("p.qcow2").display()),
        ),
    );
    d.virsh_ok(&["vol-create", "default", vol.to_str().unwrap()]);
    qemu_io_ok(
        Driver::Qcow2,
        &d.vol("p.qcow2-copy"),
        &pass,
        &["read 0 512"],
    );

    assert_token_presented_not_logged(&d.log(), &token_file, PASSPHRASE);
}

/// `qpool vol-create-from --secret-uri`: the CLI asks libvirt for both passphrases, the new
/// volume's by the secret its XML names and the input's by libvirt's convention (the secret
/// whose usage is the input's path), and re-encrypts the copy when they differ.
#[test]
fn cli_create_from_with_secret_uri_reencrypts_with_libvirts_secrets() {
    if !oracles() || !qemu_driver_available() {
        return;
    }
    assert!(
        Libvirtd::has_secrets() || !common::in_ci(),
        "libvirt's secret driver is required in CI"
    );
    if !Libvirtd::has_secrets() {
        eprintln!("SKIPPED: no libvirt secret driver here");
        return;
    }
    let l = Libvirtd::start_with_qemu();
    let pool = common::TempPool::new();
    let src = pool.vol("src.qcow2");
    // Two public libvirt secrets with different values: the source's (usage = its path) and
    // the copy's (named by UUID).
    let define = |name: &str, xml: String, value: &str| -> String {
        define_secret(&|args| l.virsh_ok(args), pool.scratch(), name, &xml, value)
    };
    define("src", volume_secret_xml(&src, false), PASSPHRASE);
    let new_value = "a-second-and-different-passphrase";
    let copy_uuid = define(
        "copy",
        "<secret ephemeral='no' private='no'>\n  <description>the copy's</description>\n</secret>\n"
            .to_string(),
        new_value,
    );
    let old_pass = pool.write_file("old.pass", PASSPHRASE);
    let new_pass = pool.write_file("new.pass", new_value);

    // The source, made by the CLI with the libvirt secret of its usage, and a pattern in it.
    let xml = pool.write_file(
        "src-vol.xml",
        &encrypted_volume_xml("src.qcow2", "qcow2", &format!("usage='{}'", src.display())),
    );
    pool.ok(&["vol-create", xml.to_str().unwrap(), "--secret-uri", &l.uri]);
    qemu_io_ok(Driver::Qcow2, &src, &old_pass, &["write -P 0x5c 1M 256k"]);

    // The copy names the other secret: re-encrypted, same guest data, only the new key.
    let xml = pool.write_file(
        "copy-vol.xml",
        &encrypted_volume_xml("copy.qcow2", "qcow2", &format!("uuid='{copy_uuid}'")),
    );
    pool.ok(&[
        "vol-create-from",
        xml.to_str().unwrap(),
        "src.qcow2",
        "--secret-uri",
        &l.uri,
    ]);
    let copy = pool.vol("copy.qcow2");
    let (same, said) = qemu_compare_keys(
        (Driver::Qcow2, &src, &old_pass),
        (Driver::Qcow2, &copy, &new_pass),
    );
    assert!(same, "{said}");
    qemu_io_ok(Driver::Qcow2, &copy, &new_pass, &["read -P 0x5c 1M 256k"]);
    let old = qemu_io(Driver::Qcow2, &copy, &old_pass, &["read 0 4k"]);
    assert!(
        !old.status.success(),
        "the copy opens with the old passphrase"
    );

    // Without a secret for the source in libvirt, the copy is refused: one line, nothing made.
    let other = pool.vol("other.qcow2");
    std::fs::copy(&src, &other).unwrap();
    let listing = pool.listing();
    let xml = pool.write_file(
        "copy2-vol.xml",
        &encrypted_volume_xml("copy2.qcow2", "qcow2", &format!("uuid='{copy_uuid}'")),
    );
    let out = pool.qpool(&[
        "vol-create-from",
        xml.to_str().unwrap(),
        "other.qcow2",
        "--secret-uri",
        &l.uri,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("needs the source's passphrase"),
        "{stderr}"
    );
    assert_eq!(pool.listing(), listing);
}
