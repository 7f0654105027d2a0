//! A live host in one call: open the TUN/TAP device, trace it if asked, build the host and its
//! services, wire the status page to the device, and make Ctrl-C stop it.
//!
//! ```no_run
//! use tunhost::live::Live;
//! use tunhost::link::{Kind, TunTapConfig};
//! use tunhost::services::ServiceSpec;
//!
//! let mut live = Live::new(TunTapConfig::new("tun0", Kind::Tun));
//! live.device.peers = vec!["192.0.2.1/24".parse().unwrap()];
//! live.services.services = vec![ServiceSpec::Echo(7)];
//! let mut host = live.open()?;
//! host.run()?;
//! host.finish();
//! # Ok::<(), tunhost::Error>(())
//! ```
//!
//! This is the top of the library: it uses every layer below and nothing uses it but programs.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::SFlag;

use crate::error::{Error, Result};
use crate::host::{Config, Host, Stop};
use crate::link::{FaultConfig, Faults, TunTap, TunTapConfig, TunTapDevice};
use crate::pcap::{Pcap, Timestamps, TraceConfig, TraceStats};
use crate::services::{self, ServicesConfig};

/// The device of a live host: the TUN/TAP device, behind a tracer that records every packet when
/// the run is traced (and passes them through untouched when not), behind a bad link when faults
/// are set (and a pass-through when not).
pub type LiveDevice = Faults<Pcap<TunTapDevice, File>>;

/// Where a trace goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceTarget {
    /// A file, created (or truncated) before the device is opened, removed again if the device
    /// cannot be opened.
    File(PathBuf),
    /// This process's standard output, e.g. piped into `tshark -r -`.
    Stdout,
}

/// How to trace a live host.
#[derive(Debug, Clone)]
pub struct TraceSpec {
    /// Where the trace goes.
    pub target: TraceTarget,
    /// Format, snap length and flush interval; the interface name and label are filled in.
    pub config: TraceConfig,
}

impl TraceSpec {
    /// A pcapng trace of every whole packet to `target`.
    pub fn new(target: TraceTarget) -> TraceSpec {
        TraceSpec {
            target,
            config: TraceConfig::new("", ""),
        }
    }

    /// `stdout`, or the file's path: how messages name the trace.
    pub fn label(&self) -> String {
        match &self.target {
            TraceTarget::Stdout => "stdout".into(),
            TraceTarget::File(p) => p.display().to_string(),
        }
    }

    /// Create the file (or take stdout).
    pub fn open(&self) -> Result<File> {
        match &self.target {
            TraceTarget::Stdout => stdout_for_trace(),
            TraceTarget::File(p) => {
                File::create(p).map_err(|e| file_error(&self.label(), "create the trace file", e))
            }
        }
    }
}

/// This process's stdout, to write a trace to. A pipe or socket is made non-blocking, so that a
/// reader that stops reading costs trace records, never the host's loop (the writer keeps what
/// the reader did not take and counts what no longer fits: see [`crate::pcap::writer`]). A pipe
/// is opened anew through `/proc/self/fd/1`: that gives the trace an open file description of
/// its own, and stdout's, which stderr may share (`2>&1`), stays blocking. Where that cannot be
/// done (a socket, no `/proc`), the flag is set on stdout's description itself. A file or a
/// terminal is written as it is.
fn stdout_for_trace() -> Result<File> {
    let stdout = std::io::stdout();
    let err = |op| move |e: nix::Error| file_error("stdout", op, e.into());
    let mode = nix::sys::stat::fstat(stdout.as_fd())
        .map_err(err("inspect"))?
        .st_mode;
    let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    if kind == SFlag::S_IFIFO {
        let own = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/proc/self/fd/1");
        if let Ok(file) = own {
            return Ok(file);
        }
    }
    let fd = stdout
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| file_error("stdout", "duplicate", e))?;
    if kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK {
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(err("inspect"))?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(err("set O_NONBLOCK on"))?;
    }
    Ok(File::from(fd))
}

fn file_error(path: &str, op: &'static str, source: std::io::Error) -> Error {
    Error::File {
        path: path.to_string(),
        op,
        source,
    }
}

/// Everything a live host is made of.
#[derive(Debug, Clone)]
pub struct Live {
    /// The TUN/TAP device and its kernel side.
    pub device: TunTapConfig,
    /// The host's addresses and tuning.
    pub host: Config,
    /// The services to run (none by default).
    pub services: ServicesConfig,
    /// Trace every packet of the device, if set.
    pub trace: Option<TraceSpec>,
    /// Make SIGINT and SIGTERM stop the host (the default).
    pub signals: bool,
    /// Make the link bad on purpose (none by default). With any fault set, the device is opened
    /// without offloads: faults then hit single packets of at most the MTU, and the kernel
    /// checks every checksum of what the host sends (with offloads it trusts TCP checksums
    /// from the device, so a corrupted segment would be delivered).
    pub faults: FaultConfig,
}

impl Live {
    /// A host with the default address on `device`, no services, not traced, stopped by Ctrl-C.
    pub fn new(device: TunTapConfig) -> Live {
        Live {
            device,
            host: Config::default(),
            services: ServicesConfig::default(),
            trace: None,
            signals: true,
            faults: FaultConfig::default(),
        }
    }

    /// Check what can be checked without touching the system.
    pub fn validate(&self) -> Result<()> {
        self.host.validate()?;
        self.services.validate()?;
        Ok(())
    }

    /// Create the trace file, open the device, build the host and its services. The stop
    /// handle listens for signals from the moment the device is open.
    pub fn open(mut self) -> Result<LiveHost> {
        self.validate()?;
        if !self.faults.is_none() {
            if self.device.offload {
                log::info!(
                    "{}: opened without offloads, for the faults to hit single packets and \
                     every checksum to be checked",
                    self.device.name
                );
            }
            self.device.offload = false;
            log::info!("a bad link: {}", self.faults);
        }
        let out = self.trace.as_ref().map(TraceSpec::open).transpose()?;
        let stop = Stop::new()?;
        if self.signals {
            stop.on_signals()?;
        }
        let tuntap = match TunTap::open(&self.device) {
            Ok(t) => t,
            Err(e) => {
                // Leave no empty trace behind: the file was created only for this run.
                if let Some(TraceSpec {
                    target: TraceTarget::File(p),
                    ..
                }) = &self.trace
                {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e.into());
            }
        };
        let device = TunTapDevice::new(tuntap);
        let (device, label) = match (out, &self.trace) {
            (Some(file), Some(spec)) => {
                let label = spec.label();
                let config = TraceConfig {
                    interface: device.tuntap().name().to_string(),
                    label: label.clone(),
                    timestamps: Timestamps::System,
                    ..spec.config.clone()
                };
                let device = Pcap::new(device, file, &config)
                    .map_err(|e| file_error(&label, "write the trace header to", e))?;
                (device, Some(label))
            }
            _ => (Pcap::passthrough(device), None),
        };
        let device = Faults::new(device, &self.faults);
        let mut host = Host::new(device, crate::host::SystemClock::new(), self.host)?;
        host.show_device(|d| d.inner().inner());
        services::add(&mut host, &self.services)?;
        if let Some(label) = &label {
            log::info!("tracing every packet of the device to {label}");
        }
        Ok(LiveHost {
            host,
            stop,
            trace_label: label,
            services: self.services,
        })
    }
}

/// A host on a live TUN/TAP device, as [`Live::open`] built it.
pub struct LiveHost {
    host: Host<LiveDevice>,
    stop: Stop,
    trace_label: Option<String>,
    services: ServicesConfig,
}

/// How a trace went, once the host is done.
#[derive(Debug)]
pub struct TraceReport {
    /// Where it went.
    pub label: String,
    /// The first write error, if any (later packets were counted as lost).
    pub result: std::io::Result<()>,
    /// Packets recorded and lost.
    pub stats: TraceStats,
}

impl LiveHost {
    /// The host.
    pub fn host(&self) -> &Host<LiveDevice> {
        &self.host
    }

    /// The host, to drive by hand (clients) or change.
    pub fn host_mut(&mut self) -> &mut Host<LiveDevice> {
        &mut self.host
    }

    /// The host and its stop handle at once (what the clients take).
    pub fn parts(&mut self) -> (&mut Host<LiveDevice>, &Stop) {
        (&mut self.host, &self.stop)
    }

    /// The handle that stops [`LiveHost::run`] (signals use it too).
    pub fn stop_handle(&self) -> &Stop {
        &self.stop
    }

    /// The TUN/TAP device under the tracer.
    pub fn tuntap(&self) -> &TunTapDevice {
        self.host.device().inner().inner()
    }

    /// The services the host was built with.
    pub fn services(&self) -> &ServicesConfig {
        &self.services
    }

    /// Run until stopped (Ctrl-C, or [`Stop::stop`]), then close connections gracefully.
    pub fn run(&mut self) -> Result<()> {
        self.host.run(&self.stop)?;
        Ok(())
    }

    /// Flush the trace and say how it went (`None` if the run was not traced).
    pub fn finish(self) -> Option<TraceReport> {
        let label = self.trace_label?;
        let (_, result, _, stats) = self.host.into_device().into_inner().finish();
        Some(TraceReport {
            label,
            result,
            stats,
        })
    }
}
