//! The libvirt bridge: qpool's pools mirrored into a running libvirtd, for hosts with the
//! monolithic libvirtd, whose domains find their disks through libvirtd's own pools.
//!
//! Each qpool pool becomes a libvirt `dir` pool on the same target directory, named the same
//! (after an optional prefix): defined if missing, started while the qpool pool is active,
//! autostarted as the qpool pool is, and refreshed after every change qpool makes, so that
//! `virsh -c qemu:///system vol-list` and `<disk type='volume'>` see qpool's volumes at once.
//! The pools the bridge defines carry a mark, `<source><vendor name='qpool'/>`, which libvirt
//! keeps; a libvirt pool without it is never changed, refreshed or removed.
//!
//! Owns: the mirror's XML and mark, the reconciliation of one pool or of a whole set
//! ([`Bridge`]: define, redefine on a new target, start, stop, autostart, refresh, undefine),
//! the one-shot jobs that `qpool` hands to `qpoold` ([`job`]: `qpool libvirt-sync`, and the
//! refresh after a `qpool` change), a daemon's mirror ([`attach`]: a full sync at start,
//! then the registry's change hook), and the passphrases qpoold may read from libvirt's
//! secret driver ([`LibvirtSecrets`], qpoold.conf `secrets_uri`, private ones with libvirt's
//! system token, `secrets_token`).
//! Must not: change qpool's pools or volumes, or touch any libvirt pool without the mark. The
//! libvirt calls themselves live in `libvirt.rs`, built with the cargo feature `libvirt`;
//! without it every entry point answers [`BridgeError::NotBuilt`]. Only qpoold calls them
//! ([`Bridge`], [`attach`]): the `qpool` binary must not link libvirt, so the CLI hands its
//! bridge work to qpoold as a [`job::Job`].

pub mod job;
#[cfg(feature = "libvirt")]
mod libvirt;
#[cfg(feature = "libvirt")]
mod secrets;
#[cfg(not(feature = "libvirt"))]
mod unbuilt;

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use uuid::Uuid;

use crate::pool::registry::{Registry, RegistryError};
use crate::xml::escape;

#[cfg(feature = "libvirt")]
pub use libvirt::{Bridge, attach};
#[cfg(feature = "libvirt")]
pub use secrets::LibvirtSecrets;
#[cfg(not(feature = "libvirt"))]
pub use unbuilt::{Bridge, LibvirtSecrets, attach};

/// `<source><vendor name='…'/>` of every libvirt pool the bridge made.
pub const VENDOR: &str = "qpool";
/// `<source><product name='…'/>` of those pools (informative only).
pub const PRODUCT: &str = "qpool libvirt bridge";
/// The libvirt URI `qpool libvirt-sync` uses when none is given.
pub const DEFAULT_URI: &str = "qemu:///system";
/// Whether this build has the bridge (the cargo feature `libvirt`).
pub const BUILT: bool = cfg!(feature = "libvirt");

/// Where the mirrors go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// libvirt URI, e.g. `qemu:///system`.
    pub uri: String,
    /// Put before each qpool pool name to make the libvirt pool's name.
    pub prefix: String,
}

impl Settings {
    /// The libvirt name of a qpool pool.
    pub fn libvirt_name(&self, qpool_name: &str) -> String {
        format!("{}{qpool_name}", self.prefix)
    }

    /// The qpool name behind a libvirt name, when it has the prefix.
    pub fn qpool_name<'a>(&self, libvirt_name: &'a str) -> Option<&'a str> {
        libvirt_name
            .strip_prefix(&self.prefix)
            .filter(|n| !n.is_empty())
    }
}

/// One qpool pool, as the bridge mirrors it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    /// qpool's name for it.
    pub name: String,
    /// qpool's UUID, given to the libvirt pool when it is defined (if libvirt has no pool
    /// with that UUID yet).
    pub uuid: Option<Uuid>,
    /// Target directory.
    pub target: PathBuf,
    /// Autostart in qpool.
    pub autostart: bool,
    /// Whether the libvirt pool should run.
    pub active: bool,
}

/// One thing the bridge did to a libvirt pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Defined (it was missing).
    Defined,
    /// Undefined (its qpool pool is gone, or moved to another target or name).
    Undefined,
    /// Started.
    Started,
    /// Stopped.
    Stopped,
    /// Autostart set to this value.
    Autostart(bool),
    /// Refreshed.
    Refreshed,
}

/// An [`Action`] on a named libvirt pool, printed the way virsh words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// libvirt pool name.
    pub pool: String,
    /// What happened.
    pub action: Action,
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool = &self.pool;
        match self.action {
            Action::Defined => write!(f, "Pool {pool} defined"),
            Action::Undefined => write!(f, "Pool {pool} has been undefined"),
            Action::Started => write!(f, "Pool {pool} started"),
            Action::Stopped => write!(f, "Pool {pool} destroyed"),
            Action::Autostart(true) => write!(f, "Pool {pool} marked as autostarted"),
            Action::Autostart(false) => write!(f, "Pool {pool} unmarked as autostarted"),
            Action::Refreshed => write!(f, "Pool {pool} refreshed"),
        }
    }
}

/// A libvirt error, as libvirt words it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct LibvirtError {
    /// libvirt's message.
    pub message: String,
}

/// Bridge failures.
#[derive(Debug, Error)]
pub enum BridgeError {
    /// This build has no libvirt support.
    #[error("qpool was built without the libvirt bridge (cargo feature 'libvirt')")]
    NotBuilt,
    /// libvirtd could not be reached.
    #[error("cannot connect to {uri}")]
    Connect {
        /// The URI.
        uri: String,
        /// Why.
        #[source]
        source: LibvirtError,
    },
    /// A libvirt pool of the mirror's name exists and qpool did not make it.
    #[error(
        "libvirt pool '{name}' was not made by qpool; it is left alone (a prefix, libvirt_prefix in qpoold.conf, avoids the clash)"
    )]
    NotOurs {
        /// libvirt pool name.
        name: String,
    },
    /// A libvirt pool qpool did not make already uses the target directory.
    #[error("libvirt pool '{other}', not made by qpool, already uses {}", target.display())]
    TargetTaken {
        /// That pool.
        other: String,
        /// The directory.
        target: PathBuf,
    },
    /// A libvirt call failed.
    #[error("cannot {op} libvirt pool '{name}'")]
    Libvirt {
        /// What was being done ("define", "start", "refresh", …).
        op: &'static str,
        /// libvirt pool name ("*" for a listing).
        name: String,
        /// libvirt's error.
        #[source]
        source: LibvirtError,
    },
    /// libvirtd described a pool in XML qpool cannot read.
    #[error("cannot read the XML of libvirt pool '{name}'")]
    Xml {
        /// libvirt pool name.
        name: String,
        /// What is wrong.
        #[source]
        source: Box<crate::xml::Error>,
    },
    /// qpool's pool definitions could not be read.
    #[error("cannot read qpool's pool definitions")]
    Definitions(#[source] Box<RegistryError>),
    /// Some pools of a sync failed (each one is reported on its own).
    #[error("{failed} of {total} pools not mirrored")]
    Incomplete {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
}

/// What a whole sync did: the actions, and the pools that failed.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Everything done, in order.
    pub done: Vec<Done>,
    /// Pools that could not be mirrored or removed (libvirt name, why).
    pub failed: Vec<(String, BridgeError)>,
    /// How many pools were looked at.
    pub total: usize,
}

impl SyncReport {
    /// `Ok` when every pool was mirrored, else [`BridgeError::Incomplete`].
    pub fn result(&self) -> Result<(), BridgeError> {
        if self.failed.is_empty() {
            Ok(())
        } else {
            Err(BridgeError::Incomplete {
                failed: self.failed.len(),
                total: self.total,
            })
        }
    }
}

/// The XML of a mirror: a `dir` pool with the mark, on `target`.
pub fn mirror_xml(name: &str, uuid: Option<&Uuid>, target: &Path) -> String {
    let uuid = uuid
        .map(|u| format!("  <uuid>{}</uuid>\n", u.hyphenated()))
        .unwrap_or_default();
    format!(
        "<pool type='dir'>\n  <name>{}</name>\n{uuid}  <source>\n    <vendor name='{}'/>\n    <product name='{}'/>\n  </source>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        escape(name),
        escape(VENDOR),
        escape(PRODUCT),
        escape(&target.display().to_string()),
    )
}

/// Whether two target directories are the same: equal paths, or the same directory once
/// both are resolved.
pub fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The pools of a running daemon.
pub fn registry_pools(registry: &Registry) -> Vec<Mirrored> {
    registry.list().into_iter().map(mirrored).collect()
}

fn mirrored(s: crate::pool::registry::PoolSummary) -> Mirrored {
    Mirrored {
        name: s.name,
        uuid: Some(s.uuid),
        target: PathBuf::from(s.target),
        autostart: s.autostart,
        active: s.active,
    }
}

/// One pool of a running daemon, if it has it.
pub fn registry_pool(registry: &Registry, name: &str) -> Option<Mirrored> {
    registry.by_name(name).ok().map(mirrored)
}

/// The pools qpoold would serve from the definitions in `dir`, without starting qpoold or
/// writing anything: each definition (running when its target directory exists), or, when
/// there is none, the `default` pool on `default_target` that qpoold would define.
pub fn stored_pools(dir: &Path, default_target: &Path) -> Result<Vec<Mirrored>, BridgeError> {
    let stored = Registry::stored(dir).map_err(|e| BridgeError::Definitions(Box::new(e)))?;
    if stored.is_empty() {
        return Ok(vec![Mirrored {
            name: "default".into(),
            uuid: None,
            target: default_target.to_path_buf(),
            autostart: true,
            active: default_target.is_dir(),
        }]);
    }
    Ok(stored
        .into_iter()
        .map(|s| {
            let target = PathBuf::from(&s.def.target_path);
            Mirrored {
                active: target.is_dir(),
                name: s.def.name,
                uuid: s.def.uuid,
                target,
                autostart: s.autostart,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_xml_carries_the_mark_and_reads_back() {
        let uuid = Uuid::parse_str("298b18be-8fe0-4134-8044-8b5e03b856c4").unwrap();
        let xml = mirror_xml("q-a&b", Some(&uuid), Path::new("/srv/a'b"));
        let o = crate::xml::PoolOutline::parse(&xml).unwrap();
        assert_eq!(o.pool_type, "dir");
        assert_eq!(o.name, "q-a&b");
        assert_eq!(o.vendor.as_deref(), Some(VENDOR));
        assert_eq!(o.target_path.as_deref(), Some("/srv/a'b"));
        assert!(xml.contains("<uuid>298b18be-8fe0-4134-8044-8b5e03b856c4</uuid>"));
        assert!(!mirror_xml("a", None, Path::new("/x")).contains("<uuid>"));
    }

    #[test]
    fn the_prefix_maps_names_both_ways() {
        let s = Settings {
            uri: DEFAULT_URI.into(),
            prefix: "qpool-".into(),
        };
        assert_eq!(s.libvirt_name("default"), "qpool-default");
        assert_eq!(s.qpool_name("qpool-default"), Some("default"));
        assert_eq!(s.qpool_name("default"), None);
        assert_eq!(s.qpool_name("qpool-"), None);
    }

    #[test]
    fn actions_read_as_virsh_words_them() {
        let d = |action| Done {
            pool: "p".into(),
            action,
        };
        assert_eq!(d(Action::Defined).to_string(), "Pool p defined");
        assert_eq!(
            d(Action::Autostart(true)).to_string(),
            "Pool p marked as autostarted"
        );
        assert_eq!(
            d(Action::Undefined).to_string(),
            "Pool p has been undefined"
        );
    }

    #[test]
    fn without_definitions_the_default_pool_is_mirrored() {
        let dir = tempfile::tempdir().unwrap();
        let pools = stored_pools(&dir.path().join("none"), dir.path()).unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].name, "default");
        assert!(pools[0].autostart && pools[0].active);
    }

    #[test]
    fn definitions_are_mirrored_with_their_autostart_and_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let defs = dir.path().join("defs");
        std::fs::create_dir_all(defs.join("autostart")).unwrap();
        let target = dir.path().join("a");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(
            defs.join("a.xml"),
            format!(
                "<pool type='dir'><name>a</name><uuid>298b18be-8fe0-4134-8044-8b5e03b856c4</uuid><target><path>{}</path></target></pool>",
                target.display()
            ),
        )
        .unwrap();
        std::fs::write(
            defs.join("b.xml"),
            "<pool type='dir'><name>b</name><target><path>/nonexistent/b</path></target></pool>",
        )
        .unwrap();
        std::os::unix::fs::symlink("../a.xml", defs.join("autostart/a.xml")).unwrap();
        let pools = stored_pools(&defs, dir.path()).unwrap();
        let names: Vec<_> = pools
            .iter()
            .map(|p| (p.name.as_str(), p.autostart, p.active))
            .collect();
        assert_eq!(names, [("a", true, true), ("b", false, false)]);
        assert!(pools[0].uuid.is_some());
    }
}
