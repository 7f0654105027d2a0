//! What the host needs to know besides its device, and how it is checked.

use std::fmt;

use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// The host's addresses, routes and tuning. [`Config::default`] is one address, 192.0.2.2/24,
/// and no services: services are added to a host, not configured in it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host's own addresses (at most 2 with smoltcp's default build).
    pub addrs: Vec<IpCidr>,
    /// Default gateway, for peers outside the addresses' subnets.
    pub gateway: Option<IpAddress>,
    /// The host's MAC on a TAP device; `None` makes a random locally administered one.
    pub mac: Option<EthernetAddress>,
    /// Seed of smoltcp's randomness and of the secret of TCP's initial sequence numbers
    /// (RFC 6528: a keyed hash of the 4-tuple plus a clock), ephemeral ports and MAC. `None` takes
    /// one from the OS; a fixed seed makes the ISNs predictable (tests, replay).
    pub seed: Option<u64>,
    /// After a packet woke the host, keep checking the device (without sleeping) this long
    /// before sleeping again: the next packet of an exchange is then taken without the cost of a
    /// wake-up. Zero turns it off. An idle host never spins.
    pub busy_poll: Duration,
    /// Take the IPv4 address, prefix, default gateway and DNS servers from a DHCP server on the
    /// link (an Ethernet-medium device: TAP). `addrs` then holds IPv6 addresses only, or none.
    pub dhcp: Option<Dhcp>,
}

/// How the host uses DHCP ([`Config::dhcp`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dhcp {
    /// Treat a lease as at most this long (renew at half of it), whatever the server grants.
    pub max_lease: Option<Duration>,
}

/// The default of [`Config::busy_poll`].
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// The host's address with the defaults: 192.0.2.2/24 (TEST-NET-1, RFC 5737).
pub const DEFAULT_ADDR: &str = "192.0.2.2/24";

impl Default for Config {
    fn default() -> Self {
        Config {
            addrs: vec![DEFAULT_ADDR.parse().expect("valid constant")],
            gateway: None,
            mac: None,
            seed: None,
            busy_poll: DEFAULT_BUSY_POLL,
            dhcp: None,
        }
    }
}

/// A configuration the host cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No address at all.
    NoAddress,
    /// More addresses than the interface holds.
    TooManyAddresses {
        /// How many the interface holds.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A multicast, broadcast or unspecified address as the host's own.
    NotUnicast(IpCidr),
    /// A gateway no address's subnet contains.
    GatewayOutsideSubnets {
        /// The gateway.
        gateway: IpAddress,
        /// The host's addresses.
        addrs: Vec<IpCidr>,
    },
    /// A multicast MAC as the host's own.
    MulticastMac(EthernetAddress),
    /// The interface has no room for the default route through this gateway.
    NoRoomForRoute(IpAddress),
    /// DHCP and a fixed IPv4 address together.
    DhcpWithIpv4(IpCidr),
    /// DHCP on a device without Ethernet frames (TUN).
    DhcpNeedsEthernet,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoAddress => write!(f, "the host needs at least one address"),
            ConfigError::TooManyAddresses { max, got } => {
                write!(f, "the host can have at most {max} addresses, got {got}")
            }
            ConfigError::NotUnicast(a) => write!(f, "host address {a} is not a unicast address"),
            ConfigError::GatewayOutsideSubnets { gateway, addrs } => write!(
                f,
                "gateway {gateway} is not inside any host address's subnet ({})",
                list(addrs)
            ),
            ConfigError::MulticastMac(mac) => write!(
                f,
                "MAC {mac} is not a unicast address (the first octet must be even)"
            ),
            ConfigError::NoRoomForRoute(gw) => {
                write!(f, "no room for the default route through {gw}")
            }
            ConfigError::DhcpWithIpv4(a) => write!(
                f,
                "the IPv4 address comes from DHCP: {a} cannot be given as well"
            ),
            ConfigError::DhcpNeedsEthernet => {
                write!(f, "DHCP needs Ethernet frames: a TAP device, not TUN")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Check what can be checked without a device.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.addrs.is_empty() && self.dhcp.is_none() {
            return Err(ConfigError::NoAddress);
        }
        if let Some(a) =
            (self.addrs.iter()).find(|a| self.dhcp.is_some() && matches!(a, IpCidr::Ipv4(_)))
        {
            return Err(ConfigError::DhcpWithIpv4(*a));
        }
        let max = smoltcp::config::IFACE_MAX_ADDR_COUNT;
        if self.addrs.len() > max {
            return Err(ConfigError::TooManyAddresses {
                max,
                got: self.addrs.len(),
            });
        }
        if let Some(a) = self.addrs.iter().find(|a| !a.address().is_unicast()) {
            return Err(ConfigError::NotUnicast(*a));
        }
        if let Some(gw) = self.gateway {
            if !self.addrs.iter().any(|a| a.contains_addr(&gw)) {
                return Err(ConfigError::GatewayOutsideSubnets {
                    gateway: gw,
                    addrs: self.addrs.clone(),
                });
            }
        }
        if let Some(mac) = self.mac {
            if !mac.is_unicast() {
                return Err(ConfigError::MulticastMac(mac));
            }
        }
        Ok(())
    }
}

fn list(addrs: &[IpCidr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
