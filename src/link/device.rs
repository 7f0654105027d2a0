//! A `smoltcp::phy::Device` over an open TUN/TAP file descriptor.
//!
//! - `Medium::Ip` for TUN, `Medium::Ethernet` for TAP; the capabilities report the device's MTU.
//! - One `read(2)` per received packet, one `write(2)` per sent packet, into and out of two
//!   buffers allocated once: nothing is allocated per packet.
//! - With offloads ([`Offload`]), every packet carries a `virtio_net_hdr`
//!   ([`super::vnet`]): the kernel hands over TCP super-packets of up to 64 KiB, smoltcp emits TCP
//!   segments of up to 64 KiB that the kernel cuts to the MSS, and TCP checksums are left to the
//!   kernel where it vouches for them. Packets whose header contradicts them are counted and
//!   dropped.
//! - `EAGAIN` on read means "no token". Every other error (`EIO` on write while the link is
//!   down, `ENOBUFS`, `EINVAL`, ...) is counted in [`Stats`] and logged, never a panic: a dropped
//!   packet is what a real NIC does too, and TCP recovers from it.
//! - `EBADFD` on read or write means the device is gone (deleted while in use): the device
//!   reads and writes no more, and [`Housekeeping::check`] reports [`LinkError::Gone`], which
//!   ends the host's loop.
//!
//! What the kernel does (Linux 6.x, TUN and TAP alike): while the link is down, `poll` reports
//! nothing, `read` gives `EAGAIN` and `write` gives `EIO`; the host sleeps, and its packets are
//! dropped until the link is up again. Once the device is deleted, `poll` reports `POLLERR` and
//! `read` and `write` give `EBADFD`.

use std::os::fd::{AsFd, BorrowedFd};

use log::{debug, warn};
use nix::errno::Errno;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::error::{LinkError, Result};
use super::tuntap::{Kind, Offload, TunTap};
use super::vnet;

/// Room for the largest packet either kind of device can carry (65535 bytes of IP plus an
/// Ethernet header with a VLAN tag), so that a packet is never truncated by the buffer even if
/// someone raises the MTU behind our back.
const BUFFER_LEN: usize = vnet::HDR_LEN + 65535 + 18;

/// Most packets dropped (malformed, bad checksum) in one `receive` call before it gives the loop
/// back; the rest wait for the next call.
const MAX_DROPS_PER_RECEIVE: usize = 64;

/// Packet and error counters of a device, from the host's point of view (rx = read from the
/// device, that is sent by the kernel).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Packets read from the device, including those then dropped as malformed.
    pub rx_packets: u64,
    /// Bytes of the packets handed to smoltcp (without the virtio header).
    pub rx_bytes: u64,
    /// Packets written to the device in full.
    pub tx_packets: u64,
    /// Bytes of those packets (without the virtio header).
    pub tx_bytes: u64,
    /// Reads that failed with something other than `EAGAIN`/`EINTR`.
    pub rx_errors: u64,
    /// Writes that failed, or wrote fewer bytes than the packet had: the packet is lost.
    pub tx_errors: u64,
    /// Received packets dropped because their virtio header was short, contradicted the packet
    /// or asked for an unsupported offload.
    pub rx_malformed: u64,
    /// Received TCP packets dropped for a wrong checksum the kernel had not vouched for.
    pub rx_bad_checksum: u64,
    /// Sent TCP super-packets the kernel was asked to segment (GSO).
    pub tx_gso: u64,
}

/// Remembers the last errno logged at `warn`, so that a burst of the same error logs once.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<Errno>,
}

impl ErrorLog {
    fn log(&mut self, device: &str, op: &str, errno: Errno, count: u64) {
        // A TUN/TAP device whose link is down refuses writes with EIO.
        let hint = if errno == Errno::EIO {
            " (is the device down?)"
        } else {
            ""
        };
        if self.last == Some(errno) {
            debug!(
                "{device}: {op} failed: {} ({count} errors so far)",
                errno.desc()
            );
        } else {
            warn!(
                "{device}: {op} failed: {}{hint} (packet dropped; {count} errors so far)",
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
    offload: Offload,
    /// The turn (the `now` smoltcp passes) in which a read found the device empty, if nothing
    /// was written since: the host's next interface poll in the same turn need not read again.
    drained_at: Option<Instant>,
    /// A read found the device deleted: it is read no more.
    gone: bool,
}

impl TunTapDevice {
    /// The device over the open `dev`: medium from its kind, MTU and offloads from its setup.
    pub fn new(dev: TunTap) -> TunTapDevice {
        let medium = match dev.kind() {
            Kind::Tun => Medium::Ip,
            Kind::Tap => Medium::Ethernet,
        };
        TunTapDevice {
            mtu: dev.mtu() as usize,
            offload: dev.offload(),
            dev,
            medium,
            rx: vec![0; BUFFER_LEN],
            tx: vec![0; BUFFER_LEN],
            stats: Stats::default(),
            rx_log: ErrorLog::default(),
            tx_log: ErrorLog::default(),
            drained_at: None,
            gone: false,
        }
    }

    /// The offloads in force.
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// The underlying device (name, kind, MTU).
    pub fn tuntap(&self) -> &TunTap {
        &self.dev
    }

    /// The packet and error counters so far.
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

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // Found empty earlier in this turn, and nothing written since (a write can make the
        // kernel answer at once): no packet can have arrived that the next turn would not see,
        // since the host waits on the fd (level-triggered) before a new turn.
        if self.drained_at == Some(now) || self.gone {
            return None;
        }
        let fd = self.dev.as_fd();
        let vnet = self.offload.vnet_hdr;
        let ethernet = self.medium == Medium::Ethernet;
        let mut drops = 0;
        loop {
            match nix::unistd::read(fd, &mut self.rx) {
                Ok(0) => return None,
                Ok(n) => {
                    self.stats.rx_packets += 1;
                    let start = if vnet {
                        let checked = match vnet::Header::parse(&self.rx[..n]) {
                            Some(h) => {
                                vnet::rx_prepare(&h, &mut self.rx[vnet::HDR_LEN..n], ethernet)
                            }
                            None => Err(vnet::RxDrop::Malformed),
                        };
                        if let Err(why) = checked {
                            match why {
                                vnet::RxDrop::Malformed => self.stats.rx_malformed += 1,
                                vnet::RxDrop::BadChecksum => self.stats.rx_bad_checksum += 1,
                            }
                            debug!("{}: received packet dropped: {why:?}", self.dev.name());
                            drops += 1;
                            if drops >= MAX_DROPS_PER_RECEIVE {
                                return None;
                            }
                            continue;
                        }
                        vnet::HDR_LEN
                    } else {
                        0
                    };
                    self.stats.rx_bytes += (n - start) as u64;
                    let rx = RxToken {
                        packet: &self.rx[start..n],
                    };
                    let tx = TxToken {
                        fd,
                        name: self.dev.name(),
                        buf: &mut self.tx,
                        stats: &mut self.stats,
                        log: &mut self.tx_log,
                        vnet,
                        ethernet,
                        gso_size: None,
                        mtu: self.mtu,
                        drained_at: &mut self.drained_at,
                        gone: &mut self.gone,
                    };
                    return Some((rx, tx));
                }
                Err(Errno::EAGAIN) => {
                    self.drained_at = Some(now);
                    return None;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EBADFD) => {
                    // Deleted while in use: `check` says so, and the host's loop ends.
                    self.stats.rx_errors += 1;
                    debug!("{}: read failed: the device is gone", self.dev.name());
                    self.gone = true;
                    return None;
                }
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
        if self.gone {
            return None;
        }
        Some(TxToken {
            fd: self.dev.as_fd(),
            name: self.dev.name(),
            buf: &mut self.tx,
            stats: &mut self.stats,
            log: &mut self.tx_log,
            vnet: self.offload.vnet_hdr,
            ethernet: self.medium == Medium::Ethernet,
            gso_size: None,
            mtu: self.mtu,
            drained_at: &mut self.drained_at,
            gone: &mut self.gone,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = base_capabilities(self.medium, self.mtu);
        if self.offload.vnet_hdr {
            // TCP checksums: on transmit the kernel finishes them (NEEDS_CSUM); on receive
            // vnet::rx_prepare verifies those the kernel did not vouch for.
            caps.checksum.tcp = phy::Checksum::None;
            let link = match self.medium {
                Medium::Ethernet => 14,
                _ => 0,
            };
            // The largest packet smoltcp may hand us for the kernel to segment: a full IP
            // packet (the 16-bit length field's limit) and the link header.
            let max = std::num::NonZeroUsize::new(65535 + link);
            if self.offload.tso4 {
                caps.segmentation.tcpv4 = max;
            }
            // Not `tcpv6`, though the kernel takes IPv6 super-packets: smoltcp 0.14 drops an
            // IPv6 packet larger than the MTU before it reaches the device ("IPv6 fragmentation
            // support is unimplemented"), segmentation offload or not. IPv6 still receives
            // super-packets (TSO6).
        }
        caps
    }
}

/// Work a device does on the host's clock besides moving packets, such as a tracer flushing its
/// buffer, and whether it still works. The host's loop calls both on every turn of its loop,
/// wakes up in time for the deadline `housekeeping` returns, even when no packet comes, and
/// ends with the error `check` returns.
pub trait Housekeeping {
    /// Do what is due at `now`; return when the device next needs a call (`None`: no deadline).
    fn housekeeping(&mut self, _now: Instant) -> Option<Instant> {
        None
    }

    /// `Err` once the device cannot be used any more (deleted while in use:
    /// [`LinkError::Gone`]); a loop that goes on would only spin.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

impl Housekeeping for TunTapDevice {
    fn check(&self) -> Result<()> {
        if self.gone {
            return Err(LinkError::Gone {
                device: self.dev.name().to_string(),
            });
        }
        Ok(())
    }
}

/// A packet read from the device, borrowed from the device's receive buffer.
pub struct RxToken<'a> {
    packet: &'a [u8],
}

impl<'a> RxToken<'a> {
    /// A token over a packet held elsewhere (another device's buffer).
    pub fn new(packet: &'a [u8]) -> RxToken<'a> {
        RxToken { packet }
    }
}

/// The capabilities of a plain device of `medium` with IP MTU `mtu` (smoltcp counts the
/// Ethernet header in the MTU of an Ethernet device).
pub fn base_capabilities(medium: Medium, mtu: usize) -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = medium;
    caps.max_transmission_unit = match medium {
        Medium::Ethernet => mtu + 14,
        _ => mtu,
    };
    caps
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
    /// Put a virtio header in front of the packet.
    vnet: bool,
    ethernet: bool,
    /// The MSS smoltcp asked the device to segment to (`segmentation-offload`).
    gso_size: Option<u16>,
    /// The device's IP MTU: a TCP packet above it is segmented even without `gso_size`.
    mtu: usize,
    /// Cleared by a write: the kernel may answer it at once.
    drained_at: &'a mut Option<Instant>,
    /// Set by a write that finds the device deleted.
    gone: &'a mut bool,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let start = if self.vnet { vnet::HDR_LEN } else { 0 };
        if start + len > self.buf.len() {
            // smoltcp never asks for more than the MTU; grow rather than fail if it ever does.
            self.buf.resize(start + len, 0);
        }
        let result = f(&mut self.buf[start..start + len]);
        if self.vnet {
            let (hdr, packet) = self.buf.split_at_mut(start);
            let h = vnet::tx_prepare(&mut packet[..len], self.ethernet, self.gso_size, self.mtu);
            if h.gso_type != vnet::GSO_NONE {
                self.stats.tx_gso += 1;
            }
            h.emit(hdr);
        }
        let packet = &self.buf[..start + len];
        *self.drained_at = None;
        loop {
            match nix::unistd::write(self.fd, packet) {
                Ok(n) if n == packet.len() => {
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
                Err(Errno::EBADFD) => {
                    self.stats.tx_errors += 1;
                    debug!("{}: write failed: the device is gone", self.name);
                    *self.gone = true;
                }
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

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.gso_size = meta.segmentation_offload_size.map(|m| m.get());
    }
}
