//! The on-disk layout: column family names, index key encodings and the stored record.
//!
//! Every integer in a key is big-endian so that byte order is numeric order. Strings in
//! keys are prefixed by their length (u32), which keeps one entity's keys contiguous and
//! never confuses `("ab", "c")` with `("a", "bc")`.

use hypha_primitives::codec::Reader;
use hypha_primitives::{
    AuthorKey, BatchStamp, Delta, DeltaId, Frontier, HostId, Seq, Stamp, BATCH_STAMP_LEN, STAMP_LEN,
};

use crate::{Arrival, Error, Result, StoredDelta};

/// The layout version written into the meta column family. Version 1 folders open and are
/// raised to 2 in place: their records still decode, and new records are written in the
/// second form (which a build of version 1 cannot read, so it refuses the folder).
pub(crate) const LAYOUT_VERSION: u8 = 2;

/// Column family: delta id → stored record.
pub(crate) const CF_DELTAS: &str = "deltas";
/// Column family: arrival (u64) → delta id.
pub(crate) const CF_ARRIVAL: &str = "arrival";
/// Column family: host (32) + seq (u64) → delta id.
pub(crate) const CF_ORIGIN: &str = "origin";
/// Column family: entity + target context + delta id → empty.
pub(crate) const CF_ENTITY: &str = "entity";
/// Column family: author (32) + arrival (u64) → delta id.
pub(crate) const CF_AUTHOR: &str = "author";
/// Column family: negated id (32) + negating id (32) → empty.
pub(crate) const CF_NEGATION: &str = "negation";
/// Column family: host (32) + first seq (u64) → a batch stamp and the frontier of its
/// Merkle tree ([`encode_batch_row`]), kept once for all its deltas.
pub(crate) const CF_BATCHES: &str = "batches";
/// Column family: named settings such as the layout version.
pub(crate) const CF_META: &str = "meta";
/// Column family: data derived from the deltas (materialized views), owned by the layers
/// above; the journal never reads it.
pub(crate) const CF_DERIVED: &str = "derived";

/// Every column family, in creation order.
pub(crate) const ALL_CFS: [&str; 9] = [
    CF_DELTAS,
    CF_ARRIVAL,
    CF_ORIGIN,
    CF_ENTITY,
    CF_AUTHOR,
    CF_NEGATION,
    CF_META,
    CF_DERIVED,
    CF_BATCHES,
];

/// Meta key holding [`LAYOUT_VERSION`].
pub(crate) const META_LAYOUT: &[u8] = b"layout_version";

pub(crate) fn arrival_key(arrival: Arrival) -> [u8; 8] {
    arrival.get().to_be_bytes()
}

pub(crate) fn origin_key(host: HostId, seq: Seq) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(host.as_bytes());
    key[32..].copy_from_slice(&seq.get().to_be_bytes());
    key
}

pub(crate) fn author_key(author: AuthorKey, arrival: Arrival) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(author.as_bytes());
    key[32..].copy_from_slice(&arrival.get().to_be_bytes());
    key
}

pub(crate) fn negation_key(negated: DeltaId, negator: DeltaId) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(negated.as_bytes());
    key[32..].copy_from_slice(negator.as_bytes());
    key
}

fn push_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_be_bytes());
    key.extend_from_slice(s.as_bytes());
}

/// Prefix of every entity-index key of `entity` (and, if given, of one target context).
pub(crate) fn entity_prefix(entity: &str, context: Option<&str>) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + entity.len() + context.map_or(0, str::len));
    push_str(&mut key, entity);
    if let Some(c) = context {
        push_str(&mut key, c);
    }
    key
}

/// The entity-index key; a pointer without a target context files under the empty context.
pub(crate) fn entity_key(entity: &str, context: &str, id: DeltaId) -> Vec<u8> {
    let mut key = entity_prefix(entity, Some(context));
    key.extend_from_slice(id.as_bytes());
    key
}

/// The entity id at the start of an entity-index key.
pub(crate) fn entity_of_key(key: &[u8]) -> Result<String> {
    let corrupt = || Error::Corrupt("entity index key".into());
    let len = u32::from_be_bytes(
        key.get(..4)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?,
    ) as usize;
    let bytes = key.get(4..4 + len).ok_or_else(corrupt)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt())
}

/// Reads a 32-byte id from the end of an index key or from an index value.
pub(crate) fn id_at_end(bytes: &[u8]) -> Result<DeltaId> {
    let start = bytes.len().checked_sub(32).ok_or_else(|| {
        Error::Corrupt(format!(
            "index entry of {} bytes holds no delta id",
            bytes.len()
        ))
    })?;
    let mut id = [0u8; 32];
    id.copy_from_slice(&bytes[start..]);
    Ok(DeltaId::from_bytes(id))
}

/// The record version byte of the stored records written now.
const RECORD_VERSION: u8 = 2;
/// The record version of layout 1, still read.
const RECORD_VERSION_1: u8 = 1;

/// The stored record: version u8 (2), arrival u64, stamp count u16, stamps in their tagged
/// form ([`Stamp::encode`]; a stamp of a batch names its batch, whose proof is kept once
/// in [`CF_BATCHES`]), delta encoding.
pub(crate) fn encode_record(arrival: Arrival, stamps: &[Stamp], delta: &Delta) -> Vec<u8> {
    let mut out = Vec::with_capacity(11 + stamps.len() * (STAMP_LEN + 1) + delta.encoded_len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&arrival.get().to_be_bytes());
    // The store keeps at most MAX_STAMPS (far below u16::MAX) stamps per delta.
    let count = u16::try_from(stamps.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for s in stamps.iter().take(usize::from(count)) {
        out.extend_from_slice(&s.to_named().encode());
    }
    out.extend_from_slice(&delta.encode());
    out
}

/// Decodes [`encode_record`]'s output, or a record of layout 1 (whose stamps are the
/// fixed-length signed form); the delta was verified before it was stored.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<StoredDelta> {
    let (arrival, stamps, stamps_end) = decode_head(bytes)?;
    let delta = Delta::decode(&bytes[stamps_end..])
        .map_err(|e| Error::Corrupt(format!("stored record: {e}")))?;
    Ok(StoredDelta {
        arrival,
        delta,
        stamps,
    })
}

/// The stamps of a stored record, without decoding its delta.
pub(crate) fn decode_stamps(bytes: &[u8]) -> Result<Vec<Stamp>> {
    Ok(decode_head(bytes)?.1)
}

/// A stored record's arrival, its stamps, and where its delta starts.
fn decode_head(bytes: &[u8]) -> Result<(Arrival, Vec<Stamp>, usize)> {
    let corrupt = |what: &str| Error::Corrupt(format!("stored record: {what}"));
    let version = bytes.first().copied();
    if version != Some(RECORD_VERSION) && version != Some(RECORD_VERSION_1) {
        return Err(corrupt("unknown record version"));
    }
    if bytes.len() < 11 {
        return Err(corrupt("truncated header"));
    }
    let arrival = Arrival::new(u64::from_be_bytes(
        bytes[1..9].try_into().map_err(|_| corrupt("arrival"))?,
    ));
    let count = u16::from_be_bytes([bytes[9], bytes[10]]) as usize;
    if version == Some(RECORD_VERSION_1) {
        let stamps_end = 11 + count * STAMP_LEN;
        if bytes.len() < stamps_end {
            return Err(corrupt("truncated stamps"));
        }
        let stamps = bytes[11..stamps_end]
            .chunks_exact(STAMP_LEN)
            .map(Stamp::decode_v1)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(&e.to_string()))?;
        return Ok((arrival, stamps, stamps_end));
    }
    let mut r = Reader::new(&bytes[11..]);
    let stamps = (0..count)
        .map(|_| Stamp::read(&mut r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(&e.to_string()))?;
    Ok((arrival, stamps, 11 + r.position()))
}

/// The key of a batch's row: host, first seq.
pub(crate) fn batch_key(host: HostId, first: Seq) -> [u8; 40] {
    origin_key(host, first)
}

/// A batch row: the batch stamp, then the frontier of its tree ([`Frontier::encode`]).
pub(crate) fn encode_batch_row(stamp: &BatchStamp, frontier: &Frontier) -> Vec<u8> {
    [&stamp.encode()[..], &frontier.encode()].concat()
}

/// Decodes [`encode_batch_row`]'s output.
pub(crate) fn decode_batch_row(bytes: &[u8]) -> Result<(BatchStamp, Frontier)> {
    let corrupt = |e: hypha_primitives::Error| Error::Corrupt(format!("batch row: {e}"));
    if bytes.len() < BATCH_STAMP_LEN {
        return Err(Error::Corrupt("batch row: truncated".into()));
    }
    let stamp = BatchStamp::decode(&bytes[..BATCH_STAMP_LEN]).map_err(corrupt)?;
    let frontier = Frontier::decode(&bytes[BATCH_STAMP_LEN..]).map_err(corrupt)?;
    if frontier.len() as u64 != stamp.len() {
        return Err(Error::Corrupt(
            "batch row: frontier of another length".into(),
        ));
    }
    Ok((stamp, frontier))
}
