//! The ZeroMQ driver: runs a node's [`Protocol`] over real sockets and a real journal.
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
//! The driver does the IO the protocol asks for and nothing else: every decision (what to
//! relay, what to request, who has left, what a reconciliation needs) is [`Protocol`]'s,
//! and which addresses to dial is the dialer's. Files: the handle ([`network`]), the
//! actor's loop (here), the set of links ([`links`]), one outbound link ([`link`]), the
//! ROUTER ([`router`]) and PUB ([`publisher`]) tasks, the storing thread ([`storer`]), the
//! frame tags ([`frames`](mod@frames)) and the configuration ([`config`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypha_delta_store::{Follower, StampedDelta, Store};
use hypha_primitives::{HostId, KeyPair};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

mod config;
mod frames;
mod link;
mod links;
mod network;
mod publisher;
mod router;
mod storer;

use config::Counters;
pub use config::{Encryption, NetConfig, NetError, NetStats};
use frames::*;
use network::Command;
pub use network::{Endpoints, Network};
use storer::store_fetched;

use crate::dialer::{Authenticated, Dialer};
use crate::protocol::{Action, Protocol};
use crate::requests::Done;
use crate::seal::GroupKey;
use crate::serve::{self, ReadDone};
use crate::{topics, wire, Event, Input, Message, Watermarks};

/// The most newly stored deltas the driver takes from the journal's follower at once.
const FOLLOW_BATCH: usize = 1_024;

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
    /// Where readers find what peers hold (`Network::watermarks`).
    watermarks: watch::Sender<Arc<Watermarks>>,
    /// The protocol's peers epoch when `watermarks` was last published.
    published_epoch: Option<u64>,
    router: mpsc::Sender<RouterCommand>,
    publish: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    to_store: mpsc::Sender<(HostId, Vec<StampedDelta>)>,
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
        mut follower: Follower,
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
                more = follower.changed() => {
                    if !more {
                        break;
                    }
                    self.take_stored(&mut follower).await;
                }
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

    /// Hands the protocol every delta stored since the last time, as the journal's
    /// follower gives them (from the live feed, or read again after the driver fell
    /// behind), each stamp with its proof (the follower is a proving one).
    async fn take_stored(&mut self, follower: &mut Follower) {
        let batch = match follower.ready_async(FOLLOW_BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "reading new deltas from the journal");
                return;
            }
        };
        for stored in batch {
            let stamped = StampedDelta {
                delta: stored.delta.clone(),
                stamps: stored.stamps.clone(),
            };
            self.handle(Input::Stored(stamped)).await;
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

    async fn handle(&mut self, input: Input) {
        let now = self.now();
        tracing::trace!(?input, "input");
        let actions = self.protocol.handle(now, input);
        tracing::trace!(?actions, "actions");
        self.publish_watermarks();
        self.carry_out_all(actions).await;
    }

    /// Publishes a new snapshot of what peers hold when it has changed since the last.
    fn publish_watermarks(&mut self) {
        let epoch = self.protocol.peer().peers_epoch();
        if self.published_epoch != Some(epoch) {
            self.published_epoch = Some(epoch);
            let marks = Arc::new(self.protocol.peer().watermarks());
            self.watermarks.send_replace(marks);
        }
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
                    serve::read(&store, read, |done| {
                        let _ = inbound.blocking_send(Inbound::Read(done));
                    });
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
