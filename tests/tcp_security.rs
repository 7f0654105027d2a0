//! TCP that can face a network (issue 12, items 1-3): forged segments from the kernel side of
//! the TUN device (python3-scapy, tests/probes/tcp_security.py) against `tunhost serve`, each
//! test in its own network namespace. Spoofed segments come from 192.0.2.77, an address of the
//! subnet that nobody has: the host's replies to it are only seen by the probe's sniffer.
//!
//! Each test fails without its smoltcp patch (vendor/smoltcp/PATCHES.md).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Guard, HOST, TUN_ARGS, Tunhost, in_netns, lines};

/// The Python with scapy (Debian's python3-scapy): /usr/bin/python3 when there is one.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/probes/tcp_security.py");

/// `tunhost serve` on the usual TUN device with an echo service on port 7, on the plain device
/// (so that the sniffer sees each segment as the host sent it), plus `extra` arguments.
fn serve(extra: &[&str]) -> Tunhost {
    let mut args = TUN_ARGS.to_vec();
    args.extend_from_slice(&["--echo", "7", "--no-offload"]);
    args.extend_from_slice(extra);
    Tunhost::serve(&args)
}

/// A running probe: its stdin, and its stdout's lines.
struct Probe {
    child: Guard,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
}

impl Probe {
    fn start(args: &[&str]) -> Probe {
        let argv = [&[python(), PROBE], args].concat();
        let mut cmd = std::process::Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e} (python3-scapy: see .ci/run)"));
        let stdin = child.stdin.take();
        let out = lines(child.stdout.take().unwrap());
        Probe {
            child: Guard(child),
            stdin,
            out,
        }
    }

    /// The next line (60 s at most).
    fn line(&self) -> String {
        self.out
            .recv_timeout(Duration::from_secs(60))
            .expect("the probe said nothing within 60 s (see its stderr above)")
    }

    fn go(&mut self, port: u16) {
        let mut stdin = self.stdin.take().unwrap();
        writeln!(stdin, "go {port}").unwrap();
    }

    /// Every `key value` line until the probe exits; it must exit with success.
    fn finish(mut self) -> Vec<(String, String)> {
        let mut kv = Vec::new();
        while let Ok(line) = self.out.recv_timeout(Duration::from_secs(60)) {
            let (k, v) = line.split_once(' ').unwrap_or((&line, ""));
            kv.push((k.to_string(), v.to_string()));
        }
        let status = self.child.0.wait().expect("wait for the probe");
        assert!(
            status.success(),
            "the probe failed: {status}; it said {kv:?}"
        );
        kv
    }
}

/// Run the probe to completion: its `key value` lines.
fn probe(args: &[&str]) -> Vec<(String, String)> {
    Probe::start(args).finish()
}

fn value<'a>(kv: &'a [(String, String)], key: &str) -> &'a str {
    kv.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the probe said no {key}: {kv:?}"))
}

fn number(kv: &[(String, String)], key: &str) -> u64 {
    value(kv, key).parse().unwrap()
}

/// The ISNs of SYN-ACKs to SYNs from 192.0.2.77 on `ports`, in turn.
fn isns(ports: &[u16]) -> Vec<u32> {
    let mut args = vec!["isn".to_string(), "7".to_string()];
    args.extend(ports.iter().map(|p| p.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let kv = probe(&args);
    kv.iter()
        .filter(|(k, _)| k == "isn")
        .map(|(_, v)| {
            let n = v.split(' ').nth(1).unwrap();
            n.parse()
                .unwrap_or_else(|_| panic!("no SYN-ACK to a SYN: {kv:?}"))
        })
        .collect()
}

/// smoltcp 0.14's random generator (sPCG32), which gave the ISNs before RFC 6528.
struct Pcg32(u64);

impl Pcg32 {
    fn next(&mut self) -> u32 {
        let s = self
            .0
            .wrapping_mul(0xbb2e_fcec_3c39_611d)
            .wrapping_add(0x7590_ef39);
        self.0 = s;
        (s >> (29 - (s >> 61))) as u32
    }
}

/// The attacker's prediction of the ISN after `a` and `b`: their place in the generator's
/// output (with the seed `--seed` gave it), and the output after them.
fn predict_next(seed: u64, a: u32, b: u32) -> Option<u32> {
    let mut g = Pcg32(seed);
    let outs: Vec<u32> = (0..4096).map(|_| g.next()).collect();
    outs.windows(3)
        .find(|w| w[0] == a && w[1] == b)
        .map(|w| w[2])
}

#[test]
fn isns_are_not_a_generator_s_consecutive_outputs() {
    require_root!();
    in_netns(|| {
        let h = serve(&["--seed", "7"]);
        assert!(
            h.banner
                .contains("--seed 7: TCP sequence numbers are predictable"),
            "{}",
            h.banner
        );
        let isn = isns(&[41001, 41002, 41003]);
        assert_eq!(isn.len(), 3);
        assert!(isn[0] != isn[1] && isn[1] != isn[2], "{isn:?}");
        let predicted = predict_next(7, isn[0], isn[1]);
        assert_ne!(
            predicted,
            Some(isn[2]),
            "the third ISN follows from the first two: {isn:?}"
        );
    });
}

#[test]
fn a_blind_spoofed_handshake_gets_nothing_served() {
    require_root!();
    in_netns(|| {
        let _h = serve(&["--seed", "9"]);
        // The attacker sees two ISNs from its own connections, predicts the next one as best
        // it can, and completes a handshake from an address that never sees the SYN-ACK.
        let isn = isns(&[41001, 41002]);
        let guess = predict_next(9, isn[0], isn[1])
            .unwrap_or_else(|| isn[1].wrapping_add(isn[1].wrapping_sub(isn[0])));
        let kv = probe(&["spoof", "41003", "7", &guess.to_string()]);
        assert_eq!(
            number(&kv, "data"),
            0,
            "the spoofed handshake was served (ISN guess {guess} from {isn:?})"
        );
    });
}

/// A kernel client's connection to the echo service, checked by one exchange.
fn connect() -> TcpStream {
    let s = TcpStream::connect((HOST, 7)).expect("connect to the echo service");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `data` goes out on `s` and comes back; panics (with `what`) otherwise.
fn exchange(s: &mut TcpStream, data: &[u8], what: &str) {
    s.write_all(data)
        .unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let mut back = vec![0; data.len()];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    assert_eq!(back, data, "{what}");
}

/// Run the probe's `command` against the kernel's live connection to the echo service, which
/// `open` makes (the probe sniffs from before it), in a namespace of its own: what the probe
/// said, once the connection has been checked to still echo.
fn against_a_live_connection(
    command: &str,
    open: impl FnOnce() -> TcpStream + Send,
) -> Vec<(String, String)> {
    in_netns(|| {
        let _h = serve(&[]);
        let mut p = Probe::start(&[command, "7"]);
        assert_eq!(p.line(), "ready");
        let mut live = open();
        p.go(live.local_addr().unwrap().port());
        let kv = p.finish();
        let what =
            format!("echo after the probe's {command} (the connection must survive; {kv:?})");
        exchange(&mut live, b"still alive\n", &what);
        kv
    })
}

#[test]
fn blind_rsts_leave_a_live_connection_alive() {
    require_root!();
    let kv = against_a_live_connection("rst", || {
        let mut s = connect();
        exchange(&mut s, b"before\n", "echo before the RSTs");
        s
    });
    assert_eq!(
        number(&kv, "challenge"),
        1,
        "no challenge ACK to an in-window RST: {kv:?}"
    );
    assert_eq!(number(&kv, "sent"), 32768, "{kv:?}");
}

#[test]
fn a_spoofed_syn_does_not_take_over_a_live_connection() {
    require_root!();
    let kv = against_a_live_connection("syn", || {
        // One connection that ends while another lives, and a third: the host listens on
        // the first one's socket again, before the live one's in its socket set, where a
        // SYN used to find it first.
        let mut first = connect();
        let mut live = connect();
        exchange(&mut first, b"first\n", "first connection");
        exchange(&mut live, b"live\n", "live connection");
        first.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        first
            .read_to_end(&mut rest)
            .expect("the first connection ends");
        std::thread::sleep(Duration::from_millis(300));
        let mut third = connect();
        exchange(&mut third, b"third\n", "third connection");
        std::thread::sleep(Duration::from_millis(300));
        live
    });
    assert_eq!(
        number(&kv, "synack"),
        0,
        "a SYN-ACK to a SYN on a live 4-tuple: {kv:?}"
    );
    assert!(number(&kv, "challenge") >= 1, "no challenge ACK: {kv:?}");
}

/// The probe's `command` against a host of its own, in a namespace of its own.
fn against_a_host(command: &str) -> Vec<(String, String)> {
    in_netns(|| {
        let _h = serve(&[]);
        probe(&[command, "7"])
    })
}

#[test]
fn mss_and_window_scale_come_from_each_syn() {
    require_root!();
    let kv = against_a_host("mss");
    let ws: u8 = value(&kv, "wscale")
        .parse()
        .unwrap_or_else(|_| panic!("no window scale in the SYN-ACK to a SYN with one: {kv:?}"));
    assert!(
        ws > 0,
        "window scale 0 (a 256 KiB buffer needs more): carried over from the last SYN? {kv:?}"
    );
    // Some of the 1400 bytes sent come back at once (the rest waits for an ACK).
    assert!(number(&kv, "echoed") >= 536, "{kv:?}");
    let max = number(&kv, "maxseg");
    assert!(
        max <= 536,
        "a {max}-byte segment to a peer whose SYN had no MSS (536): {kv:?}"
    );
}

#[test]
fn data_with_an_old_ack_is_acknowledged() {
    require_root!();
    let kv = against_a_host("oldack");
    assert_eq!(
        number(&kv, "acked"),
        1,
        "data whose ACK is below SND.UNA was not acknowledged: {kv:?}"
    );
}
