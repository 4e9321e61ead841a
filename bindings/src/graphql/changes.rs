//! The `changed` subscription: records of one type as the views write them, with
//! confidence joined in, sent again while provisional as peers' coverage rises.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_graphql::{Error as GqlError, Value as GqlValue};
use hypha_net::Watermarks;
use hypha_primitives::Filter;
use hypha_views::Record;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use super::args::{api_error, to_gql};
use crate::api::{Change, NodeApi};

/// Most entities a `changed` subscription remembers the last sent record of, and most
/// provisional records it watches.
const CHANGED_MEMORY: usize = 65_536;

/// Where a `changed` subscription stands.
pub(super) struct ChangeFeed {
    api: Arc<NodeApi>,
    changes: broadcast::Receiver<Change>,
    /// New snapshots of what peers hold; `None` on a node without peers.
    watermarks: Option<watch::Receiver<Arc<Watermarks>>>,
    entity_type: String,
    filter: Option<Filter>,
    /// Peers that must hold what decided a value for it not to be provisional.
    threshold: u32,
    /// The last record sent per entity, so a rewrite with the same value is not sent again.
    last_sent: HashMap<String, Value>,
    /// Records last sent provisional: checked again when peers' coverage rises.
    provisional: HashMap<String, Arc<Record>>,
    /// Messages ready to send.
    ready: VecDeque<Value>,
}

impl ChangeFeed {
    /// A feed of `entity_type` records from `changes`, filtered by `filter`, provisional
    /// below `threshold` peers.
    pub(super) fn new(
        api: Arc<NodeApi>,
        changes: broadcast::Receiver<Change>,
        entity_type: String,
        filter: Option<Filter>,
        threshold: u32,
    ) -> ChangeFeed {
        let mut watermarks = api.network().map(|n| n.watch_watermarks());
        if let Some(w) = &mut watermarks {
            // Only rises after the subscription opened wake it.
            w.mark_unchanged();
        }
        ChangeFeed {
            api,
            changes,
            watermarks,
            entity_type,
            filter,
            threshold,
            last_sent: HashMap::new(),
            provisional: HashMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next message: a changed record, a record whose confidence rose, or how many
    /// changes were missed; `None` when the node stops.
    pub(super) async fn next(&mut self) -> Option<Result<GqlValue, GqlError>> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Some(Ok(to_gql(message)));
            }
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = rise(&mut self.watermarks) => {
                    if let Err(e) = self.recheck() {
                        return Some(Err(api_error(e)));
                    }
                    continue;
                }
            };
            let change = match received {
                Ok(Change::Record(change)) => change,
                Ok(Change::Missed(n)) | Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Changes are not journaled: say how many were missed.
                    self.last_sent.clear();
                    self.provisional.clear();
                    return Some(Ok(to_gql(json!({"missed": n}))));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if change.entity_type != self.entity_type {
                continue;
            }
            // The record as the views wrote it, confidence joined by the relay: nothing is
            // read back.
            self.offer(change.entity, change.record);
        }
    }

    /// Queues `entity`'s record (or its absence) unless the filter refuses it or it was
    /// the last thing sent for the entity; notes whether it is provisional.
    fn offer(&mut self, entity: String, record: Option<Arc<Record>>) {
        let json = record.as_ref().map(|r| r.to_json_at(self.threshold));
        if let (Some(filter), Some(json)) = (&self.filter, &json) {
            if !filter.matches(json) {
                return;
            }
        }
        match record {
            Some(record) if record.confidence().peers < self.threshold => {
                if self.provisional.len() < CHANGED_MEMORY {
                    self.provisional.insert(entity.clone(), record);
                }
            }
            _ => {
                self.provisional.remove(&entity);
            }
        }
        let sent = json.clone().unwrap_or(Value::Null);
        if self.last_sent.get(&entity) == Some(&sent) {
            return;
        }
        if self.last_sent.len() >= CHANGED_MEMORY {
            self.last_sent.clear();
        }
        self.last_sent.insert(entity.clone(), sent);
        self.ready.push_back(json!({"id": entity, "record": json}));
    }

    /// Joins the new confidence into the records sent provisional, and queues those it
    /// changed.
    fn recheck(&mut self) -> crate::api::Result<()> {
        if self.provisional.is_empty() {
            return Ok(());
        }
        let (entities, records): (Vec<String>, Vec<Arc<Record>>) =
            std::mem::take(&mut self.provisional).into_iter().unzip();
        let mut records: Vec<Record> = records.iter().map(|r| Record::clone(r)).collect();
        self.api.join_confidence(&mut records)?;
        for (entity, record) in entities.into_iter().zip(records) {
            self.offer(entity, Some(Arc::new(record)));
        }
        Ok(())
    }
}

/// Resolves when peers' coverage has risen since last seen; never, without a network or
/// once it has stopped.
async fn rise(watermarks: &mut Option<watch::Receiver<Arc<Watermarks>>>) {
    if let Some(receiver) = watermarks {
        if receiver.changed().await.is_ok() {
            return;
        }
        *watermarks = None;
    }
    std::future::pending().await
}
