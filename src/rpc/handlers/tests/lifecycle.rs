//! The pool and volume procedures in the order a client calls them: a pool through its life,
//! a volume through its life, and libvirt's checks of the create flags.

use super::*;
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
