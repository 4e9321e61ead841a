//! The ROUTER task: answers handshakes, hands proven peers the publish key, answers
//! keepalives, and passes proven peers' messages to the driver and its replies back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use hypha_primitives::HostId;
use tokio::sync::mpsc;
use zeromq::{RouterSocket, SocketRecv, SocketSend};

use super::{
    frames, Inbound, RouterCommand, Shared, HELLO, MESSAGE, PING, PONG, PROOF, PUBLISH_KEY, WELCOME,
};
use crate::handshake::{self, nonce, Hello, Proof, Welcome};
use crate::seal::{Ephemeral, LinkKeys};
use crate::wire;

/// The ROUTER side: answers handshakes, authenticates peers, passes their messages on,
/// and sends catch-up pages back to them.
pub(super) async fn run_router(
    socket: RouterSocket,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<RouterCommand>,
) {
    let (mut send, mut recv) = socket.split();
    // Handshakes in progress, by connection identity: the hello, our welcome and our key.
    let mut pending: HashMap<Bytes, (Hello, Welcome, Ephemeral)> = HashMap::new();
    let mut host_of: HashMap<Bytes, HostId> = HashMap::new();
    let mut identity_of: HashMap<HostId, Bytes> = HashMap::new();
    // The keys of encrypted links, by connection identity.
    let mut sealed: HashMap<Bytes, LinkKeys> = HashMap::new();
    let max = shared.config.max_message_bytes;
    loop {
        tokio::select! {
            received = recv.recv() => {
                let Ok(message) = received else { continue };
                let parts = message.into_vec();
                let [identity, tag, payload] = <[Bytes; 3]>::try_from(parts).unwrap_or_else(|_| {
                    [Bytes::new(), Bytes::new(), Bytes::new()]
                });
                match tag.as_ref() {
                    // A connection that has proven its identity does not handshake again
                    // (a redial is a new connection).
                    HELLO if host_of.contains_key(&identity) => {}
                    HELLO => match Hello::decode(&payload) {
                        Ok(hello) => {
                            let ephemeral = Ephemeral::new();
                            let welcome = hello.welcome(&shared.key, nonce(), shared.endpoints.publish.clone(), ephemeral.public, shared.listener_wants());
                            pending.insert(identity.clone(), (hello, welcome.clone(), ephemeral));
                            if pending.len() > 1024 {
                                // Unfinished handshakes are bounded; start over if flooded.
                                pending.clear();
                            }
                            if let Some(reply) = frames(vec![identity, WELCOME.into(), welcome.encode().into()]) {
                                let _ = send.send(reply).await;
                            }
                        }
                        Err(e) => {
                            shared.counters.refused();
                            tracing::warn!(error = %e, "refusing a handshake");
                        }
                    },
                    PROOF => {
                        let Some((hello, welcome, ephemeral)) = pending.remove(&identity) else { continue };
                        if shared.banned.lock().is_ok_and(|b| b.contains(&hello.host)) {
                            // A banned host gets neither the publish key nor a link.
                            continue;
                        }
                        let checked = Proof::decode(&payload)
                            .and_then(|proof| hello.check(&proof, &welcome));
                        match checked {
                            Ok(()) => {
                                // The publish key goes to a proven peer only, sealed when
                                // the link is (it always is when the PUB stream is sealed).
                                let mut handed = Vec::new();
                                if handshake::encrypted(&hello, &welcome) {
                                    let transcript = handshake::transcript(&hello, &welcome);
                                    match ephemeral.agree(&hello.ephemeral, &transcript, false) {
                                        Ok(mut keys) => {
                                            // The key goes out only when the stream is sealed
                                            // (and then the link always is: `listener_wants`).
                                            if shared.seal_publish.load(Ordering::Relaxed) {
                                                handed = keys.send.seal(&shared.current_publish_key().to_bytes());
                                            }
                                            sealed.insert(identity.clone(), keys);
                                        }
                                        Err(e) => {
                                            tracing::warn!(error = %e, peer = %hello.host, "refusing a link");
                                            continue;
                                        }
                                    }
                                } else {
                                    sealed.remove(&identity);
                                }
                                if let Some(frame) = frames(vec![identity.clone(), PUBLISH_KEY.into(), handed.into()]) {
                                    let _ = send.send(frame).await;
                                }
                                // A host that redialled leaves its old connection behind.
                                if let Some(old) = identity_of.insert(hello.host, identity.clone()) {
                                    if old != identity {
                                        host_of.remove(&old);
                                        sealed.remove(&old);
                                    }
                                }
                                host_of.insert(identity, hello.host);
                                let _ = shared.inbound.send(Inbound::Authenticated { host: hello.host, router: hello.router }).await;
                            }
                            Err(e) => {
                                shared.counters.refused();
                                tracing::warn!(error = %e, claimed = %hello.host, "refusing a peer that cannot prove its identity");
                            }
                        }
                    }
                    PING if host_of.contains_key(&identity) => {
                        if let Some(reply) = frames(vec![identity, PONG.into(), Bytes::new()]) {
                            let _ = send.send(reply).await;
                        }
                    }
                    MESSAGE => {
                        // Messages count only from a peer that has proven who it is.
                        let Some(&from) = host_of.get(&identity) else { continue };
                        shared.counters.received(payload.len());
                        let payload = match sealed.get_mut(&identity) {
                            Some(keys) => match keys.open.open(&payload) {
                                Ok(plain) => Bytes::from(plain),
                                Err(e) => {
                                    let _ = shared.inbound.send(Inbound::Invalid { from, what: e.to_string() }).await;
                                    continue;
                                }
                            },
                            None => payload,
                        };
                        match wire::decode(&payload, max) {
                            Ok(message) => { let _ = shared.inbound.send(Inbound::Message { from, message }).await; }
                            Err(e) => { let _ = shared.inbound.send(Inbound::Invalid { from, what: e.to_string() }).await; }
                        }
                    }
                    _ => {}
                }
            }
            command = commands.recv() => match command {
                None => return,
                Some(RouterCommand::Send { to, bytes }) => {
                    let Some(identity) = identity_of.get(&to) else { continue };
                    let bytes = match sealed.get_mut(identity) {
                        Some(keys) => keys.send.seal(&bytes),
                        None => bytes,
                    };
                    shared.counters.sent(bytes.len());
                    if let Some(message) = frames(vec![identity.clone(), MESSAGE.into(), bytes.into()]) {
                        let _ = send.send(message).await;
                    }
                }
                Some(RouterCommand::Forget(host)) => {
                    if let Some(identity) = identity_of.remove(&host) {
                        host_of.remove(&identity);
                        sealed.remove(&identity);
                    }
                }
                Some(RouterCommand::Rekey) => {
                    let key = shared.current_publish_key().to_bytes();
                    for (identity, keys) in sealed.iter_mut() {
                        let banned = host_of
                            .get(identity)
                            .is_none_or(|host| shared.banned.lock().is_ok_and(|b| b.contains(host)));
                        if banned {
                            continue;
                        }
                        if let Some(frame) = frames(vec![identity.clone(), PUBLISH_KEY.into(), keys.send.seal(&key).into()]) {
                            let _ = send.send(frame).await;
                        }
                    }
                }
            }
        }
    }
}
