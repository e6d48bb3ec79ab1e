//! RPC benchmark of `qpoold` against a real libvirtd (storage driver only), on this machine, in
//! the same run, through the same client library (`libvirt.so` via the `virt` crate):
//!
//! 1. `virStorageVolGetInfo` (vol-info) calls per second over one connection;
//! 2. the same over 16 concurrent connections (one thread each);
//! 3. vol-info latency (p50 / p99) on one connection, idle, and on qpoold while another
//!    connection runs a 4 GiB qcow2 create with `full` preallocation.
//!
//! Targets: qpoold at least 2× libvirtd's call rate; p99 under 50 ms during the create.
//!
//! Each rate is the median of `QPOOL_BENCH_ROUNDS` (default 5) rounds of `QPOOL_BENCH_SECONDS`
//! (default 1) seconds, the daemons alternating round by round. The latency under load is the
//! median over 3 creates. libvirtd runs as libvirtd-peer.md describes (root, private mount
//! namespace, private socket); without root or libvirtd the qpoold column is measured alone.
//!
//! Environment: `QPOOL_BENCH_DIR` (default: a directory under Cargo's target dir) holds the
//! pools; it needs 4 GiB free. Progress goes to stderr, the markdown table to stdout. Without
//! `--bench` on the command line (as under `cargo test --all-targets`) the binary does nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

mod common;

use common::{
    DEFAULT_BASE, Daemon, close, env_u64, libvirtd_available, median, start_libvirtd, start_qpoold,
};

const GIB: u64 = 1 << 30;
/// Concurrent connections of the second measurement.
const CONNECTIONS: usize = 16;
/// Size of the `full` create of the third measurement.
const FULL_CREATE: u64 = 4 * GIB;
/// Creates the latency-under-load figure is the median of.
const LOAD_RUNS: usize = 3;
/// Calls of an idle latency sample.
const IDLE_CALLS: usize = 20_000;
/// The volume every vol-info call asks about.
const VOL: &str = "bench.qcow2";

/// A connection and the benchmark volume's handle on it.
fn open(d: &Daemon) -> (Connect, StorageVol) {
    let conn = Connect::open(Some(&d.uri)).unwrap_or_else(|e| panic!("connect {}: {e}", d.name));
    let pool = StoragePool::lookup_by_name(&conn, "default").expect("pool");
    let vol = StorageVol::lookup_by_name(&pool, VOL).expect("volume");
    (conn, vol)
}

fn info(vol: &StorageVol) {
    let i = vol.get_info().expect("vol-info");
    assert_eq!(i.capacity, GIB);
}

/// vol-info calls per second over `connections` connections for `secs` seconds.
fn rate(d: &Daemon, connections: usize, secs: f64) -> f64 {
    let barrier = Arc::new(Barrier::new(connections + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (conn, vol) = open(d);
            let (barrier, stop, total) =
                (Arc::clone(&barrier), Arc::clone(&stop), Arc::clone(&total));
            std::thread::spawn(move || {
                for _ in 0..50 {
                    info(&vol);
                }
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    info(&vol);
                    n += 1;
                }
                total.fetch_add(n, Ordering::SeqCst);
                drop(vol);
                close(conn);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();
    for t in threads {
        t.join().expect("bench thread");
    }
    // The calls that finished after `stop` count against the measured time: close enough at
    // one call per thread.
    count_f64(total.load(Ordering::SeqCst)) / elapsed
}

fn count_f64(n: u64) -> f64 {
    // Counts stay far below 2^53.
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The quantile `permille`/1000 of sorted latencies (nearest rank), in milliseconds.
fn quantile_ms(sorted: &[Duration], permille: usize) -> f64 {
    let last = sorted.len() - 1;
    sorted[(last * permille + 500) / 1000].as_secs_f64() * 1000.0
}

/// p50 and p99 of vol-info latencies, idle, one connection.
fn idle_latency(d: &Daemon) -> (f64, f64) {
    let (conn, vol) = open(d);
    let mut samples = Vec::with_capacity(IDLE_CALLS);
    for _ in 0..IDLE_CALLS {
        let t = Instant::now();
        info(&vol);
        samples.push(t.elapsed());
    }
    drop(vol);
    close(conn);
    samples.sort();
    (quantile_ms(&samples, 500), quantile_ms(&samples, 990))
}

/// One 4 GiB `full` create on one connection while another calls vol-info in a loop:
/// (p50 ms, p99 ms, max ms, calls, create seconds).
fn latency_during_full_create(d: &Daemon, run: usize) -> (f64, f64, f64, usize, f64) {
    let name = format!("full-{run}.qcow2");
    let xml = format!(
        "<volume>\n  <name>{name}</name>\n  <capacity unit='bytes'>{FULL_CREATE}</capacity>\n  <target xmlns:qpool='urn:qpool:volume:1'>\n    <format type='qcow2'/>\n    <qpool:preallocation mode='full'/>\n  </target>\n</volume>\n"
    );
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let creator = {
        let (conn, _) = open(d);
        let done = Arc::clone(&done);
        let started = Arc::clone(&started);
        std::thread::spawn(move || {
            let pool = StoragePool::lookup_by_name(&conn, "default").expect("pool");
            started.wait();
            let t = Instant::now();
            let vol = StorageVol::create_xml(&pool, &xml, 0).expect("full create");
            let secs = t.elapsed().as_secs_f64();
            done.store(true, Ordering::SeqCst);
            vol.delete(0).expect("delete the full volume");
            drop(vol);
            drop(pool);
            close(conn);
            secs
        })
    };
    let (conn, vol) = open(d);
    started.wait();
    let mut samples = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let t = Instant::now();
        info(&vol);
        samples.push(t.elapsed());
    }
    let secs = creator.join().expect("creator thread");
    drop(vol);
    close(conn);
    samples.sort();
    let max = samples.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    (
        quantile_ms(&samples, 500),
        quantile_ms(&samples, 990),
        max,
        samples.len(),
        secs,
    )
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    virt::error::clear_error_callback();
    let rounds = usize::try_from(env_u64("QPOOL_BENCH_ROUNDS", 5).max(1)).unwrap_or(5);
    let secs = f64::from(u32::try_from(env_u64("QPOOL_BENCH_SECONDS", 1).max(1)).unwrap_or(1));
    let base = std::env::var_os("QPOOL_BENCH_DIR")
        .map_or_else(|| PathBuf::from(DEFAULT_BASE), PathBuf::from);
    std::fs::create_dir_all(&base).expect("bench directory");
    let work = base.join(format!("qpool-rpc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("bench work directory");

    let mut daemons = vec![start_qpoold(&work)];
    if libvirtd_available() {
        daemons.push(start_libvirtd(&work));
    } else {
        eprintln!("libvirtd is not available here (needs root and libvirt-daemon): qpoold only");
    }
    for d in &daemons {
        let conn = Connect::open(Some(&d.uri)).expect("connect");
        let pool = StoragePool::lookup_by_name(&conn, "default").expect("pool");
        let xml = format!(
            "<volume><name>{VOL}</name><capacity unit='bytes'>{GIB}</capacity><target><format type='qcow2'/><compat>1.1</compat></target></volume>"
        );
        StorageVol::create_xml(&pool, &xml, 0).expect("benchmark volume");
        drop(pool);
        close(conn);
        eprintln!("{}: pool in {}", d.name, d.pool_dir.display());
    }

    // 1 and 16 connections, alternating daemons round by round.
    let mut rates = vec![(Vec::new(), Vec::new()); daemons.len()];
    for round in 0..rounds {
        for (i, d) in daemons.iter().enumerate() {
            let one = rate(d, 1, secs);
            let many = rate(d, CONNECTIONS, secs);
            eprintln!(
                "round {}/{rounds}: {}: {one:.0} calls/s on 1 connection, {many:.0} on {CONNECTIONS}",
                round + 1,
                d.name
            );
            rates[i].0.push(one);
            rates[i].1.push(many);
        }
    }
    let one: Vec<f64> = rates.iter().map(|r| median(r.0.clone())).collect();
    let many: Vec<f64> = rates.iter().map(|r| median(r.1.clone())).collect();
    let idle: Vec<(f64, f64)> = daemons.iter().map(idle_latency).collect();

    // Latency during 4 GiB full creates on qpoold.
    let mut loaded = Vec::new();
    for run in 0..LOAD_RUNS {
        let r = latency_during_full_create(&daemons[0], run);
        eprintln!(
            "full create {}/{LOAD_RUNS}: {:.1} s, {} vol-info calls meanwhile, p50 {:.3} ms, p99 {:.3} ms, max {:.1} ms",
            run + 1,
            r.4,
            r.3,
            r.0,
            r.1,
            r.2
        );
        loaded.push(r);
    }
    let p50 = median(loaded.iter().map(|r| r.0).collect());
    let p99 = median(loaded.iter().map(|r| r.1).collect());
    let max = median(loaded.iter().map(|r| r.2).collect());
    let calls = median(
        loaded
            .iter()
            .map(|r| count_f64(u64::try_from(r.3).unwrap_or(u64::MAX)))
            .collect(),
    );
    let create_secs = median(loaded.iter().map(|r| r.4).collect());

    let peer = daemons.len() > 1;
    let cell = |v: &[f64], i: usize, fmt: &dyn Fn(f64) -> String| {
        v.get(i).map_or_else(|| "—".to_string(), |x| fmt(*x))
    };
    let calls_fmt = |x: f64| format!("{x:.0}");
    let ratio = |v: &[f64]| {
        if peer {
            format!("{:.2}×", v[0] / v[1])
        } else {
            "—".into()
        }
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "\n## qpoold RPC benchmark (vol-info = virStorageVolGetInfo through libvirt.so; {rounds} rounds × {secs:.0} s, medians; {} cores)\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("| measurement | qpoold | libvirtd 9.0 | qpoold ÷ libvirtd | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| vol-info calls/s, 1 connection | {} | {} | {} | ≥ 2×: {} |",
        cell(&one, 0, &calls_fmt),
        cell(&one, 1, &calls_fmt),
        ratio(&one),
        if peer {
            verdict(one[0] >= 2.0 * one[1])
        } else {
            "n/a"
        }
    );
    println!(
        "| vol-info calls/s, {CONNECTIONS} connections | {} | {} | {} | ≥ 2×: {} |",
        cell(&many, 0, &calls_fmt),
        cell(&many, 1, &calls_fmt),
        ratio(&many),
        if peer {
            verdict(many[0] >= 2.0 * many[1])
        } else {
            "n/a"
        }
    );
    let lat = |i: usize| {
        idle.get(i)
            .map_or_else(|| "—".to_string(), |(a, b)| format!("{a:.3} / {b:.3} ms"))
    };
    println!(
        "| vol-info latency p50 / p99, idle, 1 connection ({IDLE_CALLS} calls) | {} | {} | | |",
        lat(0),
        lat(1)
    );
    println!(
        "| vol-info latency p50 / p99 during a {} GiB `full` qcow2 create on another connection ({LOAD_RUNS} creates of {create_secs:.1} s, {calls:.0} calls each; max {max:.1} ms) | {p50:.3} / {p99:.3} ms | — | | p99 < 50 ms: {} |",
        FULL_CREATE / GIB,
        verdict(p99 < 50.0)
    );

    drop(daemons);
    let _ = std::fs::remove_dir_all(&work);
    ExitCode::SUCCESS
}
