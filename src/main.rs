//! `tunhost`: the command-line shell over the library. It parses arguments, builds a `Config`,
//! calls the library, and maps errors to one line on stderr and an exit code (2: usage, 1: the
//! run failed).

use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tunhost::capture::Capture;
use tunhost::host::{DEFAULT_ADDR, DEFAULT_DEVICE, DEFAULT_PEER};
use tunhost::replay::ReplayConfig;
use tunhost::smoltcp::phy::Device;
use tunhost::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use tunhost::trace::{self, Pcap, Timestamps, TraceConfig, TraceStats};
use tunhost::{
    Config, Host, Housekeeping, Kind, ListenerConfig, ServiceSpec, Stop, SystemClock, TunTap,
    TunTapConfig, TunTapDevice, tuntap,
};

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
    /// Play a capture through the host offline, on a virtual clock, and trace its replies.
    #[command(after_help = REPLAY_AFTER_HELP)]
    Replay(ReplayArgs),
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
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    device: DeviceArgs,

    #[command(flatten)]
    services: ServiceArgs,

    #[command(flatten)]
    trace: TraceArgs,

    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides, e.g. RUST_LOG=smoltcp=trace.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// The services and their limits: the same for `serve` and `replay`.
#[derive(Args, Debug)]
struct ServiceArgs {
    /// TCP connections that can wait for the host per port (sockets kept in LISTEN), e.g. 128.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    backlog: u32,

    /// Most TCP sockets per service port (listening + open + closing), e.g. 1024. Bounds memory:
    /// each socket has a 64 KiB receive and a 64 KiB transmit buffer.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65535))]
    max_connections: u32,

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

    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides, e.g. RUST_LOG=smoltcp=trace.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long)]
    quiet: bool,
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
        if services.is_empty() {
            services = Config::default_services();
        }
        Config {
            addrs,
            gateway,
            mac,
            tcp: ListenerConfig {
                backlog: self.backlog as usize,
                max_sockets: (self.max_connections as usize).max(self.backlog as usize),
                ..ListenerConfig::default()
            },
            services,
            seed: self.seed,
            ..Config::default()
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.verbose, args.quiet);
    let Resolved { dev, addrs } = match resolve_device(&args.device) {
        Ok(r) => r,
        Err(msg) => return usage(msg),
    };
    let config = args
        .services
        .config(addrs, args.device.gateway, args.device.mac);
    if let Err(e) = config.validate() {
        return usage(e);
    }
    let trace_out = match args.trace.open() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };

    let stop = match Stop::new().and_then(|s| s.on_signals().map(|_| s)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let device = match TunTap::open(&dev) {
        Ok(t) => TunTapDevice::new(t),
        Err(e) => return fail(e),
    };
    let Some((file, label)) = trace_out else {
        return match Host::new(device, SystemClock::new(), config) {
            Ok(mut host) => live(&mut host, &dev, args.quiet, &stop),
            Err(e) => fail(e),
        };
    };
    let trace_config = args
        .trace
        .config(device.tuntap().name(), &label, Timestamps::System);
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
    let code = live(&mut host, &dev, args.quiet, &stop);
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
    if !quiet {
        eprintln!("{}", banner(host, dev));
    }
    if let Err(e) = host.run(stop) {
        return fail(e);
    }
    let st = host.device().tuntap_device().stats();
    log::info!(
        "{} packets in, {} out; {} read errors, {} write errors",
        st.rx_packets,
        st.tx_packets,
        st.rx_errors,
        st.tx_errors
    );
    ExitCode::SUCCESS
}

fn replay(args: ReplayArgs) -> ExitCode {
    init_logging(args.verbose, args.quiet);
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
        Some(mac) => format!("Ethernet host {} (MAC {mac})", addrs.join(", ")),
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
        "serving {} on {} {} (MTU {}{mac}, {kernel}); services: {}; try: ping {first}",
        addrs.join(", "),
        t.kind(),
        t.name(),
        t.mtu(),
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
