//! Every handler in-process, against a temporary registry: no daemon, no socket. The
//! procedure table's facts, the read-only and before-open rules, and each procedure's typed
//! reply. Here: the fixture, the table, the connection rules and the walk over every
//! procedure; `lifecycle` walks a pool and a volume through their lives.

mod lifecycle;
mod secrets;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use super::*;
use crate::pool::registry::Registry;
use crate::rpc::messages::*;
use crate::rpc::proto::{NonnullSecret, NonnullStoragePool, NonnullStorageVol, codes};
use crate::rpc::xdr::Decoder;

/// A connection with no socket behind it.
#[derive(Default)]
struct FakeConn {
    open: Cell<bool>,
    readonly: Cell<bool>,
    keepalive: Cell<bool>,
    registrations: RefCell<Vec<i32>>,
}

impl Connection for FakeConn {
    fn is_open(&self) -> bool {
        self.open.get()
    }
    fn open(&self, readonly: bool) {
        self.readonly.set(self.readonly.get() || readonly);
        self.open.set(true);
    }
    fn close(&self) {
        self.open.set(false);
    }
    fn is_readonly(&self) -> bool {
        self.readonly.get()
    }
    fn enable_keepalive(&self) {
        self.keepalive.set(true);
    }
    fn register_pool_events(&self, event_id: i32, _: Option<[u8; 16]>) -> i32 {
        let mut r = self.registrations.borrow_mut();
        r.push(event_id);
        i32::try_from(r.len()).unwrap()
    }
    fn deregister_pool_events(&self, id: i32) -> bool {
        usize::try_from(id).is_ok_and(|i| i >= 1 && i <= self.registrations.borrow().len())
    }
}

/// A registry in a temporary directory (its `default` pool active) and an open connection.
struct Fixture {
    _root: tempfile::TempDir,
    registry: Registry,
    conn: FakeConn,
    called: RefCell<BTreeSet<i32>>,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let secrets = crate::pool::SecretStore::open(&root.path().join("secrets")).unwrap();
        let registry = Registry::load_with(
            &root.path().join("defs"),
            &root.path().join("images"),
            crate::model::FallocateMode::default(),
            Some(std::sync::Arc::new(secrets)),
        )
        .unwrap();
        let conn = FakeConn::default();
        conn.open.set(true);
        Fixture {
            _root: root,
            registry,
            conn,
            called: RefCell::new(BTreeSet::new()),
        }
    }

    fn raw_call(&self, number: i32, args: &[u8]) -> Result<Outcome, RemoteError> {
        self.called.borrow_mut().insert(number);
        let ctx = Ctx {
            registry: &self.registry,
            conn: &self.conn,
        };
        let p = procedure(number).unwrap_or_else(|| panic!("procedure {number} is in the table"));
        dispatch(&ctx, p, args)
    }

    /// Calls `number` with typed arguments and decodes the typed reply.
    fn call<A: Xdr, R: Xdr>(&self, number: i32, args: &A) -> Result<R, RemoteError> {
        match self.raw_call(number, &to_bytes(args))? {
            Outcome::Reply(bytes) => {
                let mut d = Decoder::new(&bytes);
                let r = R::decode(&mut d).unwrap();
                assert_eq!(
                    d.remaining(),
                    0,
                    "procedure {number}: the whole reply decodes"
                );
                Ok(r)
            }
            other => panic!("procedure {number}: a reply, not {other:?}"),
        }
    }

    fn pool(&self) -> NonnullStoragePool {
        let r: StoragePoolRet = self
            .call(
                84,
                &StoragePoolLookupByNameArgs {
                    name: "default".into(),
                },
            )
            .unwrap();
        r.pool
    }

    fn create(&self, xml: &str) -> NonnullStorageVol {
        let r: StorageVolRet = self
            .call(
                93,
                &StorageVolCreateXmlArgs {
                    pool: self.pool(),
                    xml: xml.into(),
                    flags: 0,
                },
            )
            .unwrap();
        r.vol
    }
}

fn pool_flags(pool: &NonnullStoragePool, flags: u32) -> StoragePoolFlagsArgs {
    StoragePoolFlagsArgs {
        pool: pool.clone(),
        flags,
    }
}

fn pool_only(pool: &NonnullStoragePool) -> StoragePoolArgs {
    StoragePoolArgs { pool: pool.clone() }
}

fn vol_flags(vol: &NonnullStorageVol, flags: u32) -> StorageVolFlagsArgs {
    StorageVolFlagsArgs {
        vol: vol.clone(),
        flags,
    }
}

fn wipe_pattern(vol: &NonnullStorageVol, algorithm: u32) -> StorageVolWipePatternArgs {
    StorageVolWipePatternArgs {
        vol: vol.clone(),
        algorithm,
        flags: 0,
    }
}

fn resize(vol: &NonnullStorageVol, capacity: u64, flags: u32) -> StorageVolResizeArgs {
    StorageVolResizeArgs {
        vol: vol.clone(),
        capacity,
        flags,
    }
}

fn stream(vol: &NonnullStorageVol) -> StorageVolStreamArgs {
    StorageVolStreamArgs {
        vol: vol.clone(),
        offset: 0,
        length: 0,
        flags: 0,
    }
}

const RAW: &str =
    "<volume><name>v.img</name><capacity>1048576</capacity><allocation>0</allocation></volume>";

#[test]
fn the_table_has_one_row_per_number_and_name() {
    let numbers: BTreeSet<i32> = PROCEDURES.iter().map(|p| p.number).collect();
    let names: BTreeSet<&str> = PROCEDURES.iter().map(|p| p.name).collect();
    assert_eq!(numbers.len(), PROCEDURES.len());
    assert_eq!(names.len(), PROCEDURES.len());
    for p in PROCEDURES {
        assert!(p.api.starts_with("vir"), "{}", p.name);
        if p.name.contains("CREATE") || p.name.contains("DELETE") || p.name.contains("WIPE") {
            assert_eq!(p.access, Access::Change, "{} changes state", p.name);
        }
        if p.name.contains("LOOKUP") || p.name.contains("GET_INFO") {
            assert_eq!(p.access, Access::Query, "{} only asks", p.name);
        }
    }
    // Streams need the reader thread free for their packets.
    for n in [208, 209] {
        assert_eq!(procedure(n).unwrap().runs, Runs::Worker);
    }
    assert!(procedure(9999).is_none());
}

#[test]
fn a_read_only_connection_is_refused_every_change_with_the_api_name() {
    let f = Fixture::new();
    f.conn.readonly.set(true);
    for p in PROCEDURES.iter().filter(|p| p.access == Access::Change) {
        let e = f.raw_call(p.number, &[]).unwrap_err();
        assert_eq!(e.code, codes::OPERATION_DENIED, "{}", p.name);
        assert_eq!(
            e.message,
            format!("operation forbidden: read only access prevents {}", p.api)
        );
    }
    let _: ConnectGetTypeRet = f.call(3, &()).unwrap();
}

#[test]
fn before_open_only_the_handshake_is_answered() {
    let f = Fixture::new();
    f.conn.open.set(false);
    let _: AuthListRet = f.call(66, &()).unwrap();
    let keepalive: ConnectSupportsFeatureRet = f
        .call(
            60,
            &ConnectSupportsFeatureArgs {
                feature: flags::DRV_FEATURE_PROGRAM_KEEPALIVE,
            },
        )
        .unwrap();
    assert_eq!(keepalive.supported, 1);
    assert!(f.conn.keepalive.get());
    let e = f
        .call::<_, ConnectSupportsFeatureRet>(60, &ConnectSupportsFeatureArgs { feature: 14 })
        .unwrap_err();
    assert_eq!(e.message, "internal error: hypervisor connection not open");
    let e = f.call::<_, ConnectGetTypeRet>(3, &()).unwrap_err();
    assert_eq!(e.code, codes::INTERNAL_ERROR);
    f.call::<_, ()>(
        1,
        &ConnectOpenArgs {
            name: Some("storage:///system".into()),
            flags: flags::CONNECT_RO,
        },
    )
    .unwrap();
    assert!(f.conn.open.get() && f.conn.readonly.get());
    let e = f
        .call::<_, ()>(
            1,
            &ConnectOpenArgs {
                name: None,
                flags: 0,
            },
        )
        .unwrap_err();
    assert!(e.message.contains("already open"));
}

#[test]
fn a_short_payload_is_a_decode_error_not_a_lookup() {
    let f = Fixture::new();
    let e = f.raw_call(98, &[0, 0, 0, 1]).unwrap_err();
    assert_eq!(e.code, codes::RPC);
    assert!(e.message.starts_with("Unable to decode message payload"));
}

#[test]
fn connection_queries_answer_as_a_storage_driver() {
    let f = Fixture::new();
    let t: ConnectGetTypeRet = f.call(3, &()).unwrap();
    assert_eq!(t.type_, "storage");
    let v: ConnectGetLibVersionRet = f.call(157, &()).unwrap();
    assert_eq!(v.lib_ver, 9_000_000);
    let _: ConnectGetVersionRet = f.call(4, &()).unwrap();
    let h: ConnectGetHostnameRet = f.call(59, &()).unwrap();
    assert!(!h.hostname.is_empty());
    let u: ConnectGetUriRet = f.call(110, &()).unwrap();
    assert_eq!(u.uri, "storage:///system");
    let s: ConnectIsSecureRet = f.call(149, &()).unwrap();
    assert_eq!(s.secure, 1);
    let c: ConnectGetCapabilitiesRet = f.call(7, &()).unwrap();
    assert!(c.capabilities.contains("<value>dir</value>"));
    let pc: ConnectGetStoragePoolCapabilitiesRet = f
        .call(403, &ConnectGetStoragePoolCapabilitiesArgs { flags: 0 })
        .unwrap();
    assert!(pc.capabilities.contains("qcow2"));
    let e = f
        .call::<_, ConnectGetStoragePoolCapabilitiesRet>(
            403,
            &ConnectGetStoragePoolCapabilitiesArgs { flags: 2 },
        )
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_ARG);
    let e = f
        .call::<_, ()>(203, &ConnectGetSysinfoArgs { flags: 0 })
        .unwrap_err();
    assert_eq!(e.code, codes::NO_SUPPORT);
    let e = f
        .call::<_, ()>(
            75,
            &ConnectFindStoragePoolSourcesArgs {
                type_: "dir".into(),
                src_spec: None,
                flags: 0,
            },
        )
        .unwrap_err();
    assert_eq!(e.code, codes::NO_SUPPORT);
    f.call::<_, ()>(360, &()).unwrap();
    f.call::<_, ()>(361, &()).unwrap();
    let r: ConnectStoragePoolEventRegisterAnyRet = f
        .call(
            368,
            &ConnectStoragePoolEventRegisterAnyArgs {
                event_id: 1,
                pool: None,
            },
        )
        .unwrap();
    f.call::<_, ()>(
        369,
        &ConnectStoragePoolEventDeregisterAnyArgs {
            callback_id: r.callback_id,
        },
    )
    .unwrap();
    let e = f
        .call::<_, ()>(
            369,
            &ConnectStoragePoolEventDeregisterAnyArgs { callback_id: 99 },
        )
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_ARG);
    let e = f
        .call::<_, ConnectStoragePoolEventRegisterAnyRet>(
            368,
            &ConnectStoragePoolEventRegisterAnyArgs {
                event_id: 7,
                pool: None,
            },
        )
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_ARG);
    f.call::<_, ()>(2, &()).unwrap();
    assert!(!f.conn.open.get());
}

/// A private volume secret.
const SECRET: &str = "<secret ephemeral='no' private='yes'>
  <uuid>07070707-0707-0707-0707-070707070707</uuid>
  <usage type='volume'><volume>/p/e.img</volume></usage>
</secret>";

fn secret_handle() -> NonnullSecret {
    NonnullSecret {
        uuid: [7; 16],
        usage_type: 1,
        usage_id: "/p/e.img".into(),
    }
}

/// Every procedure of the table is exercised by one of the tests above; this walk calls each
/// once more and checks none is left out.
#[test]
fn every_procedure_answers_in_process() {
    let f = Fixture::new();
    let pool = f.pool();
    let vol = f.create(RAW);
    let args = |number: i32| -> Vec<u8> {
        match number {
            1 => to_bytes(&ConnectOpenArgs {
                name: None,
                flags: 0,
            }),
            60 => to_bytes(&ConnectSupportsFeatureArgs { feature: 15 }),
            72 | 74 => to_bytes(&ConnectListStoragePoolsArgs { maxnames: 9 }),
            75 => to_bytes(&ConnectFindStoragePoolSourcesArgs {
                type_: "dir".into(),
                src_spec: None,
                flags: 0,
            }),
            76 | 77 => to_bytes(&StoragePoolDefineXmlArgs {
                xml: "<pool type='dir'><name>x</name></pool>".into(),
                flags: 0,
            }),
            78 | 79 | 81 | 83 | 88 => to_bytes(&pool_flags(&pool, 0)),
            80 | 82 | 87 | 89 | 91 | 154 | 155 => to_bytes(&pool_only(&pool)),
            84 => to_bytes(&StoragePoolLookupByNameArgs {
                name: "default".into(),
            }),
            85 => to_bytes(&StoragePoolLookupByUuidArgs { uuid: pool.uuid }),
            86 | 98 | 100 => to_bytes(&StorageVolArgs { vol: vol.clone() }),
            90 => to_bytes(&StoragePoolSetAutostartArgs {
                pool: pool.clone(),
                autostart: 1,
            }),
            92 => to_bytes(&StoragePoolListVolumesArgs {
                pool: pool.clone(),
                maxnames: 9,
            }),
            93 => to_bytes(&StorageVolCreateXmlArgs {
                pool: pool.clone(),
                xml: RAW.replace("v.img", "w.img"),
                flags: 0,
            }),
            94 | 99 | 165 | 378 => to_bytes(&vol_flags(&vol, 0)),
            95 => to_bytes(&StorageVolLookupByNameArgs {
                pool: pool.clone(),
                name: "v.img".into(),
            }),
            96 | 97 | 391 => to_bytes(&vol.key),
            125 => to_bytes(&StorageVolCreateXmlFromArgs {
                pool: pool.clone(),
                xml: RAW.replace("v.img", "c.img"),
                clonevol: vol.clone(),
                flags: 0,
            }),
            203 | 403 => to_bytes(&0u32),
            208 | 209 => to_bytes(&stream(&vol)),
            259 => to_bytes(&wipe_pattern(&vol, 0)),
            260 => to_bytes(&resize(&vol, 4 << 20, 0)),
            281 => to_bytes(&ConnectListAllStoragePoolsArgs {
                need_results: 1,
                flags: 0,
            }),
            282 => to_bytes(&StoragePoolListAllVolumesArgs {
                pool: pool.clone(),
                need_results: 1,
                flags: 0,
            }),
            368 => to_bytes(&ConnectStoragePoolEventRegisterAnyArgs {
                event_id: 0,
                pool: None,
            }),
            369 => to_bytes(&ConnectStoragePoolEventDeregisterAnyArgs { callback_id: 1 }),
            273 => to_bytes(&ConnectListAllDomainsArgs {
                need_results: 1,
                flags: 0,
            }),
            139 => Vec::new(),
            140 => to_bytes(&ConnectListSecretsArgs { maxuuids: 9 }),
            141 => to_bytes(&SecretLookupByUuidArgs { uuid: [7; 16] }),
            142 => to_bytes(&SecretDefineXmlArgs {
                xml: SECRET.into(),
                flags: 0,
            }),
            143 | 145 => to_bytes(&SecretFlagsArgs {
                secret: secret_handle(),
                flags: 0,
            }),
            144 => to_bytes(&SecretSetValueArgs {
                secret: secret_handle(),
                value: SecretValue(zeroize::Zeroizing::new(b"v".to_vec())),
                flags: 0,
            }),
            146 => to_bytes(&SecretUndefineArgs {
                secret: secret_handle(),
            }),
            147 => to_bytes(&SecretLookupByUsageArgs {
                usage_type: 1,
                usage_id: "/p/e.img".into(),
            }),
            287 => to_bytes(&ConnectListAllSecretsArgs {
                need_results: 1,
                flags: 0,
            }),
            419 => to_bytes(&ConnectSetIdentityArgs {
                params: crate::rpc::xdr::BoundedVec(Vec::new()),
                flags: 0,
            }),
            _ => Vec::new(),
        }
    };
    // The calls that end the connection or the pool go last.
    let last = [146, 94, 80, 81, 82, 2];
    let mut order: Vec<i32> = PROCEDURES
        .iter()
        .map(|p| p.number)
        .filter(|n| !last.contains(n))
        .collect();
    order.extend(last);
    for number in order {
        let result = f.raw_call(number, &args(number));
        if let Err(e) = result {
            // A refusal is an answer too, but never a decode error or an unknown procedure.
            assert_ne!(e.code, codes::RPC, "procedure {number}: {}", e.message);
        }
    }
    let called = f.called.borrow();
    let missing: Vec<&str> = PROCEDURES
        .iter()
        .filter(|p| !called.contains(&p.number))
        .map(|p| p.name)
        .collect();
    assert!(missing.is_empty(), "not exercised: {missing:?}");
}
