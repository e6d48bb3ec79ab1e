//! Re-reading the pool definitions while the daemon runs (SIGHUP, `systemctl reload`), as
//! libvirt's storage driver does on reload (`storageStateReload`: load every definition,
//! then autostart).
//!
//! Owns: [`Registry::reload`]: a definition file that is new defines its pool, a changed one
//! replaces the definition of an inactive pool or waits for the next start of an active one
//! (as `pool-define` does), a file that is gone undefines its pool (an active pool goes on
//! running as a transient one, as `pool-undefine` leaves it), the autostart links are read
//! again, and autostart pools that are not running are started. Open connections, running
//! pools and their volumes are left alone.
//! Must not: write or remove definition files (the admin changed them; reload only reads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{Lifecycle, PoolEntry, Registry, RegistryError, io_err};
use crate::error::one_line;
use crate::xml::PoolDef;

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Pools defined by a new file.
    pub defined: Vec<String>,
    /// Pools whose definition changed.
    pub redefined: Vec<String>,
    /// Pools whose file is gone.
    pub undefined: Vec<String>,
    /// Autostart pools started.
    pub started: Vec<String>,
    /// Files that could not be used (the message names the file).
    pub skipped: Vec<String>,
}

impl Registry {
    /// Re-reads the definitions directory; see the module documentation.
    pub fn reload(&self) -> Result<Reloaded, RegistryError> {
        let mut done = Reloaded::default();
        let mut events = Vec::new();
        {
            // The files are read under the lock: define, undefine and autostart change them
            // under it too, so a call running beside the reload is never undone by it.
            let mut pools = self.lock();
            let files = self.read_definitions(&mut done.skipped)?;
            for (name, (path, def)) in files.iter() {
                let autostart = self.autostart_path(name).exists();
                match pools.get_mut(name) {
                    Some(entry) => {
                        if def.uuid.is_some_and(|u| u != entry.uuid) {
                            done.skipped.push(format!(
                                "{}: pool '{name}' already exists with uuid {}",
                                path.display(),
                                entry.uuid.hyphenated()
                            ));
                            continue;
                        }
                        entry.persistent = true;
                        entry.autostart = autostart;
                        let current = entry.next_def.as_ref().unwrap_or(&entry.def);
                        if same_definition(current, def) {
                            continue;
                        }
                        if entry.active() {
                            entry.next_def = Some(def.clone());
                        } else {
                            entry.def = def.clone();
                            entry.last = None;
                        }
                        done.redefined.push(name.clone());
                        events.push((name.clone(), entry.uuid, Lifecycle::Defined));
                    }
                    None => {
                        let uuid = def.uuid.unwrap_or_else(Uuid::new_v4);
                        if let Some(other) = pools.values().find(|e| {
                            e.uuid == uuid
                                || Path::new(&e.def.target_path) == Path::new(&def.target_path)
                        }) {
                            done.skipped.push(format!(
                                "{}: pool '{name}' has the uuid or target of pool '{}'",
                                path.display(),
                                other.def.name
                            ));
                            continue;
                        }
                        pools.insert(
                            name.clone(),
                            PoolEntry {
                                def: def.clone(),
                                uuid,
                                persistent: true,
                                autostart,
                                pool: None,
                                next_def: None,
                                last: None,
                            },
                        );
                        done.defined.push(name.clone());
                        events.push((name.clone(), uuid, Lifecycle::Defined));
                    }
                }
            }
            let gone: Vec<String> = pools
                .values()
                .filter(|e| e.persistent && !files.contains_key(&e.def.name))
                .map(|e| e.def.name.clone())
                .collect();
            for name in gone {
                let Some(entry) = pools.get_mut(&name) else {
                    continue;
                };
                entry.persistent = false;
                entry.autostart = false;
                entry.next_def = None;
                let uuid = entry.uuid;
                if !entry.active() {
                    pools.remove(&name);
                }
                events.push((name.clone(), uuid, Lifecycle::Undefined));
                done.undefined.push(name);
            }
        }
        for (name, uuid, event) in events {
            self.lifecycle(&name, uuid, event);
        }
        let to_start: Vec<String> = self
            .lock()
            .values()
            .filter(|e| e.autostart && !e.active())
            .map(|e| e.def.name.clone())
            .collect();
        for name in to_start {
            match self.start(&name, None) {
                Ok(()) => done.started.push(name),
                Err(e) => log::warn!("autostart of pool '{name}' failed: {}", one_line(&e)),
            }
        }
        Ok(done)
    }

    /// Every definition file that parses, by pool name; the others are described in
    /// `skipped`. A pool named by two files keeps the one whose file is named after it.
    fn read_definitions(
        &self,
        skipped: &mut Vec<String>,
    ) -> Result<BTreeMap<String, (PathBuf, PoolDef)>, RegistryError> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io_err("cannot read", &self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "xml") && p.is_file())
            .collect();
        paths.sort();
        let mut defs: BTreeMap<String, (PathBuf, PoolDef)> = BTreeMap::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    skipped.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let def = match PoolDef::parse(&text) {
                Ok(d) => d,
                Err(e) => {
                    skipped.push(format!("{}: {}", path.display(), one_line(&e)));
                    continue;
                }
            };
            let own_file = path == self.definition_path(&def.name);
            match defs.get(&def.name) {
                Some((first, _)) if !own_file => {
                    skipped.push(format!(
                        "{}: pool '{}' is defined by {} already",
                        path.display(),
                        def.name,
                        first.display()
                    ));
                }
                _ => {
                    defs.insert(def.name.clone(), (path, def));
                }
            }
        }
        Ok(defs)
    }
}

/// Whether two definitions say the same, a file without `<uuid>` matching the pool's own.
fn same_definition(current: &PoolDef, file: &PoolDef) -> bool {
    current.name == file.name
        && current.target_path == file.target_path
        && current.permissions == file.permissions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry on a temporary definitions directory with one autostarted pool `a`.
    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let defs = dir.path().join("defs");
        std::fs::create_dir_all(defs.join("autostart")).unwrap();
        write_def(dir.path(), "a");
        std::os::unix::fs::symlink("../a.xml", defs.join("autostart/a.xml")).unwrap();
        let r = Registry::load(&defs, &dir.path().join("unused")).unwrap();
        (dir, r)
    }

    /// Writes `defs/NAME.xml` with target `NAME` (created) beside `defs`.
    fn write_def(root: &Path, name: &str) -> PathBuf {
        write_def_at(root, name, &root.join(name))
    }

    fn write_def_at(root: &Path, name: &str, target: &Path) -> PathBuf {
        std::fs::create_dir_all(target).unwrap();
        let path = root.join("defs").join(format!("{name}.xml"));
        std::fs::write(
            &path,
            format!(
                "<pool type='dir'><name>{name}</name><target><path>{}</path></target></pool>",
                target.display()
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn a_new_definition_is_defined_and_started_when_autostart() {
        let (dir, r) = registry();
        write_def(dir.path(), "b");
        write_def(dir.path(), "c");
        std::os::unix::fs::symlink("../c.xml", dir.path().join("defs/autostart/c.xml")).unwrap();
        let done = r.reload().unwrap();
        assert_eq!(done.defined, ["b", "c"]);
        assert_eq!(done.started, ["c"]);
        assert!(!r.by_name("b").unwrap().active);
        assert!(r.by_name("c").unwrap().autostart);
        assert_eq!(
            r.reload().unwrap(),
            Reloaded::default(),
            "a second reload changes nothing"
        );
    }

    #[test]
    fn a_changed_definition_of_a_running_pool_waits_for_its_next_start() {
        let (dir, r) = registry();
        let moved = dir.path().join("moved");
        write_def_at(dir.path(), "a", &moved);
        let done = r.reload().unwrap();
        assert_eq!(done.redefined, ["a"]);
        assert_eq!(
            Path::new(&r.by_name("a").unwrap().target),
            dir.path().join("a"),
            "still running on the old target"
        );
        r.destroy("a").unwrap();
        r.start("a", None).unwrap();
        assert_eq!(Path::new(&r.by_name("a").unwrap().target), moved);
    }

    #[test]
    fn a_removed_definition_undefines_its_pool_and_a_running_one_goes_on_transient() {
        let (dir, r) = registry();
        write_def(dir.path(), "b");
        r.reload().unwrap();
        std::fs::remove_file(dir.path().join("defs/a.xml")).unwrap();
        std::fs::remove_file(dir.path().join("defs/b.xml")).unwrap();
        let done = r.reload().unwrap();
        assert_eq!(done.undefined, ["a", "b"]);
        let a = r.by_name("a").unwrap();
        assert!(a.active && !a.persistent);
        assert!(r.by_name("b").is_err());
    }

    #[test]
    fn a_broken_definition_is_skipped_and_named() {
        let (dir, r) = registry();
        std::fs::write(dir.path().join("defs/bad.xml"), "<pool type='dir'>").unwrap();
        write_def(dir.path(), "b");
        let done = r.reload().unwrap();
        assert_eq!(done.defined, ["b"]);
        assert_eq!(done.skipped.len(), 1);
        assert!(done.skipped[0].contains("bad.xml"), "{:?}", done.skipped);
        assert!(
            r.by_name("a").unwrap().active,
            "the other pools are untouched"
        );
    }
}
