//! The two servers the benchmark compares tunhost with, each run as a child process of the
//! benchmark (`tunhost-bench --role ...`):
//!
//! - `stock`: smoltcp's own `phy::TunTapInterface` with a minimal discard (9), chargen (19) and
//!   echo (7) server written the obvious way, from the same smoltcp version tunhost uses;
//! - `kernel`: the kernel's TCP over a veth pair, with std sockets in a namespace of its own.
//!
//! Both stop by themselves after `MAX_LIFETIME` even if nobody kills them.

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Medium, TunTapInterface, wait};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr};

/// A server child never outlives this, killed or not.
pub const MAX_LIFETIME: Duration = Duration::from_secs(900);

/// Sockets per port of the stock server (like a small backlog).
const STOCK_SOCKETS: usize = 8;
const STOCK_BUF: usize = 64 * 1024;

/// The 95 printable ASCII characters the character generator (RFC 864) cycles through.
const PRINTABLE: std::ops::RangeInclusive<u8> = b' '..=b'~';
/// Characters of a chargen line before its CRLF.
const LINE: usize = 72;
/// One period of the chargen output: 95 lines (one per starting character) of 72 + 2 bytes.
const CHARGEN_PERIOD: usize = 95 * (LINE + 2);

/// Chargen output from its start, whole periods of it, at least `len` bytes: line `i` holds the
/// 72 printable characters from the `i`-th on (wrapping past `~` to the space), then CRLF. A
/// server sends slices of it that start at an offset below [`CHARGEN_PERIOD`].
fn chargen_output(len: usize) -> Vec<u8> {
    let printable: Vec<u8> = PRINTABLE.collect();
    let period: Vec<u8> = (0..printable.len())
        .flat_map(|first| {
            let line = printable.iter().cycle().skip(first).take(LINE);
            line.copied().chain(*b"\r\n")
        })
        .collect();
    period.repeat(len.div_ceil(CHARGEN_PERIOD).max(1))
}

/// Stock smoltcp on the existing TUN device `dev`, host address `addr`.
pub fn stock(dev: &str, addr: IpCidr) -> ! {
    let start = std::time::Instant::now();
    let mut device = TunTapInterface::new(dev, Medium::Ip).expect("open the TUN device");
    let fd = device.as_raw_fd();
    let clock = std::time::Instant::now();
    let now = || Instant::from_micros(clock.elapsed().as_micros() as i64);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, now());
    iface.update_ip_addrs(|a| {
        a.push(addr).expect("one address");
    });
    let mut sockets = SocketSet::new(Vec::new());
    let mut socks: Vec<(u16, SocketHandle, usize)> = Vec::new();
    for port in [7u16, 9, 19] {
        for _ in 0..STOCK_SOCKETS {
            let s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; STOCK_BUF]),
                tcp::SocketBuffer::new(vec![0; STOCK_BUF]),
            );
            socks.push((port, sockets.add(s), 0));
        }
    }
    // Each chargen connection sends from its offset in the period, up to a full send buffer.
    let chargen = chargen_output(CHARGEN_PERIOD + STOCK_BUF);
    let mut tmp = vec![0u8; STOCK_BUF];
    println!("ready");
    let _ = std::io::stdout().flush();
    while start.elapsed() < MAX_LIFETIME {
        let t = now();
        iface.poll(t, &mut device, &mut sockets);
        for (port, h, pos) in socks.iter_mut() {
            let s = sockets.get_mut::<tcp::Socket>(*h);
            if !s.is_open() {
                s.listen(*port).expect("listen");
                continue;
            }
            match *port {
                9 => {
                    while s.can_recv() {
                        let _ = s.recv(|b| (b.len(), ()));
                    }
                }
                19 => {
                    while s.can_recv() {
                        let _ = s.recv(|b| (b.len(), ()));
                    }
                    // As much as the send buffer takes (its free space may wrap around).
                    let sent = s.send_slice(&chargen[*pos..*pos + STOCK_BUF]).unwrap_or(0);
                    *pos = (*pos + sent) % CHARGEN_PERIOD;
                }
                _ => {
                    while s.can_recv() && s.can_send() {
                        let room = s.send_capacity() - s.send_queue();
                        let n = s.recv_slice(&mut tmp[..room]).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        let _ = s.send_slice(&tmp[..n]);
                    }
                }
            }
            if !s.may_recv() && !s.can_recv() && s.may_send() {
                s.close();
            }
        }
        // As smoltcp's examples do: what the sockets queued makes poll_delay zero, and the next
        // turn sends it.
        let delay = iface.poll_delay(now(), &sockets);
        wait(fd, delay).expect("wait");
    }
    std::process::exit(0)
}

/// The kernel's TCP on the veth end `dev` of a namespace of its own. Protocol with the parent on
/// stdin/stdout: print `netns` once in the new namespace, wait for `go` (the parent has moved the
/// veth end in), configure, print `ready`.
pub fn kernel(dev: &str, addr: IpCidr, mtu: u32) -> ! {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    crate::sh(&["ip", "link", "set", "lo", "up"]);
    println!("netns");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    crate::sh(&["ip", "addr", "add", &addr.to_string(), "dev", dev]);
    crate::sh(&["ip", "link", "set", dev, "mtu", &mtu.to_string(), "up"]);
    let std::net::IpAddr::V4(ip) = addr.address().into() else {
        panic!("IPv4 only")
    };
    let discard = TcpListener::bind((ip, 9)).expect("bind 9");
    let chargen = TcpListener::bind((ip, 19)).expect("bind 19");
    let echo = TcpListener::bind((ip, 7)).expect("bind 7");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        for c in discard.incoming().flatten() {
            let mut c = c;
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    std::thread::spawn(move || {
        let buf = chargen_output(256 * 1024);
        for c in chargen.incoming().flatten() {
            let mut c = c;
            while c.write_all(&buf).is_ok() {}
        }
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        for c in echo.incoming().flatten() {
            let mut c = c;
            let _ = c.set_nodelay(true);
            loop {
                match c.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
    });
    // HTTP on 80 for the row "slow HTTP clients".
    let http = TcpListener::bind((ip, 80)).expect("bind 80");
    std::thread::spawn(move || crate::slow::serve_http(http));
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::sleep(MAX_LIFETIME);
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chargen_output_is_rfc864() {
        let out = chargen_output(1);
        assert_eq!(out.len(), CHARGEN_PERIOD);
        let lines: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 95);
        assert_eq!(
            lines[0],
            b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
        );
        assert!(lines[1].starts_with(b"!\"#"));
        // The last line starts with '~' and wraps to the space.
        assert!(lines[94].starts_with(b"~ !\"#"));
        assert!(
            lines
                .iter()
                .all(|l| l.len() == LINE + 2 && l.ends_with(b"\r\n"))
        );
        assert_eq!(chargen_output(CHARGEN_PERIOD + 1).len(), 2 * CHARGEN_PERIOD);
        assert_eq!(
            &out[..],
            &chargen_output(3 * CHARGEN_PERIOD)[2 * CHARGEN_PERIOD..]
        );
    }
}
