//! A host with an HTTP service and a client on smoltcp's loopback device, on a virtual clock: the
//! whole server end to end in one process, for the unit tests and the `http_request` fuzz
//! target. Not part of the public API.

use smoltcp::iface::SocketHandle;
use smoltcp::phy::Loopback;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::wire::IpAddress;

use super::{Content, Http};
use crate::host::{Host, VirtualClock};
use crate::services::ListenerConfig;
use crate::services::TcpService;

/// 1994-11-06 08:49:37 GMT, RFC 9110's example date: the harness's wall clock at `Instant::ZERO`.
pub(crate) const EPOCH: u64 = 784_111_777;

/// A host serving `Content` over HTTP on 127.0.0.1:80, and the means to be its client.
pub(crate) struct Net {
    pub host: Host<Loopback, VirtualClock>,
    pub clock: VirtualClock,
    next_port: u16,
}

impl Net {
    /// A host with a 10 s idle timeout (the unit tests' harness; the fuzz target sets its own).
    #[cfg(test)]
    pub(crate) fn new(content: Content) -> Net {
        Net::with_idle_timeout(content, Duration::from_secs(10))
    }

    /// The same with another idle timeout (short ones keep a fuzz input's run short).
    pub(crate) fn with_idle_timeout(content: Content, idle: Duration) -> Net {
        let (mut host, clock) = crate::host::loopback_host(7);
        let content = match content {
            Content::Status(_) => Content::Status(host.status().clone()),
            c => c,
        };
        // Small buffers: every big response is streamed in many pieces.
        let lc = ListenerConfig {
            backlog: 2,
            max_sockets: 4,
            rx_buffer: 4096,
            tx_buffer: 4096,
            ..ListenerConfig::default()
        };
        let http = Http::new(content, idle, EPOCH);
        host.add_service(|s| TcpService::new(s, 80, lc, http));
        Net {
            host,
            clock,
            next_port: 40000,
        }
    }

    /// Open a client connection to the server from the next local port; returns its socket.
    pub(crate) fn connect(&mut self) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        let (iface, sockets) = self.host.parts_mut();
        self.next_port += 1;
        s.connect(
            iface.context(),
            (IpAddress::v4(127, 0, 0, 1), 80),
            self.next_port,
        )
        .unwrap();
        sockets.add(s)
    }

    /// Send `req` on `h`, then run for up to `ms` milliseconds of virtual time in 1 ms steps,
    /// collecting what comes back, until the server closes. (Steps, not jumps to the host's next
    /// deadline: packets queued in the loopback device are no deadline smoltcp knows of.)
    pub(crate) fn exchange(&mut self, h: SocketHandle, req: &[u8], ms: u64) -> (Vec<u8>, bool) {
        let mut sent = 0;
        let mut got = Vec::new();
        for _ in 0..ms {
            self.host.poll();
            let s = self.host.sockets_mut().get_mut::<tcp::Socket>(h);
            if sent < req.len() && s.can_send() {
                sent += s.send_slice(&req[sent..]).unwrap_or(0);
            }
            while s.can_recv() {
                let _ = s.recv(|b| {
                    got.extend_from_slice(b);
                    (b.len(), ())
                });
            }
            if sent == req.len() && !s.may_recv() && s.state() != tcp::State::SynSent {
                return (got, true);
            }
            self.host.poll();
            self.clock.advance(Duration::from_millis(1));
        }
        (got, false)
    }
}
