//! What libvirt reports about a pool and its volumes.
//!
//! Owns: `pool-info` figures from statvfs ([`PoolInfo`]), the `pool-dumpxml` report, and the
//! `vol-dumpxml` report of a volume (its qcow2 details, and its backing store with the
//! backing file's attributes).
//! Must not: print or format text; `xml` formats the reports, the faces print them.

use std::path::Path;

use super::{Error, Pool, VolumeInfo};
use crate::image::{self, Qcow2Info};
use crate::model::EncryptionFormat;
use crate::xml::volume::{Qcow2Report, Timestamp};
use crate::xml::{
    BackingReport, EncryptionReport, Features, FileAttributes, PoolReport, VolumeReport,
};

/// The numbers `pool-info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// Pool name.
    pub name: String,
    /// Pool UUID.
    pub uuid: uuid::Uuid,
    /// Filesystem size.
    pub capacity: u64,
    /// Filesystem bytes used.
    pub allocation: u64,
    /// Filesystem bytes free (`f_bfree`, as libvirt reports them).
    pub available: u64,
    /// Whether the pool's definition outlives it being stopped.
    pub persistent: bool,
    /// Whether the pool starts with its daemon.
    pub autostart: bool,
}

/// The qcow2 details `vol-dumpxml` shows.
fn qcow2_report(q: &Qcow2Info) -> Qcow2Report {
    Qcow2Report {
        compat: q.header.version,
        cluster_size: q.header.cluster_size(),
        features: Features {
            lazy_refcounts: q.lazy_refcounts(),
            extended_l2: q.extended_l2(),
        },
    }
}

impl Pool {
    /// Pool sizes from statvfs, as libvirt's dir pool reports them; whether the pool is
    /// persistent and autostarted is the caller's to say (the registry knows).
    pub fn info(&self, persistent: bool, autostart: bool) -> Result<PoolInfo, Error> {
        let (capacity, allocation, available) = self
            .dir
            .fs_sizes()
            .map_err(|source| self.reading_pool(source))?;
        Ok(PoolInfo {
            name: self.name.clone(),
            uuid: self.uuid,
            capacity,
            allocation,
            available,
            persistent,
            autostart,
        })
    }

    /// `pool-dumpxml` of the running pool.
    pub fn report(&self) -> Result<PoolReport, Error> {
        let info = self.info(true, false)?;
        let st = self
            .dir
            .stat_self()
            .map_err(|source| self.reading_pool(source))?;
        Ok(PoolReport {
            name: info.name,
            uuid: info.uuid,
            capacity: info.capacity,
            allocation: info.allocation,
            available: info.available,
            path: self.path().display().to_string(),
            mode: st.st_mode & 0o777,
            owner: st.st_uid,
            group: st.st_gid,
            cow: None,
        })
    }
}

/// A backing file's mode, owner, group and times, when it can be read.
fn file_attributes(path: &Path) -> Option<FileAttributes> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let ts = |sec, nsec| Timestamp { sec, nsec };
    Some(FileAttributes {
        mode: m.mode() & 0o777,
        owner: m.uid(),
        group: m.gid(),
        times: [
            ts(m.atime(), m.atime_nsec()),
            ts(m.mtime(), m.mtime_nsec()),
            ts(m.ctime(), m.ctime_nsec()),
        ],
    })
}

impl Pool {
    /// A volume of this pool as `vol-dumpxml` prints it: [`VolumeInfo::report`], with the
    /// secret of an encrypted volume when the pool's secrets know one for its path.
    pub fn volume_report(&self, info: &VolumeInfo) -> VolumeReport {
        let mut report = info.report();
        if let (Some(enc), Some(secrets)) = (&mut report.encryption, &self.secrets) {
            enc.secret = secrets.volume_secret(&info.path);
        }
        report
    }
}

impl VolumeInfo {
    /// The volume as `vol-dumpxml` prints it; the backing path is resolved where qemu
    /// resolves it ([`image::backing_path`]).
    pub fn report(&self) -> VolumeReport {
        let qcow2 = self.image.qcow2.as_ref().map(qcow2_report);
        let backing = self.image.qcow2.as_ref().and_then(|q| {
            let name = q.backing_file.as_ref()?;
            let dir = self.path.parent().unwrap_or(Path::new("/"));
            let path = image::backing_path(dir, name);
            Some(BackingReport {
                path: path.display().to_string(),
                format: q.backing_format.as_deref().and_then(|f| f.parse().ok()),
                attributes: file_attributes(&path),
            })
        });
        VolumeReport {
            name: self.name.clone(),
            path: self.path.display().to_string(),
            capacity: self.capacity,
            allocation: self.allocation,
            physical: self.physical,
            format: self.image.format,
            mode: self.mode,
            owner: self.uid,
            group: self.gid,
            times: self.times,
            qcow2,
            backing,
            encryption: self.image.luks.as_ref().map(|l| EncryptionReport {
                format: EncryptionFormat::Luks,
                secret: None,
                cipher: l.cipher,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Compat, VolFormat};
    use crate::policy::CreateFlags;
    use crate::xml::{BackingStoreDef, VolumeDef};

    #[test]
    fn an_overlay_reports_its_backing_store_resolved_in_the_pool() {
        let (_dir, pool) = crate::pool::temp_pool();
        let mut base = VolumeDef::new("base.qcow2", 1 << 20);
        base.target.format = Some(VolFormat::Qcow2);
        pool.create_volume(&base, CreateFlags::default(), None)
            .unwrap();
        let mut top = VolumeDef::new("top.qcow2", 1 << 20);
        top.target.format = Some(VolFormat::Qcow2);
        top.backing_store = Some(BackingStoreDef {
            path: "base.qcow2".into(),
            format: Some(VolFormat::Qcow2),
        });
        let info = pool
            .create_volume(&top, CreateFlags::default(), None)
            .unwrap()
            .volume;
        let report = info.report();
        assert_eq!(report.format, VolFormat::Qcow2);
        assert_eq!(report.qcow2.unwrap().compat, Compat::V1_1);
        let backing = report.backing.unwrap();
        assert_eq!(
            backing.path,
            pool.path().join("base.qcow2").display().to_string()
        );
        assert_eq!(backing.format, Some(VolFormat::Qcow2));
        assert!(backing.attributes.is_some());
    }

    #[test]
    fn pool_info_takes_its_state_from_the_caller() {
        let (_dir, pool) = crate::pool::temp_pool();
        let info = pool.info(false, true).unwrap();
        assert!(!info.persistent && info.autostart);
        assert!(info.capacity >= info.available);
        let report = pool.report().unwrap();
        assert_eq!(report.path, pool.path().display().to_string());
    }
}
