//! The driver's set of links: dialling and closing them, bans and the publish key they
//! replace, peer lists sent and learnt, and sending requests over the link to a peer. What
//! to dial and when is the dialer's decision (`dialer.rs`); this file carries it out.

use std::sync::atomic::Ordering;

use hypha_primitives::HostId;
use tracing::Instrument;

use super::link::run_link;
use super::{Driver, LinkHandle, RouterCommand};
use crate::dialer::MAX_PEER_LIST;
use crate::protocol::Action;
use crate::seal::GroupKey;
use crate::{Input, Message};

impl Driver {
    /// Counts a peer's invalid input; past the threshold the peer is disconnected and
    /// banned for a while (the returned actions take it down).
    pub(super) async fn invalid(&mut self, from: HostId, what: &str) -> Vec<Action> {
        let (count, ban) = self.dialer.strike(from, self.shared.config.max_invalid);
        tracing::warn!(peer = %from, count, what, "invalid input from peer");
        if !ban {
            return Vec::new();
        }
        let dialled: Vec<String> = self
            .links
            .values()
            .filter(|l| l.host == Some(from))
            .map(|l| l.address.clone())
            .collect();
        let now = self.now();
        self.dialer
            .ban(from, now, self.shared.config.ban_ms, dialled);
        if let Ok(mut shared) = self.shared.banned.lock() {
            shared.insert(from);
        }
        if self.shared.seal_publish.load(Ordering::Relaxed) {
            // The banned peer may hold the publish key: replace it, and hand the new one to
            // everyone else. (Frames sealed under the new key that reach a subscriber before
            // its key are dropped, like any lost PUB frame, and catch-up repairs them.)
            *self
                .shared
                .publish_key
                .write()
                .unwrap_or_else(|e| e.into_inner()) = GroupKey::random();
            let _ = self.router.send(RouterCommand::Rekey).await;
            tracing::info!("publish key replaced after a ban");
        }
        tracing::warn!(peer = %from, ban_ms = self.shared.config.ban_ms, "disconnecting misbehaving peer");
        let links: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.host == Some(from))
            .map(|(id, _)| *id)
            .collect();
        for link in links {
            self.close_link(link);
        }
        let _ = self.router.send(RouterCommand::Forget(from)).await;
        self.protocol.handle(now, Input::PeerDown(from))
    }

    /// Ends the bans that are over (redialling the links they closed) and redials any
    /// configured peer left without a link.
    pub(super) fn redial(&mut self, now: u64) {
        let addresses = self.dialer.tick(now);
        if let Ok(mut shared) = self.shared.banned.lock() {
            shared.retain(|host| self.dialer.is_banned(host));
        }
        for address in addresses {
            tracing::info!(%address, "redialling a peer");
            self.dial(address);
        }
    }

    pub(super) fn close_link(&mut self, link: u64) {
        if let Some(l) = self.links.remove(&link) {
            l.task.abort();
            self.dialer.closed(&l.address);
        }
    }

    pub(super) fn dial(&mut self, address: String) {
        let link = self.next_link;
        self.next_link += 1;
        let learnt = self.dialer.is_learnt(&address);
        let task = tokio::spawn(
            run_link(link, address.clone(), self.shared.clone(), learnt).in_current_span(),
        );
        self.links.insert(
            link,
            LinkHandle {
                host: None,
                address,
                outbound: None,
                task,
            },
        );
    }

    /// Tells `to` the other peers this node is linked to, with their ROUTER addresses.
    pub(super) fn send_peer_list(&self, to: HostId) {
        if self.shared.config.max_learnt_peers == 0 {
            return;
        }
        let mut peers: Vec<(HostId, String)> = self
            .links
            .values()
            .filter(|l| l.outbound.is_some())
            .filter_map(|l| l.host.map(|h| (h, l.address.clone())))
            .filter(|(h, _)| *h != to)
            .collect();
        peers.sort();
        peers.dedup_by_key(|(h, _)| *h);
        peers.truncate(MAX_PEER_LIST);
        if !peers.is_empty() {
            self.send_request(to, Message::Peers(peers));
        }
    }

    /// Dials peers another peer listed that are not linked yet, within the cap.
    pub(super) fn learn_peers(&mut self, peers: Vec<(HostId, String)>) {
        let links = &self.links;
        let linked = |host: &HostId| links.values().any(|l| l.host == Some(*host));
        for address in self.dialer.learn(peers, linked) {
            tracing::info!(%address, "dialling a peer learnt from another");
            self.dial(address);
        }
    }

    /// The peers linked now.
    pub(super) fn linked(&self) -> Vec<HostId> {
        let mut peers: Vec<HostId> = self
            .links
            .values()
            .filter(|l| l.outbound.is_some())
            .filter_map(|l| l.host)
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }

    /// Sends a request over the link this node dialled to `to` (dropped if it is down or
    /// its queue is full: every request here has a deadline or is retried).
    pub(super) fn send_request(&self, to: HostId, message: Message) {
        let link = self
            .links
            .values()
            .find(|l| l.host == Some(to))
            .and_then(|l| l.outbound.clone());
        if let Some(link) = link {
            let _ = link.try_send(message);
        }
    }
}
