//! The peer protocol as a pure state machine: messages and events in, actions out. No
//! sockets, no clock, no randomness: the driver passes `now` and carries the outputs out.

use std::collections::BTreeMap;

use hypha_primitives::{HostId, Seq, StampedDelta};

use crate::{Coverage, CoverageVector, Message};

/// Timing and size bounds of the protocol; plain data with defaults.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Announce coverage at least this often (ms), and soon after it changes.
    pub announce_every_ms: u64,
    /// Ask again if a catch-up request has had no answer for this long (ms).
    pub request_timeout_ms: u64,
    /// Most deltas in one catch-up page.
    pub page_size: usize,
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
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            announce_every_ms: 1_000,
            request_timeout_ms: 2_000,
            page_size: 1_024,
            peer_timeout_ms: 5_000,
            partial: false,
            reconcile_every_ms: 30_000,
            reconcile_turn_timeout_ms: 20_000,
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
    /// `limit` of them, and send them to `to` as a [`Message::CatchUpPage`] (with `more`
    /// set when the limit cut the answer short).
    Serve {
        /// The requesting peer.
        to: HostId,
        /// The request being answered, to echo in the page.
        request: u64,
        /// Per host, the inclusive seq range to read.
        ranges: Vec<(HostId, Seq, Seq)>,
        /// The page size.
        limit: usize,
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
    /// When `expected` last grew beyond `coverage`; past the request timeout, whatever has
    /// not been stored (invalid, or lost by the driver) is forgotten and asked for again.
    expecting_since: Option<u64>,
    peers: BTreeMap<HostId, PeerView>,
    last_announce: Option<u64>,
    changed_since_announce: bool,
    next_request: u64,
    waiters: Vec<Waiter>,
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
            coverage,
            peers: BTreeMap::new(),
            last_announce: None,
            changed_since_announce: true,
            next_request: 1,
            waiters: Vec::new(),
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
                for stamp in &stamped.stamps {
                    self.changed_since_announce |= self.coverage.insert(stamp.host(), stamp.seq());
                    self.expected.insert(stamp.host(), stamp.seq());
                }
                if self.some_peer_may_lack(&stamped) {
                    out.push(Output::Publish(Message::Deltas(vec![stamped])));
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
            Message::CatchUpRequest { request, have } => {
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
                        },
                    });
                } else {
                    let limit = self.config.page_size;
                    out.push(Output::Serve {
                        to: from,
                        request,
                        ranges,
                        limit,
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
                self.expecting_since = Some(now);
            }
        }
    }

    /// Raises what we know of a peer's coverage (never lowers it: messages reorder).
    fn learn(&mut self, from: HostId, theirs: &CoverageVector) {
        let view = self.peers.entry(from).or_default();
        for (host, seq) in theirs {
            let known = view.coverage.entry(*host).or_insert(*seq);
            *known = (*known).max(*seq);
        }
    }

    /// Notes that `peer` is alive; a peer new to us (or back after leaving) has joined.
    fn heard_from(&mut self, now: u64, peer: HostId, out: &mut Vec<Output>) {
        match self.peers.get_mut(&peer) {
            Some(view) => view.last_heard = view.last_heard.max(now),
            None => {
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
        let request = self.next_request;
        self.next_request += 1;
        view.outstanding = Some((request, now));
        let have = self.expected.vector().clone();
        out.push(Output::Send {
            to: peer,
            message: Message::CatchUpRequest { request, have },
        });
    }

    fn tick(&mut self, now: u64, out: &mut Vec<Output>) {
        if self
            .expecting_since
            .is_some_and(|since| now >= since + self.config.request_timeout_ms)
        {
            self.expected = self.coverage.clone();
            self.expecting_since = None;
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
mod tests {
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer, Stamp};

    use super::*;

    fn stamped(host: &KeyPair, seq: u64) -> StampedDelta {
        let delta = DeltaBuilder::new(Hlc::new(seq, 0))
            .pointer(Pointer::value("n", seq as i64))
            .sign(host)
            .unwrap();
        let stamp = Stamp::sign(delta.id(), Seq::new(seq), host);
        StampedDelta {
            delta,
            stamps: vec![stamp],
        }
    }

    /// This node's key, two other hosts, and this node's protocol state.
    fn three_hosts(config: PeerConfig) -> (KeyPair, HostId, HostId, Peer) {
        let me = KeyPair::from_seed([1; 32]);
        let a = KeyPair::from_seed([2; 32]).host_id();
        let b = KeyPair::from_seed([3; 32]).host_id();
        let peer = Peer::new(me.host_id(), Coverage::new(), config);
        (me, a, b, peer)
    }

    /// A coverage vector holding `me`'s stamps 1..=n.
    fn vector_of(me: &KeyPair, n: u64) -> CoverageVector {
        [(me.host_id(), Seq::new(n))].into_iter().collect()
    }

    fn requests(out: &[Output]) -> usize {
        out.iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Send {
                        message: Message::CatchUpRequest { .. },
                        ..
                    }
                )
            })
            .count()
    }

    #[test]
    fn a_stored_delta_is_published_and_counted_in_coverage() {
        let me = KeyPair::from_seed([1; 32]);
        let mut peer = Peer::new(me.host_id(), Coverage::new(), PeerConfig::default());
        let d = stamped(&me, 1);
        let out = peer.handle(0, Input::Stored(d.clone()));
        assert_eq!(out, vec![Output::Publish(Message::Deltas(vec![d]))]);
        assert_eq!(
            peer.coverage().vector().get(&me.host_id()),
            Some(&Seq::FIRST)
        );
    }

    #[test]
    fn a_partial_replica_reconciles_instead_of_asking_by_coverage() {
        let config = PeerConfig {
            partial: true,
            reconcile_every_ms: 10_000,
            ..PeerConfig::default()
        };
        let (me, a, _, mut peer) = three_hosts(config);
        let out = peer.handle(0, Input::PeerUp(a));
        assert!(out.contains(&Output::Reconcile { with: a }), "{out:?}");
        assert_eq!(requests(&out), 0, "no coverage catch-up");
        // A peer ahead of us does not start another reconciliation before the period ends.
        let ahead = |peer: &mut Peer, now| {
            peer.handle(
                now,
                Input::Received {
                    from: a,
                    message: Message::Coverage(vector_of(&me, 50)),
                },
            )
        };
        let reconciles = |out: &[Output]| {
            out.iter()
                .filter(|o| matches!(o, Output::Reconcile { .. }))
                .count()
        };
        assert_eq!(reconciles(&ahead(&mut peer, 5_000)), 0);
        assert_eq!(reconciles(&peer.handle(6_000, Input::Tick)), 0);
        assert_eq!(reconciles(&ahead(&mut peer, 10_000)), 1);
    }

    #[test]
    fn requests_that_need_the_journal_are_answered_by_the_driver_and_replies_go_to_it() {
        let (_, a, _, mut peer) = three_hosts(PeerConfig::default());
        let fetch = Message::Fetch {
            request: 1,
            ids: vec![],
        };
        let out = peer.handle(
            0,
            Input::Received {
                from: a,
                message: fetch.clone(),
            },
        );
        assert!(
            out.contains(&Output::Answer {
                to: a,
                request: fetch
            }),
            "{out:?}"
        );
        let holds = Message::Holds {
            request: 2,
            deltas: 3,
        };
        let out = peer.handle(
            0,
            Input::Received {
                from: a,
                message: holds.clone(),
            },
        );
        assert!(
            out.contains(&Output::Replied {
                from: a,
                reply: holds
            }),
            "{out:?}"
        );
    }

    #[test]
    fn replication_reports_the_lag_and_how_many_peers_hold_each_delta() {
        let (me, a, b, mut peer) = three_hosts(PeerConfig::default());
        let other = KeyPair::from_seed([9; 32]);
        for seq in 1..=6 {
            peer.handle(0, Input::Stored(stamped(&me, seq)));
        }
        assert_eq!(
            peer.replication(),
            Replication {
                lag: 0,
                held_by: vec![6]
            },
            "no peers: every delta held by none"
        );
        let announce = |peer: &mut Peer, from: HostId, mine: u64, others: u64| {
            let mut vector = vector_of(&me, mine);
            vector.insert(other.host_id(), Seq::new(others));
            peer.handle(
                0,
                Input::Received {
                    from,
                    message: Message::Coverage(vector),
                },
            );
        };
        // a holds 4 of this node's 6 and 10 of a host this node has nothing of; b holds all
        // 6 and 3 of the other host.
        announce(&mut peer, a, 4, 10);
        announce(&mut peer, b, 6, 3);
        let replication = peer.replication();
        assert_eq!(replication.lag, 10, "the other host's 10 are missing here");
        // Of the 6: 2 held by one peer (b only), 4 by both.
        assert_eq!(replication.held_by, vec![0, 2, 4]);
        for seq in 1..=2 {
            peer.handle(0, Input::Stored(stamped(&other, seq)));
        }
        let replication = peer.replication();
        assert_eq!(replication.lag, 8);
        // The other host's 2: both peers hold them.
        assert_eq!(replication.held_by, vec![0, 2, 6]);
    }

    #[test]
    fn confidence_counts_the_peers_whose_coverage_includes_a_stamp() {
        let (me, a, b, mut peer) = three_hosts(PeerConfig::default());
        let vector = |n: u64| vector_of(&me, n);
        peer.handle(
            0,
            Input::Received {
                from: a,
                message: Message::Coverage(vector(5)),
            },
        );
        peer.handle(
            0,
            Input::Received {
                from: b,
                message: Message::Coverage(vector(2)),
            },
        );
        // A late, lower announcement does not lower what we know.
        peer.handle(
            0,
            Input::Received {
                from: a,
                message: Message::Coverage(vector(1)),
            },
        );
        assert_eq!(peer.holders(me.host_id(), Seq::new(2)), 2);
        assert_eq!(peer.holders(me.host_id(), Seq::new(3)), 1);
        assert_eq!(peer.holders(me.host_id(), Seq::new(6)), 0);
        peer.handle(0, Input::PeerDown(a));
        assert_eq!(peer.holders(me.host_id(), Seq::new(2)), 1);
    }

    #[test]
    fn a_duplicated_page_does_not_multiply_catch_up_requests() {
        let me = KeyPair::from_seed([1; 32]);
        let other = KeyPair::from_seed([2; 32]);
        let mut peer = Peer::new(me.host_id(), Coverage::new(), PeerConfig::default());
        let out = peer.handle(0, Input::PeerUp(other.host_id()));
        assert_eq!(requests(&out), 1);
        assert_eq!(out[0], Output::Event(Event::PeerJoined(other.host_id())));
        let Some(request) = out.iter().find_map(|o| match o {
            Output::Send {
                message: Message::CatchUpRequest { request, .. },
                ..
            } => Some(*request),
            _ => None,
        }) else {
            panic!("{out:?}")
        };
        let page = Message::CatchUpPage {
            request,
            deltas: vec![stamped(&other, 1)],
            more: true,
        };
        let first = peer.handle(
            10,
            Input::Received {
                from: other.host_id(),
                message: page.clone(),
            },
        );
        assert_eq!(requests(&first), 1, "a full page asks for the next one");
        let again = peer.handle(
            11,
            Input::Received {
                from: other.host_id(),
                message: page,
            },
        );
        assert_eq!(requests(&again), 0, "its duplicate does not");
        assert!(
            again.iter().any(|o| matches!(o, Output::Store { .. })),
            "but its deltas are still stored"
        );
    }

    #[test]
    fn a_request_is_served_with_the_ranges_the_requester_lacks() {
        let me = KeyPair::from_seed([1; 32]);
        let mut coverage = Coverage::new();
        for s in 1..=3 {
            coverage.insert(me.host_id(), Seq::new(s));
        }
        let mut peer = Peer::new(
            me.host_id(),
            coverage,
            PeerConfig {
                page_size: 2,
                ..PeerConfig::default()
            },
        );
        let asker = KeyPair::from_seed([2; 32]).host_id();
        let have: CoverageVector = [(me.host_id(), Seq::FIRST)].into_iter().collect();
        let out = peer.handle(
            0,
            Input::Received {
                from: asker,
                message: Message::CatchUpRequest { request: 7, have },
            },
        );
        assert_eq!(
            out,
            vec![
                Output::Event(Event::PeerJoined(asker)),
                Output::Serve {
                    to: asker,
                    request: 7,
                    ranges: vec![(me.host_id(), Seq::new(2), Seq::new(3))],
                    limit: 2
                }
            ]
        );
        assert_eq!(
            peer.holders(me.host_id(), Seq::FIRST),
            1,
            "a request also tells us what the asker holds"
        );
    }

    #[test]
    fn peers_join_when_first_heard_and_leave_when_quiet_or_down() {
        let config = PeerConfig {
            peer_timeout_ms: 1_000,
            announce_every_ms: 100,
            ..PeerConfig::default()
        };
        let (_, a, b, mut peer) = three_hosts(config);
        let hello = |from| Input::Received {
            from,
            message: Message::Coverage(CoverageVector::new()),
        };
        let events = |out: Vec<Output>| -> Vec<Event> {
            out.into_iter()
                .filter_map(|o| {
                    if let Output::Event(e) = o {
                        Some(e)
                    } else {
                        None
                    }
                })
                .collect()
        };
        assert_eq!(events(peer.handle(0, hello(a))), vec![Event::PeerJoined(a)]);
        assert_eq!(
            events(peer.handle(10, hello(a))),
            vec![],
            "a known peer does not join twice"
        );
        assert_eq!(
            events(peer.handle(20, hello(b))),
            vec![Event::PeerJoined(b)]
        );
        assert_eq!(events(peer.handle(900, hello(b))), vec![]);
        // a has been quiet since 10; b spoke at 900.
        assert_eq!(
            events(peer.handle(1_500, Input::Tick)),
            vec![Event::PeerLeft(a)]
        );
        assert_eq!(
            events(peer.handle(1_600, Input::PeerDown(b))),
            vec![Event::PeerLeft(b)]
        );
        assert_eq!(
            events(peer.handle(1_700, hello(a))),
            vec![Event::PeerJoined(a)],
            "back after leaving"
        );
    }

    #[test]
    fn a_confidence_wait_reports_when_reached_or_at_its_deadline() {
        let (me, a, b, mut peer) = three_hosts(PeerConfig::default());
        let vector = |n: u64| vector_of(&me, n);
        let confidence = |out: Vec<Output>| -> Vec<Event> {
            out.into_iter()
                .filter_map(|o| match o {
                    Output::Event(e @ Event::Confidence { .. }) => Some(e),
                    _ => None,
                })
                .collect()
        };
        let wait = |token, deadline| Input::AwaitConfidence {
            token,
            host: me.host_id(),
            seq: Seq::new(3),
            peers: 2,
            deadline,
        };
        assert_eq!(confidence(peer.handle(0, wait(1, 1_000))), vec![]);
        assert_eq!(confidence(peer.handle(0, wait(2, 50))), vec![]);
        let out = peer.handle(
            10,
            Input::Received {
                from: a,
                message: Message::Coverage(vector(3)),
            },
        );
        assert_eq!(confidence(out), vec![]);
        // The short wait gives up at its deadline with the one holder it has.
        assert_eq!(
            confidence(peer.handle(60, Input::Tick)),
            vec![Event::Confidence {
                token: 2,
                holders: 1,
                reached: false
            }]
        );
        // The second holder meets the long wait at once.
        let out = peer.handle(
            70,
            Input::Received {
                from: b,
                message: Message::Coverage(vector(4)),
            },
        );
        assert_eq!(
            confidence(out),
            vec![Event::Confidence {
                token: 1,
                holders: 2,
                reached: true
            }]
        );
        // Already met: answered immediately.
        assert_eq!(
            confidence(peer.handle(80, wait(3, 90))),
            vec![Event::Confidence {
                token: 3,
                holders: 2,
                reached: true
            }]
        );
    }

    #[test]
    fn a_delta_every_peer_holds_is_not_published_again() {
        let me = KeyPair::from_seed([1; 32]);
        let other = KeyPair::from_seed([2; 32]);
        let mut peer = Peer::new(me.host_id(), Coverage::new(), PeerConfig::default());
        // The other peer announces that it holds the first of its own deltas.
        let theirs: CoverageVector = [(other.host_id(), Seq::new(1))].into_iter().collect();
        peer.handle(
            0,
            Input::Received {
                from: other.host_id(),
                message: Message::Coverage(theirs),
            },
        );
        let published = |out: &[Output]| {
            out.iter()
                .any(|o| matches!(o, Output::Publish(Message::Deltas(_))))
        };
        // Caught up from it: nobody needs it from us.
        assert!(!published(
            &peer.handle(1, Input::Stored(stamped(&other, 1)))
        ));
        // Its second delta it has not announced yet, and our own write it lacks: published.
        assert!(published(
            &peer.handle(2, Input::Stored(stamped(&other, 2)))
        ));
        assert!(published(&peer.handle(3, Input::Stored(stamped(&me, 1)))));
    }
}
