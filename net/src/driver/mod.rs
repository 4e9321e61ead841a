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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hypha_delta_store::{Arrival, StampedDelta, Store, StoredDelta};
use hypha_primitives::{DeltaId, HostId, KeyPair, Seq};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;
use zeromq::{PubSocket, RouterSocket, Socket, ZmqMessage};

mod config;
mod link;
mod publisher;
mod router;
mod storer;

use config::Counters;
pub use config::{Encryption, NetConfig, NetError, NetStats};
use link::run_link;
use publisher::run_publisher;
use router::run_router;
use storer::{run_storer, store_fetched, STORE_QUEUE};

use crate::dialer::{Authenticated, Dialer, MAX_PEER_LIST};
use crate::journal::Journal;
use crate::protocol::{Action, Protocol};
use crate::requests::Done;
use crate::seal::GroupKey;
use crate::serve::{self, ReadDone};
use crate::{topics, wire, Event, Input, Message, Replication};

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
            router: router_tx,
            publish: publish_tx,
            to_store: store_tx,
            last_arrival,
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
    /// A piece of work the protocol handed out is done.
    Read(ReadDone),
}

/// Who waits for a request to peers to finish (the protocol tracks the request).
enum Caller {
    /// `Network::fetch`.
    Fetch(oneshot::Sender<Vec<StampedDelta>>),
    /// `Network::who_has`.
    WhoHas(oneshot::Sender<Vec<(HostId, u64)>>),
}

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
    /// Every protocol decision (`protocol.rs`).
    protocol: Protocol,
    store: Store,
    shared: Arc<Shared>,
    start: Instant,
    links: HashMap<u64, LinkHandle>,
    /// Which addresses to dial and when, bans included (`dialer.rs`).
    dialer: Dialer,
    next_link: u64,
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
    /// Who waits for each request made of peers.
    callers: HashMap<u64, Caller>,
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
                let _ = reply.send(self.protocol.peer().holders(host, seq));
            }
            Command::Replication(reply) => {
                let _ = reply.send(self.protocol.peer().replication());
            }
            Command::Fetch {
                ids,
                timeout,
                reply,
            } => {
                let deadline = self.now() + timeout.as_millis() as u64;
                match self.protocol.fetch(self.linked(), ids, deadline) {
                    (Some(request), actions) => {
                        self.callers.insert(request, Caller::Fetch(reply));
                        self.carry_out_all(actions).await;
                    }
                    (None, _) => {
                        let _ = reply.send(Vec::new());
                    }
                }
            }
            Command::WhoHas {
                entity,
                timeout,
                reply,
            } => {
                let deadline = self.now() + timeout.as_millis() as u64;
                match self.protocol.who_has(self.linked(), &entity, deadline) {
                    (Some(request), actions) => {
                        self.callers.insert(request, Caller::WhoHas(reply));
                        self.carry_out_all(actions).await;
                    }
                    (None, _) => {
                        let _ = reply.send(Vec::new());
                    }
                }
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
                let duplicate = self
                    .links
                    .iter()
                    .any(|(id, l)| *id != link && l.host == Some(host) && l.outbound.is_some());
                if !self.dialer.keep_link(&host, duplicate) {
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
                self.dialer.gone(&address);
            }
            Inbound::Authenticated { host, router } => {
                let linked = self.links.values().any(|l| l.host == Some(host));
                match self.dialer.authenticated(host, &router, linked) {
                    Authenticated::DialBack(address) => self.dial(address),
                    Authenticated::Nothing => {}
                    Authenticated::Forget => {
                        let _ = self.router.send(RouterCommand::Forget(host)).await;
                    }
                }
            }
            Inbound::Message { from, message } => {
                if self.dialer.is_banned(&from) {
                    return;
                }
                self.handle(Input::Received { from, message }).await;
            }
            Inbound::Invalid { from, what } => {
                let actions = self.invalid(from, &what).await;
                self.carry_out_all(actions).await;
            }
            Inbound::Read(done) => {
                let now = self.now();
                let actions = self.protocol.done(now, done);
                self.carry_out_all(actions).await;
            }
        }
    }

    /// Counts a peer's invalid input; past the threshold the peer is disconnected and
    /// banned for a while (the returned actions take it down).
    async fn invalid(&mut self, from: HostId, what: &str) -> Vec<Action> {
        let (count, ban) = self.dialer.strike(from, self.shared.config.max_invalid);
        tracing::warn!(peer = %from, count, what, "invalid input from peer");
        if !ban {
            return Vec::new();
        }
        let dialled: Vec<String> = self
            .links
            .values()
            .filter(|l| l.host == Some(from))
            .map(|l| l.address.clone())
            .collect();
        let now = self.now();
        self.dialer
            .ban(from, now, self.shared.config.ban_ms, dialled);
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
        self.protocol.handle(now, Input::PeerDown(from))
    }

    /// Ends the bans that are over (redialling the links they closed) and redials any
    /// configured peer left without a link.
    fn redial(&mut self, now: u64) {
        let addresses = self.dialer.tick(now);
        if let Ok(mut shared) = self.shared.banned.lock() {
            shared.retain(|host| self.dialer.is_banned(host));
        }
        for address in addresses {
            tracing::info!(%address, "redialling a peer");
            self.dial(address);
        }
    }

    fn close_link(&mut self, link: u64) {
        if let Some(l) = self.links.remove(&link) {
            l.task.abort();
            self.dialer.closed(&l.address);
        }
    }

    fn dial(&mut self, address: String) {
        let link = self.next_link;
        self.next_link += 1;
        let learnt = self.dialer.is_learnt(&address);
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
        let actions = self.protocol.handle(now, input);
        tracing::trace!(?actions, "actions");
        self.carry_out_all(actions).await;
    }

    /// Carries out actions, and the actions they lead to (a ban takes the peer down).
    async fn carry_out_all(&mut self, actions: Vec<Action>) {
        let mut work: VecDeque<Action> = actions.into();
        while let Some(action) = work.pop_front() {
            work.extend(self.carry_out(action).await);
        }
    }

    async fn carry_out(&mut self, action: Action) -> Vec<Action> {
        match action {
            Action::Publish(message) => self.publish(message),
            Action::Request { to, message } => self.send_request(to, message),
            Action::Reply { to, message } => {
                let bytes = wire::encode(&message);
                let _ = self.router.send(RouterCommand::Send { to, bytes }).await;
            }
            Action::Store { from, deltas } => {
                // A full queue drops the batch; the protocol asks again after its request
                // timeout.
                if self.to_store.try_send((from, deltas)).is_err() {
                    tracing::debug!(peer = %from, "store queue full; dropping a batch");
                }
            }
            Action::Read(read) => {
                let store = self.store.clone();
                let inbound = self.shared.inbound.clone();
                tokio::task::spawn_blocking(move || {
                    let done = serve::read(&store, read);
                    let _ = inbound.blocking_send(Inbound::Read(done));
                });
            }
            Action::Finished { request, done } => self.answer_caller(request, done),
            Action::Learnt(peers) => self.learn_peers(peers),
            Action::Blame { peer, what } => return self.invalid(peer, &what).await,
            Action::Event(event) => {
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
        }
        Vec::new()
    }

    /// Publishes a message: deltas one per message under each of their topics
    /// (`topics.rs`), anything else under the coverage topic. A full queue drops the
    /// message, as PUB itself would: catch-up repairs it.
    fn publish(&self, message: Message) {
        match message {
            Message::Deltas(deltas) => {
                for delta in deltas {
                    let topics = topics::delta_topics(&delta.delta);
                    let bytes = wire::encode(&Message::Deltas(vec![delta]));
                    for topic in topics {
                        let _ = self.publish.try_send((topic.into_bytes(), bytes.clone()));
                    }
                }
            }
            message => {
                let topic = topics::COVERAGE.as_bytes().to_vec();
                let _ = self.publish.try_send((topic, wire::encode(&message)));
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
        let links = &self.links;
        let linked = |host: &HostId| links.values().any(|l| l.host == Some(*host));
        for address in self.dialer.learn(peers, linked) {
            tracing::info!(%address, "dialling a peer learnt from another");
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

    /// Answers the caller of a finished request to peers with what came (fetched deltas
    /// are stored first, and only those that verify are handed back).
    fn answer_caller(&mut self, request: u64, done: Done) {
        match (self.callers.remove(&request), done) {
            (Some(Caller::Fetch(reply)), Done::Fetched(found)) => {
                let store = self.store.clone();
                tokio::spawn(async move {
                    let stored =
                        tokio::task::spawn_blocking(move || store_fetched(&store, found)).await;
                    let _ = reply.send(stored.unwrap_or_default());
                });
            }
            (Some(Caller::WhoHas(reply)), Done::Holders(answers)) => {
                let _ = reply.send(answers);
            }
            _ => {}
        }
    }
}

/// The first eight hex digits of a host id, for logs.
fn short(host: HostId) -> String {
    host.to_string()[..8].to_owned()
}

fn frames(parts: Vec<Bytes>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(parts).ok()
}
