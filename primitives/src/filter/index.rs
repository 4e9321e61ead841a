//! [`FilterIndex`]: many filters matched against one document without evaluating each.
//!
//! A filter whose truth requires that a variable equal (or, for an array, contain) a
//! constant string is *anchored* on that (path, string): the index files it under the
//! string and, for a document, looks up only the filters filed under the strings the
//! document has at each anchored path. Only those candidates, and the filters with no
//! anchor, are evaluated. The anchors recognised, alone or as any argument of a top-level
//! `and` (whose truth needs every argument's):
//!
//! | rule | the document at `path` must be |
//! |---|---|
//! | `{"===": [{"var": path}, "s"]}` (either order) | the string `"s"` |
//! | `{"==": [{"var": path}, "s"]}` (either order) | the string `"s"`, or not a string |
//! | `{"in": [{"var": path}, ["s", "t", …]]}` | one of the strings |
//! | `{"in": ["s", {"var": path}]}` | an array holding `"s"`, or a string |
//!
//! The second column is what the index assumes, and it is a superset of what the rule
//! accepts: loose equality between a string and a non-string follows JavaScript's
//! conversions, so such documents make every `==` filter on the path a candidate; `in`
//! on a string looks for a substring, so a string makes every such `in` filter a
//! candidate. Each candidate is then evaluated in full, so [`FilterIndex::matching`] is
//! exactly the filters whose [`Filter::matches`] holds (property-tested below).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use serde_json::Value;

use super::node::{Node, VarKey};
use super::ops::Op;
use super::path::Key;
use super::Filter;

/// Filters, each under a caller's key, matched together against documents.
#[derive(Debug)]
pub struct FilterIndex<K> {
    /// Every filter (`None` matches everything) and where it is filed.
    entries: HashMap<K, (Option<Filter>, Option<Anchor>)>,
    /// Keys of the filters with no anchor: evaluated against every document.
    unanchored: HashSet<K>,
    /// Anchored filters by path.
    paths: Vec<PathIndex<K>>,
}

/// What an anchored filter needs of the value at its path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Anchor {
    path: Key,
    kind: AnchorKind,
    /// The strings filed under.
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnchorKind {
    /// The value is one of the strings.
    Strict,
    /// The value is the string, or not a string (loose equality).
    Loose,
    /// The value is an array holding the string, or a string (substring).
    Contains,
}

/// The anchored filters on one path.
#[derive(Debug)]
struct PathIndex<K> {
    path: Key,
    /// By string: strict and loose equality anchors.
    equal: HashMap<String, HashSet<K>>,
    /// By string: array-membership anchors.
    contained: HashMap<String, HashSet<K>>,
    /// Every loose-equality anchor, for values that are not strings.
    loose: HashSet<K>,
    /// Every membership anchor, for string values (substring search).
    contains: HashSet<K>,
}

impl<K: Clone + Eq + Hash> Default for FilterIndex<K> {
    fn default() -> Self {
        FilterIndex {
            entries: HashMap::new(),
            unanchored: HashSet::new(),
            paths: Vec::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> FilterIndex<K> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many filters the index holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no filter.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many filters are evaluated against every document (they have no anchor).
    pub fn unanchored(&self) -> usize {
        self.unanchored.len()
    }

    /// Files `filter` (`None`: match every document) under `key`, replacing what `key` had.
    pub fn insert(&mut self, key: K, filter: Option<Filter>) {
        self.remove(&key);
        let anchor = filter.as_ref().and_then(|f| anchor(f.root()));
        match &anchor {
            None => {
                self.unanchored.insert(key.clone());
            }
            Some(anchor) => {
                let index = match self.paths.iter().position(|p| p.path == anchor.path) {
                    Some(i) => i,
                    None => {
                        self.paths.push(PathIndex::new(anchor.path.clone()));
                        self.paths.len() - 1
                    }
                };
                self.paths[index].insert(&key, anchor);
            }
        }
        self.entries.insert(key, (filter, anchor));
    }

    /// Removes `key`'s filter; returns whether there was one.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some((_, anchor)) = self.entries.remove(key) else {
            return false;
        };
        match anchor {
            None => {
                self.unanchored.remove(key);
            }
            Some(anchor) => {
                if let Some(i) = self.paths.iter().position(|p| p.path == anchor.path) {
                    self.paths[i].remove(key, &anchor);
                    if self.paths[i].is_empty() {
                        self.paths.swap_remove(i);
                    }
                }
            }
        }
        true
    }

    /// The keys whose filter matches `document`, each once, in no particular order.
    pub fn matching(&self, document: &Value) -> Vec<K> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut consider = |key: &K, out: &mut Vec<K>| {
            if !seen.insert(key.clone()) {
                return;
            }
            let matched = match &self.entries[key].0 {
                None => true,
                Some(filter) => filter.matches(document),
            };
            if matched {
                out.push(key.clone());
            }
        };
        for key in &self.unanchored {
            consider(key, &mut out);
        }
        for path in &self.paths {
            path.candidates(document, |key| consider(key, &mut out));
        }
        out
    }
}

impl<K: Clone + Eq + Hash> PathIndex<K> {
    fn new(path: Key) -> Self {
        PathIndex {
            path,
            equal: HashMap::new(),
            contained: HashMap::new(),
            loose: HashSet::new(),
            contains: HashSet::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.equal.is_empty() && self.contained.is_empty()
    }

    fn insert(&mut self, key: &K, anchor: &Anchor) {
        let by_value = match anchor.kind {
            AnchorKind::Strict => &mut self.equal,
            AnchorKind::Loose => {
                self.loose.insert(key.clone());
                &mut self.equal
            }
            AnchorKind::Contains => {
                self.contains.insert(key.clone());
                &mut self.contained
            }
        };
        for value in &anchor.values {
            by_value
                .entry(value.clone())
                .or_default()
                .insert(key.clone());
        }
    }

    fn remove(&mut self, key: &K, anchor: &Anchor) {
        let by_value = match anchor.kind {
            AnchorKind::Strict => &mut self.equal,
            AnchorKind::Loose => {
                self.loose.remove(key);
                &mut self.equal
            }
            AnchorKind::Contains => {
                self.contains.remove(key);
                &mut self.contained
            }
        };
        for value in &anchor.values {
            if let Some(keys) = by_value.get_mut(value) {
                keys.remove(key);
                if keys.is_empty() {
                    by_value.remove(value);
                }
            }
        }
    }

    /// Calls `each` with every filter on this path that `document` may match.
    fn candidates<'a>(&'a self, document: &Value, mut each: impl FnMut(&'a K)) {
        let value = self.path.lookup(document);
        match value.as_deref() {
            Some(Value::String(s)) => {
                self.equal
                    .get(s.as_str())
                    .into_iter()
                    .flatten()
                    .for_each(&mut each);
                self.contains.iter().for_each(&mut each);
            }
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::String(s) = item {
                        self.contained
                            .get(s.as_str())
                            .into_iter()
                            .flatten()
                            .for_each(&mut each);
                    }
                }
                self.loose.iter().for_each(&mut each);
            }
            _ => self.loose.iter().for_each(&mut each),
        }
    }
}

/// The strings one of which the array at `path` must hold for `node` to be true, if the
/// rule says so: `{"in": ["s", {"var": path}]}`, any argument of an `and`, or every branch
/// of an `or` (whose strings are pooled).
pub(super) fn required_members(node: &Node, path: &Key) -> Option<Vec<String>> {
    match node {
        Node::And(arguments) => arguments.iter().find_map(|a| required_members(a, path)),
        Node::Or(arguments) if !arguments.is_empty() => {
            let mut all = Vec::new();
            for argument in arguments {
                all.extend(required_members(argument, path)?);
            }
            Some(all)
        }
        Node::Binary(Op::In, needle, haystack) => {
            (plain_var(haystack)? == *path).then_some(())?;
            Some(vec![string_literal(needle)?])
        }
        _ => None,
    }
}

/// The anchor of a rule, if it has one.
fn anchor(node: &Node) -> Option<Anchor> {
    match node {
        Node::And(arguments) => arguments.iter().find_map(anchor),
        Node::Binary(op @ (Op::Eq | Op::StrictEq), left, right) => {
            let (path, value) = match (plain_var(left), plain_var(right)) {
                (Some(path), None) => (path, string_literal(right)?),
                (None, Some(path)) => (path, string_literal(left)?),
                _ => return None,
            };
            let kind = if *op == Op::StrictEq {
                AnchorKind::Strict
            } else {
                AnchorKind::Loose
            };
            Some(Anchor {
                path,
                kind,
                values: vec![value],
            })
        }
        Node::Binary(Op::In, needle, haystack) => {
            if let Some(path) = plain_var(needle) {
                // `in` an array compares whole values: only strings equal strings.
                let Node::Literal(Value::Array(items)) = &**haystack else {
                    return None;
                };
                let values = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?;
                Some(Anchor {
                    path,
                    kind: AnchorKind::Strict,
                    values,
                })
            } else {
                Some(Anchor {
                    path: plain_var(haystack)?,
                    kind: AnchorKind::Contains,
                    values: vec![string_literal(needle)?],
                })
            }
        }
        _ => None,
    }
}

/// The key of a `var` with a literal key and no default.
fn plain_var(node: &Node) -> Option<Key> {
    match node {
        Node::Var(var) if var.default.is_none() => match &var.key {
            VarKey::Static(Ok(key)) => Some(key.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn string_literal(node: &Node) -> Option<String> {
    match node {
        Node::Literal(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn filter(rule: Value) -> Option<Filter> {
        Some(Filter::parse(&rule).expect("valid rule"))
    }

    fn sorted(mut keys: Vec<u32>) -> Vec<u32> {
        keys.sort_unstable();
        keys
    }

    #[test]
    fn anchored_filters_are_found_by_value_and_others_are_evaluated() {
        let mut index = FilterIndex::new();
        index.insert(1, filter(json!({"in": ["alice", {"var": "targets"}]})));
        index.insert(2, filter(json!({"in": ["bob", {"var": "targets"}]})));
        index.insert(3, filter(json!({"==": [{"var": "author"}, "a1"]})));
        index.insert(
            4,
            filter(json!({"and": [{">": [{"var": "n"}, 1]}, {"===": ["a1", {"var": "author"}]}]})),
        );
        index.insert(5, filter(json!({">": [{"var": "n"}, 5]})));
        index.insert(6, None);
        index.insert(7, filter(json!({"in": [{"var": "author"}, ["a2", "a3"]]})));
        assert_eq!(index.len(), 7);
        assert_eq!(index.unanchored(), 2, "5 and 6 have no anchor");

        let doc = json!({"targets": ["alice", "carol"], "author": "a1", "n": 3});
        assert_eq!(sorted(index.matching(&doc)), vec![1, 3, 4, 6]);
        let doc = json!({"targets": ["bob"], "author": "a3", "n": 9});
        assert_eq!(sorted(index.matching(&doc)), vec![2, 5, 6, 7]);

        assert!(index.remove(&1));
        assert!(!index.remove(&1));
        index.insert(3, filter(json!({"==": [{"var": "author"}, "zz"]})));
        let doc = json!({"targets": ["alice"], "author": "a1", "n": 0});
        assert_eq!(sorted(index.matching(&doc)), vec![6]);
        for key in [2, 3, 4, 5, 6, 7] {
            assert!(index.remove(&key));
        }
        assert!(index.is_empty());
        assert!(index.paths.is_empty(), "empty path indexes are dropped");
    }

    #[test]
    fn required_members_are_read_from_in_and_and_or() {
        let members = |rule: Value| Filter::parse(&rule).unwrap().required_members("targets");
        assert_eq!(
            members(json!({"in": ["a", {"var": "targets"}]})),
            Some(vec!["a".to_owned()])
        );
        assert_eq!(
            members(
                json!({"and": [{"==": [{"var": "author"}, "x"]}, {"in": ["b", {"var": "targets"}]}]})
            ),
            Some(vec!["b".to_owned()])
        );
        assert_eq!(
            members(
                json!({"or": [{"in": ["a", {"var": "targets"}]}, {"in": ["c", {"var": "targets"}]}]})
            ),
            Some(vec!["a".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            members(
                json!({"or": [{"in": ["a", {"var": "targets"}]}, {"==": [{"var": "author"}, "x"]}]})
            ),
            None,
            "one branch does not need a target"
        );
        assert_eq!(members(json!({"in": ["a", {"var": "contexts"}]})), None);
        assert_eq!(members(json!({">": [{"var": "n"}, 1]})), None);
    }

    #[test]
    fn loose_equality_and_substrings_stay_exact() {
        let mut index = FilterIndex::new();
        index.insert(1, filter(json!({"==": [{"var": "v"}, "1"]})));
        index.insert(2, filter(json!({"in": ["lic", {"var": "v"}]})));
        // 1 == "1" in JSON-Logic; "alice" contains "lic".
        assert_eq!(index.matching(&json!({"v": 1})), vec![1]);
        assert_eq!(index.matching(&json!({"v": "alice"})), vec![2]);
        assert_eq!(index.matching(&json!({"v": ["lic"]})), vec![2]);
        assert!(index.matching(&json!({})).is_empty());
    }

    fn rule_strategy() -> impl Strategy<Value = Value> {
        let path = prop_oneof![Just("a"), Just("b"), Just("o.k"), Just("a.0")];
        let constant = prop_oneof![
            Just(json!("x")),
            Just(json!("y")),
            Just(json!("1")),
            Just(json!("")),
            Just(json!(1)),
        ];
        let leaf = (0..5usize, path, constant).prop_map(|(shape, path, c)| match shape {
            0 => json!({"==": [{"var": path}, c]}),
            1 => json!({"===": [c, {"var": path}]}),
            2 => json!({"in": [c, {"var": path}]}),
            3 => json!({"in": [{"var": path}, [c, "y"]]}),
            _ => json!({"!=": [{"var": path}, c]}),
        });
        prop_oneof![
            leaf.clone(),
            prop::collection::vec(leaf.clone(), 1..3).prop_map(|l| json!({"and": l})),
            prop::collection::vec(leaf, 1..3).prop_map(|l| json!({"or": l})),
        ]
    }

    fn document_strategy() -> impl Strategy<Value = Value> {
        let value = prop_oneof![
            Just(json!("x")),
            Just(json!("y")),
            Just(json!("1")),
            Just(json!("")),
            Just(json!(1)),
            Just(json!(null)),
            Just(json!(["x", "y"])),
            Just(json!(["1"])),
            Just(json!([1])),
            Just(json!("xyz")),
        ];
        (value.clone(), value.clone(), value, any::<bool>()).prop_map(|(a, b, k, with_b)| {
            if with_b {
                json!({"a": a, "b": b, "o": {"k": k}})
            } else {
                json!({"a": a, "o": {"k": k}})
            }
        })
    }

    proptest! {
        /// The index answers exactly what evaluating every filter answers.
        #[test]
        fn matching_equals_evaluating_every_filter(
            rules in prop::collection::vec(rule_strategy(), 1..12),
            documents in prop::collection::vec(document_strategy(), 1..6),
        ) {
            let mut index = FilterIndex::new();
            let filters: Vec<Filter> = rules.iter().map(|r| Filter::parse(r).unwrap()).collect();
            for (key, f) in filters.iter().enumerate() {
                index.insert(key as u32, Some(f.clone()));
            }
            for document in &documents {
                let expected: Vec<u32> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.matches(document))
                    .map(|(k, _)| k as u32)
                    .collect();
                prop_assert_eq!(sorted(index.matching(document)), expected);
            }
        }
    }
}
