//! Hybrid logical clock: physical milliseconds plus a logical counter, monotonic under skew.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A hybrid logical clock reading: wall-clock milliseconds since the Unix epoch, then a
/// counter that orders events within (or, under skew, beyond) one millisecond.
///
/// Readings order by `ms`, then `logical`; views order deltas by `Hlc`, then by id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Hlc {
    ms: u64,
    logical: u32,
}

impl Hlc {
    /// A reading from its two parts.
    pub const fn new(ms: u64, logical: u32) -> Self {
        Self { ms, logical }
    }
    /// Milliseconds since the Unix epoch.
    pub const fn ms(&self) -> u64 {
        self.ms
    }
    /// The logical counter.
    pub const fn logical(&self) -> u32 {
        self.logical
    }

    /// The smallest reading strictly after this one.
    fn successor(self) -> Hlc {
        match self.logical.checked_add(1) {
            Some(logical) => Hlc {
                ms: self.ms,
                logical,
            },
            // A full counter rolls into the next millisecond, so readings never repeat.
            None => Hlc {
                ms: self.ms + 1,
                logical: 0,
            },
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ms, self.logical)
    }
}

impl FromStr for Hlc {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (ms, logical) = s.split_once('.').unwrap_or((s, "0"));
        match (ms.parse(), logical.parse()) {
            (Ok(ms), Ok(logical)) => Ok(Hlc { ms, logical }),
            _ => Err(Error::InvalidHlc(s.to_owned())),
        }
    }
}

/// The clock state of one writer.
///
/// It never reads the system clock itself: the caller passes wall time in, so tests and
/// simulations control time. Every reading it hands out is strictly greater than every
/// reading it handed out or observed before, whatever the wall clock does.
#[derive(Clone, Debug, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock that continues after `last` (for a restarted writer).
    pub fn resume_after(last: Hlc) -> Self {
        Self { last }
    }

    /// The latest reading handed out or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A reading for a local event at wall time `wall_ms`.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        let candidate = Hlc {
            ms: wall_ms,
            logical: 0,
        };
        self.last = if candidate > self.last {
            candidate
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Merges a reading received from elsewhere, so that later local readings follow it.
    ///
    /// Bounding how far ahead a remote reading may be is the receiver's policy (see the
    /// network layer); this only keeps the order.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) -> Hlc {
        let wall = Hlc {
            ms: wall_ms,
            logical: 0,
        };
        let highest = self.last.max(remote);
        self.last = if wall > highest {
            wall
        } else {
            highest.successor()
        };
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tick_follows_the_wall_clock_when_it_advances() {
        let mut clock = HlcClock::new();
        assert_eq!(clock.tick(100), Hlc::new(100, 0));
        assert_eq!(clock.tick(105), Hlc::new(105, 0));
    }

    #[test]
    fn tick_counts_logically_when_the_wall_clock_stalls_or_goes_back() {
        let mut clock = HlcClock::new();
        clock.tick(100);
        assert_eq!(clock.tick(100), Hlc::new(100, 1));
        assert_eq!(clock.tick(40), Hlc::new(100, 2));
    }

    #[test]
    fn observe_moves_past_a_remote_reading_ahead_of_us() {
        let mut clock = HlcClock::new();
        clock.tick(100);
        assert_eq!(clock.observe(Hlc::new(500, 7), 101), Hlc::new(500, 8));
        assert_eq!(clock.tick(102), Hlc::new(500, 9));
    }

    #[test]
    fn full_logical_counter_rolls_into_the_next_millisecond() {
        let mut clock = HlcClock::resume_after(Hlc::new(10, u32::MAX));
        assert_eq!(clock.tick(5), Hlc::new(11, 0));
    }

    #[test]
    fn display_and_parse_round_trip() {
        let hlc = Hlc::new(1_700_000_000_000, 42);
        assert_eq!(hlc.to_string().parse::<Hlc>().unwrap(), hlc);
        assert_eq!("17".parse::<Hlc>().unwrap(), Hlc::new(17, 0));
        assert!("x.1".parse::<Hlc>().is_err());
    }

    proptest! {
        #[test]
        fn readings_strictly_increase_under_any_skew(
            events in proptest::collection::vec((any::<bool>(), 0u64..1_000, 0u64..1_000, 0u32..3), 1..200)
        ) {
            let mut clock = HlcClock::new();
            let mut previous = clock.last();
            for (is_remote, wall, remote_ms, remote_logical) in events {
                let remote = Hlc::new(remote_ms, remote_logical);
                let reading = if is_remote { clock.observe(remote, wall) } else { clock.tick(wall) };
                prop_assert!(reading > previous);
                if is_remote { prop_assert!(reading > remote); }
                prop_assert!(reading.ms() >= wall);
                previous = reading;
            }
        }
    }
}
