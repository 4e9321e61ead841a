//! One node's whole protocol, pure: the [`Peer`] state machine (propagation, catch-up,
//! coverage, confidence) together with the requests this node makes of peers
//! ([`Requests`]: fetch, who-has) and its reconciliation sessions ([`Sessions`]). It turns
//! every input into [`Action`]s: messages to send, deltas to store, and [`Read`]s of the
//! journal, whose results come back through [`Protocol::done`].
//!
//! The socket driver and the simulation both run this, so everything a node decides is
//! decided here, once, with time passed in; they differ only in how they carry actions out.

use hypha_primitives::{DeltaId, Filter, HostId, StampedDelta};

use crate::requests::{Done, Outcome, Requests};
use crate::serve::{Read, ReadDone};
use crate::sessions::{Reply, Sessions, Stepped, Turn};
use crate::{Coverage, Event, Input, Message, Output, Peer, PeerConfig};

/// How long a request to peers (fetch, who-has, a reconciliation's fetch) may take (ms).
pub(crate) const REQUEST_LIFETIME_MS: u64 = 60_000;

/// Something the driver must carry out.
#[derive(Debug)]
// Who sent deltas, and whom a peer listed, matter only to the socket driver.
#[cfg_attr(not(feature = "driver"), allow(dead_code))]
pub(crate) enum Action {
    /// Publish to every subscriber.
    Publish(Message),
    /// Send a request (or any message that is not a reply) over the link this node dialled.
    Request { to: HostId, message: Message },
    /// Send a reply back through the socket the request came in on.
    Reply { to: HostId, message: Message },
    /// Verify and store deltas from `from` (keeping only this node's slice), then report
    /// each new one as [`Input::Stored`].
    Store {
        from: HostId,
        deltas: Vec<StampedDelta>,
    },
    /// Do this work and hand the result to [`Protocol::done`].
    Read(Read),
    /// A request the node's user made is done: answer its caller (fetched deltas are
    /// stored first, whatever the slice, and only those that verify are handed back).
    Finished { request: u64, done: Done },
    /// Tell the node's users.
    Event(Event),
    /// Peers a peer listed: dial those not linked yet.
    Learnt(Vec<(HostId, String)>),
    /// `peer` sent something invalid: count it against the peer.
    Blame { peer: HostId, what: String },
}

/// One node's protocol.
#[derive(Debug)]
pub(crate) struct Protocol {
    peer: Peer,
    requests: Requests,
    sessions: Sessions,
    /// The slice a partial replica keeps (`None`: everything).
    slice: Option<Filter>,
    /// Most encoded bytes in an answer to a fetch.
    fetch_budget: usize,
}

impl Protocol {
    /// Node `me`, holding `coverage`; a partial replica when `slice` is given. Fetch
    /// answers are kept within `fetch_budget` bytes.
    pub(crate) fn new(
        me: HostId,
        coverage: Coverage,
        mut config: PeerConfig,
        slice: Option<Filter>,
        fetch_budget: usize,
    ) -> Self {
        config.partial |= slice.is_some();
        Self {
            peer: Peer::new(me, coverage, config),
            requests: Requests::default(),
            sessions: Sessions::default(),
            slice,
            fetch_budget,
        }
    }

    /// The state machine (coverage, holders, replication figures).
    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Reacts to one input at `now`.
    pub(crate) fn handle(&mut self, now: u64, input: Input) -> Vec<Action> {
        let mut actions = Vec::new();
        if matches!(input, Input::Tick) {
            for (request, done) in self.requests.expire(now) {
                actions.push(Action::Finished { request, done });
            }
            let turn_timeout = self.peer.config().reconcile_turn_timeout_ms;
            self.sessions.expire(now, turn_timeout);
        }
        for output in self.peer.handle(now, input) {
            self.carry(now, output, &mut actions);
        }
        actions
    }

    /// Asks every one of `linked` for `ids` until `deadline`: the request's id (`None`
    /// when there is nothing to ask or no one to ask) and the messages to send.
    pub(crate) fn fetch(
        &mut self,
        linked: Vec<HostId>,
        ids: Vec<DeltaId>,
        deadline: u64,
    ) -> (Option<u64>, Vec<Action>) {
        match self.requests.fetch(linked, ids, deadline) {
            Some((request, sends)) => (Some(request), requests(sends)),
            None => (None, Vec::new()),
        }
    }

    /// Asks every one of `linked` how many deltas about `entity` it holds, until `deadline`.
    pub(crate) fn who_has(
        &mut self,
        linked: Vec<HostId>,
        entity: &str,
        deadline: u64,
    ) -> (Option<u64>, Vec<Action>) {
        match self.requests.who_has(linked, entity, deadline) {
            Some((request, sends)) => (Some(request), requests(sends)),
            None => (None, Vec::new()),
        }
    }

    /// Takes the result of a [`Read`] this node handed out.
    pub(crate) fn done(&mut self, now: u64, done: ReadDone) -> Vec<Action> {
        match done {
            ReadDone::Reply { to, message } => vec![Action::Reply { to, message }],
            ReadDone::Failed => Vec::new(),
            ReadDone::SliceReady { with, reconciler } => {
                let session = self.requests.next_id();
                let payload = self.sessions.opened(session, with, reconciler, now);
                vec![self.reconcile_message(with, session, payload)]
            }
            ReadDone::Answered {
                to,
                session,
                outcome,
            } => match outcome {
                Ok((reconciler, reply)) => {
                    self.sessions
                        .answered(to, session, Some((reconciler, &reply)), now);
                    let message = Message::ReconcileReply {
                        session,
                        payload: reply,
                    };
                    vec![Action::Reply { to, message }]
                }
                Err(why) => {
                    self.sessions.answered(to, session, None, now);
                    why.map(|what| Action::Blame { peer: to, what })
                        .into_iter()
                        .collect()
                }
            },
            ReadDone::Stepped { session, step } => {
                match self.sessions.stepped(session, step, now) {
                    Stepped::Gone => Vec::new(),
                    Stepped::Send { peer, payload } => {
                        vec![self.reconcile_message(peer, session, payload)]
                    }
                    Stepped::Settled { peer, need } => self.fetch_missing(now, peer, need),
                    Stepped::TooMuch { peer } => {
                        tracing::warn!(peer = %peer, "a reconciliation found too much missing; fetching happens on the next");
                        Vec::new()
                    }
                    Stepped::Invalid { peer, what } => vec![Action::Blame { peer, what }],
                }
            }
        }
    }

    /// Carries one output of the state machine into actions.
    fn carry(&mut self, now: u64, output: Output, actions: &mut Vec<Action>) {
        match output {
            Output::Publish(message) => actions.push(Action::Publish(message)),
            Output::Send { to, message } if message.is_reply() => {
                actions.push(Action::Reply { to, message });
            }
            Output::Send { to, message } => actions.push(Action::Request { to, message }),
            Output::Store { from, deltas } => actions.push(Action::Store { from, deltas }),
            Output::Event(event) => actions.push(Action::Event(event)),
            Output::Learnt(peers) => actions.push(Action::Learnt(peers)),
            Output::Serve {
                to,
                request,
                ranges,
                limit,
                pages,
            } => actions.push(Action::Read(Read::Page {
                to,
                request,
                ranges,
                limit,
                pages,
            })),
            Output::Answer { to, request } => self.answer(to, request, actions),
            Output::Replied { from, reply } => self.replied(now, from, reply, actions),
            Output::Reconcile { with } => {
                if self.sessions.start(with, now) {
                    let filter = self.slice.clone();
                    actions.push(Action::Read(Read::Slice { with, filter }));
                }
            }
        }
    }

    /// Hands a peer's request that needs the journal to a [`Read`].
    fn answer(&mut self, to: HostId, request: Message, actions: &mut Vec<Action>) {
        let read = match request {
            Message::Fetch { request, ids } => Read::Fetch {
                to,
                request,
                ids,
                budget: self.fetch_budget,
            },
            Message::WhoHas { request, entity } => Read::WhoHas {
                to,
                request,
                entity,
            },
            Message::Reconcile {
                session,
                filter,
                payload,
            } => {
                // Each new session reads the whole journal: one at a time per peer, and a
                // few at a time in all; a refused one times out and is retried later.
                let cached = match self.sessions.turn(to, session) {
                    Turn::Cached(reconciler) => Some(reconciler),
                    Turn::Read => None,
                    Turn::Busy => {
                        tracing::debug!(peer = %to, "busy reading slices; a reconciliation waits");
                        return;
                    }
                };
                Read::Turn {
                    to,
                    session,
                    cached,
                    filter,
                    payload,
                }
            }
            _ => return,
        };
        actions.push(Action::Read(read));
    }

    /// Takes a peer's reply to a request this node made.
    fn replied(&mut self, now: u64, from: HostId, reply: Message, actions: &mut Vec<Action>) {
        match reply {
            reply @ (Message::Fetched { .. } | Message::Holds { .. }) => {
                match self.requests.replied(from, reply) {
                    Outcome::Finished(request, done) => {
                        actions.push(Action::Finished { request, done });
                    }
                    Outcome::Store(deltas) if !deltas.is_empty() => {
                        actions.push(Action::Store { from, deltas });
                    }
                    Outcome::Store(_) | Outcome::Nothing => {}
                }
            }
            Message::ReconcileReply { session, payload } => {
                match self.sessions.replied(from, session, &payload, now) {
                    Reply::Ignore => {}
                    Reply::Oversized => {
                        tracing::warn!(peer = %from, bytes = payload.len(), "dropping an oversized reconciliation reply");
                    }
                    Reply::Settled { peer, need } => {
                        actions.extend(self.fetch_missing(now, peer, need));
                    }
                    Reply::Step(reconciler) => actions.push(Action::Read(Read::Step {
                        session,
                        reconciler,
                        payload,
                    })),
                }
            }
            _ => {}
        }
    }

    /// A reconciliation is settled: fetch what it found missing here.
    fn fetch_missing(&mut self, now: u64, peer: HostId, need: Vec<DeltaId>) -> Vec<Action> {
        tracing::debug!(peer = %peer, missing = need.len(), "slice reconciled");
        let deadline = now + REQUEST_LIFETIME_MS;
        requests(self.requests.fetch_missing(peer, need, deadline))
    }

    /// A turn of this node's session `session` with `to`.
    fn reconcile_message(&self, to: HostId, session: u64, payload: Vec<u8>) -> Action {
        let filter = self.slice.as_ref().map(ToString::to_string);
        Action::Request {
            to,
            message: Message::Reconcile {
                session,
                filter: filter.unwrap_or_default(),
                payload,
            },
        }
    }
}

fn requests(sends: Vec<(HostId, Message)>) -> Vec<Action> {
    sends
        .into_iter()
        .map(|(to, message)| Action::Request { to, message })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::MAX_BUILDING;
    use crate::testing::{delta, host, slice};

    fn full() -> Protocol {
        Protocol::new(host(0), Coverage::new(), PeerConfig::default(), None, 1_000)
    }

    fn partial() -> Protocol {
        let slice = Filter::from_json_str(r#"{"in": ["a", {"var": "targets"}]}"#).unwrap();
        Protocol::new(
            host(0),
            Coverage::new(),
            PeerConfig::default(),
            Some(slice),
            1_000,
        )
    }

    fn received(from: u8, message: Message) -> Input {
        Input::Received {
            from: host(from),
            message,
        }
    }

    #[test]
    fn peers_requests_become_journal_reads_and_their_results_replies() {
        let mut p = full();
        let ids = vec![DeltaId::from_bytes([1; 32])];
        let actions = p.handle(0, received(1, Message::Fetch { request: 9, ids }));
        assert!(
            matches!(
                &actions[..],
                [Action::Event(Event::PeerJoined(_)), Action::Read(Read::Fetch { to, request: 9, budget: 1_000, .. })] if *to == host(1)
            ),
            "{actions:?}"
        );
        let message = Message::Holds {
            request: 3,
            deltas: 2,
        };
        let actions = p.done(
            1,
            ReadDone::Reply {
                to: host(1),
                message: message.clone(),
            },
        );
        assert!(
            matches!(&actions[..], [Action::Reply { to, message: m }] if *to == host(1) && *m == message)
        );
        assert!(p.done(1, ReadDone::Failed).is_empty());
    }

    #[test]
    fn a_users_fetch_finishes_when_every_id_came_or_at_its_deadline() {
        let mut p = full();
        let wanted = delta(1);
        let ids = vec![wanted.delta.id(), delta(2).delta.id()];
        let (request, actions) = p.fetch(vec![host(1), host(2)], ids.clone(), 500);
        let request = request.expect("peers to ask");
        assert_eq!(actions.len(), 2, "one request per peer");
        assert!(p.fetch(Vec::new(), ids, 500).0.is_none(), "no one to ask");
        let reply = Message::Fetched {
            request,
            deltas: vec![wanted.clone()],
            missing: Vec::new(),
        };
        let actions = p.handle(10, received(1, reply));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Finished { .. })),
            "one id still wanted, one peer still to answer"
        );
        let actions = p.handle(500, Input::Tick);
        let finished = actions.iter().find_map(|a| match a {
            Action::Finished {
                request: r,
                done: Done::Fetched(found),
            } if *r == request => Some(found.clone()),
            _ => None,
        });
        assert_eq!(
            finished,
            Some(vec![wanted]),
            "at the deadline, with what came"
        );
    }

    #[test]
    fn a_partial_replica_reads_its_slice_and_opens_a_session_with_its_filter() {
        let mut p = partial();
        let actions = p.handle(0, Input::PeerUp(host(1)));
        assert!(actions.iter().any(|a| matches!(a, Action::Read(Read::Slice { with, filter: Some(_) }) if *with == host(1))), "{actions:?}");
        let actions = p.handle(1, Input::PeerUp(host(1)));
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Read(Read::Slice { .. }))),
            "one session per peer at a time"
        );
        let actions = p.done(
            2,
            ReadDone::SliceReady {
                with: host(1),
                reconciler: slice([1, 2]),
            },
        );
        match &actions[..] {
            [Action::Request {
                to,
                message:
                    Message::Reconcile {
                        filter, payload, ..
                    },
            }] => {
                assert_eq!(*to, host(1));
                assert!(filter.contains("targets"), "{filter}");
                assert!(!payload.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_peers_session_is_answered_blamed_or_put_off() {
        let mut p = full();
        let turn = |session| Message::Reconcile {
            session,
            filter: String::new(),
            payload: b"first".to_vec(),
        };
        let actions = p.handle(0, received(1, turn(1)));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Read(Read::Turn { cached: None, .. }))));
        let actions = p.done(
            1,
            ReadDone::Answered {
                to: host(1),
                session: 1,
                outcome: Err(Some("nonsense".into())),
            },
        );
        assert!(matches!(&actions[..], [Action::Blame { peer, .. }] if *peer == host(1)));
        let actions = p.done(
            1,
            ReadDone::Answered {
                to: host(1),
                session: 1,
                outcome: Err(None),
            },
        );
        assert!(actions.is_empty(), "a local failure blames no one");
        // Only a few slices are read at once for peers: the rest are put off.
        for n in 0..MAX_BUILDING as u8 {
            let _ = p.handle(2, received(10 + n, turn(1)));
        }
        let actions = p.handle(2, received(20, turn(1)));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Read(_))),
            "{actions:?}"
        );
        let reply = p.done(
            3,
            ReadDone::Answered {
                to: host(10),
                session: 1,
                outcome: Ok((slice([1]), b"more".to_vec())),
            },
        );
        assert!(matches!(
            &reply[..],
            [Action::Reply {
                message: Message::ReconcileReply { session: 1, .. },
                ..
            }]
        ));
    }
}
