//! See `tunhost::fuzzing::ingress_ip` for the input framing and the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunhost::fuzzing::ingress_ip(data));
