//! A static-file HTTP/1.1 server on a userspace host, with the tunhost library's builder.
//!
//! ```text
//! sudo cargo run --example http_server -- ./www     # TUN tun0, host 192.0.2.2, kernel 192.0.2.1
//! curl http://192.0.2.2/                            # the files below ./www
//! sudo cargo run --example http_server              # no directory: the host's status page
//! ```
//! Ctrl-C stops it.

use std::path::PathBuf;

use tunhost::link::{Kind, TunTapConfig};
use tunhost::live::Live;
use tunhost::services::ServiceSpec;

fn main() -> Result<(), tunhost::Error> {
    env_logger::init();
    let root = std::env::args().nth(1).map(PathBuf::from);

    let mut live = Live::new(TunTapConfig::new("tun0", Kind::Tun));
    live.device.peers = vec!["192.0.2.1/24".parse().expect("valid CIDR")];
    // HTTP on port 80: the files below `root` (nothing outside it, ever), or else the status
    // page the host keeps up to date on every turn of its loop.
    live.services.services = vec![ServiceSpec::Http(80)];
    live.services.http.root = root.clone();

    let mut host = live.open()?;
    let what = root.map_or("status page".into(), |r| r.display().to_string());
    eprintln!("http on 192.0.2.2:80 via tun0 ({what}); try: curl http://192.0.2.2/");
    host.run()
}
