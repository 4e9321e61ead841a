//! Requests this node makes of its peers: fetch by id, who-has, and the fetches a
//! reconciliation found missing. Which peers are still to answer, what has come, and when
//! each request is done (pure: time is passed in; the driver sends the messages it is
//! given and answers the callers).

use std::collections::{HashMap, HashSet};

use hypha_primitives::{DeltaId, HostId, StampedDelta};

use crate::Message;

/// Most ids asked of a peer in one fetch a reconciliation makes.
pub(crate) const SLICE_FETCH: usize = 1_024;

/// What a finished request answers its caller with.
#[derive(Debug, PartialEq)]
pub(crate) enum Done {
    /// A fetch: the deltas that came, of those asked for (not yet verified or stored).
    Fetched(Vec<StampedDelta>),
    /// A who-has: each peer that answered, with how many deltas it holds of the entity.
    Holders(Vec<(HostId, u64)>),
}

/// What a peer's reply to one of this node's requests leads to.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The request is done: answer its caller.
    Finished(u64, Done),
    /// Deltas a reconciliation was missing: store them.
    Store(Vec<StampedDelta>),
    /// Nothing yet (or a reply to nothing this node asked, or from a peer not asked).
    Nothing,
}

enum Pending {
    Fetch {
        waiting: HashSet<HostId>,
        wanted: HashSet<DeltaId>,
        found: Vec<StampedDelta>,
        deadline: u64,
    },
    WhoHas {
        waiting: HashSet<HostId>,
        answers: Vec<(HostId, u64)>,
        deadline: u64,
    },
    Slice {
        peer: HostId,
        deadline: u64,
    },
}

impl Pending {
    fn deadline(&self) -> u64 {
        match self {
            Pending::Fetch { deadline, .. }
            | Pending::WhoHas { deadline, .. }
            | Pending::Slice { deadline, .. } => *deadline,
        }
    }

    fn done(self) -> Option<Done> {
        match self {
            Pending::Fetch { found, .. } => Some(Done::Fetched(found)),
            Pending::WhoHas { answers, .. } => Some(Done::Holders(answers)),
            Pending::Slice { .. } => None,
        }
    }
}

/// The requests in flight, by request id.
#[derive(Default)]
pub(crate) struct Requests {
    next: u64,
    pending: HashMap<u64, Pending>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Requests {
    /// A fresh id for a request or a reconciliation session.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Asks every one of `peers` for `ids`, until `deadline`: the request id and the
    /// messages to send, or `None` when there is nothing to ask or no one to ask.
    pub(crate) fn fetch(
        &mut self,
        peers: Vec<HostId>,
        ids: Vec<DeltaId>,
        deadline: u64,
    ) -> Option<(u64, Vec<(HostId, Message)>)> {
        if peers.is_empty() || ids.is_empty() {
            return None;
        }
        let request = self.next_id();
        let sends = peers
            .iter()
            .map(|peer| {
                (
                    *peer,
                    Message::Fetch {
                        request,
                        ids: ids.clone(),
                    },
                )
            })
            .collect();
        let pending = Pending::Fetch {
            waiting: peers.into_iter().collect(),
            wanted: ids.into_iter().collect(),
            found: Vec::new(),
            deadline,
        };
        self.pending.insert(request, pending);
        Some((request, sends))
    }

    /// Asks every one of `peers` how many deltas about `entity` it holds, until
    /// `deadline`; `None` when no one can be asked.
    pub(crate) fn who_has(
        &mut self,
        peers: Vec<HostId>,
        entity: &str,
        deadline: u64,
    ) -> Option<(u64, Vec<(HostId, Message)>)> {
        if peers.is_empty() {
            return None;
        }
        let request = self.next_id();
        let sends = peers
            .iter()
            .map(|peer| {
                let entity = entity.to_owned();
                (*peer, Message::WhoHas { request, entity })
            })
            .collect();
        let pending = Pending::WhoHas {
            waiting: peers.into_iter().collect(),
            answers: Vec::new(),
            deadline,
        };
        self.pending.insert(request, pending);
        Some((request, sends))
    }

    /// Asks `peer` for the deltas a reconciliation with it found missing here, in chunks
    /// of [`SLICE_FETCH`]; its replies are to be stored.
    pub(crate) fn fetch_missing(
        &mut self,
        peer: HostId,
        need: Vec<DeltaId>,
        deadline: u64,
    ) -> Vec<(HostId, Message)> {
        need.chunks(SLICE_FETCH)
            .map(|chunk| {
                let request = self.next_id();
                self.pending
                    .insert(request, Pending::Slice { peer, deadline });
                let ids = chunk.to_vec();
                (peer, Message::Fetch { request, ids })
            })
            .collect()
    }

    /// Takes `from`'s reply: a fetch is done once every id has come or every peer asked
    /// has answered, a who-has once every peer has answered. Deltas not asked for are
    /// left out; a reply from a peer not asked changes nothing.
    pub(crate) fn replied(&mut self, from: HostId, reply: Message) -> Outcome {
        let (request, finished) = match reply {
            Message::Fetched {
                request, deltas, ..
            } => match self.pending.get_mut(&request) {
                Some(Pending::Fetch {
                    waiting,
                    wanted,
                    found,
                    ..
                }) => {
                    if !waiting.remove(&from) {
                        return Outcome::Nothing;
                    }
                    found.extend(deltas.into_iter().filter(|d| wanted.remove(&d.delta.id())));
                    (request, wanted.is_empty() || waiting.is_empty())
                }
                Some(Pending::Slice { peer, .. }) if *peer == from => {
                    self.pending.remove(&request);
                    return Outcome::Store(deltas);
                }
                _ => return Outcome::Nothing,
            },
            Message::Holds { request, deltas } => match self.pending.get_mut(&request) {
                Some(Pending::WhoHas {
                    waiting, answers, ..
                }) => {
                    if waiting.remove(&from) {
                        answers.push((from, deltas));
                    }
                    (request, waiting.is_empty())
                }
                _ => return Outcome::Nothing,
            },
            _ => return Outcome::Nothing,
        };
        match finished.then(|| self.pending.remove(&request)).flatten() {
            Some(pending) => pending
                .done()
                .map_or(Outcome::Nothing, |done| Outcome::Finished(request, done)),
            None => Outcome::Nothing,
        }
    }

    /// Ends the requests whose deadline has come at `now`: each fetch and who-has answers
    /// with what it has; a reconciliation's fetch is dropped (the next one asks again).
    pub(crate) fn expire(&mut self, now: u64) -> Vec<(u64, Done)> {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline() <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut done: Vec<(u64, Done)> = due
            .into_iter()
            .filter_map(|id| {
                let pending = self.pending.remove(&id)?;
                pending.done().map(|d| (id, d))
            })
            .collect();
        done.sort_by_key(|(id, _)| *id);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{delta, host};

    fn fetched(request: u64, deltas: Vec<StampedDelta>) -> Message {
        Message::Fetched {
            request,
            deltas,
            missing: Vec::new(),
        }
    }

    #[test]
    fn a_fetch_ends_when_every_id_has_come_keeping_only_what_was_asked() {
        let mut r = Requests::default();
        let (a, b, extra) = (delta(1), delta(2), delta(3));
        let ids = vec![a.delta.id(), b.delta.id()];
        let (request, sends) = r.fetch(vec![host(1), host(2)], ids.clone(), 1_000).unwrap();
        assert_eq!(sends.len(), 2);
        assert!(sends.iter().all(|(_, m)| *m
            == Message::Fetch {
                request,
                ids: ids.clone()
            }));
        let first = r.replied(host(1), fetched(request, vec![a.clone(), extra]));
        assert_eq!(first, Outcome::Nothing);
        // A peer that was not asked changes nothing.
        assert_eq!(
            r.replied(host(9), fetched(request, vec![b.clone()])),
            Outcome::Nothing
        );
        let done = r.replied(host(2), fetched(request, vec![b.clone(), a.clone()]));
        assert_eq!(done, Outcome::Finished(request, Done::Fetched(vec![a, b])));
        assert!(r.expire(u64::MAX).is_empty(), "answered once");
    }

    #[test]
    fn a_fetch_ends_when_every_peer_has_answered_or_at_its_deadline() {
        let mut r = Requests::default();
        let wanted = vec![delta(1).delta.id()];
        let (request, _) = r.fetch(vec![host(1)], wanted.clone(), 1_000).unwrap();
        let done = r.replied(host(1), fetched(request, vec![]));
        assert_eq!(done, Outcome::Finished(request, Done::Fetched(vec![])));

        let (request, _) = r.fetch(vec![host(1), host(2)], wanted, 1_000).unwrap();
        assert!(r.expire(999).is_empty());
        assert_eq!(r.expire(1_000), vec![(request, Done::Fetched(vec![]))]);
        assert!(r.fetch(vec![], vec![delta(1).delta.id()], 1).is_none());
        assert!(r.fetch(vec![host(1)], vec![], 1).is_none());
    }

    #[test]
    fn who_has_collects_one_answer_per_peer() {
        let mut r = Requests::default();
        let (request, sends) = r.who_has(vec![host(1), host(2)], "alice", 500).unwrap();
        assert_eq!(sends.len(), 2);
        let holds = |deltas| Message::Holds { request, deltas };
        assert_eq!(r.replied(host(1), holds(3)), Outcome::Nothing);
        assert_eq!(
            r.replied(host(1), holds(7)),
            Outcome::Nothing,
            "counted once"
        );
        let done = r.replied(host(2), holds(0));
        assert_eq!(
            done,
            Outcome::Finished(request, Done::Holders(vec![(host(1), 3), (host(2), 0)]))
        );
        let (late, _) = r.who_has(vec![host(1), host(2)], "bob", 500).unwrap();
        r.replied(
            host(2),
            Message::Holds {
                request: late,
                deltas: 4,
            },
        );
        assert_eq!(
            r.expire(500),
            vec![(late, Done::Holders(vec![(host(2), 4)]))]
        );
        assert!(r.who_has(vec![], "x", 1).is_none());
    }

    #[test]
    fn a_reconciliations_missing_deltas_come_in_chunks_from_its_peer_only() {
        let mut r = Requests::default();
        let need: Vec<DeltaId> = (0..(SLICE_FETCH as i64 + 1))
            .map(|n| DeltaId::from_bytes([(n % 256) as u8; 32]))
            .collect();
        let sends = r.fetch_missing(host(1), need, 100);
        assert_eq!(sends.len(), 2);
        let Message::Fetch { request, ids } = &sends[1].1 else {
            panic!("a fetch")
        };
        assert_eq!(ids.len(), 1);
        let deltas = vec![delta(1)];
        assert_eq!(
            r.replied(host(2), fetched(*request, deltas.clone())),
            Outcome::Nothing
        );
        assert_eq!(
            r.replied(host(1), fetched(*request, deltas.clone())),
            Outcome::Store(deltas)
        );
        // The other chunk expires without an answer to give.
        assert!(r.expire(100).is_empty());
        assert!(r.pending.is_empty());
    }
}
