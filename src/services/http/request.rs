//! HTTP/1.x request heads: parsed with `httparse`, checked against size limits, and reduced to
//! what the server needs (method, target, version, whether the connection persists).
//!
//! Supported: HTTP/1.0 and HTTP/1.1 request heads, pipelined back to back in one buffer.
//! Not supported: request bodies (a request that announces one is answered, then the connection
//! is closed rather than the body read), `Expect: 100-continue`, HTTP/2.

use std::fmt;

/// Longest request line accepted; longer gets 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest request head (request line and headers) accepted; longer gets 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields accepted; more gets 431.
pub const MAX_HEADERS: usize = 64;

/// The request methods the server tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: answered like `GET`, without the body.
    Head,
    /// Any other syntactically valid method: answered 405.
    Other,
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request method.
    pub method: Method,
    /// The request-target exactly as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The request announces a body (`Content-Length` > 0 or `Transfer-Encoding`).
    pub has_body: bool,
    /// `If-Modified-Since`, as sent.
    pub if_modified_since: Option<String>,
    /// Length of the head in the buffer, CRLFCRLF included.
    pub head_len: usize,
}

/// Why a request head was refused; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP syntax, or contradictory framing headers: 400.
    Malformed(&'static str),
    /// The request line is longer than [`MAX_REQUEST_LINE`]: 414.
    UriTooLong,
    /// The head is longer than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] fields: 431.
    HeadersTooLarge,
}

impl HeadError {
    /// The status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed(_) => 400,
            HeadError::UriTooLong => 414,
            HeadError::HeadersTooLarge => 431,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(why) => write!(f, "malformed request: {why}"),
            HeadError::UriTooLong => {
                write!(f, "request line longer than {MAX_REQUEST_LINE} bytes")
            }
            HeadError::HeadersTooLarge => write!(
                f,
                "request head longer than {MAX_HEAD} bytes or more than {MAX_HEADERS} fields"
            ),
        }
    }
}

/// What the bytes at the start of a buffer are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet: read more.
    Partial,
    /// A whole head, parsed (its length is [`Request::head_len`]).
    Complete(Request),
    /// A head the server refuses.
    Error(HeadError),
}

/// Whether `tokens` (a comma-separated `Connection` value) contains `token`.
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The persistence rule of RFC 9112 §9.3: `close` always closes; HTTP/1.1 persists by default;
/// HTTP/1.0 persists only if it asked for `keep-alive`.
pub fn keep_alive(minor_version: u8, connection: &[&[u8]]) -> bool {
    if connection.iter().any(|v| has_token(v, "close")) {
        false
    } else if minor_version >= 1 {
        true
    } else {
        connection.iter().any(|v| has_token(v, "keep-alive"))
    }
}

/// Parse the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial(buf),
        Err(httparse::Error::TooManyHeaders) => return Parsed::Error(HeadError::HeadersTooLarge),
        Err(e) => {
            // A request line too long to be complete is refused for its length, not its syntax.
            if line_len(buf).is_none_or(|n| n > MAX_REQUEST_LINE) && buf.len() > MAX_REQUEST_LINE {
                return Parsed::Error(HeadError::UriTooLong);
            }
            return Parsed::Error(HeadError::Malformed(match e {
                httparse::Error::Version => "unsupported HTTP version",
                httparse::Error::Token => "invalid method or header name",
                httparse::Error::HeaderName => "invalid header name",
                httparse::Error::HeaderValue => "invalid header value",
                httparse::Error::NewLine => "invalid line ending",
                httparse::Error::Status => "invalid request line",
                _ => "invalid request",
            }));
        }
    };
    if line_len(buf).is_some_and(|n| n > MAX_REQUEST_LINE) {
        return Parsed::Error(HeadError::UriTooLong);
    }
    if head_len > MAX_HEAD {
        return Parsed::Error(HeadError::HeadersTooLarge);
    }
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Parsed::Error(HeadError::Malformed("incomplete request line"));
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let mut connection: Vec<&[u8]> = Vec::new();
    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut if_modified_since = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            connection.push(h.value);
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (v, content_length) {
                (None, _) => return Parsed::Error(HeadError::Malformed("invalid Content-Length")),
                (Some(a), Some(b)) if a != b => {
                    return Parsed::Error(HeadError::Malformed("conflicting Content-Length"));
                }
                (Some(a), _) => content_length = Some(a),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            if_modified_since = std::str::from_utf8(h.value).ok().map(str::to_string);
        }
    }
    if minor_version >= 1 && hosts != 1 {
        return Parsed::Error(HeadError::Malformed(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if chunked && content_length.is_some() {
        return Parsed::Error(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Parsed::Complete(Request {
        method,
        target: target.to_string(),
        minor_version,
        keep_alive: keep_alive(minor_version, &connection),
        has_body: chunked || content_length.is_some_and(|n| n > 0),
        if_modified_since,
        head_len,
    })
}

/// Length of the first line of `buf`, if it is complete.
fn line_len(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// An incomplete head: fine unless it is already over a limit.
fn partial(buf: &[u8]) -> Parsed {
    match line_len(buf) {
        None if buf.len() > MAX_REQUEST_LINE => Parsed::Error(HeadError::UriTooLong),
        Some(n) if n > MAX_REQUEST_LINE => Parsed::Error(HeadError::UriTooLong),
        _ if buf.len() >= MAX_HEAD => Parsed::Error(HeadError::HeadersTooLarge),
        _ => Parsed::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(buf: &[u8]) -> Request {
        match parse(buf) {
            Parsed::Complete(r) => r,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> u16 {
        match parse(buf) {
            Parsed::Error(e) => e.status(),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn simple_get() {
        let r = ok(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/a/b?x=1");
        assert_eq!(r.minor_version, 1);
        assert!(r.keep_alive);
        assert!(!r.has_body);
        assert_eq!(r.head_len, 34);
    }

    #[test]
    fn methods() {
        assert_eq!(ok(b"HEAD / HTTP/1.0\r\n\r\n").method, Method::Head);
        assert_eq!(ok(b"POST / HTTP/1.0\r\n\r\n").method, Method::Other);
        assert_eq!(ok(b"DELETE / HTTP/1.0\r\n\r\n").method, Method::Other);
        // Methods are case-sensitive: `get` is another method.
        assert_eq!(ok(b"get / HTTP/1.0\r\n\r\n").method, Method::Other);
    }

    #[test]
    fn persistence_rules() {
        assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n").keep_alive);
    }

    #[test]
    fn partial_heads() {
        assert_eq!(parse(b""), Parsed::Partial);
        assert_eq!(parse(b"GET / HT"), Parsed::Partial);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n"), Parsed::Partial);
    }

    #[test]
    fn pipelined_heads_parse_one_at_a_time() {
        let buf = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
        let a = ok(buf);
        assert_eq!(a.target, "/1");
        let b = ok(&buf[a.head_len..]);
        assert_eq!(b.target, "/2");
        assert_eq!(a.head_len + b.head_len, buf.len());
    }

    #[test]
    fn malformed() {
        assert_eq!(err(b"GET\r\n\r\n"), 400);
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), 400); // no Host
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(err(b"GET / HTTP/2.0\r\n\r\n"), 400);
        assert_eq!(err(b"GET / FOO/1.1\r\n\r\n"), 400);
        assert_eq!(err(b"G(T / HTTP/1.0\r\n\r\n"), 400);
        assert_eq!(err(b"GET / HTTP/1.0\r\nBad Name: x\r\n\r\n"), 400);
        assert_eq!(err(b"GET / HTTP/1.0\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(
            err(b"GET / HTTP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            err(b"GET / HTTP/1.0\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(err(b"\x00\x01\x02\r\n\r\n"), 400);
    }

    #[test]
    fn bodies_are_noticed() {
        assert!(ok(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc").has_body);
        assert!(!ok(b"GET / HTTP/1.0\r\nContent-Length: 0\r\n\r\n").has_body);
        assert!(ok(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").has_body);
    }

    #[test]
    fn limits() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST_LINE + 10, b'a');
        // Incomplete and already too long.
        assert_eq!(err(&long), 414);
        long.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(err(&long), 414);

        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(err(&many), 431);

        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD + 1, b'x');
        assert_eq!(err(&big), 431);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"GET /HTP1.\r\n: \x00\xffaZ"[(seed % 17) as usize]
                })
                .collect();
            let _ = parse(&buf);
        }
    }
}
