//! Connection scale: 1-byte request/response and connect+close while N other connections sit
//! idle on the server, tunhost beside kernel TCP, in one run (issue 14).
//!
//! For each server, one after the other: RR and connect+close with no idle connection, then
//! [`IDLE_STEPS`] idle connections opened on [`IDLE_PORT`] (a discard port: tunhost keeps them
//! as open sockets, the kernel server holds them accepted) and RR again at each step, then
//! connect+close with the most, then the server's CPU over a quiet second with them all open,
//! and its RSS at each step. The idle connections are closed before the next server starts.
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

/// One row of the scale table: a label and, per server, the median.
struct Row {
    label: String,
    /// RR, connect+close: per second; CPU: % of one core; RSS: KiB.
    kind: Kind,
    tunhost: Option<f64>,
    kernel: Option<f64>,
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

/// The connection-scale rows for tunhost and kernel TCP; prints its table and returns whether
/// every cell has a number.
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
    let mut rows: Vec<Row> = Vec::new();
    for target in [Target::Tunhost, Target::Kernel] {
        let server = Server::start_with(target, 1500, tunhost, pcap, TUNHOST_FLAGS)?;
        let pid = server.child.id();
        let mut idle: Vec<TcpStream> = Vec::new();
        let mut put = |label: String, kind: Kind, v: Option<f64>| {
            let row = match rows.iter_mut().find(|r| r.label == label) {
                Some(r) => r,
                None => {
                    rows.push(Row {
                        label,
                        kind,
                        tunhost: None,
                        kernel: None,
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            match target {
                Target::Kernel => row.kernel = v,
                _ => row.tunhost = v,
            }
        };
        let rr = |n: usize| -> Option<f64> {
            sample(reps, || client::rr(server.addr, secs))
                .map_err(|e| eprintln!("warning: {} RR with {n} idle: {e}", target.name()))
                .ok()
        };
        let cc = |n: usize| -> Option<f64> {
            sample(reps, || client::connect_close(server.addr, secs))
                .map_err(|e| {
                    eprintln!(
                        "warning: {} connect+close with {n} idle: {e}",
                        target.name()
                    )
                })
                .ok()
        };
        for (i, &n) in steps.iter().enumerate() {
            if let Err(e) = open_idle(server.addr, n, &mut idle) {
                eprintln!(
                    "warning: {}: opening {n} idle connections: {e}",
                    target.name()
                );
                break;
            }
            put(
                format!("RR with {} idle connections", count(n)),
                Kind::Rate,
                rr(n),
            );
            if i == 0 || n == most {
                put(
                    format!("connect+close with {} idle", count(n)),
                    Kind::Rate,
                    cc(n),
                );
            }
            put(
                format!("server RSS with {} idle", count(n)),
                Kind::Rss,
                rss_kib(pid),
            );
        }
        if idle.len() == most {
            // A quiet second: no packet but the idle connections' own (keep-alive) ones.
            let quiet = if smoke { 0.3 } else { 2.0 };
            let c0 = proc_cpu(pid);
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(quiet));
            let cpu = (proc_cpu(pid) - c0) * 100.0 / t0.elapsed().as_secs_f64();
            put(
                format!("server CPU, quiet, {} idle", count(most)),
                Kind::Cpu,
                Some(cpu),
            );
        }
        drop(idle);
        drop(server);
        eprintln!("  done: connection scale, {}", target.name());
    }
    print(&rows);
    Ok(rows
        .iter()
        .all(|r| r.tunhost.is_some() && r.kernel.is_some()))
}

fn print(rows: &[Row]) {
    println!(
        "Connection scale (MTU 1500; idle connections on port {IDLE_PORT}; the ratio to 0 idle is of the rows' first figure of the same kind):\n"
    );
    println!(
        "| test | tunhost | kernel veth | tunhost/kernel | tunhost vs 0 idle | kernel vs 0 idle |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let base = |f: fn(&Row) -> Option<f64>| {
            let prefix = r.label.split(" with ").next().unwrap_or("");
            rows.iter()
                .find(|b| b.kind == r.kind && b.label.starts_with(prefix))
                .and_then(f)
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        let (vs_t, vs_k) = if r.kind == Kind::Rate {
            (
                ratio(r.tunhost, base(|b| b.tunhost)),
                ratio(r.kernel, base(|b| b.kernel)),
            )
        } else {
            ("–".into(), "–".into())
        };
        let tk = if r.kind == Kind::Rate {
            ratio(r.tunhost, r.kernel)
        } else {
            "–".into()
        };
        println!(
            "| {} | {} | {} | {tk} | {vs_t} | {vs_k} |",
            r.label,
            fmt(r.kind, r.tunhost),
            fmt(r.kind, r.kernel)
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
