//! What a simulation runs on: the signed deltas every node writes, made once, and the
//! seeded random numbers that pick every fault.

use hypha_primitives::{
    Delta, DeltaBuilder, DeltaId, Hlc, KeyPair, Pointer, Seq, Stamp, StampedDelta,
};

/// How many seqs each simulated host stamps with one batch stamp (small, so that pages and
/// partitions cut batches often).
pub(super) const BATCH: usize = 5;

/// Signed, stamped deltas for the simulation, made once: signing is the slow part.
#[derive(Debug)]
pub struct DeltaPool {
    pub(super) hosts: Vec<KeyPair>,
    /// Per host, its writes in seq order.
    pub(super) writes: Vec<Vec<StampedDelta>>,
}

impl DeltaPool {
    /// `hosts` node keys, each with `per_host` writes stamped 1, 2, 3… in batches of
    /// [`BATCH`].
    pub fn new(hosts: usize, per_host: usize) -> Self {
        let keys: Vec<KeyPair> = (0..hosts)
            .map(|i| KeyPair::from_seed([i as u8 + 1; 32]))
            .collect();
        // Each host stamps its writes in batches of up to BATCH seqs, as a node stamps
        // what it accepts together, so the simulation runs on batch stamps and their proofs.
        let writes = keys
            .iter()
            .enumerate()
            .map(|(h, key)| {
                let deltas: Vec<Delta> = (1..=per_host as u64)
                    .map(|seq| {
                        DeltaBuilder::new(Hlc::new(seq, h as u32))
                            .pointer(Pointer::entity("subject", format!("e{}", seq % 3), "p"))
                            .pointer(Pointer::value("p", (h as i64) * 1000 + seq as i64))
                            .sign(key)
                            .expect("valid delta")
                    })
                    .collect();
                let mut stamped = Vec::with_capacity(deltas.len());
                for (k, chunk) in deltas.chunks(BATCH).enumerate() {
                    let ids: Vec<DeltaId> = chunk.iter().map(Delta::id).collect();
                    let first = Seq::new((k * BATCH) as u64 + 1);
                    let stamps = Stamp::sign_batch(&ids, first, key).expect("a valid batch");
                    stamped.extend(chunk.iter().zip(stamps).map(|(delta, stamp)| StampedDelta {
                        delta: delta.clone(),
                        stamps: vec![stamp],
                    }));
                }
                stamped
            })
            .collect();
        Self {
            hosts: keys,
            writes,
        }
    }
}

/// splitmix64: a tiny, well-distributed, seedable generator.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}
