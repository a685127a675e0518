//! `cargo +nightly fuzz run sdp_description`: see zoomate::fuzzing::sdp_description for what it feeds and asserts.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zoomate::fuzzing::sdp_description(data));
