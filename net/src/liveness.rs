//! Whether an outbound link is alive (pure: time is passed in, in milliseconds since any
//! fixed point). A link is dead when a request or keepalive goes unanswered past the
//! request timeout, or when nothing at all is heard from the peer past the peer timeout;
//! an idle link asks for a keepalive every half peer timeout, because the PUB stream alone
//! does not show that the listener still knows the link.

/// What the link should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Nothing to do.
    Fine,
    /// Send a keepalive (and call [`Liveness::asked`]).
    Keepalive,
    /// A request or keepalive went unanswered: end the link and redial.
    Unanswered,
    /// Nothing was heard from the peer: end the link and redial.
    Quiet,
}

/// The liveness of one link.
#[derive(Clone, Debug)]
pub(crate) struct Liveness {
    request_timeout_ms: u64,
    quiet_ms: u64,
    /// Since when an answer is awaited, if one is.
    awaiting: Option<u64>,
    last_heard: u64,
    last_asked: u64,
}

impl Liveness {
    /// A link that came up at `now`, with the request and peer timeouts.
    pub(crate) fn new(now: u64, request_timeout_ms: u64, quiet_ms: u64) -> Liveness {
        Liveness {
            request_timeout_ms,
            quiet_ms,
            awaiting: None,
            last_heard: now,
            last_asked: now,
        }
    }

    /// An answer came over the link (any reply answers what was awaited).
    pub(crate) fn answered(&mut self, now: u64) {
        self.last_heard = now;
        self.awaiting = None;
    }

    /// Something came on the peer's PUB stream: it is alive, but that does not answer a
    /// request.
    pub(crate) fn heard(&mut self, now: u64) {
        self.last_heard = now;
    }

    /// A request that expects an answer (or a keepalive) went out.
    pub(crate) fn asked(&mut self, now: u64) {
        if self.awaiting.is_none() {
            self.awaiting = Some(now);
        }
        self.last_asked = now;
    }

    /// What to do at `now`.
    pub(crate) fn check(&self, now: u64) -> Check {
        if self
            .awaiting
            .is_some_and(|since| now.saturating_sub(since) > self.request_timeout_ms)
        {
            return Check::Unanswered;
        }
        if now.saturating_sub(self.last_heard) > self.quiet_ms {
            return Check::Quiet;
        }
        if self.awaiting.is_none() && now.saturating_sub(self.last_asked) > self.quiet_ms / 2 {
            return Check::Keepalive;
        }
        Check::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_link_asks_for_a_keepalive_and_dies_if_it_goes_unanswered() {
        let mut link = Liveness::new(0, 1_000, 1_500);
        assert_eq!(link.check(750), Check::Fine);
        assert_eq!(link.check(751), Check::Keepalive);
        link.asked(751);
        // The PUB stream keeps flowing, but the keepalive is not answered.
        link.heard(1_500);
        assert_eq!(link.check(1_751), Check::Fine);
        assert_eq!(link.check(1_752), Check::Unanswered);
    }

    #[test]
    fn an_answer_clears_what_was_awaited() {
        let mut link = Liveness::new(0, 1_000, 1_500);
        link.asked(100);
        link.answered(600);
        assert_eq!(
            link.check(850),
            Check::Fine,
            "nothing awaited, heard at 600"
        );
        assert_eq!(
            link.check(851),
            Check::Keepalive,
            "half the peer timeout since asked"
        );
        // A second request while one is awaited keeps the first one's clock.
        link.asked(851);
        link.asked(1_500);
        assert_eq!(link.check(1_851), Check::Fine);
        assert_eq!(link.check(1_852), Check::Unanswered);
    }

    #[test]
    fn a_silent_peer_is_quiet() {
        let mut link = Liveness::new(0, 10_000, 1_500);
        link.asked(0);
        assert_eq!(link.check(1_500), Check::Fine);
        assert_eq!(link.check(1_501), Check::Quiet);
    }
}
