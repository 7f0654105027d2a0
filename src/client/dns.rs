//! Names for the clients: a DNS lookup through the host's own stack (smoltcp's DNS socket), as
//! an embedded host would make it. The query goes out over UDP from the host's address to the
//! servers given (`--dns`), never through the machine's resolver.
//!
//! IPv4 first (an `A` query) when the host has an IPv4 address, then IPv6 (`AAAA`) when it has
//! an IPv6 one and nothing came back for IPv4. smoltcp retransmits a query after 1 s, doubling
//! up to 10 s, and gives up 10 s after the last try; [`resolve`] also stops at its own timeout.

use std::ops::ControlFlow;

use smoltcp::phy::Device;
use smoltcp::socket::dns::{self, GetQueryResultError};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{DnsQueryType, IpAddress};

use super::{ClientError, ClientErrorKind, Result};
use crate::host::{Clock, Host, Stop};
use crate::link::Housekeeping;

/// How long [`resolve`] waits for an answer, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `text` is a host name a DNS query can carry: labels of letters, digits and hyphens,
/// 1 to 63 bytes each, 253 in all, not all digits (that would be an address).
pub fn is_name(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 253
        && !text
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
        && text.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The addresses of `name`, from `servers`, through the host's stack. An error names `name`:
/// no server given, no answer within `timeout`, or an answer with no address.
pub fn resolve<D, C>(
    host: &mut Host<D, C>,
    name: &str,
    servers: &[IpAddress],
    timeout: Duration,
    stop: Option<&Stop>,
) -> Result<Vec<IpAddress>>
where
    D: Device + std::os::fd::AsFd + Housekeeping,
    C: Clock,
{
    let fail = |kind| ClientError::new(name, kind);
    if servers.is_empty() {
        return Err(fail(ClientErrorKind::Dns("no DNS server to ask".into())));
    }
    let (v4, v6) = {
        let addrs = host.iface().ip_addrs();
        (
            addrs
                .iter()
                .any(|a| matches!(a.address(), IpAddress::Ipv4(_))),
            addrs
                .iter()
                .any(|a| matches!(a.address(), IpAddress::Ipv6(_))),
        )
    };
    let kinds: Vec<DnsQueryType> = [(v4, DnsQueryType::A), (v6, DnsQueryType::Aaaa)]
        .into_iter()
        .filter_map(|(has, kind)| has.then_some(kind))
        .collect();
    let socket = dns::Socket::new(servers, vec![None]);
    let handle = host.sockets_mut().add(socket);
    let deadline = host.clock().now() + timeout;
    let mut result = Ok(Vec::new());
    for kind in kinds {
        result = query(host, handle, name, kind, deadline, stop);
        if matches!(&result, Ok(found) if !found.is_empty()) || result.is_err() {
            break;
        }
    }
    host.sockets_mut().remove(handle);
    match result {
        Ok(found) if found.is_empty() => Err(fail(ClientErrorKind::Dns(format!(
            "no address from {} (an error answer, no record of it, or no answer in time)",
            list(servers)
        )))),
        Ok(found) => Ok(found),
        Err(why) => Err(fail(ClientErrorKind::Dns(why))),
    }
}

/// "192.0.2.1" or "192.0.2.1, 198.51.100.1".
fn list(servers: &[IpAddress]) -> String {
    let s: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    s.join(", ")
}

/// One query of `kind` for `name` on the DNS socket `handle`: the addresses found (none: the
/// name has none of that kind, or the server said no), or why it failed.
fn query<D, C>(
    host: &mut Host<D, C>,
    handle: smoltcp::iface::SocketHandle,
    name: &str,
    kind: DnsQueryType,
    deadline: Instant,
    stop: Option<&Stop>,
) -> std::result::Result<Vec<IpAddress>, String>
where
    D: Device + std::os::fd::AsFd + Housekeeping,
    C: Clock,
{
    let q = {
        let (iface, sockets) = host.parts_mut();
        sockets
            .get_mut::<dns::Socket>(handle)
            .start_query(iface.context(), name, kind)
            .map_err(|e| format!("cannot ask: {e}"))?
    };
    let outcome = super::drive(host, name, stop, |host, now| {
        let socket = host.sockets_mut().get_mut::<dns::Socket>(handle);
        Ok(match socket.get_query_result(q) {
            Ok(found) => ControlFlow::Break(Ok(found.iter().copied().collect())),
            // smoltcp says only "failed": no answer in time, or an error answer (NXDOMAIN,
            // REFUSED), or one without a record of this kind.
            Err(GetQueryResultError::Failed) => ControlFlow::Break(Ok(Vec::new())),
            Err(GetQueryResultError::Pending) if now >= deadline => {
                socket.cancel_query(q);
                ControlFlow::Break(Err("no answer in time".to_string()))
            }
            Err(GetQueryResultError::Pending) => ControlFlow::Continue(Some(deadline)),
        })
    })
    .map_err(|e| e.to_string())?;
    match outcome {
        Some(r) => r,
        None => Err("interrupted".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["name.example", "a", "x-1.example.", "host42", "1a.example"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "192.0.2.1",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "a b",
            &"x".repeat(64),
            &["abc"; 64].join("."),
        ] {
            assert!(!is_name(bad), "{bad}");
        }
    }
}
