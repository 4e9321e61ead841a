//! `hypha-bench net`: replication between real `hypha node` processes on loopback.
//!
//! The reference, measured in this process in the same run, is store ingest of the same
//! deltas (verify, store). Beside it: the store's own share of a client's write (verify,
//! stamp, store) and of catch-up (verify the author's and the origin's signatures, store),
//! and a lone node's ingest of the deltas over `POST /deltas`.
//!
//! Nodes A and B are `hypha node` processes (B dials A). The bench process runs observer
//! nodes of its own (a real [`Network`] over a real journal, dialling like any peer), so it
//! can timestamp the moment a delta is stored there:
//! - O1 dials A (one hop from A), O2 dials B (two hops from A: A→B→O2);
//! - throughput: pre-signed deltas posted to A's HTTP API until all are stored on O1;
//! - catch-up: a fresh observer dials A once A holds every delta: its rate, the bytes it
//!   received beside the deltas' encoded size, and the stamp signatures it checked;
//! - reconciliation: that observer goes away, A takes one more delta, the observer comes
//!   back; the bytes and round trips it spends to get in sync;
//! - a five-node full mesh (in this process), counting messages per delta.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hypha_delta_store::{Durability, StampedDelta, Store};
use hypha_net::{Encryption, NetConfig, Network, PeerConfig};
use hypha_primitives::{verify_batch, Delta, DeltaId, KeyPair, Pointer};
use rayon::prelude::*;
use serde_json::json;

use crate::{figure, rate, seed, sign_all};

/// A `hypha node` process.
pub(crate) struct NodeProcess {
    child: Child,
    pub(crate) http: String,
    pub(crate) router: String,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// The node's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn start(peers: &[&str]) -> Result<NodeProcess> {
        Self::start_with(peers, &[])
    }

    /// [`NodeProcess::start`] with more `hypha node` options.
    pub(crate) fn start_with(peers: &[&str], options: &[&str]) -> Result<NodeProcess> {
        let binary = std::env::current_exe()?
            .parent()
            .context("bench binary folder")?
            .join("hypha");
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(&binary);
        cmd.arg("--data")
            .arg(dir.path())
            .arg("node")
            .args(["--http", "127.0.0.1:0", "--listen", "tcp://127.0.0.1:0"])
            .args(["--publish", "tcp://127.0.0.1:0", "--durability", "buffered"])
            // The topologies measured are the ones dialled (a chain stays a chain).
            .args(["--learn-peers", "0"])
            .args(options)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for peer in peers {
            cmd.args(["--peer", peer]);
        }
        let mut child = cmd.spawn().with_context(|| {
            format!("starting {} (build it with ./dev bench)", binary.display())
        })?;
        let stderr = child.stderr.take().context("node stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if line.contains("node running") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .context("node did not start")?;
        let field = |name: &str| -> Result<String> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
                .with_context(|| format!("no {name} in {line}"))
        };
        Ok(NodeProcess {
            http: field("http")?,
            router: field("router")?,
            child,
            _dir: dir,
        })
    }

    pub(crate) fn get(&self, path: &str) -> Result<serde_json::Value> {
        let text = ureq::get(&format!("{}{path}", self.http))
            .call()?
            .into_string()?;
        Ok(serde_json::from_str(&text)?)
    }

    pub(crate) fn post(&self, path: &str, body: &str) -> Result<serde_json::Value> {
        let text = ureq::post(&format!("{}{path}", self.http))
            .set("content-type", "application/json")
            .send_string(body)?
            .into_string()?;
        Ok(serde_json::from_str(&text)?)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node inside the bench process.
struct Observer {
    store: Store,
    net: Network,
}

fn fast_protocol() -> PeerConfig {
    PeerConfig {
        announce_every_ms: 200,
        ..PeerConfig::default()
    }
}

async fn observer(dir: &std::path::Path, seed_byte: u8, peers: Vec<String>) -> Result<Observer> {
    observer_with(dir, seed_byte, peers, Encryption::Auto).await
}

/// [`observer`] with its links encrypted as `encryption` says.
async fn observer_with(
    dir: &std::path::Path,
    seed_byte: u8,
    peers: Vec<String>,
    encryption: Encryption,
) -> Result<Observer> {
    let store = Store::builder(dir)
        .durability(Durability::Buffered)
        .open()?;
    let config = NetConfig {
        listen: "tcp://127.0.0.1:0".into(),
        publish: "tcp://127.0.0.1:0".into(),
        peers,
        protocol: fast_protocol(),
        tick_ms: 20,
        max_learnt_peers: 0,
        encryption,
        ..NetConfig::default()
    };
    let net = Network::start(store.clone(), KeyPair::from_seed([seed_byte; 32]), config).await?;
    Ok(Observer { store, net })
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// When (since `start`) the delta `id` comes through a journal's feed.
async fn stored_at(
    feed: &mut tokio::sync::broadcast::Receiver<Arc<hypha_delta_store::StoredDelta>>,
    id: DeltaId,
    start: Instant,
    timeout: Duration,
) -> Result<Duration> {
    let wait = async {
        loop {
            match feed.recv().await {
                Ok(stored) if stored.delta.id() == id => return Ok(start.elapsed()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => bail!("journal feed: {e}"),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .with_context(|| format!("write {id} did not propagate"))?
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn count(store: &Store) -> u64 {
    store.last_arrival().ok().flatten().map_or(0, |a| a.get())
}

/// Runs the network bench.
pub(crate) fn run(deltas: usize, samples: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(deltas, samples))
}

async fn bench(deltas: usize, samples: usize) -> Result<()> {
    figure("net", "deltas", deltas as f64, "count", None);
    eprintln!("generating {deltas} signed deltas…");
    let signed = sign_all(deltas, (200..208).map(seed), |i| {
        vec![
            Pointer::entity("subject", format!("e{}", i % 10_000), "n"),
            Pointer::value("n", i as i64),
        ]
    });
    eprintln!(
        "reference: batch ed25519 verification on {} threads…",
        rayon::current_num_threads()
    );
    let start = Instant::now();
    let ok: usize = signed
        .par_chunks(1024)
        .map(|chunk| {
            let refs: Vec<&Delta> = chunk.iter().collect();
            verify_batch(&refs).iter().filter(|r| r.is_ok()).count()
        })
        .sum();
    let verify_rate = rate(deltas, start);
    anyhow::ensure!(ok == deltas, "generated deltas failed to verify");
    figure(
        "net",
        "ed25519_batch_verify_per_s",
        verify_rate,
        "1/s",
        None,
    );

    eprintln!("reference: store ingest of the same deltas in this process (verify, store)…");
    let unstamped: Vec<StampedDelta> = signed.iter().cloned().map(StampedDelta::from).collect();
    let store_rate = stamped_ingest(unstamped)?;
    figure("net", "store_ingest_per_s", store_rate, "1/s", None);
    eprintln!("the store's share of a client's write: verify, stamp, store…");
    let (local_rate, stamped) = store_ingest(&signed)?;
    figure(
        "net",
        "store_ingest_with_stamping_per_s",
        local_rate,
        "1/s",
        Some(("store_ingest_per_s", store_rate)),
    );
    eprintln!("the store's share of catch-up: verify both signatures, store…");
    let stamped_rate = stamped_ingest(stamped)?;
    figure(
        "net",
        "store_ingest_of_stamped_per_s",
        stamped_rate,
        "1/s",
        Some(("store_ingest_per_s", store_rate)),
    );
    let lines: Vec<String> = signed.par_iter().map(Delta::to_json_string).collect();
    eprintln!("node ingest: the same deltas posted to a lone node's HTTP API…");
    let http_rate = http_ingest(&lines)?;
    figure(
        "net",
        "http_ingest_per_s",
        http_rate,
        "1/s",
        Some(("store_ingest_per_s", store_rate)),
    );

    let a = NodeProcess::start(&[])?;
    let b = NodeProcess::start(&[&a.router])?;
    let dirs: Vec<tempfile::TempDir> = (0..4)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let o1 = observer(dirs[0].path(), 201, vec![a.router.clone()]).await?;
    let o2 = observer(dirs[1].path(), 202, vec![b.router.clone()]).await?;
    while o1.net.peers().await.is_empty() || o2.net.peers().await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    eprintln!("propagation latency over {samples} writes…");
    let (mut one_hop, mut two_hops) = (Vec::new(), Vec::new());
    let a_http = Arc::new(a.http.clone());
    for n in 0..samples {
        let pointers = json!([
            {"local_context": "subject", "target": {"entity": "latency"}, "target_context": "n"},
            {"local_context": "n", "target": {"value": n}}
        ]);
        let http = a_http.clone();
        // The observers' journal feeds say when the delta is stored there, without polling
        // (a polling loop would take a core from the nodes being measured).
        let (mut feed1, mut feed2) = (o1.store.subscribe(), o2.store.subscribe());
        let start = Instant::now();
        let answer = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
            let text = ureq::post(&format!("{http}/write"))
                .set("content-type", "application/json")
                .send_string(&json!({"pointers": pointers}).to_string())?
                .into_string()?;
            Ok(serde_json::from_str(&text)?)
        })
        .await??;
        let stored_on_a = start.elapsed();
        let id: DeltaId = answer["id"].as_str().context("write id")?.parse()?;
        let deadline = Duration::from_secs(10);
        let (t1, t2) = tokio::try_join!(
            stored_at(&mut feed1, id, start, deadline),
            stored_at(&mut feed2, id, start, deadline)
        )?;
        // From the moment A acknowledged the write (stored and published).
        let after = |t: Duration| t.saturating_sub(stored_on_a).as_secs_f64() * 1e3;
        one_hop.push(after(t1));
        two_hops.push(after(t2));
    }
    one_hop.sort_by(f64::total_cmp);
    two_hops.sort_by(f64::total_cmp);
    figure(
        "net",
        "latency_a_b_p50_ms",
        percentile(&one_hop, 0.5),
        "ms",
        None,
    );
    figure(
        "net",
        "latency_a_b_p99_ms",
        percentile(&one_hop, 0.99),
        "ms",
        None,
    );
    figure(
        "net",
        "latency_a_b_c_p50_ms",
        percentile(&two_hops, 0.5),
        "ms",
        None,
    );
    figure(
        "net",
        "latency_a_b_c_p99_ms",
        percentile(&two_hops, 0.99),
        "ms",
        None,
    );

    // Two nodes from here on: the reference assumes both verify every delta on these cores.
    o2.net.stop().await;
    drop(b);

    eprintln!("throughput: {deltas} pre-signed deltas posted to A until stored on O1…");
    let (throughput, posted) = post_until_stored(&a, &o1, &lines).await?;
    figure(
        "net",
        "stored_on_a_deltas_per_s",
        deltas as f64 / posted.as_secs_f64(),
        "1/s",
        None,
    );
    figure(
        "net",
        "throughput_a_to_b_deltas_per_s",
        throughput,
        "1/s",
        Some(("store_ingest_per_s_halved", store_rate / 2.0)),
    );

    eprintln!("the same over encrypted links (a fresh pair, --encrypt on)…");
    {
        let sealed_a = NodeProcess::start_with(&[], &["--encrypt", "on"])?;
        let sealed_o = observer_with(
            dirs[3].path(),
            204,
            vec![sealed_a.router.clone()],
            Encryption::On,
        )
        .await?;
        while sealed_o.net.peers().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (sealed, _) = post_until_stored(&sealed_a, &sealed_o, &lines).await?;
        figure(
            "net",
            "throughput_encrypted_deltas_per_s",
            sealed,
            "1/s",
            Some(("throughput_a_to_b_deltas_per_s", throughput)),
        );
        sealed_o.net.stop().await;
    }
    drop(lines);

    eprintln!(
        "catch-up: a fresh node dials A, which holds {} deltas…",
        count(&o1.store)
    );
    let held = count(&o1.store);
    let start = Instant::now();
    let o3 = observer(dirs[2].path(), 203, vec![a.router.clone()]).await?;
    wait_for(
        "the fresh node to catch up",
        Duration::from_secs(1800),
        || count(&o3.store) >= held,
    )
    .await?;
    let caught_up = rate(held as usize, start);
    let received = o3.net.stats().received_bytes;
    let stamps_checked = o3.store.stamps_verified();
    figure(
        "net",
        "catch_up_deltas_per_s",
        caught_up,
        "1/s",
        Some(("store_ingest_per_s", store_rate)),
    );
    let encoded: u64 = o3
        .store
        .scan_arrival(None)
        .map(|stored| stored.map(|s| s.delta.encoded_len() as u64))
        .sum::<Result<u64, _>>()?;
    figure(
        "net",
        "catch_up_bytes_received",
        received as f64,
        "B",
        Some(("encoded_bytes_of_the_deltas", encoded as f64)),
    );
    figure(
        "net",
        "catch_up_stamp_verifications_per_1000",
        stamps_checked as f64 * 1000.0 / held as f64,
        "count",
        None,
    );

    eprintln!("reconciliation: {held} vs {held} + 1…");
    let Observer { store, net } = o3;
    net.stop().await;
    drop(store);
    let extra = a.post(
        "/write",
        &json!({"pointers": [{"local_context": "n", "target": {"value": -1}}]}).to_string(),
    )?;
    let extra: DeltaId = extra["id"].as_str().context("write id")?.parse()?;
    wait_for(
        "O1 to hold the extra delta",
        Duration::from_secs(10),
        || o1.store.get(extra).ok().flatten().is_some(),
    )
    .await?;
    let o3 = observer(dirs[2].path(), 203, vec![a.router.clone()]).await?;
    wait_for(
        "the returning node to get the extra delta",
        Duration::from_secs(30),
        || o3.store.get(extra).ok().flatten().is_some(),
    )
    .await?;
    let stats = o3.net.stats();
    figure(
        "net",
        "reconcile_requests_sent",
        stats.sent as f64,
        "count",
        None,
    );
    figure(
        "net",
        "reconcile_bytes",
        (stats.sent_bytes + stats.received_bytes) as f64,
        "B",
        None,
    );
    o3.net.stop().await;
    o1.net.stop().await;
    drop(a);

    mesh(&signed[..signed.len().min(2_000)]).await
}

/// Most deltas in one `POST /deltas` of the bench.
const POST_BATCH: usize = 8192;

/// Stores `deltas` in a fresh journal in batches of [`POST_BATCH`], as a node stores what
/// a client posts (verified, stamped by the node, stored): deltas per second, and the
/// deltas with their stamps.
fn store_ingest(deltas: &[Delta]) -> Result<(f64, Vec<StampedDelta>)> {
    let dir = tempfile::tempdir()?;
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()?;
    let host = KeyPair::from_seed([199; 32]);
    let batches: Vec<Vec<Delta>> = deltas.chunks(POST_BATCH).map(<[Delta]>::to_vec).collect();
    let start = Instant::now();
    for batch in batches {
        store.put_local_batch(batch, &host)?;
    }
    let ingest = rate(deltas.len(), start);
    let mut stamped: Vec<StampedDelta> = store
        .scan_arrival(None)
        .map(|stored| {
            stored.map(|s| StampedDelta {
                delta: s.delta,
                stamps: s.stamps,
            })
        })
        .collect::<Result<_, _>>()?;
    // As they would travel: with their stamps' proofs.
    store.prove(&mut stamped)?;
    Ok((ingest, stamped))
}

/// Stores deltas in a fresh journal, in batches of [`POST_BATCH`], with whatever origin
/// stamps they carry (each verified, as catch-up verifies a peer's): deltas per second.
fn stamped_ingest(deltas: Vec<StampedDelta>) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()?;
    let count = deltas.len();
    let mut batches = Vec::new();
    let mut rest = deltas.into_iter();
    loop {
        let batch: Vec<StampedDelta> = rest.by_ref().take(POST_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        batches.push(batch);
    }
    let start = Instant::now();
    for batch in batches {
        store.put_batch(batch)?;
    }
    Ok(rate(count, start))
}

/// Posts `lines` to a lone node in requests of [`POST_BATCH`], one after another, as a
/// client would: deltas per second until the last answer (each answer comes once its
/// batch is stored).
fn http_ingest(lines: &[String]) -> Result<f64> {
    let node = NodeProcess::start(&[])?;
    let bodies: Vec<String> = lines.chunks(POST_BATCH).map(|c| c.join("\n")).collect();
    let start = Instant::now();
    for body in bodies {
        ureq::post(&format!("{}/deltas", node.http))
            .set("content-type", "application/x-ndjson")
            .send_string(&body)?;
    }
    Ok(rate(lines.len(), start))
}

/// Posts `lines` (signed deltas as JSON) to `a` in requests of 8192 until `observer`
/// stores them all: deltas per second end to end, and how long posting took.
async fn post_until_stored(
    a: &NodeProcess,
    observer: &Observer,
    lines: &[String],
) -> Result<(f64, Duration)> {
    let before = count(&observer.store);
    let start = Instant::now();
    let poster = {
        let a_http = a.http.clone();
        let lines = lines.to_vec();
        tokio::task::spawn_blocking(move || -> Result<Duration> {
            for chunk in lines.chunks(POST_BATCH) {
                ureq::post(&format!("{a_http}/deltas"))
                    .set("content-type", "application/x-ndjson")
                    .send_string(&chunk.join("\n"))?;
            }
            Ok(start.elapsed())
        })
    };
    let target = before + lines.len() as u64;
    wait_for(
        "the observer to store every delta",
        Duration::from_secs(1800),
        || count(&observer.store) >= target,
    )
    .await?;
    let throughput = rate(lines.len(), start);
    let posted = poster.await??;
    Ok((throughput, posted))
}

/// Five in-process nodes, each dialling every other; messages per delta written on one.
async fn mesh(deltas: &[Delta]) -> Result<()> {
    eprintln!(
        "5-node full mesh, {} deltas written on one node…",
        deltas.len()
    );
    let dirs: Vec<tempfile::TempDir> = (0..5)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut nodes: Vec<Observer> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let peers = nodes
            .iter()
            .map(|n| n.net.endpoints().router.clone())
            .collect();
        nodes.push(observer(dir.path(), 210 + i as u8, peers).await?);
    }
    for node in &nodes {
        while node.net.peers().await.len() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let total = |nodes: &[Observer]| -> u64 {
        nodes
            .iter()
            .map(|n| n.net.stats().published + n.net.stats().sent)
            .sum()
    };
    // Let the first coverage announcements settle, then count from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = total(&nodes);
    let start = Instant::now();
    let writer = KeyPair::from_seed([210; 32]);
    nodes[0].store.put_local_batch(deltas.to_vec(), &writer)?;
    let ids: Vec<DeltaId> = deltas.iter().map(Delta::id).collect();
    wait_for("the mesh to converge", Duration::from_secs(120), || {
        nodes.iter().all(|n| {
            ids.iter()
                .all(|id| n.store.get(*id).ok().flatten().is_some())
        })
    })
    .await?;
    let elapsed = start.elapsed();
    let messages = total(&nodes) - before;
    figure(
        "net",
        "mesh5_messages_per_delta",
        messages as f64 / deltas.len() as f64,
        "count",
        None,
    );
    figure("net", "mesh5_converge_s", elapsed.as_secs_f64(), "s", None);
    for node in nodes {
        node.net.stop().await;
    }
    Ok(())
}
