//! Captures from the wild (issue 17): what tshark reads, `tunhost replay` replays. Each test
//! builds a small synthetic capture of the kind found in tcpdump's and libpcap's test suites,
//! checks that tshark reads it, and runs the `tunhost replay` binary on it: exit code, summary,
//! warnings, and the output trace read back with tshark. Replay needs no device and no
//! privileges: nothing here touches a network.

mod common;
mod tools;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TUNHOST, run, spawn, tunhost};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tools::{Scratch, captures_dir, icmp_echo_reply, l3, read_capture, tool, tshark_fields};
use tunhost::Config;
use tunhost::fuzzing::capture_files::{self as files, pcap_record, pcapng_option as option};
use tunhost::replay::{ReplayConfig, replay as replay_capture};
use tunhost::services::{ServiceSpec, ServicesConfig};

const HOST: [u8; 4] = [192, 0, 2, 2];
const PEER: [u8; 4] = [192, 0, 2, 1];
const OTHER: [u8; 4] = [198, 51, 100, 7];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// The RFC 1071 checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 ICMP echo request from `src` to `dst` with `payload` bytes of data.
fn ping(src: [u8; 4], dst: [u8; 4], seq: u16, payload: usize) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend(seq.to_be_bytes());
    icmp.extend((0..payload).map(|i| i as u8));
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let len = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend(len.to_be_bytes());
    ip.extend([0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend(src);
    ip.extend(dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend(icmp);
    ip
}

/// An Ethernet II frame.
fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

/// A broadcast ARP request from the peer for `target`.
fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend(PEER_MAC);
    arp.extend(PEER);
    arp.extend([0; 6]);
    arp.extend(target);
    ethernet([0xff; 6], PEER_MAC, 0x0806, &arp)
}

/// A classic pcap file of `linktype` with one record per packet, a second apart.
fn pcap(linktype: u32, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut f = files::pcap_header(linktype);
    for (i, p) in packets.iter().enumerate() {
        pcap_record(&mut f, 1_700_000_000 + i as u32, 0, p);
    }
    f
}

/// A pcapng file: one section, one interface of `linktype`, one Enhanced Packet Block per
/// packet. Every option list ends without `opt_endofopt` when `no_end` is set.
fn pcapng(linktype: u16, packets: &[Vec<u8>], no_end: bool) -> Vec<u8> {
    let end = if no_end { vec![] } else { option(0, &[]) };
    let mut f = files::pcapng_shb(&[option(4, b"a writer from the wild"), end.clone()].concat());
    let idb = [option(2, b"eth0"), option(9, &[6]), end.clone()].concat();
    f.extend(files::pcapng_idb(linktype, &idb));
    for (i, p) in packets.iter().enumerate() {
        let micros = (1_700_000_000 + i as u64) * 1_000_000;
        let options = [option(1, b"a comment"), end.clone()].concat();
        f.extend(files::pcapng_epb(0, micros, p, &options));
    }
    f
}

/// How many packets tshark reads in `file` (it must read the file: exit 0).
fn tshark_count(file: &str) -> usize {
    tool(&[
        "tshark",
        "-n",
        "-r",
        file,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .lines()
    .count()
}

/// `tunhost replay FILE ARGS`: exit code, stdout, stderr.
fn replay(file: &str, args: &[&str]) -> (i32, String, String) {
    let out = run(&[&[TUNHOST, "replay", file], args].concat());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let code = out.status.code().unwrap_or(-1);
    (code, text(&out.stdout), text(&out.stderr))
}

/// Replay `bytes` (written to `name` in `dir`) through 192.0.2.2/24 with echo, with a trace;
/// it must succeed. Its summary, warnings, and the ICMP echo replies of the trace (tshark).
fn replayed(dir: &Scratch, name: &str, bytes: &[u8], more: &[&str]) -> (String, String, usize) {
    let file = dir.path(name);
    std::fs::write(&file, bytes).unwrap();
    let out = dir.path(&format!("{name}.out.pcapng"));
    let mut args = vec!["--addr", "192.0.2.2/24", "--echo", "7", "--pcap", &out];
    args.extend(more);
    let (code, stdout, stderr) = replay(&file, &args);
    assert_eq!(code, 0, "{name}: {stderr}");
    let replies = tshark_fields(&out, "icmp.type == 0", &["ip.src"]);
    assert!(replies.iter().all(|r| r[0] == "192.0.2.2"), "{replies:?}");
    (stdout, stderr, replies.len())
}

fn pings(n: u16) -> Vec<Vec<u8>> {
    (1..=n).map(|i| ping(PEER, HOST, i, 16)).collect()
}

#[test]
fn classic_link_types_with_upper_bits_set_replay() {
    let dir = Scratch::new("wild-linktype-bits");
    // FCS-length and reserved bits over Ethernet (1) and Raw IP (101), as libpcap's tests have.
    for linktype in [0x3000_0001u32, 0x4000_0001, 0x0400_0001, 0x3000_0065] {
        let packets: Vec<Vec<u8>> = if linktype & 0xffff == 1 {
            let mut v = vec![arp_request(HOST)];
            v.extend(
                pings(2)
                    .iter()
                    .map(|p| ethernet(HOST_MAC, PEER_MAC, 0x0800, p)),
            );
            v
        } else {
            pings(2)
        };
        let name = format!("lt-{linktype:08x}.pcap");
        let bytes = pcap(linktype, &packets);
        let file = dir.path(&name);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(tshark_count(&file), packets.len(), "{name}");
        let (summary, _, replies) = replayed(&dir, &name, &bytes, &[]);
        assert!(
            summary.contains(&format!("{} packets read", packets.len())),
            "{name}: {summary}"
        );
        assert_eq!(replies, 2, "{name}: {summary}");
    }
}

#[test]
fn pcapng_options_without_opt_endofopt_replay() {
    let dir = Scratch::new("wild-endofopt");
    let bytes = pcapng(101, &pings(3), true);
    let file = dir.path("no-end.pcapng");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(tshark_count(&file), 3);
    let (summary, stderr, replies) = replayed(&dir, "no-end.pcapng", &bytes, &[]);
    assert_eq!(replies, 3, "{summary}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_fraction_of_a_second_or_more_is_read_as_tshark_reads_it() {
    let dir = Scratch::new("wild-subsecond");
    let mut bytes = pcap(101, &[]);
    for (i, p) in pings(3).iter().enumerate() {
        // 1.5 s, 2 s, 1 s in the microseconds field.
        let micros = [1_500_000, 2_000_000, 1_000_000][i];
        pcap_record(&mut bytes, 1_700_000_000 + 3 * i as u32, micros, p);
    }
    let file = dir.path("subsecond.pcap");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(tshark_count(&file), 3);
    let (summary, _, replies) = replayed(&dir, "subsecond.pcap", &bytes, &[]);
    assert_eq!(replies, 3, "{summary}");
}

#[test]
fn a_capture_cut_short_replays_up_to_the_cut_with_a_warning() {
    let dir = Scratch::new("wild-cut");
    for (name, full) in [
        ("cut.pcap", pcap(101, &pings(4))),
        ("cut.pcapng", pcapng(101, &pings(4), false)),
    ] {
        // The writer died inside the last record.
        let bytes = &full[..full.len() - 7];
        let (summary, stderr, replies) = replayed(&dir, name, bytes, &[]);
        assert!(summary.contains("3 packets read"), "{name}: {summary}");
        assert_eq!(replies, 3, "{name}: {summary}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains("warning"), "{name}: {stderr}");
        assert!(stderr.contains("truncated"), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[test]
fn malformed_records_are_skipped_and_counted() {
    let dir = Scratch::new("wild-malformed");
    let mut bytes = pcapng(101, &pings(3), false);
    // The second packet's block says interface 5, which the file never declares.
    let shb_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let idb_len = u32::from_le_bytes(bytes[shb_len + 4..shb_len + 8].try_into().unwrap()) as usize;
    let first = shb_len + idb_len;
    let epb_len = u32::from_le_bytes(bytes[first + 4..first + 8].try_into().unwrap()) as usize;
    let second = first + epb_len;
    bytes[second + 8..second + 12].copy_from_slice(&5u32.to_le_bytes());
    let (summary, stderr, replies) = replayed(&dir, "bad-iface.pcapng", &bytes, &[]);
    assert!(summary.contains("2 packets read"), "{summary}");
    assert_eq!(replies, 2, "{summary}");
    assert!(stderr.contains("1 malformed records skipped"), "{stderr}");
    assert!(stderr.contains("interface 5"), "{stderr}");
}

#[test]
fn loopback_ppp_hdlc_and_slip_captures_replay() {
    let dir = Scratch::new("wild-links");
    let wrap = |header: &[u8]| -> Vec<Vec<u8>> {
        pings(2)
            .into_iter()
            .map(|p| [header, &p].concat())
            .collect()
    };
    let cases = [
        // DLT_NULL: AF_INET in the writer's byte order (little- and big-endian machines).
        ("null-le.pcap", 0, wrap(&2u32.to_le_bytes())),
        ("null-be.pcap", 0, wrap(&2u32.to_be_bytes())),
        // DLT_LOOP: network byte order.
        ("loop.pcap", 108, wrap(&2u32.to_be_bytes())),
        // PPP with address and control, and without; PPP in HDLC framing.
        ("ppp.pcap", 9, wrap(&[0xff, 0x03, 0x00, 0x21])),
        ("ppp-acfc.pcap", 9, wrap(&[0x00, 0x21])),
        ("ppp-hdlc.pcap", 50, wrap(&[0xff, 0x03, 0x00, 0x21])),
        // Cisco HDLC: unicast address, control, ethertype IPv4; SLIP: its 16-byte header.
        ("c-hdlc.pcap", 104, wrap(&[0x0f, 0x00, 0x08, 0x00])),
        ("slip.pcap", 8, wrap(&[0; 16])),
    ];
    for (name, linktype, packets) in cases {
        let bytes = pcap(linktype, &packets);
        let file = dir.path(name);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(tshark_count(&file), 2, "{name}");
        let (summary, _, replies) = replayed(&dir, name, &bytes, &[]);
        assert!(
            summary.contains("IP host 192.0.2.2/24"),
            "{name}: {summary}"
        );
        assert_eq!(replies, 2, "{name}: {summary}");
    }
    // Other link types are named by their real name.
    let file = dir.path("wifi.pcap");
    std::fs::write(&file, pcap(105, &[])).unwrap();
    let (code, err) = tunhost(&["replay", &file, "--addr", "192.0.2.2/24"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("LINKTYPE_IEEE802_11"), "{err}");
    assert!(!err.contains("Unknown"), "{err}");
}

#[test]
fn an_ethernet_capture_with_no_mac_to_learn_replays_with_one_of_its_own() {
    let dir = Scratch::new("wild-own-mac");
    // Pings to the host's address, but in frames to another MAC (a multicast one included),
    // and a broadcast ARP request for it: no unicast frame from or to the host to learn from.
    let mut packets = vec![arp_request(HOST)];
    packets.push(ethernet(
        [0x01, 0, 0x5e, 0, 0, 1],
        PEER_MAC,
        0x0800,
        &ping(PEER, HOST, 1, 8),
    ));
    // A frame "from" the host's address with a multicast source MAC: not a MAC to learn.
    packets.push(ethernet(
        PEER_MAC,
        [0x33, 0x33, 0, 0, 0, 1],
        0x0800,
        &ping(HOST, PEER, 2, 8),
    ));
    let bytes = pcap(1, &packets);
    let (summary, _, _) = replayed(&dir, "no-mac.pcap", &bytes, &[]);
    assert!(summary.contains("its own"), "{summary}");
    assert!(!summary.contains("33:33"), "{summary}");
    // The ARP request still reaches the host, which answers it.
    let out = dir.path("no-mac.pcap.out.pcapng");
    let replies = tshark_fields(&out, "arp.opcode == 2", &["arp.src.proto_ipv4"]);
    assert_eq!(replies, vec![vec!["192.0.2.2".to_string()]], "{summary}");
    // A unicast frame to the host's address gives its MAC.
    let mut packets = packets.clone();
    packets.push(ethernet(
        HOST_MAC,
        PEER_MAC,
        0x0800,
        &ping(PEER, HOST, 3, 8),
    ));
    let (summary, _, replies) = replayed(&dir, "mac.pcap", &pcap(1, &packets), &[]);
    assert!(
        summary.contains("MAC 02:00:00:00:00:02, learned from the capture"),
        "{summary}"
    );
    assert!(replies >= 1, "{summary}");
}

#[test]
fn vlan_tagged_frames_are_replayed() {
    let dir = Scratch::new("wild-vlan");
    // The peer's ARP request (so that the host knows its MAC), then tagged pings.
    let mut packets = vec![arp_request(HOST)];
    packets.extend(pings(2).iter().map(|p| {
        // 802.1Q tag, VLAN 10, then IPv4.
        let mut tagged = vec![0x00, 0x0a, 0x08, 0x00];
        tagged.extend(p);
        ethernet(HOST_MAC, PEER_MAC, 0x8100, &tagged)
    }));
    let (summary, _, replies) = replayed(&dir, "vlan.pcap", &pcap(1, &packets), &[]);
    assert!(summary.contains("learned from the capture"), "{summary}");
    assert_eq!(replies, 2, "{summary}");
}

#[test]
fn no_packet_for_the_address_lists_the_captures_destinations() {
    let dir = Scratch::new("wild-destinations");
    let mut packets: Vec<Vec<u8>> = (0..3).map(|i| ping(PEER, OTHER, i, 8)).collect();
    packets.push(ping(PEER, [198, 51, 100, 9], 9, 8));
    let (summary, _, replies) = replayed(&dir, "elsewhere.pcap", &pcap(101, &packets), &[]);
    assert_eq!(replies, 0);
    assert!(
        summary.contains("most frequent destinations: 198.51.100.7 (3), 198.51.100.9 (1)"),
        "{summary}"
    );
}

/// The files of `dir` whose names start with `.` (staged traces left behind).
fn hidden(dir: &Scratch) -> Vec<String> {
    std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn a_refused_replay_leaves_an_existing_output_file_alone() {
    let dir = Scratch::new("wild-keep-output");
    let input = dir.path("in.pcap");
    std::fs::write(&input, pcap(101, &pings(2))).unwrap();
    let out = dir.path("out.pcapng");
    std::fs::write(&out, b"yesterday's trace").unwrap();
    // Refused after the output is opened: a MAC for a capture of IP packets.
    let args = ["--addr", "192.0.2.2/24", "--mac", "02:00:00:00:00:02"];
    let (code, _, stderr) = replay(&input, &[&args[..], &["--pcap", &out]].concat());
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"yesterday's trace");
    assert_eq!(hidden(&dir), Vec::<String>::new());
    // A replay that succeeds replaces it whole.
    let (code, _, stderr) = replay(&input, &["--addr", "192.0.2.2/24", "--pcap", &out]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tshark_count(&out), 4);
    assert_eq!(hidden(&dir), Vec::<String>::new());
    // Through a symbolic link: the file it points to is replaced, the link stays a link.
    let link = dir.path("link.pcapng");
    std::os::unix::fs::symlink(&out, &link).unwrap();
    std::fs::write(&out, b"yesterday's trace").unwrap();
    let (code, _, stderr) = replay(&input, &["--addr", "192.0.2.2/24", "--pcap", &link]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(tshark_count(&out), 4);
}

/// Removes a (large) file when dropped, even if the test fails.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A Raw IP capture of about `size` bytes, written quickly in large chunks: records of 64 KiB
/// IP packets to another host, and every 1024th a ping to the host. How many pings.
fn big_capture(path: &Path, size: u64) -> u64 {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path).unwrap());
    f.write_all(&pcap(101, &[])).unwrap();
    let mut filler = ping(PEER, OTHER, 0, 65_000);
    filler.truncate(65_028);
    let mut chunk = Vec::new();
    for _ in 0..1023 {
        pcap_record(&mut chunk, 1_700_000_000, 0, &filler);
    }
    let mut written = 24;
    let mut pings = 0;
    while written < size {
        pings += 1;
        let mut one = Vec::new();
        pcap_record(
            &mut one,
            1_700_000_000 + pings as u32,
            0,
            &ping(PEER, HOST, pings as u16, 8),
        );
        f.write_all(&one).unwrap();
        f.write_all(&chunk).unwrap();
        written += (one.len() + chunk.len()) as u64;
    }
    f.flush().unwrap();
    pings
}

/// Replay a generated capture of `size` bytes with `--pcap` over an existing file: killed or
/// interrupted while it runs, the existing file stays (and an interrupted one removes its staged
/// file); run to the end, its peak RSS stays under 64 MiB.
fn replays_in_constant_memory(test: &str, size: u64) {
    let dir = Scratch::new(test);
    let input = dir.path("big.pcap");
    let _remove = RemoveOnDrop(input.clone().into());
    let start = Instant::now();
    let pings = big_capture(Path::new(&input), size);
    eprintln!("{test}: wrote {size} bytes in {:?}", start.elapsed());
    let out = dir.path("out.pcapng");
    std::fs::write(&out, b"yesterday's trace").unwrap();
    let args = ["replay", &input, "--addr", "192.0.2.2/24", "--pcap", &out];
    let run = || {
        spawn(
            &[&[TUNHOST][..], &args].concat(),
            Stdio::null(),
            Stdio::null(),
        )
    };
    // Killed while it runs: the existing file is untouched, whatever it had written.
    let mut child = run();
    let staged = dir
        .0
        .join(format!(".out.pcapng.tunhost-{}.partial", child.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !staged.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"yesterday's trace");
    let _ = std::fs::remove_file(&staged);
    // Interrupted: it dies of the signal as before, and takes its staged file with it.
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let mut child = run();
        let staged = dir
            .0
            .join(format!(".out.pcapng.tunhost-{}.partial", child.id()));
        while !staged.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(staged.exists(), "the replay stages its trace");
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig as i32), "{sig}: {status}");
        assert!(!staged.exists(), "{sig}: the staged trace is removed");
        assert_eq!(std::fs::read(&out).unwrap(), b"yesterday's trace");
    }
    // Run to the end, reading its peak RSS (VmHWM) until it exits: the RSS of the replay
    // itself (a `wait4` rusage would also count the test process's pages before the exec).
    let start = Instant::now();
    let mut child = run();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        let hwm = std::fs::read_to_string(&status_file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:").map(str::to_string))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the replay ends"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    assert!(status.success(), "{status}");
    assert!(peak_kib > 0, "VmHWM was read");
    let peak_mib = peak_kib / 1024;
    eprintln!("{test}: replayed in {took:?}, peak RSS {peak_mib} MiB");
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB");
    // The trace holds each ping fed in and its reply.
    assert_eq!(tshark_count(&out), 2 * pings as usize);
}

/// The size of issue 17: on a 2-CPU machine about 4 s to write and 1 s to replay (debug build).
#[test]
fn a_2_gib_capture_replays_in_constant_memory() {
    replays_in_constant_memory("wild-2gib", 2 << 30);
}

/// The captures of captures/ derived from ping-tcpdump.pcap (`cargo xtask derive-captures`):
/// tshark dissects their link layer, and their replay gives the echo replies the live host sent.
#[test]
fn loopback_and_ppp_captures_of_captures_replay_to_the_live_replies() {
    let dir = captures_dir();
    let live: Vec<Vec<u8>> = read_capture(&dir.join("ping-tcpdump.pcap").to_string_lossy())
        .packets
        .iter()
        .filter_map(|p| icmp_echo_reply(l3(p)).map(<[u8]>::to_vec))
        .collect();
    assert_eq!(live.len(), 3);
    for (name, protocols) in [
        ("ping-null.pcap", "null:ip:icmp"),
        ("ping-loop.pcap", "null:ip:icmp"),
        ("ping-ppp.pcapng", "ppp:ip:icmp"),
    ] {
        let path = dir.join(name).to_string_lossy().into_owned();
        let dissected = tshark_fields(&path, "", &["frame.protocols"]);
        assert_eq!(dissected.len(), 6, "{name}");
        assert!(
            dissected.iter().all(|p| p[0].starts_with(protocols)),
            "{name}: {dissected:?}"
        );
        let cap = read_capture(&path);
        let host = Config {
            addrs: vec!["192.0.2.2/24".parse().unwrap()],
            ..Config::default()
        };
        let services = ServicesConfig {
            services: vec![ServiceSpec::Echo(7)],
            ..ServicesConfig::default()
        };
        let config = ReplayConfig {
            keep_output: true,
            ..ReplayConfig::new(host, services)
        };
        let r = replay_capture::<Vec<u8>>(&cap, &config, None).expect("replay");
        let replies: Vec<Vec<u8>> = r
            .output
            .iter()
            .filter_map(|(_, p)| icmp_echo_reply(p).map(<[u8]>::to_vec))
            .collect();
        assert_eq!(replies, live, "{name}: {}", r.summary);
    }
}
