//! The layering ARCHITECTURE.md describes, checked on the source: every `crate::…` path a
//! module names (in `use` lines and inline) must point to a module its layer may use.
//!
//! The rules, from the bottom up:
//! - `sys`, `paths`, `logging` use nothing of the crate; `units` and `model` only each other;
//! - `xml` and `policy` are pure: no I/O module (`sys`, `image`, `pool`) and no face;
//! - `image` uses `sys` and the pure layers, never `pool`;
//! - `error` names the failures of `xml`, `policy` and `image`;
//! - `pool` is the engine: everything below it;
//! - the faces (`cli`, `rpc`, `daemon`, `bridge`) use the engine and the pure layers, never
//!   `image` or `sys` directly, and never each other, except that the daemon face runs the
//!   RPC server and the libvirt bridge, the CLI names the bridge's settings and jobs, and the
//!   CLI reads the bridge settings of qpoold.conf through `daemon::config` (nothing else of
//!   `daemon`), and the libvirt bridge names `sys::libvirt` (the one libvirt call the `virt`
//!   crate does not wrap, kept with the other unsafe code in `sys`) and nothing else of `sys`;
//! - the CLI never names the bridge's libvirt calls (`Bridge`, `attach`): it hands the bridge's
//!   work to qpoold, so that the `qpool` binary never links libvirt (tests/libvirt_bridge.rs
//!   checks the binary itself);
//! - nothing below the faces names a face; each binary names only its own face.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PURE: &[&str] = &[
    "units", "model", "xml", "policy", "error", "paths", "progress",
];

/// What each top-level module may name.
fn allowed(module: &str) -> Option<Vec<&str>> {
    let mut v: Vec<&str> = match module {
        "sys" | "paths" | "logging" | "progress" => vec![],
        "units" => vec!["model"],
        "model" => vec!["units"],
        "xml" => vec!["units", "model"],
        "policy" => vec!["units", "model", "xml"],
        "image" => vec!["units", "model", "sys", "progress"],
        "error" => vec!["units", "model", "xml", "policy", "image"],
        "pool" => vec![
            "units", "model", "xml", "policy", "image", "sys", "error", "paths", "progress",
        ],
        "cli" => {
            let mut v = PURE.to_vec();
            v.extend(["pool", "logging", "bridge", "daemon::config"]);
            v
        }
        "rpc" => {
            let mut v = PURE.to_vec();
            v.push("pool");
            v
        }
        "daemon" => {
            let mut v = PURE.to_vec();
            v.extend(["pool", "rpc", "logging", "bridge"]);
            v
        }
        "bridge" => {
            let mut v = PURE.to_vec();
            v.extend(["pool", "sys::libvirt"]);
            v
        }
        _ => return None,
    };
    v.push(module);
    Some(v)
}

/// What each binary may name (its own face, and the log set-up).
fn allowed_for_binary(file: &str) -> Option<Vec<&'static str>> {
    match file {
        "qpool.rs" => Some(vec!["cli"]),
        "qpoold.rs" => Some(vec!["daemon", "logging"]),
        _ => None,
    }
}

/// The top-level modules a piece of Rust source names through `root::` paths (comments
/// left out): `root::a::b`, `root::{a, b::c}`.
fn named_modules(source: &str, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let prefix = format!("{root}::");
        let mut rest = code;
        while let Some(i) = rest.find(&prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `daemon::config` is named apart from the rest of the daemon face, and
                // `sys::libvirt` apart from the rest of `sys`.
                if name == "daemon" && rest["daemon".len()..].starts_with("::config") {
                    out.push("daemon::config".to_string());
                } else if name == "sys" && rest["sys".len()..].starts_with("::libvirt::") {
                    out.push("sys::libvirt".to_string());
                } else if !name.is_empty() {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Lines of the form "file: names module" for every reference a rule forbids.
fn violations(module: &str, file: &str, source: &str, allow: &[&str]) -> Vec<String> {
    let root = if module == "bin" { "qpool" } else { "crate" };
    named_modules(source, root)
        .into_iter()
        .filter(|m| m != "self" && m != "super" && !allow.contains(&m.as_str()))
        // Re-exports at the crate root are types, not modules: `crate::Error`, `crate::Pool`.
        .filter(|m| !m.chars().next().is_some_and(char::is_uppercase))
        .map(|m| format!("{file}: the {module} layer names `{m}`"))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_names_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        let file = rel.display().to_string();
        *seen.entry(module.clone()).or_default() += 1;
        let allow = if module == "bin" {
            let name = rel.file_name().unwrap().to_string_lossy().into_owned();
            allowed_for_binary(&name)
                .unwrap_or_else(|| panic!("{file}: a binary ARCHITECTURE.md does not list"))
        } else if module == "lib" {
            continue;
        } else {
            allowed(&module)
                .unwrap_or_else(|| panic!("{file}: module `{module}` has no layer in this test"))
        };
        problems.extend(violations(&module, &file, &text, &allow));
    }
    assert!(seen.len() > 10, "the walk found the modules: {seen:?}");
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// The bridge's entry points that call libvirt: only qpoold may name them.
const LIBVIRT_CALLS: &[&str] = &["Bridge", "attach"];

/// Lines "file: names bridge::…" for every libvirt call of the bridge a CLI file names.
fn libvirt_calls(file: &str, source: &str) -> Vec<String> {
    named_modules(source, "bridge")
        .into_iter()
        .filter(|name| LIBVIRT_CALLS.contains(&name.as_str()))
        .map(|name| format!("{file}: the CLI names `bridge::{name}`"))
        .collect()
}

#[test]
fn the_cli_never_names_the_bridges_libvirt_calls() {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = Vec::new();
    rust_files(&cli, &mut files);
    assert!(files.len() > 2, "{files:?}");
    let problems: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            libvirt_calls(&path.display().to_string(), &text)
        })
        .collect();
    assert!(
        problems.is_empty(),
        "qpool would link libvirt (the bridge's work runs in qpoold, src/cli/qpoold.rs):\n{}",
        problems.join("\n")
    );
    // The check catches the calls the CLI made before, and lets the rest of the bridge be.
    for line in [
        "let bridge = crate::bridge::Bridge::connect(settings)?;",
        "use crate::bridge::{Bridge, Settings};",
        "bridge::attach(&registry, settings)",
    ] {
        assert_eq!(libvirt_calls("cli/mod.rs", line).len(), 1, "{line}");
    }
    for line in [
        "Bridge(#[from] crate::bridge::BridgeError),",
        "use crate::bridge::job::{Job, NOT_REFRESHED};",
        "// crate::bridge::Bridge::connect, in qpoold",
    ] {
        assert!(libvirt_calls("cli/mod.rs", line).is_empty(), "{line}");
    }
}

/// The check catches each violation the restructure removed.
#[test]
fn the_check_would_catch_the_old_violations() {
    let cases = [
        (
            "sys",
            "sys.rs",
            "return crate::image::write_zeroes_buffered(file, offset, len);",
        ),
        (
            "pool",
            "pool/registry.rs",
            "log::warn!(\"{}\", crate::cli::one_line(&e));",
        ),
        (
            "rpc",
            "rpc/dispatch.rs",
            "use crate::image::stream::{VolumeReader, VolumeWriter};",
        ),
        (
            "rpc",
            "rpc/dispatch.rs",
            "use crate::image::wipe::WipeAlgorithm;",
        ),
        (
            "rpc",
            "rpc/dispatch.rs",
            "RemoteError::storage(c, f, crate::cli::one_line(x))",
        ),
        (
            "daemon",
            "daemon/mod.rs",
            "eprintln!(\"{}\", crate::cli::one_line(&e));",
        ),
        (
            "cli",
            "cli/output.rs",
            "crate::image::qcow2::Version::V2 => \"0.10\",",
        ),
        (
            "cli",
            "cli/mod.rs",
            "let r = crate::image::stream::VolumeReader::new(f, 0, 0, s);",
        ),
        (
            "xml",
            "xml/volume.rs",
            "use crate::{sys, model::VolFormat};",
        ),
        ("image", "image/mod.rs", "use crate::pool::Pool;"),
    ];
    for (module, file, line) in cases {
        let allow = allowed(module).unwrap();
        assert_eq!(
            violations(module, file, line, &allow).len(),
            1,
            "{file}: {line}"
        );
    }
    let bin = allowed_for_binary("qpoold.rs").unwrap();
    assert_eq!(
        violations("bin", "bin/qpoold.rs", "qpool::cli::init_logging();", &bin).len(),
        1
    );
    // What is allowed stays allowed; comments and crate-root types are not modules.
    let cli = allowed("cli").unwrap();
    assert!(
        violations(
            "cli",
            "cli/mod.rs",
            "use crate::pool::{Pool, ResizeRequest};",
            &cli
        )
        .is_empty()
    );
    assert!(violations("cli", "cli/mod.rs", "// see crate::image::plan", &cli).is_empty());
    assert!(
        violations(
            "cli",
            "cli/mod.rs",
            "crate::daemon::config::load(p, false)",
            &cli
        )
        .is_empty()
    );
    assert_eq!(
        violations("cli", "cli/mod.rs", "crate::daemon::run(&args)", &cli).len(),
        1
    );
    let bridge = allowed("bridge").unwrap();
    assert_eq!(
        violations(
            "bridge",
            "bridge/mod.rs",
            "use crate::sys::statvfs;",
            &bridge
        )
        .len(),
        1
    );
    // The bridge names the libvirt calls of `sys`, and nothing else of it; no other face does.
    assert!(
        violations(
            "bridge",
            "bridge/secrets.rs",
            "crate::sys::libvirt::set_system_token(conn, &token)",
            &bridge
        )
        .is_empty()
    );
    assert_eq!(
        violations(
            "bridge",
            "bridge/secrets.rs",
            "crate::sys::libvirtish::statvfs(fd)",
            &bridge
        )
        .len(),
        1
    );
    assert_eq!(
        violations(
            "cli",
            "cli/mod.rs",
            "crate::sys::libvirt::set_system_token(c, &t)",
            &cli
        )
        .len(),
        1
    );
    assert!(violations("cli", "cli/mod.rs", "Engine(#[from] crate::Error),", &cli).is_empty());
}
