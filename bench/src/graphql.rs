//! `hypha-bench graphql`: reading records by id through the GraphQL endpoint of a
//! `hypha node` process on loopback, beside the same node's plain HTTP round trip, and
//! the same reads with `_meta` (confidence joined at read) beside plain reads.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hypha_primitives::{Delta, Pointer};
use rayon::prelude::*;
use serde_json::json;

use crate::net::NodeProcess;
use crate::{figure, rate, seed, sign_all};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Requests per second with one client per agent, each on its own keep-alive connection.
fn throughput(
    agents: &[ureq::Agent],
    per_client: usize,
    call: impl Fn(&ureq::Agent, usize) -> Result<()> + Sync,
) -> Result<f64> {
    let start = Instant::now();
    agents
        .par_iter()
        .enumerate()
        .map(|(c, agent)| {
            for i in 0..per_client {
                call(agent, c * per_client + i)?;
            }
            Ok(())
        })
        .collect::<Result<Vec<()>>>()?;
    Ok(rate(agents.len() * per_client, start))
}

/// Runs the GraphQL bench over `entities` users.
pub(crate) fn run(
    entities: usize,
    requests: usize,
    subscriptions: usize,
    writes: usize,
) -> Result<()> {
    figure("graphql", "entities", entities as f64, "count", None);
    let node = NodeProcess::start(&[])?;
    let schema = json!({"type": "user", "properties": {
        "name": {"resolver": "lww", "type": "string"},
        "age": {"resolver": "max", "type": "number"}}});
    node.post(
        "/graphql",
        &json!({"query": "mutation($s: JSON!) { putSchema(schema: $s) { id } }", "variables": {"s": schema}})
            .to_string(),
    )?;
    eprintln!("loading {entities} users (2 deltas each)…");
    let deltas: Vec<Delta> = sign_all(entities * 2, (300..308).map(seed), |i| {
        let (entity, property) = (
            format!("u{}", i / 2),
            if i % 2 == 0 { "name" } else { "age" },
        );
        let value: hypha_primitives::Primitive = if i % 2 == 0 {
            format!("user {}", i / 2).into()
        } else {
            ((i / 2 % 90) as i64).into()
        };
        vec![
            Pointer::entity("subject", entity, property),
            Pointer::value(property, value),
        ]
    });
    let lines: Vec<String> = deltas.par_iter().map(Delta::to_json_string).collect();
    for chunk in lines.chunks(8192) {
        node.post("/deltas", &chunk.join("\n"))?;
    }
    drop(lines);
    let last = format!("u{}", entities - 1);
    let query = |id: &str| {
        json!({"query": "query($id: ID!) { user(id: $id) { name age } }", "variables": {"id": id}})
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let answer = node.post("/graphql", &query(&last))?;
        if !answer["data"]["user"].is_null() && answer["data"]["user"]["age"].is_number() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "views never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }

    eprintln!("{requests} sequential requests of each kind…");
    let agent = ureq::AgentBuilder::new().build();
    let graphql_url = format!("{}/graphql", node.http);
    let health_url = format!("{}/health", node.http);
    let read = |agent: &ureq::Agent, i: usize| -> Result<()> {
        let id = format!("u{}", (i * 7919) % entities);
        let text = agent
            .post(&graphql_url)
            .set("content-type", "application/json")
            .send_string(&query(&id))?
            .into_string()?;
        anyhow::ensure!(text.contains("\"age\""), "unexpected answer {text}");
        Ok(())
    };
    // The same read with the record's provenance and confidence (`_meta`), which joins in
    // what the network knows at read time.
    let meta_query = |id: &str| {
        json!({"query": "query($id: ID!) { user(id: $id) { name age _meta { provisional confidence } } }", "variables": {"id": id}})
            .to_string()
    };
    let meta_read = |agent: &ureq::Agent, i: usize| -> Result<()> {
        let id = format!("u{}", (i * 7919) % entities);
        let text = agent
            .post(&graphql_url)
            .set("content-type", "application/json")
            .send_string(&meta_query(&id))?
            .into_string()?;
        anyhow::ensure!(text.contains("\"provisional\""), "unexpected answer {text}");
        Ok(())
    };
    let health = |agent: &ureq::Agent, _: usize| -> Result<()> {
        agent.get(&health_url).call()?.into_string()?;
        Ok(())
    };
    // The three kinds of request take turns, request by request for latency and in rounds
    // for throughput, so that a change in the machine's speed during the run (these
    // machines are shared) falls on each of them alike.
    let mut lat: [Vec<f64>; 3] = Default::default();
    for i in 0..requests {
        for (kind, out) in lat.iter_mut().enumerate() {
            let start = Instant::now();
            match kind {
                0 => health(&agent, i),
                1 => read(&agent, i).context("GraphQL reads"),
                _ => meta_read(&agent, i).context("GraphQL reads with _meta"),
            }?;
            out.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    for out in &mut lat {
        out.sort_by(f64::total_cmp);
    }
    let [plain, reads, meta_reads] = lat;
    figure(
        "graphql",
        "http_health_p50_us",
        percentile(&plain, 0.5),
        "us",
        None,
    );
    figure(
        "graphql",
        "read_by_id_p50_us",
        percentile(&reads, 0.5),
        "us",
        Some(("http_health_p50_us", percentile(&plain, 0.5))),
    );
    figure(
        "graphql",
        "read_by_id_p99_us",
        percentile(&reads, 0.99),
        "us",
        Some(("http_health_p99_us", percentile(&plain, 0.99))),
    );
    figure(
        "graphql",
        "meta_read_p50_us",
        percentile(&meta_reads, 0.5),
        "us",
        Some(("read_by_id_p50_us", percentile(&reads, 0.5))),
    );

    eprintln!("throughput with 4 clients, in 10 rounds of each kind…");
    const ROUNDS: usize = 10;
    let per_client = (requests / 4 / ROUNDS).max(1);
    // The clients keep their connections from round to round, as they would from request
    // to request: a round costs no connection set-up.
    let agents: Vec<ureq::Agent> = (0..4).map(|_| ureq::AgentBuilder::new().build()).collect();
    let mut seconds = [0f64; 3];
    for _ in 0..ROUNDS {
        for (kind, total) in seconds.iter_mut().enumerate() {
            let rate = match kind {
                0 => throughput(&agents, per_client, health),
                1 => throughput(&agents, per_client, read),
                _ => throughput(&agents, per_client, meta_read),
            }?;
            *total += (4 * per_client) as f64 / rate;
        }
    }
    let [plain_rate, read_rate, meta_rate] = seconds.map(|s| (ROUNDS * 4 * per_client) as f64 / s);
    figure(
        "graphql",
        "reads_per_s",
        read_rate,
        "1/s",
        Some(("http_health_per_s", plain_rate)),
    );
    figure(
        "graphql",
        "meta_reads_per_s",
        meta_rate,
        "1/s",
        Some(("reads_per_s", read_rate)),
    );
    crate::subscriptions::run(&node, subscriptions, writes)?;
    drop(node);
    crate::subscription_memory::run(subscriptions)
}
