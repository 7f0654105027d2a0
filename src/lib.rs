//! tunhost: host your own IP address in userspace on a Linux TUN or TAP device.
//!
//! A [`Host`] bridges a TUN/TAP file descriptor into a smoltcp interface that answers ARP (TAP),
//! ICMP echo, TCP and UDP, and runs small [`services`] (echo, discard, chargen, HTTP/1.1) on it.
//! The kernel on the other side of the device is an ordinary peer: `ping`, `nc`, `curl` and
//! sockets talk to the host as to another machine.
//!
//! ```no_run
//! use tunhost::live::Live;
//! use tunhost::link::{Kind, TunTapConfig};
//! use tunhost::services::ServiceSpec;
//!
//! let mut live = Live::new(TunTapConfig::new("tun0", Kind::Tun));
//! live.device.peers = vec!["192.0.2.1/24".parse().unwrap()];
//! live.services.services = vec![ServiceSpec::Echo(7), ServiceSpec::UdpEcho(7)];
//! let mut host = live.open()?;
//! host.run()?;
//! # Ok::<(), tunhost::Error>(())
//! ```
//!
//! # Layers
//!
//! Each folder of `src/` is a layer; a layer imports only the layers above it in this list
//! (lower layers), never one below it, and no two modules import each other
//! (`tests/layers.rs` checks it):
//!
//! | layer | job |
//! |---|---|
//! | [`sandbox`] | least privilege: drop to an unprivileged user with no capabilities, and the seccomp allowlist (imports nothing of the crate) |
//! | [`link`] | open and configure TUN/TAP (`tuntap`), the `virtio_net_hdr` (`vnet`), the `phy::Device` (`device`), a bad link on purpose (`faults`), waiting on the fd (`wait`), the machine's own addresses and routes (`kernel`) |
//! | [`pcap`] | pcap/pcapng: the [`Pcap`](pcap::Pcap) tracing device wrapper, the writer, the capture reader |
//! | [`host`] | [`Host`]: interface + sockets + clock + the poll loop; config, stop and signals, status board, ingress guard, TCP congestion control and timestamps (`tcp`), the [`Service`](host::Service) trait |
//! | [`services`] | the TCP listener, echo/discard/chargen/UDP echo, HTTP/1.1, and the factory from a [`ServiceSpec`](services::ServiceSpec) |
//! | [`client`] | the host as a client: ping, HTTP GET |
//! | [`replay`] | a capture through the same host, offline, on a virtual clock |
//! | [`live`] | device + tracer + host + services + signals in one call, as the CLI runs them |
//! | [`error`] | the crate's [`Error`], wrapping each layer's own error |
//!
//! The binary (`src/bin/tunhost/`) is a thin shell over [`live`], [`replay`] and [`client`].
//! Programs that keep their own smoltcp loop use [`link`] and [`pcap`] alone
//! (`examples/own_loop.rs`).

#![warn(missing_docs, unreachable_pub)]

/// `impl From<Inner> for Outer` for each `Variant(Inner)`: how a layer's error wraps the errors
/// of the layers below it.
macro_rules! wrap_errors {
    ($outer:ty: $($variant:ident($inner:ty)),* $(,)?) => {
        $(impl From<$inner> for $outer {
            fn from(e: $inner) -> Self {
                <$outer>::$variant(e)
            }
        })*
    };
}

pub mod sandbox;

pub mod link;
pub mod pcap;

pub mod host;
pub mod services;

pub mod client;
pub mod replay;

pub mod error;
pub mod live;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use error::{Error, Result};
pub use host::{Config, Host, Stop};

pub use smoltcp;
