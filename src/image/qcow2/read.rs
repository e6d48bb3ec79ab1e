//! Reading guest data out of an existing qcow2 image.
//!
//! Owns: the L1/L2 walk (standard and extended L2 entries), zero clusters and zero
//! subclusters, compressed clusters (deflate and zstd), and reads through to a backing image
//! for whatever the overlay does not allocate.
//! Must not: write to the image, or guess formats (the caller opens the backing image).
//!
//! Images with internal snapshots are read through their active L1 table; images with an
//! external data file or unknown incompatible features are refused, and so are encrypted
//! ones unless opened with their master key ([`Qcow2Image::open_encrypted`]: data clusters
//! are decrypted by `crate::image::crypt`, compressed ones refused).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::spec::{self, Header, OFLAG_COMPRESSED, OFLAG_ZERO, SUBCLUSTERS};
use crate::image::guest::{BlockStatus, GuestImage};
use crate::image::luks::SectorCipher;
use crate::image::{Corruption, Error, Unsupported, crypt};
use crate::model::Compression;

/// Bytes of L2 tables kept in memory.
const L2_CACHE_BYTES: u64 = 32 << 20;

/// How one guest cluster (or subcluster) is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Not allocated here: read the backing image (or zeros without one).
    Unallocated,
    /// Reads as zeros.
    Zero,
    /// Stored at this host offset.
    Data(u64),
    /// Compressed data at this host offset with this many bytes.
    Compressed { offset: u64, len: u64 },
}

/// A qcow2 image opened for reading guest data.
pub struct Qcow2Image {
    file: File,
    header: Header,
    l1: Vec<u64>,
    l2_cache: HashMap<u64, Vec<u64>>,
    backing: Option<Box<dyn GuestImage + Send>>,
    extended_l2: bool,
    zstd: bool,
    file_len: u64,
    /// The master key's cipher of an image with crypt_method 2.
    cipher: Option<SectorCipher>,
}

fn reading(source: io::Error) -> Error {
    Error::ReadingImage(source)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), Error> {
    file.read_exact_at(buf, offset).map_err(reading)
}

impl Qcow2Image {
    /// Opens an image whose header is `header`; `backing` reads what it does not allocate.
    pub fn open(
        file: File,
        header: Header,
        backing: Option<Box<dyn GuestImage + Send>>,
    ) -> Result<Qcow2Image, Error> {
        if header.crypt_method != 0 {
            return Err(Unsupported::Encrypted.into());
        }
        Self::open_unchecked(file, header, backing, None)
    }

    /// Opens a LUKS-encrypted image (crypt_method 2) whose master key's cipher is `cipher`:
    /// its data clusters read decrypted.
    pub fn open_encrypted(
        file: File,
        header: Header,
        backing: Option<Box<dyn GuestImage + Send>>,
        cipher: SectorCipher,
    ) -> Result<Qcow2Image, Error> {
        if header.crypt_method != spec::CRYPT_LUKS {
            return Err(Error::LuksHeaderMismatch);
        }
        Self::open_unchecked(file, header, backing, Some(cipher))
    }

    fn open_unchecked(
        file: File,
        header: Header,
        backing: Option<Box<dyn GuestImage + Send>>,
        cipher: Option<SectorCipher>,
    ) -> Result<Qcow2Image, Error> {
        if header.incompatible_features & spec::INCOMPAT_DATA_FILE != 0 {
            return Err(Unsupported::ExternalDataFile.into());
        }
        let unknown = header.incompatible_features & !spec::INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(Unsupported::IncompatibleFeatures(unknown).into());
        }
        let file_len = file.metadata().map_err(reading)?.len();
        let cs = header.cluster_size();
        let extended_l2 = header.incompatible_features & spec::INCOMPAT_EXTL2 != 0;
        let entry = if extended_l2 {
            spec::EXTENDED_L2_ENTRY_SIZE
        } else {
            spec::ENTRY_SIZE
        };
        let needed = header.size.div_ceil(cs).div_ceil(cs / entry);
        if u64::from(header.l1_size) < needed {
            return Err(Corruption::L1TooSmall {
                entries: header.l1_size,
                needed,
            }
            .into());
        }
        let l1_bytes = u64::from(header.l1_size) * spec::ENTRY_SIZE;
        if l1_bytes > spec::MAX_L1_BYTES
            || (l1_bytes > 0 && header.l1_table_offset.saturating_add(l1_bytes) > file_len)
        {
            return Err(Corruption::L1OutOfPlace.into());
        }
        let mut raw = vec![0u8; usize::try_from(l1_bytes).unwrap_or(0)];
        if !raw.is_empty() {
            read_exact_at(&file, &mut raw, header.l1_table_offset)?;
        }
        let l1 = spec::decode_entries(&raw);
        let zstd = header.compression() == Compression::Zstd;
        Ok(Qcow2Image {
            file,
            header,
            l1,
            l2_cache: HashMap::new(),
            backing,
            extended_l2,
            zstd,
            file_len,
            cipher,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    fn l2_entries(&self) -> u64 {
        let per = if self.extended_l2 { 2 } else { 1 };
        self.cluster_size() / (spec::ENTRY_SIZE * per)
    }

    /// The raw words of the L2 table at `offset` (two per entry with extended L2).
    fn l2_table(&mut self, offset: u64) -> Result<&[u64], Error> {
        if !self.l2_cache.contains_key(&offset) {
            let cs = self.cluster_size();
            if !offset.is_multiple_of(cs) || offset.saturating_add(cs) > self.file_len {
                return Err(Corruption::L2OutOfPlace(offset).into());
            }
            if (self.l2_cache.len() as u64 + 1) * cs > L2_CACHE_BYTES {
                self.l2_cache.clear();
            }
            let mut raw = vec![0u8; usize::try_from(cs).unwrap_or(0)];
            read_exact_at(&self.file, &mut raw, offset)?;
            self.l2_cache.insert(offset, spec::decode_entries(&raw));
        }
        Ok(self.l2_cache.get(&offset).map_or(&[][..], Vec::as_slice))
    }

    /// The mapping of the guest byte at `offset` and how many bytes from there share it.
    fn lookup(&mut self, offset: u64) -> Result<(Mapping, u64), Error> {
        let cs = self.cluster_size();
        let cluster = offset / cs;
        let in_cluster = offset % cs;
        let l2_entries = self.l2_entries();
        let l1_index = usize::try_from(cluster / l2_entries).unwrap_or(usize::MAX);
        let l2_index = usize::try_from(cluster % l2_entries).unwrap_or(0);
        let Some(&l1_entry) = self.l1.get(l1_index) else {
            return Ok((Mapping::Unallocated, cs - in_cluster));
        };
        let l2_offset = l1_entry & spec::L1E_OFFSET_MASK;
        if l2_offset == 0 {
            return Ok((Mapping::Unallocated, cs - in_cluster));
        }
        let extended = self.extended_l2;
        let cluster_bits = self.header.cluster_bits;
        let table = self.l2_table(l2_offset)?;
        let (entry, bitmap) = if extended {
            (table[2 * l2_index], table[2 * l2_index + 1])
        } else {
            (table[l2_index], 0)
        };
        if entry & OFLAG_COMPRESSED != 0 {
            let (host, len) = spec::compressed_extent(entry, cluster_bits);
            return Ok((Mapping::Compressed { offset: host, len }, cs - in_cluster));
        }
        let host = entry & spec::L2E_OFFSET_MASK;
        if !extended {
            let mapping = if entry & OFLAG_ZERO != 0 {
                Mapping::Zero
            } else if host == 0 {
                Mapping::Unallocated
            } else {
                Mapping::Data(host + in_cluster)
            };
            return Ok((mapping, cs - in_cluster));
        }
        let sub_size = cs / SUBCLUSTERS;
        let sub = in_cluster / sub_size;
        let state = |i: u64| -> Mapping {
            let allocated = bitmap >> i & 1 != 0;
            let zero = bitmap >> (32 + i) & 1 != 0;
            if zero {
                Mapping::Zero
            } else if allocated && host != 0 {
                Mapping::Data(host + i * sub_size)
            } else {
                Mapping::Unallocated
            }
        };
        let first = state(sub);
        let mut run = sub_size - in_cluster % sub_size;
        for i in sub + 1..SUBCLUSTERS {
            let same = match (first, state(i)) {
                (Mapping::Data(a), Mapping::Data(b)) => b == a + (i - sub) * sub_size,
                (a, b) => a == b,
            };
            if !same {
                break;
            }
            run += sub_size;
        }
        let first = match first {
            Mapping::Data(h) => Mapping::Data(h + in_cluster % sub_size),
            other => other,
        };
        Ok((first, run))
    }

    fn decompress(&self, offset: u64, len: u64, out: &mut [u8]) -> Result<(), Error> {
        let len = len.min(self.file_len.saturating_sub(offset));
        let mut input = vec![0u8; usize::try_from(len).unwrap_or(0)];
        read_exact_at(&self.file, &mut input, offset)?;
        let bad = || Error::from(Corruption::CompressedCluster(offset));
        if self.zstd {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut decoder = Decoder::new().map_err(reading)?;
            let mut inbuf = InBuffer::around(&input);
            let mut outbuf = OutBuffer::around(out);
            while outbuf.pos() < outbuf.capacity() {
                let before = (inbuf.pos(), outbuf.pos());
                decoder.run(&mut inbuf, &mut outbuf).map_err(|_| bad())?;
                if (inbuf.pos(), outbuf.pos()) == before {
                    return Err(bad());
                }
            }
            Ok(())
        } else {
            use miniz_oxide::inflate::TINFLStatus;
            use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
            let mut state = DecompressorOxide::new();
            let (status, _, written) = decompress(
                &mut state,
                &input,
                out,
                0,
                inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
            );
            match status {
                TINFLStatus::Done | TINFLStatus::HasMoreOutput if written == out.len() => Ok(()),
                _ => Err(bad()),
            }
        }
    }

    fn read_backing(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        match &mut self.backing {
            Some(b) => {
                let size = b.size();
                let avail = usize::try_from(size.saturating_sub(offset))
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                if avail > 0 {
                    b.read_at(&mut buf[..avail], offset)?;
                }
                buf[avail..].fill(0);
                Ok(())
            }
            None => {
                buf.fill(0);
                Ok(())
            }
        }
    }
}

impl GuestImage for Qcow2Image {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (mapping, run) = self.lookup(at)?;
            let n = usize::try_from(run)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match mapping {
                Mapping::Zero => dst.fill(0),
                Mapping::Unallocated => self.read_backing(dst, at)?,
                Mapping::Data(host) if self.cipher.is_some() => {
                    // qemu numbers a LUKS qcow2 image's sectors by host offset.
                    let cipher = self.cipher.as_ref().ok_or(Error::LuksHeaderMismatch)?;
                    crypt::read_decrypted(&self.file, self.file_len, cipher, dst, host, 0)?;
                }
                Mapping::Compressed { .. } if self.cipher.is_some() => {
                    return Err(Unsupported::EncryptedCompressed.into());
                }
                Mapping::Data(host) => {
                    // Bytes past the end of the file read as zeros, as in qemu.
                    let avail = usize::try_from(self.file_len.saturating_sub(host))
                        .unwrap_or(usize::MAX)
                        .min(n);
                    read_exact_at(&self.file, &mut dst[..avail], host)?;
                    dst[avail..].fill(0);
                }
                Mapping::Compressed { offset: host, len } => {
                    let cs = self.cluster_size();
                    let mut cluster = vec![0u8; usize::try_from(cs).unwrap_or(0)];
                    self.decompress(host, len, &mut cluster)?;
                    let start = usize::try_from(at % cs).unwrap_or(0);
                    dst.copy_from_slice(&cluster[start..start + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    fn status(&mut self, offset: u64, max_len: u64) -> Result<(BlockStatus, u64), Error> {
        let end = offset.saturating_add(max_len).min(self.size());
        let mut at = offset;
        let mut kind = None;
        while at < end {
            let (mapping, run) = self.lookup(at)?;
            let run = run.min(end - at);
            let (this, len) = match mapping {
                Mapping::Zero => (BlockStatus::Zero, run),
                Mapping::Data(_) | Mapping::Compressed { .. } => (BlockStatus::Data, run),
                Mapping::Unallocated => match &mut self.backing {
                    Some(b) if at < b.size() => {
                        let (s, n) = b.status(at, run.min(b.size() - at))?;
                        (s, n.clamp(1, run))
                    }
                    _ => (BlockStatus::Zero, run),
                },
            };
            match kind {
                None => kind = Some(this),
                Some(k) if k != this => break,
                Some(_) => {}
            }
            at += len;
        }
        Ok((kind.unwrap_or(BlockStatus::Zero), at - offset))
    }
}
