//! XDR (RFC 4506) as libvirt's remote protocol uses it.
//!
//! Owns: big-endian 4- and 8-byte integers, strings and opaques padded to 4 bytes, optional
//! values (a 0/1 word), fixed opaques (UUIDs) and counted arrays, with libvirt's limits
//! enforced while decoding so a hostile length word can never make the decoder allocate or
//! loop beyond the message it holds; and the [`Xdr`] trait that `messages` builds every
//! argument and return struct from.
//! Must not: know procedure numbers or message headers (that is `wire` and `proto`).

use thiserror::Error;

/// Longest string libvirt sends or accepts (REMOTE_STRING_MAX, 4 MiB).
pub const STRING_MAX: usize = 4 << 20;

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XdrError {
    /// The payload ends before the value does.
    #[error("payload too short: {needed} more bytes needed at offset {at}")]
    Short {
        /// Offset of the value.
        at: usize,
        /// Bytes missing.
        needed: usize,
    },
    /// A string or opaque longer than its limit.
    #[error("length {len} exceeds the limit {max} at offset {at}")]
    TooLong {
        /// Offset of the length word.
        at: usize,
        /// Length found.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// An optional marker other than 0 or 1, or a bool other than 0 or 1.
    #[error("invalid discriminant {value} at offset {at}")]
    Discriminant {
        /// Offset.
        at: usize,
        /// Value found.
        value: u32,
    },
    /// A string that is not UTF-8.
    #[error("string at offset {at} is not UTF-8")]
    Utf8 {
        /// Offset.
        at: usize,
    },
}

/// Encodes XDR into a growing buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder whose buffer starts with `prefix` (the message header, say).
    pub fn with_prefix(prefix: &[u8]) -> Encoder {
        Encoder {
            buf: prefix.to_vec(),
        }
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes encoded so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was encoded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// `unsigned int`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `int`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `unsigned hyper`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `hyper`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// An array count (arrays are bounded by the protocol's list limits, far below u32).
    pub fn count(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Variable-length opaque: length word, bytes, zero padding.
    pub fn opaque(&mut self, bytes: &[u8]) -> &mut Self {
        // Callers keep strings under STRING_MAX, far below u32::MAX.
        self.count(bytes.len()).fixed(bytes)
    }

    /// Fixed-length opaque (no length word), zero padded.
    pub fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        let pad = (4 - bytes.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self
    }

    /// `remote_nonnull_string`.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.opaque(s.as_bytes())
    }

    /// `remote_string`: optional string.
    pub fn opt_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.u32(1).string(s),
            None => self.u32(0),
        }
    }
}

/// Decodes XDR from a payload.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Decodes `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }

    /// Offset of the next value (for errors).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet decoded.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        if self.remaining() < n {
            return Err(XdrError::Short {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// `unsigned int`.
    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `int`.
    pub fn i32(&mut self) -> Result<i32, XdrError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `unsigned hyper`.
    pub fn u64(&mut self) -> Result<u64, XdrError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// `hyper`.
    pub fn i64(&mut self) -> Result<i64, XdrError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// Variable-length opaque of at most `max` bytes.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.count(max)?;
        self.fixed(len)
    }

    /// Fixed-length opaque of `len` bytes plus padding.
    pub fn fixed(&mut self, len: usize) -> Result<&'a [u8], XdrError> {
        let out = self.take(len)?;
        self.take((4 - len % 4) % 4)?;
        Ok(out)
    }

    /// `remote_uuid`: 16 bytes, no length word.
    pub fn uuid(&mut self) -> Result<[u8; 16], XdrError> {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(self.fixed(16)?);
        Ok(uuid)
    }

    /// `remote_nonnull_string`.
    pub fn string(&mut self) -> Result<String, XdrError> {
        let at = self.pos;
        let bytes = self.opaque(STRING_MAX)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| XdrError::Utf8 { at })
    }

    /// An optional marker: `false` for 0, `true` for 1.
    pub fn present(&mut self) -> Result<bool, XdrError> {
        let at = self.pos;
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::Discriminant { at, value }),
        }
    }

    /// `remote_string`.
    pub fn opt_string(&mut self) -> Result<Option<String>, XdrError> {
        if self.present()? {
            Ok(Some(self.string()?))
        } else {
            Ok(None)
        }
    }

    /// An array count of at most `max`.
    pub fn count(&mut self, max: usize) -> Result<usize, XdrError> {
        let at = self.pos;
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { at, len, max });
        }
        Ok(len)
    }
}

/// A value with an XDR encoding: what `remote_protocol.x` types become.
pub trait Xdr: Sized {
    /// Reads one value.
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError>;
    /// Writes one value.
    fn encode(&self, e: &mut Encoder);
}

/// `void`: no bytes.
impl Xdr for () {
    fn decode(_: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(())
    }
    fn encode(&self, _: &mut Encoder) {}
}

/// `int` (also `char` and `unsigned char`, which XDR widens to four bytes).
impl Xdr for i32 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        d.i32()
    }
    fn encode(&self, e: &mut Encoder) {
        e.i32(*self);
    }
}

/// `unsigned int`.
impl Xdr for u32 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        d.u32()
    }
    fn encode(&self, e: &mut Encoder) {
        e.u32(*self);
    }
}

/// `hyper`.
impl Xdr for i64 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        d.i64()
    }
    fn encode(&self, e: &mut Encoder) {
        e.i64(*self);
    }
}

/// `unsigned hyper`.
impl Xdr for u64 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        d.u64()
    }
    fn encode(&self, e: &mut Encoder) {
        e.u64(*self);
    }
}

/// `remote_nonnull_string`.
impl Xdr for String {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        d.string()
    }
    fn encode(&self, e: &mut Encoder) {
        e.string(self);
    }
}

/// `remote_uuid`.
impl Xdr for [u8; 16] {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        d.uuid()
    }
    fn encode(&self, e: &mut Encoder) {
        e.fixed(self);
    }
}

/// A pointer type (`remote_string`, `remote_storage_pool`): a 0/1 word, then the value.
impl<T: Xdr> Xdr for Option<T> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        if d.present()? {
            Ok(Some(T::decode(d)?))
        } else {
            Ok(None)
        }
    }
    fn encode(&self, e: &mut Encoder) {
        match self {
            Some(v) => {
                e.u32(1);
                v.encode(e);
            }
            None => {
                e.u32(0);
            }
        }
    }
}

/// Longest list decoded (REMOTE_STORAGE_POOL_LIST_MAX and REMOTE_STORAGE_VOL_LIST_MAX).
pub const LIST_MAX: usize = 16384;

/// A variable-length array `T<max>`: a count, then the elements. Decoding refuses more than
/// [`LIST_MAX`] elements before reading any.
impl<T: Xdr> Xdr for Vec<T> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let n = d.count(LIST_MAX)?;
        let mut out = Vec::with_capacity(n.min(d.remaining() / 4));
        for _ in 0..n {
            out.push(T::decode(d)?);
        }
        Ok(out)
    }
    fn encode(&self, e: &mut Encoder) {
        e.count(self.len());
        for v in self {
            v.encode(e);
        }
    }
}

/// A variable-length array with its own limit, `T name<MAX>` in `remote_protocol.x` (such as
/// `remote_typed_param params<REMOTE_CONNECT_IDENTITY_PARAMS_MAX>`): decoding refuses a count
/// above `MAX` before reading any element, as libvirt's XDR decoder does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoundedVec<T, const MAX: usize>(pub Vec<T>);

impl<T: Xdr, const MAX: usize> Xdr for BoundedVec<T, MAX> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let n = d.count(MAX)?;
        let mut out = Vec::with_capacity(n.min(d.remaining() / 4));
        for _ in 0..n {
            out.push(T::decode(d)?);
        }
        Ok(BoundedVec(out))
    }
    fn encode(&self, e: &mut Encoder) {
        self.0.encode(e);
    }
}

/// Encodes one value into a fresh buffer.
pub fn to_bytes<T: Xdr>(value: &T) -> Vec<u8> {
    let mut e = Encoder::default();
    value.encode(&mut e);
    e.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_padded_to_four_bytes() {
        let mut e = Encoder::default();
        e.string("lv");
        assert_eq!(e.into_bytes(), vec![0, 0, 0, 2, b'l', b'v', 0, 0]);
    }

    #[test]
    fn optional_strings_carry_a_marker() {
        let mut e = Encoder::default();
        e.opt_string(Some("storage:///system")).opt_string(None);
        let bytes = e.into_bytes();
        assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0, 0, 0, 17]);
        assert_eq!(&bytes[bytes.len() - 4..], &[0, 0, 0, 0]);
        let mut d = Decoder::new(&bytes);
        assert_eq!(
            d.opt_string().unwrap().as_deref(),
            Some("storage:///system")
        );
        assert_eq!(d.opt_string().unwrap(), None);
        assert_eq!(d.remaining(), 0);
    }

    #[test]
    fn huge_lengths_are_refused_without_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        let mut d = Decoder::new(&bytes);
        assert!(matches!(d.string(), Err(XdrError::TooLong { .. })));
        let mut d = Decoder::new(&bytes);
        assert!(matches!(d.count(16384), Err(XdrError::TooLong { .. })));
    }

    #[test]
    fn truncated_values_are_refused() {
        let mut d = Decoder::new(&[0, 0, 0, 8, b'a']);
        assert!(matches!(d.string(), Err(XdrError::Short { .. })));
        let mut d = Decoder::new(&[0, 0, 0]);
        assert!(matches!(d.u32(), Err(XdrError::Short { .. })));
    }

    #[test]
    fn bad_optional_markers_are_refused() {
        let mut d = Decoder::new(&[0, 0, 0, 2]);
        assert!(matches!(
            d.present(),
            Err(XdrError::Discriminant { value: 2, .. })
        ));
    }

    #[test]
    fn lists_and_options_round_trip() {
        let value: (Vec<String>, Option<u64>) = (vec!["a".into(), "bcd".into()], Some(7));
        let mut e = Encoder::default();
        value.0.encode(&mut e);
        value.1.encode(&mut e);
        let bytes = e.into_bytes();
        let mut d = Decoder::new(&bytes);
        assert_eq!(Vec::<String>::decode(&mut d).unwrap(), value.0);
        assert_eq!(Option::<u64>::decode(&mut d).unwrap(), value.1);
        assert_eq!(d.remaining(), 0);
        let mut d = Decoder::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            Vec::<u32>::decode(&mut d),
            Err(XdrError::TooLong { .. })
        ));
    }

    #[test]
    fn bounded_arrays_refuse_a_count_above_their_own_limit() {
        let two = [0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 9];
        let mut d = Decoder::new(&two);
        assert_eq!(BoundedVec::<u32, 2>::decode(&mut d).unwrap().0, vec![7, 9]);
        let mut d = Decoder::new(&two);
        assert!(matches!(
            BoundedVec::<u32, 1>::decode(&mut d),
            Err(XdrError::TooLong { len: 2, max: 1, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut d = Decoder::new(&bytes);
            let _ = d.string();
            let _ = d.opt_string();
            let _ = d.u64();
            let _ = d.count(10);
        }

        #[test]
        fn strings_round_trip(s in ".{0,40}") {
            let mut e = Encoder::default();
            e.string(&s);
            let bytes = e.into_bytes();
            proptest::prop_assert_eq!(bytes.len() % 4, 0);
            proptest::prop_assert_eq!(Decoder::new(&bytes).string().unwrap(), s);
        }
    }
}
