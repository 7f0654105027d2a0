//! The two servers the benchmark compares tunhost with, each run as a child process of the
//! benchmark (`tunhost-bench --role ...`):
//!
//! - `stock`: smoltcp's own `phy::TunTapInterface` with a minimal discard (9), chargen (19) and
//!   echo (7) server written the obvious way, from the same smoltcp version tunhost uses;
//! - `kernel`: the kernel's TCP over a veth pair, with std sockets in a namespace of its own.
//!
//! Both stop by themselves after `MAX_LIFETIME` even if nobody kills them.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tunhost::services::chargen_pattern;
use tunhost::smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use tunhost::smoltcp::phy::{Medium, TunTapInterface, wait};
use tunhost::smoltcp::socket::tcp;
use tunhost::smoltcp::time::Instant;
use tunhost::smoltcp::wire::{HardwareAddress, IpCidr};

/// A server child never outlives this, killed or not.
pub const MAX_LIFETIME: Duration = Duration::from_secs(900);

/// Sockets per port of the stock server (like a small backlog).
const STOCK_SOCKETS: usize = 8;
const STOCK_BUF: usize = 64 * 1024;

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
    let cycle = chargen_pattern();
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
                    while s.can_send() {
                        let sent = s.send(|b| {
                            let mut n = 0;
                            while n < b.len() {
                                let c = (cycle.len() - *pos).min(b.len() - n);
                                b[n..n + c].copy_from_slice(&cycle[*pos..*pos + c]);
                                n += c;
                                *pos = (*pos + c) % cycle.len();
                            }
                            (n, n)
                        });
                        if !matches!(sent, Ok(n) if n > 0) {
                            break;
                        }
                    }
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
    let ip: Ipv4Addr = match addr.address() {
        tunhost::smoltcp::wire::IpAddress::Ipv4(a) => a,
        _ => panic!("IPv4 only"),
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
        let cycle = chargen_pattern();
        let mut buf = Vec::new();
        while buf.len() < 256 * 1024 {
            buf.extend_from_slice(&cycle);
        }
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
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::sleep(MAX_LIFETIME);
    std::process::exit(0)
}
