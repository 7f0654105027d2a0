//! `tunhost`: the command-line shell over the library. It parses arguments, builds a `Config`,
//! calls the library, and maps errors to one line on stderr and an exit code (2: usage, 1: the
//! run failed).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tunhost::capture::Capture;
use tunhost::host::{DEFAULT_ADDR, DEFAULT_DEVICE, DEFAULT_PEER};
use tunhost::replay::ReplayConfig;
use tunhost::smoltcp::phy::Device;
use tunhost::smoltcp::time::Duration;
use tunhost::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use tunhost::trace::{self, Pcap, Timestamps, TraceConfig, TraceStats};
use tunhost::{
    Config, Host, Housekeeping, HttpConfig, Kind, ListenerConfig, ServiceSpec, Stop, SystemClock,
    TunTap, TunTapConfig, TunTapDevice, client, tuntap,
};

const AFTER_HELP: &str = "\
Opening or creating a TUN/TAP device needs root or CAP_NET_ADMIN (e.g. `sudo tunhost serve`).

Examples:
  sudo tunhost serve
      TUN device tunhost0, host 192.0.2.2/24, kernel side 192.0.2.1/24, echo 7 (TCP+UDP),
      discard 9, chargen 19, HTTP 80 (status page). Then: ping 192.0.2.2; curl 192.0.2.2
  sudo tunhost serve --http 8080 --root ./www
      Serve the files below ./www over HTTP/1.1 on port 8080: curl http://192.0.2.2:8080/
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
    /// Play a capture through the host offline, on a virtual clock, and trace its replies.
    #[command(after_help = REPLAY_AFTER_HELP)]
    Replay(ReplayArgs),
    /// Send ICMP echo requests from the userspace host, like ping(8).
    #[command(after_help = PING_HELP)]
    Ping(PingArgs),
    /// HTTP/1.1 GET from the userspace host; the body goes to stdout or -o FILE.
    #[command(after_help = GET_HELP)]
    Get(GetArgs),
}

const PING_HELP: &str = "\
Exit status: 0 if any reply came, 1 if none, 2 on a usage error.

Examples:
  sudo tunhost ping -c 3 192.0.2.1
      From 192.0.2.2 on a new TUN device tunhost0 whose kernel side is 192.0.2.1/24.
  sudo ip tuntap add dev tun9 mode tun && sudo ip addr add 198.51.100.1/24 dev tun9 \\
    && sudo ip link set tun9 up && sudo tunhost ping --tun tun9 --addr 198.51.100.2/24 198.51.100.1
      On a device the kernel side configured itself.";

const GET_HELP: &str = "\
Exit status: 0 on a 2xx response, 1 on any other status or a failure, 2 on a usage error.

Examples:
  python3 -m http.server --bind 192.0.2.1 8000 &   # a kernel-side server
  sudo tunhost get -o f.bin http://192.0.2.1:8000/f.bin
  sudo tunhost get --tun tun9 --addr 198.51.100.2/24 -v http://198.51.100.1:8000/";

/// `-v`/`-q` of the subcommands that run a host as a server.
#[derive(Args, Debug)]
struct LogArgs {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides, e.g. RUST_LOG=smoltcp=trace.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct ClientLog {
    /// Log the stack's workings on stderr (twice for more); RUST_LOG overrides.
    #[arg(long = "log", action = clap::ArgAction::Count)]
    log: u8,
}

#[derive(Args, Debug)]
struct PingArgs {
    #[command(flatten)]
    device: DeviceArgs,

    /// Stop after sending COUNT requests (and waiting for their replies). [default: until Ctrl-C]
    #[arg(short = 'c', long = "count", value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    count: Option<u32>,

    /// Seconds between requests, e.g. 0.2.
    #[arg(short = 'i', long = "interval", value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_secs)]
    interval: f64,

    /// Seconds to wait for replies after the last request.
    #[arg(short = 'W', long = "timeout", value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_secs)]
    timeout: f64,

    /// Bytes of payload per request.
    #[arg(short = 's', long = "size", value_name = "BYTES", default_value_t = 56, value_parser = clap::value_parser!(u16).range(0..=1400))]
    size: u16,

    #[command(flatten)]
    log: ClientLog,

    #[command(flatten)]
    trace: TraceArgs,

    /// The address to ping, e.g. 192.0.2.1 (no names: tunhost has no DNS).
    #[arg(value_name = "HOST", value_parser = parse_ip)]
    host: IpAddress,
}

#[derive(Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    device: DeviceArgs,

    /// Write the body to FILE instead of stdout (created only for a 2xx response).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Print the status line and headers to stderr.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,

    /// Give up after SECONDS without progress.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = parse_secs)]
    timeout: f64,

    #[command(flatten)]
    log: ClientLog,

    #[command(flatten)]
    trace: TraceArgs,

    /// The URL, e.g. http://192.0.2.1:8000/f.bin (the host must be an IP address).
    #[arg(value_name = "URL")]
    url: String,
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

    #[command(flatten)]
    services: ServiceArgs,

    #[command(flatten)]
    trace: TraceArgs,

    /// After a packet, keep checking the device this many microseconds before sleeping, e.g. 0
    /// to always sleep. Saves a wake-up per exchange (latency, request/response rates) at the
    /// cost of that much CPU after each burst; an idle host never spins.
    #[arg(long, value_name = "USEC", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    busy_poll: u32,

    #[command(flatten)]
    log: LogArgs,
}

/// The services and their limits: the same for `serve` and `replay`.
#[derive(Args, Debug)]
struct ServiceArgs {
    /// TCP connections that can wait for the host per port (sockets kept in LISTEN), e.g. 256.
    /// [default: 64, and 128 on HTTP ports]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    backlog: Option<u32>,

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

    /// Serve HTTP/1.1 on PORT, e.g. --http 8080: the files below --root, or else a status page
    /// of the host.
    #[arg(long, value_name = "PORT", value_parser = parse_port)]
    http: Vec<u16>,

    /// Serve the files below DIR on the --http ports (port 80 if none is given).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Close an HTTP connection that makes no progress for SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_secs)]
    http_idle_timeout: f64,

    /// Seed smoltcp's randomness (TCP sequence numbers, MAC) for reproducible runs.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

/// `--pcap` and its options, for every subcommand that runs a host.
#[derive(Args, Debug)]
#[command(next_help_heading = "Tracing")]
struct TraceArgs {
    /// Record every packet the host reads from or writes to the device in FILE, pcapng with
    /// direction flags unless --pcap-format says otherwise; `-` streams it to stdout (e.g.
    /// `| tshark -r -`). Written in the background of the loop, flushed every 200 ms and on exit.
    #[arg(long, value_name = "FILE")]
    pcap: Option<String>,

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
    /// Create the trace file (or take stdout), before any device is touched.
    fn open(&self) -> Result<Option<(File, String)>, tunhost::Error> {
        let Some(path) = &self.pcap else {
            return Ok(None);
        };
        if path == "-" {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(tunhost::Error::Config(
                    "--pcap - writes a binary trace to stdout, which is a terminal: redirect it \
                     (> trace.pcapng) or pipe it (| tshark -r -)"
                        .into(),
                ));
            }
            let fd = stdout
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| tunhost::Error::File {
                    path: "stdout".into(),
                    op: "duplicate",
                    source: e,
                })?;
            return Ok(Some((File::from(fd), "stdout".into())));
        }
        let file = File::create(path).map_err(|e| tunhost::Error::File {
            path: path.clone(),
            op: "create the trace file",
            source: e,
        })?;
        Ok(Some((file, path.clone())))
    }

    fn config(&self, interface: &str, label: &str, timestamps: Timestamps) -> TraceConfig {
        TraceConfig {
            format: match self.pcap_format {
                PcapFormat::Pcapng => trace::Format::PcapNg,
                PcapFormat::Pcap => trace::Format::Pcap,
            },
            snaplen: self.snaplen,
            timestamps,
            ..TraceConfig::new(interface, label)
        }
    }
}

/// Say how the trace went, once the host has stopped.
fn report_trace(label: &str, result: std::io::Result<()>, stats: TraceStats) {
    log::info!(
        "trace {label}: {} packets ({} read from the device, {} written to it)",
        stats.inbound + stats.outbound,
        stats.inbound,
        stats.outbound
    );
    if stats.lost > 0 || result.is_err() {
        log::error!(
            "trace {label}: {} packets could not be written to the trace (the first write \
             error was reported when it happened)",
            stats.lost
        );
    }
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// The capture to replay: pcap or pcapng with Ethernet, Raw IP or Linux cooked (SLL, SLL2)
    /// packets, e.g. from `tcpdump -i tun0 -w IN.pcap` or `tunhost serve --pcap IN.pcapng`.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// The host's address and prefix, as it was live, e.g. 192.0.2.2/24 (repeat for a second
    /// address). Packets to it are fed to the host; the rest is counted as ignored.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr, required = true)]
    addr: Vec<IpCidr>,

    /// The host's MAC in an Ethernet capture. [default: learned from the capture]
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    mac: Option<EthernetAddress>,

    /// Default gateway of the host, as live.
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    gateway: Option<IpAddress>,

    /// The device's MTU, as live.
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = clap::value_parser!(u32).range(68..=65535))]
    mtu: u32,

    #[command(flatten)]
    services: ServiceArgs,

    #[command(flatten)]
    trace: TraceArgs,

    #[command(flatten)]
    log: LogArgs,
}

const REPLAY_AFTER_HELP: &str = "\
The host runs on a virtual clock that follows the capture's timestamps: no device, no root, and
the same capture with the same --seed (default 0) always gives the same --pcap output, byte for
byte. TCP sessions replay faithfully when --seed is the seed the live host had.

Examples:
  tunhost replay captures/ping.pcapng --addr 192.0.2.2/24 --pcap out.pcapng
  sudo tcpdump -i tun0 -w live.pcap & ...; tunhost replay live.pcap --addr 192.0.2.2/24
  tunhost replay captures/tap-arp-ping.pcapng --addr 198.51.100.2/24 --pcap - | tshark -r -";

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

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.001..=86400.0).contains(&v) => Ok(v),
        _ => Err("expected seconds from 0.001 to 86400, e.g. 0.5".into()),
    }
}

fn duration(secs: f64) -> Duration {
    Duration::from_micros((secs * 1e6).round() as u64)
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a port from 1 to 65535".into()),
        Ok(p) => Ok(p),
    }
}

/// A usage error found after parsing: one line, exit 2.
fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("tunhost: error: {msg} (see tunhost --help)");
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
            // "required arguments were not provided:" lists them on the next lines.
            let line = if line.ends_with(':') {
                let more: Vec<&str> = rendered
                    .lines()
                    .skip_while(|l| !l.ends_with(':'))
                    .skip(1)
                    .take_while(|l| l.starts_with("  "))
                    .map(str::trim)
                    .collect();
                format!("{line} {}", more.join(", "))
            } else {
                line.to_string()
            };
            eprintln!("tunhost: error: {line} (see tunhost --help)");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Replay(args) => replay(args),
        Command::Ping(args) => ping(args),
        Command::Get(args) => get(args),
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

impl ServiceArgs {
    /// The host's `Config` with these services around `addrs`.
    fn config(
        &self,
        addrs: Vec<IpCidr>,
        gateway: Option<IpAddress>,
        mac: Option<EthernetAddress>,
    ) -> Config {
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
            services = Config::default_services();
            services.push(ServiceSpec::Http(80));
        }
        let backlog = self
            .backlog
            .map_or(ListenerConfig::default().backlog, |b| b as usize);
        Config {
            addrs,
            gateway,
            mac,
            tcp: ListenerConfig {
                backlog,
                max_sockets: (self.max_connections as usize).max(backlog),
                rx_buffer: self.socket_buffer as usize,
                tx_buffer: self.socket_buffer as usize,
            },
            services,
            http: HttpConfig {
                root: self.root.clone(),
                idle_timeout: duration(self.http_idle_timeout),
                backlog: self
                    .backlog
                    .map_or(tunhost::services::http::DEFAULT_BACKLOG, |b| b as usize),
                epoch: None,
            },
            seed: self.seed,
            ..Config::default()
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log.verbose, args.log.quiet);
    let Resolved { dev, addrs } = match resolve_device(&args.device) {
        Ok(r) => r,
        Err(msg) => return usage(msg),
    };
    let mut config = args
        .services
        .config(addrs, args.device.gateway, args.device.mac);
    config.busy_poll = tunhost::smoltcp::time::Duration::from_micros(u64::from(args.busy_poll));
    if let Err(e) = config.validate() {
        return usage(e);
    }
    let quiet = args.log.quiet;
    on_device(&dev, config, &args.trace, Live { dev: &dev, quiet })
}

/// `serve`'s body: banner, loop until stopped, counters.
struct Live<'a> {
    dev: &'a TunTapConfig,
    quiet: bool,
}

impl OnHost for Live<'_> {
    fn run<D: LiveDevice>(self, host: &mut Host<D>, stop: &Stop) -> ExitCode {
        live(host, self.dev, self.quiet, stop)
    }
}

/// What a subcommand does with its host once the device is open.
trait OnHost {
    fn run<D: LiveDevice>(self, host: &mut Host<D>, stop: &Stop) -> ExitCode;
}

/// Open the device `dev` (behind the tracer when `--pcap` says so), build a host on it, hand it
/// to `body`, and finish the trace. Signals stop the host from the moment the device is open.
fn on_device(dev: &TunTapConfig, config: Config, trace: &TraceArgs, body: impl OnHost) -> ExitCode {
    let trace_out = match trace.open() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let stop = match Stop::new().and_then(|s| s.on_signals().map(|_| s)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let device = match TunTap::open(dev) {
        Ok(t) => TunTapDevice::new(t),
        Err(e) => {
            // Leave no empty trace behind: the file was created only for this run.
            if let (Some(path), Some(_)) = (trace.pcap.as_deref(), &trace_out) {
                if path != "-" {
                    let _ = std::fs::remove_file(path);
                }
            }
            return fail(e);
        }
    };
    let Some((file, label)) = trace_out else {
        return match Host::new(device, SystemClock::new(), config) {
            Ok(mut host) => body.run(&mut host, &stop),
            Err(e) => fail(e),
        };
    };
    let trace_config = trace.config(device.tuntap().name(), &label, Timestamps::System);
    let device = match Pcap::new(device, file, &trace_config) {
        Ok(d) => d,
        Err(e) => {
            return fail(tunhost::Error::File {
                path: label,
                op: "write the trace header to",
                source: e,
            });
        }
    };
    let mut host = match Host::new(device, SystemClock::new(), config) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    log::info!("tracing every packet of the device to {label}");
    let code = body.run(&mut host, &stop);
    let (_, result, _, stats) = host.into_device().finish();
    report_trace(&label, result, stats);
    code
}

/// What `serve` needs of its device: the live loop's needs, and the TUN/TAP device under it.
trait LiveDevice: Device + AsFd + Housekeeping {
    fn tuntap_device(&self) -> &TunTapDevice;
}

impl LiveDevice for TunTapDevice {
    fn tuntap_device(&self) -> &TunTapDevice {
        self
    }
}

impl LiveDevice for Pcap<TunTapDevice, File> {
    fn tuntap_device(&self) -> &TunTapDevice {
        self.inner()
    }
}

/// Print the banner, run until stopped, log the device's counters.
fn live<D: LiveDevice>(
    host: &mut Host<D>,
    dev: &TunTapConfig,
    quiet: bool,
    stop: &Stop,
) -> ExitCode {
    // What Host::open does for a bare TUN/TAP device: counters and name for the status page.
    host.set_counters(|d| d.tuntap_device().stats());
    let t = host.device().tuntap_device().tuntap();
    let name = format!("{} {}", t.kind(), t.name());
    host.status().update(|s| s.device = name);
    if !quiet {
        eprintln!("{}", banner(host, dev));
    }
    if let Err(e) = host.run(stop) {
        return fail(e);
    }
    let st = host.device().tuntap_device().stats();
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

fn replay(args: ReplayArgs) -> ExitCode {
    init_logging(args.log.verbose, args.log.quiet);
    let path = args.input.display().to_string();
    let bytes = match std::fs::read(&args.input) {
        Ok(b) => b,
        Err(e) => {
            return fail(tunhost::Error::File {
                path,
                op: "read",
                source: e,
            });
        }
    };
    let capture = match Capture::parse(&bytes) {
        Ok(c) => c,
        Err(problem) => return fail(tunhost::Error::Capture { path, problem }),
    };
    drop(bytes);
    let config = args.services.config(args.addr, args.gateway, args.mac);
    if let Err(e) = config.validate() {
        return usage(e);
    }
    let seed = config.seed.unwrap_or(0);
    let addrs: Vec<String> = config.addrs.iter().map(|a| a.to_string()).collect();
    let replay_config = ReplayConfig {
        mtu: args.mtu as usize,
        ..ReplayConfig::new(config)
    };
    let out = match args.trace.open() {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let label = out.as_ref().map(|(_, l)| l.clone());
    let result = match out {
        None => tunhost::replay::replay::<File>(&capture, &replay_config, None),
        Some((file, label)) => {
            let trace_config = args.trace.config("replay", &label, Timestamps::Clock);
            tunhost::replay::replay(&capture, &replay_config, Some((file, trace_config)))
        }
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let host = match report.mac {
        Some(mac) => format!("Ethernet host {} (MAC {})", addrs.join(", "), colons(mac)),
        None => format!("IP host {}", addrs.join(", ")),
    };
    let mut text = format!("replay {path}: {host}, seed {seed}\n  {}", report.summary);
    if let (Some(label), Some(st)) = (&label, report.trace) {
        text += &format!(
            "\n  trace: {label} ({} packets fed in, {} written out)",
            st.inbound, st.outbound
        );
    }
    // The summary goes where the trace does not.
    if label.as_deref() == Some("stdout") {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    ExitCode::SUCCESS
}

/// A MAC as `--mac` takes it and `ip neigh` shows it (smoltcp's Display uses dashes).
fn colons(mac: EthernetAddress) -> String {
    let b = mac.as_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

fn fail(e: tunhost::Error) -> ExitCode {
    eprintln!("tunhost: error: {e}");
    ExitCode::from(1)
}

/// The one line that says what the host is and how to reach it.
fn banner<D: LiveDevice>(host: &Host<D>, dev: &TunTapConfig) -> String {
    let t = host.device().tuntap_device().tuntap();
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
    let mac = host
        .mac()
        .map(|m| format!(", MAC {}", colons(m)))
        .unwrap_or_default();
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
                ServiceSpec::Http(_) => "http",
            };
            format!("{name} {proto}/{port}")
        })
        .collect();
    let curl = host
        .config()
        .services
        .iter()
        .find_map(|s| match s {
            ServiceSpec::Http(p) => Some(*p),
            _ => None,
        })
        .map(|p| {
            let port = if p == 80 {
                String::new()
            } else {
                format!(":{p}")
            };
            match first {
                IpAddress::Ipv6(a) => format!(", curl http://[{a}]{port}/"),
                IpAddress::Ipv4(a) => format!(", curl http://{a}{port}/"),
            }
        })
        .unwrap_or_default();
    format!(
        "serving {} on {} {} (MTU {}{mac}, offload {}, {kernel}); services: {}; try: ping {first}{curl}",
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

/// Open the device for a client command and build a host with no services on it.
/// Logging, device and host configuration of the client subcommands (no services).
fn client_setup(
    d: &DeviceArgs,
    log: u8,
    trace: &TraceArgs,
) -> Result<(TunTapConfig, Config), ExitCode> {
    let default = match log {
        0 => "tunhost=warn,smoltcp=error",
        1 => "tunhost=debug,smoltcp=info",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
    if trace.pcap.as_deref() == Some("-") {
        return Err(usage(
            "--pcap - is for serve: ping and get print on stdout; give --pcap a file name",
        ));
    }
    let Resolved { dev, addrs } = resolve_device(d).map_err(usage)?;
    let config = Config {
        addrs,
        gateway: d.gateway,
        mac: d.mac,
        services: Vec::new(),
        ..Config::default()
    };
    config.validate().map_err(usage)?;
    Ok((dev, config))
}

fn ping(args: PingArgs) -> ExitCode {
    let (dev, config) = match client_setup(&args.device, args.log.log, &args.trace) {
        Ok(c) => c,
        Err(code) => return code,
    };
    on_device(&dev, config, &args.trace, Ping(&args))
}

/// `ping`'s body.
struct Ping<'a>(&'a PingArgs);

impl OnHost for Ping<'_> {
    fn run<D: LiveDevice>(self, host: &mut Host<D>, stop: &Stop) -> ExitCode {
        ping_on(host, self.0, stop)
    }
}

fn ping_on<D: LiveDevice>(host: &mut Host<D>, args: &PingArgs, stop: &Stop) -> ExitCode {
    let mut cfg = client::PingConfig::new(args.host);
    cfg.count = args.count;
    cfg.interval = duration(args.interval);
    cfg.timeout = duration(args.timeout);
    cfg.size = usize::from(args.size);
    let from = host.iface().ip_addrs()[0].address();
    println!(
        "PING {} from {from} {}: {} data bytes",
        args.host,
        host.device().tuntap_device().tuntap().name(),
        args.size
    );
    let summary = client::ping(host, cfg, Some(stop), |r| {
        println!(
            "{} bytes from {}: icmp_seq={} time={:.3} ms",
            r.bytes,
            r.from,
            r.seq,
            r.rtt.total_micros() as f64 / 1000.0
        );
    });
    let summary = match summary {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    println!("\n--- {} ping statistics ---", args.host);
    println!("{}", summary.counts_line());
    if let Some(rtt) = summary.rtt_line() {
        println!("{rtt}");
    }
    if summary.received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn get(args: GetArgs) -> ExitCode {
    let url = match client::Url::parse(&args.url) {
        Ok(u) => u,
        Err(e) => return usage(e),
    };
    let (dev, config) = match client_setup(&args.device, args.log.log, &args.trace) {
        Ok(c) => c,
        Err(code) => return code,
    };
    on_device(&dev, config, &args.trace, Get(&args, &url))
}

/// `get`'s body.
struct Get<'a>(&'a GetArgs, &'a client::Url);

impl OnHost for Get<'_> {
    fn run<D: LiveDevice>(self, host: &mut Host<D>, stop: &Stop) -> ExitCode {
        get_on(host, self.0, self.1, stop)
    }
}

fn get_on<D: LiveDevice>(
    host: &mut Host<D>,
    args: &GetArgs,
    url: &client::Url,
    stop: &Stop,
) -> ExitCode {
    let out_name = args
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    // Opened by the head callback (2xx only), written by the body callback.
    let out: std::cell::RefCell<Option<Box<dyn Write>>> = Default::default();
    let write_err = |e: std::io::Error| tunhost::Error::File {
        path: out_name.clone(),
        op: "write",
        source: e,
    };
    let options = client::http::GetOptions {
        timeout: duration(args.timeout),
        local_port: None,
    };
    let result = client::get(
        host,
        url,
        options,
        Some(stop),
        |r| {
            if args.verbose {
                eprintln!("< HTTP/1.{} {} {}", r.minor_version, r.status, r.reason);
                for (n, v) in &r.headers {
                    eprintln!("< {n}: {v}");
                }
            }
            if r.is_success() {
                *out.borrow_mut() = Some(match &args.output {
                    Some(p) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(p).map_err(|e| tunhost::Error::File {
                            path: p.display().to_string(),
                            op: "create",
                            source: e,
                        })?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout())),
                });
            }
            Ok(())
        },
        |b| match out.borrow_mut().as_mut() {
            Some(w) => w.write_all(b).map_err(write_err),
            None => Ok(()),
        },
    );
    let flushed = out
        .borrow_mut()
        .as_mut()
        .map_or(Ok(()), |w| w.flush().map_err(write_err));
    match (result, flushed) {
        (Err(e), _) | (Ok(_), Err(e)) => fail(e),
        (Ok(_), Ok(())) => ExitCode::SUCCESS,
    }
}
