//! The bridge's libvirt calls, through the `virt` crate (cargo feature `libvirt`).
//!
//! Owns: one connection to libvirtd ([`Bridge`]), reading libvirtd's pools, and each change
//! the bridge makes to a marked pool; a daemon's mirror ([`attach`]), which keeps one
//! connection, reconnects when libvirtd went away, and never fails a qpool call because
//! libvirtd could not be told (it logs a warning).
//! Must not: change a libvirt pool without the mark (every change goes through
//! [`Found::ours`]).

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use virt::connect::Connect;
use virt::storage_pool::StoragePool;

use super::{
    Action, BridgeError, Done, LibvirtError, Mirrored, Settings, SyncReport, VENDOR, mirror_xml,
    registry_pool, registry_pools, same_dir,
};
use crate::error::one_line;
use crate::pool::registry::{Change, Registry};
use crate::xml::PoolOutline;

fn libvirt_error(e: virt::error::Error) -> LibvirtError {
    LibvirtError {
        message: e.message().to_string(),
    }
}

/// A libvirt pool as found: its handle and its outline.
struct Found {
    pool: StoragePool,
    outline: PoolOutline,
}

impl Found {
    /// Whether the bridge made this pool.
    fn ours(&self) -> bool {
        self.outline.pool_type == "dir" && self.outline.vendor.as_deref() == Some(VENDOR)
    }

    fn on(&self, target: &Path) -> bool {
        self.outline
            .target_path
            .as_deref()
            .is_some_and(|t| same_dir(Path::new(t), target))
    }

    fn call<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&StoragePool) -> Result<T, virt::error::Error>,
    ) -> Result<T, BridgeError> {
        f(&self.pool).map_err(|e| BridgeError::Libvirt {
            op,
            name: self.outline.name.clone(),
            source: libvirt_error(e),
        })
    }
}

/// A connection to libvirtd, with the mirror settings.
pub struct Bridge {
    conn: Connect,
    settings: Settings,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.conn.close();
    }
}

impl Bridge {
    /// Connects to `settings.uri`.
    pub fn connect(settings: &Settings) -> Result<Bridge, BridgeError> {
        // libvirt prints every error on stderr unless told not to; ours are returned.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(&settings.uri)).map_err(|e| BridgeError::Connect {
            uri: settings.uri.clone(),
            source: libvirt_error(e),
        })?;
        Ok(Bridge {
            conn,
            settings: settings.clone(),
        })
    }

    /// Whether the connection still works.
    pub fn is_alive(&self) -> bool {
        self.conn.is_alive().unwrap_or(false)
    }

    /// Every libvirt pool.
    fn pools(&self) -> Result<Vec<Found>, BridgeError> {
        let listing = |e| BridgeError::Libvirt {
            op: "list",
            name: "*".into(),
            source: libvirt_error(e),
        };
        let mut found = Vec::new();
        for pool in self.conn.list_all_storage_pools(0).map_err(listing)? {
            let name = pool.get_name().map_err(listing)?;
            // The persistent definition: an active pool's target is the same there.
            let xml = pool
                .get_xml_desc(virt::sys::VIR_STORAGE_XML_INACTIVE)
                .map_err(|e| BridgeError::Libvirt {
                    op: "read",
                    name: name.clone(),
                    source: libvirt_error(e),
                })?;
            let outline = PoolOutline::parse(&xml).map_err(|source| BridgeError::Xml {
                name,
                source: Box::new(source),
            })?;
            found.push(Found { pool, outline });
        }
        Ok(found)
    }

    fn done(name: &str, action: Action) -> Done {
        Done {
            pool: name.to_string(),
            action,
        }
    }

    /// Stops (if running) and undefines a marked pool.
    fn remove_found(&self, found: &Found, done: &mut Vec<Done>) -> Result<(), BridgeError> {
        debug_assert!(found.ours());
        let name = &found.outline.name;
        if found.call("check", StoragePool::is_active)? {
            found.call("stop", StoragePool::destroy)?;
            done.push(Self::done(name, Action::Stopped));
        }
        if found.call("check", StoragePool::is_persistent)? {
            found.call("undefine", StoragePool::undefine)?;
        }
        done.push(Self::done(name, Action::Undefined));
        Ok(())
    }

    /// Makes libvirt's mirror of one qpool pool match it: defined (again, if its target
    /// moved), autostart as in qpool, running while the qpool pool runs, and refreshed.
    pub fn mirror(&self, pool: &Mirrored) -> Result<Vec<Done>, BridgeError> {
        let name = self.settings.libvirt_name(&pool.name);
        let found = self.pools()?;
        let mut done = Vec::new();
        let mut existing = None;
        for f in found {
            if f.outline.name == name {
                if !f.ours() {
                    return Err(BridgeError::NotOurs { name });
                }
                if f.on(&pool.target) {
                    existing = Some(f);
                } else {
                    self.remove_found(&f, &mut done)?;
                }
            } else if f.on(&pool.target) {
                // The same directory under another name: a mirror made under an old name
                // or prefix goes; anyone else's pool stops us (libvirt refuses two pools on
                // one directory anyway).
                if !f.ours() {
                    return Err(BridgeError::TargetTaken {
                        other: f.outline.name.clone(),
                        target: pool.target.clone(),
                    });
                }
                self.remove_found(&f, &mut done)?;
            }
        }
        let found = match existing {
            Some(f) => f,
            None => {
                // qpool's UUID, unless libvirt already has a pool with it.
                let uuid = pool.uuid.filter(|u| {
                    StoragePool::lookup_by_uuid_string(&self.conn, &u.hyphenated().to_string())
                        .is_err()
                });
                let xml = mirror_xml(&name, uuid.as_ref(), &pool.target);
                let defined = StoragePool::define_xml(&self.conn, &xml, 0).map_err(|e| {
                    BridgeError::Libvirt {
                        op: "define",
                        name: name.clone(),
                        source: libvirt_error(e),
                    }
                })?;
                done.push(Self::done(&name, Action::Defined));
                Found {
                    pool: defined,
                    outline: PoolOutline::parse(&xml).map_err(|source| BridgeError::Xml {
                        name: name.clone(),
                        source: Box::new(source),
                    })?,
                }
            }
        };
        if found.call("read autostart of", StoragePool::get_autostart)? != pool.autostart {
            found.call("set autostart of", |p| p.set_autostart(pool.autostart))?;
            done.push(Self::done(&name, Action::Autostart(pool.autostart)));
        }
        let active = found.call("check", StoragePool::is_active)?;
        match (pool.active, active) {
            (true, false) => {
                // Starting a dir pool reads its directory: it is refreshed too.
                found.call("start", |p| p.create(0))?;
                done.push(Self::done(&name, Action::Started));
            }
            (true, true) => {
                found.call("refresh", |p| p.refresh(0))?;
                done.push(Self::done(&name, Action::Refreshed));
            }
            (false, true) => {
                found.call("stop", StoragePool::destroy)?;
                done.push(Self::done(&name, Action::Stopped));
            }
            (false, false) => {}
        }
        Ok(done)
    }

    /// Removes the mirror of a qpool pool that is gone, if the bridge made it.
    pub fn remove(&self, qpool_name: &str) -> Result<Vec<Done>, BridgeError> {
        let name = self.settings.libvirt_name(qpool_name);
        let mut done = Vec::new();
        if let Some(f) = self.pools()?.into_iter().find(|f| f.outline.name == name) {
            if !f.ours() {
                return Err(BridgeError::NotOurs { name });
            }
            self.remove_found(&f, &mut done)?;
        }
        Ok(done)
    }

    /// After a change in the pool directory `target`: refreshes the running mirrors of that
    /// directory; when there is none, mirrors `pool` (defining it).
    pub fn changed(&self, pool: &Mirrored) -> Result<Vec<Done>, BridgeError> {
        let mirrors: Vec<Found> = self
            .pools()?
            .into_iter()
            .filter(|f| f.ours() && f.on(&pool.target))
            .collect();
        if mirrors.is_empty() {
            return self.mirror(pool);
        }
        let mut done = Vec::new();
        for f in mirrors {
            if f.call("check", StoragePool::is_active)? {
                f.call("refresh", |p| p.refresh(0))?;
                done.push(Self::done(&f.outline.name, Action::Refreshed));
            }
        }
        Ok(done)
    }

    /// Mirrors every pool of `pools`, then removes the marked libvirt pools (with the prefix)
    /// whose qpool pool is not among them. A pool that fails is reported and the others go
    /// on.
    pub fn sync(&self, pools: &[Mirrored]) -> SyncReport {
        let mut report = SyncReport::default();
        for pool in pools {
            report.total += 1;
            match self.mirror(pool) {
                Ok(done) => report.done.extend(done),
                Err(e) => report
                    .failed
                    .push((self.settings.libvirt_name(&pool.name), e)),
            }
        }
        let found = match self.pools() {
            Ok(found) => found,
            Err(e) => {
                report.failed.push(("*".into(), e));
                return report;
            }
        };
        for f in found.iter().filter(|f| f.ours()) {
            let gone = self
                .settings
                .qpool_name(&f.outline.name)
                .is_some_and(|q| !pools.iter().any(|p| p.name == q));
            if gone {
                report.total += 1;
                if let Err(e) = self.remove_found(f, &mut report.done) {
                    report.failed.push((f.outline.name.clone(), e));
                }
            }
        }
        report
    }
}

/// A daemon's mirror: one connection, opened when first needed.
struct DaemonMirror {
    settings: Settings,
    bridge: Mutex<Option<Bridge>>,
    registry: Weak<Registry>,
}

impl DaemonMirror {
    /// Runs `f` on a working connection: the kept one, or a new one (after which every pool
    /// is synced first, since changes may have been missed). A failure is logged.
    fn with_bridge(&self, what: &str, f: impl Fn(&Bridge) -> Result<Vec<Done>, BridgeError>) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut slot = self.bridge.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if slot.as_ref().is_some_and(|b| !b.is_alive()) {
                *slot = None;
            }
            if slot.is_none() {
                match Bridge::connect(&self.settings) {
                    Ok(b) => {
                        log_report(&b.sync(&registry_pools(&registry)));
                        *slot = Some(b);
                    }
                    Err(e) => {
                        log::warn!("libvirt mirror of {what} not updated: {}", one_line(&e));
                        return;
                    }
                }
            }
            let Some(bridge) = slot.as_ref() else { return };
            match f(bridge) {
                Ok(done) => {
                    for d in done {
                        log::info!("libvirt mirror: {d}");
                    }
                    return;
                }
                // A connection that broke is replaced once; anything else is reported.
                Err(e) if attempt == 0 && !bridge.is_alive() => {
                    log::debug!("libvirt connection lost ({}); reconnecting", one_line(&e));
                }
                Err(e) => {
                    log::warn!("libvirt mirror of {what} not updated: {}", one_line(&e));
                    return;
                }
            }
        }
    }

    fn on_change(&self, change: &Change) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        match change {
            Change::Pool { name } => match registry_pool(&registry, name) {
                Some(pool) => self.with_bridge(&format!("pool '{name}'"), |b| b.mirror(&pool)),
                None => self.with_bridge(&format!("pool '{name}'"), |b| b.remove(name)),
            },
            Change::Volume { pool, volume } => {
                if let Some(p) = registry_pool(&registry, pool) {
                    self.with_bridge(&format!("volume '{volume}' of pool '{pool}'"), |b| {
                        b.changed(&p)
                    });
                }
            }
        }
    }
}

fn log_report(report: &SyncReport) {
    for d in &report.done {
        log::info!("libvirt mirror: {d}");
    }
    for (name, e) in &report.failed {
        log::warn!(
            "libvirt mirror of pool '{name}' not updated: {}",
            one_line(e)
        );
    }
}

/// Mirrors a daemon's pools into libvirtd: every pool now (when libvirtd answers; else at
/// the first change after it does), then after each change, before the call that made it
/// returns. libvirtd being away never fails a qpool call; it is logged.
pub fn attach(registry: &Arc<Registry>, settings: Settings) -> Result<(), BridgeError> {
    let mirror = Arc::new(DaemonMirror {
        settings,
        bridge: Mutex::new(None),
        registry: Arc::downgrade(registry),
    });
    mirror.with_bridge("the pools", |_| Ok(Vec::new()));
    let hook = Arc::clone(&mirror);
    registry.set_change_hook(move |change| hook.on_change(change));
    Ok(())
}
