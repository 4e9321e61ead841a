//! Node memory per open GraphQL subscription, and whether it comes back when they close.
//!
//! The node's resident memory (`VmRSS` of the `hypha node` process) is read before a batch
//! of `deltas` subscriptions opens, once they are all live, and after they close, over
//! several open/close cycles. Two layouts, each on a fresh node (so neither reuses memory
//! the other freed): one subscription per websocket (what `hypha subscribe` does, so each
//! pays for a connection) and 500 per websocket. The worst cycle is reported.

use std::net::Shutdown;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::figure;
use crate::net::NodeProcess;
use crate::subscriptions::{open_websocket, Socket};

/// Open/close cycles per layout.
const CYCLES: usize = 3;

/// The node process's resident memory, in bytes.
fn resident_bytes(node: &NodeProcess) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid()))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kib * 1024)
}

fn live(node: &NodeProcess) -> Result<u64> {
    crate::subscriptions::metric(node, "hypha_subscriptions_live")
}

/// Opens a websocket holding `count` idle `deltas` subscriptions (from the journal's end).
fn open(node: &NodeProcess, first: usize, count: usize, after: u64) -> Result<Socket> {
    let mut socket = open_websocket(node)?;
    let query = "subscription($f: JSON, $a: String) { deltas(filter: $f, after: $a) }";
    for n in first..first + count {
        let variables =
            json!({"f": {"in": [format!("m{n}"), {"var": "targets"}]}, "a": after.to_string()});
        let subscribe = json!({"id": n.to_string(), "type": "subscribe", "payload": {"query": query, "variables": variables}});
        socket.send(tungstenite::Message::text(subscribe.to_string()))?;
    }
    Ok(socket)
}

fn wait_for(node: &NodeProcess, what: &str, mut done: impl FnMut(u64) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(live(node)?) {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the node's tasks finish what the gauge already counts.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// Opens and closes `subscriptions` subscriptions, `per_socket` on each websocket, over
/// [`CYCLES`] cycles, and prints the node's memory per open subscription and after each
/// close.
fn layout(node: &NodeProcess, subscriptions: usize, per_socket: usize, name: &str) -> Result<()> {
    let mut per_subscription = Vec::new();
    let mut after_close = Vec::new();
    for cycle in 1..=CYCLES {
        let base = live(node)?;
        let after = node.get("/health")?["deltas"]
            .as_u64()
            .context("/health deltas")?;
        let before = resident_bytes(node)?;
        eprintln!(
            "cycle {cycle}: opening {subscriptions} subscriptions, {per_socket} per websocket…"
        );
        let mut sockets = Vec::new();
        for first in (0..subscriptions).step_by(per_socket) {
            sockets.push(open(
                node,
                first,
                per_socket.min(subscriptions - first),
                after,
            )?);
        }
        let target = base + subscriptions as u64;
        wait_for(node, "the subscriptions to go live", |n| n >= target)?;
        let open_rss = resident_bytes(node)?;
        per_subscription.push(open_rss.saturating_sub(before) as f64 / subscriptions as f64);
        for socket in &mut sockets {
            let _ = socket.close(None);
            let _ = socket.flush();
            if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
                let _ = tcp.shutdown(Shutdown::Both);
            }
        }
        drop(sockets);
        wait_for(node, "the subscriptions to close", |n| n <= base)?;
        after_close.push(resident_bytes(node)? as f64);
    }
    let worst = per_subscription.iter().copied().fold(0.0, f64::max);
    figure(
        "graphql",
        &format!("node_memory_per_subscription_{name}_bytes"),
        worst,
        "B",
        None,
    );
    figure(
        "graphql",
        &format!("node_rss_after_close_cycle_{CYCLES}_{name}_bytes"),
        after_close[CYCLES - 1],
        "B",
        Some((
            &format!("node_rss_after_close_cycle_1_{name}_bytes"),
            after_close[0],
        )),
    );
    Ok(())
}

/// Runs both layouts, each on a node of its own.
pub(crate) fn run(subscriptions: usize) -> Result<()> {
    layout(
        &NodeProcess::start(&[])?,
        subscriptions,
        1,
        "one_per_websocket",
    )?;
    layout(
        &NodeProcess::start(&[])?,
        subscriptions,
        500,
        "500_per_websocket",
    )
}
