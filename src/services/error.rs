//! What can go wrong setting up services.

use std::fmt;
use std::io;

use crate::link::io_desc;

/// A failure of the services layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServiceError {
    /// Port 0 asked for.
    PortZero {
        /// `tcp` or `udp`.
        proto: &'static str,
    },
    /// Two services on one port.
    DuplicatePort {
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The port.
        port: u16,
    },
    /// The HTTP service's web root cannot be served.
    Root {
        /// The root as given.
        path: String,
        /// What failed.
        op: &'static str,
        /// Why it cannot be served.
        source: io::Error,
    },
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::PortZero { proto } => {
                write!(f, "{proto} port 0 is not a valid service port")
            }
            ServiceError::DuplicatePort { proto, port } => {
                write!(f, "two services on {proto} port {port}")
            }
            ServiceError::Root { path, op, source } => {
                write!(f, "cannot {op} {path}: {}", io_desc(source))
            }
        }
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Root { source, .. } => Some(source),
            _ => None,
        }
    }
}
