//! A GraphQL client for the tests: requests over HTTP, and subscriptions over a real
//! websocket in the graphql-transport-ws protocol.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::NodeProcess;

pub(crate) fn gql(node: &NodeProcess, query: &str, variables: Value) -> Value {
    node.post(
        "/graphql",
        &json!({"query": query, "variables": variables}).to_string(),
    )
    .expect("a GraphQL answer")
}

/// The data of a request that must succeed.
pub(crate) fn data(node: &NodeProcess, query: &str, variables: Value) -> Value {
    let answer = gql(node, query, variables);
    assert!(answer.get("errors").is_none(), "{answer}");
    answer["data"].clone()
}

/// The first error message of a request that must fail.
pub(crate) fn error(node: &NodeProcess, query: &str, variables: Value) -> String {
    let answer = gql(node, query, variables);
    answer["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {answer}"))
        .to_owned()
}

pub(crate) const PUT_SCHEMA: &str = "mutation($s: JSON!) { putSchema(schema: $s) { id } }";
pub(crate) const WRITE: &str =
    "mutation($p: [PointerInput!]!) { write(pointers: $p) { id seq confidence reached } }";

pub(crate) fn set(entity: &str, property: &str, value: Value) -> Value {
    json!([
        {"localContext": "subject", "entity": entity, "targetContext": property},
        {"localContext": property, "value": value}
    ])
}

/// A graphql-transport-ws client over a real websocket.
pub(crate) struct Subscriber {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
}

impl Subscriber {
    pub(crate) fn open(node: &NodeProcess, query: &str, variables: Value) -> Subscriber {
        let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}});
        Subscriber::open_with(node, &subscribe.to_string())
    }

    /// Opens a connection and sends `subscribe`, a graphql-transport-ws message as text.
    pub(crate) fn open_with(node: &NodeProcess, subscribe: &str) -> Subscriber {
        use tungstenite::client::IntoClientRequest;
        let url = node.http.replace("http://", "ws://") + "/graphql/ws";
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, _) = tungstenite::connect(request).expect("websocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            // A missing event fails the test instead of hanging it.
            tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        }
        let mut send = |v: Value| {
            socket
                .send(tungstenite::Message::text(v.to_string()))
                .unwrap()
        };
        send(json!({"type": "connection_init"}));
        let mut subscriber = Subscriber { socket };
        let ack = subscriber.next_message();
        assert_eq!(ack["type"], json!("connection_ack"), "{ack}");
        subscriber
            .socket
            .send(tungstenite::Message::text(subscribe))
            .unwrap();
        subscriber
    }

    /// Whether the node closed the connection (a close frame or the socket ending) before
    /// sending any further message.
    pub(crate) fn closed_by_node(&mut self) -> bool {
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Close(_)) | Err(_) => return true,
                Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
                Ok(_) => return false,
            }
        }
    }

    pub(crate) fn next_message(&mut self) -> Value {
        loop {
            match self.socket.read().expect("websocket read") {
                tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
                other => panic!("unexpected websocket message {other:?}"),
            }
        }
    }

    /// The next event's data field, or None if none comes within `wait`.
    pub(crate) fn try_next(&mut self, field: &str, wait: Duration) -> Option<Value> {
        let tungstenite::stream::MaybeTlsStream::Plain(tcp) = self.socket.get_ref() else {
            panic!("plain websocket expected");
        };
        tcp.set_read_timeout(Some(wait)).unwrap();
        let message = loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    break serde_json::from_str::<Value>(&text).unwrap()
                }
                Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
                Ok(other) => panic!("unexpected websocket message {other:?}"),
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return None
                }
                Err(e) => panic!("websocket read: {e}"),
            }
        };
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = self.socket.get_ref() {
            tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        }
        assert_eq!(message["type"], json!("next"), "{message}");
        Some(message["payload"]["data"][field].clone())
    }

    /// The next subscription event's data field.
    pub(crate) fn next(&mut self, field: &str) -> Value {
        let message = self.next_message();
        assert_eq!(message["type"], json!("next"), "{message}");
        message["payload"]["data"][field].clone()
    }
}
