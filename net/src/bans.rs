//! Timed bans and the links they interrupt: who is refused until when, and which addresses
//! this node dials again when a ban ends (pure: time is passed in).
//!
//! A ban is a state with an end, not a verdict: a peer that misbehaved is refused for
//! `ban_ms`, then treated as new. The link this node had dialled to it is closed for the
//! ban and redialled when it ends, so a ban never partitions two honest nodes for longer
//! than it lasts (a link the banned peer had dialled is its own to redial).

use std::collections::{BTreeSet, HashMap};

use hypha_primitives::HostId;

/// One ban: until when, and the addresses this node had dialled to the banned host.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ban {
    until_ms: u64,
    dialled: BTreeSet<String>,
}

/// The bans in force, and the links to restore when each ends.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bans {
    bans: HashMap<HostId, Ban>,
}

impl Bans {
    /// Bans `host` from `now_ms` for `ban_ms`; `dialled` are the addresses of the links
    /// this node had dialled to it (closed now, redialled when the ban ends). Banning a
    /// host again extends its ban and keeps the addresses of both.
    pub(crate) fn ban(
        &mut self,
        host: HostId,
        now_ms: u64,
        ban_ms: u64,
        dialled: impl IntoIterator<Item = String>,
    ) {
        let until_ms = now_ms.saturating_add(ban_ms);
        let ban = self.bans.entry(host).or_insert_with(|| Ban {
            until_ms,
            dialled: BTreeSet::new(),
        });
        ban.until_ms = ban.until_ms.max(until_ms);
        ban.dialled.extend(dialled);
    }

    /// Whether `host` is banned now.
    pub(crate) fn is_banned(&self, host: &HostId) -> bool {
        self.bans.contains_key(host)
    }

    /// Whether `address` is one this node dialled to a host banned now (so it must not be
    /// dialled until the ban ends).
    pub(crate) fn holds_address(&self, address: &str) -> bool {
        self.bans.values().any(|b| b.dialled.contains(address))
    }

    /// Ends the bans that are over at `now_ms`, returning the addresses to dial again,
    /// sorted and without repeats.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let mut redial = BTreeSet::new();
        self.bans.retain(|_, ban| {
            if ban.until_ms > now_ms {
                return true;
            }
            redial.append(&mut ban.dialled);
            false
        });
        redial.into_iter().collect()
    }
}

/// The configured peers' addresses that have no link and no ban holding them: each is
/// dialled again (a link to a configured peer is never given up for good).
pub(crate) fn configured_to_redial<'a>(
    configured: &'a [String],
    dialing: &'a impl Fn(&str) -> bool,
    bans: &'a Bans,
) -> impl Iterator<Item = &'a String> + 'a {
    configured
        .iter()
        .filter(move |address| !dialing(address) && !bans.holds_address(address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::host;

    #[test]
    fn a_ban_ends_and_gives_back_the_links_it_closed() {
        let mut bans = Bans::default();
        bans.ban(host(1), 1_000, 60_000, ["tcp://a:1".to_owned()]);
        assert!(bans.is_banned(&host(1)));
        assert!(!bans.is_banned(&host(2)));
        assert!(bans.holds_address("tcp://a:1"));
        assert!(bans.expire(60_999).is_empty());
        assert!(bans.is_banned(&host(1)));
        assert_eq!(bans.expire(61_000), vec!["tcp://a:1".to_owned()]);
        assert!(!bans.is_banned(&host(1)));
        assert!(!bans.holds_address("tcp://a:1"));
        assert!(bans.expire(70_000).is_empty(), "given back once");
    }

    #[test]
    fn banning_again_extends_the_ban_and_keeps_every_address() {
        let mut bans = Bans::default();
        bans.ban(host(1), 0, 100, ["tcp://a:1".to_owned()]);
        bans.ban(host(1), 50, 100, ["tcp://b:2".to_owned()]);
        // A shorter ban never cuts a longer one short.
        bans.ban(host(1), 60, 10, []);
        assert!(bans.expire(149).is_empty());
        assert_eq!(
            bans.expire(150),
            vec!["tcp://a:1".to_owned(), "tcp://b:2".to_owned()]
        );
    }

    #[test]
    fn a_ban_without_a_dialled_link_ends_with_nothing_to_redial() {
        let mut bans = Bans::default();
        bans.ban(host(3), 0, 10, []);
        assert!(bans.is_banned(&host(3)));
        assert!(bans.expire(10).is_empty());
        assert!(!bans.is_banned(&host(3)));
    }

    #[test]
    fn configured_peers_without_a_link_are_redialled_unless_a_ban_holds_them() {
        let configured = vec![
            "tcp://linked:1".to_owned(),
            "tcp://lost:2".to_owned(),
            "tcp://banned:3".to_owned(),
        ];
        let mut bans = Bans::default();
        bans.ban(host(9), 0, 1_000, ["tcp://banned:3".to_owned()]);
        let dialing = |address: &str| address == "tcp://linked:1";
        let redial: Vec<&String> = configured_to_redial(&configured, &dialing, &bans).collect();
        assert_eq!(redial, vec!["tcp://lost:2"]);
        bans.expire(1_000);
        let redial: Vec<&String> = configured_to_redial(&configured, &dialing, &bans).collect();
        assert_eq!(redial, vec!["tcp://lost:2", "tcp://banned:3"]);
    }
}
