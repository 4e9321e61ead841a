//! `hypha-bench`: Hypha's benchmark harness.
//!
//! Every figure is printed as one JSON object per line on stdout, beside a reference measured
//! in the same run on the same machine, because shared machines are noisy:
//! `{"bench":"ingest","figure":"deltas_per_s","value":…,"unit":"1/s","reference":"ed25519_batch_verify_per_s","reference_value":…,"ratio":…}`.
//! Figures without a reference omit the last three fields. Progress goes to stderr.

mod graphql;
mod lookups;
mod net;
mod reconcile;
mod subscription_memory;
mod subscriptions;
mod views;

use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hypha_delta_store::{Durability, StampedDelta, Store};
use hypha_primitives::{verify_batch, Delta, DeltaBuilder, Filter, Hlc, KeyPair, Pointer};
use rayon::prelude::*;
use serde_json::{json, Value};

/// Hypha's benchmarks: each figure beside a reference measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "hypha-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Store ingest (verify + dedupe + index + write) against raw ed25519 verification.
    Ingest {
        /// How many signed deltas to generate and ingest.
        #[arg(long, default_value_t = 1_000_000)]
        deltas: usize,
        /// How many distinct authors sign them.
        #[arg(long, default_value_t = 64)]
        authors: usize,
        /// Deltas per `put_batch` call.
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        /// Concurrent writers (defaults to the number of cores).
        #[arg(long)]
        writers: Option<usize>,
        /// Write durability.
        #[arg(long, value_enum, default_value_t = DurabilityArg::Fsync)]
        durability: DurabilityArg,
    },
    /// Ingest with materialized views attached, against plain journal ingest; view reads;
    /// rebuild time.
    Views {
        /// How many signed deltas to ingest.
        #[arg(long, default_value_t = 100_000)]
        deltas: usize,
        /// Over how many entities.
        #[arg(long, default_value_t = 10_000)]
        entities: usize,
        /// Properties per entity.
        #[arg(long, default_value_t = 5)]
        properties: usize,
    },
    /// Replication between `hypha node` processes on loopback: latency, throughput,
    /// catch-up, reconciliation bytes, and messages per delta in a full mesh.
    Net {
        /// How many pre-signed deltas to replicate (throughput and catch-up).
        #[arg(long, default_value_t = 1_000_000)]
        deltas: usize,
        /// Writes timed for propagation latency.
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
    /// Reads by id through the GraphQL endpoint of a node process, beside its plain HTTP
    /// round trip; then write→notify latency with many filtered subscriptions open, beside
    /// the same with one.
    Graphql {
        /// How many entities (users) the node holds.
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        /// Requests per measurement.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Filtered `deltas` subscriptions open for the write→notify measurement.
        #[arg(long, default_value_t = 10_000)]
        subscriptions: usize,
        /// Writes timed for write→notify latency.
        #[arg(long, default_value_t = 2_000)]
        writes: usize,
    },
    /// Set reconciliation of two sets differing by a few items: round trips and bytes,
    /// beside sending every id.
    Reconcile {
        /// Items on each side.
        #[arg(long, default_value_t = 1_000_000)]
        items: usize,
        /// Items only one side holds.
        #[arg(long, default_value_t = 1)]
        differ: usize,
    },
    /// Reads by author and by origin host from their indexes, beside the filter scan of
    /// the whole journal that finds the same deltas.
    Lookups {
        /// Deltas in the journal.
        #[arg(long, default_value_t = 1_000_000)]
        deltas: usize,
        /// How many of them are the one author's (and the one host's).
        #[arg(long, default_value_t = 1_000)]
        wanted: usize,
    },
    /// Compiled filter evaluation against jsonlogic-rs interpreting the same rule.
    Filter {
        /// Evaluations per measurement.
        #[arg(long, default_value_t = 200_000)]
        evals: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Fsync,
    Buffered,
}

fn main() -> Result<()> {
    // RUST_LOG=hypha_net=debug shows the bench's own nodes at work.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().bench {
        Bench::Ingest {
            deltas,
            authors,
            batch,
            writers,
            durability,
        } => {
            let durability = match durability {
                DurabilityArg::Fsync => Durability::Fsync,
                DurabilityArg::Buffered => Durability::Buffered,
            };
            ingest(
                deltas,
                authors.max(1),
                batch.max(1),
                writers.unwrap_or_else(rayon::current_num_threads).max(1),
                durability,
            )
        }
        Bench::Filter { evals } => filter(evals.max(1)),
        Bench::Lookups { deltas, wanted } => lookups::run(deltas.max(1), wanted),
        Bench::Reconcile { items, differ } => reconcile::run(items.max(1), differ),
        Bench::Net { deltas, samples } => net::run(deltas.max(1), samples.max(1)),
        Bench::Graphql {
            entities,
            requests,
            subscriptions,
            writes,
        } => graphql::run(
            entities.max(1),
            requests.max(4),
            subscriptions.max(1),
            writes.max(1),
        ),
        Bench::Views {
            deltas,
            entities,
            properties,
        } => views::run(deltas.max(1), entities.max(1), properties.max(1)),
    }
}

/// Prints one figure.
fn figure(bench: &str, name: &str, value: f64, unit: &str, reference: Option<(&str, f64)>) {
    let mut line = json!({"bench": bench, "figure": name, "value": round(value), "unit": unit});
    if let Some((ref_name, ref_value)) = reference {
        line["reference"] = Value::from(ref_name);
        line["reference_value"] = Value::from(round(ref_value));
        line["ratio"] = Value::from((value / ref_value * 1000.0).round() / 1000.0);
    }
    println!("{line}");
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Hypha's signature rule (one cofactored equation for single and batch checks, see
/// `markdown/DATA-MODEL.md`) beside ed25519-dalek's own `verify_strict` and `verify_batch`
/// on the same deltas and threads.
fn library_references(deltas: &[Delta], single: f64, batch: f64) -> Result<()> {
    use ed25519_dalek::{Signature, VerifyingKey};
    let parts = |d: &Delta| {
        (
            VerifyingKey::from_bytes(d.author().as_bytes()).expect("a valid key"),
            Signature::from_bytes(d.signature().as_bytes()),
        )
    };
    eprintln!("reference: ed25519-dalek's verify_strict and verify_batch…");
    let start = Instant::now();
    let ok = deltas
        .par_iter()
        .filter(|d| {
            let (key, signature) = parts(d);
            key.verify_strict(d.canonical_body(), &signature).is_ok()
        })
        .count();
    let strict = rate(deltas.len(), start);
    anyhow::ensure!(
        ok == deltas.len(),
        "verify_strict refused a generated delta"
    );
    let start = Instant::now();
    let ok: usize = deltas
        .par_chunks(1024)
        .map(|chunk| {
            let (keys, signatures): (Vec<_>, Vec<_>) = chunk.iter().map(parts).unzip();
            let messages: Vec<&[u8]> = chunk.iter().map(|d| d.canonical_body()).collect();
            match ed25519_dalek::verify_batch(&messages, &signatures, &keys) {
                Ok(()) => chunk.len(),
                Err(_) => 0,
            }
        })
        .sum();
    let library_batch = rate(deltas.len(), start);
    anyhow::ensure!(ok == deltas.len(), "verify_batch refused a generated chunk");
    figure(
        "ingest",
        "signature_rule_verify_per_s",
        single,
        "1/s",
        Some(("ed25519_dalek_verify_strict_per_s", strict)),
    );
    figure(
        "ingest",
        "signature_rule_batch_verify_per_s",
        batch,
        "1/s",
        Some(("ed25519_dalek_verify_batch_per_s", library_batch)),
    );
    Ok(())
}

fn rate(count: usize, start: Instant) -> f64 {
    count as f64 / start.elapsed().as_secs_f64()
}

/// Deterministic, realistic deltas: "entity.property = value" with a short string value,
/// about 200 bytes encoded.
fn generate(count: usize, authors: usize) -> Vec<Delta> {
    sign_all(count, (0..authors as u64).map(seed), |i| {
        vec![
            Pointer::entity("user", format!("user-{}", i % 10_000), "name"),
            Pointer::value("name", format!("name number {i}")),
        ]
    })
}

/// Signs `count` deltas in parallel, delta `i` holding `pointers(i)`, written at increasing
/// times by the given authors in turn.
fn sign_all(
    count: usize,
    author_seeds: impl Iterator<Item = [u8; 32]>,
    pointers: impl Fn(usize) -> Vec<Pointer> + Sync,
) -> Vec<Delta> {
    let keys: Vec<KeyPair> = author_seeds.map(KeyPair::from_seed).collect();
    (0..count)
        .into_par_iter()
        .map(|i| {
            DeltaBuilder::new(Hlc::new(1_700_000_000_000 + i as u64, 0))
                .pointers(pointers(i))
                .sign(&keys[i % keys.len()])
                .expect("generated deltas are valid")
        })
        .collect()
}

fn seed(n: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    s[8] = 0x5e;
    s
}

fn ingest(
    count: usize,
    authors: usize,
    batch: usize,
    writers: usize,
    durability: Durability,
) -> Result<()> {
    eprintln!("generating {count} signed deltas from {authors} authors…");
    let deltas = generate(count, authors);
    let encoded: usize = deltas.iter().map(Delta::encoded_len).sum();
    figure(
        "ingest",
        "encoded_bytes_per_delta",
        encoded as f64 / count as f64,
        "B",
        None,
    );

    eprintln!(
        "reference: single ed25519 verification on {} threads…",
        rayon::current_num_threads()
    );
    let start = Instant::now();
    let ok = deltas.par_iter().filter(|d| d.verify().is_ok()).count();
    let single = rate(count, start);
    anyhow::ensure!(ok == count, "generated deltas failed to verify");
    figure("ingest", "ed25519_verify_per_s", single, "1/s", None);

    eprintln!("reference: batch ed25519 verification…");
    let start = Instant::now();
    let ok: usize = deltas
        .par_chunks(1024)
        .map(|chunk| {
            let refs: Vec<&Delta> = chunk.iter().collect();
            verify_batch(&refs).iter().filter(|r| r.is_ok()).count()
        })
        .sum();
    let batch_rate = rate(count, start);
    anyhow::ensure!(ok == count, "generated deltas failed batch verification");
    figure(
        "ingest",
        "ed25519_batch_verify_per_s",
        batch_rate,
        "1/s",
        Some(("ed25519_verify_per_s", single)),
    );
    library_references(&deltas, single, batch_rate)?;

    let dir = tempfile::tempdir().context("temp dir")?;
    let store = Store::builder(dir.path()).durability(durability).open()?;
    eprintln!(
        "ingesting into {} with {writers} writers, batches of {batch}, {durability:?}…",
        dir.path().display()
    );
    let batches: Vec<Vec<StampedDelta>> = deltas
        .chunks(batch)
        .map(|c| c.iter().cloned().map(StampedDelta::from).collect())
        .collect();
    drop(deltas);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let stored: usize = std::thread::scope(|scope| -> Result<usize> {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| -> Result<usize> {
                    let mut stored = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(b) = batches.get(i) else {
                            return Ok(stored);
                        };
                        stored += store
                            .put_batch(b.clone())?
                            .iter()
                            .filter(|o| o.is_new())
                            .count();
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .sum()
    })?;
    let ingest_rate = rate(count, start);
    anyhow::ensure!(stored == count, "stored {stored} of {count} deltas");
    figure(
        "ingest",
        "deltas_per_s",
        ingest_rate,
        "1/s",
        Some(("ed25519_batch_verify_per_s", batch_rate)),
    );

    store.flush()?;
    drop(store);
    let raw = raw_rocksdb_puts_per_s(count)?;
    figure("ingest", "rocksdb_raw_puts_per_s", raw, "1/s", None);
    // Each new delta writes four journal entries (record, arrival, author, entity index):
    // the storage-side bound on ingest, if RocksDB had a core to itself.
    figure(
        "ingest",
        "deltas_per_s",
        ingest_rate,
        "1/s",
        Some(("rocksdb_raw_puts_per_s_div_4", raw / 4.0)),
    );
    let on_disk = dir_size(dir.path())?;
    figure(
        "ingest",
        "bytes_on_disk_per_delta",
        on_disk as f64 / count as f64,
        "B",
        Some(("encoded_bytes_per_delta", encoded as f64 / count as f64)),
    );
    figure(
        "ingest",
        "peak_rss_bytes",
        peak_rss_bytes()? as f64,
        "B",
        None,
    );
    Ok(())
}

/// The reference for the storage side: plain RocksDB puts (32-byte keys, 160-byte values)
/// in write batches of 1000 with the write-ahead log, on one thread.
fn raw_rocksdb_puts_per_s(count: usize) -> Result<f64> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = rocksdb::DB::open(&opts, dir.path())?;
    let value = [7u8; 160];
    let start = Instant::now();
    for chunk in 0..count.div_ceil(1000) {
        let mut batch = rocksdb::WriteBatch::default();
        for i in 0..1000u64 {
            let n = (chunk as u64 * 1000 + i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&n.to_le_bytes());
            batch.put(key, value);
        }
        db.write(batch)?;
    }
    Ok(rate(count.div_ceil(1000) * 1000, start))
}

fn dir_size(path: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The process's peak resident memory (VmHWM), from /proc.
fn peak_rss_bytes() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM line in /proc/self/status")?;
    Ok(kb * 1024)
}

fn filter(evals: usize) -> Result<()> {
    let deltas = generate(1024, 4);
    let docs: Vec<Value> = deltas.iter().map(|d| d.filter_document(&[])).collect();
    let rules = [
        ("membership", json!({"in": ["user-7", {"var": "targets"}]})),
        (
            "compound",
            json!({"and": [
                {">": [{"var": "time.ms"}, 1_700_000_000_100u64]},
                {"some": [{"var": "pointers"}, {"==": [{"var": "local_context"}, "name"]}]},
                {"!": {"in": ["deleted", {"var": "contexts"}]}}
            ]}),
        ),
    ];
    for (name, rule) in rules {
        let compiled = Filter::parse(&rule)?;
        // Agreement on every document before timing anything.
        for doc in &docs {
            let reference = jsonlogic_rs::apply(&rule, doc).map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                compiled.evaluate(doc)? == reference,
                "filter {name} disagrees with jsonlogic-rs"
            );
        }
        let start = Instant::now();
        let mut matched = 0usize;
        for i in 0..evals {
            matched += usize::from(
                jsonlogic_rs::apply(&rule, &docs[i % docs.len()])
                    .map(|v| truthy(&v))
                    .unwrap_or(false),
            );
        }
        let interpreted = rate(evals, start);
        let start = Instant::now();
        let mut matched_compiled = 0usize;
        for i in 0..evals {
            matched_compiled += usize::from(compiled.matches(&docs[i % docs.len()]));
        }
        let compiled_rate = rate(evals, start);
        anyhow::ensure!(
            matched == matched_compiled,
            "match counts differ for {name}"
        );
        figure(
            "filter",
            &format!("{name}_jsonlogic_rs_evals_per_s"),
            interpreted,
            "1/s",
            None,
        );
        figure(
            "filter",
            &format!("{name}_compiled_evals_per_s"),
            compiled_rate,
            "1/s",
            Some((&format!("{name}_jsonlogic_rs_evals_per_s"), interpreted)),
        );
    }
    Ok(())
}

/// JSON-Logic truthiness, for counting jsonlogic-rs matches the way `Filter::matches` does.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}
