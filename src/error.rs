//! The crate's error type: one variant per layer, each wrapping that layer's own error.
//!
//! Every message names the device, address or file at fault, so that the CLI can print it on
//! one line and a library user can match on what went wrong. The library never panics on input:
//! what a user or a peer can get wrong ends up here. Messages name no command-line flag: advice
//! such as "try --mac" is the CLI's to add.

use std::fmt;
use std::io;

use crate::client::ClientError;
use crate::host::{ConfigError, HostError};
use crate::link::{LinkError, io_desc};
use crate::pcap::CaptureError;
use crate::replay::ReplayError;
use crate::sandbox::SandboxError;
use crate::services::ServiceError;

/// What went wrong, with the context needed to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The TUN/TAP device could not be opened, configured or waited on.
    Link(LinkError),
    /// The host could not be built or run.
    Host(HostError),
    /// The services could not be built.
    Service(ServiceError),
    /// A file that cannot be read as a capture.
    Capture {
        /// The file.
        path: String,
        /// What is wrong with it.
        source: CaptureError,
    },
    /// A capture could not be replayed.
    Replay(ReplayError),
    /// A client request failed.
    Client(ClientError),
    /// Privileges could not be dropped, or the seccomp filter installed.
    Sandbox(SandboxError),
    /// An I/O error on a named file.
    File {
        /// The file.
        path: String,
        /// What was attempted (`create`, `read`, ...).
        op: &'static str,
        /// The system's error.
        source: io::Error,
    },
}

impl Error {
    /// The layer's own error, for the variants that wrap one.
    fn layer(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Link(e) => Some(e),
            Error::Host(e) => Some(e),
            Error::Service(e) => Some(e),
            Error::Replay(e) => Some(e),
            Error::Client(e) => Some(e),
            Error::Sandbox(e) => Some(e),
            Error::Capture { .. } | Error::File { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Capture { path, source } => write!(f, "cannot replay {path}: {source}"),
            Error::File { path, op, source } => {
                write!(f, "cannot {op} {path}: {}", io_desc(source))
            }
            // A layer's error is wrapped transparently: its message is this one's.
            wrapper => wrapper.layer().map_or(Ok(()), |e| fmt::Display::fmt(e, f)),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Capture { source, .. } => Some(source),
            Error::File { source, .. } => Some(source),
            wrapper => wrapper.layer().and_then(|e| e.source()),
        }
    }
}

wrap_errors!(
    Error:
    Link(LinkError),
    Host(HostError),
    Service(ServiceError),
    Replay(ReplayError),
    Client(ClientError),
    Sandbox(SandboxError),
);

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Host(HostError::Config(e))
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Kind;
    use std::error::Error as _;

    fn errors() -> Vec<Error> {
        let eio = || io::Error::from_raw_os_error(libc::EIO);
        vec![
            LinkError::Busy {
                device: "tun0".into(),
            }
            .into(),
            LinkError::WrongKind {
                device: "tap0".into(),
                wanted: Kind::Tun,
            }
            .into(),
            LinkError::Io {
                device: "tun0".into(),
                op: "read",
                source: eio(),
            }
            .into(),
            ConfigError::NoAddress.into(),
            crate::host::HostError::from(LinkError::Gone {
                device: "tun0".into(),
            })
            .into(),
            ServiceError::DuplicatePort {
                proto: "tcp",
                port: 7,
            }
            .into(),
            ReplayError::MacOnIpCapture.into(),
            Error::File {
                path: "trace.pcapng".into(),
                op: "create",
                source: eio(),
            },
        ]
    }

    #[test]
    fn messages_name_the_culprit_and_no_cli_flag() {
        for e in errors() {
            let text = e.to_string();
            assert!(
                !text.contains("--"),
                "a library message names a flag: {text}"
            );
            assert!(!text.contains("os error"), "bare os error: {text}");
            assert!(!text.is_empty());
        }
        let busy = &errors()[0];
        assert!(busy.to_string().contains("tun0"), "{busy}");
    }

    #[test]
    fn the_cause_is_one_source_away_and_said_once() {
        let e = &errors()[2];
        let cause = e.source().expect("an I/O failure has a cause");
        assert_eq!(
            cause.to_string(),
            io::Error::from_raw_os_error(libc::EIO).to_string()
        );
        // The wrapper shows the layer's message itself, not a second copy of it.
        assert_eq!(e.to_string(), "device tun0: read failed: I/O error");
        assert!(errors()[0].source().is_none());
    }
}
