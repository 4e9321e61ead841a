//! Range-based set reconciliation: two nodes find which deltas one holds and the other
//! lacks, in a few round trips and bytes proportional to the difference, not to the sets.
//!
//! Coverage vectors answer "what do you lack" for full replicas in one round trip, because
//! a full replica holds a gap-free prefix of every origin host's stamps. A partial replica
//! holds a slice (the deltas a filter selects) with no such structure, so the two sides
//! compare the slice itself. This module does it the way negentropy does (Aljoscha
//! Meyer's range-based set reconciliation), implemented here:
//!
//! - Each side sorts its items, (time, delta id) pairs, and sees the space of all
//!   possible items as ranges, each ending at an exclusive upper [`Bound`]. The ranges of
//!   one message cover the whole space.
//! - For a range, a side sends a fingerprint of the items it holds there (a hash of
//!   their ids' sum modulo 2^256 and their count), or, when it holds few, their ids.
//! - The receiver compares the range with its own items. Equal fingerprints settle it.
//!   Different ones make it split its items in the range into `branching` sub-ranges
//!   with fingerprints, or list them if few. A list of ids settles the range: the
//!   receiver learns which of those it lacks, and answers with the ids the sender lacks.
//! - The exchange ends when a message settles everything.
//!
//! With 16-way splits, each message narrows a difference sixteen-fold, so 1M against 1M
//! differing by one settles in three round trips and about three kilobytes (measured by
//! `hypha-bench reconcile`). A message never exceeds its byte budget: past it, the rest of
//! the space goes as one fingerprint, which the other side splits again on its turn.
//!
//! [`Reconciler`] is pure: no IO, no clock. The caller moves the bytes.

use std::collections::HashSet;

use hypha_primitives::DeltaId;

/// One element of a reconciled set: a delta, ordered by time, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    /// The delta's time (its HLC milliseconds), so that recent deltas sit together.
    pub time: u64,
    /// The delta's id.
    pub id: DeltaId,
}

/// The exclusive upper end of a range: items below it are in the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    /// Below this time and id (the id is a prefix, padded with zeros).
    At { time: u64, id: [u8; 32], prefix: u8 },
    /// Past every item.
    End,
}

impl Bound {
    /// Whether `item` lies below the bound.
    fn above(&self, item: &Item) -> bool {
        match self {
            Bound::End => true,
            Bound::At { time, id, .. } => (item.time, item.id.as_bytes()) < (*time, id),
        }
    }

    /// The shortest bound above `low` and at or below `high` (`low < high`).
    fn between(low: &Item, high: &Item) -> Bound {
        if low.time < high.time {
            return Bound::At {
                time: high.time,
                id: [0; 32],
                prefix: 0,
            };
        }
        let (a, b) = (low.id.as_bytes(), high.id.as_bytes());
        let shared = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let prefix = (shared + 1).min(32);
        let mut id = [0; 32];
        id[..prefix].copy_from_slice(&b[..prefix]);
        Bound::At {
            time: high.time,
            id,
            prefix: prefix as u8,
        }
    }

    fn key(&self) -> Option<(u64, &[u8; 32])> {
        match self {
            Bound::End => None,
            Bound::At { time, id, .. } => Some((*time, id)),
        }
    }
}

/// What a message says about one range.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// Settled: nothing to do.
    Skip,
    /// The fingerprint of the sender's items in the range.
    Fingerprint([u8; 16]),
    /// Every id the sender holds in the range.
    IdList(Vec<DeltaId>),
    /// The ids in the range the receiver lacks (an answer to its list).
    YouLack(Vec<DeltaId>),
}

/// Why a reconciliation message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// The message is cut short or malformed.
    #[error("malformed reconciliation message: {0}")]
    Malformed(&'static str),
    /// The message was written by an unknown version of the protocol.
    #[error("unknown reconciliation version {0}")]
    Version(u8),
}

/// Tuning of the exchange; both sides may differ.
#[derive(Clone, Copy, Debug)]
pub struct ReconcileConfig {
    /// Sub-ranges a differing range is split into.
    pub branching: usize,
    /// At most this many items in a differing range are listed instead of split.
    pub list_below: usize,
    /// A list received for a range where this side holds more than this many items is
    /// answered by splitting, not by listing what the sender lacks.
    pub answer_below: usize,
    /// The largest message to write, in bytes.
    pub max_message_bytes: usize,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            branching: 16,
            list_below: 32,
            answer_below: 1024,
            max_message_bytes: 256 * 1024,
        }
    }
}

/// What one step of the exchange produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    /// The message to send back; `None` when everything is settled.
    pub reply: Option<Vec<u8>>,
    /// Ids the other side holds and this side lacks, learnt in this step.
    pub need: Vec<DeltaId>,
    /// Ids this side holds and the other lacks, learnt in this step.
    pub have: Vec<DeltaId>,
}

/// One side of a reconciliation over a fixed set of items.
#[derive(Debug, Clone)]
pub struct Reconciler {
    items: Vec<Item>,
    config: ReconcileConfig,
}

const VERSION: u8 = 1;

impl Reconciler {
    /// A side holding `items` (in any order; duplicates are dropped).
    pub fn new(items: impl IntoIterator<Item = Item>, config: ReconcileConfig) -> Reconciler {
        let mut items: Vec<Item> = items.into_iter().collect();
        items.sort_unstable();
        items.dedup();
        Reconciler { items, config }
    }

    /// How many items this side holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether this side holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The first message: the whole space, split or listed.
    pub fn initiate(&self) -> Vec<u8> {
        let mut out = Writer::new();
        self.split_or_list(0, self.items.len(), Bound::End, &mut out);
        out.finish()
    }

    /// Answers a message from the other side.
    pub fn reconcile(&self, message: &[u8]) -> Result<Step, ReconcileError> {
        let ranges = decode(message)?;
        let mut step = Step::default();
        let mut out = Writer::new();
        let mut lower = 0;
        let count = ranges.len();
        for (n, (bound, mode)) in ranges.into_iter().enumerate() {
            let upper = lower + self.items[lower..].partition_point(|item| bound.above(item));
            let own = &self.items[lower..upper];
            match mode {
                Mode::Skip => out.range(bound, Mode::Skip),
                Mode::Fingerprint(theirs) => {
                    if fingerprint(own) == theirs {
                        out.range(bound, Mode::Skip);
                    } else {
                        self.split_or_list(lower, upper, bound, &mut out);
                    }
                }
                Mode::IdList(theirs) => {
                    let theirs_set: HashSet<DeltaId> = theirs.iter().copied().collect();
                    let mine: HashSet<DeltaId> = own.iter().map(|i| i.id).collect();
                    step.need
                        .extend(theirs.iter().filter(|id| !mine.contains(id)).copied());
                    if own.len() <= self.config.answer_below {
                        let lack: Vec<DeltaId> = own
                            .iter()
                            .map(|i| i.id)
                            .filter(|id| !theirs_set.contains(id))
                            .collect();
                        step.have.extend(lack.iter().copied());
                        let mode = if lack.is_empty() {
                            Mode::Skip
                        } else {
                            Mode::YouLack(lack)
                        };
                        out.range(bound, mode);
                    } else {
                        // Too many to list back: let the sender narrow it down with us.
                        self.split_into(lower, upper, bound, &mut out);
                    }
                }
                Mode::YouLack(ids) => {
                    step.need.extend(ids);
                    out.range(bound, Mode::Skip);
                }
            }
            lower = upper;
            if out.len() > self.config.max_message_bytes && n + 1 < count {
                // Over budget: the rest of the space goes as one fingerprint.
                let rest = &self.items[lower..];
                out.range(Bound::End, Mode::Fingerprint(fingerprint(rest)));
                break;
            }
        }
        step.reply = (!out.settled()).then(|| out.finish());
        Ok(step)
    }

    /// Writes the items `lo..hi` (below `bound`) as a list if few, else split.
    fn split_or_list(&self, lo: usize, hi: usize, bound: Bound, out: &mut Writer) {
        if hi - lo <= self.config.list_below {
            let ids = self.items[lo..hi].iter().map(|i| i.id).collect();
            out.range(bound, Mode::IdList(ids));
        } else {
            self.split_into(lo, hi, bound, out);
        }
    }

    /// Writes the items `lo..hi` (below `bound`) as `branching` fingerprinted sub-ranges.
    fn split_into(&self, lo: usize, hi: usize, bound: Bound, out: &mut Writer) {
        let parts = self.config.branching.max(2).min((hi - lo).max(1));
        let mut start = lo;
        for part in 0..parts {
            let end = lo + (hi - lo) * (part + 1) / parts;
            let upper = if part + 1 == parts {
                bound
            } else {
                Bound::between(&self.items[end - 1], &self.items[end])
            };
            out.range(
                upper,
                Mode::Fingerprint(fingerprint(&self.items[start..end])),
            );
            start = end;
        }
    }
}

/// The fingerprint of a range: its ids summed as 256-bit little-endian numbers, and its
/// count, hashed. Order-free, so both sides agree whatever their layout.
fn fingerprint(items: &[Item]) -> [u8; 16] {
    let mut sum = [0u64; 4];
    for item in items {
        let bytes = item.id.as_bytes();
        let mut carry = 0u128;
        for (limb, chunk) in sum.iter_mut().zip(bytes.chunks_exact(8)) {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let total = *limb as u128 + word as u128 + carry;
            *limb = total as u64;
            carry = total >> 64;
        }
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"hypha-reconcile-v1");
    for limb in sum {
        hasher.update(&limb.to_le_bytes());
    }
    hasher.update(&(items.len() as u64).to_le_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

/// Writes a message, range by range, merging consecutive settled ranges.
struct Writer {
    bytes: Vec<u8>,
    last_time: u64,
    /// The previous range was a skip not yet written (merged with what follows).
    pending_skip: Option<Bound>,
    /// Every range so far was a skip.
    all_skips: bool,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            bytes: vec![VERSION],
            last_time: 0,
            pending_skip: None,
            all_skips: true,
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn settled(&self) -> bool {
        self.all_skips
    }

    fn range(&mut self, bound: Bound, mode: Mode) {
        if mode == Mode::Skip {
            self.pending_skip = Some(bound);
            return;
        }
        self.all_skips = false;
        if let Some(skip) = self.pending_skip.take() {
            self.write(skip, &Mode::Skip);
        }
        self.write(bound, &mode);
    }

    fn write(&mut self, bound: Bound, mode: &Mode) {
        match bound {
            Bound::End => varint(&mut self.bytes, 0),
            Bound::At { time, id, prefix } => {
                varint(&mut self.bytes, 1 + (time - self.last_time));
                self.last_time = time;
                self.bytes.push(prefix);
                self.bytes.extend_from_slice(&id[..prefix as usize]);
            }
        }
        match mode {
            Mode::Skip => self.bytes.push(0),
            Mode::Fingerprint(fp) => {
                self.bytes.push(1);
                self.bytes.extend_from_slice(fp);
            }
            Mode::IdList(ids) | Mode::YouLack(ids) => {
                self.bytes.push(if matches!(mode, Mode::IdList(_)) {
                    2
                } else {
                    3
                });
                varint(&mut self.bytes, ids.len() as u64);
                for id in ids {
                    self.bytes.extend_from_slice(id.as_bytes());
                }
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if let Some(skip) = self.pending_skip.take() {
            self.write(skip, &Mode::Skip);
        }
        self.bytes
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A position in a message being read.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReconcileError> {
        if self.rest.len() < n {
            return Err(ReconcileError::Malformed("cut short"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ReconcileError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, ReconcileError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ReconcileError::Malformed("varint too long"))
    }
}

/// Reads a message: its ranges, which must cover the space in increasing order.
fn decode(message: &[u8]) -> Result<Vec<(Bound, Mode)>, ReconcileError> {
    use ReconcileError::Malformed;
    let (&version, rest) = message.split_first().ok_or(Malformed("empty"))?;
    if version != VERSION {
        return Err(ReconcileError::Version(version));
    }
    let mut cursor = Cursor { rest };
    let mut ranges = Vec::new();
    let mut last_time = 0u64;
    let mut previous: Option<Bound> = None;
    loop {
        let encoded = cursor.varint()?;
        let bound = if encoded == 0 {
            Bound::End
        } else {
            let time = last_time
                .checked_add(encoded - 1)
                .filter(|t| *t < u64::MAX)
                .ok_or(Malformed("time overflows"))?;
            last_time = time;
            let prefix = cursor.byte()?;
            if prefix > 32 {
                return Err(Malformed("id prefix longer than an id"));
            }
            let mut id = [0; 32];
            id[..prefix as usize].copy_from_slice(cursor.take(prefix as usize)?);
            Bound::At { time, id, prefix }
        };
        if let Some(previous) = previous {
            let increasing = match (previous.key(), bound.key()) {
                (Some(a), Some(b)) => a < b,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !increasing {
                return Err(Malformed("bounds must increase"));
            }
        }
        let mode = match cursor.byte()? {
            0 => Mode::Skip,
            1 => Mode::Fingerprint(cursor.take(16)?.try_into().expect("16 bytes")),
            kind @ (2 | 3) => {
                let count =
                    usize::try_from(cursor.varint()?).map_err(|_| Malformed("too many ids"))?;
                let bytes = cursor.take(count.checked_mul(32).ok_or(Malformed("too many ids"))?)?;
                let ids = bytes
                    .chunks_exact(32)
                    .map(|c| DeltaId::from_bytes(c.try_into().expect("32 bytes")))
                    .collect();
                if kind == 2 {
                    Mode::IdList(ids)
                } else {
                    Mode::YouLack(ids)
                }
            }
            _ => return Err(Malformed("unknown range mode")),
        };
        ranges.push((bound, mode));
        if bound == Bound::End {
            break;
        }
        previous = Some(bound);
    }
    if !cursor.rest.is_empty() {
        return Err(Malformed("bytes after the last range"));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(n: u64) -> Item {
        let hash = blake3::hash(&n.to_le_bytes());
        Item {
            time: 1_700_000_000_000 + n / 3,
            id: DeltaId::from_bytes(*hash.as_bytes()),
        }
    }

    /// What an exchange learnt, and what it cost.
    #[derive(Debug)]
    struct Exchange {
        /// Ids the initiator learnt it lacks, and those the responder learnt it lacks.
        initiator_needs: HashSet<DeltaId>,
        responder_needs: HashSet<DeltaId>,
        /// Messages sent (both ways) and their bytes.
        messages: usize,
        bytes: usize,
    }

    fn exchange(initiator: &Reconciler, responder: &Reconciler) -> Exchange {
        let mut result = Exchange {
            initiator_needs: HashSet::new(),
            responder_needs: HashSet::new(),
            messages: 1,
            bytes: 0,
        };
        let mut message = initiator.initiate();
        let mut responder_turn = true;
        for _ in 0..200 {
            result.bytes += message.len();
            let (side, needs) = if responder_turn {
                (responder, &mut result.responder_needs)
            } else {
                (initiator, &mut result.initiator_needs)
            };
            let step = side.reconcile(&message).expect("a valid message");
            needs.extend(step.need);
            match step.reply {
                Some(reply) => {
                    message = reply;
                    result.messages += 1;
                    responder_turn = !responder_turn;
                }
                None => return result,
            }
        }
        panic!("the exchange did not end");
    }

    fn ids(items: &[Item]) -> HashSet<DeltaId> {
        items.iter().map(|i| i.id).collect()
    }

    #[test]
    fn equal_sets_settle_in_one_round_trip() {
        let items: Vec<Item> = (0..10_000).map(item).collect();
        let a = Reconciler::new(items.clone(), ReconcileConfig::default());
        let b = Reconciler::new(items, ReconcileConfig::default());
        let result = exchange(&a, &b);
        assert_eq!(result.messages, 1, "the responder has nothing to say");
        assert!(result.initiator_needs.is_empty() && result.responder_needs.is_empty());
    }

    #[test]
    fn two_hundred_thousand_differing_by_one_settle_in_three_round_trips_under_4_kb() {
        let items: Vec<Item> = (0..200_000).map(item).collect();
        let extra = item(1_000_000);
        for (initiator_has_it, position) in [(false, 0usize), (true, 1)] {
            let mut with = items.clone();
            with.push(extra);
            let (a, b) = if initiator_has_it {
                (with, items.clone())
            } else {
                (items.clone(), with)
            };
            let a = Reconciler::new(a, ReconcileConfig::default());
            let b = Reconciler::new(b, ReconcileConfig::default());
            let result = exchange(&a, &b);
            let expected: HashSet<DeltaId> = [extra.id].into_iter().collect();
            let (needs, other) = if initiator_has_it {
                (&result.responder_needs, &result.initiator_needs)
            } else {
                (&result.initiator_needs, &result.responder_needs)
            };
            assert_eq!(needs, &expected, "case {position}");
            assert!(other.is_empty());
            assert!(result.messages <= 6, "{} messages", result.messages);
            assert!(result.bytes <= 4096, "{} bytes", result.bytes);
        }
    }

    #[test]
    fn a_message_stays_within_its_budget_and_the_rest_follows() {
        let config = ReconcileConfig {
            max_message_bytes: 2_000,
            ..ReconcileConfig::default()
        };
        let all: Vec<Item> = (0..5_000).map(item).collect();
        let a = Reconciler::new(all[..100].to_vec(), config);
        let b = Reconciler::new(all.clone(), config);
        let result = exchange(&a, &b);
        assert_eq!(result.initiator_needs, ids(&all[100..]));
        assert!(result.responder_needs.is_empty());
    }

    #[test]
    fn malformed_messages_are_refused() {
        let side = Reconciler::new((0..100).map(item), ReconcileConfig::default());
        let good = side.initiate();
        assert_eq!(side.reconcile(&[]), Err(ReconcileError::Malformed("empty")));
        assert_eq!(side.reconcile(&[9]), Err(ReconcileError::Version(9)));
        assert!(
            side.reconcile(&good[..good.len() - 1]).is_err(),
            "cut short"
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(side.reconcile(&trailing).is_err(), "bytes after the end");
        // No range reaching the end of the space.
        assert!(side.reconcile(&[VERSION, 5, 0, 0]).is_err());
        // Bounds going backwards: time 10 then time 10 again (delta 0).
        assert_eq!(
            side.reconcile(&[VERSION, 11, 0, 0, 1, 0, 0, 0, 0]),
            Err(ReconcileError::Malformed("bounds must increase"))
        );
        // A list claiming more ids than the message holds.
        assert!(side.reconcile(&[VERSION, 0, 2, 100]).is_err());
    }

    proptest! {
        /// Whatever the two sets and the tuning, each side learns exactly what it lacks.
        #[test]
        fn each_side_learns_exactly_what_it_lacks(
            shared in 0..600u64,
            only_a in prop::collection::vec(600..5_000u64, 0..80),
            only_b in prop::collection::vec(5_000..10_000u64, 0..80),
            branching in 2..20usize,
            list_below in 1..40usize,
            answer_below in 1..200usize,
            budget in 300..5_000usize,
        ) {
            let config = ReconcileConfig { branching, list_below, answer_below, max_message_bytes: budget };
            let a_items: Vec<Item> = (0..shared).chain(only_a.iter().copied()).map(item).collect();
            let b_items: Vec<Item> = (0..shared).chain(only_b.iter().copied()).map(item).collect();
            let a = Reconciler::new(a_items.clone(), config);
            let b = Reconciler::new(b_items.clone(), config);
            let result = exchange(&a, &b);
            let (a_ids, b_ids) = (ids(&a_items), ids(&b_items));
            prop_assert_eq!(&result.initiator_needs, &b_ids.difference(&a_ids).copied().collect());
            prop_assert_eq!(&result.responder_needs, &a_ids.difference(&b_ids).copied().collect());
        }
    }
}
