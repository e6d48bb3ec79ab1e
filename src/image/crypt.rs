//! Guest data of encrypted volumes: reading it decrypted, and writing it encrypted under a
//! new key (the re-encrypting copy).
//!
//! Owns: which sector number a LUKS payload byte is encrypted with, as qemu numbers them —
//! a qcow2 image with crypt_method 2 by the *host* offset of the data (qemu's
//! `crypt_physical_offset`, set for every crypt method but the legacy AES one), a raw LUKS
//! volume by the offset from the start of its payload —, [`read_decrypted`] (whole sectors
//! read, decrypted, the asked-for bytes kept), [`LuksRawImage`] (a raw LUKS volume as a
//! [`GuestImage`]), [`open_encrypted`], and [`fill_qcow2`] / [`fill_raw`] (the guest data
//! written encrypted into a new image).
//! Must not: derive keys or open LUKS headers (that is `luks`), plan the new image, or keep
//! decrypted data beyond the buffer a chunk moves through.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::file::Writing;
use super::guest::{BlockStatus, GuestImage, open_backing};
use super::luks::SectorCipher;
use super::luks::spec::SECTOR;
use super::qcow2::Layout;
use super::{Error, ImageInfo, qcow2};

/// Bytes moved per read and write of a re-encrypting copy (a multiple of [`SECTOR`]).
const CHUNK: u64 = 4 << 20;

fn too_large(value: u64) -> Error {
    Error::EncryptedTooLarge(value)
}

/// `usize` of a length bounded by a buffer of at most [`CHUNK`] bytes (plus a sector).
fn to_usize(value: u64) -> Result<usize, Error> {
    usize::try_from(value).map_err(|_| too_large(value))
}

/// Reads `buf.len()` bytes of guest data stored encrypted at file offset `at`: the whole
/// sectors around them are read (bytes past the end of the file as zeros, as qemu reads
/// them) and decrypted, the sector number being the sector's distance from `origin` in
/// [`SECTOR`]s (`origin` is 0 for qcow2, the payload offset for raw LUKS).
pub(crate) fn read_decrypted(
    file: &File,
    file_len: u64,
    cipher: &SectorCipher,
    buf: &mut [u8],
    at: u64,
    origin: u64,
) -> Result<(), Error> {
    let relative = at.checked_sub(origin).ok_or(too_large(at))?;
    let lead = relative % SECTOR;
    let start = at - lead;
    let first_sector = (relative - lead) / SECTOR;
    let len = lead
        .checked_add(buf.len() as u64)
        .and_then(|l| l.checked_next_multiple_of(SECTOR))
        .ok_or(too_large(at))?;
    let fill = |dst: &mut [u8]| -> Result<(), Error> {
        let avail = to_usize(file_len.saturating_sub(start).min(dst.len() as u64))?;
        file.read_exact_at(&mut dst[..avail], start)
            .map_err(Error::ReadingImage)?;
        dst[avail..].fill(0);
        cipher.decrypt(dst, first_sector);
        Ok(())
    };
    if lead == 0 && len == buf.len() as u64 {
        return fill(buf);
    }
    let mut sectors = vec![0u8; to_usize(len)?];
    fill(&mut sectors)?;
    let lead = to_usize(lead)?;
    buf.copy_from_slice(&sectors[lead..lead + buf.len()]);
    Ok(())
}

/// A raw LUKS volume as a guest image: its payload, decrypted. Every byte is data: a hole
/// in the payload reads as the decryption of zeros (what qemu gives the guest there), never
/// as zeros.
pub struct LuksRawImage {
    file: File,
    file_len: u64,
    payload_offset: u64,
    size: u64,
    cipher: SectorCipher,
}

impl LuksRawImage {
    /// The payload of the raw LUKS volume `file`, starting at `payload_offset`, opened with
    /// its master key's `cipher`.
    pub fn new(file: File, payload_offset: u64, cipher: SectorCipher) -> Result<Self, Error> {
        let file_len = file.metadata().map_err(Error::ReadingImage)?.len();
        Ok(LuksRawImage {
            file,
            file_len,
            payload_offset,
            size: file_len.saturating_sub(payload_offset),
            cipher,
        })
    }
}

impl GuestImage for LuksRawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let at = self
            .payload_offset
            .checked_add(offset)
            .ok_or(too_large(offset))?;
        read_decrypted(
            &self.file,
            self.file_len,
            &self.cipher,
            buf,
            at,
            self.payload_offset,
        )
    }

    fn status(&mut self, offset: u64, max_len: u64) -> Result<(BlockStatus, u64), Error> {
        let left = self.size.saturating_sub(offset).min(max_len);
        Ok((BlockStatus::Data, left.max(1)))
    }
}

/// Opens the encrypted volume `file` (at `path`, probed as `info`) for reading its guest
/// data decrypted with `cipher`, its master key's cipher ([`super::unlock`]). A qcow2
/// image's backing chain is followed as for a plain one (an encrypted backing image is
/// refused: its key is not this one).
pub fn open_encrypted(
    file: File,
    path: &Path,
    info: &ImageInfo,
    cipher: SectorCipher,
) -> Result<Box<dyn GuestImage + Send>, Error> {
    let luks = info.luks.as_ref().ok_or(Error::LuksHeaderMismatch)?;
    match &info.qcow2 {
        Some(q) => {
            let backing = open_backing(q, path, 0)?;
            Ok(Box::new(qcow2::read::Qcow2Image::open_encrypted(
                file,
                q.header.clone(),
                backing,
                cipher,
            )?))
        }
        None => Ok(Box::new(LuksRawImage::new(
            file,
            luks.payload_offset(),
            cipher,
        )?)),
    }
}

/// Reads guest bytes `at..at + buf.len()` of `src`, zeros past its end (a copy may be
/// larger than its source).
fn read_guest(src: &mut dyn GuestImage, buf: &mut [u8], at: u64) -> Result<(), Error> {
    let avail = to_usize(src.size().saturating_sub(at).min(buf.len() as u64))?;
    if avail > 0 {
        src.read_at(&mut buf[..avail], at)?;
    }
    buf[avail..].fill(0);
    Ok(())
}

/// Copies guest bytes `range` of `src` into `dst` encrypted with `cipher`: guest offset
/// `g` goes to file offset `host + (g - range.start)`, encrypted as sector
/// `(file offset - origin) / 512`. `range.start`, `host` and `origin` are sector-aligned; a
/// partial last sector is encrypted whole and written cut to the range.
#[allow(clippy::too_many_arguments)]
fn copy_encrypted(
    src: &mut dyn GuestImage,
    dst: &File,
    cipher: &SectorCipher,
    range: std::ops::Range<u64>,
    host: u64,
    origin: u64,
    buf: &mut [u8],
    writing: Writing<'_>,
) -> Result<(), Error> {
    let mut at = range.start;
    while at < range.end {
        let n = (range.end - at).min(CHUNK);
        let padded = to_usize(n.next_multiple_of(SECTOR))?;
        let chunk = &mut buf[..padded];
        read_guest(src, chunk, at)?;
        let to = host.checked_add(at - range.start).ok_or(too_large(host))?;
        let sector = to.checked_sub(origin).ok_or(too_large(to))? / SECTOR;
        cipher.encrypt(chunk, sector);
        dst.write_all_at(&chunk[..to_usize(n)?], to)
            .map_err(|source| Error::WritingMetadata { offset: to, source })?;
        writing.advance(n);
        at += n;
    }
    Ok(())
}

/// The bytes [`fill_qcow2`] writes: every mapped data cluster, cut at `capacity`.
pub fn qcow2_fill_bytes(layout: &Layout, capacity: u64) -> u64 {
    let cs = layout.cluster_size();
    layout
        .data_runs
        .iter()
        .map(|r| {
            let start = r.guest.saturating_mul(cs).min(capacity);
            let end = r
                .guest
                .saturating_add(r.count)
                .saturating_mul(cs)
                .min(capacity);
            end - start
        })
        .sum()
}

/// Writes the guest data of `src` encrypted with `cipher` (the new image's master key) into
/// every data cluster `layout` maps, whole (cut at `capacity`), at the host clusters it maps
/// them to: an allocated cluster of an encrypted image reads as the decryption of what it
/// holds, so none may be left as the zeros the layout wrote (a guest reads zeros only from
/// clusters left unmapped).
pub fn fill_qcow2(
    src: &mut dyn GuestImage,
    layout: &Layout,
    capacity: u64,
    cipher: &SectorCipher,
    dst: &File,
    writing: Writing<'_>,
) -> Result<(), Error> {
    let cs = layout.cluster_size();
    let mut buf = vec![0u8; to_usize(CHUNK)?];
    for run in &layout.data_runs {
        let bytes = |c: u64| c.checked_mul(cs).ok_or(too_large(c));
        let start = bytes(run.guest)?;
        let end = bytes(
            run.guest
                .checked_add(run.count)
                .ok_or(too_large(run.guest))?,
        )?
        .min(capacity);
        if start >= end {
            continue;
        }
        copy_encrypted(
            src,
            dst,
            cipher,
            start..end,
            bytes(run.host)?,
            0,
            &mut buf,
            writing,
        )?;
    }
    Ok(())
}

/// Writes the guest data of `src` encrypted with `cipher` into the whole payload (of
/// `capacity` bytes, starting at `payload_offset`) of a new raw LUKS volume: a hole in a
/// LUKS payload reads as the decryption of zeros, so every sector is written.
pub fn fill_raw(
    src: &mut dyn GuestImage,
    payload_offset: u64,
    capacity: u64,
    cipher: &SectorCipher,
    dst: &File,
    writing: Writing<'_>,
) -> Result<(), Error> {
    payload_offset
        .checked_add(capacity)
        .ok_or(too_large(capacity))?;
    let mut buf = vec![0u8; to_usize(CHUNK)?];
    copy_encrypted(
        src,
        dst,
        cipher,
        0..capacity,
        payload_offset,
        payload_offset,
        &mut buf,
        writing,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::luks::{LuksHeader, Passphrase};
    use crate::model::LuksCipher;

    fn cipher() -> SectorCipher {
        let header =
            LuksHeader::new(&Passphrase::new(b"p".to_vec()), &LuksCipher::default(), 1).unwrap();
        header.payload_cipher().unwrap()
    }

    #[test]
    fn unaligned_reads_decrypt_the_sectors_around_them() {
        let key = cipher();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let origin = 1024;
        let plain: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut stored = plain.clone();
        // Sector numbers count from `origin`: the data there is sector 0.
        key.encrypt(&mut stored, 0);
        let mut bytes = vec![0u8; 1024];
        bytes.extend_from_slice(&stored);
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let len = bytes.len() as u64;
        for (at, n) in [
            (0usize, 4096usize),
            (1, 10),
            (511, 2),
            (700, 3000),
            (4000, 96),
        ] {
            let mut buf = vec![0u8; n];
            read_decrypted(&file, len, &key, &mut buf, origin + at as u64, origin).unwrap();
            assert_eq!(buf, plain[at..at + n], "{at}+{n}");
        }
        // Past the end of the file: the decryption of zeros, as qemu reads it.
        let mut past = vec![0u8; 512];
        read_decrypted(&file, len, &key, &mut past, len, origin).unwrap();
        let mut expected = vec![0u8; 512];
        key.decrypt(&mut expected, 8);
        assert_eq!(past, expected);
    }

    #[test]
    fn a_raw_luks_payload_is_all_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        file.set_len(4096 + 8192).unwrap();
        let mut image = LuksRawImage::new(File::open(&path).unwrap(), 4096, cipher()).unwrap();
        assert_eq!(image.size(), 8192);
        assert_eq!(image.status(0, 1 << 20).unwrap(), (BlockStatus::Data, 8192));
        let mut hole = vec![0u8; 512];
        image.read_at(&mut hole, 512).unwrap();
        assert!(hole.iter().any(|&b| b != 0), "a hole reads as garbage");
    }
}
