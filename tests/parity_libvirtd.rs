//! The differential suite: the same sequence of libvirt storage API calls, made through
//! Debian's python3-libvirt by `tests/python/parity_scenario.py`, against qpoold and against
//! a real libvirtd 9.0 (storage driver only, shared/docs/libvirtd-peer.md), side by side. Each
//! daemon has a fresh ext4 filesystem of its own for its pools (ext4 keeps blocks for root, so
//! `f_bfree` and `f_bavail` differ there). Every step's return value and error code (not the
//! message text) must be the same, except for the deliberate differences listed in
//! [`DELIBERATE`], each with its reason; README's "Differences from libvirt 9.0" lists the
//! same ones under the same titles. The test fails on any unlisted difference, on a listed
//! one that no longer differs, and on a title README does not have.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::daemon::Daemon;
use common::in_ci;
use common::peer::{Libvirtd, Mount, peer_available};
use serde_json::Value;

/// Debian's interpreter, which python3-libvirt is installed for.
const PYTHON: &str = "/usr/bin/python3";
/// Size of each daemon's private ext4 filesystem.
const FS_SIZE: u64 = 512 << 20;
/// How long one run of the scenario may take before it counts as hung.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(600);

/// A difference from libvirt 9.0 that qpool keeps on purpose.
struct Deliberate {
    /// The title README's "Differences from libvirt 9.0" gives it (verbatim, in bold).
    title: &'static str,
    /// The steps it covers: a step name, or a prefix ending in `*`.
    steps: &'static [&'static str],
    /// When not empty, only these lines of the steps' text may differ (the lines starting
    /// with one of these, after indentation); everything else must agree.
    lines: &'static [&'static str],
    /// Why qpool differs.
    why: &'static str,
}

/// Every deliberate difference, in one place. README repeats them under the same titles.
const DELIBERATE: &[Deliberate] = &[
    Deliberate {
        title: "virsh version and virsh hostname work",
        steps: &["getVersion", "getHostname"],
        lines: &[],
        why: "qpoold answers with qpool's version and the host's name; libvirt's storage \
              daemon refuses both",
    },
    Deliberate {
        title: "virt-manager can connect",
        steps: &["listAllDomains", "nodeGetInfo"],
        lines: &[],
        why: "virt-manager opens a connection only when it can list domains and read the \
              node's info: qpoold answers an empty domain list and this host's figures, \
              libvirt's storage daemon refuses both",
    },
    Deliberate {
        title: "Capabilities of a dir-pool service",
        steps: &["getCapabilities", "getStoragePoolCapabilities"],
        lines: &[],
        why: "qpool serves dir pools of raw and qcow2 volumes and says so (and names the \
              host's architecture); libvirt lists every pool type and format it was built with",
    },
    Deliberate {
        title: "Only dir pools",
        steps: &["other pool types: *"],
        lines: &[],
        why: "a pool of another type is refused when it is defined or created; libvirt \
              defines it and fails later, when the tools it needs are missing",
    },
    Deliberate {
        title: "Absolute target paths",
        steps: &["relative target: *"],
        lines: &[],
        why: "a dir pool's target must be an absolute path; libvirt takes a relative one",
    },
    Deliberate {
        title: "Volumes are raw or qcow2 files",
        steps: &["other formats: *", "volume types: *"],
        lines: &[],
        why: "other formats (vmdk, iso, …) and volume types (block, …) are refused up front; \
              libvirt hands other formats to qemu-img and makes a file whatever type the XML \
              says",
    },
    Deliberate {
        title: "Hidden names are reserved",
        steps: &["hidden names: *"],
        lines: &[],
        why: "a volume name starting with '.' is refused: qpool builds volumes under hidden \
              temporary names",
    },
    Deliberate {
        title: "`<compat>` checked when read",
        steps: &["compat check: *"],
        lines: &[],
        why: "an unknown compat level is an XML error when the document is read; libvirt \
              passes it to qemu-img, which fails (an internal error)",
    },
    Deliberate {
        title: "VALIDATE creates volumes",
        steps: &["VALIDATE valid: *"],
        lines: &[],
        why: "libvirt 9.0 refuses every volume document with VIR_STORAGE_VOL_CREATE_VALIDATE \
              (its parser rejects the flag it is handed); qpoold validates, then creates",
    },
    Deliberate {
        title: "Compat 1.1 by default",
        steps: &["compat default: *"],
        lines: &[],
        why: "a qcow2 without <compat> is compat 1.1 (qemu-img's default); libvirt writes 0.10",
    },
    Deliberate {
        title: "vol-dumpxml shows the probed qcow2 details at once",
        steps: &["vol-xml *"],
        lines: &["<clusterSize", "<features/>"],
        why: "qpool's XML of a qcow2 always has its cluster size and features, which libvirt \
              shows only once a pool refresh has probed the file",
    },
    Deliberate {
        title: "Partial reservation",
        steps: &["partial reservation: *"],
        lines: &[],
        why: "a qcow2 with 0 < allocation < capacity gets its first `allocation` bytes \
              reserved; libvirt ignores the allocation without PREALLOC_METADATA",
    },
    Deliberate {
        title: "Allocation at capacity reserves a qcow2",
        steps: &["falloc without the flag: *"],
        lines: &[],
        why: "allocation ≥ capacity makes a falloc qcow2 even without PREALLOC_METADATA; \
              libvirt makes it thin",
    },
    Deliberate {
        title: "qcow2 capacity rounding",
        steps: &["capacity rounding: *"],
        lines: &[],
        why: "a qcow2 capacity rounds up to 512 bytes, as qemu-img rounds it; libvirt hands \
              qemu-img whole KiB",
    },
    Deliberate {
        title: "Raw allocation above capacity",
        steps: &["over-allocated raw: *"],
        lines: &[],
        why: "the file keeps the capacity asked for, fully reserved; libvirt's fallocate of \
              the allocation makes the file as large as the allocation",
    },
    Deliberate {
        title: "The directory is read live",
        steps: &["dropped file: *"],
        lines: &[],
        why: "a file put into the pool directory is a volume at once; libvirt lists it only \
              after a refresh",
    },
    Deliberate {
        title: "Exact clones",
        steps: &["exact clone: *"],
        lines: &[],
        why: "vol-clone keeps the source's reserved extents reserved; libvirt copies only \
              the blocks that hold non-zero data",
    },
    Deliberate {
        title: "Sparse uploads keep the volume's size",
        steps: &["sparse upload: *"],
        lines: &[],
        why: "a sparse upload punches its holes and leaves the volume's size alone; libvirt \
              seeks over each hole and truncates the file at its end",
    },
    Deliberate {
        title: "vol-resize --allocate on qcow2",
        steps: &["resize qcow2 grow allocate*"],
        lines: &[],
        why: "qpool reserves the new area of a qcow2; libvirt refuses --allocate on qcow2",
    },
    Deliberate {
        title: "qcow2 shrink frees its clusters",
        steps: &[
            "resize qcow2 shrink: vol-info",
            "resize qcow2 grow after shrink: vol-info",
        ],
        lines: &[],
        why: "a shrunk qcow2 is rewritten in place without the clusters past its end; \
              qemu-img's shrink leaves a cluster more allocated",
    },
    Deliberate {
        title: "Wipe algorithms",
        steps: &["wipe algorithms: *"],
        lines: &[],
        why: "zero, random and trim are done natively, the multi-pass algorithms refused as \
              invalid; libvirt runs scrub for all but zero (an error where it is not \
              installed) and refuses trim",
    },
    Deliberate {
        title: "A wiped sparse raw volume keeps its allocation",
        steps: &["wiped sparse raw: *"],
        lines: &[],
        why: "zero overwrites the allocated extents; libvirt truncates a sparse file to \
              nothing and back",
    },
    Deliberate {
        title: "A wiped qcow2 stays a qcow2",
        steps: &["wiped qcow2: *"],
        lines: &[],
        why: "the image is rebuilt empty with its size and options; libvirt zeroes the header \
              too and leaves a raw file of zeros",
    },
];

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/parity_scenario.py")
}

/// Whether python3-libvirt can be imported; its absence fails under CI.
fn have_python_libvirt() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import libvirt"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "python3-libvirt is required in CI (apt-get install --no-install-recommends python3-libvirt)"
        );
        eprintln!("SKIPPED: python3-libvirt not importable by {PYTHON}");
    }
    ok
}

/// Runs the scenario against `uri` with its pools under `base`; its records.
fn scenario(uri: &str, base: &Path) -> Result<Vec<Value>, String> {
    let child = Command::new(PYTHON)
        .arg(script())
        .arg(uri)
        .arg(base)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {PYTHON}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(SCENARIO_DEADLINE) {
        Ok(out) => out.map_err(|e| format!("scenario: {e}"))?,
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(format!(
                "the scenario did not finish within {SCENARIO_DEADLINE:?}"
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("the scenario failed ({}):\n{stderr}", out.status));
    }
    serde_json::from_str(&stdout).map_err(|e| format!("bad JSON ({e}):\n{stdout}\n{stderr}"))
}

/// What is compared of a record: its return value, or its error code (not the error's
/// domain or message).
fn outcome(record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(obj) = r.as_object_mut() {
        for key in ["msg", "domain", "step"] {
            obj.remove(key);
        }
    }
    r
}

/// A record's text values without the lines that start (after indentation) with one of
/// `prefixes`.
fn without_lines(value: &Value, prefixes: &[&str]) -> Value {
    match value {
        Value::String(text) => Value::String(
            text.lines()
                .filter(|l| !prefixes.iter().any(|p| l.trim_start().starts_with(p)))
                .map(|l| format!("{l}\n"))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| without_lines(v, prefixes)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_lines(v, prefixes)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn covers(pattern: &str, step: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => step.starts_with(prefix),
        None => step == pattern,
    }
}

fn short(record: &Value) -> String {
    let mut text = serde_json::to_string(record).unwrap_or_default();
    if text.len() > 600 {
        let mut end = 600;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// README's "Differences from libvirt 9.0" section.
fn readme_differences() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("### Differences from libvirt 9.0")
        .expect("README has a \"Differences from libvirt 9.0\" section");
    let rest = &readme[start + 4..];
    let end = rest.find("\n#").map_or(rest.len(), |i| i + 1);
    rest[..end].to_string()
}

#[test]
fn parity_every_storage_call_answers_as_libvirtd() {
    if !peer_available() || !have_python_libvirt() {
        return;
    }
    let q_fs = Mount::ext4(FS_SIZE);
    let l_fs = Mount::ext4(FS_SIZE);
    let q = Daemon::start();
    // libvirtd starts after the mounts, so its mount namespace has them.
    let l = Libvirtd::start();
    let (q_uri, l_uri) = (q.uri(), l.uri.clone());
    let q_base = q_fs.path().to_path_buf();
    // The two runs are independent (own daemon, own filesystem): side by side.
    let q_run = std::thread::spawn(move || scenario(&q_uri, &q_base));
    let l_records = scenario(&l_uri, l_fs.path()).unwrap_or_else(|e| panic!("libvirtd: {e}"));
    let q_records = q_run
        .join()
        .expect("qpoold run")
        .unwrap_or_else(|e| panic!("qpoold: {e}"));

    let names = |r: &[Value]| -> Vec<String> {
        r.iter()
            .map(|x| x["step"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(
        names(&q_records),
        names(&l_records),
        "both runs must make the same steps"
    );
    let mut unlisted = Vec::new();
    let mut used = vec![false; DELIBERATE.len()];
    let mut report = String::new();
    for (qr, lr) in q_records.iter().zip(&l_records) {
        let step = qr["step"].as_str().unwrap_or("?");
        for (who, r) in [("qpoold", qr), ("libvirtd", lr)] {
            assert!(
                r.get("exc").is_none(),
                "the scenario broke at step {step:?} against {who}: {r}"
            );
        }
        if outcome(qr) == outcome(lr) {
            continue;
        }
        let line = format!(
            "  {step}\n    qpoold:   {}\n    libvirtd: {}\n",
            short(qr),
            short(lr)
        );
        report.push_str(&line);
        match DELIBERATE.iter().position(|d| {
            d.steps.iter().any(|p| covers(p, step))
                && (d.lines.is_empty()
                    || without_lines(&outcome(qr), d.lines) == without_lines(&outcome(lr), d.lines))
        }) {
            Some(i) => used[i] = true,
            None => unlisted.push(line),
        }
    }
    eprintln!(
        "{} steps; differences (listed and unlisted):\n{report}",
        q_records.len()
    );
    assert!(
        unlisted.is_empty(),
        "{} difference(s) from libvirtd 9.0 that are neither fixed nor listed as deliberate:\n{}",
        unlisted.len(),
        unlisted.concat()
    );
    let stale: Vec<&str> = DELIBERATE
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(d, _)| d.title)
        .collect();
    assert!(
        stale.is_empty(),
        "listed as deliberate but no longer different (remove them here and in README): {stale:?}"
    );
    let readme = readme_differences();
    for d in DELIBERATE {
        assert!(
            readme.contains(&format!("**{}**", d.title)),
            "README's \"Differences from libvirt 9.0\" does not list **{}** ({})",
            d.title,
            d.why
        );
    }
    drop(q);
    drop(l);
}
