//! The PUB stream's topics, so a subscriber can take a slice by entity.
//!
//! ```text
//! c             coverage announcements
//! dp<shard>     a delta, once: under the shard of its first entity target
//! dp            a delta that points at no entity
//! ds<shard>     the same delta again, under each other shard its entity targets fall in
//! ```
//!
//! A shard is the first byte of an entity id's BLAKE3 hash, in two hex digits (zmq.rs
//! topics are text). A full replica subscribes to `dp` and `c`, and so receives every
//! delta exactly once. A partial replica whose slice requires certain entities among a
//! delta's `targets` ([`Filter::required_members`]) subscribes to `dp<shard>` and
//! `ds<shard>` of those entities' shards, and `c`: it receives every delta about them,
//! and few others (those sharing a shard), which its exact filter then drops.

use std::collections::BTreeSet;

use hypha_primitives::{Delta, Filter, Target};

/// Coverage announcements.
pub(crate) const COVERAGE: &str = "c";
/// Every delta, once.
pub(crate) const DELTAS: &str = "dp";
/// The copies of deltas under their other shards.
const SECONDARY: &str = "ds";

/// The shard of an entity id.
pub(crate) fn shard(entity: &str) -> u8 {
    blake3::hash(entity.as_bytes()).as_bytes()[0]
}

/// The topics a delta is published under: its primary topic first.
pub(crate) fn delta_topics(delta: &Delta) -> Vec<String> {
    let mut shards = Vec::new();
    for pointer in delta.pointers() {
        if let Target::Entity(entity) = &pointer.target {
            let s = shard(entity.as_str());
            if !shards.contains(&s) {
                shards.push(s);
            }
        }
    }
    match shards.split_first() {
        None => vec![DELTAS.to_owned()],
        Some((primary, others)) => std::iter::once(format!("{DELTAS}{primary:02x}"))
            .chain(others.iter().map(|s| format!("{SECONDARY}{s:02x}")))
            .collect(),
    }
}

/// The topics a node replicating `slice` subscribes to.
pub(crate) fn subscriptions(slice: Option<&Filter>) -> Vec<String> {
    let members = slice.and_then(|f| f.required_members("targets"));
    match members {
        None => vec![DELTAS.to_owned(), COVERAGE.to_owned()],
        Some(entities) => {
            let shards: BTreeSet<u8> = entities.iter().map(|e| shard(e)).collect();
            shards
                .iter()
                .flat_map(|s| [format!("{DELTAS}{s:02x}"), format!("{SECONDARY}{s:02x}")])
                .chain(std::iter::once(COVERAGE.to_owned()))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};

    use super::*;

    fn delta(pointers: Vec<Pointer>) -> Delta {
        DeltaBuilder::new(Hlc::new(1, 0))
            .pointers(pointers)
            .sign(&KeyPair::from_seed([1; 32]))
            .unwrap()
    }

    /// Whether a subscriber to `subscribed` receives a message published under `topic`.
    fn receives(subscribed: &[String], topic: &str) -> bool {
        subscribed.iter().any(|s| topic.starts_with(s.as_str()))
    }

    #[test]
    fn full_replicas_get_each_delta_once_and_slices_get_theirs() {
        let (alice, bob) = ("alice", "bob-the-second");
        assert_ne!(
            shard(alice),
            shard(bob),
            "pick entities in different shards"
        );
        let both = delta(vec![
            Pointer::entity("from", alice, "sent"),
            Pointer::entity("to", bob, "received"),
            Pointer::entity("cc", alice, "copied"),
        ]);
        let topics = delta_topics(&both);
        assert_eq!(topics.len(), 2, "one topic per distinct shard: {topics:?}");
        let valueless = delta(vec![Pointer::value("n", 1i64)]);
        assert_eq!(delta_topics(&valueless), vec!["dp".to_owned()]);

        let full = subscriptions(None);
        let copies = topics.iter().filter(|t| receives(&full, t)).count();
        assert_eq!(copies, 1, "a full replica receives one copy");
        assert!(receives(&full, &delta_topics(&valueless)[0]));
        assert!(receives(&full, COVERAGE));

        for entity in [alice, bob] {
            let rule = format!(r#"{{"in": ["{entity}", {{"var": "targets"}}]}}"#);
            let slice: Filter = rule.parse().unwrap();
            let subscribed = subscriptions(Some(&slice));
            assert!(
                topics.iter().any(|t| receives(&subscribed, t)),
                "{entity}'s slice"
            );
            assert!(!receives(&subscribed, "dp"), "no deltas without entities");
            assert!(receives(&subscribed, COVERAGE));
        }
        // A slice without a required entity takes everything, as a full replica.
        let by_author: Filter = r#"{"==": [{"var": "author"}, "x"]}"#.parse().unwrap();
        assert_eq!(subscriptions(Some(&by_author)), full);
    }
}
