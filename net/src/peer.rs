//! The peer protocol as a pure state machine: messages and events in, actions out. No
//! sockets, no clock, no randomness: the driver passes `now` and carries the outputs out.

use std::collections::{BTreeMap, BTreeSet};

use hypha_primitives::{HostId, Seq, StampedDelta};

use crate::{Coverage, CoverageVector, Message};

/// The most pages a node streams in answer to one catch-up request, whatever it asks.
pub const MAX_PAGES_IN_FLIGHT: u16 = 8;

/// Timing and size bounds of the protocol; plain data with defaults.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Announce coverage at least this often (ms), and soon after it changes.
    pub announce_every_ms: u64,
    /// Ask again if a catch-up request has had no answer for this long (ms).
    pub request_timeout_ms: u64,
    /// Most deltas in one catch-up page.
    pub page_size: usize,
    /// How many pages a catch-up answer may stream back to back: the requester asks for
    /// this many, the server sends at most [`MAX_PAGES_IN_FLIGHT`]. More pages per round
    /// trip is what keeps catch-up fast over a link with latency.
    pub pages_in_flight: u16,
    /// A peer heard nothing from for this long (ms) has left; coverage announcements are
    /// the heartbeat, so this should be a few times `announce_every_ms`.
    pub peer_timeout_ms: u64,
    /// A partial replica (it holds a filtered slice): it catches up by reconciling its
    /// slice with each peer ([`Output::Reconcile`]) instead of by coverage vectors, which
    /// describe whole origin sequences it does not hold.
    pub partial: bool,
    /// A partial replica reconciles with each peer at most this often (ms): when it links,
    /// and when a peer announces more than it holds.
    pub reconcile_every_ms: u64,
    /// A partial replica abandons a reconciliation whose peer has not answered a turn for
    /// this long (ms): the message or its answer was lost, and the next one starts afresh.
    /// A peer's first answer reads its whole journal, so this is generous.
    pub reconcile_turn_timeout_ms: u64,
    /// Flow control: catch-up pauses while this many received stamps wait to be reported
    /// stored, and resumes once half of them are. A store slower than the network would
    /// otherwise queue without bound, and the requests that time out meanwhile would ask
    /// again for what waits in its queue.
    pub max_unstored: u64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            announce_every_ms: 1_000,
            request_timeout_ms: 2_000,
            page_size: 1_024,
            pages_in_flight: 4,
            peer_timeout_ms: 5_000,
            partial: false,
            reconcile_every_ms: 30_000,
            reconcile_turn_timeout_ms: 20_000,
            max_unstored: 8_192,
        }
    }
}

/// Something that happened, for the state machine to react to.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A delta was newly stored here (a local write or one received): the driver reports
    /// only deltas that were new, which is what keeps relaying from looping.
    Stored(StampedDelta),
    /// A message arrived from a peer.
    Received {
        /// The sender.
        from: HostId,
        /// The message.
        message: Message,
    },
    /// Time passed; `now` says how much.
    Tick,
    /// A peer became reachable.
    PeerUp(HostId),
    /// A peer became unreachable.
    PeerDown(HostId),
    /// Report, with [`Event::Confidence`], once at least `peers` peers hold the stamp
    /// (`host`, `seq`), or at `deadline` with however many do by then.
    AwaitConfidence {
        /// Chosen by the caller, echoed in the event.
        token: u64,
        /// The stamp's host.
        host: HostId,
        /// The stamp's seq.
        seq: Seq,
        /// How many peers must hold it.
        peers: usize,
        /// When to give up (ms, on the driver's clock).
        deadline: u64,
    },
}

/// Notable changes, for the node to expose (membership events, confidence waits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer was heard from for the first time, or again after it had left.
    PeerJoined(HostId),
    /// A peer went quiet past the timeout, or its connection went down.
    PeerLeft(HostId),
    /// The answer to an [`Input::AwaitConfidence`].
    Confidence {
        /// The caller's token.
        token: u64,
        /// How many peers hold the stamp.
        holders: usize,
        /// True when that is at least the number asked for; false at the deadline.
        reached: bool,
    },
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Publish to every subscriber.
    Publish(Message),
    /// Send to one peer.
    Send {
        /// The peer.
        to: HostId,
        /// The message.
        message: Message,
    },
    /// Answer a request that needs the journal ([`Message::Fetch`], [`Message::WhoHas`],
    /// [`Message::Reconcile`]) with its reply.
    Answer {
        /// The requesting peer.
        to: HostId,
        /// The request.
        request: Message,
    },
    /// A reply to a request the driver made for the node ([`Message::Fetched`],
    /// [`Message::Holds`], [`Message::ReconcileReply`]).
    Replied {
        /// The peer that answered.
        from: HostId,
        /// The reply.
        reply: Message,
    },
    /// Peers a peer is linked to: dial those not linked yet, within the learnt-peer cap.
    Learnt(Vec<(HostId, String)>),
    /// Reconcile this partial replica's slice with a peer, and fetch what it lacks.
    Reconcile {
        /// The peer.
        with: HostId,
    },
    /// Verify and store these deltas, then report each new one as [`Input::Stored`].
    Store {
        /// Who sent them (for counting invalid deltas against a peer).
        from: HostId,
        /// The deltas.
        deltas: Vec<StampedDelta>,
    },
    /// Tell the node's users (events stream, waiting writers).
    Event(Event),
    /// Read the deltas stamped in these ranges (per host, from..=to, in seq order), at most
    /// `limit` × `pages` of them, and send them to `to` as up to `pages`
    /// [`Message::CatchUpPage`]s (the last with `more` set when the limit cut the answer
    /// short).
    Serve {
        /// The requesting peer.
        to: HostId,
        /// The request being answered, to echo in the page.
        request: u64,
        /// Per host, the inclusive seq range to read.
        ranges: Vec<(HostId, Seq, Seq)>,
        /// The page size.
        limit: usize,
        /// How many pages the answer may take.
        pages: usize,
    },
}

/// How far replication has come ([`Peer::replication`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replication {
    /// Deltas some peer has announced holding that this node lacks (per origin host, the
    /// best peer's prefix beyond this node's): what catching up has left to fetch.
    pub lag: u64,
    /// `held_by[k]`: how many of the deltas this node holds (by origin stamp, in each
    /// host's contiguous prefix) exactly `k` linked peers are known to hold.
    pub held_by: Vec<u64>,
}

/// What this node knows about one peer.
#[derive(Clone, Debug, Default)]
struct PeerView {
    /// The highest coverage the peer has announced (announcements may arrive reordered).
    coverage: CoverageVector,
    /// The outstanding catch-up request to it: its id and when it was sent.
    outstanding: Option<(u64, u64)>,
    /// When anything was last heard from it.
    last_heard: u64,
    /// When a partial replica last started reconciling with it.
    last_reconcile: Option<u64>,
}

/// One node's side of the protocol.
#[derive(Clone, Debug)]
pub struct Peer {
    me: HostId,
    config: PeerConfig,
    coverage: Coverage,
    /// What is held or on its way: `coverage` plus the stamps of deltas received and handed
    /// to the driver to store. Requests ask only for what is not expected, so a page being
    /// stored is not asked for again by every announcement that arrives meanwhile.
    expected: Coverage,
    /// When the wait for deltas in `expected` but not in `coverage` began, or last made
    /// progress; past the request timeout without progress, whatever has not been stored
    /// (invalid, or lost by the driver) is forgotten and asked for again.
    expecting_since: Option<u64>,
    /// How many stamps are in `expected` but not yet in `coverage`.
    unstored: u64,
    /// Peers whose catch-up waits for the store to drain (see `max_unstored`).
    paused: BTreeSet<HostId>,
    peers: BTreeMap<HostId, PeerView>,
    last_announce: Option<u64>,
    changed_since_announce: bool,
    next_request: u64,
    waiters: Vec<Waiter>,
    /// Bumped whenever a peer's known coverage rises or a peer comes or goes: when it
    /// moves, [`Peer::watermarks`] has changed.
    peers_epoch: u64,
}

/// A pending [`Input::AwaitConfidence`].
#[derive(Clone, Debug)]
struct Waiter {
    token: u64,
    host: HostId,
    seq: Seq,
    peers: usize,
    deadline: u64,
}

impl Peer {
    /// A node with identity `me` that holds what `coverage` says (read from its journal).
    pub fn new(me: HostId, coverage: Coverage, config: PeerConfig) -> Self {
        Self {
            me,
            config,
            expected: coverage.clone(),
            expecting_since: None,
            unstored: 0,
            paused: BTreeSet::new(),
            coverage,
            peers: BTreeMap::new(),
            last_announce: None,
            changed_since_announce: true,
            next_request: 1,
            waiters: Vec::new(),
            peers_epoch: 0,
        }
    }

    /// The node's identity.
    pub fn id(&self) -> HostId {
        self.me
    }

    /// The protocol's settings.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// What this node holds.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// How many known peers are known to hold the stamp (`host`, `seq`): the propagation
    /// confidence of the delta carrying it.
    pub fn holders(&self, host: HostId, seq: Seq) -> usize {
        self.peers
            .values()
            .filter(|p| p.coverage.get(&host).is_some_and(|top| *top >= seq))
            .count()
    }

    /// A snapshot of what the known peers hold, for readers outside the protocol.
    pub fn watermarks(&self) -> crate::Watermarks {
        crate::Watermarks::of_peers(self.peers.values().map(|p| &p.coverage))
    }

    /// A number that changes whenever [`Peer::watermarks`] may have: a peer's coverage
    /// rose, or a peer came or went.
    pub fn peers_epoch(&self) -> u64 {
        self.peers_epoch
    }

    /// How far replication has come, as peers' announcements tell: what they hold that
    /// this node lacks, and how many peers hold each delta this node holds.
    pub fn replication(&self) -> Replication {
        let mine = |host: &HostId| self.coverage.vector().get(host).map_or(0, |s| s.get());
        let mut best: BTreeMap<HostId, u64> = BTreeMap::new();
        for (host, top) in self.peers.values().flat_map(|p| p.coverage.iter()) {
            let entry = best.entry(*host).or_default();
            *entry = (*entry).max(top.get());
        }
        let lag = best
            .iter()
            .map(|(host, top)| top.saturating_sub(mine(host)))
            .sum();
        let mut held_by = vec![0u64; self.peers.len() + 1];
        for host in self.coverage.hosts() {
            let held = mine(&host);
            // Peers' tops for this host (capped at what this node holds), highest first:
            // the k-th (from 1) is how many of its deltas at least k peers hold.
            let mut tops: Vec<u64> = self
                .peers
                .values()
                .map(|p| p.coverage.get(&host).map_or(0, |s| s.get()).min(held))
                .collect();
            tops.sort_unstable_by(|a, b| b.cmp(a));
            let mut above = held;
            for (k, at_least) in tops.iter().enumerate() {
                held_by[k] += above - at_least;
                above = *at_least;
            }
            held_by[tops.len()] += above;
        }
        Replication { lag, held_by }
    }

    /// Reacts to one input at time `now` (milliseconds, from the driver's clock).
    pub fn handle(&mut self, now: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Stored(stamped) => {
                let mut progress = false;
                for stamp in &stamped.stamps {
                    let covered = self.coverage.insert(stamp.host(), stamp.seq());
                    let was_expected = !self.expected.insert(stamp.host(), stamp.seq());
                    self.changed_since_announce |= covered;
                    if covered && was_expected {
                        self.unstored = self.unstored.saturating_sub(1);
                        progress = true;
                    }
                }
                if progress {
                    self.expecting_since = (self.unstored > 0).then_some(now);
                }
                if self.some_peer_may_lack(&stamped) {
                    out.push(Output::Publish(Message::Deltas(vec![stamped])));
                }
                if self.unstored <= self.config.max_unstored / 2 {
                    for peer in std::mem::take(&mut self.paused) {
                        if self.peers.contains_key(&peer) {
                            self.request(now, peer, &mut out);
                        }
                    }
                }
            }
            Input::Received { from, message } => self.receive(now, from, message, &mut out),
            Input::Tick => self.tick(now, &mut out),
            Input::PeerUp(peer) => {
                if peer != self.me {
                    self.heard_from(now, peer, &mut out);
                    self.request(now, peer, &mut out);
                }
            }
            Input::PeerDown(peer) => {
                if self.peers.remove(&peer).is_some() {
                    self.peers_epoch += 1;
                    out.push(Output::Event(Event::PeerLeft(peer)));
                }
            }
            Input::AwaitConfidence {
                token,
                host,
                seq,
                peers,
                deadline,
            } => {
                self.waiters.push(Waiter {
                    token,
                    host,
                    seq,
                    peers,
                    deadline,
                });
                self.settle_waiters(now, &mut out);
            }
        }
        out
    }

    fn receive(&mut self, now: u64, from: HostId, message: Message, out: &mut Vec<Output>) {
        if from == self.me {
            return;
        }
        self.heard_from(now, from, out);
        match message {
            Message::Deltas(deltas) => {
                self.expect(now, &deltas);
                out.push(Output::Store { from, deltas });
            }
            Message::Coverage(theirs) => {
                self.learn(from, &theirs);
                self.settle_waiters(now, out);
                if self.expected.lacks_some_of(&theirs) {
                    self.request(now, from, out);
                }
            }
            Message::CatchUpRequest {
                request,
                have,
                pages,
            } => {
                self.learn(from, &have);
                self.settle_waiters(now, out);
                let ranges = self.coverage.ranges_beyond(&have);
                if ranges.is_empty() {
                    // Every request is answered, so the requester knows it is caught up
                    // (and its driver can tell a dead link from a quiet one).
                    out.push(Output::Send {
                        to: from,
                        message: Message::CatchUpPage {
                            request,
                            deltas: Vec::new(),
                            more: false,
                            continues: false,
                        },
                    });
                } else {
                    let limit = self.config.page_size;
                    out.push(Output::Serve {
                        to: from,
                        request,
                        ranges,
                        limit,
                        pages: usize::from(pages.clamp(1, MAX_PAGES_IN_FLIGHT)),
                    });
                }
            }
            request @ (Message::Fetch { .. }
            | Message::WhoHas { .. }
            | Message::Reconcile { .. }) => out.push(Output::Answer { to: from, request }),
            Message::Peers(peers) => {
                let peers: Vec<(HostId, String)> = peers
                    .into_iter()
                    .filter(|(host, _)| *host != self.me)
                    .collect();
                if !peers.is_empty() {
                    out.push(Output::Learnt(peers));
                }
            }
            reply @ (Message::Fetched { .. }
            | Message::Holds { .. }
            | Message::ReconcileReply { .. }) => out.push(Output::Replied { from, reply }),
            Message::CatchUpPage {
                request,
                deltas,
                more,
                continues,
            } => {
                if !deltas.is_empty() {
                    self.expect(now, &deltas);
                    out.push(Output::Store { from, deltas });
                }
                // Only the answer to the outstanding request continues the catch-up: a
                // duplicated or late page must not multiply requests.
                let view = self.peers.get_mut(&from);
                let answers = view
                    .as_ref()
                    .and_then(|v| v.outstanding)
                    .is_some_and(|(id, _)| id == request);
                if answers {
                    if continues {
                        // More pages of this answer are on their way: the request stays
                        // outstanding, and its timeout counts from this page.
                        if let Some(view) = view {
                            view.outstanding = Some((request, now));
                        }
                        return;
                    }
                    if let Some(view) = view {
                        view.outstanding = None;
                    }
                    if more {
                        self.request(now, from, out);
                    }
                }
            }
        }
    }

    /// False only when every known peer has announced one of the delta's stamps: then
    /// publishing it would only make each of them discard a duplicate. This is what keeps a
    /// node that catches up from re-publishing the whole history to the peers it came from.
    fn some_peer_may_lack(&self, stamped: &StampedDelta) -> bool {
        stamped.stamps.is_empty()
            || self.peers.is_empty()
            || self.peers.values().any(|peer| {
                !stamped.stamps.iter().any(|s| {
                    peer.coverage
                        .get(&s.host())
                        .is_some_and(|top| *top >= s.seq())
                })
            })
    }

    /// Notes the stamps of deltas handed to the driver to store.
    fn expect(&mut self, now: u64, deltas: &[StampedDelta]) {
        for stamp in deltas.iter().flat_map(|d| &d.stamps) {
            if self.expected.insert(stamp.host(), stamp.seq()) {
                self.unstored += 1;
                self.expecting_since.get_or_insert(now);
            }
        }
    }

    /// Raises what we know of a peer's coverage (never lowers it: messages reorder).
    fn learn(&mut self, from: HostId, theirs: &CoverageVector) {
        let view = self.peers.entry(from).or_default();
        for (host, seq) in theirs {
            let known = view.coverage.get(host);
            if known.is_none_or(|known| seq > known) {
                view.coverage.insert(*host, *seq);
                self.peers_epoch += 1;
            }
        }
    }

    /// Notes that `peer` is alive; a peer new to us (or back after leaving) has joined.
    fn heard_from(&mut self, now: u64, peer: HostId, out: &mut Vec<Output>) {
        match self.peers.get_mut(&peer) {
            Some(view) => view.last_heard = view.last_heard.max(now),
            None => {
                self.peers_epoch += 1;
                self.peers.insert(
                    peer,
                    PeerView {
                        last_heard: now,
                        ..PeerView::default()
                    },
                );
                out.push(Output::Event(Event::PeerJoined(peer)));
            }
        }
    }

    /// Answers the confidence waits that are met, or past their deadline.
    fn settle_waiters(&mut self, now: u64, out: &mut Vec<Output>) {
        let waiters = std::mem::take(&mut self.waiters);
        for w in waiters {
            let holders = self.holders(w.host, w.seq);
            if holders >= w.peers || now >= w.deadline {
                out.push(Output::Event(Event::Confidence {
                    token: w.token,
                    holders,
                    reached: holders >= w.peers,
                }));
            } else {
                self.waiters.push(w);
            }
        }
    }

    /// Asks `peer` for what we miss, unless a request to it is already outstanding.
    fn request(&mut self, now: u64, peer: HostId, out: &mut Vec<Output>) {
        let timeout = self.config.request_timeout_ms;
        let view = self.peers.entry(peer).or_default();
        if self.config.partial {
            let every = self.config.reconcile_every_ms;
            if view.last_reconcile.is_none_or(|at| now >= at + every) {
                view.last_reconcile = Some(now);
                out.push(Output::Reconcile { with: peer });
            }
            return;
        }
        if view.outstanding.is_some_and(|(_, at)| now < at + timeout) {
            return;
        }
        if self.unstored >= self.config.max_unstored {
            self.paused.insert(peer);
            return;
        }
        let request = self.next_request;
        self.next_request += 1;
        view.outstanding = Some((request, now));
        let have = self.expected.vector().clone();
        out.push(Output::Send {
            to: peer,
            message: Message::CatchUpRequest {
                request,
                have,
                pages: self.config.pages_in_flight,
            },
        });
    }

    fn tick(&mut self, now: u64, out: &mut Vec<Output>) {
        if self
            .expecting_since
            .is_some_and(|since| now >= since + self.config.request_timeout_ms)
        {
            self.expected = self.coverage.clone();
            self.expecting_since = None;
            self.unstored = 0;
            self.paused.clear();
        }
        let due = self
            .last_announce
            .is_none_or(|at| now >= at + self.config.announce_every_ms);
        if due || (self.changed_since_announce && self.last_announce.is_none_or(|at| now > at)) {
            self.last_announce = Some(now);
            self.changed_since_announce = false;
            out.push(Output::Publish(Message::Coverage(
                self.coverage.vector().clone(),
            )));
        }
        // Membership: a peer quiet for longer than the timeout has left.
        let timeout = self.config.peer_timeout_ms;
        let quiet: Vec<HostId> = self
            .peers
            .iter()
            .filter(|(_, v)| now > v.last_heard + timeout)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in quiet {
            self.peers_epoch += 1;
            self.peers.remove(&peer);
            out.push(Output::Event(Event::PeerLeft(peer)));
        }
        self.settle_waiters(now, out);
        // Anti-entropy: a request that got no answer is asked again, of anyone ahead of us.
        let behind: Vec<HostId> = self
            .peers
            .iter()
            .filter(|(_, view)| self.expected.lacks_some_of(&view.coverage))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in behind {
            self.request(now, peer, out);
        }
    }
}

#[cfg(test)]
mod tests;
