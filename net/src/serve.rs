//! Answers to the requests that need the journal: fetch by id, "who has entity X", and the
//! slice a set reconciliation covers. They read RocksDB, so the driver runs them on the
//! blocking pool; they are plain functions of the store, tested against a real one.

use std::collections::HashSet;

use hypha_delta_store::{StampedDelta, Store};
use hypha_primitives::{DeltaId, Filter, STAMP_LEN};

use crate::reconcile::{Item, ReconcileConfig, Reconciler};
use crate::Message;

/// Most ids one fetch may ask for; the rest are answered as missing.
pub(crate) const MAX_FETCH: usize = 4_096;

/// Most deltas a who-has answer counts (an entity with more says this many).
pub(crate) const MAX_COUNTED: u64 = 1_000_000;

/// The answer to [`Message::Fetch`]: the deltas held, with their stamps, up to
/// [`MAX_FETCH`] of them and about `budget` encoded bytes; the ids not sent (not held, or
/// past either bound) are listed as missing.
pub(crate) fn fetch(
    store: &Store,
    request: u64,
    ids: &[DeltaId],
    budget: usize,
) -> hypha_delta_store::Result<Message> {
    let mut deltas = Vec::new();
    let mut missing = Vec::new();
    let mut bytes = 0;
    for (n, id) in ids.iter().enumerate() {
        if n >= MAX_FETCH || bytes >= budget {
            missing.push(*id);
            continue;
        }
        match store.get(*id)? {
            Some(stored) => {
                bytes += stored.delta.encoded_len() + stored.stamps.len() * STAMP_LEN + 8;
                deltas.push(StampedDelta {
                    delta: stored.delta,
                    stamps: stored.stamps,
                });
            }
            None => missing.push(*id),
        }
    }
    Ok(Message::Fetched {
        request,
        deltas,
        missing,
    })
}

/// The answer to [`Message::WhoHas`]: how many deltas point at `entity`, from its index.
pub(crate) fn who_has(
    store: &Store,
    request: u64,
    entity: &str,
) -> hypha_delta_store::Result<Message> {
    // A delta is filed once per property it sets on the entity: count each once.
    let mut seen = HashSet::new();
    for id in store.scan_entity_ids(entity, None) {
        seen.insert(id?);
        if seen.len() as u64 >= MAX_COUNTED {
            break;
        }
    }
    Ok(Message::Holds {
        request,
        deltas: seen.len() as u64,
    })
}

/// The reconciliation set of this node's slice: every delta `filter` selects (all of them
/// without one), as (time, id).
pub(crate) fn slice(
    store: &Store,
    filter: Option<&Filter>,
) -> hypha_delta_store::Result<Reconciler> {
    let mut items = Vec::new();
    for stored in store.scan_arrival(None) {
        let stored = stored?;
        if filter.is_none_or(|f| f.matches(&stored.delta.filter_document(&stored.stamps))) {
            items.push(Item {
                time: stored.delta.time().ms(),
                id: stored.delta.id(),
            });
        }
    }
    Ok(Reconciler::new(items, ReconcileConfig::default()))
}

/// Parses the filter a peer sent with a reconciliation (empty: every delta).
pub(crate) fn parse_slice(text: &str) -> Result<Option<Filter>, hypha_primitives::FilterError> {
    if text.is_empty() {
        Ok(None)
    } else {
        Filter::from_json_str(text).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use hypha_delta_store::Durability;
    use hypha_primitives::{DeltaBuilder, Hlc, KeyPair, Pointer};

    use super::*;

    #[test]
    fn fetch_who_has_and_slices_read_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path())
            .durability(Durability::Buffered)
            .open()
            .unwrap();
        let key = KeyPair::from_seed([7; 32]);
        let mut ids = Vec::new();
        for n in 0..6u64 {
            let entity = if n % 2 == 0 { "even" } else { "odd" };
            let delta = DeltaBuilder::new(Hlc::new(100 + n, 0))
                .pointer(Pointer::entity("subject", entity, "n"))
                .pointer(Pointer::entity("also", entity, "m"))
                .pointer(Pointer::value("n", n as i64))
                .sign(&key)
                .unwrap();
            ids.push(delta.id());
            store.put_local_batch(vec![delta], &key).unwrap();
        }
        let absent = DeltaId::from_bytes([9; 32]);
        let Message::Fetched {
            request,
            deltas,
            missing,
        } = fetch(&store, 4, &[ids[1], absent, ids[2]], 1 << 20).unwrap()
        else {
            panic!("a Fetched answer");
        };
        assert_eq!(request, 4);
        assert_eq!(
            deltas.iter().map(|d| d.delta.id()).collect::<Vec<_>>(),
            vec![ids[1], ids[2]]
        );
        assert_eq!(deltas[0].stamps.len(), 1, "with their stamps");
        assert_eq!(missing, vec![absent]);
        // Past the byte budget, the rest are not sent (and listed as missing).
        let Message::Fetched {
            deltas, missing, ..
        } = fetch(&store, 5, &ids, 1).unwrap()
        else {
            panic!("a Fetched answer");
        };
        assert_eq!(deltas.len(), 1);
        assert_eq!(missing, ids[1..].to_vec());

        // Filed under two properties each, counted once.
        assert_eq!(
            who_has(&store, 5, "even").unwrap(),
            Message::Holds {
                request: 5,
                deltas: 3
            }
        );
        assert_eq!(
            who_has(&store, 6, "nobody").unwrap(),
            Message::Holds {
                request: 6,
                deltas: 0
            }
        );

        let odd = parse_slice(r#"{"in": ["odd", {"var": "targets"}]}"#).unwrap();
        assert_eq!(slice(&store, odd.as_ref()).unwrap().len(), 3);
        assert_eq!(slice(&store, None).unwrap().len(), 6);
        assert!(parse_slice("{not json").is_err());
        assert!(parse_slice("").unwrap().is_none());
    }
}
