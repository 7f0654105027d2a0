//! The host's notion of time.
//!
//! The host never reads the system clock itself: it asks its [`Clock`]. Live hosts use
//! [`SystemClock`] (monotonic, starting at zero when the host starts); replay and fuzzing use a
//! [`VirtualClock`] that only moves when told to, which makes a run deterministic.

use std::cell::Cell;
use std::rc::Rc;

use smoltcp::time::{Duration, Instant};

/// A source of `smoltcp` instants that never go backwards.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Instant;
}

/// The monotonic system clock, as microseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: std::time::Instant,
}

impl SystemClock {
    /// A clock that reads zero now.
    pub fn new() -> SystemClock {
        SystemClock {
            start: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }
}

/// A clock that moves only when told to. Clones share the same time, so a driver can keep one
/// handle while the host owns another.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    now: Rc<Cell<Instant>>,
}

impl VirtualClock {
    /// A clock standing at `start`.
    pub fn new(start: Instant) -> VirtualClock {
        VirtualClock {
            now: Rc::new(Cell::new(start)),
        }
    }

    /// Move to `t`; a `t` in the past is ignored (time never goes backwards).
    pub fn set(&self, t: Instant) {
        if t > self.now.get() {
            self.now.set(t);
        }
    }

    /// Move forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.set(self.now.get() + d);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.now.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_never_goes_back() {
        let c = VirtualClock::new(Instant::from_millis(100));
        let h = c.clone();
        h.set(Instant::from_millis(50));
        assert_eq!(c.now(), Instant::from_millis(100));
        h.advance(Duration::from_millis(5));
        assert_eq!(c.now(), Instant::from_millis(105));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
