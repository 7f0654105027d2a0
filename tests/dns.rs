//! DNS for the clients (issue 16, item 4): `tunhost get` and `tunhost ping` take names and look
//! them up with `--dns IP` through the host's own stack, against `dnsmasq` on the kernel side of
//! the test's own device (Debian package `dnsmasq-base`).

mod common;
mod tools;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{Guard, TUNHOST, in_netns, pattern, run, sh};
use tools::Scratch;

/// tun9 with the kernel side at 198.51.100.1/24 and 2001:db8:1::1/64, and dnsmasq answering on
/// both for name.example (A 198.51.100.1) and six.example (AAAA 2001:db8:1::1) and nothing
/// else (no upstream, no hosts file).
fn kernel_side_with_dnsmasq(dir: &Scratch) -> Guard {
    sh(&["ip", "tuntap", "add", "dev", "tun9", "mode", "tun"]);
    sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", "tun9"]);
    sh(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:1::1/64",
        "dev",
        "tun9",
        "nodad",
    ]);
    sh(&["ip", "link", "set", "tun9", "up"]);
    tools::dnsmasq(
        &[
            "--listen-address=198.51.100.1",
            "--listen-address=2001:db8:1::1",
            "--address=/name.example/198.51.100.1",
            "--address=/six.example/2001:db8:1::1",
            "--log-queries",
        ],
        &dir.path("dnsmasq.log"),
        &["198.51.100.1:53", "[2001:db8:1::1]:53"],
    )
}

/// A kernel-side HTTP server on 198.51.100.1:8000 that answers one request with `body`.
fn serve_once(body: Vec<u8>) -> std::thread::JoinHandle<String> {
    let listener = TcpListener::bind("198.51.100.1:8000").expect("bind on the kernel side");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
            head.push(b[0]);
        }
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
        String::from_utf8_lossy(&head).into_owned()
    })
}

/// `tunhost SUB --tun tun9 ADDRS... ARGS...`: exit code, stdout, stderr.
fn tunhost(sub: &str, args: &[&str]) -> (i32, Vec<u8>, String) {
    let mut argv = vec![TUNHOST, sub, "--tun", "tun9"];
    argv.extend_from_slice(args);
    let out = run(&argv);
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn get_and_ping_by_name_through_the_hosts_own_dns() {
    require_root!();
    let dir = Scratch::new("dns");
    in_netns(|| {
        let _dnsmasq = kernel_side_with_dnsmasq(&dir);
        let v4 = ["--addr", "198.51.100.2/24", "--dns", "198.51.100.1"];

        // get: the name is resolved, the request goes to its address and names it in Host.
        let body = pattern(100_000, 5);
        let server = serve_once(body.clone());
        let (code, out, err) = tunhost("get", &[&v4[..], &["http://name.example:8000/f"]].concat());
        assert_eq!(code, 0, "{err}");
        assert!(out == body, "body differs ({} bytes)", out.len());
        let head = server.join().unwrap();
        assert!(head.contains("Host: name.example:8000"), "{head}");

        // ping by name.
        let (code, out, err) = tunhost(
            "ping",
            &[&v4[..], &["-c", "2", "-i", "0.2", "name.example"]].concat(),
        );
        let out = String::from_utf8_lossy(&out);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.starts_with("PING name.example (198.51.100.1) from 198.51.100.2"),
            "{out}"
        );
        assert!(out.contains("2 packets transmitted, 2 received"), "{out}");

        // A name with only an IPv6 address, asked over IPv6 by a dual-stack host: AAAA.
        let (code, out, err) = tunhost(
            "ping",
            &[
                "--addr",
                "198.51.100.2/24",
                "--addr",
                "2001:db8:1::2/64",
                "--dns",
                "2001:db8:1::1",
                "-c",
                "1",
                "six.example",
            ],
        );
        let out = String::from_utf8_lossy(&out);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("PING six.example (2001:db8:1::1)"), "{out}");

        // The queries came from the host's address, not the kernel's resolver.
        let log = std::fs::read_to_string(dir.path("dnsmasq.log")).unwrap();
        assert!(
            log.contains("query[A] name.example from 198.51.100.2"),
            "{log}"
        );
        assert!(
            log.contains("query[AAAA] six.example from 2001:db8:1::2"),
            "{log}"
        );

        // A name the server does not know: exit 1, one line naming it and the server.
        let (code, _, err) = tunhost("ping", &[&v4[..], &["-c", "1", "nosuch.example"]].concat());
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(
                "tunhost: error: cannot resolve nosuch.example: no address from 198.51.100.1"
            ),
            "{err}"
        );

        // A name and no server: a usage error before the device is touched.
        let (code, _, err) = tunhost(
            "get",
            &["--addr", "198.51.100.2/24", "http://name.example:8000/"],
        );
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("give the DNS server to ask with --dns IP"),
            "{err}"
        );
    });
}
