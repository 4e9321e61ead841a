//! Propagation confidence as a snapshot: per origin host, how far each known peer's
//! coverage reaches. Readers answer "how many peers hold this stamp?" from it by a binary
//! search, without asking the network task.

use std::collections::BTreeMap;

use hypha_primitives::{HostId, Seq, Stamp};

use crate::CoverageVector;

/// Per origin host, every known peer's contiguous coverage top, highest first.
///
/// A peer holds the stamp (`host`, `seq`) when its top for `host` is at least `seq`
/// (coverage is a gap-free prefix), so [`Watermarks::holders`] is the count of tops at or
/// above `seq`. The network publishes a new snapshot whenever a peer's coverage rises or a
/// peer comes or goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    tops: BTreeMap<HostId, Vec<Seq>>,
}

impl Watermarks {
    /// The snapshot of these peers' announced coverage.
    pub fn of_peers<'a>(peers: impl IntoIterator<Item = &'a CoverageVector>) -> Watermarks {
        let mut tops: BTreeMap<HostId, Vec<Seq>> = BTreeMap::new();
        for coverage in peers {
            for (host, top) in coverage {
                tops.entry(*host).or_default().push(*top);
            }
        }
        for seqs in tops.values_mut() {
            seqs.sort_unstable_by(|a, b| b.cmp(a));
        }
        Watermarks { tops }
    }

    /// How many known peers hold the stamp (`host`, `seq`).
    pub fn holders(&self, host: HostId, seq: Seq) -> usize {
        self.tops
            .get(&host)
            .map_or(0, |tops| tops.partition_point(|top| *top >= seq))
    }

    /// How many known peers hold a delta with these origin stamps: the most over them (a
    /// peer holding the delta under any of its stamps holds the delta).
    pub fn confidence(&self, stamps: &[Stamp]) -> usize {
        stamps
            .iter()
            .map(|s| self.holders(s.host(), s.seq()))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u8) -> HostId {
        HostId::from_bytes([n; 32])
    }

    fn vector(entries: &[(u8, u64)]) -> CoverageVector {
        entries
            .iter()
            .map(|(h, s)| (host(*h), Seq::new(*s)))
            .collect()
    }

    #[test]
    fn holders_count_the_peers_whose_prefix_reaches_the_seq() {
        let peers = [
            vector(&[(1, 10), (2, 3)]),
            vector(&[(1, 4)]),
            vector(&[(1, 10), (2, 7)]),
        ];
        let marks = Watermarks::of_peers(&peers);
        assert_eq!(marks.holders(host(1), Seq::new(1)), 3);
        assert_eq!(marks.holders(host(1), Seq::new(4)), 3);
        assert_eq!(marks.holders(host(1), Seq::new(5)), 2);
        assert_eq!(marks.holders(host(1), Seq::new(10)), 2);
        assert_eq!(marks.holders(host(1), Seq::new(11)), 0);
        assert_eq!(marks.holders(host(2), Seq::new(3)), 2);
        assert_eq!(marks.holders(host(2), Seq::new(4)), 1);
        assert_eq!(
            marks.holders(host(3), Seq::new(1)),
            0,
            "an origin nobody holds"
        );
        assert_eq!(Watermarks::default().holders(host(1), Seq::new(1)), 0);
    }

    #[test]
    fn a_delta_counts_the_best_of_its_stamps() {
        use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let delta = DeltaBuilder::new(Hlc::new(1, 0))
            .pointer(Pointer::value("n", 1i64))
            .sign(&a)
            .unwrap();
        let stamps = [
            Stamp::sign(delta.id(), Seq::new(5), &a),
            Stamp::sign(delta.id(), Seq::new(1), &b),
        ];
        let peers = [
            [(a.host_id(), Seq::new(4)), (b.host_id(), Seq::new(1))].into(),
            [(b.host_id(), Seq::new(2))].into(),
        ];
        let marks = Watermarks::of_peers(&peers);
        assert_eq!(marks.holders(a.host_id(), Seq::new(5)), 0);
        assert_eq!(marks.confidence(&stamps), 2, "both hold it under b's stamp");
        assert_eq!(marks.confidence(&[]), 0);
    }
}
