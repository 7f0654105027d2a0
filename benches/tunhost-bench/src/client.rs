//! The kernel client of every measurement: plain std sockets (and an ICMP datagram socket), each
//! loop bounded in time and in count.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CHUNK: usize = 256 * 1024;
/// Upper bounds on iterations, whatever the time says.
const MAX_BYTES: u64 = 1 << 40;
const MAX_RR: u64 = 10_000_000;
const MAX_CONNECTS: u64 = 200_000;
const MAX_PINGS: u64 = 1_000_000;

fn connect(addr: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&SocketAddr::from((addr, port)), IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Kernel → host: write to discard for `secs`, then FIN and wait for the host's FIN (all data
/// consumed). Gbit/s.
pub fn bulk_in(addr: Ipv4Addr, secs: f64) -> std::io::Result<f64> {
    bulk_in_with(addr, secs, None)
}

/// [`bulk_in`] with the kernel's congestion control for this connection set to `congestion`
/// (`TCP_CONGESTION`: `cubic`, `reno`, `bbr`), whatever the namespace's default is.
pub fn bulk_in_with(addr: Ipv4Addr, secs: f64, congestion: Option<&str>) -> std::io::Result<f64> {
    let mut s = connect(addr, 9)?;
    if let Some(cc) = congestion {
        let name = std::ffi::OsString::from(cc);
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::TcpCongestion, &name)
            .map_err(|e| std::io::Error::other(format!("TCP_CONGESTION {cc}: {e}")))?;
    }
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs && bytes < MAX_BYTES {
        s.write_all(&buf)?;
        bytes += buf.len() as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut b = [0u8; 64];
    while s.read(&mut b)? > 0 {}
    Ok(bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9)
}

/// Host → kernel: read from chargen for `secs`. Gbit/s.
pub fn bulk_out(addr: Ipv4Addr, secs: f64) -> std::io::Result<f64> {
    let mut s = connect(addr, 19)?;
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs && bytes < MAX_BYTES {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("chargen closed early"));
        }
        bytes += n as u64;
    }
    let rate = bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
    let _ = s.shutdown(Shutdown::Both);
    Ok(rate)
}

/// 1-byte request/response on echo for `secs`. Transactions per second.
pub fn rr(addr: Ipv4Addr, secs: f64) -> std::io::Result<f64> {
    let mut s = connect(addr, 7)?;
    s.set_nodelay(true)?;
    let mut b = [0u8; 1];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs && n < MAX_RR {
        s.write_all(b"x")?;
        s.read_exact(&mut b)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Connect to discard, close (FIN) at once and wait for the server's FIN, one connection after
/// the other, for `secs`. Per second. Waiting for the server's close makes every server take
/// part in each connection (the kernel would otherwise complete handshakes far ahead of a
/// server thread's `accept`, overflow the listen queue and stall on SYN retransmits).
pub fn connect_close(addr: Ipv4Addr, secs: f64) -> std::io::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut b = [0u8; 16];
    while start.elapsed().as_secs_f64() < secs && n < MAX_CONNECTS {
        let mut s = connect(addr, 9)?;
        s.shutdown(Shutdown::Write)?;
        while s.read(&mut b)? > 0 {}
        drop(s);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// ICMP echo, one in flight at a time, for `secs`: the median round-trip time in µs.
///
/// An ICMP datagram socket (`ping_group_range` allows it): the kernel fills in the identifier
/// and checksum. It is driven as a `UdpSocket`, whose calls are the same; port 0.
pub fn icmp_rtt(addr: Ipv4Addr, secs: f64) -> std::io::Result<f64> {
    Ok(crate::median(&mut icmp_rtts(addr, secs, false)?))
}

/// The round-trip times (µs) of ICMP echoes, one in flight at a time, for `secs`. With `lossy`,
/// an echo with no reply within a second is left out (a bad link drops some) instead of
/// failing the measurement.
pub fn icmp_rtts(addr: Ipv4Addr, secs: f64, lossy: bool) -> std::io::Result<Vec<f64>> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )?;
    let sock = std::net::UdpSocket::from(fd);
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let to = SocketAddr::from((addr, 0));
    let mut rtts = Vec::new();
    let start = Instant::now();
    let mut seq = 0u16;
    let mut reply = [0u8; 256];
    while (start.elapsed().as_secs_f64() < secs || rtts.len() < 5) && (seq as u64) < MAX_PINGS {
        seq = seq.wrapping_add(1);
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
        // Echo request: type 8, code 0, checksum and id (kernel's), seq, zero payload.
        let mut req = [0u8; 64];
        req[0] = 8;
        req[6..8].copy_from_slice(&seq.to_be_bytes());
        let t = Instant::now();
        sock.send_to(&req, to)?;
        // Echo reply (type 0) with our sequence number; a late reply to an earlier one is skipped.
        let answered = loop {
            match sock.recv(&mut reply) {
                Ok(n) if n >= 8 && reply[0] == 0 && reply[6..8] == seq.to_be_bytes() => break true,
                Ok(_) => {}
                Err(e)
                    if lossy && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break false;
                }
                Err(e) => return Err(e),
            }
        };
        if answered {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(rtts)
}
