//! Slow and many HTTP clients against `tunhost serve --http` through the real kernel, each test
//! in a network namespace of its own: a request head that trickles gets 408 at the header
//! deadline, a port full of stalled clients still serves a new one, a burst of 1,000 concurrent
//! connections is served whole, and a closed connection's slot is reused at once.

mod common;
mod tools;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{HOST, TUN_ARGS, Tunhost, in_netns, run};
use tools::Scratch;

/// Run `f` in a namespace of its own against `tunhost serve --http 8080 --root DIR EXTRA`, where
/// DIR holds `hello.txt` ("hello\n").
fn serving(test: &str, extra: &[&str], f: impl FnOnce() + Send) {
    let dir = Scratch::new(test);
    std::fs::write(dir.0.join("hello.txt"), b"hello\n").unwrap();
    let root = dir.path("");
    in_netns(|| {
        let mut args = TUN_ARGS.to_vec();
        args.extend_from_slice(&["--http", "8080", "--root", &root]);
        args.extend_from_slice(extra);
        let _h = Tunhost::serve(&args);
        f();
    });
}

fn connect() -> TcpStream {
    let s = TcpStream::connect((HOST, 8080)).expect("connect to the HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Everything the server sends until it closes: the bytes, and whether it closed with a FIN
/// (`Ok`) or a RST (`Err`).
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, Result<(), ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e.kind())),
        }
    }
}

/// GET /hello.txt on a kept-alive connection: the response's status line, and its body.
fn get_hello(s: &mut TcpStream) -> (String, Vec<u8>) {
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send a request");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The head, then the 6 bytes of the body.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"hello\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    let status = text.lines().next().unwrap_or("(nothing)").to_string();
    let body = match text.split_once("\r\n\r\n") {
        Some((_, body)) => body.as_bytes().to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

#[test]
fn a_trickled_head_gets_408_at_the_header_deadline() {
    require_root!();
    serving("slow-trickle", &["--http-header-timeout", "2"], || {
        for method in ["GET", "HEAD"] {
            let mut s = connect();
            s.set_read_timeout(Some(Duration::from_millis(400)))
                .unwrap();
            let head = format!("{method} /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            s.write_all(head.as_bytes()).unwrap();
            let start = Instant::now();
            // A byte every 400 ms keeps the 10 s idle timeout from ever firing: without the
            // header deadline this goes on as long as the client likes. Bounded: 30 bytes.
            let mut got = Vec::new();
            for _ in 0..30 {
                let mut buf = [0u8; 1024];
                match s.read(&mut buf) {
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{method}: {e} before any answer"),
                }
                s.write_all(b"a").expect("trickle a byte");
            }
            let took = start.elapsed();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (rest, closed) = read_to_close(&mut s);
            got.extend_from_slice(&rest);
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
                "{method}: after {took:?}: {text:?}"
            );
            assert!(
                took < Duration::from_secs(8),
                "{method}: 408 after {took:?}"
            );
            // Then a FIN, not a RST; a HEAD gets the head alone.
            assert_eq!(closed, Ok(()), "{method}: {text:?}");
            let body = text.ends_with("\r\n\r\n408 Request Timeout\n");
            assert_eq!(body, method == "GET", "{method}: {text:?}");
        }
    });
}

#[test]
fn a_port_full_of_stalled_clients_still_serves_a_new_one() {
    require_root!();
    // 100 connections at most (+ 64 sockets kept listening): 164 clients that each send half a
    // request fill the port.
    serving("slow-full", &["--max-connections", "100"], || {
        let stalled: Vec<TcpStream> = (0..164)
            .map(|i| {
                let mut s = TcpStream::connect((HOST, 8080))
                    .unwrap_or_else(|e| panic!("stalled client {i}: {e}"));
                s.write_all(b"GET /hello.txt HT").unwrap();
                s
            })
            .collect();
        // Past EVICT_AFTER (500 ms), the 64 idle longest are reset to put 64 sockets back in
        // LISTEN, without waiting for a new SYN to find none.
        std::thread::sleep(Duration::from_millis(1500));
        let out = run(&[
            "curl",
            "-sS",
            "--max-time",
            "10",
            &format!("http://{HOST}:8080/hello.txt"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "curl on a full port: {err}");
        assert_eq!(out.stdout, b"hello\n");
        // The first stalled client was reset, the last one is still waiting for its request.
        let mut first = stalled[0].try_clone().unwrap();
        first
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(read_to_close(&mut first).1, Err(ErrorKind::ConnectionReset));
        let mut last = stalled[163].try_clone().unwrap();
        last.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let e = last
            .read(&mut [0u8; 64])
            .expect_err("the newest staller is kept");
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    });
}

#[test]
fn a_burst_of_1000_concurrent_connections_is_served() {
    require_root!();
    serving("slow-burst", &[], || {
        // ab opens its 1,000 connections at once; every SYN must find a socket in LISTEN (one
        // RST makes ab abort with "Connection reset by peer"). It needs 1,000+ descriptors.
        let url = format!("http://{HOST}:8080/hello.txt");
        let out = run(&[
            "prlimit",
            "--nofile=4096",
            "timeout",
            "120",
            "ab",
            "-q",
            "-s",
            "20",
            "-n",
            "5000",
            "-c",
            "1000",
            "-k",
            &url,
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "ab failed: {}\n{text}{err}",
            out.status
        );
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        assert_eq!(field("Complete requests:"), Some(5000), "{text}");
        assert_eq!(field("Failed requests:"), Some(0), "{text}");
        assert_eq!(field("Non-2xx responses:"), None, "{text}");
    });
}

#[test]
fn a_closed_connections_slot_is_reused_at_once() {
    require_root!();
    // 4 connections at most (+ 4 listening), closed after 1 s idle.
    let extra = [
        "--max-connections",
        "4",
        "--backlog",
        "4",
        "--http-idle-timeout",
        "1",
    ];
    serving("slow-reuse", &extra, || {
        let mut old: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
        for s in &mut old {
            assert_eq!(get_hello(s).0, "HTTP/1.1 200 OK");
        }
        // The idle timeout closes them with a FIN; these clients keep their side open, so the
        // server's sockets wait in FIN-WAIT-2 (before: for the 30 s linger, refusing clients).
        for s in &mut old {
            assert_eq!(read_to_close(s), (Vec::new(), Ok(())));
        }
        // 8 new clients are served at once: the 4 listening sockets and the 4 closed ones.
        let mut new: Vec<TcpStream> = Vec::new();
        for i in 0..8 {
            let mut s = TcpStream::connect((HOST, 8080))
                .unwrap_or_else(|e| panic!("new client {i} right after the close: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (status, body) = get_hello(&mut s);
            assert_eq!(
                (status.as_str(), &body[..]),
                ("HTTP/1.1 200 OK", &b"hello\n"[..])
            );
            new.push(s);
        }
    });
}
