//! What can go wrong opening, configuring and waiting on a TUN/TAP device.

use std::fmt;
use std::io;

use super::tuntap::Kind;

/// A failure of the link layer, naming the device (or path) at fault.
///
/// Messages say what failed and why; they name no command-line flag (the CLI adds its advice).
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkError {
    /// `/dev/net/tun` could not be opened (missing module, no device node in a container, ...).
    TunUnavailable {
        /// The path that was opened.
        path: String,
        /// Why it could not be.
        source: io::Error,
    },
    /// The kernel refused an operation for lack of privilege (root or CAP_NET_ADMIN needed).
    Permission {
        /// The device's name.
        device: String,
        /// What was attempted.
        op: &'static str,
    },
    /// The device exists and another process is attached to it.
    Busy {
        /// The device's name.
        device: String,
    },
    /// The device exists but is of the other kind (a TAP asked for as TUN, or the reverse), or was
    /// created with flags that do not match (multi-queue).
    WrongKind {
        /// The device's name.
        device: String,
        /// The kind that was asked for.
        wanted: Kind,
    },
    /// The interface name is not usable.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An MTU outside what the medium allows.
    MtuOutOfRange {
        /// The device's name.
        device: String,
        /// The MTU asked for.
        mtu: u32,
        /// The smallest MTU allowed.
        min: u32,
        /// The largest MTU allowed on this kind of device.
        max: u32,
    },
    /// The device went away while in use: it was deleted (`ip link del`), and the file
    /// descriptor now fails every read and write with `EBADFD`. Nothing can bring it back.
    Gone {
        /// The device's name.
        device: String,
    },
    /// The kernel's addresses or routes could not be read.
    KernelView {
        /// Where they were read from: `getifaddrs` or a file of `/proc/net`.
        from: String,
        /// Why they could not be.
        source: io::Error,
    },
    /// Any other failed system call on a device, with the operation that failed.
    Io {
        /// The device's name (or what was being set up, e.g. `poll`).
        device: String,
        /// What was attempted.
        op: &'static str,
        /// The system's error.
        source: io::Error,
    },
}

impl LinkError {
    /// A failed system call on `device`: [`LinkError::Permission`] for EPERM/EACCES, else
    /// [`LinkError::Io`].
    pub(crate) fn io(device: &str, op: &'static str, errno: nix::errno::Errno) -> LinkError {
        match errno {
            nix::errno::Errno::EPERM | nix::errno::Errno::EACCES => LinkError::Permission {
                device: device.to_string(),
                op,
            },
            _ => LinkError::Io {
                device: device.to_string(),
                op,
                source: io::Error::from_raw_os_error(errno as i32),
            },
        }
    }

    /// The device (or path) the error is about.
    pub fn device(&self) -> &str {
        match self {
            LinkError::TunUnavailable { path, .. } => path,
            LinkError::InvalidName { name, .. } => name,
            LinkError::KernelView { from, .. } => from,
            LinkError::Permission { device, .. }
            | LinkError::Busy { device }
            | LinkError::Gone { device }
            | LinkError::WrongKind { device, .. }
            | LinkError::MtuOutOfRange { device, .. }
            | LinkError::Io { device, .. } => device,
        }
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::TunUnavailable { path, source } => write!(
                f,
                "cannot open {path}: {} (is the tun module loaded? try `modprobe tun`; in a \
                 container, pass the device through)",
                io_desc(source)
            ),
            LinkError::Permission { device, op } => write!(
                f,
                "device {device}: {op}: permission denied; opening or configuring TUN/TAP \
                 devices needs root or CAP_NET_ADMIN"
            ),
            LinkError::Busy { device } => {
                write!(
                    f,
                    "device {device} is busy: another process is attached to it"
                )
            }
            LinkError::Gone { device } => {
                write!(f, "device {device} is gone (deleted while in use)")
            }
            LinkError::WrongKind { device, wanted } => write!(
                f,
                "device {device} exists but is not a {wanted} device with these flags"
            ),
            LinkError::InvalidName { name, reason } => {
                write!(f, "invalid device name {name:?}: {reason}")
            }
            LinkError::MtuOutOfRange {
                device,
                mtu,
                min,
                max,
            } => write!(
                f,
                "MTU {mtu} for device {device} is out of range (must be {min}..={max})"
            ),
            LinkError::KernelView { from, source } => write!(
                f,
                "cannot read the machine's addresses and routes from {from}: {}",
                io_desc(source)
            ),
            LinkError::Io { device, op, source } => {
                write!(f, "device {device}: {op} failed: {}", io_desc(source))
            }
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::TunUnavailable { source, .. }
            | LinkError::KernelView { source, .. }
            | LinkError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An I/O error as a person reads it: "No such file or directory", without Rust's
/// "(os error 2)" suffix.
pub fn io_desc(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// The link layer's result type.
pub type Result<T, E = LinkError> = std::result::Result<T, E>;
