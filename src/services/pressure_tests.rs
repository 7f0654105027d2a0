//! An HTTP port with every socket in use, on smoltcp's loopback device and the virtual clock:
//! a closed connection gives its slot back at once (also past [`LINGER`]), the connection idle
//! longest is the one evicted for a new client, and sockets in TIME-WAIT are reused before new
//! ones are made.

use smoltcp::iface::SocketHandle;
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

use super::listener::{LINGER, ListenerConfig};
use super::{ServiceSpec, ServicesConfig, add};
use crate::host::{Clock, Config, Host, VirtualClock};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A host serving its status page on 192.0.2.2:80 (4 connections at most, 2 sockets kept
/// listening, 10 s timeouts), and clients in the same socket set.
struct Port {
    host: Host<Loopback, VirtualClock>,
    clock: VirtualClock,
    next_port: u16,
}

impl Port {
    fn new() -> Port {
        Port::with(ListenerConfig {
            backlog: 2,
            max_sockets: 4,
            rx_buffer: 4096,
            tx_buffer: 4096,
            ..ListenerConfig::default()
        })
    }

    /// The same with other limits.
    fn with(tcp: ListenerConfig) -> Port {
        let clock = VirtualClock::new(Instant::ZERO);
        let config = Config {
            seed: Some(3),
            ..Config::default()
        };
        let mut host = Host::new(Loopback::new(Medium::Ip), clock.clone(), config).unwrap();
        let mut services = ServicesConfig {
            services: vec![ServiceSpec::Http(80)],
            tcp,
            ..ServicesConfig::default()
        };
        services.http.backlog = tcp.backlog;
        add(&mut host, &services).unwrap();
        Port {
            host,
            clock,
            next_port: 40000,
        }
    }

    /// A client connected (or connecting) to the port.
    fn open(&mut self) -> SocketHandle {
        let h = self.connect();
        self.run(Duration::from_millis(5));
        h
    }

    /// A client whose SYN goes out with the host's next turn.
    fn connect(&mut self) -> SocketHandle {
        self.next_port += 1;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 1024]),
        );
        let (iface, sockets) = self.host.parts_mut();
        let server = IpAddress::v4(192, 0, 2, 2);
        s.connect(iface.context(), (server, 80), self.next_port)
            .unwrap();
        sockets.add(s)
    }

    fn client(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.host.sockets_mut().get_mut::<tcp::Socket>(h)
    }

    fn send(&mut self, h: SocketHandle, bytes: &[u8]) {
        assert_eq!(self.client(h).send_slice(bytes), Ok(bytes.len()));
        self.run(Duration::from_millis(5));
    }

    /// A request on `h` and its response's status line.
    fn status_of(&mut self, h: SocketHandle) -> String {
        self.send(h, GET);
        let mut got = Vec::new();
        let c = self.client(h);
        while c.can_recv() {
            let _ = c.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            });
        }
        let text = String::from_utf8_lossy(&got);
        text.lines().next().unwrap_or("(nothing)").to_string()
    }

    /// Poll for `d` of virtual time, 1 ms a turn.
    fn run(&mut self, d: Duration) {
        let until = self.clock.now() + d;
        while self.clock.now() < until {
            self.host.poll();
            self.clock.advance(Duration::from_millis(1));
        }
    }

    fn state(&mut self, h: SocketHandle) -> State {
        self.client(h).state()
    }
}

#[test]
fn closed_connections_give_their_slots_back_at_once() {
    let mut port = Port::new();
    let old: Vec<SocketHandle> = (0..4).map(|_| port.open()).collect();
    for &h in &old {
        assert_eq!(port.status_of(h), "HTTP/1.1 200 OK");
    }
    // The idle timeout closes them (FIN); the clients keep their side open, as idle keep-alive
    // clients do: the server's sockets wait in FIN-WAIT-2.
    port.run(Duration::from_secs(11));
    for &h in &old {
        assert_eq!(port.state(h), State::CloseWait, "the server closed");
    }
    // Four new clients are served at once, not after the 30 s linger.
    let new: Vec<SocketHandle> = (0..4).map(|_| port.open()).collect();
    for &h in &new {
        assert_eq!(port.status_of(h), "HTTP/1.1 200 OK", "a new client at 11 s");
    }
    // Past the linger of the old sockets, the new connections are intact and still served.
    let closed_at = port.clock.now();
    while port.clock.now() < closed_at + LINGER + Duration::from_secs(2) {
        for &h in &new {
            assert_eq!(
                port.status_of(h),
                "HTTP/1.1 200 OK",
                "at {}",
                port.clock.now()
            );
        }
        port.run(Duration::from_secs(8));
    }
}

#[test]
fn the_connection_idle_longest_is_evicted_for_a_new_one() {
    let mut port = Port::new();
    // Half a request from a at 0 s, from c at 1 s, from d at 2 s; b asks at 0 s and at 3 s.
    let a = port.open();
    port.send(a, b"GET / HT");
    let b = port.open();
    assert_eq!(port.status_of(b), "HTTP/1.1 200 OK");
    port.run(Duration::from_secs(1));
    let c = port.open();
    port.send(c, b"GET / HT");
    port.run(Duration::from_secs(1));
    let d = port.open();
    port.send(d, b"GET / HT");
    port.run(Duration::from_secs(1));
    assert_eq!(port.status_of(b), "HTTP/1.1 200 OK");
    port.run(Duration::from_secs(1));
    // The port is full (4 connections): a new client takes a listening socket, and the one
    // idle longest, a, is reset to make room for the next; then c for the one after.
    let n1 = port.open();
    assert_eq!(port.status_of(n1), "HTTP/1.1 200 OK", "a new client");
    assert_eq!(port.state(a), State::Closed, "a was reset");
    assert!(port.client(c).is_active() && port.client(d).is_active());
    let n2 = port.open();
    assert_eq!(port.status_of(n2), "HTTP/1.1 200 OK", "another new client");
    assert_eq!(port.state(c), State::Closed, "c was reset");
    // b made progress at 3 s and d is the newest staller: both still there.
    assert!(port.client(d).is_active());
    assert_eq!(port.status_of(b), "HTTP/1.1 200 OK");
}

#[test]
fn time_wait_sockets_are_reused_before_new_ones_are_made() {
    let mut port = Port::new();
    for i in 0..20 {
        // HTTP/1.0: the server closes first, so its socket ends in TIME-WAIT.
        let h = port.open();
        port.send(h, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            port.state(h),
            State::CloseWait,
            "request {i}: the server closed"
        );
        port.client(h).close();
        port.run(Duration::from_millis(5));
        port.host.sockets_mut().remove(h);
    }
    // The 2 listening sockets and the one that served the last request, not a pile of sockets
    // in TIME-WAIT (at most 6 here: 4 connections + 2 listening).
    let sockets = port.host.sockets().iter().count();
    assert!(sockets <= 3, "{sockets} sockets after 20 connections");
}

#[test]
fn a_burst_of_300_syns_in_one_turn_is_all_accepted() {
    // The default limits, small buffers: 300 SYNs reach the host at once (the loopback device
    // holds them all), more than the 64 sockets kept listening; the pool is refilled after
    // every 64 packets, and the handshakes in flight may grow to the backlog (4096).
    let mut port = Port::with(ListenerConfig {
        rx_buffer: 4096,
        tx_buffer: 4096,
        ..ListenerConfig::default()
    });
    let clients: Vec<SocketHandle> = (0..300).map(|_| port.connect()).collect();
    port.run(Duration::from_millis(20));
    for (i, &h) in clients.iter().enumerate() {
        assert_eq!(port.state(h), State::Established, "client {i}");
    }
    assert_eq!(port.status_of(clients[299]), "HTTP/1.1 200 OK");
}
