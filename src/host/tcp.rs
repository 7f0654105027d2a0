//! How the host's TCP sockets behave on a path: congestion control and timestamps.
//!
//! Every TCP socket the host makes (the services' listeners, the HTTP client) gets a
//! [`TcpTuning`] applied before it listens or connects. The default is CUBIC congestion control
//! (RFC 9438) and TCP timestamps (RFC 7323) on.
//!
//! What smoltcp 0.14 does with them:
//! - congestion control: slow start and a congestion window that limits what is in flight
//!   (CUBIC, or Reno's AIMD, RFC 5681); `None` sends the whole window the peer offers at once,
//!   whatever the path;
//! - timestamps: every segment carries TSval (the host's clock in milliseconds) and echoes the
//!   peer's; the peer (Linux) then takes an RTT sample from every ACK and can protect against
//!   wrapped sequence numbers (PAWS). smoltcp itself still measures its RTT one segment at a time
//!   and does not check PAWS. A peer whose SYN has no timestamp option gets none on that
//!   connection.
//!
//! TSval comes from the host's clock, not the system's: [`Host::poll`](super::Host::poll) sets
//! it for its thread at the start of every turn, so a replay on a virtual clock sends the same
//! timestamps every time.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use smoltcp::socket::tcp::{self, CongestionControl};
use smoltcp::time::Instant;

/// A congestion control algorithm for the host's TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// CUBIC (RFC 9438): a window that grows as a cubic function of the time since the last
    /// loss; recovers quickly on paths with a large bandwidth-delay product.
    #[default]
    Cubic,
    /// Reno (RFC 5681): slow start, then one segment more per round trip; halved on loss.
    Reno,
    /// None: as much as the peer's window allows, at once.
    None,
}

impl Congestion {
    /// All of them, in the order of their names.
    pub const ALL: [Congestion; 3] = [Congestion::Cubic, Congestion::Reno, Congestion::None];

    /// `cubic`, `reno` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Congestion::Cubic => "cubic",
            Congestion::Reno => "reno",
            Congestion::None => "none",
        }
    }

    fn smoltcp(self) -> CongestionControl {
        match self {
            Congestion::Cubic => CongestionControl::Cubic,
            Congestion::Reno => CongestionControl::Reno,
            Congestion::None => CongestionControl::None,
        }
    }
}

impl fmt::Display for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Congestion::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown congestion control {s:?}: cubic, reno or none"))
    }
}

/// Congestion control and timestamps of a TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTuning {
    /// The congestion control algorithm.
    pub congestion: Congestion,
    /// Send TCP timestamps (RFC 7323) when the peer offers them.
    pub timestamps: bool,
}

impl Default for TcpTuning {
    /// CUBIC, timestamps on.
    fn default() -> Self {
        TcpTuning {
            congestion: Congestion::Cubic,
            timestamps: true,
        }
    }
}

impl TcpTuning {
    /// Set the socket's congestion control and timestamps; call before `listen` or `connect`
    /// (smoltcp drops the timestamp generator of a socket whose peer did not offer timestamps,
    /// so a reused socket needs it again).
    pub fn apply(&self, socket: &mut tcp::Socket<'_>) {
        socket.set_congestion_control(self.congestion.smoltcp());
        socket.set_tsval_generator(self.timestamps.then_some(tsval as fn() -> u32));
    }
}

thread_local! {
    /// The clock of the host that runs on this thread, in milliseconds.
    static NOW_MS: Cell<u32> = const { Cell::new(0) };
}

/// Set the clock TSval is taken from, for the sockets polled on this thread from now on.
pub(crate) fn set_clock(now: Instant) {
    // TSval is a 32-bit millisecond counter that wraps (RFC 7323 §5.4).
    NOW_MS.with(|c| c.set(now.total_millis() as u32));
}

/// smoltcp's TSval generator: the host's clock in milliseconds.
fn tsval() -> u32 {
    NOW_MS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for c in Congestion::ALL {
            assert_eq!(c.name().parse::<Congestion>(), Ok(c));
        }
        let err = "vegas".parse::<Congestion>().unwrap_err();
        assert!(err.contains("cubic, reno or none"), "{err}");
    }

    #[test]
    fn tuning_sets_the_socket_and_tsval_follows_the_host_clock() {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        );
        for c in Congestion::ALL {
            let t = TcpTuning {
                congestion: c,
                timestamps: c != Congestion::None,
            };
            t.apply(&mut s);
            assert_eq!(s.congestion_control(), c.smoltcp());
            assert_eq!(s.timestamp_enabled(), t.timestamps);
        }
        set_clock(Instant::from_millis(4_294_967_296i64 + 7));
        assert_eq!(tsval(), 7);
    }
}
