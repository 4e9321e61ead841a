//! The ZeroMQ driver with real sockets on 127.0.0.1 and real journals in temp dirs: chain
//! propagation, catch-up of a late joiner, confidence waits, membership events, and a
//! refused impostor.

use std::time::{Duration, Instant};

use hypha_delta_store::{Durability, Store};
use hypha_net::{Event, NetConfig, Network, PeerConfig};
use hypha_primitives::{Delta, DeltaBuilder, DeltaId, Hlc, KeyPair, Pointer};

struct Node {
    store: Store,
    key: KeyPair,
    net: Network,
    _dir: tempfile::TempDir,
}

fn config(peers: Vec<String>) -> NetConfig {
    NetConfig {
        listen: "tcp://127.0.0.1:0".into(),
        publish: "tcp://127.0.0.1:0".into(),
        peers,
        protocol: PeerConfig {
            announce_every_ms: 100,
            request_timeout_ms: 1_000,
            page_size: 256,
            peer_timeout_ms: 1_500,
            ..PeerConfig::default()
        },
        tick_ms: 20,
        // Topologies here are what each test dials; learning peers has its own test.
        max_learnt_peers: 0,
        ..NetConfig::default()
    }
}

async fn node(seed: u8, peers: Vec<String>) -> Node {
    node_with(seed, peers, None).await
}

/// A node replicating only `slice`, if given.
async fn node_with(seed: u8, peers: Vec<String>, slice: Option<&str>) -> Node {
    node_configured(seed, peers, |config| {
        config.replicate = slice.map(|s| s.parse().expect("a valid filter"));
    })
    .await
}

/// A node with the tests' configuration, adjusted by `adjust`.
async fn node_configured(
    seed: u8,
    peers: Vec<String>,
    adjust: impl FnOnce(&mut NetConfig),
) -> Node {
    // RUST_LOG=hypha_net=debug shows the links at work.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let key = KeyPair::from_seed([seed; 32]);
    let mut config = config(peers);
    adjust(&mut config);
    let net = Network::start(store.clone(), key.clone(), config)
        .await
        .unwrap();
    Node {
        store,
        key,
        net,
        _dir: dir,
    }
}

fn delta(key: &KeyPair, n: u64) -> Delta {
    DeltaBuilder::new(Hlc::new(1_700_000_000_000 + n, 0))
        .pointer(Pointer::entity("subject", format!("e{}", n % 10), "n"))
        .pointer(Pointer::value("n", n as i64))
        .sign(key)
        .unwrap()
}

/// Writes `count` deltas on `node` as local writes (stamped by its host key).
fn write(node: &Node, from: u64, count: u64) -> Vec<DeltaId> {
    let deltas: Vec<Delta> = (from..from + count).map(|n| delta(&node.key, n)).collect();
    let ids = deltas.iter().map(Delta::id).collect();
    node.store.put_local_batch(deltas, &node.key).unwrap();
    ids
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

fn holds(store: &Store, ids: &[DeltaId]) -> bool {
    ids.iter().all(|id| store.get(*id).unwrap().is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_crosses_a_chain_and_a_late_joiner_catches_up() {
    let a = node(1, vec![]).await;
    let mut a_events = a.net.events();
    let b = node(2, vec![a.net.endpoints().router.clone()]).await;
    let c = node(3, vec![b.net.endpoints().router.clone()]).await;

    // Written before anyone is linked: catch-up, not PUB, must carry these.
    let early = write(&a, 0, 50);
    eventually("the chain to converge", Duration::from_secs(20), || {
        holds(&c.store, &early)
    })
    .await;
    // A live write crosses A→B→C by relay (C never dials A).
    let live = write(&a, 50, 1);
    eventually("a live write to reach C", Duration::from_secs(10), || {
        holds(&c.store, &live)
    })
    .await;
    // A learns that B linked to it.
    let joined = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match a_events.recv().await {
                Ok(Event::PeerJoined(host)) if host == b.key.host_id() => return,
                Ok(_) => continue,
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await;
    assert!(joined.is_ok(), "A saw no join event for B");
    assert_eq!(a.net.peers().await, vec![b.key.host_id()]);

    // A fresh node joining C catches up everything, over two hops.
    let d = node(4, vec![c.net.endpoints().router.clone()]).await;
    let all: Vec<DeltaId> = early.iter().chain(&live).copied().collect();
    eventually("a late joiner to catch up", Duration::from_secs(20), || {
        holds(&d.store, &all)
    })
    .await;
    for n in [a, b, c, d] {
        n.net.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_can_wait_for_peers_and_times_out_with_what_it_reached() {
    let a = node(11, vec![]).await;
    let b = node(12, vec![a.net.endpoints().router.clone()]).await;
    let c = node(13, vec![a.net.endpoints().router.clone()]).await;
    let start = Instant::now();
    while a.net.peers().await.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "peers never linked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = a
        .store
        .put_local_batch(vec![delta(&a.key, 1)], &a.key)
        .unwrap();
    assert_eq!(stored.len(), 1);
    let seq = last_seq(&a);
    let (holders, reached) = a
        .net
        .await_confidence(a.key.host_id(), seq, 2, Duration::from_secs(10))
        .await;
    assert!(reached, "only {holders} peers confirmed");
    assert_eq!(holders, 2);
    // With one peer gone, asking for two returns at the deadline with one.
    c.net.stop().await;
    a.store
        .put_local_batch(vec![delta(&a.key, 2)], &a.key)
        .unwrap();
    let seq = last_seq(&a);
    let start = Instant::now();
    let (holders, reached) = a
        .net
        .await_confidence(a.key.host_id(), seq, 2, Duration::from_millis(1_500))
        .await;
    assert!(!reached);
    assert_eq!(holders, 1);
    assert!(start.elapsed() >= Duration::from_millis(1_400));
    a.net.stop().await;
    b.net.stop().await;
}

/// The highest origin seq the node has stamped itself.
fn last_seq(node: &Node) -> hypha_primitives::Seq {
    let coverage = hypha_net::Coverage::of_store(&node.store).unwrap();
    coverage.highest(node.key.host_id()).unwrap()
}

/// A peer that completes the handshake honestly, then sends forged deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_forged_deltas_is_disconnected_and_nothing_forged_is_stored() {
    use hypha_delta_store::StampedDelta;
    use hypha_net::raw::RawPeer;
    use hypha_net::Message;

    let victim = node(21, vec![]).await;
    let mut events = victim.net.events();
    let mallory = KeyPair::from_seed([22; 32]);
    // On loopback neither side asks for encryption: frames stay plain.
    let mut raw = RawPeer::handshake(&victim.net.endpoints().router, &mallory, false).await;

    // Deltas whose signatures do not verify: each one's last signature byte flipped.
    let forged: Vec<Delta> = (0..3).map(|n| forge(&mallory, 100 + n)).collect();
    for delta in &forged {
        raw.send(&Message::Deltas(vec![StampedDelta::from(delta.clone())]))
            .await;
    }
    // Mallory joined, then was disconnected past the threshold of three invalid deltas.
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(Event::PeerLeft(host)) if host == mallory.host_id() => return,
                Ok(_) => continue,
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await;
    assert!(left.is_ok(), "mallory was never disconnected");
    // Once banned, even a valid delta from mallory is ignored.
    let honest = delta(&mallory, 200);
    raw.send(&Message::Deltas(vec![StampedDelta::from(honest.clone())]))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for delta in forged.iter().chain([&honest]) {
        assert!(victim.store.get(delta.id()).unwrap().is_none());
    }
    assert!(victim.net.peers().await.is_empty());

    // A banned host that handshakes again gets a welcome but, after its proof, no
    // publish key and no link.
    let mut again = RawPeer::handshake(&victim.net.endpoints().router, &mallory, false).await;
    let answered = again.next(Duration::from_millis(500)).await;
    assert!(answered.is_none(), "a banned host got {answered:?}");
    victim.net.stop().await;
}

/// A delta by `key` whose signature does not verify (its last byte flipped).
fn forge(key: &KeyPair, n: u64) -> Delta {
    let mut bytes = delta(key, n).encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    Delta::decode(&bytes).expect("well-formed, badly signed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_events_subscriber_sees_joins_that_happened_before_it_subscribed() {
    let a = node(31, vec![]).await;
    let b = node(32, vec![a.net.endpoints().router.clone()]).await;
    // Let the link complete before anyone listens on B.
    let start = Instant::now();
    while b.net.peers().await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "never linked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = b.net.events();
    let joined = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(Event::PeerJoined(host)) if host == a.key.host_id() => return,
                Ok(_) => continue,
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await;
    assert!(joined.is_ok(), "the join before subscribing was lost");
    a.net.stop().await;
    b.net.stop().await;
}

/// Every delta `store` holds, by id.
fn held(store: &Store) -> std::collections::HashSet<DeltaId> {
    store
        .scan_arrival(None)
        .map(|s| s.unwrap().delta.id())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_replica_holds_exactly_its_slice_and_fetches_or_locates_the_rest() {
    let a = node(21, vec![]).await;
    // Written before B exists: B's reconciliation, not PUB, must bring its slice.
    let early = write(&a, 0, 200);
    let slice: Vec<DeltaId> = early.iter().skip(1).step_by(10).copied().collect();
    let b = node_with(
        22,
        vec![a.net.endpoints().router.clone()],
        Some(r#"{"in": ["e1", {"var": "targets"}]}"#),
    )
    .await;
    eventually("B to reconcile its slice", Duration::from_secs(20), || {
        holds(&b.store, &slice)
    })
    .await;
    // Live writes: only the slice's reach B.
    let live = write(&a, 200, 20);
    eventually(
        "B to receive its live slice",
        Duration::from_secs(10),
        || holds(&b.store, &[live[1], live[11]]),
    )
    .await;
    // Give the other live writes time to arrive, were they to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: std::collections::HashSet<DeltaId> =
        slice.iter().chain([&live[1], &live[11]]).copied().collect();
    assert_eq!(held(&b.store), expected, "exactly the slice");

    // Fetch by id brings a delta outside the slice, because it was asked for.
    let outside = early[2];
    let fetched = b.net.fetch(vec![outside], Duration::from_secs(5)).await;
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].delta.id(), outside);
    assert!(holds(&b.store, &[outside]), "a fetched delta is stored");
    let unknown = DeltaId::from_bytes([3; 32]);
    assert!(b
        .net
        .fetch(vec![unknown], Duration::from_secs(5))
        .await
        .is_empty());

    // Who has entity e3? A does, from its entity index: 22 of the 220 writes.
    let holders = b.net.who_has("e3", Duration::from_secs(5)).await;
    assert_eq!(holders, vec![(a.key.host_id(), 22)]);
    let holders = a.net.who_has("e3", Duration::from_secs(5)).await;
    assert_eq!(holders, vec![(b.key.host_id(), 0)], "B holds none of e3");
    for n in [a, b] {
        n.net.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_learn_peers_from_each_other_up_to_a_cap() {
    let learning = |cap: usize| {
        move |config: &mut NetConfig| {
            config.max_learnt_peers = cap;
            config.exchange_every_ms = 200;
        }
    };
    let a = node_configured(31, vec![], learning(8)).await;
    let b = node_configured(32, vec![a.net.endpoints().router.clone()], learning(8)).await;
    // C knows only B, and learns A from B's list.
    let c = node_configured(33, vec![b.net.endpoints().router.clone()], learning(8)).await;
    let mut linked = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        linked = c.net.peers().await;
        if linked.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut expected = vec![a.key.host_id(), b.key.host_id()];
    expected.sort();
    assert_eq!(linked, expected, "C linked to A, which it learnt from B");
    for n in [a, b, c] {
        n.net.stop().await;
    }
    // With a cap of 0 a chain stays a chain.
    let x = node_configured(35, vec![], learning(0)).await;
    let y = node_configured(36, vec![x.net.endpoints().router.clone()], learning(0)).await;
    let z = node_configured(37, vec![y.net.endpoints().router.clone()], learning(0)).await;
    eventually("Y to link to both", Duration::from_secs(10), || {
        futures_peers(&y) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(z.net.peers().await, vec![y.key.host_id()]);
    for n in [x, y, z] {
        n.net.stop().await;
    }
}

/// How many peers `node` is linked to, from a synchronous check.
fn futures_peers(node: &Node) -> usize {
    let net = &node.net;
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(net.peers())).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_links_carry_deltas_and_an_eavesdropper_reads_nothing() {
    use hypha_net::Encryption;
    use zeromq::{Socket, SocketRecv};
    let encrypted = |mode: Encryption| move |config: &mut NetConfig| config.encryption = mode;
    let a = node_configured(41, vec![], encrypted(Encryption::On)).await;
    // Someone who reaches A's PUB socket and subscribes to everything.
    let mut eavesdropper = zeromq::SubSocket::new();
    eavesdropper.subscribe("").await.unwrap();
    eavesdropper
        .connect(&a.net.endpoints().publish)
        .await
        .unwrap();
    // B asks for encryption too; C would not, but A's wish is enough.
    let b = node_configured(
        42,
        vec![a.net.endpoints().router.clone()],
        encrypted(Encryption::On),
    )
    .await;
    let c = node_configured(
        43,
        vec![a.net.endpoints().router.clone()],
        encrypted(Encryption::Off),
    )
    .await;
    eventually("both links", Duration::from_secs(10), || {
        futures_peers(&a) == 2
    })
    .await;
    let secret = "a-value-nobody-else-may-read";
    let delta = DeltaBuilder::new(Hlc::new(1_700_000_000_000, 0))
        .pointer(Pointer::entity("subject", "vault", "code"))
        .pointer(Pointer::value("code", secret))
        .sign(&a.key)
        .unwrap();
    let id = delta.id();
    a.store.put_local_batch(vec![delta], &a.key).unwrap();
    eventually("B and C to receive it", Duration::from_secs(10), || {
        holds(&b.store, &[id]) && holds(&c.store, &[id])
    })
    .await;
    // What the eavesdropper got: sealed frames only, the value nowhere.
    // (Coverage announcements keep coming: listen for a while, not until it is quiet.)
    let mut frames = 0;
    let listening = Instant::now();
    while listening.elapsed() < Duration::from_millis(500) {
        let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(200), eavesdropper.recv()).await
        else {
            break;
        };
        let parts = message.into_vec();
        let payload = parts.last().unwrap();
        assert_eq!(payload[0], 1, "every PUB frame is sealed");
        let text = String::from_utf8_lossy(payload);
        assert!(!text.contains(secret), "the value travelled in the clear");
        frames += 1;
    }
    assert!(frames > 0, "the eavesdropper was connected and got frames");
    // Catch-up over the (sealed) request/reply link works too: D joins later.
    let d = node_configured(
        44,
        vec![b.net.endpoints().router.clone()],
        encrypted(Encryption::On),
    )
    .await;
    eventually("D to catch up through B", Duration::from_secs(10), || {
        holds(&d.store, &[id])
    })
    .await;
    for n in [a, b, c, d] {
        n.net.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learnt_peer_that_never_answers_frees_its_slot() {
    use hypha_net::raw::RawPeer;
    use hypha_net::Message;

    // The learner may dial one learnt peer at a time.
    let learner = node_configured(51, vec![], |config| config.max_learnt_peers = 1).await;
    let live = node_configured(52, vec![], |config| config.max_learnt_peers = 0).await;
    // A peer (played by hand) lists a dead address, then a live one.
    let teller = KeyPair::from_seed([53; 32]);
    let mut raw = RawPeer::handshake(&learner.net.endpoints().router, &teller, false).await;
    let nobody = KeyPair::from_seed([54; 32]).host_id();
    raw.send(&Message::Peers(vec![(nobody, "tcp://127.0.0.1:9".into())]))
        .await;
    let live_entry = (live.key.host_id(), live.net.endpoints().router.clone());
    // The slot is taken: the live peer is not dialled yet…
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send(&Message::Peers(vec![live_entry.clone()])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(learner.net.peers().await.is_empty(), "the cap of one held");
    // …until the dead address has failed five times and is given up.
    let start = Instant::now();
    loop {
        raw.send(&Message::Peers(vec![live_entry.clone()])).await;
        if learner.net.peers().await.contains(&live.key.host_id()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the dead address never freed its slot"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    learner.net.stop().await;
    live.net.stop().await;
}

/// Whether a frame carrying delta `id` that opens under `key` arrives on `sub` within 3 s.
async fn opens_under(
    sub: &mut zeromq::SubSocket,
    key: &hypha_net::seal::GroupKey,
    id: DeltaId,
) -> bool {
    use zeromq::SocketRecv;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await
        else {
            continue;
        };
        let parts = message.into_vec();
        let aad = [parts[0].as_ref(), parts[1].as_ref()].concat();
        if let Ok(plain) = key.open(&aad, &parts[2][1..]) {
            if let Ok(hypha_net::Message::Deltas(deltas)) = hypha_net::wire::decode(&plain, 1 << 20)
            {
                if deltas.iter().any(|d| d.delta.id() == id) {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_peer_loses_the_publish_key() {
    use hypha_delta_store::StampedDelta;
    use hypha_net::raw::RawPeer;
    use hypha_net::{Encryption, Message};
    use zeromq::{Socket, SubSocket};

    let sealed = |config: &mut NetConfig| config.encryption = Encryption::On;
    let victim = node_configured(61, vec![], sealed).await;
    let honest = node_configured(62, vec![victim.net.endpoints().router.clone()], sealed).await;
    eventually("the honest peer to link", Duration::from_secs(10), || {
        futures_peers(&victim) == 1
    })
    .await;
    // Mallory links properly (encrypted) and gets the publish key…
    let mallory = KeyPair::from_seed([63; 32]);
    let mut raw = RawPeer::handshake(&victim.net.endpoints().router, &mallory, true).await;
    let stolen = raw
        .publish_key(Duration::from_secs(5))
        .await
        .expect("a publish-key frame")
        .expect("a sealed stream's key");
    let mut sub = SubSocket::new();
    sub.subscribe("").await.unwrap();
    sub.connect(&victim.net.endpoints().publish).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // …with which it reads the victim's stream.
    let before = write(&victim, 0, 1)[0];
    assert!(
        opens_under(&mut sub, &stolen, before).await,
        "mallory read the stream"
    );

    // Mallory sends forged deltas, sealed like honest messages, and is banned.
    for n in 0..3 {
        raw.send(&Message::Deltas(vec![StampedDelta::from(forge(
            &mallory,
            100 + n,
        ))]))
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The key was replaced: mallory's no longer opens the stream; the honest peer goes on.
    let after = write(&victim, 1, 1)[0];
    assert!(
        !opens_under(&mut sub, &stolen, after).await,
        "the old key still opens"
    );
    eventually(
        "the honest peer to get the new write",
        Duration::from_secs(10),
        || holds(&honest.store, &[after]),
    )
    .await;
    victim.net.stop().await;
    honest.net.stop().await;
}

/// A ban is a timed state: an honest node banned (here through a connection that played
/// its identity and sent forgeries) is cut off for the ban, and when it ends both links
/// come back, each redialled by the side that dialled it, and writes cross both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_closed_by_a_ban_come_back_when_it_ends() {
    use hypha_delta_store::StampedDelta;
    use hypha_net::raw::RawPeer;
    use hypha_net::Message;

    let ban = |config: &mut NetConfig| config.ban_ms = 2_000;
    let judge = node_configured(71, vec![], ban).await;
    let judged = node_configured(72, vec![judge.net.endpoints().router.clone()], ban).await;
    let judge_id = judge.key.host_id();
    let judged_id = judged.key.host_id();
    eventually("the two nodes to link", Duration::from_secs(10), || {
        futures_peers(&judge) == 1 && futures_peers(&judged) == 1
    })
    .await;

    // Forgeries under the judged node's identity get it banned by the judge.
    let mut raw = RawPeer::handshake(&judge.net.endpoints().router, &judged.key, false).await;
    for n in 0..3 {
        raw.send(&Message::Deltas(vec![StampedDelta::from(forge(
            &judged.key,
            300 + n,
        ))]))
        .await;
    }
    eventually(
        "the judge to drop the judged node",
        Duration::from_secs(5),
        || !peer_list(&judge).contains(&judged_id),
    )
    .await;
    let banned_at = Instant::now();
    drop(raw);

    // The judged node notices the judge forgot its link (its keepalive goes unanswered),
    // and its redials are refused while the ban lasts.
    eventually(
        "the judged node to drop the judge",
        Duration::from_secs(5),
        || !peer_list(&judged).contains(&judge_id),
    )
    .await;
    if banned_at.elapsed() < Duration::from_millis(1_500) {
        assert!(
            !peer_list(&judge).contains(&judged_id),
            "relinked during the ban"
        );
    }

    // After the ban, both links return and writes cross both ways.
    eventually("both links to return", Duration::from_secs(15), || {
        peer_list(&judge).contains(&judged_id) && peer_list(&judged).contains(&judge_id)
    })
    .await;
    assert!(
        banned_at.elapsed() >= Duration::from_millis(2_000),
        "the ban was cut short"
    );
    let from_judged = write(&judged, 400, 3);
    let from_judge = write(&judge, 500, 3);
    eventually("writes to cross both ways", Duration::from_secs(10), || {
        holds(&judge.store, &from_judged) && holds(&judged.store, &from_judge)
    })
    .await;
    judge.net.stop().await;
    judged.net.stop().await;
}

/// The peers `node` lists as linked now, from a synchronous check.
fn peer_list(node: &Node) -> Vec<hypha_primitives::HostId> {
    let net = &node.net;
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(net.peers()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_does_not_parse_is_refused_input_and_one_in_use_may_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let key = KeyPair::from_seed([60; 32]);
    let nonsense = NetConfig {
        listen: "not an address".into(),
        ..config(Vec::new())
    };
    let Err(error) = Network::start(store.clone(), key.clone(), nonsense).await else {
        panic!("a network on an address that does not parse")
    };
    assert!(error.is_rejected_input(), "{error}");
    assert!(!error.is_retryable(), "{error}");

    let first = node(61, Vec::new()).await;
    let taken = NetConfig {
        listen: first.net.endpoints().router.clone(),
        ..config(Vec::new())
    };
    let Err(error) = Network::start(store, key, taken).await else {
        panic!("a second network on an address in use")
    };
    assert!(error.is_retryable(), "{error}");
    assert!(!error.is_rejected_input(), "{error}");
    first.net.stop().await;
}
