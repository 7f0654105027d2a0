//! The flags the subcommands share, their parsers, and what they resolve to in the library's
//! terms. The CLI's defaults live here: device `tunhost0`, the first documentation range the
//! machine does not use (host .2, kernel side .1), and the services of a plain `tunhost serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tunhost::link::kernel::network;
use tunhost::link::{Conflict, KernelView, Kind, TunTapConfig, tuntap};
use tunhost::live::{TraceSpec, TraceTarget};
use tunhost::pcap::{Format, TraceConfig};
use tunhost::services::http::HttpConfig;
use tunhost::services::listener::{DEFAULT_BACKLOG, DEFAULT_MAX_SOCKETS};
use tunhost::services::{ListenerConfig, ServiceSpec, ServicesConfig};
use tunhost::smoltcp::time::Duration;
use tunhost::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// The device name with no device flag.
pub(crate) const DEFAULT_DEVICE: &str = "tunhost0";
/// The subnets a host takes with no address flag, the first one the machine does not use: the
/// host is .2, the kernel side .1.
pub(crate) const DEFAULT_RANGES: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];
/// The IPv6 subnets suggested when an IPv6 address is refused.
const IPV6_RANGES: [&str; 3] = ["2001:db8::/64", "2001:db8:1::/64", "2001:db8:2::/64"];

/// `-v`/`-q` of the subcommands that run a host as a server.
#[derive(Args, Debug)]
#[command(next_help_heading = "Logging")]
pub(crate) struct LogArgs {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides, e.g. RUST_LOG=smoltcp=trace.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// The device and the addresses on it, for every subcommand that opens a device.
#[derive(Args, Debug)]
#[command(next_help_heading = "Device")]
pub(crate) struct DeviceArgs {
    /// Use (create or attach to) the TUN device NAME: IP packets, no ARP. [default: tunhost0]
    #[arg(long, value_name = "NAME", value_parser = parse_name, conflicts_with = "tap")]
    tun: Option<String>,

    /// Use (create or attach to) the TAP device NAME: Ethernet frames, the host answers ARP.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    tap: Option<String>,

    /// Set the device's MTU (TUN 68..=65535, TAP 68..=65521), e.g. 9000. [default: keep the
    /// device's, 1500 for a new one]
    #[arg(long, value_name = "N")]
    mtu: Option<u32>,

    /// Set the kernel side's transmit queue length. [default: raise to at least 1000]
    #[arg(long, value_name = "N")]
    txqueuelen: Option<u32>,

    /// Open the device without offloads: no virtio header, no checksum offload, no TCP
    /// segmentation offload (one packet per MTU each way, every checksum computed here).
    #[arg(long)]
    no_offload: bool,

    /// The host's own address and prefix, e.g. 192.0.2.2/24 (repeat for a second address,
    /// e.g. 2001:db8::2/64). Refused if another interface of the machine has it, or a subnet or
    /// route that overlaps it. [default: in the subnet of each --peer, or of the kernel side of
    /// an existing device; else dual stack: .2 of the first of 192.0.2.0/24, 198.51.100.0/24,
    /// 203.0.113.0/24 and ::2 of the first of 2001:db8::/64, 2001:db8:1::/64, 2001:db8:2::/64
    /// that the machine does not use (IPv4 only when the machine has IPv6 off)]
    /// `dhcp` (on TAP): take the IPv4 address, prefix, gateway and DNS servers from a DHCP
    /// server on the kernel side, and renew the lease.
    #[arg(long, value_name = "CIDR|dhcp", value_parser = parse_addr, help_heading = "Addresses")]
    addr: Vec<AddrArg>,

    /// With --addr dhcp: treat a lease as at most SECONDS long (renew at half of it), whatever
    /// the server grants.
    #[arg(long, value_name = "SECONDS", value_parser = parse_secs, help_heading = "Addresses")]
    dhcp_max_lease: Option<f64>,

    /// Give the kernel side of the device this address and prefix, e.g. 192.0.2.1/24; once per
    /// address family (add 2001:db8::1/64 for IPv6). Refused like --addr. With a device named
    /// (--tun/--tap) and no --peer, the kernel side is left as configured (`ip addr add
    /// 192.0.2.1/24 dev tun0`); without one, each family of the host's addresses gets its
    /// kernel side in the host's subnet (.1, ::1).
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr, help_heading = "Addresses")]
    peer: Vec<IpCidr>,

    /// Default gateway of the host, for peers outside its subnet, e.g. 192.0.2.1.
    #[arg(long, value_name = "IP", value_parser = parse_ip, help_heading = "Addresses")]
    gateway: Option<IpAddress>,

    /// The host's MAC on a TAP device, e.g. 02:00:00:00:00:02. [default: random, locally
    /// administered]
    #[arg(long, value_name = "MAC", value_parser = parse_mac, help_heading = "Addresses")]
    mac: Option<EthernetAddress>,
}

/// The device to open and the host's addresses, as [`DeviceArgs::resolve`] settled them.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The device, with the kernel side's address if one is to be set.
    pub(crate) dev: TunTapConfig,
    /// The host's addresses.
    pub(crate) addrs: Vec<IpCidr>,
    /// Why the host is not in the first default range, when it is not: "192.0.2.0/24 is in use
    /// on eth0".
    pub(crate) moved: Option<String>,
}

impl DeviceArgs {
    /// The host's configuration on `addrs`, with this gateway and MAC (and DHCP if asked).
    pub(crate) fn host_config(&self, addrs: Vec<IpCidr>) -> tunhost::Config {
        tunhost::Config {
            addrs,
            gateway: self.gateway,
            mac: self.mac,
            dhcp: self.dhcp().then(|| tunhost::host::Dhcp {
                max_lease: self.dhcp_max_lease.map(duration),
            }),
            ..tunhost::Config::default()
        }
    }

    /// Whether `--addr dhcp` was given.
    pub(crate) fn dhcp(&self) -> bool {
        self.addr.iter().any(|a| matches!(a, AddrArg::Dhcp))
    }

    /// The addresses given with `--addr` (not `dhcp`).
    fn addrs_given(&self) -> Vec<IpCidr> {
        (self.addr.iter())
            .filter_map(|a| match a {
                AddrArg::Cidr(c) => Some(*c),
                AddrArg::Dhcp => None,
            })
            .collect()
    }

    /// The device to open and the host's addresses, with the CLI's defaults filled in and checked
    /// against the addresses and routes of the machine (its network namespace). A failure has
    /// been reported: its exit code (2 for an address in use, 1 if they cannot be read).
    pub(crate) fn resolve(&self) -> Result<Resolved, ExitCode> {
        let kernel = KernelView::read().map_err(|e| crate::fail(tunhost::Error::from(e)))?;
        self.resolve_in(&kernel, ipv6_on()).map_err(crate::usage)
    }

    /// [`DeviceArgs::resolve`] on a given view of the machine; `ipv6`: whether a new device gets
    /// IPv6 (for the dual-stack default).
    fn resolve_in(&self, kernel: &KernelView, ipv6: bool) -> Result<Resolved, String> {
        for (fam, v6) in [("IPv4", false), ("IPv6", true)] {
            let same: Vec<String> = (self.peer.iter())
                .filter(|p| is_v6(p) == v6)
                .map(|p| p.to_string())
                .collect();
            if same.len() > 1 {
                return Err(format!(
                    "--peer {} and --peer {}: one kernel-side address per family ({fam})",
                    same[0], same[1]
                ));
            }
        }
        if self.dhcp() {
            if self.tap.is_none() {
                return Err(
                    "--addr dhcp needs a TAP device (DHCP runs over Ethernet): add --tap NAME"
                        .into(),
                );
            }
            if let Some(a) = self.addrs_given().iter().find(|a| !is_v6(a)) {
                return Err(format!(
                    "--addr dhcp and --addr {a}: the IPv4 address comes from DHCP"
                ));
            }
        } else if self.dhcp_max_lease.is_some() {
            return Err("--dhcp-max-lease is for --addr dhcp".into());
        }
        let named = self.tun.is_some() || self.tap.is_some();
        let (name, kind) = match (&self.tun, &self.tap) {
            (_, Some(tap)) => (tap.clone(), Kind::Tap),
            (Some(tun), None) => (tun.clone(), Kind::Tun),
            (None, None) => (DEFAULT_DEVICE.to_string(), Kind::Tun),
        };
        if let Some(mtu) = self.mtu {
            tuntap::validate_mtu(&name, kind, mtu).map_err(|e| e.to_string())?;
        }
        let mut dev = TunTapConfig::new(name, kind);
        dev.mtu = self.mtu;
        dev.txqueuelen = self.txqueuelen;
        dev.offload = !self.no_offload;
        let (addrs, moved) = self.host_addrs(kernel, &dev.name, ipv6 && !named)?;
        dev.peers = self.peer.clone();
        if !named {
            // Each family of the host's addresses without a --peer: its kernel side in the
            // subnet of the host's first address of that family.
            for v6 in [false, true] {
                if dev.peers.iter().any(|p| is_v6(p) == v6) {
                    continue;
                }
                if let Some(&a) = addrs.iter().find(|a| is_v6(a) == v6) {
                    dev.peers.push(partner(a));
                }
            }
        }
        for peer in &dev.peers {
            if addrs.iter().any(|a| a.address() == peer.address()) {
                return Err(format!(
                    "--peer {peer} and --addr use the same address: the kernel side and the \
                     host need different addresses in one subnet"
                ));
            }
        }
        self.check_unused(kernel, &dev, &addrs)?;
        Ok(Resolved { dev, addrs, moved })
    }

    /// The host's addresses: as given, else in the subnet of --peer, else in the subnet of the
    /// kernel side of an existing device, else in the first free default range (and then why
    /// not in the first one).
    fn host_addrs(
        &self,
        kernel: &KernelView,
        device: &str,
        dual: bool,
    ) -> Result<(Vec<IpCidr>, Option<String>), String> {
        if !self.addr.is_empty() {
            return Ok((self.addrs_given(), None));
        }
        if !self.peer.is_empty() {
            return Ok((self.peer.iter().map(|&p| partner(p)).collect(), None));
        }
        if let Some(near) = kernel.addrs_of(device).next() {
            return Ok((vec![partner(near)], None));
        }
        let (range, taken) = first_free(kernel, device, &DEFAULT_RANGES);
        let Some(range) = range else {
            return Err(format!(
                "no default subnet is free for the host: {}; give it one the machine does not \
                 use with --addr CIDR --peer CIDR",
                in_use(&taken)
            ));
        };
        let mut moved = (!taken.is_empty()).then(|| in_use(&taken));
        let mut addrs = vec![nth(range, 2)];
        if dual {
            let (range6, taken6) = first_free(kernel, device, &IPV6_RANGES);
            // No free IPv6 range (unlikely): the host is IPv4 only, and the start line says why.
            let why6 = (!taken6.is_empty()).then(|| in_use(&taken6));
            moved = match (moved, why6) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            };
            addrs.extend(range6.map(|r| nth(r, 2)));
        }
        Ok((addrs, moved))
    }

    /// Refuse addresses that another interface of the machine uses (see [`KernelView::conflict`]),
    /// and a host address that is the kernel side's on the device itself.
    fn check_unused(
        &self,
        kernel: &KernelView,
        dev: &TunTapConfig,
        addrs: &[IpCidr],
    ) -> Result<(), String> {
        let name = dev.name.as_str();
        // What was asked for first, then the defaults that follow from it: the message names
        // the address the user gave when that is the one at fault.
        let given = (self.peer.iter().map(|&p| (format!("--peer {p}"), p))).chain(
            self.addrs_given()
                .into_iter()
                .map(|a| (format!("--addr {a}"), a)),
        );
        let defaults = (dev.peers.iter().filter(|p| !self.peer.contains(p)))
            .map(|&p| (format!("the kernel side's address {p}"), p))
            .chain(
                (addrs.iter().filter(|_| self.addr.is_empty()))
                    .map(|&a| (format!("the host's address {a}"), a)),
            );
        for (what, cidr) in given.chain(defaults) {
            if let Some(c) = kernel.conflict(cidr, name) {
                return Err(format!("{what}: {c}; {}", instead(kernel, name, &c)));
            }
        }
        let kernels = |a: &&IpCidr| kernel.addrs_of(name).any(|o| o.address() == a.address());
        match addrs.iter().find(kernels) {
            Some(a) => Err(format!(
                "{} is the kernel side's address on {name}: the host needs one of its own in \
                 that subnet, e.g. --addr {}",
                a.address(),
                partner(*a)
            )),
            None => Ok(()),
        }
    }
}

/// The first of `ranges` that no interface but `own` uses, and how the ones before it are used.
fn first_free(kernel: &KernelView, own: &str, ranges: &[&str]) -> (Option<IpCidr>, Vec<Conflict>) {
    let mut taken = Vec::new();
    for range in ranges {
        let range: IpCidr = range.parse().expect("valid constant");
        match kernel.conflict(range, own) {
            None => return (Some(range), taken),
            Some(c) => taken.push(c),
        }
    }
    (None, taken)
}

/// "192.0.2.0/24 is in use on eth0, 198.51.100.0/24 on vethA".
fn in_use(taken: &[Conflict]) -> String {
    let each: Vec<String> = taken
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let verb = if i == 0 { " is in use" } else { "" };
            format!("{}{verb} on {}", network(c.wanted), c.interface)
        })
        .collect();
    each.join(", ")
}

/// What to use instead of an address that `conflict` refused: flags with a free range of the
/// same family.
fn instead(kernel: &KernelView, own: &str, conflict: &Conflict) -> String {
    let ranges: &[&str] = match conflict.wanted {
        IpCidr::Ipv4(_) => &DEFAULT_RANGES,
        IpCidr::Ipv6(_) => &IPV6_RANGES,
    };
    match first_free(kernel, own, ranges).0 {
        Some(r) => format!(
            "use a free documentation range instead, e.g. --addr {} --peer {}",
            nth(r, 2),
            nth(r, 1)
        ),
        None => "choose a subnet the machine does not use (see ip -br addr, ip route)".into(),
    }
}

/// Address number `n` of a subnet, with its prefix: `nth(192.0.2.0/24, 2)` is 192.0.2.2/24.
fn nth(subnet: IpCidr, n: u8) -> IpCidr {
    match network(subnet) {
        IpCidr::Ipv4(c) => IpCidr::new(
            IpAddress::Ipv4((u32::from(c.address()) + u32::from(n)).into()),
            c.prefix_len(),
        ),
        IpCidr::Ipv6(c) => IpCidr::new(
            IpAddress::Ipv6((u128::from(c.address()) + u128::from(n)).into()),
            c.prefix_len(),
        ),
    }
}

/// Whether `cidr` is IPv6.
fn is_v6(cidr: &IpCidr) -> bool {
    matches!(cidr, IpCidr::Ipv6(_))
}

/// Whether a device made now gets IPv6: the kernel has it and new interfaces do not start with
/// it off (`net.ipv6.conf.default.disable_ipv6`).
fn ipv6_on() -> bool {
    std::path::Path::new("/proc/net/if_inet6").exists()
        && std::fs::read_to_string("/proc/sys/net/ipv6/conf/default/disable_ipv6")
            .is_ok_and(|v| v.trim() == "0")
}

/// Another address in the subnet of `cidr`, for the other end of the device: .1, or .2 if
/// `cidr` is .1 (`::1` and `::2` in IPv6).
pub(crate) fn partner(cidr: IpCidr) -> IpCidr {
    if cidr == nth(cidr, 1) {
        nth(cidr, 2)
    } else {
        nth(cidr, 1)
    }
}

/// The services and their limits: the same for `serve` and `replay`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Services")]
pub(crate) struct ServiceArgs {
    /// Run a TCP echo service (RFC 862) on PORT, e.g. --echo 7. Any service flag replaces the
    /// default set (echo 7 TCP+UDP, discard 9, chargen 19, HTTP 80).
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    echo: Vec<u16>,

    /// Run a UDP echo service (RFC 862) on PORT, e.g. --udp-echo 7.
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    udp_echo: Vec<u16>,

    /// Run a TCP discard service (RFC 863) on PORT, e.g. --discard 9.
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    discard: Vec<u16>,

    /// Run a TCP chargen service (RFC 864) on PORT, e.g. --chargen 19.
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    chargen: Vec<u16>,

    /// Serve HTTP/1.1 on PORT, e.g. --http 8080: the files below --root, or else a status page
    /// of the host.
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    http: Vec<u16>,

    /// Serve the files below DIR on the --http ports (port 80 if none is given).
    #[arg(long, value_name = "DIR", help_heading = "HTTP")]
    root: Option<PathBuf>,

    /// Serve and list names that start with a dot below --root (.env, .git/): hidden by default.
    #[arg(long, help_heading = "HTTP")]
    dotfiles: bool,

    /// Close an HTTP connection that makes no progress for SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_secs, help_heading = "HTTP")]
    http_idle_timeout: f64,

    /// Answer 408 and close when a request head has not arrived whole SECONDS after its first
    /// byte, however slowly it trickles (as nginx's client_header_timeout).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_secs, help_heading = "HTTP")]
    http_header_timeout: f64,

    /// TCP handshakes that can be in flight per port at once (SYN received, not yet
    /// established), as the backlog of listen(2), e.g. 256. Sockets are put in LISTEN 64 at a
    /// time as SYNs take them.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG as u32, value_parser = clap::value_parser!(u32).range(1..=65535), help_heading = "Tuning")]
    backlog: u32,

    /// Most TCP connections per service port (handshakes + open + closing; 64 sockets kept in
    /// LISTEN come on top), e.g. 1024. When all are in use, closing ones are taken back and the
    /// HTTP connections idle longest are reset to make room. Bounds memory: each socket has a
    /// receive and a transmit buffer of --socket-buffer bytes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SOCKETS as u32, value_parser = clap::value_parser!(u32).range(1..=65535), help_heading = "Tuning")]
    max_connections: u32,

    /// Receive and transmit buffer of each TCP socket, in bytes, e.g. 65536. Bulk throughput is
    /// at most buffer / round-trip time. Memory is mapped as data flows, not up front.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(1024..=(1 << 30)), help_heading = "Tuning")]
    socket_buffer: u32,

    /// Seed smoltcp's randomness (TCP sequence numbers, MAC) for reproducible runs. Without it,
    /// 8 bytes from the OS: the secret of the TCP initial sequence numbers (RFC 6528) follows
    /// from the seed, so with --seed they are predictable. For tests and replay only.
    #[arg(long, value_name = "N", help_heading = "Tuning")]
    pub(crate) seed: Option<u64>,
}

impl ServiceArgs {
    /// The services these flags ask for, with the CLI's default set when none is named.
    pub(crate) fn config(&self) -> ServicesConfig {
        let mut services: Vec<ServiceSpec> = Vec::new();
        services.extend(self.echo.iter().map(|&p| ServiceSpec::Echo(p)));
        services.extend(self.udp_echo.iter().map(|&p| ServiceSpec::UdpEcho(p)));
        services.extend(self.discard.iter().map(|&p| ServiceSpec::Discard(p)));
        services.extend(self.chargen.iter().map(|&p| ServiceSpec::Chargen(p)));
        services.extend(self.http.iter().map(|&p| ServiceSpec::Http(p)));
        if self.root.is_some() && self.http.is_empty() {
            services.push(ServiceSpec::Http(80));
        }
        if services.is_empty() {
            services = vec![
                ServiceSpec::Echo(7),
                ServiceSpec::UdpEcho(7),
                ServiceSpec::Discard(9),
                ServiceSpec::Chargen(19),
                ServiceSpec::Http(80),
            ];
        }
        let backlog = self.backlog as usize;
        ServicesConfig {
            services,
            tcp: ListenerConfig {
                backlog,
                max_sockets: self.max_connections as usize,
                rx_buffer: self.socket_buffer as usize,
                tx_buffer: self.socket_buffer as usize,
                ..ListenerConfig::default()
            },
            http: HttpConfig {
                root: self.root.clone(),
                idle_timeout: duration(self.http_idle_timeout),
                header_timeout: duration(self.http_header_timeout),
                backlog,
                epoch: None,
                dotfiles: self.dotfiles,
            },
            ..ServicesConfig::default()
        }
    }
}

/// `--pcap` and its options, for every subcommand that runs a host.
#[derive(Args, Debug)]
#[command(next_help_heading = "Tracing")]
pub(crate) struct TraceArgs {
    /// Record every packet the host reads from or writes to the device in FILE, pcapng with
    /// direction flags unless --pcap-format says otherwise; `-` streams it to stdout (e.g.
    /// `| tshark -r -`). Written in the background of the loop, flushed every 200 ms and on exit.
    #[arg(long, value_name = "FILE")]
    pub(crate) pcap: Option<String>,

    /// Trace format: pcapng (per-packet direction, nanosecond timestamps, device name) or pcap
    /// (classic libpcap, microseconds, for old tools).
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "pcapng",
        requires = "pcap"
    )]
    pcap_format: PcapFormat,

    /// Keep only the first N bytes of each packet in the trace (the original length is
    /// recorded), as tcpdump -s; e.g. --snaplen 96 for headers only.
    #[arg(long, value_name = "N", requires = "pcap", value_parser = clap::value_parser!(u32).range(1..=262144))]
    snaplen: Option<u32>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PcapFormat {
    Pcapng,
    Pcap,
}

impl TraceArgs {
    /// What `--pcap` asks for. A binary trace is not written to a terminal.
    pub(crate) fn spec(&self) -> Result<Option<TraceSpec>, String> {
        let Some(path) = &self.pcap else {
            return Ok(None);
        };
        let target = if path == "-" {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(
                    "--pcap - writes a binary trace to stdout, which is a terminal: \
                            redirect it (> trace.pcapng) or pipe it (| tshark -r -)"
                        .into(),
                );
            }
            TraceTarget::Stdout
        } else {
            TraceTarget::File(PathBuf::from(path))
        };
        Ok(Some(TraceSpec {
            target,
            config: self.config(),
        }))
    }

    /// Format and snap length as the flags say.
    pub(crate) fn config(&self) -> TraceConfig {
        TraceConfig {
            format: match self.pcap_format {
                PcapFormat::Pcapng => Format::PcapNg,
                PcapFormat::Pcap => Format::Pcap,
            },
            snaplen: self.snaplen,
            ..TraceConfig::new("", "")
        }
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    tuntap::validate_name(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// An `--addr`: an address and prefix, or `dhcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrArg {
    Cidr(IpCidr),
    Dhcp,
}

fn parse_addr(s: &str) -> Result<AddrArg, String> {
    if s.eq_ignore_ascii_case("dhcp") {
        return Ok(AddrArg::Dhcp);
    }
    parse_cidr(s)
        .map(AddrArg::Cidr)
        .map_err(|e| format!("{e}, or dhcp"))
}

pub(crate) fn parse_cidr(s: &str) -> Result<IpCidr, String> {
    s.parse::<IpCidr>().map_err(|_| {
        "expected an address and prefix length, like 192.0.2.2/24 or 2001:db8::2/64".to_string()
    })
}

pub(crate) fn parse_ip(s: &str) -> Result<IpAddress, String> {
    s.parse::<IpAddress>()
        .map_err(|_| "expected an IP address, like 192.0.2.1 or 2001:db8::1".to_string())
}

pub(crate) fn parse_mac(s: &str) -> Result<EthernetAddress, String> {
    let mac = s
        .parse::<EthernetAddress>()
        .map_err(|_| "expected a MAC address like 02:00:00:00:00:02".to_string())?;
    if !mac.is_unicast() {
        return Err(
            "not a unicast MAC (the first octet must be even), e.g. 02:00:00:00:00:02".into(),
        );
    }
    Ok(mac)
}

pub(crate) fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.001..=86400.0).contains(&v) => Ok(v),
        _ => Err("expected seconds from 0.001 to 86400, e.g. 0.5".into()),
    }
}

pub(crate) fn duration(secs: f64) -> Duration {
    Duration::from_micros((secs * 1e6).round() as u64)
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a port from 1 to 65535".into()),
        Ok(p) => Ok(p),
    }
}

/// A MAC as `--mac` takes it and `ip neigh` shows it (smoltcp's Display uses dashes).
pub(crate) fn colons(mac: EthernetAddress) -> String {
    let b = mac.as_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tunhost::link::kernel::{IfAddr, Route};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        device: DeviceArgs,
    }

    fn cidr(s: &str) -> IpCidr {
        s.parse().unwrap()
    }

    /// The machine of the issue (eth0 is 192.0.2.2/24), with `more` routes through vethA.
    fn machine(more: &[&str]) -> KernelView {
        let addr = |interface: &str, c: &str| IfAddr {
            interface: interface.into(),
            cidr: cidr(c),
        };
        let route = |interface: &str, c: &str| Route {
            interface: interface.into(),
            dest: cidr(c),
        };
        let mut routes = vec![route("eth0", "192.0.2.0/24")];
        routes.extend(more.iter().map(|c| route("vethA", c)));
        KernelView {
            addrs: vec![addr("lo", "127.0.0.1/8"), addr("eth0", "192.0.2.2/24")],
            routes,
        }
    }

    fn resolve(args: &[&str], kernel: &KernelView) -> Result<Resolved, String> {
        let cli = Cli::try_parse_from([&["tunhost"], args].concat()).unwrap();
        cli.device.resolve_in(kernel, false)
    }

    /// The host's addresses and the kernel side's.
    fn hosts(r: &Resolved) -> (Vec<IpCidr>, Vec<IpCidr>) {
        (r.addrs.clone(), r.dev.peers.clone())
    }

    #[test]
    fn defaults_take_the_first_free_range() {
        let free = resolve(&[], &KernelView::default()).unwrap();
        assert_eq!(
            hosts(&free),
            (vec![cidr("192.0.2.2/24")], vec![cidr("192.0.2.1/24")])
        );
        assert_eq!(free.moved, None);
        let r = resolve(&[], &machine(&[])).unwrap();
        assert_eq!(
            hosts(&r),
            (vec![cidr("198.51.100.2/24")], vec![cidr("198.51.100.1/24")])
        );
        assert_eq!(r.moved.as_deref(), Some("192.0.2.0/24 is in use on eth0"));
        let r = resolve(&[], &machine(&["198.51.100.0/23"])).unwrap();
        assert_eq!(r.addrs, vec![cidr("203.0.113.2/24")]);
        assert_eq!(
            r.moved.as_deref(),
            Some("192.0.2.0/24 is in use on eth0, 198.51.100.0/24 on vethA")
        );
    }

    #[test]
    fn all_ranges_taken_is_one_clear_line() {
        let e = resolve(&[], &machine(&["198.51.100.0/24", "203.0.113.0/24"])).unwrap_err();
        assert_eq!(
            e,
            "no default subnet is free for the host: 192.0.2.0/24 is in use on eth0, \
             198.51.100.0/24 on vethA, 203.0.113.0/24 on vethA; give it one the machine does \
             not use with --addr CIDR --peer CIDR"
        );
    }

    #[test]
    fn explicit_addresses_in_use_are_refused_with_a_free_range() {
        let m = machine(&[]);
        let e = resolve(&["--addr", "192.0.2.2/24"], &m).unwrap_err();
        assert!(e.starts_with("--addr 192.0.2.2/24: 192.0.2.2 is already an address of eth0"));
        assert!(
            e.ends_with("e.g. --addr 198.51.100.2/24 --peer 198.51.100.1/24"),
            "{e}"
        );
        let e = resolve(&["--tun", "tun0", "--peer", "192.0.2.1/24"], &m).unwrap_err();
        assert!(
            e.starts_with("--peer 192.0.2.1/24: 192.0.2.0/24 overlaps"),
            "{e}"
        );
        let e = resolve(
            &["--addr", "198.51.100.2/24"],
            &machine(&["198.51.100.0/24"]),
        );
        assert!(e.unwrap_err().contains("through vethA"));
        // A default that follows an explicit address is checked too, and named as a default.
        let m = machine(&["198.51.100.0/24"]);
        let e = resolve(&["--peer", "198.51.100.1/25"], &m).unwrap_err();
        assert!(e.starts_with("--peer 198.51.100.1/25: "), "{e}");
        // IPv6: an IPv6 range is suggested.
        let mut m = machine(&[]);
        m.addrs.push(IfAddr {
            interface: "eth0".into(),
            cidr: cidr("2001:db8::5/64"),
        });
        let e = resolve(&["--addr", "2001:db8::2/64"], &m).unwrap_err();
        assert!(
            e.ends_with("--addr 2001:db8:1::2/64 --peer 2001:db8:1::1/64"),
            "{e}"
        );
    }

    #[test]
    fn no_address_flag_is_dual_stack_when_the_machine_has_ipv6() {
        let dual = |args: &[&str], m: &KernelView| {
            let cli = Cli::try_parse_from([&["tunhost"], args].concat()).unwrap();
            cli.device.resolve_in(m, true)
        };
        let r = dual(&[], &KernelView::default()).unwrap();
        assert_eq!(
            hosts(&r),
            (
                vec![cidr("192.0.2.2/24"), cidr("2001:db8::2/64")],
                vec![cidr("192.0.2.1/24"), cidr("2001:db8::1/64")]
            )
        );
        assert_eq!(r.moved, None);
        // A taken IPv6 range moves the IPv6 side only, and says so.
        let mut m = machine(&[]);
        m.addrs.push(IfAddr {
            interface: "eth0".into(),
            cidr: cidr("2001:db8::5/64"),
        });
        let r = dual(&[], &m).unwrap();
        assert_eq!(r.addrs, [cidr("198.51.100.2/24"), cidr("2001:db8:1::2/64")]);
        assert_eq!(
            r.moved.as_deref(),
            Some("192.0.2.0/24 is in use on eth0; 2001:db8::/64 is in use on eth0")
        );
        // IPv6 off: IPv4 only, as before.
        assert_eq!(resolve(&[], &KernelView::default()).unwrap().addrs.len(), 1);
        // Addresses given: those families only, each with its kernel side.
        let e = dual(
            &["--addr", "203.0.113.2/24", "--addr", "2001:db8::2/64"],
            &m,
        )
        .unwrap_err();
        assert!(e.starts_with("--addr 2001:db8::2/64: "), "{e}");
        let r = dual(
            &["--addr", "203.0.113.2/24", "--addr", "2001:db8:2::2/64"],
            &m,
        )
        .unwrap();
        assert_eq!(
            r.dev.peers,
            [cidr("203.0.113.1/24"), cidr("2001:db8:2::1/64")]
        );
        let r = dual(&["--addr", "203.0.113.2/24"], &m).unwrap();
        assert_eq!(r.dev.peers, [cidr("203.0.113.1/24")]);
        // --peer once per family; the host follows each.
        let r = dual(
            &["--peer", "203.0.113.1/24", "--peer", "2001:db8:2::1/64"],
            &m,
        )
        .unwrap();
        assert_eq!(r.addrs, [cidr("203.0.113.2/24"), cidr("2001:db8:2::2/64")]);
        let e = dual(&["--peer", "203.0.113.1/24", "--peer", "198.18.0.1/24"], &m).unwrap_err();
        assert_eq!(
            e,
            "--peer 203.0.113.1/24 and --peer 198.18.0.1/24: one kernel-side address per family (IPv4)"
        );
    }

    #[test]
    fn one_address_flag_brings_the_other_into_its_subnet() {
        let m = machine(&[]);
        let r = resolve(&["--addr", "198.51.100.7/24"], &m).unwrap();
        assert_eq!(
            hosts(&r),
            (vec![cidr("198.51.100.7/24")], vec![cidr("198.51.100.1/24")])
        );
        let r = resolve(&["--peer", "198.51.100.1/24"], &m).unwrap();
        assert_eq!(r.addrs, vec![cidr("198.51.100.2/24")]);
        // With a device named and no --peer, the kernel side is left as it is.
        let r = resolve(&["--tun", "tun0", "--addr", "198.51.100.7/24"], &m).unwrap();
        assert_eq!(r.dev.peers, []);
    }

    #[test]
    fn an_existing_device_keeps_its_own_addresses() {
        let mut m = machine(&[]);
        m.addrs.push(IfAddr {
            interface: "tun9".into(),
            cidr: cidr("203.0.113.1/24"),
        });
        m.routes.push(Route {
            interface: "tun9".into(),
            dest: cidr("203.0.113.0/24"),
        });
        // tun9's own address and route are no conflict; with no address flag the host joins it.
        let r = resolve(&["--tun", "tun9"], &m).unwrap();
        assert_eq!(hosts(&r), (vec![cidr("203.0.113.2/24")], vec![]));
        let r = resolve(&["--tun", "tun9", "--peer", "203.0.113.1/24"], &m).unwrap();
        assert_eq!(r.addrs, vec![cidr("203.0.113.2/24")]);
        // ... but the host cannot take the kernel side's own address.
        let e = resolve(&["--tun", "tun9", "--addr", "203.0.113.1/24"], &m).unwrap_err();
        assert!(
            e.starts_with("203.0.113.1 is the kernel side's address on tun9"),
            "{e}"
        );
    }

    #[test]
    fn partners_and_nth() {
        assert_eq!(partner(cidr("192.0.2.2/24")), cidr("192.0.2.1/24"));
        assert_eq!(partner(cidr("192.0.2.1/24")), cidr("192.0.2.2/24"));
        assert_eq!(partner(cidr("2001:db8::1/64")), cidr("2001:db8::2/64"));
        assert_eq!(nth(cidr("198.51.100.77/24"), 2), cidr("198.51.100.2/24"));
    }
}
