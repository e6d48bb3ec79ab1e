//! Making new volumes appear: create, clone and create-from, all published atomically.
//!
//! Owns: the publish protocol (check the space, build under a hidden locked name, set
//! no-copy-on-write, mode and ownership first, fill, rename into place without replacing
//! anything, remove the temporary file on any failure), and the definition a clone repeats.
//! Must not: decide how bytes are laid out (the image plan does) or what libvirt allows per
//! pool state (the registry does).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use super::dir::TempVolume;
use super::{BuildObserver, Error, Plan, Pool, VolumeInfo};
use crate::error::SourceKeyMissing;
use crate::image::{self, Source, WriteReport};
use crate::model::{Compression, EncryptionFormat, VolFormat};
use crate::policy::CreateFlags;
use crate::xml::volume::DEFAULT_VOLUME_MODE;
use crate::xml::{BackingStoreDef, EncryptionDef, Features, Permissions, VolumeDef};

/// A volume just made, with the plan it was made from and what the writer reported.
#[derive(Debug)]
pub struct Created {
    /// The new volume.
    pub volume: VolumeInfo,
    /// What was decided (mode, rule, options, expected sizes).
    pub plan: Plan,
    /// Whether `fallocate` had to be replaced by zeros.
    pub report: WriteReport,
}

impl Pool {
    /// Creates a volume: plans it, builds it under a hidden locked name, and publishes it
    /// with a no-replace rename. On any failure nothing is left under the volume's name.
    /// `observer`, if any, is told where the volume is being built.
    pub fn create_volume(
        &self,
        def: &VolumeDef,
        flags: CreateFlags,
        observer: Option<BuildObserver<'_>>,
    ) -> Result<Created, Error> {
        let plan = self.plan(def, flags)?;
        // The passphrase is had before anything is made: a missing secret leaves nothing.
        let passphrase = match plan.image.encryption() {
            Some(_) => Some(self.passphrase(&plan)?),
            None => None,
        };
        let writing = self.writing();
        let total = plan.image.bytes_to_write(!plan.zero_fill_fallback);
        let _watch = self.watch(&format!("creating {}", plan.name), total);
        let expected_allocation = plan.expected_allocation();
        self.publish(
            plan,
            expected_allocation,
            observer,
            |plan, file| match &passphrase {
                Some(p) => image::create_encrypted(&plan.image, p, file, writing),
                None => image::create(&plan.image, file, writing),
            },
        )
    }

    /// The passphrase of an encrypted plan, from the pool's [`Secrets`](super::Secrets).
    fn passphrase(&self, plan: &Plan) -> Result<super::Passphrase, Error> {
        let secret = |source| Error::Secret {
            name: plan.name.clone(),
            source,
        };
        let secrets = self
            .secrets
            .as_ref()
            .ok_or_else(|| secret(super::SecretError::NoSecret))?;
        secrets.passphrase(plan.secret.as_ref()).map_err(secret)
    }

    /// The master key of the encrypted source `src` of a copy named `name`, as its volume
    /// secret (the secret whose usage is its path, libvirt's way) opens it.
    fn source_key(
        &self,
        src_file: &File,
        src: &VolumeInfo,
        name: &str,
    ) -> Result<image::luks::SectorCipher, Error> {
        let missing = |missing| Error::CopyKeepsSourceKey {
            name: name.to_string(),
            from: src.name.clone(),
            missing,
        };
        let secrets = self
            .secrets
            .as_ref()
            .ok_or_else(|| missing(SourceKeyMissing::NoStore))?;
        let secret = secrets
            .source_secret(&src.path)
            .ok_or_else(|| missing(SourceKeyMissing::NoVolumeSecret(src.path.clone())))?;
        let passphrase = secrets
            .passphrase(Some(&secret))
            .map_err(|e| missing(SourceKeyMissing::Secret(e)))?;
        image::unlock(src_file, &src.image, &passphrase)
            .map_err(|source| Error::InspectingVolume {
                name: src.name.clone(),
                source,
            })?
            .ok_or_else(|| missing(SourceKeyMissing::WrongPassphrase(secret)))
    }

    /// Checks space, builds the volume in a hidden locked file (attributes first, then
    /// `fill`, whose failure is [`Error::WritingVolume`]), publishes it under its name, and
    /// removes the file on any failure.
    fn publish(
        &self,
        plan: Plan,
        expected_allocation: u64,
        observer: Option<BuildObserver<'_>>,
        fill: impl FnOnce(&Plan, &File) -> Result<WriteReport, image::Error>,
    ) -> Result<Created, Error> {
        let available = self.available()?;
        if expected_allocation > available {
            return Err(Error::NoSpace {
                pool: self.name.clone(),
                name: plan.name.clone(),
                needed: expected_allocation,
                available,
            });
        }
        let creating = |source| Error::CreatingVolume {
            name: plan.name.clone(),
            dir: self.path().to_path_buf(),
            source,
        };
        let temp = self.dir.create_temp().map_err(creating)?;
        if let Some(observe) = observer {
            observe(Some(&self.dir.entry_path(temp.name())));
        }
        let result = self
            .set_attributes(&plan, &temp)
            .and_then(|()| {
                fill(&plan, &temp.file).map_err(|source| Error::WritingVolume {
                    name: plan.name.clone(),
                    source,
                })
            })
            .and_then(|report| match self.dir.commit(&temp, &plan.name) {
                Ok(()) => Ok(report),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::VolumeExists {
                    name: plan.name.clone(),
                    pool: self.name.clone(),
                }),
                Err(e) => Err(creating(e)),
            });
        if let Some(observe) = observer {
            observe(None);
        }
        let report = match result {
            Ok(report) => report,
            Err(cause) => {
                let temp_name = temp.name().to_string();
                return match self.dir.discard(temp) {
                    Ok(()) => Err(cause),
                    Err(cleanup) => Err(Error::Rollback {
                        cause: Box::new(cause),
                        temp: temp_name,
                        cleanup,
                    }),
                };
            }
        };
        drop(temp);
        log::info!(
            "created volume '{}' in pool '{}' ({}, {}, {} bytes)",
            plan.name,
            self.name,
            plan.format(),
            plan.preallocation(),
            plan.capacity()
        );
        let volume = self.volume(&plan.name)?;
        Ok(Created {
            volume,
            plan,
            report,
        })
    }

    /// Sets no-copy-on-write, mode and ownership on the new, still empty file.
    fn set_attributes(&self, plan: &Plan, temp: &TempVolume) -> Result<(), Error> {
        let file = &temp.file;
        let creating = |source| Error::CreatingVolume {
            name: plan.name.clone(),
            dir: self.path().to_path_buf(),
            source,
        };
        if plan.nocow {
            match crate::sys::set_nocow(file) {
                Ok(true) => log::debug!("set no-copy-on-write on '{}'", plan.name),
                Ok(false) => log::debug!("nocow ignored: the filesystem is not btrfs"),
                Err(e) => return Err(creating(e)),
            }
        }
        let perms = plan.permissions;
        crate::sys::fchmod(file, perms.mode.unwrap_or(DEFAULT_VOLUME_MODE)).map_err(creating)?;
        let st = crate::sys::fstat(file.as_fd()).map_err(creating)?;
        let owner = perms.owner.filter(|&u| u != st.st_uid);
        let group = perms.group.filter(|&g| g != st.st_gid);
        if owner.is_some() || group.is_some() {
            crate::sys::fchown(file, owner, group).map_err(creating)?;
        }
        Ok(())
    }

    /// A definition that reproduces `source`: its name replaced, capacity, format, qcow2
    /// options and permissions kept, and its allocation as a `vol-dumpxml` report carries it
    /// (what `virsh vol-clone` sends).
    pub fn clone_definition(&self, source: &VolumeInfo, new_name: &str) -> VolumeDef {
        let mut def = VolumeDef::new(new_name, source.capacity);
        def.allocation = Some(source.allocation);
        def.from_report = true;
        def.target.permissions = Permissions {
            mode: Some(source.mode),
            owner: Some(source.uid),
            group: Some(source.gid),
        };
        // An encrypted source is copied with its key: the definition says it is encrypted
        // (its cipher as the header names it), no secret needed.
        def.target.encryption = source.image.luks.as_ref().map(|l| EncryptionDef {
            format: EncryptionFormat::Luks,
            secret: None,
            cipher: l.cipher.unwrap_or_default(),
            cipher_named: l.cipher.is_some(),
            iter_time_ms: None,
        });
        match &source.image.qcow2 {
            None => def.target.format = Some(VolFormat::Raw),
            Some(q) => {
                let o = q.options();
                def.target.format = Some(VolFormat::Qcow2);
                def.target.compat = Some(o.version);
                def.target.cluster_size = Some(o.cluster_size);
                def.target.features = Some(Features {
                    lazy_refcounts: o.lazy_refcounts,
                    extended_l2: o.extended_l2,
                });
                def.target.ext.refcount_bits = Some(o.refcount_bits);
                if q.compression() == Compression::Zstd {
                    def.target.ext.compression = Some(Compression::Zstd);
                }
                if let Some((path, format)) = o.backing {
                    def.backing_store = Some(BackingStoreDef {
                        path,
                        format: format.and_then(|f| f.parse().ok()),
                    });
                }
            }
        }
        def
    }

    /// `vol-clone`: a copy of `source` named `new_name`, made from the definition
    /// [`Pool::clone_definition`] gives. Without `prealloc_metadata` it is an exact copy
    /// (same format, options and preallocation; holes kept, or shared blocks with
    /// `reflink`); with it, the new volume gets libvirt's metadata/falloc rule.
    pub fn clone_volume(
        &self,
        source: &str,
        new_name: &str,
        flags: CreateFlags,
        reflink: bool,
    ) -> Result<Created, Error> {
        let (src_file, src) = self.open_volume_to_read(source)?;
        let def = self.clone_definition(&src, new_name);
        self.create_from(&def, src_file, &src, flags, reflink, None)
    }

    /// `vol-create-from`: a new volume described by `def` holding the data of volume
    /// `source` of pool `from` (this pool or another). The new XML is honoured (format,
    /// capacity — the source's when it has none or a smaller one, as libvirt does —,
    /// permissions, and preallocation by the policy). A `vol-dumpxml` of the source with a
    /// new name (what virsh vol-clone sends) asks for an exact copy. `observer`, if any, is
    /// told where the volume is being built.
    pub fn create_volume_from(
        &self,
        def: &VolumeDef,
        from: &Pool,
        source: &str,
        flags: CreateFlags,
        reflink: bool,
        observer: Option<BuildObserver<'_>>,
    ) -> Result<Created, Error> {
        let (src_file, src) = from.open_volume_to_read(source)?;
        self.create_from(def, src_file, &src, flags, reflink, observer)
    }

    /// [`Pool::create_volume_from`] with the source already open and inspected.
    fn create_from(
        &self,
        def: &VolumeDef,
        src_file: File,
        src: &VolumeInfo,
        flags: CreateFlags,
        reflink: bool,
        observer: Option<BuildObserver<'_>>,
    ) -> Result<Created, Error> {
        let exact = def.from_report && !flags.prealloc_metadata;
        let mut def = def.clone();
        def.capacity = Some(def.capacity.unwrap_or(0).max(src.capacity));
        // libvirt converts an image into a raw file with qemu-img, which writes the data
        // and leaves the rest holes, whatever <allocation> says: holes stay holes.
        if def.format() == VolFormat::Raw
            && src.image.format != VolFormat::Raw
            && def.target.ext.preallocation.is_none()
        {
            def.allocation = Some(0);
        }
        let mut plan = self.plan(&def, flags)?;
        // A copy of an encrypted volume keeps the source's key, unless the secret named for
        // it does not open the source: then it is re-encrypted under that secret's
        // passphrase, which takes the source's own (its volume secret). Both are had before
        // anything is made; without secrets (the CLI without --secret-file) there is
        // nothing to check.
        let mut reencrypt = None;
        if src.image.luks.is_some() && plan.secret.is_some() && self.secrets.is_some() {
            let passphrase = self.passphrase(&plan)?;
            let opens =
                image::opens_with(&src_file, &src.image, &passphrase).map_err(|source| {
                    Error::InspectingVolume {
                        name: src.name.clone(),
                        source,
                    }
                })?;
            if !opens {
                let source_key = self.source_key(&src_file, src, &plan.name)?;
                // The source's cipher, unless the XML names one.
                if let (Some(enc), Some(cipher)) = (
                    def.target.encryption.as_mut(),
                    src.image.luks.as_ref().and_then(|l| l.cipher),
                ) && !enc.cipher_named
                    && enc.cipher != cipher
                {
                    enc.cipher = cipher;
                    plan = self.plan(&def, flags)?;
                }
                reencrypt = Some(image::Reencrypt {
                    source_key,
                    passphrase,
                });
            }
        }
        let reencrypting = reencrypt.is_some();
        let source = Source {
            file: src_file,
            path: &src.path,
            info: &src.image,
            allocation: src.allocation,
            physical: src.physical,
        };
        let mut copy = image::plan_copy(source, plan.image.clone(), exact, reflink, reencrypt)
            .map_err(|source| match source {
                image::Error::ReflinkConverts => Error::ReflinkNeedsExactCopy {
                    name: plan.name.clone(),
                },
                image::Error::Options(_) => Error::Options {
                    name: plan.name.clone(),
                    source,
                },
                source => Error::InspectingVolume {
                    name: src.name.clone(),
                    source,
                },
            })?;
        if reencrypting {
            log::info!(
                "copying '{}' to '{}' under a new key (re-encrypting its guest data)",
                src.name,
                plan.name
            );
        }
        let plan = Plan {
            image: copy.image().clone(),
            ..plan
        };
        let writing = self.writing();
        let what = format!("copying {} to {}", src.name, plan.name);
        let _watch = self.watch(&what, copy.bytes_to_copy());
        let expected_allocation = copy.expected_allocation();
        self.publish(plan, expected_allocation, observer, |_, file| {
            copy.write(file, writing)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Preallocation;

    use crate::pool::temp_pool as pool;

    fn qcow2(name: &str, capacity: u64) -> VolumeDef {
        let mut def = VolumeDef::new(name, capacity);
        def.target.format = Some(VolFormat::Qcow2);
        def
    }

    fn hidden_entries(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn a_created_volume_is_published_under_its_name_with_its_mode() {
        let (dir, pool) = pool();
        let info = pool
            .create_volume(&qcow2("a.qcow2", 1 << 30), CreateFlags::default(), None)
            .unwrap()
            .volume;
        assert_eq!(info.capacity, 1 << 30);
        assert_eq!(info.mode, DEFAULT_VOLUME_MODE);
        assert!(dir.path().join("a.qcow2").is_file());
        assert!(
            hidden_entries(dir.path()).is_empty(),
            "no temporary file left"
        );
    }

    #[test]
    fn the_observer_sees_the_temporary_file_then_the_end() {
        let (_dir, pool) = pool();
        let seen = std::sync::Mutex::new(Vec::new());
        let observe = |p: Option<&std::path::Path>| seen.lock().unwrap().push(p.is_some());
        pool.create_volume(
            &qcow2("o.qcow2", 1 << 20),
            CreateFlags::default(),
            Some(&observe),
        )
        .unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![true, false]);
    }

    #[test]
    fn a_second_create_of_a_name_fails_and_leaves_nothing() {
        let (dir, pool) = pool();
        let def = qcow2("a.qcow2", 1 << 20);
        pool.create_volume(&def, CreateFlags::default(), None)
            .unwrap();
        let err = pool
            .create_volume(&def, CreateFlags::default(), None)
            .unwrap_err();
        assert!(matches!(err, Error::VolumeExists { .. }), "{err}");
        assert!(hidden_entries(dir.path()).is_empty());
    }

    #[test]
    fn a_plan_larger_than_the_free_space_is_refused_before_any_file_exists() {
        let (dir, pool) = pool();
        let mut def = VolumeDef::new("huge.img", 1 << 60);
        def.allocation = Some(1 << 60);
        let err = pool
            .create_volume(&def, CreateFlags::default(), None)
            .unwrap_err();
        assert!(matches!(err, Error::NoSpace { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_clone_repeats_the_sources_definition() {
        let (_dir, pool) = pool();
        let mut def = qcow2("src.qcow2", 1 << 30);
        def.target.ext.preallocation = Some(Preallocation::Metadata);
        def.target.cluster_size = Some(1 << 16);
        let src = pool
            .create_volume(&def, CreateFlags::default(), None)
            .unwrap()
            .volume;
        let clone = pool.clone_definition(&src, "dst.qcow2");
        assert_eq!(clone.name, "dst.qcow2");
        assert_eq!(clone.capacity, Some(1 << 30));
        assert_eq!(clone.target.format, Some(VolFormat::Qcow2));
        assert!(clone.from_report);
        let copy = pool
            .clone_volume("src.qcow2", "dst.qcow2", CreateFlags::default(), false)
            .unwrap()
            .volume;
        assert_eq!(
            (copy.capacity, copy.image.format),
            (1 << 30, VolFormat::Qcow2)
        );
    }

    #[test]
    fn reflink_of_a_converting_copy_is_refused() {
        let (_dir, pool) = pool();
        pool.create_volume(&qcow2("src.qcow2", 1 << 20), CreateFlags::default(), None)
            .unwrap();
        let mut raw = VolumeDef::new("dst.img", 1 << 20);
        raw.target.format = Some(VolFormat::Raw);
        let err = pool
            .create_volume_from(&raw, &pool, "src.qcow2", CreateFlags::default(), true, None)
            .unwrap_err();
        assert!(matches!(err, Error::ReflinkNeedsExactCopy { .. }), "{err}");
    }
}
