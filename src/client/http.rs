//! An HTTP/1.1 GET from the host.
//!
//! [`ResponseReader`] is the sans-IO part: fed the bytes of a response, it parses the head with
//! `httparse` and hands out the body, framed by `Content-Length`, by chunked transfer coding or by
//! the end of the connection. [`get`] drives it over a TCP socket of the host.
//!
//! Supported: `http://` URLs whose host is an IP address (IPv6 in brackets), interim 1xx
//! responses, bodies of any size (streamed, in bounded memory). Not supported: names (no DNS), `https`, redirects
//! (a 3xx is reported as a failure), trailers (read and dropped).

use std::ops::ControlFlow;

use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

use super::{ClientError, ClientErrorKind, Result};
use crate::host::{Clock, Host, Stop, TcpTuning};
use crate::link::Housekeeping;

/// Longest response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Where an [`Url`] points: an address, or a name to resolve first ([`super::dns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlHost {
    /// An IP address.
    Addr(IpAddress),
    /// A DNS name.
    Name(String),
}

/// An `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The server: an address, or a name that [`get`] needs resolved ([`Url::resolved`]).
    pub host: UrlHost,
    /// The server's port (80 unless the URL says).
    pub port: u16,
    /// The `Host` header: the authority as written.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The URL as given, for messages.
    pub text: String,
}

impl Url {
    /// Parse `http://HOST[:PORT][/PATH]`, where HOST is an IP address (IPv6 in brackets) or a
    /// DNS name.
    pub fn parse(text: &str) -> Result<Url> {
        let bad = |why: &'static str| ClientError::new(text, ClientErrorKind::BadUrl(why));
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(bad("only http:// URLs are supported")),
            None => return Err(bad("not a URL; expected http://HOST[:PORT]/PATH")),
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.contains('@') {
            return Err(bad("user names in URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the address"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host = match host.parse::<IpAddress>() {
            Ok(addr) => UrlHost::Addr(addr),
            Err(_) if super::dns::is_name(host) => UrlHost::Name(host.to_string()),
            Err(_) => {
                return Err(bad(
                    "the host must be an IP address or a DNS name, e.g. http://192.0.2.1:8000/",
                ));
            }
        };
        let port = match port {
            None | Some("") => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad("invalid port")),
            },
        };
        Ok(Url {
            host,
            port,
            authority: authority.to_string(),
            path,
            text: text.to_string(),
        })
    }

    /// The server's address, if the URL gives one (not a name).
    pub fn addr(&self) -> Option<IpAddress> {
        match self.host {
            UrlHost::Addr(a) => Some(a),
            UrlHost::Name(_) => None,
        }
    }

    /// The same URL with the server at `addr` (the `Host` header still names it as written).
    pub fn resolved(&self, addr: IpAddress) -> Url {
        Url {
            host: UrlHost::Addr(addr),
            ..self.clone()
        }
    }

    /// The request for this URL.
    pub fn request(&self) -> String {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tunhost/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// A response's status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The reason phrase, e.g. `OK`.
    pub reason: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The header fields, in order, as (name, value).
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// In a chunk's data, this much left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines until an empty one.
    Trailers,
}

#[derive(Debug)]
enum State {
    Head,
    Body(Framing),
    Done,
}

/// What [`ResponseReader::next_event`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Need more bytes.
    More,
    /// The head of the final response.
    Head(Response),
    /// Body bytes.
    Body(&'a [u8]),
    /// The response is complete.
    Done,
}

/// A sans-IO HTTP/1.1 response parser. See the module documentation.
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    /// Bytes received and not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    /// Body bytes handed out.
    pub body_bytes: u64,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new()
    }
}

impl ResponseReader {
    /// A reader waiting for a response's head.
    pub fn new() -> ResponseReader {
        ResponseReader {
            state: State::Head,
            buf: Vec::new(),
            pos: 0,
            body_bytes: 0,
        }
    }

    /// Add received bytes. Bytes already handed out are dropped first: what the reader holds is
    /// what it was given since the last [`Event::More`] plus the part of a head, chunk-size
    /// line, CRLF or trailer it was waiting to complete (at most [`MAX_RESPONSE_HEAD`]).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.buf.extend_from_slice(data);
    }

    /// The next event from the bytes pushed so far; call until `More` or `Done`. An `Err` is a
    /// protocol violation by the server.
    pub fn next_event(&mut self) -> std::result::Result<Event<'_>, String> {
        loop {
            let avail = &self.buf[self.pos..];
            match &mut self.state {
                State::Done => return Ok(Event::Done),
                State::Head => {
                    let mut hs = [httparse::EMPTY_HEADER; 100];
                    let mut r = httparse::Response::new(&mut hs);
                    let n = match r.parse(avail) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) => {
                            if avail.len() > MAX_RESPONSE_HEAD {
                                return Err("response head too long".into());
                            }
                            return Ok(Event::More);
                        }
                        Err(e) => return Err(format!("malformed response: {e}")),
                    };
                    let resp = Response {
                        status: r.code.unwrap_or(0),
                        reason: r.reason.unwrap_or("").to_string(),
                        minor_version: r.version.unwrap_or(1),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    self.pos += n;
                    if (100..200).contains(&resp.status) {
                        continue; // interim response: the real one follows
                    }
                    self.state = State::Body(framing(&resp)?);
                    return Ok(Event::Head(resp));
                }
                State::Body(Framing::Length(0)) => {
                    self.state = State::Done;
                    return Ok(Event::Done);
                }
                State::Body(Framing::Length(left)) => {
                    if avail.is_empty() {
                        return Ok(Event::More);
                    }
                    let n = avail
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    return Ok(self.body(n));
                }
                State::Body(Framing::Close) => {
                    if avail.is_empty() {
                        return Ok(Event::More);
                    }
                    let n = avail.len();
                    return Ok(self.body(n));
                }
                State::Body(Framing::Chunked(chunk)) => match chunk {
                    Chunk::Size => match httparse::parse_chunk_size(avail) {
                        Ok(httparse::Status::Complete((n, 0))) => {
                            self.pos += n;
                            *chunk = Chunk::Trailers;
                        }
                        Ok(httparse::Status::Complete((n, size))) => {
                            self.pos += n;
                            *chunk = Chunk::Data(size);
                        }
                        Ok(httparse::Status::Partial) => {
                            if avail.len() > 4096 {
                                return Err("chunk-size line too long".into());
                            }
                            return Ok(Event::More);
                        }
                        Err(_) => return Err("invalid chunk size".into()),
                    },
                    Chunk::Data(left) => {
                        if avail.is_empty() {
                            return Ok(Event::More);
                        }
                        let n = avail
                            .len()
                            .min(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= n as u64;
                        if *left == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Ok(self.body(n));
                    }
                    Chunk::DataEnd => {
                        if avail.len() < 2 {
                            return Ok(Event::More);
                        }
                        if &avail[..2] != b"\r\n" {
                            return Err("chunk data not followed by CRLF".into());
                        }
                        self.pos += 2;
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        let Some(i) = avail.iter().position(|&b| b == b'\n') else {
                            if avail.len() > MAX_RESPONSE_HEAD {
                                return Err("trailers too long".into());
                            }
                            return Ok(Event::More);
                        };
                        let empty = avail[..i].iter().all(|&b| b == b'\r');
                        self.pos += i + 1;
                        if empty {
                            self.state = State::Done;
                            return Ok(Event::Done);
                        }
                    }
                },
            }
        }
    }

    fn body(&mut self, n: usize) -> Event<'_> {
        let start = self.pos;
        self.pos += n;
        self.body_bytes += n as u64;
        Event::Body(&self.buf[start..start + n])
    }

    /// The server closed the connection: fine if the response is complete or close-delimited.
    pub fn eof(&mut self) -> std::result::Result<(), String> {
        match &self.state {
            State::Done | State::Body(Framing::Close) => {
                self.state = State::Done;
                Ok(())
            }
            State::Head => Err("connection closed before a complete response".into()),
            State::Body(Framing::Length(left)) => Err(format!(
                "connection closed after {} body bytes, {left} short of Content-Length",
                self.body_bytes
            )),
            State::Body(Framing::Chunked(_)) => {
                Err("connection closed in the middle of a chunked body".into())
            }
        }
    }

    /// Whether the whole response (head and body) has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

fn framing(resp: &Response) -> std::result::Result<Framing, String> {
    if resp.status == 204 || resp.status == 304 {
        return Ok(Framing::Length(0));
    }
    let te = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .rfind(|t| !t.is_empty());
    match te.as_deref() {
        Some("chunked") => return Ok(Framing::Chunked(Chunk::Size)),
        Some(_) => return Ok(Framing::Close),
        None => {}
    }
    let mut len = None;
    for (n, v) in &resp.headers {
        if n.eq_ignore_ascii_case("content-length") {
            let v = v.trim();
            let l: u64 = v
                .parse()
                .ok()
                .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("invalid Content-Length {v:?}"))?;
            if len.is_some_and(|x| x != l) {
                return Err("conflicting Content-Length headers".into());
            }
            len = Some(l);
        }
    }
    Ok(len.map_or(Framing::Close, Framing::Length))
}

/// Options of [`get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetOptions {
    /// Give up after this long without any progress (connect, send or receive).
    pub timeout: Duration,
    /// The local port; `None` picks one in 49152..65535.
    pub local_port: Option<u16>,
    /// Congestion control and timestamps of the connection.
    pub tcp: TcpTuning,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions {
            timeout: Duration::from_secs(15),
            local_port: None,
            tcp: TcpTuning::default(),
        }
    }
}

fn ephemeral_port() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    49152 + ((t ^ std::process::id().rotate_left(16)) % 16384) as u16
}

/// What an output callback of [`get`] may fail with (writing the body, say).
pub type OutputError = Box<dyn std::error::Error + Send + Sync>;

/// GET `url` from the host. `on_head` sees the response's head first; then, for a 2xx response
/// only, `on_body` gets the body in pieces, byte-exact. A non-2xx status is an error (after
/// `on_head`), as are a refused or reset connection, a timeout and a malformed response.
pub fn get<D, C>(
    host: &mut Host<D, C>,
    url: &Url,
    options: GetOptions,
    stop: Option<&Stop>,
    mut on_head: impl FnMut(&Response) -> std::result::Result<(), OutputError>,
    mut on_body: impl FnMut(&[u8]) -> std::result::Result<(), OutputError>,
) -> Result<Response>
where
    D: Device + std::os::fd::AsFd + Housekeeping,
    C: Clock,
{
    let fail = |kind: ClientErrorKind| ClientError::new(url.text.clone(), kind);
    let bad = |why: String| fail(ClientErrorKind::BadResponse(why));
    let output = |e: OutputError| fail(ClientErrorKind::Output(e));
    let Some(addr) = url.addr() else {
        return Err(fail(ClientErrorKind::BadUrl(
            "a name must be resolved first (client::dns::resolve, Url::resolved)",
        )));
    };
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 256 * 1024]),
        tcp::SocketBuffer::new(vec![0; 16 * 1024]),
    );
    options.tcp.apply(&mut socket);
    let (iface, sockets) = host.parts_mut();
    let handle = sockets.add(socket);
    let local = options.local_port.unwrap_or_else(ephemeral_port);
    sockets
        .get_mut::<tcp::Socket>(handle)
        .connect(iface.context(), (addr, url.port), local)
        .map_err(|e| fail(ClientErrorKind::Socket(format!("cannot connect: {e}"))))?;

    let request = url.request().into_bytes();
    let mut sent = 0;
    let mut reader = ResponseReader::new();
    let mut head: Option<Response> = None;
    let mut last_progress: Option<Instant> = None;
    let mut was_connected = false;
    let result = super::drive(host, &url.text, stop, |host, now| {
        let last = *last_progress.get_or_insert(now);
        let s = host.sockets_mut().get_mut::<tcp::Socket>(handle);
        let mut progressed = false;
        if s.may_send() {
            was_connected = true;
            if sent < request.len() {
                let n = s.send_slice(&request[sent..]).unwrap_or(0);
                sent += n;
                progressed |= n > 0;
            }
        }
        while s.can_recv() {
            let n = s
                .recv(|b| {
                    reader.push(b);
                    (b.len(), b.len())
                })
                .unwrap_or(0);
            progressed |= n > 0;
            loop {
                match reader.next_event().map_err(bad)? {
                    Event::More => break,
                    Event::Head(r) => {
                        on_head(&r).map_err(output)?;
                        if !r.is_success() {
                            return Err(fail(ClientErrorKind::Status {
                                status: r.status,
                                reason: r.reason.clone(),
                            }));
                        }
                        head = Some(r);
                    }
                    Event::Body(b) => on_body(b).map_err(output)?,
                    Event::Done => {
                        s.close();
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
        }
        if !s.is_active() || (was_connected && !s.may_recv()) {
            if !was_connected {
                return Err(fail(ClientErrorKind::Refused(format!(
                    "{}:{}",
                    addr, url.port
                ))));
            }
            reader.eof().map_err(bad)?;
            if head.is_none() {
                return Err(fail(ClientErrorKind::ClosedEarly));
            }
            s.close();
            return Ok(ControlFlow::Break(()));
        }
        if progressed {
            last_progress = Some(now);
        } else if now >= last + options.timeout {
            let what = if was_connected {
                "no data"
            } else {
                "no connection"
            };
            return Err(fail(ClientErrorKind::TimedOut(format!(
                "{what} for {}",
                options.timeout
            ))));
        }
        Ok(ControlFlow::Continue(Some(
            last_progress.unwrap_or(now) + options.timeout,
        )))
    });
    // Give the FIN a moment, then let the socket go.
    let s = host.sockets_mut().get_mut::<tcp::Socket>(handle);
    if result.is_err() {
        s.abort();
    }
    host.poll();
    host.sockets_mut().remove(handle);
    match result? {
        Some(()) => head.ok_or_else(|| fail(ClientErrorKind::ClosedEarly)),
        None => Err(fail(ClientErrorKind::Interrupted)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], eof: bool) -> std::result::Result<(Response, Vec<u8>), String> {
        let mut r = ResponseReader::new();
        let mut head = None;
        let mut body = Vec::new();
        for c in chunks {
            r.push(c);
            loop {
                match r.next_event()? {
                    Event::More | Event::Done => break,
                    Event::Head(h) => head = Some(h),
                    Event::Body(b) => body.extend_from_slice(b),
                }
            }
        }
        if eof {
            r.eof()?;
        }
        assert!(r.is_done());
        Ok((head.unwrap(), body))
    }

    #[test]
    fn content_length() {
        let (h, b) = read_all(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"],
            false,
        )
        .unwrap();
        assert_eq!((h.status, b.as_slice()), (200, &b"hello"[..]));
        assert_eq!(h.header("content-length"), Some("5"));
    }

    #[test]
    fn chunked_byte_by_byte() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        let pieces: Vec<&[u8]> = resp.chunks(1).collect();
        let (_, b) = read_all(&pieces, false).unwrap();
        assert_eq!(b, b"hello world");
    }

    #[test]
    fn chunked_pieces_ending_inside_size_lines_keep_the_buffer_small() {
        // 4,000 chunks of 1,000 bytes; each piece pushed ends one byte into a chunk-size line,
        // so the reader never has every byte consumed when the next piece comes.
        let mut stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut cuts = Vec::new();
        let mut want = Vec::new();
        for i in 0..4000u32 {
            cuts.push(stream.len() + 1);
            let data: Vec<u8> = (0..1000).map(|k| (i + k) as u8).collect();
            stream.extend_from_slice(b"3e8\r\n");
            stream.extend_from_slice(&data);
            stream.extend_from_slice(b"\r\n");
            want.extend_from_slice(&data);
        }
        stream.extend_from_slice(b"0\r\n\r\n");
        cuts.push(stream.len());
        let mut r = ResponseReader::new();
        let (mut body, mut held, mut from) = (Vec::new(), 0, 0);
        for to in cuts {
            r.push(&stream[from..to]);
            from = to;
            held = held.max(r.buf.capacity());
            loop {
                match r.next_event().unwrap() {
                    Event::More | Event::Done => break,
                    Event::Head(_) => {}
                    Event::Body(b) => body.extend_from_slice(b),
                }
            }
        }
        assert!(r.is_done());
        assert!(body == want, "body differs");
        assert!(
            held <= 4096,
            "the reader held {held} bytes for 1,000-byte pieces"
        );
    }

    #[test]
    fn close_delimited_and_interim() {
        let (h, b) = read_all(
            &[
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nall",
                b" of it",
            ],
            true,
        )
        .unwrap();
        assert_eq!((h.status, h.minor_version), (200, 0));
        assert_eq!(b, b"all of it");
    }

    #[test]
    fn short_bodies_are_errors() {
        let e = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], true).unwrap_err();
        assert!(e.contains("7 short"), "{e}");
        assert!(
            read_all(
                &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"],
                true
            )
            .is_err()
        );
        assert!(read_all(&[b"HTTP/1.1 200"], true).is_err());
        assert!(read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"], false).is_err());
        assert!(read_all(&[b"NOT HTTP\r\n\r\n"], false).is_err());
    }

    #[test]
    fn urls() {
        let u = Url::parse("http://198.51.100.1:8000/f.bin?x=1#frag").unwrap();
        assert_eq!(u.addr(), Some(IpAddress::v4(198, 51, 100, 1)));
        assert_eq!(
            (u.port, u.path.as_str(), u.authority.as_str()),
            (8000, "/f.bin?x=1", "198.51.100.1:8000")
        );
        let u = Url::parse("http://[2001:db8::1]/").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(matches!(u.addr(), Some(IpAddress::Ipv6(_))));
        let u = Url::parse("http://name.example:8000/f").unwrap();
        assert_eq!(u.host, UrlHost::Name("name.example".into()));
        assert_eq!(u.authority, "name.example:8000");
        let r = u.resolved(IpAddress::v4(192, 0, 2, 1));
        assert_eq!(
            (r.addr(), r.authority.as_str()),
            (Some(IpAddress::v4(192, 0, 2, 1)), "name.example:8000")
        );
        assert_eq!(Url::parse("HTTP://192.0.2.1").unwrap().path, "/");
        for bad in [
            "https://192.0.2.1/",
            "http://exa_mple.com/",
            "192.0.2.1/x",
            "http://192.0.2.1:0/",
            "http://192.0.2.1:99999/",
            "http://[2001:db8::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Url::parse("http://192.0.2.1/a")
                .unwrap()
                .request()
                .starts_with("GET /a HTTP/1.1\r\nHost: 192.0.2.1\r\n")
        );
    }
}
