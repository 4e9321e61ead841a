//! Stored deltas: one by id (fetched from peers on request), or a page after a cursor,
//! from the whole journal in arrival order or from one author's or one origin host's index.

use hypha_delta_store::{Arrival, StoredDelta};
use hypha_primitives::{AuthorKey, DeltaId, Filter, HostId, Seq};

use super::{blocking, Error, NodeApi, Result, FETCH_WAIT, MAX_SCAN};

/// Where a page of deltas comes from, and what its cursor counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaSource {
    /// Every delta, in arrival order; the cursor is an arrival position.
    Journal,
    /// One author's deltas, from the author index, in arrival order; the cursor is an
    /// arrival position.
    Author(AuthorKey),
    /// The deltas one host stamped, from the origin index, in the host's seq order; the
    /// cursor is a seq of that host.
    Origin(HostId),
}

impl DeltaSource {
    /// The source an author or an origin host (in hex) names, at most one of them; the
    /// whole journal without either.
    pub fn named(author: Option<&str>, origin: Option<&str>) -> Result<DeltaSource> {
        match (author, origin) {
            (None, None) => Ok(DeltaSource::Journal),
            (Some(author), None) => Ok(DeltaSource::Author(
                author
                    .parse()
                    .map_err(|e| Error::bad_input(format!("author: {e}")))?,
            )),
            (None, Some(origin)) => Ok(DeltaSource::Origin(
                origin
                    .parse()
                    .map_err(|e| Error::bad_input(format!("origin: {e}")))?,
            )),
            (Some(_), Some(_)) => Err(Error::bad_input(
                "give author or origin, not both (each reads its own index)",
            )),
        }
    }
}

/// A page of stored deltas.
#[derive(Debug)]
pub struct DeltaPage {
    /// The deltas, with their stamps proven (ready to import elsewhere).
    pub deltas: Vec<StoredDelta>,
    /// Where the next page starts after: the position of the last delta read, matching or
    /// not (an arrival, or a seq for [`DeltaSource::Origin`]).
    pub cursor: Option<u64>,
    /// Whether more may follow.
    pub more: bool,
}

impl NodeApi {
    /// The stored delta `id` with its stamps (proven) and arrival; when it is not held
    /// here and `fetch` is set, it is asked of the linked peers (for up to [`FETCH_WAIT`])
    /// and stored.
    pub async fn delta(&self, id: DeltaId, fetch: bool) -> Result<Option<StoredDelta>> {
        let read = |store: hypha_delta_store::Store| async move {
            blocking(move || {
                let Some(stored) = store.get(id)? else {
                    return Ok(None);
                };
                // With the stamps' proofs, so the answer imports elsewhere.
                let mut stored = [stored];
                store.prove_stored(&mut stored)?;
                let [stored] = stored;
                Ok(Some(stored))
            })
            .await
        };
        if let Some(found) = read(self.store.clone()).await? {
            return Ok(Some(found));
        }
        match &self.network {
            Some(network) if fetch => {
                network.fetch(vec![id], FETCH_WAIT).await;
                read(self.store.clone()).await
            }
            _ => Ok(None),
        }
    }

    /// Up to `first` stored deltas from `source` after the cursor `after` that match
    /// `filter` (over each delta's filter document), with their stamps proven. A filtered
    /// page reads at most 100,000 deltas before it stops early (with `more`).
    pub async fn deltas(
        &self,
        source: DeltaSource,
        after: Option<u64>,
        filter: Option<Filter>,
        first: usize,
    ) -> Result<DeltaPage> {
        let store = self.store.clone();
        blocking(move || {
            let entries: Box<dyn Iterator<Item = hypha_delta_store::Result<(u64, StoredDelta)>>> =
                match source {
                    DeltaSource::Journal => Box::new(
                        store
                            .scan_arrival(after.map(Arrival::new))
                            .map(|s| s.map(|s| (s.arrival.get(), s))),
                    ),
                    DeltaSource::Author(author) => Box::new(
                        store
                            .scan_author_after(author, after.map(Arrival::new))
                            .map(|s| s.map(|s| (s.arrival.get(), s))),
                    ),
                    DeltaSource::Origin(host) => {
                        let from = Seq::new(after.map_or(1, |a| a.saturating_add(1)));
                        Box::new(
                            store
                                .scan_origin(host, from, Seq::new(u64::MAX))
                                .map(|s| s.map(|(seq, s)| (seq.get(), s))),
                        )
                    }
                };
            let mut page = DeltaPage {
                deltas: Vec::new(),
                cursor: after,
                more: false,
            };
            for (scanned, entry) in entries.enumerate() {
                let (position, stored) = entry?;
                let matches = filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&stored.delta.filter_document(&stored.stamps)));
                if matches && page.deltas.len() == first || scanned == MAX_SCAN {
                    page.more = true;
                    break;
                }
                page.cursor = Some(position);
                if matches {
                    page.deltas.push(stored);
                }
            }
            // With their stamps' proofs, as every delta leaving the node is.
            store.prove_stored(&mut page.deltas)?;
            Ok(page)
        })
        .await
    }
}
