//! What can go wrong in a client request.

use std::fmt;

use crate::host::HostError;

/// A failed client request: the URL or address at fault, and what went wrong.
#[derive(Debug)]
pub struct ClientError {
    /// The URL or address at fault, as given.
    pub target: String,
    /// What went wrong.
    pub kind: ClientErrorKind,
}

/// What went wrong in a client request.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientErrorKind {
    /// The URL cannot be used.
    BadUrl(&'static str),
    /// The client's socket could not be bound or connected.
    Socket(String),
    /// The peer (`address:port`) refused or reset the connection before it was established.
    Refused(String),
    /// No progress for the configured time.
    TimedOut(String),
    /// The response breaks HTTP/1.1.
    BadResponse(String),
    /// The server answered with a status other than 2xx.
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The connection closed before a response came.
    ClosedEarly,
    /// Stopped (Ctrl-C) before the request was done.
    Interrupted,
    /// The host's loop failed (waiting on the device).
    Host(HostError),
    /// The caller's output callback failed.
    Output(Box<dyn std::error::Error + Send + Sync>),
    /// A name could not be resolved: why.
    Dns(String),
}

impl ClientError {
    pub(crate) fn new(target: impl Into<String>, kind: ClientErrorKind) -> ClientError {
        ClientError {
            target: target.into(),
            kind,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = &self.target;
        match &self.kind {
            ClientErrorKind::BadUrl(why) => write!(f, "{target}: {why}"),
            ClientErrorKind::Socket(why) => write!(f, "{target}: {why}"),
            ClientErrorKind::Refused(peer) => {
                write!(f, "{target}: connection refused (or reset) by {peer}")
            }
            ClientErrorKind::TimedOut(what) => write!(f, "{target}: timed out: {what}"),
            ClientErrorKind::BadResponse(why) => write!(f, "{target}: {why}"),
            ClientErrorKind::Status { status, reason } => {
                write!(f, "{target}: server answered {status} {reason}")
            }
            ClientErrorKind::ClosedEarly => {
                write!(f, "{target}: connection closed before a response")
            }
            ClientErrorKind::Interrupted => write!(f, "{target}: interrupted"),
            ClientErrorKind::Host(e) => e.fmt(f),
            ClientErrorKind::Output(e) => e.fmt(f),
            ClientErrorKind::Dns(why) => write!(f, "cannot resolve {target}: {why}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ClientErrorKind::Host(e) => e.source(),
            ClientErrorKind::Output(e) => e.source(),
            _ => None,
        }
    }
}

/// The client layer's result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
