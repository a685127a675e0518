//! `cargo +nightly fuzz run bus_messages`: see zoomate::fuzzing::bus_messages for what it feeds and asserts.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zoomate::fuzzing::bus_messages(data));
