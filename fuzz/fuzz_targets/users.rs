#![no_main]
// See nsrun::fuzz::users.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nsrun::fuzz::users(data));
