//! Where the HTTP server's files come from.
//!
//! The protocol logic only sees the [`Files`] trait: look a path up, open a file as a
//! [`Read`]er, list a directory. [`DirRoot`] is the real one, below a directory on disk; tests use
//! an in-memory one. This module is the one place in the services that touches the file system,
//! which is what serving files from `--root` needs.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::warn;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};

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
    /// Whether it is a directory (after following a symbolic link that stays inside the root).
    pub dir: bool,
    /// Its size in bytes (after following a symbolic link that stays inside the root); `None`
    /// for a link that leads out of the root or nowhere, whose target is not shown.
    pub len: Option<u64>,
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

/// The longest file name Linux allows (`NAME_MAX`): a longer segment names nothing.
const NAME_MAX: usize = 255;

/// The files below a directory on disk.
///
/// The root is opened once, as a directory file descriptor, and every file is opened beneath it
/// with `openat2(2)` and `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel resolves the
/// whole path, symbolic links included, and refuses (`EXDEV`) any that would leave the root, in
/// the same call that opens the file. There is no window between a check and the open for a
/// link swapped underneath. Symbolic links that stay inside the root are followed; a link
/// that leads out is [`Lookup::Forbidden`].
///
/// Names starting with `.` (in any segment) are neither served nor listed unless
/// [`DirRoot::dotfiles`] allows them. Only regular files and directories are served (never a
/// FIFO or a device, which could block). Listings look at each entry with `fstatat(2)` without
/// following links; a link is listed as what it leads to only if that resolves beneath the
/// root, and otherwise by its name alone: no size, never as a directory.
///
/// On a kernel without `openat2` (before Linux 5.6) it falls back, with one warning in the log,
/// to canonicalizing each path and checking that it lies below the root before opening it,
/// which a link swapped in between can race.
#[derive(Debug, Clone)]
pub struct DirRoot {
    root: PathBuf,
    dir: Arc<OwnedFd>,
    /// `openat2` works here; `false`: the check-then-open fallback.
    beneath: bool,
    dotfiles: bool,
}

/// Whether `openat2` was found missing, so that it is said once.
static NO_OPENAT2_SAID: AtomicBool = AtomicBool::new(false);

impl DirRoot {
    /// Serve the files below `root`, which must be a directory; dotfiles hidden.
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
        let dir = fcntl::open(
            &root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open the web root", e.into()))?;
        let beneath = match beneath(&dir, b".", OFlag::O_PATH) {
            Err(Errno::ENOSYS) => {
                if !NO_OPENAT2_SAID.swap(true, Ordering::Relaxed) {
                    warn!(
                        "http: this kernel has no openat2 (Linux 5.6): files below {} are \
                         checked, then opened, which a symbolic link swapped in between can race",
                        root.display()
                    );
                }
                false
            }
            _ => true,
        };
        Ok(DirRoot {
            root,
            dir: Arc::new(dir),
            beneath,
            dotfiles: false,
        })
    }

    /// Serve and list names that start with `.` too (`.env`, `.git/`): off by default.
    pub fn dotfiles(mut self, serve: bool) -> DirRoot {
        self.dotfiles = serve;
        self
    }

    /// The canonical path of the root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a name may be served or listed at all.
    fn allowed(&self, name: &[u8]) -> bool {
        name.len() <= NAME_MAX && (self.dotfiles || !name.starts_with(b"."))
    }

    /// The canonical path of `path` if it exists and lies inside the root: the fallback
    /// without `openat2`.
    fn locate(&self, path: &[Vec<u8>]) -> Result<PathBuf, Lookup> {
        let mut p = self.root.clone();
        for seg in path {
            p.push(std::ffi::OsStr::from_bytes(seg));
        }
        match fs::canonicalize(&p) {
            Ok(c) if c.starts_with(&self.root) => Ok(c),
            Ok(_) => Err(Lookup::Forbidden),
            Err(e) => Err(refusal(
                e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
            )),
        }
    }

    /// Open `path` (relative to the root) with `flags`, never leaving the root.
    fn open(&self, path: &[Vec<u8>], flags: OFlag) -> Result<OwnedFd, Lookup> {
        if self.beneath {
            return beneath(&self.dir, &relative(path), flags).map_err(refusal);
        }
        let p = self.locate(path)?;
        fcntl::open(&p, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(refusal)
    }
}

/// `path`'s segments joined by `/`, or `.` for the root itself.
fn relative(path: &[Vec<u8>]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    path.join(&b'/')
}

/// `openat2(dir, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, retried a few times
/// on `EAGAIN` (the kernel could not rule out a `..` racing out of the root).
fn beneath(dir: &OwnedFd, path: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
    // openat2 refuses flags that do not go with O_PATH (EINVAL), where open ignores them.
    let flags = if flags.contains(OFlag::O_PATH) {
        flags
    } else {
        flags | OFlag::O_NOCTTY
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path = std::ffi::OsStr::from_bytes(path);
    let mut tries = 0;
    loop {
        match fcntl::openat2(dir, path, how) {
            Err(Errno::EAGAIN) if tries < 3 => tries += 1,
            r => return r,
        }
    }
}

/// What a failure to open a path means to a client.
fn refusal(e: Errno) -> Lookup {
    match e {
        // ENOTDIR: a file used as a directory (`/file.txt/x`); ENAMETOOLONG: no such name.
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG => Lookup::NotFound,
        // EXDEV: a link out of the root; ELOOP: a magic link or a loop; EACCES, EPERM.
        _ => Lookup::Forbidden,
    }
}

/// Unix seconds of a modification time, if after the epoch.
fn unix_secs(st: &FileStat) -> Option<u64> {
    u64::try_from(st.st_mtime).ok()
}

fn is_kind(st: &FileStat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

impl Files for DirRoot {
    fn lookup(&mut self, path: &[Vec<u8>]) -> Lookup {
        if !path.iter().all(|seg| self.allowed(seg)) {
            return Lookup::NotFound;
        }
        // First a handle that opens nothing (O_PATH): a FIFO or a device is refused before it
        // is opened for reading.
        let st = match self
            .open(path, OFlag::O_PATH)
            .and_then(|fd| fstat(&fd).map_err(|_| Lookup::Forbidden))
        {
            Ok(st) => st,
            Err(l) => return l,
        };
        if is_kind(&st, libc::S_IFDIR) {
            return Lookup::Dir;
        }
        if !is_kind(&st, libc::S_IFREG) {
            return Lookup::Forbidden;
        }
        // O_NONBLOCK: should the file have been swapped for a FIFO since, opening never blocks;
        // what was opened is checked again.
        let fd = match self.open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(l) => return l,
        };
        match fstat(&fd) {
            Ok(st) if is_kind(&st, libc::S_IFREG) => Lookup::File(FileBody {
                len: u64::try_from(st.st_size).unwrap_or(0),
                modified: unix_secs(&st),
                reader: Box::new(fs::File::from(fd)),
            }),
            _ => Lookup::Forbidden,
        }
    }

    fn list(&mut self, path: &[Vec<u8>]) -> Option<Vec<Entry>> {
        if !path.iter().all(|seg| self.allowed(seg)) {
            return None;
        }
        let fd = self.open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY).ok()?;
        let listed = fd.try_clone().ok()?;
        let mut dir = Dir::from_fd(listed).ok()?;
        let mut out = Vec::new();
        for e in dir.iter().flatten() {
            if out.len() >= MAX_LISTING {
                break;
            }
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." || !self.allowed(name) {
                continue;
            }
            // The entry itself, never what a link leads to.
            let Ok(mut st) = fstatat(&fd, e.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            if is_kind(&st, libc::S_IFLNK) {
                // A link is shown as what it leads to only if that lies beneath the root;
                // otherwise by its name alone.
                let mut to = path.to_vec();
                to.push(name.to_vec());
                match self
                    .open(&to, OFlag::O_PATH)
                    .ok()
                    .and_then(|l| fstat(&l).ok())
                {
                    Some(target) => st = target,
                    None => {
                        out.push(Entry {
                            name: name.to_vec(),
                            dir: false,
                            len: None,
                        });
                        continue;
                    }
                }
            }
            let dir = is_kind(&st, libc::S_IFDIR);
            if !dir && !is_kind(&st, libc::S_IFREG) {
                continue;
            }
            out.push(Entry {
                name: name.to_vec(),
                dir,
                len: u64::try_from(st.st_size).ok(),
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

    /// A root with a dotfile, a dot-directory, links in and out (to a file and a directory).
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let root = base.join("www");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::create_dir_all(base.join("outdir")).unwrap();
        fs::write(root.join("sub/a.txt"), b"hello").unwrap();
        fs::write(root.join(".env"), b"KEY=1").unwrap();
        fs::write(root.join(".git/config"), b"[core]").unwrap();
        fs::write(base.join("secret"), b"SECRET!").unwrap();
        fs::write(base.join("outdir/x"), b"x").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("link_secret.txt")).unwrap();
        std::os::unix::fs::symlink(base.join("outdir"), root.join("link_dir")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("sub/up")).unwrap();
        std::os::unix::fs::symlink("../sub/a.txt", root.join("sub/self")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
        (tmp, root)
    }

    fn read(l: Lookup) -> Vec<u8> {
        match l {
            Lookup::File(mut f) => {
                let mut v = Vec::new();
                f.reader.read_to_end(&mut v).unwrap();
                v
            }
            other => panic!("{other:?}"),
        }
    }

    /// Both ways of opening: beneath the root fd, and the fallback for kernels without openat2.
    fn roots(root: &Path) -> [DirRoot; 2] {
        let r = DirRoot::new(root).unwrap();
        assert!(r.beneath, "openat2 is missing on this kernel");
        let old = DirRoot {
            beneath: false,
            ..r.clone()
        };
        [r, old]
    }

    #[test]
    fn links_out_are_refused_and_links_in_followed() {
        let (_tmp, root) = tree();
        for mut r in roots(&root) {
            assert_eq!(read(r.lookup(&seg("sub/self"))), b"hello");
            assert!(matches!(
                r.lookup(&seg("link_secret.txt")),
                Lookup::Forbidden
            ));
            assert!(matches!(r.lookup(&seg("link_dir")), Lookup::Forbidden));
            assert!(matches!(r.lookup(&seg("link_dir/x")), Lookup::Forbidden));
            assert!(matches!(r.lookup(&seg("sub/up")), Lookup::Forbidden));
            assert!(matches!(r.lookup(&seg("dangling")), Lookup::NotFound));
            assert!(r.list(&seg("link_dir")).is_none());
        }
    }

    #[test]
    fn listings_never_show_what_lies_outside() {
        let (_tmp, root) = tree();
        for mut r in roots(&root) {
            let entries = r.list(&[]).unwrap();
            let e = |n: &str| entries.iter().find(|e| e.name == n.as_bytes()).cloned();
            // A link out: its name only, neither size nor directory.
            for out in ["link_secret.txt", "link_dir", "dangling"] {
                let got = e(out).unwrap_or_else(|| panic!("{out} not listed"));
                assert_eq!((got.dir, got.len), (false, None), "{out}");
            }
            assert_eq!(e("sub").map(|e| e.dir), Some(true));
            let sub = r.list(&seg("sub")).unwrap();
            let names: Vec<_> = sub.iter().map(|e| (e.name.clone(), e.len)).collect();
            // A link inside the root is what it leads to.
            assert_eq!(
                names,
                [
                    (b"a.txt".to_vec(), Some(5)),
                    (b"self".to_vec(), Some(5)),
                    (b"up".to_vec(), None)
                ]
            );
        }
    }

    #[test]
    fn dotfiles_hidden_unless_asked_for() {
        let (_tmp, root) = tree();
        let mut r = DirRoot::new(&root).unwrap();
        assert!(matches!(r.lookup(&seg(".env")), Lookup::NotFound));
        assert!(matches!(r.lookup(&seg(".git/config")), Lookup::NotFound));
        assert!(matches!(r.lookup(&seg(".git")), Lookup::NotFound));
        assert!(r.list(&seg(".git")).is_none());
        let names: Vec<_> = r.list(&[]).unwrap().into_iter().map(|e| e.name).collect();
        assert!(!names.iter().any(|n| n.starts_with(b".")), "{names:?}");
        let mut r = r.dotfiles(true);
        assert_eq!(read(r.lookup(&seg(".env"))), b"KEY=1");
        assert_eq!(read(r.lookup(&seg(".git/config"))), b"[core]");
        let names: Vec<_> = r.list(&[]).unwrap().into_iter().map(|e| e.name).collect();
        assert!(names.contains(&b".env".to_vec()) && names.contains(&b".git".to_vec()));
    }

    #[test]
    fn long_names_are_not_found() {
        let (_tmp, root) = tree();
        for mut r in roots(&root) {
            let long = vec![b"a".repeat(256)];
            assert!(matches!(r.lookup(&long), Lookup::NotFound));
            let long = vec![b"sub".to_vec(), b"b".repeat(300)];
            assert!(matches!(r.lookup(&long), Lookup::NotFound));
            assert!(matches!(r.lookup(&[b"c".repeat(255)]), Lookup::NotFound));
        }
    }

    #[test]
    fn fifos_and_unreadable_files_are_forbidden() {
        let (_tmp, root) = tree();
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        let mut r = DirRoot::new(&root).unwrap();
        // Refused before it is opened: opening a FIFO for reading could block.
        assert!(matches!(r.lookup(&seg("fifo")), Lookup::Forbidden));
        let names: Vec<_> = r.list(&[]).unwrap().into_iter().map(|e| e.name).collect();
        assert!(!names.contains(&b"fifo".to_vec()));
    }
}
