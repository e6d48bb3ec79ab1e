//! LUKS1 on-disk bytes: the 592-byte phdr and its eight key slots, and where qemu's
//! `block-luks` places the key material and the payload.
//!
//! Owns: every byte offset of the LUKS1 header (cryptsetup's "LUKS On-Disk Format
//! Specification" 1.2, the version qemu implements), encoding and decoding it, and the
//! placement qemu-img 10 writes: the header in the first 4 KiB, eight key-material areas of
//! `key_bytes × 4000` bytes each rounded up to 4 KiB, then the payload.
//! Must not: derive keys, encrypt, or do I/O.

use thiserror::Error;

/// "LUKS\xba\xbe".
pub const MAGIC: [u8; 6] = *b"LUKS\xba\xbe";
/// The version qemu writes and reads.
pub const VERSION: u16 = 1;
/// Size of the phdr with its key slots.
pub const PHDR_LEN: usize = 592;
/// LUKS sectors are 512 bytes (key offsets and the payload offset count them).
pub const SECTOR: u64 = 512;
/// Bytes of the cipher name, cipher mode and hash spec fields (NUL-padded).
pub const NAME_LEN: usize = 32;
/// Bytes of the master key digest.
pub const DIGEST_LEN: usize = 20;
/// Bytes of each salt.
pub const SALT_LEN: usize = 32;
/// Bytes of the UUID field (36 characters, NUL-padded).
pub const UUID_LEN: usize = 40;
/// Number of key slots.
pub const KEY_SLOTS: usize = 8;
/// Anti-forensic stripes per key slot.
pub const STRIPES: u32 = 4000;
/// Key slot state: in use.
pub const SLOT_ENABLED: u32 = 0x00AC_71F3;
/// Key slot state: unused.
pub const SLOT_DISABLED: u32 = 0x0000_DEAD;
/// The fewest PBKDF2 iterations qemu writes for the master key digest and a key slot.
pub const MIN_ITERATIONS: u32 = 1000;
/// The key material starts at 4 KiB, and each area is aligned to 4 KiB (in sectors: 8).
pub const ALIGN_SECTORS: u64 = 4096 / SECTOR;

/// phdr field offsets (spec names).
const OFF_VERSION: usize = 6;
const OFF_CIPHER_NAME: usize = 8;
const OFF_CIPHER_MODE: usize = 40;
const OFF_HASH_SPEC: usize = 72;
const OFF_PAYLOAD_OFFSET: usize = 104;
const OFF_KEY_BYTES: usize = 108;
const OFF_MK_DIGEST: usize = 112;
const OFF_MK_DIGEST_SALT: usize = 132;
const OFF_MK_DIGEST_ITER: usize = 164;
const OFF_UUID: usize = 168;
const OFF_KEY_SLOTS: usize = 208;
/// Bytes of one key slot: active, iterations, salt, key material offset, stripes.
const SLOT_LEN: usize = 48;

/// One key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySlot {
    /// [`SLOT_ENABLED`] or [`SLOT_DISABLED`].
    pub active: u32,
    /// PBKDF2 iterations of the passphrase.
    pub iterations: u32,
    /// PBKDF2 salt of the passphrase.
    pub salt: [u8; SALT_LEN],
    /// Start of the key material, in sectors.
    pub key_material_offset: u32,
    /// Anti-forensic stripes.
    pub stripes: u32,
}

/// The phdr, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phdr {
    /// Cipher name, e.g. `aes`.
    pub cipher_name: String,
    /// Cipher mode with IV generator, e.g. `xts-plain64`.
    pub cipher_mode: String,
    /// Hash spec, e.g. `sha256`.
    pub hash_spec: String,
    /// Start of the payload, in sectors.
    pub payload_offset: u32,
    /// Bytes of the master key.
    pub key_bytes: u32,
    /// PBKDF2 of the master key.
    pub mk_digest: [u8; DIGEST_LEN],
    /// Its salt.
    pub mk_digest_salt: [u8; SALT_LEN],
    /// Its iterations.
    pub mk_digest_iter: u32,
    /// The volume's UUID, as text.
    pub uuid: String,
    /// The key slots.
    pub key_slots: [KeySlot; KEY_SLOTS],
}

/// Why bytes are not a LUKS1 header qpool can use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// Fewer than [`PHDR_LEN`] bytes.
    #[error("a LUKS header is {PHDR_LEN} bytes, only {0} were read")]
    Short(usize),
    /// No LUKS magic.
    #[error("no LUKS magic")]
    NoMagic,
    /// A version other than 1.
    #[error("LUKS version {0} is not supported (qpool reads version 1)")]
    Version(u16),
    /// A text field that is not NUL-terminated ASCII.
    #[error("the LUKS header's {0} field is not NUL-terminated text")]
    BadText(&'static str),
    /// A text longer than its field.
    #[error("'{0}' does not fit a LUKS header field")]
    TooLong(String),
}

/// Where qemu puts the key material and the payload for a master key of `key_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Sectors of one key-material area (`key_bytes × stripes`, rounded up to 4 KiB).
    pub area_sectors: u64,
    /// Start of the payload, in sectors: after the header and the eight areas.
    pub payload_sectors: u64,
}

impl Placement {
    /// qemu's placement for `key_bytes`.
    pub fn for_key(key_bytes: usize) -> Placement {
        let split = key_bytes as u64 * u64::from(STRIPES);
        let area_sectors = split.div_ceil(SECTOR).next_multiple_of(ALIGN_SECTORS);
        Placement {
            area_sectors,
            payload_sectors: ALIGN_SECTORS + area_sectors * KEY_SLOTS as u64,
        }
    }

    /// Sector where key slot `i`'s material starts.
    pub fn slot_sector(&self, i: usize) -> u64 {
        ALIGN_SECTORS + self.area_sectors * i as u64
    }

    /// The payload offset in bytes (the LUKS header's whole length).
    pub fn payload_bytes(&self) -> u64 {
        self.payload_sectors * SECTOR
    }
}

fn put_text(dst: &mut [u8], text: &str) -> Result<(), SpecError> {
    if text.len() >= dst.len() {
        return Err(SpecError::TooLong(text.to_string()));
    }
    dst[..text.len()].copy_from_slice(text.as_bytes());
    Ok(())
}

fn get_text(src: &[u8], field: &'static str) -> Result<String, SpecError> {
    let end = src
        .iter()
        .position(|&b| b == 0)
        .ok_or(SpecError::BadText(field))?;
    let text = &src[..end];
    if !text.iter().all(|b| b.is_ascii_graphic()) {
        return Err(SpecError::BadText(field));
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

fn be32(src: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&src[at..at + 4]);
    u32::from_be_bytes(b)
}

/// True when `prefix` starts like a LUKS1 header (magic and version), as qemu probes it.
pub fn sniff(prefix: &[u8]) -> bool {
    prefix.len() >= OFF_CIPHER_NAME
        && prefix[..MAGIC.len()] == MAGIC
        && u16::from_be_bytes([prefix[OFF_VERSION], prefix[OFF_VERSION + 1]]) == VERSION
}

impl Phdr {
    /// The phdr's bytes.
    pub fn encode(&self) -> Result<[u8; PHDR_LEN], SpecError> {
        let mut b = [0u8; PHDR_LEN];
        b[..MAGIC.len()].copy_from_slice(&MAGIC);
        b[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&VERSION.to_be_bytes());
        put_text(
            &mut b[OFF_CIPHER_NAME..OFF_CIPHER_NAME + NAME_LEN],
            &self.cipher_name,
        )?;
        put_text(
            &mut b[OFF_CIPHER_MODE..OFF_CIPHER_MODE + NAME_LEN],
            &self.cipher_mode,
        )?;
        put_text(
            &mut b[OFF_HASH_SPEC..OFF_HASH_SPEC + NAME_LEN],
            &self.hash_spec,
        )?;
        b[OFF_PAYLOAD_OFFSET..OFF_PAYLOAD_OFFSET + 4]
            .copy_from_slice(&self.payload_offset.to_be_bytes());
        b[OFF_KEY_BYTES..OFF_KEY_BYTES + 4].copy_from_slice(&self.key_bytes.to_be_bytes());
        b[OFF_MK_DIGEST..OFF_MK_DIGEST + DIGEST_LEN].copy_from_slice(&self.mk_digest);
        b[OFF_MK_DIGEST_SALT..OFF_MK_DIGEST_SALT + SALT_LEN].copy_from_slice(&self.mk_digest_salt);
        b[OFF_MK_DIGEST_ITER..OFF_MK_DIGEST_ITER + 4]
            .copy_from_slice(&self.mk_digest_iter.to_be_bytes());
        put_text(&mut b[OFF_UUID..OFF_UUID + UUID_LEN], &self.uuid)?;
        for (i, slot) in self.key_slots.iter().enumerate() {
            let at = OFF_KEY_SLOTS + i * SLOT_LEN;
            b[at..at + 4].copy_from_slice(&slot.active.to_be_bytes());
            b[at + 4..at + 8].copy_from_slice(&slot.iterations.to_be_bytes());
            b[at + 8..at + 8 + SALT_LEN].copy_from_slice(&slot.salt);
            b[at + 40..at + 44].copy_from_slice(&slot.key_material_offset.to_be_bytes());
            b[at + 44..at + 48].copy_from_slice(&slot.stripes.to_be_bytes());
        }
        Ok(b)
    }

    /// Decodes a phdr from the first bytes of a LUKS header.
    pub fn decode(src: &[u8]) -> Result<Phdr, SpecError> {
        if src.len() < PHDR_LEN {
            return Err(SpecError::Short(src.len()));
        }
        if src[..MAGIC.len()] != MAGIC {
            return Err(SpecError::NoMagic);
        }
        let version = u16::from_be_bytes([src[OFF_VERSION], src[OFF_VERSION + 1]]);
        if version != VERSION {
            return Err(SpecError::Version(version));
        }
        let mut key_slots = [KeySlot {
            active: 0,
            iterations: 0,
            salt: [0; SALT_LEN],
            key_material_offset: 0,
            stripes: 0,
        }; KEY_SLOTS];
        for (i, slot) in key_slots.iter_mut().enumerate() {
            let at = OFF_KEY_SLOTS + i * SLOT_LEN;
            slot.active = be32(src, at);
            slot.iterations = be32(src, at + 4);
            slot.salt.copy_from_slice(&src[at + 8..at + 8 + SALT_LEN]);
            slot.key_material_offset = be32(src, at + 40);
            slot.stripes = be32(src, at + 44);
        }
        let mut mk_digest = [0u8; DIGEST_LEN];
        mk_digest.copy_from_slice(&src[OFF_MK_DIGEST..OFF_MK_DIGEST + DIGEST_LEN]);
        let mut mk_digest_salt = [0u8; SALT_LEN];
        mk_digest_salt.copy_from_slice(&src[OFF_MK_DIGEST_SALT..OFF_MK_DIGEST_SALT + SALT_LEN]);
        Ok(Phdr {
            cipher_name: get_text(
                &src[OFF_CIPHER_NAME..OFF_CIPHER_NAME + NAME_LEN],
                "cipher name",
            )?,
            cipher_mode: get_text(
                &src[OFF_CIPHER_MODE..OFF_CIPHER_MODE + NAME_LEN],
                "cipher mode",
            )?,
            hash_spec: get_text(&src[OFF_HASH_SPEC..OFF_HASH_SPEC + NAME_LEN], "hash spec")?,
            payload_offset: be32(src, OFF_PAYLOAD_OFFSET),
            key_bytes: be32(src, OFF_KEY_BYTES),
            mk_digest,
            mk_digest_salt,
            mk_digest_iter: be32(src, OFF_MK_DIGEST_ITER),
            uuid: get_text(&src[OFF_UUID..OFF_UUID + UUID_LEN], "uuid")?,
            key_slots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_matches_qemu_img_for_aes_256_and_128() {
        // qemu-img 10: aes-256-xts (64-byte key) puts slot 1 at 262144 and the payload at
        // 2068480; aes-128-cbc (16 bytes, libvirt's example) the payload at 528384.
        let p = Placement::for_key(64);
        assert_eq!(p.slot_sector(0) * SECTOR, 4096);
        assert_eq!(p.slot_sector(1) * SECTOR, 262_144);
        assert_eq!(p.slot_sector(7) * SECTOR, 1_810_432);
        assert_eq!(p.payload_bytes(), 2_068_480);
        assert_eq!(Placement::for_key(16).payload_bytes(), 528_384);
    }

    #[test]
    fn phdr_round_trips_and_refuses_broken_bytes() {
        let slot = KeySlot {
            active: SLOT_ENABLED,
            iterations: 1234,
            salt: [7; SALT_LEN],
            key_material_offset: 8,
            stripes: STRIPES,
        };
        let h = Phdr {
            cipher_name: "aes".into(),
            cipher_mode: "xts-plain64".into(),
            hash_spec: "sha256".into(),
            payload_offset: 4040,
            key_bytes: 64,
            mk_digest: [1; DIGEST_LEN],
            mk_digest_salt: [2; SALT_LEN],
            mk_digest_iter: 1000,
            uuid: "0bdf77d9-02e7-4058-b4cf-d9901e008e65".into(),
            key_slots: [slot; KEY_SLOTS],
        };
        let bytes = h.encode().unwrap();
        assert!(sniff(&bytes));
        // Offsets the LUKS spec gives: payload offset at 104, the first slot at 208.
        assert_eq!(&bytes[104..108], &4040u32.to_be_bytes());
        assert_eq!(&bytes[208..212], &SLOT_ENABLED.to_be_bytes());
        assert_eq!(Phdr::decode(&bytes).unwrap(), h);
        let mut wrong = bytes;
        wrong[7] = 2;
        assert_eq!(Phdr::decode(&wrong), Err(SpecError::Version(2)));
        assert_eq!(Phdr::decode(&bytes[..100]), Err(SpecError::Short(100)));
        let mut unterminated = bytes;
        unterminated[OFF_HASH_SPEC..OFF_HASH_SPEC + NAME_LEN].fill(b'a');
        assert_eq!(
            Phdr::decode(&unterminated),
            Err(SpecError::BadText("hash spec"))
        );
    }
}
