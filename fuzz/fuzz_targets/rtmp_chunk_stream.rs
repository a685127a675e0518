//! `cargo +nightly fuzz run rtmp_chunk_stream`: see zoomate::fuzzing::rtmp_chunk_stream for what
//! it feeds and asserts.
#![no_main]
libfuzzer_sys::fuzz_target!(
    init: zoomate::fuzzing::install_panic_hook(),
    |data: &[u8]| zoomate::fuzzing::rtmp_chunk_stream(data)
);
