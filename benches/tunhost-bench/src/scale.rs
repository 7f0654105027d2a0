//! Connection scale: 1-byte request/response and connect+close while N other connections sit
//! idle on the server, tunhost beside kernel TCP, in one run (issue 14).
//!
//! [`IDLE_STEPS`] idle connections are opened on [`IDLE_PORT`] (a discard port: tunhost keeps
//! them as open sockets, the kernel server holds them accepted); at each step RR is measured
//! again, connect+close with none and with the most, the server's RSS at each step and its CPU
//! over quiet seconds with them all open. tunhost runs as two servers side by side, one that
//! holds the idle connections and one with none, measured alternately, so that the ratio
//! "vs 0 idle" holds on a busy machine too; the kernel server is measured step after step.
//! Stock smoltcp is left out: its 8 sockets per port cannot hold the idle connections.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::client;
use crate::{Res, Server, Target, median, proc_cpu};

/// The port the idle connections go to (a discard service on tunhost, a holding listener on
/// the kernel server).
pub const IDLE_PORT: u16 = 13;

/// Idle connections at each step of the full run, and of `--smoke`.
const IDLE_STEPS: [usize; 3] = [0, 1_000, 10_000];
const SMOKE_STEPS: [usize; 3] = [0, 100, 1_000];

/// What tunhost needs to hold the idle connections: the idle port and room for them.
pub const TUNHOST_FLAGS: &[&str] = &[
    "--discard",
    "13",
    "--max-connections",
    "12000",
    "--backlog",
    "256",
];

/// The device of the second tunhost server, the one that holds the idle connections.
const CROWDED_NET: (&str, Ipv4Addr, Ipv4Addr) = (
    "thb-c",
    Ipv4Addr::new(198, 18, 4, 2),
    Ipv4Addr::new(198, 18, 4, 1),
);

/// One row of the scale table: a label and, per server, the median and what it is compared
/// with (the same measure with no idle connection).
struct Row {
    label: String,
    /// RR, connect+close: per second; CPU: % of one core; RSS: KiB.
    kind: Kind,
    tunhost: Option<f64>,
    kernel: Option<f64>,
    tunhost_base: Option<f64>,
    kernel_base: Option<f64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Rate,
    Cpu,
    Rss,
}

fn fmt(kind: Kind, v: Option<f64>) -> String {
    match (kind, v) {
        (_, None) => "FAILED".into(),
        (Kind::Rate, Some(v)) => format!("{:.1}k/s", v / 1000.0),
        (Kind::Cpu, Some(v)) => format!("{v:.1}%"),
        (Kind::Rss, Some(v)) => format!("{:.1} MiB", v / 1024.0),
    }
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    /// Set `target`'s cell of the row `label` (made if new): the value and its base.
    fn put(&mut self, label: String, kind: Kind, kernel: bool, v: Option<f64>, base: Option<f64>) {
        let row = match self.0.iter().position(|r| r.label == label) {
            Some(i) => &mut self.0[i],
            None => {
                self.0.push(Row {
                    label,
                    kind,
                    tunhost: None,
                    kernel: None,
                    tunhost_base: None,
                    kernel_base: None,
                });
                self.0.last_mut().expect("just pushed")
            }
        };
        if kernel {
            row.kernel = v;
            row.kernel_base = base;
        } else {
            row.tunhost = v;
            row.tunhost_base = base;
        }
    }
}

/// A rate measured `reps` times (median), with a warning naming it if it fails.
fn rate(what: &str, reps: usize, mut f: impl FnMut() -> std::io::Result<f64>) -> Option<f64> {
    sample(reps, &mut f)
        .map_err(|e| eprintln!("warning: {what}: {e}"))
        .ok()
}

/// `a` and `b` measured alternately, `reps` times each (medians): the load of a shared machine
/// then weighs on both alike.
fn alternate(
    what: &str,
    reps: usize,
    mut a: impl FnMut() -> std::io::Result<f64>,
    mut b: impl FnMut() -> std::io::Result<f64>,
) -> (Option<f64>, Option<f64>) {
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        match (a(), b()) {
            (Ok(x), Ok(y)) => {
                va.push(x);
                vb.push(y);
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("warning: {what}: {e}");
                return (None, None);
            }
        }
    }
    (Some(median(&mut va)), Some(median(&mut vb)))
}

/// The connection-scale rows for tunhost and kernel TCP; prints its table and returns whether
/// every cell has a number.
///
/// tunhost runs twice, side by side: one server with no idle connection and one that holds
/// them, each figure of the second measured alternately with the same figure of the first (the
/// ratio "vs 0 idle"). The kernel server holds its idle connections itself and is measured
/// step after step.
pub fn run(
    tunhost: &std::path::Path,
    pcap: &std::path::Path,
    reps: usize,
    secs: f64,
    smoke: bool,
) -> Res<bool> {
    let steps = if smoke { SMOKE_STEPS } else { IDLE_STEPS };
    let most = steps[steps.len() - 1];
    raise_nofile(most as u64 + 1024)?;
    let quiet = if smoke { 0.3 } else { 2.0 };
    let mut table = Table::default();
    let rr = |s: &Server| client::rr(s.addr, secs);
    let cc = |s: &Server| client::connect_close(s.addr, secs);

    // tunhost: a server with none beside the one with the idle connections.
    let t = Target::Tunhost;
    let alone = Server::start_with(t, 1500, tunhost, pcap, TUNHOST_FLAGS, t.net())?;
    let crowded = Server::start_with(t, 1500, tunhost, pcap, TUNHOST_FLAGS, CROWDED_NET)?;
    let mut idle: Vec<TcpStream> = Vec::new();
    for &n in &steps {
        if let Err(e) = open_idle(crowded.addr, n, &mut idle) {
            eprintln!("warning: tunhost: opening {n} idle connections: {e}");
            break;
        }
        let label = format!("RR with {} idle connections", count(n));
        if n == 0 {
            let v = rate(&format!("tunhost {label}"), reps, || rr(&alone));
            table.put(label, Kind::Rate, false, v, v);
            let label = "connect+close with 0 idle".to_string();
            let v = rate(&format!("tunhost {label}"), reps, || cc(&alone));
            table.put(label, Kind::Rate, false, v, v);
        } else {
            let (a, b) = alternate(&label, reps, || rr(&alone), || rr(&crowded));
            table.put(label, Kind::Rate, false, b, a);
            if n == most {
                let label = format!("connect+close with {} idle", count(n));
                let (a, b) = alternate(&label, reps, || cc(&alone), || cc(&crowded));
                table.put(label, Kind::Rate, false, b, a);
            }
        }
        table.rss(false, &crowded, n);
    }
    if idle.len() == most {
        table.quiet_cpu(false, &crowded, most, quiet);
    }
    drop(idle);
    drop((alone, crowded));
    eprintln!("  done: connection scale, tunhost");

    // Kernel TCP: one server, step after step.
    let server = Server::start_with(
        Target::Kernel,
        1500,
        tunhost,
        pcap,
        &[],
        Target::Kernel.net(),
    )?;
    let mut idle: Vec<TcpStream> = Vec::new();
    let (mut rr0, mut cc0) = (None, None);
    for &n in &steps {
        if let Err(e) = open_idle(server.addr, n, &mut idle) {
            eprintln!("warning: kernel: opening {n} idle connections: {e}");
            break;
        }
        let label = format!("RR with {} idle connections", count(n));
        let v = rate(&format!("kernel {label}"), reps, || rr(&server));
        rr0 = rr0.or(v);
        table.put(label, Kind::Rate, true, v, rr0);
        if n == 0 || n == most {
            let label = format!("connect+close with {} idle", count(n));
            let v = rate(&format!("kernel {label}"), reps, || cc(&server));
            cc0 = cc0.or(v);
            table.put(label, Kind::Rate, true, v, cc0);
        }
        table.rss(true, &server, n);
    }
    if idle.len() == most {
        table.quiet_cpu(true, &server, most, quiet);
    }
    drop(idle);
    drop(server);
    eprintln!("  done: connection scale, kernel");
    print(&table.0);
    Ok(table
        .0
        .iter()
        .all(|r| r.tunhost.is_some() && r.kernel.is_some()))
}

impl Table {
    /// The row of the server's RSS with `n` idle connections.
    fn rss(&mut self, kernel: bool, server: &Server, n: usize) {
        let label = format!("server RSS with {} idle", count(n));
        self.put(label, Kind::Rss, kernel, rss_kib(server.child.id()), None);
    }

    /// The row of the server's CPU (% of one core) over `secs` quiet seconds with `n` idle
    /// connections: no packet but their own (keep-alive).
    fn quiet_cpu(&mut self, kernel: bool, server: &Server, n: usize, secs: f64) {
        let pid = server.child.id();
        let c0 = proc_cpu(pid);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        let cpu = (proc_cpu(pid) - c0) * 100.0 / t0.elapsed().as_secs_f64();
        let label = format!("server CPU, quiet, {} idle", count(n));
        self.put(label, Kind::Cpu, kernel, Some(cpu), None);
    }
}

fn print(rows: &[Row]) {
    println!(
        "Connection scale (MTU 1500; idle connections on port {IDLE_PORT}; tunhost's \"vs 0 idle\" \
         is against a second tunhost server with none, measured alternately; the kernel's, \
         against its own first step; kernel RSS is the server process's, not the kernel's):\n"
    );
    println!(
        "| test | tunhost | kernel veth | tunhost/kernel | tunhost vs 0 idle | kernel vs 0 idle |"
    );
    println!("|---|---|---|---|---|---|");
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    };
    for r in rows {
        let rate = r.kind == Kind::Rate;
        let dash = || "–".to_string();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.label,
            fmt(r.kind, r.tunhost),
            fmt(r.kind, r.kernel),
            if rate {
                ratio(r.tunhost, r.kernel)
            } else {
                dash()
            },
            if rate {
                ratio(r.tunhost, r.tunhost_base)
            } else {
                dash()
            },
            if rate {
                ratio(r.kernel, r.kernel_base)
            } else {
                dash()
            },
        );
    }
    println!();
}

/// `1k`, `10k`.
fn count(n: usize) -> String {
    if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Median of `reps` samples.
fn sample(reps: usize, mut f: impl FnMut() -> std::io::Result<f64>) -> std::io::Result<f64> {
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        v.push(f()?);
    }
    Ok(median(&mut v))
}

/// Open idle connections to `addr`'s [`IDLE_PORT`] until `idle` holds `n` (bounded: 60 s).
fn open_idle(addr: Ipv4Addr, n: usize, idle: &mut Vec<TcpStream>) -> std::io::Result<()> {
    let to = SocketAddr::from((addr, IDLE_PORT));
    let start = Instant::now();
    while idle.len() < n {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(std::io::Error::other(format!(
                "only {} of {n} connections in 60 s",
                idle.len()
            )));
        }
        idle.push(TcpStream::connect_timeout(&to, Duration::from_secs(10))?);
    }
    Ok(())
}

/// The server's resident memory (VmRSS), KiB.
fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Let this process hold `n` file descriptors (one per idle connection).
fn raise_nofile(n: u64) -> Res<()> {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid pointers to rlimit structs.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
        if cur.rlim_cur >= n {
            return Ok(());
        }
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(format!(
                "setrlimit(RLIMIT_NOFILE, {n}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
