//! Coverage: which origin stamps a node holds, per host, as a contiguous prefix plus the
//! stamps held beyond it.

use std::collections::{BTreeMap, BTreeSet};

use hypha_primitives::{HostId, Seq};

/// The announced form of coverage: per host, the highest seq up to which every stamp is held.
pub type CoverageVector = BTreeMap<HostId, Seq>;

/// The origin stamps a node holds.
///
/// Each host's sequence is gap-free at its source, so "everything up to n" is the compact
/// summary peers exchange; stamps that arrived ahead of a gap wait in `beyond` until the gap
/// fills.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    contiguous: CoverageVector,
    beyond: BTreeMap<HostId, BTreeSet<Seq>>,
}

impl Coverage {
    /// Nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// The coverage of a journal: every origin stamp it holds.
    pub fn of_store(store: &hypha_delta_store::Store) -> hypha_delta_store::Result<Coverage> {
        crate::Journal::coverage(store)
    }

    /// Records that the stamp (`host`, `seq`) is held; false if it already was.
    pub fn insert(&mut self, host: HostId, seq: Seq) -> bool {
        if self.contains(host, seq) {
            return false;
        }
        let prefix = self.contiguous.get(&host).map_or(0, |s| s.get());
        if seq.get() == prefix + 1 {
            let mut top = seq;
            if let Some(waiting) = self.beyond.get_mut(&host) {
                while waiting.remove(&top.next()) {
                    top = top.next();
                }
                if waiting.is_empty() {
                    self.beyond.remove(&host);
                }
            }
            self.contiguous.insert(host, top);
        } else {
            self.beyond.entry(host).or_default().insert(seq);
        }
        true
    }

    /// True when the stamp (`host`, `seq`) is held.
    pub fn contains(&self, host: HostId, seq: Seq) -> bool {
        self.contiguous.get(&host).is_some_and(|top| seq <= *top)
            || self.beyond.get(&host).is_some_and(|b| b.contains(&seq))
    }

    /// Per host, the highest seq up to which everything is held.
    pub fn vector(&self) -> &CoverageVector {
        &self.contiguous
    }

    /// The highest seq held for `host`, gaps or not.
    pub fn highest(&self, host: HostId) -> Option<Seq> {
        let beyond = self.beyond.get(&host).and_then(|b| b.last().copied());
        beyond.or_else(|| self.contiguous.get(&host).copied())
    }

    /// The hosts with anything held.
    pub fn hosts(&self) -> impl Iterator<Item = HostId> + '_ {
        let mut hosts: BTreeSet<HostId> = self.contiguous.keys().copied().collect();
        hosts.extend(self.beyond.keys().copied());
        hosts.into_iter()
    }

    /// True when a peer announcing `theirs` holds something this node lacks.
    pub fn lacks_some_of(&self, theirs: &CoverageVector) -> bool {
        theirs
            .iter()
            .any(|(host, top)| self.contiguous.get(host).is_none_or(|mine| mine < top))
    }

    /// What a peer whose contiguous coverage is `theirs` may lack of what this node holds:
    /// per host, the seq range after their prefix up to the highest seq held here.
    pub fn ranges_beyond(&self, theirs: &CoverageVector) -> Vec<(HostId, Seq, Seq)> {
        self.hosts()
            .filter_map(|host| {
                let from = theirs.get(&host).map_or(Seq::FIRST, |s| s.next());
                let to = self.highest(host)?;
                (from <= to).then_some((host, from, to))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u8) -> HostId {
        HostId::from_bytes([n; 32])
    }

    #[test]
    fn out_of_order_stamps_join_the_prefix_when_the_gap_fills() {
        let mut c = Coverage::new();
        assert!(c.insert(host(1), Seq::new(2)));
        assert!(c.insert(host(1), Seq::new(3)));
        assert_eq!(c.vector().get(&host(1)), None);
        assert_eq!(c.highest(host(1)), Some(Seq::new(3)));
        assert!(c.insert(host(1), Seq::new(1)));
        assert_eq!(c.vector().get(&host(1)), Some(&Seq::new(3)));
        assert!(!c.insert(host(1), Seq::new(2)), "already held");
        assert!(c.contains(host(1), Seq::new(3)));
        assert!(!c.contains(host(1), Seq::new(4)));
    }

    #[test]
    fn ranges_beyond_name_what_the_other_side_lacks() {
        let mut c = Coverage::new();
        for s in 1..=5 {
            c.insert(host(1), Seq::new(s));
        }
        c.insert(host(2), Seq::new(1));
        c.insert(host(2), Seq::new(4));
        let theirs: CoverageVector = [(host(1), Seq::new(3))].into_iter().collect();
        assert_eq!(
            c.ranges_beyond(&theirs),
            vec![
                (host(1), Seq::new(4), Seq::new(5)),
                (host(2), Seq::FIRST, Seq::new(4))
            ]
        );
        assert!(!c.lacks_some_of(&theirs));
        let ahead: CoverageVector = [(host(1), Seq::new(9))].into_iter().collect();
        assert!(c.lacks_some_of(&ahead));
    }
}
