//! From a request-target to a path below the server's root, or a refusal.
//!
//! The rules are strict on purpose: nothing that could name a file outside the root gets through,
//! whatever the encoding. A target is split on `/` *before* percent-decoding, and then:
//! - a segment that decodes to `..`, or that contains `/`, `\` or NUL once decoded, is refused
//!   ([`PathError::Forbidden`], 403): `/../x`, `/%2e%2e/x`, `/a%2f..%2fb`, `/a\..\b`;
//! - empty segments and `.` are dropped (`//a/./b` is `/a/b`);
//! - the query and fragment are ignored;
//! - a target that is not absolute (`x`, `*`) or has a broken `%` escape is malformed (400);
//!   an absolute-form target (`http://host/a`) is reduced to its path.
//!
//! Symbolic links that point outside the root are the file system's business: see
//! [`super::files::DirRoot`].

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

/// Why a target does not name a path below the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not a usable request-target: 400.
    Malformed,
    /// A target that tries to leave the root or uses forbidden characters: 403.
    Forbidden,
}

/// A target resolved to path segments below the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Decoded segments; none is empty, `.`, `..`, or contains `/`, `\` or NUL.
    pub segments: Vec<Vec<u8>>,
    /// The target's path ended with `/` (directories are served only so: relative links work).
    pub trailing_slash: bool,
}

impl Target {
    /// The path as it appears in a URL (segments percent-encoded), with a leading `/`, and a
    /// trailing one if `dir`.
    pub fn url_path(&self, dir: bool) -> String {
        let mut s = String::from("/");
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            s.push_str(&encode(seg));
        }
        if dir && !self.segments.is_empty() {
            s.push('/');
        }
        s
    }
}

/// What [`encode`] escapes: all but the unreserved characters of RFC 3986 (alphanumerics and
/// `-._~`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-decode one segment; a `%` not followed by two hex digits makes it malformed.
fn decode(seg: &[u8]) -> Result<Vec<u8>, PathError> {
    let broken = seg.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !seg
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if broken {
        return Err(PathError::Malformed);
    }
    Ok(percent_decode(seg).collect())
}

/// Percent-encode a segment for use in a URL: unreserved characters stay, all else is `%XX`.
pub fn encode(seg: &[u8]) -> String {
    percent_encode(seg, SEGMENT).to_string()
}

/// Resolve a request-target. See the module documentation for the rules.
pub fn resolve(target: &str) -> Result<Target, PathError> {
    let mut t = target.as_bytes();
    // Absolute form: keep the path only.
    for scheme in [&b"http://"[..], b"https://"] {
        if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &t[scheme.len()..];
            t = match rest.iter().position(|&b| b == b'/') {
                Some(i) => &rest[i..],
                None => b"/",
            };
            break;
        }
    }
    let end = t
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(t.len());
    let path = &t[..end];
    if path.first() != Some(&b'/') {
        return Err(PathError::Malformed);
    }
    if path.contains(&b'\\') {
        return Err(PathError::Forbidden);
    }
    let mut segments = Vec::new();
    for raw in path[1..].split(|&b| b == b'/') {
        let seg = decode(raw)?;
        if seg.is_empty() || seg == b"." {
            continue;
        }
        if seg == b".." || seg.iter().any(|&b| b == b'/' || b == b'\\' || b == 0) {
            return Err(PathError::Forbidden);
        }
        segments.push(seg);
    }
    Ok(Target {
        segments,
        trailing_slash: path.ends_with(b"/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(t: &str) -> Vec<String> {
        resolve(t)
            .unwrap()
            .segments
            .into_iter()
            .map(|s| String::from_utf8(s).unwrap())
            .collect()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(segs("/"), Vec::<String>::new());
        assert_eq!(segs("/a/b.txt"), ["a", "b.txt"]);
        assert_eq!(segs("//a/./b/?q=/../x#f"), ["a", "b"]);
        assert_eq!(segs("/with%20space"), ["with space"]);
        assert_eq!(segs("http://example/a/b"), ["a", "b"]);
        assert_eq!(segs("HTTP://example"), Vec::<String>::new());
        assert!(resolve("/d/").unwrap().trailing_slash);
        assert!(!resolve("/d").unwrap().trailing_slash);
        // `..` inside a name is just a name.
        assert_eq!(segs("/a..b/..c"), ["a..b", "..c"]);
    }

    #[test]
    fn traversal_is_forbidden() {
        for t in [
            "/..",
            "/../x",
            "/a/../../x",
            "/a/../b", // even when it would stay inside: never resolved
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/.%2e/x",
            "/a%2f..%2fb",
            "/a%2F..%2F..%2Fetc%2Fpasswd",
            "/a\\..\\b",
            "/a%5c..%5cb",
            "/a%00b",
            "http://h/../x",
        ] {
            assert_eq!(resolve(t), Err(PathError::Forbidden), "{t}");
        }
    }

    #[test]
    fn malformed_targets() {
        for t in ["", "*", "a/b", "%2f", "/%", "/%2", "/%zz", "/a%g0"] {
            assert_eq!(resolve(t), Err(PathError::Malformed), "{t}");
        }
    }

    #[test]
    fn url_path_round_trips() {
        let t = resolve("/a%20b/c%3F").unwrap();
        assert_eq!(t.url_path(false), "/a%20b/c%3F");
        assert_eq!(t.url_path(true), "/a%20b/c%3F/");
        assert_eq!(resolve("/").unwrap().url_path(true), "/");
        assert_eq!(resolve(&t.url_path(false)).unwrap(), t);
    }

    #[test]
    fn encode_escapes_all_but_unreserved() {
        for b in 0..=255u8 {
            let want = if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            };
            assert_eq!(encode(&[b]), want);
        }
    }
}
