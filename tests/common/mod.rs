//! Shared harness of the end-to-end tests: a private network namespace per test, the `tunhost`
//! binary running in it, and the kernel as the peer.
//!
//! - [`require_root!`] skips a test loudly when not root, and fails it when `CI=true`.
//! - [`in_netns`] runs a closure on a thread that has its own network namespace (loopback up).
//!   Processes it spawns and sockets it opens live in that namespace, which disappears when they
//!   are gone: tests run in parallel and leave nothing behind.
//! - [`Tunhost`] runs `tunhost` with arguments, waits for its banner, and kills it on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The host's address on the usual TUN test device.
pub const HOST: &str = "192.0.2.2";

/// The usual TUN test device: `tun0`, host 192.0.2.2/24, kernel side 192.0.2.1/24.
pub const TUN_ARGS: &[&str] = &[
    "--tun",
    "tun0",
    "--addr",
    "192.0.2.2/24",
    "--peer",
    "192.0.2.1/24",
];

/// The usual TAP test device: `tap0`, host 198.51.100.2/24 with MAC 02:00:00:00:00:02, kernel
/// side 198.51.100.1/24.
pub const TAP_ARGS: &[&str] = &[
    "--tap",
    "tap0",
    "--addr",
    "198.51.100.2/24",
    "--peer",
    "198.51.100.1/24",
    "--mac",
    "02:00:00:00:00:02",
];

/// The path of an example binary (cargo builds the examples for `cargo test`).
pub fn example(name: &str) -> String {
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/<name>
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.pop();
    p.push("examples");
    p.push(name);
    assert!(
        p.exists(),
        "{} not built (cargo test builds the examples)",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

/// Connect to an echo service at `addr`, send `data` from a second thread then FIN, read until
/// the server closes, and return what came back (10 s timeouts).
pub fn echo(addr: impl std::net::ToSocketAddrs, data: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the echo service");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let sent = data.to_vec();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).expect("write to echo");
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(data.len());
    s.read_to_end(&mut back).expect("read echo");
    writer.join().unwrap();
    back
}

/// Echo `len` bytes of [`pattern`] `seed` through the echo service at `addr` (see [`echo`]):
/// they must all come back, exactly.
pub fn assert_echoes(addr: impl std::net::ToSocketAddrs + std::fmt::Debug, len: usize, seed: u64) {
    let data = pattern(len, seed);
    let what = format!("echo of {len} bytes at {addr:?}");
    let back = echo(addr, &data);
    assert_eq!(back.len(), data.len(), "{what}: length");
    assert!(back == data, "{what}: echoed bytes differ");
}

/// A UDP socket on the kernel side of the TUN test device (192.0.2.1), connected to the host's
/// `port`, that waits `timeout` at most for a datagram.
pub fn udp_to_host(port: u16, timeout: Duration) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("192.0.2.1:0").expect("bind on the kernel side");
    s.connect((HOST, port)).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// The path of the `tunhost` binary cargo built for these tests.
pub const TUNHOST: &str = env!("CARGO_BIN_EXE_tunhost");

/// Whether privileged tests can run. Not root: a loud skip, or a panic when `CI=true`.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test} needs root (TUN devices, network namespaces) and CI=true: failing, not skipping"
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: needs root for TUN devices and network namespaces \
         (run the tests as root: sudo -E cargo test) ***\n"
    );
    false
}

/// Return from the test early (loudly) when it cannot run; fail in CI.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::privileged(module_path!()) {
            return;
        }
    };
}

/// Run `f` on a new thread in a new network namespace whose loopback is up; return its result
/// (a panic in `f` fails the calling test). `f` may borrow from the caller: the thread is scoped.
pub fn in_netns<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let t = scope.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            sh(&["ip", "link", "set", "lo", "up"]);
            f()
        });
        match t.join() {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e),
        }
    })
}

/// Create a TUN or TAP device (`mode`) on the kernel side, as a user would with ip(8): the
/// kernel's address on it (IPv6 without duplicate address detection), link up.
pub fn kernel_device(name: &str, mode: &str, addr: &str) {
    sh(&["ip", "tuntap", "add", "dev", name, "mode", mode]);
    if addr.contains(':') {
        sh(&["ip", "-6", "addr", "add", addr, "dev", name, "nodad"]);
    } else {
        sh(&["ip", "addr", "add", addr, "dev", name]);
    }
    sh(&["ip", "link", "set", name, "up"]);
}

/// Run a command to completion; panic with its output if it fails.
pub fn sh(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command to completion and return what it did.
pub fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e} (is it installed? see .ci/run)"))
}

/// Start a command with stdin from `/dev/null` and stdout and stderr as given.
pub fn spawn(argv: &[&str], stdout: Stdio, stderr: Stdio) -> Child {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e} (is it installed? see .ci/run)"))
}

/// A child process, killed (SIGKILL) and reaped on drop if it is still running: a failing test
/// leaves nothing behind.
pub struct Guard(pub Child);

impl Guard {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// The lines of a reader (a child's stdout or stderr), on a channel, from a thread of their own.
pub fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A `tunhost` process of this test.
pub struct Tunhost {
    child: Guard,
    /// The banner line ("serving ...").
    pub banner: String,
    lines: mpsc::Receiver<String>,
    /// Every stderr line seen so far.
    pub stderr: Vec<String>,
}

impl Tunhost {
    /// `tunhost serve ARGS`, once it has printed its banner (10 s at most). With
    /// `TUNHOST_TEST_NO_OFFLOAD=1` in the environment, `--no-offload` is added: the whole suite
    /// then runs on the plain device (`TUNHOST_TEST_NO_OFFLOAD=1 cargo test`).
    pub fn serve(args: &[&str]) -> Tunhost {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        if no_offload() && !full.contains(&"--no-offload") {
            full.push("--no-offload");
        }
        Tunhost::start(&full, "serving ")
    }

    /// `tunhost ARGS`, once a stderr line starts with `ready` (10 s at most).
    pub fn start(args: &[&str], ready: &str) -> Tunhost {
        Tunhost::start_program(TUNHOST, args, ready)
    }

    /// `PROGRAM ARGS` (an example, say), once a stderr line starts with `ready`.
    pub fn start_program(program: &str, args: &[&str], ready: &str) -> Tunhost {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::null());
        Tunhost::from_command(cmd, ready)
    }

    /// A command set up by the caller (stdin, stderr and the rest are the harness's), once a
    /// stderr line starts with `ready`.
    pub fn from_command(mut cmd: Command, ready: &str) -> Tunhost {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
        let err = lines(child.stderr.take().expect("piped stderr"));
        let mut t = Tunhost {
            child: Guard(child),
            banner: String::new(),
            lines: err,
            stderr: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match t.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(ready);
                    t.stderr.push(line.clone());
                    if hit {
                        t.banner = line;
                        return t;
                    }
                }
                Err(_) => {
                    let status = t.child.0.try_wait().ok().flatten();
                    panic!(
                        "tunhost {args:?} did not become ready (exit: {status:?}); stderr:\n{}",
                        t.stderr.join("\n")
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> Pid {
        self.child.pid()
    }

    /// Send `sig` and wait (5 s at most) for the process to exit; returns the status and how
    /// long it took.
    pub fn signal(&mut self, sig: Signal) -> (ExitStatus, Duration) {
        kill(self.pid(), sig).expect("kill");
        self.wait_exit(&format!("{sig}"))
    }

    /// Wait (5 s at most) for the process to exit after `what` (for the panic message); returns
    /// the status and how long it took.
    pub fn wait_exit(&mut self, what: &str) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                self.drain_stderr();
                return (status, start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(5) {
                panic!("tunhost did not exit within 5 s of {what}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Collect what stderr has printed so far.
    pub fn drain_stderr(&mut self) -> &[String] {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
            self.stderr.push(line);
        }
        &self.stderr
    }

    /// CPU time (user + system) the process has used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

/// Whether the suite runs without offloads (`TUNHOST_TEST_NO_OFFLOAD` set and not `0`).
pub fn no_offload() -> bool {
    std::env::var("TUNHOST_TEST_NO_OFFLOAD").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Run `tunhost ARGS` to completion (for bad-input checks): exit code and stderr.
pub fn tunhost(args: &[&str]) -> (i32, String) {
    let out = Command::new(TUNHOST)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tunhost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// In a child between fork and exec: a mount namespace of its own whose mounts do not leak back
/// (`unshare(CLONE_NEWNS)`, `/` made recursively private), so that the child may mount over
/// `/dev/net` without touching the machine's.
pub fn private_mounts() -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}

/// `ping ARGS` (ping(8) from the kernel side), which must succeed: what it printed.
pub fn ping_ok(args: &[&str]) -> String {
    let mut argv = vec!["ping"];
    argv.extend_from_slice(args);
    let out = run(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{argv:?} failed:\n{text}");
    text
}

/// `-6` for an IPv6 address, `-4` for an IPv4 one (ping(8), ip(8)).
pub fn family(addr: &str) -> &'static str {
    if addr.contains(':') { "-6" } else { "-4" }
}

/// Deterministic test data (xorshift), so a failure can be reproduced.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
