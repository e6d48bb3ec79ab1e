//! Load and soak: 64 clients × 1000 mixed calls at once over both sockets (lookups, info,
//! listings, creates and deletes of small volumes, downloads, keepalive pings), while a
//! sampler reads qpoold's resident set and thread count from /proc. Nothing may be lost,
//! no reply may be an error other than the ones the call can expect, and the daemon's size
//! stays bounded. The peaks are printed (README, "Guarantees", quotes them).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::daemon::{
    CONTINUE, Daemon, OK, REMOTE, RawConn, Rd, STREAM, STREAM_HOLE, Xdr, call, frame,
};

const CLIENTS: usize = 64;
const CALLS: usize = 1000;

/// Bounds the daemon's footprint must stay within under this load.
const MAX_RSS_KIB: u64 = 256 << 10;
const MAX_THREADS: u64 = 64 * 4 + 32;

const POOL_LOOKUP_BY_NAME: i32 = 84;
const VOL_CREATE_XML: i32 = 93;
const VOL_DELETE: i32 = 94;
const VOL_LOOKUP_BY_NAME: i32 = 95;
const VOL_GET_INFO: i32 = 98;
const VOL_DOWNLOAD: i32 = 209;
const POOL_LIST_ALL_VOLUMES: i32 = 282;
const POOL_GET_INFO: i32 = 87;

/// `VmRSS` (KiB) and `Threads` of a process.
fn footprint(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

/// Downloads a whole volume through a stream; returns its bytes.
fn download(c: &mut RawConn, vol: &common::daemon::VolRef) -> u64 {
    let serial = c.next_serial();
    c.send(&call(
        VOL_DOWNLOAD,
        serial,
        &Xdr::new().vol(vol).u64(0).u64(0).u32(1).done(),
    ));
    c.reply(serial).expect_ok(VOL_DOWNLOAD, serial);
    let mut bytes = 0u64;
    loop {
        let m = c.next();
        if m.prog != REMOTE {
            continue; // a server PING: `reply` answers those; none comes mid-stream here
        }
        assert_eq!((m.serial, m.status), (serial, CONTINUE), "{m:?}");
        match m.mtype {
            STREAM if m.payload.is_empty() => break,
            STREAM => bytes += m.payload.len() as u64,
            STREAM_HOLE => bytes += Rd::new(&m.payload).u64(),
            other => panic!("unexpected message type {other}"),
        }
    }
    c.send(&frame(REMOTE, VOL_DOWNLOAD, STREAM, serial, OK, &[]));
    let end = c.next();
    assert_eq!((end.mtype, end.status), (STREAM, OK));
    bytes
}

fn vol_xml(name: &str) -> String {
    format!(
        "<volume><name>{name}</name><capacity>65536</capacity><allocation>0</allocation></volume>"
    )
}

#[test]
fn sixty_four_clients_of_a_thousand_mixed_calls_lose_nothing() {
    let d = Daemon::start();
    {
        let mut c = RawConn::connect(&d.socket).open();
        let pool = c.pool("default");
        c.call_ok(
            VOL_CREATE_XML,
            &Xdr::new()
                .pool(&pool)
                .string(&vol_xml("shared.img"))
                .u32(0)
                .done(),
        );
    }
    let pid = d.pid();
    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let peak_threads = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, rss, threads) = (done.clone(), peak_rss.clone(), peak_threads.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some((r, t)) = footprint(pid) {
                    rss.fetch_max(r, Ordering::SeqCst);
                    threads.fetch_max(t, Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let kept = Arc::new(Mutex::new(BTreeSet::new()));
    let deleted = Arc::new(Mutex::new(BTreeSet::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (socket, socket_ro) = (d.socket.clone(), d.socket_ro.clone());
            let (kept, deleted) = (kept.clone(), deleted.clone());
            std::thread::spawn(move || {
                // Every fourth client is read-only; the others change things too.
                let readonly = k % 4 == 3;
                let mut c = RawConn::connect(if readonly { &socket_ro } else { &socket }).open();
                let pool = c.pool("default");
                let shared = c.vol(&pool, "shared.img");
                let mut mine: Option<String> = None;
                for i in 0..CALLS {
                    let op = i % 10;
                    if op == 0 {
                        c.ping();
                    } else if op == 1 {
                        c.call_ok(POOL_LOOKUP_BY_NAME, &Xdr::new().string("default").done());
                    } else if op == 2 {
                        c.call_ok(VOL_GET_INFO, &Xdr::new().vol(&shared).done());
                    } else if op == 3 {
                        c.call_ok(
                            POOL_LIST_ALL_VOLUMES,
                            &Xdr::new().pool(&pool).i32(1).u32(0).done(),
                        );
                    } else if op == 4 {
                        c.call_ok(POOL_GET_INFO, &Xdr::new().pool(&pool).done());
                    } else if op == 5 && !readonly && i % 200 == 5 {
                        assert_eq!(download(&mut c, &shared), 65536);
                    } else if op == 6 && readonly {
                        // Read-only: the change is refused with code 29, nothing else.
                        let e = c.call_err(
                            VOL_CREATE_XML,
                            &Xdr::new()
                                .pool(&pool)
                                .string(&vol_xml("x.img"))
                                .u32(0)
                                .done(),
                        );
                        assert_eq!(e.code, 29, "{e:?}");
                    } else if op == 6 {
                        let name = format!("c{k}-{i}.img");
                        c.call_ok(
                            VOL_CREATE_XML,
                            &Xdr::new().pool(&pool).string(&vol_xml(&name)).u32(0).done(),
                        );
                        if let Some(old) = mine.replace(name) {
                            kept.lock().unwrap().insert(old);
                        }
                    } else if op == 8 && !readonly && i % 20 == 8 {
                        if let Some(name) = mine.take() {
                            let v = c.vol(&pool, &name);
                            c.call_ok(VOL_DELETE, &Xdr::new().vol(&v).u32(0).done());
                            deleted.lock().unwrap().insert(name);
                        }
                    } else {
                        c.call_ok(
                            VOL_LOOKUP_BY_NAME,
                            &Xdr::new().pool(&pool).string("shared.img").done(),
                        );
                    }
                }
                if let Some(name) = mine {
                    kept.lock().unwrap().insert(name);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let (rss, threads) = (
        peak_rss.load(Ordering::SeqCst),
        peak_threads.load(Ordering::SeqCst),
    );
    eprintln!(
        "soak: {CLIENTS} clients x {CALLS} calls; qpoold peak RSS {rss} KiB, peak threads {threads}"
    );
    assert!(rss > 0 && rss < MAX_RSS_KIB, "peak RSS {rss} KiB");
    assert!(
        threads > 0 && threads < MAX_THREADS,
        "peak threads {threads}"
    );
    // Nothing lost: every kept volume is there and whole, every deleted one gone.
    let kept = kept.lock().unwrap();
    let deleted = deleted.lock().unwrap();
    assert!(kept.len() > 1000, "{} volumes kept", kept.len());
    for name in kept.iter() {
        let meta = std::fs::metadata(d.vol(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(meta.len(), 65536, "{name}");
    }
    for name in deleted.iter() {
        assert!(!d.vol(name).exists(), "{name} was deleted");
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.pool_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".qpool-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The daemon still answers, and its thread count has come back down.
    let mut c = RawConn::connect(&d.socket).open();
    c.ping();
    let pool = c.pool("default");
    let listed = c.call_ok(
        POOL_LIST_ALL_VOLUMES,
        &Xdr::new().pool(&pool).i32(0).u32(0).done(),
    );
    let count = Rd::new(&listed[4..]).u32();
    assert_eq!(
        count as usize,
        kept.len() + 1,
        "every kept volume and the shared one"
    );
}
