//! The library's error type.
//!
//! Every variant names the device, address or file at fault, so that the CLI can print it on one
//! line and a library user can match on what went wrong. The library never panics on input: what
//! a user or a peer can get wrong ends up here.

use std::fmt;

use nix::errno::Errno;

use crate::tuntap::Kind;

/// What went wrong, with the context needed to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/net/tun` could not be opened (missing module, no device node in a container, ...).
    TunUnavailable { path: String, errno: Errno },
    /// The kernel refused an operation for lack of privilege (root or CAP_NET_ADMIN needed).
    Permission { device: String, op: &'static str },
    /// The device exists and another process is attached to it.
    Busy { device: String },
    /// The device exists but is of the other kind (a TAP asked for as TUN, or the reverse), or was
    /// created with flags that do not match (multi-queue).
    WrongKind { device: String, wanted: Kind },
    /// The interface name is not usable.
    InvalidName { name: String, reason: &'static str },
    /// An MTU outside what the medium allows.
    MtuOutOfRange {
        device: String,
        mtu: u32,
        min: u32,
        max: u32,
    },
    /// Any other failed system call on a device, with the operation that failed.
    Device {
        device: String,
        op: &'static str,
        errno: Errno,
    },
    /// The host's configuration is inconsistent (e.g. a gateway outside every address's subnet).
    Config(String),
    /// A file that cannot be replayed: not a capture, truncated, an unsupported link type.
    Capture {
        path: String,
        problem: crate::capture::CaptureError,
    },
    /// An I/O error on a named file.
    File {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    /// A client request failed (refused, timed out, bad response, non-2xx status); `target` is
    /// the URL or address at fault.
    Client { target: String, msg: String },
}

impl Error {
    pub(crate) fn device(device: &str, op: &'static str, errno: Errno) -> Error {
        match errno {
            Errno::EPERM | Errno::EACCES => Error::Permission {
                device: device.to_string(),
                op,
            },
            _ => Error::Device {
                device: device.to_string(),
                op,
                errno,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TunUnavailable { path, errno } => write!(
                f,
                "cannot open {path}: {} (is the tun module loaded? try `modprobe tun`; in a \
                 container, pass the device through)",
                errno.desc()
            ),
            Error::Permission { device, op } => write!(
                f,
                "device {device}: {op}: permission denied; opening or configuring TUN/TAP \
                 devices needs root or CAP_NET_ADMIN (try sudo)"
            ),
            Error::Busy { device } => write!(
                f,
                "device {device} is busy: another process is attached to it (pick another name \
                 with --tun/--tap, or stop that process)"
            ),
            Error::WrongKind { device, wanted } => write!(
                f,
                "device {device} exists but is not a {wanted} device with these flags (use --{} \
                 {device}, or another name)",
                wanted.other()
            ),
            Error::InvalidName { name, reason } => {
                write!(f, "invalid device name {name:?}: {reason}")
            }
            Error::MtuOutOfRange {
                device,
                mtu,
                min,
                max,
            } => write!(
                f,
                "MTU {mtu} for device {device} is out of range (must be {min}..={max})"
            ),
            Error::Device { device, op, errno } => {
                write!(f, "device {device}: {op} failed: {}", errno.desc())
            }
            Error::Config(msg) => write!(f, "{msg}"),
            Error::Capture { path, problem } => write!(f, "cannot replay {path}: {problem}"),
            Error::File { path, op, source } => {
                write!(f, "cannot {op} {path}: {}", io_desc(source))
            }
            Error::Client { target, msg } => write!(f, "{target}: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// An I/O error as a person reads it: "No such file or directory", without Rust's
/// "(os error 2)" suffix.
pub fn io_desc(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
