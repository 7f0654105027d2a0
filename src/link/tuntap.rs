//! Open and configure a Linux TUN or TAP device.
//!
//! This module talks to the kernel only: `/dev/net/tun`, `TUNSETIFF` and the `SIOC*` interface
//! ioctls. It knows nothing of smoltcp; [`super::device`] turns the file descriptor it returns
//! into a `phy::Device`.
//!
//! Supported:
//! - creating a device, or attaching to an existing (persistent) one as made by
//!   `ip tuntap add dev NAME mode tun|tap`;
//! - `IFF_TUN | IFF_NO_PI` (raw IP packets) and `IFF_TAP | IFF_NO_PI` (Ethernet frames);
//! - on the kernel side: MTU, `txqueuelen`, link up, and one IPv4 or IPv6 address with its prefix;
//! - offloads ([`Offload`]): `IFF_VNET_HDR` with a 10-byte `virtio_net_hdr` per packet
//!   (`TUNSETVNETHDRSZ`), and `TUNSETOFFLOAD` with checksum offload and TCP segmentation offload
//!   for IPv4 and IPv6. Each is probed at open; what the kernel refuses is left off.
//!
//! Not supported: multi-queue devices, the packet-information header (`IFF_NO_PI` is always set),
//! setting the owner of persistent devices.

use std::fmt;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use log::debug;
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use smoltcp::wire::IpCidr;

use super::error::{LinkError, Result};

/// Where the TUN/TAP clone device lives.
pub const TUN_PATH: &str = "/dev/net/tun";

/// Smallest MTU accepted on either kind (the IPv4 minimum, RFC 791).
pub const MIN_MTU: u32 = 68;
/// Largest MTU of a TUN device: one IP packet of the largest IPv4 size.
pub const MAX_MTU_TUN: u32 = 65535;
/// Largest MTU of a TAP device: the frame (MTU + 14-byte Ethernet header) must fit 65535 bytes.
pub const MAX_MTU_TAP: u32 = 65535 - 14;
/// The `txqueuelen` set on the kernel side unless told otherwise (the kernel's default is 500,
/// which drops packets under bulk load).
pub const DEFAULT_TXQUEUELEN: u32 = 1000;

/// TUN carries IP packets; TAP carries Ethernet frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TUN device: IP packets, no link header (`IFF_TUN`).
    Tun,
    /// A TAP device: Ethernet frames (`IFF_TAP`).
    Tap,
}

impl Kind {
    /// The largest MTU this kind of device accepts.
    pub fn max_mtu(self) -> u32 {
        match self {
            Kind::Tun => MAX_MTU_TUN,
            Kind::Tap => MAX_MTU_TAP,
        }
    }

    /// The other kind (TAP for TUN, TUN for TAP).
    pub fn other(self) -> Kind {
        match self {
            Kind::Tun => Kind::Tap,
            Kind::Tap => Kind::Tun,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Tun => "tun",
            Kind::Tap => "tap",
        })
    }
}

/// How to open a device and what to set on its kernel side.
#[derive(Debug, Clone)]
pub struct TunTapConfig {
    /// Interface name, 1 to 15 bytes.
    pub name: String,
    /// TUN or TAP.
    pub kind: Kind,
    /// Set the device's MTU (`SIOCSIFMTU`); `None` keeps what the device has (1500 for a new one).
    pub mtu: Option<u32>,
    /// Set `txqueuelen`; `None` raises it to [`DEFAULT_TXQUEUELEN`] if it is lower.
    pub txqueuelen: Option<u32>,
    /// The kernel side's addresses and prefixes (e.g. `192.0.2.1/24` and `2001:db8::1/64`, at
    /// most one per family); empty leaves the kernel side as the user configured it.
    pub peers: Vec<IpCidr>,
    /// Bring the link up (`IFF_UP`). Without it, the kernel does not send or accept packets.
    pub up: bool,
    /// Ask for the offloads (virtio header, checksum, TSO); `false` opens the plain device.
    pub offload: bool,
}

impl TunTapConfig {
    /// A device named `name` of kind `kind`, link up, nothing else changed.
    pub fn new(name: impl Into<String>, kind: Kind) -> TunTapConfig {
        TunTapConfig {
            name: name.into(),
            kind,
            mtu: None,
            txqueuelen: None,
            peers: Vec::new(),
            up: true,
            offload: true,
        }
    }
}

/// The offloads in force on an open device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// Every packet read or written starts with a 10-byte `virtio_net_hdr` (`IFF_VNET_HDR`).
    pub vnet_hdr: bool,
    /// The kernel may hand us packets with unfinished checksums (`NEEDS_CSUM`), `TUN_F_CSUM`.
    pub csum: bool,
    /// The kernel may hand us (and accepts from us) TCP/IPv4 super-packets, `TUN_F_TSO4`.
    pub tso4: bool,
    /// The same for TCP/IPv6, `TUN_F_TSO6`.
    pub tso6: bool,
}

impl fmt::Display for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.vnet_hdr {
            return f.write_str("off");
        }
        let mut parts = vec!["vnet-hdr"];
        if self.csum {
            parts.push("csum");
        }
        if self.tso4 {
            parts.push("tso4");
        }
        if self.tso6 {
            parts.push("tso6");
        }
        f.write_str(&parts.join("+"))
    }
}

/// An open TUN/TAP device: the file descriptor the packets go through, non-blocking.
#[derive(Debug)]
pub struct TunTap {
    fd: OwnedFd,
    name: String,
    kind: Kind,
    mtu: u32,
    offload: Offload,
    /// The kernel side's addresses this process set.
    peers: Vec<IpCidr>,
}

/// The ioctls this module makes (nix generates them as `pub unsafe fn`).
mod sys {
    #![allow(missing_docs, unreachable_pub)]
    nix::ioctl_write_ptr_bad!(tun_set_iff, libc::TUNSETIFF, libc::ifreq);
    nix::ioctl_read_bad!(siocgifflags, libc::SIOCGIFFLAGS, libc::ifreq);
    nix::ioctl_write_ptr_bad!(siocsifflags, libc::SIOCSIFFLAGS, libc::ifreq);
    nix::ioctl_read_bad!(siocgifmtu, libc::SIOCGIFMTU, libc::ifreq);
    nix::ioctl_write_ptr_bad!(siocsifmtu, libc::SIOCSIFMTU, libc::ifreq);
    nix::ioctl_read_bad!(siocgiftxqlen, libc::SIOCGIFTXQLEN, libc::ifreq);
    nix::ioctl_write_ptr_bad!(siocsiftxqlen, libc::SIOCSIFTXQLEN, libc::ifreq);
    nix::ioctl_write_ptr_bad!(siocsifaddr, libc::SIOCSIFADDR, libc::ifreq);
    nix::ioctl_write_ptr_bad!(siocsifnetmask, libc::SIOCSIFNETMASK, libc::ifreq);
    nix::ioctl_read_bad!(siocgifindex, libc::SIOCGIFINDEX, libc::ifreq);
    nix::ioctl_write_ptr_bad!(siocsifaddr6, libc::SIOCSIFADDR, libc::in6_ifreq);
    nix::ioctl_write_int_bad!(tun_set_offload, libc::TUNSETOFFLOAD);
    nix::ioctl_write_ptr_bad!(tun_set_vnet_hdr_sz, libc::TUNSETVNETHDRSZ, libc::c_int);
}

use sys::*;

/// Check an interface name the way the kernel will: 1 to 15 bytes, no `/`, no whitespace, not
/// `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(LinkError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return bad("it is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("it cannot be `.` or `..`");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return bad("it cannot contain '/', ':', whitespace or NUL");
    }
    Ok(())
}

/// Check an MTU against what the medium allows.
pub fn validate_mtu(name: &str, kind: Kind, mtu: u32) -> Result<()> {
    if !(MIN_MTU..=kind.max_mtu()).contains(&mtu) {
        return Err(LinkError::MtuOutOfRange {
            device: name.to_string(),
            mtu,
            min: MIN_MTU,
            max: kind.max_mtu(),
        });
    }
    Ok(())
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// The interface name in `req`, up to its NUL (the kernel writes one; a full buffer without it
/// is taken whole).
fn name_of(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req.ifr_name.iter().map(|&c| c as u8).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `addr` as the generic `sockaddr` the address ioctls take: the layout of a `sockaddr_in`
/// (family, then a zero port, then the address in network order).
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let mut sa_data = [0 as libc::c_char; 14];
    for (dst, b) in sa_data[2..6].iter_mut().zip(addr.octets()) {
        *dst = b as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data,
    }
}

impl TunTap {
    /// Create the device, or attach to an existing one of that name and kind, then configure its
    /// kernel side as `config` says.
    pub fn open(config: &TunTapConfig) -> Result<TunTap> {
        let name = config.name.as_str();
        validate_name(name)?;
        if let Some(mtu) = config.mtu {
            validate_mtu(name, config.kind, mtu)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(
                |e| match Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) {
                    Errno::EACCES | Errno::EPERM => LinkError::Permission {
                        device: name.to_string(),
                        op: "open /dev/net/tun",
                    },
                    errno => LinkError::TunUnavailable {
                        path: TUN_PATH.to_string(),
                        source: std::io::Error::from_raw_os_error(errno as i32),
                    },
                },
            )?;
        let fd: OwnedFd = file.into();

        let mut req = ifreq(name);
        let kind_flag = match config.kind {
            Kind::Tun => libc::IFF_TUN,
            Kind::Tap => libc::IFF_TAP,
        };
        let mut vnet_hdr = config.offload;
        req.ifr_ifru.ifru_flags =
            (kind_flag | libc::IFF_NO_PI | if vnet_hdr { libc::IFF_VNET_HDR } else { 0 })
                as libc::c_short;
        // SAFETY: fd is open on /dev/net/tun and req is a valid ifreq.
        let mut result = unsafe { tun_set_iff(fd.as_raw_fd(), &req) };
        if vnet_hdr && result == Err(Errno::EINVAL) {
            // A kernel without IFF_VNET_HDR: open the plain device.
            debug!("{name}: IFF_VNET_HDR refused, opening without offloads");
            vnet_hdr = false;
            req = ifreq(name);
            req.ifr_ifru.ifru_flags = (kind_flag | libc::IFF_NO_PI) as libc::c_short;
            // SAFETY: as above.
            result = unsafe { tun_set_iff(fd.as_raw_fd(), &req) };
        }
        if let Err(errno) = result {
            return Err(match errno {
                Errno::EBUSY => LinkError::Busy {
                    device: name.to_string(),
                },
                Errno::EINVAL => LinkError::WrongKind {
                    device: name.to_string(),
                    wanted: config.kind,
                },
                e => LinkError::io(name, "create or attach (TUNSETIFF)", e),
            });
        }
        // The kernel may have changed the name (e.g. a `%d` pattern): use the one it returns.
        let actual = name_of(&req);

        let offload = if vnet_hdr {
            negotiate_offload(fd.as_raw_fd(), &actual)
        } else {
            Offload::default()
        };
        let mut dev = TunTap {
            fd,
            name: actual,
            kind: config.kind,
            mtu: 0,
            offload,
            peers: config.peers.clone(),
        };
        dev.configure(config)?;
        if config.up {
            dev.await_ipv6_peers();
        }
        dev.mtu = dev.read_mtu()?;
        Ok(dev)
    }

    fn configure(&self, config: &TunTapConfig) -> Result<()> {
        let ctl = control_socket(&self.name, AddressFamily::Inet)?;
        let ctl = ctl.as_raw_fd();
        let name = self.name.as_str();
        if let Some(mtu) = config.mtu {
            let mut req = ifreq(name);
            req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
            // SAFETY: valid socket fd and ifreq.
            unsafe { siocsifmtu(ctl, &req) }
                .map_err(|e| LinkError::io(name, "set MTU (SIOCSIFMTU)", e))?;
        }

        let mut req = ifreq(name);
        // SAFETY: valid socket fd and ifreq; the kernel writes ifru_metric (the queue length).
        unsafe { siocgiftxqlen(ctl, &mut req) }
            .map_err(|e| LinkError::io(name, "read txqueuelen (SIOCGIFTXQLEN)", e))?;
        // SAFETY: SIOCGIFTXQLEN fills the ifru_metric member (ifr_qlen is an alias of it).
        let current = unsafe { req.ifr_ifru.ifru_metric } as u32;
        let wanted = config.txqueuelen.unwrap_or(current.max(DEFAULT_TXQUEUELEN));
        if wanted != current {
            req.ifr_ifru.ifru_metric = wanted as libc::c_int;
            // SAFETY: valid socket fd and ifreq.
            match unsafe { siocsiftxqlen(ctl, &req) } {
                Ok(_) => {}
                // Only our own default, on a device a user without CAP_NET_ADMIN attached to
                // (`ip tuntap add ... user U`): keep the queue its owner gave it.
                Err(Errno::EPERM) if config.txqueuelen.is_none() => debug!(
                    "{name}: txqueuelen stays {current} (raising it to {wanted} needs CAP_NET_ADMIN)"
                ),
                Err(e) => return Err(LinkError::io(name, "set txqueuelen (SIOCSIFTXQLEN)", e)),
            }
        }

        for &peer in &config.peers {
            self.set_address(peer)?;
        }

        if config.up {
            let mut req = ifreq(name);
            // SAFETY: valid socket fd and ifreq.
            unsafe { siocgifflags(ctl, &mut req) }
                .map_err(|e| LinkError::io(name, "read flags (SIOCGIFFLAGS)", e))?;
            // SAFETY: SIOCGIFFLAGS fills ifru_flags.
            let flags = unsafe { req.ifr_ifru.ifru_flags };
            // A device that is up already (one its owner configured) is left alone: setting
            // flags needs CAP_NET_ADMIN, which a user attaching to their own device lacks.
            if flags & libc::IFF_UP as libc::c_short == 0 {
                req.ifr_ifru.ifru_flags =
                    flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                // SAFETY: valid socket fd and ifreq.
                unsafe { siocsifflags(ctl, &req) }
                    .map_err(|e| LinkError::io(name, "bring link up (SIOCSIFFLAGS)", e))?;
            }
        }
        Ok(())
    }

    /// Wait (2 s at most) until the kernel may use the IPv6 addresses this process gave the
    /// kernel side. Bringing the link up restarts duplicate address detection, which is off
    /// here but still runs as deferred work: until it has, an address is "tentative", and the
    /// kernel picks another source for a packet to the host, even `::1` (whose answer it then
    /// drops as a loopback source from outside). Under load that window was long enough to
    /// lose the first `ping -6`. `/proc/net/if_inet6` lists each address with its flags.
    fn await_ipv6_peers(&self) {
        const TENTATIVE: u32 = 0x40;
        let wanted: Vec<String> = (self.peers.iter())
            .filter_map(|p| match IpAddr::from(p.address()) {
                IpAddr::V6(a) => Some(a.octets().iter().map(|b| format!("{b:02x}")).collect()),
                IpAddr::V4(_) => None,
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let ready = || {
            let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") else {
                return true; // no IPv6: nothing to wait for
            };
            wanted.iter().all(|addr| {
                table.lines().any(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    f.len() == 6
                        && f[0] == addr
                        && f[5] == self.name
                        && u32::from_str_radix(f[4], 16).is_ok_and(|fl| fl & TENTATIVE == 0)
                })
            })
        };
        let start = std::time::Instant::now();
        while !ready() {
            if start.elapsed() > std::time::Duration::from_secs(2) {
                debug!(
                    "{}: the kernel side's IPv6 address is still tentative",
                    self.name
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Add `cidr` as an address of the kernel side of the device.
    pub fn set_address(&self, cidr: IpCidr) -> Result<()> {
        let name = self.name.as_str();
        match IpAddr::from(cidr.address()) {
            IpAddr::V4(addr) => {
                let ctl = control_socket(name, AddressFamily::Inet)?;
                let mut req = ifreq(name);
                req.ifr_ifru.ifru_addr = sockaddr_v4(addr);
                // SAFETY: valid socket fd and ifreq.
                unsafe { siocsifaddr(ctl.as_raw_fd(), &req) }.map_err(|e| {
                    LinkError::io(name, "set the kernel-side IPv4 address (SIOCSIFADDR)", e)
                })?;
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(cidr.prefix_len()))
                    .unwrap_or(0);
                req.ifr_ifru.ifru_netmask = sockaddr_v4(Ipv4Addr::from(mask));
                // SAFETY: valid socket fd and ifreq.
                unsafe { siocsifnetmask(ctl.as_raw_fd(), &req) }.map_err(|e| {
                    LinkError::io(name, "set the kernel-side netmask (SIOCSIFNETMASK)", e)
                })?;
            }
            IpAddr::V6(addr) => {
                // Duplicate address detection would keep the address tentative (unusable) for a
                // second or two; on a link whose only other end is this process it can find
                // nothing. Best effort: without it the address works, only later.
                ipv6_conf(name, "accept_dad", "0");
                // The kernel drops IPv6 addresses when the link goes down and does not bring
                // them back when it comes up (IPv4 ones stay): keep this one, as IPv4 does, so
                // that `ip link set DEV down; ... up` does not cut the host off.
                ipv6_conf(name, "keep_addr_on_down", "1");
                let ctl = control_socket(name, AddressFamily::Inet6)?;
                let index = self.index()?;
                let req = libc::in6_ifreq {
                    ifr6_addr: libc::in6_addr {
                        s6_addr: Ipv6Addr::octets(&addr),
                    },
                    ifr6_prefixlen: u32::from(cidr.prefix_len()),
                    ifr6_ifindex: index,
                };
                // SAFETY: valid socket fd and in6_ifreq.
                unsafe { siocsifaddr6(ctl.as_raw_fd(), &req) }.map_err(|e| {
                    LinkError::io(name, "set the kernel-side IPv6 address (SIOCSIFADDR)", e)
                })?;
            }
        }
        Ok(())
    }

    fn index(&self) -> Result<libc::c_int> {
        let ctl = control_socket(&self.name, AddressFamily::Inet)?;
        let mut req = ifreq(&self.name);
        // SAFETY: valid socket fd and ifreq.
        unsafe { siocgifindex(ctl.as_raw_fd(), &mut req) }
            .map_err(|e| LinkError::io(&self.name, "read ifindex (SIOCGIFINDEX)", e))?;
        // SAFETY: SIOCGIFINDEX fills ifru_ifindex.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    fn read_mtu(&self) -> Result<u32> {
        let ctl = control_socket(&self.name, AddressFamily::Inet)?;
        let mut req = ifreq(&self.name);
        // SAFETY: valid socket fd and ifreq.
        unsafe { siocgifmtu(ctl.as_raw_fd(), &mut req) }
            .map_err(|e| LinkError::io(&self.name, "read MTU (SIOCGIFMTU)", e))?;
        // SAFETY: SIOCGIFMTU fills ifru_mtu.
        Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the device is TUN or TAP.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The device's MTU as the kernel reports it (an IP MTU, without the Ethernet header).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The offloads in force.
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// The kernel side's addresses as [`TunTapConfig::peers`] set them (empty: left as they
    /// were).
    pub fn peers(&self) -> &[IpCidr] {
        &self.peers
    }
}

/// With `IFF_VNET_HDR` on: fix the header size at 10 bytes and ask for checksum offload and TSO,
/// then for checksum offload alone; keep what the kernel grants.
fn negotiate_offload(fd: std::os::fd::RawFd, name: &str) -> Offload {
    let size = super::vnet::HDR_LEN as libc::c_int;
    // SAFETY: fd is a TUN/TAP fd with IFF_VNET_HDR; the argument points at a c_int.
    if let Err(e) = unsafe { tun_set_vnet_hdr_sz(fd, &size) } {
        // 10 is the kernel's default: go on with it.
        debug!("{name}: TUNSETVNETHDRSZ failed: {}", e.desc());
    }
    let all = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    for (flags, tso) in [(all, true), (libc::TUN_F_CSUM, false), (0, false)] {
        // SAFETY: TUNSETOFFLOAD takes its flags by value.
        match unsafe { tun_set_offload(fd, flags as libc::c_int) } {
            Ok(_) => {
                return Offload {
                    vnet_hdr: true,
                    csum: flags & libc::TUN_F_CSUM != 0,
                    tso4: tso,
                    tso6: tso,
                };
            }
            Err(e) => debug!("{name}: TUNSETOFFLOAD {flags:#x} refused: {}", e.desc()),
        }
    }
    Offload {
        vnet_hdr: true,
        ..Offload::default()
    }
}

impl AsFd for TunTap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Set `/proc/sys/net/ipv6/conf/DEVICE/KEY` to `value`, best effort (a read-only /proc in a
/// container, say): logged, not an error.
fn ipv6_conf(device: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{device}/{key}");
    if let Err(e) = std::fs::write(&path, value) {
        log::debug!("{device}: cannot set {key} to {value} ({path}: {e})");
    }
}

fn control_socket(device: &str, family: AddressFamily) -> Result<OwnedFd> {
    socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| LinkError::io(device, "open a control socket", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("tun0").is_ok());
        assert!(validate_name("a23456789012345").is_ok());
        assert!(validate_name("a234567890123456").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("a b").is_err());
    }

    #[test]
    fn mtus() {
        assert!(validate_mtu("t", Kind::Tun, 68).is_ok());
        assert!(validate_mtu("t", Kind::Tun, 67).is_err());
        assert!(validate_mtu("t", Kind::Tun, 65535).is_ok());
        assert!(validate_mtu("t", Kind::Tap, 65521).is_ok());
        assert!(validate_mtu("t", Kind::Tap, 65522).is_err());
    }
}
