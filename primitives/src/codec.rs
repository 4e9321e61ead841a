//! The canonical binary encoding: a deterministic byte form of deltas and stamps.
//!
//! Layout of a delta's canonical body (format version 1), every integer big-endian:
//!
//! ```text
//! version   u8 = 1
//! author    [u8; 32]
//! time      ms u64, logical u32
//! pointers  count (LEB128 u32), then for each pointer:
//!   local_context   string
//!   target          tag u8, then: 0 entity string | 1 delta id [u8; 32] | 2 string string
//!                   | 3 int i64 | 4 float f64 bits | 5 true | 6 false | 7 null
//!   target_context  0 | 1 string
//! string = length (LEB128 u32) then UTF-8 bytes
//! ```
//!
//! The id is the blake3 hash of the body; the signature signs the body.
//! The stored and wire form of a delta is the body followed by the 64-byte signature.

use crate::{DeltaId, EntityId, Error, Primitive, Result, Target};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Appends canonical fields to a byte buffer (also used by other crates for their own
/// versioned binary forms, so every Hypha encoding shares one set of primitives).
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
        }
    }
    /// Appends a byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends bytes as they are.
    pub fn raw(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }
    /// Appends a canonical LEB128 varint.
    pub fn varint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }
    /// Appends a string: its length as a varint, then its UTF-8 bytes.
    pub fn str(&mut self, s: &str) {
        // Lengths are bounded far below u32::MAX by the delta size limit.
        self.varint(s.len() as u32);
        self.raw(s.as_bytes());
    }
    /// Appends a pointer target: a tag byte, then 0 entity string | 1 delta id [u8; 32] |
    /// 2 string | 3 int i64 | 4 float f64 bits | 5 true | 6 false | 7 null.
    pub fn target(&mut self, target: &Target) {
        match target {
            Target::Entity(e) => {
                self.u8(0);
                self.str(e.as_str());
            }
            Target::Delta(id) => {
                self.u8(1);
                self.raw(id.as_bytes());
            }
            Target::Value(Primitive::String(s)) => {
                self.u8(2);
                self.str(s);
            }
            Target::Value(Primitive::Int(i)) => {
                self.u8(3);
                self.u64(*i as u64);
            }
            Target::Value(Primitive::Float(f)) => {
                self.u8(4);
                self.u64(f.to_bits());
            }
            Target::Value(Primitive::Bool(true)) => self.u8(5),
            Target::Value(Primitive::Bool(false)) => self.u8(6),
            Target::Value(Primitive::Null) => self.u8(7),
        }
    }
    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads canonical fields from a byte slice, failing cleanly on truncation.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
    /// The offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.at
    }
    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
    /// The next `n` bytes; `what` names them in the error.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::Decode(format!(
                "truncated {what}: need {n} bytes at offset {}, {} left",
                self.at,
                self.remaining()
            )));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }
    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    /// The next byte.
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    /// The next big-endian u16.
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    /// The next big-endian u32.
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    /// The next big-endian u64.
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    /// The next canonical LEB128 varint (overlong or non-canonical forms are errors).
    pub fn varint(&mut self, what: &str) -> Result<u32> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.u8(what)?;
            let bits = u32::from(byte & 0x7f);
            if shift == 28 && bits > 0x0f {
                return Err(Error::Decode(format!("{what}: varint overflows u32")));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // Canonical form: no redundant trailing zero groups.
                if byte == 0 && shift > 0 {
                    return Err(Error::Decode(format!("{what}: non-canonical varint")));
                }
                return Ok(value);
            }
        }
        Err(Error::Decode(format!("{what}: varint longer than 5 bytes")))
    }
    /// The next length-prefixed UTF-8 string.
    pub fn string(&mut self, what: &str) -> Result<String> {
        let len = self.varint(what)? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Error::Decode(format!("{what} is not valid utf-8")))
    }
    /// The next pointer target (see [`Writer::target`]).
    pub fn target(&mut self) -> Result<Target> {
        Ok(match self.u8("target tag")? {
            0 => Target::Entity(EntityId::new(self.string("entity id")?)),
            1 => Target::Delta(DeltaId::from_bytes(self.array("delta id")?)),
            2 => Target::Value(Primitive::String(self.string("string value")?)),
            3 => Target::Value(Primitive::Int(self.u64("int value")? as i64)),
            4 => Target::Value(Primitive::Float(f64::from_bits(self.u64("float value")?))),
            5 => Target::Value(Primitive::Bool(true)),
            6 => Target::Value(Primitive::Bool(false)),
            7 => Target::Value(Primitive::Null),
            tag => {
                return Err(Error::Decode(format!(
                    "unknown target tag {tag} at offset {}",
                    self.position() - 1
                )))
            }
        })
    }
    /// An error unless every byte has been read.
    pub fn expect_end(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(Error::Decode(format!(
                "{} trailing bytes",
                self.remaining()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u32>()) {
            let mut w = Writer::default();
            w.varint(v);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.varint("v").unwrap(), v);
            prop_assert!(r.expect_end().is_ok());
        }
    }

    #[test]
    fn overlong_and_non_canonical_varints_are_rejected() {
        assert!(Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
            .varint("v")
            .is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f])
            .varint("v")
            .is_err());
        assert!(Reader::new(&[0x81, 0x00]).varint("v").is_err());
        assert!(Reader::new(&[0x80]).varint("v").is_err());
    }
}
