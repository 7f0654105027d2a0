//! A static-file HTTP/1.1 server on a userspace host, with the tunhost library.
//!
//! ```text
//! sudo cargo run --example http_server -- ./www     # TUN tun0, host 192.0.2.2, kernel 192.0.2.1
//! curl http://192.0.2.2/                            # the files below ./www
//! sudo cargo run --example http_server              # no directory: the host's status page
//! ```
//! Ctrl-C stops it.

use tunhost::services::TcpService;
use tunhost::services::http::{Content, Http, files::DirRoot};
use tunhost::smoltcp::time::Duration;
use tunhost::{Config, Host, Kind, ListenerConfig, Stop, TunTapConfig};

fn main() -> Result<(), tunhost::Error> {
    env_logger::init();
    let root = std::env::args().nth(1);

    // The device: TUN "tun0", created if it does not exist, kernel side 192.0.2.1/24, link up.
    let mut dev = TunTapConfig::new("tun0", Kind::Tun);
    dev.peer = Some("192.0.2.1/24".parse().expect("valid CIDR"));

    // The host: its own address, no built-in services.
    let config = Config {
        addrs: vec!["192.0.2.2/24".parse().expect("valid CIDR")],
        services: Vec::new(),
        ..Config::default()
    };
    let mut host = Host::open(&dev, config)?;

    // What to serve: a directory (nothing outside it, ever), or the status page the host keeps
    // up to date on every turn of its loop.
    let content = match &root {
        Some(dir) => Content::Files(Box::new(DirRoot::new(dir)?)),
        None => Content::Status(host.status().clone()),
    };
    // `Date` needs wall time: the host's clock starts at zero, so map it once, here.
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let http = Http::new(content, Duration::from_secs(10), epoch);

    // Port 80, with 128 handshakes allowed to wait at once (enough for `ab -c 64`).
    let listener = ListenerConfig {
        backlog: 128,
        ..ListenerConfig::default()
    };
    host.add_service(|sockets| TcpService::new(sockets, 80, listener, http));

    let stop = Stop::new()?;
    stop.on_signals()?;
    eprintln!(
        "http on 192.0.2.2:80 via tun0 ({}); try: curl http://192.0.2.2/",
        root.as_deref().unwrap_or("status page")
    );
    host.run(&stop)
}
