//! The link layer: a Linux TUN or TAP device as a smoltcp `phy::Device`.
//!
//! - [`tuntap`] opens `/dev/net/tun` and configures the device and its kernel side (nix ioctls);
//!   it knows nothing of smoltcp.
//! - [`vnet`] is the `virtio_net_hdr` that carries offloads (checksums, TCP segmentation), and
//!   the one Internet checksum (RFC 1071) of the crate.
//! - [`device`] is the `phy::Device` over the file descriptor ([`TunTapDevice`]), with the
//!   [`Housekeeping`] hook that wrappers such as a tracer use.
//! - [`faults`] makes the link bad on purpose: a `phy::Device` wrapper that drops, corrupts,
//!   duplicates, reorders, delays and rate-limits packets from a seed ([`Faults`]).
//! - [`kernel`] reads the machine's own addresses and routes, and says which interface a subnet
//!   would collide with.
//! - [`wait`] sleeps on the file descriptor until a packet comes or a timeout passes: all a
//!   program that keeps its own loop needs (see `examples/own_loop.rs`).
//!
//! This is the lowest layer: it imports no other module of the crate.

pub mod device;
mod error;
pub mod faults;
pub mod kernel;
pub mod tuntap;
pub mod vnet;
pub mod wait;

pub use device::{Housekeeping, Stats, TunTapDevice};
pub use error::{LinkError, Result, io_desc};
pub use faults::{FaultConfig, FaultKind, FaultRecord, FaultStats, Faults, Impairment};
pub use kernel::{Conflict, KernelView};
pub use tuntap::{Kind, Offload, TunTap, TunTapConfig};
