//! What can go wrong building or running a host.

use std::fmt;
use std::io;

use super::config::ConfigError;
use crate::link::{LinkError, io_desc};

/// A failure of the host layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// The configuration cannot be taken.
    Config(ConfigError),
    /// The device failed: opening it, or waiting on it.
    Link(LinkError),
    /// The stop handle could not be made, or signal handlers installed.
    Stop {
        /// What was attempted.
        op: &'static str,
        /// The system's error.
        source: io::Error,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Config(e) => e.fmt(f),
            HostError::Link(e) => e.fmt(f),
            HostError::Stop { op, source } => write!(f, "cannot {op}: {}", io_desc(source)),
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent wrappers: their Display is the inner error's.
            HostError::Config(e) => e.source(),
            HostError::Link(e) => e.source(),
            HostError::Stop { source, .. } => Some(source),
        }
    }
}

wrap_errors!(HostError: Config(ConfigError), Link(LinkError));

/// The host layer's result type.
pub type Result<T, E = HostError> = std::result::Result<T, E>;
