//! A `smoltcp::phy::Device` over an open TUN/TAP file descriptor.
//!
//! - `Medium::Ip` for TUN, `Medium::Ethernet` for TAP; the capabilities report the device's MTU.
//! - One `read(2)` per received packet, one `write(2)` per sent packet, into and out of two
//!   buffers allocated once: nothing is allocated per packet.
//! - `EAGAIN` on read means "no token". Every other error (`EIO` when the link is down,
//!   `ENOBUFS`, `EINVAL`, ...) is counted in [`Stats`] and logged, never a panic: a dropped
//!   packet is what a real NIC does too, and TCP recovers from it.

use std::os::fd::{AsFd, BorrowedFd};

use log::{debug, warn};
use nix::errno::Errno;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::tuntap::{Kind, TunTap};

/// Room for the largest packet either kind of device can carry (65535 bytes of IP plus an
/// Ethernet header with a VLAN tag), so that a packet is never truncated by the buffer even if
/// someone raises the MTU behind our back.
const BUFFER_LEN: usize = 65535 + 18;

/// Packet and error counters of a device, from the host's point of view (rx = read from the
/// device, that is sent by the kernel).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Reads that failed with something other than `EAGAIN`/`EINTR`.
    pub rx_errors: u64,
    /// Writes that failed, or wrote fewer bytes than the packet had: the packet is lost.
    pub tx_errors: u64,
}

/// Remembers the last errno logged at `warn`, so that a burst of the same error logs once.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<Errno>,
}

impl ErrorLog {
    fn log(&mut self, device: &str, op: &str, errno: Errno, count: u64) {
        if self.last == Some(errno) {
            debug!(
                "{device}: {op} failed: {} ({count} errors so far)",
                errno.desc()
            );
        } else {
            warn!(
                "{device}: {op} failed: {} (packet dropped; {count} errors so far)",
                errno.desc()
            );
            self.last = Some(errno);
        }
    }
}

/// The `phy::Device` of a TUN/TAP device.
#[derive(Debug)]
pub struct TunTapDevice {
    dev: TunTap,
    medium: Medium,
    mtu: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
    stats: Stats,
    rx_log: ErrorLog,
    tx_log: ErrorLog,
}

impl TunTapDevice {
    pub fn new(dev: TunTap) -> TunTapDevice {
        let medium = match dev.kind() {
            Kind::Tun => Medium::Ip,
            Kind::Tap => Medium::Ethernet,
        };
        TunTapDevice {
            mtu: dev.mtu() as usize,
            dev,
            medium,
            rx: vec![0; BUFFER_LEN],
            tx: vec![0; BUFFER_LEN],
            stats: Stats::default(),
            rx_log: ErrorLog::default(),
            tx_log: ErrorLog::default(),
        }
    }

    /// The underlying device (name, kind, MTU).
    pub fn tuntap(&self) -> &TunTap {
        &self.dev
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}

impl AsFd for TunTapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dev.as_fd()
    }
}

impl phy::Device for TunTapDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let fd = self.dev.as_fd();
        loop {
            match nix::unistd::read(fd, &mut self.rx) {
                Ok(0) => return None,
                Ok(n) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += n as u64;
                    let rx = RxToken {
                        packet: &self.rx[..n],
                    };
                    let tx = TxToken {
                        fd,
                        name: self.dev.name(),
                        buf: &mut self.tx,
                        stats: &mut self.stats,
                        log: &mut self.tx_log,
                    };
                    return Some((rx, tx));
                }
                Err(Errno::EAGAIN) => return None,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    self.stats.rx_errors += 1;
                    self.rx_log
                        .log(self.dev.name(), "read", errno, self.stats.rx_errors);
                    return None;
                }
            }
        }
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            fd: self.dev.as_fd(),
            name: self.dev.name(),
            buf: &mut self.tx,
            stats: &mut self.stats,
            log: &mut self.tx_log,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = match self.medium {
            Medium::Ethernet => self.mtu + 14,
            _ => self.mtu,
        };
        caps
    }
}

/// Work a device does on the host's clock besides moving packets, such as a tracer flushing its
/// buffer. [`Host::run`](crate::Host::run) calls it on every turn of its loop and wakes up in time
/// for the deadline it returns, even when no packet comes.
pub trait Housekeeping {
    /// Do what is due at `now`; return when the device next needs a call (`None`: no deadline).
    fn housekeeping(&mut self, _now: Instant) -> Option<Instant> {
        None
    }
}

impl Housekeeping for TunTapDevice {}

/// A packet read from the device, borrowed from the device's receive buffer.
pub struct RxToken<'a> {
    packet: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.packet)
    }
}

/// Room for one packet in the device's transmit buffer; consuming it writes the packet.
pub struct TxToken<'a> {
    fd: BorrowedFd<'a>,
    name: &'a str,
    buf: &'a mut Vec<u8>,
    stats: &'a mut Stats,
    log: &'a mut ErrorLog,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if len > self.buf.len() {
            // smoltcp never asks for more than the MTU; grow rather than fail if it ever does.
            self.buf.resize(len, 0);
        }
        let packet = &mut self.buf[..len];
        let result = f(packet);
        loop {
            match nix::unistd::write(self.fd, packet) {
                Ok(n) if n == len => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += len as u64;
                }
                Ok(_) => {
                    self.stats.tx_errors += 1;
                    self.log.log(
                        self.name,
                        "write (short)",
                        Errno::EMSGSIZE,
                        self.stats.tx_errors,
                    );
                }
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    self.stats.tx_errors += 1;
                    self.log
                        .log(self.name, "write", errno, self.stats.tx_errors);
                }
            }
            break;
        }
        result
    }
}
