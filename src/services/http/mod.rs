//! A static-file HTTP/1.1 server, as a sans-IO [`Protocol`] over the listener.
//!
//! Supported:
//! - `GET` and `HEAD`; any other method gets 405 with `Allow: GET, HEAD`;
//! - persistent connections (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`,
//!   `Connection: close` honoured) and pipelined requests, answered in order;
//! - `Content-Length`, `Content-Type` by extension, `Last-Modified` and `If-Modified-Since`
//!   (304), `Date` from the host's clock mapped once to wall time;
//! - files below a root ([`files::DirRoot`]), `index.html` or a generated listing for
//!   directories, no way out of the root (see [`path`]); or, without a root, a status page of the
//!   host ([`crate::host::status`]);
//! - big files streamed from the file straight into the socket's send buffer as it frees up: a
//!   connection holds an open file, never the file's contents;
//! - 400 for malformed requests, 414 / 431 above the limits of [`request`]; 408 and close for a
//!   client whose request head has not arrived whole within the header timeout of its first
//!   byte, however slowly the bytes trickle (nginx's `client_header_timeout`), or that stops
//!   mid-request for longer than the idle timeout; an idle persistent connection is closed after
//!   the idle timeout;
//! - under pressure (every socket of the port in use), the connections that have made no
//!   progress the longest (no request head completed, no response byte sent) are reset to make
//!   room for new ones ([`Protocol::idle_since`]).
//!
//! Not supported: request bodies (a request with one is answered, then the connection closed),
//! ranges, compression, chunked responses, TLS.

pub mod date;
pub mod files;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod harness;
pub mod path;
pub mod request;

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use log::debug;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use super::{Protocol, Step, peer_done};
use crate::host::StatusBoard;
use files::{FileBody, Files, Lookup};
use path::{PathError, Target};
use request::{MAX_HEAD, Method, Parsed, Request};

/// The idle timeout unless configured: a connection that makes no progress for this long is
/// closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The header timeout unless configured: a request head must arrive whole within this long of
/// its first byte.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP listener's backlog unless configured (handshakes in flight at once): the same as
/// every TCP port's, as Linux's `somaxconn`.
pub const DEFAULT_BACKLOG: usize = super::listener::DEFAULT_BACKLOG;

/// How the host runs its HTTP services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Serve the files below this directory; `None` serves the host's status page.
    pub root: Option<PathBuf>,
    /// Close a connection that makes no progress for this long.
    pub idle_timeout: Duration,
    /// Answer 408 and close when a request head has not arrived whole this long after its first
    /// byte.
    pub header_timeout: Duration,
    /// Most handshakes in flight at once on an HTTP port (see
    /// [`ListenerConfig::backlog`](super::ListenerConfig::backlog)).
    pub backlog: usize,
    /// Wall-clock time (Unix seconds) of the host's `Instant::ZERO`, for `Date`; `None`: the host
    /// maps its clock to the system's wall clock when it builds the service.
    pub epoch: Option<u64>,
    /// Serve and list names starting with `.` below the root (see [`files::DirRoot::dotfiles`]).
    pub dotfiles: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            root: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            backlog: DEFAULT_BACKLOG,
            epoch: None,
            dotfiles: false,
        }
    }
}

/// What the server serves.
pub enum Content {
    /// The host's status page at `/`, 404 elsewhere.
    Status(StatusBoard),
    /// A tree of files.
    Files(Box<dyn Files>),
}

/// The HTTP protocol: one per listening port, shared by its connections.
pub struct Http {
    content: Content,
    idle_timeout: Duration,
    header_timeout: Duration,
    /// Unix seconds at `Instant::ZERO`.
    epoch: u64,
    /// The `Date` value of the last second asked for.
    date: (u64, String),
    /// Requests answered, for logs and tests.
    served: u64,
}

/// The state of one connection.
pub struct Conn {
    /// Received bytes not yet consumed: at most one request head plus what was pipelined behind.
    inbuf: Vec<u8>,
    /// The response being sent.
    out: Option<Outgoing>,
    /// Close once `out` is sent.
    close_after: bool,
    /// Last time a byte moved either way.
    last_progress: Instant,
    /// When the first byte of the request head now being received arrived.
    head_since: Option<Instant>,
    /// The length of `inbuf` when its head was last found incomplete.
    partial_at: Option<usize>,
    /// Last time the connection did something useful: opened, a request head arrived whole, a
    /// response byte was sent. What eviction ranks by: a byte of a head that never ends is not
    /// progress.
    last_done: Instant,
}

/// A response on its way out: its head, then its body.
struct Outgoing {
    head: Vec<u8>,
    pos: usize,
    body: Body,
}

enum Body {
    Empty,
    Bytes(Vec<u8>, usize),
    /// A file read straight into the send buffer; `left` bytes still to send.
    Stream(Box<dyn Read>, u64),
}

/// A response before it is framed.
struct Reply {
    status: u16,
    content_type: &'static str,
    headers: String,
    body: Body,
    len: u64,
}

impl Reply {
    fn text(status: u16, text: String) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: String::new(),
            len: text.len() as u64,
            body: Body::Bytes(text.into_bytes(), 0),
        }
    }

    fn error(status: u16) -> Reply {
        Reply::text(status, format!("{status} {}\n", reason(status)))
    }

    fn html(text: String) -> Reply {
        Reply {
            content_type: "text/html; charset=utf-8",
            ..Reply::text(200, text)
        }
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        let _ = write!(self.headers, "{name}: {value}\r\n");
        self
    }
}

/// The reason phrase of the status codes the server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Escape text for HTML.
fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `1h 02m 03s`.
fn uptime(d: Duration) -> String {
    let s = d.secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

impl Http {
    /// A server of `content`; `epoch` is the wall-clock time (Unix seconds) of the host's
    /// `Instant::ZERO`. The header timeout is the idle timeout unless
    /// [`Http::with_header_timeout`] sets it.
    pub fn new(content: Content, idle_timeout: Duration, epoch: u64) -> Http {
        Http {
            content,
            idle_timeout,
            header_timeout: idle_timeout,
            epoch,
            date: (u64::MAX, String::new()),
            served: 0,
        }
    }

    /// Answer 408 and close when a request head has not arrived whole `timeout` after its first
    /// byte.
    pub fn with_header_timeout(mut self, timeout: Duration) -> Http {
        self.header_timeout = timeout;
        self
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Wall-clock Unix seconds at `now`.
    fn wall(&self, now: Instant) -> u64 {
        self.epoch + now.secs().max(0) as u64
    }

    fn date(&mut self, now: Instant) -> &str {
        let t = self.wall(now);
        if self.date.0 != t {
            self.date = (t, date::format(t));
        }
        &self.date.1
    }

    /// The reply to a well-formed request.
    fn reply(&mut self, req: &Request) -> Reply {
        if req.method == Method::Other {
            return Reply::error(405).header("Allow", "GET, HEAD");
        }
        let target = match path::resolve(&req.target) {
            Ok(t) => t,
            Err(PathError::Malformed) => return Reply::error(400),
            Err(PathError::Forbidden) => return Reply::error(403),
        };
        match &mut self.content {
            Content::Status(board) => {
                if target.segments.is_empty() {
                    Reply::text(200, status_page(board, self.epoch))
                } else {
                    Reply::error(404)
                }
            }
            Content::Files(files) => serve_file(files.as_mut(), &target, req),
        }
    }

    /// Frame `reply` for `req` (or for a request that could not be parsed, `req` = `None`).
    fn frame(
        &mut self,
        reply: Reply,
        req: Option<&Request>,
        keep_alive: bool,
        now: Instant,
    ) -> Outgoing {
        let head_only = req.is_some_and(|r| r.method == Method::Head);
        let mut head = String::with_capacity(256);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: tunhost/{}\r\n",
            reply.status,
            reason(reply.status),
            self.date(now),
            env!("CARGO_PKG_VERSION"),
        );
        if reply.status != 304 {
            let _ = write!(
                head,
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                reply.content_type, reply.len
            );
        }
        head.push_str(&reply.headers);
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        } else if req.is_some_and(|r| r.minor_version == 0) {
            head.push_str("Connection: keep-alive\r\n");
        }
        head.push_str("\r\n");
        Outgoing {
            head: head.into_bytes(),
            pos: 0,
            body: if head_only || reply.status == 304 {
                Body::Empty
            } else {
                reply.body
            },
        }
    }
}

/// The status page. Every value has a fixed width, so the page keeps one length while the
/// counters move (load testers such as `ab` count a change of length as a failed request).
fn status_page(board: &StatusBoard, epoch: u64) -> String {
    let s = board.get();
    let addrs: Vec<String> = s.addrs.iter().map(|a| a.to_string()).collect();
    let device = if s.device.is_empty() { "-" } else { &s.device };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "tunhost {}: a userspace TCP/IP host (smoltcp)\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(o, "address      {}", addrs.join(", "));
    if let Some(lease) = &s.lease {
        let _ = writeln!(o, "DHCP lease   {lease}");
    }
    let _ = writeln!(o, "device       {device}");
    let _ = writeln!(o, "services     {}", s.services.join(", "));
    let _ = writeln!(o, "started      {}", date::format(epoch));
    let _ = writeln!(o, "uptime       {:>12}", uptime(s.uptime));
    let _ = writeln!(
        o,
        "packets in   {:>12} {:>12} bytes",
        s.rx_packets, s.rx_bytes
    );
    let _ = writeln!(
        o,
        "packets out  {:>12} {:>12} bytes",
        s.tx_packets, s.tx_bytes
    );
    let _ = writeln!(o, "connections  {:>12}", s.connections);
    o
}

fn serve_file(files: &mut dyn Files, target: &Target, req: &Request) -> Reply {
    match files.lookup(&target.segments) {
        // A file is not a directory: `/file.txt/` names nothing.
        Lookup::File(_) if target.trailing_slash => Reply::error(404),
        Lookup::File(f) => {
            let name = target.segments.last().map(Vec::as_slice).unwrap_or(b"");
            file_reply(f, files::content_type(name), req)
        }
        Lookup::Dir if !target.trailing_slash && !target.segments.is_empty() => {
            let to = target.url_path(true);
            Reply::text(301, format!("moved to {to}\n")).header("Location", &to)
        }
        Lookup::Dir => {
            let mut index = target.segments.clone();
            index.push(b"index.html".to_vec());
            if let Lookup::File(f) = files.lookup(&index) {
                return file_reply(f, "text/html; charset=utf-8", req);
            }
            match files.list(&target.segments) {
                Some(entries) => Reply::html(listing(target, &entries)),
                None => Reply::error(403),
            }
        }
        Lookup::NotFound => Reply::error(404),
        Lookup::Forbidden => Reply::error(403),
    }
}

fn file_reply(f: FileBody, content_type: &'static str, req: &Request) -> Reply {
    let not_modified = match (
        f.modified,
        req.if_modified_since.as_deref().and_then(date::parse),
    ) {
        (Some(m), Some(since)) => m <= since,
        _ => false,
    };
    let mut reply = Reply {
        status: if not_modified { 304 } else { 200 },
        content_type,
        headers: String::new(),
        len: f.len,
        body: Body::Stream(f.reader, f.len),
    };
    if let Some(m) = f.modified {
        reply = reply.header("Last-Modified", &date::format(m));
    }
    reply
}

fn listing(target: &Target, entries: &[files::Entry]) -> String {
    let here = html_escape(&String::from_utf8_lossy(
        &target
            .segments
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .fold(String::from("/"), |acc, s| acc + &s + "/")
            .into_bytes(),
    ));
    let mut o = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {here}</title></head>\n<body><h1>Index of {here}</h1>\n<ul>\n"
    );
    if !target.segments.is_empty() {
        o.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for e in entries {
        let slash = if e.dir { "/" } else { "" };
        let _ = writeln!(
            o,
            "<li><a href=\"{}{slash}\">{}{slash}</a>{}</li>",
            path::encode(&e.name),
            html_escape(&String::from_utf8_lossy(&e.name)),
            match e.len {
                Some(len) if !e.dir => format!(" ({len} bytes)"),
                _ => String::new(),
            }
        );
    }
    o.push_str("</ul>\n</body></html>\n");
    o
}

/// Why sending a response failed.
enum SendFailed {
    /// The file ended early or could not be read: the response cannot be completed.
    Body,
}

impl Outgoing {
    /// The response to a request that could not be parsed, which began `received`: without
    /// its body if that was a `HEAD` (RFC 9110 §9.3.2), whatever went wrong after the method.
    fn for_head(mut self, received: &[u8]) -> Outgoing {
        if received.starts_with(b"HEAD ") {
            self.body = Body::Empty;
        }
        self
    }

    /// Move as much of the response into the socket as it takes; returns the bytes moved.
    fn send(&mut self, socket: &mut tcp::Socket<'_>) -> Result<usize, SendFailed> {
        let mut moved = 0;
        while self.pos < self.head.len() && socket.can_send() {
            match socket.send_slice(&self.head[self.pos..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.pos += n;
                    moved += n;
                }
            }
        }
        if self.pos < self.head.len() {
            return Ok(moved);
        }
        match &mut self.body {
            Body::Empty => {}
            Body::Bytes(data, pos) => {
                while *pos < data.len() && socket.can_send() {
                    match socket.send_slice(&data[*pos..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            *pos += n;
                            moved += n;
                        }
                    }
                }
            }
            Body::Stream(reader, left) => {
                while *left > 0 && socket.can_send() {
                    let r = socket.send(|buf| {
                        let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        match reader.read(&mut buf[..want]) {
                            Ok(n) => (n, Ok(n)),
                            Err(e) => (0, Err(e)),
                        }
                    });
                    match r {
                        Ok(Ok(0)) | Ok(Err(_)) => return Err(SendFailed::Body),
                        Ok(Ok(n)) => {
                            *left -= n as u64;
                            moved += n;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        Ok(moved)
    }

    fn done(&self) -> bool {
        self.pos == self.head.len()
            && match &self.body {
                Body::Empty => true,
                Body::Bytes(d, p) => *p == d.len(),
                Body::Stream(_, left) => *left == 0,
            }
    }
}

impl Protocol for Http {
    type Conn = Conn;

    fn name(&self) -> &'static str {
        "http"
    }

    fn open(&mut self, now: Instant) -> Conn {
        Conn {
            inbuf: Vec::new(),
            out: None,
            close_after: false,
            last_progress: now,
            head_since: None,
            partial_at: None,
            last_done: now,
        }
    }

    fn drive(&mut self, conn: &mut Conn, socket: &mut tcp::Socket<'_>, now: Instant) -> Step {
        let mut progressed = false;
        loop {
            if let Some(out) = &mut conn.out {
                match out.send(socket) {
                    Ok(0) => {}
                    Ok(_) => {
                        progressed = true;
                        conn.last_done = now;
                    }
                    Err(SendFailed::Body) => {
                        debug!("http: a file ended early or failed to read: closing");
                        socket.abort();
                        return Step::Close;
                    }
                }
                if !out.done() {
                    break;
                }
                conn.out = None;
                if conn.close_after {
                    return Step::Close;
                }
            }
            // The same bytes parse the same way: with nothing new since the head was found
            // incomplete, do not parse it again (10,000 slow clients would cost a parse each per
            // turn).
            let parsed = if conn.partial_at == Some(conn.inbuf.len()) {
                Parsed::Partial
            } else {
                request::parse(&conn.inbuf)
            };
            conn.partial_at = None;
            match parsed {
                Parsed::Complete(req) => {
                    conn.inbuf.drain(..req.head_len);
                    conn.head_since = None;
                    conn.last_done = now;
                    let reply = self.reply(&req);
                    debug!("http: {:?} {} -> {}", req.method, req.target, reply.status);
                    // A body is not read: close after the response rather than parse it.
                    let keep = req.keep_alive && !req.has_body;
                    conn.out = Some(self.frame(reply, Some(&req), keep, now));
                    conn.close_after = !keep;
                    self.served += 1;
                }
                Parsed::Error(e) => {
                    debug!("http: {e}");
                    let out = self.frame(Reply::error(e.status()), None, false, now);
                    conn.out = Some(out.for_head(&conn.inbuf));
                    conn.inbuf.clear();
                    conn.close_after = true;
                }
                Parsed::Partial => {
                    conn.partial_at = Some(conn.inbuf.len());
                    let room = MAX_HEAD - conn.inbuf.len().min(MAX_HEAD);
                    if socket.can_recv() && room > 0 {
                        let inbuf = &mut conn.inbuf;
                        if let Ok(n) = socket.recv(|b| {
                            let n = b.len().min(room);
                            inbuf.extend_from_slice(&b[..n]);
                            (n, n)
                        }) {
                            progressed |= n > 0;
                            if n > 0 {
                                continue;
                            }
                        }
                    }
                    if peer_done(socket) {
                        return Step::Close;
                    }
                    if !conn.inbuf.is_empty() {
                        conn.head_since.get_or_insert(now);
                    }
                    break;
                }
            }
        }
        if let Some(since) = conn.head_since
            && conn.out.is_none()
            && now >= since + self.header_timeout
        {
            let out = self.frame(Reply::error(408), None, false, now);
            let _ = out.for_head(&conn.inbuf).send(socket);
            debug!("http: no whole request head {}: 408", self.header_timeout);
            return Step::Close;
        }
        if progressed {
            conn.last_progress = now;
        } else if now >= conn.last_progress + self.idle_timeout {
            if conn.out.is_some() {
                // A reader that stopped reading: do not wait for it to take the rest.
                socket.abort();
            } else if !conn.inbuf.is_empty() {
                let out = self.frame(Reply::error(408), None, false, now);
                let _ = out.for_head(&conn.inbuf).send(socket);
            }
            debug!("http: idle for {}: closing", self.idle_timeout);
            return Step::Close;
        }
        Step::Keep
    }

    fn poll_at(&self, conn: &Conn) -> Option<Instant> {
        let idle = conn.last_progress + self.idle_timeout;
        Some(match conn.head_since {
            Some(since) => idle.min(since + self.header_timeout),
            None => idle,
        })
    }

    fn idle_since(&self, conn: &Conn) -> Option<Instant> {
        Some(conn.last_done)
    }
}

#[cfg(test)]
mod tests;
