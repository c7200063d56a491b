#![no_main]
// See nsrun::fuzz::netlink.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nsrun::fuzz::netlink(data));
