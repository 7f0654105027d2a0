//! The host: one device, one smoltcp `Interface`, its sockets, its services and a clock, driven
//! by one poll loop.
//!
//! [`Host`] is generic over the device (a live TUN/TAP device, a replay device, a fuzzer's
//! device) and over the [`Clock`]. [`Host::poll`] is one turn of the loop and is all that replay
//! and fuzzing need; [`Host::run`] adds the live part: wait on the device's file descriptor for
//! exactly as long as smoltcp and the services allow, and stop on request ([`Stop`]).
//!
//! The host knows the services it runs only through the [`Service`] trait; which services exist
//! and how they are built from a specification is the business of [`crate::services`], one layer
//! up. Beside the loop live its parts: [`clock`], [`status`] (what a service may show of the
//! host), [`guard`] (a filter for smoltcp bugs and the ICMP error limit, with its [`ratelimit`]),
//! [`config`] and [`stop`].

pub mod clock;
pub mod config;
mod dhcp;
mod error;
pub mod guard;
pub mod ratelimit;
pub mod reassembly6;
mod service;
pub mod status;
pub mod stop;
pub mod tcp;

use std::os::fd::AsFd;

use log::{debug, info};
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketSet,
};
use smoltcp::phy::{Device, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress};

pub use clock::{Clock, SystemClock, VirtualClock};
pub use config::{Config, ConfigError, DEFAULT_ADDR, DEFAULT_BUSY_POLL, Dhcp};
pub use dhcp::Lease;
pub use error::{HostError, Result};
pub use guard::{Guard, GuardStats};
pub use service::Service;
pub use status::{HostStatus, StatusBoard};
pub use stop::Stop;
pub use tcp::{Congestion, TcpTuning};

use crate::link::{self, Housekeeping, TunTap, TunTapConfig, TunTapDevice};

/// Most rounds (ingress, services, egress) in one [`Host::poll`]: bounds the work of a turn.
pub const SERVICE_ROUNDS: usize = 8;
/// Most packets taken in per round before the services get a turn.
pub const INGRESS_BATCH: usize = 64;
/// How often the status board's count of active connections is taken (it walks every socket,
/// so it is not taken on every turn of a host with 10,000 connections).
pub const STATUS_COUNT_INTERVAL: Duration = Duration::from_millis(250);
/// How long an incomplete IPv4 datagram may hold a reassembly buffer (smoltcp's default is 60 s;
/// RFC 791 suggests 15 s; Linux's `ipfrag_time` is 30 s). The number of buffers is a build-time
/// setting of smoltcp: `SMOLTCP_REASSEMBLY_BUFFER_COUNT` in `.cargo/config.toml`.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(15);

/// 8 random bytes from the OS, for seeds and MACs.
fn os_random() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        // No /dev/urandom: fall back on the time, which is at least different per run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32;
    }
    u64::from_le_bytes(b)
}

/// A random locally administered unicast MAC (`02:..`).
pub fn random_mac(seed: u64) -> EthernetAddress {
    let b = seed.to_le_bytes();
    EthernetAddress([0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// Counters of the whole host, for status and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    /// Turns of the loop.
    pub polls: u64,
}

/// A userspace IP host: device, interface, sockets, services, clock.
pub struct Host<D: Device, C: Clock = SystemClock> {
    /// The device, behind the filter that works around smoltcp bugs and limits ICMP errors.
    device: Guard<D>,
    iface: Interface,
    sockets: SocketSet<'static>,
    services: Vec<Box<dyn Service>>,
    clock: C,
    config: Config,
    stats: HostStats,
    /// Kept here: smoltcp's `Interface::hardware_addr` panics on an IP-medium device.
    hardware_addr: HardwareAddress,
    /// What the status page shows, refreshed on every turn.
    status: StatusBoard,
    /// Finds the TUN/TAP device under `D`, whose counters the status page shows.
    tuntap: Option<fn(&D) -> &TunTapDevice>,
    /// Active connections as last counted for the status board, and when.
    connections: usize,
    counted_at: Option<Instant>,
    /// The DHCP client, with [`Config::dhcp`].
    dhcp: Option<dhcp::DhcpClient>,
}

impl Host<TunTapDevice, SystemClock> {
    /// Open (or attach to) the TUN/TAP device `dev` and build a host on it with the system clock.
    pub fn open(dev: &TunTapConfig, config: Config) -> Result<Self> {
        config.validate()?;
        let tuntap = TunTap::open(dev)?;
        let mut host = Host::new(TunTapDevice::new(tuntap), SystemClock::new(), config)?;
        host.show_device(|d| d);
        Ok(host)
    }
}

impl<D: Device, C: Clock> Host<D, C> {
    /// Build a host on `device`: the interface with the configured addresses and routes, and an
    /// empty socket set; services are added with [`Host::add_service`] (or
    /// [`crate::services::add`], one layer up).
    pub fn new(mut device: D, clock: C, config: Config) -> Result<Self> {
        config.validate()?;
        let medium = device.capabilities().medium;
        let seed = config.seed.unwrap_or_else(os_random);
        let hw = match medium {
            Medium::Ethernet => {
                HardwareAddress::Ethernet(config.mac.unwrap_or_else(|| random_mac(seed)))
            }
            _ => HardwareAddress::Ip,
        };
        let mut ic = IfaceConfig::new(hw);
        ic.random_seed = seed;
        // A fixed seed fixes the ISNs (RFC 6528's secret follows from it); without their clock
        // term too, a replay on the capture's clock gives the live host's sequence numbers.
        ic.tcp_isn_clock = config.seed.is_none();
        let mut iface = Interface::new(ic, &mut device, clock.now());
        iface.set_reassembly_timeout(REASSEMBLY_TIMEOUT);
        let mut device = Guard::new(device);
        iface.update_ip_addrs(|addrs| {
            for a in &config.addrs {
                // Cannot fail: validate() checked the count.
                let _ = addrs.push(*a);
            }
        });
        device.set_addrs(iface.ip_addrs());
        match config.gateway {
            Some(IpAddress::Ipv4(gw)) => {
                iface
                    .routes_mut()
                    .add_default_ipv4_route(gw)
                    .map_err(|_| ConfigError::NoRoomForRoute(IpAddress::Ipv4(gw)))?;
            }
            Some(IpAddress::Ipv6(gw)) => {
                iface
                    .routes_mut()
                    .add_default_ipv6_route(gw)
                    .map_err(|_| ConfigError::NoRoomForRoute(IpAddress::Ipv6(gw)))?;
            }
            None => {}
        }
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = match config.dhcp {
            Some(_) if medium != Medium::Ethernet => {
                return Err(ConfigError::DhcpNeedsEthernet.into());
            }
            Some(d) => Some(dhcp::DhcpClient::new(&mut sockets, d.max_lease)),
            None => None,
        };
        let mut host = Host {
            device,
            iface,
            sockets,
            services: Vec::new(),
            clock,
            config,
            stats: HostStats::default(),
            hardware_addr: hw,
            status: StatusBoard::new(),
            tuntap: None,
            connections: 0,
            counted_at: None,
            dhcp,
        };
        host.refresh_status_services();
        Ok(host)
    }

    /// The DHCP lease in force ([`Config::dhcp`]), if any.
    pub fn dhcp_lease(&self) -> Option<&Lease> {
        self.dhcp.as_ref().and_then(|d| d.lease())
    }

    /// The board the host refreshes on every turn with its status (for the HTTP status page).
    pub fn status(&self) -> &StatusBoard {
        &self.status
    }

    /// Show the TUN/TAP device under `D` on the status board: its kind and name now, its
    /// packet counters on every turn. `tuntap` finds the device under whatever wraps it (a
    /// tracer); [`Host::open`] does this for a bare TUN/TAP device.
    pub fn show_device(&mut self, tuntap: fn(&D) -> &TunTapDevice) {
        let t = tuntap(self.device.inner()).tuntap();
        let name = format!("{} {}", t.kind(), t.name());
        self.status.update(|s| s.device = name);
        self.tuntap = Some(tuntap);
    }

    fn refresh_status_services(&mut self) {
        let names: Vec<String> = self.services.iter().map(|s| s.name()).collect();
        let addrs = self.iface.ip_addrs().to_vec();
        let lease = self.dhcp_lease().map(|l| l.to_string());
        self.status.update(|s| {
            s.services = names;
            s.addrs = addrs;
            s.lease = lease;
        });
    }

    fn refresh_status(&mut self, now: Instant) {
        let st = self
            .tuntap
            .map(|f| f(self.device.inner()).stats())
            .unwrap_or_default();
        // Counting walks every socket: at most once per STATUS_COUNT_INTERVAL, not per turn.
        if self
            .counted_at
            .is_none_or(|t| now >= t + STATUS_COUNT_INTERVAL || now < t)
        {
            self.counted_at = Some(now);
            self.connections = self.active_connections();
        }
        let connections = self.connections;
        self.status.update(|s| {
            s.uptime = now - Instant::ZERO;
            s.rx_packets = st.rx_packets;
            s.rx_bytes = st.rx_bytes;
            s.tx_packets = st.tx_packets;
            s.tx_bytes = st.tx_bytes;
            s.connections = connections;
        });
    }

    /// Add a service built by the caller; `build` gets the socket set to create its sockets in.
    pub fn add_service<S: Service + 'static>(
        &mut self,
        build: impl FnOnce(&mut SocketSet<'static>) -> S,
    ) {
        let svc = build(&mut self.sockets);
        self.add_boxed_service(Box::new(svc));
    }

    /// Add a service that is already built (its sockets in [`Host::sockets_mut`]).
    pub fn add_boxed_service(&mut self, service: Box<dyn Service>) {
        self.services.push(service);
        self.refresh_status_services();
    }

    /// The services the host runs, in the order they were added.
    pub fn services(&self) -> &[Box<dyn Service>] {
        &self.services
    }

    /// The interface and the socket set at once, e.g. to `connect` a client socket (which needs
    /// the interface's context).
    pub fn parts_mut(&mut self) -> (&mut Interface, &mut SocketSet<'static>) {
        (&mut self.iface, &mut self.sockets)
    }

    /// One turn of the loop: process every packet the device has, let the services act, send
    /// what they queued. Returns how long the host may sleep before the next turn if no packet
    /// arrives (`None`: until a packet arrives).
    ///
    /// A turn is up to [`SERVICE_ROUNDS`] rounds of: take in what the device has (at most
    /// [`INGRESS_BATCH`] packets), let the services act on it, then send. Sending after the
    /// services means the acknowledgement of what arrived goes out once, together with the
    /// reply and the window the services just opened, rather than as a bare ACK before them.
    /// Another round follows only when the batch limit was hit; what the kernel answers to our
    /// writes is taken by the next turn ([`Host::run`] finds the device readable at once).
    pub fn poll(&mut self) -> Option<Duration> {
        self.stats.polls += 1;
        let now = self.clock.now();
        tcp::set_clock(now);
        // What the status page shows: the counters as of the last turn.
        self.refresh_status(now);
        // Cheap when unchanged; keeps the guard right if the caller changed the addresses.
        self.device.set_addrs(self.iface.ip_addrs());
        self.iface.poll_maintenance(now);
        for round in 1..=SERVICE_ROUNDS {
            let mut changed = round == 1;
            let mut full = true;
            for _ in 0..INGRESS_BATCH {
                match self
                    .iface
                    .poll_ingress_single(now, &mut self.device, &mut self.sockets)
                {
                    PollIngressSingleResult::None => {
                        full = false;
                        break;
                    }
                    PollIngressSingleResult::PacketProcessed => {}
                    PollIngressSingleResult::SocketStateChanged => changed = true,
                }
            }
            if changed {
                for svc in &mut self.services {
                    svc.poll(&mut self.sockets, now);
                }
                // The services have seen which sockets changed (`SocketSet::changed`).
                self.sockets.clear_changed();
            }
            while self
                .iface
                .poll_egress(now, &mut self.device, &mut self.sockets)
                == PollResult::SocketStateChanged
            {}
            if !full {
                break;
            }
        }
        if let Some(d) = &mut self.dhcp
            && d.poll(&mut self.iface, &mut self.sockets, now)
        {
            // New addresses: the guard admits them, the status page shows them and the lease.
            self.device.set_addrs(self.iface.ip_addrs());
            self.refresh_status_services();
        }
        let delay = self.iface.poll_delay(now, &self.sockets);
        let svc_at = self.services.iter().filter_map(|s| s.poll_at()).min();
        let svc_delay = svc_at.map(|t| if t > now { t - now } else { Duration::ZERO });
        match (delay, svc_delay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Send what sockets have queued (a client's requests) without reading any packet; returns
    /// how long the host may sleep, as [`Host::poll`] does (services not counted).
    pub fn egress(&mut self) -> Option<Duration> {
        let now = self.clock.now();
        tcp::set_clock(now);
        self.iface
            .poll_egress(now, &mut self.device, &mut self.sockets);
        self.iface.poll_delay(now, &self.sockets)
    }

    /// Close every connection gracefully (queued data, then FIN), accept no new one (a SYN gets
    /// RST), and give the closes up to `grace` (on the host's clock, polling with `wait` between
    /// turns) to reach the peers. Whatever is still open then is reset.
    pub fn shutdown(&mut self, grace: Duration, mut wait: impl FnMut(&mut Self, Duration)) {
        let now = self.clock.now();
        for svc in &mut self.services {
            svc.close(&mut self.sockets, now);
        }
        let until = now + grace;
        loop {
            let delay = self.poll();
            let busy = self.sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(t) => t.is_active(),
                _ => false,
            });
            let now = self.clock.now();
            if !busy || now >= until {
                break;
            }
            let d = delay.unwrap_or(until - now).min(until - now);
            wait(self, d.max(Duration::from_millis(1)));
        }
        // Whatever is still open is reset: the peer learns at once that we are gone.
        for (_, s) in self.sockets.iter_mut() {
            if let smoltcp::socket::Socket::Tcp(t) = s {
                if t.is_active() {
                    t.abort();
                }
            }
        }
        self.iface
            .poll(self.clock.now(), &mut self.device, &mut self.sockets);
    }

    /// The device (without the ingress filter).
    pub fn device(&self) -> &D {
        self.device.inner()
    }

    /// The device, mutably (without the ingress filter).
    pub fn device_mut(&mut self) -> &mut D {
        self.device.inner_mut()
    }

    /// Packets the filter kept from smoltcp, and ICMP errors it did not let out (see [`guard`]).
    pub fn guard_stats(&self) -> GuardStats {
        self.device.stats()
    }

    /// Take the host apart and give back its device (to finish a trace, say).
    pub fn into_device(self) -> D {
        self.device.into_inner()
    }

    /// The smoltcp interface.
    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    /// The smoltcp interface, mutably (to change addresses or routes, say).
    pub fn iface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The socket set: the services' sockets and any a client added.
    pub fn sockets(&self) -> &SocketSet<'static> {
        &self.sockets
    }

    /// The socket set, mutably (to add a client's socket, say).
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.sockets
    }

    /// The host's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The configuration the host was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The host's counters (turns of the loop so far).
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// Number of TCP sockets in an active state (connections being served or closing).
    pub fn active_connections(&self) -> usize {
        self.sockets
            .iter()
            .filter(|(_, s)| matches!(s, smoltcp::socket::Socket::Tcp(t) if t.is_active()))
            .count()
    }

    /// The host's hardware address (`None` on an IP-medium device).
    pub fn mac(&self) -> Option<EthernetAddress> {
        match self.hardware_addr {
            HardwareAddress::Ethernet(m) => Some(m),
            _ => None,
        }
    }
}

impl<D: Device + AsFd + Housekeeping, C: Clock> Host<D, C> {
    /// Run until `stop` is signalled: poll, then sleep on the device's file descriptor (and the
    /// stop handle's) for exactly as long as [`Host::poll`] and the device's
    /// [`Housekeeping`] allow. Then close connections gracefully for up to 300 ms and return.
    ///
    /// A device that stops working ([`Housekeeping::check`]: deleted while in use) ends the
    /// loop at once with its error ([`LinkError::Gone`](crate::link::LinkError::Gone)); there
    /// is nothing left to close connections on.
    pub fn run(&mut self, stop: &Stop) -> Result<()> {
        let mut zero_turns = 0u32;
        let busy = std::time::Duration::from_micros(self.config.busy_poll.total_micros());
        // Whether the last wake-up was a packet: only then is busy polling worth it.
        let mut woken_by_packet = false;
        while !stop.is_stopped() {
            let delay = self.poll();
            self.device.inner().check()?;
            let delay = match earliest(delay, self.housekeeping()) {
                // Honour one "poll again now" at once. A second in a row means smoltcp waits on
                // something only time brings (a neighbour, a full queue): sleep 1 ms on the fd
                // rather than spin. A packet still wakes the host at once.
                Some(d) if d == Duration::ZERO => {
                    zero_turns += 1;
                    if zero_turns < 2 {
                        continue;
                    }
                    Some(Duration::from_millis(1))
                }
                d => d,
            };
            zero_turns = 0;
            if woken_by_packet && !busy.is_zero() {
                let spin = match delay {
                    Some(d) => busy.min(std::time::Duration::from_micros(d.total_micros())),
                    None => busy,
                };
                if link::wait::spin_until_readable(self.device.inner().as_fd(), spin, || {
                    stop.is_stopped()
                }) {
                    continue;
                }
            }
            woken_by_packet =
                link::wait::readable(self.device.inner().as_fd(), Some(stop.fd()), delay)?;
        }
        debug!("stop requested: closing connections");
        self.shutdown(Duration::from_millis(300), |host, d| {
            let _ = link::wait::readable(host.device.inner().as_fd(), None, Some(d));
        });
        self.housekeeping();
        info!("stopped");
        Ok(())
    }

    /// Let the device do what is due now; how long until it needs another turn.
    fn housekeeping(&mut self) -> Option<Duration> {
        let now = self.clock.now();
        let at = self.device.inner_mut().housekeeping(now)?;
        Some(if at > now { at - now } else { Duration::ZERO })
    }
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The wait of the loop, for callers that write their own (clients).
impl<D: Device + AsFd + Housekeeping, C: Clock> Host<D, C> {
    /// Sleep until a packet arrives, `stop` is signalled or `timeout` passes (`None`: no
    /// timeout): the wait of [`Host::run`], for callers that write their own loop (clients).
    /// The device's [`Housekeeping`] is done first, and the sleep ends in time for its next
    /// deadline (a trace's flush), as in [`Host::run`]. A device that stops working is an error
    /// at once ([`Housekeeping::check`]), as in [`Host::run`].
    pub fn wait(&mut self, stop: Option<&Stop>, timeout: Option<Duration>) -> Result<()> {
        self.device.inner().check()?;
        let timeout = earliest(timeout, self.housekeeping());
        link::wait::readable(self.device.inner().as_fd(), stop.map(Stop::fd), timeout)?;
        Ok(())
    }
}

/// A host on smoltcp's loopback device at 127.0.0.1/8 on a virtual clock at zero, with no
/// services: for unit tests and fuzz harnesses that play both ends in one process.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn loopback_host(
    seed: u64,
) -> (Host<smoltcp::phy::Loopback, VirtualClock>, VirtualClock) {
    let clock = VirtualClock::new(Instant::ZERO);
    let config = Config {
        addrs: vec!["127.0.0.1/8".parse().expect("valid CIDR")],
        seed: Some(seed),
        ..Config::default()
    };
    let device = smoltcp::phy::Loopback::new(Medium::Ip);
    let host = Host::new(device, clock.clone(), config).expect("a valid configuration");
    (host, clock)
}
