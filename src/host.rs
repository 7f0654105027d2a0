//! The host: one device, one smoltcp `Interface`, its sockets, its services and a clock, driven
//! by one poll loop.
//!
//! [`Host`] is generic over the device (a live TUN/TAP device, a replay device, a fuzzer's
//! device) and over the [`Clock`]. [`Host::poll`] is one turn of the loop and is all that replay
//! and fuzzing need; [`Host::run`] adds the live part: wait on the device's file descriptor for
//! exactly as long as smoltcp and the services allow, and stop on request.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use log::{debug, info};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketSet,
};
use smoltcp::phy::{Device, Medium};
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::clock::{Clock, SystemClock};
use crate::device::{Housekeeping, TunTapDevice};
use crate::error::{Error, Result};
use crate::guard::{Guard, GuardStats};
use crate::listener::ListenerConfig;
use crate::services::http::{Content, Http, HttpConfig, files::DirRoot};
use crate::services::{Chargen, Discard, Echo, Service, TcpService, UdpEcho};
use crate::status::StatusBoard;
use crate::tuntap::{TunTap, TunTapConfig};

pub use crate::services::UdpBuffers;

/// Most rounds (ingress, services, egress) in one [`Host::poll`]: bounds the work of a turn.
pub const SERVICE_ROUNDS: usize = 8;
/// Most packets taken in per round before the services get a turn.
pub const INGRESS_BATCH: usize = 64;

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
    /// HTTP/1.1 on a port: files below `Config::http.root`, or the status page.
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
}

/// Everything the host needs to know besides its device.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host's own addresses (at most 2 with smoltcp's default build).
    pub addrs: Vec<IpCidr>,
    /// Default gateway, for peers outside the addresses' subnets.
    pub gateway: Option<IpAddress>,
    /// The host's MAC on a TAP device; `None` makes a random locally administered one.
    pub mac: Option<EthernetAddress>,
    /// Sockets and buffers of each TCP service.
    pub tcp: ListenerConfig,
    /// Buffers of each UDP service.
    pub udp: UdpBuffers,
    pub services: Vec<ServiceSpec>,
    /// How the HTTP services serve (root, idle timeout, backlog).
    pub http: HttpConfig,
    /// Seed of smoltcp's randomness (ISNs, ephemeral ports); `None` takes one from the OS.
    pub seed: Option<u64>,
    /// After a packet woke the host, keep checking the device (without sleeping) this long
    /// before sleeping again: the next packet of an exchange is then taken without the cost of a
    /// wake-up. Zero turns it off. An idle host never spins.
    pub busy_poll: Duration,
}

/// The default of [`Config::busy_poll`].
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// The host's address with the embedded defaults: 192.0.2.2/24 (TEST-NET-1, RFC 5737).
pub const DEFAULT_ADDR: &str = "192.0.2.2/24";
/// The kernel side's address with the embedded defaults.
pub const DEFAULT_PEER: &str = "192.0.2.1/24";
/// The device name with the embedded defaults.
pub const DEFAULT_DEVICE: &str = "tunhost0";

impl Default for Config {
    fn default() -> Self {
        Config {
            addrs: vec![DEFAULT_ADDR.parse().expect("valid constant")],
            gateway: None,
            mac: None,
            tcp: ListenerConfig::default(),
            udp: UdpBuffers::default(),
            services: Config::default_services(),
            http: HttpConfig::default(),
            seed: None,
            busy_poll: DEFAULT_BUSY_POLL,
        }
    }
}

impl Config {
    /// echo 7 (TCP and UDP), discard 9, chargen 19.
    pub fn default_services() -> Vec<ServiceSpec> {
        vec![
            ServiceSpec::Echo(7),
            ServiceSpec::UdpEcho(7),
            ServiceSpec::Discard(9),
            ServiceSpec::Chargen(19),
        ]
    }

    /// Check what can be checked without a device.
    pub fn validate(&self) -> Result<()> {
        if self.addrs.is_empty() {
            return Err(Error::Config("the host needs at least one address".into()));
        }
        if self.addrs.len() > smoltcp::config::IFACE_MAX_ADDR_COUNT {
            return Err(Error::Config(format!(
                "the host can have at most {} addresses, got {}",
                smoltcp::config::IFACE_MAX_ADDR_COUNT,
                self.addrs.len()
            )));
        }
        for a in &self.addrs {
            if !a.address().is_unicast() {
                return Err(Error::Config(format!(
                    "host address {a} is not a unicast address"
                )));
            }
        }
        if let Some(gw) = self.gateway {
            if !self.addrs.iter().any(|a| a.contains_addr(&gw)) {
                return Err(Error::Config(format!(
                    "gateway {gw} is not inside any host address's subnet ({})",
                    list(&self.addrs)
                )));
            }
        }
        if let Some(mac) = self.mac {
            if !mac.is_unicast() {
                return Err(Error::Config(format!(
                    "MAC {mac} is not a unicast address (the first octet must be even)"
                )));
            }
        }
        let mut seen = Vec::new();
        for s in &self.services {
            let (proto, port) = s.port();
            if port == 0 {
                return Err(Error::Config(format!(
                    "{proto} port 0 is not a valid service port"
                )));
            }
            if seen.contains(&(proto, port)) {
                return Err(Error::Config(format!(
                    "two services on {proto} port {port}"
                )));
            }
            seen.push((proto, port));
        }
        Ok(())
    }
}

fn list(addrs: &[IpCidr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

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
    /// The device, behind the ingress filter that works around smoltcp bugs.
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
    /// Reads the device's packet counters, where the device has them.
    counters: Option<fn(&D) -> crate::device::Stats>,
}

impl Host<TunTapDevice, SystemClock> {
    /// Open (or attach to) the TUN/TAP device `dev` and build a host on it with the system clock.
    pub fn open(dev: &TunTapConfig, config: Config) -> Result<Self> {
        config.validate()?;
        let tuntap = TunTap::open(dev)?;
        let device = format!("{} {}", tuntap.kind(), tuntap.name());
        let mut host = Host::new(TunTapDevice::new(tuntap), SystemClock::new(), config)?;
        host.set_counters(TunTapDevice::stats);
        host.status.update(|s| s.device = device);
        Ok(host)
    }
}

impl<D: Device, C: Clock> Host<D, C> {
    /// Build a host on `device`: interface with the configured addresses and routes, and a socket
    /// set holding the configured services.
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
        let mut iface = Interface::new(ic, &mut device, clock.now());
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
                    .map_err(|_| Error::Config("no room for the IPv4 default route".into()))?;
            }
            Some(IpAddress::Ipv6(gw)) => {
                iface
                    .routes_mut()
                    .add_default_ipv6_route(gw)
                    .map_err(|_| Error::Config("no room for the IPv6 default route".into()))?;
            }
            None => {}
        }
        let mut host = Host {
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            services: Vec::new(),
            clock,
            config,
            stats: HostStats::default(),
            hardware_addr: hw,
            status: StatusBoard::new(),
            counters: None,
        };
        for spec in host.config.services.clone() {
            let svc = host.build_service(spec)?;
            host.services.push(svc);
        }
        host.refresh_status_services();
        Ok(host)
    }

    fn build_service(&mut self, spec: ServiceSpec) -> Result<Box<dyn Service>> {
        let tcp = self.config.tcp;
        let udp = self.config.udp;
        Ok(match spec {
            ServiceSpec::Echo(p) => {
                Box::new(TcpService::new(&mut self.sockets, p, tcp, Echo::new()))
            }
            ServiceSpec::Discard(p) => Box::new(TcpService::new(
                &mut self.sockets,
                p,
                tcp,
                Discard::default(),
            )),
            ServiceSpec::Chargen(p) => {
                Box::new(TcpService::new(&mut self.sockets, p, tcp, Chargen::new()))
            }
            ServiceSpec::UdpEcho(p) => {
                Box::new(UdpEcho::new(&mut self.sockets, p, udp, &self.config.addrs))
            }
            ServiceSpec::Http(p) => {
                let http = self.http(&self.config.http.clone())?;
                let backlog = self.config.http.backlog;
                let cfg = ListenerConfig {
                    backlog,
                    max_sockets: tcp.max_sockets.max(backlog),
                    ..tcp
                };
                Box::new(TcpService::new(&mut self.sockets, p, cfg, http))
            }
        })
    }

    /// The HTTP protocol as `config` says: files below its root, or this host's status page.
    /// `Date` maps the host's clock to the system's wall clock once, here, unless
    /// `config.epoch` fixes it.
    pub fn http(&self, config: &HttpConfig) -> Result<Http> {
        let content = match &config.root {
            Some(root) => Content::Files(Box::new(DirRoot::new(root)?)),
            None => Content::Status(self.status.clone()),
        };
        let epoch = config.epoch.unwrap_or_else(|| {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            wall.saturating_sub(self.clock.now().secs().max(0) as u64)
        });
        Ok(Http::new(content, config.idle_timeout, epoch))
    }

    /// The board the host refreshes on every turn with its status (for the HTTP status page).
    pub fn status(&self) -> &StatusBoard {
        &self.status
    }

    /// Tell the host how to read its device's packet counters (the status page shows them).
    /// [`Host::open`] does it for a TUN/TAP device.
    pub fn set_counters(&mut self, counters: fn(&D) -> crate::device::Stats) {
        self.counters = Some(counters);
    }

    fn refresh_status_services(&mut self) {
        let names: Vec<String> = self.services.iter().map(|s| s.name()).collect();
        let addrs = self.config.addrs.clone();
        self.status.update(|s| {
            s.services = names;
            s.addrs = addrs;
        });
    }

    fn refresh_status(&mut self, now: smoltcp::time::Instant) {
        let st = self
            .counters
            .map(|f| f(self.device.inner()))
            .unwrap_or_default();
        let connections = self.active_connections();
        self.status.update(|s| {
            s.uptime = now - smoltcp::time::Instant::ZERO;
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
        self.services.push(Box::new(svc));
        self.refresh_status_services();
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
        self.iface
            .poll_egress(now, &mut self.device, &mut self.sockets);
        self.iface.poll_delay(now, &self.sockets)
    }

    /// Close every connection and give the closes up to `grace` (on the host's clock, polling
    /// with `wait` between turns) to reach the peers.
    pub fn shutdown(&mut self, grace: Duration, mut wait: impl FnMut(&mut Self, Duration)) {
        for svc in &mut self.services {
            svc.close(&mut self.sockets);
        }
        let until = self.clock.now() + grace;
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

    pub fn device(&self) -> &D {
        self.device.inner()
    }

    pub fn device_mut(&mut self) -> &mut D {
        self.device.inner_mut()
    }

    /// Packets the ingress filter kept from smoltcp (see [`crate::guard`]).
    pub fn guard_stats(&self) -> GuardStats {
        self.device.stats()
    }

    /// Take the host apart and give back its device (to finish a trace, say).
    pub fn into_device(self) -> D {
        self.device.into_inner()
    }

    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    pub fn iface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    pub fn sockets(&self) -> &SocketSet<'static> {
        &self.sockets
    }

    pub fn sockets_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.sockets
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

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
    pub fn run(&mut self, stop: &Stop) -> Result<()> {
        let mut zero_turns = 0u32;
        let busy = std::time::Duration::from_micros(self.config.busy_poll.total_micros());
        // Whether the last wake-up was a packet: only then is busy polling worth it.
        let mut woken_by_packet = false;
        while !stop.is_stopped() {
            let delay = self.poll();
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
                if spin_until_readable(self.device.inner().as_fd(), stop, spin) {
                    continue;
                }
            }
            woken_by_packet = wait_readable(self.device.inner().as_fd(), Some(stop), delay)?;
        }
        debug!("stop requested: closing connections");
        self.shutdown(Duration::from_millis(300), |host, d| {
            let _ = wait_readable(host.device.inner().as_fd(), None, Some(d));
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
    /// deadline (a trace's flush), as in [`Host::run`].
    pub fn wait(&mut self, stop: Option<&Stop>, timeout: Option<Duration>) -> Result<()> {
        let timeout = earliest(timeout, self.housekeeping());
        wait_readable(self.device.inner().as_fd(), stop, timeout).map(|_| ())
    }
}

/// Check `fd` for readability without sleeping, for up to `spin`; true if it became readable.
fn spin_until_readable(fd: BorrowedFd<'_>, stop: &Stop, spin: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + spin;
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        if matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return true;
        }
        if stop.is_stopped() || std::time::Instant::now() >= until {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// Wait until `fd` is readable, `stop` is signalled, or `timeout` passes (`None`: no timeout);
/// returns whether `fd` is readable. The timeout is rounded up to the next millisecond, never
/// down, so a timer is never polled early in a loop that would then spin.
fn wait_readable(
    fd: BorrowedFd<'_>,
    stop: Option<&Stop>,
    timeout: Option<Duration>,
) -> Result<bool> {
    let ms = match timeout {
        None => PollTimeout::NONE,
        Some(d) => {
            let ms = d.total_micros().div_ceil(1000).min(i32::MAX as u64 - 1) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    };
    let stop_fd = stop.map(|s| s.fd.as_fd());
    let mut fds = [
        PollFd::new(fd, PollFlags::POLLIN),
        PollFd::new(stop_fd.unwrap_or(fd), PollFlags::POLLIN),
    ];
    let n = if stop_fd.is_some() { 2 } else { 1 };
    let result = nix::poll::poll(&mut fds[..n], ms);
    let readable = fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN));
    match result {
        Ok(_) => Ok(readable),
        Err(Errno::EINTR) => Ok(false),
        Err(errno) => Err(Error::Device {
            device: "poll".into(),
            op: "wait for packets (poll)",
            errno,
        }),
    }
}

/// A handle that stops [`Host::run`] from another thread or from a signal handler.
///
/// Clones share the same state. [`Stop::on_signals`] makes SIGINT and SIGTERM stop it.
#[derive(Clone, Debug)]
pub struct Stop {
    inner: Arc<StopInner>,
    fd: Arc<OwnedFd>,
}

#[derive(Debug)]
struct StopInner {
    stopped: AtomicBool,
    on_signals: AtomicBool,
}

/// Set by the signal handler.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// The eventfd the signal handler writes to, to wake the loop; -1 when none is installed.
static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
    let fd = SIGNAL_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid u64.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

impl Stop {
    pub fn new() -> Result<Stop> {
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::device("eventfd", "create the stop eventfd", e))?;
        Ok(Stop {
            inner: Arc::new(StopInner {
                stopped: AtomicBool::new(false),
                on_signals: AtomicBool::new(false),
            }),
            fd: Arc::new(OwnedFd::from(efd)),
        })
    }

    /// Ask the host to stop; a host waiting for packets wakes up at once.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(self.fd.as_fd(), &1u64.to_ne_bytes());
    }

    /// Whether `stop` was called, or a signal arrived after `on_signals`.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
            || (self.inner.on_signals.load(Ordering::SeqCst) && SIGNALLED.load(Ordering::SeqCst))
    }

    /// Make SIGINT and SIGTERM stop this handle (process-wide; the last call wins).
    pub fn on_signals(&self) -> Result<()> {
        SIGNAL_FD.store(self.fd.as_raw_fd(), Ordering::SeqCst);
        self.inner.on_signals.store(true, Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to atomics and calls write(2) on an eventfd, both
            // async-signal-safe.
            unsafe { sigaction(sig, &action) }
                .map_err(|e| Error::device("signals", "install a signal handler", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;
    use smoltcp::phy::Loopback;
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant;

    fn loopback_host(tcp: ListenerConfig) -> (Host<Loopback, VirtualClock>, VirtualClock) {
        let clock = VirtualClock::new(Instant::ZERO);
        let config = Config {
            services: vec![ServiceSpec::Echo(7)],
            tcp,
            seed: Some(1),
            ..Config::default()
        };
        let host = Host::new(Loopback::new(Medium::Ip), clock.clone(), config).unwrap();
        (host, clock)
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
        };
        let (mut host, clock) = loopback_host(limits);
        let client = host.sockets_mut().add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 1024]),
            tcp::SocketBuffer::new(vec![0; 1024]),
        ));
        let server: IpAddress = "192.0.2.2".parse().unwrap();
        for i in 0..100u16 {
            let (iface, sockets) = (&mut host.iface, &mut host.sockets);
            let c = sockets.get_mut::<tcp::Socket>(client);
            c.connect(iface.context(), (server, 7), 40000 + i).unwrap();
            poll_until(&mut host, &clock, |h| {
                h.sockets.get::<tcp::Socket>(client).may_send()
            });
            let c = host.sockets.get_mut::<tcp::Socket>(client);
            c.send_slice(b"hello").unwrap();
            let mut got = Vec::new();
            poll_until(&mut host, &clock, |h| {
                let c = h.sockets.get_mut::<tcp::Socket>(client);
                let mut buf = [0u8; 16];
                if let Ok(n) = c.recv_slice(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                got.len() == 5
            });
            assert_eq!(got, b"hello", "connection {i}");
            // The client closes first; the echo server answers with its own FIN.
            host.sockets.get_mut::<tcp::Socket>(client).close();
            poll_until(&mut host, &clock, |h| {
                h.sockets.get::<tcp::Socket>(client).state() == tcp::State::TimeWait
            });
            host.sockets.get_mut::<tcp::Socket>(client).abort();
        }
        // 8 server sockets at most, plus the client's.
        let count = host.sockets().iter().count();
        assert!(count <= 9, "{count} sockets after 100 connections");
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
        bad(|c| c.services = vec![ServiceSpec::Echo(7), ServiceSpec::Echo(7)]);
        bad(|c| c.services = vec![ServiceSpec::Chargen(0)]);
        bad(|c| c.addrs = vec!["224.0.0.1/24".parse().unwrap()]);
    }
}
