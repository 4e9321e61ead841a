//! The handle a node keeps of a running network ([`Network`]): it binds the sockets,
//! starts the driver's tasks, and asks the driver's loop for figures and requests.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypha_delta_store::{StampedDelta, Store};
use hypha_primitives::{DeltaId, HostId, KeyPair, Seq};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use zeromq::{PubSocket, RouterSocket, Socket};

use super::config::Counters;
use super::publisher::run_publisher;
use super::router::run_router;
use super::storer::{run_storer, STORE_QUEUE};
use super::{short, Driver, Shared};
use crate::dialer::Dialer;
use crate::journal::Journal;
use crate::protocol::Protocol;
use crate::seal::GroupKey;
use crate::{Event, NetConfig, NetError, NetStats, Replication, Watermarks};

/// The addresses a running network is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The ROUTER address.
    pub router: String,
    /// The PUB address.
    pub publish: String,
}

pub(super) enum Command {
    AwaitConfidence {
        host: HostId,
        seq: Seq,
        peers: usize,
        timeout: Duration,
        reply: oneshot::Sender<(usize, bool)>,
    },
    Peers(oneshot::Sender<Vec<HostId>>),
    Replication(oneshot::Sender<Replication>),
    Fetch {
        ids: Vec<DeltaId>,
        timeout: Duration,
        reply: oneshot::Sender<Vec<StampedDelta>>,
    },
    WhoHas {
        entity: String,
        timeout: Duration,
        reply: oneshot::Sender<Vec<(HostId, u64)>>,
    },
    Stop,
}

/// A running network: the handle the node keeps.
#[derive(Debug)]
pub struct Network {
    counters: Arc<Counters>,
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Event>,
    /// A receiver made before any peer was dialled, for the first `events()` caller.
    first_events: std::sync::Mutex<Option<broadcast::Receiver<Event>>>,
    endpoints: Endpoints,
    /// The latest snapshot of what peers hold, published by the driver.
    watermarks: watch::Receiver<Arc<Watermarks>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Network {
    /// Binds the sockets, dials the configured peers and starts relaying `store`'s deltas.
    pub async fn start(store: Store, key: KeyPair, config: NetConfig) -> Result<Network, NetError> {
        let mut router = RouterSocket::new();
        let router_at = router
            .bind(&config.listen)
            .await
            .map_err(|source| NetError::Bind {
                address: config.listen.clone(),
                source,
            })?;
        let mut publisher = PubSocket::new();
        let publish_at =
            publisher
                .bind(&config.publish)
                .await
                .map_err(|source| NetError::Bind {
                    address: config.publish.clone(),
                    source,
                })?;
        let endpoints = Endpoints {
            router: router_at.to_string(),
            publish: publish_at.to_string(),
        };
        let coverage = store.coverage()?;
        let last_arrival = store.last_arrival()?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        // Subscribed before any peer is dialled, so the first `events()` caller sees every
        // join, even of a link that completes before `start` returns.
        let (events, first_events) = broadcast::channel(1024);
        let (inbound_tx, inbound_rx) = mpsc::channel(4096);
        let (router_tx, router_rx) = mpsc::channel(1024);
        let (publish_tx, publish_rx) = mpsc::channel(4096);
        let (store_tx, store_rx) = mpsc::channel(STORE_QUEUE);
        let me = key.host_id();
        let counters = Arc::new(Counters::default());
        let seal_publish = Arc::new(AtomicBool::new(config.encryption.wants(&endpoints.publish)));
        let publish_key = GroupKey::random();
        let shared = Arc::new(Shared {
            counters: counters.clone(),
            key,
            config,
            endpoints: endpoints.clone(),
            inbound: inbound_tx,
            publish_key: std::sync::RwLock::new(publish_key),
            seal_publish: seal_publish.clone(),
            banned: std::sync::Mutex::new(HashSet::new()),
        });
        // Every task logs under the node's short id, so several nodes in one process (tests)
        // can be told apart.
        let span = tracing::info_span!("net", node = %short(me));
        let background = vec![
            tokio::spawn(run_router(router, shared.clone(), router_rx).instrument(span.clone())),
            tokio::spawn(
                run_publisher(publisher, me, publish_rx, shared.clone()).instrument(span.clone()),
            ),
        ];
        let storer = run_storer(
            store.clone(),
            store_rx,
            shared.inbound.clone(),
            shared.config.replicate.clone(),
            span.clone(),
        );
        // Half the message bound: a fetch's answer must fit what the requester accepts.
        let protocol = Protocol::new(
            me,
            coverage,
            shared.config.protocol.clone(),
            shared.config.replicate.clone(),
            shared.config.max_message_bytes / 2,
        );
        let dialer = Dialer::new(
            me,
            shared.config.peers.clone(),
            shared.config.max_learnt_peers,
        );
        let (watermarks_tx, watermarks) = watch::channel(Arc::new(Watermarks::default()));
        let mut driver = Driver {
            protocol,
            store: store.clone(),
            shared,
            start: Instant::now(),
            links: HashMap::new(),
            dialer,
            next_link: 0,
            waiters: HashMap::new(),
            next_token: 0,
            events: events.clone(),
            watermarks: watermarks_tx,
            published_epoch: None,
            router: router_tx,
            publish: publish_tx,
            to_store: store_tx,
            background,
            storer,
            callers: HashMap::new(),
            last_exchange: 0,
        };
        let _entered = span.enter();
        for address in driver.dialer.start() {
            driver.dial(address);
        }
        tracing::debug!(router = %endpoints.router, publish = %endpoints.publish, peers = driver.shared.config.peers.len(), "network listening");
        // Deltas leave the node with their stamps' proofs.
        let follower = store.follow(last_arrival).proving();
        let task = tokio::spawn(
            driver
                .run(follower, inbound_rx, command_rx)
                .instrument(span.clone()),
        );
        Ok(Network {
            counters,
            commands,
            events,
            first_events: std::sync::Mutex::new(Some(first_events)),
            endpoints,
            watermarks,
            task,
        })
    }

    /// Message counts so far.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }

    /// The bound addresses.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Membership and confidence events. The first call gets every event since the network
    /// started (none is lost to the race between dialling and subscribing); later calls get
    /// those from the call on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        let first = self.first_events.lock().ok().and_then(|mut f| f.take());
        first.unwrap_or_else(|| self.events.subscribe())
    }

    /// Waits until `peers` peers hold the stamp (`host`, `seq`), or `timeout`; returns how
    /// many hold it and whether that reached `peers`.
    pub async fn await_confidence(
        &self,
        host: HostId,
        seq: Seq,
        peers: usize,
        timeout: Duration,
    ) -> (usize, bool) {
        let (reply, answer) = oneshot::channel();
        let asked = self.commands.send(Command::AwaitConfidence {
            host,
            seq,
            peers,
            timeout,
            reply,
        });
        match asked {
            Ok(()) => answer.await.unwrap_or((0, false)),
            Err(_) => (0, false),
        }
    }

    /// How many peers are known to hold the stamp (`host`, `seq`), from the latest
    /// snapshot (no question goes to the network task).
    pub fn holders(&self, host: HostId, seq: Seq) -> usize {
        self.watermarks.borrow().holders(host, seq)
    }

    /// What the known peers hold now: the snapshot confidence is read from.
    pub fn watermarks(&self) -> Arc<Watermarks> {
        self.watermarks.borrow().clone()
    }

    /// A receiver that sees each new snapshot of what peers hold (it changes when a peer's
    /// coverage rises or a peer comes or goes).
    pub fn watch_watermarks(&self) -> watch::Receiver<Arc<Watermarks>> {
        self.watermarks.clone()
    }

    /// Catch-up lag and how many peers hold each delta, from peers' announcements.
    pub async fn replication(&self) -> Replication {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Replication(reply)).is_err() {
            return Replication::default();
        }
        answer.await.unwrap_or_default()
    }

    /// Asks every linked peer for the deltas `ids`; stores and returns those that arrive
    /// within `timeout` (stored whatever slice this node replicates: they were asked for).
    pub async fn fetch(&self, ids: Vec<DeltaId>, timeout: Duration) -> Vec<StampedDelta> {
        let (reply, answer) = oneshot::channel();
        let asked = self.commands.send(Command::Fetch {
            ids,
            timeout,
            reply,
        });
        match asked {
            Ok(()) => answer.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Asks every linked peer how many deltas it holds about `entity` (from its entity
    /// index); answers with those that replied within `timeout`, zeros included.
    pub async fn who_has(&self, entity: &str, timeout: Duration) -> Vec<(HostId, u64)> {
        let (reply, answer) = oneshot::channel();
        let asked = self.commands.send(Command::WhoHas {
            entity: entity.to_owned(),
            timeout,
            reply,
        });
        match asked {
            Ok(()) => answer.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The peers currently linked (handshake done).
    pub async fn peers(&self) -> Vec<HostId> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Peers(reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Closes every link and socket.
    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.task.await;
    }
}
