//! `serve --pcap` against the real kernel: the host's trace next to the kernel's own tcpdump,
//! read back by tshark and capinfos, after SIGINT and after SIGKILL, streamed to stdout.

mod common;
mod tools;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{Guard, TUNHOST, Tunhost, assert_echoes, in_netns, lines, sh, spawn};
use nix::sys::signal::{Signal, kill};
use tools::{
    Scratch, Tcpdump, icmp_echo_reply, l3, read_capture, replay_cli, tool, traced, tshark_fields,
};
use tunhost::pcap::{Direction, Link};

use common::{HOST, TAP_ARGS, TUN_ARGS as TUN};

fn args<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    [base, more].concat()
}

fn udp_echo(n: usize) {
    let u = common::udp_to_host(7, Duration::from_secs(5));
    for i in 0..n {
        let msg = format!("udp {i}");
        u.send(msg.as_bytes()).unwrap();
        let mut buf = [0; 64];
        let got = u.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], msg.as_bytes());
    }
}

fn capinfos(file: &str) -> String {
    tool(&["capinfos", file])
}

#[test]
fn tun_trace_holds_every_packet_tcpdump_saw_and_replays() {
    require_root!();
    let dir = Scratch::new("trace-tun");
    let (trace, kernel) = (dir.path("host.pcapng"), dir.path("kernel.pcap"));
    in_netns(|| {
        // Without offloads, so that the packets compare byte for byte: with them, the device
        // finishes the checksum field of the TCP packets the host sends after the tracer has
        // recorded them (see README, Tracing and replay), and TCP moves in 64 KiB segments.
        let mut h = Tunhost::serve(&args(
            TUN,
            &[
                "--no-offload",
                "--echo",
                "7",
                "--udp-echo",
                "7",
                "--seed",
                "0",
                "--pcap",
                &trace,
            ],
        ));
        let dump = Tcpdump::start("tun0", &kernel);
        sh(&["ping", "-c", "5", "-i", "0.05", "-W", "1", HOST]);
        assert_echoes((HOST, 7), 200 * 1024, 7);
        udp_echo(5);
        // A last ping of a size of its own: once tcpdump has written its reply, it has written
        // everything before it.
        sh(&["ping", "-c", "1", "-W", "1", "-s", "333", HOST]);
        dump.wait_for(&kernel, |p| p.len() == 361 && icmp_echo_reply(p).is_some());
        dump.stop();
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success());
    });

    // Both read by capinfos as Raw IP.
    let info = capinfos(&trace);
    assert!(info.contains("pcapng"), "{info}");
    assert!(info.contains("Raw IP"), "{info}");
    assert!(capinfos(&kernel).contains("Raw IP"));

    // Every packet the kernel's tcpdump saw is in the host's trace.
    let host = read_capture(&trace);
    let kern = read_capture(&kernel);
    let mut have: HashMap<&[u8], usize> = HashMap::new();
    for p in &host.packets {
        *have.entry(&p.data).or_default() += 1;
    }
    let mut missing = 0;
    for p in &kern.packets {
        match have.get_mut(&p.data[..]) {
            Some(n) if *n > 0 => *n -= 1,
            _ => missing += 1,
        }
    }
    eprintln!(
        "host trace {} packets, kernel tcpdump {} packets",
        host.packets.len(),
        kern.packets.len()
    );
    assert!(kern.packets.len() > 100, "tcpdump saw the traffic");
    assert_eq!(
        missing, 0,
        "packets tcpdump saw that the host's trace lacks"
    );
    assert!(host.packets.len() >= kern.packets.len());

    // Direction flags, as tshark reads them: inbound from the kernel, outbound from the host.
    let rows = tshark_fields(
        &trace,
        "ip",
        &["frame.packet_flags_direction", "ip.src", "ip.dst"],
    );
    assert!(rows.len() > 100);
    for r in &rows {
        let dir = u32::from_str_radix(r[0].trim_start_matches("0x"), 16).unwrap();
        match r[1].as_str() {
            "192.0.2.1" => assert_eq!(dir, 1, "{r:?}"),
            "192.0.2.2" => assert_eq!(dir, 2, "{r:?}"),
            _ => panic!("unexpected packet {r:?}"),
        }
    }

    // The kernel's capture, replayed offline: the same echo replies, the same file twice.
    let (a, b) = (dir.path("replay-a.pcapng"), dir.path("replay-b.pcapng"));
    for out in [&a, &b] {
        let more = ["--echo", "7", "--udp-echo", "7", "--pcap", out];
        replay_cli(&args(&[&kernel, "--addr", "192.0.2.2/24"], &more));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let replies = |c: &tunhost::pcap::Capture, only_out: bool| -> Vec<Vec<u8>> {
        c.packets
            .iter()
            .filter(|p| !only_out || p.direction == Some(Direction::Outbound))
            .filter_map(|p| icmp_echo_reply(l3(p)).map(<[u8]>::to_vec))
            .collect()
    };
    let live = replies(&kern, false);
    assert_eq!(live.len(), 6);
    assert_eq!(replies(&read_capture(&a), true), live);
}

#[test]
fn tap_trace_is_ethernet_with_arp() {
    require_root!();
    let dir = Scratch::new("trace-tap");
    let trace = dir.path("tap.pcapng");
    traced(&args(TAP_ARGS, &["--echo", "7", "--pcap", &trace]), || {
        sh(&["ping", "-c", "2", "-i", "0.05", "-W", "1", "198.51.100.2"]);
    });
    let info = capinfos(&trace);
    assert!(info.contains("Ethernet"), "{info}");
    let cap = read_capture(&trace);
    assert!(cap.packets.iter().all(|p| p.link == Link::Ethernet));
    // The kernel asks (inbound), the host answers (outbound).
    let arp = tshark_fields(
        &trace,
        "arp",
        &["frame.packet_flags_direction", "arp.opcode"],
    );
    assert!(
        arp.contains(&vec!["0x00000001".into(), "1".into()]),
        "{arp:?}"
    );
    assert!(
        arp.contains(&vec!["0x00000002".into(), "2".into()]),
        "{arp:?}"
    );
    let replies = tshark_fields(&trace, "icmp.type == 0", &["icmp.seq"]);
    assert_eq!(replies.len(), 2);
}

#[test]
fn trace_is_complete_after_sigint_and_readable_after_kill_9() {
    require_root!();
    let dir = Scratch::new("trace-signals");
    let (clean, killed) = (dir.path("sigint.pcapng"), dir.path("kill9.pcapng"));
    // SIGINT: everything up to the stop is in the trace.
    traced(&args(TUN, &["--echo", "7", "--pcap", &clean]), || {
        sh(&["ping", "-c", "3", "-i", "0.05", "-W", "1", HOST]);
    });
    in_netns(|| {
        // SIGKILL: echo replies sent well before the kill are on disk; traffic is still going
        // (records in the buffer) when the kill comes.
        let mut h = Tunhost::serve(&args(TUN, &["--echo", "7", "--pcap", &killed]));
        sh(&[
            "ping", "-c", "5", "-i", "0.05", "-W", "1", "-s", "111", HOST,
        ]);
        thread::sleep(Duration::from_millis(1500));
        let busy = [
            "ping", "-c", "200", "-i", "0.005", "-W", "1", "-s", "222", HOST,
        ];
        let mut busy = spawn(&busy, Stdio::null(), Stdio::null());
        thread::sleep(Duration::from_millis(100));
        let (status, _) = h.signal(Signal::SIGKILL);
        assert!(!status.success());
        let _ = busy.wait();
    });
    tool(&["capinfos", &clean]);
    assert_eq!(
        tshark_fields(&clean, "icmp.type == 0", &["icmp.seq"]).len(),
        3
    );
    // tshark may warn about a torn last record; it must read everything before it.
    let out = Command::new("tshark")
        .args(["-n", "-r", &killed, "-Y", "icmp.type == 0 && ip.len == 139"])
        .args(["-T", "fields", "-e", "icmp.seq"])
        .output()
        .unwrap();
    let seqs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        seqs,
        ["1", "2", "3", "4", "5"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for(rx: &mpsc::Receiver<String>, what: &str, mut done: impl FnMut(&str) -> bool) {
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if done(&line) => return,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// `tunhost serve --echo 7 --pcap -` on the TUN test device, once it has printed its banner:
/// the process (killed on drop), its stdout (the trace) and its stderr lines.
fn serve_to_stdout() -> (Guard, std::process::ChildStdout, mpsc::Receiver<String>) {
    let argv = [&[TUNHOST, "serve"], TUN, &["--echo", "7", "--pcap", "-"]].concat();
    let mut host = spawn(&argv, Stdio::piped(), Stdio::piped());
    let trace = host.stdout.take().unwrap();
    let err = lines(host.stderr.take().unwrap());
    wait_for(&err, "the banner", |l| l.starts_with("serving "));
    (Guard(host), trace, err)
}

/// Send `sig` to `host`, which must exit 0 within 5 s; all it wrote to stderr after the banner.
fn stop(host: &mut Guard, sig: Signal, err: mpsc::Receiver<String>) -> String {
    kill(host.pid(), sig).unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = host.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "tunhost did not exit within 5 s of {sig}"
        );
        thread::sleep(Duration::from_millis(5));
    };
    eprintln!("tunhost exited {status} {:?} after {sig}", start.elapsed());
    // The child has exited: its stderr ends, and so does the channel.
    let text = err.iter().collect::<Vec<_>>().join("\n");
    assert!(status.success(), "{status}:\n{text}");
    text
}

#[test]
fn pcap_to_stdout_streams_live_into_tshark() {
    require_root!();
    in_netns(|| {
        let (host, trace, _err) = serve_to_stdout();
        let mut tshark = Command::new("tshark")
            .args(["-l", "-n", "-r", "-", "-T", "fields", "-e", "icmp.type"])
            .stdin(Stdio::from(trace))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run tshark");
        let decoded = lines(tshark.stdout.take().unwrap());
        let _tshark = Guard(tshark);
        sh(&["ping", "-c", "3", "-i", "0.05", "-W", "1", HOST]);
        // tshark decodes the replies while the host is still running.
        let mut replies = 0;
        wait_for(&decoded, "3 echo replies from tshark", |l| {
            replies += usize::from(l == "0");
            replies == 3
        });
        kill(host.pid(), Signal::SIGINT).unwrap();
    });
}

#[test]
fn classic_pcap_with_a_snap_length() {
    require_root!();
    let dir = Scratch::new("trace-classic");
    let trace = dir.path("snap.pcap");
    let more = [
        "--echo",
        "7",
        "--pcap",
        &trace,
        "--pcap-format",
        "pcap",
        "--snaplen",
        "64",
    ];
    traced(&args(TUN, &more), || {
        sh(&[
            "ping", "-c", "2", "-i", "0.05", "-W", "1", "-s", "500", HOST,
        ]);
    });
    let info = capinfos(&trace);
    assert!(info.contains("- pcap"), "{info}");
    assert!(info.contains("64 bytes"), "{info}");
    let rows = tshark_fields(&trace, "icmp", &["frame.cap_len", "frame.len"]);
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(r, ["64", "528"]);
    }
}

#[test]
fn a_closed_pipe_is_reported_once_and_the_host_keeps_serving() {
    require_root!();
    in_netns(|| {
        let (mut host, trace, err) = serve_to_stdout();
        drop(trace);
        sh(&["ping", "-c", "3", "-i", "0.3", "-W", "1", HOST]);
        assert_echoes((HOST, 7), 10_000, 7);
        let text = stop(&mut host, Signal::SIGINT, err);
        assert_eq!(text.matches("cannot write").count(), 1, "{text}");
        assert!(text.contains("could not be written"), "{text}");
    });
}

#[test]
fn pcap_trace_example_traces() {
    require_root!();
    let dir = Scratch::new("trace-example");
    let trace = dir.path("example.pcapng");
    let bin = common::example("pcap_trace");
    in_netns(|| {
        let mut h = Tunhost::start_program(&bin, &[&trace], "ready: ");
        sh(&["ping", "-c", "2", "-i", "0.05", "-W", "1", HOST]);
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success(), "{:?}", h.stderr);
    });
    let cap = read_capture(&trace);
    let replies = cap
        .packets
        .iter()
        .filter(|p| p.direction == Some(Direction::Outbound))
        .filter(|p| icmp_echo_reply(&p.data).is_some())
        .count();
    assert_eq!(replies, 2);
}

/// `ping` the host `count` times, 5 ms apart, with `size` bytes of payload: every one answered.
fn ping_all_answered(count: usize, size: usize) {
    let (count, size) = (count.to_string(), size.to_string());
    let argv = [
        "ping", "-c", &count, "-i", "0.005", "-W", "1", "-s", &size, HOST,
    ];
    let out = common::run(&argv);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("{count} received")),
        "{argv:?}: {}\n{text}",
        out.status
    );
}

#[test]
fn a_stalled_reader_costs_trace_records_not_service() {
    require_root!();
    in_netns(|| {
        // The trace goes to a pipe that nobody reads: it fills (64 KiB), then the host's
        // 256 KiB buffer does; 600 records of ~1 KiB overflow both.
        let (mut host, _unread, err) = serve_to_stdout();
        ping_all_answered(300, 1000);
        assert_echoes((HOST, 7), 10_000, 11);
        let text = stop(&mut host, Signal::SIGTERM, err);
        let line = text
            .lines()
            .find(|l| l.contains("packets not recorded: the reader of stdout was too slow"))
            .unwrap_or_else(|| panic!("no report of the packets left out:\n{text}"));
        let n: u64 = line
            .split(": ")
            .find_map(|part| part.strip_suffix(" packets not recorded"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"));
        assert!(n > 0, "{line}");
        assert!(!text.contains("cannot write"), "{text}");
    });
}

#[test]
fn a_reader_that_stops_early_is_reported_once_and_the_host_keeps_serving() {
    require_root!();
    in_netns(|| {
        // As `tunhost serve --pcap - | head -c 100`: head takes part of the header and goes.
        let (mut host, trace, err) = serve_to_stdout();
        let head = Command::new("head")
            .args(["-c", "100"])
            .stdin(Stdio::from(trace))
            .stdout(Stdio::null())
            .spawn()
            .expect("run head");
        let mut head = Guard(head);
        let start = std::time::Instant::now();
        while head.0.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "head did not exit"
            );
            thread::sleep(Duration::from_millis(5));
        }
        ping_all_answered(100, 1000);
        assert_echoes((HOST, 7), 10_000, 13);
        let text = stop(&mut host, Signal::SIGTERM, err);
        let closed = text
            .matches("cannot write: the reader closed the pipe")
            .count();
        assert_eq!(closed, 1, "{text}");
        assert!(text.contains("could not be written"), "{text}");
    });
}
