//! The client of a running node's HTTP API ([`NodeClient`]), and the commands that only
//! make sense against a node: `query`, `subscribe`, `peers`.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

fn http_error(node: &str, e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, response) => {
            let body = response.into_string().unwrap_or_default();
            // The API answers {"error": "…"}: show the message alone.
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            anyhow::anyhow!("{node} answered {code}: {message}")
        }
        e => anyhow::anyhow!(
            "cannot reach the node at {node} (is `hypha node` running? see --node): {e}"
        ),
    }
}

/// A running node's HTTP API.
#[derive(Debug, Clone)]
pub(crate) struct NodeClient {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl NodeClient {
    /// A client of the node at `url` (e.g. http://127.0.0.1:8080), sending `token` as a
    /// bearer token when given.
    pub(crate) fn new(url: &str, token: Option<String>) -> NodeClient {
        let url = url.trim_end_matches('/');
        // `--node 127.0.0.1:8080` means the node's HTTP address, as `--http` takes it.
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        NodeClient {
            url,
            token,
            agent: ureq::AgentBuilder::new().build(),
        }
    }

    /// The node's address.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.agent.request(method, &format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.set("authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// `GET path`, as text.
    pub(crate) fn get_text(&self, path: &str) -> Result<String> {
        Ok(self
            .request("GET", path)
            .call()
            .map_err(|e| http_error(&self.url, e))?
            .into_string()?)
    }

    /// `GET path?query` (the parameters URL-encoded), as JSON.
    pub(crate) fn get_with(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let mut request = self.request("GET", path);
        for (name, value) in query {
            request = request.query(name, value);
        }
        let text = request
            .call()
            .map_err(|e| http_error(&self.url, e))?
            .into_string()?;
        serde_json::from_str(&text).context("the node's answer")
    }

    /// `GET path`, as JSON.
    pub(crate) fn get(&self, path: &str) -> Result<Value> {
        serde_json::from_str(&self.get_text(path)?).context("the node's answer")
    }

    /// `POST path` with a body, answered with JSON.
    pub(crate) fn post(&self, path: &str, content_type: &str, body: &str) -> Result<Value> {
        let text = self
            .request("POST", path)
            .set("content-type", content_type)
            .send_string(body)
            .map_err(|e| http_error(&self.url, e))?
            .into_string()?;
        serde_json::from_str(&text).context("the node's answer")
    }

    /// Runs a GraphQL request; its errors fail the call.
    pub(crate) fn graphql(&self, document: &str, variables: Value) -> Result<Value> {
        let body = json!({"query": document, "variables": variables});
        let answer = self.post("/graphql", "application/json", &body.to_string())?;
        if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect();
            bail!("{}", messages.join("; "));
        }
        Ok(answer["data"].clone())
    }
}

/// `hypha query`: prints the data of a GraphQL request; GraphQL errors fail the command.
pub(crate) fn query(node: &NodeClient, document: &str, variables: Option<&str>) -> Result<()> {
    let variables: Value = match variables {
        Some(text) => serde_json::from_str(text).context("--variables must be a JSON object")?,
        None => json!({}),
    };
    let data = node.graphql(document, variables)?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

/// `hypha peers`.
pub(crate) fn peers(node: &NodeClient) -> Result<()> {
    let answer = node.get("/peers")?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// `hypha subscribe`: a graphql-transport-ws subscription to `deltas`, one JSON line per
/// delta, until the node goes away or the process is stopped.
pub(crate) fn subscribe(node: &NodeClient, filter: Option<&str>, after: Option<u64>) -> Result<()> {
    use tungstenite::client::IntoClientRequest;
    let filter: Option<Value> = filter
        .map(serde_json::from_str)
        .transpose()
        .context("--filter must be JSON")?;
    let url = format!("{}/graphql/ws", node.url().replacen("http", "ws", 1));
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
