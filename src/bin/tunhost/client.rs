//! `tunhost ping` and `tunhost get`: the userspace host as a client of the kernel side.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use tunhost::client::{self, Url, http::OutputError};
use tunhost::live::{Live, LiveHost};
use tunhost::sandbox::Profile;
use tunhost::smoltcp::wire::IpAddress;

use crate::args::{DeviceArgs, TraceArgs, duration, parse_ip, parse_secs};
use crate::badlink::BadLinkArgs;
use crate::privileges::{Plan, SandboxArgs};
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

    #[command(flatten)]
    privileges: SandboxArgs,

    /// Look names up (ping HOST, the host of get's URL) with the DNS server at IP, through the
    /// host's own stack (repeat for more servers). The machine's resolver is never used.
    #[arg(long, value_name = "IP", value_parser = parse_ip, help_heading = "Addresses")]
    dns: Vec<IpAddress>,
}

/// What a client talks to: an address, or a name to resolve with `--dns`.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Addr(IpAddress),
    Name(String),
}

fn parse_target(s: &str) -> Result<Target, String> {
    match parse_ip(s) {
        Ok(a) => Ok(Target::Addr(a)),
        Err(_) if client::dns::is_name(s) => Ok(Target::Name(s.to_string())),
        Err(e) => Err(format!("{e}, or a DNS name")),
    }
}

impl ClientCommon {
    /// A name needs a server to ask: refused before anything is opened when none is given.
    fn check_dns(&self, name: Option<&str>) -> Result<(), ExitCode> {
        match name {
            Some(n) if self.dns.is_empty() && !self.device.dhcp() => Err(usage(format_args!(
                "{n} is a name: give the DNS server to ask with --dns IP (or take one from DHCP \
                 with --addr dhcp)"
            ))),
            _ => Ok(()),
        }
    }

    /// With `--addr dhcp`: wait (10 s at most) for the lease (the host logs it when it comes).
    fn await_lease(&self, live: &mut LiveHost) -> Result<(), ExitCode> {
        if !self.device.dhcp() {
            return Ok(());
        }
        let (host, stop) = live.parts();
        client::await_lease(
            host,
            tunhost::smoltcp::time::Duration::from_secs(10),
            Some(stop),
        )
        .map_err(fail)?;
        Ok(())
    }

    /// The address of `name` through the live host, or the exit code of the failure.
    fn resolve(&self, live: &mut LiveHost, name: &str) -> Result<IpAddress, ExitCode> {
        let (host, stop) = live.parts();
        // --dns first, else the servers of the DHCP lease.
        let servers: Vec<IpAddress> = if self.dns.is_empty() {
            (host.dhcp_lease().iter())
                .flat_map(|l| l.dns_servers.iter().map(|&d| IpAddress::Ipv4(d)))
                .collect()
        } else {
            self.dns.clone()
        };
        let found = client::dns::resolve(
            host,
            name,
            &servers,
            client::dns::DEFAULT_TIMEOUT,
            Some(stop),
        )
        .map_err(fail)?;
        Ok(found[0])
    }
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

    /// The address to ping, e.g. 192.0.2.1, or a name to look up with --dns.
    #[arg(value_name = "HOST", value_parser = parse_target)]
    host: Target,
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    common: ClientCommon,

    /// Write the body to FILE instead of stdout. FILE is opened at the start (before the host
    /// drops its privileges) but written only for a 2xx response; otherwise an existing FILE is
    /// left as it was and one this run created is removed.
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

    /// The URL, e.g. http://192.0.2.1:8000/f.bin, or http://name.example:8000/ with --dns.
    #[arg(value_name = "URL")]
    url: String,
}

impl ClientCommon {
    /// Logging, then a live host with no services on the device, and what to do with the
    /// privileges once everything is open.
    fn open(&self) -> Result<(LiveHost, Plan), ExitCode> {
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
        let plan = self.privileges.plan()?;
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
        Ok((live.open().map_err(fail)?, plan))
    }
}

pub(crate) fn ping(args: PingArgs) -> ExitCode {
    let name = match &args.host {
        Target::Name(n) => Some(n.as_str()),
        Target::Addr(_) => None,
    };
    if let Err(code) = args.common.check_dns(name) {
        return code;
    }
    let mut live = match args.common.open() {
        Ok((live, plan)) => match plan.apply(Profile::Host) {
            Ok(()) => live,
            Err(code) => return code,
        },
        Err(code) => return code,
    };
    if let Err(code) = args.common.await_lease(&mut live) {
        finish_trace(live);
        return code;
    }
    let target = match &args.host {
        Target::Addr(a) => *a,
        Target::Name(n) => match args.common.resolve(&mut live, n) {
            Ok(a) => a,
            Err(code) => {
                finish_trace(live);
                return code;
            }
        },
    };
    let shown = match name {
        Some(n) => format!("{n} ({target})"),
        None => target.to_string(),
    };
    let mut cfg = client::PingConfig::new(target);
    cfg.count = args.count;
    cfg.interval = duration(args.interval);
    cfg.timeout = duration(args.timeout);
    cfg.size = usize::from(args.size);
    let from = live.host().iface().ip_addrs()[0].address();
    println!(
        "PING {shown} from {from} {}: {} data bytes",
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
    println!("\n--- {} ping statistics ---", name.unwrap_or(&shown));
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
    let name = match &url.host {
        client::http::UrlHost::Name(n) => Some(n.clone()),
        client::http::UrlHost::Addr(_) => None,
    };
    if let Err(code) = args.common.check_dns(name.as_deref()) {
        return code;
    }
    let (mut live, plan) = match args.common.open() {
        Ok(l) => l,
        Err(code) => return code,
    };
    // The output file is opened now, while the process may still create it; it is emptied and
    // written only once a 2xx head arrives, and removed again if this run created it and none
    // did.
    let pending = match args.output.as_deref().map(Output::open).transpose() {
        Ok(o) => RefCell::new(o),
        Err(e) => return fail(e),
    };
    let url = match plan
        .apply(Profile::Output)
        .and_then(|()| args.common.await_lease(&mut live))
        .and_then(|()| match &name {
            Some(n) => args.common.resolve(&mut live, n).map(|a| url.resolved(a)),
            None => Ok(url),
        }) {
        Ok(url) => url,
        Err(code) => {
            if let Some(o) = pending.into_inner() {
                o.abandon();
            }
            finish_trace(live);
            return code;
        }
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
                *out.borrow_mut() = Some(match pending.borrow_mut().take() {
                    Some(o) => Box::new(std::io::BufWriter::new(o.start()?)),
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
    // No 2xx head came: leave an existing file as it was, remove one this run created.
    if let Some(o) = pending.into_inner() {
        o.abandon();
    }
    if let Err(e) = result {
        return fail(e);
    }
    match flushed {
        Err(e) => fail(e),
        Ok(()) => ExitCode::SUCCESS,
    }
}

/// `get -o FILE` between the start and the 2xx head: open, maybe just created.
struct Output {
    path: PathBuf,
    file: File,
    created: bool,
}

impl Output {
    /// Open `path` for writing without emptying it, creating it if it does not exist.
    fn open(path: &Path) -> Result<Output, tunhost::Error> {
        let err = |op, source| tunhost::Error::File {
            path: path.display().to_string(),
            op,
            source,
        };
        let created = OpenOptions::new().write(true).create_new(true).open(path);
        let (file, created) = match created {
            Ok(f) => (f, true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| err("open", e))?,
                false,
            ),
            Err(e) => return Err(err("create", e)),
        };
        Ok(Output {
            path: path.to_path_buf(),
            file,
            created,
        })
    }

    /// A 2xx head arrived: the file, emptied, to write the body to.
    fn start(self) -> Result<File, OutputError> {
        // A regular file is emptied first; /dev/null, a FIFO or a terminal cannot be.
        let regular = self.file.metadata().is_ok_and(|m| m.is_file());
        if !regular {
            return Ok(self.file);
        }
        self.file.set_len(0).map_err(|e| {
            Box::new(tunhost::Error::File {
                path: self.path.display().to_string(),
                op: "truncate",
                source: e,
            }) as OutputError
        })?;
        Ok(self.file)
    }

    /// No body for it: remove the file if this run created it.
    fn abandon(self) {
        if self.created
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            log::warn!(
                "{}: created empty for a body that never came, and cannot be removed now ({e}): \
                 remove it",
                self.path.display()
            );
        }
    }
}
