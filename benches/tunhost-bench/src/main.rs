//! `tunhost-bench`: tunhost against stock smoltcp and kernel TCP, in one run, on this machine.
//!
//! ```text
//! cargo build --release && sudo target/release/tunhost-bench          # the full table (~4 min)
//! sudo target/release/tunhost-bench --smoke                           # seconds; CI
//! sudo target/release/tunhost-bench --badlink --reps 3 --secs 5      # a bad link (~10 min)
//! ```
//!
//! It makes everything it uses and removes it when done (also on error or Ctrl-C):
//! - the benchmark process moves into a network namespace of its own (anonymous: it vanishes
//!   with the process); the kernel client (std sockets) runs there, pinned to CPU 0;
//! - each server is a child process pinned to CPU 1 that dies with the benchmark
//!   (`PR_SET_PDEATHSIG`): `tunhost serve` on a TUN device (with offloads and its sandbox, with
//!   `--no-sandbox`, with `--no-offload`,
//!   with tracing when the binary has `--pcap`), stock smoltcp's `phy::TunTapInterface` with a
//!   minimal server from the same smoltcp ([`servers::stock`]), and kernel TCP on the far end of a
//!   veth pair, in the child's own namespace ([`servers::kernel`]);
//! - addresses are documentation/benchmark ranges only (192.0.2.0/24, 198.51.100.0/24,
//!   203.0.113.0/24, 198.18.0.0/15).
//!
//! Each row is measured back to back for every target, `--reps` times (median shown). Besides the
//! table it prints, per target, the server's and the client's CPU (% of one core), the TUN
//! device's `tx_dropped` (packets the kernel dropped because the host did not read fast enough),
//! and read+write syscalls of the server per packet the device counted.

mod badlink;
mod client;
mod scale;
mod servers;
mod slow;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use smoltcp::wire::IpCidr;

#[derive(Parser, Debug)]
#[command(
    name = "tunhost-bench",
    about = "Benchmark tunhost against stock smoltcp (phy::TunTapInterface) and kernel TCP over \
             veth. Needs root; builds its own namespaces and devices and removes them.",
    after_help = "Run: cargo build --release && sudo target/release/tunhost-bench"
)]
struct Args {
    /// Seconds-long run (1 repetition, 0.3 s per sample) that only checks every row produced a
    /// number; exits non-zero otherwise.
    #[arg(long)]
    smoke: bool,
    /// Repetitions of each measurement (the table shows the median).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    reps: u32,
    /// Seconds per sample.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// The tunhost binary. [default: `tunhost` next to this binary]
    #[arg(long, value_name = "PATH")]
    tunhost: Option<std::path::PathBuf>,
    /// Measure only these targets (comma-separated: tunhost,no-sandbox,no-offload,traced,stock,kernel).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Measure only the MTU 1500 rows.
    #[arg(long)]
    mtu1500_only: bool,
    /// Measure only the connection-scale rows (RR and connect+close with 0 / 1k / 10k idle
    /// connections, tunhost and kernel).
    #[arg(long, conflicts_with = "no_scale")]
    scale_only: bool,
    /// Leave out the connection-scale rows.
    #[arg(long)]
    no_scale: bool,
    /// Measure only bulk TCP over a bad link (20 ms RTT, 0/0.1/1 % loss) for each congestion
    /// control of tunhost and of Linux, on a lossy link and through a 20 Mbit/s bottleneck, beside the Mathis model (~10 min with --reps 3 --secs 5).
    #[arg(long)]
    badlink: bool,
    /// (internal) run as a server child: stock or kernel.
    #[arg(long, hide = true)]
    role: Option<String>,
    #[arg(long, hide = true)]
    dev: Option<String>,
    #[arg(long, hide = true, value_parser = parse_cidr)]
    addr: Option<IpCidr>,
    #[arg(long, hide = true, default_value_t = 1500)]
    mtu: u32,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    BulkIn,
    BulkOut,
    Rr,
    ConnectClose,
    Icmp,
}

impl Test {
    fn label(self) -> &'static str {
        match self {
            Test::BulkIn => "bulk kernel→host",
            Test::BulkOut => "bulk host→kernel",
            Test::Rr => "TCP 1-byte RR",
            Test::ConnectClose => "connect+close",
            Test::Icmp => "ICMP echo RTT",
        }
    }

    fn run(self, addr: Ipv4Addr, secs: f64) -> std::io::Result<f64> {
        match self {
            Test::BulkIn => client::bulk_in(addr, secs),
            Test::BulkOut => client::bulk_out(addr, secs),
            Test::Rr => client::rr(addr, secs),
            Test::ConnectClose => client::connect_close(addr, secs),
            Test::Icmp => client::icmp_rtt(addr, secs),
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Test::BulkIn | Test::BulkOut => format!("{v:.2} Gb/s"),
            Test::Rr | Test::ConnectClose => format!("{:.1}k/s", v / 1000.0),
            Test::Icmp => format!("{v:.0} µs"),
        }
    }

    /// How many times better `a` is than `b` (RTT: lower is better, so the ratio is `a / b` and
    /// reads "times slower").
    fn ratio(self, a: f64, b: f64) -> String {
        if self == Test::Icmp {
            format!("{:.2}× rtt", a / b)
        } else {
            format!("{:.2}", a / b)
        }
    }
}

/// Who serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Tunhost,
    NoSandbox,
    NoOffload,
    Traced,
    Stock,
    Kernel,
}

const TARGETS: [Target; 6] = [
    Target::Tunhost,
    Target::NoSandbox,
    Target::NoOffload,
    Target::Traced,
    Target::Stock,
    Target::Kernel,
];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Tunhost => "tunhost",
            Target::NoSandbox => "no-sandbox",
            Target::NoOffload => "no-offload",
            Target::Traced => "traced",
            Target::Stock => "stock",
            Target::Kernel => "kernel",
        }
    }

    /// Device name, the host's address and the kernel side's, /24.
    fn net(self) -> (&'static str, Ipv4Addr, Ipv4Addr) {
        match self {
            Target::Tunhost => ("thb-t", [192, 0, 2, 2].into(), [192, 0, 2, 1].into()),
            Target::NoOffload => ("thb-n", [198, 18, 1, 2].into(), [198, 18, 1, 1].into()),
            Target::NoSandbox => ("thb-x", [198, 18, 3, 2].into(), [198, 18, 3, 1].into()),
            Target::Traced => ("thb-p", [198, 18, 2, 2].into(), [198, 18, 2, 1].into()),
            Target::Stock => ("thb-s", [203, 0, 113, 2].into(), [203, 0, 113, 1].into()),
            Target::Kernel => ("thb-v0", [198, 51, 100, 2].into(), [198, 51, 100, 1].into()),
        }
    }

    /// Extra `tunhost serve` flags; `None` for non-tunhost targets.
    fn tunhost_flags(self, pcap: &std::path::Path) -> Option<Vec<String>> {
        match self {
            Target::Tunhost => Some(vec![]),
            Target::NoOffload => Some(vec!["--no-offload".into()]),
            // The same host without the privilege drop and the seccomp filter.
            Target::NoSandbox => Some(vec!["--no-sandbox".into()]),
            // Tracing: the one line to change if the flags of the tracing branch differ.
            Target::Traced => Some(vec![
                "--pcap".into(),
                pcap.display().to_string(),
                "--snaplen".into(),
                "96".into(),
            ]),
            Target::Stock | Target::Kernel => None,
        }
    }

    /// The `serve` flag this target needs from the tunhost binary, if any.
    fn needs_flag(self) -> Option<&'static str> {
        match self {
            Target::NoOffload => Some("--no-offload"),
            Target::NoSandbox => Some("--no-sandbox"),
            Target::Traced => Some("--pcap"),
            _ => None,
        }
    }
}

/// One measurement and what it cost.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    value: f64,
    /// CPU of the server process, % of one core.
    server_cpu: f64,
    /// CPU of the client (this process), % of one core.
    client_cpu: f64,
    /// TUN tx_dropped during the sample.
    tx_dropped: Option<u64>,
    /// Server read+write syscalls per packet the device counted.
    sys_per_pkt: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(role) = args.role.as_deref() {
        let dev = args.dev.clone().expect("--dev");
        let addr = args.addr.expect("--addr");
        match role {
            "stock" => servers::stock(&dev, addr),
            "kernel" => servers::kernel(&dev, addr, args.mtu),
            other => panic!("unknown role {other}"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "tunhost-bench: needs root (TUN devices, namespaces): sudo target/release/tunhost-bench"
        );
        return ExitCode::from(1);
    }
    match bench(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tunhost-bench: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse_cidr(s: &str) -> Result<IpCidr, String> {
    s.parse().map_err(|_| format!("bad CIDR {s}"))
}

type Res<T> = std::result::Result<T, String>;

fn bench(args: &Args) -> Res<bool> {
    let (reps, secs) = if args.smoke {
        (1, 0.3)
    } else {
        (args.reps as usize, args.secs.clamp(0.1, 30.0))
    };
    let tunhost = match &args.tunhost {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("tunhost"),
    };
    let help = Command::new(&tunhost)
        .args(["serve", "--help"])
        .output()
        .map_err(|e| {
            format!(
                "cannot run {}: {e} (build it: cargo build --release)",
                tunhost.display()
            )
        })?;
    let help = String::from_utf8_lossy(&help.stdout).into_owned();

    // Everything from here on lives in a namespace of our own, gone when we are.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    sh(&["ip", "link", "set", "lo", "up"]);
    for (k, v) in [
        // Connect+close makes many short connections: no TIME-WAIT on the client side.
        ("net/ipv4/tcp_max_tw_buckets", "0"),
        ("net/ipv4/ip_local_port_range", "1024 65535"),
        // ICMP datagram sockets for the RTT test.
        ("net/ipv4/ping_group_range", "0 2147483647"),
    ] {
        std::fs::write(format!("/proc/sys/{k}"), v).map_err(|e| format!("sysctl {k}: {e}"))?;
    }
    // Before pinning ourselves, which makes available_parallelism() say 1.
    let machine = machine();
    if cpus() >= 2 {
        pin(0);
    }
    // A private directory (this runs as root): nothing in a predictable place of /tmp.
    let tmp = tempfile::Builder::new()
        .prefix("tunhost-bench-")
        .tempdir()
        .map_err(|e| format!("{}: {e}", std::env::temp_dir().display()))?;
    let pcap = tmp.path().join("trace.pcap");

    if args.badlink {
        println!("tunhost-bench: {machine}");
        println!("started {} (load {})", utc_now(), loadavg());
        let ok = badlink::run(&tunhost, reps, secs)?;
        println!("\nfinished {} (load {})", utc_now(), loadavg());
        return Ok(ok);
    }

    let mut available = Vec::new();
    let mut missing = Vec::new();
    for t in TARGETS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == t.name()) {
            continue;
        }
        match t.needs_flag() {
            Some(flag) if !help.contains(flag) => missing.push(t),
            _ => available.push(t),
        }
    }

    println!("tunhost-bench: {machine}");
    println!(
        "started {} (load {}), {reps} rep(s) × {secs} s per sample, client on CPU 0, servers on CPU 1",
        utc_now(),
        loadavg()
    );
    let mut rows: Vec<Row> = Vec::new();
    let mtus: &[u32] = if args.scale_only {
        &[]
    } else if args.mtu1500_only {
        &[1500]
    } else {
        &[1500, 65535]
    };
    for &mtu in mtus {
        let tests: &[Test] = if mtu == 1500 {
            &[
                Test::BulkIn,
                Test::BulkOut,
                Test::Rr,
                Test::ConnectClose,
                Test::Icmp,
            ]
        } else {
            &[Test::BulkIn, Test::BulkOut]
        };
        let mut servers = Vec::new();
        for &t in &available {
            if matches!(t, Target::Traced | Target::NoSandbox) && mtu != 1500 {
                continue;
            }
            servers.push(Server::start(t, mtu, &tunhost, &pcap)?);
        }
        for &test in tests {
            let mut row = Row {
                test,
                mtu,
                samples: Vec::new(),
            };
            for _ in 0..reps {
                for s in &servers {
                    if s.target == Target::Traced && !matches!(test, Test::BulkIn | Test::BulkOut) {
                        continue;
                    }
                    match s.measure(test, secs) {
                        Ok(sample) => row.samples.push((s.target, sample)),
                        Err(e) => eprintln!(
                            "warning: {} {} MTU {mtu} failed: {e}",
                            s.target.name(),
                            test.label()
                        ),
                    }
                    let _ = std::fs::remove_file(&pcap);
                }
            }
            eprintln!("  done: {} MTU {mtu}", test.label());
            rows.push(row);
        }
        drop(servers);
    }
    let slow_row = if args.scale_only {
        None
    } else {
        Some(slow::measure_row(
            &tunhost, &available, args.smoke, reps, secs,
        ))
    };
    let scale_ok = if args.no_scale {
        true
    } else {
        scale::run(&tunhost, &pcap, reps, secs, args.smoke)?
    };
    println!("finished {} (load {})\n", utc_now(), loadavg());
    let mut ok = rows.is_empty() || print_table(&rows, &available, &missing);
    if let Some(row) = slow_row {
        ok &= row.print(&available);
    }
    let ok = ok && scale_ok;
    if args.smoke {
        if ok {
            println!("smoke: every row produced a number");
        } else {
            println!("smoke: FAILED, some rows produced no number");
        }
        return Ok(ok);
    }
    Ok(true)
}

struct Row {
    test: Test,
    mtu: u32,
    samples: Vec<(Target, Sample)>,
}

impl Row {
    fn median(&self, t: Target, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> = self
            .samples
            .iter()
            .filter(|(x, _)| *x == t)
            .filter_map(|(_, s)| f(s))
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(median(&mut v))
        }
    }
}

/// Print the table; returns whether every expected cell has a number.
fn print_table(rows: &[Row], available: &[Target], missing: &[Target]) -> bool {
    let mut ok = true;
    let cols = [
        Target::Tunhost,
        Target::NoSandbox,
        Target::NoOffload,
        Target::Traced,
        Target::Stock,
        Target::Kernel,
    ];
    let mut out = String::new();
    out.push_str(
        "| test | MTU | tunhost | tunhost --no-sandbox | tunhost --no-offload | tunhost traced | stock smoltcp | kernel veth | tunhost/kernel | tunhost/stock | traced/tunhost | sandbox: tunhost/no-sandbox |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let mut line = format!("| {} | {} |", r.test.label(), r.mtu);
        for t in cols {
            let applies = match t {
                Target::Traced => r.mtu == 1500 && matches!(r.test, Test::BulkIn | Test::BulkOut),
                Target::NoSandbox => r.mtu == 1500,
                _ => true,
            };
            let cell = if !applies {
                "–".to_string()
            } else if missing.contains(&t) {
                match t {
                    Target::Traced => "n/a (tracing not merged)".into(),
                    _ => "n/a (flag missing)".into(),
                }
            } else if !available.contains(&t) {
                "–".into()
            } else {
                match r.median(t, |s| Some(s.value)) {
                    Some(v) => r.test.fmt(v),
                    None => {
                        ok = false;
                        "FAILED".into()
                    }
                }
            };
            line.push_str(&format!(" {cell} |"));
        }
        let m = |t| r.median(t, |s| Some(s.value));
        for (a, b) in [
            (Target::Tunhost, Target::Kernel),
            (Target::Tunhost, Target::Stock),
            (Target::Traced, Target::Tunhost),
            (Target::Tunhost, Target::NoSandbox),
        ] {
            let cell = match (m(a), m(b)) {
                (Some(x), Some(y)) => r.test.ratio(x, y),
                _ => "–".into(),
            };
            line.push_str(&format!(" {cell} |"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    println!("{out}");
    println!(
        "Per target (medians): server CPU / client CPU in % of one core; TUN tx_dropped (kernel \
         could not queue to the host); server read+write syscalls per packet the device counted \
         (with offloads one packet can be a 64 KiB TCP super-packet)."
    );
    println!("| test | MTU | target | server CPU | client CPU | tx_dropped | syscalls/pkt |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        for &t in available {
            if r.median(t, |s| Some(s.value)).is_none() {
                continue;
            }
            let cpu_s = r.median(t, |s| Some(s.server_cpu)).unwrap_or(0.0);
            let cpu_c = r.median(t, |s| Some(s.client_cpu)).unwrap_or(0.0);
            let drop = r
                .median(t, |s| s.tx_dropped.map(|d| d as f64))
                .map_or("–".into(), |d| format!("{d:.0}"));
            let spp = r
                .median(t, |s| s.sys_per_pkt)
                .map_or("–".into(), |d| format!("{d:.2}"));
            println!(
                "| {} | {} | {} | {cpu_s:.0}% | {cpu_c:.0}% | {drop} | {spp} |",
                r.test.label(),
                r.mtu,
                t.name()
            );
        }
    }
    ok
}

/// A running server of one target.
struct Server {
    target: Target,
    child: Child,
    addr: Ipv4Addr,
    /// The TUN device whose counters we read (none for the kernel over veth).
    tun: Option<String>,
    /// Kept open: closing it would end the kernel server's stdin.
    _stdin: Option<ChildStdin>,
    /// A persistent device we created and must delete.
    persistent: Option<String>,
}

impl Server {
    fn start(
        target: Target,
        mtu: u32,
        tunhost: &std::path::Path,
        pcap: &std::path::Path,
    ) -> Res<Server> {
        Server::start_with(target, mtu, tunhost, pcap, &[], target.net())
    }

    /// [`Server::start`], with `extra` flags for a tunhost server and its device `net` (name,
    /// the host's address, the kernel side's; see [`Target::net`]).
    fn start_with(
        target: Target,
        mtu: u32,
        tunhost: &std::path::Path,
        pcap: &std::path::Path,
        extra: &[&str],
        net: (&str, Ipv4Addr, Ipv4Addr),
    ) -> Res<Server> {
        let (dev, addr, peer) = net;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let host_cidr = format!("{addr}/24");
        let peer_cidr = format!("{peer}/24");
        if let Some(flags) = target.tunhost_flags(pcap) {
            let mut cmd = Command::new(tunhost);
            cmd.args([
                "serve",
                "--tun",
                dev,
                "--addr",
                &host_cidr,
                "--peer",
                &peer_cidr,
                "--mtu",
                &mtu.to_string(),
                "--echo",
                "7",
                "--discard",
                "9",
                "--chargen",
                "19",
            ])
            .args(flags)
            .args(extra);
            return Server::tunhost(target, cmd, (dev, addr));
        }
        match target {
            Target::Stock => {
                // smoltcp's TunTapInterface reads the MTU once when it opens the device, and does
                // not configure the kernel side: make the device first, as a user would.
                sh(&["ip", "tuntap", "add", "dev", dev, "mode", "tun"]);
                sh(&["ip", "link", "set", dev, "mtu", &mtu.to_string()]);
                sh(&["ip", "addr", "add", &peer_cidr, "dev", dev]);
                sh(&["ip", "link", "set", dev, "up"]);
                let mut cmd = Command::new(&me);
                cmd.args(["--role", "stock", "--dev", dev, "--addr", &host_cidr])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                let mut child = spawn(cmd)?;
                let out = child.stdout.take().expect("piped");
                let server = Server {
                    target,
                    child,
                    addr,
                    tun: Some(dev.to_string()),
                    _stdin: None,
                    persistent: Some(dev.to_string()),
                };
                let mut server = server;
                wait_line(out, "ready", &mut server.child)?;
                Ok(server)
            }
            Target::Kernel => {
                let far = "thb-v1";
                let mut cmd = Command::new(&me);
                cmd.args([
                    "--role",
                    "kernel",
                    "--dev",
                    far,
                    "--addr",
                    &host_cidr,
                    "--mtu",
                    &mtu.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
                let mut child = spawn(cmd)?;
                let mut stdin = child.stdin.take().expect("piped");
                let rx = lines(child.stdout.take().expect("piped"));
                let mut server = Server {
                    target,
                    child,
                    addr,
                    tun: None,
                    _stdin: None,
                    persistent: None,
                };
                expect_line(&rx, "netns")?;
                let pid = server.child.id().to_string();
                let m = mtu.to_string();
                sh(&[
                    "ip", "link", "add", dev, "mtu", &m, "type", "veth", "peer", "name", far,
                    "mtu", &m, "netns", &pid,
                ]);
                sh(&["ip", "addr", "add", &peer_cidr, "dev", dev]);
                sh(&["ip", "link", "set", dev, "up"]);
                writeln!(stdin, "go").map_err(|e| e.to_string())?;
                server._stdin = Some(stdin);
                expect_line(&rx, "ready")?;
                Ok(server)
            }
            _ => unreachable!("tunhost targets handled above"),
        }
    }

    /// Start `cmd`, a `tunhost serve` of `target` on the device `dev` where it has `addr`, and
    /// wait for its banner.
    fn tunhost(target: Target, cmd: Command, (dev, addr): (&str, Ipv4Addr)) -> Res<Server> {
        let child = serve_child(cmd)?;
        Ok(Server {
            target,
            child,
            addr,
            tun: Some(dev.to_string()),
            _stdin: None,
            persistent: None,
        })
    }

    fn measure(&self, test: Test, secs: f64) -> Res<Sample> {
        let pid = self.child.id();
        let cpu0 = proc_cpu(pid);
        let me0 = self_cpu();
        let sys0 = proc_syscalls(pid);
        let dev0 = self.tun.as_deref().and_then(dev_counters);
        let t0 = Instant::now();
        let value = test
            .run(self.addr, secs)
            .map_err(|e| format!("{e} (to {})", self.addr))?;
        let wall = t0.elapsed().as_secs_f64();
        let cpu1 = proc_cpu(pid);
        let me1 = self_cpu();
        let sys1 = proc_syscalls(pid);
        let dev1 = self.tun.as_deref().and_then(dev_counters);
        let (tx_dropped, sys_per_pkt) = match (dev0, dev1) {
            (Some(a), Some(b)) => {
                let pkts = (b.0 - a.0) as f64;
                let sys = (sys1 - sys0) as f64;
                (Some(b.1 - a.1), (pkts > 0.0).then_some(sys / pkts))
            }
            _ => (None, None),
        };
        Ok(Sample {
            value,
            server_cpu: (cpu1 - cpu0) * 100.0 / wall,
            client_cpu: (me1 - me0) * 100.0 / wall,
            tx_dropped,
            sys_per_pkt,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL, then reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dev) = &self.persistent {
            let _ = run(&["ip", "tuntap", "del", "dev", dev, "mode", "tun"]);
        }
    }
}

/// Spawn a server child: pinned to CPU 1 and killed when we die.
fn spawn(mut cmd: Command) -> Res<Child> {
    let pin_it = cpus() >= 2;
    // SAFETY: prctl and sched_setaffinity are async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            // prctl is variadic: pass the signal as the unsigned long the kernel reads.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if pin_it {
                pin(1);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))
}

/// Spawn a `tunhost serve` child (see [`spawn`]) and wait for its start line.
fn serve_child(mut cmd: Command) -> Res<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn(cmd)?;
    let err = child.stderr.take().expect("piped");
    wait_line(err, "serving ", &mut child)?;
    Ok(child)
}

/// The lines a child writes to a pipe, read by a thread of their own until the pipe closes.
/// Lines nobody receives any more are dropped: the child never blocks on a full pipe.
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        BufReader::new(pipe)
            .lines()
            .map_while(Result::ok)
            .for_each(|line| drop(tx.send(line)));
    });
    rx
}

/// Wait (10 s at most) for a line containing `ready` on the child's pipe `r`.
fn wait_line(r: impl Read + Send + 'static, ready: &str, child: &mut Child) -> Res<()> {
    expect_line(&lines(r), ready).map_err(|e| {
        let status = child.try_wait().ok().flatten();
        format!("{e} (child exit: {status:?})")
    })
}

fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(prefix) => return Ok(()),
            Ok(line) => seen.push(line),
            Err(_) => {
                return Err(format!(
                    "server not ready (no `{prefix}` line); it said:\n{}",
                    seen.join("\n")
                ));
            }
        }
    }
}

/// CPUs of the machine (not of our affinity mask, which pinning narrows).
fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; sched_setaffinity on ourselves.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// user+system CPU seconds of a process.
fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(i) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

fn self_cpu() -> f64 {
    proc_cpu(std::process::id())
}

/// read + write syscalls of a process so far.
fn proc_syscalls(pid: u32) -> u64 {
    let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
        return 0;
    };
    io.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "syscr" | "syscw")
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// (rx+tx packets, tx_dropped) of a device in our namespace.
fn dev_counters(dev: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    for l in text.lines() {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if name.trim() != dev {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        return Some((f.get(1)? + f.get(9)?, *f.get(11)?));
    }
    None
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Run a command; panic with its output if it fails (a setup step that cannot fail quietly).
pub(crate) fn sh(argv: &[&str]) {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(argv: &[&str]) -> std::process::Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e} (is iproute2 installed?)"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{} CPU(s), {cpu}, Linux {kernel}", cpus())
}
