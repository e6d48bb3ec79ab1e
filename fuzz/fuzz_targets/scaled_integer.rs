//! Fuzz target `scaled_integer`: see `qpool_fuzz::scaled_integer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::scaled_integer(data));
