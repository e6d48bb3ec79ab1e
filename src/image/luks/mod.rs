//! LUKS1 volumes as qemu's `block-luks` writes them: a new header with its key material, and
//! what an existing header says.
//!
//! Owns: the passphrase in memory ([`Passphrase`], wiped on drop), key generation from the
//! system's random source, PBKDF2 calibrated to an iteration time (qemu's rule: the
//! master-key digest gets an eighth of the slot's time, never fewer than 1000 iterations),
//! the anti-forensic splitter, AES-XTS sector encryption with plain/plain64 IVs
//! ([`SectorCipher`]), building a header ([`LuksHeader::new`]) and reading one back
//! ([`LuksInfo`], [`unlock`]). Every key is zeroed when dropped.
//! Must not: place the header in a file (qcow2 and raw do), log or print a passphrase or a
//! key, or choose the cipher (the model's [`LuksCipher`] comes from the caller).

pub mod spec;

use std::time::{Duration, Instant};

use aes::cipher::KeyInit;
use aes::{Aes128, Aes192, Aes256};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use thiserror::Error;
use xts_mode::Xts128;
use zeroize::{Zeroize, Zeroizing};

use crate::model::{CipherMode, HashAlg, IvGen, LuksCipher};
use spec::{KeySlot, Phdr, Placement, SpecError};

/// qemu-img's default key-derivation time for a key slot, in milliseconds.
pub const DEFAULT_ITER_TIME_MS: u32 = 2000;

/// A LUKS sector in bytes, for the cipher's data units.
const SECTOR_BYTES: usize = 512;

/// How long calibration runs PBKDF2 at least before it trusts its rate.
const CALIBRATION_TIME: Duration = Duration::from_millis(40);

/// A passphrase, wiped from memory when dropped; never printed (its `Debug` hides it).
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Takes the passphrase's bytes (qemu uses a secret's bytes as they are).
    pub fn new(bytes: Vec<u8>) -> Passphrase {
        Passphrase(Zeroizing::new(bytes))
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<hidden>)")
    }
}

/// Failures of building or opening a LUKS header, one variant per failing operation.
#[derive(Debug, Error)]
pub enum Error {
    /// The system's random source failed.
    #[error("failed to read random bytes for the LUKS keys")]
    Random(#[source] getrandom::Error),
    /// The calibrated iteration count does not fit the header's 32 bits.
    #[error(
        "{milliseconds} ms of PBKDF2 need more iterations than a LUKS header holds; choose a shorter iteration time"
    )]
    TooManyIterations {
        /// The iteration time asked for.
        milliseconds: u32,
    },
    /// The header fields could not be encoded or decoded.
    #[error("invalid LUKS header")]
    Header(#[from] SpecError),
    /// The header names a cipher, mode, IV generator or hash qpool does not implement.
    #[error(
        "LUKS cipher {0} is not supported (qpool supports aes-xts-plain64/plain with sha1, sha256 or sha512)"
    )]
    UnsupportedCipher(String),
    /// No enabled key slot opens with the passphrase.
    #[error("the passphrase opens no key slot of the LUKS header")]
    WrongPassphrase,
    /// A key slot that points outside the header.
    #[error("LUKS key slot {0} is malformed")]
    BadKeySlot(usize),
}

fn random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(Error::Random)
}

/// PBKDF2-HMAC with `hash` into `out`.
fn pbkdf2(hash: HashAlg, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    match hash {
        HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, out),
        HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out),
        HashAlg::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, out),
    }
}

/// `hash(data…)`, for the splitter's diffusion.
fn digest(hash: HashAlg, parts: &[&[u8]], out: &mut Vec<u8>) {
    out.clear();
    match hash {
        HashAlg::Sha1 => {
            let mut h = Sha1::new();
            parts.iter().for_each(|p| h.update(p));
            out.extend_from_slice(&h.finalize());
        }
        HashAlg::Sha256 => {
            let mut h = Sha256::new();
            parts.iter().for_each(|p| h.update(p));
            out.extend_from_slice(&h.finalize());
        }
        HashAlg::Sha512 => {
            let mut h = Sha512::new();
            parts.iter().for_each(|p| h.update(p));
            out.extend_from_slice(&h.finalize());
        }
    }
}

/// PBKDF2 speed of `hash` on this machine: output blocks (of one digest each) per second.
fn blocks_per_second(hash: HashAlg) -> f64 {
    let mut out = Zeroizing::new(vec![0u8; hash.digest_len()]);
    let mut iterations: u32 = 1 << 10;
    // The thread's CPU time, as qemu measures it: a busy machine does not make PBKDF2 look
    // slower than it is. Wall time where that clock cannot be read.
    let cpu = || crate::sys::thread_cpu_time().ok();
    loop {
        let (start, wall) = (cpu(), Instant::now());
        pbkdf2(
            hash,
            b"qpool calibration",
            &[0u8; spec::SALT_LEN],
            iterations,
            &mut out,
        );
        let took = match (start, cpu()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => wall.elapsed(),
        };
        if took >= CALIBRATION_TIME || iterations >= 1 << 30 {
            return f64::from(iterations) / took.as_secs_f64().max(1e-9);
        }
        iterations = iterations.saturating_mul(2);
    }
}

/// The iterations that take `ms` milliseconds for an output of `out_len` bytes, divided by
/// `divisor` (qemu gives the master-key digest an eighth), at least [`spec::MIN_ITERATIONS`].
fn iterations_for(
    rate: f64,
    hash: HashAlg,
    out_len: usize,
    ms: u32,
    divisor: u32,
) -> Result<u32, Error> {
    let blocks = out_len.div_ceil(hash.digest_len()).max(1);
    let wanted = (rate * f64::from(ms) / 1000.0 / blocks as f64 / f64::from(divisor)).round();
    if !wanted.is_finite() || wanted > f64::from(u32::MAX) {
        return Err(Error::TooManyIterations { milliseconds: ms });
    }
    // Checked above: 0 ≤ wanted ≤ u32::MAX (a negative rate is clamped to 0).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let iterations = wanted.max(0.0) as u32;
    Ok(iterations.max(spec::MIN_ITERATIONS))
}

/// The anti-forensic diffusion: each digest-sized piece `i` of `block` becomes
/// `hash(be32(i) ‖ piece)` (the last piece truncated).
fn diffuse(hash: HashAlg, block: &mut [u8]) {
    let len = hash.digest_len();
    let mut out = Vec::with_capacity(len);
    for (i, piece) in block.chunks_mut(len).enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
        digest(hash, &[&index, piece], &mut out);
        let n = piece.len();
        piece.copy_from_slice(&out[..n]);
    }
    out.zeroize();
}

/// Splits `key` into `stripes` blocks: all random but the last, which is the key XOR the
/// diffused XOR of the others (LUKS's AF-split).
fn af_split(hash: HashAlg, key: &[u8], stripes: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
    let n = key.len();
    let count = usize::try_from(stripes).unwrap_or(0);
    let mut out = Zeroizing::new(vec![0u8; n * count]);
    let mut acc = Zeroizing::new(vec![0u8; n]);
    let last = count.saturating_sub(1);
    random(&mut out[..n * last])?;
    for stripe in out[..n * last].chunks(n) {
        acc.iter_mut().zip(stripe).for_each(|(a, s)| *a ^= s);
        diffuse(hash, &mut acc);
    }
    for ((o, a), k) in out[n * last..].iter_mut().zip(acc.iter()).zip(key) {
        *o = a ^ k;
    }
    Ok(out)
}

/// The inverse of [`af_split`].
fn af_merge(hash: HashAlg, split: &[u8], key_len: usize) -> Zeroizing<Vec<u8>> {
    let mut acc = Zeroizing::new(vec![0u8; key_len]);
    let stripes: Vec<&[u8]> = split.chunks(key_len).collect();
    let Some((last, rest)) = stripes.split_last() else {
        return acc;
    };
    for stripe in rest {
        acc.iter_mut().zip(stripe.iter()).for_each(|(a, s)| *a ^= s);
        diffuse(hash, &mut acc);
    }
    acc.iter_mut().zip(last.iter()).for_each(|(a, s)| *a ^= s);
    acc
}

/// AES-XTS over 512-byte sectors, the tweak from the sector number (plain64: 64 bits;
/// plain: the low 32), little-endian as dm-crypt and qemu make it.
pub struct SectorCipher {
    xts: XtsAes,
    ivgen: IvGen,
}

enum XtsAes {
    A128(Box<Xts128<Aes128>>),
    A192(Box<Xts128<Aes192>>),
    A256(Box<Xts128<Aes256>>),
}

impl SectorCipher {
    /// The cipher of `cipher` keyed with `key` (two AES keys for XTS). `None` for a key
    /// length AES-XTS does not have.
    pub fn new(cipher: &LuksCipher, key: &[u8]) -> Option<SectorCipher> {
        let CipherMode::Xts = cipher.mode;
        let half = key.len() / 2;
        let (k1, k2) = key.split_at(half);
        let xts = match key.len() {
            32 => XtsAes::A128(Box::new(Xts128::new(
                Aes128::new_from_slice(k1).ok()?,
                Aes128::new_from_slice(k2).ok()?,
            ))),
            48 => XtsAes::A192(Box::new(Xts128::new(
                Aes192::new_from_slice(k1).ok()?,
                Aes192::new_from_slice(k2).ok()?,
            ))),
            64 => XtsAes::A256(Box::new(Xts128::new(
                Aes256::new_from_slice(k1).ok()?,
                Aes256::new_from_slice(k2).ok()?,
            ))),
            _ => return None,
        };
        Some(SectorCipher {
            xts,
            ivgen: cipher.ivgen,
        })
    }

    fn tweak(ivgen: IvGen, sector: u128) -> [u8; 16] {
        // The sector number's low 64 (plain64) or 32 (plain) bits, little-endian.
        let bytes = sector.to_le_bytes();
        let keep = match ivgen {
            IvGen::Plain64 => 8,
            IvGen::Plain => 4,
        };
        let mut t = [0u8; 16];
        t[..keep].copy_from_slice(&bytes[..keep]);
        t
    }

    /// Encrypts whole 512-byte sectors in place; the first is sector `first`.
    pub fn encrypt(&self, buf: &mut [u8], first: u64) {
        let ivgen = self.ivgen;
        let tweak = move |s: u128| Self::tweak(ivgen, s);
        let sector = SECTOR_BYTES;
        match &self.xts {
            XtsAes::A128(x) => x.encrypt_area(buf, sector, u128::from(first), tweak),
            XtsAes::A192(x) => x.encrypt_area(buf, sector, u128::from(first), tweak),
            XtsAes::A256(x) => x.encrypt_area(buf, sector, u128::from(first), tweak),
        }
    }

    /// Decrypts whole 512-byte sectors in place; the first is sector `first`.
    pub fn decrypt(&self, buf: &mut [u8], first: u64) {
        let ivgen = self.ivgen;
        let tweak = move |s: u128| Self::tweak(ivgen, s);
        let sector = SECTOR_BYTES;
        match &self.xts {
            XtsAes::A128(x) => x.decrypt_area(buf, sector, u128::from(first), tweak),
            XtsAes::A192(x) => x.decrypt_area(buf, sector, u128::from(first), tweak),
            XtsAes::A256(x) => x.decrypt_area(buf, sector, u128::from(first), tweak),
        }
    }
}

/// The LUKS cipher mode text: `xts-plain64`, or `xts-plain64:sha256` with an IV hash.
fn mode_spec(cipher: &LuksCipher) -> String {
    match cipher.ivgen_hash {
        Some(h) => format!(
            "{}-{}:{}",
            cipher.mode.as_str(),
            cipher.ivgen.as_str(),
            h.as_str()
        ),
        None => format!("{}-{}", cipher.mode.as_str(), cipher.ivgen.as_str()),
    }
}

/// A new LUKS header with its key material, ready to be written at the start of a LUKS
/// area (offset 0 of a raw volume, the header clusters of a qcow2 image).
pub struct LuksHeader {
    /// The encoded phdr (written at the area's offset 0).
    pub phdr: [u8; spec::PHDR_LEN],
    /// Key slot 0's encrypted, split key material (written at [`Self::key_material_offset`]).
    pub key_material: Zeroizing<Vec<u8>>,
    /// Where the key material goes, in bytes from the area's start.
    pub key_material_offset: u64,
    /// The whole header's length: the payload offset, in bytes.
    pub length: u64,
    master_key: Zeroizing<Vec<u8>>,
    cipher: LuksCipher,
}

impl std::fmt::Debug for LuksHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuksHeader")
            .field("length", &self.length)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// The header length (payload offset) a new header for `cipher` has.
pub fn header_length(cipher: &LuksCipher) -> u64 {
    Placement::for_key(cipher.key_bytes()).payload_bytes()
}

impl LuksHeader {
    /// Builds a header as qemu-img does: a random master key, its PBKDF2 digest, and key slot
    /// 0 holding it under `passphrase`, each PBKDF2 calibrated to `iter_time_ms` on this
    /// machine (the digest to an eighth of it); slots 1–7 disabled.
    pub fn new(
        passphrase: &Passphrase,
        cipher: &LuksCipher,
        iter_time_ms: u32,
    ) -> Result<LuksHeader, Error> {
        let key_bytes = cipher.key_bytes();
        let hash = cipher.hash;
        let place = Placement::for_key(key_bytes);
        let mut master_key = Zeroizing::new(vec![0u8; key_bytes]);
        random(&mut master_key)?;
        let mut mk_digest_salt = [0u8; spec::SALT_LEN];
        random(&mut mk_digest_salt)?;
        let mut slot_salt = [0u8; spec::SALT_LEN];
        random(&mut slot_salt)?;

        let rate = blocks_per_second(hash);
        let mk_digest_iter = iterations_for(rate, hash, spec::DIGEST_LEN, iter_time_ms, 8)?;
        let slot_iterations = iterations_for(rate, hash, key_bytes, iter_time_ms, 1)?;

        let mut mk_digest = [0u8; spec::DIGEST_LEN];
        pbkdf2(
            hash,
            &master_key,
            &mk_digest_salt,
            mk_digest_iter,
            &mut mk_digest,
        );

        let mut slot_key = Zeroizing::new(vec![0u8; key_bytes]);
        pbkdf2(
            hash,
            passphrase.bytes(),
            &slot_salt,
            slot_iterations,
            &mut slot_key,
        );
        let mut key_material = af_split(hash, &master_key, spec::STRIPES)?;
        let slot_cipher =
            SectorCipher::new(cipher, &slot_key).ok_or_else(|| unsupported(cipher))?;
        // The split key is a whole number of sectors for every AES key size (key_bytes × 4000
        // is a multiple of 512); qemu encrypts it from sector 0.
        slot_cipher.encrypt(&mut key_material, 0);

        let disabled = |i: usize| KeySlot {
            active: spec::SLOT_DISABLED,
            iterations: 0,
            salt: [0; spec::SALT_LEN],
            key_material_offset: sector_u32(place.slot_sector(i)),
            stripes: spec::STRIPES,
        };
        let mut key_slots: [KeySlot; spec::KEY_SLOTS] = std::array::from_fn(disabled);
        key_slots[0].active = spec::SLOT_ENABLED;
        key_slots[0].iterations = slot_iterations;
        key_slots[0].salt = slot_salt;
        let phdr = Phdr {
            cipher_name: LuksCipher::NAME.to_string(),
            cipher_mode: mode_spec(cipher),
            hash_spec: hash.as_str().to_string(),
            payload_offset: sector_u32(place.payload_sectors),
            key_bytes: u32::try_from(key_bytes).unwrap_or(u32::MAX),
            mk_digest,
            mk_digest_salt,
            mk_digest_iter,
            uuid: uuid::Uuid::new_v4().hyphenated().to_string(),
            key_slots,
        }
        .encode()?;
        Ok(LuksHeader {
            phdr,
            key_material,
            key_material_offset: place.slot_sector(0) * spec::SECTOR,
            length: place.payload_bytes(),
            master_key,
            cipher: *cipher,
        })
    }

    /// The payload cipher (for tests and for writing guest data).
    pub fn payload_cipher(&self) -> Option<SectorCipher> {
        SectorCipher::new(&self.cipher, &self.master_key)
    }
}

/// A sector count of the placement (at most a few thousand) as the header's u32.
fn sector_u32(sectors: u64) -> u32 {
    u32::try_from(sectors).unwrap_or(u32::MAX)
}

fn unsupported(cipher: &LuksCipher) -> Error {
    cipher_error(
        LuksCipher::NAME,
        &mode_spec(cipher),
        cipher.hash.as_str(),
        cipher.key_bytes(),
    )
}

fn cipher_error(name: &str, mode: &str, hash: &str, key_bytes: impl std::fmt::Display) -> Error {
    Error::UnsupportedCipher(format!(
        "'{name}-{mode}' with hash '{hash}' and a {key_bytes}-byte key"
    ))
}

/// What an existing LUKS header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksInfo {
    /// The decoded phdr.
    pub phdr: Phdr,
    /// The cipher in libvirt's words, when qpool implements it.
    pub cipher: Option<LuksCipher>,
}

impl LuksInfo {
    /// Decodes the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<LuksInfo, Error> {
        let phdr = Phdr::decode(bytes)?;
        let cipher = cipher_of(&phdr);
        Ok(LuksInfo { phdr, cipher })
    }

    /// The payload offset in bytes.
    pub fn payload_offset(&self) -> u64 {
        u64::from(self.phdr.payload_offset) * spec::SECTOR
    }
}

/// The cipher a phdr names, when it is one qpool implements.
fn cipher_of(phdr: &Phdr) -> Option<LuksCipher> {
    if phdr.cipher_name != LuksCipher::NAME {
        return None;
    }
    let (mode, ivgen_spec) = phdr.cipher_mode.split_once('-')?;
    let (ivgen, ivgen_hash) = match ivgen_spec.split_once(':') {
        Some((g, h)) => (g, Some(h.parse::<HashAlg>().ok()?)),
        None => (ivgen_spec, None),
    };
    let cipher = LuksCipher {
        bits: (phdr.key_bytes / 2).checked_mul(8)?,
        mode: mode.parse().ok()?,
        ivgen: ivgen.parse().ok()?,
        ivgen_hash,
        hash: phdr.hash_spec.parse().ok()?,
    };
    LuksCipher::check_cipher(LuksCipher::NAME, &cipher.bits.to_string()).ok()?;
    (u32::try_from(cipher.key_bytes()).ok()? == phdr.key_bytes).then_some(cipher)
}

/// Opens a header with `passphrase`: returns the payload cipher. `read` reads `len` bytes at
/// an offset from the header's start (key material).
pub fn unlock(
    info: &LuksInfo,
    passphrase: &Passphrase,
    mut read: impl FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
) -> Result<SectorCipher, Error> {
    let phdr = &info.phdr;
    let cipher = info.cipher.ok_or_else(|| {
        cipher_error(
            &phdr.cipher_name,
            &phdr.cipher_mode,
            &phdr.hash_spec,
            phdr.key_bytes,
        )
    })?;
    let key_len = cipher.key_bytes();
    for (i, slot) in phdr.key_slots.iter().enumerate() {
        if slot.active != spec::SLOT_ENABLED {
            continue;
        }
        let stripes = usize::try_from(slot.stripes).map_err(|_| Error::BadKeySlot(i))?;
        let split_len = key_len
            .checked_mul(stripes)
            .filter(|l| *l % 512 == 0 && *l <= 64 << 20)
            .ok_or(Error::BadKeySlot(i))?;
        let offset = u64::from(slot.key_material_offset) * spec::SECTOR;
        let mut material =
            Zeroizing::new(read(offset, split_len).map_err(|_| Error::BadKeySlot(i))?);
        if material.len() != split_len {
            return Err(Error::BadKeySlot(i));
        }
        let mut slot_key = Zeroizing::new(vec![0u8; key_len]);
        pbkdf2(
            cipher.hash,
            passphrase.bytes(),
            &slot.salt,
            slot.iterations,
            &mut slot_key,
        );
        SectorCipher::new(&cipher, &slot_key)
            .ok_or_else(|| unsupported(&cipher))?
            .decrypt(&mut material, 0);
        let candidate = af_merge(cipher.hash, &material, key_len);
        let mut check = [0u8; spec::DIGEST_LEN];
        pbkdf2(
            cipher.hash,
            &candidate,
            &phdr.mk_digest_salt,
            phdr.mk_digest_iter,
            &mut check,
        );
        if check == phdr.mk_digest {
            return SectorCipher::new(&cipher, &candidate).ok_or_else(|| unsupported(&cipher));
        }
    }
    Err(Error::WrongPassphrase)
}

/// Reads the LUKS header at the start of a file region and reports it, for probing.
pub fn sniff(prefix: &[u8]) -> bool {
    spec::sniff(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cipher: &LuksCipher) -> (LuksHeader, Vec<u8>) {
        let h = LuksHeader::new(&Passphrase::new(b"pass".to_vec()), cipher, 1).unwrap();
        let mut area = vec![0u8; usize::try_from(h.length).unwrap()];
        area[..spec::PHDR_LEN].copy_from_slice(&h.phdr);
        let at = usize::try_from(h.key_material_offset).unwrap();
        area[at..at + h.key_material.len()].copy_from_slice(&h.key_material);
        (h, area)
    }

    #[test]
    fn a_new_header_opens_with_its_passphrase_only() {
        let (h, area) = header(&LuksCipher::default());
        let info = LuksInfo::decode(&area).unwrap();
        assert_eq!(info.cipher, Some(LuksCipher::default()));
        assert_eq!(info.payload_offset(), 2_068_480);
        assert!(info.phdr.key_slots[0].iterations >= spec::MIN_ITERATIONS);
        let read = |o: u64, l: usize| {
            let o = usize::try_from(o).unwrap();
            Ok(area[o..o + l].to_vec())
        };
        let opened = unlock(&info, &Passphrase::new(b"pass".to_vec()), read).unwrap();
        let mut sector = [0x5au8; 512];
        h.payload_cipher().unwrap().encrypt(&mut sector, 7);
        opened.decrypt(&mut sector, 7);
        assert_eq!(sector, [0x5au8; 512]);
        assert!(matches!(
            unlock(&info, &Passphrase::new(b"wrong".to_vec()), read),
            Err(Error::WrongPassphrase)
        ));
    }

    #[test]
    fn every_supported_cipher_round_trips() {
        for bits in [128, 192] {
            for (ivgen, hash) in [
                (IvGen::Plain, HashAlg::Sha1),
                (IvGen::Plain64, HashAlg::Sha512),
            ] {
                let cipher = LuksCipher {
                    bits,
                    ivgen,
                    hash,
                    ivgen_hash: Some(HashAlg::Sha256),
                    ..LuksCipher::default()
                };
                let (_, area) = header(&cipher);
                let info = LuksInfo::decode(&area).unwrap();
                assert_eq!(info.cipher, Some(cipher), "{bits} {ivgen:?} {hash:?}");
                let read = |o: u64, l: usize| {
                    let o = usize::try_from(o).unwrap();
                    Ok(area[o..o + l].to_vec())
                };
                assert!(unlock(&info, &Passphrase::new(b"pass".to_vec()), read).is_ok());
            }
        }
    }

    #[test]
    fn af_merge_undoes_af_split() {
        let key: Vec<u8> = (0..64).collect();
        let split = af_split(HashAlg::Sha256, &key, 10).unwrap();
        assert_eq!(split.len(), 640);
        assert_eq!(&af_merge(HashAlg::Sha256, &split, 64)[..], &key[..]);
    }

    #[test]
    fn iterations_follow_the_time_and_have_a_floor() {
        // 1 000 000 blocks/s: 2000 ms of a 64-byte sha256 key (2 blocks) is 1 000 000
        // iterations, an eighth of it for the 20-byte digest (1 block) 250 000.
        assert_eq!(
            iterations_for(1e6, HashAlg::Sha256, 64, 2000, 1).unwrap(),
            1_000_000
        );
        assert_eq!(
            iterations_for(1e6, HashAlg::Sha256, 20, 2000, 8).unwrap(),
            250_000
        );
        assert_eq!(
            iterations_for(1e6, HashAlg::Sha256, 64, 1, 1).unwrap(),
            1000
        );
        assert!(matches!(
            iterations_for(1e12, HashAlg::Sha256, 32, 3_600_000, 1),
            Err(Error::TooManyIterations { .. })
        ));
    }

    #[test]
    fn passphrases_never_print() {
        let p = Passphrase::new(b"secret words".to_vec());
        assert_eq!(format!("{p:?}"), "Passphrase(<hidden>)");
    }
}
