//! Every handler in-process, against a temporary registry: no daemon, no socket. The
//! procedure table's facts, the read-only and before-open rules, and each procedure's typed
//! reply.

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

#[test]
fn pool_procedures_walk_a_pool_through_its_life() {
    let f = Fixture::new();
    let dir = f._root.path().join("p");
    let xml = format!(
        "<pool type='dir'><name>p</name><target><path>{}</path></target></pool>",
        dir.display()
    );
    let defined: StoragePoolRet = f
        .call(77, &StoragePoolDefineXmlArgs { xml, flags: 0 })
        .unwrap();
    let p = defined.pool;
    let n: ConnectNumOfStoragePoolsRet = f.call(73, &()).unwrap();
    assert_eq!(n.num, 1, "one inactive pool");
    let names: ConnectListStoragePoolsRet = f
        .call(74, &ConnectListStoragePoolsArgs { maxnames: 10 })
        .unwrap();
    assert_eq!(names.names, vec!["p"]);
    let info: StoragePoolGetInfoRet = f.call(87, &pool_only(&p)).unwrap();
    assert_eq!(info.state, 0);
    f.call::<_, ()>(79, &pool_flags(&p, 0)).unwrap();
    assert!(dir.is_dir());
    f.call::<_, ()>(78, &pool_flags(&p, 0)).unwrap();
    let info: StoragePoolGetInfoRet = f.call(87, &pool_only(&p)).unwrap();
    assert_eq!(info.state, flags::STORAGE_POOL_RUNNING);
    assert!(info.capacity >= info.available);
    let active: IntRet = f.call(154, &pool_only(&p)).unwrap();
    let persistent: IntRet = f.call(155, &pool_only(&p)).unwrap();
    assert_eq!((active.value, persistent.value), (1, 1));
    f.call::<_, ()>(
        90,
        &StoragePoolSetAutostartArgs {
            pool: p.clone(),
            autostart: 1,
        },
    )
    .unwrap();
    let autostart: IntRet = f.call(89, &pool_only(&p)).unwrap();
    assert_eq!(autostart.value, 1);
    let x: XmlRet = f
        .call(
            88,
            &StoragePoolGetXmlDescArgs {
                pool: p.clone(),
                flags: 0,
            },
        )
        .unwrap();
    assert!(x.xml.contains("<name>p</name>"));
    let all: ConnectListAllStoragePoolsRet = f
        .call(
            281,
            &ConnectListAllStoragePoolsArgs {
                need_results: 1,
                flags: flags::CONNECT_LIST_STORAGE_POOLS_AUTOSTART,
            },
        )
        .unwrap();
    assert_eq!(all.ret, 2, "default and p are autostarted");
    let none: ConnectListAllStoragePoolsRet = f
        .call(
            281,
            &ConnectListAllStoragePoolsArgs {
                need_results: 0,
                flags: flags::CONNECT_LIST_STORAGE_POOLS_TRANSIENT,
            },
        )
        .unwrap();
    assert_eq!((none.pools.len(), none.ret), (0, 0));
    let by_uuid: StoragePoolRet = f
        .call(85, &StoragePoolLookupByUuidArgs { uuid: p.uuid })
        .unwrap();
    assert_eq!(by_uuid.pool, p);
    let by_path: StoragePoolRet = f
        .call(
            391,
            &StoragePoolLookupByTargetPathArgs {
                path: dir.display().to_string(),
            },
        )
        .unwrap();
    assert_eq!(by_path.pool.name, "p");
    f.call::<_, ()>(83, &pool_flags(&p, 0)).unwrap();
    let e = f.call::<_, ()>(81, &pool_flags(&p, 0)).unwrap_err();
    assert_eq!(e.code, codes::OPERATION_INVALID, "delete of an active pool");
    f.call::<_, ()>(80, &pool_only(&p)).unwrap();
    f.call::<_, ()>(81, &pool_flags(&p, 0)).unwrap();
    assert!(!dir.exists());
    f.call::<_, ()>(82, &pool_only(&p)).unwrap();
    let e = f
        .call::<_, StoragePoolGetInfoRet>(87, &pool_only(&p))
        .unwrap_err();
    assert_eq!(e.code, codes::NO_STORAGE_POOL);
    assert!(e.message.contains("no storage pool with matching uuid"));
    let transient = format!(
        "<pool type='dir'><name>t</name><target><path>{}</path></target></pool>",
        f._root.path().join("t").display()
    );
    let t: StoragePoolRet = f
        .call(
            76,
            &StoragePoolCreateXmlArgs {
                xml: transient,
                flags: flags::STORAGE_POOL_CREATE_WITH_BUILD,
            },
        )
        .unwrap();
    let n: ConnectNumOfStoragePoolsRet = f.call(71, &()).unwrap();
    assert_eq!(n.num, 2);
    let names: ConnectListStoragePoolsRet = f
        .call(72, &ConnectListStoragePoolsArgs { maxnames: 1 })
        .unwrap();
    assert_eq!(names.names.len(), 1, "at most maxnames");
    f.call::<_, ()>(80, &StoragePoolArgs { pool: t.pool })
        .unwrap();
}

#[test]
fn volume_procedures_walk_a_volume_through_its_life() {
    let f = Fixture::new();
    let pool = f.pool();
    let vol = f.create(RAW);
    assert_eq!((vol.pool.as_str(), vol.name.as_str()), ("default", "v.img"));
    let e = f
        .call::<_, StorageVolRet>(
            93,
            &StorageVolCreateXmlArgs {
                pool: pool.clone(),
                xml: RAW.into(),
                flags: 0,
            },
        )
        .unwrap_err();
    assert_eq!(e.code, codes::STORAGE_VOL_EXIST);
    let n: IntRet = f.call(91, &pool_only(&pool)).unwrap();
    assert_eq!(n.value, 1);
    let names: StoragePoolListVolumesRet = f
        .call(
            92,
            &StoragePoolListVolumesArgs {
                pool: pool.clone(),
                maxnames: 5,
            },
        )
        .unwrap();
    assert_eq!(names.names, vec!["v.img"]);
    let all: StoragePoolListAllVolumesRet = f
        .call(
            282,
            &StoragePoolListAllVolumesArgs {
                pool: pool.clone(),
                need_results: 1,
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(all.vols, vec![vol.clone()]);
    let by_name: StorageVolRet = f
        .call(
            95,
            &StorageVolLookupByNameArgs {
                pool: pool.clone(),
                name: "v.img".into(),
            },
        )
        .unwrap();
    let by_key: StorageVolRet = f
        .call(
            96,
            &StorageVolLookupByKeyArgs {
                key: vol.key.clone(),
            },
        )
        .unwrap();
    let by_path: StorageVolRet = f
        .call(
            97,
            &StorageVolLookupByPathArgs {
                path: vol.key.clone(),
            },
        )
        .unwrap();
    assert_eq!((by_name.vol, by_key.vol), (vol.clone(), vol.clone()));
    assert_eq!(by_path.vol, vol);
    let e = f
        .call::<_, StorageVolRet>(
            96,
            &StorageVolLookupByKeyArgs {
                key: "/nowhere/x".into(),
            },
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "Storage volume not found: no storage vol with matching key /nowhere/x"
    );
    let pool_of: StoragePoolRet = f
        .call(86, &StoragePoolLookupByVolumeArgs { vol: vol.clone() })
        .unwrap();
    assert_eq!(pool_of.pool, pool);
    let info: StorageVolGetInfoRet = f.call(98, &StorageVolArgs { vol: vol.clone() }).unwrap();
    assert_eq!((info.capacity, info.allocation), (1 << 20, 0));
    let physical: StorageVolGetInfoRet = f
        .call(378, &vol_flags(&vol, flags::STORAGE_VOL_GET_PHYSICAL))
        .unwrap();
    assert_eq!(physical.allocation, 1 << 20);
    let x: XmlRet = f.call(99, &vol_flags(&vol, 0)).unwrap();
    assert!(x.xml.contains("<name>v.img</name>"));
    let path: StorageVolGetPathRet = f.call(100, &StorageVolArgs { vol: vol.clone() }).unwrap();
    assert_eq!(path.name, vol.key);
    f.call::<_, ()>(260, &resize(&vol, 2 << 20, 0)).unwrap();
    let e = f.call::<_, ()>(260, &resize(&vol, 1 << 20, 0)).unwrap_err();
    assert_eq!(e.code, codes::INVALID_ARG);
    let e = f.call::<_, ()>(260, &resize(&vol, 1 << 20, 8)).unwrap_err();
    assert_eq!(
        e.message,
        "unsupported flags (0x8) in function storageVolResize"
    );
    f.call::<_, ()>(165, &vol_flags(&vol, 0)).unwrap();
    f.call::<_, ()>(259, &wipe_pattern(&vol, 9)).unwrap();
    let e = f.call::<_, ()>(259, &wipe_pattern(&vol, 4)).unwrap_err();
    assert_eq!(e.code, codes::INVALID_ARG, "gutmann: {}", e.message);
    let clone: StorageVolRet = f
        .call(
            125,
            &StorageVolCreateXmlFromArgs {
                pool: pool.clone(),
                xml: RAW.replace("v.img", "c.img"),
                clonevol: vol.clone(),
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(clone.vol.name, "c.img");
    match f.raw_call(209, &to_bytes(&stream(&vol))).unwrap() {
        Outcome::Download { .. } => {}
        other => panic!("a download stream, not {other:?}"),
    }
    match f.raw_call(208, &to_bytes(&stream(&vol))).unwrap() {
        Outcome::Upload { name, .. } => assert_eq!(name, "v.img"),
        other => panic!("an upload stream, not {other:?}"),
    }
    for v in [vol.clone(), clone.vol] {
        f.call::<_, ()>(94, &vol_flags(&v, 0)).unwrap();
    }
    let e = f
        .call::<_, StorageVolGetInfoRet>(98, &StorageVolArgs { vol })
        .unwrap_err();
    assert_eq!(
        e.message,
        "Storage volume not found: no storage vol with matching name 'v.img'"
    );
}

#[test]
fn create_flags_are_checked_as_libvirt_checks_them() {
    let f = Fixture::new();
    let pool = f.pool();
    let create = |xml: &str, flags: u32| {
        f.call::<_, StorageVolRet>(
            93,
            &StorageVolCreateXmlArgs {
                pool: pool.clone(),
                xml: xml.into(),
                flags,
            },
        )
    };
    let e = create(RAW, flags::STORAGE_VOL_CREATE_REFLINK).unwrap_err();
    assert_eq!(
        e.code,
        codes::INVALID_ARG,
        "reflink is for create-from only"
    );
    let stray = RAW.replace("</volume>", "<bogus/></volume>");
    let e = create(&stray, flags::STORAGE_VOL_CREATE_VALIDATE).unwrap_err();
    assert_eq!(e.code, codes::XML_INVALID_SCHEMA);
    create(&stray, 0).expect("unknown elements are ignored without VALIDATE");
    let e = create("<volume>", 0).unwrap_err();
    assert_eq!(
        e.code,
        codes::XML_DETAIL,
        "malformed XML is libvirt's XML detail"
    );
    let e = create("<volume/>", 0).unwrap_err();
    assert_eq!(e.code, codes::XML_ERROR);
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

#[test]
fn secrets_are_defined_listed_looked_up_and_their_private_values_kept() {
    let f = Fixture::new();
    let defined: SecretRet = f
        .call(
            142,
            &SecretDefineXmlArgs {
                xml: SECRET.into(),
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(defined.secret, secret_handle());
    let n: ConnectNumOfSecretsRet = f.call(139, &()).unwrap();
    assert_eq!(n.num, 1);
    let uuids: ConnectListSecretsRet = f
        .call(140, &ConnectListSecretsArgs { maxuuids: 5 })
        .unwrap();
    assert_eq!(uuids.uuids.0, ["07070707-0707-0707-0707-070707070707"]);
    for (flags, expected) in [(0, 1), (1, 0), (2, 1), (4, 1), (8, 0), (3, 1)] {
        let all: ConnectListAllSecretsRet = f
            .call(
                287,
                &ConnectListAllSecretsArgs {
                    need_results: 1,
                    flags,
                },
            )
            .unwrap();
        assert_eq!(
            (all.ret, all.secrets.0.len()),
            (expected, expected as usize),
            "{flags}"
        );
    }
    let by_usage: SecretRet = f
        .call(
            147,
            &SecretLookupByUsageArgs {
                usage_type: 1,
                usage_id: "/p/e.img".into(),
            },
        )
        .unwrap();
    assert_eq!(by_usage.secret, secret_handle());
    let e = f
        .call::<_, SecretRet>(
            147,
            &SecretLookupByUsageArgs {
                usage_type: 2,
                usage_id: "/p/e.img".into(),
            },
        )
        .unwrap_err();
    assert_eq!(
        (e.code, e.domain, e.message.as_str()),
        (
            codes::NO_SECRET,
            crate::rpc::proto::domains::SECRET,
            "Secret not found: no secret with matching usage '/p/e.img'"
        )
    );
    let xml: XmlRet = f
        .call(
            143,
            &SecretFlagsArgs {
                secret: secret_handle(),
                flags: 0,
            },
        )
        .unwrap();
    assert!(
        xml.xml
            .starts_with("<secret ephemeral='no' private='yes'>\n  <uuid>07070707-")
    );
    let get = |f: &Fixture| {
        f.call::<_, SecretGetValueRet>(
            145,
            &SecretFlagsArgs {
                secret: secret_handle(),
                flags: 0,
            },
        )
    };
    // Private before any value, as libvirt checks.
    let e = get(&f).unwrap_err();
    assert_eq!(e.code, codes::INVALID_SECRET, "{}", e.message);
    f.call::<_, ()>(
        144,
        &SecretSetValueArgs {
            secret: secret_handle(),
            value: SecretValue(zeroize::Zeroizing::new(b"hunter2".to_vec())),
            flags: 0,
        },
    )
    .unwrap();
    let e = get(&f).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (codes::INVALID_SECRET, "Invalid secret: secret is private")
    );
    // A public secret's value is given back.
    f.call::<_, SecretRet>(
        142,
        &SecretDefineXmlArgs {
            xml: "<secret><uuid>08080808-0808-0808-0808-080808080808</uuid></secret>".into(),
            flags: 1,
        },
    )
    .unwrap();
    let public = NonnullSecret {
        uuid: [8; 16],
        usage_type: 0,
        usage_id: String::new(),
    };
    f.call::<_, ()>(
        144,
        &SecretSetValueArgs {
            secret: public.clone(),
            value: SecretValue(zeroize::Zeroizing::new(b"open".to_vec())),
            flags: 0,
        },
    )
    .unwrap();
    let got: SecretGetValueRet = f
        .call(
            145,
            &SecretFlagsArgs {
                secret: public.clone(),
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(got.value.0.as_slice(), b"open");
    assert_eq!(format!("{:?}", got.value), "SecretValue(<4 bytes>)");
    f.call::<_, ()>(146, &SecretUndefineArgs { secret: public })
        .unwrap();
    let e = f
        .call::<_, XmlRet>(
            143,
            &SecretFlagsArgs {
                secret: NonnullSecret {
                    uuid: [8; 16],
                    usage_type: 0,
                    usage_id: String::new(),
                },
                flags: 0,
            },
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "Secret not found: no secret with matching uuid '08080808-0808-0808-0808-080808080808'"
    );
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
