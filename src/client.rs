//! Commands that talk to a running node over its HTTP API: `query`, `subscribe`, `peers`.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

fn http_error(node: &str, e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, response) => {
            let body = response.into_string().unwrap_or_default();
            anyhow::anyhow!("{node} answered {code}: {body}")
        }
        e => anyhow::anyhow!(
            "cannot reach the node at {node} (is `hypha node` running? see --node): {e}"
        ),
    }
}

/// `hypha query`: prints the data of a GraphQL request; GraphQL errors fail the command.
pub(crate) fn query(node: &str, document: &str, variables: Option<&str>) -> Result<()> {
    let variables: Value = match variables {
        Some(text) => serde_json::from_str(text).context("--variables must be a JSON object")?,
        None => json!({}),
    };
    let body = json!({"query": document, "variables": variables});
    let text = ureq::post(&format!("{node}/graphql"))
        .set("content-type", "application/json")
        .send_string(&body.to_string())
        .map_err(|e| http_error(node, e))?
        .into_string()?;
    let answer: Value = serde_json::from_str(&text).context("the node's answer")?;
    if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        bail!("{}", messages.join("; "));
    }
    println!("{}", serde_json::to_string_pretty(&answer["data"])?);
    Ok(())
}

/// `hypha peers`.
pub(crate) fn peers(node: &str) -> Result<()> {
    let text = ureq::get(&format!("{node}/peers"))
        .call()
        .map_err(|e| http_error(node, e))?
        .into_string()?;
    let answer: Value = serde_json::from_str(&text)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// `hypha subscribe`: a graphql-transport-ws subscription to `deltas`, one JSON line per
/// delta, until the node goes away or the process is stopped.
pub(crate) fn subscribe(node: &str, filter: Option<&str>, after: Option<u64>) -> Result<()> {
    use tungstenite::client::IntoClientRequest;
    let filter: Option<Value> = filter
        .map(serde_json::from_str)
        .transpose()
        .context("--filter must be JSON")?;
    let url = format!("{}/graphql/ws", node.replacen("http", "ws", 1));
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tungstenite::connect(request)
        .with_context(|| format!("cannot open a websocket to {url} (is `hypha node` running?)"))?;
    let send = |socket: &mut tungstenite::WebSocket<_>, v: Value| {
        socket.send(tungstenite::Message::text(v.to_string()))
    };
    send(&mut socket, json!({"type": "connection_init"}))?;
    let mut subscribed = false;
    let stdout = std::io::stdout();
    loop {
        let message = match socket.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(tungstenite::Message::Close(_)) => return Ok(()),
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(e).context("reading the subscription"),
        };
        let message: Value = serde_json::from_str(&message)?;
        match message["type"].as_str() {
            Some("connection_ack") if !subscribed => {
                subscribed = true;
                let query = "subscription($f: JSON, $a: String) { deltas(filter: $f, after: $a) }";
                let variables = json!({"f": filter, "a": after.map(|a| a.to_string())});
                send(
                    &mut socket,
                    json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}),
                )?;
            }
            Some("next") => {
                if let Some(errors) = message["payload"]["errors"].as_array() {
                    bail!("{}", Value::Array(errors.clone()));
                }
                let mut out = stdout.lock();
                writeln!(out, "{}", message["payload"]["data"]["deltas"])?;
                out.flush()?;
            }
            Some("error") => bail!("{}", message["payload"]),
            Some("complete") => return Ok(()),
            Some("ping") => send(&mut socket, json!({"type": "pong"}))?,
            _ => {}
        }
    }
}
