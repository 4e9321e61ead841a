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

use crate::{Error, Result};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Appends canonical fields to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
        }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }
    pub(crate) fn varint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }
    pub(crate) fn str(&mut self, s: &str) {
        // Lengths are bounded far below u32::MAX by the delta size limit.
        self.varint(s.len() as u32);
        self.raw(s.as_bytes());
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads canonical fields from a byte slice, failing cleanly on truncation.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
    pub(crate) fn position(&self) -> usize {
        self.at
    }
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
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
    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn varint(&mut self, what: &str) -> Result<u32> {
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
    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        let len = self.varint(what)? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Error::Decode(format!("{what} is not valid utf-8")))
    }
    pub(crate) fn expect_end(&self) -> Result<()> {
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
