//! A TCP listener with a backlog, over smoltcp's one-socket-per-connection model.
//!
//! smoltcp has no `accept`: a socket in LISTEN takes the first SYN that reaches its port and
//! becomes that connection; a SYN that finds no socket in LISTEN is answered with RST. So a
//! server that wants to take more than one connection at a time keeps a *pool* of sockets in
//! LISTEN. [`Listener`] does that bookkeeping:
//!
//! - it keeps [`LISTEN_AHEAD`] sockets in LISTEN (fewer if `backlog` is smaller), and lets the
//!   handshakes in flight (LISTEN + SYN-RECEIVED) grow up to `backlog` as SYNs take them: the
//!   host's loop lets the services act after every [`INGRESS_BATCH`] packets, so a burst of
//!   SYNs never finds the pool empty while sockets are left;
//! - [`Listener::accept`] hands out each socket whose handshake has completed;
//! - [`Listener::release`] takes back a connection the service is done with (after `close()` or
//!   `abort()`); the socket is reused once it reaches CLOSED;
//! - it never owns more than `max_sockets` sockets besides the LISTEN sockets kept ready
//!   (handshakes + handed out + closing), so memory is bounded by
//!   `(max_sockets + LISTEN_AHEAD) × (rx + tx buffer)`.
//!
//! **A closed connection gives its slot back at once.** A socket in TIME-WAIT is reused before a
//! new one is made, as `tcp_tw_reuse` does. When a socket is needed and none is left, a
//! released socket still closing is taken back: the one released longest ago among those that
//! have nothing left unacknowledged (everything sent has arrived;
//! only the FIN handshake is missing, e.g. a peer that keeps its half of the connection open
//! after our FIN, FIN-WAIT-2). It is aborted (RST) and listens again. Closing sockets with data
//! still in flight are taken back only when nothing else is left
//! ([`Listener::make_room`]). Linux, too, resets orphaned connections under pressure.
//!
//! **Under pressure** (no socket left for the LISTEN pool), [`Listener::maintain`] says how many
//! LISTEN sockets are missing; the service ([`TcpService`](super::TcpService)) then evicts its
//! connections that have made no progress the longest ([`Listener::evict`]).
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

use crate::host::{INGRESS_BATCH, TcpTuning};

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

/// Sockets kept in LISTEN ahead of demand: as many SYNs as the host takes in before the services
/// get a turn ([`INGRESS_BATCH`]), so none of them is refused while sockets are left.
pub const LISTEN_AHEAD: usize = INGRESS_BATCH;

/// The listen backlog unless configured: handshakes in flight at once, as Linux's `somaxconn`.
pub const DEFAULT_BACKLOG: usize = 4096;

/// Connections per port unless configured.
pub const DEFAULT_MAX_SOCKETS: usize = 16_384;

/// Buffer sizes and limits of a listener's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Most handshakes in flight at once (sockets in LISTEN or SYN-RECEIVED), as the backlog of
    /// `listen(2)`. Sockets are put in LISTEN [`LISTEN_AHEAD`] at a time, not all up front.
    pub backlog: usize,
    /// Most connections at once (handshakes, open, closing), besides the [`LISTEN_AHEAD`]
    /// sockets kept listening.
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
            backlog: DEFAULT_BACKLOG,
            max_sockets: DEFAULT_MAX_SOCKETS,
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
    /// Closing sockets taken back before they closed, to make room.
    pub reclaimed: u64,
    /// Open connections reset to make room ([`Listener::evict`]).
    pub preempted: u64,
}

/// A socket in LISTEN or SYN-RECEIVED, with when it was first seen in SYN-RECEIVED.
#[derive(Debug, Clone, Copy)]
struct Pending {
    handle: SocketHandle,
    half_open: Option<Instant>,
}

/// A pool of LISTEN sockets on one endpoint. See the module documentation.
#[derive(Debug)]
pub struct Listener {
    endpoint: IpListenEndpoint,
    config: ListenerConfig,
    /// Sockets wanted in LISTEN at all times: [`LISTEN_AHEAD`], at most `backlog`.
    ahead: usize,
    /// Most sockets owned: `max_sockets + ahead`.
    cap: usize,
    /// In LISTEN or SYN-RECEIVED.
    pending: Vec<Pending>,
    /// Established, found by the last scan of `pending`, not handed out yet.
    ready: Vec<SocketHandle>,
    /// Released by the service, still closing (or sending their RST), with the time they were
    /// released.
    closing: Vec<(SocketHandle, Instant)>,
    /// Closed and ready for reuse.
    free: Vec<SocketHandle>,
    active: usize,
    accepted: u64,
    lingered: u64,
    evicted: u64,
    reclaimed: u64,
    preempted: u64,
    /// Shut by [`Listener::close_all`]: nothing listens again.
    shut: bool,
}

impl Listener {
    /// Put up to [`LISTEN_AHEAD`] sockets (at most `config.backlog`) in LISTEN on `endpoint`.
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
            max_sockets: config.max_sockets.max(1),
            ..config
        };
        let ahead = LISTEN_AHEAD.min(config.backlog);
        let mut listener = Listener {
            endpoint,
            config,
            ahead,
            cap: config.max_sockets + ahead,
            pending: Vec::with_capacity(ahead),
            ready: Vec::new(),
            closing: Vec::new(),
            free: Vec::new(),
            active: 0,
            accepted: 0,
            lingered: 0,
            evicted: 0,
            reclaimed: 0,
            preempted: 0,
            shut: false,
        };
        listener.refill(sockets, Instant::ZERO, false);
        listener
    }

    /// The address and port the listener accepts on.
    pub fn endpoint(&self) -> IpListenEndpoint {
        self.endpoint
    }

    fn owned(&self) -> usize {
        self.pending.len() + self.ready.len() + self.active + self.closing.len() + self.free.len()
    }

    /// Connections accepted and active, sockets owned, closes and handshakes cut short.
    pub fn stats(&self) -> ListenerStats {
        ListenerStats {
            accepted: self.accepted,
            active: self.active,
            sockets: self.owned(),
            lingered: self.lingered,
            evicted: self.evicted,
            reclaimed: self.reclaimed,
            preempted: self.preempted,
        }
    }

    /// Hand out one connection whose handshake has completed, if any. Call it until it returns
    /// `None`; the LISTEN pool is topped up as handshakes take its sockets.
    pub fn accept(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Instant,
    ) -> Option<SocketHandle> {
        if self.ready.is_empty() {
            self.scan(sockets, now);
        }
        let handle = self.ready.pop()?;
        self.active += 1;
        self.accepted += 1;
        Some(handle)
    }

    /// Move the established sockets of the pool to `ready`, note when sockets entered
    /// SYN-RECEIVED, and top the pool up.
    fn scan(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        self.reap(sockets, now);
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            let socket = sockets.get_mut::<tcp::Socket>(p.handle);
            match socket.state() {
                State::Listen => p.half_open = None,
                State::SynReceived => {
                    p.half_open.get_or_insert(now);
                }
                State::Closed | State::TimeWait => {
                    // Reset before it was accepted: listen again in place.
                    self.config.tcp.apply(socket);
                    let _ = socket.listen(self.endpoint);
                    p.half_open = None;
                }
                _ => {
                    self.ready.push(p.handle);
                    self.pending.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        self.refill(sockets, now, false);
    }

    /// Take back a connection handed out by `accept`. The caller has called `close()` (or
    /// `abort()`) on it, or the peer has reset it; the listener watches it close and reuses it
    /// (see [`Listener::maintain`]).
    pub fn release(
        &mut self,
        sockets: &mut SocketSet<'static>,
        handle: SocketHandle,
        now: Instant,
    ) {
        debug_assert!(self.active > 0, "release without accept");
        self.active = self.active.saturating_sub(1);
        if done(sockets.get::<tcp::Socket>(handle)) {
            self.free.push(handle);
        } else {
            self.closing.push((handle, now));
        }
    }

    /// Reset a connection handed out by `accept` to make room for a new one, and take it back:
    /// its RST goes out with the host's next send, and the socket listens again after that.
    pub fn evict(&mut self, sockets: &mut SocketSet<'static>, handle: SocketHandle, now: Instant) {
        sockets.get_mut::<tcp::Socket>(handle).abort();
        self.preempted += 1;
        self.release(sockets, handle, now);
    }

    /// Reuse the sockets that have closed, abort those that lingered, and top the LISTEN pool
    /// up. Returns how many LISTEN sockets are missing for want of a socket (not counting the
    /// sockets still sending the RST of an eviction): how many connections the service should
    /// evict to make room, 0 when there is room.
    pub fn maintain(&mut self, sockets: &mut SocketSet<'static>, now: Instant) -> usize {
        self.reap(sockets, now);
        let short = self.refill(sockets, now, false);
        if short == 0 {
            return 0;
        }
        let resetting = (self.closing.iter())
            .filter(|&&(h, _)| sockets.get::<tcp::Socket>(h).state() == State::Closed)
            .count();
        short.saturating_sub(resetting)
    }

    /// Top the LISTEN pool up even at the cost of closing connections that still have data in
    /// flight (the oldest released first): when the port is full and the service has nothing
    /// it may evict.
    pub fn make_room(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        self.refill(sockets, now, true);
    }

    /// Shut the listener at `now`: close every socket gracefully (a connection sends what it has
    /// queued, then its FIN) and listen no more. Sockets in LISTEN close at once; from now on
    /// none is put in LISTEN again, so a SYN to this port is refused. The closing sockets are
    /// reaped (and aborted after [`LINGER`]) counting from `now`.
    pub fn close_all(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        self.shut = true;
        let pending = self.pending.drain(..).map(|p| p.handle);
        for h in pending.chain(self.ready.drain(..)) {
            sockets.get_mut::<tcp::Socket>(h).close();
            self.closing.push((h, now));
        }
        for &(h, _) in &self.closing {
            sockets.get_mut::<tcp::Socket>(h).close();
        }
        self.reap(sockets, now);
    }

    /// Move closing sockets that are done to the free list; abort those that lingered. A socket
    /// in TIME-WAIT counts as done: it is reused before a new one is made, as `tcp_tw_reuse`
    /// does (otherwise a port that takes thousands of short connections a second would keep
    /// thousands of sockets in TIME-WAIT, each one more for smoltcp to walk per packet).
    fn reap(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        let mut i = 0;
        while i < self.closing.len() {
            let (h, since) = self.closing[i];
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if done(socket) || socket.state() == State::TimeWait {
                self.closing.swap_remove(i);
                self.free.push(h);
                continue;
            }
            if socket.is_open() && now >= since + LINGER {
                socket.abort();
                self.lingered += 1;
            }
            i += 1;
        }
    }

    /// Top the pool up to `ahead` sockets in LISTEN, within `backlog` and the socket bound (none
    /// once shut); when the pool is all in SYN-RECEIVED, reset its oldest handshake past
    /// [`HALF_OPEN_GRACE`]. Returns how many LISTEN sockets are still missing for want of a
    /// socket.
    fn refill(&mut self, sockets: &mut SocketSet<'static>, now: Instant, desperate: bool) -> usize {
        if self.shut {
            return 0;
        }
        let mut listening = (self.pending.iter())
            .filter(|p| sockets.get::<tcp::Socket>(p.handle).is_listening())
            .count();
        let mut short = 0;
        while listening < self.ahead && self.pending.len() < self.config.backlog {
            let Some(handle) = self.take_socket(sockets, now, desperate) else {
                short = (self.ahead - listening).min(self.config.backlog - self.pending.len());
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
            self.pending.push(Pending {
                handle,
                half_open: None,
            });
            listening += 1;
        }
        if listening == 0 {
            self.reset_oldest_half_open(sockets, now);
        }
        short
    }

    /// A socket for the pool: a free one, a new one within the bound, else one taken back from
    /// those still closing (see the module documentation).
    fn take_socket(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Instant,
        desperate: bool,
    ) -> Option<SocketHandle> {
        if let Some(h) = self.free.pop() {
            return Some(h);
        }
        if self.owned() < self.cap {
            return Some(sockets.add(tcp::Socket::new(
                tcp::SocketBuffer::new_lazy(self.config.rx_buffer),
                tcp::SocketBuffer::new_lazy(self.config.tx_buffer),
            )));
        }
        // The oldest with nothing unacknowledged, then, if desperate, the oldest at all.
        let mut best: Option<(u8, Instant, usize)> = None;
        for (i, &(h, since)) in self.closing.iter().enumerate() {
            let socket = sockets.get::<tcp::Socket>(h);
            let class = match socket.state() {
                // Aborted, its RST not sent yet: wait for it a moment (the host's next send).
                State::Closed if now < since + HALF_OPEN_GRACE => continue,
                State::Closed | State::TimeWait => 0,
                _ if socket.send_queue() == 0 => 1,
                _ if desperate => 2,
                _ => continue,
            };
            if best.is_none_or(|(c, t, _)| (class, since) < (c, t)) {
                best = Some((class, since, i));
            }
        }
        let (class, _, i) = best?;
        let (h, _) = self.closing.swap_remove(i);
        if class > 0 {
            // The peer has our data (or gave up on it): it learns of the reset from the next
            // segment it sends, which finds a socket in LISTEN and gets a RST.
            sockets.get_mut::<tcp::Socket>(h).abort();
            self.reclaimed += 1;
        }
        Some(h)
    }

    /// Reset the handshake of the pool that has waited longest, if over [`HALF_OPEN_GRACE`], so
    /// that its socket listens again.
    fn reset_oldest_half_open(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        let oldest = (self.pending.iter_mut())
            .filter_map(|p| Some((p.half_open?, p)))
            .min_by_key(|(since, _)| *since);
        if let Some((since, p)) = oldest
            && now >= since + HALF_OPEN_GRACE
        {
            let socket = sockets.get_mut::<tcp::Socket>(p.handle);
            socket.abort();
            self.config.tcp.apply(socket);
            let _ = socket.listen(self.endpoint);
            p.half_open = None;
            self.evicted += 1;
        }
    }
}

/// Closed, with no RST left to send: free for reuse.
fn done(socket: &tcp::Socket<'_>) -> bool {
    socket.state() == State::Closed && socket.remote_endpoint().is_none()
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
        // The sockets kept in LISTEN come on top of max_sockets.
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
        let h = l.pending[0].handle;
        // Pretend the pending socket was accepted (as accept() does for an established one).
        l.pending.clear();
        l.active = 1;
        sockets.get_mut::<tcp::Socket>(h).abort();
        l.release(&mut sockets, h, Instant::ZERO);
        assert_eq!(l.maintain(&mut sockets, Instant::ZERO), 0);
        assert_eq!(
            l.pending.iter().map(|p| p.handle).collect::<Vec<_>>(),
            vec![h]
        );
        assert!(sockets.get::<tcp::Socket>(h).is_listening());
        assert_eq!(l.stats().sockets, 1);
        assert_eq!(sockets.iter().count(), 1);
    }
}
