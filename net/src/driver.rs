//! The ZeroMQ driver: runs a [`Peer`] over real sockets and a real journal.
//!
//! Each node binds a ROUTER socket (handshakes, catch-up requests and their pages) and a
//! PUB socket (new deltas and coverage announcements). For each peer it holds a *link*: a
//! DEALER connected to the peer's ROUTER and a SUB connected to the peer's PUB, so every
//! message read from a link is known to come from that peer. Links are opened to the
//! configured peers and, after a peer proves its identity on our ROUTER, back to it.
//!
//! What the facts about zmq.rs 0.7 shape here (see `markdown/PROTOCOL.md`):
//! - PUB drops silently when a subscriber's queue is full, and a subscriber misses what was
//!   published before it connected: catch-up (driven by coverage announcements) repairs
//!   both, so nothing relies on PUB delivery.
//! - A DEALER whose peer restarts never gets its reply: a link whose request goes
//!   unanswered past the request timeout, or whose peer goes silent past the peer timeout,
//!   is torn down and redialled with backoff, handshake included ("lazy pirate").
//!
//! The driver does the IO the state machine asks for and nothing else: every decision
//! (what to relay, what to request, who has left) is [`Peer::handle`]'s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hypha_delta_store::{Arrival, StampedDelta, Store, StoredDelta};
use hypha_primitives::{DeltaId, Filter, HostId, KeyPair, Seq};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;
use zeromq::{
    DealerSocket, PubSocket, RouterSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage,
};

use crate::bans::{self, Bans};
use crate::handshake::{self, nonce, Hello, Proof, Welcome};
use crate::reconcile::{ReconcileError, Reconciler, Step};
use crate::seal::{is_loopback, Ephemeral, GroupKey, LinkKeys};
use crate::{
    serve, topics, wire, Coverage, Event, Input, Message, Output, Peer, PeerConfig, Replication,
};

/// Frame tags on ROUTER/DEALER links.
const HELLO: &[u8] = b"h";
const WELCOME: &[u8] = b"w";
const PROOF: &[u8] = b"p";
const MESSAGE: &[u8] = b"m";
/// The listener's publish key, sealed under the link's key (empty: the link is plain).
const PUBLISH_KEY: &[u8] = b"k";
/// A dialler's keepalive on an idle link, answered with [`PONG`] by a listener that still
/// knows the connection (one that forgot it, after a ban, stays silent and the dialler
/// redials).
const PING: &[u8] = b"i";
const PONG: &[u8] = b"o";
/// First byte of a PUB payload: the message as is, or sealed under the publish key.
const PLAIN: u8 = 0;
const SEALED: u8 = 1;

/// When links and the PUB stream are encrypted (`seal.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Encrypt what goes beyond this machine: links to or from non-loopback addresses, and
    /// the PUB stream when it is bound to one.
    #[default]
    Auto,
    /// Encrypt every link and the PUB stream.
    On,
    /// Never ask for encryption (a peer that asks for it still gets it).
    Off,
}

impl Encryption {
    /// Whether this node asks for encryption on a link to or from `address`.
    pub fn wants(self, address: &str) -> bool {
        match self {
            Encryption::On => true,
            Encryption::Off => false,
            Encryption::Auto => !is_loopback(address),
        }
    }
}

/// Where a node listens and whom it dials; plain data with defaults for a single node on
/// loopback.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The ROUTER address to bind (`tcp://127.0.0.1:0` picks a free port).
    pub listen: String,
    /// The PUB address to bind.
    pub publish: String,
    /// ROUTER addresses of the peers to dial.
    pub peers: Vec<String>,
    /// The protocol's timing and size bounds.
    pub protocol: PeerConfig,
    /// How often the state machine ticks (ms).
    pub tick_ms: u64,
    /// Largest message accepted from a peer, in bytes.
    pub max_message_bytes: usize,
    /// How long a dialled peer has to answer the handshake (ms).
    pub handshake_timeout_ms: u64,
    /// Invalid deltas or messages from one peer before it is disconnected.
    pub max_invalid: u32,
    /// How long a disconnected misbehaving peer stays banned (ms).
    pub ban_ms: u64,
    /// Replicate only the deltas this filter selects (a partial replica): deltas from
    /// peers outside it are not stored, and catch-up reconciles the slice with each peer
    /// instead of asking by coverage. `None`: every delta.
    pub replicate: Option<Filter>,
    /// Peers learnt from other peers' lists that this node dials, at most (0: learn none,
    /// keep to the configured peers and those that dial in).
    pub max_learnt_peers: usize,
    /// How often linked peers are told which peers this node is linked to (ms).
    pub exchange_every_ms: u64,
    /// When links and the PUB stream are encrypted.
    pub encryption: Encryption,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: "tcp://127.0.0.1:7400".into(),
            publish: "tcp://127.0.0.1:7401".into(),
            peers: Vec::new(),
            protocol: PeerConfig::default(),
            tick_ms: 100,
            max_message_bytes: wire::DEFAULT_MAX_MESSAGE_BYTES,
            handshake_timeout_ms: 2_000,
            max_invalid: 3,
            ban_ms: 60_000,
            replicate: None,
            max_learnt_peers: 8,
            exchange_every_ms: 10_000,
            encryption: Encryption::Auto,
        }
    }
}

/// What can stop the network from starting.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An address could not be bound.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        source: zeromq::ZmqError,
    },
    /// The journal could not be read.
    #[error("journal: {0}")]
    Store(#[from] hypha_delta_store::Error),
}

/// Message counts since the network started (for benchmarks and metrics). A message is
/// one protocol message (a delta batch, a coverage announcement, a request or a page);
/// bytes are its wire encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages published on the PUB socket.
    pub published: u64,
    /// Bytes published.
    pub published_bytes: u64,
    /// Messages sent to one peer (catch-up requests and pages).
    pub sent: u64,
    /// Bytes sent to one peer.
    pub sent_bytes: u64,
    /// Messages received from peers (published or sent).
    pub received: u64,
    /// Bytes received.
    pub received_bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    published_bytes: AtomicU64,
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
}

impl Counters {
    fn count(count: &AtomicU64, bytes: &AtomicU64, len: usize) {
        count.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    fn published(&self, len: usize) {
        Self::count(&self.published, &self.published_bytes, len);
    }
    fn sent(&self, len: usize) {
        Self::count(&self.sent, &self.sent_bytes, len);
    }
    fn received(&self, len: usize) {
        Self::count(&self.received, &self.received_bytes, len);
    }
    fn snapshot(&self) -> NetStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            published: get(&self.published),
            published_bytes: get(&self.published_bytes),
            sent: get(&self.sent),
            sent_bytes: get(&self.sent_bytes),
            received: get(&self.received),
            received_bytes: get(&self.received_bytes),
        }
    }
}

/// The addresses a running network is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The ROUTER address.
    pub router: String,
    /// The PUB address.
    pub publish: String,
}

enum Command {
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
    Holders {
        host: HostId,
        seq: Seq,
        reply: oneshot::Sender<usize>,
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
        let coverage = Coverage::of_store(&store)?;
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
        let mut protocol = shared.config.protocol.clone();
        protocol.partial |= shared.config.replicate.is_some();
        let mut driver = Driver {
            peer: Peer::new(me, coverage, protocol),
            store: store.clone(),
            shared,
            start: Instant::now(),
            links: HashMap::new(),
            dialing: HashSet::new(),
            next_link: 0,
            invalid: HashMap::new(),
            bans: Bans::default(),
            gone: HashSet::new(),
            waiters: HashMap::new(),
            next_token: 0,
            events: events.clone(),
            router: router_tx,
            publish: publish_tx,
            to_store: store_tx,
            last_arrival,
            background,
            storer,
            pending: HashMap::new(),
            next_request: 1,
            reconciling: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            learnt: HashSet::new(),
            building: HashSet::new(),
            last_exchange: 0,
        };
        let _entered = span.enter();
        for address in driver.shared.config.peers.clone() {
            driver.dial(address);
        }
        tracing::debug!(router = %endpoints.router, publish = %endpoints.publish, peers = driver.shared.config.peers.len(), "network listening");
        let feed = store.subscribe();
        let task = tokio::spawn(
            driver
                .run(feed, inbound_rx, command_rx)
                .instrument(span.clone()),
        );
        Ok(Network {
            counters,
            commands,
            events,
            first_events: std::sync::Mutex::new(Some(first_events)),
            endpoints,
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

    /// How many peers are known to hold the stamp (`host`, `seq`).
    pub async fn holders(&self, host: HostId, seq: Seq) -> usize {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Holders { host, seq, reply })
            .is_err()
        {
            return 0;
        }
        answer.await.unwrap_or(0)
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

/// What every task of the driver needs.
struct Shared {
    counters: Arc<Counters>,
    key: KeyPair,
    config: NetConfig,
    endpoints: Endpoints,
    inbound: mpsc::Sender<Inbound>,
    /// The key this node's PUB frames are sealed with, handed to authenticated peers;
    /// replaced when a peer is banned.
    publish_key: std::sync::RwLock<GroupKey>,
    /// Whether this node seals its PUB frames (its policy, for the bound PUB address).
    seal_publish: Arc<AtomicBool>,
    /// Banned hosts, for the ROUTER task: they get no publish key and no link.
    banned: std::sync::Mutex<HashSet<HostId>>,
}

impl Shared {
    /// The publish key in use now.
    fn current_publish_key(&self) -> GroupKey {
        self.publish_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether this node asks for encryption on links through its ROUTER (always when
    /// its PUB stream is sealed, so the publish key never travels in the clear).
    fn listener_wants(&self) -> bool {
        self.seal_publish.load(Ordering::Relaxed)
            || self.config.encryption.wants(&self.endpoints.router)
    }
}

/// What tasks tell the driver's loop.
enum Inbound {
    /// A link finished its handshake with `host`.
    LinkUp {
        link: u64,
        host: HostId,
        outbound: mpsc::Sender<Message>,
    },
    /// A link to `host` broke (it redials by itself).
    LinkDown { link: u64, host: HostId },
    /// A link will not redial (it dialled this node itself).
    LinkGone { link: u64, address: String },
    /// A peer proved its identity on our ROUTER; it can be reached at `router`.
    Authenticated { host: HostId, router: String },
    /// A message from a peer.
    Message { from: HostId, message: Message },
    /// A peer sent something invalid.
    Invalid { from: HostId, what: String },
    /// A reply (catch-up page, fetched deltas, who-has count) is ready to go to `to`.
    Reply { to: HostId, message: Message },
    /// This node's slice is read: start reconciling it with `with`.
    SliceReady {
        with: HostId,
        reconciler: Arc<Reconciler>,
    },
    /// A peer's reconciliation turn is answered (its slice read here, if it was new), or
    /// could not be: `Err(Some(why))` when the peer's input was bad, `Err(None)` when this
    /// node failed.
    Answered {
        to: HostId,
        session: u64,
        outcome: Result<(Arc<Reconciler>, Vec<u8>), Option<String>>,
    },
    /// A turn of this node's own reconciliation is computed.
    Stepped {
        session: u64,
        step: Result<Step, ReconcileError>,
    },
}

/// A request the driver made of peers, waiting for replies.
enum Pending {
    /// `Network::fetch`: the ids still wanted and what has come.
    Fetch {
        waiting: HashSet<HostId>,
        wanted: HashSet<DeltaId>,
        found: Vec<StampedDelta>,
        deadline: u64,
        reply: oneshot::Sender<Vec<StampedDelta>>,
    },
    /// `Network::who_has`.
    WhoHas {
        waiting: HashSet<HostId>,
        answers: Vec<(HostId, u64)>,
        deadline: u64,
        reply: oneshot::Sender<Vec<(HostId, u64)>>,
    },
    /// Deltas a reconciliation found missing here, asked of `peer`.
    Slice { peer: HostId, deadline: u64 },
}

/// A reconciliation this partial replica started.
struct Outgoing {
    peer: HostId,
    reconciler: Arc<Reconciler>,
    /// What the peer says this node lacks (at most `MAX_SLICE_NEED`).
    need: HashSet<DeltaId>,
    /// A turn is being computed: replies meanwhile are ignored.
    stepping: bool,
    started: u64,
}

/// Most ids one reconciliation may say this node lacks before it is abandoned (the next
/// one, after more has arrived by other means, continues).
const MAX_SLICE_NEED: usize = 1_000_000;

/// Most slices read at once for peers' reconciliations.
const MAX_BUILDING: usize = 2;
/// Largest reconciliation message taken from a peer (twice the default budget).
const MAX_RECONCILE_PAYLOAD: usize = 512 * 1024;
/// Most peers one peer list carries (and is read from one).
const MAX_PEER_LIST: usize = 64;
/// How long a request to peers (fetch, who-has, a reconciliation) may take (ms).
const REQUEST_LIFETIME_MS: u64 = 60_000;
/// Most reconciliations peers may have open here at once.
const MAX_INCOMING: usize = 64;
/// Ids per fetch a reconciliation sends.
const SLICE_FETCH: usize = 1_024;

struct LinkHandle {
    host: Option<HostId>,
    address: String,
    outbound: Option<mpsc::Sender<Message>>,
    task: JoinHandle<()>,
}

/// Messages to the ROUTER task: reply to a host, or forget it.
enum RouterCommand {
    Send {
        to: HostId,
        bytes: Vec<u8>,
    },
    Forget(HostId),
    /// Hand the (new) publish key to every proven, unbanned peer on a sealed link.
    Rekey,
}

struct Driver {
    peer: Peer,
    store: Store,
    shared: Arc<Shared>,
    start: Instant,
    links: HashMap<u64, LinkHandle>,
    /// Addresses with a link, so a peer is dialled once.
    dialing: HashSet<String>,
    next_link: u64,
    invalid: HashMap<HostId, u32>,
    /// Bans in force, and the links to redial when they end (`bans.rs`).
    bans: Bans,
    /// Addresses whose link ended for good (this node's own address).
    gone: HashSet<String>,
    waiters: HashMap<u64, oneshot::Sender<(usize, bool)>>,
    next_token: u64,
    events: broadcast::Sender<Event>,
    router: mpsc::Sender<RouterCommand>,
    publish: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    to_store: mpsc::Sender<(HostId, Vec<StampedDelta>)>,
    last_arrival: Option<Arrival>,
    background: Vec<JoinHandle<()>>,
    /// The storing thread; it ends when `to_store` is dropped.
    storer: JoinHandle<()>,
    /// Requests made of peers, by request id.
    pending: HashMap<u64, Pending>,
    next_request: u64,
    /// Peers a reconciliation is being prepared or run with, and since when.
    reconciling: HashMap<HostId, u64>,
    /// This node's reconciliations, by session.
    outgoing: HashMap<u64, Outgoing>,
    /// Peers' reconciliations with this node, by (peer, session), and when last used.
    incoming: HashMap<(HostId, u64), (Arc<Reconciler>, u64)>,
    /// Addresses dialled because a peer listed them (bounded by `max_learnt_peers`).
    learnt: HashSet<String>,
    /// Peers whose reconciliation slice is being read.
    building: HashSet<HostId>,
    /// When peer lists were last sent.
    last_exchange: u64,
}

impl Driver {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut feed: broadcast::Receiver<Arc<StoredDelta>>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.shared.config.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = self.now();
                    self.redial(now);
                    self.expire_requests(now);
                    if now >= self.last_exchange + self.shared.config.exchange_every_ms {
                        self.last_exchange = now;
                        for peer in self.linked() {
                            self.send_peer_list(peer);
                        }
                    }
                    self.handle(Input::Tick).await;
                }
                stored = feed.recv() => match stored {
                    Ok(stored) => self.stored(&stored).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up_feed().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(message) = inbound.recv() => self.inbound(message).await,
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => break,
                    Some(command) => self.command(command).await,
                },
            }
        }
        for (_, link) in self.links.drain() {
            link.task.abort();
        }
        for task in &self.background {
            task.abort();
        }
        // Let the storing thread finish its queue and release the journal, so the caller
        // can reopen it once `stop` returns.
        let Driver {
            to_store, storer, ..
        } = self;
        drop(to_store);
        let _ = storer.await;
    }

    async fn stored(&mut self, stored: &StoredDelta) {
        if self.last_arrival.is_some_and(|a| stored.arrival <= a) {
            return;
        }
        self.last_arrival = Some(stored.arrival);
        let stamped = StampedDelta {
            delta: stored.delta.clone(),
            stamps: stored.stamps.clone(),
        };
        self.handle(Input::Stored(stamped)).await;
    }

    /// The feed dropped notifications: read what was missed from the journal.
    async fn catch_up_feed(&mut self) {
        let store = self.store.clone();
        let after = self.last_arrival;
        let missed = tokio::task::spawn_blocking(move || {
            store
                .scan_arrival(after)
                .collect::<Result<Vec<StoredDelta>, _>>()
        })
        .await;
        match missed {
            Ok(Ok(missed)) => {
                for stored in missed {
                    self.stored(&stored).await;
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "reading missed deltas"),
            Err(e) => tracing::error!(error = %e, "reading missed deltas"),
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::AwaitConfidence {
                host,
                seq,
                peers,
                timeout,
                reply,
            } => {
                let token = self.next_token;
                self.next_token += 1;
                self.waiters.insert(token, reply);
                let deadline = self.now() + timeout.as_millis() as u64;
                self.handle(Input::AwaitConfidence {
                    token,
                    host,
                    seq,
                    peers,
                    deadline,
                })
                .await;
            }
            Command::Holders { host, seq, reply } => {
                let _ = reply.send(self.peer.holders(host, seq));
            }
            Command::Replication(reply) => {
                let _ = reply.send(self.peer.replication());
            }
            Command::Fetch {
                ids,
                timeout,
                reply,
            } => {
                let peers = self.linked();
                if peers.is_empty() || ids.is_empty() {
                    let _ = reply.send(Vec::new());
                    return;
                }
                let request = self.request_id();
                for peer in &peers {
                    self.send_request(
                        *peer,
                        Message::Fetch {
                            request,
                            ids: ids.clone(),
                        },
                    );
                }
                let deadline = self.now() + timeout.as_millis() as u64;
                self.pending.insert(
                    request,
                    Pending::Fetch {
                        waiting: peers.into_iter().collect(),
                        wanted: ids.into_iter().collect(),
                        found: Vec::new(),
                        deadline,
                        reply,
                    },
                );
            }
            Command::WhoHas {
                entity,
                timeout,
                reply,
            } => {
                let peers = self.linked();
                if peers.is_empty() {
                    let _ = reply.send(Vec::new());
                    return;
                }
                let request = self.request_id();
                for peer in &peers {
                    self.send_request(
                        *peer,
                        Message::WhoHas {
                            request,
                            entity: entity.clone(),
                        },
                    );
                }
                let deadline = self.now() + timeout.as_millis() as u64;
                self.pending.insert(
                    request,
                    Pending::WhoHas {
                        waiting: peers.into_iter().collect(),
                        answers: Vec::new(),
                        deadline,
                        reply,
                    },
                );
            }
            Command::Peers(reply) => {
                // Linked now: a link that broke and is redialling is not listed.
                let _ = reply.send(self.linked());
            }
            Command::Stop => {}
        }
    }

    async fn inbound(&mut self, message: Inbound) {
        match message {
            Inbound::LinkUp {
                link,
                host,
                outbound,
            } => {
                if self.bans.is_banned(&host) || host == self.peer.id() {
                    self.close_link(link);
                    return;
                }
                let duplicate = self
                    .links
                    .iter()
                    .any(|(id, l)| *id != link && l.host == Some(host) && l.outbound.is_some());
                if duplicate {
                    // Both sides dialled each other: one link per peer is enough.
                    self.close_link(link);
                    return;
                }
                if let Some(l) = self.links.get_mut(&link) {
                    l.host = Some(host);
                    l.outbound = Some(outbound);
                }
                tracing::info!(peer = %host, "peer linked");
                self.send_peer_list(host);
                self.handle(Input::PeerUp(host)).await;
            }
            Inbound::LinkDown { link, host } => {
                if let Some(l) = self.links.get_mut(&link) {
                    l.outbound = None;
                }
                tracing::info!(peer = %host, "peer link down; redialling");
                self.handle(Input::PeerDown(host)).await;
            }
            Inbound::LinkGone { link, address } => {
                self.links.remove(&link);
                self.dialing.remove(&address);
                if !self.learnt.remove(&address) {
                    self.gone.insert(address);
                }
            }
            Inbound::Authenticated { host, router } => {
                if self.bans.is_banned(&host) || !plausible_address(&router) {
                    let _ = self.router.send(RouterCommand::Forget(host)).await;
                    return;
                }
                let linked = self.links.values().any(|l| l.host == Some(host));
                if !linked && !self.dialing.contains(&router) {
                    self.dial(router);
                }
            }
            Inbound::Message { from, message } => {
                if self.bans.is_banned(&from) {
                    return;
                }
                self.handle(Input::Received { from, message }).await;
            }
            Inbound::Invalid { from, what } => self.invalid(from, &what).await,
            Inbound::Reply { to, message } => {
                let bytes = wire::encode(&message);
                let _ = self.router.send(RouterCommand::Send { to, bytes }).await;
            }
            Inbound::SliceReady { with, reconciler } => {
                let session = self.request_id();
                let payload = reconciler.initiate();
                self.outgoing.insert(
                    session,
                    Outgoing {
                        peer: with,
                        reconciler,
                        need: HashSet::new(),
                        stepping: false,
                        started: self.now(),
                    },
                );
                let filter = self.slice_text();
                self.send_request(
                    with,
                    Message::Reconcile {
                        session,
                        filter,
                        payload,
                    },
                );
            }
            Inbound::Answered {
                to,
                session,
                outcome,
            } => {
                self.building.remove(&to);
                let (reconciler, reply) = match outcome {
                    Ok(answer) => answer,
                    Err(Some(what)) => {
                        self.incoming.remove(&(to, session));
                        self.invalid(to, &what).await;
                        return;
                    }
                    Err(None) => return,
                };
                if reply.is_empty() {
                    self.incoming.remove(&(to, session));
                } else {
                    if self.incoming.len() >= MAX_INCOMING {
                        // The least recently used goes; its peer will be refused and retry.
                        if let Some(oldest) = self
                            .incoming
                            .iter()
                            .min_by_key(|(_, (_, used))| *used)
                            .map(|(key, _)| *key)
                        {
                            self.incoming.remove(&oldest);
                        }
                    }
                    self.incoming
                        .insert((to, session), (reconciler, self.now()));
                }
                let message = Message::ReconcileReply {
                    session,
                    payload: reply,
                };
                let bytes = wire::encode(&message);
                let _ = self.router.send(RouterCommand::Send { to, bytes }).await;
            }
            Inbound::Stepped { session, step } => {
                let Some(outgoing) = self.outgoing.get_mut(&session) else {
                    return;
                };
                let peer = outgoing.peer;
                outgoing.stepping = false;
                match step {
                    Ok(step) => {
                        outgoing.need.extend(step.need);
                        if outgoing.need.len() > MAX_SLICE_NEED {
                            tracing::warn!(peer = %peer, "a reconciliation found too much missing; fetching happens on the next");
                            self.outgoing.remove(&session);
                            self.reconciling.remove(&peer);
                            return;
                        }
                        match step.reply {
                            Some(payload) => {
                                let filter = self.slice_text();
                                self.send_request(
                                    peer,
                                    Message::Reconcile {
                                        session,
                                        filter,
                                        payload,
                                    },
                                );
                            }
                            None => self.finish_reconcile(session),
                        }
                    }
                    Err(e) => {
                        self.outgoing.remove(&session);
                        self.reconciling.remove(&peer);
                        self.invalid(peer, &e.to_string()).await;
                    }
                }
            }
        }
    }

    /// Counts a peer's invalid input; past the threshold the peer is disconnected and
    /// banned for a while.
    async fn invalid(&mut self, from: HostId, what: &str) {
        let count = self.invalid.entry(from).or_default();
        *count += 1;
        tracing::warn!(peer = %from, count = *count, what, "invalid input from peer");
        if *count < self.shared.config.max_invalid {
            return;
        }
        self.invalid.remove(&from);
        let dialled: Vec<String> = self
            .links
            .values()
            .filter(|l| l.host == Some(from))
            .map(|l| l.address.clone())
            .collect();
        let now = self.now();
        self.bans.ban(from, now, self.shared.config.ban_ms, dialled);
        if let Ok(mut shared) = self.shared.banned.lock() {
            shared.insert(from);
        }
        if self.shared.seal_publish.load(Ordering::Relaxed) {
            // The banned peer may hold the publish key: replace it, and hand the new one to
            // everyone else. (Frames sealed under the new key that reach a subscriber before
            // its key are dropped, like any lost PUB frame, and catch-up repairs them.)
            *self
                .shared
                .publish_key
                .write()
                .unwrap_or_else(|e| e.into_inner()) = GroupKey::random();
            let _ = self.router.send(RouterCommand::Rekey).await;
            tracing::info!("publish key replaced after a ban");
        }
        tracing::warn!(peer = %from, ban_ms = self.shared.config.ban_ms, "disconnecting misbehaving peer");
        let links: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.host == Some(from))
            .map(|(id, _)| *id)
            .collect();
        for link in links {
            self.close_link(link);
        }
        let _ = self.router.send(RouterCommand::Forget(from)).await;
        self.handle(Input::PeerDown(from)).await;
    }

    /// Ends the bans that are over (redialling the links they closed) and redials any
    /// configured peer left without a link.
    fn redial(&mut self, now: u64) {
        let mut addresses = self.bans.expire(now);
        if let Ok(mut shared) = self.shared.banned.lock() {
            shared.retain(|host| self.bans.is_banned(host));
        }
        let dialing = |address: &str| self.dialing.contains(address) || self.gone.contains(address);
        addresses.extend(
            bans::configured_to_redial(&self.shared.config.peers, &dialing, &self.bans).cloned(),
        );
        for address in addresses {
            if !self.dialing.contains(&address) {
                tracing::info!(%address, "redialling a peer");
                self.dial(address);
            }
        }
    }

    fn close_link(&mut self, link: u64) {
        if let Some(l) = self.links.remove(&link) {
            l.task.abort();
            self.dialing.remove(&l.address);
        }
    }

    fn dial(&mut self, address: String) {
        let link = self.next_link;
        self.next_link += 1;
        self.dialing.insert(address.clone());
        let learnt = self.learnt.contains(&address);
        let task = tokio::spawn(
            run_link(link, address.clone(), self.shared.clone(), learnt).in_current_span(),
        );
        self.links.insert(
            link,
            LinkHandle {
                host: None,
                address,
                outbound: None,
                task,
            },
        );
    }

    async fn handle(&mut self, input: Input) {
        let now = self.now();
        tracing::trace!(?input, "input");
        let outputs = self.peer.handle(now, input);
        tracing::trace!(?outputs, "outputs");
        for output in outputs {
            self.carry_out(output).await;
        }
    }

    async fn carry_out(&mut self, output: Output) {
        match output {
            Output::Publish(message) => match message {
                Message::Deltas(deltas) => {
                    // One message per delta, under each of its topics (`topics.rs`).
                    for delta in deltas {
                        let topics = topics::delta_topics(&delta.delta);
                        let bytes = wire::encode(&Message::Deltas(vec![delta]));
                        for topic in topics {
                            // A full queue drops the message, as PUB itself would:
                            // catch-up repairs it.
                            let _ = self.publish.try_send((topic.into_bytes(), bytes.clone()));
                        }
                    }
                }
                message => {
                    let topic = topics::COVERAGE.as_bytes().to_vec();
                    let _ = self.publish.try_send((topic, wire::encode(&message)));
                }
            },
            Output::Send { to, message } => {
                if message.is_reply() {
                    let bytes = wire::encode(&message);
                    let _ = self.router.send(RouterCommand::Send { to, bytes }).await;
                } else {
                    self.send_request(to, message);
                }
            }
            Output::Answer { to, request } => self.answer(to, request),
            Output::Replied { from, reply } => self.replied(from, reply),
            Output::Reconcile { with } => self.start_reconcile(with),
            Output::Learnt(peers) => self.learn_peers(peers),
            Output::Store { from, deltas } => {
                // A full queue drops the batch; the state machine asks again after its
                // request timeout.
                if self.to_store.try_send((from, deltas)).is_err() {
                    tracing::debug!(peer = %from, "store queue full; dropping a batch");
                }
            }
            Output::Event(event) => {
                if let Event::Confidence {
                    token,
                    holders,
                    reached,
                } = event
                {
                    if let Some(waiter) = self.waiters.remove(&token) {
                        let _ = waiter.send((holders, reached));
                    }
                }
                let _ = self.events.send(event);
            }
            Output::Serve {
                to,
                request,
                ranges,
                limit,
            } => {
                let store = self.store.clone();
                let inbound = self.shared.inbound.clone();
                tokio::task::spawn_blocking(move || {
                    match read_page(&store, request, &ranges, limit) {
                        Ok(message) => {
                            let _ = inbound.blocking_send(Inbound::Reply { to, message });
                        }
                        Err(e) => tracing::error!(error = %e, "reading a catch-up page"),
                    }
                });
            }
        }
    }

    /// Tells `to` the other peers this node is linked to, with their ROUTER addresses.
    fn send_peer_list(&self, to: HostId) {
        if self.shared.config.max_learnt_peers == 0 {
            return;
        }
        let mut peers: Vec<(HostId, String)> = self
            .links
            .values()
            .filter(|l| l.outbound.is_some())
            .filter_map(|l| l.host.map(|h| (h, l.address.clone())))
            .filter(|(h, _)| *h != to)
            .collect();
        peers.sort();
        peers.dedup_by_key(|(h, _)| *h);
        peers.truncate(MAX_PEER_LIST);
        if !peers.is_empty() {
            self.send_request(to, Message::Peers(peers));
        }
    }

    /// Dials peers another peer listed that are not linked yet, within the cap.
    fn learn_peers(&mut self, peers: Vec<(HostId, String)>) {
        let cap = self.shared.config.max_learnt_peers;
        for (host, address) in peers.into_iter().take(MAX_PEER_LIST) {
            if self.learnt.len() >= cap {
                return;
            }
            let linked = self.links.values().any(|l| l.host == Some(host));
            if host == self.peer.id()
                || linked
                || !plausible_address(&address)
                || self.bans.is_banned(&host)
                || self.dialing.contains(&address)
            {
                continue;
            }
            tracing::info!(peer = %host, %address, "dialling a peer learnt from another");
            self.learnt.insert(address.clone());
            self.dial(address);
        }
    }

    /// The peers linked now.
    fn linked(&self) -> Vec<HostId> {
        let mut peers: Vec<HostId> = self
            .links
            .values()
            .filter(|l| l.outbound.is_some())
            .filter_map(|l| l.host)
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Sends a request over the link this node dialled to `to` (dropped if it is down or
    /// its queue is full: every request here has a deadline or is retried).
    fn send_request(&self, to: HostId, message: Message) {
        let link = self
            .links
            .values()
            .find(|l| l.host == Some(to))
            .and_then(|l| l.outbound.clone());
        if let Some(link) = link {
            let _ = link.try_send(message);
        }
    }

    /// The slice this node replicates, as sent with its reconciliations.
    fn slice_text(&self) -> String {
        self.shared
            .config
            .replicate
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Answers a peer's request from the journal, on the blocking pool.
    fn answer(&mut self, to: HostId, request: Message) {
        let store = self.store.clone();
        let inbound = self.shared.inbound.clone();
        match request {
            Message::Fetch { request, ids } => {
                // Half the message bound: a reply must fit what the requester accepts.
                let budget = self.shared.config.max_message_bytes / 2;
                tokio::task::spawn_blocking(move || {
                    match serve::fetch(&store, request, &ids, budget) {
                        Ok(message) => {
                            let _ = inbound.blocking_send(Inbound::Reply { to, message });
                        }
                        Err(e) => tracing::error!(error = %e, "answering a fetch"),
                    }
                });
            }
            Message::WhoHas { request, entity } => {
                tokio::task::spawn_blocking(move || {
                    match serve::who_has(&store, request, &entity) {
                        Ok(message) => {
                            let _ = inbound.blocking_send(Inbound::Reply { to, message });
                        }
                        Err(e) => tracing::error!(error = %e, "answering who-has"),
                    }
                });
            }
            Message::Reconcile {
                session,
                filter,
                payload,
            } => {
                let cached = self.incoming.get(&(to, session)).map(|(r, _)| r.clone());
                // Each new session reads the whole journal: one at a time per peer, and a
                // few at a time in all; a refused one times out and is retried later.
                if cached.is_none() {
                    if self.building.contains(&to) || self.building.len() >= MAX_BUILDING {
                        tracing::debug!(peer = %to, "busy reading slices; a reconciliation waits");
                        return;
                    }
                    self.building.insert(to);
                    // One open session per peer: a new one replaces the old.
                    self.incoming.retain(|(peer, _), _| *peer != to);
                }
                tokio::task::spawn_blocking(move || {
                    let outcome = answer_reconcile(&store, cached, &filter, &payload);
                    let _ = inbound.blocking_send(Inbound::Answered {
                        to,
                        session,
                        outcome,
                    });
                });
            }
            _ => {}
        }
    }

    /// Takes a peer's reply to a request this driver made.
    fn replied(&mut self, from: HostId, reply: Message) {
        match reply {
            Message::Fetched {
                request, deltas, ..
            } => match self.pending.get_mut(&request) {
                Some(Pending::Fetch {
                    waiting,
                    wanted,
                    found,
                    ..
                }) => {
                    waiting.remove(&from);
                    for delta in deltas {
                        if wanted.remove(&delta.delta.id()) {
                            found.push(delta);
                        }
                    }
                    if wanted.is_empty() || waiting.is_empty() {
                        self.finish_request(request);
                    }
                }
                Some(Pending::Slice { peer, .. }) if *peer == from => {
                    self.pending.remove(&request);
                    if !deltas.is_empty() && self.to_store.try_send((from, deltas)).is_err() {
                        tracing::debug!(peer = %from, "store queue full; the next reconciliation fetches again");
                    }
                }
                _ => {}
            },
            Message::Holds { request, deltas } => {
                if let Some(Pending::WhoHas {
                    waiting, answers, ..
                }) = self.pending.get_mut(&request)
                {
                    if waiting.remove(&from) {
                        answers.push((from, deltas));
                    }
                    if waiting.is_empty() {
                        self.finish_request(request);
                    }
                }
            }
            Message::ReconcileReply { session, payload } => {
                let Some(outgoing) = self.outgoing.get_mut(&session) else {
                    return;
                };
                if outgoing.peer != from || outgoing.stepping {
                    return;
                }
                if payload.is_empty() {
                    self.finish_reconcile(session);
                    return;
                }
                if payload.len() > MAX_RECONCILE_PAYLOAD {
                    self.outgoing.remove(&session);
                    self.reconciling.remove(&from);
                    tracing::warn!(peer = %from, bytes = payload.len(), "dropping an oversized reconciliation reply");
                    return;
                }
                outgoing.stepping = true;
                let reconciler = outgoing.reconciler.clone();
                let inbound = self.shared.inbound.clone();
                tokio::task::spawn_blocking(move || {
                    let step = reconciler.reconcile(&payload);
                    let _ = inbound.blocking_send(Inbound::Stepped { session, step });
                });
            }
            _ => {}
        }
    }

    /// Answers the caller of a request to peers with what came.
    fn finish_request(&mut self, request: u64) {
        match self.pending.remove(&request) {
            Some(Pending::Fetch { found, reply, .. }) => {
                let store = self.store.clone();
                tokio::spawn(async move {
                    let stored =
                        tokio::task::spawn_blocking(move || store_fetched(&store, found)).await;
                    let _ = reply.send(stored.unwrap_or_default());
                });
            }
            Some(Pending::WhoHas { answers, reply, .. }) => {
                let _ = reply.send(answers);
            }
            Some(Pending::Slice { .. }) | None => {}
        }
    }

    /// Requests past their deadline answer with what they have; stale reconciliations go.
    fn expire_requests(&mut self, now: u64) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                Pending::Fetch { deadline, .. }
                | Pending::WhoHas { deadline, .. }
                | Pending::Slice { deadline, .. } => *deadline <= now,
            })
            .map(|(id, _)| *id)
            .collect();
        for request in due {
            self.finish_request(request);
        }
        let stale = |since: u64| now >= since + REQUEST_LIFETIME_MS;
        self.reconciling.retain(|_, since| !stale(*since));
        self.outgoing.retain(|_, o| !stale(o.started));
        self.incoming.retain(|_, (_, used)| !stale(*used));
    }

    /// Starts reconciling this node's slice with `with`, unless one is under way.
    fn start_reconcile(&mut self, with: HostId) {
        if self.reconciling.contains_key(&with) {
            return;
        }
        self.reconciling.insert(with, self.now());
        let store = self.store.clone();
        let slice = self.shared.config.replicate.clone();
        let inbound = self.shared.inbound.clone();
        tokio::task::spawn_blocking(move || match serve::slice(&store, slice.as_ref()) {
            Ok(reconciler) => {
                let reconciler = Arc::new(reconciler);
                let _ = inbound.blocking_send(Inbound::SliceReady { with, reconciler });
            }
            Err(e) => tracing::error!(error = %e, "reading this node's slice"),
        });
    }

    /// A reconciliation is settled: fetch what it found missing here.
    fn finish_reconcile(&mut self, session: u64) {
        let Some(outgoing) = self.outgoing.remove(&session) else {
            return;
        };
        self.reconciling.remove(&outgoing.peer);
        tracing::debug!(peer = %outgoing.peer, missing = outgoing.need.len(), "slice reconciled");
        let deadline = self.now() + REQUEST_LIFETIME_MS;
        let need: Vec<DeltaId> = outgoing.need.into_iter().collect();
        for chunk in need.chunks(SLICE_FETCH) {
            let request = self.request_id();
            self.pending.insert(
                request,
                Pending::Slice {
                    peer: outgoing.peer,
                    deadline,
                },
            );
            self.send_request(
                outgoing.peer,
                Message::Fetch {
                    request,
                    ids: chunk.to_vec(),
                },
            );
        }
    }
}

/// Answers one turn of a peer's reconciliation: with the session's slice if cached, else
/// after reading it. `Err(Some(why))` blames the peer's input; `Err(None)` is a local failure.
fn answer_reconcile(
    store: &Store,
    cached: Option<Arc<Reconciler>>,
    filter: &str,
    payload: &[u8],
) -> Result<(Arc<Reconciler>, Vec<u8>), Option<String>> {
    if payload.len() > MAX_RECONCILE_PAYLOAD {
        return Err(Some(format!(
            "a reconciliation message of {} bytes",
            payload.len()
        )));
    }
    let reconciler = match cached {
        Some(reconciler) => reconciler,
        None => {
            let slice = serve::parse_slice(filter)
                .map_err(|e| Some(format!("reconciliation filter: {e}")))?;
            match serve::slice(store, slice.as_ref()) {
                Ok(reconciler) => Arc::new(reconciler),
                Err(e) => {
                    tracing::error!(error = %e, "reading a slice to reconcile");
                    return Err(None);
                }
            }
        }
    };
    let step = reconciler
        .reconcile(payload)
        .map_err(|e| Some(e.to_string()))?;
    Ok((reconciler, step.reply.unwrap_or_default()))
}

/// Whether a peer-given address is worth dialling: TCP, and not absurdly long.
fn plausible_address(address: &str) -> bool {
    address.starts_with("tcp://") && address.len() <= 256
}

/// Stores deltas fetched on request, whatever slice the node replicates; returns those
/// stored (a forged one is left out).
fn store_fetched(store: &Store, found: Vec<StampedDelta>) -> Vec<StampedDelta> {
    if store.put_batch(found.clone()).is_ok() {
        return found;
    }
    found
        .into_iter()
        .filter(|d| store.put_batch(vec![d.clone()]).is_ok())
        .collect()
}

/// Messages from peers waiting to be verified and stored. Relayed deltas come one per
/// message, so this must hold several coalesced writes' worth, or live traffic is dropped
/// and left to catch-up (measured: 64 capped replication at 7k deltas/s).
const STORE_QUEUE: usize = 16_384;

/// The one thread that verifies and stores deltas from peers, in the order they came.
fn run_storer(
    store: Store,
    mut queue: mpsc::Receiver<(HostId, Vec<StampedDelta>)>,
    inbound: mpsc::Sender<Inbound>,
    slice: Option<Filter>,
    span: tracing::Span,
) -> JoinHandle<()> {
    // A partial replica keeps only its slice of what peers send.
    let in_slice = move |d: &StampedDelta| {
        slice
            .as_ref()
            .is_none_or(|f| f.matches(&d.delta.filter_document(&d.stamps)))
    };
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        while let Some(mut first) = queue.blocking_recv() {
            first.1.retain(&in_slice);
            // Whatever else is queued goes in the same write: relayed deltas arrive one per
            // message, and one write per delta would cap ingest far below verification.
            let mut batches = vec![first];
            let mut total = batches[0].1.len();
            while total < STORE_COALESCE {
                match queue.try_recv() {
                    Ok(mut batch) => {
                        batch.1.retain(&in_slice);
                        total += batch.1.len();
                        batches.push(batch);
                    }
                    Err(_) => break,
                }
            }
            let all: Vec<StampedDelta> = batches
                .iter()
                .flat_map(|(_, deltas)| deltas.iter().cloned())
                .collect();
            if store.put_batch(all).is_err() {
                for (from, deltas) in batches {
                    store_from_peer(&store, from, deltas, &inbound);
                }
            }
        }
    })
}

/// Most deltas stored in one write by the storing thread.
const STORE_COALESCE: usize = 4096;

/// Stores deltas from a peer: all at once when all are valid, else one by one, counting
/// each invalid one against the peer. New deltas reach the state machine through the feed.
fn store_from_peer(
    store: &Store,
    from: HostId,
    deltas: Vec<StampedDelta>,
    inbound: &mpsc::Sender<Inbound>,
) {
    if store.put_batch(deltas.clone()).is_ok() {
        return;
    }
    for delta in deltas {
        if let Err(e) = store.put_batch(vec![delta]) {
            if matches!(e, hypha_delta_store::Error::Invalid { .. }) {
                let _ = inbound.blocking_send(Inbound::Invalid {
                    from,
                    what: e.to_string(),
                });
            } else {
                tracing::error!(error = %e, "storing a delta from a peer");
            }
        }
    }
}

/// Reads a catch-up page: the deltas stamped in `ranges`, at most `limit`.
fn read_page(
    store: &Store,
    request: u64,
    ranges: &[(HostId, Seq, Seq)],
    limit: usize,
) -> Result<Message, hypha_delta_store::Error> {
    let mut deltas = Vec::new();
    let mut more = false;
    'ranges: for (host, from, to) in ranges {
        for entry in store.scan_origin(*host, *from, *to) {
            let (_, stored) = entry?;
            if deltas.len() >= limit {
                more = true;
                break 'ranges;
            }
            deltas.push(StampedDelta {
                delta: stored.delta,
                stamps: stored.stamps,
            });
        }
    }
    Ok(Message::CatchUpPage {
        request,
        deltas,
        more,
    })
}

/// The first eight hex digits of a host id, for logs.
fn short(host: HostId) -> String {
    host.to_string()[..8].to_owned()
}

fn frames(parts: Vec<Bytes>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(parts).ok()
}

/// Publishes messages: `[topic, sender, PLAIN · message]`, or `[topic, sender, SEALED ·
/// sealed message]` (bound to the topic and sender) when a publish key is given.
async fn run_publisher(
    mut socket: PubSocket,
    me: HostId,
    mut queue: mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
    shared: Arc<Shared>,
) {
    let sender = Bytes::copy_from_slice(me.as_bytes());
    while let Some((topic, bytes)) = queue.recv().await {
        let payload = if shared.seal_publish.load(Ordering::Relaxed) {
            let aad = [topic.as_slice(), me.as_bytes()].concat();
            let key = shared.current_publish_key();
            [&[SEALED][..], &key.seal(&aad, &bytes)].concat()
        } else {
            [&[PLAIN][..], &bytes].concat()
        };
        shared.counters.published(payload.len());
        let Some(message) = frames(vec![topic.into(), sender.clone(), payload.into()]) else {
            continue;
        };
        if let Err(e) = socket.send(message).await {
            tracing::warn!(error = %e, "publishing");
        }
    }
}

/// The ROUTER side: answers handshakes, authenticates peers, passes their messages on,
/// and sends catch-up pages back to them.
async fn run_router(
    socket: RouterSocket,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<RouterCommand>,
) {
    let (mut send, mut recv) = socket.split();
    // Handshakes in progress, by connection identity: the hello, our welcome and our key.
    let mut pending: HashMap<Bytes, (Hello, Welcome, Ephemeral)> = HashMap::new();
    let mut host_of: HashMap<Bytes, HostId> = HashMap::new();
    let mut identity_of: HashMap<HostId, Bytes> = HashMap::new();
    // The keys of encrypted links, by connection identity.
    let mut sealed: HashMap<Bytes, LinkKeys> = HashMap::new();
    let max = shared.config.max_message_bytes;
    loop {
        tokio::select! {
            received = recv.recv() => {
                let Ok(message) = received else { continue };
                let parts = message.into_vec();
                let [identity, tag, payload] = <[Bytes; 3]>::try_from(parts).unwrap_or_else(|_| {
                    [Bytes::new(), Bytes::new(), Bytes::new()]
                });
                match tag.as_ref() {
                    // A connection that has proven its identity does not handshake again
                    // (a redial is a new connection).
                    HELLO if host_of.contains_key(&identity) => {}
                    HELLO => match Hello::decode(&payload) {
                        Ok(hello) => {
                            let ephemeral = Ephemeral::new();
                            let welcome = hello.welcome(&shared.key, nonce(), shared.endpoints.publish.clone(), ephemeral.public, shared.listener_wants());
                            pending.insert(identity.clone(), (hello, welcome.clone(), ephemeral));
                            if pending.len() > 1024 {
                                // Unfinished handshakes are bounded; start over if flooded.
                                pending.clear();
                            }
                            if let Some(reply) = frames(vec![identity, WELCOME.into(), welcome.encode().into()]) {
                                let _ = send.send(reply).await;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "refusing a handshake"),
                    },
                    PROOF => {
                        let Some((hello, welcome, ephemeral)) = pending.remove(&identity) else { continue };
                        if shared.banned.lock().is_ok_and(|b| b.contains(&hello.host)) {
                            // A banned host gets neither the publish key nor a link.
                            continue;
                        }
                        let checked = Proof::decode(&payload)
                            .and_then(|proof| hello.check(&proof, &welcome));
                        match checked {
                            Ok(()) => {
                                // The publish key goes to a proven peer only, sealed when
                                // the link is (it always is when the PUB stream is sealed).
                                let mut handed = Vec::new();
                                if handshake::encrypted(&hello, &welcome) {
                                    let transcript = handshake::transcript(&hello, &welcome);
                                    match ephemeral.agree(&hello.ephemeral, &transcript, false) {
                                        Ok(mut keys) => {
                                            // The key goes out only when the stream is sealed
                                            // (and then the link always is: `listener_wants`).
                                            if shared.seal_publish.load(Ordering::Relaxed) {
                                                handed = keys.send.seal(&shared.current_publish_key().to_bytes());
                                            }
                                            sealed.insert(identity.clone(), keys);
                                        }
                                        Err(e) => {
                                            tracing::warn!(error = %e, peer = %hello.host, "refusing a link");
                                            continue;
                                        }
                                    }
                                } else {
                                    sealed.remove(&identity);
                                }
                                if let Some(frame) = frames(vec![identity.clone(), PUBLISH_KEY.into(), handed.into()]) {
                                    let _ = send.send(frame).await;
                                }
                                // A host that redialled leaves its old connection behind.
                                if let Some(old) = identity_of.insert(hello.host, identity.clone()) {
                                    if old != identity {
                                        host_of.remove(&old);
                                        sealed.remove(&old);
                                    }
                                }
                                host_of.insert(identity, hello.host);
                                let _ = shared.inbound.send(Inbound::Authenticated { host: hello.host, router: hello.router }).await;
                            }
                            Err(e) => tracing::warn!(error = %e, claimed = %hello.host, "refusing a peer that cannot prove its identity"),
                        }
                    }
                    PING if host_of.contains_key(&identity) => {
                        if let Some(reply) = frames(vec![identity, PONG.into(), Bytes::new()]) {
                            let _ = send.send(reply).await;
                        }
                    }
                    MESSAGE => {
                        // Messages count only from a peer that has proven who it is.
                        let Some(&from) = host_of.get(&identity) else { continue };
                        shared.counters.received(payload.len());
                        let payload = match sealed.get_mut(&identity) {
                            Some(keys) => match keys.open.open(&payload) {
                                Ok(plain) => Bytes::from(plain),
                                Err(e) => {
                                    let _ = shared.inbound.send(Inbound::Invalid { from, what: e.to_string() }).await;
                                    continue;
                                }
                            },
                            None => payload,
                        };
                        match wire::decode(&payload, max) {
                            Ok(message) => { let _ = shared.inbound.send(Inbound::Message { from, message }).await; }
                            Err(e) => { let _ = shared.inbound.send(Inbound::Invalid { from, what: e.to_string() }).await; }
                        }
                    }
                    _ => {}
                }
            }
            command = commands.recv() => match command {
                None => return,
                Some(RouterCommand::Send { to, bytes }) => {
                    let Some(identity) = identity_of.get(&to) else { continue };
                    let bytes = match sealed.get_mut(identity) {
                        Some(keys) => keys.send.seal(&bytes),
                        None => bytes,
                    };
                    shared.counters.sent(bytes.len());
                    if let Some(message) = frames(vec![identity.clone(), MESSAGE.into(), bytes.into()]) {
                        let _ = send.send(message).await;
                    }
                }
                Some(RouterCommand::Forget(host)) => {
                    if let Some(identity) = identity_of.remove(&host) {
                        host_of.remove(&identity);
                        sealed.remove(&identity);
                    }
                }
                Some(RouterCommand::Rekey) => {
                    let key = shared.current_publish_key().to_bytes();
                    for (identity, keys) in sealed.iter_mut() {
                        let banned = host_of
                            .get(identity)
                            .is_none_or(|host| shared.banned.lock().is_ok_and(|b| b.contains(host)));
                        if banned {
                            continue;
                        }
                        if let Some(frame) = frames(vec![identity.clone(), PUBLISH_KEY.into(), keys.send.seal(&key).into()]) {
                            let _ = send.send(frame).await;
                        }
                    }
                }
            }
        }
    }
}

/// Why a link session ended.
enum Ended {
    /// The link never came up: redial after a pause.
    Retry(String),
    /// The link was up and broke: redial after a pause.
    Broke(String),
    /// This node dialled itself: never redial.
    SelfLink,
}

/// A learnt address that fails this many times in a row without linking is given up (its
/// slot under the learnt-peer cap is freed).
const LEARNT_ATTEMPTS: u32 = 5;

/// One outbound link: dials, handshakes, relays, and redials with backoff when it breaks.
/// A link to a learnt address gives up after `LEARNT_ATTEMPTS` failures in a row.
async fn run_link(link: u64, address: String, shared: Arc<Shared>, learnt: bool) {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0;
    loop {
        match session(link, &address, &shared).await {
            Ended::SelfLink => {
                let _ = shared
                    .inbound
                    .send(Inbound::LinkGone { link, address })
                    .await;
                return;
            }
            Ended::Retry(why) => {
                failures += 1;
                tracing::debug!(%address, why, failures, "link failed");
                if learnt && failures >= LEARNT_ATTEMPTS {
                    tracing::info!(%address, "giving up a learnt peer that does not answer");
                    let _ = shared
                        .inbound
                        .send(Inbound::LinkGone { link, address })
                        .await;
                    return;
                }
            }
            Ended::Broke(why) => {
                failures = 0;
                backoff = Duration::from_millis(100);
                tracing::debug!(%address, why, "link ended");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn session(link: u64, address: &str, shared: &Shared) -> Ended {
    let config = &shared.config;
    let handshake_timeout = Duration::from_millis(config.handshake_timeout_ms);
    let mut dealer = DealerSocket::new();
    match tokio::time::timeout(handshake_timeout, dealer.connect(address)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Ended::Retry(format!("connect: {e}")),
        Err(_) => return Ended::Retry("connect timed out".into()),
    }
    let ephemeral = Ephemeral::new();
    let hello = Hello {
        host: shared.key.host_id(),
        nonce: nonce(),
        router: shared.endpoints.router.clone(),
        publish: shared.endpoints.publish.clone(),
        ephemeral: ephemeral.public,
        encrypt: config.encryption.wants(address),
    };
    let Some(opening) = frames(vec![HELLO.into(), hello.encode().into()]) else {
        return Ended::Retry("framing".into());
    };
    if let Err(e) = dealer.send(opening).await {
        return Ended::Retry(format!("send hello: {e}"));
    }
    let welcome = match tokio::time::timeout(handshake_timeout, dealer.recv()).await {
        Ok(Ok(reply)) => {
            let parts = reply.into_vec();
            match parts.as_slice() {
                [tag, payload] if tag.as_ref() == WELCOME => match Welcome::decode(payload) {
                    Ok(w) => w,
                    Err(e) => return Ended::Retry(e.to_string()),
                },
                _ => return Ended::Retry("unexpected handshake reply".into()),
            }
        }
        Ok(Err(e)) => return Ended::Retry(format!("handshake: {e}")),
        Err(_) => return Ended::Retry("handshake timed out".into()),
    };
    if welcome.host == shared.key.host_id() {
        return Ended::SelfLink;
    }
    let proof = match welcome.check(&hello, &shared.key) {
        Ok(proof) => proof,
        Err(e) => {
            tracing::warn!(%address, error = %e, "peer failed to prove its identity");
            return Ended::Retry(e.to_string());
        }
    };
    let mut keys = if handshake::encrypted(&hello, &welcome) {
        let transcript = handshake::transcript(&hello, &welcome);
        match ephemeral.agree(&welcome.ephemeral, &transcript, true) {
            Ok(keys) => Some(keys),
            Err(e) => return Ended::Retry(e.to_string()),
        }
    } else {
        None
    };
    let Some(proof) = frames(vec![PROOF.into(), proof.encode().into()]) else {
        return Ended::Retry("framing".into());
    };
    if let Err(e) = dealer.send(proof).await {
        return Ended::Retry(format!("send proof: {e}"));
    }
    // The listener answers a good proof with its publish key (sealed, or nothing).
    let publish_key = match tokio::time::timeout(handshake_timeout, dealer.recv()).await {
        Ok(Ok(reply)) => {
            let parts = reply.into_vec();
            match (parts.as_slice(), keys.as_mut()) {
                ([tag, handed], encrypted) if tag.as_ref() == PUBLISH_KEY && handed.is_empty() => {
                    if encrypted.is_some() {
                        tracing::info!(%address, "the link is encrypted, but the peer's PUB stream is not sealed (its --encrypt policy)");
                    }
                    None
                }
                ([tag, handed], Some(keys)) if tag.as_ref() == PUBLISH_KEY => {
                    match keys.open.open(handed).map(<[u8; 32]>::try_from) {
                        Ok(Ok(key)) => Some(GroupKey::from_bytes(key)),
                        _ => return Ended::Retry("a publish key that does not open".into()),
                    }
                }
                _ => return Ended::Retry("no publish key after the proof".into()),
            }
        }
        Ok(Err(e)) => return Ended::Retry(format!("handshake: {e}")),
        Err(_) => return Ended::Retry("proof unanswered".into()),
    };
    let host = welcome.host;
    let mut sub = SubSocket::new();
    for topic in topics::subscriptions(config.replicate.as_ref()) {
        if let Err(e) = sub.subscribe(&topic).await {
            return Ended::Retry(format!("subscribe: {e}"));
        }
    }
    if let Err(e) = sub.connect(&welcome.publish).await {
        return Ended::Retry(format!("connect to {}: {e}", welcome.publish));
    }
    let (outbound, mut outbound_rx) = mpsc::channel::<Message>(256);
    let up = Inbound::LinkUp {
        link,
        host,
        outbound,
    };
    if shared.inbound.send(up).await.is_err() {
        return Ended::Retry("driver gone".into());
    }
    let ended = relay(
        host,
        &mut dealer,
        &mut sub,
        &mut outbound_rx,
        Crypto {
            link: keys,
            publish: publish_key,
            previous: None,
        },
        shared,
    )
    .await;
    let _ = shared.inbound.send(Inbound::LinkDown { link, host }).await;
    Ended::Broke(ended)
}

/// Passes a linked peer's messages to the driver and the driver's requests to the peer,
/// until the link breaks or goes quiet.
/// A link's keys: its own (when encrypted), and the peer's publish key (when its PUB
/// stream is sealed).
struct Crypto {
    link: Option<LinkKeys>,
    publish: Option<GroupKey>,
    /// The publish key before the latest replacement, for frames sealed before it.
    previous: Option<GroupKey>,
}

async fn relay(
    host: HostId,
    dealer: &mut DealerSocket,
    sub: &mut SubSocket,
    outbound: &mut mpsc::Receiver<Message>,
    mut crypto: Crypto,
    shared: &Shared,
) -> String {
    let config = &shared.config;
    let request_timeout = Duration::from_millis(config.protocol.request_timeout_ms);
    let quiet_limit = Duration::from_millis(config.protocol.peer_timeout_ms);
    let mut awaiting: Option<Instant> = None;
    let mut last_heard = Instant::now();
    // The listener is asked for a sign of life at least this often: a PUB stream alone
    // does not show that it still knows this link.
    let keepalive = quiet_limit / 2;
    let mut last_asked = Instant::now();
    let mut check = tokio::time::interval(Duration::from_millis(config.tick_ms.max(10)));
    let max = config.max_message_bytes;
    loop {
        tokio::select! {
            reply = dealer.recv() => {
                let Ok(reply) = reply else { return "dealer closed".into() };
                last_heard = Instant::now();
                awaiting = None;
                let parts = reply.into_vec();
                if let [tag, payload] = parts.as_slice() {
                    tracing::trace!(peer = %host, bytes = payload.len(), "reply");
                    if tag.as_ref() == PUBLISH_KEY {
                        // The peer replaced its publish key (it banned someone).
                        let key = crypto.link.as_mut().map(|k| k.open.open(payload));
                        match key.map(|opened| opened.map(<[u8; 32]>::try_from)) {
                            Some(Ok(Ok(key))) => {
                                crypto.previous = crypto.publish.replace(GroupKey::from_bytes(key));
                            }
                            _ => tracing::debug!(peer = %host, "ignoring a publish key that does not open"),
                        }
                    } else if tag.as_ref() == MESSAGE {
                        match crypto.link.as_mut().map(|k| k.open.open(payload)) {
                            None => forward(host, payload, max, shared).await,
                            Some(Ok(plain)) => forward(host, &plain, max, shared).await,
                            Some(Err(e)) => {
                                shared.counters.received(payload.len());
                                let _ = shared.inbound.send(Inbound::Invalid { from: host, what: e.to_string() }).await;
                            }
                        }
                    }
                }
            }
            published = sub.recv() => {
                let Ok(published) = published else { return "subscription closed".into() };
                let parts = published.into_vec();
                if let [topic, sender, payload] = parts.as_slice() {
                    // The stream is the peer's own PUB socket; anything claiming otherwise
                    // is ignored.
                    if sender.as_ref() == host.as_bytes() {
                        tracing::trace!(peer = %host, bytes = payload.len(), "published message");
                        last_heard = Instant::now();
                        // Frames that do not open are dropped, not held against the peer: the
                        // SUB connection is not authenticated, so anyone on the path could
                        // have put them there. (A plain frame before the peer started
                        // sealing is lost like any PUB frame; catch-up repairs it.)
                        match (payload.split_first(), &crypto.publish) {
                            (Some((&PLAIN, message)), None) => forward(host, message, max, shared).await,
                            (Some((&SEALED, sealed)), Some(key)) => {
                                let aad = [topic.as_ref(), sender.as_ref()].concat();
                                let opened = key.open(&aad, sealed).or_else(|e| match &crypto.previous {
                                    Some(previous) => previous.open(&aad, sealed),
                                    None => Err(e),
                                });
                                match opened {
                                    Ok(plain) => forward(host, &plain, max, shared).await,
                                    Err(e) => tracing::debug!(peer = %host, error = %e, "dropping a PUB frame"),
                                }
                            }
                            _ => tracing::debug!(peer = %host, "dropping a PUB frame not sealed as the link's keys say"),
                        }
                    }
                }
            }
            message = outbound.recv() => {
                let Some(message) = message else { return "closed by the driver".into() };
                let is_request = matches!(message, Message::CatchUpRequest { .. });
                let mut bytes = wire::encode(&message);
                if let Some(keys) = crypto.link.as_mut() {
                    bytes = keys.send.seal(&bytes);
                }
                shared.counters.sent(bytes.len());
                let Some(frame) = frames(vec![MESSAGE.into(), bytes.into()]) else { continue };
                if let Err(e) = dealer.send(frame).await {
                    return format!("send: {e}");
                }
                if is_request && awaiting.is_none() {
                    awaiting = Some(Instant::now());
                    last_asked = Instant::now();
                }
            }
            _ = check.tick() => {
                if awaiting.is_some_and(|since| since.elapsed() > request_timeout) {
                    return "request unanswered; redialling".into();
                }
                if last_heard.elapsed() > quiet_limit {
                    return "peer quiet; redialling".into();
                }
                if awaiting.is_none() && last_asked.elapsed() > keepalive {
                    let Some(frame) = frames(vec![PING.into(), Bytes::new()]) else { continue };
                    if let Err(e) = dealer.send(frame).await {
                        return format!("send: {e}");
                    }
                    awaiting = Some(Instant::now());
                    last_asked = Instant::now();
                }
            }
        }
    }
}

async fn forward(host: HostId, payload: &[u8], max: usize, shared: &Shared) {
    shared.counters.received(payload.len());
    let inbound = match wire::decode(payload, max) {
        Ok(message) => Inbound::Message {
            from: host,
            message,
        },
        Err(e) => Inbound::Invalid {
            from: host,
            what: e.to_string(),
        },
    };
    let _ = shared.inbound.send(inbound).await;
}
