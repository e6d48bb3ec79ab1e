//! `qpoold` on the wire: the byte-exact vectors of libvirt-rpc.md §7 sent through a raw UNIX
//! socket, hostile frames that must end in libvirt's error reply or a closed connection (never
//! a crash), calls before open, streams, read-only refusals, concurrency on one connection,
//! and the process lifecycle (SIGTERM, `--timeout`, a second daemon on the same socket).
//!
//! Each test runs its own daemon on its own temporary socket and pool directory.

mod common;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::alloc_and_size;
use common::daemon::{
    CALL, CONTINUE, Daemon, ERROR, KEEPALIVE, MESSAGE, OK, PoolRef, REMOTE, REPLY, RawConn,
    RemoteError, STREAM, STREAM_HOLE, VolRef, Xdr, call, frame, ping, words,
};

// REMOTE_PROC_* numbers (libvirt-rpc.md §4).
const CONNECT_OPEN: i32 = 1;
const CONNECT_CLOSE: i32 = 2;
const CONNECT_SUPPORTS_FEATURE: i32 = 60;
const AUTH_LIST: i32 = 66;
const POOL_LOOKUP_BY_NAME: i32 = 84;
const POOL_REFRESH: i32 = 83;
const VOL_CREATE_XML: i32 = 93;
const VOL_DELETE: i32 = 94;
const VOL_LOOKUP_BY_NAME: i32 = 95;
const VOL_GET_INFO: i32 = 98;
const VOL_UPLOAD: i32 = 208;
const VOL_DOWNLOAD: i32 = 209;
const LIST_ALL_POOLS: i32 = 281;
const POOL_LIST_ALL_VOLUMES: i32 = 282;
const REGISTER_CLOSE_CALLBACK: i32 = 360;
const UNREGISTER_CLOSE_CALLBACK: i32 = 361;
const POOL_EVENT_REGISTER_ANY: i32 = 368;
const POOL_EVENT_REFRESH: i32 = 373;

/// The pool of the §7 captures: `lv`, UUID 298b18be-8fe0-4134-8044-8b5e03b856c4.
const LV_UUID: &str = "298b18be-8fe0-4134-8044-8b5e03b856c4";

/// A daemon whose only pool is the captured `lv` (autostarted), on `scratch/lvpool`.
fn lv_daemon() -> Daemon {
    Daemon::start_with(&[], |pools| {
        let target = pools.parent().unwrap().join("lvpool");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(
            pools.join("lv.xml"),
            format!(
                "<pool type='dir'>\n  <name>lv</name>\n  <uuid>{LV_UUID}</uuid>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
                target.display()
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink("../lv.xml", pools.join("autostart/lv.xml")).unwrap();
    })
}

fn lv_target(d: &Daemon) -> std::path::PathBuf {
    d.scratch().join("lvpool")
}

/// Sends `bytes` and asserts the next message is exactly `expected`.
fn exchange(c: &mut RawConn, what: &str, bytes: &str, expected: &[u8]) {
    c.send(&words(bytes));
    let got = c.next();
    assert_eq!(
        hex(&got.raw),
        hex(expected),
        "{what}: reply differs from libvirtd's"
    );
}

fn hex(b: &[u8]) -> String {
    b.chunks(4)
        .map(|w| w.iter().map(|x| format!("{x:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A REPLY header (with length word) for `proc_`/`serial`, followed by `payload`.
fn reply_bytes(proc_: i32, serial: u32, status: u32, payload: &[u8]) -> Vec<u8> {
    frame(REMOTE, proc_, REPLY, serial, status, payload)
}

/// After a hostile input: the process lives, and a normal call on a new connection works.
fn assert_serves(d: &mut Daemon, case: &str) {
    assert!(d.is_alive(), "{case}: qpoold died:\n{}", d.log());
    assert!(
        !d.log().contains("panicked"),
        "{case}: a qpoold thread panicked"
    );
    let mut c = d.connect().open();
    let p = c.call_ok(LIST_ALL_POOLS, &Xdr::new().i32(1).u32(0).done());
    let mut r = common::daemon::Rd::new(&p);
    assert!(r.u32() >= 1, "{case}: pool list after the bad input");
}

#[test]
fn handshake_replies_match_libvirtds_bytes() {
    let d = Daemon::start();
    let mut c = d.connect();
    exchange(
        &mut c,
        "AUTH_LIST",
        "0000001c 20008086 00000001 00000042 00000000 00000000 00000000",
        &words("00000024 20008086 00000001 00000042 00000001 00000000 00000000 00000001 00000000"),
    );
    exchange(
        &mut c,
        "SUPPORTS_FEATURE(10) before open",
        "00000020 20008086 00000001 0000003c 00000000 00000001 00000000 0000000a",
        &words("00000020 20008086 00000001 0000003c 00000001 00000001 00000000 00000001"),
    );
    exchange(
        &mut c,
        "CONNECT_OPEN",
        "0000003c 20008086 00000001 00000001 00000000 00000002 00000000 00000001
         00000011 73746f72 6167653a 2f2f2f73 79737465 6d000000 00000000",
        &words("0000001c 20008086 00000001 00000001 00000001 00000002 00000000"),
    );
    // Features 14 and 15 (event callbacks, close callback) are 1, as libvirtd says.
    for (serial, feature) in [(3u32, 14i32), (4, 15)] {
        c.send(&call(
            CONNECT_SUPPORTS_FEATURE,
            serial,
            &Xdr::new().i32(feature).done(),
        ));
        assert_eq!(
            c.next().raw,
            reply_bytes(CONNECT_SUPPORTS_FEATURE, serial, OK, &words("00000001")),
            "feature {feature}"
        );
    }
    exchange(
        &mut c,
        "REGISTER_CLOSE_CALLBACK",
        "0000001c 20008086 00000001 00000168 00000000 00000005 00000000",
        &words("0000001c 20008086 00000001 00000168 00000001 00000005 00000000"),
    );
    exchange(
        &mut c,
        "keepalive PING",
        "0000001c 6b656570 00000001 00000001 00000002 00000000 00000000",
        &words("0000001c 6b656570 00000001 00000002 00000002 00000000 00000000"),
    );
    c.send(&call(UNREGISTER_CLOSE_CALLBACK, 6, &[]));
    assert_eq!(
        c.next().raw,
        reply_bytes(UNREGISTER_CLOSE_CALLBACK, 6, OK, &[])
    );
    c.send(&call(CONNECT_CLOSE, 7, &[]));
    assert_eq!(c.next().raw, reply_bytes(CONNECT_CLOSE, 7, OK, &[]));
}

#[test]
fn pool_and_volume_replies_match_the_captured_vectors() {
    let d = lv_daemon();
    let mut c = d.connect().open();
    exchange(
        &mut c,
        "STORAGE_POOL_LOOKUP_BY_NAME lv",
        "00000024 20008086 00000001 00000054 00000000 00000006 00000000 00000002 6c760000",
        &words(
            "00000034 20008086 00000001 00000054 00000001 00000006 00000000 00000002
             6c760000 298b18be 8fe04134 80448b5e 03b856c4",
        ),
    );
    exchange(
        &mut c,
        "STORAGE_POOL_LOOKUP_BY_NAME nosuchpool",
        "0000002c 20008086 00000001 00000054 00000000 00000006 00000000 0000000a
         6e6f7375 6368706f 6f6c0000",
        &words(
            "000000e8 20008086 00000001 00000054 00000001 00000006 00000001 00000031
             00000012 00000001 00000047 53746f72 61676520 706f6f6c 206e6f74 20666f75
             6e643a20 6e6f2073 746f7261 67652070 6f6f6c20 77697468 206d6174 6368696e
             67206e61 6d652027 6e6f7375 6368706f 6f6c2700 00000002 00000000 00000001
             0000001a 53746f72 61676520 706f6f6c 206e6f74 20666f75 6e643a20 25730000
             00000001 0000002f 6e6f2073 746f7261 67652070 6f6f6c20 77697468 206d6174
             6368696e 67206e61 6d652027 6e6f7375 6368706f 6f6c2700 00000000 ffffffff
             ffffffff 00000000",
        ),
    );
    // The captured vol-create of a 64 MiB qcow2, byte for byte.
    c.send(&words(
        "000000c4 20008086 00000001 0000005d 00000000 00000007 00000000 00000002
         6c760000 298b18be 8fe04134 80448b5e 03b856c4 00000088 3c766f6c 756d653e
         0a20203c 6e616d65 3e727063 70726f62 652d672e 71636f77 323c2f6e 616d653e
         0a20203c 63617061 63697479 20756e69 743d224d 223e3634 3c2f6361 70616369
         74793e0a 20203c74 61726765 743e0a20 2020203c 666f726d 61742074 7970653d
         2271636f 7732222f 3e0a2020 3c2f7461 72676574 3e0a3c2f 766f6c75 6d653e0a
         00000000",
    ));
    // The key is this pool's path instead of /srv/lvpool; the shape is the vector's.
    let path = lv_target(&d).join("rpcprobe-g.qcow2");
    let key = path.display().to_string();
    let vol = VolRef {
        pool: "lv".into(),
        name: "rpcprobe-g.qcow2".into(),
        key: key.clone(),
    };
    assert_eq!(
        hex(&c.next().raw),
        hex(&reply_bytes(
            VOL_CREATE_XML,
            7,
            OK,
            &Xdr::new().vol(&vol).done()
        )),
        "STORAGE_VOL_CREATE_XML reply"
    );
    // GET_INFO (serial 10): type 0 on 4 bytes, capacity 64 MiB, allocation = st_blocks × 512.
    let (allocation, _) = alloc_and_size(&path);
    c.send(&call(VOL_GET_INFO, 10, &Xdr::new().vol(&vol).done()));
    let expected = Xdr::new().u32(0).u64(64 << 20).u64(allocation).done();
    assert_eq!(
        hex(&c.next().raw),
        hex(&reply_bytes(VOL_GET_INFO, 10, OK, &expected)),
        "STORAGE_VOL_GET_INFO reply"
    );
    if allocation == 200_704 {
        // On ext4 the whole reply is the captured one.
        assert_eq!(
            reply_bytes(VOL_GET_INFO, 10, OK, &expected),
            words(
                "00000030 20008086 00000001 00000062 00000001 0000000a 00000000 00000000
                 00000000 04000000 00000000 00031000"
            )
        );
    }
    exchange(
        &mut c,
        "unknown procedure 9999",
        "0000001c 20008086 00000001 0000270f 00000000 00000001 00000000",
        &words(
            "00000088 20008086 00000001 0000270f 00000001 00000001 00000001 00000027
             00000007 00000001 00000017 756e6b6e 6f776e20 70726f63 65647572 653a2039
             39393900 00000002 00000000 00000001 00000002 25730000 00000001 00000017
             756e6b6e 6f776e20 70726f63 65647572 653a2039 39393900 00000000 ffffffff
             ffffffff 00000000",
        ),
    );
}

#[test]
fn refresh_event_reaches_the_registered_callback_in_the_captured_shape() {
    let d = lv_daemon();
    let mut c = d.connect().open();
    // The captured REGISTER_ANY call: eventID 1 (REFRESH), pool lv.
    c.send(&words(
        "0000003c 20008086 00000001 00000170 00000000 00000007 00000000 00000001
         00000001 00000002 6c760000 298b18be 8fe04134 80448b5e 03b856c4",
    ));
    let reply = c.next();
    reply.expect_ok(POOL_EVENT_REGISTER_ANY, 7);
    assert_eq!(reply.raw.len(), 32, "callbackID reply is one int");
    let callback = reply.rd().i32();

    let lv = PoolRef {
        name: "lv".into(),
        uuid: uuid_bytes(LV_UUID),
    };
    c.send(&call(POOL_REFRESH, 8, &Xdr::new().pool(&lv).u32(0).done()));
    // The event and the reply, in either order.
    let (a, b) = (c.next(), c.next());
    let (event, reply) = if a.mtype == MESSAGE { (a, b) } else { (b, a) };
    reply.expect_ok(POOL_REFRESH, 8);
    let mut expected = words(
        "00000038 20008086 00000001 00000175 00000002 00000001 00000000 00000002
         00000002 6c760000 298b18be 8fe04134 80448b5e 03b856c4",
    );
    expected[28..32].copy_from_slice(&callback.to_be_bytes());
    assert_eq!(hex(&event.raw), hex(&expected), "REFRESH event");
    assert_eq!(event.proc_, POOL_EVENT_REFRESH);
}

fn uuid_bytes(s: &str) -> [u8; 16] {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[test]
fn keepalive_ping_is_answered_before_auth_and_between_calls() {
    let d = Daemon::start();
    let mut c = d.connect();
    let pong = words("0000001c 6b656570 00000001 00000002 00000002 00000000 00000000");
    assert_eq!(c.ping(), pong, "before AUTH_LIST");
    let mut c = c.open();
    assert_eq!(c.ping(), pong, "after CONNECT_OPEN");
    c.pool("default");
    assert_eq!(c.ping(), pong, "between calls");
}

#[test]
fn calls_before_open_get_not_open_except_the_prologue() {
    let d = Daemon::start();
    let mut c = d.connect();
    let not_open = |e: &RemoteError, case: &str| {
        assert_eq!(
            (e.code, e.domain, e.message.as_deref()),
            (1, 7, Some("internal error: hypervisor connection not open")),
            "{case}"
        );
    };
    let e = c.call_err(POOL_LOOKUP_BY_NAME, &Xdr::new().string("default").done());
    not_open(&e, "lookup before AUTH_LIST");
    c.call_ok(AUTH_LIST, &[]);
    let e = c.call_err(LIST_ALL_POOLS, &Xdr::new().i32(1).u32(0).done());
    not_open(&e, "list after AUTH_LIST, before CONNECT_OPEN");
    let e = c.call_err(CONNECT_SUPPORTS_FEATURE, &Xdr::new().i32(16).done());
    not_open(&e, "feature 16 before open");
    let e = c.call_err(REGISTER_CLOSE_CALLBACK, &[]);
    not_open(&e, "close callback before open");
    let e = c.call_err(POOL_EVENT_REGISTER_ANY, &Xdr::new().i32(0).u32(0).done());
    not_open(&e, "event registration before open");
    let feature10 = c.call_ok(CONNECT_SUPPORTS_FEATURE, &Xdr::new().i32(10).done());
    assert_eq!(feature10, words("00000001"));
    let mut c = {
        c.call_ok(
            CONNECT_OPEN,
            &Xdr::new()
                .opt_string(Some("storage:///system"))
                .u32(0)
                .done(),
        );
        c
    };
    c.pool("default");
    let e = c.call_err(
        CONNECT_OPEN,
        &Xdr::new()
            .opt_string(Some("storage:///system"))
            .u32(0)
            .done(),
    );
    assert_eq!((e.code, e.domain), (1, 7), "a second CONNECT_OPEN");
    c.call_ok(CONNECT_CLOSE, &[]);
    let e = c.call_err(POOL_LOOKUP_BY_NAME, &Xdr::new().string("default").done());
    not_open(&e, "lookup after CONNECT_CLOSE");
}

/// What a hostile input must lead to.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The daemon closes the connection.
    Closed,
    /// An error reply with this code, domain and message prefix, echoing prog/vers/proc/serial.
    Error(i32, i32, &'static str),
    /// A successful reply.
    Ok,
    /// No answer at all: a PING sent right after gets the next message, a PONG.
    Silence,
}

struct Case {
    name: &'static str,
    /// Open the connection (AUTH_LIST + CONNECT_OPEN) first.
    open: bool,
    bytes: Vec<u8>,
    /// Half-close the socket after sending (truncated messages).
    eof: bool,
    expect: Expect,
}

fn case(name: &'static str, open: bool, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        open,
        bytes,
        eof: false,
        expect,
    }
}

fn bad_payload() -> Expect {
    Expect::Error(39, 7, "Unable to decode message payload")
}

/// A header whose length word says `len`, with the rest of a LOOKUP call after it.
fn with_length(len: u32) -> Vec<u8> {
    let mut b = call(POOL_LOOKUP_BY_NAME, 9, &Xdr::new().string("default").done());
    b[..4].copy_from_slice(&len.to_be_bytes());
    b
}

fn run_case(d: &mut Daemon, c: &Case) {
    let mut conn = if c.open {
        d.connect().open()
    } else {
        d.connect()
    };
    let sent = conn.try_send(&c.bytes);
    if c.eof {
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    }
    match c.expect {
        Expect::Closed => {
            assert!(conn.is_closed(), "{}: the connection stays open", c.name);
        }
        Expect::Error(code, domain, prefix) => {
            assert!(sent, "{}: the daemon closed the connection", c.name);
            let m = conn.next();
            let e = m.error();
            assert_eq!(
                m.raw[4..16],
                c.bytes[4..16],
                "{}: prog/vers/proc echoed",
                c.name
            );
            assert_eq!(m.raw[20..24], c.bytes[20..24], "{}: serial echoed", c.name);
            assert_eq!(
                (e.code, e.domain, e.level),
                (code, domain, 2),
                "{}: {e:?}",
                c.name
            );
            let message = e.message.unwrap_or_default();
            assert!(
                message.starts_with(prefix),
                "{}: message {message:?} does not start with {prefix:?}",
                c.name
            );
        }
        Expect::Ok => {
            assert!(sent, "{}: the daemon closed the connection", c.name);
            let m = conn.next();
            assert_eq!(
                (m.mtype, m.status),
                (REPLY, OK),
                "{}: {m:?} {:?}",
                c.name,
                (m.status == ERROR).then(|| m.error())
            );
        }
        Expect::Silence => {
            assert!(sent, "{}: the daemon closed the connection", c.name);
            // Messages are handled in order, so anything the bad input caused would come
            // before the PONG.
            conn.send(&ping());
            assert_eq!(
                conn.next().raw,
                frame(KEEPALIVE, 2, MESSAGE, 0, OK, &[]),
                "{}: the next message is the PONG",
                c.name
            );
        }
    }
    assert_serves(d, c.name);
}

#[test]
fn bad_frames_get_an_error_or_a_closed_connection_and_the_daemon_serves_on() {
    let mut d = Daemon::start();
    let lookup = |payload: Vec<u8>| call(POOL_LOOKUP_BY_NAME, 9, &payload);
    let mut cases = vec![
        // Length words.
        case("length word 0", false, words("00000000"), Expect::Closed),
        case(
            "length word 4 (no header)",
            false,
            words("00000004"),
            Expect::Closed,
        ),
        case("length word 27", false, with_length(27), Expect::Closed),
        case(
            "length word 32 MiB + 8",
            false,
            with_length((32 << 20) + 8),
            Expect::Closed,
        ),
        case(
            "length word 0xffffffff",
            false,
            with_length(u32::MAX),
            Expect::Closed,
        ),
        case(
            "length word 0x80000000",
            true,
            with_length(0x8000_0000),
            Expect::Closed,
        ),
        // Wrong program or version: libvirtd's "Cannot find program".
        case(
            "unknown program",
            false,
            frame(0x1234_5678, 1, CALL, 3, OK, &[]),
            Expect::Error(39, 7, "Cannot find program 305419896 version 1"),
        ),
        case(
            "remote program version 2",
            true,
            {
                let mut b = call(POOL_LOOKUP_BY_NAME, 4, &Xdr::new().string("default").done());
                b[8..12].copy_from_slice(&2u32.to_be_bytes());
                b
            },
            Expect::Error(39, 7, "Cannot find program 536903814 version 2"),
        ),
        case(
            "keepalive version 2",
            false,
            {
                let mut b = ping();
                b[8..12].copy_from_slice(&2u32.to_be_bytes());
                b
            },
            Expect::Silence,
        ),
        case(
            "keepalive unknown procedure",
            false,
            frame(KEEPALIVE, 7, MESSAGE, 0, OK, &[]),
            Expect::Silence,
        ),
        case(
            "unsolicited PONG",
            true,
            frame(KEEPALIVE, 2, MESSAGE, 0, OK, &[]),
            Expect::Silence,
        ),
        // Bad XDR.
        case("empty lookup payload", true, lookup(vec![]), bad_payload()),
        case(
            "string longer than its payload",
            true,
            lookup(words("00000064 41424344")),
            bad_payload(),
        ),
        case(
            "string length 0xffffffff",
            true,
            lookup(words("ffffffff 41424344")),
            bad_payload(),
        ),
        case(
            "string length 4 MiB + 1",
            true,
            lookup(words("00400001 41424344")),
            bad_payload(),
        ),
        case(
            "string missing its padding",
            true,
            lookup(
                words("00000005 41424344")
                    .into_iter()
                    .chain([0x45])
                    .collect(),
            ),
            bad_payload(),
        ),
        case(
            "string not UTF-8",
            true,
            lookup(words("00000002 fffe0000")),
            bad_payload(),
        ),
        case(
            "open: optional marker 2",
            false,
            call(CONNECT_OPEN, 2, &words("00000002 00000000")),
            bad_payload(),
        ),
        case(
            "open: flags missing",
            false,
            call(CONNECT_OPEN, 2, &Xdr::new().opt_string(None).done()),
            bad_payload(),
        ),
        case(
            "feature: payload missing",
            false,
            call(CONNECT_SUPPORTS_FEATURE, 1, &[]),
            bad_payload(),
        ),
        case(
            "event register: pool marker 7",
            true,
            call(POOL_EVENT_REGISTER_ANY, 5, &words("00000000 00000007")),
            bad_payload(),
        ),
        case(
            "volume create: XML length 5 MiB",
            true,
            call(
                VOL_CREATE_XML,
                5,
                &Xdr::new()
                    .string("default")
                    .fixed(&[0; 16])
                    .u32(5 << 20)
                    .done(),
            ),
            bad_payload(),
        ),
        case(
            "list volumes: handle name length 0x7fffffff",
            true,
            call(POOL_LIST_ALL_VOLUMES, 5, &words("7fffffff 00000000")),
            bad_payload(),
        ),
        // Huge counts where the protocol takes a count.
        case(
            "legacy pool list, maxnames 2^31-1",
            true,
            call(72, 5, &Xdr::new().i32(i32::MAX).done()),
            Expect::Ok,
        ),
        case(
            "legacy pool list, maxnames -1",
            true,
            call(72, 5, &Xdr::new().i32(-1).done()),
            Expect::Ok,
        ),
        case(
            "legacy volume list, maxnames 2^31-1 on no pool",
            true,
            call(
                92,
                5,
                &Xdr::new().string("x").fixed(&[0; 16]).i32(i32::MAX).done(),
            ),
            Expect::Error(49, 18, "Storage pool not found"),
        ),
        case(
            "call with fds, 2^32-1 fds",
            true,
            frame(REMOTE, POOL_LOOKUP_BY_NAME, 4, 5, OK, &words("ffffffff")),
            Expect::Error(39, 7, "unknown procedure"),
        ),
        // Calls before open.
        case(
            "lookup before AUTH_LIST",
            false,
            lookup(Xdr::new().string("default").done()),
            Expect::Error(1, 7, "internal error: hypervisor connection not open"),
        ),
        case(
            "unknown procedure before open",
            false,
            call(9999, 1, &[]),
            Expect::Error(1, 7, "internal error: hypervisor connection not open"),
        ),
        // Stream packets for no stream, and message types a client does not send.
        case(
            "stream data for no stream",
            true,
            frame(REMOTE, VOL_UPLOAD, STREAM, 77, CONTINUE, &[1; 1000]),
            Expect::Silence,
        ),
        case(
            "stream finish for no stream",
            true,
            frame(REMOTE, VOL_UPLOAD, STREAM, 77, OK, &[]),
            Expect::Silence,
        ),
        case(
            "stream abort for no stream",
            true,
            frame(REMOTE, VOL_DOWNLOAD, STREAM, 77, ERROR, &[]),
            Expect::Silence,
        ),
        case(
            "stream hole for no stream",
            true,
            frame(
                REMOTE,
                VOL_UPLOAD,
                STREAM_HOLE,
                77,
                CONTINUE,
                &Xdr::new().u64(1 << 20).u32(0).done(),
            ),
            Expect::Silence,
        ),
        case(
            "short stream hole for no stream",
            true,
            frame(REMOTE, VOL_UPLOAD, STREAM_HOLE, 77, CONTINUE, &[0; 3]),
            Expect::Silence,
        ),
        case(
            "stream data before open",
            false,
            frame(REMOTE, VOL_UPLOAD, STREAM, 0, CONTINUE, &[1; 8]),
            Expect::Silence,
        ),
        case(
            "a reply from the client",
            true,
            frame(REMOTE, POOL_LOOKUP_BY_NAME, REPLY, 5, OK, &[]),
            Expect::Silence,
        ),
        case(
            "an event from the client",
            true,
            frame(REMOTE, POOL_EVENT_REFRESH, MESSAGE, 1, OK, &[0; 8]),
            Expect::Silence,
        ),
        case(
            "message type 99",
            true,
            frame(REMOTE, POOL_LOOKUP_BY_NAME, 99, 5, OK, &[]),
            Expect::Silence,
        ),
    ];
    // Truncated messages: the socket is half-closed inside them.
    for (name, bytes) in [
        ("EOF inside the length word", vec![0, 0]),
        ("EOF inside the header", with_length(36)[..10].to_vec()),
        ("EOF inside the payload", with_length(36)[..30].to_vec()),
        (
            "EOF after a length word of 32 MiB + 4",
            with_length((32 << 20) + 4)[..28].to_vec(),
        ),
    ] {
        cases.push(Case {
            name,
            open: true,
            bytes,
            eof: true,
            expect: Expect::Closed,
        });
    }
    for c in &cases {
        run_case(&mut d, c);
    }
}

#[test]
fn message_of_exactly_the_maximum_length_is_read_and_refused_by_its_payload() {
    let mut d = Daemon::start();
    // Length word 32 MiB + 4: accepted by the framing; its 32 MiB string is over REMOTE_STRING_MAX.
    let payload = Xdr::new().u32((32 << 20) - 4).done();
    let mut bytes = call(POOL_LOOKUP_BY_NAME, 9, &payload);
    bytes.resize((32 << 20) + 4, b'a');
    bytes[..4].copy_from_slice(&(((32u32) << 20) + 4).to_be_bytes());
    let c = case("length word 32 MiB + 4", true, bytes, bad_payload());
    run_case(&mut d, &c);
}

/// Every procedure of the storage subset with a well-formed payload (`pool`/`vol` handles
/// of objects that do not exist), for truncation and garbage.
fn plausible_calls() -> Vec<(i32, Vec<u8>)> {
    let pool = PoolRef {
        name: "nopool".into(),
        uuid: [7; 16],
    };
    let vol = VolRef {
        pool: "nopool".into(),
        name: "novol".into(),
        key: "/nonexistent/novol".into(),
    };
    let p = || Xdr::new().pool(&pool);
    let v = || Xdr::new().vol(&vol);
    vec![
        (
            1,
            Xdr::new()
                .opt_string(Some("storage:///system"))
                .u32(0)
                .done(),
        ),
        (60, Xdr::new().i32(14).done()),
        (72, Xdr::new().i32(10).done()),
        (74, Xdr::new().i32(10).done()),
        (75, Xdr::new().string("dir").opt_string(None).u32(0).done()),
        (
            76,
            Xdr::new()
                .string("<pool type='dir'><name>x</name></pool>")
                .u32(0)
                .done(),
        ),
        (
            77,
            Xdr::new()
                .string("<pool type='dir'><name>x</name></pool>")
                .u32(0)
                .done(),
        ),
        (78, p().u32(0).done()),
        (79, p().u32(0).done()),
        (80, p().done()),
        (81, p().u32(0).done()),
        (82, p().done()),
        (83, p().u32(0).done()),
        (84, Xdr::new().string("nopool").done()),
        (85, Xdr::new().fixed(&[7; 16]).done()),
        (86, v().done()),
        (87, p().done()),
        (88, p().u32(0).done()),
        (89, p().done()),
        (90, p().i32(1).done()),
        (91, p().done()),
        (92, p().i32(10).done()),
        (
            93,
            p().string("<volume><name>n</name><capacity>1</capacity></volume>")
                .u32(0)
                .done(),
        ),
        (94, v().u32(0).done()),
        (95, p().string("novol").done()),
        (96, Xdr::new().string("/nonexistent/novol").done()),
        (97, Xdr::new().string("/nonexistent/novol").done()),
        (98, v().done()),
        (99, v().u32(0).done()),
        (100, v().done()),
        (
            125,
            p().string("<volume><name>n</name></volume>")
                .vol(&vol)
                .u32(0)
                .done(),
        ),
        (154, p().done()),
        (155, p().done()),
        (165, v().u32(0).done()),
        (203, Xdr::new().u32(0).done()),
        (208, v().u64(0).u64(0).u32(0).done()),
        (209, v().u64(0).u64(0).u32(0).done()),
        (259, v().u32(0).u32(0).done()),
        (260, v().u64(1 << 20).u32(0).done()),
        (281, Xdr::new().i32(1).u32(0).done()),
        (282, p().i32(1).u32(0).done()),
        (368, Xdr::new().i32(0).u32(1).pool(&pool).done()),
        (369, Xdr::new().i32(12345).done()),
        (378, v().u32(1).done()),
        (391, Xdr::new().string("/nonexistent").done()),
        (403, Xdr::new().u32(0).done()),
    ]
}

/// A small deterministic generator (xorshift), so garbage is the same on every run.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn next32(&mut self) -> u32 {
        u32::try_from(self.next() >> 32).unwrap()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_be_bytes()[0]).collect()
    }
}

#[test]
fn truncated_and_garbage_payloads_of_every_procedure_get_one_reply_each() {
    let mut d = Daemon::start();
    let mut c = d.connect().open();
    let mut rng = Garbage(0x9e37_79b9_7f4a_7c15);
    let mut variants: Vec<(String, i32, Vec<u8>)> = Vec::new();
    for (proc_, full) in plausible_calls() {
        for len in 0..full.len() {
            variants.push((
                format!("proc {proc_} cut at {len}"),
                proc_,
                full[..len].to_vec(),
            ));
        }
        variants.push((format!("proc {proc_} all 0xff"), proc_, vec![0xff; 64]));
        variants.push((format!("proc {proc_} all zero"), proc_, vec![0; 64]));
        for round in 0..4 {
            let n = (rng.next() % 96) as usize;
            variants.push((format!("proc {proc_} garbage {round}"), proc_, rng.bytes(n)));
        }
    }
    for (name, proc_, payload) in &variants {
        let serial = c.next_serial();
        c.send(&call(*proc_, serial, payload));
        let m = c.reply(serial);
        assert_eq!(m.proc_, *proc_, "{name}");
        if m.status == ERROR {
            let e = m.error();
            assert!(e.code > 0 && e.message.is_some(), "{name}: {e:?}");
        } else {
            assert_eq!(m.status, OK, "{name}");
            // A payload cut short never runs the procedure.
            assert!(
                !name.contains(" cut at "),
                "{name}: a cut payload succeeded"
            );
        }
    }
    assert_serves(&mut d, "garbage payloads");
}

#[test]
fn read_only_socket_refuses_every_mutating_procedure_with_code_29() {
    let d = Daemon::start();
    // A real volume, so that a refusal cannot be a "not found" in disguise.
    let mut rw = d.connect().open();
    let default = rw.pool("default");
    rw.call_ok(
        VOL_CREATE_XML,
        &Xdr::new()
            .pool(&default)
            .string("<volume><name>v.img</name><capacity>1048576</capacity></volume>")
            .u32(0)
            .done(),
    );
    let vol = rw.vol(&default, "v.img");
    let p = || Xdr::new().pool(&default);
    let v = || Xdr::new().vol(&vol);
    let pool_xml = format!(
        "<pool type='dir'><name>p2</name><target><path>{}</path></target></pool>",
        d.scratch().join("p2").display()
    );
    let mutating: Vec<(i32, &str, Vec<u8>)> = vec![
        (
            75,
            "virConnectFindStoragePoolSources",
            Xdr::new().string("dir").opt_string(None).u32(0).done(),
        ),
        (
            76,
            "virStoragePoolCreateXML",
            Xdr::new().string(&pool_xml).u32(0).done(),
        ),
        (
            77,
            "virStoragePoolDefineXML",
            Xdr::new().string(&pool_xml).u32(0).done(),
        ),
        (78, "virStoragePoolCreate", p().u32(0).done()),
        (79, "virStoragePoolBuild", p().u32(0).done()),
        (80, "virStoragePoolDestroy", p().done()),
        (81, "virStoragePoolDelete", p().u32(0).done()),
        (82, "virStoragePoolUndefine", p().done()),
        (83, "virStoragePoolRefresh", p().u32(0).done()),
        (90, "virStoragePoolSetAutostart", p().i32(0).done()),
        (
            93,
            "virStorageVolCreateXML",
            p().string("<volume><name>w.img</name><capacity>1</capacity></volume>")
                .u32(0)
                .done(),
        ),
        (94, "virStorageVolDelete", v().u32(0).done()),
        (
            125,
            "virStorageVolCreateXMLFrom",
            p().string("<volume><name>w.img</name><capacity>1</capacity></volume>")
                .vol(&vol)
                .u32(0)
                .done(),
        ),
        (165, "virStorageVolWipe", v().u32(0).done()),
        (208, "virStorageVolUpload", v().u64(0).u64(0).u32(0).done()),
        (
            209,
            "virStorageVolDownload",
            v().u64(0).u64(0).u32(0).done(),
        ),
        (259, "virStorageVolWipePattern", v().u32(0).u32(0).done()),
        (260, "virStorageVolResize", v().u64(2 << 20).u32(0).done()),
    ];
    let check = |c: &mut RawConn, how: &str| {
        for (proc_, api, payload) in &mutating {
            let e = c.call_err(*proc_, payload);
            assert_eq!(
                e,
                RemoteError {
                    code: 29,
                    domain: 18,
                    message: Some(format!(
                        "operation forbidden: read only access prevents {api}"
                    )),
                    level: 2,
                    str1: Some("operation forbidden: %s".into()),
                    str2: Some(format!("read only access prevents {api}")),
                    str3: None,
                    int1: -1,
                    int2: -1,
                },
                "{how}: proc {proc_}"
            );
        }
        // Queries work.
        let pool = c.pool("default");
        assert_eq!(pool, default, "{how}");
        assert_eq!(c.vol(&pool, "v.img"), vol, "{how}");
        c.call_ok(87, &Xdr::new().pool(&pool).done());
        c.call_ok(88, &Xdr::new().pool(&pool).u32(0).done());
        c.call_ok(98, &Xdr::new().vol(&vol).done());
        c.call_ok(99, &Xdr::new().vol(&vol).u32(0).done());
        c.call_ok(100, &Xdr::new().vol(&vol).done());
        c.call_ok(281, &Xdr::new().i32(1).u32(0).done());
        c.call_ok(282, &Xdr::new().pool(&pool).i32(1).u32(0).done());
        c.call_ok(
            391,
            &Xdr::new()
                .string(&d.pool_dir().display().to_string())
                .done(),
        );
        c.call_ok(403, &Xdr::new().u32(0).done());
        c.call_ok(368, &Xdr::new().i32(0).u32(0).done());
    };
    check(&mut d.connect_ro().open(), "read-only socket");
    check(
        &mut d.connect().open_with(1),
        "VIR_CONNECT_RO on the read-write socket",
    );
    // Nothing changed.
    assert_eq!(alloc_and_size(&d.vol("v.img")).1, 1 << 20);
    assert!(!d.vol("w.img").exists());
    assert!(!d.scratch().join("p2").exists());
}

#[test]
fn upload_and_download_streams_use_libvirts_packets() {
    let d = Daemon::start();
    let mut c = d.connect().open();
    let default = c.pool("default");
    c.call_ok(
        VOL_CREATE_XML,
        &Xdr::new()
            .pool(&default)
            .string("<volume><name>s.img</name><capacity unit='M'>8</capacity><allocation>0</allocation></volume>")
            .u32(0)
            .done(),
    );
    let vol = c.vol(&default, "s.img");
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();

    // Upload: OK reply, CONTINUE packets of at most 262120 bytes, finish, the server's OK.
    let serial = c.next_serial();
    c.send(&call(
        VOL_UPLOAD,
        serial,
        &Xdr::new().vol(&vol).u64(0).u64(0).u32(0).done(),
    ));
    c.reply(serial).expect_ok(VOL_UPLOAD, serial);
    for chunk in data.chunks(262_120) {
        c.send(&frame(REMOTE, VOL_UPLOAD, STREAM, serial, CONTINUE, chunk));
    }
    c.send(&frame(REMOTE, VOL_UPLOAD, STREAM, serial, OK, &[]));
    let done = c.next();
    assert_eq!(
        done.raw,
        frame(REMOTE, VOL_UPLOAD, STREAM, serial, OK, &[]),
        "the server confirms the finish"
    );
    let mut on_disk = vec![0u8; data.len()];
    std::fs::File::open(d.vol("s.img"))
        .unwrap()
        .read_exact_at(&mut on_disk, 0)
        .unwrap();
    assert_eq!(on_disk, data);

    // Download of 700000 bytes: data packets, the empty CONTINUE end marker, finish, OK.
    let serial = c.next_serial();
    c.send(&call(
        VOL_DOWNLOAD,
        serial,
        &Xdr::new().vol(&vol).u64(0).u64(700_000).u32(0).done(),
    ));
    c.reply(serial).expect_ok(VOL_DOWNLOAD, serial);
    let mut got = Vec::new();
    loop {
        let m = c.next();
        assert_eq!(
            (m.proc_, m.mtype, m.serial, m.status),
            (VOL_DOWNLOAD, STREAM, serial, CONTINUE)
        );
        assert!(m.payload.len() <= 262_120, "chunk of {}", m.payload.len());
        if m.payload.is_empty() {
            break;
        }
        got.extend_from_slice(&m.payload);
    }
    assert_eq!(got.len(), 700_000);
    assert_eq!(got[..600_000], data[..]);
    assert!(got[600_000..].iter().all(|&b| b == 0));
    c.send(&frame(REMOTE, VOL_DOWNLOAD, STREAM, serial, OK, &[]));
    assert_eq!(
        c.next().raw,
        frame(REMOTE, VOL_DOWNLOAD, STREAM, serial, OK, &[])
    );

    // Sparse download: the unallocated tail comes as one STREAM_HOLE packet
    // { hyper length; unsigned flags }, 40 bytes in all.
    let serial = c.next_serial();
    c.send(&call(
        VOL_DOWNLOAD,
        serial,
        &Xdr::new().vol(&vol).u64(0).u64(0).u32(1).done(),
    ));
    c.reply(serial).expect_ok(VOL_DOWNLOAD, serial);
    let (mut data_bytes, mut holes) = (0u64, Vec::new());
    loop {
        let m = c.next();
        assert_eq!((m.serial, m.status), (serial, CONTINUE));
        match m.mtype {
            STREAM if m.payload.is_empty() => break,
            STREAM => data_bytes += m.payload.len() as u64,
            STREAM_HOLE => {
                assert_eq!(m.raw.len(), 40, "hole packet");
                let mut r = m.rd();
                holes.push(r.u64());
                assert_eq!(r.u32(), 0, "hole flags");
            }
            other => panic!("unexpected type {other}"),
        }
    }
    assert_eq!(data_bytes + holes.iter().sum::<u64>(), 8 << 20);
    assert!(!holes.is_empty(), "the unallocated tail is a hole");
    c.send(&frame(REMOTE, VOL_DOWNLOAD, STREAM, serial, OK, &[]));
    assert_eq!(
        c.next().raw,
        frame(REMOTE, VOL_DOWNLOAD, STREAM, serial, OK, &[])
    );

    // Client abort in the middle of a download: the server ends with STREAM OK, and the
    // connection stays usable.
    let serial = c.next_serial();
    c.send(&call(
        VOL_DOWNLOAD,
        serial,
        &Xdr::new().vol(&vol).u64(0).u64(0).u32(0).done(),
    ));
    c.reply(serial).expect_ok(VOL_DOWNLOAD, serial);
    let first = c.next();
    assert_eq!((first.mtype, first.status), (STREAM, CONTINUE));
    c.send(&frame(REMOTE, VOL_DOWNLOAD, STREAM, serial, ERROR, &[]));
    loop {
        let m = c.next();
        assert_eq!(
            (m.proc_, m.serial),
            (VOL_DOWNLOAD, serial),
            "only stream packets until the end"
        );
        if m.status == OK {
            assert!(m.payload.is_empty());
            break;
        }
    }
    c.pool("default");

    // A hole packet in an upload extends the volume with zeros.
    let serial = c.next_serial();
    c.send(&call(
        VOL_UPLOAD,
        serial,
        &Xdr::new().vol(&vol).u64(0).u64(0).u32(1).done(),
    ));
    c.reply(serial).expect_ok(VOL_UPLOAD, serial);
    c.send(&frame(
        REMOTE, VOL_UPLOAD, STREAM, serial, CONTINUE, &[5; 4096],
    ));
    c.send(&frame(
        REMOTE,
        VOL_UPLOAD,
        STREAM_HOLE,
        serial,
        CONTINUE,
        &Xdr::new().u64(12 << 20).u32(0).done(),
    ));
    c.send(&frame(REMOTE, VOL_UPLOAD, STREAM, serial, OK, &[]));
    assert_eq!(
        c.next().raw,
        frame(REMOTE, VOL_UPLOAD, STREAM, serial, OK, &[])
    );
    let (_, size) = alloc_and_size(&d.vol("s.img"));
    assert_eq!(size, 4096 + (12 << 20));
}

#[test]
fn hostile_stream_packets_end_the_stream_not_the_daemon() {
    let mut d = Daemon::start();
    let mut c = d.connect().open();
    let default = c.pool("default");
    c.call_ok(
        VOL_CREATE_XML,
        &Xdr::new()
            .pool(&default)
            .string("<volume><name>h.img</name><capacity>1048576</capacity></volume>")
            .u32(0)
            .done(),
    );
    let vol = c.vol(&default, "h.img");
    // Holes of absurd lengths, a negative one, and a hole past a bounded upload's end.
    for (name, length, holes) in [
        (
            "hole of 2^63-1 twice",
            0u64,
            vec![i64::MAX as u64, i64::MAX as u64],
        ),
        ("negative hole", 0, vec![u64::MAX]),
        ("hole past the requested length", 4096, vec![8192]),
    ] {
        let serial = c.next_serial();
        c.send(&call(
            VOL_UPLOAD,
            serial,
            &Xdr::new().vol(&vol).u64(0).u64(length).u32(1).done(),
        ));
        c.reply(serial).expect_ok(VOL_UPLOAD, serial);
        for h in holes {
            c.send(&frame(
                REMOTE,
                VOL_UPLOAD,
                STREAM_HOLE,
                serial,
                CONTINUE,
                &Xdr::new().u64(h).u32(0).done(),
            ));
        }
        c.send(&frame(REMOTE, VOL_UPLOAD, STREAM, serial, OK, &[]));
        let m = c.next();
        assert_eq!(
            (m.proc_, m.mtype, m.serial),
            (VOL_UPLOAD, STREAM, serial),
            "{name}"
        );
        if m.status == ERROR {
            // The error names the volume being streamed.
            let e = m.error();
            assert!(
                e.message
                    .as_deref()
                    .is_some_and(|t| t.contains("volume 'h.img'")),
                "{name}: {e:?}"
            );
        } else {
            assert_eq!(m.status, OK, "{name}");
        }
        // Whatever the stream's fate, the connection answers.
        assert_eq!(c.ping().len(), 28, "{name}");
    }
    // A connection that vanishes in the middle of an upload.
    let mut gone = d.connect().open();
    let serial = gone.next_serial();
    gone.send(&call(
        VOL_UPLOAD,
        serial,
        &Xdr::new().vol(&vol).u64(0).u64(0).u32(0).done(),
    ));
    gone.reply(serial).expect_ok(VOL_UPLOAD, serial);
    gone.send(&frame(
        REMOTE, VOL_UPLOAD, STREAM, serial, CONTINUE, &[1; 100],
    ));
    drop(gone);
    assert_serves(&mut d, "hostile stream packets");
    // The volume can be used again.
    c.call_ok(VOL_GET_INFO, &Xdr::new().vol(&vol).done());
}

#[test]
fn long_create_does_not_block_other_calls_on_the_same_connection() {
    let d = Daemon::start();
    let mut c = d.connect().open();
    let default = c.pool("default");
    // ~2 GiB written in full: seconds of work in one worker thread.
    let xml = "<volume><name>big.img</name><capacity unit='G'>2</capacity><target><format type='raw'/>\
               <qpool:preallocation xmlns:qpool='urn:qpool:volume:1' mode='full'/></target></volume>";
    let create = c.next_serial();
    c.send(&call(
        VOL_CREATE_XML,
        create,
        &Xdr::new().pool(&default).string(xml).u32(0).done(),
    ));
    // Each of these replies must come before the create's: `reply` panics on a REPLY to
    // another serial, so the create finishing first fails the test.
    let not_first = |m: &common::daemon::Msg, what: &str| {
        assert_ne!(m.serial, create, "{what}: the create finished first");
    };
    // Wait until the volume is visible as being built (it is registered by the worker).
    let vol = loop {
        let serial = c.next_serial();
        c.send(&call(
            VOL_LOOKUP_BY_NAME,
            serial,
            &Xdr::new().pool(&default).string("big.img").done(),
        ));
        let m = c.next();
        not_first(&m, "lookup");
        if m.status == OK {
            break m.rd().vol();
        }
        assert_eq!(m.error().code, 50, "no such volume yet");
    };
    let serial = c.next_serial();
    c.send(&call(VOL_GET_INFO, serial, &Xdr::new().vol(&vol).done()));
    let m = c.next();
    not_first(&m, "get info");
    m.expect_ok(VOL_GET_INFO, serial);
    let mut r = m.rd();
    assert_eq!(
        (r.u32(), r.u64()),
        (0, 2 << 30),
        "type and capacity while building"
    );
    assert!(
        r.u64() <= (2 << 30) + (1 << 20),
        "allocation while building"
    );

    let serial = c.next_serial();
    c.send(&call(
        VOL_DELETE,
        serial,
        &Xdr::new().vol(&vol).u32(0).done(),
    ));
    let m = c.next();
    not_first(&m, "delete");
    let e = m.error();
    assert_eq!(
        (e.code, e.message.as_deref()),
        (
            55,
            Some("Requested operation is not valid: volume 'big.img' is still being allocated.")
        )
    );

    c.send(&ping());
    let m = c.next();
    assert_eq!(
        m.raw,
        words("0000001c 6b656570 00000001 00000002 00000002 00000000 00000000"),
        "PONG before the create's reply"
    );

    // Now the create's reply, and the full allocation.
    let m = c.next();
    m.expect_ok(VOL_CREATE_XML, create);
    let (allocated, size) = alloc_and_size(&d.vol("big.img"));
    assert_eq!(size, 2 << 30);
    assert!(allocated >= 2 << 30, "full preallocation: {allocated}");
}

#[test]
fn sigterm_removes_both_sockets_and_exits_zero() {
    let mut d = Daemon::start();
    let idle = d.connect().open();
    let status = d.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(!d.socket.exists(), "read-write socket left behind");
    assert!(!d.socket_ro.exists(), "read-only socket left behind");
    drop(idle);
}

#[test]
fn idle_timeout_exits_and_removes_both_sockets() {
    let d = Daemon::unstarted(&["--timeout", "1"]);
    std::fs::create_dir_all(&d.pools).unwrap();
    // Not `spawn`: the daemon may be gone before a readiness probe connects.
    let child = d
        .command()
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child);
    assert!(out.status.success(), "exit status {}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("idle for 1 s: exiting"), "log: {log}");
    assert!(
        !d.socket.exists() && !d.socket_ro.exists(),
        "sockets left behind"
    );
    // The default pool was set up before it went idle.
    assert!(d.pools.join("default.xml").exists());
    assert!(d.pool_dir().is_dir());
}

fn wait_output(child: std::process::Child) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child; no memory effects here.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("qpoold did not exit");
        }
    }
}

#[test]
fn second_daemon_on_a_live_socket_refuses_to_start() {
    let mut first = Daemon::start();
    let second = first
        .command()
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(second);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "another daemon is listening on {}",
            first.socket.display()
        )),
        "stderr: {err}"
    );
    first.assert_alive();
    assert_serves(&mut first, "after a second daemon tried");
}

#[test]
fn stale_socket_files_are_replaced() {
    let mut d = Daemon::unstarted(&[]);
    std::fs::create_dir_all(&d.pools).unwrap();
    // Sockets nobody listens on, as a killed daemon leaves them.
    drop(std::os::unix::net::UnixListener::bind(&d.socket).unwrap());
    drop(std::os::unix::net::UnixListener::bind(&d.socket_ro).unwrap());
    d.spawn();
    assert_serves(&mut d, "stale sockets");
}

#[test]
fn pools_resolve_by_uuid_and_volumes_by_pool_and_name() {
    let d = lv_daemon();
    let mut c = d.connect().open();
    let lv = c.pool("lv");
    // GET_INFO (87) with the right UUID and a bogus name succeeds.
    let bogus_name = PoolRef {
        name: "bogus".into(),
        uuid: lv.uuid,
    };
    let info = c.call_ok(87, &Xdr::new().pool(&bogus_name).done());
    assert_eq!(common::daemon::Rd::new(&info).u32(), 2, "running");
    // A bogus UUID fails, naming the UUID and the handle's name.
    let bogus_uuid = PoolRef {
        name: "lv".into(),
        uuid: [0; 16],
    };
    let e = c.call_err(87, &Xdr::new().pool(&bogus_uuid).done());
    assert_eq!(
        (e.code, e.domain, e.message.as_deref()),
        (
            49,
            18,
            Some(
                "Storage pool not found: no storage pool with matching uuid '00000000-0000-0000-0000-000000000000' (lv)"
            )
        )
    );
    c.call_ok(
        VOL_CREATE_XML,
        &Xdr::new()
            .pool(&lv)
            .string("<volume><name>v.img</name><capacity>4096</capacity></volume>")
            .u32(0)
            .done(),
    );
    // A volume handle with a bogus key still names the volume.
    let vol = VolRef {
        pool: "lv".into(),
        name: "v.img".into(),
        key: "bogus".into(),
    };
    let info = c.call_ok(VOL_GET_INFO, &Xdr::new().vol(&vol).done());
    let mut r = common::daemon::Rd::new(&info);
    assert_eq!((r.u32(), r.u64()), (0, 4096));
    let e = c.call_err(
        VOL_GET_INFO,
        &Xdr::new()
            .vol(&VolRef {
                name: "nosuchvol".into(),
                ..vol.clone()
            })
            .done(),
    );
    assert_eq!(
        (e.code, e.message.as_deref()),
        (
            50,
            Some("Storage volume not found: no storage vol with matching name 'nosuchvol'")
        )
    );
    // Key and path lookups give the same handle, with the absolute path as the key.
    let key = lv_target(&d).join("v.img").display().to_string();
    for proc_ in [96, 97] {
        let h = c.call_ok(proc_, &Xdr::new().string(&key).done());
        assert_eq!(
            common::daemon::Rd::new(&h).vol(),
            VolRef {
                pool: "lv".into(),
                name: "v.img".into(),
                key: key.clone(),
            },
            "proc {proc_}"
        );
    }
    let e = c.call_err(96, &Xdr::new().string("/nonexistent/x").done());
    assert_eq!(
        e.message.as_deref(),
        Some("Storage volume not found: no storage vol with matching key /nonexistent/x")
    );
}

#[test]
fn server_pings_a_client_that_asked_for_keepalive() {
    let d = Daemon::start();
    let mut c = d.connect();
    c.call_ok(AUTH_LIST, &[]);
    c.call_ok(CONNECT_SUPPORTS_FEATURE, &Xdr::new().i32(10).done());
    let mut c = {
        c.call_ok(
            CONNECT_OPEN,
            &Xdr::new()
                .opt_string(Some("storage:///system"))
                .u32(0)
                .done(),
        );
        c
    };
    // Idle now: the next message is the server's PING (libvirt-rpc.md §2.4), same bytes
    // as a client's.
    let m = c.next();
    assert_eq!(
        m.raw,
        words("0000001c 6b656570 00000001 00000001 00000002 00000000 00000000")
    );
    c.send(&frame(KEEPALIVE, 2, MESSAGE, 0, OK, &[]));
    c.pool("default");
}

#[test]
fn random_flags_and_sizes_on_real_objects_get_one_reply_each() {
    let mut d = Daemon::start();
    let mut c = d.connect().open();
    let pool = c.pool("default");
    c.call_ok(
        VOL_CREATE_XML,
        &Xdr::new()
            .pool(&pool)
            .string("<volume><name>src.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/></target></volume>")
            .u32(0)
            .done(),
    );
    let src = c.vol(&pool, "src.qcow2");
    let mut rng = Garbage(0x2545_f491_4f6c_dd1d);
    for round in 0..300u32 {
        let r32 = rng.next32();
        let small = rng.next() % (8 << 20);
        let (proc_, payload) = match round % 13 {
            0 => (72, Xdr::new().u32(r32).done()),
            1 => (74, Xdr::new().u32(r32).done()),
            2 => (281, Xdr::new().u32(r32).u32(rng.next32()).done()),
            3 => (282, Xdr::new().pool(&pool).u32(r32).u32(rng.next32() & 1).done()),
            4 => (92, Xdr::new().pool(&pool).u32(r32).done()),
            5 => (88, Xdr::new().pool(&pool).u32(r32).done()),
            6 => (99, Xdr::new().vol(&src).u32(r32).done()),
            7 => (378, Xdr::new().vol(&src).u32(r32).done()),
            8 => (403, Xdr::new().u32(r32).done()),
            9 => (
                93,
                Xdr::new()
                    .pool(&pool)
                    .string(&format!(
                        "<volume><name>n{round}.img</name><capacity>{small}</capacity><allocation>{}</allocation></volume>",
                        small / 2
                    ))
                    .u32(r32 & 0xff)
                    .done(),
            ),
            10 => (
                125,
                Xdr::new()
                    .pool(&pool)
                    .string(&format!("<volume><name>c{round}.qcow2</name><capacity>{small}</capacity><target><format type='qcow2'/></target></volume>"))
                    .vol(&src)
                    .u32(r32 & 0xff)
                    .done(),
            ),
            11 => (259, Xdr::new().vol(&src).u32(r32 % 12).u32(r32 & 0x10).done()),
            _ => (260, Xdr::new().vol(&src).u64(small).u32(r32 & 0xf).done()),
        };
        let serial = c.next_serial();
        c.send(&call(proc_, serial, &payload));
        let m = c.reply(serial);
        assert_eq!(m.proc_, proc_, "round {round}");
        if m.status == ERROR {
            let e = m.error();
            assert!(
                e.code > 0 && e.message.is_some(),
                "round {round} proc {proc_}: {e:?}"
            );
        } else {
            assert_eq!(m.status, OK, "round {round} proc {proc_}");
        }
    }
    assert_serves(&mut d, "random flags and sizes");
    if common::have("qemu-img") {
        common::assert_check_clean(&d.vol("src.qcow2"));
    }
}

#[test]
fn a_client_that_never_reads_its_events_blocks_nobody() {
    let mut d = Daemon::start();
    // Registered for every pool's REFRESH event, and never reading again.
    let mut deaf = d.connect().open();
    deaf.call_ok(POOL_EVENT_REGISTER_ANY, &Xdr::new().i32(1).u32(0).done());
    let mut c = d.connect().open();
    let default = c.pool("default");
    // Far more events than a socket buffer holds (each is a 56-byte message).
    for i in 0..20_000 {
        let serial = c.next_serial();
        c.send(&call(
            POOL_REFRESH,
            serial,
            &Xdr::new().pool(&default).u32(0).done(),
        ));
        let m = c.reply(serial);
        assert_eq!((m.status, m.serial), (OK, serial), "refresh {i}");
    }
    assert_serves(&mut d, "deaf event client");
    // Past 10000 unread messages the daemon hung up on the deaf client: what it can still
    // read is some of its events, then the end.
    let mut events = 0;
    while let Some(m) = deaf.recv() {
        assert_eq!((m.mtype, m.proc_), (MESSAGE, POOL_EVENT_REFRESH));
        events += 1;
    }
    assert!(events < 20_000, "{events} events");
    assert!(d.log().contains("messages queued and not read; closing it"));
}

#[test]
fn sigterm_lets_a_running_create_finish_and_answer() {
    let mut d = Daemon::start();
    let mut c = d.connect().open();
    let default = c.pool("default");
    let xml = "<volume><name>late.img</name><capacity unit='G'>1</capacity><target><format type='raw'/>\
               <qpool:preallocation xmlns:qpool='urn:qpool:volume:1' mode='full'/></target></volume>";
    let create = c.next_serial();
    c.send(&call(
        VOL_CREATE_XML,
        create,
        &Xdr::new().pool(&default).string(xml).u32(0).done(),
    ));
    // Once the create is running (the volume is visible), ask the daemon to stop.
    let mut probe = d.connect().open();
    loop {
        let m = probe.call(
            VOL_LOOKUP_BY_NAME,
            &Xdr::new().pool(&default).string("late.img").done(),
        );
        if m.status == OK {
            break;
        }
    }
    d.signal(libc::SIGTERM);
    // The running call still finishes and answers; then the process exits 0, sockets gone.
    let m = c.next();
    m.expect_ok(VOL_CREATE_XML, create);
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists() && !d.socket_ro.exists());
    assert_eq!(alloc_and_size(&d.vol("late.img")).1, 1 << 30);
}
