//! See `tunhost::fuzzing::replay`: any bytes as a capture file, replayed through a host.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunhost::fuzzing::replay(data));
