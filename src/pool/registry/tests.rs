//! The driver rules, in-process: pool states, persistence, autostart, transient pools,
//! events, and the volume rules (still being built, duplicates, lookups by path).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::*;
use crate::error::ErrorKind;
use crate::model::VolFormat;
use crate::policy::CreateFlags;
use crate::xml::VolumeDef;

/// A registry over a fresh definitions directory, its default pool in `root/default`.
struct Fixture {
    root: tempfile::TempDir,
    registry: Registry,
    events: Arc<Mutex<Vec<PoolEvent>>>,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let registry =
            Registry::load(&root.path().join("defs"), &root.path().join("default")).unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        registry.set_listener(move |e| sink.lock().unwrap().push(e.clone()));
        Fixture {
            root,
            registry,
            events,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn pool_xml(&self, name: &str) -> String {
        format!(
            "<pool type='dir'><name>{name}</name><target><path>{}</path></target></pool>",
            self.dir(name).display()
        )
    }

    fn lifecycle(&self) -> Vec<(String, Lifecycle)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                PoolEvent::Lifecycle { name, event, .. } => Some((name.clone(), *event)),
                PoolEvent::Refresh { .. } => None,
            })
            .collect()
    }
}

fn kind(e: RegistryError) -> ErrorKind {
    e.kind()
}

#[test]
fn an_empty_directory_gets_an_autostarted_default_pool() {
    let f = Fixture::new();
    let pools = f.registry.list();
    assert_eq!(pools.len(), 1);
    let p = &pools[0];
    assert_eq!(p.name, "default");
    assert!(p.active && p.persistent && p.autostart);
    assert!(f.dir("default").is_dir());
    assert!(f.dir("defs/default.xml").is_file());
    assert!(
        f.dir("defs/autostart/default.xml")
            .symlink_metadata()
            .is_ok()
    );
}

#[test]
fn define_start_destroy_undefine_follow_libvirts_states() {
    let f = Fixture::new();
    std::fs::create_dir(f.dir("p")).unwrap();
    let p = f.registry.define(&f.pool_xml("p"), false).unwrap();
    assert!(!p.active && p.persistent && !p.autostart);
    assert_eq!(
        kind(f.registry.open_pool("p").unwrap_err()),
        ErrorKind::InvalidState
    );
    f.registry.start("p", None).unwrap();
    assert_eq!(
        kind(f.registry.start("p", None).unwrap_err()),
        ErrorKind::InvalidState,
        "already active"
    );
    assert_eq!(
        kind(f.registry.delete("p").unwrap_err()),
        ErrorKind::InvalidState,
        "a running pool's directory stays"
    );
    f.registry.destroy("p").unwrap();
    assert_eq!(
        kind(f.registry.destroy("p").unwrap_err()),
        ErrorKind::InvalidState,
        "not active"
    );
    f.registry.undefine("p").unwrap();
    assert_eq!(
        kind(f.registry.by_name("p").unwrap_err()),
        ErrorKind::NoPool
    );
    assert!(!f.dir("defs/p.xml").exists());
    let events: Vec<Lifecycle> = f
        .lifecycle()
        .into_iter()
        .filter(|(n, _)| n == "p")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        events,
        vec![
            Lifecycle::Defined,
            Lifecycle::Started,
            Lifecycle::Stopped,
            Lifecycle::Undefined
        ]
    );
}

#[test]
fn definitions_and_autostart_outlive_the_registry() {
    let f = Fixture::new();
    std::fs::create_dir(f.dir("p")).unwrap();
    f.registry.define(&f.pool_xml("p"), false).unwrap();
    f.registry.set_autostart("p", true).unwrap();
    let uuid = f.registry.by_name("p").unwrap().uuid;
    let again = Registry::load(&f.dir("defs"), &f.dir("default")).unwrap();
    let p = again.by_name("p").unwrap();
    assert_eq!(p.uuid, uuid, "the UUID is kept in the definition");
    assert!(p.autostart && p.active, "an autostart pool starts at load");
    again.set_autostart("p", false).unwrap();
    assert!(!f.dir("defs/autostart/p.xml").exists());
    assert!(!again.by_name("p").unwrap().autostart);
}

#[test]
fn a_transient_pool_has_no_definition_and_no_autostart() {
    let f = Fixture::new();
    let p = f
        .registry
        .create(&f.pool_xml("t"), Some(BuildRequest::Directory))
        .unwrap();
    assert!(p.active && !p.persistent);
    assert!(f.dir("t").is_dir(), "built first");
    assert!(!f.dir("defs/t.xml").exists());
    assert!(matches!(
        f.registry.set_autostart("t", true),
        Err(RegistryError::TransientAutostart { .. })
    ));
    assert!(matches!(
        f.registry.undefine("t"),
        Err(RegistryError::StillActive { .. })
    ));
    f.registry.destroy("t").unwrap();
    assert!(f.registry.by_name("t").is_err(), "gone once stopped");
}

#[test]
fn a_second_pool_may_not_take_a_name_uuid_or_target() {
    let f = Fixture::new();
    std::fs::create_dir(f.dir("a")).unwrap();
    f.registry.define(&f.pool_xml("a"), false).unwrap();
    let same_target = f.pool_xml("a").replace("<name>a</name>", "<name>b</name>");
    assert_eq!(
        kind(f.registry.define(&same_target, false).unwrap_err()),
        ErrorKind::Conflict
    );
    let uuid = f.registry.by_name("a").unwrap().uuid;
    let same_uuid = f.pool_xml("c").replace(
        "<name>c</name>",
        &format!("<name>c</name><uuid>{}</uuid>", uuid.hyphenated()),
    );
    assert!(matches!(
        f.registry.define(&same_uuid, false),
        Err(RegistryError::UuidTaken { .. })
    ));
    // A redefinition without the pool's UUID is another pool of the same name.
    assert!(matches!(
        f.registry.define(&f.pool_xml("a"), false),
        Err(RegistryError::UuidMismatch { .. })
    ));
    assert!(matches!(
        f.registry.create(&f.pool_xml("a"), None),
        Err(RegistryError::UuidMismatch { .. } | RegistryError::PoolExists { .. })
    ));
}

#[test]
fn a_new_definition_of_a_running_pool_waits_for_the_next_start() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.dir("p")).unwrap();
    std::fs::create_dir_all(f.dir("q")).unwrap();
    f.registry.define(&f.pool_xml("p"), false).unwrap();
    f.registry.start("p", None).unwrap();
    let uuid = f.registry.by_name("p").unwrap().uuid;
    let moved = format!(
        "<pool type='dir'><name>p</name><uuid>{}</uuid><target><path>{}</path></target></pool>",
        uuid.hyphenated(),
        f.dir("q").display()
    );
    f.registry.define(&moved, false).unwrap();
    let running = f.registry.open_pool("p").unwrap();
    assert_eq!(running.path(), std::fs::canonicalize(f.dir("p")).unwrap());
    f.registry.destroy("p").unwrap();
    f.registry.start("p", None).unwrap();
    let restarted = f.registry.open_pool("p").unwrap();
    assert_eq!(restarted.path(), std::fs::canonicalize(f.dir("q")).unwrap());
}

#[test]
fn info_and_xml_follow_the_state() {
    let f = Fixture::new();
    std::fs::create_dir(f.dir("p")).unwrap();
    f.registry.define(&f.pool_xml("p"), false).unwrap();
    let (summary, info) = f.registry.info("p").unwrap();
    assert!(!summary.active && info.is_none());
    assert!(
        f.registry
            .xml_desc("p", false)
            .unwrap()
            .contains("<name>p</name>")
    );
    f.registry.start("p", None).unwrap();
    let (_, info) = f.registry.info("p").unwrap();
    let info = info.unwrap();
    assert!(info.persistent && !info.autostart && info.capacity > 0);
    assert!(
        f.registry
            .xml_desc("p", false)
            .unwrap()
            .contains("<capacity")
    );
    f.registry.refresh("p").unwrap();
    assert!(
        f.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, PoolEvent::Refresh { name, .. } if name == "p"))
    );
}

fn raw(name: &str, capacity: u64) -> VolumeDef {
    let mut def = VolumeDef::new(name, capacity);
    def.target.format = Some(VolFormat::Raw);
    def.allocation = Some(0);
    def
}

#[test]
fn volume_calls_need_an_active_pool() {
    let f = Fixture::new();
    std::fs::create_dir(f.dir("p")).unwrap();
    f.registry.define(&f.pool_xml("p"), false).unwrap();
    let err = f
        .registry
        .create_volume("p", &raw("v.img", 1 << 20), CreateFlags::default())
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotActive { .. }), "{err}");
}

#[test]
fn volumes_are_found_by_name_and_by_path() {
    let f = Fixture::new();
    let info = f
        .registry
        .create_volume("default", &raw("v.img", 1 << 20), CreateFlags::default())
        .unwrap();
    let (_, state) = f.registry.volume("default", "v.img").unwrap();
    assert_eq!(state.sizes().0, 1 << 20);
    assert_eq!(
        f.registry.find_volume_by_path(info.path.to_str().unwrap()),
        Some(("default".to_string(), "v.img".to_string()))
    );
    // Paths are compared as strings once runs of '/' are cleaned, as libvirt compares them.
    let doubled = format!("{}//v.img/", info.path.parent().unwrap().display());
    assert!(f.registry.find_volume_by_path(&doubled).is_some());
    let dotted = format!("{}/./v.img", f.dir("default").display());
    assert_eq!(f.registry.find_volume_by_path(&dotted), None);
    assert_eq!(f.registry.find_volume_by_key(&doubled), None);
    assert_eq!(f.registry.find_volume_by_path("/nowhere/v.img"), None);
    assert!(matches!(
        f.registry.volume("default", "nope"),
        Err(RegistryError::Engine(crate::Error::NoVolume { .. }))
    ));
    assert!(matches!(
        f.registry.volume("default", "../x"),
        Err(RegistryError::Engine(crate::Error::NoVolume { .. }))
    ));
    f.registry
        .delete_volume("default", "v.img", crate::pool::WhenInUse::Refuse)
        .unwrap();
    assert!(f.registry.volume_names("default").unwrap().is_empty());
}

/// A volume being built is visible, its name taken, and it cannot be deleted or copied.
#[test]
fn a_volume_being_built_is_listed_but_protected() {
    let f = Fixture::new();
    let open = f.registry.open_pool("default").unwrap();
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let registry = &f.registry;
    std::thread::scope(|s| {
        let builder = s.spawn(move || {
            registry.building_while("default", "b.img", 1 << 30, |observe| {
                observe(Some(&open.volume_path(".qpool-tmp-test")));
                reached_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                observe(None);
                Ok(())
            })
        });
        reached_rx.recv().unwrap();
        let names = registry.volume_names("default").unwrap();
        assert_eq!(names, vec!["b.img"]);
        let (_, state) = registry.volume("default", "b.img").unwrap();
        assert!(matches!(state, VolumeState::Building { capacity, .. } if capacity == 1 << 30));
        assert!(matches!(
            registry.delete_volume("default", "b.img", crate::pool::WhenInUse::Refuse),
            Err(RegistryError::StillBuilding { .. })
        ));
        assert!(matches!(
            registry.create_volume_from(
                "default",
                &raw("c.img", 1),
                "default",
                "b.img",
                CreateFlags::default(),
                false
            ),
            Err(RegistryError::StillBuilding { .. })
        ));
        assert!(matches!(
            registry.create_volume("default", &raw("b.img", 1), CreateFlags::default()),
            Err(RegistryError::Engine(crate::Error::VolumeExists { .. }))
        ));
        release_tx.send(()).unwrap();
        builder.join().unwrap().unwrap();
    });
    assert!(f.registry.building("default", "b.img").is_none());
    assert!(f.registry.volume_names("default").unwrap().is_empty());
}

#[test]
fn a_failed_build_leaves_no_mark() {
    let f = Fixture::new();
    let err = f
        .registry
        .create_volume("default", &raw("a/b", 1), CreateFlags::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadName);
    assert!(f.registry.building("default", "a/b").is_none());
    let path: &Path = f.root.path();
    assert!(path.exists());
}
