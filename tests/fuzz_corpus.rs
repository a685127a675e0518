//! Replays every `cargo fuzz` corpus file (and every kept crash, `fuzz/artifacts/regressions/`)
//! through the same `zoomate::fuzzing` entry points the fuzz targets call, on stable Rust, so
//! `make test` re-checks every input the fuzzer ever found interesting. A missing or empty
//! corpus directory fails: the replay must never pass by finding nothing.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the corpus is committed under fuzz/)",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str, entry: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&fuzz.join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
    let regressions = fuzz.join("artifacts/regressions").join(target);
    let kept = if regressions.is_dir() {
        files(&regressions)
    } else {
        Vec::new()
    };
    for path in corpus.iter().chain(&kept) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A panic names the file, so it can be rerun with `cargo fuzz run TARGET FILE`.
        let result = std::panic::catch_unwind(|| entry(&data));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
    }
    eprintln!(
        "{target}: {} corpus inputs and {} kept crashes replayed",
        corpus.len(),
        kept.len()
    );
}

#[test]
fn rtmp_chunk_stream_corpus() {
    zoomate::fuzzing::install_panic_hook();
    replay("rtmp_chunk_stream", zoomate::fuzzing::rtmp_chunk_stream);
}

#[test]
fn rtp_datagram_corpus() {
    replay("rtp_datagram", zoomate::fuzzing::rtp_datagram);
}

#[test]
fn http_request_corpus() {
    replay("http_request", zoomate::fuzzing::http_request);
}

#[test]
fn bus_messages_corpus() {
    replay("bus_messages", zoomate::fuzzing::bus_messages);
}

#[test]
fn sdp_description_corpus() {
    replay("sdp_description", zoomate::fuzzing::sdp_description);
}
