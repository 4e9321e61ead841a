//! Write→notify latency through GraphQL `deltas` subscriptions on a `hypha node` process:
//! with many filtered subscriptions open, beside the same measurement with one.
//!
//! Each subscription's filter takes the deltas pointing at its own entity
//! (`{"in": ["s42", {"var": "targets"}]}`), the shape the node's subscription hub indexes.
//! A write goes through `POST /write`; its latency ends when the one subscription it
//! matches delivers it over the websocket.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::figure;
use crate::net::NodeProcess;

/// Websocket connections the subscriptions are spread over.
const CONNECTIONS: usize = 20;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A graphql-transport-ws client socket.
pub(crate) type Socket =
    tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Opens a graphql-transport-ws connection to `node` and waits for its acknowledgement.
pub(crate) fn open_websocket(node: &NodeProcess) -> Result<Socket> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}/graphql/ws", node.http.replacen("http", "ws", 1));
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tungstenite::connect(request).context("opening a websocket")?;
    socket.send(tungstenite::Message::text(
        json!({"type": "connection_init"}).to_string(),
    ))?;
    loop {
        if let tungstenite::Message::Text(text) = socket.read()? {
            let message: Value = serde_json::from_str(&text)?;
            if message["type"] == "connection_ack" {
                return Ok(socket);
            }
        }
    }
}

/// Opens a graphql-transport-ws connection holding one `deltas` subscription per entity
/// name, each from `after`, and forwards (entity, arrival instant) of every delta it
/// receives to `notify` from a reader thread.
fn connect(
    node: &NodeProcess,
    entities: Vec<String>,
    after: u64,
    notify: mpsc::Sender<(String, Instant)>,
) -> Result<()> {
    let mut socket = open_websocket(node)?;
    let send =
        |socket: &mut Socket, v: Value| socket.send(tungstenite::Message::text(v.to_string()));
    let query = "subscription($f: JSON, $a: String) { deltas(filter: $f, after: $a) }";
    for (n, entity) in entities.iter().enumerate() {
        let variables = json!({"f": {"in": [entity, {"var": "targets"}]}, "a": after.to_string()});
        send(
            &mut socket,
            json!({"id": n.to_string(), "type": "subscribe", "payload": {"query": query, "variables": variables}}),
        )?;
    }
    std::thread::spawn(move || loop {
        let text = match socket.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(_) => continue,
            Err(_) => return,
        };
        let at = Instant::now();
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        match message["type"].as_str() {
            Some("next") => {
                let entity = message["payload"]["data"]["deltas"]["pointers"][0]["target"]
                    ["entity"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                if notify.send((entity, at)).is_err() {
                    return;
                }
            }
            Some("ping") => {
                let _ = send(&mut socket, json!({"type": "pong"}));
            }
            Some("error") => {
                eprintln!("subscription error: {}", message["payload"]);
                let _ = notify.send(("error".into(), at));
            }
            _ => {}
        }
    });
    Ok(())
}

/// A gauge or counter from the node's `/metrics`.
pub(crate) fn metric(node: &NodeProcess, name: &str) -> Result<u64> {
    let text = ureq::get(&format!("{}/metrics", node.http))
        .call()?
        .into_string()?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

/// Write→notify latencies in µs (sorted) for `writes` writes to entities `name(i)`.
fn write_to_notify(
    node: &NodeProcess,
    writes: usize,
    name: impl Fn(usize) -> String,
    notified: &mpsc::Receiver<(String, Instant)>,
) -> Result<Vec<f64>> {
    let agent = ureq::AgentBuilder::new().build();
    let url = format!("{}/write", node.http);
    let mut out = Vec::with_capacity(writes);
    for i in 0..writes {
        let entity = name(i);
        let body = json!({"pointers": [
            {"local_context": "bench", "target": {"entity": entity}, "target_context": "notified"},
            {"local_context": "n", "target": {"value": i}},
        ]});
        let start = Instant::now();
        agent
            .post(&url)
            .set("content-type", "application/json")
            .send_string(&body.to_string())?;
        let (got, at) = notified
            .recv_timeout(Duration::from_secs(10))
            .with_context(|| format!("no notification for write {i} to {entity}"))?;
        if got != entity {
            bail!("write to {entity} notified a subscription of {got}");
        }
        out.push(at.duration_since(start).as_secs_f64() * 1e6);
    }
    // Every write matches exactly one subscription: nothing else may have arrived.
    if let Ok((extra, _)) = notified.recv_timeout(Duration::from_millis(200)) {
        bail!("an extra notification arrived, for {extra}");
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// Runs the subscription bench on `node` with `subscriptions` open.
pub(crate) fn run(node: &NodeProcess, subscriptions: usize, writes: usize) -> Result<()> {
    let after = node.get("/health")?["deltas"]
        .as_u64()
        .context("/health deltas")?;
    let (notify, notified) = mpsc::channel();
    connect(node, vec!["solo".into()], after, notify.clone())?;
    wait_live(node, 1)?;
    eprintln!("{writes} writes with one subscription open…");
    let single = write_to_notify(node, writes, |_| "solo".into(), &notified)?;

    // From the journal's end: a subscription from an older cursor first reads the journal.
    let after = node.get("/health")?["deltas"]
        .as_u64()
        .context("/health deltas")?;
    eprintln!("opening {subscriptions} filtered subscriptions…");
    let per_connection = subscriptions.div_ceil(CONNECTIONS);
    let names: Vec<String> = (0..subscriptions).map(|i| format!("s{i}")).collect();
    for chunk in names.chunks(per_connection) {
        connect(node, chunk.to_vec(), after, notify.clone())?;
    }
    wait_live(node, subscriptions + 1)?;
    figure(
        "graphql",
        "subscriptions_open",
        metric(node, "hypha_subscriptions_live")? as f64,
        "count",
        None,
    );
    figure(
        "graphql",
        "subscriptions_unindexed",
        metric(node, "hypha_subscriptions_unindexed")? as f64,
        "count",
        None,
    );
    eprintln!("{writes} writes with {subscriptions} subscriptions open…");
    let many = write_to_notify(
        node,
        writes,
        |i| format!("s{}", (i * 7919) % subscriptions),
        &notified,
    )?;
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        figure(
            "graphql",
            &format!("write_to_notify_{name}_us"),
            percentile(&many, p),
            "us",
            Some((
                &format!("write_to_notify_one_subscription_{name}_us"),
                percentile(&single, p),
            )),
        );
    }
    Ok(())
}

/// Waits until the node feeds `count` live subscriptions.
fn wait_live(node: &NodeProcess, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while metric(node, "hypha_subscriptions_live")? < count as u64 {
        if Instant::now() > deadline {
            bail!("the node never had {count} live subscriptions");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
