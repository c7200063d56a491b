#![no_main]
// See nsrun::fuzz::holder.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nsrun::fuzz::holder(data));
