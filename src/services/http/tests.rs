//! The HTTP service end to end inside one process: a host on smoltcp's loopback device with a
//! virtual clock, a client socket on the same host, files in memory.

use std::collections::BTreeMap;

use smoltcp::socket::tcp;
use smoltcp::time::Duration;

use super::Content;
use super::files::{Entry, FileBody, Files, Lookup};
use super::harness::{EPOCH, Net};
use crate::host::Clock;

/// Files in memory: path (no leading slash) → contents; directories are the prefixes.
#[derive(Default)]
struct MemFiles(BTreeMap<String, Vec<u8>>);

fn join(path: &[Vec<u8>]) -> String {
    path.iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl Files for MemFiles {
    fn lookup(&mut self, path: &[Vec<u8>]) -> Lookup {
        let p = join(path);
        if let Some(data) = self.0.get(&p) {
            return Lookup::File(FileBody {
                len: data.len() as u64,
                modified: Some(EPOCH - 3600),
                reader: Box::new(std::io::Cursor::new(data.clone())),
            });
        }
        if p == "secret" {
            return Lookup::Forbidden;
        }
        let prefix = format!("{p}/");
        if p.is_empty() || self.0.keys().any(|k| k.starts_with(&prefix)) {
            Lookup::Dir
        } else {
            Lookup::NotFound
        }
    }

    fn list(&mut self, path: &[Vec<u8>]) -> Option<Vec<Entry>> {
        let p = join(path);
        let prefix = if p.is_empty() { p } else { format!("{p}/") };
        let mut out: Vec<Entry> = Vec::new();
        for (k, v) in &self.0 {
            if let Some(rest) = k.strip_prefix(&prefix) {
                let (name, dir) = match rest.split_once('/') {
                    Some((d, _)) => (d, true),
                    None => (rest, false),
                };
                if out.last().is_none_or(|e| e.name != name.as_bytes()) {
                    out.push(Entry {
                        name: name.as_bytes().to_vec(),
                        dir,
                        len: Some(v.len() as u64),
                    });
                }
            }
        }
        Some(out)
    }
}

fn big() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn files() -> Content {
    let mut m = MemFiles::default();
    m.0.insert("a.txt".into(), b"hello\n".to_vec());
    m.0.insert("sub/b.html".into(), b"<p>b</p>".to_vec());
    m.0.insert("site/index.html".into(), b"<h1>index</h1>".to_vec());
    m.0.insert("big.bin".into(), big());
    Content::Files(Box::new(m))
}

impl Net {
    fn get(&mut self, req: &str) -> Response {
        let h = self.connect();
        let (bytes, closed) = self.exchange(h, req.as_bytes(), 2000);
        // Close our side too, as a client does: the server's socket goes to TIME-WAIT.
        self.host.sockets_mut().get_mut::<tcp::Socket>(h).close();
        for _ in 0..5 {
            self.host.poll();
            self.clock.advance(Duration::from_millis(1));
        }
        let mut r = parse_responses(&bytes, req.starts_with("HEAD"));
        assert_eq!(r.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
        let mut r = r.remove(0);
        r.closed = closed;
        r
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    closed: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Split a byte stream into responses framed by Content-Length.
fn parse_responses(mut buf: &[u8], head_only: bool) -> Vec<Response> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("bad response {other:?}: {:?}", String::from_utf8_lossy(buf)),
        };
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let status = r.code.unwrap();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let len = if head_only || status == 304 { 0 } else { len };
        assert!(buf.len() >= n + len, "short body");
        out.push(Response {
            status,
            headers,
            body: buf[n..n + len].to_vec(),
            closed: false,
        });
        buf = &buf[n + len..];
    }
    out
}

#[test]
fn status_page() {
    let mut net = Net::new(Content::Status(Default::default()));
    let r = net.get("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(body.contains("127.0.0.1/8"), "{body}");
    assert!(body.contains("http/80"), "{body}");
    assert!(body.contains("connections  "), "{body}");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.closed);
    let r = net.get("GET /other HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 404);
}

#[test]
fn file_with_headers() {
    let mut net = Net::new(files());
    let r = net.get("GET /a.txt HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello\n");
    assert_eq!(r.header("content-length"), Some("6"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.header("last-modified"),
        Some("Sun, 06 Nov 1994 07:49:37 GMT")
    );
    assert_eq!(r.header("date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_eq!(r.header("connection"), Some("close"));
    // HTTP/1.0 without keep-alive: the server closes.
    assert!(r.closed);
}

#[test]
fn head_has_headers_only() {
    let mut net = Net::new(files());
    let r = net.get("HEAD /big.bin HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("200000"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(r.body.is_empty());
}

#[test]
fn big_file_streams_byte_exact() {
    let mut net = Net::new(files());
    let r = net.get("GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body == big(), "body differs");
}

#[test]
fn pipelined_keep_alive_in_order() {
    let mut net = Net::new(files());
    let h = net.connect();
    let reqs = "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\
                GET /sub/b.html HTTP/1.1\r\nHost: x\r\n\r\n\
                HEAD /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
                GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (bytes, closed) = net.exchange(h, reqs.as_bytes(), 2000);
    assert!(closed);
    // The HEAD response has no body: split by hand around it.
    let text = String::from_utf8(bytes).unwrap();
    let parts: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert!(parts[0].starts_with("200") && parts[0].ends_with("hello\n"));
    assert!(parts[1].starts_with("200") && parts[1].contains("text/html"));
    assert!(parts[1].ends_with("<p>b</p>"));
    assert!(parts[2].starts_with("200") && parts[2].contains("Connection: keep-alive\r\n"));
    assert!(parts[2].contains("Content-Length: 6\r\n") && parts[2].ends_with("\r\n\r\n"));
    assert!(parts[3].starts_with("404") && parts[3].contains("Connection: close\r\n"));
    // The first two persist by default and say nothing about it.
    assert!(!parts[0].contains("Connection:"));
}

#[test]
fn keep_alive_connection_stays_open() {
    let mut net = Net::new(files());
    let h = net.connect();
    let (bytes, closed) = net.exchange(h, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    assert!(!closed);
    assert_eq!(parse_responses(&bytes, false)[0].status, 200);
    let (bytes, closed) = net.exchange(h, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    assert!(!closed);
    assert_eq!(parse_responses(&bytes, false)[0].body, b"hello\n");
    // Then the idle timeout closes it.
    let (_, closed) = net.exchange(h, b"", 12_000);
    assert!(closed);
}

#[test]
fn errors_and_directories() {
    let mut net = Net::new(files());
    let cases = [
        ("POST /a.txt HTTP/1.0\r\nContent-Length: 2\r\n\r\nab", 405),
        ("DELETE /a.txt HTTP/1.0\r\n\r\n", 405),
        ("GET /nope HTTP/1.0\r\n\r\n", 404),
        ("GET /../a.txt HTTP/1.0\r\n\r\n", 403),
        ("GET /sub%2f..%2fa.txt HTTP/1.0\r\n\r\n", 403),
        ("GET /%2e%2e/a.txt HTTP/1.0\r\n\r\n", 403),
        ("GET /secret HTTP/1.0\r\n\r\n", 403),
        ("GET /%zz HTTP/1.0\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GARBAGE\r\n\r\n", 400),
        ("GET /sub HTTP/1.0\r\n\r\n", 301),
    ];
    for (req, status) in cases {
        let r = net.get(req);
        assert_eq!(r.status, status, "{req:?}");
        assert!(r.closed, "{req:?}");
    }
    let r = net.get("POST / HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = net.get("GET /sub HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("location"), Some("/sub/"));
    let r = net.get("GET /site/ HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"<h1>index</h1>"[..]));
    let r = net.get("GET /sub/ HTTP/1.0\r\n\r\n");
    let listing = String::from_utf8(r.body).unwrap();
    assert!(
        listing.contains("<a href=\"b.html\">b.html</a>"),
        "{listing}"
    );
    assert!(listing.contains("<a href=\"../\">"), "{listing}");
    let r = net.get("GET / HTTP/1.0\r\n\r\n");
    let listing = String::from_utf8(r.body).unwrap();
    assert!(listing.contains("<a href=\"sub/\">sub/</a>"), "{listing}");
}

#[test]
fn if_modified_since() {
    let mut net = Net::new(files());
    let r =
        net.get("GET /a.txt HTTP/1.0\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:00:00 GMT\r\n\r\n");
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r =
        net.get("GET /a.txt HTTP/1.0\r\nIf-Modified-Since: Sun, 06 Nov 1994 07:00:00 GMT\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn if_modified_since_in_the_obsolete_forms() {
    // RFC 9110 §5.6.7: a recipient reads all three forms. The file is from 07:49:37.
    let mut net = Net::new(files());
    for (since, status) in [
        ("Sunday, 06-Nov-94 08:00:00 GMT", 304),
        ("Sun Nov  6 08:00:00 1994", 304),
        ("Sunday, 06-Nov-94 07:00:00 GMT", 200),
        ("Sun Nov  6 07:00:00 1994", 200),
    ] {
        let r = net.get(&format!(
            "GET /a.txt HTTP/1.0\r\nIf-Modified-Since: {since}\r\n\r\n"
        ));
        assert_eq!(r.status, status, "{since}");
    }
}

#[test]
fn trailing_slash_on_a_file_is_not_found() {
    let mut net = Net::new(files());
    assert_eq!(net.get("GET /a.txt/ HTTP/1.0\r\n\r\n").status, 404);
    assert_eq!(net.get("GET /sub/b.html/ HTTP/1.0\r\n\r\n").status, 404);
    assert_eq!(net.get("GET /a.txt HTTP/1.0\r\n\r\n").status, 200);
}

#[test]
fn head_refused_with_400_has_no_body() {
    let mut net = Net::new(files());
    for req in [
        // HTTP/1.1 without Host; a broken header; a broken target (after the head parsed).
        "HEAD /a.txt HTTP/1.1\r\n\r\n",
        "HEAD /a.txt HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        "HEAD /%zz HTTP/1.0\r\n\r\n",
    ] {
        let h = net.connect();
        let (bytes, closed) = net.exchange(h, req.as_bytes(), 2000);
        let text = String::from_utf8(bytes).unwrap();
        assert!(closed, "{req:?}");
        assert!(text.starts_with("HTTP/1.1 400 "), "{req:?}: {text}");
        // The head announces the length a GET would get, and nothing follows it.
        assert!(text.contains("Content-Length: 16\r\n"), "{req:?}: {text}");
        assert!(text.ends_with("\r\n\r\n"), "{req:?}: {text}");
    }
    // A GET refused the same way has its body.
    let h = net.connect();
    let (bytes, _) = net.exchange(h, b"GET /a.txt HTTP/1.1\r\n\r\n", 2000);
    assert!(bytes.ends_with(b"\r\n\r\n400 Bad Request\n"));
}

#[test]
fn limits() {
    let mut net = Net::new(files());
    let long = format!("GET /{} HTTP/1.0\r\n\r\n", "a".repeat(9000));
    assert_eq!(net.get(&long).status, 414);
    let big = format!("GET / HTTP/1.0\r\nX: {}\r\n\r\n", "a".repeat(17000));
    assert_eq!(net.get(&big).status, 431);
}

#[test]
fn stalled_request_times_out_with_408() {
    let mut net = Net::new(files());
    let h = net.connect();
    let (bytes, closed) = net.exchange(h, b"GET /a.txt HT", 9_000);
    assert!(!closed && bytes.is_empty());
    let (bytes, closed) = net.exchange(h, b"", 2_000);
    assert!(closed);
    assert!(
        bytes.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn hostile_byte_streams_get_an_answer_or_a_close_never_a_panic() {
    let mut net = Net::new(files());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] =
        b"GET HEAD / HTTP/1.1\r\n:%2e.\\\x00\xff Host: a Connection: close keep-alive";
    for round in 0..40 {
        let len = (next() % 600) as usize;
        let mut req: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if round % 2 == 0 {
            // Half start like a request, to get past the request line more often.
            let mut head = b"GET /".to_vec();
            head.append(&mut req);
            req = head;
        }
        let h = net.connect();
        // Whatever was sent, the server answers and/or closes within the idle timeout.
        let (bytes, closed) = net.exchange(h, &req, 12_000);
        assert!(
            closed,
            "round {round}: still open after {:?}",
            String::from_utf8_lossy(&req)
        );
        assert!(
            bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 "),
            "round {round}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        net.host.sockets_mut().get_mut::<tcp::Socket>(h).close();
        for _ in 0..5 {
            net.host.poll();
            net.clock.advance(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_trickled_head_gets_408_at_the_header_deadline() {
    // One byte every 4 s: each restarts the idle timeout (10 s), which never fires; the header
    // timeout (10 s, as the idle one here) counts from the head's first byte.
    for method in ["GET", "HEAD"] {
        let mut net = Net::new(files());
        let h = net.connect();
        let head = format!("{method} /a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        let start = net.clock.now();
        let (mut got, mut closed) = net.exchange(h, head.as_bytes(), 4_000);
        for _ in 0..10 {
            if closed {
                break;
            }
            let (more, c) = net.exchange(h, b"a", 4_000);
            got.extend_from_slice(&more);
            closed = c;
        }
        let took = net.clock.now() - start;
        let text = String::from_utf8_lossy(&got);
        assert!(closed, "{method}: still open after {took}");
        assert!(
            took < Duration::from_secs(13),
            "{method}: closed after {took}"
        );
        assert!(text.starts_with("HTTP/1.1 408 "), "{method}: {text}");
        let body = text.ends_with("\r\n\r\n408 Request Timeout\n");
        assert_eq!(body, method == "GET", "{method}: {text}");
    }
}
