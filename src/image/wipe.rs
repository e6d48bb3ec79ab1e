//! Wiping a volume's data in place.
//!
//! Owns: the three algorithms qpool supports — `zero` writes zeros over every allocated
//! extent of the file, `random` writes random bytes over them (over the whole file for raw),
//! `trim` punches holes — and, for qcow2, leaving behind a valid empty image of the same
//! size, options, backing file and preallocation (libvirt 9.0 zeroes the header too and
//! leaves a raw file of zeros). The old bytes are overwritten and synced before the qcow2
//! metadata is rebuilt, so they are gone from the disk blocks, not only from the file. An
//! encrypted volume keeps its LUKS header (and so its passphrase): a raw LUKS volume has its
//! payload wiped, an encrypted qcow2 image is rebuilt with the header put back in its new
//! clusters.
//! Must not: choose which volume, or follow anything out of the pool (the caller opens it).

use std::fs::File;
use std::os::unix::fs::FileExt;

use zeroize::Zeroizing;

use super::file::Writing;
use super::luks;
use super::qcow2::{self, Layout, Qcow2Info};
use super::{Error, read_prefix};
use crate::model::{VolFormat, WipeAlgorithm};

/// The algorithms qpool implements; libvirt's multi-pass ones (which it runs through
/// `scrub`) are refused before any byte is touched.
pub const SUPPORTED: [WipeAlgorithm; 3] = [
    WipeAlgorithm::Zero,
    WipeAlgorithm::Trim,
    WipeAlgorithm::Random,
];

/// xoshiro256** seeded from the OS: fast enough to fill disks, never repeating a volume.
struct Random([u64; 4]);

impl Random {
    fn new() -> Random {
        let a = uuid::Uuid::new_v4().as_u64_pair();
        let b = uuid::Uuid::new_v4().as_u64_pair();
        Random([a.0 | 1, a.1, b.0, b.1])
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let s = &mut self.0;
            let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
            let t = s[1] << 17;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = s[3].rotate_left(45);
            chunk.copy_from_slice(&result.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Size of the buffers written.
const CHUNK: usize = 1 << 20;

fn overwrite(
    file: &File,
    start: u64,
    end: u64,
    random: Option<&mut Random>,
    writing: Writing<'_>,
) -> Result<(), Error> {
    let mut buf = vec![0u8; CHUNK];
    let mut rng = random;
    let mut at = start;
    while at < end {
        let n = usize::try_from(end - at).map_or(CHUNK, |left| left.min(CHUNK));
        if let Some(r) = rng.as_deref_mut() {
            r.fill(&mut buf[..n]);
        }
        file.write_all_at(&buf[..n], at)
            .map_err(|source| Error::WritingZeroes {
                offset: at,
                len: end - at,
                source,
            })?;
        at += n as u64;
        writing.advance(n as u64);
    }
    Ok(())
}

/// Overwrites the file's allocated extents (zero/random) or punches every hole (trim), then
/// syncs, so the old bytes leave the disk.
fn destroy(
    file: &File,
    algorithm: WipeAlgorithm,
    whole_file: bool,
    from: u64,
    writing: Writing<'_>,
) -> Result<(), Error> {
    let end = file.metadata().map_err(Error::ReadingImage)?.len();
    let len = end.saturating_sub(from);
    match algorithm {
        WipeAlgorithm::Trim => {
            if len > 0 {
                crate::sys::punch_hole(file, from, len).map_err(|source| Error::Allocating {
                    offset: from,
                    len,
                    source,
                })?;
            }
        }
        WipeAlgorithm::Zero | WipeAlgorithm::Random => {
            let mut rng = (algorithm == WipeAlgorithm::Random).then(Random::new);
            if whole_file {
                overwrite(file, from, end, rng.as_mut(), writing)?;
            } else {
                for data in crate::sys::data_ranges(file, from, len).map_err(Error::ReadingImage)? {
                    overwrite(file, data.start, data.end, rng.as_mut(), writing)?;
                }
            }
        }
        other => return Err(Error::UnsupportedWipe(other)),
    }
    file.sync_all().map_err(Error::Syncing)
}

/// The bytes wiping `file` overwrites: every byte of a raw file for `random`, its data
/// extents otherwise, nothing for `trim`.
pub fn bytes_to_wipe(file: &File, format: VolFormat, algorithm: WipeAlgorithm) -> u64 {
    let len = file.metadata().map_or(0, |m| m.len());
    match algorithm {
        WipeAlgorithm::Trim => 0,
        WipeAlgorithm::Random if format == VolFormat::Raw => len,
        _ => crate::sys::data_ranges(file, 0, len)
            .map_or(len, |ranges| ranges.iter().map(|r| r.end - r.start).sum()),
    }
}

/// Wipes a volume file of the given format. Raw: `zero` and `trim` keep the file's size and
/// sparseness pattern, `random` overwrites every byte. qcow2: the data is destroyed, then
/// the file is rebuilt in place (same inode) as an empty image with the same size, options,
/// backing file and preallocation. The bytes overwritten are reported to `writing`.
pub fn wipe(
    file: &File,
    format: VolFormat,
    algorithm: WipeAlgorithm,
    writing: Writing<'_>,
) -> Result<(), Error> {
    if !SUPPORTED.contains(&algorithm) {
        return Err(Error::UnsupportedWipe(algorithm));
    }
    match format {
        VolFormat::Raw => {
            // A raw LUKS volume keeps its header: only the payload is wiped.
            let prefix = read_prefix(file, luks::spec::PHDR_LEN).map_err(Error::ReadingHeader)?;
            let from = match luks::sniff(&prefix) {
                true => luks::LuksInfo::decode(&prefix)
                    .map_err(Error::BadLuksHeader)?
                    .payload_offset(),
                false => 0,
            };
            destroy(
                file,
                algorithm,
                algorithm == WipeAlgorithm::Random,
                from,
                writing,
            )
        }
        VolFormat::Qcow2 => {
            super::qcow2::gate::check(file)?;
            let prefix = read_prefix(file, 4096).map_err(Error::ReadingHeader)?;
            let info = Qcow2Info::read(file, &prefix)?;
            let prealloc = qcow2::resize::detect_preallocation(file)?;
            let opts = info.options();
            // Plan first: a refusal must come before any byte is destroyed.
            let layout = Layout::plan(&opts, prealloc)?;
            let luks_area = match (info.luks_area, &layout.luks) {
                (Some((offset, length)), Some(_)) => {
                    let len = usize::try_from(length).map_err(|_| Error::LuksHeaderMismatch)?;
                    let mut bytes = Zeroizing::new(vec![0u8; len]);
                    file.read_exact_at(&mut bytes, offset)
                        .map_err(Error::ReadingImage)?;
                    Some(bytes)
                }
                (None, None) => None,
                _ => return Err(Error::LuksHeaderMismatch),
            };
            destroy(file, algorithm, false, 0, writing)?;
            file.set_len(0)
                .map_err(|source| Error::SettingLength { len: 0, source })?;
            let header = luks_area
                .as_deref()
                .map(|b| qcow2::write::LuksArea::Copy(b));
            qcow2::write::write(&layout, &file, 0, header)?;
            Ok(())
        }
    }
}
