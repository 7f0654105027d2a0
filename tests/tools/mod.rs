//! Helpers of the tracing and replay tests: the kernel's own tcpdump on a device, tshark and
//! capinfos, and reading captures with the library.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use tunhost::pcap::{Capture, Packet};

use crate::common::{Guard, TUNHOST, Tunhost, in_netns, lines, spawn};

/// `captures/` in the source tree.
pub fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

/// A fresh scratch directory for one test (under the target directory, removed on drop).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The kernel's tcpdump writing `dev`'s packets to `path`, once it is listening (killed on drop).
pub struct Tcpdump {
    child: Guard,
}

impl Tcpdump {
    pub fn start(dev: &str, path: &str) -> Tcpdump {
        let argv = [
            "tcpdump",
            "-i",
            dev,
            "--immediate-mode",
            "-B",
            "32768",
            "-U",
            "-n",
            "-w",
            path,
        ];
        let mut child = spawn(&argv, Stdio::null(), Stdio::piped());
        let rx = lines(child.stderr.take().unwrap());
        let child = Guard(child);
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => {}
                Err(_) => panic!("tcpdump -i {dev} did not start listening"),
            }
        }
        Tcpdump { child }
    }

    /// Wait until the packets written so far to the (classic pcap, little-endian) file include
    /// one that `marker` matches: tcpdump writes in order, so everything before it is there too.
    pub fn wait_for(&self, path: &str, marker: impl Fn(&[u8]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let bytes = std::fs::read(path).unwrap_or_default();
            let mut at = 24;
            while let Some(h) = bytes.get(at..at + 16) {
                let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
                let Some(data) = bytes.get(at + 16..at + 16 + len) else {
                    break;
                };
                if marker(data) {
                    return;
                }
                at += 16 + len;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tcpdump did not write the marker packet to {path}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop it (SIGINT: it writes out what it has) and wait.
    pub fn stop(mut self) {
        let _ = kill(self.child.pid(), Signal::SIGINT);
        let _ = self.child.0.wait();
    }
}

/// `tunhost serve ARGS` (with a `--pcap` among them) in a namespace of its own: `traffic` runs
/// against it, then SIGINT, on which it must exit 0, its trace complete.
pub fn traced(args: &[&str], traffic: impl FnOnce() + Send) {
    in_netns(|| {
        let mut h = Tunhost::serve(args);
        traffic();
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success(), "exit status {status}");
    });
}

/// `tunhost replay ARGS`, which must succeed: its stdout (the summary).
pub fn replay_cli(args: &[&str]) -> String {
    tool(&[&[TUNHOST, "replay"], args].concat())
}

/// Run a tool and return its stdout (panics with stderr if it fails).
pub fn tool(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e} (is it installed? see .ci/run)"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tshark -r FILE [-Y FILTER] -T fields -e F...`: one Vec per packet.
pub fn tshark_fields(file: &str, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut argv = vec!["tshark", "-n", "-r", file];
    if !filter.is_empty() {
        argv.extend(["-Y", filter]);
    }
    argv.extend(["-T", "fields"]);
    for f in fields {
        argv.extend(["-e", f]);
    }
    tool(&argv)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Read a capture with the library: it must be whole (no record skipped, not cut short).
pub fn read_capture(path: &str) -> Capture {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let cap = Capture::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(cap.damage.is_clean(), "{path}: {}", cap.damage);
    cap
}

/// Whether an IPv4 packet (no link header) is an ICMP echo reply; its ICMP bytes if so.
pub fn icmp_echo_reply(ip: &[u8]) -> Option<&[u8]> {
    let ihl = ((*ip.first()? & 0x0f) as usize) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 1 {
        return None;
    }
    let icmp = ip.get(ihl..)?;
    (*icmp.first()? == 0).then_some(icmp)
}

/// The network-layer bytes of a TUN or Ethernet packet.
pub fn l3(p: &Packet) -> &[u8] {
    match p.link {
        tunhost::pcap::Link::Ethernet => &p.data[14..],
        _ => &p.data,
    }
}

/// `dnsmasq` on the kernel side with `args` besides the common ones (foreground, no upstream,
/// no hosts file, only the given interfaces, no pid file, its log to `log`), once `ss` shows it
/// listening on each of `ready` (e.g. `198.51.100.1:53`, `:67`); killed on drop.
pub fn dnsmasq(args: &[&str], log: &str, ready: &[&str]) -> Guard {
    let log = format!("--log-facility={log}");
    let child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--pid-file",
            &log,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run dnsmasq (Debian package dnsmasq-base; see .ci/run)");
    let guard = Guard(child);
    let start = std::time::Instant::now();
    loop {
        let listening = crate::common::sh(&["ss", "-Hlun"]);
        if ready.iter().all(|r| listening.contains(r)) {
            return guard;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "dnsmasq did not listen on {ready:?}: {listening}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
