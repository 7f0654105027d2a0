//! A token bucket on the host's clock, for the ICMP error limit of the [`guard`](super::guard).
//!
//! The bucket holds at most `burst` tokens and gains one every `interval`; each message that
//! goes out takes one, and a message that finds the bucket empty is dropped. Time is whatever
//! [`Instant`] the caller passes (the host's clock), so under a
//! [`VirtualClock`](super::VirtualClock) the limit is deterministic.

use smoltcp::time::{Duration, Instant};

/// Tokens: at most `burst`, one more every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    burst: u32,
    interval: Duration,
    tokens: u32,
    /// When the last token was added (or the bucket was last found full).
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens that gains one every `interval` (not zero).
    pub fn new(burst: u32, interval: Duration) -> TokenBucket {
        TokenBucket {
            burst,
            interval: interval.max(Duration::from_micros(1)),
            tokens: burst,
            last: None,
        }
    }

    /// Take a token at `now`: `true` if there was one (the message may go), `false` if not.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Tokens left at `now`.
    pub fn tokens(&mut self, now: Instant) -> u32 {
        self.refill(now);
        self.tokens
    }

    fn refill(&mut self, now: Instant) {
        let last = *self.last.get_or_insert(now);
        if self.tokens >= self.burst {
            // A full bucket gains nothing: the clock of the next token starts when one is taken.
            self.last = Some(now);
            return;
        }
        if now <= last {
            return;
        }
        let step = self.interval.total_micros();
        let gained = (now - last).total_micros() / step;
        if gained == 0 {
            return;
        }
        let room = u64::from(self.burst - self.tokens);
        if gained >= room {
            self.tokens = self.burst;
            self.last = Some(now);
        } else {
            // `gained < room <= u32::MAX`: the cast is exact.
            self.tokens += gained as u32;
            self.last = Some(last + Duration::from_micros(gained * step));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Clock, VirtualClock};

    #[test]
    fn a_burst_then_one_per_interval() {
        let clock = VirtualClock::new(Instant::from_secs(5));
        let mut b = TokenBucket::new(6, Duration::from_millis(100));
        let sent = (0..200).filter(|_| b.take(clock.now())).count();
        assert_eq!(
            sent, 6,
            "a full bucket lets the burst through, then nothing"
        );
        clock.advance(Duration::from_millis(99));
        assert!(!b.take(clock.now()), "no token before the interval");
        clock.advance(Duration::from_millis(1));
        assert!(b.take(clock.now()), "one token after one interval");
        assert!(!b.take(clock.now()));
        // 250 ms: two tokens, and the half interval counts toward the third.
        clock.advance(Duration::from_millis(250));
        assert_eq!(b.tokens(clock.now()), 2);
        clock.advance(Duration::from_millis(50));
        assert_eq!(b.tokens(clock.now()), 3);
    }

    #[test]
    fn refills_to_the_burst_and_no_further() {
        let clock = VirtualClock::new(Instant::ZERO);
        let mut b = TokenBucket::new(6, Duration::from_millis(100));
        while b.take(clock.now()) {}
        clock.advance(Duration::from_secs(3600));
        let sent = (0..200).filter(|_| b.take(clock.now())).count();
        assert_eq!(sent, 6, "an hour of silence still refills only the burst");
        // A full bucket does not bank time: right after a long idle spell, the burst and then
        // one per interval.
        clock.advance(Duration::from_millis(100));
        assert!(b.take(clock.now()));
        assert!(!b.take(clock.now()));
    }

    #[test]
    fn time_going_back_changes_nothing() {
        let mut b = TokenBucket::new(1, Duration::from_secs(1));
        assert!(b.take(Instant::from_secs(10)));
        assert!(!b.take(Instant::from_secs(9)));
        assert!(b.take(Instant::from_secs(11)));
    }
}
