//! Connection scale against the real kernel (issue 14): 10,000 connections open on the host, and
//! a packet still costs what it costs with none; memory per idle connection stays within the
//! README's bound ("## Memory").

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{HOST, TUN_ARGS, Tunhost, assert_echoes, in_netns};

/// Idle connections the test opens (on the echo port, so that any of them can be checked).
const IDLE: usize = 10_000;

/// RSS an idle connection may add to the host, the README's bound ("## Memory").
const RSS_PER_IDLE_CONNECTION: u64 = 4 * 1024;

/// 1-byte exchanges whose CPU cost is measured.
const EXCHANGES: u32 = 2_000;

/// The host's resident memory (VmRSS), bytes.
fn rss(host: &Tunhost) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid()))
        .expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Let this process hold `n` file descriptors (the limits of the whole test process: harmless
/// to the tests that run beside this one).
fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to an rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur >= n {
            return;
        }
        lim.rlim_cur = n;
        lim.rlim_max = lim.rlim_max.max(n);
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim),
            0,
            "setrlimit(RLIMIT_NOFILE, {n}): {}",
            std::io::Error::last_os_error()
        );
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect((HOST, port)).expect("connect to the host");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `n` 1-byte request/response exchanges on `s` (echo): every byte comes back.
fn exchanges(s: &mut TcpStream, n: u32) {
    let mut b = [0u8; 1];
    for i in 0..n {
        let x = [b'a' + (i % 26) as u8];
        s.write_all(&x).unwrap();
        s.read_exact(&mut b).unwrap();
        assert_eq!(b, x, "exchange {i}: the echo differs");
    }
}

/// The host's CPU (clock ticks) for [`EXCHANGES`] 1-byte exchanges on a connection of its own.
fn exchange_cost(host: &Tunhost) -> u64 {
    let mut s = connect(7);
    s.set_nodelay(true).unwrap();
    exchanges(&mut s, 10);
    let t0 = host.cpu_ticks();
    exchanges(&mut s, EXCHANGES);
    host.cpu_ticks() - t0
}

#[test]
fn ten_thousand_idle_connections_cost_nothing_per_packet_and_little_memory() {
    require_root!();
    raise_nofile(IDLE as u64 + 1024);
    in_netns(|| {
        // The namespace's own sysctl: room for 10,000 connections from one address.
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535")
            .expect("ip_local_port_range of the test's namespace");
        let mut args = TUN_ARGS.to_vec();
        // No busy polling: the host's CPU is then the work of the packets alone.
        args.extend_from_slice(&[
            "--echo",
            "7",
            "--max-connections",
            "12000",
            "--busy-poll",
            "0",
        ]);
        let host = Tunhost::serve(&args);
        let alone = exchange_cost(&host);
        let rss0 = rss(&host);

        let mut idle = Vec::with_capacity(IDLE);
        for i in 0..IDLE {
            match TcpStream::connect((HOST, 7)) {
                Ok(s) => idle.push(s),
                Err(e) => panic!("idle connection {i} of {IDLE}: {e}"),
            }
        }
        // The first and the last connection still reach their sockets (through the index), and
        // a new client is served.
        for i in [0, IDLE - 1] {
            let s = &mut idle[i];
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"still there").unwrap();
            let mut b = [0u8; 11];
            s.read_exact(&mut b)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
            assert_eq!(&b, b"still there", "idle connection {i}");
        }
        assert_echoes((HOST, 7), 100_000, 14);
        let rss1 = rss(&host);
        let crowded = exchange_cost(&host);

        let per_conn = rss1.saturating_sub(rss0) / IDLE as u64;
        eprintln!(
            "host RSS {} KiB alone, {} KiB with {IDLE} idle connections ({per_conn} bytes each); \
             CPU for {EXCHANGES} exchanges: {alone} ticks alone, {crowded} with them",
            rss0 / 1024,
            rss1 / 1024
        );
        let mut failures = Vec::new();
        if per_conn > RSS_PER_IDLE_CONNECTION {
            failures.push(format!(
                "an idle connection costs {per_conn} bytes of RSS, over the README's \
                 {RSS_PER_IDLE_CONNECTION}"
            ));
        }
        // A generous bound on CPU, not on time: walking 10,000 sockets per packet cost the host
        // some 200 times what the exchanges cost alone.
        if crowded > 3 * alone + 20 {
            failures.push(format!(
                "{EXCHANGES} exchanges cost the host {crowded} ticks of CPU with {IDLE} idle \
                 connections against {alone} with none"
            ));
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        // Every idle connection is still open: none was reset to make room.
        for (i, s) in idle.iter().enumerate().step_by(997) {
            s.set_nonblocking(true).unwrap();
            // (The two that echoed above have nothing left to read either.)
            let mut b = [0u8; 1];
            match (&*s).read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => {
                    panic!("idle connection {i}: {other:?} instead of an open, silent connection")
                }
            }
        }
    });
}
