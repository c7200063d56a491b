#![no_main]
// See nsrun::fuzz::control.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nsrun::fuzz::control(data));
