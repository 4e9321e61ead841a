//! A deterministic simulation of many peers on a virtual clock with a seeded RNG: messages
//! are dropped, duplicated, delayed (so reordered) and partitioned while writes happen; then
//! the faults heal and every node must end up holding the same deltas.
//!
//! Each node's driver is a few lines here: an in-memory journal stands in for the store, and
//! the state machine under test is the real [`Peer`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use hypha_primitives::{
    DeltaBuilder, DeltaId, Hlc, HostId, KeyPair, Pointer, Seq, Stamp, StampedDelta,
};

use crate::{Coverage, Input, Message, Output, Peer, PeerConfig};

/// How nodes are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Everyone subscribes to everyone.
    FullMesh,
    /// Node i talks only to i - 1 and i + 1: convergence needs relaying.
    Chain,
}

/// What a simulation run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Local writes per node.
    pub writes_per_node: usize,
    /// How nodes are connected.
    pub topology: Topology,
    /// Probability that a message is lost while faults are on.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Largest delivery delay (ms); delays are uniform, so messages reorder.
    pub max_delay_ms: u64,
    /// Whether the nodes are split in two halves while faults are on.
    pub partition: bool,
    /// Writes and faults happen in `0..fault_ms`; after that the network is reliable.
    pub fault_ms: u64,
    /// How long after the faults end the nodes have to converge.
    pub settle_ms: u64,
    /// Tick interval of every node (ms).
    pub tick_ms: u64,
    /// The protocol's own settings.
    pub peer: PeerConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 4,
            writes_per_node: 8,
            topology: Topology::FullMesh,
            drop: 0.2,
            duplicate: 0.1,
            max_delay_ms: 50,
            partition: true,
            fault_ms: 2_000,
            settle_ms: 10_000,
            tick_ms: 100,
            peer: PeerConfig {
                announce_every_ms: 300,
                request_timeout_ms: 500,
                page_size: 4,
                peer_timeout_ms: 1_500,
                ..PeerConfig::default()
            },
        }
    }
}

/// Signed, stamped deltas for the simulation, made once: signing is the slow part.
#[derive(Debug)]
pub struct DeltaPool {
    hosts: Vec<KeyPair>,
    /// Per host, its writes in seq order.
    writes: Vec<Vec<StampedDelta>>,
}

impl DeltaPool {
    /// `hosts` node keys, each with `per_host` writes stamped 1, 2, 3…
    pub fn new(hosts: usize, per_host: usize) -> Self {
        let keys: Vec<KeyPair> = (0..hosts)
            .map(|i| KeyPair::from_seed([i as u8 + 1; 32]))
            .collect();
        let writes = keys
            .iter()
            .enumerate()
            .map(|(h, key)| {
                (1..=per_host as u64)
                    .map(|seq| {
                        let delta = DeltaBuilder::new(Hlc::new(seq, h as u32))
                            .pointer(Pointer::entity("subject", format!("e{}", seq % 3), "p"))
                            .pointer(Pointer::value("p", (h as i64) * 1000 + seq as i64))
                            .sign(key)
                            .expect("valid delta");
                        let stamp = Stamp::sign(delta.id(), Seq::new(seq), key);
                        StampedDelta {
                            delta,
                            stamps: vec![stamp],
                        }
                    })
                    .collect()
            })
            .collect();
        Self {
            hosts: keys,
            writes,
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    /// Deltas written.
    pub deltas: usize,
    /// Messages delivered (after drops, including duplicates).
    pub messages: usize,
    /// `Deltas` messages delivered, per delta written.
    pub delta_messages_per_delta: f64,
    /// Virtual time at which every node held everything (ms).
    pub converged_at_ms: Option<u64>,
    /// Per node, the deltas in the order it stored them (for checking that every arrival
    /// order materializes the same views).
    pub arrivals: Vec<Vec<StampedDelta>>,
}

enum Event {
    Deliver {
        to: usize,
        from: HostId,
        message: Message,
    },
    Tick(usize),
    /// A local write on a node: its next write in seq order.
    Write(usize),
}

/// splitmix64: a tiny, well-distributed, seedable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

struct Node {
    peer: Peer,
    journal: HashMap<DeltaId, StampedDelta>,
    by_origin: BTreeMap<(HostId, Seq), DeltaId>,
    /// What it stored, in order.
    arrivals: Vec<DeltaId>,
}

struct Sim<'p> {
    config: SimConfig,
    pool: &'p DeltaPool,
    rng: Rng,
    now: u64,
    order: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<Node>,
    index_of: HashMap<HostId, usize>,
    stats: SimStats,
}

impl Sim<'_> {
    fn schedule(&mut self, at: u64, event: Event) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order)));
        self.events.insert(self.order, event);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        a != b && (self.config.topology == Topology::FullMesh || a.abs_diff(b) == 1)
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.config.partition
            && self.now < self.config.fault_ms
            && (a < self.config.nodes / 2) != (b < self.config.nodes / 2)
    }

    fn deliver(&mut self, from: usize, to: usize, message: Message) {
        if !self.linked(from, to) || self.partitioned(from, to) {
            return;
        }
        let faulty = self.now < self.config.fault_ms;
        if faulty && self.rng.chance(self.config.drop) {
            return;
        }
        let copies = if self.rng.chance(self.config.duplicate) {
            2
        } else {
            1
        };
        let sender = self.nodes[from].peer.id();
        for _ in 0..copies {
            let at = self.now + 1 + self.rng.below(self.config.max_delay_ms);
            self.schedule(
                at,
                Event::Deliver {
                    to,
                    from: sender,
                    message: message.clone(),
                },
            );
        }
    }

    /// Feeds one input to node `n` and carries out everything it asks for.
    fn drive(&mut self, n: usize, input: Input) {
        let mut work = vec![input];
        while let Some(input) = work.pop() {
            let outputs = self.nodes[n].peer.handle(self.now, input);
            for output in outputs {
                match output {
                    Output::Publish(message) => {
                        for to in 0..self.nodes.len() {
                            self.deliver(n, to, message.clone());
                        }
                    }
                    Output::Send { to, message } => {
                        if let Some(&to) = self.index_of.get(&to) {
                            self.deliver(n, to, message);
                        }
                    }
                    Output::Store { deltas, .. } => {
                        for stamped in deltas {
                            let node = &mut self.nodes[n];
                            let id = stamped.delta.id();
                            if node.journal.contains_key(&id) {
                                continue;
                            }
                            for stamp in &stamped.stamps {
                                node.by_origin.insert((stamp.host(), stamp.seq()), id);
                            }
                            node.journal.insert(id, stamped.clone());
                            node.arrivals.push(id);
                            work.push(Input::Stored(stamped));
                        }
                    }
                    Output::Event(_) => {}
                    // Fetch, who-has and reconciliation are asked only by the node's API
                    // and by partial replicas, which the simulation does not run.
                    Output::Answer { .. }
                    | Output::Replied { .. }
                    | Output::Reconcile { .. }
                    | Output::Learnt(_) => {}
                    Output::Serve {
                        to,
                        request,
                        ranges,
                        limit,
                    } => {
                        let node = &self.nodes[n];
                        let mut deltas = Vec::new();
                        let mut more = false;
                        'ranges: for (host, from, upto) in ranges {
                            for (_, id) in node.by_origin.range((host, from)..=(host, upto)) {
                                if deltas.len() >= limit {
                                    more = true;
                                    break 'ranges;
                                }
                                deltas.push(node.journal[id].clone());
                            }
                        }
                        if let Some(&to) = self.index_of.get(&to) {
                            self.deliver(
                                n,
                                to,
                                Message::CatchUpPage {
                                    request,
                                    deltas,
                                    more,
                                },
                            );
                        }
                    }
                }
            }
        }
    }

    fn all_hold_everything(&self) -> bool {
        let total = self.config.nodes * self.config.writes_per_node;
        self.nodes.iter().all(|n| n.journal.len() == total)
    }
}

/// Runs one seeded simulation; an error describes what did not converge and names the seed.
pub fn run(seed: u64, config: &SimConfig, pool: &DeltaPool) -> Result<SimStats, String> {
    assert!(
        pool.hosts.len() >= config.nodes
            && pool
                .writes
                .iter()
                .all(|w| w.len() >= config.writes_per_node)
    );
    let nodes: Vec<Node> = (0..config.nodes)
        .map(|i| Node {
            peer: Peer::new(
                pool.hosts[i].host_id(),
                Coverage::new(),
                config.peer.clone(),
            ),
            journal: HashMap::new(),
            by_origin: BTreeMap::new(),
            arrivals: Vec::new(),
        })
        .collect();
    let index_of = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.peer.id(), i))
        .collect();
    let mut sim = Sim {
        config: config.clone(),
        pool,
        rng: Rng(seed),
        now: 0,
        order: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        nodes,
        index_of,
        stats: SimStats {
            deltas: config.nodes * config.writes_per_node,
            ..SimStats::default()
        },
    };
    for n in 0..config.nodes {
        for m in 0..config.nodes {
            if sim.linked(n, m) {
                let peer = sim.nodes[m].peer.id();
                sim.drive(n, Input::PeerUp(peer));
            }
        }
        let first_tick = sim.rng.below(config.tick_ms);
        sim.schedule(first_tick, Event::Tick(n));
        for _ in 0..config.writes_per_node {
            let at = sim.rng.below(config.fault_ms.max(1));
            sim.schedule(at, Event::Write(n));
        }
    }
    // Each node writes its pool entries in seq order, whenever its write events come up.
    let end = config.fault_ms + config.settle_ms;
    let mut next_write = vec![0usize; config.nodes];
    while let Some(Reverse((at, order))) = sim.queue.pop() {
        if at > end {
            break;
        }
        sim.now = at;
        let Some(event) = sim.events.remove(&order) else {
            continue;
        };
        match event {
            Event::Deliver { to, from, message } => {
                sim.stats.messages += 1;
                if matches!(message, Message::Deltas(_)) {
                    sim.stats.delta_messages_per_delta += 1.0;
                }
                sim.drive(to, Input::Received { from, message });
            }
            Event::Tick(n) => {
                sim.drive(n, Input::Tick);
                let next = sim.now + config.tick_ms;
                sim.schedule(next, Event::Tick(n));
            }
            Event::Write(n) => {
                let w = next_write[n];
                next_write[n] += 1;
                let stamped = sim.pool.writes[n][w].clone();
                let id = stamped.delta.id();
                let node = &mut sim.nodes[n];
                node.by_origin
                    .insert((stamped.stamps[0].host(), stamped.stamps[0].seq()), id);
                node.journal.insert(id, stamped.clone());
                node.arrivals.push(id);
                sim.drive(n, Input::Stored(stamped));
            }
        }
        if sim.stats.converged_at_ms.is_none()
            && sim.now >= config.fault_ms
            && sim.all_hold_everything()
        {
            sim.stats.converged_at_ms = Some(sim.now);
        }
    }
    sim.stats.delta_messages_per_delta /= sim.stats.deltas.max(1) as f64;
    let reference: BTreeSet<DeltaId> = sim.nodes[0].journal.keys().copied().collect();
    for (i, node) in sim.nodes.iter().enumerate() {
        let held: BTreeSet<DeltaId> = node.journal.keys().copied().collect();
        if held.len() != sim.stats.deltas || held != reference {
            return Err(format!(
                "seed {seed}: node {i} holds {} of {} deltas after {} ms ({config:?})",
                held.len(),
                sim.stats.deltas,
                end
            ));
        }
        if node.peer.coverage() != sim.nodes[0].peer.coverage() {
            return Err(format!(
                "seed {seed}: node {i}'s coverage differs from node 0's"
            ));
        }
    }
    sim.stats.arrivals = sim
        .nodes
        .iter()
        .map(|node| {
            node.arrivals
                .iter()
                .map(|id| node.journal[id].clone())
                .collect()
        })
        .collect();
    Ok(sim.stats)
}
