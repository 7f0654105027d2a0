//! The flags the subcommands share, their parsers, and what they resolve to in the library's
//! terms. The CLI's defaults live here: device `tunhost0`, kernel side 192.0.2.1/24, and the
//! services of a plain `tunhost serve`.

use std::path::PathBuf;

use clap::Args;
use tunhost::host::DEFAULT_ADDR;
use tunhost::link::{Kind, TunTapConfig, tuntap};
use tunhost::live::{TraceSpec, TraceTarget};
use tunhost::pcap::{Format, TraceConfig};
use tunhost::services::http::{DEFAULT_BACKLOG, HttpConfig};
use tunhost::services::{ListenerConfig, ServiceSpec, ServicesConfig};
use tunhost::smoltcp::time::Duration;
use tunhost::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// The device name with no device flag.
pub(crate) const DEFAULT_DEVICE: &str = "tunhost0";
/// The kernel side's address with no device flag.
pub(crate) const DEFAULT_PEER: &str = "192.0.2.1/24";

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
    /// e.g. 2001:db8::2/64). [default: 192.0.2.2/24]
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr, help_heading = "Addresses")]
    addr: Vec<IpCidr>,

    /// Give the kernel side of the device this address and prefix, e.g. 192.0.2.1/24. Without
    /// it the kernel side is left as configured (`ip addr add 192.0.2.1/24 dev tun0`); with no
    /// device flag at all it defaults to 192.0.2.1/24.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr, help_heading = "Addresses")]
    peer: Option<IpCidr>,

    /// Default gateway of the host, for peers outside its subnet, e.g. 192.0.2.1.
    #[arg(long, value_name = "IP", value_parser = parse_ip, help_heading = "Addresses")]
    pub(crate) gateway: Option<IpAddress>,

    /// The host's MAC on a TAP device, e.g. 02:00:00:00:00:02. [default: random, locally
    /// administered]
    #[arg(long, value_name = "MAC", value_parser = parse_mac, help_heading = "Addresses")]
    pub(crate) mac: Option<EthernetAddress>,
}

impl DeviceArgs {
    /// The device to open and the host's addresses, with the CLI's defaults filled in.
    pub(crate) fn resolve(&self) -> Result<(TunTapConfig, Vec<IpCidr>), String> {
        let defaults = self.tun.is_none() && self.tap.is_none();
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
        dev.peer = self
            .peer
            .or_else(|| defaults.then(|| DEFAULT_PEER.parse().expect("valid constant")));
        let addrs = if self.addr.is_empty() {
            vec![DEFAULT_ADDR.parse().expect("valid constant")]
        } else {
            self.addr.clone()
        };
        if let Some(peer) = dev.peer {
            if addrs.iter().any(|a| a.address() == peer.address()) {
                return Err(format!(
                    "--peer {peer} and --addr use the same address: the kernel side and the \
                     host need different addresses in one subnet"
                ));
            }
        }
        Ok((dev, addrs))
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

    /// Close an HTTP connection that makes no progress for SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_secs, help_heading = "HTTP")]
    http_idle_timeout: f64,

    /// TCP connections that can wait for the host per port (sockets kept in LISTEN), e.g. 256.
    /// [default: 64, and 128 on HTTP ports]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Tuning")]
    backlog: Option<u32>,

    /// Most TCP sockets per service port (listening + open + closing), e.g. 1024. Bounds memory:
    /// each socket has a receive and a transmit buffer of --socket-buffer bytes.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65535), help_heading = "Tuning")]
    max_connections: u32,

    /// Receive and transmit buffer of each TCP socket, in bytes, e.g. 65536. Bulk throughput is
    /// at most buffer / round-trip time. Memory is mapped as data flows, not up front.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(1024..=(1 << 30)), help_heading = "Tuning")]
    socket_buffer: u32,

    /// Seed smoltcp's randomness (TCP sequence numbers, MAC) for reproducible runs.
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
        let backlog = self
            .backlog
            .map_or(ListenerConfig::default().backlog, |b| b as usize);
        ServicesConfig {
            services,
            tcp: ListenerConfig {
                backlog,
                max_sockets: (self.max_connections as usize).max(backlog),
                rx_buffer: self.socket_buffer as usize,
                tx_buffer: self.socket_buffer as usize,
            },
            http: HttpConfig {
                root: self.root.clone(),
                idle_timeout: duration(self.http_idle_timeout),
                backlog: self.backlog.map_or(DEFAULT_BACKLOG, |b| b as usize),
                epoch: None,
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
