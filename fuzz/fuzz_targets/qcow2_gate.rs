//! Fuzz target `qcow2_gate`: see `qpool_fuzz::qcow2_gate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::qcow2_gate(data));
