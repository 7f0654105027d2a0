//! The examples do what their documentation says, against the real kernel.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::{Tunhost, example, in_netns, pattern};

#[test]
fn echo_server_example_echoes() {
    require_root!();
    let bin = example("echo_server");
    in_netns(move || {
        let _h = Tunhost::start_program(&bin, &[], "echo on ");
        let mut s = TcpStream::connect(("192.0.2.2", 7)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data = pattern(100_000, 3);
        s.write_all(&data).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert!(back == data, "echo_server example: echoed bytes differ");
    });
}
