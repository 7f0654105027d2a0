//! `tunhost`: the command-line shell over the library. It parses arguments, builds a `Config`,
//! calls the library, and maps errors to one line on stderr and an exit code (2: usage, 1: the
//! run failed).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tunhost::host::{DEFAULT_ADDR, DEFAULT_DEVICE, DEFAULT_PEER};
use tunhost::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use tunhost::{Config, Host, Kind, ListenerConfig, ServiceSpec, Stop, TunTapConfig, tuntap};

const AFTER_HELP: &str = "\
Opening or creating a TUN/TAP device needs root or CAP_NET_ADMIN (e.g. `sudo tunhost serve`).

Examples:
  sudo tunhost serve
      TUN device tunhost0, host 192.0.2.2/24, kernel side 192.0.2.1/24,
      echo 7 (TCP+UDP), discard 9, chargen 19. Then: ping 192.0.2.2; nc 192.0.2.2 7
  sudo tunhost serve --tap tap0 --addr 198.51.100.2/24 --peer 198.51.100.1/24 --echo 7
      The same on a TAP device: the kernel finds the host's MAC by ARP.
  sudo ip tuntap add dev tun9 mode tun && sudo ip addr add 203.0.113.1/24 dev tun9 \\
    && sudo ip link set tun9 up && sudo tunhost serve --tun tun9 --addr 203.0.113.2/24
      Attach to a device that already exists and whose kernel side you configured yourself.";

#[derive(Parser, Debug)]
#[command(
    name = "tunhost",
    version,
    about = "Host your own IP address in userspace on a Linux TUN or TAP device",
    long_about = "Host your own IP address in userspace on a Linux TUN or TAP device.\n\n\
        tunhost opens a TUN (IP packets) or TAP (Ethernet frames) device and answers on it with \
        its own userspace TCP/IP stack (smoltcp): ARP, ping, TCP and UDP services. The kernel on \
        the other side of the device is the peer: ping, nc, curl and ordinary sockets talk to \
        the host as to another machine.",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Host an address on a TUN/TAP device and run services on it until Ctrl-C.
    #[command(after_help = AFTER_HELP)]
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct DeviceArgs {
    /// Use (create or attach to) the TUN device NAME: IP packets, no ARP. [default: tunhost0]
    #[arg(long, value_name = "NAME", value_parser = parse_name, conflicts_with = "tap")]
    tun: Option<String>,

    /// Use (create or attach to) the TAP device NAME: Ethernet frames, the host answers ARP.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    tap: Option<String>,

    /// The host's own address and prefix, e.g. 192.0.2.2/24 (repeat for a second address,
    /// e.g. 2001:db8::2/64). [default: 192.0.2.2/24]
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    addr: Vec<IpCidr>,

    /// Give the kernel side of the device this address and prefix, e.g. 192.0.2.1/24. Without
    /// it the kernel side is left as configured (`ip addr add 192.0.2.1/24 dev tun0`); with no
    /// device flag at all it defaults to 192.0.2.1/24.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    peer: Option<IpCidr>,

    /// Default gateway of the host, for peers outside its subnet, e.g. 192.0.2.1.
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    gateway: Option<IpAddress>,

    /// The host's MAC on a TAP device, e.g. 02:00:00:00:00:02. [default: random, locally
    /// administered]
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    mac: Option<EthernetAddress>,

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
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    device: DeviceArgs,

    /// TCP connections that can wait for the host per port (sockets kept in LISTEN), e.g. 128.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    backlog: u32,

    /// Most TCP sockets per service port (listening + open + closing), e.g. 1024. Bounds memory:
    /// each socket has a receive and a transmit buffer of --socket-buffer bytes.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65535))]
    max_connections: u32,

    /// Receive and transmit buffer of each TCP socket, in bytes, e.g. 65536. Bulk throughput is
    /// at most buffer / round-trip time. Memory is mapped as data flows, not up front.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(1024..=(1 << 30)))]
    socket_buffer: u32,

    /// Run a TCP echo service (RFC 862) on PORT, e.g. --echo 7. Any service flag replaces the
    /// default set (echo 7 TCP+UDP, discard 9, chargen 19).
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

    /// After a packet, keep checking the device this many microseconds before sleeping, e.g. 0
    /// to always sleep. Saves a wake-up per exchange (latency, request/response rates) at the
    /// cost of that much CPU after each burst; an idle host never spins.
    #[arg(long, value_name = "USEC", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    busy_poll: u32,

    /// Seed smoltcp's randomness (TCP sequence numbers, MAC) for reproducible runs.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides, e.g. RUST_LOG=smoltcp=trace.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_name(s: &str) -> Result<String, String> {
    tuntap::validate_name(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_cidr(s: &str) -> Result<IpCidr, String> {
    s.parse::<IpCidr>().map_err(|_| {
        "expected an address and prefix length, like 192.0.2.2/24 or 2001:db8::2/64".to_string()
    })
}

fn parse_ip(s: &str) -> Result<IpAddress, String> {
    s.parse::<IpAddress>()
        .map_err(|_| "expected an IP address, like 192.0.2.1 or 2001:db8::1".to_string())
}

fn parse_mac(s: &str) -> Result<EthernetAddress, String> {
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

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a port from 1 to 65535".into()),
        Ok(p) => Ok(p),
    }
}

/// A usage error found after parsing: one line, exit 2.
fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("tunhost: error: {msg} (see tunhost serve --help)");
    ExitCode::from(2)
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "tunhost=info,smoltcp=warn",
        (_, 1) => "tunhost=debug,smoltcp=info",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line: clap's first line names the flag and the value at fault.
            let rendered = e.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let line = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("tunhost: error: {line} (see tunhost --help)");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

/// What `DeviceArgs` says, resolved against the embedded defaults.
struct Resolved {
    dev: TunTapConfig,
    addrs: Vec<IpCidr>,
}

fn resolve_device(d: &DeviceArgs) -> Result<Resolved, String> {
    let defaults = d.tun.is_none() && d.tap.is_none();
    let (name, kind) = match (&d.tun, &d.tap) {
        (_, Some(tap)) => (tap.clone(), Kind::Tap),
        (Some(tun), None) => (tun.clone(), Kind::Tun),
        (None, None) => (DEFAULT_DEVICE.to_string(), Kind::Tun),
    };
    if let Some(mtu) = d.mtu {
        tuntap::validate_mtu(&name, kind, mtu).map_err(|e| e.to_string())?;
    }
    let mut dev = TunTapConfig::new(name, kind);
    dev.mtu = d.mtu;
    dev.txqueuelen = d.txqueuelen;
    dev.offload = !d.no_offload;
    dev.peer = d
        .peer
        .or_else(|| defaults.then(|| DEFAULT_PEER.parse().expect("valid constant")));
    let addrs = if d.addr.is_empty() {
        vec![DEFAULT_ADDR.parse().expect("valid constant")]
    } else {
        d.addr.clone()
    };
    if let Some(peer) = dev.peer {
        if addrs.iter().any(|a| a.address() == peer.address()) {
            return Err(format!(
                "--peer {peer} and --addr use the same address: the kernel side and the host need \
                 different addresses in one subnet"
            ));
        }
    }
    Ok(Resolved { dev, addrs })
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.verbose, args.quiet);
    let Resolved { dev, addrs } = match resolve_device(&args.device) {
        Ok(r) => r,
        Err(msg) => return usage(msg),
    };
    let mut services: Vec<ServiceSpec> = Vec::new();
    services.extend(args.echo.iter().map(|&p| ServiceSpec::Echo(p)));
    services.extend(args.udp_echo.iter().map(|&p| ServiceSpec::UdpEcho(p)));
    services.extend(args.discard.iter().map(|&p| ServiceSpec::Discard(p)));
    services.extend(args.chargen.iter().map(|&p| ServiceSpec::Chargen(p)));
    if services.is_empty() {
        services = Config::default_services();
    }
    let config = Config {
        addrs,
        gateway: args.device.gateway,
        mac: args.device.mac,
        tcp: ListenerConfig {
            backlog: args.backlog as usize,
            max_sockets: (args.max_connections as usize).max(args.backlog as usize),
            rx_buffer: args.socket_buffer as usize,
            tx_buffer: args.socket_buffer as usize,
        },
        services,
        seed: args.seed,
        busy_poll: tunhost::smoltcp::time::Duration::from_micros(u64::from(args.busy_poll)),
        ..Config::default()
    };
    if let Err(e) = config.validate() {
        return usage(e);
    }

    let stop = match Stop::new().and_then(|s| s.on_signals().map(|_| s)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut host = match Host::open(&dev, config) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    if !args.quiet {
        eprintln!("{}", banner(&host, &dev));
    }
    if let Err(e) = host.run(&stop) {
        return fail(e);
    }
    let st = host.device().stats();
    log::info!(
        "{} packets in, {} out; {} read errors, {} write errors; {} malformed, {} bad checksums dropped",
        st.rx_packets,
        st.tx_packets,
        st.rx_errors,
        st.tx_errors,
        st.rx_malformed,
        st.rx_bad_checksum
    );
    ExitCode::SUCCESS
}

fn fail(e: tunhost::Error) -> ExitCode {
    eprintln!("tunhost: error: {e}");
    ExitCode::from(1)
}

/// The one line that says what the host is and how to reach it.
fn banner(host: &Host<tunhost::TunTapDevice>, dev: &TunTapConfig) -> String {
    let t = host.device().tuntap();
    let addrs: Vec<String> = host
        .iface()
        .ip_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    let first = host.iface().ip_addrs()[0].address();
    let kernel = match dev.peer {
        Some(p) => format!("kernel side {}", p.address()),
        None => format!(
            "kernel side as configured; e.g. ip addr add {} dev {}",
            example_peer(host.iface().ip_addrs()[0]),
            t.name()
        ),
    };
    let mac = host.mac().map(|m| format!(", MAC {m}")).unwrap_or_default();
    let services: Vec<String> = host
        .config()
        .services
        .iter()
        .map(|s| {
            let (proto, port) = s.port();
            let name = match s {
                ServiceSpec::Echo(_) | ServiceSpec::UdpEcho(_) => "echo",
                ServiceSpec::Discard(_) => "discard",
                ServiceSpec::Chargen(_) => "chargen",
            };
            format!("{name} {proto}/{port}")
        })
        .collect();
    format!(
        "serving {} on {} {} (MTU {}{mac}, offload {}, {kernel}); services: {}; try: ping {first}",
        addrs.join(", "),
        t.kind(),
        t.name(),
        t.mtu(),
        t.offload(),
        services.join(", "),
    )
}

/// An address the kernel side could take in the host's subnet, for the hint in the banner.
fn example_peer(host: IpCidr) -> String {
    match host {
        IpCidr::Ipv4(c) => {
            let a = u32::from(c.address());
            let net = c.network().address();
            let cand = if a == u32::from(net) + 1 {
                a + 1
            } else {
                u32::from(net) + 1
            };
            format!("{}/{}", std::net::Ipv4Addr::from(cand), c.prefix_len())
        }
        IpCidr::Ipv6(c) => {
            let a = u128::from(c.address());
            let cand = if a & 0xffff == 1 {
                a + 1
            } else {
                (a & !0xffff) | 1
            };
            format!("{}/{}", std::net::Ipv6Addr::from(cand), c.prefix_len())
        }
    }
}
