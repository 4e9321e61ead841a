//! `hypha-bench lookups`: one author's deltas, and one origin host's, read from their
//! indexes, beside the filter scan over the whole journal that finds the same deltas.

use std::time::Instant;

use anyhow::Result;
use hypha_delta_store::Store;
use hypha_primitives::{Filter, KeyPair, Pointer, Seq};
use serde_json::json;

use crate::{figure, seed, sign_all};

/// Loads `total` deltas, `wanted` of them by one author and stamped by one host (spread
/// evenly through the journal), then times each lookup both ways.
pub(crate) fn run(total: usize, wanted: usize) -> Result<()> {
    let wanted = wanted.clamp(1, total);
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let every = total / wanted;
    eprintln!("signing {total} deltas, {wanted} by the author looked up…");
    // Seeds 400..=407 write the crowd; seed 499 is the author looked up, one delta in
    // `every`.
    let crowd = sign_all(total - wanted, (400..408).map(seed), |i| {
        vec![
            Pointer::entity("subject", format!("e{}", i % 50_000), "p"),
            Pointer::value("p", i as i64),
        ]
    });
    let chosen = sign_all(wanted, std::iter::once(seed(499)), |i| {
        vec![
            Pointer::entity("subject", format!("chosen{i}"), "p"),
            Pointer::value("p", i as i64),
        ]
    });
    let author = KeyPair::from_seed(seed(499)).author();
    let (host, crowd_host) = (KeyPair::from_seed(seed(498)), KeyPair::from_seed(seed(497)));
    eprintln!("storing them, the author's stamped by one host and the rest by another…");
    let mut crowd = crowd.into_iter();
    let mut chosen = chosen.into_iter();
    loop {
        let batch: Vec<_> = crowd
            .by_ref()
            .take(every.saturating_sub(1).max(1) * 64)
            .collect();
        let mine: Vec<_> = chosen.by_ref().take(64).collect();
        if batch.is_empty() && mine.is_empty() {
            break;
        }
        if !batch.is_empty() {
            store.put_local_batch(batch, &crowd_host)?;
        }
        if !mine.is_empty() {
            store.put_local_batch(mine, &host)?;
        }
    }
    store.flush()?;

    let start = Instant::now();
    let by_index = store.scan_author(author).count();
    let index_s = start.elapsed().as_secs_f64();
    let filter = Filter::parse(&json!({"==": [{"var": "author"}, author.to_string()]}))?;
    let start = Instant::now();
    let by_scan = store.scan_filter(&filter, None).count();
    let scan_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        by_index == wanted && by_scan == wanted,
        "the author index found {by_index}, the scan {by_scan}, of {wanted}"
    );
    figure("lookups", "deltas", total as f64, "count", None);
    figure(
        "lookups",
        "author_index_read_ms",
        index_s * 1e3,
        "ms",
        Some(("author_filter_scan_ms", scan_s * 1e3)),
    );

    let start = Instant::now();
    let by_origin = store
        .scan_origin(host.host_id(), Seq::FIRST, Seq::new(u64::MAX))
        .count();
    let origin_s = start.elapsed().as_secs_f64();
    let filter = Filter::parse(&json!({"in": [host.host_id().to_string(), {"var": "hosts"}]}))?;
    let start = Instant::now();
    let by_scan = store.scan_filter(&filter, None).count();
    let scan_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        by_origin == wanted && by_scan == wanted,
        "the origin index found {by_origin}, the scan {by_scan}, of {wanted}"
    );
    figure(
        "lookups",
        "origin_index_read_ms",
        origin_s * 1e3,
        "ms",
        Some(("origin_filter_scan_ms", scan_s * 1e3)),
    );
    Ok(())
}
