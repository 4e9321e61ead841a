//! The messages peers exchange; their wire encoding is [`crate::wire`].

use hypha_primitives::{DeltaId, HostId, StampedDelta};

use crate::CoverageVector;

/// One message between peers.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// New deltas, published to every subscriber (a node's own and, for multi-hop
    /// convergence, ones it stored first from others).
    Deltas(Vec<StampedDelta>),
    /// The sender's coverage: per host, the seq up to which it holds everything.
    Coverage(CoverageVector),
    /// "Here is what I hold; send what I miss", answered with up to `pages` pages.
    CatchUpRequest {
        /// Chosen by the requester; the pages that answer carry it back.
        request: u64,
        /// The requester's coverage.
        have: CoverageVector,
        /// How many pages the answer may stream back to back (at least 1).
        pages: u16,
    },
    /// An answer to a catch-up request: up to a page of deltas, in origin order per host.
    CatchUpPage {
        /// The request this page answers.
        request: u64,
        /// The deltas.
        deltas: Vec<StampedDelta>,
        /// True when the answer was cut short, so there may be more to ask for once it
        /// ends.
        more: bool,
        /// True when more pages of this answer follow this one.
        continues: bool,
    },
    /// "Send me these deltas", answered with [`Message::Fetched`].
    Fetch {
        /// Chosen by the requester, echoed in the answer.
        request: u64,
        /// The ids wanted.
        ids: Vec<DeltaId>,
    },
    /// An answer to [`Message::Fetch`]: the deltas held, and the ids not held.
    Fetched {
        /// The request answered.
        request: u64,
        /// The deltas found, with their stamps.
        deltas: Vec<StampedDelta>,
        /// The ids asked for that the sender does not hold.
        missing: Vec<DeltaId>,
    },
    /// "How many deltas do you hold about this entity?", answered with [`Message::Holds`].
    WhoHas {
        /// Chosen by the requester, echoed in the answer.
        request: u64,
        /// The entity id.
        entity: String,
    },
    /// An answer to [`Message::WhoHas`], from the sender's entity index.
    Holds {
        /// The request answered.
        request: u64,
        /// Deltas the sender holds that point at the entity (0: none).
        deltas: u64,
    },
    /// One turn of a set reconciliation (`crate::reconcile`) over the deltas a filter
    /// selects, by the side that started it; answered with [`Message::ReconcileReply`].
    Reconcile {
        /// Chosen by the initiator, the same for every turn of one reconciliation.
        session: u64,
        /// The JSON-Logic filter selecting the reconciled slice (over each delta's filter
        /// document); empty for every delta.
        filter: String,
        /// The reconciliation message.
        payload: Vec<u8>,
    },
    /// The responder's turn; an empty payload means everything is settled.
    ReconcileReply {
        /// The session answered.
        session: u64,
        /// The reconciliation message, or nothing.
        payload: Vec<u8>,
    },
    /// Peers the sender is linked to, with their ROUTER addresses, so the receiver can
    /// learn peers it was not configured with.
    Peers(Vec<(HostId, String)>),
}

impl Message {
    /// Whether this answers a request, and so goes back over the ROUTER socket the request
    /// came in on (requests go out over the link this node dialled).
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Message::CatchUpPage { .. }
                | Message::Fetched { .. }
                | Message::Holds { .. }
                | Message::ReconcileReply { .. }
        )
    }
}
