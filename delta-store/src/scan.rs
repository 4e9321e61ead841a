//! Reads: scans by arrival cursor, origin range, entity, author, negations and filter.

use hypha_primitives::{AuthorKey, DeltaId, Filter, HostId, Seq};
use rocksdb::{Direction, IteratorMode};

use crate::layout;
use crate::store::{ARRIVAL, AUTHOR, ENTITY, NEGATION, ORIGIN};
use crate::{Arrival, Error, KeyValue, Result, Store, StoredDelta};

impl Store {
    /// Iterates the index `cf` from `start` while keys begin with `prefix`, yielding
    /// (key, value) pairs.
    pub(crate) fn index_from<'a>(
        &'a self,
        cf: &str,
        start: Vec<u8>,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        self.inner
            .db
            .iterator_cf(
                self.cf_handle(cf),
                IteratorMode::From(&start, Direction::Forward),
            )
            .map(|entry| entry.map_err(Error::from))
            .take_while(move |entry| match entry {
                Ok((key, _)) => key.starts_with(&prefix),
                Err(_) => true,
            })
    }

    /// Loads the delta an index entry points at; a dangling entry is corruption.
    fn load(&self, id: DeltaId) -> Result<StoredDelta> {
        self.get(id)?
            .ok_or_else(|| Error::Corrupt(format!("index names delta {id}, which is not stored")))
    }

    /// Deltas in arrival order, starting after `after` (or from the first when `None`).
    ///
    /// Arrival positions are local to this node; they are the cursor for resuming feeds.
    pub fn scan_arrival(
        &self,
        after: Option<Arrival>,
    ) -> impl Iterator<Item = Result<StoredDelta>> + '_ {
        let start = after.map_or(0, |a| a.get().saturating_add(1));
        self.index_from(ARRIVAL, start.to_be_bytes().to_vec(), Vec::new())
            .map(move |entry| entry.and_then(|(_, v)| self.load(layout::id_at_end(&v)?)))
    }

    /// Deltas stamped by `host` with sequence numbers in `from..=to`, in sequence order.
    pub fn scan_origin(
        &self,
        host: HostId,
        from: Seq,
        to: Seq,
    ) -> impl Iterator<Item = Result<(Seq, StoredDelta)>> + '_ {
        self.scan_origin_ids(host, from, to)
            .map(move |entry| entry.and_then(|(seq, id)| Ok((seq, self.load(id)?))))
    }

    /// The ids of the deltas stamped by `host` with sequence numbers in `from..=to`, in
    /// sequence order, from the origin index alone (load them with [`Store::get_many`]).
    pub fn scan_origin_ids(
        &self,
        host: HostId,
        from: Seq,
        to: Seq,
    ) -> impl Iterator<Item = Result<(Seq, DeltaId)>> + '_ {
        let start = layout::origin_key(host, from).to_vec();
        self.index_from(ORIGIN, start, host.as_bytes().to_vec())
            .map(|entry| {
                entry.and_then(|(k, v)| {
                    let raw: [u8; 8] = k
                        .get(32..40)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| Error::Corrupt("origin key".into()))?;
                    let seq = u64::from_be_bytes(raw);
                    Ok((Seq::new(seq), layout::id_at_end(&v)?))
                })
            })
            .take_while(move |entry| !matches!(entry, Ok((seq, _)) if *seq > to))
    }

    /// Every origin stamp held, as (host, seq), in host then seq order: what coverage is
    /// computed from.
    pub fn origins(&self) -> impl Iterator<Item = Result<(HostId, Seq)>> + '_ {
        self.index_from(ORIGIN, Vec::new(), Vec::new())
            .map(|entry| {
                let (key, _) = entry?;
                let host: [u8; 32] = key
                    .get(..32)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::Corrupt("origin key".into()))?;
                let seq: [u8; 8] = key
                    .get(32..40)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::Corrupt("origin key".into()))?;
                Ok((HostId::from_bytes(host), Seq::new(u64::from_be_bytes(seq))))
            })
    }

    /// Ids of deltas that point at `entity` (under `context`, if given), ordered by target
    /// context then id.
    pub fn scan_entity_ids(
        &self,
        entity: &str,
        context: Option<&str>,
    ) -> impl Iterator<Item = Result<DeltaId>> + '_ {
        let prefix = layout::entity_prefix(entity, context);
        self.index_from(ENTITY, prefix.clone(), prefix)
            .map(|entry| entry.and_then(|(k, _)| layout::id_at_end(&k)))
    }

    /// Every entity some delta points at, in key order (each once).
    pub fn entities(&self) -> impl Iterator<Item = Result<String>> + '_ {
        let mut last: Option<String> = None;
        self.index_from(ENTITY, Vec::new(), Vec::new())
            .filter_map(move |entry| {
                let entity = entry.and_then(|(key, _)| layout::entity_of_key(&key));
                match entity {
                    Ok(e) if last.as_deref() == Some(e.as_str()) => None,
                    Ok(e) => {
                        last = Some(e.clone());
                        Some(Ok(e))
                    }
                    Err(err) => Some(Err(err)),
                }
            })
    }

    /// Deltas that point at `entity` (under `context`, if given).
    ///
    /// A delta pointing at the entity under several contexts appears once per context.
    pub fn scan_entity(
        &self,
        entity: &str,
        context: Option<&str>,
    ) -> impl Iterator<Item = Result<StoredDelta>> + '_ {
        self.scan_entity_ids(entity, context)
            .map(move |id| id.and_then(|id| self.load(id)))
    }

    /// Deltas by `author`, in arrival order.
    pub fn scan_author(&self, author: AuthorKey) -> impl Iterator<Item = Result<StoredDelta>> + '_ {
        self.scan_author_after(author, None)
    }

    /// Deltas by `author` that arrived after `after` (all of them for `None`), in arrival
    /// order, from the author index: the cursor of a page of an author's deltas is the
    /// arrival of the last one read, as for [`Store::scan_arrival`].
    pub fn scan_author_after(
        &self,
        author: AuthorKey,
        after: Option<Arrival>,
    ) -> impl Iterator<Item = Result<StoredDelta>> + '_ {
        let prefix = author.as_bytes().to_vec();
        let start = match after {
            Some(a) => layout::author_key(author, Arrival::new(a.get().saturating_add(1))).to_vec(),
            None => prefix.clone(),
        };
        self.index_from(AUTHOR, start, prefix)
            .map(move |entry| entry.and_then(|(_, v)| self.load(layout::id_at_end(&v)?)))
    }

    /// The most recently arrived delta by `author`, if any.
    pub fn last_by_author(&self, author: AuthorKey) -> Result<Option<StoredDelta>> {
        let start = layout::author_key(author, Arrival::new(u64::MAX));
        match self.last_with_prefix(AUTHOR, &start, author.as_bytes())? {
            Some((_, value)) => self.load(layout::id_at_end(&value)?).map(Some),
            None => Ok(None),
        }
    }

    /// The last entry of index `cf` at or before `start` whose key starts with `prefix`.
    pub(crate) fn last_with_prefix(
        &self,
        cf: &str,
        start: &[u8],
        prefix: &[u8],
    ) -> Result<Option<KeyValue>> {
        let mut iter = self.inner.db.iterator_cf(
            self.cf_handle(cf),
            IteratorMode::From(start, Direction::Reverse),
        );
        match iter.next() {
            Some(entry) => {
                let (key, value) = entry?;
                Ok(key.starts_with(prefix).then_some((key, value)))
            }
            None => Ok(None),
        }
    }

    /// Ids of the stored deltas that negate `id` (whether or not `id` itself is stored).
    pub fn negations_of(&self, id: DeltaId) -> Result<Vec<DeltaId>> {
        let prefix = id.as_bytes().to_vec();
        self.index_from(NEGATION, prefix.clone(), prefix)
            .map(|entry| entry.and_then(|(k, _)| layout::id_at_end(&k)))
            .collect()
    }

    /// Deltas in arrival order after `after` that match `filter`.
    pub fn scan_filter<'a>(
        &'a self,
        filter: &'a Filter,
        after: Option<Arrival>,
    ) -> impl Iterator<Item = Result<StoredDelta>> + 'a {
        self.scan_arrival(after).filter(move |entry| match entry {
            Ok(stored) => filter.matches(&stored.delta.filter_document(&stored.stamps)),
            Err(_) => true,
        })
    }

    /// The arrival position of the newest delta, if any.
    pub fn last_arrival(&self) -> Result<Option<Arrival>> {
        crate::store::last_arrival(&self.inner.db)
    }
}
