//! `tunhost replay`: a capture through the host, offline, on a virtual clock.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tunhost::Config;
use tunhost::pcap::{Capture, Timestamps, TraceConfig};
use tunhost::replay::ReplayConfig;
use tunhost::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

use crate::args::{LogArgs, ServiceArgs, TraceArgs, colons, parse_cidr, parse_ip, parse_mac};
use crate::badlink::BadLinkArgs;
use crate::{fail, init_logging, usage};

pub(crate) const REPLAY_AFTER_HELP: &str = "\
The host runs on a virtual clock that follows the capture's timestamps: no device, no root, and
the same capture with the same --seed (default 0) always gives the same --pcap output, byte for
byte. TCP sessions replay faithfully when --seed is the seed the live host had. A run on a bad
link (--drop, --delay, ...) replays with the same fault flags and --seed: the packets of its
trace, as the kernel sent them, get the fates they had live.

Examples:
  tunhost replay captures/ping.pcapng --addr 192.0.2.2/24 --pcap out.pcapng
  sudo tcpdump -i tun0 -w live.pcap & ...; tunhost replay live.pcap --addr 192.0.2.2/24
  tunhost replay captures/tap-arp-ping.pcapng --addr 198.51.100.2/24 --pcap - | tshark -r -";

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// The capture to replay: pcap or pcapng with Ethernet, Raw IP or Linux cooked (SLL, SLL2)
    /// packets, e.g. from `tcpdump -i tun0 -w IN.pcap` or `tunhost serve --pcap IN.pcapng`.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// The host's address and prefix, as it was live, e.g. 192.0.2.2/24 (repeat for a second
    /// address). Packets to it are fed to the host; the rest is counted as ignored.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr, required = true, help_heading = "Addresses")]
    addr: Vec<IpCidr>,

    /// The host's MAC in an Ethernet capture. [default: learned from the capture]
    #[arg(long, value_name = "MAC", value_parser = parse_mac, help_heading = "Addresses")]
    mac: Option<EthernetAddress>,

    /// Default gateway of the host, as live.
    #[arg(long, value_name = "IP", value_parser = parse_ip, help_heading = "Addresses")]
    gateway: Option<IpAddress>,

    /// The device's MTU, as live.
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = clap::value_parser!(u32).range(68..=65535), help_heading = "Device")]
    mtu: u32,

    #[command(flatten)]
    services: ServiceArgs,

    #[command(flatten)]
    trace: TraceArgs,

    #[command(flatten)]
    link: BadLinkArgs,

    #[command(flatten)]
    log: LogArgs,
}

pub(crate) fn replay(args: ReplayArgs) -> ExitCode {
    init_logging(args.log.verbose, args.log.quiet);
    let path = args.input.display().to_string();
    let bytes = match std::fs::read(&args.input) {
        Ok(b) => b,
        Err(source) => {
            return fail(tunhost::Error::File {
                path,
                op: "read",
                source,
            });
        }
    };
    let capture = match Capture::parse(&bytes) {
        Ok(c) => c,
        Err(source) => return fail(tunhost::Error::Capture { path, source }),
    };
    drop(bytes);
    let host = Config {
        addrs: args.addr.clone(),
        gateway: args.gateway,
        mac: args.mac,
        seed: args.services.seed,
        ..Config::default()
    };
    let mut services = args.services.config();
    services.tcp.tcp = args.link.tcp();
    let faults = match args.link.faults(Some(args.services.seed.unwrap_or(0))) {
        Ok(f) => f,
        Err(msg) => return usage(msg),
    };
    let config = ReplayConfig {
        mtu: args.mtu as usize,
        faults,
        ..ReplayConfig::new(host, services)
    };
    if let Err(e) = config.validate() {
        return usage(e);
    }
    let seed = config.host.seed.unwrap_or(0);
    let addrs: Vec<String> = config.host.addrs.iter().map(|a| a.to_string()).collect();
    let out = match args.trace.spec() {
        Ok(None) => None,
        Ok(Some(spec)) => match spec.open() {
            Ok(file) => Some((file, spec.label())),
            Err(e) => return fail(e),
        },
        Err(msg) => return fail(msg),
    };
    let label = out.as_ref().map(|(_, l)| l.clone());
    let result = match out {
        None => tunhost::replay::replay::<File>(&capture, &config, None),
        Some((file, label)) => {
            let trace = TraceConfig {
                interface: "replay".into(),
                label,
                timestamps: Timestamps::Clock,
                ..args.trace.config()
            };
            tunhost::replay::replay(&capture, &config, Some((file, trace)))
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
