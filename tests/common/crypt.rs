//! qemu's tools on encrypted images: every call names the passphrase through a secret
//! object read from a file (`--object secret,id=s0,file=…`), never on the command line, and
//! opens the image with `--image-opts` (qcow2 with `encrypt.key-secret`, raw with the
//! `luks` driver).

use std::path::Path;
use std::process::Output;

use super::run;

/// The id of the secret object every call defines.
pub const SECRET_ID: &str = "s0";

/// How qemu opens an encrypted image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// qcow2 with LUKS (crypt_method 2).
    Qcow2,
    /// A raw LUKS file (qemu's `luks` format).
    Luks,
}

impl Driver {
    /// The `--image-opts` string for `path`.
    pub fn image_opts(self, path: &Path) -> String {
        match self {
            Driver::Qcow2 => format!(
                "driver=qcow2,encrypt.key-secret={SECRET_ID},file.filename={}",
                path.display()
            ),
            Driver::Luks => format!(
                "driver=luks,key-secret={SECRET_ID},file.filename={}",
                path.display()
            ),
        }
    }

    /// The format name for `qemu-img create -f`.
    pub fn format(self) -> &'static str {
        match self {
            Driver::Qcow2 => "qcow2",
            Driver::Luks => "luks",
        }
    }
}

fn secret_object(passphrase_file: &Path) -> String {
    format!("secret,id={SECRET_ID},file={}", passphrase_file.display())
}

/// `qemu-img create` of an encrypted twin: `options` besides the secret (`preallocation=…`,
/// `cipher-alg=…`; the qcow2 ones without their `encrypt.` prefix).
pub fn qemu_img_create(
    driver: Driver,
    path: &Path,
    passphrase_file: &Path,
    options: &str,
    size: u64,
) {
    let prefix = match driver {
        Driver::Qcow2 => "encrypt.",
        Driver::Luks => "",
    };
    let mut opts = match driver {
        Driver::Qcow2 => "encrypt.format=luks,".to_string(),
        Driver::Luks => String::new(),
    };
    opts.push_str(&format!(
        "{prefix}key-secret={SECRET_ID},{prefix}iter-time=1"
    ));
    for o in options.split(',').filter(|o| !o.is_empty()) {
        let is_crypto = !o.starts_with("preallocation=")
            && !o.starts_with("cluster_size=")
            && !o.starts_with("compat=");
        opts.push(',');
        if is_crypto {
            opts.push_str(prefix);
        }
        opts.push_str(o);
    }
    let size = size.to_string();
    let object = secret_object(passphrase_file);
    let out = run(
        "qemu-img",
        &[
            "create",
            "-q",
            "--object",
            &object,
            "-f",
            driver.format(),
            "-o",
            &opts,
            path.to_str().unwrap(),
            &size,
        ],
    );
    assert!(
        out.status.success(),
        "qemu-img create {opts}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-io --object secret … --image-opts … -c C1 -c C2 …`.
pub fn qemu_io(driver: Driver, path: &Path, passphrase_file: &Path, commands: &[&str]) -> Output {
    let object = secret_object(passphrase_file);
    let opts = driver.image_opts(path);
    let mut args = vec!["--object", object.as_str(), "--image-opts", opts.as_str()];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    run("qemu-io", &args)
}

/// [`qemu_io`] that must succeed with every command (qemu-io prints a pattern mismatch
/// without failing, so its output is checked too).
pub fn qemu_io_ok(driver: Driver, path: &Path, passphrase_file: &Path, commands: &[&str]) {
    let out = qemu_io(driver, path, passphrase_file, commands);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("failed") && !text.contains("can't open"),
        "qemu-io {} {commands:?}: {text}",
        path.display()
    );
}

/// `qemu-img info --output=json` of an encrypted image, opened with its passphrase.
pub fn qemu_info(driver: Driver, path: &Path, passphrase_file: &Path) -> serde_json::Value {
    let object = secret_object(passphrase_file);
    let opts = driver.image_opts(path);
    let out = run(
        "qemu-img",
        &[
            "info",
            "--output=json",
            "--object",
            &object,
            "--image-opts",
            &opts,
        ],
    );
    assert!(
        out.status.success(),
        "qemu-img info {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("qemu-img info json")
}

/// `qemu-img check` of an encrypted qcow2 image with its passphrase: no errors, no leaks.
pub fn assert_check_clean(path: &Path, passphrase_file: &Path) {
    let object = secret_object(passphrase_file);
    let opts = Driver::Qcow2.image_opts(path);
    let out = run(
        "qemu-img",
        &[
            "check",
            "--output=json",
            "--object",
            &object,
            "--image-opts",
            &opts,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qemu-img check {}: {text}{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
    for key in ["corruptions", "leaks", "check-errors"] {
        assert_eq!(
            v.get(key).and_then(|x| x.as_u64()).unwrap_or(0),
            0,
            "{key} in {text}"
        );
    }
}

/// `qemu-img compare` of two encrypted images with the same passphrase: true when their
/// guest data is identical.
pub fn qemu_compare(driver: Driver, a: &Path, b: &Path, passphrase_file: &Path) -> bool {
    let object = secret_object(passphrase_file);
    let (oa, ob) = (driver.image_opts(a), driver.image_opts(b));
    let out = run(
        "qemu-img",
        &["compare", "--object", &object, "--image-opts", &oa, &ob],
    );
    out.status.code() == Some(0)
}

/// The byte range a qcow2 image's full disk encryption extension points at (offset and
/// length, from the header extension of type 0x0537be77), widened to whole clusters.
pub fn luks_clusters(path: &Path) -> std::ops::Range<u64> {
    let bytes = std::fs::read(path).expect("read image");
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    let be64 = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    let cluster = 1u64 << be32(20);
    let mut at = if be32(4) == 3 { be32(100) as usize } else { 72 };
    loop {
        let (kind, len) = (be32(at), be32(at + 4) as usize);
        assert_ne!(
            kind,
            0,
            "no full disk encryption extension in {}",
            path.display()
        );
        if kind == 0x0537_be77 {
            let (offset, length) = (be64(at + 8), be64(at + 16));
            return offset..(offset + length).next_multiple_of(cluster);
        }
        at += 8 + len.next_multiple_of(8);
    }
}

/// The first offset where the files differ outside `skip` (one range in each file, the
/// LUKS header's clusters, whose keys and salts are random), or their lengths if those
/// differ; `None` when equal.
pub fn first_difference_outside(
    a: &Path,
    skip_a: std::ops::Range<u64>,
    b: &Path,
    skip_b: std::ops::Range<u64>,
) -> Option<u64> {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    if x.len() != y.len() || skip_a != skip_b {
        return Some(x.len().min(y.len()) as u64);
    }
    x.iter()
        .zip(&y)
        .enumerate()
        .find(|(i, (p, q))| p != q && !skip_a.contains(&(*i as u64)))
        .map(|(i, _)| i as u64)
}

/// `qemu-img compare` of two encrypted images, each opened with its own passphrase (secret
/// objects `a` and `b`): true when their guest data is identical; qemu-img's output too.
pub fn qemu_compare_keys(a: (Driver, &Path, &Path), b: (Driver, &Path, &Path)) -> (bool, String) {
    let opts = |(driver, path, _): (Driver, &Path, &Path), id: &str| {
        driver.image_opts(path).replace(
            &format!("key-secret={SECRET_ID}"),
            &format!("key-secret={id}"),
        )
    };
    let object = |pass: &Path, id: &str| format!("secret,id={id},file={}", pass.display());
    let (oa, ob) = (object(a.2, "a"), object(b.2, "b"));
    let (ia, ib) = (opts(a, "a"), opts(b, "b"));
    let out = run(
        "qemu-img",
        &[
            "compare",
            "--object",
            &oa,
            "--object",
            &ob,
            "--image-opts",
            &ia,
            &ib,
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code() == Some(0), text)
}

/// The master-key digest and its salt of the LUKS header at `offset` of `path` (phdr bytes
/// 112..164).
pub fn luks_digest_and_salt(path: &Path, offset: u64) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("read image");
    let at = usize::try_from(offset).unwrap();
    bytes[at + 112..at + 164].to_vec()
}

/// A libvirt volume secret for `path` (usage type volume, its id the path), private unless
/// said otherwise.
pub fn volume_secret_xml(path: &Path, private: bool) -> String {
    format!(
        "<secret ephemeral='no' private='{}'>\n  <description>passphrase of {}</description>\n  <usage type='volume'>\n    <volume>{}</volume>\n  </usage>\n</secret>\n",
        if private { "yes" } else { "no" },
        path.display(),
        path.display()
    )
}

/// An encrypted volume whose `<secret>` is `secret` (`uuid='…'` or `usage='…'`); a short
/// key-derivation time keeps the tests fast.
pub fn encrypted_volume_xml(name: &str, format: &str, secret: &str) -> String {
    format!(
        "<volume xmlns:qpool='urn:qpool:volume:1'>\n  <name>{name}</name>\n  <capacity unit='M'>16</capacity>\n  <target>\n    <format type='{format}'/>\n    <encryption format='luks' qpool:iter-time='10'>\n      <secret type='passphrase' {secret}/>\n    </encryption>\n  </target>\n</volume>\n"
    )
}

/// Defines a secret in a libvirt daemon as an admin does, with `virsh_ok` (virsh on that
/// daemon, asserting success): `secret-define` of `xml`, then `secret-set-value --file` of
/// `value` in base64 (files under `dir`, the value's removed again). Its UUID.
pub fn define_secret(
    virsh_ok: &dyn Fn(&[&str]) -> String,
    dir: &Path,
    name: &str,
    xml: &str,
    value: &str,
) -> String {
    let file = dir.join(format!("{name}.secret.xml"));
    std::fs::write(&file, xml).unwrap();
    let out = virsh_ok(&["secret-define", file.to_str().unwrap()]);
    let uuid = out
        .trim()
        .strip_prefix("Secret ")
        .and_then(|s| s.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("secret-define printed {out:?}"))
        .to_string();
    use base64::Engine as _;
    let b64 = dir.join(format!("{name}.b64"));
    std::fs::write(
        &b64,
        base64::engine::general_purpose::STANDARD.encode(value),
    )
    .unwrap();
    let out = virsh_ok(&["secret-set-value", &uuid, "--file", b64.to_str().unwrap()]);
    assert_eq!(out.trim(), "Secret value set");
    std::fs::remove_file(b64).unwrap();
    uuid
}

/// qpoold's `log` says it presented libvirt's system token (in `token_file`), and holds
/// neither that token nor `passphrase`.
pub fn assert_token_presented_not_logged(log: &str, token_file: &Path, passphrase: &str) {
    let token = std::fs::read_to_string(token_file).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 32, "libvirt's tokens are 32 hex digits");
    assert!(
        log.contains("identity set with the system token of"),
        "the token was presented: {log}"
    );
    assert!(!log.contains(token), "the system token reached the log");
    assert!(!log.contains(passphrase), "the passphrase reached the log");
}

/// Every name in `dir`, hidden ones included, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
