//! Where the HTTP server's files come from.
//!
//! The protocol logic only sees the [`Files`] trait: look a path up, open a file as a
//! [`Read`]er, list a directory. [`DirRoot`] is the real one, below a directory on disk; tests use
//! an in-memory one. This module is the one place in the services that touches the file system,
//! which is what serving files from `--root` needs.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::services::ServiceError;

/// An open file ready to be sent.
pub struct FileBody {
    /// Its length when opened: what `Content-Length` announces.
    pub len: u64,
    /// Last modification, in Unix seconds, if known.
    pub modified: Option<u64>,
    /// The file's contents, from the start.
    pub reader: Box<dyn Read>,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody")
            .field("len", &self.len)
            .field("modified", &self.modified)
            .finish_non_exhaustive()
    }
}

/// What a path names.
#[derive(Debug)]
pub enum Lookup {
    /// A regular file, opened.
    File(FileBody),
    /// A directory.
    Dir,
    /// Nothing, or a path through something that is not a directory.
    NotFound,
    /// Exists but may not be served (outside the root through a link, unreadable, not a regular
    /// file or directory).
    Forbidden,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name, as the bytes the file system holds.
    pub name: Vec<u8>,
    /// Whether it is a directory (after following a symbolic link).
    pub dir: bool,
    /// Its size in bytes (after following a symbolic link).
    pub len: u64,
}

/// Most entries a generated listing shows.
pub const MAX_LISTING: usize = 10_000;

/// A tree of files the server can serve. Paths are decoded segments below the root, already
/// checked by [`super::path::resolve`]: no segment is empty, `.`, `..`, or contains `/`.
pub trait Files {
    /// What `path` names; files are opened.
    fn lookup(&mut self, path: &[Vec<u8>]) -> Lookup;
    /// The entries of the directory `path`, sorted by name, at most [`MAX_LISTING`]; `None` if
    /// it cannot be listed.
    fn list(&mut self, path: &[Vec<u8>]) -> Option<Vec<Entry>>;
}

/// The files below a directory on disk.
///
/// Every lookup canonicalizes the path (resolving every symbolic link) and refuses what then lies
/// outside the canonical root: a link inside the root that points outside is [`Lookup::Forbidden`].
/// Only regular files and directories are served (never a FIFO or a device, which could block).
#[derive(Debug, Clone)]
pub struct DirRoot {
    root: PathBuf,
}

impl DirRoot {
    /// Serve the files below `root`, which must be a directory.
    pub fn new(root: impl AsRef<Path>) -> Result<DirRoot, ServiceError> {
        let shown = root.as_ref().display().to_string();
        let err = |op, source| ServiceError::Root {
            path: shown.clone(),
            op,
            source,
        };
        let root = fs::canonicalize(root.as_ref()).map_err(|e| err("open the web root", e))?;
        let meta = fs::metadata(&root).map_err(|e| err("open the web root", e))?;
        if !meta.is_dir() {
            return Err(err(
                "serve",
                std::io::Error::other("the web root is not a directory"),
            ));
        }
        Ok(DirRoot { root })
    }

    /// The canonical path of the root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The canonical path of `path` if it exists and lies inside the root.
    fn locate(&self, path: &[Vec<u8>]) -> Result<PathBuf, Lookup> {
        let mut p = self.root.clone();
        for seg in path {
            p.push(std::ffi::OsStr::from_bytes(seg));
        }
        match fs::canonicalize(&p) {
            Ok(c) if c.starts_with(&self.root) => Ok(c),
            Ok(_) => Err(Lookup::Forbidden),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Lookup::NotFound),
            // ENOTDIR: a file used as a directory (`/file.txt/x`).
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(Lookup::NotFound),
            Err(_) => Err(Lookup::Forbidden),
        }
    }
}

fn unix_secs(m: &fs::Metadata) -> Option<u64> {
    m.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

impl Files for DirRoot {
    fn lookup(&mut self, path: &[Vec<u8>]) -> Lookup {
        let p = match self.locate(path) {
            Ok(p) => p,
            Err(l) => return l,
        };
        let Ok(meta) = fs::metadata(&p) else {
            return Lookup::NotFound;
        };
        if meta.is_dir() {
            return Lookup::Dir;
        }
        if !meta.is_file() {
            return Lookup::Forbidden;
        }
        // O_NONBLOCK: should the file have been swapped for a FIFO since, opening never blocks.
        match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&p)
        {
            Ok(f) => match f.metadata() {
                Ok(m) if m.is_file() => Lookup::File(FileBody {
                    len: m.len(),
                    modified: unix_secs(&m),
                    reader: Box::new(f),
                }),
                _ => Lookup::Forbidden,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lookup::NotFound,
            Err(_) => Lookup::Forbidden,
        }
    }

    fn list(&mut self, path: &[Vec<u8>]) -> Option<Vec<Entry>> {
        let p = self.locate(path).ok()?;
        let mut out = Vec::new();
        for e in fs::read_dir(&p).ok()?.flatten().take(MAX_LISTING) {
            // Follow links for the kind and size, as a browser's user would expect.
            let meta = match fs::metadata(e.path()) {
                Ok(m) => m,
                Err(_) => continue,
            };
            out.push(Entry {
                name: e.file_name().as_bytes().to_vec(),
                dir: meta.is_dir(),
                len: meta.len(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Some(out)
    }
}

/// The `Content-Type` of a file, by its name's extension; `application/octet-stream` when unknown.
pub fn content_type(name: &[u8]) -> &'static str {
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(i) => &name[i + 1..],
        None => return "application/octet-stream",
    };
    let ext = String::from_utf8_lossy(ext).to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "text" | "log" | "md" | "rs" | "toml" | "c" | "h" | "py" | "sh" => {
            "text/plain; charset=utf-8"
        }
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "csv" => "text/csv; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "woff2" => "font/woff2",
        "pcap" => "application/vnd.tcpdump.pcap",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(s: &str) -> Vec<Vec<u8>> {
        s.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn types() {
        assert_eq!(content_type(b"index.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"a.png"), "image/png");
        assert_eq!(content_type(b"noext"), "application/octet-stream");
        assert_eq!(content_type(b"x.unknown"), "application/octet-stream");
    }

    #[test]
    fn dir_root_serves_inside_and_refuses_links_out() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let root = base.join("www");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/a.txt"), b"hello").unwrap();
        fs::write(base.join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("in")).unwrap();
        let mut r = DirRoot::new(&root).unwrap();

        match r.lookup(&seg("sub/a.txt")) {
            Lookup::File(mut f) => {
                assert_eq!(f.len, 5);
                assert!(f.modified.is_some());
                let mut s = String::new();
                f.reader.read_to_string(&mut s).unwrap();
                assert_eq!(s, "hello");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.lookup(&seg("in")), Lookup::File(_)));
        assert!(matches!(r.lookup(&seg("out")), Lookup::Forbidden));
        assert!(matches!(r.lookup(&seg("sub")), Lookup::Dir));
        assert!(matches!(r.lookup(&[]), Lookup::Dir));
        assert!(matches!(r.lookup(&seg("nope")), Lookup::NotFound));
        assert!(matches!(r.lookup(&seg("sub/a.txt/x")), Lookup::NotFound));
        let names: Vec<_> = r.list(&[]).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, [b"in".to_vec(), b"out".to_vec(), b"sub".to_vec()]);
        assert!(r.list(&seg("out")).is_none());
        assert!(DirRoot::new(root.join("sub/a.txt")).is_err());
        assert!(DirRoot::new(base.join("missing")).is_err());
    }
}
