//! [`Stop`]: a handle that ends [`Host::run`](super::Host::run) from another thread or from a
//! signal.
//!
//! Signals go through the `signal-hook` crate: its handler saves and restores `errno`, and the
//! handlers a [`Stop`] installs are removed when its last clone is dropped. The first SIGINT or
//! SIGTERM asks the loop to stop gracefully; a second one ends the process at once (exit status
//! 130 for SIGINT, 143 for SIGTERM), as a user pressing Ctrl-C twice expects.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::error::{HostError, Result};

/// A handle that stops [`Host::run`](super::Host::run). Clones share the same state.
#[derive(Clone, Debug)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Set by [`Stop::stop`] and by the signal handlers.
    stopped: Arc<AtomicBool>,
    /// Readable once the host should stop: the loop sleeps on it next to the device.
    wake_rx: UnixStream,
    /// Written by [`Stop::stop`] and by the signal handlers.
    wake_tx: UnixStream,
    /// The signal handlers installed by [`Stop::on_signals`], removed on drop.
    handlers: Mutex<Vec<SigId>>,
}

impl Stop {
    /// A handle that is not stopped.
    pub fn new() -> Result<Stop> {
        let stop_err = |source| HostError::Stop {
            op: "create the stop handle's socket pair",
            source,
        };
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(stop_err)?;
        for s in [&wake_rx, &wake_tx] {
            s.set_nonblocking(true).map_err(stop_err)?;
        }
        Ok(Stop {
            inner: Arc::new(Inner {
                stopped: Arc::new(AtomicBool::new(false)),
                wake_rx,
                wake_tx,
                handlers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Ask the host to stop; a host waiting for packets wakes up at once.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        // A full socket buffer already wakes the loop: a failed write loses nothing.
        let _ = (&self.inner.wake_tx).write(&[1]);
    }

    /// Whether `stop` was called, or a signal arrived after `on_signals`.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Make SIGINT and SIGTERM stop this handle; a second one exits the process at once. The
    /// handlers stay until the last clone of this handle is dropped.
    pub fn on_signals(&self) -> Result<()> {
        let mut handlers = self
            .inner
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (sig, status) in [(SIGINT, 130), (SIGTERM, 143)] {
            let err = |source| HostError::Stop {
                op: "install a signal handler",
                source,
            };
            // Registered first, so it sees the flag as the previous signal left it.
            let exit = signal_hook::flag::register_conditional_shutdown(
                sig,
                status,
                Arc::clone(&self.inner.stopped),
            )
            .map_err(err)?;
            handlers.push(exit);
            let flag =
                signal_hook::flag::register(sig, Arc::clone(&self.inner.stopped)).map_err(err)?;
            handlers.push(flag);
            let wake = self.inner.wake_tx.try_clone().map_err(err)?;
            handlers.push(signal_hook::low_level::pipe::register(sig, wake).map_err(err)?);
        }
        Ok(())
    }

    /// The descriptor that becomes readable when the host should stop, for a loop that sleeps
    /// on it next to its device (see [`crate::link::wait::readable`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.wake_rx.as_fd()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let handlers = self.handlers.get_mut().unwrap_or_else(|e| e.into_inner());
        for id in handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
