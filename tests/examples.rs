//! The examples do what their documentation says, against the real kernel.

mod common;

use common::{Tunhost, assert_echoes, example, in_netns};

#[test]
fn echo_server_example_echoes() {
    require_root!();
    let bin = example("echo_server");
    in_netns(|| {
        let _h = Tunhost::start_program(&bin, &[], "echo on ");
        assert_echoes(("192.0.2.2", 7), 100_000, 3);
    });
}
