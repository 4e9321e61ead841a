//! `hypha-bench views`: ingest with materialized views attached against plain journal
//! ingest, record reads, a record as of a time beside a current read, and a rebuild.

use std::time::Instant;

use anyhow::Result;
use hypha_delta_store::{StampedDelta, Store};
use hypha_primitives::{Delta, DeltaBuilder, Hlc, KeyPair, Pointer};
use serde_json::{json, Value};

use crate::{figure, rate, seed, sign_all};

/// Deltas setting `p<j>` of `e<i>` to an integer, spread evenly.
fn generate_entity_writes(count: usize, entities: usize, properties: usize) -> Vec<Delta> {
    sign_all(count, (100..108).map(seed), |i| {
        let property = format!("p{}", (i / entities) % properties);
        vec![
            Pointer::entity("subject", format!("e{}", i % entities), property.clone()),
            Pointer::value(property, (i % 1000) as i64),
        ]
    })
}

/// A fresh journal with an lww view and a sum view over `p0..p<properties>` registered.
fn views_store(properties: usize) -> Result<(Store, tempfile::TempDir)> {
    use hypha_primitives::Schema;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let admin = KeyPair::from_seed(seed(999));
    for (n, resolver) in [("lww_view", "lww"), ("sum_view", "sum")] {
        let props: serde_json::Map<String, Value> = (0..properties)
            .map(|j| (format!("p{j}"), json!({"resolver": resolver})))
            .collect();
        let schema = Schema::from_json(&json!({"type": n, "properties": props}))?;
        store.put(
            DeltaBuilder::new(Hlc::new(1, 0))
                .pointers(schema.to_pointers())
                .sign(&admin)?,
        )?;
    }
    Ok((store, dir))
}

pub(crate) fn run(count: usize, entities: usize, properties: usize) -> Result<()> {
    use hypha_views::Materializer;

    figure("views", "deltas", count as f64, "count", None);
    eprintln!("generating {count} deltas over {entities} entities x {properties} properties…");
    let deltas = generate_entity_writes(count, entities, properties);
    let batches: Vec<Vec<StampedDelta>> = deltas
        .chunks(4096)
        .map(|c| c.iter().cloned().map(StampedDelta::from).collect())
        .collect();

    eprintln!("reference: plain journal ingest…");
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let start = Instant::now();
    for batch in &batches {
        store.put_batch(batch.clone())?;
    }
    let plain = rate(count, start);
    drop(store);
    figure("views", "journal_ingest_deltas_per_s", plain, "1/s", None);

    eprintln!("ingest with an lww view and a sum view attached, applied in the ingest thread…");
    let (store, _dir) = views_store(properties)?;
    let mut materializer = Materializer::open(store.clone())?;
    materializer.apply_pending()?;
    let start = Instant::now();
    let mut applying = std::time::Duration::ZERO;
    for batch in &batches {
        store.put_batch(batch.clone())?;
        let apply_start = Instant::now();
        materializer.apply_pending()?;
        applying += apply_start.elapsed();
    }
    let with_views = rate(count, start);
    figure(
        "views",
        "view_apply_us_per_delta",
        applying.as_secs_f64() * 1e6 / count as f64,
        "us",
        None,
    );
    figure(
        "views",
        "ingest_with_views_deltas_per_s",
        with_views,
        "1/s",
        Some(("journal_ingest_deltas_per_s", plain)),
    );

    eprintln!("the same, with the views following on their own thread, as in `hypha node`…");
    let (store, _dir) = views_store(properties)?;
    let mut follower = Materializer::open(store.clone())?;
    follower.apply_pending()?;
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let ingest = scope.spawn(|| -> Result<()> {
            for batch in &batches {
                store.put_batch(batch.clone())?;
            }
            Ok(())
        });
        let mut applied = 0;
        while applied < count {
            let n = follower.apply_pending()?;
            applied += n;
            if n == 0 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        ingest.join().expect("ingest thread")?;
        Ok(())
    })?;
    let pipelined = rate(count, start);
    figure(
        "views",
        "ingest_with_views_pipelined_deltas_per_s",
        pipelined,
        "1/s",
        Some(("journal_ingest_deltas_per_s", plain)),
    );
    drop(follower);

    let reads = 10_000;
    let read_latencies = |name: &str, read: &dyn Fn(&str) -> Result<bool>| -> Result<()> {
        let mut latencies: Vec<f64> = Vec::with_capacity(reads);
        for i in 0..reads {
            let entity = format!("e{}", (i * 7919) % entities);
            let start = Instant::now();
            let found = read(&entity)?;
            latencies.push(start.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(found, "no record for {entity}");
        }
        latencies.sort_by(f64::total_cmp);
        figure(
            "views",
            &format!("{name}_p50_us"),
            latencies[reads / 2],
            "us",
            None,
        );
        figure(
            "views",
            &format!("{name}_p99_us"),
            latencies[reads * 99 / 100],
            "us",
            None,
        );
        Ok(())
    };
    read_latencies("read", &|e| {
        Ok(materializer.typed_record("lww_view", e)?.is_some())
    })?;
    read_latencies("read_json", &|e| {
        Ok(materializer.record("lww_view", e)?.is_some())
    })?;

    // One record with 1,000 deltas in its history: as of a time halfway through it (from
    // the journal's indexes), beside reading it now (from the materialized store).
    const HISTORY: usize = 1_000;
    let history = sign_all(HISTORY, std::iter::once(seed(998)), |i| {
        vec![
            Pointer::entity("subject", "history", "p0"),
            Pointer::value("p0", i as i64),
        ]
    });
    let (history_store, _history_dir) = views_store(1)?;
    history_store.put_batch(history.into_iter().map(StampedDelta::from).collect())?;
    let mut history_views = Materializer::open(history_store.clone())?;
    history_views.apply_pending()?;
    let halfway = hypha_views::AsOf::Time(Hlc::new(1_700_000_000_000 + HISTORY as u64 / 2, 0));
    let entity = hypha_primitives::EntityId::new("history");
    let reads = 200;
    let start = Instant::now();
    for _ in 0..reads {
        anyhow::ensure!(history_views.typed_record("lww_view", "history")?.is_some());
    }
    let now_us = start.elapsed().as_secs_f64() * 1e6 / reads as f64;
    let start = Instant::now();
    for _ in 0..reads {
        let record = hypha_views::record_as_of(&history_store, "lww_view", &entity, halfway)?;
        anyhow::ensure!(record.is_some(), "the record existed halfway");
    }
    let as_of_us = start.elapsed().as_secs_f64() * 1e6 / reads as f64;
    figure(
        "views",
        "as_of_read_1000_deltas_us",
        as_of_us,
        "us",
        Some(("current_read_us", now_us)),
    );

    let start = Instant::now();
    materializer.rebuild(&mut |_, _| {})?;
    figure(
        "views",
        "rebuild_s",
        start.elapsed().as_secs_f64(),
        "s",
        None,
    );
    Ok(())
}
