//! The node's application service, beneath every transport: writes (signed here or by
//! their authors), reads of deltas and records, waits for confidence, schemas, export and
//! import. HTTP (`crate::http`) and GraphQL (`crate::graphql`) parse their requests, call
//! it, and render its answers and its one [`Error`] in their own forms.

mod changes;
mod confidence;
mod deltas;
mod error;
mod reads;
mod writes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hypha_delta_store::{LocalWriter, Store};
use hypha_net::Network;
use hypha_primitives::{HostId, KeyPair, Schema};
use hypha_views::RecordChange;

pub use changes::Change;
pub use confidence::DEFAULT_CONFIRM_AT;
pub use deltas::{DeltaPage, DeltaSource};
pub use error::{Error, Result};
pub use reads::{NodeInfo, RecordPage};
pub use writes::{Wait, WriteAnswer};

/// Journal entries (or records) one filtered page may look at before it stops early, so
/// that a filter matching little costs a bounded read per request.
const MAX_SCAN: usize = 100_000;

/// How long a fetch from peers or a who-has question waits for answers.
pub const FETCH_WAIT: Duration = Duration::from_secs(5);

/// What every transport shares: the journal, the node key, the local writer (key and
/// clock), the network if any, and the write token.
#[derive(Debug)]
pub struct NodeApi {
    store: Store,
    key: KeyPair,
    /// Signs the node's own writes at the node clock's readings.
    writer: LocalWriter,
    network: Option<Arc<Network>>,
    /// When set, writes need it as a bearer token.
    token: Option<String>,
    /// Where the views announce the records they wrote (for `changed` subscriptions).
    changes: Option<tokio::sync::broadcast::Sender<RecordChange>>,
    /// Record changes with confidence joined, relayed from `changes` once a subscriber
    /// asks (`changes.rs`).
    relay: Mutex<Option<tokio::sync::broadcast::Sender<Change>>>,
    /// The reader that feeds live `deltas` subscriptions, started by the first one.
    hub: Mutex<Option<crate::hub::DeltaHub>>,
    /// Peers that must hold what decided a value for reads to call it confirmed, unless
    /// the type's schema or the read says otherwise.
    confirm_at: u32,
    /// The registered schemas, as last read, by the fingerprint of their definitions.
    schemas: RwLock<(Option<u64>, Arc<Schemas>)>,
}

/// The registered schemas, by entity type.
pub type Schemas = BTreeMap<String, Schema>;

impl NodeApi {
    /// The service of a node with this journal and key; `network` is `None` for a node
    /// without peers (writes then report confidence 0 at once).
    pub fn new(
        store: Store,
        key: KeyPair,
        network: Option<Arc<Network>>,
    ) -> hypha_delta_store::Result<NodeApi> {
        let writer = LocalWriter::new(store.clone(), key.clone())?;
        Ok(NodeApi {
            store,
            key,
            writer,
            network,
            token: None,
            changes: None,
            relay: Mutex::new(None),
            hub: Mutex::new(None),
            confirm_at: DEFAULT_CONFIRM_AT,
            schemas: RwLock::new((None, Arc::new(Schemas::new()))),
        })
    }

    /// Requires `token` (as a bearer token) for every write from now on.
    pub fn with_token(mut self, token: Option<String>) -> NodeApi {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Where the node announces the records its views write (see `Materializer::take_changes`).
    pub fn with_changes(
        mut self,
        changes: tokio::sync::broadcast::Sender<RecordChange>,
    ) -> NodeApi {
        self.changes = Some(changes);
        self
    }

    /// Whether a request presenting `bearer` (its token, if any) may write.
    pub fn may_write(&self, bearer: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(token) => {
                bearer.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
            }
        }
    }

    /// [`Error::Unauthorized`] unless a request presenting `bearer` may write.
    pub fn authorize(&self, bearer: Option<&str>) -> Result<()> {
        if self.may_write(bearer) {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }

    /// The subscription hub, started on first use (on the current tokio runtime).
    pub(crate) fn delta_hub(&self) -> Result<crate::hub::DeltaHub> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if hub.is_none() {
            *hub = Some(crate::hub::DeltaHub::start(self.store.clone())?);
        }
        Ok(hub.clone().expect("just started"))
    }

    /// Live delta subscriptions fed by the hub, and how many of them have no anchored filter.
    pub fn hub_subscribers(&self) -> (usize, usize) {
        let hub = self.hub.lock().unwrap_or_else(|e| e.into_inner()).clone();
        hub.map_or((0, 0), |hub| (hub.live(), hub.unanchored()))
    }

    /// The journal.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's key.
    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    /// The network, if the node has one.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_deref()
    }

    /// The peers linked now (handshake done).
    pub async fn peers(&self) -> Vec<HostId> {
        match &self.network {
            Some(network) => network.peers().await,
            None => Vec::new(),
        }
    }

    /// How many deltas about `entity` each linked peer holds (those answering within
    /// [`FETCH_WAIT`]).
    pub async fn who_has(&self, entity: &str) -> Vec<(HostId, u64)> {
        match &self.network {
            Some(network) => network.who_has(entity, FETCH_WAIT).await,
            None => Vec::new(),
        }
    }
}

/// Reads a point in history: `@N` is arrival position N (this node's own history), anything
/// else an HLC time, `MS` or `MS.LOGICAL` (the same answer on every node).
pub fn parse_as_of(text: &str) -> Result<hypha_views::AsOf> {
    let text = text.trim();
    match text.strip_prefix('@') {
        Some(arrival) => arrival
            .parse::<u64>()
            .map(|a| hypha_views::AsOf::Arrival(hypha_delta_store::Arrival::new(a)))
            .map_err(|e| Error::bad_input(format!("as of {text:?}: an arrival position: {e}"))),
        None => text
            .parse::<hypha_primitives::Hlc>()
            .map(hypha_views::AsOf::Time)
            .map_err(|e| {
                Error::bad_input(format!(
                    "as of {text:?}: {e} (or @N for an arrival position)"
                ))
            }),
    }
}

/// [`parse_as_of`] of an optional argument: now when absent.
pub fn as_of(text: Option<&str>) -> Result<hypha_views::AsOf> {
    text.map_or(Ok(hypha_views::AsOf::Now), parse_as_of)
}

/// Compares secrets without an early exit that would leak how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs journal work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a journal task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_in_history_is_a_time_or_an_arrival() {
        use hypha_views::AsOf;
        assert_eq!(
            parse_as_of("@42").unwrap(),
            AsOf::Arrival(hypha_delta_store::Arrival::new(42))
        );
        assert_eq!(
            parse_as_of("1700000000000.3").unwrap(),
            AsOf::Time(hypha_primitives::Hlc::new(1_700_000_000_000, 3))
        );
        for bad in ["@", "@x", "yesterday", ""] {
            let err = parse_as_of(bad).unwrap_err();
            assert!(err.is_rejected_input(), "{bad}: {err}");
        }
    }

    #[test]
    fn a_token_is_compared_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
