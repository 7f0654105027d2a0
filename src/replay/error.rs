//! What can go wrong replaying a capture.

use std::fmt;
use std::io;

use crate::host::HostError;
use crate::link::io_desc;
use crate::pcap::CaptureError;
use crate::services::ServiceError;

/// A replay that could not be done.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayError {
    /// A MAC was given for a capture of IP packets (replayed on an IP host).
    MacOnIpCapture,
    /// The capture cannot be read on (a link type replay cannot decode, a file that cannot be
    /// read again from the start). It does not know the file's name: the caller adds it.
    Capture(CaptureError),
    /// The host could not be built.
    Host(HostError),
    /// The services could not be built.
    Service(ServiceError),
    /// The output trace could not be written.
    Trace {
        /// Where the trace goes.
        label: String,
        /// The system's error.
        source: io::Error,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Capture(e) => e.fmt(f),
            ReplayError::MacOnIpCapture => write!(
                f,
                "a MAC is for Ethernet captures; this capture holds IP packets (replayed on an IP \
                 host)"
            ),
            ReplayError::Host(e) => e.fmt(f),
            ReplayError::Service(e) => e.fmt(f),
            ReplayError::Trace { label, source } => {
                write!(f, "cannot write the trace {label}: {}", io_desc(source))
            }
        }
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Host and Service wrap transparently: the cause is theirs.
        match self {
            ReplayError::Host(e) => std::error::Error::source(e),
            ReplayError::Service(e) => std::error::Error::source(e),
            ReplayError::Trace { source, .. } => Some(source),
            ReplayError::Capture(e) => Some(e),
            ReplayError::MacOnIpCapture => None,
        }
    }
}

wrap_errors!(ReplayError: Capture(CaptureError), Host(HostError), Service(ServiceError));

/// The replay layer's result type.
pub type Result<T, E = ReplayError> = std::result::Result<T, E>;
