//! The host's status, as a service may show it (the HTTP status page).
//!
//! The host fills a [`StatusBoard`] on every turn of its loop, before the services run; a service
//! that was given a clone of the board reads a [`HostStatus`] snapshot from it. The board is the
//! only thing a service learns about the host: services still never touch the device.

use std::sync::{Arc, Mutex};

use smoltcp::time::Duration;
use smoltcp::wire::IpCidr;

/// What the host reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStatus {
    /// The device's name and kind, e.g. `tun tunhost0` (empty when the device has no name).
    pub device: String,
    /// The host's own addresses.
    pub addrs: Vec<IpCidr>,
    /// The host's clock at the last turn of the loop (it starts at zero: this is the uptime).
    pub uptime: Duration,
    /// Packets read from the device (sent by the peer).
    pub rx_packets: u64,
    /// Bytes read from the device (sent by the peer).
    pub rx_bytes: u64,
    /// Packets written to the device (sent by the host).
    pub tx_packets: u64,
    /// Bytes written to the device (sent by the host).
    pub tx_bytes: u64,
    /// TCP connections in an active state (being served or closing).
    pub connections: usize,
    /// The services the host runs, e.g. `http/80`.
    pub services: Vec<String>,
    /// The DHCP lease in force, as one line, when the host takes its address from DHCP.
    pub lease: Option<String>,
}

/// A shared, cheaply cloned handle on the host's [`HostStatus`].
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<HostStatus>>);

impl StatusBoard {
    /// A board with an empty status.
    pub fn new() -> StatusBoard {
        StatusBoard::default()
    }

    /// A copy of the latest status.
    pub fn get(&self) -> HostStatus {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Change the status in place.
    pub fn update(&self, f: impl FnOnce(&mut HostStatus)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }
}
