//! The network's configuration, its errors and its counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::seal::is_loopback;
use crate::{wire, PeerConfig};
use hypha_primitives::Filter;

/// When links and the PUB stream are encrypted (`seal.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Encrypt what goes beyond this machine: links to or from non-loopback addresses, and
    /// the PUB stream when it is bound to one.
    #[default]
    Auto,
    /// Encrypt every link and the PUB stream.
    On,
    /// Never ask for encryption (a peer that asks for it still gets it).
    Off,
}

impl Encryption {
    /// Whether this node asks for encryption on a link to or from `address`.
    pub fn wants(self, address: &str) -> bool {
        match self {
            Encryption::On => true,
            Encryption::Off => false,
            Encryption::Auto => !is_loopback(address),
        }
    }
}

/// Where a node listens and whom it dials; plain data with defaults for a single node on
/// loopback.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The ROUTER address to bind (`tcp://127.0.0.1:0` picks a free port).
    pub listen: String,
    /// The PUB address to bind.
    pub publish: String,
    /// ROUTER addresses of the peers to dial.
    pub peers: Vec<String>,
    /// The protocol's timing and size bounds.
    pub protocol: PeerConfig,
    /// How often the state machine ticks (ms).
    pub tick_ms: u64,
    /// Largest message accepted from a peer, in bytes.
    pub max_message_bytes: usize,
    /// How long a dialled peer has to answer the handshake (ms).
    pub handshake_timeout_ms: u64,
    /// Invalid deltas or messages from one peer before it is disconnected.
    pub max_invalid: u32,
    /// How long a disconnected misbehaving peer stays banned (ms).
    pub ban_ms: u64,
    /// Replicate only the deltas this filter selects (a partial replica): deltas from
    /// peers outside it are not stored, and catch-up reconciles the slice with each peer
    /// instead of asking by coverage. `None`: every delta.
    pub replicate: Option<Filter>,
    /// Peers learnt from other peers' lists that this node dials, at most (0: learn none,
    /// keep to the configured peers and those that dial in).
    pub max_learnt_peers: usize,
    /// How often linked peers are told which peers this node is linked to (ms).
    pub exchange_every_ms: u64,
    /// When links and the PUB stream are encrypted.
    pub encryption: Encryption,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: "tcp://127.0.0.1:7400".into(),
            publish: "tcp://127.0.0.1:7401".into(),
            peers: Vec::new(),
            protocol: PeerConfig::default(),
            tick_ms: 100,
            max_message_bytes: wire::DEFAULT_MAX_MESSAGE_BYTES,
            handshake_timeout_ms: 2_000,
            max_invalid: 3,
            ban_ms: 60_000,
            replicate: None,
            max_learnt_peers: 8,
            exchange_every_ms: 10_000,
            encryption: Encryption::Auto,
        }
    }
}

/// What can stop the network from starting.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An address could not be bound.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        source: zeromq::ZmqError,
    },
    /// The journal could not be read.
    #[error("journal: {0}")]
    Store(#[from] hypha_delta_store::Error),
}

impl NetError {
    /// True when starting again later may succeed: the address may be free by then, or the
    /// journal's error was a passing one.
    pub fn is_retryable(&self) -> bool {
        match self {
            NetError::Bind { source, .. } => !matches!(source, zeromq::ZmqError::Endpoint(_)),
            NetError::Store(e) => e.is_retryable(),
        }
    }

    /// True when the configuration was at fault: an address that does not parse.
    pub fn is_rejected_input(&self) -> bool {
        match self {
            NetError::Bind { source, .. } => matches!(source, zeromq::ZmqError::Endpoint(_)),
            NetError::Store(e) => e.is_rejected_input(),
        }
    }
}

/// Message counts since the network started (for benchmarks and metrics). A message is
/// one protocol message (a delta batch, a coverage announcement, a request or a page);
/// bytes are its wire encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages published on the PUB socket.
    pub published: u64,
    /// Bytes published.
    pub published_bytes: u64,
    /// Messages sent to one peer (catch-up requests and pages).
    pub sent: u64,
    /// Bytes sent to one peer.
    pub sent_bytes: u64,
    /// Messages received from peers (published or sent).
    pub received: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Handshakes refused: a hello that does not decode, of another wire version, or a
    /// proof that does not verify.
    pub handshakes_refused: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    published: AtomicU64,
    published_bytes: AtomicU64,
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    handshakes_refused: AtomicU64,
}

impl Counters {
    fn count(count: &AtomicU64, bytes: &AtomicU64, len: usize) {
        count.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    pub(super) fn published(&self, len: usize) {
        Self::count(&self.published, &self.published_bytes, len);
    }
    pub(super) fn sent(&self, len: usize) {
        Self::count(&self.sent, &self.sent_bytes, len);
    }
    pub(super) fn received(&self, len: usize) {
        Self::count(&self.received, &self.received_bytes, len);
    }
    pub(super) fn refused(&self) {
        self.handshakes_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn snapshot(&self) -> NetStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            published: get(&self.published),
            published_bytes: get(&self.published_bytes),
            sent: get(&self.sent),
            sent_bytes: get(&self.sent_bytes),
            received: get(&self.received),
            received_bytes: get(&self.received_bytes),
            handshakes_refused: get(&self.handshakes_refused),
        }
    }
}
