//! Fuzz target `rpc_frame`: see `qpool_fuzz::rpc_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::rpc_frame(data));
