//! [`Service`]: all the host knows of what runs on it.

use smoltcp::iface::SocketSet;
use smoltcp::time::Instant;

/// Something the host drives on every turn of its loop: a sans-IO state machine over sockets of
/// the host's socket set. It never touches a file descriptor or the system clock; the host
/// passes it the sockets and the current `Instant`.
pub trait Service {
    /// A short name for logs and status (`"echo/7"`).
    fn name(&self) -> String;
    /// Do whatever the sockets allow now.
    fn poll(&mut self, sockets: &mut SocketSet<'static>, now: Instant);
    /// The latest time the service wants to be polled again even if no packet arrives
    /// (timeouts); `None` when only packets can make it progress.
    fn poll_at(&self) -> Option<Instant> {
        None
    }
    /// Start closing every connection at `now`, gracefully (queued data, then FIN), and accept
    /// no new one: the host is shutting down. The host keeps polling the service while the
    /// closes reach the peers, on the same clock as `now`.
    fn close(&mut self, sockets: &mut SocketSet<'static>, now: Instant);
}
