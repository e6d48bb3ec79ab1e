//! Fuzz target `secret_xml`: see `qpool_fuzz::secret_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpool_fuzz::secret_xml(data));
