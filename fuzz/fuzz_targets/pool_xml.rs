//! Fuzz target `pool_xml`: see `qpool_fuzz::pool_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::pool_xml(data));
