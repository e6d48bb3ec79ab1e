//! One function per fuzz target: each takes arbitrary bytes and drives one of qpool's
//! parsers or readers with them. A panic, a hang or an overflow is a finding. The same
//! functions replay the saved findings (`fuzz/regressions/TARGET/NAME`) in the normal test
//! suite (`tests/fuzz_regressions.rs`), so every crash found stays a named regression test.

#![forbid(unsafe_code)]

use std::io::Write as _;

use qpool::image::{self, BlockStatus};
use qpool::model::VolFormat;

/// One harness: arbitrary bytes in, a panic on a finding.
pub type Harness = fn(&[u8]);

/// Every target, by name, for the regression runner.
pub const TARGETS: &[(&str, Harness)] = &[
    ("volume_xml", volume_xml),
    ("pool_xml", pool_xml),
    ("secret_xml", secret_xml),
    ("scaled_integer", scaled_integer),
    ("qcow2_read", qcow2_read),
    ("qcow2_gate", qcow2_gate),
    ("rpc_frame", rpc_frame),
    ("rpc_args", rpc_args),
    ("stream_packet", stream_packet),
];

/// libvirt volume XML, and the strict element check of VIR_STORAGE_VOL_CREATE_VALIDATE.
pub fn volume_xml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(def) = qpool::xml::VolumeDef::parse(text) {
            // What parses must also survive the policy.
            let capacity = def.capacity.unwrap_or(0);
            let _ = qpool::policy::decide(
                &def,
                capacity,
                qpool::policy::CreateFlags::default(),
                &qpool::policy::PoolPolicy::default(),
            );
        }
        let _ = qpool::xml::volume::check_known_elements(text);
    }
}

/// libvirt pool XML, and the definition it prints back.
pub fn pool_xml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(def) = qpool::xml::PoolDef::parse(text)
    {
        let again = def.to_xml(&def.uuid.unwrap_or_default());
        assert!(
            qpool::xml::PoolDef::parse(&again).is_ok(),
            "a definition qpool prints parses again: {again}"
        );
    }
}

/// libvirt secret XML (`secret-define`), and the definition it prints back, which must read
/// as the same definition.
pub fn secret_xml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(def) = qpool::xml::SecretDef::parse(text)
    {
        let uuid = def.uuid.unwrap_or_default();
        let again = def.to_xml(&uuid);
        let back = qpool::xml::SecretDef::parse(&again)
            .unwrap_or_else(|e| panic!("a secret qpool prints parses again: {e}: {again}"));
        assert_eq!(back.uuid, Some(uuid), "{again}");
        assert_eq!(back.usage, def.usage, "{again}");
        assert_eq!(
            (back.ephemeral, back.private),
            (def.ephemeral, def.private),
            "{again}"
        );
    }
}

/// Scaled integers: the text before the first NUL is the number, the rest the unit.
pub fn scaled_integer(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let (number, unit) = text.split_once('\0').unwrap_or((text, ""));
        let _ = qpool::units::parse_scaled(number, Some(unit));
        let _ = qpool::units::parse_virsh_size(text);
    }
}

/// Bytes of guest data read at most per input (reads through huge sparse images stop here).
const READ_BUDGET: u64 = 8 << 20;

/// A qcow2 image: probe it, then read every cluster that holds data, as a clone would.
pub fn qcow2_read(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("image.qcow2");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("write the input");
    let _ = image::probe_path(&path);
    let Ok(mut guest) = image::open_guest_image(&path, Some(VolFormat::Qcow2)) else {
        return;
    };
    let size = guest.size();
    let mut at = 0u64;
    let mut budget = READ_BUDGET;
    let mut buf = vec![0u8; 64 << 10];
    while at < size && budget > 0 {
        let Ok((status, len)) = guest.status(at, size - at) else {
            return;
        };
        let len = len.clamp(1, size - at);
        if status == BlockStatus::Data {
            let n = len.min(buf.len() as u64).min(budget);
            let n_usize = usize::try_from(n).unwrap_or(0);
            if guest.read_at(&mut buf[..n_usize], at).is_err() {
                return;
            }
            budget -= n;
        }
        at = at.saturating_add(len);
    }
}

/// The write gate on an arbitrary header: never panics, and refuses what does not decode.
pub fn qcow2_gate(data: &[u8]) {
    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
    if let Ok(header) = image::qcow2::Header::decode(data) {
        let _ = image::qcow2::gate::check_header(&header, len);
        let _ = header.encode();
    }
    let _ = image::qcow2::spec::sniff(data);
}

/// libvirt RPC frames: read messages until the bytes run out or a frame is refused.
pub fn rpc_frame(data: &[u8]) {
    let mut reader = data;
    for _ in 0..64 {
        match qpool::rpc::wire::read_message(&mut reader) {
            Ok(Some(m)) => {
                let again = qpool::rpc::wire::encode(&m.header, &m.payload);
                assert_eq!(&again[4..28].len(), &24);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// The XDR arguments of every procedure: the first byte picks the procedure, the rest is
/// its payload.
pub fn rpc_args(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let table = qpool::rpc::handlers::PROCEDURES;
    let procedure = &table[usize::from(pick) % table.len()];
    let _ = (procedure.decode)(payload);
}

/// Stream packets from a client: the first two bytes choose the message type and status.
pub fn stream_packet(data: &[u8]) {
    let (head, payload) = data.split_at(data.len().min(2));
    let mtype = u32::from(head.first().copied().unwrap_or(0) % 8);
    let status = u32::from(head.get(1).copied().unwrap_or(0) % 4);
    let _ = qpool::rpc::server::streams::StreamPacket::decode(mtype, status, payload.to_vec());
}
