//! The progress bar of every verb that moves data, seen through a real pseudo-terminal
//! (`script` from util-linux): it ends at its total, says what it did, and is nowhere when
//! stderr is a pipe or with `--quiet`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{QPOOL, TempPool, have, run};

/// Runs `qpool --pool-dir POOL ARGS` on a pseudo-terminal (`script`), with fallocate taken
/// away so that reservations are zeros that take time; returns what the terminal showed.
fn on_a_terminal(pool: &TempPool, args: &[&str]) -> String {
    let mut line = format!(
        "QPOOL_NO_FALLOCATE=1 {QPOOL} --pool-dir {}",
        pool.path().display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let log = pool.scratch().join("typescript");
    let out = Command::new("script")
        .args(["-qfec", &line, log.to_str().unwrap()])
        .env_remove("QPOOL_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("script");
    let shown = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "{args:?} on a terminal: {shown}");
    shown
}

/// The last thing the bar drew: the text after the last carriage return or clear.
fn final_bar(shown: &str) -> String {
    shown
        .rsplit(['\r', '\n'])
        .map(|part| {
            part.replace("\x1b[2K", "")
                .replace("\x1b[1A", "")
                .replace("\x1b[1B", "")
        })
        .find(|part| part.contains("] ") && part.contains('/'))
        .unwrap_or_default()
}

fn fill(path: &Path, mib: u64) {
    let out = run(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", path.display()),
            "bs=1M",
            &format!("count={mib}"),
            "conv=notrunc",
            "status=none",
        ],
    );
    assert!(out.status.success());
}

#[test]
fn every_data_moving_verb_shows_a_bar_that_ends_at_its_total() {
    if !have("script") {
        return;
    }
    let pool = TempPool::new();
    let full = pool.write_file(
        "full.xml",
        "<volume><name>full.img</name><capacity unit='M'>96</capacity><target><preallocation xmlns='urn:qpool:volume:1' mode='full'/></target></volume>",
    );
    let convert = pool.write_file(
        "convert.xml",
        "<volume><name>conv.qcow2</name><capacity unit='M'>64</capacity><target><format type='qcow2'/></target></volume>",
    );
    let local = pool.scratch().join("local.bin");
    fill(&local, 32);
    let download = pool.scratch().join("download.bin");
    let steps: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["vol-create".into(), full.display().to_string()],
            "creating full.img",
            "96.00 MiB/96.00 MiB",
        ),
        (
            vec!["vol-create-as".into(), "falloc.img".into(), "64M".into()],
            "creating falloc.img",
            "64.00 MiB/64.00 MiB",
        ),
        (
            vec![
                "vol-resize".into(),
                "falloc.img".into(),
                "96M".into(),
                "--allocate".into(),
            ],
            "resizing falloc.img",
            "32.00 MiB/32.00 MiB",
        ),
        (
            vec!["vol-clone".into(), "falloc.img".into(), "copy.img".into()],
            "copying falloc.img to copy.img",
            "96.00 MiB/96.00 MiB",
        ),
        (
            vec![
                "vol-upload".into(),
                "copy.img".into(),
                local.display().to_string(),
            ],
            "uploading to copy.img",
            "32.00 MiB/32.00 MiB",
        ),
        (
            vec![
                "vol-create-from".into(),
                convert.display().to_string(),
                "copy.img".into(),
            ],
            "copying copy.img to conv.qcow2",
            "/",
        ),
        (
            vec![
                "vol-download".into(),
                "copy.img".into(),
                download.display().to_string(),
            ],
            "downloading copy.img",
            "96.00 MiB/96.00 MiB",
        ),
        (
            vec!["vol-wipe".into(), "copy.img".into()],
            "wiping copy.img",
            "96.00 MiB/96.00 MiB",
        ),
    ];
    for (args, what, end) in steps {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown = on_a_terminal(&pool, &args);
        let last = final_bar(&shown);
        assert!(
            last.contains(what),
            "{args:?}: the bar says what it does: {last:?}"
        );
        assert!(
            last.contains(end),
            "{args:?}: the bar ends at its total: {last:?}"
        );
        assert!(
            last.contains("[==============================]"),
            "{args:?}: {last:?}"
        );
    }
}

#[test]
fn no_bar_on_a_pipe_or_with_quiet() {
    if !have("script") {
        return;
    }
    let pool = TempPool::new();
    let out = pool.qpool_env(
        &["vol-create-as", "p.img", "64M"],
        &[("QPOOL_NO_FALLOCATE", "1")],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b'),
        "no escape codes on a pipe: {stderr:?}"
    );
    assert!(!stderr.contains("MiB/"), "no bar on a pipe: {stderr:?}");
    let shown = on_a_terminal(&pool, &["vol-create-as", "q.img", "64M", "--quiet"]);
    assert!(!shown.contains("MiB/"), "--quiet draws no bar: {shown:?}");
    assert!(shown.contains("Vol q.img created"), "{shown:?}");
    // Work that moves nothing draws nothing either.
    let shown = on_a_terminal(
        &pool,
        &["vol-create-as", "t.img", "64M", "--allocation", "0"],
    );
    assert!(
        !shown.contains("MiB/"),
        "a sparse create has no bar: {shown:?}"
    );
}
