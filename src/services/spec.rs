//! From a specification to running services: [`ServiceSpec`] names a service and its port,
//! [`ServicesConfig`] holds the limits they share, and [`add`] builds them on a host.

use smoltcp::phy::Device;
use smoltcp::time::Instant;

use super::error::ServiceError;
use super::http::{Content, Http, HttpConfig, files::DirRoot};
use super::listener::ListenerConfig;
use super::{Chargen, Discard, Echo, TcpService, UdpBuffers, UdpEcho};
use crate::host::{Clock, Host, Service, StatusBoard};

/// A service the host can be told to run by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSpec {
    /// TCP echo (RFC 862) on a port.
    Echo(u16),
    /// UDP echo (RFC 862) on a port.
    UdpEcho(u16),
    /// TCP discard (RFC 863) on a port.
    Discard(u16),
    /// TCP chargen (RFC 864) on a port.
    Chargen(u16),
    /// HTTP/1.1 on a port: files below [`HttpConfig::root`], or the status page.
    Http(u16),
}

impl ServiceSpec {
    /// `tcp` or `udp`, and the port.
    pub fn port(&self) -> (&'static str, u16) {
        match *self {
            ServiceSpec::Echo(p)
            | ServiceSpec::Discard(p)
            | ServiceSpec::Chargen(p)
            | ServiceSpec::Http(p) => ("tcp", p),
            ServiceSpec::UdpEcho(p) => ("udp", p),
        }
    }

    /// The protocol's name: `echo`, `discard`, `chargen` or `http`.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceSpec::Echo(_) | ServiceSpec::UdpEcho(_) => "echo",
            ServiceSpec::Discard(_) => "discard",
            ServiceSpec::Chargen(_) => "chargen",
            ServiceSpec::Http(_) => "http",
        }
    }
}

/// The services to run and the limits they share. The default runs nothing.
#[derive(Debug, Clone, Default)]
pub struct ServicesConfig {
    /// The services, in the order they are added to the host.
    pub services: Vec<ServiceSpec>,
    /// Sockets and buffers of each TCP service.
    pub tcp: ListenerConfig,
    /// Buffers of each UDP service.
    pub udp: UdpBuffers,
    /// How the HTTP services serve (root, timeouts, backlog).
    pub http: HttpConfig,
}

impl ServicesConfig {
    /// Check what can be checked without a host: no port 0, no port twice.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let mut seen = Vec::new();
        for s in &self.services {
            let (proto, port) = s.port();
            if port == 0 {
                return Err(ServiceError::PortZero { proto });
            }
            if seen.contains(&(proto, port)) {
                return Err(ServiceError::DuplicatePort { proto, port });
            }
            seen.push((proto, port));
        }
        Ok(())
    }
}

/// Build the services `config` names on `host`, in order.
pub fn add<D: Device, C: Clock>(
    host: &mut Host<D, C>,
    config: &ServicesConfig,
) -> Result<(), ServiceError> {
    config.validate()?;
    for spec in &config.services {
        let svc = build(host, *spec, config)?;
        host.add_boxed_service(svc);
    }
    Ok(())
}

fn build<D: Device, C: Clock>(
    host: &mut Host<D, C>,
    spec: ServiceSpec,
    config: &ServicesConfig,
) -> Result<Box<dyn Service>, ServiceError> {
    let tcp = config.tcp;
    let addrs = host.config().addrs.clone();
    let sockets = host.sockets_mut();
    Ok(match spec {
        ServiceSpec::Echo(p) => Box::new(TcpService::new(sockets, p, tcp, Echo::new())),
        ServiceSpec::Discard(p) => Box::new(TcpService::new(sockets, p, tcp, Discard::default())),
        ServiceSpec::Chargen(p) => Box::new(TcpService::new(sockets, p, tcp, Chargen::new())),
        ServiceSpec::UdpEcho(p) => Box::new(UdpEcho::new(sockets, p, config.udp, &addrs)),
        ServiceSpec::Http(p) => {
            let http = http(&config.http, host.status(), host.clock().now())?;
            let cfg = ListenerConfig {
                backlog: config.http.backlog,
                ..tcp
            };
            Box::new(TcpService::new(host.sockets_mut(), p, cfg, http))
        }
    })
}

/// The HTTP protocol as `config` says: files below its root, or the status page on `board`.
/// `Date` maps the host's clock (`now`) to the system's wall clock once, here, unless
/// `config.epoch` fixes it.
pub fn http(config: &HttpConfig, board: &StatusBoard, now: Instant) -> Result<Http, ServiceError> {
    let content = match &config.root {
        Some(root) => Content::Files(Box::new(DirRoot::new(root)?.dotfiles(config.dotfiles))),
        None => Content::Status(board.clone()),
    };
    let epoch = config.epoch.unwrap_or_else(|| {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        wall.saturating_sub(now.secs().max(0) as u64)
    });
    Ok(Http::new(content, config.idle_timeout, epoch).with_header_timeout(config.header_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Config, VirtualClock};
    use smoltcp::iface::SocketHandle;
    use smoltcp::phy::{Loopback, Medium};
    use smoltcp::socket::tcp;
    use smoltcp::time::Duration;
    use smoltcp::wire::{EthernetAddress, IpAddress};

    fn loopback_host(tcp: ListenerConfig) -> (Host<Loopback, VirtualClock>, VirtualClock) {
        let clock = VirtualClock::new(Instant::ZERO);
        let config = Config {
            seed: Some(1),
            ..Config::default()
        };
        let mut host = Host::new(Loopback::new(Medium::Ip), clock.clone(), config).unwrap();
        let services = ServicesConfig {
            services: vec![ServiceSpec::Echo(7)],
            tcp,
            ..ServicesConfig::default()
        };
        add(&mut host, &services).unwrap();
        (host, clock)
    }

    /// A client socket in the host's socket set, with a receive buffer of `rx` bytes.
    fn client_socket<D: Device>(host: &mut Host<D, VirtualClock>, rx: usize) -> SocketHandle {
        host.sockets_mut().add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        ))
    }

    /// Connect `client` to the echo service (192.0.2.2:7) from `local_port`.
    fn connect<D: Device>(host: &mut Host<D, VirtualClock>, client: SocketHandle, local_port: u16) {
        let server: IpAddress = "192.0.2.2".parse().unwrap();
        let (iface, sockets) = host.parts_mut();
        let c = sockets.get_mut::<tcp::Socket>(client);
        c.connect(iface.context(), (server, 7), local_port).unwrap();
    }

    /// Poll, advancing the clock 1 ms a turn, until `done` holds (at most 10 s of virtual time).
    fn poll_until<D: Device>(
        host: &mut Host<D, VirtualClock>,
        clock: &VirtualClock,
        mut done: impl FnMut(&mut Host<D, VirtualClock>) -> bool,
    ) {
        for _ in 0..10_000 {
            host.poll();
            if done(host) {
                return;
            }
            clock.advance(Duration::from_millis(1));
        }
        panic!("condition not reached in 10 s of virtual time");
    }

    #[test]
    fn echo_connections_recycle_a_bounded_set_of_sockets() {
        let limits = ListenerConfig {
            backlog: 4,
            max_sockets: 8,
            rx_buffer: 1024,
            tx_buffer: 1024,
            ..ListenerConfig::default()
        };
        let (mut host, clock) = loopback_host(limits);
        let client = client_socket(&mut host, 1024);
        for i in 0..100u16 {
            connect(&mut host, client, 40000 + i);
            poll_until(&mut host, &clock, |h| {
                h.sockets().get::<tcp::Socket>(client).may_send()
            });
            let c = host.sockets_mut().get_mut::<tcp::Socket>(client);
            c.send_slice(b"hello").unwrap();
            let mut got = Vec::new();
            poll_until(&mut host, &clock, |h| {
                let c = h.sockets_mut().get_mut::<tcp::Socket>(client);
                let mut buf = [0u8; 16];
                if let Ok(n) = c.recv_slice(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                got.len() == 5
            });
            assert_eq!(got, b"hello", "connection {i}");
            // The client closes first; the echo server answers with its own FIN.
            host.sockets_mut().get_mut::<tcp::Socket>(client).close();
            poll_until(&mut host, &clock, |h| {
                h.sockets().get::<tcp::Socket>(client).state() == tcp::State::TimeWait
            });
            host.sockets_mut().get_mut::<tcp::Socket>(client).abort();
        }
        // 8 server sockets at most, plus the client's.
        let count = host.sockets().iter().count();
        assert!(count <= 9, "{count} sockets after 100 connections");
    }

    /// What a client saw of a shutdown (see [`shut_down_after`]).
    #[derive(Debug, Default)]
    struct Shutdown {
        /// Bytes echoed and read by the client during the grace, of 2000.
        got: usize,
        /// The client saw the server's FIN (CLOSE-WAIT) after the data.
        fin: bool,
        /// The client's connection was reset.
        reset: bool,
        /// A connection was opened during the grace.
        tried: bool,
        /// That connection was accepted.
        accepted: bool,
        /// That connection was refused (RST to its SYN) before the grace ran out.
        refused: bool,
    }

    /// Serve an echo connection for `uptime` of the host's clock, then shut down with 2000 bytes
    /// echoed and not yet sent (the client's window is 256 bytes): what the client sees, and what
    /// a connection opened during the grace gets.
    fn shut_down_after(uptime: Duration) -> Shutdown {
        let (mut host, clock) = loopback_host(ListenerConfig {
            backlog: 2,
            max_sockets: 4,
            rx_buffer: 4096,
            tx_buffer: 4096,
            ..ListenerConfig::default()
        });
        let client = client_socket(&mut host, 256);
        connect(&mut host, client, 40000);
        poll_until(&mut host, &clock, |h| {
            h.sockets().get::<tcp::Socket>(client).may_send()
        });
        // Idle until `uptime`, 10 ms a turn (the keep-alive probes come and go).
        while clock.now() < Instant::ZERO + uptime {
            host.poll();
            clock.advance(Duration::from_millis(10));
        }
        let c = host.sockets_mut().get_mut::<tcp::Socket>(client);
        assert!(c.is_active(), "the connection survives {uptime} idle");
        let data: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
        c.send_slice(&data).unwrap();
        // The server has taken it all in and echoed it; 256 bytes fit the client's window.
        poll_until(&mut host, &clock, |h| {
            h.sockets().get::<tcp::Socket>(client).send_queue() == 0
        });
        let mut seen = Shutdown::default();
        let mut got = Vec::new();
        let late = client_socket(&mut host, 256);
        let grace = Duration::from_millis(300);
        let until = clock.now() + grace;
        host.shutdown(grace, |host, _| {
            // The client reads as data comes and closes its side after the server's FIN.
            let c = host.sockets_mut().get_mut::<tcp::Socket>(client);
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = c.recv_slice(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            match c.state() {
                tcp::State::CloseWait => {
                    seen.fin = true;
                    c.close();
                }
                tcp::State::Closed if !seen.fin => seen.reset = true,
                _ => {}
            }
            // A new connection during the grace.
            if !seen.tried {
                connect(host, late, 40001);
                seen.tried = true;
            }
            seen.accepted |= host.sockets().get::<tcp::Socket>(late).may_send();
            clock.advance(Duration::from_millis(1));
        });
        // Closed before the grace ran out (when whatever is still open is reset).
        seen.refused = seen.tried
            && !seen.accepted
            && clock.now() < until
            && host.sockets().get::<tcp::Socket>(late).state() == tcp::State::Closed;
        seen.got = got.len();
        assert!(
            got == data[..got.len()],
            "after {uptime}: echoed bytes differ"
        );
        seen
    }

    #[test]
    fn shutdown_closes_with_fin_and_refuses_syns_at_any_uptime() {
        // 30 s: a released socket is aborted past LINGER; 60 s: the sockets' inactivity timeout.
        for secs in [0, 2, 32, 65] {
            let s = shut_down_after(Duration::from_secs(secs));
            assert!(s.got == 2000 && s.fin && !s.reset, "after {secs} s: {s:?}");
            assert!(s.refused && !s.accepted, "after {secs} s: {s:?}");
        }
    }

    #[test]
    fn invalid_configs_are_errors_not_panics() {
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            let clock = VirtualClock::new(Instant::ZERO);
            assert!(Host::new(Loopback::new(Medium::Ethernet), clock, c).is_err());
        };
        bad(|c| c.addrs.clear());
        bad(|c| c.mac = Some(EthernetAddress([1, 0, 0, 0, 0, 1])));
        bad(|c| c.gateway = Some("198.51.100.1".parse().unwrap()));
        bad(|c| c.addrs = vec!["224.0.0.1/24".parse().unwrap()]);
        let bad_services = |services: Vec<ServiceSpec>| {
            let clock = VirtualClock::new(Instant::ZERO);
            let mut host = Host::new(Loopback::new(Medium::Ip), clock, Config::default()).unwrap();
            let config = ServicesConfig {
                services,
                ..ServicesConfig::default()
            };
            assert!(add(&mut host, &config).is_err());
        };
        bad_services(vec![ServiceSpec::Echo(7), ServiceSpec::Echo(7)]);
        bad_services(vec![ServiceSpec::Chargen(0)]);
    }
}
