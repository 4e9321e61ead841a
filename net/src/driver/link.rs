//! One outbound link: dial, handshake, then relay a peer's replies and PUB stream to the
//! driver and the driver's requests to the peer, redialling with backoff when it breaks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hypha_primitives::HostId;
use tokio::sync::mpsc;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, SubSocket};

use super::{
    frames, Inbound, Shared, HELLO, MESSAGE, PING, PLAIN, PROOF, PUBLISH_KEY, SEALED, WELCOME,
};
use crate::dialer::{Next, Redial};
use crate::handshake::{self, nonce, Hello, Welcome};
use crate::liveness::{Check, Liveness};
use crate::seal::{Ephemeral, GroupKey, LinkKeys};
use crate::{topics, wire, Message};

/// Why a link session ended.
enum Ended {
    /// The link never came up: redial after a pause.
    Retry(String),
    /// The link was up and broke: redial after a pause.
    Broke(String),
    /// This node dialled itself: never redial.
    SelfLink,
}

/// One outbound link: dials, handshakes, relays, and redials when it breaks, as the
/// dialer's [`Redial`] policy says (a learnt address gives up after failing in a row).
pub(super) async fn run_link(link: u64, address: String, shared: Arc<Shared>, learnt: bool) {
    let mut redial = Redial::new(learnt);
    loop {
        let next = match session(link, &address, &shared).await {
            Ended::SelfLink => Next::GiveUp,
            Ended::Retry(why) => {
                tracing::debug!(%address, why, "link failed");
                let next = redial.failed();
                if next == Next::GiveUp {
                    tracing::info!(%address, "giving up a learnt peer that does not answer");
                }
                next
            }
            Ended::Broke(why) => {
                tracing::debug!(%address, why, "link ended");
                redial.broke()
            }
        };
        match next {
            Next::After(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Next::GiveUp => {
                let _ = shared
                    .inbound
                    .send(Inbound::LinkGone { link, address })
                    .await;
                return;
            }
        }
    }
}

async fn session(link: u64, address: &str, shared: &Shared) -> Ended {
    let config = &shared.config;
    let handshake_timeout = Duration::from_millis(config.handshake_timeout_ms);
    let mut dealer = DealerSocket::new();
    match tokio::time::timeout(handshake_timeout, dealer.connect(address)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Ended::Retry(format!("connect: {e}")),
        Err(_) => return Ended::Retry("connect timed out".into()),
    }
    let ephemeral = Ephemeral::new();
    let hello = Hello {
        host: shared.key.host_id(),
        nonce: nonce(),
        router: shared.endpoints.router.clone(),
        publish: shared.endpoints.publish.clone(),
        ephemeral: ephemeral.public,
        encrypt: config.encryption.wants(address),
    };
    let Some(opening) = frames(vec![HELLO.into(), hello.encode().into()]) else {
        return Ended::Retry("framing".into());
    };
    if let Err(e) = dealer.send(opening).await {
        return Ended::Retry(format!("send hello: {e}"));
    }
    let welcome = match tokio::time::timeout(handshake_timeout, dealer.recv()).await {
        Ok(Ok(reply)) => {
            let parts = reply.into_vec();
            match parts.as_slice() {
                [tag, payload] if tag.as_ref() == WELCOME => match Welcome::decode(payload) {
                    Ok(w) => w,
                    Err(e) => return Ended::Retry(e.to_string()),
                },
                _ => return Ended::Retry("unexpected handshake reply".into()),
            }
        }
        Ok(Err(e)) => return Ended::Retry(format!("handshake: {e}")),
        Err(_) => return Ended::Retry("handshake timed out".into()),
    };
    if welcome.host == shared.key.host_id() {
        return Ended::SelfLink;
    }
    let proof = match welcome.check(&hello, &shared.key) {
        Ok(proof) => proof,
        Err(e) => {
            tracing::warn!(%address, error = %e, "peer failed to prove its identity");
            return Ended::Retry(e.to_string());
        }
    };
    let mut keys = if handshake::encrypted(&hello, &welcome) {
        let transcript = handshake::transcript(&hello, &welcome);
        match ephemeral.agree(&welcome.ephemeral, &transcript, true) {
            Ok(keys) => Some(keys),
            Err(e) => return Ended::Retry(e.to_string()),
        }
    } else {
        None
    };
    let Some(proof) = frames(vec![PROOF.into(), proof.encode().into()]) else {
        return Ended::Retry("framing".into());
    };
    if let Err(e) = dealer.send(proof).await {
        return Ended::Retry(format!("send proof: {e}"));
    }
    // The listener answers a good proof with its publish key (sealed, or nothing).
    let publish_key = match tokio::time::timeout(handshake_timeout, dealer.recv()).await {
        Ok(Ok(reply)) => {
            let parts = reply.into_vec();
            match (parts.as_slice(), keys.as_mut()) {
                ([tag, handed], encrypted) if tag.as_ref() == PUBLISH_KEY && handed.is_empty() => {
                    if encrypted.is_some() {
                        tracing::info!(%address, "the link is encrypted, but the peer's PUB stream is not sealed (its --encrypt policy)");
                    }
                    None
                }
                ([tag, handed], Some(keys)) if tag.as_ref() == PUBLISH_KEY => {
                    match keys.open.open(handed).map(<[u8; 32]>::try_from) {
                        Ok(Ok(key)) => Some(GroupKey::from_bytes(key)),
                        _ => return Ended::Retry("a publish key that does not open".into()),
                    }
                }
                _ => return Ended::Retry("no publish key after the proof".into()),
            }
        }
        Ok(Err(e)) => return Ended::Retry(format!("handshake: {e}")),
        Err(_) => return Ended::Retry("proof unanswered".into()),
    };
    let host = welcome.host;
    let mut sub = SubSocket::new();
    for topic in topics::subscriptions(config.replicate.as_ref()) {
        if let Err(e) = sub.subscribe(&topic).await {
            return Ended::Retry(format!("subscribe: {e}"));
        }
    }
    if let Err(e) = sub.connect(&welcome.publish).await {
        return Ended::Retry(format!("connect to {}: {e}", welcome.publish));
    }
    let (outbound, mut outbound_rx) = mpsc::channel::<Message>(256);
    let up = Inbound::LinkUp {
        link,
        host,
        outbound,
    };
    if shared.inbound.send(up).await.is_err() {
        return Ended::Retry("driver gone".into());
    }
    let ended = relay(
        host,
        &mut dealer,
        &mut sub,
        &mut outbound_rx,
        Crypto {
            link: keys,
            publish: publish_key,
            previous: None,
        },
        shared,
    )
    .await;
    let _ = shared.inbound.send(Inbound::LinkDown { link, host }).await;
    Ended::Broke(ended)
}

/// Passes a linked peer's messages to the driver and the driver's requests to the peer,
/// until the link breaks or goes quiet.
/// A link's keys: its own (when encrypted), and the peer's publish key (when its PUB
/// stream is sealed).
struct Crypto {
    link: Option<LinkKeys>,
    publish: Option<GroupKey>,
    /// The publish key before the latest replacement, for frames sealed before it.
    previous: Option<GroupKey>,
}

async fn relay(
    host: HostId,
    dealer: &mut DealerSocket,
    sub: &mut SubSocket,
    outbound: &mut mpsc::Receiver<Message>,
    mut crypto: Crypto,
    shared: &Shared,
) -> String {
    let config = &shared.config;
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let mut liveness = Liveness::new(
        now(),
        config.protocol.request_timeout_ms,
        config.protocol.peer_timeout_ms,
    );
    let mut check = tokio::time::interval(Duration::from_millis(config.tick_ms.max(10)));
    let max = config.max_message_bytes;
    loop {
        tokio::select! {
            reply = dealer.recv() => {
                let Ok(reply) = reply else { return "dealer closed".into() };
                liveness.answered(now());
                let parts = reply.into_vec();
                if let [tag, payload] = parts.as_slice() {
                    tracing::trace!(peer = %host, bytes = payload.len(), "reply");
                    if tag.as_ref() == PUBLISH_KEY {
                        // The peer replaced its publish key (it banned someone).
                        let key = crypto.link.as_mut().map(|k| k.open.open(payload));
                        match key.map(|opened| opened.map(<[u8; 32]>::try_from)) {
                            Some(Ok(Ok(key))) => {
                                crypto.previous = crypto.publish.replace(GroupKey::from_bytes(key));
                            }
                            _ => tracing::debug!(peer = %host, "ignoring a publish key that does not open"),
                        }
                    } else if tag.as_ref() == MESSAGE {
                        match crypto.link.as_mut().map(|k| k.open.open(payload)) {
                            None => forward(host, payload, max, shared).await,
                            Some(Ok(plain)) => forward(host, &plain, max, shared).await,
                            Some(Err(e)) => {
                                shared.counters.received(payload.len());
                                let _ = shared.inbound.send(Inbound::Invalid { from: host, what: e.to_string() }).await;
                            }
                        }
                    }
                }
            }
            published = sub.recv() => {
                let Ok(published) = published else { return "subscription closed".into() };
                let parts = published.into_vec();
                if let [topic, sender, payload] = parts.as_slice() {
                    // The stream is the peer's own PUB socket; anything claiming otherwise
                    // is ignored.
                    if sender.as_ref() == host.as_bytes() {
                        tracing::trace!(peer = %host, bytes = payload.len(), "published message");
                        liveness.heard(now());
                        // Frames that do not open are dropped, not held against the peer: the
                        // SUB connection is not authenticated, so anyone on the path could
                        // have put them there. (A plain frame before the peer started
                        // sealing is lost like any PUB frame; catch-up repairs it.)
                        match (payload.split_first(), &crypto.publish) {
                            (Some((&PLAIN, message)), None) => forward(host, message, max, shared).await,
                            (Some((&SEALED, sealed)), Some(key)) => {
                                let aad = [topic.as_ref(), sender.as_ref()].concat();
                                let opened = key.open(&aad, sealed).or_else(|e| match &crypto.previous {
                                    Some(previous) => previous.open(&aad, sealed),
                                    None => Err(e),
                                });
                                match opened {
                                    Ok(plain) => forward(host, &plain, max, shared).await,
                                    Err(e) => tracing::debug!(peer = %host, error = %e, "dropping a PUB frame"),
                                }
                            }
                            _ => tracing::debug!(peer = %host, "dropping a PUB frame not sealed as the link's keys say"),
                        }
                    }
                }
            }
            message = outbound.recv() => {
                let Some(message) = message else { return "closed by the driver".into() };
                let is_request = matches!(message, Message::CatchUpRequest { .. });
                let mut bytes = wire::encode(&message);
                if let Some(keys) = crypto.link.as_mut() {
                    bytes = keys.send.seal(&bytes);
                }
                shared.counters.sent(bytes.len());
                let Some(frame) = frames(vec![MESSAGE.into(), bytes.into()]) else { continue };
                if let Err(e) = dealer.send(frame).await {
                    return format!("send: {e}");
                }
                if is_request {
                    liveness.asked(now());
                }
            }
            _ = check.tick() => match liveness.check(now()) {
                Check::Fine => {}
                Check::Unanswered => return "request unanswered; redialling".into(),
                Check::Quiet => return "peer quiet; redialling".into(),
                Check::Keepalive => {
                    let Some(frame) = frames(vec![PING.into(), Bytes::new()]) else { continue };
                    if let Err(e) = dealer.send(frame).await {
                        return format!("send: {e}");
                    }
                    liveness.asked(now());
                }
            },
        }
    }
}

async fn forward(host: HostId, payload: &[u8], max: usize, shared: &Shared) {
    shared.counters.received(payload.len());
    let inbound = match wire::decode(payload, max) {
        Ok(message) => Inbound::Message {
            from: host,
            message,
        },
        Err(e) => Inbound::Invalid {
            from: host,
            what: e.to_string(),
        },
    };
    let _ = shared.inbound.send(inbound).await;
}
