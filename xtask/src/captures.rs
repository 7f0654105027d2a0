//! `cargo xtask captures`: captures/ recorded anew from a live `tunhost serve --seed 0
//! --no-offload` against the kernel, as captures/README.md describes them.
//!
//! Each recording runs on a thread of its own that first moves into a new network namespace
//! (`unshare(CLONE_NEWNET)`): the host, ping and tcpdump it starts and the sockets it opens live
//! there, and the namespace vanishes with them. Nothing is done in the machine's own namespace;
//! the addresses are documentation ranges.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, geteuid};
use tunhost::fuzzing::capture_files as files;
use tunhost::pcap::Capture;

use crate::{Context, Result, read};

/// `tun0`: the host at 192.0.2.2/24, the kernel at 192.0.2.1/24.
const TUN: &str = "--tun tun0 --addr 192.0.2.2/24 --peer 192.0.2.1/24";
/// `tap0`: the host at 198.51.100.2/24 with MAC 02:00:00:00:00:02, the kernel at .1.
const TAP: &str =
    "--tap tap0 --addr 198.51.100.2/24 --peer 198.51.100.1/24 --mac 02:00:00:00:00:02";

/// One file of captures/: its name; `tunhost serve` arguments (besides `--seed 0 --no-offload`
/// and the trace); who writes it, the host's trace (`--pcap`) or tcpdump on this kernel device;
/// what the kernel side does meanwhile.
type Recording = (
    &'static str,
    [&'static str; 2],
    Option<&'static str>,
    fn() -> Result,
);

#[rustfmt::skip]
const RECORDINGS: &[Recording] = &[
    ("ping.pcapng", [TUN, "--echo 7"], None, ping_tun),
    ("tcp-echo.pcapng", [TUN, "--echo 7"], None, tcp_echo),
    ("udp-echo.pcapng", [TUN, "--udp-echo 7"], None, udp_echo),
    ("closed-port.pcapng", [TUN, "--echo 7"], None, closed_port),
    ("tap-arp-ping.pcapng", [TAP, "--echo 7"], None, ping_tap),
    ("ping-tcpdump.pcap", [TUN, "--echo 7"], Some("tun0"), ping_tun),
];

/// Record every file of captures/ under `root`.
pub(crate) fn record(root: &Path) -> Result {
    if !geteuid().is_root() {
        let how = r#"sudo -E env "PATH=$PATH" cargo xtask captures"#;
        return Err(format!(
            "captures needs root (TUN/TAP devices, network namespaces); run: {how}"
        ));
    }
    let tunhost = build_tunhost(root)?;
    for r in RECORDINGS {
        let path = root.join("captures").join(r.0);
        record_one(&tunhost, &path, r).context(format_args!("recording {}", path.display()))?;
        let cap = Capture::parse(&read(&path)?).context(path.display())?;
        eprintln!("captures/{}: {} packets", r.0, cap.packets.len());
    }
    eprintln!("recorded captures/ anew; check them: cargo test --test replay");
    Ok(())
}

/// `cargo build --package tunhost --bin tunhost` in this program's profile: the binary beside
/// this one.
fn build_tunhost(root: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let dir = exe.parent().ok_or("this program's path has no directory")?;
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(p) => p,
        None => return Err(format!("no cargo profile in {}", dir.display())),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args("build --quiet --package tunhost --bin tunhost --profile".split(' '))
        .arg(profile)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        return Err(format!("cargo build --bin tunhost failed ({status})"));
    }
    Ok(dir.join("tunhost"))
}

/// The host, the tcpdump if any and the traffic of `r`, in a namespace of their own.
fn record_one(tunhost: &Path, path: &Path, &(_, serve, tcpdump, traffic): &Recording) -> Result {
    let file = path.to_str().ok_or("not a UTF-8 path")?;
    // Without offloads the trace holds final checksums and MTU-sized packets, which the replay
    // (a plain device) checks and reads as the live host did.
    let mut args = vec!["serve", "--seed", "0", "--no-offload"];
    args.extend(serve.iter().flat_map(|s| s.split_whitespace()));
    if tcpdump.is_none() {
        args.extend(["--pcap", file]);
    }
    in_netns(|| {
        let mut host = Proc::start(tunhost, &args, "serving ")?;
        let dump = match tcpdump {
            Some(dev) => {
                let opts = format!("-i {dev} --immediate-mode -B 32768 -U -n -w");
                let argv: Vec<&str> = opts.split_whitespace().chain([file]).collect();
                Some(Proc::start(Path::new("tcpdump"), &argv, "listening on")?)
            }
            None => None,
        };
        traffic()?;
        if let Some(mut dump) = dump {
            dump.stop()?;
        }
        // On SIGINT the host writes out its trace and exits 0.
        match host.stop()? {
            s if s.success() => Ok(()),
            s => Err(format!("{} ended with {s}{}", host.what, host.last_words())),
        }
    })
}

/// Run `f` on a new thread in a new network namespace whose loopback is up.
fn in_netns(f: impl FnOnce() -> Result + Send) -> Result {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET)
                .context("cannot make a network namespace (unshare(CLONE_NEWNET))")?;
            run(&["ip", "link", "set", "lo", "up"])?;
            f()
        });
        thread
            .join()
            .unwrap_or_else(|_| Err("the recording thread panicked".into()))
    })
}

/// Run a command to completion; it must succeed.
fn run(argv: &[&str]) -> Result {
    let what = argv.join(" ");
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .context(format_args!("cannot run {what}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    Err(format!("{what}: {}; {last}", out.status))
}

/// A process of a recording, its stderr in a scratch file; killed and reaped on drop.
struct Proc {
    child: Child,
    what: String,
    stderr: tempfile::NamedTempFile,
}

impl Proc {
    /// `program ARGS`, once a line of its stderr contains `ready` (10 s at most).
    fn start(program: &Path, args: &[&str], ready: &str) -> Result<Proc> {
        let name = program.file_name().unwrap_or_default().to_string_lossy();
        let what = format!("{name} {}", args.join(" "));
        // A private file (this runs as root): nothing in a predictable place of /tmp.
        let tmp = || format!("cannot make a file in {}", std::env::temp_dir().display());
        let stderr = tempfile::Builder::new()
            .prefix(&format!("xtask-{name}-"))
            .tempfile()
            .context(tmp())?;
        let log = stderr.as_file().try_clone().context(tmp())?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context(format_args!("cannot run {what}"))?;
        let mut p = Proc {
            child,
            what,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.said().lines().any(|l| l.contains(ready)) {
            let exited = p.child.try_wait().context(&p.what)?;
            if let Some(status) = exited {
                return Err(format!("{} ended with {status}{}", p.what, p.last_words()));
            }
            if Instant::now() > deadline {
                return Err(format!("{} not ready in 10 s{}", p.what, p.last_words()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    /// Its stderr so far.
    fn said(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// The last line of its stderr, for an error message.
    fn last_words(&self) -> String {
        let said = self.said();
        said.lines()
            .last()
            .map(|l| format!(": {l}"))
            .unwrap_or_default()
    }

    /// SIGINT, and its exit status (5 s at most).
    fn stop(&mut self) -> Result<ExitStatus> {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGINT).context(format_args!("cannot stop {}", self.what))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().context(&self.what)? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!("{} still running 5 s after SIGINT", self.what));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// --- The traffic of each capture ---------------------------------------------------------------

/// `ping -c 3` of the host on tun0.
fn ping_tun() -> Result {
    run(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "192.0.2.2"])
}

/// `ping -c 2` of the host on tap0 (after the kernel's ARP request).
fn ping_tap() -> Result {
    run(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "198.51.100.2"])
}

/// One TCP connection to port 7: 4440 bytes of text, echoed, then FIN both ways.
fn tcp_echo() -> Result {
    let text: String = (0..120)
        .map(|i| format!("line {i:3} of the tunhost echo capture\n"))
        .collect();
    let mut s = TcpStream::connect(("192.0.2.2", 7)).context("connect to 192.0.2.2:7")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .context("socket")?;
    s.write_all(text.as_bytes())
        .context("send to 192.0.2.2:7")?;
    s.shutdown(Shutdown::Write).context("FIN to 192.0.2.2:7")?;
    let mut back = String::new();
    s.read_to_string(&mut back)
        .context("read from 192.0.2.2:7")?;
    if back != text {
        return Err("192.0.2.2:7 echoed something else".into());
    }
    Ok(())
}

/// A UDP socket on the kernel side, connected to the host's `port` (5 s timeout).
fn udp(port: u16) -> Result<UdpSocket> {
    let s = UdpSocket::bind("192.0.2.1:0").context("bind 192.0.2.1")?;
    s.connect(("192.0.2.2", port)).context("connect UDP")?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .context("socket")?;
    Ok(s)
}

/// Three datagrams to UDP port 7, echoed.
fn udp_echo() -> Result {
    let u = udp(7)?;
    for i in 0..3 {
        let msg = format!("datagram {i}");
        u.send(msg.as_bytes()).context("send to 192.0.2.2:7")?;
        let mut buf = [0; 64];
        let n = u.recv(&mut buf).context("receive from 192.0.2.2:7")?;
        if &buf[..n] != msg.as_bytes() {
            return Err(format!("192.0.2.2:7 echoed something else than {msg:?}"));
        }
    }
    Ok(())
}

/// A TCP SYN to port 8 (answered by RST) and a datagram to UDP port 9 (ICMP port unreachable).
fn closed_port() -> Result {
    let refused = |what: &str, r: std::io::Result<usize>| match r {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!("{what}: {e}, not refused")),
        Ok(_) => Err(format!("{what}: answered, not refused")),
    };
    let tcp = TcpStream::connect(("192.0.2.2", 8)).map(|_| 0);
    refused("TCP to 192.0.2.2:8", tcp)?;
    let u = udp(9)?;
    u.send(b"anyone there?").context("send to 192.0.2.2:9")?;
    refused("UDP to 192.0.2.2:9", u.recv(&mut [0; 16]))
}

/// A capture of captures/ made from another by putting its packets under another link header
/// (link types that a Linux TUN/TAP device never has): its name, its format, the pcap link type
/// and the header before each IP packet.
type Derived = (&'static str, Format, u32, &'static [u8]);

/// Classic pcap or pcapng, for [`DERIVED`].
#[derive(Clone, Copy)]
enum Format {
    Pcap,
    PcapNg,
}

/// The source of the derived captures: the kernel's tcpdump on `tun0` (Raw IP).
const DERIVED_FROM: &str = "ping-tcpdump.pcap";

#[rustfmt::skip]
const DERIVED: &[Derived] = &[
    // BSD loopback: AF_INET in the byte order of the writer (a little-endian machine).
    ("ping-null.pcap", Format::Pcap, 0, &[2, 0, 0, 0]),
    // OpenBSD loopback: AF_INET in network byte order.
    ("ping-loop.pcap", Format::Pcap, 108, &[0, 0, 0, 2]),
    // PPP: address 0xff, control 0x03, protocol 0x0021 (IPv4).
    ("ping-ppp.pcapng", Format::PcapNg, 9, &[0xff, 0x03, 0x00, 0x21]),
];

/// Write the derived captures of captures/ (see captures/README.md): [`DERIVED_FROM`]'s packets,
/// with the same times, under the link headers of [`DERIVED`]. Needs no privileges; the same
/// source gives the same bytes.
pub(crate) fn derive(root: &Path) -> Result {
    let dir = root.join("captures");
    let source = dir.join(DERIVED_FROM);
    let cap = Capture::parse(&read(&source)?).context(source.display())?;
    for &(name, format, linktype, header) in DERIVED {
        let packets: Vec<(Duration, Vec<u8>)> = cap
            .packets
            .iter()
            .map(|p| (p.timestamp, [header, &p.data[..]].concat()))
            .collect();
        let bytes = match format {
            Format::Pcap => pcap_file(linktype, &packets),
            Format::PcapNg => pcapng_file(linktype as u16, &packets),
        };
        crate::write(&dir.join(name), &bytes)?;
        eprintln!("captures/{name}: {} packets", packets.len());
    }
    Ok(())
}

/// A classic pcap file (microseconds).
fn pcap_file(linktype: u32, packets: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let mut f = files::pcap_header(linktype);
    for (t, p) in packets {
        files::pcap_record(&mut f, t.as_secs() as u32, t.subsec_micros(), p);
    }
    f
}

/// A pcapng file: one section, one interface (`ppp0`, microseconds), one Enhanced Packet Block
/// each. The interface's options end without opt_endofopt: some writers leave it out, and
/// tshark reads such lists.
fn pcapng_file(linktype: u16, packets: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let mut f = files::pcapng_shb(&[]);
    let options = [
        files::pcapng_option(2, b"ppp0"),
        files::pcapng_option(9, &[6]),
    ]
    .concat();
    f.extend(files::pcapng_idb(linktype, &options));
    for (t, p) in packets {
        f.extend(files::pcapng_epb(0, t.as_micros() as u64, p, &[]));
    }
    f
}

/// Seeds of the capture fuzz targets with what captures from the wild have and captures/ does
/// not: [`DERIVED_FROM`]'s packets under a link type with its upper bits set, in Ethernet frames
/// with a VLAN tag and an FCS (said by the link type's FCS bits), and with a microseconds field
/// of a second or more.
pub(crate) fn wild_seeds(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let source = root.join("captures").join(DERIVED_FROM);
    let cap = Capture::parse(&read(&source)?).context(source.display())?;
    let packets = |header: &[u8], trailer: &[u8]| -> Vec<(Duration, Vec<u8>)> {
        cap.packets
            .iter()
            .map(|p| (p.timestamp, [header, &p.data[..], trailer].concat()))
            .collect()
    };
    let vlan = [&[
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00,
    ][..]]
    .concat();
    let mut subsecond = pcap_file(101, &packets(&[], &[]));
    // The first record's microseconds field: 1.5 s.
    subsecond[24 + 4..24 + 8].copy_from_slice(&1_500_000u32.to_le_bytes());
    Ok(vec![
        (
            "wild-linktype-bits.pcap".into(),
            pcap_file(0x3000_0065, &packets(&[], &[])),
        ),
        (
            "wild-vlan-fcs.pcap".into(),
            pcap_file(0x2400_0001, &packets(&vlan, &[0; 4])),
        ),
        ("wild-subsecond.pcap".into(), subsecond),
    ])
}
