//! The checks a batch passes before it is stored: size, allow-list and stamp count first,
//! then signatures and origin stamps in parallel batches (deltas already stored are not
//! verified again, and only their stamps from new hosts are).

use std::sync::atomic::Ordering;

use std::collections::HashSet;

use hypha_primitives::{verify_batch, BatchStamp, Delta, DeltaId, HostId, Stamp, StampedDelta};
use rayon::prelude::*;

use crate::layout::{self, CF_DELTAS};
use crate::store::MAX_STAMPS;
use crate::{Error, Result, Store};

/// Deltas verified per rayon task: large enough for batch verification to pay off, small
/// enough to spread a batch over every core.
const VERIFY_CHUNK: usize = 1024;

/// A delta that passed every check, with the stamps it carried.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) delta: Delta,
    pub(crate) stamps: Vec<Stamp>,
}

/// Deltas whose signatures and stamps [`Store::verify_batch`] checked, to be stored by
/// [`Store::put_verified`] of the same store.
#[derive(Debug)]
pub struct VerifiedBatch {
    pub(crate) items: Vec<Prepared>,
}

impl VerifiedBatch {
    /// How many deltas it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Store {
    /// Checks size, author and stamps, then signatures in parallel batches.
    pub(crate) fn prepare(&self, batch: Vec<StampedDelta>) -> Result<Vec<Prepared>> {
        let config = &self.inner.config;
        for (index, item) in batch.iter().enumerate() {
            let size = item.delta.encoded_len();
            if size > config.max_delta_bytes {
                let source = hypha_primitives::Error::TooLarge {
                    size,
                    limit: config.max_delta_bytes,
                };
                return Err(Error::Invalid { index, source });
            }
            if let Some(allowed) = &config.allowed_authors {
                if !allowed.contains(&item.delta.author()) {
                    return Err(Error::UnknownAuthor {
                        index,
                        author: item.delta.author(),
                    });
                }
            }
            if item.stamps.len() > MAX_STAMPS {
                let source = hypha_primitives::Error::Decode(format!(
                    "{} origin stamps, over the limit of {MAX_STAMPS}",
                    item.stamps.len()
                ));
                return Err(Error::Invalid { index, source });
            }
        }
        // A delta already stored needs no second verification (its id is the hash of its
        // body, and the stored copy is the one kept); only origin stamps from hosts it has no
        // stamp from yet are checked. Relays deliver most deltas more than once, so this is
        // most of the verification work a node in a mesh would otherwise repeat.
        let known = self.stamp_hosts_of_stored(&batch)?;
        let unknown: Vec<usize> = (0..batch.len()).filter(|&i| known[i].is_none()).collect();
        let bad_delta = unknown
            .par_chunks(VERIFY_CHUNK)
            .filter_map(|chunk| {
                let refs: Vec<&Delta> = chunk.iter().map(|&i| &batch[i].delta).collect();
                verify_batch(&refs)
                    .into_iter()
                    .zip(chunk)
                    .find_map(|(r, &i)| r.err().map(|e| (i, e)))
            })
            .min_by_key(|(index, _)| *index);
        let stamps: Vec<(usize, (Stamp, DeltaId))> = batch
            .iter()
            .enumerate()
            .flat_map(|(i, item)| {
                let known = &known[i];
                item.stamps
                    .iter()
                    .filter(move |s| {
                        known
                            .as_ref()
                            .is_none_or(|hosts| !hosts.contains(&s.host()))
                    })
                    .map(move |s| (i, (s.clone(), item.delta.id())))
            })
            .collect();
        self.verify_new_batches(stamps.iter().map(|(_, (s, _))| s));
        let verified = &self.inner.verified;
        let bad_stamp = stamps
            .par_chunks(VERIFY_CHUNK)
            .filter_map(|chunk| {
                let pairs: Vec<(Stamp, DeltaId)> = chunk.iter().map(|(_, p)| p.clone()).collect();
                let checked = Stamp::verify_all(&pairs, |b| verified.contains(b));
                self.inner
                    .stamps_verified
                    .fetch_add(checked.signatures as u64, Ordering::Relaxed);
                checked
                    .verdicts
                    .into_iter()
                    .zip(chunk)
                    .find_map(|(r, (i, _))| r.err().map(|e| (*i, e)))
            })
            .min_by_key(|(index, _)| *index);
        // The first bad item wins; for one item, a bad delta before a bad stamp.
        let first_bad = match (bad_delta, bad_stamp) {
            (Some(d), Some(s)) => Some(if s.0 < d.0 { s } else { d }),
            (d, s) => d.or(s),
        };
        if let Some((index, source)) = first_bad {
            return Err(Error::Invalid { index, source });
        }
        Ok(batch
            .into_iter()
            .map(|s| Prepared {
                delta: s.delta,
                stamps: s.stamps,
            })
            .collect())
    }

    /// Checks, once each and in parallel, the signatures of the batch stamps among `stamps`
    /// not checked before, and remembers the good ones, so that the stamps of one batch,
    /// spread over many chunks or many messages, cost one signature check.
    fn verify_new_batches<'a>(&self, stamps: impl Iterator<Item = &'a Stamp>) {
        let verified = &self.inner.verified;
        let new: HashSet<BatchStamp> = stamps
            .filter_map(Stamp::batch)
            .filter(|b| !verified.contains(b))
            .copied()
            .collect();
        let new: Vec<BatchStamp> = new.into_iter().collect();
        let good: Vec<BatchStamp> = new
            .par_chunks(VERIFY_CHUNK)
            .flat_map_iter(|chunk| {
                BatchStamp::verify_batch(chunk)
                    .into_iter()
                    .zip(chunk)
                    .filter_map(|(r, b)| r.is_ok().then_some(*b))
            })
            .collect();
        self.inner
            .stamps_verified
            .fetch_add(new.len() as u64, Ordering::Relaxed);
        verified.extend(good);
    }

    /// For each item of a batch: `None` if its delta is not stored yet, else the hosts of
    /// the origin stamps the stored copy has.
    fn stamp_hosts_of_stored(&self, batch: &[StampedDelta]) -> Result<Vec<Option<Vec<HostId>>>> {
        // Only deltas carrying origin stamps are looked up: those are the ones relays deliver
        // many times over, while a client's fresh write arrives once and a lookup for it
        // would cost every ingest (measured: about 6 % of the ingest bench).
        let relayed: Vec<usize> = (0..batch.len())
            .filter(|&i| !batch[i].stamps.is_empty())
            .collect();
        let mut out: Vec<Option<Vec<HostId>>> = vec![None; batch.len()];
        if relayed.is_empty() {
            return Ok(out);
        }
        let found = self.inner.db.batched_multi_get_cf(
            self.cf(CF_DELTAS),
            relayed
                .iter()
                .map(|&i| batch[i].delta.id().as_bytes().to_vec()),
            false,
        );
        for (&i, value) in relayed.iter().zip(found) {
            if let Some(bytes) = value? {
                out[i] = Some(
                    layout::decode_record(&bytes)?
                        .stamps
                        .iter()
                        .map(Stamp::host)
                        .collect(),
                );
            }
        }
        Ok(out)
    }
}
