//! The shared vocabulary: the few enums every layer speaks about.
//!
//! Owns: the one definition each of a volume format ([`VolFormat`]), a preallocation mode
//! ([`Preallocation`]), a qcow2 compatibility level ([`Compat`]), a qcow2 compression type
//! ([`Compression`]), a wipe algorithm ([`WipeAlgorithm`]), a pool's `fallocate` setting
//! ([`FallocateMode`]), and a volume's encryption ([`EncryptionFormat`], and the LUKS choices
//! of [`LuksCipher`]: [`CipherMode`], [`IvGen`], [`HashAlg`]), with their names as libvirt,
//! qemu-img and the XML write them, parsing those names, libvirt's numbers for the wipe
//! algorithms, and the qcow2 header version each compat level stands for.
//! Must not: import anything from the crate but `units`, do I/O, or know any policy. xml,
//! policy, image, pool, cli and rpc all use these types; none keeps a copy.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A name that none of a vocabulary enum's variants has.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnknownName {
    /// A volume format other than raw and qcow2.
    #[error("unsupported volume format '{0}' (qpool supports: raw, qcow2)")]
    Format(String),
    /// A preallocation mode qemu-img does not have.
    #[error("unknown preallocation mode '{0}' (expected off, metadata, falloc or full)")]
    Preallocation(String),
    /// A qcow2 compat level other than 0.10 and 1.1.
    #[error("unsupported compat level '{0}' (expected 0.10 or 1.1)")]
    Compat(String),
    /// A compression type other than zlib and zstd.
    #[error("unknown compression type '{0}' (expected zlib or zstd)")]
    Compression(String),
    /// A wipe algorithm libvirt does not have.
    #[error("unknown wipe algorithm '{0}' (qpool supports: zero, trim, random)")]
    WipeAlgorithm(String),
    /// A pool `fallocate` setting other than auto, native and zero.
    #[error("unknown fallocate setting '{0}' (expected auto, native or zero)")]
    FallocateMode(String),
    /// An encryption format other than LUKS.
    #[error("unsupported encryption format '{0}' (qpool supports: luks)")]
    EncryptionFormat(String),
    /// A cipher other than AES.
    #[error("unsupported cipher '{0}' (qpool supports: aes)")]
    Cipher(String),
    /// A cipher key size AES does not have.
    #[error("unsupported cipher size '{0}' (qpool supports: 128, 192, 256)")]
    CipherSize(String),
    /// A cipher mode other than XTS.
    #[error("unsupported cipher mode '{0}' (qpool supports: xts)")]
    CipherMode(String),
    /// An IV generator other than plain and plain64.
    #[error("unsupported IV generator '{0}' (qpool supports: plain64, plain)")]
    IvGen(String),
    /// A hash other than SHA-1, SHA-256 and SHA-512.
    #[error("unsupported hash '{0}' (qpool supports: sha256, sha1, sha512)")]
    Hash(String),
}

/// Volume formats qpool reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolFormat {
    /// A plain file.
    Raw,
    /// A qcow2 image.
    Qcow2,
}

impl VolFormat {
    /// The name libvirt, qemu and the qcow2 backing-format extension use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }
}

impl FromStr for VolFormat {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        match name {
            "raw" => Ok(Self::Raw),
            "qcow2" => Ok(Self::Qcow2),
            other => Err(UnknownName::Format(other.to_string())),
        }
    }
}

impl fmt::Display for VolFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the data area of a new image is provided (qemu-img's `preallocation=` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preallocation {
    /// Thin: only the metadata a fresh image needs; data reads as zeros through holes.
    Off,
    /// qcow2 only: every L2 table and data cluster mapped, data left as file holes.
    Metadata,
    /// The data area reserved with `fallocate` (unwritten extents that read as zeros).
    Falloc,
    /// The data area written with zeros.
    Full,
}

impl Preallocation {
    /// All modes, in the order the documentation lists them.
    pub const ALL: [Preallocation; 4] = [Self::Off, Self::Metadata, Self::Falloc, Self::Full];

    /// The name used in XML, on the command line and by qemu-img.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Metadata => "metadata",
            Self::Falloc => "falloc",
            Self::Full => "full",
        }
    }
}

impl FromStr for Preallocation {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| UnknownName::Preallocation(name.to_string()))
    }
}

impl fmt::Display for Preallocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// qcow2 compatibility level: libvirt's `<compat>`, qemu-img's `compat=`, and the header's
/// version field (0.10 is version 2, 1.1 is version 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compat {
    /// `0.10`: qcow2 version 2 (72-byte header, 16-bit refcounts, no feature bits).
    V0_10,
    /// `1.1`: qcow2 version 3 (qemu-img's and qpool's default).
    V1_1,
}

impl Compat {
    /// The `<compat>` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_10 => "0.10",
            Self::V1_1 => "1.1",
        }
    }

    /// The qcow2 header version this level writes.
    pub fn version(self) -> u32 {
        match self {
            Self::V0_10 => 2,
            Self::V1_1 => 3,
        }
    }

    /// The level of a qcow2 header version; `None` for versions qcow2 does not define.
    pub fn from_version(version: u32) -> Option<Compat> {
        match version {
            2 => Some(Self::V0_10),
            3 => Some(Self::V1_1),
            _ => None,
        }
    }
}

impl FromStr for Compat {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Self, UnknownName> {
        match text {
            "0.10" => Ok(Self::V0_10),
            "1.1" => Ok(Self::V1_1),
            other => Err(UnknownName::Compat(other.to_string())),
        }
    }
}

impl fmt::Display for Compat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// qcow2 compression type recorded in a version 3 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// zlib/deflate (qemu's default; header compression_type 0).
    #[default]
    Zlib,
    /// zstd (incompatible feature bit 3, header compression_type 1).
    Zstd,
}

impl Compression {
    /// The name used in XML and by qemu-img.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zlib => "zlib",
            Self::Zstd => "zstd",
        }
    }
}

impl FromStr for Compression {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        match name {
            "zlib" => Ok(Self::Zlib),
            "zstd" => Ok(Self::Zstd),
            other => Err(UnknownName::Compression(other.to_string())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A wipe algorithm: libvirt's `virStorageVolWipeAlgorithm`, with its numbers (the values
/// `virStorageVolWipePattern` carries on the wire) and `virsh vol-wipe --algorithm` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WipeAlgorithm {
    /// 0: one pass of zeros.
    Zero,
    /// 1: NNSA NAP Policy 4.1 (4 passes).
    Nnsa,
    /// 2: DoD 5220.22-M (4 passes).
    Dod,
    /// 3: BSI (9 passes).
    Bsi,
    /// 4: Gutmann (35 passes).
    Gutmann,
    /// 5: Schneier (7 passes).
    Schneier,
    /// 6: Roy Pfitzner, 7 random passes.
    Pfitzner7,
    /// 7: Roy Pfitzner, 33 random passes.
    Pfitzner33,
    /// 8: one pass of random bytes.
    Random,
    /// 9: discard (punch holes).
    Trim,
}

impl WipeAlgorithm {
    /// Every algorithm, in libvirt's numbering.
    pub const ALL: [WipeAlgorithm; 10] = [
        Self::Zero,
        Self::Nnsa,
        Self::Dod,
        Self::Bsi,
        Self::Gutmann,
        Self::Schneier,
        Self::Pfitzner7,
        Self::Pfitzner33,
        Self::Random,
        Self::Trim,
    ];

    /// virsh's name for the algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zero => "zero",
            Self::Nnsa => "nnsa",
            Self::Dod => "dod",
            Self::Bsi => "bsi",
            Self::Gutmann => "gutmann",
            Self::Schneier => "schneier",
            Self::Pfitzner7 => "pfitzner7",
            Self::Pfitzner33 => "pfitzner33",
            Self::Random => "random",
            Self::Trim => "trim",
        }
    }

    /// The algorithm with libvirt's number `n`.
    pub fn from_libvirt(n: u32) -> Option<WipeAlgorithm> {
        Self::ALL.get(usize::try_from(n).ok()?).copied()
    }
}

impl FromStr for WipeAlgorithm {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| UnknownName::WipeAlgorithm(name.to_string()))
    }
}

impl fmt::Display for WipeAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a pool reserves space (the `fallocate` setting of a pool definition or qpoold.conf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FallocateMode {
    /// `fallocate` where the filesystem really reserves with it; zeros where it cannot
    /// (EOPNOTSUPP) or only pretends to (CephFS).
    #[default]
    Auto,
    /// `fallocate` whenever the filesystem accepts it; zeros only where it refuses.
    Native,
    /// Always zeros: every reservation is written.
    Zero,
}

impl FallocateMode {
    /// Every setting, in the order the documentation lists them.
    pub const ALL: [FallocateMode; 3] = [Self::Auto, Self::Native, Self::Zero];

    /// The name in a pool definition and in qpoold.conf.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Zero => "zero",
        }
    }
}

impl FromStr for FallocateMode {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| UnknownName::FallocateMode(name.to_string()))
    }
}

impl fmt::Display for FallocateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// libvirt's `<encryption format=…>` values that qpool writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionFormat {
    /// LUKS version 1, as qemu's `encrypt.format=luks` (qcow2) and `-f luks` (raw) write it.
    Luks,
}

impl EncryptionFormat {
    /// The name in libvirt's XML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Luks => "luks",
        }
    }
}

impl FromStr for EncryptionFormat {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        match name {
            "luks" => Ok(Self::Luks),
            other => Err(UnknownName::EncryptionFormat(other.to_string())),
        }
    }
}

impl fmt::Display for EncryptionFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Block cipher modes (libvirt's `<cipher mode=…>`, the first half of LUKS's cipher mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherMode {
    /// XEX-based tweaked codebook with ciphertext stealing: two keys of the cipher's size.
    Xts,
}

impl CipherMode {
    /// The name libvirt, qemu and the LUKS header use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Xts => "xts",
        }
    }
}

impl FromStr for CipherMode {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        match name {
            "xts" => Ok(Self::Xts),
            other => Err(UnknownName::CipherMode(other.to_string())),
        }
    }
}

/// IV generators (libvirt's `<ivgen name=…>`): the IV of a sector from its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IvGen {
    /// The sector number as a 64-bit little-endian integer (qemu's default).
    Plain64,
    /// The sector number truncated to 32 bits, little-endian.
    Plain,
}

impl IvGen {
    /// The name libvirt, qemu and the LUKS header use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain64 => "plain64",
            Self::Plain => "plain",
        }
    }
}

impl FromStr for IvGen {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        match name {
            "plain64" => Ok(Self::Plain64),
            "plain" => Ok(Self::Plain),
            other => Err(UnknownName::IvGen(other.to_string())),
        }
    }
}

/// Hash algorithms for key derivation and the anti-forensic splitter (libvirt's
/// `<cipher hash=…>`, LUKS's hash spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-256 (qemu's default).
    Sha256,
    /// SHA-1.
    Sha1,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// The name libvirt, qemu and the LUKS header use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha1 => "sha1",
            Self::Sha512 => "sha512",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

impl FromStr for HashAlg {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        match name {
            "sha256" => Ok(Self::Sha256),
            "sha1" => Ok(Self::Sha1),
            "sha512" => Ok(Self::Sha512),
            other => Err(UnknownName::Hash(other.to_string())),
        }
    }
}

/// The cipher of a LUKS volume: libvirt's `<cipher name size mode hash/>` and
/// `<ivgen name hash/>`, with qemu-img's defaults (aes-256-xts-plain64, sha256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LuksCipher {
    /// AES key size in bits: 128, 192 or 256 (XTS uses two keys of this size).
    pub bits: u32,
    /// The block cipher mode.
    pub mode: CipherMode,
    /// The IV generator.
    pub ivgen: IvGen,
    /// The IV generator's hash (`<ivgen hash>`), recorded in the header; plain IVs ignore
    /// it, as qemu and dm-crypt do.
    pub ivgen_hash: Option<HashAlg>,
    /// Key derivation and anti-forensic splitter hash.
    pub hash: HashAlg,
}

impl Default for LuksCipher {
    fn default() -> Self {
        Self {
            bits: 256,
            mode: CipherMode::Xts,
            ivgen: IvGen::Plain64,
            ivgen_hash: None,
            hash: HashAlg::Sha256,
        }
    }
}

impl LuksCipher {
    /// The cipher name (libvirt's `<cipher name>`, LUKS's cipher name).
    pub const NAME: &'static str = "aes";

    /// Checks a cipher name and size in bits, as libvirt's `<cipher name size>` give them.
    pub fn check_cipher(name: &str, bits: &str) -> Result<u32, UnknownName> {
        if name != Self::NAME {
            return Err(UnknownName::Cipher(name.to_string()));
        }
        match bits.trim().parse::<u32>() {
            Ok(b @ (128 | 192 | 256)) => Ok(b),
            _ => Err(UnknownName::CipherSize(bits.to_string())),
        }
    }

    /// Bytes of the master key: the AES key, twice for XTS.
    pub fn key_bytes(&self) -> usize {
        let one = usize::try_from(self.bits / 8).unwrap_or(32);
        match self.mode {
            CipherMode::Xts => one * 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for f in [VolFormat::Raw, VolFormat::Qcow2] {
            assert_eq!(f.as_str().parse::<VolFormat>(), Ok(f));
        }
        for p in Preallocation::ALL {
            assert_eq!(p.to_string().parse::<Preallocation>(), Ok(p));
        }
        for c in [Compat::V0_10, Compat::V1_1] {
            assert_eq!(c.as_str().parse::<Compat>(), Ok(c));
            assert_eq!(Compat::from_version(c.version()), Some(c));
        }
        for c in [Compression::Zlib, Compression::Zstd] {
            assert_eq!(c.as_str().parse::<Compression>(), Ok(c));
        }
        for (n, a) in WipeAlgorithm::ALL.into_iter().enumerate() {
            assert_eq!(a.as_str().parse::<WipeAlgorithm>(), Ok(a));
            assert_eq!(
                WipeAlgorithm::from_libvirt(u32::try_from(n).unwrap()),
                Some(a)
            );
        }
        assert_eq!(WipeAlgorithm::from_libvirt(10), None);
        assert_eq!(WipeAlgorithm::Random.as_str(), "random");
        assert_eq!(WipeAlgorithm::from_libvirt(9), Some(WipeAlgorithm::Trim));
        for m in FallocateMode::ALL {
            assert_eq!(m.as_str().parse::<FallocateMode>(), Ok(m));
        }
        assert_eq!(FallocateMode::default(), FallocateMode::Auto);
    }

    #[test]
    fn unknown_names_list_what_is_supported() {
        let e = "vmdk".parse::<VolFormat>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported volume format 'vmdk' (qpool supports: raw, qcow2)"
        );
        assert!("sparse".parse::<Preallocation>().is_err());
        assert!("2.0".parse::<Compat>().is_err());
        assert_eq!(Compat::from_version(4), None);
        assert!("lz4".parse::<Compression>().is_err());
        assert_eq!(
            "posix".parse::<FallocateMode>().unwrap_err().to_string(),
            "unknown fallocate setting 'posix' (expected auto, native or zero)"
        );
        assert_eq!(
            "qcow".parse::<EncryptionFormat>().unwrap_err().to_string(),
            "unsupported encryption format 'qcow' (qpool supports: luks)"
        );
        assert!("cbc".parse::<CipherMode>().is_err());
        assert!("essiv".parse::<IvGen>().is_err());
        assert!("md5".parse::<HashAlg>().is_err());
        assert!(LuksCipher::check_cipher("serpent", "256").is_err());
        assert!(LuksCipher::check_cipher("aes", "512").is_err());
    }

    #[test]
    fn luks_defaults_are_qemu_imgs() {
        let c = LuksCipher::default();
        assert_eq!((c.bits, c.key_bytes()), (256, 64));
        assert_eq!(
            (c.mode.as_str(), c.ivgen.as_str(), c.hash.as_str()),
            ("xts", "plain64", "sha256")
        );
        assert_eq!(LuksCipher::check_cipher("aes", "128"), Ok(128));
        for h in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
            assert_eq!(h.as_str().parse::<HashAlg>(), Ok(h));
        }
        assert_eq!("plain".parse::<IvGen>(), Ok(IvGen::Plain));
        assert_eq!(
            "luks".parse::<EncryptionFormat>(),
            Ok(EncryptionFormat::Luks)
        );
    }
}
