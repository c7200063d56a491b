#![no_main]
// See nsrun::fuzz::options.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nsrun::fuzz::options(data));
