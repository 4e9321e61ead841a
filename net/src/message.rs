//! The messages peers exchange. (Their wire encoding belongs to the ZeroMQ driver, next.)

use hypha_delta_store::StampedDelta;

use crate::CoverageVector;

/// One message between peers.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// New deltas, published to every subscriber (a node's own and, for multi-hop
    /// convergence, ones it stored first from others).
    Deltas(Vec<StampedDelta>),
    /// The sender's coverage: per host, the seq up to which it holds everything.
    Coverage(CoverageVector),
    /// "Here is what I hold; send what I miss", answered with a page.
    CatchUpRequest {
        /// Chosen by the requester; the page that answers carries it back.
        request: u64,
        /// The requester's coverage.
        have: CoverageVector,
    },
    /// An answer to a catch-up request: up to a page of deltas, in origin order per host.
    CatchUpPage {
        /// The request this page answers.
        request: u64,
        /// The deltas.
        deltas: Vec<StampedDelta>,
        /// True when the page was full, so there may be more to ask for.
        more: bool,
    },
}
