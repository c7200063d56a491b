#![no_main]
// See nsrun::fuzz::resolv_conf_and_hosts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nsrun::fuzz::resolv_conf_and_hosts(data));
