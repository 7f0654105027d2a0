//! `tunhost ping` and `tunhost get` against the real kernel, on a TUN device that the kernel side
//! created and configured itself (`ip tuntap add`, `ip addr add`), in a namespace of its own.

mod common;
mod tools;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TUNHOST, in_netns, pattern, run, sh};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const DEV: &[&str] = &["--tun", "tun9", "--addr", "198.51.100.2/24"];

/// Create tun9 with kernel side 198.51.100.1/24, as a user would with ip(8).
fn kernel_side_device() {
    sh(&["ip", "tuntap", "add", "dev", "tun9", "mode", "tun"]);
    sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", "tun9"]);
    sh(&["ip", "link", "set", "tun9", "up"]);
}

fn tunhost(args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["timeout", "60", TUNHOST];
    argv.extend_from_slice(args);
    let out = run(&argv);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ping_three_replies_from_the_kernel_side() {
    require_root!();
    in_netns(|| {
        kernel_side_device();
        let mut args = vec!["ping"];
        args.extend_from_slice(DEV);
        args.extend_from_slice(&["-c", "3", "-i", "0.2", "198.51.100.1"]);
        let (code, out, err) = tunhost(&args);
        assert_eq!(code, 0, "{out}{err}");
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
        let mut args = vec!["ping"];
        args.extend_from_slice(DEV);
        args.extend_from_slice(&["-c", "1", "-W", "0.5", "198.51.100.77"]);
        let (code, out, _) = tunhost(&args);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("1 packets transmitted, 0 received, 100% packet loss"),
            "{out}"
        );
    });
}

/// A kernel-side `python3 -m http.server`, killed (by PID) on drop.
struct PyServer(Child);

impl PyServer {
    fn start(dir: &std::path::Path) -> PyServer {
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "198.51.100.1", "8000"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run python3 -m http.server (is python3 installed?)");
        let s = PyServer(child);
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
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn get_500_kb_from_a_kernel_server_byte_exact() {
    require_root!();
    let dir = std::env::temp_dir().join(format!("tunhost-get-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = pattern(500 * 1024, 7);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let d = dir.clone();
    in_netns(move || {
        kernel_side_device();
        let _py = PyServer::start(&d);
        let out_file = d.join("got.bin");
        let mut args = vec!["get"];
        args.extend_from_slice(DEV);
        let o = out_file.to_str().unwrap().to_string();
        args.extend_from_slice(&["-o", &o, "http://198.51.100.1:8000/f.bin"]);
        let (code, out, err) = tunhost(&args);
        assert_eq!(code, 0, "{out}{err}");
        let got = std::fs::read(&out_file).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "body differs");

        // To stdout, with -v: headers on stderr, body on stdout.
        let mut args = vec!["get", "-v"];
        args.extend_from_slice(DEV);
        args.push("http://198.51.100.1:8000/f.bin");
        let out = run(&args_with_timeout(&args));
        assert!(out.status.success());
        assert!(out.stdout == data, "stdout body differs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("< HTTP/1.0 200 OK"), "{err}");

        // A 404 is a failure with one clear line, and no output file.
        let missing = d.join("missing.out");
        let m = missing.to_str().unwrap().to_string();
        let mut args = vec!["get"];
        args.extend_from_slice(DEV);
        args.extend_from_slice(&["-o", &m, "http://198.51.100.1:8000/nope"]);
        let (code, _, err) = tunhost(&args);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("http://198.51.100.1:8000/nope") && err.contains("404"),
            "{err}"
        );
        assert!(!missing.exists());

        // Nothing listening: refused, non-zero, one line naming the URL.
        let mut args = vec!["get"];
        args.extend_from_slice(DEV);
        args.push("http://198.51.100.1:8001/");
        let (code, _, err) = tunhost(&args);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("http://198.51.100.1:8001/: connection refused"),
            "{err}"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn args_with_timeout<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["timeout", "60", TUNHOST];
    v.extend_from_slice(args);
    v
}

#[test]
fn http_get_example_fetches_from_a_kernel_server() {
    require_root!();
    let bin = common::example("http_get");
    let dir = std::env::temp_dir().join(format!("tunhost-get-ex-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = pattern(100_000, 9);
    std::fs::write(dir.join("g.bin"), &data).unwrap();
    let d = dir.clone();
    in_netns(move || {
        kernel_side_device();
        let _py = PyServer::start(&d);
        let out = run(&[
            "timeout",
            "60",
            bin.as_str(),
            "http://198.51.100.1:8000/g.bin",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == data, "http_get example: body differs");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ping_over_tap_and_ipv6() {
    require_root!();
    in_netns(|| {
        // TAP: the host resolves the kernel side's MAC by ARP before the first request goes out.
        sh(&["ip", "tuntap", "add", "dev", "tap9", "mode", "tap"]);
        sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", "tap9"]);
        sh(&["ip", "link", "set", "tap9", "up"]);
        let (code, out, err) = tunhost(&[
            "ping",
            "--tap",
            "tap9",
            "--addr",
            "198.51.100.2/24",
            "-c",
            "2",
            "-i",
            "0.1",
            "198.51.100.1",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("2 packets transmitted, 2 received"), "{out}");

        // IPv6 on a TUN device.
        sh(&["ip", "tuntap", "add", "dev", "tun9", "mode", "tun"]);
        sh(&[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:9::1/64",
            "dev",
            "tun9",
            "nodad",
        ]);
        sh(&["ip", "link", "set", "tun9", "up"]);
        let (code, out, err) = tunhost(&[
            "ping",
            "--tun",
            "tun9",
            "--addr",
            "2001:db8:9::2/64",
            "-c",
            "2",
            "-i",
            "0.1",
            "2001:db8:9::1",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("bytes from 2001:db8:9::1: icmp_seq=2"),
            "{out}"
        );
    });
}

#[test]
fn get_from_tunhost_serve_through_the_kernel_router() {
    require_root!();
    let dir = std::env::temp_dir().join(format!("tunhost-get-routed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = pattern(3_000_000, 11);
    std::fs::write(dir.join("big.bin"), &data).unwrap();
    let d = dir.clone();
    in_netns(move || {
        // Two userspace hosts on two TUN devices; the kernel forwards between their subnets.
        // This thread's namespace's /proc/sys/net: the host's forwarding setting is not touched.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable forwarding");
        let root = d.to_str().unwrap().to_string();
        let _server = common::Tunhost::serve(
            &[common::TUN_ARGS, &["--http", "80", "--root", &root]].concat(),
        );
        let out = run(&[
            "timeout",
            "60",
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
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == data, "routed get: body differs");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ping_and_get_trace_every_packet_with_pcap() {
    require_root!();
    let scratch = tools::Scratch::new("client-pcap");
    let (ping_trace, get_trace) = (scratch.path("ping.pcapng"), scratch.path("get.pcap"));
    let www = scratch.0.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("f.txt"), b"traced body\n").unwrap();
    in_netns(move || {
        kernel_side_device();
        let mut args = vec!["ping"];
        args.extend_from_slice(DEV);
        args.extend_from_slice(&[
            "-c",
            "2",
            "-i",
            "0.1",
            "--pcap",
            &ping_trace,
            "198.51.100.1",
        ]);
        let (code, out, err) = tunhost(&args);
        assert_eq!(code, 0, "{out}{err}");
        let icmp = tools::tshark_fields(&ping_trace, "icmp", &["icmp.type", "ip.src", "ip.dst"]);
        let count = |t: &str, src: &str| icmp.iter().filter(|f| f[0] == t && f[1] == src).count();
        assert_eq!(count("8", "198.51.100.2"), 2, "echo requests in {icmp:?}");
        assert_eq!(count("0", "198.51.100.1"), 2, "echo replies in {icmp:?}");

        let _py = PyServer::start(&www);
        let mut args = vec!["get"];
        args.extend_from_slice(DEV);
        args.extend_from_slice(&["--pcap", &get_trace, "--pcap-format", "pcap"]);
        args.push("http://198.51.100.1:8000/f.txt");
        let (code, out, err) = tunhost(&args);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(out, "traced body\n");
        let uris = tools::tshark_fields(&get_trace, "http.request", &["http.request.uri"]);
        assert_eq!(
            uris,
            vec![vec!["/f.txt".to_string()]],
            "requests in the trace"
        );
        let codes = tools::tshark_fields(&get_trace, "http.response", &["http.response.code"]);
        assert_eq!(
            codes,
            vec![vec!["200".to_string()]],
            "responses in the trace"
        );

        // stdout carries ping's lines and get's body: a trace there would mix with them.
        let mut args = vec!["ping"];
        args.extend_from_slice(DEV);
        args.extend_from_slice(&["-c", "1", "--pcap", "-", "198.51.100.1"]);
        let (code, _, err) = tunhost(&args);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--pcap -"), "{err}");
    });
}
