//! Services the host runs: small sans-IO state machines over smoltcp sockets.
//!
//! A service never touches a file descriptor or the system clock: the host's loop calls
//! [`Service::poll`] after every interface poll with the socket set and the current `Instant`.
//! That is what lets the same services run live, in replay and under a fuzzer.
//!
//! TCP services are written as a [`Protocol`] (what to do with one connection) and run by
//! [`TcpService`], which owns a [`Listener`] and the connections it accepted. [`ServiceSpec`]
//! and [`add`] build services from a specification (what the CLI and replay do).
//!
//! This layer sits on the host layer: it implements the host's [`Service`] trait and reads the
//! host's [`StatusBoard`](crate::host::StatusBoard); the host never imports it.

mod chargen;
mod discard;
mod echo;
mod error;
pub mod http;
pub mod listener;
mod spec;
mod udp_echo;

#[cfg(test)]
mod pressure_tests;

pub use chargen::{Chargen, pattern as chargen_pattern};
pub use discard::Discard;
pub use echo::Echo;
pub use error::ServiceError;
pub use http::{Http, HttpConfig};
pub use listener::{Listener, ListenerConfig, ListenerStats};
pub use spec::{ServiceSpec, ServicesConfig, add, http as http_protocol};
pub use udp_echo::{UdpBuffers, UdpEcho};

pub use crate::host::Service;

use log::debug;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

/// What a protocol wants done with a connection after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep the connection.
    Keep,
    /// Close it gracefully: queued data is sent, then a FIN.
    Close,
}

/// The per-connection logic of a TCP service.
pub trait Protocol {
    /// State kept for each connection.
    type Conn;
    /// The protocol's name (`"echo"`).
    fn name(&self) -> &'static str;
    /// State for a connection that was just accepted.
    fn open(&mut self, now: Instant) -> Self::Conn;
    /// Move data on one established connection.
    fn drive(&mut self, conn: &mut Self::Conn, socket: &mut tcp::Socket<'_>, now: Instant) -> Step;
    /// When this connection needs a turn even without packets (a timeout).
    fn poll_at(&self, _conn: &Self::Conn) -> Option<Instant> {
        None
    }
    /// Since when this connection has made no progress, if it may be evicted (reset) to make
    /// room when every socket of the port is in use: the one idle longest goes first, once idle
    /// for [`EVICT_AFTER`]. `None` (the default): never evicted.
    fn idle_since(&self, _conn: &Self::Conn) -> Option<Instant> {
        None
    }
}

/// How long a connection must have made no progress before it may be evicted to make room.
pub const EVICT_AFTER: Duration = Duration::from_millis(500);

/// Runs a [`Protocol`] on every connection a [`Listener`] accepts.
pub struct TcpService<P: Protocol> {
    protocol: P,
    listener: Listener,
    conns: Vec<(SocketHandle, P::Conn)>,
    /// LISTEN sockets the listener missed at the last turn, for want of a socket.
    short: usize,
}

impl<P: Protocol> TcpService<P> {
    /// Run `protocol` on TCP `port`, with a [`Listener`] configured by `config` in `sockets`.
    pub fn new(
        sockets: &mut SocketSet<'static>,
        port: u16,
        config: ListenerConfig,
        protocol: P,
    ) -> TcpService<P> {
        TcpService {
            protocol,
            listener: Listener::new(sockets, port, config),
            conns: Vec::new(),
            short: 0,
        }
    }

    /// The listener's counters.
    pub fn listener_stats(&self) -> ListenerStats {
        self.listener.stats()
    }

    /// The protocol (shared by all connections).
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Reset up to `n` connections, those idle longest (at least [`EVICT_AFTER`]), so that their
    /// sockets listen again. Returns how many were evicted.
    fn evict(&mut self, sockets: &mut SocketSet<'static>, now: Instant, n: usize) -> usize {
        let mut idle: Vec<(Instant, usize)> = (self.conns.iter().enumerate())
            .filter_map(|(i, (_, c))| Some((self.protocol.idle_since(c)?, i)))
            .filter(|&(since, _)| now >= since + EVICT_AFTER)
            .collect();
        let n = n.min(idle.len());
        if n == 0 {
            return 0;
        }
        if n < idle.len() {
            idle.select_nth_unstable(n - 1);
        }
        let mut victims: Vec<usize> = idle[..n].iter().map(|&(_, i)| i).collect();
        // From the back, so that each swap_remove moves a connection that is not a victim.
        victims.sort_unstable_by(|a, b| b.cmp(a));
        for i in victims {
            let (h, _) = self.conns.swap_remove(i);
            self.listener.evict(sockets, h, now);
        }
        debug!(
            "{}: every socket in use: reset the {n} connection(s) idle longest",
            self.name()
        );
        n
    }
}

impl<P: Protocol> Service for TcpService<P> {
    fn name(&self) -> String {
        format!("{}/{}", self.protocol.name(), self.listener.endpoint().port)
    }

    fn poll(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        while let Some(h) = self.listener.accept(sockets, now) {
            let conn = self.protocol.open(now);
            self.conns.push((h, conn));
        }
        let mut i = 0;
        while i < self.conns.len() {
            let (h, conn) = &mut self.conns[i];
            let socket = sockets.get_mut::<tcp::Socket>(*h);
            let done = if !socket.is_active() {
                // Reset by the peer or timed out.
                true
            } else if self.protocol.drive(conn, socket, now) == Step::Close {
                socket.close();
                true
            } else {
                false
            };
            if done {
                let (h, _) = self.conns.swap_remove(i);
                self.listener.release(sockets, h, now);
            } else {
                i += 1;
            }
        }
        self.short = self.listener.maintain(sockets, now);
        if self.short > 0 && self.evict(sockets, now, self.short) == 0 {
            self.listener.make_room(sockets, now);
            self.short = self.listener.maintain(sockets, now);
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        // Short of LISTEN sockets: a turn when the next connection may be evicted, before a SYN
        // finds the pool empty.
        let evict_at = |c| match self.short {
            0 => None,
            _ => Some(self.protocol.idle_since(c)? + EVICT_AFTER),
        };
        (self.conns.iter())
            .flat_map(|(_, c)| [self.protocol.poll_at(c), evict_at(c)])
            .flatten()
            .min()
    }

    fn close(&mut self, sockets: &mut SocketSet<'static>, now: Instant) {
        for (h, _) in self.conns.drain(..) {
            sockets.get_mut::<tcp::Socket>(h).close();
            self.listener.release(sockets, h, now);
        }
        self.listener.close_all(sockets, now);
    }
}

/// Whether the peer has closed its side and everything it sent has been read.
pub(crate) fn peer_done(socket: &tcp::Socket<'_>) -> bool {
    !socket.may_recv() && !socket.can_recv()
}

impl Step {
    /// [`Step::Close`] once the peer has closed its side and everything it sent has been read,
    /// else [`Step::Keep`]: the end of a protocol that answers until the peer is done.
    pub fn until_peer_done(socket: &tcp::Socket<'_>) -> Step {
        if peer_done(socket) {
            Step::Close
        } else {
            Step::Keep
        }
    }
}

/// Read and drop everything the socket has received.
pub(crate) fn drain(socket: &mut tcp::Socket<'_>) {
    while socket.can_recv() {
        if socket.recv(|b| (b.len(), ())).is_err() {
            break;
        }
    }
}
