//! Unit tests of the state machine.
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

/// The id of the catch-up request among `out`, if there is one.
fn request_of(out: &[Output]) -> Option<u64> {
    out.iter().find_map(|o| match o {
        Output::Send {
            message: Message::CatchUpRequest { request, .. },
            ..
        } => Some(*request),
        _ => None,
    })
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
    let epoch = peer.peers_epoch();
    // A late, lower announcement does not lower what we know, nor change the snapshot.
    peer.handle(
        0,
        Input::Received {
            from: a,
            message: Message::Coverage(vector(1)),
        },
    );
    assert_eq!(peer.peers_epoch(), epoch, "nothing rose");
    assert_eq!(peer.holders(me.host_id(), Seq::new(2)), 2);
    assert_eq!(peer.holders(me.host_id(), Seq::new(3)), 1);
    assert_eq!(peer.holders(me.host_id(), Seq::new(6)), 0);
    // The snapshot readers share answers the same.
    let marks = peer.watermarks();
    for seq in 1..=6 {
        let seq = Seq::new(seq);
        assert_eq!(
            marks.holders(me.host_id(), seq),
            peer.holders(me.host_id(), seq)
        );
    }
    peer.handle(
        0,
        Input::Received {
            from: b,
            message: Message::Coverage(vector(3)),
        },
    );
    assert!(peer.peers_epoch() > epoch, "b's coverage rose");
    let epoch = peer.peers_epoch();
    peer.handle(0, Input::PeerDown(a));
    assert!(peer.peers_epoch() > epoch, "a left");
    assert_eq!(peer.holders(me.host_id(), Seq::new(2)), 1);
    assert_eq!(peer.watermarks().holders(me.host_id(), Seq::new(2)), 1);
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
        continues: false,
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
            message: Message::CatchUpRequest {
                request: 7,
                have,
                pages: 1,
            },
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
                limit: 2,
                pages: 1,
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

#[test]
fn catch_up_pauses_while_the_store_is_behind_and_resumes_as_it_drains() {
    let me = KeyPair::from_seed([1; 32]);
    let other = KeyPair::from_seed([2; 32]);
    let config = PeerConfig {
        page_size: 2,
        max_unstored: 4,
        ..PeerConfig::default()
    };
    let mut peer = Peer::new(me.host_id(), Coverage::new(), config);
    let from = other.host_id();
    let mut request = request_of(&peer.handle(0, Input::PeerUp(from))).expect("a first request");
    let deltas: Vec<StampedDelta> = (1..=6).map(|n| stamped(&other, n)).collect();
    let page = |request, n: usize| Input::Received {
        from,
        message: Message::CatchUpPage {
            request,
            deltas: deltas[n..n + 2].to_vec(),
            more: true,
            continues: false,
        },
    };
    // Two pages are handed to the store and not yet stored: four waiting, the limit.
    request = request_of(&peer.handle(1, page(request, 0))).expect("room for another page");
    let out = peer.handle(2, page(request, 2));
    assert_eq!(requests(&out), 0, "paused: four deltas wait to be stored");
    // Still paused after one is stored (three wait), resumed at two (half the limit).
    let out = peer.handle(3, Input::Stored(deltas[0].clone()));
    assert_eq!(requests(&out), 0);
    let out = peer.handle(4, Input::Stored(deltas[1].clone()));
    let Some(Output::Send {
        message: Message::CatchUpRequest { have, .. },
        ..
    }) = out.iter().find(|o| {
        matches!(
            o,
            Output::Send {
                message: Message::CatchUpRequest { .. },
                ..
            }
        )
    })
    else {
        panic!("resumed: {out:?}")
    };
    assert_eq!(
        have.get(&from),
        Some(&Seq::new(4)),
        "it asks past what waits in the store's queue"
    );
    // A slow store that keeps making progress is not mistaken for a lost batch: what waits
    // is not asked for again while stamps keep being stored; without progress it is.
    let timeout = PeerConfig::default().request_timeout_ms;
    let announce = || Input::Received {
        from,
        message: Message::Coverage([(from, Seq::new(6))].into_iter().collect()),
    };
    let _ = peer.handle(timeout, Input::Stored(deltas[2].clone()));
    let asked = |out: &[Output]| {
        out.iter().find_map(|o| match o {
            Output::Send {
                message: Message::CatchUpRequest { have, .. },
                ..
            } => have.get(&from).copied(),
            _ => None,
        })
    };
    let out = peer.handle(timeout + 10, announce());
    assert_eq!(
        asked(&out),
        Some(Seq::new(4)),
        "progress: the queue is trusted"
    );
    let out = peer.handle(3 * timeout, Input::Tick);
    assert_eq!(
        asked(&out),
        Some(Seq::new(3)),
        "no progress for a timeout: what was not stored is asked for again"
    );
}

#[test]
fn an_answer_streams_several_pages_and_only_its_last_asks_again() {
    let me = KeyPair::from_seed([1; 32]);
    let other = KeyPair::from_seed([2; 32]);
    let mut peer = Peer::new(
        me.host_id(),
        Coverage::new(),
        PeerConfig {
            page_size: 2,
            pages_in_flight: 3,
            ..PeerConfig::default()
        },
    );
    let from = other.host_id();
    let out = peer.handle(0, Input::PeerUp(from));
    // The peer holds ten of its own: it stays ahead until they are all here.
    let ahead: CoverageVector = [(from, Seq::new(10))].into_iter().collect();
    peer.handle(
        0,
        Input::Received {
            from,
            message: Message::Coverage(ahead),
        },
    );
    let request = request_of(&out).expect("a first request");
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                message: Message::CatchUpRequest { pages: 3, .. },
                ..
            }
        )),
        "it asks for as many pages as it takes in flight: {out:?}"
    );
    let page = |n: u64, more: bool, continues: bool| Input::Received {
        from,
        message: Message::CatchUpPage {
            request,
            deltas: vec![stamped(&other, n)],
            more,
            continues,
        },
    };
    // Pages that continue the answer store their deltas and ask for nothing.
    for (at, n) in [(1, 1), (2, 2)] {
        let out = peer.handle(at, page(n, false, true));
        assert!(request_of(&out).is_none(), "{out:?}");
        assert!(out.iter().any(|o| matches!(o, Output::Store { .. })));
    }
    // Past the request's timeout but not the last page's, it has not timed out; past the
    // last page's, it has, and the node asks again of the peer still ahead of it.
    let timeout = PeerConfig::default().request_timeout_ms;
    assert!(request_of(&peer.handle(timeout + 1, Input::Tick)).is_none());
    let late = request_of(&peer.handle(timeout + 3, Input::Tick));
    assert!(late.is_some(), "timed out from its last page");
    // The last page of the new answer, cut short, asks again.
    let last = Input::Received {
        from,
        message: Message::CatchUpPage {
            request: late.unwrap(),
            deltas: vec![stamped(&other, 3)],
            more: true,
            continues: false,
        },
    };
    assert!(request_of(&peer.handle(timeout + 4, last)).is_some());
}
