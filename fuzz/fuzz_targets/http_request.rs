//! See `tunhost::fuzzing::http_request` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunhost::fuzzing::http_request(data));
