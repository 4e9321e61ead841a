//! A peer played by hand over a raw ZeroMQ DEALER socket, for tests of what a node does
//! with a misbehaving peer: it performs the real handshake (so the node takes it for a
//! proven peer), then sends whatever the test tells it to. Behind the `test-utils` feature.

use std::time::Duration;

use bytes::Bytes;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use crate::handshake::{nonce, transcript, Hello, Welcome};
use crate::seal::{Ephemeral, GroupKey, LinkKeys};
use crate::{wire, Message};
use hypha_primitives::KeyPair;

/// A hand-played peer linked to one node's ROUTER socket.
pub struct RawPeer {
    dealer: DealerSocket,
    /// The link's keys, when the handshake agreed on encryption.
    pub keys: Option<LinkKeys>,
}

impl std::fmt::Debug for RawPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPeer")
            .field("encrypted", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

fn frame(parts: Vec<Vec<u8>>) -> ZmqMessage {
    ZmqMessage::try_from(parts.into_iter().map(Bytes::from).collect::<Vec<_>>())
        .expect("at least one frame")
}

impl RawPeer {
    /// Dials `router` and completes the handshake as `key` (asking for encryption when
    /// `encrypt`); panics if the node does not answer, as a test should.
    pub async fn handshake(router: &str, key: &KeyPair, encrypt: bool) -> RawPeer {
        let mut dealer = DealerSocket::new();
        dealer.connect(router).await.expect("dial the node");
        let ephemeral = Ephemeral::new();
        let hello = Hello {
            host: key.host_id(),
            nonce: nonce(),
            // Addresses nobody listens on: the node's dial-back goes nowhere.
            router: "tcp://127.0.0.1:1".into(),
            publish: "tcp://127.0.0.1:2".into(),
            ephemeral: ephemeral.public,
            encrypt,
        };
        dealer
            .send(frame(vec![b"h".to_vec(), hello.encode()]))
            .await
            .expect("send hello");
        let reply = dealer.recv().await.expect("a welcome").into_vec();
        let welcome = Welcome::decode(&reply[1]).expect("a welcome that decodes");
        let proof = welcome.check(&hello, key).expect("a welcome that verifies");
        let keys = (hello.encrypt || welcome.encrypt).then(|| {
            ephemeral
                .agree(&welcome.ephemeral, &transcript(&hello, &welcome), true)
                .expect("a key agreement")
        });
        dealer
            .send(frame(vec![b"p".to_vec(), proof.encode()]))
            .await
            .expect("send proof");
        RawPeer { dealer, keys }
    }

    /// Dials `router` as `key` speaking wire version 1 (whose hello ends before the version
    /// byte) and says whether a welcome came back within `wait`.
    pub async fn hello_of_version_1(router: &str, key: &KeyPair, wait: Duration) -> bool {
        let mut dealer = DealerSocket::new();
        dealer.connect(router).await.expect("dial the node");
        let hello = Hello {
            host: key.host_id(),
            nonce: nonce(),
            router: "tcp://127.0.0.1:1".into(),
            publish: "tcp://127.0.0.1:2".into(),
            ephemeral: Ephemeral::new().public,
            encrypt: false,
        };
        let mut bytes = hello.encode();
        bytes.pop();
        dealer
            .send(frame(vec![b"h".to_vec(), bytes]))
            .await
            .expect("send hello");
        tokio::time::timeout(wait, dealer.recv()).await.is_ok()
    }

    /// Sends a protocol message (sealed when the link is encrypted).
    pub async fn send(&mut self, message: &Message) {
        let mut bytes = wire::encode(message);
        if let Some(keys) = self.keys.as_mut() {
            bytes = keys.send.seal(&bytes);
        }
        self.dealer
            .send(frame(vec![b"m".to_vec(), bytes]))
            .await
            .expect("send a message");
    }

    /// The next frames the node sends, if any come `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Vec<Bytes>> {
        match tokio::time::timeout(within, self.dealer.recv()).await {
            Ok(Ok(message)) => Some(message.into_vec()),
            _ => None,
        }
    }

    /// Waits `within` for the node's publish-key frame: `None` if none came, `Some(None)`
    /// if the node's PUB stream is plain, `Some(Some(key))` otherwise.
    pub async fn publish_key(&mut self, within: Duration) -> Option<Option<GroupKey>> {
        let frames = self.next(within).await?;
        assert_eq!(
            frames[0].as_ref(),
            b"k",
            "the publish-key frame comes first"
        );
        if frames[1].is_empty() {
            return Some(None);
        }
        let keys = self
            .keys
            .as_mut()
            .expect("a sealed key on an encrypted link");
        let key: [u8; 32] = keys
            .open
            .open(&frames[1])
            .expect("a publish key that opens")
            .try_into()
            .expect("32 bytes");
        Some(Some(GroupKey::from_bytes(key)))
    }
}
