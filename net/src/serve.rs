//! The work the protocol hands out that needs the journal or a lot of CPU: catch-up
//! pages, fetches, who-has counts, reconciliation slices and turns. [`read`] does one
//! piece over any [`Journal`]: the driver runs it on the blocking pool against the store,
//! the simulation inline against its in-memory journal, and each hands the result back to
//! [`Protocol::done`](crate::protocol::Protocol::done).

use std::sync::Arc;

use hypha_primitives::{
    BatchStamp, DeltaId, Filter, HostId, Seq, Stamp, StampProof, StampedDelta, BATCH_STAMP_LEN,
    STAMP_LEN,
};

use crate::journal::Journal;
use crate::reconcile::{ReconcileConfig, ReconcileError, Reconciler, Step};
use crate::sessions::MAX_RECONCILE_PAYLOAD;
use crate::Message;

/// Most ids one fetch may ask for; the rest are answered as missing.
pub(crate) const MAX_FETCH: usize = 4_096;

/// Most deltas a who-has answer counts (an entity with more says this many).
pub(crate) const MAX_COUNTED: u64 = 1_000_000;

/// A piece of work for the journal (or the CPU), with what its answer is for.
#[derive(Debug)]
pub(crate) enum Read {
    /// A catch-up answer for `to`: the deltas stamped in `ranges`, in up to `pages` pages
    /// of at most `limit` each.
    Page {
        to: HostId,
        request: u64,
        ranges: Vec<(HostId, Seq, Seq)>,
        limit: usize,
        pages: usize,
    },
    /// `to`'s fetch by id, answered within about `budget` encoded bytes.
    Fetch {
        to: HostId,
        request: u64,
        ids: Vec<DeltaId>,
        budget: usize,
    },
    /// `to`'s who-has.
    WhoHas {
        to: HostId,
        request: u64,
        entity: String,
    },
    /// A turn of `to`'s reconciliation `session`: over the kept slice, or after reading
    /// the one `filter` selects.
    Turn {
        to: HostId,
        session: u64,
        cached: Option<Arc<Reconciler>>,
        filter: String,
        payload: Vec<u8>,
    },
    /// This node's slice, to reconcile with `with`.
    Slice {
        with: HostId,
        filter: Option<Filter>,
    },
    /// The next turn of this node's `session`, from the peer's `payload`.
    Step {
        session: u64,
        reconciler: Arc<Reconciler>,
        payload: Vec<u8>,
    },
}

/// What a [`Read`] came to.
#[derive(Debug)]
pub(crate) enum ReadDone {
    /// A reply to send to `to`.
    Reply { to: HostId, message: Message },
    /// A turn of `to`'s session is answered, or could not be: `Err(Some(why))` when the
    /// peer's input was bad, `Err(None)` when this node failed.
    Answered {
        to: HostId,
        session: u64,
        outcome: Result<(Arc<Reconciler>, Vec<u8>), Option<String>>,
    },
    /// This node's slice is read: start reconciling it with `with`.
    SliceReady {
        with: HostId,
        reconciler: Arc<Reconciler>,
    },
    /// A turn of this node's own session is computed.
    Stepped {
        session: u64,
        step: Result<Step, ReconcileError>,
    },
    /// The journal failed (logged); nothing to send.
    Failed,
}

/// Reads and hands out the pages of one catch-up answer, one at a time.
fn pages<J: Journal>(
    journal: &J,
    (to, request): (HostId, u64),
    mut ranges: Vec<(HostId, Seq, Seq)>,
    limit: usize,
    pages: usize,
    emit: &mut impl FnMut(ReadDone),
) {
    for left in (0..pages.max(1)).rev() {
        let (deltas, more) = match next_page(journal, &mut ranges, limit) {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "reading a catch-up page");
                return emit(ReadDone::Failed);
            }
        };
        let continues = more && left > 0;
        emit(ReadDone::Reply {
            to,
            message: Message::CatchUpPage {
                request,
                deltas,
                more: more && !continues,
                continues,
            },
        });
        if !continues {
            return;
        }
    }
}

/// Reads the next page of `ranges` (at most `limit` deltas, ended where a batch of stamps
/// ends when it is full) and leaves in `ranges` what remains after it; true when something
/// remains. Each range is read on its own, so what the page took from each is known
/// exactly, even of a delta that carries the stamps of several hosts.
fn next_page<J: Journal>(
    journal: &J,
    ranges: &mut Vec<(HostId, Seq, Seq)>,
    limit: usize,
) -> Result<(Vec<StampedDelta>, bool), J::Error> {
    if limit == 0 {
        // A page size of 0 serves nothing (the simulation's control without catch-up).
        return Ok((Vec::new(), false));
    }
    // The deltas, each with the index of the range it was read under.
    let mut page: Vec<(usize, StampedDelta)> = Vec::new();
    // How many deltas each range gave, and how many ranges were read to their end.
    let mut given = vec![0usize; ranges.len()];
    let mut finished = 0;
    for (i, range) in ranges.iter().enumerate() {
        let want = limit - page.len();
        if want == 0 {
            break;
        }
        let (deltas, cut) = journal.page(std::slice::from_ref(range), want)?;
        given[i] = deltas.len();
        page.extend(deltas.into_iter().map(|d| (i, d)));
        if cut {
            break;
        }
        finished = i + 1;
    }
    if finished < ranges.len() {
        // Full: end where a batch ends; what is cut off opens the next page.
        let deltas: Vec<StampedDelta> = page.iter().map(|(_, d)| d.clone()).collect();
        page.truncate(batch_boundary(&deltas));
    }
    let mut rest = Vec::new();
    for (i, &(host, from, to)) in ranges.iter().enumerate() {
        let kept: Vec<&StampedDelta> = page
            .iter()
            .filter(|(r, _)| *r == i)
            .map(|(_, d)| d)
            .collect();
        if i < finished && kept.len() == given[i] {
            continue;
        }
        let top = kept
            .iter()
            .flat_map(|d| &d.stamps)
            .filter(|s| s.host() == host && from <= s.seq() && s.seq() <= to)
            .map(Stamp::seq)
            .max();
        match top {
            Some(top) if top >= to => {}
            Some(top) => rest.push((host, top.next(), to)),
            None => rest.push((host, from, to)),
        }
    }
    *ranges = rest;
    let more = !ranges.is_empty();
    Ok((page.into_iter().map(|(_, d)| d).collect(), more))
}

/// Does one piece of work, handing each result to `emit` as soon as it is ready: one for
/// most reads, one per page for a catch-up answer, so that its first page leaves while the
/// next is read.
pub(crate) fn read<J: Journal>(journal: &J, read: Read, mut emit: impl FnMut(ReadDone)) {
    let failed = |what: &str, e: J::Error| {
        tracing::error!(error = %e, "{what}");
        ReadDone::Failed
    };
    let done = match read {
        Read::Page {
            to,
            request,
            ranges,
            limit,
            pages: count,
        } => return pages(journal, (to, request), ranges, limit, count, &mut emit),
        Read::Fetch {
            to,
            request,
            ids,
            budget,
        } => match fetch(journal, request, &ids, budget) {
            Ok(message) => ReadDone::Reply { to, message },
            Err(e) => failed("answering a fetch", e),
        },
        Read::WhoHas {
            to,
            request,
            entity,
        } => match journal.entity_count(&entity, MAX_COUNTED) {
            Ok(deltas) => ReadDone::Reply {
                to,
                message: Message::Holds { request, deltas },
            },
            Err(e) => failed("answering who-has", e),
        },
        Read::Turn {
            to,
            session,
            cached,
            filter,
            payload,
        } => ReadDone::Answered {
            to,
            session,
            outcome: answer_turn(journal, cached, &filter, &payload),
        },
        Read::Slice { with, filter } => match slice(journal, filter.as_ref()) {
            Ok(reconciler) => ReadDone::SliceReady {
                with,
                reconciler: Arc::new(reconciler),
            },
            Err(e) => failed("reading this node's slice", e),
        },
        Read::Step {
            session,
            reconciler,
            payload,
        } => ReadDone::Stepped {
            session,
            step: reconciler.reconcile(&payload),
        },
    };
    emit(done);
}

/// How many of `deltas` (a full page) to keep so that they end where a batch of stamps
/// ends, and the batch cut off travels whole in the next page: a page then carries each
/// batch stamp once and no proof hashes, where a cut batch costs both pages a stamp and
/// hashes. All of them when the last one ends its batch, or when they are all one batch.
fn batch_boundary(deltas: &[StampedDelta]) -> usize {
    let Some(last) = deltas.last() else { return 0 };
    let continuing: Vec<BatchStamp> = last
        .stamps
        .iter()
        .filter_map(|s| s.batch().filter(|b| b.last() > s.seq()).copied())
        .collect();
    for batch in continuing {
        let tail = deltas
            .iter()
            .rev()
            .take_while(|d| d.stamps.iter().any(|s| s.batch() == Some(&batch)))
            .count();
        if tail < deltas.len() {
            return deltas.len() - tail;
        }
    }
    deltas.len()
}

/// An upper bound on the bytes a stamp adds to a message (a batch stamp's table entry and
/// its deltas' proof hashes at most a path per delta).
fn travel_len(stamp: &Stamp) -> usize {
    match stamp.proof() {
        StampProof::Batch { path, .. } => 5 + 2 + BATCH_STAMP_LEN + 2 + 32 * path.len(),
        _ => 1 + STAMP_LEN,
    }
}

/// The answer to [`Message::Fetch`]: the deltas held, with their stamps, up to
/// [`MAX_FETCH`] of them and about `budget` encoded bytes; the ids not sent (not held, or
/// past either bound) are listed as missing.
fn fetch<J: Journal>(
    journal: &J,
    request: u64,
    ids: &[DeltaId],
    budget: usize,
) -> Result<Message, J::Error> {
    let mut deltas = Vec::new();
    let mut missing = Vec::new();
    let mut bytes = 0;
    for (n, id) in ids.iter().enumerate() {
        if n >= MAX_FETCH || bytes >= budget {
            missing.push(*id);
            continue;
        }
        match journal.get(*id)? {
            Some(stamped) => {
                bytes += stamped.delta.encoded_len()
                    + stamped.stamps.iter().map(travel_len).sum::<usize>()
                    + 8;
                deltas.push(stamped);
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

/// The reconciliation set of a slice: every delta `filter` selects (all without one).
fn slice<J: Journal>(journal: &J, filter: Option<&Filter>) -> Result<Reconciler, J::Error> {
    let items = journal.slice_items(filter)?;
    Ok(Reconciler::new(items, ReconcileConfig::default()))
}

/// Parses the filter a peer sent with a reconciliation (empty: every delta).
fn parse_slice(text: &str) -> Result<Option<Filter>, hypha_primitives::FilterError> {
    if text.is_empty() {
        Ok(None)
    } else {
        Filter::from_json_str(text).map(Some)
    }
}

/// Answers one turn of a peer's reconciliation: with the session's slice if cached, else
/// after reading it. `Err(Some(why))` blames the peer's input; `Err(None)` is a local failure.
fn answer_turn<J: Journal>(
    journal: &J,
    cached: Option<Arc<Reconciler>>,
    filter: &str,
    payload: &[u8],
) -> Result<(Arc<Reconciler>, Vec<u8>), Option<String>> {
    if payload.len() > MAX_RECONCILE_PAYLOAD {
        return Err(Some(format!(
            "a reconciliation message of {} bytes",
            payload.len()
        )));
    }
    let reconciler = match cached {
        Some(reconciler) => reconciler,
        None => {
            let slice_filter =
                parse_slice(filter).map_err(|e| Some(format!("reconciliation filter: {e}")))?;
            match slice(journal, slice_filter.as_ref()) {
                Ok(reconciler) => Arc::new(reconciler),
                Err(e) => {
                    tracing::error!(error = %e, "reading a slice to reconcile");
                    return Err(None);
                }
            }
        }
    };
    let step = reconciler
        .reconcile(payload)
        .map_err(|e| Some(e.to_string()))?;
    Ok((reconciler, step.reply.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use hypha_delta_store::{Durability, Store};
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
        let who_has = |entity: &str| {
            let asker = HostId::from_bytes([1; 32]);
            let read = Read::WhoHas {
                to: asker,
                request: 5,
                entity: entity.to_owned(),
            };
            let mut done = Vec::new();
            super::read(&store, read, |d| done.push(d));
            match done.as_slice() {
                [ReadDone::Reply { to, message }] if *to == asker => message.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            who_has("even"),
            Message::Holds {
                request: 5,
                deltas: 3
            }
        );
        assert_eq!(
            who_has("nobody"),
            Message::Holds {
                request: 5,
                deltas: 0
            }
        );
        assert_eq!(
            store.entity_count("even", 2).unwrap(),
            2,
            "counted up to the cap"
        );

        // A catch-up page: the ranges' deltas in seq order, cut at the limit.
        let host = key.host_id();
        let page = |from: u64, to: u64, limit: usize| {
            let ranges = vec![(host, Seq::new(from), Seq::new(to))];
            store.page(&ranges, limit).unwrap()
        };
        let (deltas, more) = page(2, 5, 10);
        assert!(!more);
        let got: Vec<DeltaId> = deltas.iter().map(|d| d.delta.id()).collect();
        assert_eq!(got, ids[1..5].to_vec(), "seqs 2 to 5, in order");
        assert_eq!(deltas[0].stamps[0].seq(), Seq::new(2), "with their stamps");
        let (deltas, more) = page(1, 6, 3);
        assert!(more, "cut short");
        assert_eq!(deltas.len(), 3);
        let (deltas, more) = page(6, 6, 1);
        assert!(!more, "exactly the limit is not more");
        assert_eq!(deltas.len(), 1);

        let odd = parse_slice(r#"{"in": ["odd", {"var": "targets"}]}"#).unwrap();
        assert_eq!(slice(&store, odd.as_ref()).unwrap().len(), 3);
        assert_eq!(slice(&store, None).unwrap().len(), 6);
        assert!(parse_slice("{not json").is_err());
        assert!(parse_slice("").unwrap().is_none());
    }
}

#[cfg(test)]
mod boundary_tests {
    use hypha_primitives::KeyPair;

    use super::*;
    use crate::testing::delta;

    /// `n` deltas stamped in batches of `size` by one host.
    fn batches(n: i64, size: usize) -> Vec<StampedDelta> {
        let mut deltas: Vec<StampedDelta> = (1..=n).map(delta).collect();
        let key = KeyPair::from_seed([60; 32]);
        for (k, chunk) in deltas.chunks_mut(size).enumerate() {
            let ids: Vec<DeltaId> = chunk.iter().map(|d| d.delta.id()).collect();
            let first = Seq::new((k * size) as u64 + 1);
            for (d, s) in chunk
                .iter_mut()
                .zip(Stamp::sign_batch(&ids, first, &key).unwrap())
            {
                d.stamps = vec![s];
            }
        }
        deltas
    }

    /// A real journal in a temp dir (kept alive by the returned guard).
    fn journal() -> (tempfile::TempDir, hypha_delta_store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = hypha_delta_store::Store::builder(dir.path())
            .durability(hypha_delta_store::Durability::Buffered)
            .open()
            .unwrap();
        (dir, store)
    }

    #[test]
    fn a_full_page_ends_where_a_batch_ends_unless_it_is_all_one_batch() {
        let all = batches(30, 10);
        let mut page = all[..15].to_vec();
        page.truncate(batch_boundary(&page));
        assert_eq!(page, all[..10], "the second batch waits for the next page");
        let mut page = all[..20].to_vec();
        page.truncate(batch_boundary(&page));
        assert_eq!(page.len(), 20, "a page ending with its batch is kept");
        let mut page = all[12..17].to_vec();
        page.truncate(batch_boundary(&page));
        assert_eq!(page.len(), 5, "a page inside one batch is kept");
        let mut signed: Vec<StampedDelta> = (1..=5).map(delta).collect();
        signed.truncate(batch_boundary(&signed));
        assert_eq!(signed.len(), 5, "deltas without batches are not cut");
    }

    #[test]
    fn an_answer_streams_pages_that_end_with_their_batches() {
        let (_dir, store) = journal();
        let all = batches(30, 10);
        store.put_batch(all.clone()).unwrap();
        let host = all[0].stamps[0].host();
        let answer = |pages: usize| {
            let read = Read::Page {
                to: host,
                request: 7,
                ranges: vec![(host, Seq::FIRST, Seq::new(30))],
                limit: 15,
                pages,
            };
            let mut out = Vec::new();
            super::read(&store, read, |done| match done {
                ReadDone::Reply {
                    message:
                        Message::CatchUpPage {
                            request: 7,
                            deltas,
                            more,
                            continues,
                        },
                    ..
                } => out.push((deltas, more, continues)),
                other => panic!("{other:?}"),
            });
            out
        };
        // Pages of 15 would cut a batch each time: they end with their batches instead.
        let three = answer(3);
        let shape: Vec<(usize, bool, bool)> =
            three.iter().map(|(d, m, c)| (d.len(), *m, *c)).collect();
        assert_eq!(
            shape,
            [(10, false, true), (10, false, true), (10, false, false)]
        );
        let delivered: Vec<StampedDelta> = three.into_iter().flat_map(|(d, _, _)| d).collect();
        assert_eq!(delivered, all, "every delta once, in order, with its proof");
        // Fewer pages than the answer needs: the last says there is more.
        let two = answer(2);
        let shape: Vec<(usize, bool, bool)> =
            two.iter().map(|(d, m, c)| (d.len(), *m, *c)).collect();
        assert_eq!(shape, [(10, false, true), (10, true, false)]);
    }

    #[test]
    fn a_range_continues_from_what_was_read_under_it_not_from_another_hosts_stamps() {
        let (_dir, store) = journal();
        // Host A stamps d1..d20 in batches of ten. Host B stamps f1..f9 and then d20, so
        // d20, read under A's range, carries B's seq 10 while B's 1..9 are elsewhere.
        let mut all = batches(29, 10);
        let (d, f) = all.split_at_mut(20);
        let (a_key, b_key) = (KeyPair::from_seed([60; 32]), KeyPair::from_seed([61; 32]));
        for x in f.iter_mut() {
            x.stamps.clear();
        }
        let mut b_ids: Vec<DeltaId> = f.iter().map(|x| x.delta.id()).collect();
        b_ids.push(d[19].delta.id());
        let b_stamps = Stamp::sign_batch(&b_ids, Seq::FIRST, &b_key).unwrap();
        for (x, s) in f.iter_mut().zip(&b_stamps) {
            x.stamps.push(s.clone());
        }
        d[19].stamps.push(b_stamps[9].clone());
        store.put_batch(all.clone()).unwrap();
        let read = Read::Page {
            to: a_key.host_id(),
            request: 1,
            ranges: vec![
                (a_key.host_id(), Seq::FIRST, Seq::new(20)),
                (b_key.host_id(), Seq::FIRST, Seq::new(10)),
            ],
            limit: 12,
            pages: 8,
        };
        let mut delivered = std::collections::HashSet::new();
        let mut last = None;
        super::read(&store, read, |done| match done {
            ReadDone::Reply {
                message:
                    Message::CatchUpPage {
                        deltas,
                        more,
                        continues,
                        ..
                    },
                ..
            } => {
                delivered.extend(deltas.iter().map(|x| x.delta.id()));
                last = Some((more, continues));
            }
            other => panic!("{other:?}"),
        });
        for x in &all {
            assert!(
                delivered.contains(&x.delta.id()),
                "every delta of both ranges"
            );
        }
        assert_eq!(last, Some((false, false)), "the answer ends complete");
    }
}
