//! Record changes with confidence joined once for every subscriber: a relay between the
//! views' announcements and the `changed` subscriptions.

use std::sync::Arc;

use hypha_views::{Record, RecordChange};
use tokio::sync::broadcast;

use super::confidence::Joiner;
use super::NodeApi;

/// What a subscriber to record changes receives.
#[derive(Clone, Debug)]
pub enum Change {
    /// A record the views wrote, its fields' confidence joined as the network knew it then.
    Record(RecordChange),
    /// The relay fell behind the views and skipped this many changes.
    Missed(u64),
}

/// Changes buffered for subscribers before the slowest is told it missed some.
const RELAY_BUFFER: usize = 4096;

impl NodeApi {
    /// Record changes as the views announce them, with confidence joined (one journal read
    /// per change, however many subscribers); `None` when the node does not announce them.
    /// The relay starts with the first subscriber, on the current tokio runtime.
    pub fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        let raw = self.changes.as_ref()?;
        let mut relay = self.relay.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = relay.as_ref() {
            return Some(sender.subscribe());
        }
        let (sender, receiver) = broadcast::channel(RELAY_BUFFER);
        tokio::spawn(run_relay(self.joiner(), raw.subscribe(), sender.clone()));
        *relay = Some(sender);
        Some(receiver)
    }
}

/// Joins confidence into each change from `raw` and hands it on to `out`, until the views
/// stop announcing.
async fn run_relay(
    joiner: Joiner,
    mut raw: broadcast::Receiver<RecordChange>,
    out: broadcast::Sender<Change>,
) {
    loop {
        let change = match raw.recv().await {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let _ = out.send(Change::Missed(n));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        // With nobody subscribed (they all left), a change costs no journal read.
        if out.receiver_count() == 0 {
            continue;
        }
        let record = match change.record {
            Some(record) => {
                let mut record = [Record::clone(&record)];
                if let Err(e) = joiner.join(&mut record) {
                    tracing::warn!(error = %e, "joining confidence into a changed record");
                }
                let [record] = record;
                Some(Arc::new(record))
            }
            None => None,
        };
        // No subscriber left is not an error: the next one finds the relay running.
        let _ = out.send(Change::Record(RecordChange { record, ..change }));
    }
}
