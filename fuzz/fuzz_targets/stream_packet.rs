//! Fuzz target `stream_packet`: see `qpool_fuzz::stream_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::stream_packet(data));
