//! `cargo +nightly fuzz run rtp_datagram`: see zoomate::fuzzing::rtp_datagram for what it feeds and asserts.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zoomate::fuzzing::rtp_datagram(data));
