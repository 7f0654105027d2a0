//! The kernel's own addresses and routes (of the network namespace this process runs in), and
//! which interface a subnet would collide with.
//!
//! [`KernelView::read`] lists the (interface, address/prefix) pairs of `getifaddrs(3)` and the
//! routes of `/proc/net/route` (IPv4) and `/proc/net/ipv6_route` (IPv6);
//! [`KernelView::conflict`] says which other interface already holds an address, an overlapping
//! subnet or an overlapping route. Everything but `read` is a pure function of what was read, so
//! the rules are unit-tested on made-up tables.
//!
//! Not conflicts, because they overlap everything or belong to every link:
//! - default routes and routes shorter than [`MIN_PREFIX`] (a VPN's `0.0.0.0/1` and
//!   `128.0.0.0/1`, `2000::/3`): defaults in disguise;
//! - multicast routes, and IPv6 link-local addresses and routes (`fe80::/10`, one per link);
//! - the kernel's local routes (each is an address, listed as such) and reject routes.
//!
//! Not seen: IPv4 routes of tables other than `main` (policy routing with `ip rule`), which
//! `/proc/net/route` does not show. Two text files of stable format are read instead of a
//! netlink dump: no dependency and no `unsafe` for what they hold.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{IpAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};

use super::error::{LinkError, Result};

/// Where the kernel lists its IPv4 routes (the `main` table).
pub const ROUTES_V4: &str = "/proc/net/route";
/// Where the kernel lists its IPv6 routes (every table).
pub const ROUTES_V6: &str = "/proc/net/ipv6_route";

/// Routes and address subnets with a shorter prefix than this cover (nearly) everything, like a
/// default route: they are not conflicts.
pub const MIN_PREFIX: u8 = 8;

/// `RTF_REJECT`: a route that refuses packets (`ip route add unreachable ...`).
const RTF_REJECT: u32 = 0x0200;
/// `RTF_LOCAL` (IPv6): a route to one of the machine's own addresses.
const RTF_LOCAL: u32 = 0x8000_0000;

/// An address of an interface, with its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// The interface's name.
    pub interface: String,
    /// The address and its prefix, e.g. `192.0.2.2/24`.
    pub cidr: IpCidr,
}

/// A route through an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The interface the route goes through.
    pub interface: String,
    /// The destination subnet, e.g. `203.0.113.0/24`.
    pub dest: IpCidr,
}

/// The addresses and routes of the namespace, as the kernel had them when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelView {
    /// Every interface address, link-local IPv6 ones left out.
    pub addrs: Vec<IfAddr>,
    /// Every route that can conflict: no defaults, multicast, link-local, local or reject routes.
    pub routes: Vec<Route>,
}

/// What a subnet collides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clash {
    /// The address itself is this address of the interface.
    Address(IpCidr),
    /// The subnet overlaps the subnet of this address of the interface.
    Subnet(IpCidr),
    /// The subnet overlaps this route through the interface.
    Route(IpCidr),
}

/// An address or subnet that another interface of the machine already uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The address and prefix that was asked for.
    pub wanted: IpCidr,
    /// The interface that already uses it.
    pub interface: String,
    /// How.
    pub clash: Clash,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dev, net) = (&self.interface, network(self.wanted));
        match self.clash {
            Clash::Address(held) => write!(
                f,
                "{} is already an address of {dev} ({held})",
                self.wanted.address()
            ),
            Clash::Subnet(held) => write!(
                f,
                "{net} overlaps {} of {dev} (its address {held})",
                network(held)
            ),
            Clash::Route(dest) => write!(f, "{net} overlaps the route to {dest} through {dev}"),
        }
    }
}

impl KernelView {
    /// Read the addresses and routes of this process's network namespace.
    pub fn read() -> Result<KernelView> {
        let mut addrs = Vec::new();
        let ifaddrs = nix::ifaddrs::getifaddrs().map_err(|e| LinkError::KernelView {
            from: "getifaddrs".into(),
            source: io::Error::from_raw_os_error(e as i32),
        })?;
        for ifa in ifaddrs {
            let (Some(addr), mask) = (ifa.address, ifa.netmask) else {
                continue;
            };
            let (ip, prefix): (IpAddress, _) = if let Some(a) = addr.as_sockaddr_in() {
                let bits = mask.and_then(|m| m.as_sockaddr_in().map(|m| m.ip().octets()));
                (a.ip().into(), bits.map_or(Some(32), |b| prefix_len(&b)))
            } else if let Some(a) = addr.as_sockaddr_in6() {
                let bits = mask.and_then(|m| m.as_sockaddr_in6().map(|m| m.ip().octets()));
                (a.ip().into(), bits.map_or(Some(128), |b| prefix_len(&b)))
            } else {
                continue;
            };
            if let Some(prefix) = prefix {
                addrs.push(IfAddr {
                    interface: ifa.interface_name,
                    cidr: IpCidr::new(ip, prefix),
                });
            }
        }
        addrs.retain(|a| !is_link_local(a.cidr.address()));
        let mut routes = routes_v4(&read_table(ROUTES_V4, false)?);
        routes.extend(routes_v6(&read_table(ROUTES_V6, true)?));
        Ok(KernelView { addrs, routes })
    }

    /// The first way in which an interface other than `own` already uses `wanted` (an address
    /// and its prefix): the same address, an address in an overlapping subnet, or a route to an
    /// overlapping subnet. `own` is the device about to be used: its addresses and routes are
    /// its own business.
    pub fn conflict(&self, wanted: IpCidr, own: &str) -> Option<Conflict> {
        let others = |i: &String| i != own;
        let found = |interface: &String, clash| {
            Some(Conflict {
                wanted,
                interface: interface.clone(),
                clash,
            })
        };
        let addrs = self.addrs.iter().filter(|a| others(&a.interface));
        for a in addrs.clone() {
            if a.cidr.address() == wanted.address() {
                return found(&a.interface, Clash::Address(a.cidr));
            }
        }
        for a in addrs {
            if a.cidr.prefix_len() >= MIN_PREFIX && overlaps(a.cidr, wanted) {
                return found(&a.interface, Clash::Subnet(a.cidr));
            }
        }
        self.routes
            .iter()
            .filter(|r| others(&r.interface) && overlaps(r.dest, wanted))
            .find_map(|r| found(&r.interface, Clash::Route(r.dest)))
    }

    /// The addresses of the interface `name` (none if it does not exist).
    pub fn addrs_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = IpCidr> + 'a {
        self.addrs
            .iter()
            .filter(move |a| a.interface == name)
            .map(|a| a.cidr)
    }
}

/// Whether two subnets share an address (one contains the other). Addresses of different
/// families never overlap.
pub fn overlaps(a: IpCidr, b: IpCidr) -> bool {
    a.contains_subnet(&b) || b.contains_subnet(&a)
}

/// The subnet of an address: `192.0.2.2/24` is in `192.0.2.0/24`.
pub fn network(cidr: IpCidr) -> IpCidr {
    match cidr {
        IpCidr::Ipv4(c) => IpCidr::Ipv4(c.network()),
        IpCidr::Ipv6(c) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(c.prefix_len()))
                .unwrap_or(0);
            let net = Ipv6Addr::from(u128::from(c.address()) & keep);
            IpCidr::Ipv6(Ipv6Cidr::new(net, c.prefix_len()))
        }
    }
}

/// The prefix length of a netmask (`255.255.255.0` is 24); `None` if its ones are not contiguous.
fn prefix_len(mask: &[u8]) -> Option<u8> {
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let contiguous = mask
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1))
        .skip(ones as usize)
        .all(|bit| bit == 0);
    contiguous.then_some(ones as u8)
}

fn is_link_local(addr: IpAddress) -> bool {
    matches!(addr, IpAddress::Ipv6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// Whether a route can conflict (see the module's documentation).
fn counts(dest: IpCidr, flags: u32) -> bool {
    dest.prefix_len() >= MIN_PREFIX
        && flags & (RTF_REJECT | RTF_LOCAL) == 0
        && !dest.address().is_multicast()
        && !is_link_local(dest.address())
}

/// The text of a route table; a missing IPv6 table (IPv6 disabled) is an empty one.
fn read_table(path: &str, optional: bool) -> Result<String> {
    match std::fs::read_to_string(path) {
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        r => r.map_err(|source| LinkError::KernelView {
            from: path.into(),
            source,
        }),
    }
}

/// The routes of `/proc/net/route`: a header line, then `Iface Destination Gateway Flags RefCnt
/// Use Metric Mask ...`, addresses and masks as the hexadecimal of the 32-bit word in memory
/// (network order, so its bytes in native order are the address's octets).
pub fn routes_v4(text: &str) -> Vec<Route> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dev, dest, flags, mask) = (f.first()?, word(f.get(1)?)?, f.get(3)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let cidr = Ipv4Cidr::new(Ipv4Addr::from(dest), prefix_len(&word(mask)?)?);
            let dest = IpCidr::Ipv4(cidr);
            counts(dest, flags).then(|| Route {
                interface: dev.to_string(),
                dest: network(dest),
            })
        })
        .collect()
}

/// The routes of `/proc/net/ipv6_route`: `dest dest_plen src src_plen nexthop metric refcnt use
/// flags device`, in hexadecimal, no header.
pub fn routes_v6(text: &str) -> Vec<Route> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, plen, flags, dev) = (f.first()?, f.get(1)?, f.get(8)?, f.get(9)?);
            let dest = Ipv6Addr::from(u128::from_str_radix(dest, 16).ok()?);
            let plen = u8::from_str_radix(plen, 16).ok().filter(|&p| p <= 128)?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let dest = IpCidr::Ipv6(Ipv6Cidr::new(dest, plen));
            counts(dest, flags).then(|| Route {
                interface: dev.to_string(),
                dest: network(dest),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> IpCidr {
        s.parse().unwrap()
    }

    fn addr(interface: &str, c: &str) -> IfAddr {
        IfAddr {
            interface: interface.into(),
            cidr: cidr(c),
        }
    }

    fn route(interface: &str, c: &str) -> Route {
        Route {
            interface: interface.into(),
            dest: cidr(c),
        }
    }

    /// The machine of the issue: eth0 is 192.0.2.2/24 behind the gateway 192.0.2.1, and a route
    /// to 203.0.113.0/24 goes through vethA.
    fn machine() -> KernelView {
        KernelView {
            addrs: vec![
                addr("lo", "127.0.0.1/8"),
                addr("lo", "::1/128"),
                addr("eth0", "192.0.2.2/24"),
                addr("eth0", "fd00::2/64"),
            ],
            routes: vec![
                route("eth0", "192.0.2.0/24"),
                route("eth0", "fd00::/64"),
                route("vethA", "203.0.113.0/24"),
            ],
        }
    }

    fn clash(wanted: &str, own: &str) -> Option<(String, Clash)> {
        machine()
            .conflict(cidr(wanted), own)
            .map(|c| (c.interface, c.clash))
    }

    #[test]
    fn overlap_is_containment_either_way_within_a_family() {
        assert!(overlaps(cidr("192.0.2.2/24"), cidr("192.0.2.0/24")));
        assert!(overlaps(cidr("192.0.2.200/24"), cidr("192.0.2.1/32")));
        assert!(overlaps(cidr("192.0.2.1/32"), cidr("192.0.0.0/16")));
        assert!(overlaps(cidr("192.0.0.0/16"), cidr("192.0.2.1/32")));
        assert!(!overlaps(cidr("192.0.2.0/24"), cidr("192.0.3.0/24")));
        assert!(!overlaps(cidr("192.0.2.0/25"), cidr("192.0.2.128/25")));
        assert!(overlaps(cidr("2001:db8::2/64"), cidr("2001:db8::/32")));
        assert!(!overlaps(cidr("2001:db8:1::2/64"), cidr("2001:db8:2::/64")));
        assert!(!overlaps(cidr("192.0.2.0/24"), cidr("::/0")));
    }

    #[test]
    fn networks() {
        assert_eq!(network(cidr("192.0.2.77/24")), cidr("192.0.2.0/24"));
        assert_eq!(network(cidr("2001:db8:1:2::9/48")), cidr("2001:db8:1::/48"));
        assert_eq!(network(cidr("2001:db8::9/0")), cidr("::/0"));
        assert_eq!(network(cidr("2001:db8::9/128")), cidr("2001:db8::9/128"));
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_len(&[255, 255, 255, 0]), Some(24));
        assert_eq!(prefix_len(&[255, 255, 254, 0]), Some(23));
        assert_eq!(prefix_len(&[0; 4]), Some(0));
        assert_eq!(prefix_len(&[255; 16]), Some(128));
        assert_eq!(prefix_len(&[255, 0, 255, 0]), None);
    }

    #[test]
    fn an_address_of_another_interface_is_a_conflict() {
        assert_eq!(
            clash("192.0.2.2/24", "tunhost0"),
            Some(("eth0".into(), Clash::Address(cidr("192.0.2.2/24"))))
        );
        // The gateway's address, in eth0's subnet: the subnet clashes.
        assert_eq!(
            clash("192.0.2.1/24", "tunhost0"),
            Some(("eth0".into(), Clash::Subnet(cidr("192.0.2.2/24"))))
        );
        // Any prefix length that overlaps, in either family.
        for (wanted, dev) in [
            ("192.0.2.130/25", "eth0"),
            ("192.0.0.1/16", "eth0"),
            ("fd00::9/64", "eth0"),
            ("127.0.0.5/8", "lo"),
        ] {
            let found = clash(wanted, "tunhost0").map(|c| c.0);
            assert_eq!(found.as_deref(), Some(dev), "{wanted}");
        }
    }

    #[test]
    fn a_route_through_another_interface_is_a_conflict() {
        for wanted in ["203.0.113.2/24", "203.0.113.2/28", "203.0.0.2/16"] {
            assert_eq!(
                clash(wanted, "tunhost0"),
                Some(("vethA".into(), Clash::Route(cidr("203.0.113.0/24")))),
                "{wanted}"
            );
        }
    }

    #[test]
    fn free_subnets_and_the_own_device_are_not() {
        assert_eq!(clash("198.51.100.2/24", "tunhost0"), None);
        assert_eq!(clash("192.0.3.2/24", "tunhost0"), None);
        assert_eq!(clash("2001:db8::2/64", "tunhost0"), None);
        // The device being attached to may hold what it likes.
        assert_eq!(clash("203.0.113.2/24", "vethA"), None);
        assert_eq!(clash("192.0.2.1/24", "eth0"), None);
    }

    #[test]
    fn the_first_conflict_is_the_most_telling() {
        // eth0 holds the address and a route to the subnet: the address is named.
        let c = machine().conflict(cidr("192.0.2.2/24"), "x").unwrap();
        assert_eq!(
            c.to_string(),
            "192.0.2.2 is already an address of eth0 (192.0.2.2/24)"
        );
        let c = machine().conflict(cidr("192.0.2.9/24"), "x").unwrap();
        assert_eq!(
            c.to_string(),
            "192.0.2.0/24 overlaps 192.0.2.0/24 of eth0 (its address 192.0.2.2/24)"
        );
        let c = machine().conflict(cidr("203.0.113.2/24"), "x").unwrap();
        assert_eq!(
            c.to_string(),
            "203.0.113.0/24 overlaps the route to 203.0.113.0/24 through vethA"
        );
    }

    #[test]
    fn wide_address_subnets_are_not_conflicts() {
        let view = KernelView {
            addrs: vec![addr("wg0", "198.18.2.3/4")],
            routes: vec![],
        };
        assert_eq!(view.conflict(cidr("198.19.9.9/24"), "x"), None);
        assert_eq!(
            view.conflict(cidr("198.18.2.3/24"), "x").map(|c| c.clash),
            Some(Clash::Address(cidr("198.18.2.3/4")))
        );
    }

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
vpn0\t00000000\t00000000\t0001\t0\t0\t0\t00000080\t0\t0\t0
vethA\t007100CB\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t006433C6\t00000000\t0201\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t000001EF\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0
";

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv4_routes_without_defaults_rejects_or_multicast() {
        // The default, a VPN's half default (0.0.0.0/1), an unreachable route, multicast and a
        // malformed mask are left out.
        assert_eq!(
            routes_v4(ROUTE),
            vec![
                route("eth0", "192.0.2.0/24"),
                route("vethA", "203.0.113.0/24")
            ]
        );
        assert_eq!(routes_v4(""), vec![]);
        assert_eq!(routes_v4("header only\n"), vec![]);
    }

    const IPV6_ROUTE: &str = "\
20010db8000500000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001    vethA
20010db8000700000000000000000000 30 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001    vethA
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001    vethA
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001       lo
20010db8000500000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001    vethA
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001    vethA
20000000000000000000000000000000 03 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     tun5
20010db8000900000000000000000000 zz 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001    vethA
";

    #[test]
    fn ipv6_routes_without_local_link_local_multicast_or_defaults() {
        assert_eq!(
            routes_v6(IPV6_ROUTE),
            vec![
                route("vethA", "2001:db8:5::/64"),
                route("vethA", "2001:db8:7::/48")
            ]
        );
    }

    #[test]
    fn messages_name_no_flag() {
        let c = machine().conflict(cidr("203.0.113.2/24"), "x").unwrap();
        assert!(!c.to_string().contains("--"), "{c}");
        let e = LinkError::KernelView {
            from: ROUTES_V4.into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "cannot read the machine's addresses and routes from /proc/net/route: No such file \
             or directory"
        );
    }

    #[test]
    fn reads_this_namespace() {
        // Every namespace has its loopback; reading changes nothing.
        let view = KernelView::read().expect("read the kernel's addresses and routes");
        assert!(
            view.addrs_of("lo").any(|a| a == cidr("127.0.0.1/8")),
            "{view:?}"
        );
    }
}
