//! Whole user operations through real `virsh`, qpoold against a libvirtd 9.0 peer (storage
//! driver only) in the same run: what an admin would time.
//!
//! 1. `vol-create-as` of a 1 TiB qcow2 with metadata preallocation (libvirtd runs qemu-img);
//! 2. `vol-clone` of a 4 GiB qcow2 holding 1 GiB of data, then `sync`;
//! 3. `pool-refresh` then `vol-list --details` over 10 000 volumes (one virsh process);
//! 4. `vol-download` of a 1 GiB raw volume full of data, then `sync`;
//! 5. qpoold's resident set (`VmRSS` of /proc/PID/status) serving those 10 000 volumes with
//!    100 idle connections open.
//!
//! Targets: qpoold 10×, 2×, 5× and 1× as fast as libvirtd on 1–4; under 64 MiB on 5. Each
//! time is the median of `QPOOL_BENCH_RUNS` (default 3, at least 3) runs, the daemons
//! alternating run by run, with `sync` before every run. Needs root (libvirtd runs in a private
//! mount namespace, as libvirtd-peer.md shows), libvirtd, qemu-img, qemu-io and virsh; about
//! 8 GiB free under `QPOOL_BENCH_DIR` (default: under Cargo's target dir).
//!
//! `cargo bench --bench virsh`; the markdown table goes to stdout. Without `--bench` (as under
//! `cargo test --all-targets`) the binary does nothing.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use virt::connect::Connect;

mod common;

use common::{
    DEFAULT_BASE, Daemon, close, env_u64, libvirtd_available, median, start_libvirtd, start_qpoold,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Volumes of the listing case.
const LIST_VOLUMES: usize = 10_000;
/// Idle connections of the memory case.
const IDLE_CONNECTIONS: usize = 100;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sync() {
    run("sync", &[]);
}

fn virsh(d: &Daemon, args: &[&str]) {
    let mut all = vec!["-q", "-c", d.uri.as_str()];
    all.extend(args);
    run("virsh", &all);
}

/// Times `f` (after a `sync`).
fn timed(f: impl FnOnce()) -> f64 {
    sync();
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// Runs `case` on both daemons alternately, `runs` times each after one untimed warm-up
/// each; returns the medians (qpoold, libvirtd).
fn alternate(daemons: &[&Daemon; 2], runs: usize, case: &dyn Fn(&Daemon) -> f64) -> (f64, f64) {
    for d in daemons {
        case(d);
    }
    let (mut q, mut l) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        q.push(case(daemons[0]));
        l.push(case(daemons[1]));
    }
    (median(q), median(l))
}

/// A qcow2 image of 4 GiB holding 8 extents of 128 MiB of data, made by qemu-img and qemu-io.
fn clone_source(dir: &Path) {
    let path = dir.join("src.qcow2");
    let p = path.to_str().unwrap();
    run("qemu-img", &["create", "-q", "-f", "qcow2", p, "4G"]);
    let mut args = vec!["-f".to_string(), "qcow2".to_string()];
    for i in 0..8u64 {
        args.push("-c".into());
        args.push(format!("write -P 0x{:02x} {} 128M", i + 1, i * 512 * MIB));
    }
    args.push(p.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("qemu-io", &args);
}

/// A raw 1 GiB file full of data.
fn download_source(dir: &Path) {
    let p = dir.join("big.img");
    run(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", p.display()),
            "bs=4M",
            "count=256",
            "status=none",
        ],
    );
}

/// `LIST_VOLUMES` small volumes, half qcow2 made by qemu-img, half raw.
fn many_volumes(dir: &Path) {
    let proto = dir.join("proto.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            proto.to_str().unwrap(),
            "10G",
        ],
    );
    let bytes = std::fs::read(&proto).expect("prototype");
    std::fs::remove_file(&proto).expect("remove the prototype");
    for i in 0..LIST_VOLUMES {
        if i % 2 == 0 {
            std::fs::write(dir.join(format!("v{i:05}.qcow2")), &bytes).expect("qcow2 volume");
        } else {
            let f = std::fs::File::create(dir.join(format!("v{i:05}.img"))).expect("raw volume");
            f.set_len(GIB).expect("raw length");
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn row(case: &str, q: f64, l: f64, target: f64) -> String {
    let ratio = l / q;
    format!(
        "| {case} | {q:.3} s | {l:.3} s | {ratio:.1}× | ≥ {target}× {} |",
        if ratio >= target { "✔" } else { "✘" }
    )
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    if !libvirtd_available() {
        eprintln!("error: this bench needs root and libvirtd (libvirtd-peer.md)");
        return ExitCode::FAILURE;
    }
    let runs = usize::try_from(env_u64("QPOOL_BENCH_RUNS", 3))
        .unwrap_or(3)
        .max(3);
    let base = std::env::var("QPOOL_BENCH_DIR").unwrap_or_else(|_| DEFAULT_BASE.into());
    let work = tempfile::tempdir_in(base).expect("bench directory");
    let q = start_qpoold(work.path());
    let l = start_libvirtd(work.path());
    let daemons = [&q, &l];
    let mut table = vec![
        "| case (through virsh) | qpoold | libvirtd 9.0 | ratio | target |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];

    eprintln!("vol-create-as 1 TiB qcow2, metadata preallocation");
    let create = |d: &Daemon| {
        let t = timed(|| {
            virsh(
                d,
                &[
                    "vol-create-as",
                    "default",
                    "m.qcow2",
                    "1T",
                    "--format",
                    "qcow2",
                    "--allocation",
                    "0",
                    "--prealloc-metadata",
                ],
            )
        });
        virsh(d, &["vol-delete", "--pool", "default", "m.qcow2"]);
        t
    };
    let (cq, cl) = alternate(&daemons, runs, &create);
    table.push(row("`vol-create-as` qcow2 metadata 1 TiB", cq, cl, 10.0));

    eprintln!("vol-clone of a 4 GiB qcow2 holding 1 GiB");
    for d in daemons {
        clone_source(&d.pool_dir);
        virsh(d, &["pool-refresh", "default"]);
    }
    let clone = |d: &Daemon| {
        let t = timed(|| {
            virsh(
                d,
                &["vol-clone", "--pool", "default", "src.qcow2", "dst.qcow2"],
            );
            sync();
        });
        virsh(d, &["vol-delete", "--pool", "default", "dst.qcow2"]);
        t
    };
    let (kq, kl) = alternate(&daemons, runs, &clone);
    table.push(row(
        "`vol-clone` 4 GiB qcow2 with 1 GiB (+ sync)",
        kq,
        kl,
        2.0,
    ));
    for d in daemons {
        virsh(d, &["vol-delete", "--pool", "default", "src.qcow2"]);
    }

    eprintln!("vol-download of 1 GiB");
    for d in daemons {
        download_source(&d.pool_dir);
        virsh(d, &["pool-refresh", "default"]);
    }
    let out = work.path().join("download.bin");
    let download = |d: &Daemon| {
        let _ = std::fs::remove_file(&out);
        let t = timed(|| {
            virsh(
                d,
                &[
                    "vol-download",
                    "--pool",
                    "default",
                    "big.img",
                    out.to_str().unwrap(),
                ],
            );
            sync();
        });
        assert_eq!(std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0), GIB);
        t
    };
    let (dq, dl) = alternate(&daemons, runs, &download);
    table.push(row("`vol-download` 1 GiB (+ sync)", dq, dl, 1.0));
    let _ = std::fs::remove_file(&out);
    for d in daemons {
        virsh(d, &["vol-delete", "--pool", "default", "big.img"]);
    }

    eprintln!("pool-refresh + vol-list --details, {LIST_VOLUMES} volumes");
    for d in daemons {
        many_volumes(&d.pool_dir);
    }
    let list = |d: &Daemon| {
        timed(|| {
            let mut all = vec!["-q", "-c", d.uri.as_str()];
            all.push("pool-refresh default; vol-list default --details");
            let out = Command::new("virsh")
                .args(&all)
                .stdin(Stdio::null())
                .output()
                .expect("virsh");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
            assert!(lines >= LIST_VOLUMES, "{lines} lines listed");
        })
    };
    let (lq, ll) = alternate(&daemons, runs, &list);
    table.push(row(
        &format!("`pool-refresh` + `vol-list --details`, {LIST_VOLUMES} volumes"),
        lq,
        ll,
        5.0,
    ));

    eprintln!("qpoold's resident set with {IDLE_CONNECTIONS} idle connections");
    let conns: Vec<Connect> = (0..IDLE_CONNECTIONS)
        .map(|_| Connect::open(Some(&q.uri)).expect("connect"))
        .collect();
    // Every connection has done its handshake; one listing has walked every volume.
    virsh(&q, &["vol-list", "default", "--details"]);
    let rss = rss_kib(q.child.id());
    for c in conns {
        close(c);
    }
    table.push(format!(
        "| qpoold RSS, {LIST_VOLUMES} volumes, {IDLE_CONNECTIONS} idle connections | {:.1} MiB | — | — | < 64 MiB {} |",
        rss as f64 / 1024.0,
        if rss < 64 * 1024 { "✔" } else { "✘" }
    ));
    for line in table {
        println!("{line}");
    }
    ExitCode::SUCCESS
}
