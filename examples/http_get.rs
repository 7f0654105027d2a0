//! An HTTP GET from a userspace host, with the tunhost library: the body goes to stdout.
//!
//! ```text
//! sudo ip tuntap add dev tun9 mode tun && sudo ip addr add 198.51.100.1/24 dev tun9 \
//!   && sudo ip link set tun9 up                    # a device the kernel side configured
//! python3 -m http.server --bind 198.51.100.1 8000 &
//! sudo cargo run --example http_get -- http://198.51.100.1:8000/ > index.html
//! ```

use std::io::Write;

use tunhost::client::http::GetOptions;
use tunhost::client::{Url, get};
use tunhost::link::{Kind, TunTapConfig};
use tunhost::live::Live;

fn main() -> Result<(), tunhost::Error> {
    env_logger::init();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://198.51.100.1:8000/".to_string());
    let url = Url::parse(&url)?;

    // Attach to tun9 as it is: no address is set on the kernel side (`peer` stays `None`).
    let mut live = Live::new(TunTapConfig::new("tun9", Kind::Tun));
    live.host.addrs = vec!["198.51.100.2/24".parse().expect("valid CIDR")];
    let mut host = live.open()?;

    // GET: the head first (any status), then, for a 2xx, the body in pieces as it arrives.
    let mut out = std::io::stdout().lock();
    let mut bytes = 0;
    let (host, stop) = host.parts();
    get(
        host,
        &url,
        GetOptions::default(),
        Some(stop),
        |head| {
            eprintln!("{} {}", head.status, head.reason);
            Ok(())
        },
        |body| {
            bytes += body.len();
            Ok(out.write_all(body)?)
        },
    )?;
    out.flush().map_err(|source| tunhost::Error::File {
        path: "stdout".into(),
        op: "write",
        source,
    })?;
    eprintln!("{bytes} bytes from {}", url.text);
    Ok(())
}
