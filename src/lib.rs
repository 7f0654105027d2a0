//! tunhost: host your own IP address in userspace on a Linux TUN or TAP device.
//!
//! A [`Host`] bridges a TUN/TAP file descriptor into a smoltcp interface that answers ARP (TAP),
//! ICMP echo, TCP and UDP, and runs small [`services`] (echo, discard, chargen) on it. The kernel
//! on the other side of the device is an ordinary peer: `ping`, `nc` and sockets talk to the host
//! as to another machine.
//!
//! ```no_run
//! use tunhost::{Config, Host, Stop, TunTapConfig, tuntap::Kind};
//!
//! let mut dev = TunTapConfig::new("tun0", Kind::Tun);
//! dev.peer = Some("192.0.2.1/24".parse().unwrap());
//! let mut host = Host::open(&dev, Config::default())?;
//! let stop = Stop::new()?;
//! stop.on_signals()?;
//! host.run(&stop)?;
//! # Ok::<(), tunhost::Error>(())
//! ```
//!
//! The layers, one module each: [`tuntap`] (the kernel side), [`device`] (the `phy::Device`),
//! [`host`] (interface, sockets, loop), [`listener`] (TCP backlog), [`services`]; [`trace`] (a
//! `phy::Device` wrapper writing every packet to pcapng/pcap), [`capture`] (reading captures) and
//! [`replay`] (a capture through the same host, offline, on a virtual clock).

pub mod capture;
pub mod client;
pub mod clock;
pub mod device;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod host;
pub mod listener;
pub mod replay;
pub mod services;
pub mod status;
pub mod trace;
pub mod tuntap;
pub mod vnet;

pub use clock::{Clock, SystemClock, VirtualClock};
pub use device::{Housekeeping, TunTapDevice};
pub use error::{Error, Result};
pub use host::{Config, Host, ServiceSpec, Stop};
pub use listener::{Listener, ListenerConfig};
pub use services::HttpConfig;
pub use status::{HostStatus, StatusBoard};
pub use tuntap::{Kind, TunTap, TunTapConfig};

pub use smoltcp;
