//! A bad link (`--drop`, `--corrupt`, `--duplicate`, `--reorder`, `--delay`) against the real
//! kernel: TCP still delivers every byte, UDP datagrams come back intact or not at all, the
//! trace says what was done to each packet, and a replay with the same seed does it again.

mod common;
mod tools;

use std::collections::HashSet;
use std::time::Duration;

use common::{TUN_ARGS as TUN, Tunhost, assert_echoes, in_netns, sh};
use nix::sys::signal::Signal;
use tools::{Scratch, read_capture, replay_cli, tool, tshark_fields};
use tunhost::pcap::{Direction, Packet};

/// The faults of the issue, both ways.
const FAULTS: &[&str] = &[
    "--drop",
    "0.05",
    "--duplicate",
    "0.02",
    "--reorder",
    "0.05",
    "--corrupt",
    "0.01",
];

fn args<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
    parts.concat()
}

/// The kernel's count of TCP segments and UDP datagrams it dropped for a bad checksum.
fn kernel_checksum_errors() -> (u64, u64) {
    let snmp = sh(&["cat", "/proc/net/snmp"]);
    let field = |proto: &str, name: &str| -> u64 {
        let mut lines = snmp.lines().filter(|l| l.starts_with(proto));
        let names: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let values: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let i = names.iter().position(|n| *n == name).unwrap();
        values[i].parse().unwrap()
    };
    (field("Tcp:", "InCsumErrors"), field("Udp:", "InCsumErrors"))
}

/// 1 MiB through the TCP echo service on a bad link, byte for byte; the kernel dropped some of
/// the host's segments for their checksum (the corrupted ones), and delivered none of them.
fn tcp_mib_echo(offload: &[&str]) {
    in_netns(|| {
        let mut h = Tunhost::serve(&args(&[
            TUN,
            FAULTS,
            offload,
            &["--echo", "7", "--seed", "7"],
        ]));
        assert!(h.banner.contains("offload off"), "{}", h.banner);
        assert_echoes((common::HOST, 7), 1 << 20, 1);
        let (tcp_errors, _) = kernel_checksum_errors();
        assert!(tcp_errors > 0, "no corrupted segment reached the kernel");
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success(), "{status}");
        let log = h.drain_stderr().join("\n");
        assert!(log.contains("corrupted"), "{log}");
    });
}

#[test]
fn a_mib_of_tcp_echo_is_byte_exact_through_a_bad_link() {
    require_root!();
    // With offloads asked for: faults turn them off, or the kernel would trust the host's TCP
    // checksums and deliver the corrupted segments.
    tcp_mib_echo(&[]);
}

#[test]
fn a_mib_of_tcp_echo_is_byte_exact_through_a_bad_link_without_offload() {
    require_root!();
    tcp_mib_echo(&["--no-offload"]);
}

#[test]
fn tcp_through_a_bottleneck_recovers_a_burst_of_losses_byte_exact() {
    require_root!();
    // 4 MiB echoed through a 20 Mbit/s link with a 50-packet buffer (10 ms RTT): the host's
    // slow start overruns the buffer, which drops a burst of its segments. Recovery resends
    // the holes the kernel's SACK blocks show (smoltcp patch 17), and the data still arrives
    // whole and in order.
    let dir = Scratch::new("badlink-bottleneck");
    let trace = dir.path("bottleneck.pcapng");
    in_netns(|| {
        let link = ["--rate", "out:20:50", "--delay", "5", "--seed", "2"];
        let mut h = Tunhost::serve(&args(&[TUN, &link, &["--echo", "7", "--pcap", &trace]]));
        assert_echoes((common::HOST, 7), 4 << 20, 9);
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success(), "{status}");
    });
    // The buffer did overflow, and what it dropped went again.
    let sent = tshark_fields(
        &trace,
        "tcp.srcport == 7 && tcp.len > 0",
        &["tcp.seq_raw", "frame.comment"],
    );
    let full = sent
        .iter()
        .filter(|f| f[1] == "dropped (queue full)")
        .count();
    let distinct: HashSet<&String> = sent.iter().map(|f| &f[0]).collect();
    assert!(full > 10, "{full} segments dropped by the full buffer");
    assert!(
        sent.len() - distinct.len() >= full,
        "{} segments resent for {full} dropped",
        sent.len() - distinct.len()
    );
}

/// Send `n` distinct datagrams to the UDP echo service, one every millisecond; every one that
/// comes back is one of them, intact (a corrupted one is dropped by a checksum on the way).
fn udp_datagrams(n: usize) -> usize {
    let u = common::udp_to_host(7, Duration::from_millis(300));
    let sent: Vec<Vec<u8>> = (0..n)
        .map(|i| common::pattern(200 + i % 300, i as u64 + 1))
        .collect();
    for d in &sent {
        u.send(d).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let known: HashSet<&Vec<u8>> = sent.iter().collect();
    let mut back = 0;
    let mut buf = [0u8; 2048];
    while let Ok(len) = u.recv(&mut buf) {
        assert!(
            known.contains(&buf[..len].to_vec()),
            "a datagram of {len} bytes came back altered"
        );
        back += 1;
    }
    back
}

#[test]
fn udp_datagrams_come_back_intact_or_not_at_all() {
    require_root!();
    in_netns(|| {
        let corrupt = ["--corrupt", "0.2", "--drop", "0.05", "--duplicate", "0.05"];
        let mut h = Tunhost::serve(&args(&[TUN, &corrupt, &["--udp-echo", "7", "--seed", "3"]]));
        let back = udp_datagrams(300);
        // 300 out, each way a fifth corrupted and 5 % dropped, some duplicated.
        assert!((100..300).contains(&back), "{back} of 300 came back");
        let (_, udp_errors) = kernel_checksum_errors();
        assert!(udp_errors > 0, "no corrupted datagram reached the kernel");
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success(), "{status}");
    });
}

/// The packets of a trace in one direction, with the comments tshark shows, in order.
fn with_comments(file: &str, direction: Direction) -> Vec<(Packet, String)> {
    let packets = read_capture(file).packets;
    let comments = tshark_fields(file, "", &["frame.comment"]);
    assert_eq!(packets.len(), comments.len(), "{file}");
    packets
        .into_iter()
        .zip(comments)
        .filter(|(p, _)| p.direction == Some(direction))
        .map(|(p, c)| (p, c.join("")))
        .collect()
}

fn is_udp_or_icmp(p: &Packet) -> bool {
    matches!(p.data.get(9), Some(1 | 17))
}

#[test]
fn the_trace_shows_every_fault_and_replays_with_the_same_seed() {
    require_root!();
    let dir = Scratch::new("badlink-trace");
    let live = dir.path("live.pcapng");
    let link = ["--delay", "out:2", "--seed", "11"];
    in_netns(|| {
        let mut h = Tunhost::serve(&args(&[
            TUN,
            FAULTS,
            &link,
            &["--echo", "7", "--udp-echo", "7", "--pcap", &live],
        ]));
        udp_datagrams(200);
        assert_echoes((common::HOST, 7), 64 << 10, 5);
        let (status, _) = h.signal(Signal::SIGINT);
        assert!(status.success(), "{status}");
    });
    // Every kind of fault, in the comments tshark reads (frame.comment), both ways.
    let comments = tshark_fields(&live, "frame.comment", &["frame.comment"]).concat();
    for what in [
        "dropped",
        "corrupted at byte ",
        "duplicated",
        "reordered",
        "delayed ",
    ] {
        assert!(
            comments
                .iter()
                .any(|c| c.starts_with(what) || c.contains(&format!(", {what}"))),
            "no {what:?} in the trace's comments: {comments:?}"
        );
    }
    let inbound = with_comments(&live, Direction::Inbound);
    let outbound = with_comments(&live, Direction::Outbound);
    assert!(inbound.iter().any(|(_, c)| c == "dropped"));
    assert!(outbound.iter().any(|(_, c)| c == "dropped"));
    assert!(outbound.iter().any(|(_, c)| c.starts_with("delayed ")));

    // Replayed with the same faults and seed: the same output, byte for byte, every time.
    let fault_args = args(&[FAULTS, &link]);
    let replay = |out: &str| {
        let common = ["--addr", "192.0.2.2/24", "--echo", "7", "--udp-echo", "7"];
        replay_cli(&args(&[
            &[live.as_str()],
            &common,
            &fault_args,
            &["--pcap", out],
        ]))
    };
    let (a, b) = (dir.path("replay-a.pcapng"), dir.path("replay-b.pcapng"));
    replay(&a);
    replay(&b);
    let (ra, rb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(ra.len() > 10_000);
    assert!(ra == rb, "two replays with the same seed differ");
    // What the host sent by UDP and ICMP, and what the link did to it, is what it sent live.
    // (In order but for packets the live loop handled a little late: a delayed packet that
    // live went out a fraction of a millisecond after its time may come after the next one.)
    let replayed = with_comments(&a, Direction::Outbound);
    let pick = |v: &[(Packet, String)]| -> Vec<(Vec<u8>, String)> {
        let mut v: Vec<(Vec<u8>, String)> = v
            .iter()
            .filter(|(p, _)| is_udp_or_icmp(p))
            .map(|(p, c)| (p.data.clone(), c.clone()))
            .collect();
        v.sort();
        v
    };
    let (live_out, replay_out) = (pick(&outbound), pick(&replayed));
    assert!(live_out.len() > 100, "{}", live_out.len());
    assert_same(&live_out, &replay_out);
    // A different seed: other fates.
    let other = dir.path("replay-other.pcapng");
    let mut seeded = fault_args.clone();
    *seeded.last_mut().unwrap() = "12";
    let common = ["--addr", "192.0.2.2/24", "--echo", "7", "--udp-echo", "7"];
    replay_cli(&args(&[
        &[live.as_str()],
        &common,
        &seeded,
        &["--pcap", &other],
    ]));
    assert_ne!(pick(&with_comments(&other, Direction::Outbound)), live_out);
    let _ = tool(&["capinfos", &live]);
}

/// The same packets with the same comments; on a difference, where it starts.
fn assert_same(live: &[(Vec<u8>, String)], replayed: &[(Vec<u8>, String)]) {
    let first = live.iter().zip(replayed).position(|(a, b)| a != b);
    let show = |v: &[(Vec<u8>, String)], i: usize| -> Vec<String> {
        v.iter()
            .skip(i.saturating_sub(2))
            .take(5)
            .map(|(p, c)| format!("{} bytes, id {:02x?}: {c:?}", p.len(), &p[4..6]))
            .collect()
    };
    if let Some(i) =
        first.or((live.len() != replayed.len()).then_some(live.len().min(replayed.len())))
    {
        panic!(
            "live and replayed output differ at {i} of {}/{}:\nlive:     {:#?}\nreplayed: {:#?}",
            live.len(),
            replayed.len(),
            show(live, i),
            show(replayed, i)
        );
    }
}

/// `tunhost ping` through a lossy link: the same requests lost for the same seed.
fn lossy_ping(seed: &str) -> String {
    let out = common::run(&args(&[
        &[common::TUNHOST, "ping"],
        TUN,
        &[
            "--drop",
            "out:0.3",
            "--seed",
            seed,
            "-c",
            "20",
            "-i",
            "0.01",
            "-W",
            "1",
            "192.0.2.1",
        ],
    ]));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The replies that came, by sequence number: which ones were lost is the seed's choice.
    text.lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|r| r.split(' ').next())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn ping_on_a_lossy_link_loses_the_same_requests_for_the_same_seed() {
    require_root!();
    let (a, b, c) = in_netns(|| (lossy_ping("5"), lossy_ping("5"), lossy_ping("6")));
    let got = a.split(',').count();
    assert!(
        (5..20).contains(&got),
        "{got} of 20 replies at 30 % loss: {a}"
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bad_fault_flags_are_refused_in_one_line() {
    for (flag, value) in [
        ("--drop", "1.5"),
        ("--delay", "ten"),
        ("--rate", "0"),
        ("--corrupt", "sideways:0.1"),
    ] {
        let (code, err) = common::tunhost(&["serve", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(value), "{err}");
    }
    let (code, err) = common::tunhost(&["serve", "--congestion", "vegas"]);
    assert_eq!(code, 2, "{err}");
}
