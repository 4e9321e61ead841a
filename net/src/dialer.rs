//! Which addresses this node dials, and when (pure: time is passed in, the driver spawns
//! the links): configured peers always, peers learnt from others' lists up to a cap, a
//! peer that proved itself on this node's ROUTER (dialled back), and the links a ban
//! closed once it ends. Also which links to keep when they come up.

use std::collections::{HashMap, HashSet};

use hypha_primitives::HostId;

use crate::bans::{self, Bans};

/// The most entries of a peer list that are looked at.
pub(crate) const MAX_PEER_LIST: usize = 64;

/// Whether a peer-given address is worth dialling: TCP, and not absurdly long.
pub(crate) fn plausible_address(address: &str) -> bool {
    address.starts_with("tcp://") && address.len() <= 256
}

/// What to do about a peer that proved its identity on this node's ROUTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Authenticated {
    /// Dial it back at this address.
    DialBack(String),
    /// Already linked or being dialled: nothing to do.
    Nothing,
    /// Banned, or its address is implausible: forget its connection.
    Forget,
}

/// The dialling decisions of one node.
#[derive(Debug)]
pub(crate) struct Dialer {
    me: HostId,
    configured: Vec<String>,
    max_learnt: usize,
    /// Addresses with a link task now.
    dialing: HashSet<String>,
    /// Addresses dialled because a peer listed them (bounded by `max_learnt`).
    learnt: HashSet<String>,
    /// Addresses whose link ended for good (this node's own address).
    gone: HashSet<String>,
    bans: Bans,
    /// Invalid input counted per peer since its last ban.
    strikes: HashMap<HostId, u32>,
}

impl Dialer {
    /// A dialer for node `me` with its configured peers and the learnt-peer cap.
    pub(crate) fn new(me: HostId, configured: Vec<String>, max_learnt: usize) -> Dialer {
        Dialer {
            me,
            configured,
            max_learnt,
            dialing: HashSet::new(),
            learnt: HashSet::new(),
            gone: HashSet::new(),
            bans: Bans::default(),
            strikes: HashMap::new(),
        }
    }

    /// The addresses to dial at start: the configured peers.
    pub(crate) fn start(&mut self) -> Vec<String> {
        let configured = self.configured.clone();
        configured
            .into_iter()
            .filter(|address| self.dialing.insert(address.clone()))
            .collect()
    }

    /// Whether `host` is banned now.
    pub(crate) fn is_banned(&self, host: &HostId) -> bool {
        self.bans.is_banned(host)
    }

    /// Whether `address` was learnt from a peer (its link gives up after repeated failures).
    pub(crate) fn is_learnt(&self, address: &str) -> bool {
        self.learnt.contains(address)
    }

    /// The addresses to dial from a peer's list, within the learnt-peer cap: not this
    /// node, not a host `linked` says is linked, not banned, not already dialled.
    pub(crate) fn learn(
        &mut self,
        peers: Vec<(HostId, String)>,
        linked: impl Fn(&HostId) -> bool,
    ) -> Vec<String> {
        let mut dial = Vec::new();
        for (host, address) in peers.into_iter().take(MAX_PEER_LIST) {
            if self.learnt.len() >= self.max_learnt {
                break;
            }
            if host == self.me
                || linked(&host)
                || !plausible_address(&address)
                || self.bans.is_banned(&host)
                || self.dialing.contains(&address)
            {
                continue;
            }
            self.learnt.insert(address.clone());
            self.dialing.insert(address.clone());
            dial.push(address);
        }
        dial
    }

    /// A peer proved itself as `host` on this node's ROUTER and can be reached at
    /// `router`; `linked` says whether a link to it exists.
    pub(crate) fn authenticated(
        &mut self,
        host: HostId,
        router: &str,
        linked: bool,
    ) -> Authenticated {
        if self.bans.is_banned(&host) || !plausible_address(router) {
            return Authenticated::Forget;
        }
        if linked || !self.dialing.insert(router.to_owned()) {
            return Authenticated::Nothing;
        }
        Authenticated::DialBack(router.to_owned())
    }

    /// Whether to keep a link that came up to `host`: not when the host is banned or is
    /// this node, nor when `duplicate` (another live link to the host exists: both sides
    /// dialled each other, and one link per peer is enough).
    pub(crate) fn keep_link(&self, host: &HostId, duplicate: bool) -> bool {
        !(self.bans.is_banned(host) || *host == self.me || duplicate)
    }

    /// The link to `address` was closed by this node (its task stopped).
    pub(crate) fn closed(&mut self, address: &str) {
        self.dialing.remove(address);
    }

    /// The link to `address` ended for good: a learnt address given up (it may be learnt
    /// again) or this node's own address (never dialled again).
    pub(crate) fn gone(&mut self, address: &str) {
        self.dialing.remove(address);
        if !self.learnt.remove(address) {
            self.gone.insert(address.to_owned());
        }
    }

    /// Counts one invalid input from `host`: its count so far, and whether it has reached
    /// `max_invalid`, when the driver bans the host (its count then starts again).
    pub(crate) fn strike(&mut self, host: HostId, max_invalid: u32) -> (u32, bool) {
        let count = self.strikes.entry(host).or_default();
        *count += 1;
        let count = *count;
        if count < max_invalid {
            return (count, false);
        }
        self.strikes.remove(&host);
        (count, true)
    }

    /// Bans `host` from `now_ms` for `ban_ms`; `dialled` are the addresses of the links
    /// this node had to it, which the driver closes now and which are redialled when the
    /// ban ends.
    pub(crate) fn ban(&mut self, host: HostId, now_ms: u64, ban_ms: u64, dialled: Vec<String>) {
        for address in &dialled {
            self.dialing.remove(address);
        }
        self.bans.ban(host, now_ms, ban_ms, dialled);
    }

    /// On a tick: ends the bans that are over and returns the addresses to dial now (the
    /// links those bans closed, and any configured peer left without a link).
    pub(crate) fn tick(&mut self, now_ms: u64) -> Vec<String> {
        let mut addresses = self.bans.expire(now_ms);
        let skip = |address: &str| self.dialing.contains(address) || self.gone.contains(address);
        addresses.extend(bans::configured_to_redial(&self.configured, &skip, &self.bans).cloned());
        addresses.sort();
        addresses.dedup();
        addresses.retain(|address| self.dialing.insert(address.clone()));
        addresses
    }
}

/// A learnt address that fails this many times in a row without linking is given up (its
/// slot under the learnt-peer cap is freed).
pub(crate) const LEARNT_ATTEMPTS: u32 = 5;
/// The first pause before a redial (ms); it doubles with each failure in a row.
const FIRST_BACKOFF_MS: u64 = 100;
/// The longest pause before a redial (ms).
const MAX_BACKOFF_MS: u64 = 5_000;

/// When one link redials after it ends, and when a learnt one gives up.
#[derive(Debug)]
pub(crate) struct Redial {
    learnt: bool,
    backoff_ms: u64,
    failures: u32,
}

/// What a link does after it ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Dial again after this many milliseconds.
    After(u64),
    /// Stop: a learnt address that never links.
    GiveUp,
}

impl Redial {
    /// The policy of a link to a configured (or dialled-back) address, or a learnt one.
    pub(crate) fn new(learnt: bool) -> Self {
        Self {
            learnt,
            backoff_ms: FIRST_BACKOFF_MS,
            failures: 0,
        }
    }

    /// The link never came up (no connection, or no handshake).
    pub(crate) fn failed(&mut self) -> Next {
        self.failures += 1;
        if self.learnt && self.failures >= LEARNT_ATTEMPTS {
            return Next::GiveUp;
        }
        self.pause()
    }

    /// The link was up and broke: start again from the shortest pause.
    pub(crate) fn broke(&mut self) -> Next {
        self.failures = 0;
        self.backoff_ms = FIRST_BACKOFF_MS;
        self.pause()
    }

    fn pause(&mut self) -> Next {
        let pause = self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
        Next::After(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::host;

    fn dialer(configured: &[&str], max_learnt: usize) -> Dialer {
        let configured = configured.iter().map(|a| a.to_string()).collect();
        Dialer::new(host(0), configured, max_learnt)
    }

    #[test]
    fn configured_peers_are_dialled_at_start_and_again_whenever_their_link_is_gone() {
        let mut d = dialer(&["tcp://a:1", "tcp://b:2", "tcp://a:1"], 8);
        assert_eq!(d.start(), vec!["tcp://a:1", "tcp://b:2"]);
        assert!(d.tick(1).is_empty(), "both are being dialled");
        d.closed("tcp://b:2");
        assert_eq!(d.tick(2), vec!["tcp://b:2"]);
        // This node's own address is never dialled again.
        d.gone("tcp://a:1");
        assert!(d.tick(3).is_empty());
    }

    #[test]
    fn a_ban_holds_its_links_until_it_ends() {
        let mut d = dialer(&["tcp://a:1"], 8);
        d.start();
        d.ban(host(5), 100, 1_000, vec!["tcp://a:1".into()]);
        assert!(d.is_banned(&host(5)));
        assert!(d.tick(500).is_empty(), "not while banned");
        assert!(!d.keep_link(&host(5), false));
        assert_eq!(
            d.authenticated(host(5), "tcp://a:1", false),
            Authenticated::Forget
        );
        assert_eq!(d.tick(1_100), vec!["tcp://a:1"]);
        assert!(!d.is_banned(&host(5)));
        assert!(d.keep_link(&host(5), false));
    }

    #[test]
    fn learnt_peers_are_capped_and_skip_what_is_known() {
        let mut d = dialer(&["tcp://a:1"], 2);
        d.start();
        d.ban(host(9), 0, 1_000, vec![]);
        let listed = vec![
            (host(0), "tcp://me:1".to_owned()),     // this node
            (host(1), "tcp://linked:1".to_owned()), // linked already
            (host(2), "udp://x:1".to_owned()),      // not TCP
            (host(9), "tcp://banned:1".to_owned()), // banned
            (host(3), "tcp://a:1".to_owned()),      // dialled already
            (host(4), "tcp://new:1".to_owned()),
            (host(5), "tcp://new:2".to_owned()),
            (host(6), "tcp://over-the-cap:1".to_owned()),
        ];
        let dial = d.learn(listed, |h| *h == host(1));
        assert_eq!(dial, vec!["tcp://new:1", "tcp://new:2"]);
        assert!(d.is_learnt("tcp://new:1") && !d.is_learnt("tcp://a:1"));
        // A learnt address given up frees its slot and may be learnt again.
        d.gone("tcp://new:1");
        assert!(!d.is_learnt("tcp://new:1"));
        let again = d.learn(vec![(host(4), "tcp://new:1".to_owned())], |_| false);
        assert_eq!(again, vec!["tcp://new:1"]);
        assert!(
            d.tick(10).is_empty(),
            "learnt addresses are not redialled by the tick"
        );
    }

    #[test]
    fn the_third_invalid_input_bans_and_the_count_starts_again() {
        let mut d = dialer(&[], 8);
        assert_eq!(d.strike(host(1), 3), (1, false));
        assert_eq!(d.strike(host(2), 3), (1, false), "counted per peer");
        assert_eq!(d.strike(host(1), 3), (2, false));
        assert_eq!(d.strike(host(1), 3), (3, true));
        assert_eq!(d.strike(host(1), 3), (1, false));
    }

    #[test]
    fn a_proven_peer_is_dialled_back_once() {
        let mut d = dialer(&[], 8);
        assert_eq!(
            d.authenticated(host(1), "tcp://p:1", false),
            Authenticated::DialBack("tcp://p:1".into())
        );
        assert_eq!(
            d.authenticated(host(1), "tcp://p:1", false),
            Authenticated::Nothing
        );
        assert_eq!(
            d.authenticated(host(2), "tcp://q:1", true),
            Authenticated::Nothing
        );
        assert_eq!(
            d.authenticated(host(3), "ipc://nope", false),
            Authenticated::Forget
        );
        assert!(!d.keep_link(&host(0), false), "a link to this node itself");
        assert!(
            !d.keep_link(&host(1), true),
            "a second link to a linked host"
        );
    }

    #[test]
    fn a_link_redials_with_a_doubling_pause_and_a_learnt_one_gives_up() {
        let mut configured = Redial::new(false);
        let pauses: Vec<Next> = (0..8).map(|_| configured.failed()).collect();
        assert_eq!(
            pauses,
            [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000].map(Next::After),
            "doubling up to five seconds, never giving up"
        );
        assert_eq!(
            configured.broke(),
            Next::After(100),
            "a link that was up starts again"
        );
        assert_eq!(configured.failed(), Next::After(200));

        let mut learnt = Redial::new(true);
        for _ in 1..LEARNT_ATTEMPTS {
            assert!(matches!(learnt.failed(), Next::After(_)));
        }
        assert_eq!(learnt.failed(), Next::GiveUp, "five failures in a row");
        let mut learnt = Redial::new(true);
        for _ in 1..LEARNT_ATTEMPTS {
            learnt.failed();
        }
        learnt.broke();
        assert!(
            matches!(learnt.failed(), Next::After(_)),
            "a link that came up resets the count"
        );
    }
}
