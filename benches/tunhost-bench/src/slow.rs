//! The row "slow HTTP clients: 10k": 10,000 clients each hold a connection open with half a
//! request head and trickle one more byte every few seconds (slowloris), while a new client
//! connects, sends a GET and reads the whole response, again and again. The row shows how long
//! that new client waits (median and worst), tunhost beside the kernel's TCP.
//!
//! - tunhost: `tunhost serve --http 80` (its status page), with header and idle timeouts raised
//!   to 120 s so that the slow clients stay for the whole measurement (by default they get 408
//!   after 10 s);
//! - kernel: a small HTTP server on std sockets and epoll in the kernel target's namespace
//!   ([`serve_http`]), one thread, listen backlog 4096; it answers any request head with a page
//!   of the same size as tunhost's and never times anyone out.
//!
//! Both get the same client, pinned to CPU 0; every loop is bounded in time and in count.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Res, Server, Target, median};

/// Slow clients in the full run (the smoke run uses 200).
pub(crate) const SLOW_CLIENTS: usize = 10_000;
/// Each slow client sends a byte this often.
const TRICKLE: Duration = Duration::from_secs(4);
const HALF_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: ";
const PROBE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
/// Most probes per sample, whatever the time says.
const MAX_PROBES: usize = 100_000;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The kernel server's page: about the size of tunhost's status page.
const PAGE_LEN: usize = 600;

/// What a target did with the slow clients: new-client latencies in ms, and failures.
#[derive(Default)]
struct Outcome {
    latencies_ms: Vec<f64>,
    failed: usize,
    /// Slow clients that could not connect.
    refused: usize,
}

/// The row's measurements, one per target.
pub(crate) struct SlowRow {
    clients: usize,
    results: Vec<(Target, Outcome)>,
}

/// Measure the row for tunhost and the kernel (those of `targets`).
pub(crate) fn measure_row(
    tunhost: &std::path::Path,
    targets: &[Target],
    smoke: bool,
    reps: usize,
    secs: f64,
) -> SlowRow {
    let clients = if smoke { 200 } else { SLOW_CLIENTS };
    let mut results = Vec::new();
    for target in [Target::Tunhost, Target::Kernel] {
        if !targets.contains(&target) {
            continue;
        }
        let outcome =
            start(target, tunhost).and_then(|server| measure(&server, clients, reps, secs));
        match outcome {
            Ok(o) => results.push((target, o)),
            Err(e) => eprintln!("warning: {} slow HTTP clients failed: {e}", target.name()),
        }
    }
    eprintln!("  done: slow HTTP clients");
    SlowRow { clients, results }
}

impl SlowRow {
    /// Print the row as a table of its own; returns whether every target measured produced a
    /// number.
    pub(crate) fn print(&self, targets: &[Target]) -> bool {
        let clients = self.clients;
        let label = format!("slow HTTP clients: {}k", clients as f64 / 1000.0);
        println!(
            "\nA new client's GET (connect, request, whole response) while {clients} slow clients \
             hold connections: median / worst wait, new clients served, failed."
        );
        println!(
            "| test | target | median | worst | served | failed | slow clients refused | median/kernel |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let kernel_median = (self.results.iter())
            .find(|(t, _)| *t == Target::Kernel)
            .map(|(_, o)| median(&mut o.latencies_ms.clone()));
        let wanted = [Target::Tunhost, Target::Kernel];
        let mut ok = wanted.iter().filter(|t| targets.contains(t)).count() == self.results.len();
        for (t, o) in &self.results {
            ok &= !o.latencies_ms.is_empty();
            let med = median(&mut o.latencies_ms.clone());
            let worst = o.latencies_ms.iter().copied().fold(0.0, f64::max);
            let ratio = kernel_median.map_or("–".into(), |k| format!("{:.2}×", med / k));
            println!(
                "| {label} | {} | {med:.2} ms | {worst:.1} ms | {} | {} | {} | {ratio} |",
                t.name(),
                o.latencies_ms.len(),
                o.failed,
                o.refused
            );
        }
        ok
    }
}

/// The server of `target` with an HTTP port 80.
fn start(target: Target, tunhost: &std::path::Path) -> Res<Server> {
    if target == Target::Kernel {
        // The kernel target's server runs serve_http on port 80 beside its other ports.
        return Server::start(target, 1500, tunhost, std::path::Path::new("/nonexistent"));
    }
    let (dev, addr, peer) = target.net();
    let mut cmd = Command::new(tunhost);
    cmd.args(["serve", "--tun", dev, "--addr", &format!("{addr}/24")])
        .args(["--peer", &format!("{peer}/24"), "--http", "80"])
        .args(["--http-header-timeout", "120", "--http-idle-timeout", "120"]);
    Server::tunhost(target, cmd)
}

/// Open `clients` slow clients to `server`, then probe with new clients for `reps` × `secs`.
fn measure(server: &Server, clients: usize, reps: usize, secs: f64) -> Res<Outcome> {
    raise_nofile(clients as u64 + 1024)?;
    let to = SocketAddr::from((server.addr, 80));
    let mut out = Outcome::default();
    let mut slow = Vec::with_capacity(clients);
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..clients {
        if Instant::now() > deadline {
            return Err(format!("{} slow clients in 120 s", slow.len()));
        }
        match TcpStream::connect_timeout(&to, IO_TIMEOUT) {
            Ok(mut s) => {
                s.write_all(HALF_HEAD).map_err(|e| e.to_string())?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                slow.push(s);
            }
            Err(_) => out.refused += 1,
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // One byte per slow client every TRICKLE, spread evenly.
        scope.spawn(|| {
            let gap = TRICKLE.div_f64(slow.len().max(1) as f64);
            let mut next = Instant::now();
            for s in slow.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = (&*s).write(b"a");
                next += gap;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        for _ in 0..reps {
            let start = Instant::now();
            let mut probes = 0;
            while start.elapsed().as_secs_f64() < secs && probes < MAX_PROBES {
                let t = Instant::now();
                match probe(to) {
                    Ok(()) => out.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        out.failed += 1;
                        eprintln!("  {}: a new client failed: {e}", server.target.name());
                    }
                }
                probes += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    Ok(out)
}

/// One new client: connect, GET, read the whole response (the server closes), check it is 200.
fn probe(to: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(PROBE)?;
    let mut got = Vec::with_capacity(2048);
    s.read_to_end(&mut got)?;
    if got.starts_with(b"HTTP/1.1 200 ") {
        Ok(())
    } else {
        let head = String::from_utf8_lossy(&got[..got.len().min(40)]).into_owned();
        Err(std::io::Error::other(format!("answer {head:?}")))
    }
}

/// Raise this process's open-file limit to at least `n` (the soft limit up to the hard one, or
/// both as root).
fn raise_nofile(n: u64) -> Res<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        if lim.rlim_cur >= n {
            return Ok(());
        }
        lim.rlim_cur = n;
        lim.rlim_max = lim.rlim_max.max(n);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(format!(
                "setrlimit(RLIMIT_NOFILE, {n}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The kernel's HTTP server for the row: answer every request head with a 200 page and close;
/// hold a connection that never completes its head for as long as it stays open. One thread,
/// epoll, non-blocking sockets; the listen backlog raised to 4096.
pub(crate) fn serve_http(listener: TcpListener) {
    let _ = raise_nofile(4 * SLOW_CLIENTS as u64);
    // SAFETY: listen(2) again on a listening socket only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    listener.set_nonblocking(true).expect("non-blocking");
    let page = {
        let body = "x".repeat(PAGE_LEN - 1) + "\n";
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // SAFETY: epoll_create1 has no preconditions.
    let ep = unsafe { libc::epoll_create1(0) };
    assert!(ep >= 0, "epoll_create1");
    let watch = |fd: RawFd| {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: a valid epoll fd, an open fd and a valid event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    };
    watch(listener.as_raw_fd());
    let mut conns: HashMap<RawFd, (TcpStream, Vec<u8>)> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: events has room for its length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        for ev in &events[..n.max(0) as usize] {
            let fd = ev.u64 as RawFd;
            if fd == listener.as_raw_fd() {
                while let Ok((s, _)) = listener.accept() {
                    let _ = s.set_nonblocking(true);
                    watch(s.as_raw_fd());
                    conns.insert(s.as_raw_fd(), (s, Vec::new()));
                }
                continue;
            }
            let Some((s, head)) = conns.get_mut(&fd) else {
                continue;
            };
            let done = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(k) => {
                    head.extend_from_slice(&buf[..k]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let _ = s.write_all(page.as_bytes());
                        true
                    } else {
                        false
                    }
                }
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            if done {
                // Dropping the stream closes it, which also takes it out of the epoll set.
                conns.remove(&fd);
            }
        }
    }
}
