//! The host as a client: ICMP echo ([`ping`](mod@ping)), an HTTP/1.1 GET ([`http`]), and DNS
//! names for both ([`dns`]).
//!
//! Each client is a small state machine over a smoltcp socket in the host's socket set, like the
//! services, plus a function that drives it with the host's loop until it is done.

pub mod dns;
mod error;
pub mod http;
pub mod ping;

pub use error::{ClientError, ClientErrorKind, Result};

pub use http::{Response, Url, get};
pub use ping::{PingConfig, PingReply, PingSummary, Pinger, ping};

use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};

use crate::host::{Clock, Host, Stop};
use crate::link::Housekeeping;

/// Turn the host's loop until `step` says it is done, waiting on the device between turns for at
/// most what the host and `step` allow. `step` gets the host after each turn and returns `None`
/// when done, or the latest time it wants to be called again. A failed wait is an error about
/// `target`.
pub(crate) fn drive<D, C, T>(
    host: &mut Host<D, C>,
    target: &str,
    stop: Option<&Stop>,
    mut step: impl FnMut(&mut Host<D, C>, Instant) -> Result<std::ops::ControlFlow<T, Option<Instant>>>,
) -> Result<Option<T>>
where
    D: Device + std::os::fd::AsFd + Housekeeping,
    C: Clock,
{
    loop {
        if stop.is_some_and(Stop::is_stopped) {
            return Ok(None);
        }
        host.poll();
        let now = host.clock().now();
        let wake = match step(host, now)? {
            std::ops::ControlFlow::Break(t) => return Ok(Some(t)),
            std::ops::ControlFlow::Continue(w) => w,
        };
        // Send what the step queued now rather than after the wait (egress only: a packet read
        // here would wait in its socket until the wait ends).
        let delay = host.egress();
        let now = host.clock().now();
        let until_wake = wake.map(|w| if w > now { w - now } else { Duration::ZERO });
        let d = match (delay, until_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Poll again at once, but never spin: wait at least a millisecond on the device.
        let d = if d == Some(Duration::ZERO) {
            Some(Duration::from_millis(1))
        } else {
            d
        };
        host.wait(stop, d)
            .map_err(|e| ClientError::new(target, ClientErrorKind::Host(e)))?;
    }
}

/// Turn the host's loop until it holds a DHCP lease ([`crate::Config::dhcp`]), `timeout` at
/// most: a client with `--addr dhcp` has no IPv4 address before.
pub fn await_lease<D, C>(
    host: &mut Host<D, C>,
    timeout: Duration,
    stop: Option<&Stop>,
) -> Result<crate::host::Lease>
where
    D: Device + std::os::fd::AsFd + Housekeeping,
    C: Clock,
{
    let deadline = host.clock().now() + timeout;
    let got = drive(host, "DHCP", stop, |host, now| {
        Ok(match host.dhcp_lease() {
            Some(lease) => std::ops::ControlFlow::Break(lease.clone()),
            None if now >= deadline => {
                return Err(ClientError::new(
                    "DHCP",
                    ClientErrorKind::TimedOut(format!(
                        "no lease from a DHCP server within {} s",
                        timeout.secs()
                    )),
                ));
            }
            None => std::ops::ControlFlow::Continue(Some(deadline)),
        })
    })?;
    got.ok_or_else(|| ClientError::new("DHCP", ClientErrorKind::Interrupted))
}
