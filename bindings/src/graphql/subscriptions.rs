//! The subscription root: `deltas` (replay from a cursor, then live through the hub),
//! `changed` (records as the views write them) and `peerEvents`.

use std::collections::VecDeque;
use std::sync::Arc;

use async_graphql::dynamic::{
    InputValue, Subscription, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::futures_util::stream::{self, Stream};
use async_graphql::{Error as GqlError, Value as GqlValue};
use hypha_delta_store::{Arrival, Follower, Store, StoredDelta};
use hypha_primitives::Filter;
use serde_json::json;

use super::args::{api_error, confirm_at_arg, cursor_arg, filter_arg, gql_error, shared, to_gql};
use super::changes::ChangeFeed;
use crate::hub::{DeltaHub, Membership};

/// Delta subscriptions open now (for `/metrics`).
static OPEN_SUBSCRIPTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many delta subscriptions are open.
pub fn open_subscriptions() -> u64 {
    OPEN_SUBSCRIPTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one open subscription for as long as it lives.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN_SUBSCRIPTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN_SUBSCRIPTIONS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Deltas read per journal scan by a subscription.
const SUBSCRIPTION_CHUNK: usize = 256;

/// Where a `deltas` subscription stands.
struct DeltaFeed {
    store: Store,
    hub: DeltaHub,
    filter: Option<Filter>,
    /// The last arrival delivered (or skipped by the filter).
    cursor: Option<Arrival>,
    ready: VecDeque<Arc<StoredDelta>>,
    /// Reads the journal from the cursor while the subscription is behind the hub.
    replay: Option<Follower>,
    /// Fed by the hub once caught up; `None` while reading the journal.
    live: Option<(Membership, tokio::sync::mpsc::Receiver<Arc<StoredDelta>>)>,
    _open: Open,
}

/// Every delta after `after` (replayed from the journal), then every new one, matching
/// `filter`. The subscription follows the journal from its cursor (`Store::follow`, a
/// proving follower, so stamps go out with their proofs) until it reaches the hub's
/// position, then joins the hub (`crate::hub`), which feeds it the new deltas its filter
/// matches; so replay and live meet without a gap or a duplicate. If it falls behind, the
/// hub drops it and it follows the journal again at its own pace: a slow subscriber loses
/// nothing, and the node never waits for it.
fn delta_stream(
    store: Store,
    hub: DeltaHub,
    filter: Option<Filter>,
    after: Option<Arrival>,
) -> impl Stream<Item = Result<GqlValue, GqlError>> {
    let state = DeltaFeed {
        store,
        hub,
        filter,
        cursor: after,
        ready: VecDeque::new(),
        replay: None,
        live: None,
        _open: Open::new(),
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(stored) = state.ready.pop_front() {
                return Some((Ok(to_gql(stored.to_json())), state));
            }
            if let Some((_, receiver)) = &mut state.live {
                match receiver.recv().await {
                    Some(stored) if Some(stored.arrival) > state.cursor => {
                        state.cursor = Some(stored.arrival);
                        return Some((Ok(to_gql(stored.to_json())), state));
                    }
                    // Already read from the journal before joining.
                    Some(_) => continue,
                    // Dropped by the hub for falling behind: back to the journal.
                    None => {
                        state.live = None;
                        continue;
                    }
                }
            }
            // Join the hub when it has dispatched nothing after the cursor: at once for a
            // subscription from the journal's end (no read on a blocking thread, which many
            // opening together would each take), else once the journal is read up to it.
            if let Some(live) = state.hub.join(state.filter.clone(), state.cursor) {
                state.live = Some(live);
                state.replay = None;
                continue;
            }
            let (store, cursor) = (&state.store, state.cursor);
            let replay = state
                .replay
                .get_or_insert_with(|| store.follow(cursor).proving());
            let batch = match replay.ready_async(SUBSCRIPTION_CHUNK).await {
                Ok(batch) => batch,
                Err(e) => return Some((Err(api_error(e.into())), state)),
            };
            if batch.is_empty() {
                // The hub is ahead of a journal read that found nothing new: what it
                // dispatched is on its way through the follower's feed.
                if !replay.changed().await {
                    return None;
                }
                continue;
            }
            state.cursor = replay.cursor();
            let filter = state.filter.as_ref();
            state.ready.extend(batch.into_iter().filter(|stored| {
                filter.is_none_or(|f| f.matches(&stored.delta.filter_document(&stored.stamps)))
            }));
        }
    })
}

/// The subscription root.
pub(super) fn subscriptions() -> Subscription {
    Subscription::new("Subscription")
        .field(
            SubscriptionField::new("deltas", TypeRef::named_nn("JSON"), |ctx| {
                SubscriptionFieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let filter = filter_arg(&ctx)?;
                    let after = cursor_arg(&ctx)?.map(Arrival::new);
                    let hub = shared.api.delta_hub().map_err(api_error)?;
                    Ok(delta_stream(shared.api.store().clone(), hub, filter, after))
                })
            })
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
            .description("Every delta matching a JSON-Logic filter: those after the arrival cursor `after` first, then new ones as they are stored. Each carries its `arrival`, the cursor to resume from."),
        )
        .field(
            SubscriptionField::new("changed", TypeRef::named_nn("JSON"), |ctx| {
                SubscriptionFieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let entity_type = ctx.args.try_get("type")?.string()?.to_owned();
                    if !shared.types.contains_key(&entity_type) {
                        return Err(gql_error(format!("no schema for type {entity_type:?}")));
                    }
                    let filter = filter_arg(&ctx)?;
                    let changes = shared
                        .api
                        .changes()
                        .ok_or_else(|| gql_error("this node does not announce record changes"))?;
                    let threshold = shared
                        .api
                        .confirm_at(shared.types.get(&entity_type), confirm_at_arg(&ctx)?);
                    let state = ChangeFeed::new(shared.api.clone(), changes, entity_type, filter, threshold);
                    Ok(stream::unfold(state, |mut state| async move {
                        let item = state.next().await?;
                        Some((item, state))
                    }))
                })
            })
            .argument(InputValue::new("type", TypeRef::named_nn(TypeRef::STRING)))
            .argument(InputValue::new("filter", TypeRef::named("JSON")))
            .argument(InputValue::new("confirmAt", TypeRef::named(TypeRef::INT)))
            .description("Records of a type as their resolved values change: {\"id\", \"record\"} (record null when the entity stopped being one), filtered by JSON-Logic over the record; each field carries its confidence and whether it is provisional (below confirmAt peers), and a provisional record is sent again as its confidence rises; {\"missed\": n} if this subscriber fell behind by n changes."),
        )
        .field(
            SubscriptionField::new("peerEvents", TypeRef::named_nn("JSON"), |ctx| {
                SubscriptionFieldFuture::new(async move {
                    let shared = shared(&ctx)?;
                    let events = shared
                        .api
                        .network()
                        .map(|n| n.events())
                        .ok_or_else(|| gql_error("this node has no network"))?;
                    Ok(stream::unfold(events, |mut events| async move {
                        loop {
                            let event = match events.recv().await {
                                Ok(hypha_net::Event::PeerJoined(peer)) => {
                                    json!({"event": "joined", "peer": peer.to_string()})
                                }
                                Ok(hypha_net::Event::PeerLeft(peer)) => {
                                    json!({"event": "left", "peer": peer.to_string()})
                                }
                                Ok(_) => continue,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    json!({"event": "missed", "count": n})
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    return None
                                }
                            };
                            return Some((Ok::<_, GqlError>(to_gql(event)), events));
                        }
                    }))
                })
            })
            .description("Peers joining and leaving: {\"event\": \"joined\"|\"left\", \"peer\"}; {\"event\": \"missed\", \"count\"} if this subscriber fell behind."),
        )
}
