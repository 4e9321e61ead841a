//! A deterministic simulation of many peers on a virtual clock with a seeded RNG: messages
//! are dropped, duplicated, delayed (so reordered) and partitioned while writes happen, and
//! while nodes fetch by id and ask who holds an entity; then the faults heal and every node
//! must end up holding what it should: a full replica every delta, a partial replica its
//! slice (by reconciliation), its own writes and what it fetched.
//!
//! Each node runs the real [`Protocol`](crate::protocol::Protocol), the same code the socket
//! driver runs; an in-memory journal stands in for the store and answers its reads through
//! the same [`serve`](crate::serve) code. Every fetch and who-has must be answered by its
//! deadline, and, once the network is reliable, completely; no honest node may be blamed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use hypha_primitives::{DeltaId, Filter, HostId, StampedDelta};

use crate::journal::Journal;
use crate::protocol::{Action, Protocol};
use crate::requests::Done;
use crate::serve::{self, ReadDone};
use crate::{wire, Input, Message, PeerConfig};

mod journal;
mod pool;

use journal::MemJournal;
pub use pool::DeltaPool;
use pool::Rng;

/// The slice partial replicas keep in the simulation: deltas about entity `e1`.
pub const SLICE: &str = r#"{"in": ["e1", {"var": "targets"}]}"#;

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
    /// How many nodes (the last ones) are partial replicas keeping [`SLICE`].
    pub partial_nodes: usize,
    /// Fetches and who-has questions each node asks while faults are on (each must be
    /// answered by its deadline). Once they are off, every partial replica also fetches
    /// deltas outside its slice and every node asks who holds `e1`, and those answers
    /// must be complete.
    pub calls_per_node: usize,
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
            partial_nodes: 0,
            calls_per_node: 0,
            peer: PeerConfig {
                announce_every_ms: 300,
                request_timeout_ms: 500,
                page_size: 4,
                peer_timeout_ms: 1_500,
                reconcile_every_ms: 1_000,
                reconcile_turn_timeout_ms: 500,
                // Two pages: catch-up pauses often, so pausing and resuming are exercised.
                max_unstored: 8,
                ..PeerConfig::default()
            },
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
    /// Virtual time at which every node held what it should (ms).
    pub converged_at_ms: Option<u64>,
    /// Per node, the deltas in the order it stored them (for checking that every arrival
    /// order materializes the same views).
    pub arrivals: Vec<Vec<StampedDelta>>,
    /// Fetches and who-has questions asked, and answered (all of them, or the run fails).
    pub calls: usize,
    /// Reconciliation turns computed by partial replicas' sessions.
    pub reconcile_turns: usize,
    /// Deltas partial replicas stored from fetches their reconciliations asked for.
    pub reconciled: usize,
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
    /// A read node `n` handed out is done.
    Done(usize, ReadDone),
    /// Deltas node `n` handed to its store are stored (the driver's storing thread).
    Stored(usize, Vec<StampedDelta>),
    /// Node `n`'s user asks its peers something.
    Call(usize, Call),
}

/// A question a node's user asks its peers.
#[derive(Clone, Debug)]
enum Call {
    Fetch { ids: Vec<DeltaId>, complete: bool },
    WhoHas { entity: String, complete: bool },
}

/// A call waiting for its answer.
struct Pending {
    call: Call,
    deadline: u64,
}

struct Node {
    protocol: Protocol,
    journal: MemJournal,
    /// The slice it keeps, if a partial replica.
    slice: Option<Filter>,
    /// Which of the pool's deltas its slice selects, worked out once (the filter is slow
    /// to run in an unoptimized build, and the set is asked after every event).
    kept: Option<HashSet<DeltaId>>,
    /// What it stored because its user fetched it.
    fetched: HashSet<DeltaId>,
    /// Its user's calls, by request id.
    calls: HashMap<u64, Pending>,
}

impl Node {
    /// Whether its slice takes the delta (every simulated delta is the pool's).
    fn keeps(&self, stamped: &StampedDelta) -> bool {
        self.kept
            .as_ref()
            .is_none_or(|kept| kept.contains(&stamped.delta.id()))
    }
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
    /// The first thing that went wrong, if anything did.
    failure: Option<String>,
}

impl Sim<'_> {
    fn schedule(&mut self, at: u64, event: Event) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order)));
        self.events.insert(self.order, event);
    }

    fn fail(&mut self, what: String) {
        self.failure.get_or_insert(what);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        a != b && (self.config.topology == Topology::FullMesh || a.abs_diff(b) == 1)
    }

    fn neighbours(&self, n: usize) -> Vec<HostId> {
        let mut peers: Vec<HostId> = (0..self.nodes.len())
            .filter(|m| self.linked(n, *m))
            .map(|m| self.nodes[m].protocol.peer().id())
            .collect();
        peers.sort();
        peers
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
        let sender = self.nodes[from].protocol.peer().id();
        // The network carries bytes: every message crosses the wire encoding, batch proofs
        // included, exactly as between real nodes.
        let bytes = wire::encode(&message);
        let message = wire::decode(&bytes, wire::DEFAULT_MAX_MESSAGE_BYTES)
            .expect("a message the protocol sent decodes");
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

    /// Feeds one input to node `n` and carries out everything it leads to.
    fn input(&mut self, n: usize, input: Input) {
        let actions = self.nodes[n].protocol.handle(self.now, input);
        self.carry_out(n, actions);
    }

    /// Carries out node `n`'s actions, and the actions they lead to.
    fn carry_out(&mut self, n: usize, actions: Vec<Action>) {
        let mut work: VecDeque<Action> = actions.into();
        while let Some(action) = work.pop_front() {
            match action {
                Action::Publish(message) => {
                    for to in 0..self.nodes.len() {
                        self.deliver(n, to, message.clone());
                    }
                }
                Action::Request { to, message } | Action::Reply { to, message } => {
                    if let Some(&to) = self.index_of.get(&to) {
                        self.deliver(n, to, message);
                    }
                }
                Action::Store { deltas, .. } => {
                    // The storing thread takes a while, as in the driver.
                    let at = self.now + 1 + self.rng.below(5);
                    self.schedule(at, Event::Stored(n, deltas));
                }
                Action::Read(read) => {
                    if matches!(read, serve::Read::Step { .. }) {
                        self.stats.reconcile_turns += 1;
                    }
                    // Reads happen on other threads in the driver: the answer comes later.
                    let mut done = Vec::new();
                    serve::read(&self.nodes[n].journal, read, |d| done.push(d));
                    let mut at = self.now;
                    for done in done {
                        // Each page of an answer is read after the one before.
                        at += 1 + self.rng.below(5);
                        self.schedule(at, Event::Done(n, done));
                    }
                }
                Action::Finished { request, done } => work.extend(self.finished(n, request, done)),
                Action::Blame { peer, what } => {
                    self.fail(format!("node {n} blamed honest peer {peer}: {what}"));
                }
                Action::Event(_) | Action::Learnt(_) => {}
            }
        }
    }

    /// Stores a delta on node `n`: what the state machine does about it, if it was new.
    fn store(&mut self, n: usize, stamped: StampedDelta) -> Vec<Action> {
        if !self.nodes[n].journal.put(stamped.clone()) {
            return Vec::new();
        }
        self.nodes[n]
            .protocol
            .handle(self.now, Input::Stored(stamped))
    }

    /// Node `n`'s user asks its peers something.
    fn call(&mut self, n: usize, call: Call, timeout: u64) {
        let deadline = self.now + timeout;
        let linked = self.neighbours(n);
        let protocol = &mut self.nodes[n].protocol;
        let (request, actions) = match &call {
            Call::Fetch { ids, .. } => protocol.fetch(linked, ids.clone(), deadline),
            Call::WhoHas { entity, .. } => protocol.who_has(linked, entity, deadline),
        };
        self.stats.calls += 1;
        match request {
            Some(request) => {
                self.nodes[n]
                    .calls
                    .insert(request, Pending { call, deadline });
            }
            None => self.fail(format!("node {n} had no one to ask at {} ms", self.now)),
        }
        self.carry_out(n, actions);
    }

    /// A call of node `n`'s user is answered: check the answer, store what was fetched.
    fn finished(&mut self, n: usize, request: u64, done: Done) -> Vec<Action> {
        let Some(Pending { call, deadline }) = self.nodes[n].calls.remove(&request) else {
            self.fail(format!(
                "node {n} answered request {request}, which nobody made"
            ));
            return Vec::new();
        };
        // Requests expire on ticks.
        if self.now > deadline + self.config.tick_ms {
            self.fail(format!(
                "node {n}'s request {request} answered at {} ms, past its deadline {deadline}",
                self.now
            ));
        }
        let mut actions = Vec::new();
        match (call, done) {
            (Call::Fetch { ids, complete }, Done::Fetched(found)) => {
                let asked: HashSet<DeltaId> = ids.iter().copied().collect();
                let got: HashSet<DeltaId> = found.iter().map(|d| d.delta.id()).collect();
                if !got.is_subset(&asked) || got.len() != found.len() {
                    self.fail(format!(
                        "node {n}'s fetch {request} brought what it did not ask for, or twice"
                    ));
                }
                if complete && got != asked {
                    self.fail(format!(
                        "node {n}'s fetch {request} on a reliable network found {} of {}",
                        got.len(),
                        asked.len()
                    ));
                }
                for stamped in found {
                    self.nodes[n].fetched.insert(stamped.delta.id());
                    actions.extend(self.store(n, stamped));
                }
            }
            (Call::WhoHas { entity, complete }, Done::Holders(answers)) => {
                let linked = self.neighbours(n);
                for (peer, count) in &answers {
                    if !linked.contains(peer) {
                        self.fail(format!(
                            "node {n}'s who-has was answered by {peer}, not asked"
                        ));
                    }
                    let holds = self.index_of[peer];
                    let counted = self.nodes[holds].journal.entity_count(&entity, u64::MAX);
                    if complete && counted != Ok(*count) {
                        self.fail(format!("node {n} heard node {holds} holds {count} deltas about {entity}; it holds {counted:?}"));
                    }
                }
                if complete && answers.len() != linked.len() {
                    self.fail(format!(
                        "node {n}'s who-has on a reliable network heard {} of {} peers",
                        answers.len(),
                        linked.len()
                    ));
                }
            }
            _ => self.fail(format!(
                "node {n}'s request {request} answered as another kind"
            )),
        }
        actions
    }

    /// The ids node `n` should hold once converged: every delta written (a partial replica:
    /// those in its slice, its own writes and what it fetched).
    fn should_hold(&self, n: usize) -> HashSet<DeltaId> {
        let node = &self.nodes[n];
        let mut ids = HashSet::new();
        for (host, writes) in self.pool.writes.iter().enumerate().take(self.config.nodes) {
            for stamped in writes.iter().take(self.config.writes_per_node) {
                if host == n || node.keeps(stamped) || node.fetched.contains(&stamped.delta.id()) {
                    ids.insert(stamped.delta.id());
                }
            }
        }
        ids
    }

    fn all_hold_what_they_should(&self) -> bool {
        (0..self.nodes.len()).all(|n| self.nodes[n].journal.ids() == self.should_hold(n))
    }

    /// Calls at random times while faults are on; answered by their deadline, whatever
    /// the faults did.
    fn schedule_calls(&mut self, n: usize) {
        for _ in 0..self.config.calls_per_node {
            let at = self.rng.below(self.config.fault_ms.max(1));
            let call = if self.rng.chance(0.5) {
                let (host, seq) = (
                    self.rng.below(self.config.nodes as u64),
                    self.rng.below(self.config.writes_per_node as u64),
                );
                let id = self.pool.writes[host as usize][seq as usize].delta.id();
                Call::Fetch {
                    ids: vec![id, DeltaId::from_bytes([0xee; 32])],
                    complete: false,
                }
            } else {
                let entity = format!("e{}", self.rng.below(3));
                Call::WhoHas {
                    entity,
                    complete: false,
                }
            };
            self.schedule(at, Event::Call(n, call));
        }
    }

    /// Once faults are over and every node should have converged: each partial replica
    /// fetches the deltas outside its slice it lacks, and every node asks who holds `e1`;
    /// these answers must be complete.
    fn schedule_audit(&mut self, at: u64) {
        for n in 0..self.nodes.len() {
            if self.config.calls_per_node == 0 {
                return;
            }
            let entity = "e1".to_owned();
            self.schedule(
                at,
                Event::Call(
                    n,
                    Call::WhoHas {
                        entity,
                        complete: true,
                    },
                ),
            );
            if self.nodes[n].slice.is_some() {
                let outside: Vec<DeltaId> = (0..self.config.nodes)
                    .filter(|host| *host != n)
                    .filter_map(|host| {
                        let writes = self.pool.writes[host].iter();
                        let mut written = writes.take(self.config.writes_per_node);
                        written.find(|d| !self.nodes[n].keeps(d))
                    })
                    .map(|d| d.delta.id())
                    .collect();
                if !outside.is_empty() {
                    self.schedule(
                        at,
                        Event::Call(
                            n,
                            Call::Fetch {
                                ids: outside,
                                complete: true,
                            },
                        ),
                    );
                }
            }
        }
    }
}

/// How long before the end the audit's calls are made, and may take (ms).
const AUDIT_MS: u64 = 1_000;

/// Runs one seeded simulation; an error describes what went wrong and names the seed.
pub fn run(seed: u64, config: &SimConfig, pool: &DeltaPool) -> Result<SimStats, String> {
    assert!(
        pool.hosts.len() >= config.nodes
            && pool
                .writes
                .iter()
                .all(|w| w.len() >= config.writes_per_node)
    );
    let slice = Filter::from_json_str(SLICE).expect("the simulation's slice parses");
    let nodes: Vec<Node> = (0..config.nodes)
        .map(|i| {
            let partial = i + config.partial_nodes >= config.nodes;
            let slice = partial.then(|| slice.clone());
            let kept = slice.as_ref().map(|slice| {
                let written = pool.writes.iter().flatten();
                written
                    .filter(|d| slice.matches(&d.delta.filter_document(&d.stamps)))
                    .map(|d| d.delta.id())
                    .collect()
            });
            let journal = MemJournal::default();
            let coverage = journal.coverage().unwrap_or_default();
            Node {
                protocol: Protocol::new(
                    pool.hosts[i].host_id(),
                    coverage,
                    config.peer.clone(),
                    slice.clone(),
                    usize::MAX,
                ),
                journal,
                slice,
                kept,
                fetched: HashSet::new(),
                calls: HashMap::new(),
            }
        })
        .collect();
    let index_of = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.protocol.peer().id(), i))
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
        failure: None,
    };
    for n in 0..config.nodes {
        for m in 0..config.nodes {
            if sim.linked(n, m) {
                let peer = sim.nodes[m].protocol.peer().id();
                sim.input(n, Input::PeerUp(peer));
            }
        }
        let first_tick = sim.rng.below(config.tick_ms);
        sim.schedule(first_tick, Event::Tick(n));
        for _ in 0..config.writes_per_node {
            let at = sim.rng.below(config.fault_ms.max(1));
            sim.schedule(at, Event::Write(n));
        }
        sim.schedule_calls(n);
    }
    let end = config.fault_ms + config.settle_ms;
    sim.schedule_audit(end.saturating_sub(AUDIT_MS));
    // Each node writes its pool entries in seq order, whenever its write events come up.
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
                sim.input(to, Input::Received { from, message });
            }
            Event::Tick(n) => {
                sim.input(n, Input::Tick);
                let next = sim.now + config.tick_ms;
                sim.schedule(next, Event::Tick(n));
                // Convergence is looked for at node 0's ticks: it is slow to work out.
                if n == 0
                    && sim.stats.converged_at_ms.is_none()
                    && sim.now >= config.fault_ms
                    && sim.all_hold_what_they_should()
                {
                    sim.stats.converged_at_ms = Some(sim.now);
                }
            }
            Event::Write(n) => {
                let w = next_write[n];
                next_write[n] += 1;
                let stamped = sim.pool.writes[n][w].clone();
                let actions = sim.store(n, stamped);
                sim.carry_out(n, actions);
            }
            Event::Stored(n, deltas) => {
                for stamped in deltas {
                    if sim.nodes[n].keeps(&stamped) {
                        let actions = sim.store(n, stamped);
                        sim.carry_out(n, actions);
                    }
                }
            }
            Event::Done(n, done) => {
                let actions = sim.nodes[n].protocol.done(sim.now, done);
                sim.carry_out(n, actions);
            }
            Event::Call(n, call) => {
                let timeout = match call {
                    Call::Fetch { complete: true, .. } | Call::WhoHas { complete: true, .. } => {
                        AUDIT_MS / 2
                    }
                    _ => 300 + sim.rng.below(1_200),
                };
                sim.call(n, call, timeout);
            }
        }
    }
    check(seed, &sim, end)?;
    sim.stats.delta_messages_per_delta /= sim.stats.deltas.max(1) as f64;
    sim.stats.reconciled = sim
        .nodes
        .iter()
        .filter(|n| n.slice.is_some())
        .map(|n| n.journal.ids().len())
        .sum();
    sim.stats.arrivals = sim
        .nodes
        .iter()
        .map(|node| node.journal.in_arrival_order())
        .collect();
    Ok(sim.stats)
}

/// After the run: nothing went wrong on the way, every call was answered, every node holds
/// what it should, and full replicas agree on coverage.
fn check(seed: u64, sim: &Sim<'_>, end: u64) -> Result<(), String> {
    let config = &sim.config;
    if let Some(failure) = &sim.failure {
        return Err(format!("seed {seed}: {failure} ({config:?})"));
    }
    for (n, node) in sim.nodes.iter().enumerate() {
        if let Some((request, _)) = node.calls.iter().next() {
            return Err(format!(
                "seed {seed}: node {n}'s request {request} was never answered"
            ));
        }
        let held = node.journal.ids();
        let should = sim.should_hold(n);
        if held != should {
            let lacks = should.difference(&held).count();
            let extra = held.difference(&should).count();
            return Err(format!(
                "seed {seed}: node {n} lacks {lacks} and holds {extra} it should not, after {end} ms ({config:?})"
            ));
        }
    }
    let full: Vec<&Node> = sim.nodes.iter().filter(|n| n.slice.is_none()).collect();
    if let Some(first) = full.first() {
        for (i, node) in full.iter().enumerate() {
            if node.protocol.peer().coverage() != first.protocol.peer().coverage() {
                return Err(format!(
                    "seed {seed}: full replica {i}'s coverage differs from the first's"
                ));
            }
        }
    }
    Ok(())
}
