//! `tunhost ping` and `tunhost get` against the real kernel, on a TUN device that the kernel side
//! created and configured itself (`ip tuntap add`, `ip addr add`), in a namespace of its own.

mod common;
mod tools;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Guard, TUNHOST, in_netns, kernel_device, pattern, run, spawn};
use nix::sys::socket::{setsockopt, sockopt};
use tools::{Scratch, tshark_fields};

/// `tunhost CMD` on tun9 (host 198.51.100.2/24), then `more`.
fn tun9<'a>(cmd: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    [&[cmd, "--tun", "tun9", "--addr", "198.51.100.2/24"], more].concat()
}

/// Create tun9 with kernel side 198.51.100.1/24, as a user would with ip(8).
fn kernel_side_device() {
    kernel_device("tun9", "tun", "198.51.100.1/24");
}

/// Run `argv` to completion, 60 s at most.
fn timed(argv: &[&str]) -> Output {
    run(&[&["timeout", "60"], argv].concat())
}

/// `tunhost ARGS`: exit code, stdout, stderr.
fn tunhost(args: &[&str]) -> (i32, String, String) {
    let out = timed(&[&[TUNHOST], args].concat());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tunhost ARGS`, which must succeed: its stdout.
fn tunhost_ok(args: &[&str]) -> String {
    let (code, out, err) = tunhost(args);
    assert_eq!(code, 0, "tunhost {args:?}: {out}{err}");
    out
}

/// `tunhost ARGS`, which must exit with `code`: its stderr.
fn tunhost_fails(args: &[&str], code: i32) -> String {
    let (got, _, err) = tunhost(args);
    assert_eq!(got, code, "tunhost {args:?}: {err}");
    err
}

/// The stdout of `argv` (a GET: the body), which must succeed.
fn fetched(argv: &[&str]) -> Vec<u8> {
    let out = timed(argv);
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A scratch directory for `test` holding one file, `name`, of `data`: a web root.
fn web_root_with(test: &str, name: &str, data: &[u8]) -> Scratch {
    let dir = Scratch::new(test);
    std::fs::write(dir.0.join(name), data).unwrap();
    dir
}

/// A kernel-side `python3 -m http.server` serving `dir` on 198.51.100.1:8000, killed on drop.
fn py_server(dir: &Path) -> Guard {
    let d = dir.to_str().unwrap();
    let argv = [
        "python3",
        "-m",
        "http.server",
        "--bind",
        "198.51.100.1",
        "--directory",
        d,
        "8000",
    ];
    let s = Guard(spawn(&argv, Stdio::null(), Stdio::null()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("198.51.100.1", 8000)).is_err() {
        assert!(
            Instant::now() < deadline,
            "python3 http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// Run `f` in a namespace of its own, where the kernel side has tun9 and serves `dir` over HTTP
/// (see [`py_server`]).
fn with_kernel_server(dir: &Scratch, f: impl FnOnce() + Send) {
    in_netns(|| {
        kernel_side_device();
        let _py = py_server(&dir.0);
        f();
    });
}

#[test]
fn ping_three_replies_from_the_kernel_side() {
    require_root!();
    in_netns(|| {
        kernel_side_device();
        let out = tunhost_ok(&tun9("ping", &["-c", "3", "-i", "0.2", "198.51.100.1"]));
        assert_eq!(
            out.matches("bytes from 198.51.100.1: icmp_seq=").count(),
            3,
            "{out}"
        );
        assert!(
            out.contains("3 packets transmitted, 3 received, 0% packet loss"),
            "{out}"
        );
        assert!(out.contains("rtt min/avg/max/mdev = "), "{out}");

        // Nobody there: no reply, exit 1.
        let (code, out, _) = tunhost(&tun9("ping", &["-c", "1", "-W", "0.5", "198.51.100.77"]));
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("1 packets transmitted, 0 received, 100% packet loss"),
            "{out}"
        );
    });
}

#[test]
fn get_500_kb_from_a_kernel_server_byte_exact() {
    require_root!();
    let data = pattern(500 * 1024, 7);
    let dir = web_root_with("client-get", "f.bin", &data);
    with_kernel_server(&dir, || {
        let o = dir.path("got.bin");
        tunhost_ok(&tun9("get", &["-o", &o, "http://198.51.100.1:8000/f.bin"]));
        let got = std::fs::read(&o).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "body differs");

        // To stdout, with -v: headers on stderr, body on stdout.
        let args = tun9("get", &["-v", "http://198.51.100.1:8000/f.bin"]);
        let out = timed(&[&[TUNHOST], &args[..]].concat());
        assert!(out.status.success());
        assert!(out.stdout == data, "stdout body differs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("< HTTP/1.0 200 OK"), "{err}");

        // A 404 is a failure with one clear line, and no output file: the one opened at the
        // start is removed again (by the user the host runs as, nobody, who may write there).
        let out_dir = dir.path("out");
        std::fs::create_dir(&out_dir).unwrap();
        nix::unistd::chown(
            Path::new(&out_dir),
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .unwrap();
        let m = format!("{out_dir}/missing.out");
        let err = tunhost_fails(
            &tun9("get", &["-o", &m, "http://198.51.100.1:8000/nope"]),
            1,
        );
        assert!(
            err.contains("http://198.51.100.1:8000/nope") && err.contains("404"),
            "{err}"
        );
        assert!(!Path::new(&m).exists());

        // Nothing listening: refused, non-zero, one line naming the URL.
        let err = tunhost_fails(&tun9("get", &["http://198.51.100.1:8001/"]), 1);
        assert!(
            err.contains("http://198.51.100.1:8001/: connection refused"),
            "{err}"
        );
    });
}

#[test]
fn http_get_example_fetches_from_a_kernel_server() {
    require_root!();
    let bin = common::example("http_get");
    let data = pattern(100_000, 9);
    let dir = web_root_with("client-get-example", "g.bin", &data);
    with_kernel_server(&dir, || {
        let body = fetched(&[&bin, "http://198.51.100.1:8000/g.bin"]);
        assert!(body == data, "http_get example: body differs");
    });
}

/// `tunhost ping -c 2 -i 0.1 TARGET` on device `dev` (`kind`: `--tun` or `--tap`) with host
/// address `addr`, which must succeed: its stdout.
fn ping_twice(kind: &str, dev: &str, addr: &str, target: &str) -> String {
    tunhost_ok(&[
        "ping", kind, dev, "--addr", addr, "-c", "2", "-i", "0.1", target,
    ])
}

#[test]
fn ping_over_tap_and_ipv6() {
    require_root!();
    in_netns(|| {
        // TAP: the host resolves the kernel side's MAC by ARP before the first request goes out.
        kernel_device("tap9", "tap", "198.51.100.1/24");
        let out = ping_twice("--tap", "tap9", "198.51.100.2/24", "198.51.100.1");
        assert!(out.contains("2 packets transmitted, 2 received"), "{out}");

        // IPv6 on a TUN device.
        kernel_device("tun9", "tun", "2001:db8:9::1/64");
        let out = ping_twice("--tun", "tun9", "2001:db8:9::2/64", "2001:db8:9::1");
        assert!(
            out.contains("bytes from 2001:db8:9::1: icmp_seq=2"),
            "{out}"
        );
    });
}

#[test]
fn get_from_tunhost_serve_through_the_kernel_router() {
    require_root!();
    let data = pattern(3_000_000, 11);
    let dir = web_root_with("client-get-routed", "big.bin", &data);
    in_netns(|| {
        // Two userspace hosts on two TUN devices; the kernel forwards between their subnets.
        // This thread's namespace's /proc/sys/net: the host's forwarding setting is not touched.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable forwarding");
        let root = dir.0.to_str().unwrap();
        let _server =
            common::Tunhost::serve(&[common::TUN_ARGS, &["--http", "80", "--root", root]].concat());
        let body = fetched(&[
            TUNHOST,
            "get",
            "--tun",
            "tun1",
            "--addr",
            "198.51.100.2/24",
            "--peer",
            "198.51.100.1/24",
            "--gateway",
            "198.51.100.1",
            "http://192.0.2.2/big.bin",
        ]);
        assert!(body == data, "routed get: body differs");
    });
}

#[test]
fn ping_and_get_trace_every_packet_with_pcap() {
    require_root!();
    let dir = web_root_with("client-pcap", "f.txt", b"traced body\n");
    let (ping_trace, get_trace) = (dir.path("ping.pcapng"), dir.path("get.pcap"));
    with_kernel_server(&dir, || {
        let more = [
            "-c",
            "2",
            "-i",
            "0.1",
            "--pcap",
            &ping_trace,
            "198.51.100.1",
        ];
        tunhost_ok(&tun9("ping", &more));
        let icmp = tshark_fields(&ping_trace, "icmp", &["icmp.type", "ip.src", "ip.dst"]);
        let count = |t: &str, src: &str| icmp.iter().filter(|f| f[0] == t && f[1] == src).count();
        assert_eq!(count("8", "198.51.100.2"), 2, "echo requests in {icmp:?}");
        assert_eq!(count("0", "198.51.100.1"), 2, "echo replies in {icmp:?}");

        let more = ["--pcap", &get_trace, "--pcap-format", "pcap"];
        let out = tunhost_ok(&tun9(
            "get",
            &[&more[..], &["http://198.51.100.1:8000/f.txt"]].concat(),
        ));
        assert_eq!(out, "traced body\n");
        let uris = tshark_fields(&get_trace, "http.request", &["http.request.uri"]);
        assert_eq!(
            uris,
            vec![vec!["/f.txt".to_string()]],
            "requests in the trace"
        );
        let codes = tshark_fields(&get_trace, "http.response", &["http.response.code"]);
        assert_eq!(
            codes,
            vec![vec!["200".to_string()]],
            "responses in the trace"
        );

        // stdout carries ping's lines and get's body: a trace there would mix with them.
        let err = tunhost_fails(
            &tun9("ping", &["-c", "1", "--pcap", "-", "198.51.100.1"]),
            2,
        );
        assert!(err.contains("--pcap -"), "{err}");
    });
}

/// The kernel-side server of [`get_a_256_mib_chunked_body_in_bounded_memory`]: on the first
/// connection to `listener` (30 s at most to come), after the request, a response whose chunked
/// body is `blocks` MiB of 1,024-byte chunks (`3f9\r\n`, 1,017 bytes, `\r\n`), sent so that every
/// segment ends one byte into a chunk-size line: with segments of 1,024 bytes (`TCP_MAXSEG` on
/// the listener), a head of 1,023 bytes and writes of whole KiB. Returns the bytes written.
fn serve_misaligned_chunks(listener: &TcpListener, blocks: usize) -> std::io::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    listener.set_nonblocking(true)?;
    let mut s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    };
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        let mut b = [0; 1];
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        request.push(b[0]);
    }
    let mut head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Pad: ".to_vec();
    head.resize(1023 - 4, b'p');
    head.extend_from_slice(b"\r\n\r\n");
    let mut period = b"3f9\r\n".to_vec();
    period.extend((0..1017).map(|i| b'a' + (i % 26) as u8));
    period.extend_from_slice(b"\r\n");
    assert_eq!((head.len(), period.len()), (1023, 1024));
    let rotated = [&period[1..], &period[..1]].concat();
    let block = rotated.repeat(1024);
    let mut written = 0;
    let mut write = |b: &[u8]| s.write_all(b).map(|()| written += b.len());
    write(&[&head[..], &period[..1]].concat())?;
    for _ in 0..blocks {
        write(&block)?;
    }
    write(&[&period[1..], b"0\r\n\r\n"].concat())?;
    Ok(written)
}

/// VmRSS of process `pid` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn get_a_256_mib_chunked_body_in_bounded_memory() {
    require_root!();
    in_netns(|| {
        kernel_side_device();
        let listener = TcpListener::bind("198.51.100.1:8000").expect("bind on the kernel side");
        setsockopt(&listener, sockopt::TcpMaxSeg, &1024).expect("TCP_MAXSEG");
        std::thread::scope(|scope| {
            let server = scope.spawn(|| serve_misaligned_chunks(&listener, 256));
            let args = tun9("get", &["-o", "/dev/null", "http://198.51.100.1:8000/big"]);
            let argv = [&[TUNHOST], &args[..]].concat();
            let mut get = Guard(spawn(&argv, Stdio::null(), Stdio::piped()));
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut peak = 0;
            let status = loop {
                if let Some(status) = get.0.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "tunhost get still running after 180 s"
                );
                peak = peak.max(rss_kib(get.0.id()));
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut err = String::new();
            let _ = get.0.stderr.take().unwrap().read_to_string(&mut err);
            assert!(status.success(), "tunhost get: {status}: {err}");
            let sent = server.join().unwrap().expect("the kernel-side server");
            assert!(sent > 256 << 20, "{sent} bytes sent");
            assert!(
                peak < 64 << 10,
                "tunhost get's VmRSS reached {peak} KiB for a 256 MiB body"
            );
            assert!(peak > 0, "VmRSS never read");
        });
    });
}
