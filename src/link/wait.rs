//! Waiting on a device's file descriptor: sleep until a packet comes, something else wakes the
//! caller (another descriptor, such as a stop handle's eventfd), or a timeout passes.
//!
//! The timeout is smoltcp's own [`Duration`] as `Interface::poll_delay` returns it, rounded up to
//! the next millisecond, never down: a timer is never polled early by a loop that would then spin.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use smoltcp::time::Duration;

use super::error::{LinkError, Result};

/// What `poll` reports on a descriptor that a read would not block on.
const READY: PollFlags = PollFlags::POLLIN
    .union(PollFlags::POLLERR)
    .union(PollFlags::POLLHUP)
    .union(PollFlags::POLLNVAL);

/// Sleep until `fd` is readable, `wake` (if any) is readable, or `timeout` passes (`None`: no
/// timeout). Returns whether `fd` is readable, or in error (`POLLERR`, `POLLHUP`: a TUN/TAP
/// device that was deleted): either way a read returns at once, and tells which. A signal that
/// interrupts the sleep returns `Ok(false)`.
pub fn readable(
    fd: BorrowedFd<'_>,
    wake: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> Result<bool> {
    let ms = match timeout {
        None => PollTimeout::NONE,
        Some(d) => {
            let ms = d.total_micros().div_ceil(1000).min(i32::MAX as u64 - 1) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut fds = [
        PollFd::new(fd, PollFlags::POLLIN),
        PollFd::new(wake.unwrap_or(fd), PollFlags::POLLIN),
    ];
    let n = if wake.is_some() { 2 } else { 1 };
    let result = nix::poll::poll(&mut fds[..n], ms);
    let readable = fds[0].revents().is_some_and(|r| r.intersects(READY));
    match result {
        Ok(_) => Ok(readable),
        Err(Errno::EINTR) => Ok(false),
        Err(errno) => Err(LinkError::io("poll", "wait for packets (poll)", errno)),
    }
}

/// Check `fd` for readability without sleeping, for up to `spin` or until `give_up` says so;
/// true if it became readable. For busy polling right after a packet, when the next one of the
/// exchange is due within microseconds.
pub fn spin_until_readable(
    fd: BorrowedFd<'_>,
    spin: std::time::Duration,
    give_up: impl Fn() -> bool,
) -> bool {
    let until = std::time::Instant::now() + spin;
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        if matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return true;
        }
        if give_up() || std::time::Instant::now() >= until {
            return false;
        }
        std::hint::spin_loop();
    }
}
