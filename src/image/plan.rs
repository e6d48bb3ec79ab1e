//! A new image decided before any byte is written, and writing it.
//!
//! Owns: [`ImagePlan`] (format, capacity, preallocation, the bytes reserved on top, the qcow2
//! layout, the LUKS encryption of an encrypted image: [`Encryption`]) and the one formula for the allocation and file length a new image will have
//! (what `explain` prints and what the pool checks against free space), and [`create`].
//! Must not: choose the preallocation or the options (the pool and the policy do), or name
//! and place files.

use std::fs::File;
use std::ops::Range;

use super::file::{WriteReport, Writing, with_target};
use super::luks::{self, LuksHeader, spec as luks_spec};
use super::qcow2::{self, Layout, Options};
use super::{Error, Unsupported, raw};
use crate::model::{LuksCipher, Preallocation, VolFormat};
use crate::units::round_up;

/// A new image's LUKS encryption: the cipher, and the time its key derivation is calibrated
/// to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encryption {
    /// The cipher.
    pub cipher: LuksCipher,
    /// PBKDF2 time of key slot 0, in milliseconds (qemu-img's `iter-time`).
    pub iter_time_ms: u32,
}

/// Everything about a new image before it is written.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    format: VolFormat,
    capacity: u64,
    preallocation: Preallocation,
    reserve: u64,
    qcow2: Option<(Options, Layout)>,
    block: u64,
    data_bytes: u64,
    encryption: Option<Encryption>,
    /// The LUKS header's length (0 when not encrypted).
    luks_length: u64,
}

impl ImagePlan {
    /// A raw image of `capacity` bytes; `reserve` bytes at the start are reserved on top of
    /// `preallocation` (the partial-allocation row of the policy). `block` is the
    /// filesystem's block size, for the expected allocation.
    pub fn raw(
        capacity: u64,
        preallocation: Preallocation,
        reserve: u64,
        block: u64,
    ) -> Result<ImagePlan, Error> {
        if preallocation == Preallocation::Metadata {
            return Err(Error::RawMetadata);
        }
        Ok(ImagePlan {
            format: VolFormat::Raw,
            capacity,
            preallocation,
            reserve,
            qcow2: None,
            block: block.max(1),
            data_bytes: 0,
            encryption: None,
            luks_length: 0,
        })
    }

    /// A qcow2 image made with `options` (checked as qemu-img checks them).
    pub fn qcow2(
        options: Options,
        preallocation: Preallocation,
        reserve: u64,
        block: u64,
    ) -> Result<ImagePlan, Error> {
        let layout = Layout::plan(&options, preallocation)?;
        Ok(ImagePlan {
            format: VolFormat::Qcow2,
            capacity: layout.header.size,
            preallocation,
            reserve,
            qcow2: Some((options, layout)),
            block: block.max(1),
            data_bytes: 0,
            encryption: None,
            luks_length: 0,
        })
    }

    /// The same image made to receive guest data in `extents` (guest byte ranges, sorted):
    /// a qcow2 layout maps the clusters that hold them, as `qemu-img convert` lays them out.
    pub fn with_data(mut self, extents: &[Range<u64>]) -> Result<ImagePlan, Error> {
        self.data_bytes = extents.iter().map(|e| e.end - e.start).sum();
        if let Some((options, layout)) = &mut self.qcow2 {
            let clusters = super::copy::clusters_of(extents, options.cluster_size);
            self.data_bytes =
                clusters.iter().map(|r| r.end - r.start).sum::<u64>() * options.cluster_size;
            *layout = Layout::plan_with_data(options, self.preallocation, &clusters)?;
        }
        Ok(self)
    }

    /// The same image encrypted with LUKS: a raw image gets the header in front of its
    /// payload; a qcow2 image gets the header's clusters and crypt_method 2.
    pub fn with_encryption(mut self, encryption: Encryption) -> Result<ImagePlan, Error> {
        if self.data_bytes > 0 {
            return Err(Unsupported::EncryptingData.into());
        }
        let length = luks::header_length(&encryption.cipher);
        if let Some((options, layout)) = &mut self.qcow2 {
            options.luks_length = Some(length);
            *layout = Layout::plan(options, self.preallocation)?;
        } else {
            length
                .checked_add(self.capacity)
                .ok_or(Error::EncryptedTooLarge(self.capacity))?;
        }
        self.encryption = Some(encryption);
        self.luks_length = length;
        Ok(self)
    }

    /// The encryption of an encrypted image.
    pub fn encryption(&self) -> Option<&Encryption> {
        self.encryption.as_ref()
    }

    /// The LUKS header's length of an encrypted image (0 when not encrypted).
    pub fn luks_length(&self) -> u64 {
        self.luks_length
    }

    /// The format.
    pub fn format(&self) -> VolFormat {
        self.format
    }

    /// Guest-visible size (qcow2: rounded up to 512 bytes, as qemu-img rounds).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The preallocation mode.
    pub fn preallocation(&self) -> Preallocation {
        self.preallocation
    }

    /// Bytes of guest data reserved at the start on top of the mode.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// The qcow2 creation options, for a qcow2 image.
    pub fn qcow2_options(&self) -> Option<&Options> {
        self.qcow2.as_ref().map(|(options, _)| options)
    }

    /// Whether writing this image asks the filesystem to `fallocate`.
    pub fn needs_fallocate(&self) -> bool {
        self.preallocation == Preallocation::Falloc || self.reserve > 0
    }

    /// The expected `st_blocks * 512` of the finished file: metadata widened to whole blocks,
    /// plus the larger of the preallocated data, the reserved prefix and the data copied in.
    pub fn expected_allocation(&self) -> u64 {
        let round = |v: u64| round_up(v, self.block).unwrap_or(v);
        let preallocated = matches!(
            self.preallocation,
            Preallocation::Falloc | Preallocation::Full
        );
        match &self.qcow2 {
            None if self.encryption.is_some() => {
                // A re-encrypted copy writes the whole payload into a reserved file.
                if preallocated || self.data_bytes > 0 {
                    return round(self.luks_length.saturating_add(self.capacity));
                }
                // The phdr's block and key slot 0's material are written.
                let key_material = self.luks_length.min(
                    luks_spec::Placement::for_key(
                        self.encryption.map_or(64, |e| e.cipher.key_bytes()),
                    )
                    .area_sectors
                        * luks_spec::SECTOR,
                );
                round(luks_spec::PHDR_LEN as u64)
                    + round(key_material)
                    + round(self.reserve.min(self.capacity))
            }
            None => {
                let reserved = if preallocated {
                    self.capacity
                } else {
                    self.reserve.min(self.capacity)
                };
                round(reserved.max(self.data_bytes))
            }
            Some((_, layout)) => {
                let data = if preallocated { layout.data_bytes() } else { 0 };
                let reserved: u64 = layout
                    .guest_prefix_extents(self.reserve)
                    .iter()
                    .map(|r| r.end - r.start)
                    .sum();
                layout.metadata_allocation(self.block) + data.max(reserved).max(self.data_bytes)
            }
        }
    }

    /// The expected `st_size` of the finished file.
    pub fn expected_physical(&self) -> u64 {
        match &self.qcow2 {
            None => self.capacity.saturating_add(self.luks_length),
            Some((_, layout)) => layout.file_length,
        }
    }

    /// The bytes of zeros writing this image moves: the data area of `full`, and of
    /// `falloc` or the reserved prefix where `fallocate` does not work (0 for a write that
    /// only reserves, which takes no time).
    pub fn bytes_to_write(&self, fallocate: bool) -> u64 {
        let data = match &self.qcow2 {
            Some((_, layout)) => layout.data_bytes(),
            None => self.capacity.saturating_add(self.luks_length),
        };
        match self.preallocation {
            Preallocation::Full => data,
            Preallocation::Falloc if !fallocate => data,
            _ if !fallocate => self.reserve.min(self.capacity),
            _ => 0,
        }
    }

    /// The qcow2 layout, for the writers of this module's siblings.
    pub(super) fn layout(&self) -> Option<&Layout> {
        self.qcow2.as_ref().map(|(_, layout)| layout)
    }
}

/// Writes the planned image into the empty `file`: the qcow2 metadata (and its
/// preallocation), or the raw file. Without `fallocate`, reservations are written as zeros;
/// zeros written are reported to `writing`'s progress. An encrypted plan needs
/// [`create_encrypted`].
pub fn create(plan: &ImagePlan, file: &File, writing: Writing<'_>) -> Result<WriteReport, Error> {
    if plan.encryption.is_some() {
        return Err(Error::LuksHeaderMismatch);
    }
    with_target(file, writing, |target| match plan.layout() {
        Some(layout) => qcow2::write::write(layout, target, plan.reserve, None),
        None => raw::create(target, plan.capacity, plan.preallocation, plan.reserve),
    })
}

/// Builds the LUKS header of an encrypted plan under `passphrase` (this takes the
/// plan's iteration time, twice over an eighth) and writes the image with it into the empty
/// `file`.
pub fn create_encrypted(
    plan: &ImagePlan,
    passphrase: &luks::Passphrase,
    file: &File,
    writing: Writing<'_>,
) -> Result<WriteReport, Error> {
    let encryption = plan.encryption.ok_or(Error::LuksHeaderMismatch)?;
    let header = LuksHeader::new(passphrase, &encryption.cipher, encryption.iter_time_ms)?;
    if header.length != plan.luks_length {
        return Err(Error::LuksHeaderMismatch);
    }
    with_target(file, writing, |target| match plan.layout() {
        Some(layout) => qcow2::write::write(
            layout,
            target,
            plan.reserve,
            Some(qcow2::write::LuksArea::New(&header)),
        ),
        None => raw::create_luks(
            target,
            &header,
            plan.capacity,
            plan.preallocation,
            plan.reserve,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn qcow2_plan(size: u64, mode: Preallocation, reserve: u64) -> ImagePlan {
        let options = Options {
            size,
            ..Options::default()
        };
        ImagePlan::qcow2(options, mode, reserve, 4096).unwrap()
    }

    #[test]
    fn raw_allocation_is_what_gets_reserved() {
        let thin = ImagePlan::raw(GIB, Preallocation::Off, 0, 4096).unwrap();
        assert_eq!(thin.expected_allocation(), 0);
        let partial = ImagePlan::raw(GIB, Preallocation::Off, 1000, 4096).unwrap();
        assert_eq!(partial.expected_allocation(), 4096, "one whole block");
        let full = ImagePlan::raw(GIB, Preallocation::Falloc, 0, 4096).unwrap();
        assert_eq!(full.expected_allocation(), GIB);
        assert_eq!(full.expected_physical(), GIB);
        assert!(matches!(
            ImagePlan::raw(GIB, Preallocation::Metadata, 0, 4096),
            Err(Error::RawMetadata)
        ));
    }

    #[test]
    fn qcow2_allocation_adds_data_only_when_preallocated_or_reserved() {
        let off = qcow2_plan(GIB, Preallocation::Off, 0);
        let falloc = qcow2_plan(GIB, Preallocation::Falloc, 0);
        let partial = qcow2_plan(GIB, Preallocation::Metadata, 256 << 20);
        assert!(off.expected_allocation() < 1 << 20, "thin is metadata only");
        assert!(falloc.expected_allocation() >= GIB);
        let reserved = partial.expected_allocation();
        assert!(
            (256 << 20..(256 << 20) + (1 << 20)).contains(&reserved),
            "{reserved}"
        );
        assert!(partial.needs_fallocate() && falloc.needs_fallocate() && !off.needs_fallocate());
    }

    #[test]
    fn a_conversion_counts_the_clusters_its_data_lands_in() {
        let plan = qcow2_plan(GIB, Preallocation::Off, 0)
            .with_data(&[0..1, 65536 * 10..65536 * 10 + 5])
            .unwrap();
        let metadata_only = qcow2_plan(GIB, Preallocation::Off, 0).expected_allocation();
        assert!(plan.expected_allocation() >= metadata_only + 2 * 65536);
        let raw = ImagePlan::raw(GIB, Preallocation::Off, 0, 4096)
            .unwrap()
            .with_data(&[0..10_000])
            .unwrap();
        assert_eq!(raw.expected_allocation(), 12288);
    }

    #[test]
    fn an_encrypted_raw_image_is_its_header_then_its_payload() {
        let enc = Encryption {
            cipher: LuksCipher::default(),
            iter_time_ms: 1,
        };
        let sparse = ImagePlan::raw(GIB, Preallocation::Off, 0, 4096)
            .unwrap()
            .with_encryption(enc)
            .unwrap();
        // qemu-img's raw LUKS file: 2,068,480 header bytes before the payload; only the
        // header's first block and key slot 0's 256,000 bytes are written.
        assert_eq!(sparse.expected_physical(), GIB + 2_068_480);
        assert_eq!(sparse.expected_allocation(), 4096 + 258_048);
        let falloc = ImagePlan::raw(GIB, Preallocation::Falloc, 0, 4096)
            .unwrap()
            .with_encryption(enc)
            .unwrap();
        assert_eq!(falloc.expected_allocation(), GIB + 2_068_480);
        let qcow2 = qcow2_plan(GIB, Preallocation::Off, 0)
            .with_encryption(enc)
            .unwrap();
        assert_eq!(qcow2.expected_physical(), 2_359_296);
        let copy = qcow2_plan(GIB, Preallocation::Off, 0)
            .with_data(&[0..1])
            .unwrap();
        assert!(matches!(
            copy.with_encryption(enc),
            Err(Error::Unsupported(Unsupported::EncryptingData))
        ));
    }

    #[test]
    fn qcow2_capacity_rounds_to_512_like_qemu_img() {
        let plan = qcow2_plan(1000, Preallocation::Off, 0);
        assert_eq!(plan.capacity(), 1024);
    }
}
