//! `tunhost ping` and `tunhost get`: the userspace host as a client of the kernel side.

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tunhost::client::{self, Url, http::OutputError};
use tunhost::live::{Live, LiveHost};
use tunhost::smoltcp::wire::IpAddress;

use crate::args::{DeviceArgs, TraceArgs, duration, parse_ip, parse_secs};
use crate::badlink::BadLinkArgs;
use crate::{fail, finish_trace, usage};

pub(crate) const PING_HELP: &str = "\
Exit status: 0 if any reply came, 1 if none, 2 on a usage error.

Examples:
  sudo tunhost ping -c 3 192.0.2.1
      From 192.0.2.2 on a new TUN device tunhost0 whose kernel side is 192.0.2.1/24.
  sudo ip tuntap add dev tun9 mode tun && sudo ip addr add 198.51.100.1/24 dev tun9 \\
    && sudo ip link set tun9 up && sudo tunhost ping --tun tun9 --addr 198.51.100.2/24 198.51.100.1
      On a device the kernel side configured itself.";

pub(crate) const GET_HELP: &str = "\
Exit status: 0 on a 2xx response, 1 on any other status or a failure, 2 on a usage error.

Examples:
  python3 -m http.server --bind 192.0.2.1 8000 &   # a kernel-side server
  sudo tunhost get -o f.bin http://192.0.2.1:8000/f.bin
  sudo tunhost get --tun tun9 --addr 198.51.100.2/24 -v http://198.51.100.1:8000/";

/// What the client subcommands share: the device, logging and tracing.
#[derive(Args, Debug)]
pub(crate) struct ClientCommon {
    #[command(flatten)]
    device: DeviceArgs,

    /// Log the stack's workings on stderr (twice for more); RUST_LOG overrides.
    #[arg(long = "log", action = clap::ArgAction::Count, help_heading = "Logging")]
    log: u8,

    #[command(flatten)]
    trace: TraceArgs,

    #[command(flatten)]
    link: BadLinkArgs,

    /// Seed the faults of a bad link and smoltcp's randomness (TCP sequence numbers, MAC), for
    /// a run that can be repeated. For tests and replay only.
    #[arg(long, value_name = "N", help_heading = "A bad link")]
    seed: Option<u64>,
}

#[derive(Args, Debug)]
pub(crate) struct PingArgs {
    #[command(flatten)]
    common: ClientCommon,

    /// Stop after sending COUNT requests (and waiting for their replies). [default: until Ctrl-C]
    #[arg(short = 'c', long = "count", value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Ping")]
    count: Option<u32>,

    /// Seconds between requests, e.g. 0.2.
    #[arg(short = 'i', long = "interval", value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_secs, help_heading = "Ping")]
    interval: f64,

    /// Seconds to wait for replies after the last request.
    #[arg(short = 'W', long = "timeout", value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_secs, help_heading = "Ping")]
    timeout: f64,

    /// Bytes of payload per request.
    #[arg(short = 's', long = "size", value_name = "BYTES", default_value_t = 56, value_parser = clap::value_parser!(u16).range(0..=1400), help_heading = "Ping")]
    size: u16,

    /// The address to ping, e.g. 192.0.2.1 (no names: tunhost has no DNS).
    #[arg(value_name = "HOST", value_parser = parse_ip)]
    host: IpAddress,
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    common: ClientCommon,

    /// Write the body to FILE instead of stdout (created only for a 2xx response).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        help_heading = "Request"
    )]
    output: Option<PathBuf>,

    /// Print the status line and headers to stderr.
    #[arg(short = 'v', long = "verbose", help_heading = "Request")]
    verbose: bool,

    /// Give up after SECONDS without progress.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = parse_secs, help_heading = "Request")]
    timeout: f64,

    /// The URL, e.g. http://192.0.2.1:8000/f.bin (the host must be an IP address).
    #[arg(value_name = "URL")]
    url: String,
}

impl ClientCommon {
    /// Logging, then a live host with no services on the device.
    fn open(&self) -> Result<LiveHost, ExitCode> {
        let default = match self.log {
            0 => "tunhost=warn,smoltcp=error",
            1 => "tunhost=debug,smoltcp=info",
            _ => "trace",
        };
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .format_timestamp_millis()
            .init();
        if self.trace.pcap.as_deref() == Some("-") {
            return Err(usage(
                "--pcap - is for serve: ping and get print on stdout; give --pcap a file name",
            ));
        }
        let resolved = self.device.resolve()?;
        if let Some(moved) = &resolved.moved {
            log::warn!("{moved}: the host is {}", resolved.addrs[0]);
        }
        let mut live = Live::new(resolved.dev);
        live.host = tunhost::Config {
            seed: self.seed,
            ..self.device.host_config(resolved.addrs)
        };
        live.faults = self.link.faults(self.seed).map_err(usage)?;
        live.validate().map_err(usage)?;
        live.trace = self.trace.spec().map_err(fail)?;
        live.open().map_err(fail)
    }
}

pub(crate) fn ping(args: PingArgs) -> ExitCode {
    let mut live = match args.common.open() {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut cfg = client::PingConfig::new(args.host);
    cfg.count = args.count;
    cfg.interval = duration(args.interval);
    cfg.timeout = duration(args.timeout);
    cfg.size = usize::from(args.size);
    let from = live.host().iface().ip_addrs()[0].address();
    println!(
        "PING {} from {from} {}: {} data bytes",
        args.host,
        live.tuntap().tuntap().name(),
        args.size
    );
    let (host, stop) = live.parts();
    let summary = client::ping(host, cfg, Some(stop), |r| {
        println!(
            "{} bytes from {}: icmp_seq={} time={:.3} ms",
            r.bytes,
            r.from,
            r.seq,
            r.rtt.total_micros() as f64 / 1000.0
        );
    });
    finish_trace(live);
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

pub(crate) fn get(args: GetArgs) -> ExitCode {
    let url = match Url::parse(&args.url) {
        Ok(u) => u,
        Err(e) => return usage(e),
    };
    let mut live = match args.common.open() {
        Ok(l) => l,
        Err(code) => return code,
    };
    let out_name = args
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    // Opened by the head callback (2xx only), written by the body callback.
    let out: RefCell<Option<Box<dyn Write>>> = Default::default();
    let write_err = |e: std::io::Error| -> OutputError {
        Box::new(tunhost::Error::File {
            path: out_name.clone(),
            op: "write",
            source: e,
        })
    };
    let options = client::http::GetOptions {
        timeout: duration(args.timeout),
        local_port: None,
        tcp: args.common.link.tcp(),
    };
    let (host, stop) = live.parts();
    let result = client::get(
        host,
        &url,
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
    finish_trace(live);
    if let Err(e) = result {
        return fail(e);
    }
    match flushed {
        Err(e) => fail(e),
        Ok(()) => ExitCode::SUCCESS,
    }
}
