//! See `tunhost::fuzzing::pcap_reader`: any bytes as a capture; what reads must round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunhost::fuzzing::pcap_reader(data));
