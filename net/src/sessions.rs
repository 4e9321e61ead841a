//! Reconciliation sessions of a partial replica (pure: time is passed in; the driver reads
//! slices and computes turns on blocking threads and sends the messages it is given).
//!
//! Two sides: this node's own sessions, one per peer at a time, which reconcile its slice
//! with a peer's and collect what it lacks; and peers' sessions with this node, whose
//! slices are kept between turns (a few, least recently used first out) and whose first
//! turns, each a read of the whole journal, are limited to one per peer and a few in all.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hypha_primitives::{DeltaId, HostId};

use crate::reconcile::{ReconcileError, Reconciler, Step};

/// Most ids one reconciliation may say this node lacks before it is abandoned (the next
/// one, after more has arrived by other means, continues).
pub(crate) const MAX_SLICE_NEED: usize = 1_000_000;
/// Most slices read at once for peers' reconciliations.
pub(crate) const MAX_BUILDING: usize = 2;
/// Largest reconciliation message taken from a peer (twice the default budget).
pub(crate) const MAX_RECONCILE_PAYLOAD: usize = 512 * 1024;
/// Most reconciliations peers may have open here at once.
pub(crate) const MAX_INCOMING: usize = 64;
/// How long a session may live (ms).
pub(crate) const SESSION_LIFETIME_MS: u64 = 60_000;

/// A reconciliation this node started.
struct Outgoing {
    peer: HostId,
    reconciler: Arc<Reconciler>,
    need: HashSet<DeltaId>,
    /// A turn is being computed: replies meanwhile are ignored.
    stepping: bool,
    started: u64,
    /// When a turn was last sent or answered.
    active: u64,
}

/// What to do with a peer's reply to this node's session.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Not this node's session with that peer, or a turn is being computed: ignore it.
    Ignore,
    /// Too large: the session is dropped.
    Oversized,
    /// The peer has nothing more to say: fetch what this node lacks from it.
    Settled { peer: HostId, need: Vec<DeltaId> },
    /// Compute the next turn with this slice.
    Step(Arc<Reconciler>),
}

/// What a computed turn of this node's session leads to.
#[derive(Debug)]
pub(crate) enum Stepped {
    /// The session is gone (it timed out meanwhile).
    Gone,
    /// Send this turn to the peer.
    Send { peer: HostId, payload: Vec<u8> },
    /// Settled: fetch what this node lacks from the peer.
    Settled { peer: HostId, need: Vec<DeltaId> },
    /// The peer says too much is missing: abandoned, the next session continues.
    TooMuch { peer: HostId },
    /// The peer's message did not make sense: count it against the peer.
    Invalid { peer: HostId, what: String },
}

/// How to answer a turn of a peer's session.
#[derive(Debug)]
pub(crate) enum Turn {
    /// With the session's kept slice.
    Cached(Arc<Reconciler>),
    /// After reading the slice (a first turn; the read is counted until [`Sessions::answered`]).
    Read,
    /// Not now: too many slices are being read (the peer's request times out and is retried).
    Busy,
}

/// Every reconciliation session of this node, both sides.
#[derive(Default)]
pub(crate) struct Sessions {
    /// Peers this node's session is being prepared or run with, and since when.
    reconciling: HashMap<HostId, u64>,
    outgoing: HashMap<u64, Outgoing>,
    /// Peers' sessions: their slice here, and when last used.
    incoming: HashMap<(HostId, u64), (Arc<Reconciler>, u64)>,
    /// Peers whose slice is being read for a first turn.
    building: HashSet<HostId>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("outgoing", &self.outgoing.len())
            .field("incoming", &self.incoming.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Whether to start a session with `peer` (read this node's slice for it): not while
    /// one is prepared or under way.
    pub(crate) fn start(&mut self, peer: HostId, now: u64) -> bool {
        if self.reconciling.contains_key(&peer) {
            return false;
        }
        self.reconciling.insert(peer, now);
        true
    }

    /// This node's slice is read for a session `session` with `peer`: the first message.
    pub(crate) fn opened(
        &mut self,
        session: u64,
        peer: HostId,
        reconciler: Arc<Reconciler>,
        now: u64,
    ) -> Vec<u8> {
        let payload = reconciler.initiate();
        let outgoing = Outgoing {
            peer,
            reconciler,
            need: HashSet::new(),
            stepping: false,
            started: now,
            active: now,
        };
        self.outgoing.insert(session, outgoing);
        payload
    }

    /// Takes `from`'s reply to this node's session, at `now`.
    pub(crate) fn replied(
        &mut self,
        from: HostId,
        session: u64,
        payload: &[u8],
        now: u64,
    ) -> Reply {
        let Some(outgoing) = self.outgoing.get_mut(&session) else {
            return Reply::Ignore;
        };
        if outgoing.peer != from || outgoing.stepping {
            return Reply::Ignore;
        }
        outgoing.active = now;
        if payload.is_empty() {
            return self
                .settle(session)
                .map_or(Reply::Ignore, |(peer, need)| Reply::Settled { peer, need });
        }
        if payload.len() > MAX_RECONCILE_PAYLOAD {
            self.outgoing.remove(&session);
            self.reconciling.remove(&from);
            return Reply::Oversized;
        }
        outgoing.stepping = true;
        Reply::Step(outgoing.reconciler.clone())
    }

    /// A turn of session `session` is computed, at `now`.
    pub(crate) fn stepped(
        &mut self,
        session: u64,
        step: Result<Step, ReconcileError>,
        now: u64,
    ) -> Stepped {
        let Some(outgoing) = self.outgoing.get_mut(&session) else {
            return Stepped::Gone;
        };
        let peer = outgoing.peer;
        outgoing.stepping = false;
        outgoing.active = now;
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                self.outgoing.remove(&session);
                self.reconciling.remove(&peer);
                return Stepped::Invalid {
                    peer,
                    what: e.to_string(),
                };
            }
        };
        outgoing.need.extend(step.need);
        if outgoing.need.len() > MAX_SLICE_NEED {
            self.outgoing.remove(&session);
            self.reconciling.remove(&peer);
            return Stepped::TooMuch { peer };
        }
        match step.reply {
            Some(payload) => Stepped::Send { peer, payload },
            None => self
                .settle(session)
                .map_or(Stepped::Gone, |(peer, need)| Stepped::Settled {
                    peer,
                    need,
                }),
        }
    }

    fn settle(&mut self, session: u64) -> Option<(HostId, Vec<DeltaId>)> {
        let outgoing = self.outgoing.remove(&session)?;
        self.reconciling.remove(&outgoing.peer);
        let mut need: Vec<DeltaId> = outgoing.need.into_iter().collect();
        need.sort();
        Some((outgoing.peer, need))
    }

    /// How to answer a turn of `peer`'s session `session`. A first turn replaces the
    /// peer's older sessions.
    pub(crate) fn turn(&mut self, peer: HostId, session: u64) -> Turn {
        if let Some((reconciler, _)) = self.incoming.get(&(peer, session)) {
            return Turn::Cached(reconciler.clone());
        }
        if self.building.contains(&peer) || self.building.len() >= MAX_BUILDING {
            return Turn::Busy;
        }
        self.building.insert(peer);
        self.incoming.retain(|(p, _), _| *p != peer);
        Turn::Read
    }

    /// A turn of `peer`'s session is answered with `reply` over `reconciler` (`None`: it
    /// could not be); the session is kept for its next turn unless it is settled.
    pub(crate) fn answered(
        &mut self,
        peer: HostId,
        session: u64,
        answer: Option<(Arc<Reconciler>, &[u8])>,
        now: u64,
    ) {
        self.building.remove(&peer);
        let Some((reconciler, reply)) = answer else {
            self.incoming.remove(&(peer, session));
            return;
        };
        if reply.is_empty() {
            self.incoming.remove(&(peer, session));
            return;
        }
        if self.incoming.len() >= MAX_INCOMING && !self.incoming.contains_key(&(peer, session)) {
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
        self.incoming.insert((peer, session), (reconciler, now));
    }

    /// Drops, at `now`, the sessions older than [`SESSION_LIFETIME_MS`], and this node's
    /// sessions whose peer has not answered a turn within `turn_timeout` (the message or
    /// its answer was lost: the next session starts afresh).
    pub(crate) fn expire(&mut self, now: u64, turn_timeout: u64) {
        let stale = |since: u64| now >= since + SESSION_LIFETIME_MS;
        let mut ended = Vec::new();
        self.outgoing.retain(|_, o| {
            let idle = !o.stepping && now >= o.active + turn_timeout;
            let keep = !stale(o.started) && !idle;
            if !keep {
                ended.push(o.peer);
            }
            keep
        });
        for peer in ended {
            self.reconciling.remove(&peer);
        }
        self.reconciling.retain(|_, since| !stale(*since));
        self.incoming.retain(|_, (_, used)| !stale(*used));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{host, slice};

    #[test]
    fn a_session_runs_turn_by_turn_and_settles_with_what_this_node_lacks() {
        let mut s = Sessions::default();
        assert!(s.start(host(1), 0));
        assert!(!s.start(host(1), 1), "one at a time per peer");
        let mine = slice([1, 2]);
        let theirs = slice([1, 2, 3]);
        let mut payload = s.opened(7, host(1), mine, 0);
        let mut settled = None;
        for _ in 0..10 {
            let answer = theirs
                .reconcile(&payload)
                .unwrap()
                .reply
                .unwrap_or_default();
            assert!(
                matches!(s.replied(host(2), 7, &answer, 0), Reply::Ignore),
                "another peer"
            );
            match s.replied(host(1), 7, &answer, 0) {
                Reply::Settled { peer, need } => {
                    settled = Some((peer, need));
                    break;
                }
                Reply::Step(reconciler) => {
                    assert!(
                        matches!(s.replied(host(1), 7, &answer, 0), Reply::Ignore),
                        "stepping"
                    );
                    match s.stepped(7, reconciler.reconcile(&answer), 0) {
                        Stepped::Send { payload: next, .. } => payload = next,
                        Stepped::Settled { peer, need } => {
                            settled = Some((peer, need));
                            break;
                        }
                        other => panic!("{other:?}"),
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(settled, Some((host(1), vec![DeltaId::from_bytes([3; 32])])));
        assert!(s.start(host(1), 2), "a new session may start once settled");
    }

    #[test]
    fn oversized_and_senseless_replies_end_the_session() {
        let mut s = Sessions::default();
        s.start(host(1), 0);
        s.opened(1, host(1), slice([1]), 0);
        let huge = vec![0u8; MAX_RECONCILE_PAYLOAD + 1];
        assert!(matches!(s.replied(host(1), 1, &huge, 0), Reply::Oversized));
        assert!(
            matches!(s.replied(host(1), 1, b"x", 0), Reply::Ignore),
            "gone"
        );

        s.start(host(1), 0);
        s.opened(2, host(1), slice([1]), 0);
        let Reply::Step(reconciler) = s.replied(host(1), 2, b"not a message", 0) else {
            panic!("a turn to compute")
        };
        let stepped = s.stepped(2, reconciler.reconcile(b"not a message"), 0);
        assert!(matches!(stepped, Stepped::Invalid { peer, .. } if peer == host(1)));
        assert!(matches!(
            s.stepped(2, Ok(Step::default()), 0),
            Stepped::Gone
        ));
    }

    #[test]
    fn a_session_whose_peer_does_not_answer_a_turn_ends_after_the_turn_timeout() {
        let mut s = Sessions::default();
        s.start(host(1), 0);
        s.opened(1, host(1), slice([1]), 0);
        s.expire(99, 100);
        assert!(!s.start(host(1), 99), "still waiting for the first answer");
        let Reply::Step(_) = s.replied(host(1), 1, b"turn", 150) else {
            panic!("a turn to compute")
        };
        s.expire(1_000, 100);
        assert!(
            !s.start(host(1), 1_000),
            "a turn being computed is not idle"
        );
        let _ = s.stepped(
            1,
            Ok(Step {
                reply: Some(b"next".to_vec()),
                ..Step::default()
            }),
            1_000,
        );
        s.expire(1_099, 100);
        assert!(!s.start(host(1), 1_099), "answered 99 ms ago");
        s.expire(1_100, 100);
        assert!(
            s.start(host(1), 1_100),
            "no answer within the timeout: a new session may start"
        );
        assert!(
            matches!(s.replied(host(1), 1, b"late", 1_101), Reply::Ignore),
            "the old one is gone"
        );
    }

    #[test]
    fn peers_first_turns_are_limited_and_their_slices_kept_between_turns() {
        let mut s = Sessions::default();
        assert!(matches!(s.turn(host(1), 1), Turn::Read));
        assert!(
            matches!(s.turn(host(1), 2), Turn::Busy),
            "one read per peer"
        );
        assert!(matches!(s.turn(host(2), 1), Turn::Read));
        assert!(
            matches!(s.turn(host(3), 1), Turn::Busy),
            "a few reads in all"
        );
        s.answered(host(1), 1, Some((slice([1]), b"more")), 10);
        assert!(matches!(s.turn(host(1), 1), Turn::Cached(_)));
        // A settled session is not kept; a failed one neither.
        s.answered(host(1), 1, Some((slice([1]), b"")), 11);
        s.answered(host(2), 1, None, 11);
        assert!(matches!(s.turn(host(3), 1), Turn::Read));
        s.answered(host(3), 1, Some((slice([1]), b"more")), 12);
        s.expire(12 + SESSION_LIFETIME_MS, u64::MAX / 2);
        assert!(matches!(s.turn(host(3), 1), Turn::Read), "expired");
    }

    #[test]
    fn at_most_max_incoming_sessions_are_kept_least_recently_used_out_first() {
        let mut s = Sessions::default();
        for n in 0..=MAX_INCOMING as u64 {
            let peer = host((n % 200) as u8 + 1);
            let _ = s.turn(peer, n);
            s.answered(peer, n, Some((slice([1]), b"more")), n);
        }
        assert_eq!(s.incoming.len(), MAX_INCOMING);
        assert!(!s.incoming.contains_key(&(host(1), 0)), "the oldest went");
    }
}
