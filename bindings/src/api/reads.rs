//! Reads: materialized records, the lossless view of an entity, schemas and the node's
//! state (stored deltas are `deltas.rs`'s).

use std::sync::Arc;

use hypha_primitives::{EntityId, Filter};
use hypha_views::{load_index, AsOf, LocalOnly, Materializer, Record, Resolver, SchemaSet};
use serde_json::Value;

use super::{blocking, NodeApi, Result, Schemas, MAX_SCAN};

/// Entities one page of records as of a time resolves at most (each from the journal).
const AS_OF_SCAN: usize = 10_000;

/// A page of records of one type, in entity order.
#[derive(Debug)]
pub struct RecordPage {
    /// The records.
    pub records: Vec<Record>,
    /// The entity the next page starts after.
    pub end_cursor: Option<String>,
    /// Whether more may follow.
    pub has_next: bool,
}

/// The node's state in brief.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Deltas in the journal (its last arrival position).
    pub deltas: u64,
    /// Bytes the journal takes on disk and in memtables.
    pub stored_bytes: u64,
}

impl NodeApi {
    /// How many deltas the journal holds: one read of its last key, cheap enough to do on
    /// an async worker.
    pub fn journal_length(&self) -> Result<u64> {
        Ok(self.store.last_arrival()?.map_or(0, |a| a.get()))
    }

    /// The journal's length and size.
    pub async fn node_info(&self) -> Result<NodeInfo> {
        let store = self.store.clone();
        blocking(move || {
            Ok(NodeInfo {
                deltas: store.last_arrival()?.map_or(0, |a| a.get()),
                stored_bytes: store.disk_bytes().unwrap_or(0),
            })
        })
        .await
    }

    /// The node's state, in the form `GET /status` and `hypha status` print either way:
    /// `{"host", "version", "last_arrival", "stored_bytes", "coverage": {host: seq},
    /// "views": {"cursor", "types"}, "peers"}`.
    pub async fn status(&self) -> Result<Value> {
        let store = self.store.clone();
        let (last, bytes, coverage, cursor) = blocking(move || {
            let coverage: serde_json::Map<String, Value> = hypha_net::Coverage::of_store(&store)?
                .vector()
                .iter()
                .map(|(host, seq)| (host.to_string(), seq.get().into()))
                .collect();
            let cursor = Materializer::reader(store.clone()).cursor()?;
            Ok((
                store.last_arrival()?,
                store.disk_bytes().unwrap_or(0),
                coverage,
                cursor,
            ))
        })
        .await?;
        let types: Vec<String> = self.schemas()?.keys().cloned().collect();
        let peers: Vec<String> = self.peers().await.iter().map(ToString::to_string).collect();
        Ok(serde_json::json!({
            "host": self.key.host_id().to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "last_arrival": last.map(|a| a.get()),
            "stored_bytes": bytes,
            "coverage": coverage,
            "views": {"cursor": cursor.map(|a| a.get()), "types": types},
            "peers": peers,
        }))
    }

    /// The materialized record of `entity` as an `entity_type`, if it has one.
    pub fn record(&self, entity_type: &str, entity: &str) -> Result<Option<Record>> {
        // A point read of one record takes microseconds (the memtable or the block cache):
        // done on the async worker, it costs less than the two thread hand-offs of
        // spawn_blocking, which were most of a read's time under load (markdown/GRAPHQL.md).
        Ok(Materializer::reader(self.store.clone()).typed_record(entity_type, entity)?)
    }

    /// The record of `entity` as an `entity_type` as it stood at `at`, resolved from the
    /// journal's indexes with the schema in force then (`hypha_views::record_as_of`); for
    /// [`AsOf::Now`], the materialized record.
    pub async fn record_at(
        &self,
        entity_type: &str,
        entity: &str,
        at: AsOf,
    ) -> Result<Option<Record>> {
        if at == AsOf::Now {
            return self.record(entity_type, entity);
        }
        let (store, entity_type, entity) = (
            self.store.clone(),
            entity_type.to_owned(),
            EntityId::new(entity),
        );
        blocking(move || {
            Ok(hypha_views::record_as_of(
                &store,
                &entity_type,
                &entity,
                at,
            )?)
        })
        .await
    }

    /// Up to `first` records of `entity_type` as they stood at `at` that match `filter`,
    /// after entity `after`; for [`AsOf::Now`], [`NodeApi::records`]. In the past, every
    /// entity the journal knows is a candidate (one that is no record now may have been
    /// one then), taken in id order and resolved from the journal; a page looks at most at
    /// 10,000 entities before it stops early. Listing the candidates reads the whole entity
    /// index, so a page costs in proportion to the entities the journal knows.
    pub async fn records_at(
        &self,
        entity_type: String,
        filter: Option<Filter>,
        after: Option<String>,
        first: usize,
        at: AsOf,
    ) -> Result<RecordPage> {
        if at == AsOf::Now {
            return self.records(entity_type, filter, after, first).await;
        }
        let store = self.store.clone();
        blocking(move || {
            let reader = hypha_views::AsOfReader::new(&store, &entity_type, at)?;
            let mut page = RecordPage {
                records: Vec::new(),
                end_cursor: after.clone(),
                has_next: false,
            };
            if !reader.has_schema() {
                return Ok(page);
            }
            // In id order, as the lists of records now are: every entity id after `after`,
            // sorted (the entity index is ordered by length, then bytes).
            let mut candidates: Vec<String> = store
                .entities()
                .filter(|e| {
                    e.as_ref()
                        .map_or(true, |e| after.as_ref().is_none_or(|a| e > a))
                })
                .collect::<std::result::Result<_, _>>()?;
            candidates.sort_unstable();
            for (scanned, entity) in candidates.into_iter().enumerate() {
                if scanned == AS_OF_SCAN || page.records.len() == first {
                    page.has_next = true;
                    return Ok(page);
                }
                page.end_cursor = Some(entity.clone());
                let Some(record) = reader.record(&EntityId::new(entity))? else {
                    continue;
                };
                if filter.as_ref().is_none_or(|f| f.matches(&record.to_json())) {
                    page.records.push(record);
                }
            }
            Ok(page)
        })
        .await
    }

    /// Up to `first` records of `entity_type` after entity `after` that match `filter`
    /// (over each record's JSON), in entity order.
    pub async fn records(
        &self,
        entity_type: String,
        filter: Option<Filter>,
        after: Option<String>,
        first: usize,
    ) -> Result<RecordPage> {
        let store = self.store.clone();
        blocking(move || {
            let reader = Materializer::reader(store);
            let mut records = Vec::new();
            let mut cursor = after;
            let mut scanned = 0;
            loop {
                let chunk = reader.typed_records(&entity_type, cursor.as_deref(), 256)?;
                let exhausted = chunk.len() < 256;
                for record in chunk {
                    scanned += 1;
                    cursor = Some(record.entity.as_str().to_owned());
                    if filter.as_ref().is_none_or(|f| f.matches(&record.to_json())) {
                        if records.len() == first {
                            return Ok(RecordPage {
                                end_cursor: records
                                    .last()
                                    .map(|r: &Record| r.entity.as_str().to_owned()),
                                records,
                                has_next: true,
                            });
                        }
                        records.push(record);
                    }
                }
                if exhausted || scanned >= MAX_SCAN {
                    // Stopped early, the next page starts after the last record scanned,
                    // matching or not.
                    let end_cursor = if exhausted {
                        records.last().map(|r| r.entity.as_str().to_owned())
                    } else {
                        cursor
                    };
                    return Ok(RecordPage {
                        end_cursor,
                        records,
                        has_next: !exhausted,
                    });
                }
            }
        })
        .await
    }

    /// The lossless view of `entity` (every live delta under each property), now or as of
    /// a time.
    pub async fn lossless(&self, entity: EntityId, as_of: AsOf) -> Result<Value> {
        let store = self.store.clone();
        blocking(move || {
            let index = load_index(&store, std::slice::from_ref(&entity), as_of, 0)?;
            let schemas = SchemaSet::new();
            Ok(Resolver::new(&index, &schemas, &LocalOnly)
                .lossless(&entity)
                .to_json())
        })
        .await
    }

    /// The registered schemas by entity type, as the materialized views hold them. They
    /// are parsed again only when their stored definitions change (checked by a hash of
    /// the stored bytes, so the usual call parses nothing); until then the same `Arc`
    /// comes back, which lets callers cache what they build from it.
    pub fn schemas(&self) -> Result<Arc<Schemas>> {
        let fingerprint = Some(Materializer::definitions_fingerprint(&self.store)?);
        {
            let current = self.schemas.read().unwrap_or_else(|e| e.into_inner());
            if current.0 == fingerprint {
                return Ok(current.1.clone());
            }
        }
        let schemas: Schemas = Materializer::definitions(&self.store)?
            .into_iter()
            .map(|(schema, _)| (schema.entity_type().to_owned(), schema))
            .collect();
        let schemas = Arc::new(schemas);
        let mut current = self.schemas.write().unwrap_or_else(|e| e.into_inner());
        *current = (fingerprint, schemas.clone());
        Ok(schemas)
    }
}
