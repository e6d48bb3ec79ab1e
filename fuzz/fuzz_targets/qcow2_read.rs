//! Fuzz target `qcow2_read`: see `qpool_fuzz::qcow2_read`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::qcow2_read(data));
