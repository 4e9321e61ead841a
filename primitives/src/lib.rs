//! Hypha's data model: signed deltas and everything needed to make, encode, verify and
//! select them.
//!
//! A [`Delta`] is an immutable statement signed by its author: a list of [`Pointer`]s
//! saying "this value (or entity) relates to that entity, in this context". Deltas have a
//! canonical binary encoding ([`codec`]) whose blake3 hash is the [`DeltaId`] and whose
//! ed25519 signature proves the author. A node that accepts a delta from a client gives it
//! an origin [`Stamp`]. [`Hlc`] orders deltas in time; [`Schema`] says how views collapse
//! properties; [`Filter`] selects deltas with a compiled JSON-Logic expression.
//!
//! This crate does no IO: no files, no sockets, no async runtime, no system clock (callers
//! pass wall time into [`HlcClock`]). Storage lives in `hypha-delta-store`, the network in
//! `hypha-net`.
//!
//! ```
//! use hypha_primitives::{Delta, DeltaBuilder, Filter, HlcClock, KeyPair, Pointer};
//!
//! let key = KeyPair::from_seed([1; 32]);
//! let mut clock = HlcClock::new();
//! let delta = DeltaBuilder::new(clock.tick(1_700_000_000_000))
//!     .pointer(Pointer::entity("user", "alice", "name"))
//!     .pointer(Pointer::value("name", "Alice"))
//!     .sign(&key)?;
//!
//! // Canonical bytes round-trip and verify.
//! let decoded = Delta::decode(&delta.encode())?;
//! assert_eq!(decoded, delta);
//! decoded.verify()?;
//!
//! // JSON round-trips too.
//! assert_eq!(Delta::from_json_str(&delta.to_json_string())?, delta);
//!
//! // A compiled filter selects it.
//! let filter = Filter::from_json_str(r#"{"in": ["alice", {"var": "targets"}]}"#)?;
//! assert!(filter.matches(&delta.filter_document(&[])));
//! # Ok::<(), hypha_primitives::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod batch_stamp;
pub mod codec;
mod delta;
mod error;
pub mod filter;
mod frontier;
mod hlc;
mod ids;
mod json;
mod keys;
mod literals;
pub mod merkle;
mod schema;
mod stamp;
mod stamped;
mod verify;

pub use batch_stamp::{BatchStamp, BATCH_STAMP_LEN, MAX_BATCH};
pub use delta::{
    verify_batch, Delta, DeltaBuilder, Pointer, Primitive, Target, MAX_POINTERS, NEGATES,
};
pub use error::{Error, Result};
pub use filter::{Filter, FilterError, FilterIndex};
pub use frontier::Frontier;
pub use hlc::{Hlc, HlcClock};
pub use ids::{AuthorKey, DeltaId, EntityId, HostId, Seq, Signature};
pub use keys::KeyPair;
pub use literals::check_integer_literals;
pub use schema::{
    PropertySpec, ResolverName, Schema, ValueType, SCHEMA_DEFINITION_CONTEXT, SCHEMA_ENTITY_PREFIX,
};
pub use stamp::{Stamp, StampProof, StampVerdicts, STAMP_LEN};
pub use stamped::StampedDelta;
