//! Fuzz target `rpc_args`: see `qpool_fuzz::rpc_args`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::rpc_args(data));
