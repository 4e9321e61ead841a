//! Propagation confidence, joined into records as they are read.
//!
//! Materialized records are a function of the journal alone, so they are stored with no
//! confidence. A read joins in what the network knows now: the deciding deltas' origin
//! stamps, read from the journal in one multi-get, against the network's latest snapshot
//! of its peers' coverage ([`hypha_net::Watermarks`]). Nothing is asked of the network
//! task, so a read costs the same with or without peers, and the answer is as current as
//! the last coverage announcement.

use std::collections::HashMap;
use std::sync::Arc;

use hypha_delta_store::Store;
use hypha_net::Network;

use hypha_primitives::Filter;
use hypha_primitives::{DeltaId, Schema};
use hypha_views::{AsOf, Confidence, ConfidenceSource, Record};
use serde_json::Value;

use super::{Error, NodeApi, Result};

/// How many peers must hold what decided a value before reads call it confirmed, when
/// neither the read nor the type's schema says.
pub const DEFAULT_CONFIRM_AT: u32 = 1;

/// Confidence already worked out for a set of deltas.
struct Known(HashMap<DeltaId, Confidence>);

impl ConfidenceSource for Known {
    fn confidence(&self, id: DeltaId) -> Confidence {
        self.0.get(&id).copied().unwrap_or_default()
    }
}

/// Joins confidence: the journal (for the deciders' stamps) and the network (for what
/// peers hold).
#[derive(Clone, Debug)]
pub(crate) struct Joiner {
    store: Store,
    network: Option<Arc<Network>>,
}

impl Joiner {
    /// See [`NodeApi::confidences`].
    pub(crate) fn confidences(&self, ids: &[DeltaId]) -> Result<HashMap<DeltaId, Confidence>> {
        let Some(network) = &self.network else {
            return Ok(HashMap::new());
        };
        let marks = network.watermarks();
        let stamps = self.store.stamps_many(ids)?;
        Ok(ids
            .iter()
            .zip(stamps)
            .map(|(id, stamps)| {
                let peers = stamps.map_or(0, |s| marks.confidence(&s));
                let peers = u32::try_from(peers).unwrap_or(u32::MAX);
                (*id, Confidence { peers })
            })
            .collect())
    }

    /// See [`NodeApi::join_confidence`].
    pub(crate) fn join(&self, records: &mut [Record]) -> Result<()> {
        let mut ids: Vec<DeltaId> = records
            .iter()
            .flat_map(|r| r.fields.values())
            .flat_map(|f| f.decided_by.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let known = Known(self.confidences(&ids)?);
        for record in records {
            record.join_confidence(&known);
        }
        Ok(())
    }
}

impl NodeApi {
    /// Sets the node's threshold: how many peers must hold what decided a value before
    /// reads call it confirmed (a type's schema or a read may say otherwise).
    pub fn with_confirm_at(mut self, peers: u32) -> NodeApi {
        self.confirm_at = peers;
        self
    }

    /// The threshold for a read: the read's own (`asked`), else the type's schema's, else
    /// the node's.
    pub fn confirm_at(&self, schema: Option<&Schema>, asked: Option<u32>) -> u32 {
        asked
            .or_else(|| schema.and_then(Schema::confirm_at))
            .unwrap_or(self.confirm_at)
    }

    /// How many peers are known to hold each of `ids` now: for each, the most over its
    /// origin stamps. A delta not held here is 0; on a node without a network the map is
    /// empty, and every caller reads an absent id as 0.
    pub fn confidences(&self, ids: &[DeltaId]) -> Result<HashMap<DeltaId, Confidence>> {
        self.joiner().confidences(ids)
    }

    /// Joins what the network knows now into each record's fields (see the module doc).
    pub fn join_confidence(&self, records: &mut [Record]) -> Result<()> {
        self.joiner().join(records)
    }

    /// What joins confidence, apart from the service (for tasks that outlive a request).
    pub(crate) fn joiner(&self) -> Joiner {
        Joiner {
            store: self.store.clone(),
            network: self.network.clone(),
        }
    }

    /// The threshold for reads of `entity_type` ([`NodeApi::confirm_at`]), or
    /// [`Error::NotFound`] when no schema registers the type.
    fn confirm_at_for(&self, entity_type: &str, asked: Option<u32>) -> Result<u32> {
        let schemas = self.schemas()?;
        let schema = schemas
            .get(entity_type)
            .ok_or_else(|| Error::NotFound(format!("no schema for type {entity_type:?}")))?;
        Ok(self.confirm_at(Some(schema), asked))
    }

    /// The record of `entity` as an `entity_type`, now or as it stood at `at`, with
    /// confidence (as the network knows it now) joined and `provisional` marked against the
    /// threshold (see [`Record::to_json_at`]).
    pub async fn confirmed_record(
        &self,
        entity_type: &str,
        entity: &str,
        confirm_at: Option<u32>,
        at: AsOf,
    ) -> Result<Option<Value>> {
        let threshold = self.confirm_at_for(entity_type, confirm_at)?;
        let Some(record) = self.record_at(entity_type, entity, at).await? else {
            return Ok(None);
        };
        let mut records = [record];
        self.join_confidence(&mut records)?;
        Ok(Some(records[0].to_json_at(threshold)))
    }

    /// A page of records of `entity_type` (as [`NodeApi::records`], or as of `at` as
    /// [`NodeApi::records_at`]), each with confidence joined and `provisional` marked; and
    /// the entity the next page starts after.
    pub async fn confirmed_records(
        &self,
        entity_type: String,
        filter: Option<Filter>,
        after: Option<String>,
        first: usize,
        confirm_at: Option<u32>,
        at: AsOf,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let threshold = self.confirm_at_for(&entity_type, confirm_at)?;
        let mut page = self
            .records_at(entity_type, filter, after, first, at)
            .await?;
        self.join_confidence(&mut page.records)?;
        let records = page
            .records
            .iter()
            .map(|r| r.to_json_at(threshold))
            .collect();
        Ok((records, page.has_next.then_some(page.end_cursor).flatten()))
    }
}
