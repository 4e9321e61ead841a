//! Hypha's peer protocol as a pure state machine.
//!
//! [`Peer::handle`] takes the time and one [`Input`] (a delta stored here, a message from
//! a peer, a tick, a peer coming or going) and returns the [`Output`]s a driver must carry
//! out (publish, send, store, serve a catch-up page). A node's whole protocol wraps it
//! with the requests the node makes of peers and its reconciliation sessions, and reads
//! the journal through the [`Journal`] trait. It does no IO and reads no clock, so
//! propagation, loss, reordering, catch-up, fetches and partial replicas are tested
//! deterministically by the simulation (`sim`, feature `test-utils`), which runs many
//! peers on a virtual clock with a seeded RNG.
//!
//! What is here: propagation with multi-hop relay, coverage vectors ([`Coverage`]),
//! coverage announcements, catch-up in bounded pages, anti-entropy on ticks, propagation
//! confidence ([`Peer::holders`], and snapshots of it readers share: [`Watermarks`]), and the versioned, bounded wire encoding of messages
//! ([`wire`]), the signed [`handshake`], and the ZeroMQ driver ([`Network`]) that runs the
//! state machine over real sockets and a real journal, with partial replicas
//! ([`reconcile`]), encrypted links ([`seal`]) and learnt peers.
//!
//! ```
//! use hypha_net::sim::{run, DeltaPool, SimConfig};
//!
//! // Two peers, lossy and partitioned while they write, converge once the network heals.
//! let pool = DeltaPool::new(2, 3);
//! let config = SimConfig { nodes: 2, writes_per_node: 3, ..SimConfig::default() };
//! let stats = run(7, &config, &pool).expect("converged");
//! assert!(stats.converged_at_ms.is_some());
//! ```
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The link decisions (bans, dialer, liveness) and the PUB topics are the socket driver's;
// the simulation does not dial or subscribe, so they are unused without it.
#[cfg_attr(not(feature = "driver"), allow(dead_code))]
mod bans;
mod coverage;
#[cfg_attr(not(feature = "driver"), allow(dead_code))]
mod dialer;
#[cfg(feature = "driver")]
mod driver;
pub mod handshake;
mod journal;
#[cfg_attr(not(feature = "driver"), allow(dead_code))]
mod liveness;
mod message;
mod peer;
mod protocol;
#[cfg(all(feature = "test-utils", feature = "driver"))]
pub mod raw;
pub mod reconcile;
mod requests;
pub mod seal;
mod serve;
mod sessions;
#[cfg(feature = "test-utils")]
pub mod sim;
#[cfg(test)]
mod testing;
#[cfg_attr(not(feature = "driver"), allow(dead_code))]
mod topics;
mod watermarks;
pub mod wire;

pub use coverage::{Coverage, CoverageVector};
#[cfg(feature = "driver")]
pub use driver::{Encryption, Endpoints, NetConfig, NetError, NetStats, Network};
pub use journal::Journal;
pub use message::Message;
pub use peer::{Event, Input, Output, Peer, PeerConfig, Replication, MAX_PAGES_IN_FLIGHT};
pub use watermarks::Watermarks;
