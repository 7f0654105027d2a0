//! A TCP listener with a backlog, over smoltcp's one-socket-per-connection model.
//!
//! smoltcp has no `accept`: a socket in LISTEN takes the first SYN that reaches its port and
//! becomes that connection; a SYN that finds no socket in LISTEN is answered with RST. So a
//! server that wants to take more than one connection at a time keeps a *pool* of sockets in
//! LISTEN. [`Listener`] does that bookkeeping:
//!
//! - it keeps `backlog` sockets in LISTEN (or SYN-RECEIVED) on its endpoint;
//! - [`Listener::accept`] hands out each socket whose handshake completed and puts another one in
//!   LISTEN in its place;
//! - [`Listener::release`] takes back a connection the service is done with (after `close()` or
//!   `abort()`); the socket is reused once it reaches CLOSED, or TIME-WAIT when sockets run out;
//! - it never owns more than `max_sockets` sockets in all (listening + handed out + closing), so
//!   memory is bounded by `max_sockets × (rx + tx buffer)`. When that is reached, new SYNs get a
//!   RST until a connection ends.
//!
//! When every socket of the pool is in SYN-RECEIVED (a flood of SYNs whose sources never
//! answer), the one that has waited longest, over [`HALF_OPEN_GRACE`], is reset and listens
//! again, so that real clients still get through, as Linux drops its oldest half-open request
//! when its SYN queue overflows.
//!
//! Sockets that stay in a closing state longer than [`LINGER`] (a peer that never ACKs our FIN,
//! or never sends its own) are aborted, and every socket has keep-alive and an inactivity
//! timeout, so a hostile or vanished peer cannot hold sockets forever.
//!
//! [`Listener::close_all`] shuts the listener for good: its connections close gracefully (FIN
//! after their queued data), no socket listens any more and none is put in LISTEN again, so a
//! SYN that comes afterwards is refused (RST).

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpListenEndpoint;

use crate::host::TcpTuning;

/// How long a handshake may wait in SYN-RECEIVED before its socket is taken back, when the pool
/// has no socket left in LISTEN (a SYN flood from addresses that never answer, say).
pub const HALF_OPEN_GRACE: Duration = Duration::from_secs(1);

/// How long a released socket may take to close before it is aborted.
pub const LINGER: Duration = Duration::from_secs(30);

/// Inactivity timeout set on every socket: a connection whose peer sends nothing for this long
/// while we wait on it (data in flight, or keep-alive probes) is aborted.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(60);

/// Keep-alive interval set on every socket. smoltcp's timeout only runs while data is in flight
/// or keep-alive is on; without it, a peer that opens connections and vanishes would hold their
/// sockets forever. A live peer answers the probes and keeps its connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Buffer sizes and limits of a listener's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Sockets kept in LISTEN: how many handshakes can be in flight before SYNs get RST.
    pub backlog: usize,
    /// Upper bound on the sockets this listener owns at once (at least `backlog`).
    pub max_sockets: usize,
    /// Receive buffer of each socket, in bytes. The default, 256 KiB, covers the
    /// bandwidth-delay product of a TUN link at ~10 Gbit/s and ~200 µs; smaller buffers cap
    /// throughput at buffer / RTT. Buffers are zeroed allocations that the OS maps lazily: memory
    /// in use grows with the data in flight, not with the number of idle sockets.
    pub rx_buffer: usize,
    /// Transmit buffer of each socket, in bytes.
    pub tx_buffer: usize,
    /// Congestion control and timestamps of each socket.
    pub tcp: TcpTuning,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            backlog: 64,
            max_sockets: 256,
            rx_buffer: 256 * 1024,
            tx_buffer: 256 * 1024,
            tcp: TcpTuning::default(),
        }
    }
}

/// Counters of a listener, for status pages and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections handed out by `accept` so far.
    pub accepted: u64,
    /// Connections handed out and not yet released.
    pub active: usize,
    /// Sockets owned in all (listening, active, closing, free).
    pub sockets: usize,
    /// Closing sockets aborted after [`LINGER`].
    pub lingered: u64,
    /// Half-open handshakes reset to make room (see [`HALF_OPEN_GRACE`]).
    pub evicted: u64,
}

/// A pool of LISTEN sockets on one endpoint. See the module documentation.
#[derive(Debug)]
pub struct Listener {
    endpoint: IpListenEndpoint,
    config: ListenerConfig,
    /// In LISTEN or SYN-RECEIVED.
    pending: Vec<SocketHandle>,
    /// Pending sockets seen in SYN-RECEIVED, with when they were first seen so.
    half_open: Vec<(SocketHandle, Instant)>,
    /// Released by the service, still closing, with the time they were released.
    closing: Vec<(SocketHandle, Instant)>,
    /// Closed and ready for reuse.
    free: Vec<SocketHandle>,
    active: usize,
    accepted: u64,
    lingered: u64,
    evicted: u64,
    /// Shut by [`Listener::close_all`]: nothing listens again.
    shut: bool,
}

impl Listener {
    /// Put `config.backlog` sockets in LISTEN on `endpoint`.
    ///
    /// # Panics
    /// If `endpoint.port` is 0 (callers validate ports at configuration time).
    pub fn new(
        sockets: &mut SocketSet<'static>,
        endpoint: impl Into<IpListenEndpoint>,
        config: ListenerConfig,
    ) -> Listener {
        let endpoint = endpoint.into();
        assert_ne!(endpoint.port, 0, "a listener needs a port");
        let config = ListenerConfig {
            backlog: config.backlog.max(1),
            max_sockets: config.max_sockets.max(config.backlog.max(1)),
            ..config
        };
        let mut listener = Listener {
            endpoint,
            config,
            pending: Vec::with_capacity(config.backlog),
            half_open: Vec::new(),
            closing: Vec::new(),
            free: Vec::new(),
            active: 0,
            accepted: 0,
            lingered: 0,
            evicted: 0,
            shut: false,
        };
        listener.refill(sockets, Instant::ZERO);
        listener
    }

    /// The address and port the listener accepts on.
    pub fn endpoint(&self) -> IpListenEndpoint {
        self.endpoint
    }

    fn owned(&self) -> usize {
        self.pending.len() + self.active + self.closing.len() + self.free.len()
    }

    /// Connections accepted and active, sockets owned, closes and handshakes cut short.
    pub fn stats(&self) -> ListenerStats {
        ListenerStats {
            accepted: self.accepted,
            active: self.active,
            sockets: self.owned(),
            lingered: self.lingered,
            evicted: self.evicted,
        }
    }

    /// Hand out one connection whose handshake has completed, if any, and put a new socket in
    /// LISTEN in its place. Call it until it returns `None`.
    pub fn accept(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Instant,
    ) -> Option<SocketHandle> {
        self.reap(sockets, now);
        // The pool may have run short (every socket busy or closing at the last release): top it
        // up from sockets that have closed since.
        self.refill(sockets, now);
        let mut found = None;
        let mut listening = false;
        for (i, &h) in self.pending.iter().enumerate() {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            match socket.state() {
                State::Listen => listening = true,
                State::SynReceived => {}
                State::Closed | State::TimeWait => {
                    // Reset before it was accepted: listen again in place.
                    let _ = socket.listen(self.endpoint);
                    listening = true;
                }
                _ => {
                    found = Some(i);
                    break;
                }
            }
        }
        self.track_half_open(sockets, now, listening || found.is_some());
        let handle = self.pending.swap_remove(found?);
        self.half_open.retain(|&(h, _)| h != handle);
        self.active += 1;
        self.accepted += 1;
        self.refill(sockets, now);
        Some(handle)
    }

    /// Note when pending sockets entered SYN-RECEIVED; when none is left in LISTEN (`room` is
    /// false), reset the longest-waiting one past [`HALF_OPEN_GRACE`] so it listens again.
    fn track_half_open(&mut self, sockets: &mut SocketSet<'static>, now: Instant, room: bool) {
        self.half_open
            .retain(|&(h, _)| sockets.get::<tcp::Socket>(h).state() == State::SynReceived);
        for &h in &self.pending {
            if sockets.get::<tcp::Socket>(h).state() == State::SynReceived
                && !self.half_open.iter().any(|&(x, _)| x == h)
            {
                self.half_open.push((h, now));
            }
        }
        if room {
            return;
        }
        // Oldest first: entries are pushed in the order they were seen.
        if let Some(i) = self
            .half_open
            .iter()
            .position(|&(_, since)| now >= since + HALF_OPEN_GRACE)
        {
            let (h, _) = self.half_open.remove(i);
            let socket = sockets.get_mut::<tcp::Socket>(h);
            socket.abort();
            let _ = socket.listen(self.endpoint);
            self.evicted += 1;
        }
    }

    /// Take back a connection handed out by `accept`. The caller has called `close()` (or
    /// `abort()`) on it, or the peer has reset it; the listener watches it close and reuses it.
    pub fn release(
        &mut self,
        sockets: &mut SocketSet<'static>,
        handle: SocketHandle,
        now: Instant,
    ) {
        debug_assert!(self.active > 0, "release without accept");
        self.active = self.active.saturating_sub(1);
        self.closing.push((handle, now));
        self.reap(sockets, now);
        self.refill(sockets, now);
    }

    /// Shut the listener at `now`: close every socket gracefully (a connection sends what it has
    /// queued, then its FIN) and listen no more. Sockets in LISTEN close at once; from now on
    /// none is put in LISTEN again, so a SYN to this port is refused. The closing sockets are
    /// reaped (and aborted after [`LINGER`]) counting from `now`.
    pub fn close_all(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        self.shut = true;
        self.half_open.clear();
        for h in self.pending.drain(..) {
            sockets.get_mut::<tcp::Socket>(h).close();
            self.closing.push((h, now));
        }
        for &(h, _) in &self.closing {
            sockets.get_mut::<tcp::Socket>(h).close();
        }
        self.reap(sockets, now);
    }

    /// Move closing sockets that are done to the free list; abort those that lingered.
    fn reap(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        let mut i = 0;
        while i < self.closing.len() {
            let (h, since) = self.closing[i];
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if socket.state() == State::Closed {
                self.closing.swap_remove(i);
                self.free.push(h);
                continue;
            }
            if socket.state() != State::TimeWait && now >= since + LINGER {
                socket.abort();
                self.lingered += 1;
            }
            i += 1;
        }
    }

    /// Top the pool of LISTEN sockets up to `backlog`, within `max_sockets` (none once shut).
    fn refill(&mut self, sockets: &mut SocketSet<'static>, _now: Instant) {
        while !self.shut && self.pending.len() < self.config.backlog {
            let handle = if let Some(h) = self.free.pop() {
                h
            } else if self.owned() < self.config.max_sockets {
                let socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; self.config.rx_buffer]),
                    tcp::SocketBuffer::new(vec![0; self.config.tx_buffer]),
                );
                sockets.add(socket)
            } else if let Some(i) = self
                .closing
                .iter()
                .position(|&(h, _)| sockets.get::<tcp::Socket>(h).state() == State::TimeWait)
            {
                // Out of sockets: reuse one in TIME-WAIT, as tcp_tw_reuse does.
                self.closing.swap_remove(i).0
            } else {
                break;
            };
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            socket.set_timeout(Some(SOCKET_TIMEOUT));
            socket.set_keep_alive(Some(KEEP_ALIVE));
            // Acknowledge at once: the host's loop sends after the services have acted, so the
            // ACK already rides with the reply and the reopened window; delaying it only
            // throttles a bulk sender (every second 64 KiB super-packet otherwise).
            socket.set_ack_delay(None);
            self.config.tcp.apply(socket);
            if socket.listen(self.endpoint).is_err() {
                // Not closed after all (cannot happen for the sources above): drop it cleanly.
                socket.abort();
                self.closing.push((handle, Instant::ZERO));
                break;
            }
            self.pending.push(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> SocketSet<'static> {
        SocketSet::new(Vec::new())
    }

    /// Tiny buffers, the given backlog and socket bound.
    fn limits(backlog: usize, max_sockets: usize) -> ListenerConfig {
        ListenerConfig {
            backlog,
            max_sockets,
            rx_buffer: 64,
            tx_buffer: 64,
            tcp: TcpTuning::default(),
        }
    }

    #[test]
    fn keeps_backlog_listening() {
        let mut sockets = set();
        let cfg = limits(4, 8);
        let mut l = Listener::new(&mut sockets, 7, cfg);
        assert_eq!(l.stats().sockets, 4);
        assert_eq!(sockets.iter().count(), 4);
        for (_, s) in sockets.iter() {
            match s {
                smoltcp::socket::Socket::Tcp(t) => assert!(t.is_listening()),
                _ => panic!("not tcp"),
            }
        }
        assert!(l.accept(&mut sockets, Instant::ZERO).is_none());
    }

    #[test]
    fn bounded_by_max_sockets() {
        let mut sockets = set();
        let cfg = limits(10, 3);
        let l = Listener::new(&mut sockets, 7, cfg);
        // max_sockets is raised to the backlog, never below it.
        assert_eq!(l.stats().sockets, 10);
    }

    #[test]
    fn close_all_listens_no_more() {
        let mut sockets = set();
        let mut l = Listener::new(&mut sockets, 7, limits(4, 8));
        let t = Instant::from_secs(100);
        l.close_all(&mut sockets, t);
        // Neither accept nor release puts a socket in LISTEN again.
        assert!(l.accept(&mut sockets, t).is_none());
        let listening = |sockets: &SocketSet<'static>| {
            sockets
                .iter()
                .filter(|(_, s)| matches!(s, smoltcp::socket::Socket::Tcp(t) if t.is_listening()))
                .count()
        };
        assert_eq!(listening(&sockets), 0);
        assert!(l.accept(&mut sockets, t + LINGER).is_none());
        assert_eq!(listening(&sockets), 0);
        assert_eq!(l.stats().sockets, 4, "the sockets are kept, closed");
    }

    #[test]
    fn released_closed_socket_is_reused() {
        let mut sockets = set();
        let cfg = limits(1, 1);
        let mut l = Listener::new(&mut sockets, 7, cfg);
        let h = l.pending[0];
        // Pretend the pending socket was accepted (as accept() does for an established one).
        l.pending.clear();
        l.active = 1;
        sockets.get_mut::<tcp::Socket>(h).abort();
        l.release(&mut sockets, h, Instant::ZERO);
        assert_eq!(l.pending, vec![h]);
        assert!(sockets.get::<tcp::Socket>(h).is_listening());
        assert_eq!(l.stats().sockets, 1);
        assert_eq!(sockets.iter().count(), 1);
    }
}
