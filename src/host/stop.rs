//! [`Stop`]: a handle that ends [`Host::run`](super::Host::run) from another thread or from a
//! signal.
//!
//! Signals go through the `signal-hook` crate: its handler saves and restores `errno`, and the
//! actions a [`Stop`] installs are removed when its last clone is dropped, after which SIGINT and
//! SIGTERM have their default effect again (signal-hook keeps its handler installed, so the
//! default is emulated). The first SIGINT or SIGTERM asks the loop to stop gracefully; a second
//! one has its default effect at once (the process ends, killed by that signal), as a user
//! pressing Ctrl-C twice expects.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

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

    /// Make SIGINT and SIGTERM stop this handle; a second one has its default effect at once
    /// (the process ends). The actions stay until the last clone of this handle is dropped.
    pub fn on_signals(&self) -> Result<()> {
        let mut resting = RESTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut handlers = self
            .inner
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !handlers.is_empty() {
            return Ok(());
        }
        if resting.listeners == 0 {
            for id in resting.defaults.drain(..) {
                signal_hook::low_level::unregister(id);
            }
        }
        resting.listeners += 1;
        let err = |source| HostError::Stop {
            op: "install a signal handler",
            source,
        };
        let result = (|| {
            for sig in [SIGINT, SIGTERM] {
                // Registered first, so it sees the flag as the previous signal left it.
                let stopped = Arc::clone(&self.inner.stopped);
                handlers.push(flag::register_conditional_default(sig, stopped).map_err(err)?);
                let stopped = Arc::clone(&self.inner.stopped);
                handlers.push(flag::register(sig, stopped).map_err(err)?);
                let wake = self.inner.wake_tx.try_clone().map_err(err)?;
                handlers.push(signal_hook::low_level::pipe::register(sig, wake).map_err(err)?);
            }
            Ok(())
        })();
        // Drop undoes what was registered; with nothing registered, undo the count here.
        if handlers.is_empty() {
            resting.listeners -= 1;
        }
        result
    }

    /// The descriptor that becomes readable when the host should stop, for a loop that sleeps
    /// on it next to its device (see [`crate::link::wait::readable`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.wake_rx.as_fd()
    }
}

/// What SIGINT and SIGTERM do while no [`Stop`] listens for them.
struct Resting {
    /// Stop handles whose actions are installed.
    listeners: usize,
    /// Actions that emulate the default effect, installed once the last listener is gone.
    defaults: Vec<SigId>,
}

static RESTING: Mutex<Resting> = Mutex::new(Resting {
    listeners: 0,
    defaults: Vec::new(),
});

impl Drop for Inner {
    fn drop(&mut self) {
        let handlers = self.handlers.get_mut().unwrap_or_else(|e| e.into_inner());
        if handlers.is_empty() {
            return;
        }
        let mut resting = RESTING.lock().unwrap_or_else(|e| e.into_inner());
        for id in handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        resting.listeners -= 1;
        if resting.listeners == 0 {
            for sig in [SIGINT, SIGTERM] {
                let always = Arc::new(AtomicBool::new(true));
                // Cannot fail for these signals; if it did, the signal would be ignored.
                if let Ok(id) = flag::register_conditional_default(sig, always) {
                    resting.defaults.push(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::time::Duration;

    #[test]
    fn a_signal_stops_the_handle_and_wakes_its_fd() {
        let stop = Stop::new().unwrap();
        assert!(!stop.is_stopped());
        stop.on_signals().unwrap();
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(stop.is_stopped());
        let woke = crate::link::wait::readable(stop.fd(), None, Some(Duration::from_secs(1)));
        assert!(woke.unwrap(), "the stop fd is readable after the signal");
        // Dropping the handle removes its actions (SIGTERM would now end the process: not
        // raised here, it is checked end to end by the CLI tests).
        drop(stop);
        let resting = RESTING.lock().unwrap();
        assert_eq!((resting.listeners, resting.defaults.len()), (0, 2));
    }

    #[test]
    fn stop_wakes_a_waiting_loop_from_another_thread() {
        let stop = Stop::new().unwrap();
        let other = stop.clone();
        std::thread::spawn(move || other.stop());
        let woke = crate::link::wait::readable(stop.fd(), None, Some(Duration::from_secs(5)));
        assert!(woke.unwrap() && stop.is_stopped());
    }
}
