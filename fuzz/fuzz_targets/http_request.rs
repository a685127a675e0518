//! `cargo +nightly fuzz run http_request`: see zoomate::fuzzing::http_request for what it feeds and asserts.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zoomate::fuzzing::http_request(data));
