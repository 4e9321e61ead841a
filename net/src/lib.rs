//! Hypha's peer protocol (to be built by the peers issue): a pure state machine for
//! propagation, catch-up, membership and confidence, and a thin ZeroMQ driver.
//!
//! Nothing here yet: the crate exists so the workspace's dependency direction is fixed
//! (net depends on primitives and delta-store).
#![deny(missing_docs)]
