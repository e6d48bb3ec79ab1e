//! Fuzz target `volume_xml`: see `qpool_fuzz::volume_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::volume_xml(data));
