//! The host's IPv4 address from a DHCP server on the link (smoltcp's DHCPv4 socket), as most
//! embedded hosts get theirs: address and prefix, default gateway and DNS servers. smoltcp's
//! socket discovers, requests, renews at T1 and rebinds at T2; this module applies what it
//! reports to the interface and keeps the lease for the status page and the clients.

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{DhcpRepr, IpCidr, Ipv4Address, Ipv4Cidr};

/// A lease in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The host's address and prefix.
    pub address: Ipv4Cidr,
    /// The default gateway, if the server gave one.
    pub router: Option<Ipv4Address>,
    /// The DNS servers the server gave.
    pub dns_servers: Vec<Ipv4Address>,
    /// The server that granted it.
    pub server: Ipv4Address,
    /// How long it was granted for (as the server said; the socket may renew sooner).
    pub duration: Option<Duration>,
    /// When the host got it (its clock).
    pub since: Instant,
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}", self.address, self.server)?;
        if let Some(r) = self.router {
            write!(f, ", gateway {r}")?;
        }
        if !self.dns_servers.is_empty() {
            let dns: Vec<String> = self.dns_servers.iter().map(|d| d.to_string()).collect();
            write!(f, ", DNS {}", dns.join(" "))?;
        }
        if let Some(d) = self.duration {
            write!(f, ", lease {} s", d.secs())?;
        }
        Ok(())
    }
}

/// The DHCP client of a host.
#[derive(Debug)]
pub(crate) struct DhcpClient {
    handle: SocketHandle,
    lease: Option<Lease>,
}

impl DhcpClient {
    /// A DHCP socket in `sockets`, renewing at least every `max_lease` if given.
    pub(crate) fn new(sockets: &mut SocketSet<'static>, max_lease: Option<Duration>) -> Self {
        let mut socket = dhcpv4::Socket::new();
        socket.set_max_lease_duration(max_lease);
        DhcpClient {
            handle: sockets.add(socket),
            lease: None,
        }
    }

    /// The lease in force.
    pub(crate) fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Apply what the socket reports to `iface`: the lease's address in place of any IPv4 one,
    /// its router as the default IPv4 route; on losing it, neither. Returns whether anything
    /// changed.
    pub(crate) fn poll(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        now: Instant,
    ) -> bool {
        let event = sockets.get_mut::<dhcpv4::Socket>(self.handle).poll();
        match event {
            None => false,
            Some(dhcpv4::Event::Configured(config)) => {
                let duration = config
                    .packet
                    .as_ref()
                    .and_then(|p| DhcpRepr::parse(p).ok())
                    .and_then(|r| r.lease_duration)
                    .map(|s| Duration::from_secs(u64::from(s)));
                let lease = Lease {
                    address: config.address,
                    router: config.router,
                    dns_servers: config.dns_servers.iter().copied().collect(),
                    server: config.server.address,
                    duration,
                    since: now,
                };
                set_ipv4(iface, Some(lease.address), lease.router);
                log::info!("DHCP: {lease}");
                self.lease = Some(lease);
                true
            }
            Some(dhcpv4::Event::Deconfigured) => {
                if let Some(old) = self.lease.take() {
                    log::warn!(
                        "DHCP: lost the lease of {} (no answer to renew it)",
                        old.address
                    );
                }
                set_ipv4(iface, None, None);
                true
            }
        }
    }
}

/// The interface's IPv4 address and default route: `addr` in place of any IPv4 address (IPv6
/// ones stay), a default route through `router`, or none.
fn set_ipv4(iface: &mut Interface, addr: Option<Ipv4Cidr>, router: Option<Ipv4Address>) {
    iface.update_ip_addrs(|addrs| {
        addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
        if let Some(a) = addr {
            // Cannot fail: an IPv4 address was removed or the config left room for one.
            let _ = addrs.push(IpCidr::Ipv4(a));
        }
    });
    iface.routes_mut().remove_default_ipv4_route();
    if let Some(r) = router {
        let _ = iface.routes_mut().add_default_ipv4_route(r);
    }
}
