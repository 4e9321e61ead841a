//! The wire encoding of [`Message`]s: compact, versioned and bounded.
//!
//! ```text
//! message   = version u8 (2) | kind u8 | body
//! kind 1    Deltas:         deltas
//! kind 2    Coverage:       vector
//! kind 3    CatchUpRequest: request u64 | pages u16 | vector
//! kind 4    CatchUpPage:    request u64 | flags u8 (1: more, 2: continues) | deltas
//! kind 5    Fetch:          request u64 | ids
//! kind 6    Fetched:        request u64 | deltas | ids (the missing ones)
//! kind 7    WhoHas:         request u64 | bytes (the entity id, UTF-8)
//! kind 8    Holds:          request u64 | deltas u64
//! kind 9    Reconcile:      session u64 | bytes (the filter, UTF-8 JSON) | bytes (payload)
//! kind 10   ReconcileReply: session u64 | bytes (payload)
//! kind 11   Peers:          count u32 | (host [32] | bytes (ROUTER address, UTF-8))*
//! ids       = count u32 | id [32]*
//! bytes     = length u32 | byte*
//! deltas    = the deltas with their origin stamps, each batch stamp once (see `deltas.rs`)
//! vector    = count u32 | (host [32] | seq u64)*
//! ```
//!
//! Integers are big-endian. Every count and length is checked against the bytes that are
//! left before anything is allocated, and a message larger than the caller's bound is
//! refused before it is parsed.

use hypha_primitives::{DeltaId, HostId, Seq};

use crate::{CoverageVector, Message};

mod deltas;

use deltas::put_deltas;

/// The wire format version this build writes and reads. Version 2 carries origin stamps
/// signed per batch; a peer of version 1 is refused at the handshake, naming both.
pub const WIRE_VERSION: u8 = 2;

/// The default bound on one message's size (bytes).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Why bytes from a peer are not a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message is larger than the bound.
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// Another wire version.
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    Version(u8),
    /// An unknown message kind.
    #[error("unknown message kind {0}")]
    Kind(u8),
    /// The bytes end early or hold an impossible count.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A delta or stamp inside does not decode.
    #[error("malformed delta in message: {0}")]
    Delta(#[from] hypha_primitives::Error),
    /// The Merkle proof of a batch of stamps does not lead to the batch's signed root: a
    /// forged, truncated or mismatched proof.
    #[error("bad batch proof in message: {0}")]
    Proof(String),
}

/// Encodes a message.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    match message {
        Message::Deltas(deltas) => {
            out.push(1);
            put_deltas(&mut out, deltas);
        }
        Message::Coverage(vector) => {
            out.push(2);
            put_vector(&mut out, vector);
        }
        Message::CatchUpRequest {
            request,
            have,
            pages,
        } => {
            out.push(3);
            out.extend_from_slice(&request.to_be_bytes());
            out.extend_from_slice(&pages.to_be_bytes());
            put_vector(&mut out, have);
        }
        Message::CatchUpPage {
            request,
            deltas,
            more,
            continues,
        } => {
            out.push(4);
            out.extend_from_slice(&request.to_be_bytes());
            out.push(u8::from(*more) | (u8::from(*continues) << 1));
            put_deltas(&mut out, deltas);
        }
        Message::Fetch { request, ids } => {
            out.push(5);
            out.extend_from_slice(&request.to_be_bytes());
            put_ids(&mut out, ids);
        }
        Message::Fetched {
            request,
            deltas,
            missing,
        } => {
            out.push(6);
            out.extend_from_slice(&request.to_be_bytes());
            put_deltas(&mut out, deltas);
            put_ids(&mut out, missing);
        }
        Message::WhoHas { request, entity } => {
            out.push(7);
            out.extend_from_slice(&request.to_be_bytes());
            put_bytes(&mut out, entity.as_bytes());
        }
        Message::Holds { request, deltas } => {
            out.push(8);
            out.extend_from_slice(&request.to_be_bytes());
            out.extend_from_slice(&deltas.to_be_bytes());
        }
        Message::Reconcile {
            session,
            filter,
            payload,
        } => {
            out.push(9);
            out.extend_from_slice(&session.to_be_bytes());
            put_bytes(&mut out, filter.as_bytes());
            put_bytes(&mut out, payload);
        }
        Message::ReconcileReply { session, payload } => {
            out.push(10);
            out.extend_from_slice(&session.to_be_bytes());
            put_bytes(&mut out, payload);
        }
        Message::Peers(peers) => {
            out.push(11);
            put_u32(&mut out, peers.len());
            for (host, address) in peers {
                out.extend_from_slice(host.as_bytes());
                put_bytes(&mut out, address.as_bytes());
            }
        }
    }
    out
}

fn put_ids(out: &mut Vec<u8>, ids: &[DeltaId]) {
    put_u32(out, ids.len());
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Counts and lengths are bounded by the message size limit, far below u32::MAX.
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_vector(out: &mut Vec<u8>, vector: &CoverageVector) {
    put_u32(out, vector.len());
    for (host, seq) in vector {
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(&seq.get().to_be_bytes());
    }
}

/// Decodes a message of at most `max_bytes` bytes. Deltas and stamps are decoded, not
/// verified: the store verifies them.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Message, WireError> {
    if bytes.len() > max_bytes {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let message = match r.u8()? {
        1 => Message::Deltas(r.deltas()?),
        2 => Message::Coverage(r.vector()?),
        3 => Message::CatchUpRequest {
            request: r.u64()?,
            pages: r.u16()?,
            have: r.vector()?,
        },
        4 => {
            let request = r.u64()?;
            let flags = r.u8()?;
            if flags > 3 {
                return Err(WireError::Malformed(format!("page flags {flags}")));
            }
            Message::CatchUpPage {
                request,
                more: flags & 1 != 0,
                continues: flags & 2 != 0,
                deltas: r.deltas()?,
            }
        }
        5 => Message::Fetch {
            request: r.u64()?,
            ids: r.ids()?,
        },
        6 => Message::Fetched {
            request: r.u64()?,
            deltas: r.deltas()?,
            missing: r.ids()?,
        },
        7 => Message::WhoHas {
            request: r.u64()?,
            entity: r.string()?,
        },
        8 => Message::Holds {
            request: r.u64()?,
            deltas: r.u64()?,
        },
        9 => Message::Reconcile {
            session: r.u64()?,
            filter: r.string()?,
            payload: r.bytes()?.to_vec(),
        },
        10 => Message::ReconcileReply {
            session: r.u64()?,
            payload: r.bytes()?.to_vec(),
        },
        11 => {
            let n = r.count(32 + 4)?;
            let mut peers = Vec::with_capacity(n);
            for _ in 0..n {
                let host = HostId::from_bytes(r.array()?);
                peers.push((host, r.string()?));
            }
            Message::Peers(peers)
        }
        kind => return Err(WireError::Kind(kind)),
    };
    if r.at != bytes.len() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            bytes.len() - r.at
        )));
    }
    Ok(message)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                WireError::Malformed(format!(
                    "needs {n} bytes at offset {}, {} left",
                    self.at,
                    self.bytes.len() - self.at
                ))
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left.
    fn count(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        let left = self.bytes.len() - self.at;
        if n.saturating_mul(min_item) > left {
            return Err(WireError::Malformed(format!(
                "count {n} cannot fit in {left} bytes"
            )));
        }
        Ok(n)
    }
    fn ids(&mut self) -> Result<Vec<DeltaId>, WireError> {
        let n = self.count(32)?;
        (0..n)
            .map(|_| Ok(DeltaId::from_bytes(self.array()?)))
            .collect()
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, WireError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| WireError::Malformed("a string that is not UTF-8".into()))
    }
    fn vector(&mut self) -> Result<CoverageVector, WireError> {
        let n = self.count(40)?;
        let mut vector = CoverageVector::new();
        for _ in 0..n {
            let host = HostId::from_bytes(self.array()?);
            vector.insert(host, Seq::new(self.u64()?));
        }
        Ok(vector)
    }
}

#[cfg(test)]
mod tests {
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer, Stamp, StampedDelta};
    use proptest::prelude::*;

    use super::*;

    fn stamped(seed: u8, seq: u64, stamps: usize) -> StampedDelta {
        let key = KeyPair::from_seed([seed; 32]);
        let delta = DeltaBuilder::new(Hlc::new(seq, 0))
            .pointer(Pointer::entity("subject", format!("e{seq}"), "p"))
            .pointer(Pointer::value("p", seq as i64))
            .sign(&key)
            .unwrap();
        let stamps = (0..stamps)
            .map(|i| {
                Stamp::sign(
                    delta.id(),
                    Seq::new(seq),
                    &KeyPair::from_seed([i as u8 + 50; 32]),
                )
            })
            .collect();
        StampedDelta { delta, stamps }
    }

    /// `n` deltas stamped by one batch stamp of host 60, seqs 1..=n.
    fn batch_stamped(n: u64) -> Vec<StampedDelta> {
        let deltas: Vec<StampedDelta> = (1..=n).map(|seq| stamped(1, seq, 0)).collect();
        let ids: Vec<_> = deltas.iter().map(|d| d.delta.id()).collect();
        let stamps = Stamp::sign_batch(&ids, Seq::FIRST, &KeyPair::from_seed([60; 32])).unwrap();
        deltas
            .into_iter()
            .zip(stamps)
            .map(|(mut d, s)| {
                d.stamps.push(s);
                d
            })
            .collect()
    }

    fn vector(n: u8) -> CoverageVector {
        (0..n)
            .map(|i| {
                (
                    HostId::from_bytes([i; 32]),
                    Seq::new(u64::from(i) * 1000 + 1),
                )
            })
            .collect()
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Deltas(vec![]),
            Message::Deltas(vec![stamped(1, 1, 1), stamped(2, 2, 0), stamped(3, 3, 3)]),
            Message::Deltas(batch_stamped(5)),
            Message::Deltas(batch_stamped(9)[3..4].to_vec()),
            Message::Coverage(vector(0)),
            Message::Coverage(vector(5)),
            Message::CatchUpRequest {
                request: u64::MAX,
                have: vector(3),
                pages: 4,
            },
            Message::CatchUpPage {
                request: 9,
                deltas: vec![stamped(4, 7, 2)],
                more: false,
                continues: true,
            },
            Message::CatchUpPage {
                request: 9,
                deltas: vec![stamped(4, 7, 2)],
                more: true,
                continues: false,
            },
            Message::CatchUpPage {
                request: 0,
                deltas: vec![],
                more: false,
                continues: false,
            },
            Message::Fetch {
                request: 3,
                ids: vec![stamped(5, 1, 0).delta.id(), stamped(6, 2, 0).delta.id()],
            },
            Message::Fetched {
                request: 3,
                deltas: vec![stamped(5, 1, 1)],
                missing: vec![stamped(6, 2, 0).delta.id()],
            },
            Message::WhoHas {
                request: 4,
                entity: "user:ä".into(),
            },
            Message::Holds {
                request: 4,
                deltas: 12,
            },
            Message::Reconcile {
                session: 8,
                filter: r#"{"in":["a",{"var":"targets"}]}"#.into(),
                payload: vec![1, 0, 1, 2, 3],
            },
            Message::ReconcileReply {
                session: 8,
                payload: vec![],
            },
            Message::Peers(vec![]),
            Message::Peers(vec![(
                HostId::from_bytes([4; 32]),
                "tcp://10.0.0.4:7400".into(),
            )]),
        ]
    }

    #[test]
    fn every_message_kind_round_trips() {
        for message in samples() {
            let bytes = encode(&message);
            assert_eq!(bytes[0], WIRE_VERSION);
            assert_eq!(decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES).unwrap(), message);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_a_clean_error() {
        for message in samples() {
            let bytes = encode(&message);
            for len in 0..bytes.len() {
                assert!(
                    decode(&bytes[..len], DEFAULT_MAX_MESSAGE_BYTES).is_err(),
                    "{message:?} cut at {len}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(matches!(
                decode(&longer, DEFAULT_MAX_MESSAGE_BYTES),
                Err(WireError::Malformed(_))
            ));
        }
    }

    #[test]
    fn bad_headers_and_oversized_messages_are_refused_by_name() {
        let bytes = encode(&Message::Coverage(vector(2)));
        assert_eq!(
            decode(&bytes, 10),
            Err(WireError::TooLarge {
                size: bytes.len(),
                limit: 10
            })
        );
        let mut other_version = bytes.clone();
        other_version[0] = 1;
        assert_eq!(
            decode(&other_version, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Version(1))
        );
        let mut other_kind = bytes.clone();
        other_kind[1] = 99;
        assert_eq!(
            decode(&other_kind, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Kind(99))
        );
        // A count that claims more items than the bytes could hold allocates nothing.
        let lying = [WIRE_VERSION, 2, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&lying, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn a_tampered_delta_inside_is_a_typed_error() {
        let mut bytes = encode(&Message::Deltas(vec![stamped(1, 1, 0)]));
        // The delta's version byte sits after the header (2), the batch table's count (2),
        // the delta count (4) and its length (4).
        bytes[12] = 9;
        assert!(matches!(
            decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES),
            Err(WireError::Delta(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES);
        }

        #[test]
        fn mutated_messages_never_panic_and_never_decode_to_a_forgery(index in any::<prop::sample::Index>(), bit in 0u8..8) {
            let message = Message::Deltas(vec![stamped(1, 1, 1)]);
            let mut bytes = encode(&message);
            let i = index.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(Message::Deltas(deltas)) = decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES) {
                for d in deltas {
                    let intact = d.delta.verify().is_ok() && d.stamps.iter().all(|s| s.verify(d.delta.id()).is_ok());
                    prop_assert!(!intact || Message::Deltas(vec![d.clone()]) == message);
                }
            }
        }
    }
}
