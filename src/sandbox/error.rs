//! What can go wrong giving up privileges.

use std::fmt;
use std::io;

/// A failure to look up, switch to or lock down an identity.
///
/// Messages name the user, group or step at fault and no command-line flag.
#[derive(Debug)]
#[non_exhaustive]
pub enum SandboxError {
    /// No user (or group) of that name, and it is not a number.
    NoSuch {
        /// `"user"` or `"group"`.
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// The password or group database could not be read.
    Lookup {
        /// `"user"` or `"group"`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// This process may not become that user (only root may switch users).
    Switch {
        /// The identity asked for.
        to: String,
        /// Why.
        source: io::Error,
    },
    /// A step of the switch failed.
    Drop {
        /// `setgroups`, `setresgid`, `setresuid` or `check`.
        step: &'static str,
        /// The identity switched to.
        to: String,
        /// Why.
        source: io::Error,
    },
    /// The capability sets could not be cleared.
    Caps(io::Error),
    /// `PR_SET_NO_NEW_PRIVS` could not be set.
    NoNewPrivs(io::Error),
    /// The seccomp filter could not be built or installed.
    Filter(io::Error),
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::NoSuch { what, name } => write!(f, "no such {what}: {name}"),
            SandboxError::Lookup { what, name, .. } => write!(f, "cannot look up {what} {name}"),
            SandboxError::Switch { to, .. } => write!(f, "cannot switch to {to}"),
            SandboxError::Drop { step, to, .. } => {
                write!(f, "cannot switch to {to} ({step} failed)")
            }
            SandboxError::Caps(_) => write!(f, "cannot drop capabilities"),
            SandboxError::NoNewPrivs(_) => write!(f, "cannot set no_new_privs"),
            SandboxError::Filter(_) => write!(f, "cannot install the seccomp filter"),
        }
    }
}

impl std::error::Error for SandboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SandboxError::NoSuch { .. } => None,
            SandboxError::Lookup { source, .. }
            | SandboxError::Switch { source, .. }
            | SandboxError::Drop { source, .. } => Some(source),
            SandboxError::Caps(e) | SandboxError::NoNewPrivs(e) | SandboxError::Filter(e) => {
                Some(e)
            }
        }
    }
}
