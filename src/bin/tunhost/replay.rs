//! `tunhost replay`: a capture through the host, offline, on a virtual clock.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use tunhost::Config;
use tunhost::live::TraceTarget;
use tunhost::pcap::{CaptureReader, StagedFile, Timestamps, TraceConfig};
use tunhost::replay::{MacOrigin, ReplayConfig, ReplayError, replay_reader};
use tunhost::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

use crate::args::{LogArgs, ServiceArgs, TraceArgs, colons, parse_cidr, parse_ip, parse_mac};
use crate::badlink::BadLinkArgs;
use crate::privileges::SandboxArgs;
use crate::{fail, init_logging, usage};
use tunhost::sandbox::Profile;

pub(crate) const REPLAY_AFTER_HELP: &str = "\
The host runs on a virtual clock that follows the capture's timestamps: no device, no root, and
the same capture with the same --seed (default 0) always gives the same --pcap output, byte for
byte. TCP sessions replay faithfully when --seed is the seed the live host had. A run on a bad
link (--drop, --delay, ...) replays with the same fault flags and --seed: the packets of its
trace, as the kernel sent them, get the fates they had live.

The capture is streamed (any size, constant memory). Malformed records are skipped and counted; a
capture cut short replays up to the cut, with a warning. With no --mac and no unicast frame to
learn the host's MAC from, an Ethernet replay runs with a MAC of its own. --pcap FILE is written
beside FILE and renamed into place at the end: a failed replay leaves an existing FILE as it was.

Examples:
  tunhost replay captures/ping.pcapng --addr 192.0.2.2/24 --pcap out.pcapng
  sudo tcpdump -i tun0 -w live.pcap & ...; tunhost replay live.pcap --addr 192.0.2.2/24
  tunhost replay captures/tap-arp-ping.pcapng --addr 198.51.100.2/24 --pcap - | tshark -r -";

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// The capture to replay: pcap or pcapng with Ethernet, Raw IP, Linux cooked (SLL, SLL2),
    /// BSD loopback, PPP, Cisco HDLC or SLIP packets, e.g. from `tcpdump -i tun0 -w IN.pcap` or `tunhost serve
    /// --pcap IN.pcapng`; read as it streams, whatever its size. Malformed records are skipped
    /// and a file cut short is replayed up to the cut, with a warning.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// The host's address and prefix, as it was live, e.g. 192.0.2.2/24 (repeat for a second
    /// address). Packets to it are fed to the host; the rest is counted as ignored.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr, required = true, help_heading = "Addresses")]
    addr: Vec<IpCidr>,

    /// The host's MAC in an Ethernet capture. [default: learned from the capture, else one of
    /// its own]
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
    privileges: SandboxArgs,

    #[command(flatten)]
    log: LogArgs,
}

/// The staged trace, for the signal handlers to remove (set once it exists).
static STAGED: OnceLock<CString> = OnceLock::new();

/// Create the staged trace of `path` so that SIGINT, SIGTERM or SIGHUP remove it before the
/// process dies of them as it would anyway: an interrupted replay leaves neither a replaced file
/// nor a stray staged one. The signals are held back while the file is made and its name kept.
fn create_staged(path: &Path) -> io::Result<StagedFile> {
    let signals = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];
    let held: SigSet = signals.into_iter().collect();
    held.thread_block().map_err(io::Error::from)?;
    let staged = (|| {
        for sig in signals {
            let sig = sig as libc::c_int;
            // SAFETY: the action calls only unlink(2) and signal-hook's emulation of the default
            // action, both async-signal-safe, on a name stored before the signals are let in.
            unsafe {
                signal_hook::low_level::register(sig, move || {
                    if let Some(staged) = STAGED.get() {
                        libc::unlink(staged.as_ptr());
                    }
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                })
            }?;
        }
        let file = StagedFile::create(path)?;
        if file.is_staged() {
            let name = CString::new(file.staged_path().as_os_str().as_bytes())?;
            let _ = STAGED.set(name);
        }
        Ok(file)
    })();
    let _ = held.thread_unblock();
    staged
}

/// Where the replayed host's trace goes.
enum Output {
    None,
    /// Standard output, as live.
    Stdout(File),
    /// A file, written beside its name and renamed into place once the replay succeeded.
    File(StagedFile, String),
}

pub(crate) fn replay(args: ReplayArgs) -> ExitCode {
    init_logging(args.log.verbose, args.log.quiet);
    let plan = match args.privileges.plan_keeping_user() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let path = args.input.display().to_string();
    let file = match File::open(&args.input) {
        Ok(f) => f,
        Err(source) => {
            return fail(tunhost::Error::File {
                path,
                op: "read",
                source,
            });
        }
    };
    // Streamed: one packet at a time, whatever the size of the capture.
    let mut capture = match CaptureReader::new(file) {
        Ok(c) => c,
        Err(source) => return fail(tunhost::Error::Capture { path, source }),
    };
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
    let (mut out, label) = match args.trace.spec() {
        Ok(None) => (Output::None, None),
        Ok(Some(spec)) => {
            let label = spec.label();
            let out = match &spec.target {
                TraceTarget::Stdout => spec.open().map(Output::Stdout),
                TraceTarget::File(p) => create_staged(p)
                    .map(|f| Output::File(f, label.clone()))
                    .map_err(|source| tunhost::Error::File {
                        path: label.clone(),
                        op: "create the trace file",
                        source,
                    }),
            };
            match out {
                Ok(out) => (out, Some(label)),
                Err(e) => return fail(e),
            }
        }
        Err(msg) => return fail(msg),
    };
    // The capture and the output are open: the packets of the capture, which anyone may have
    // written, are parsed without privilege and under the filter.
    if let Err(code) = plan.apply(Profile::Output) {
        return code;
    }
    plan.selftest();
    let trace = |label: &String| TraceConfig {
        interface: "replay".into(),
        label: label.clone(),
        timestamps: Timestamps::Clock,
        ..args.trace.config()
    };
    let result = match (&mut out, &label) {
        (Output::Stdout(file), Some(label)) => {
            replay_reader(&mut capture, &config, Some((file, trace(label))))
        }
        (Output::File(file, label), _) => {
            replay_reader(&mut capture, &config, Some((file, trace(label))))
        }
        _ => replay_reader::<_, File>(&mut capture, &config, None),
    };
    let report = match result {
        Ok(r) => r,
        Err(ReplayError::Capture(source)) => {
            return fail(tunhost::Error::Capture { path, source });
        }
        // The staged trace is removed as `out` drops: an existing file of that name stays.
        Err(e) => return fail(e),
    };
    if let Output::File(file, label) = out {
        if let Err(source) = file.commit() {
            return fail(tunhost::Error::File {
                path: label,
                op: "rename the finished trace into place as",
                source,
            });
        }
    }
    let host = match (report.mac, report.mac_origin) {
        (Some(mac), origin) => {
            let whence = match origin {
                Some(MacOrigin::Learned) => ", learned from the capture",
                Some(MacOrigin::Own) => {
                    ", its own: no unicast frame from or to its address to learn one from; \
                     give the live host's with --mac"
                }
                _ => "",
            };
            format!(
                "Ethernet host {} (MAC {}{whence})",
                addrs.join(", "),
                colons(mac)
            )
        }
        (None, _) => format!("IP host {}", addrs.join(", ")),
    };
    let damage = &report.summary.damage;
    if !damage.is_clean() {
        eprintln!("tunhost: warning: {path}: {damage}");
    }
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
