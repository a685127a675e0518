//! CMAF output: cmafmux → appsink → one file per fragment, reported like splitmuxsink's.
//!
//! cmafmux emits its init segment once (`ftyp`+`moov`, flagged `HEADER|DISCONT`), then each
//! fragment as a `moof` header buffer (`HEADER`, not `DELTA_UNIT`) followed by its `mdat`
//! buffers. This writer splits that byte stream into `init.mp4` and `%08d.m4s` files in the
//! staging directory and posts the same element messages splitmuxsink posts
//! (`splitmuxsink-fragment-opened` / `-closed`), so the session handles both formats alike.
//! Bytes are written as they arrive (no user-space buffering): a closed fragment is complete
//! on disk when its message is posted.

use gst::prelude::*;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// Element message posted once the init segment is on disk: fields `location`.
pub const MSG_INIT_SEGMENT: &str = "zoomate-init-segment";

struct OpenFragment {
    file: std::fs::File,
    location: PathBuf,
    start_ns: u64,
    end_ns: u64,
}

struct WriterState {
    dir: PathBuf,
    next_index: u32,
    init_written: bool,
    current: Option<OpenFragment>,
    failed: bool,
}

/// Installs the writer on `appsink` (named `mux_{rendition}`), writing into `dir`.
pub fn attach(appsink: &gst_app::AppSink, dir: PathBuf) {
    let state = std::sync::Arc::new(Mutex::new(WriterState {
        dir,
        next_index: 0,
        init_written: false,
        current: None,
        failed: false,
    }));
    let on_sample = state.clone();
    let on_eos = state;
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut st = on_sample.lock().unwrap_or_else(|p| p.into_inner());
                if st.failed {
                    return Err(gst::FlowError::Error);
                }
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                let running_time = |pts: Option<gst::ClockTime>| -> u64 {
                    match (&segment, pts) {
                        (Some(seg), Some(pts)) => seg
                            .to_running_time(pts)
                            .map(|t| t.nseconds())
                            .unwrap_or(pts.nseconds()),
                        (None, Some(pts)) => pts.nseconds(),
                        _ => 0,
                    }
                };
                let mut handle = |buffer: &gst::BufferRef| -> Result<(), String> {
                    let flags = buffer.flags();
                    let map = buffer.map_readable().map_err(|e| e.to_string())?;
                    if flags.contains(gst::BufferFlags::HEADER | gst::BufferFlags::DISCONT) {
                        if !st.init_written {
                            let location = st.dir.join("init.mp4");
                            crate::store::write_atomic(&location, map.as_slice())
                                .map_err(|e| format!("{}: {e}", location.display()))?;
                            st.init_written = true;
                            post(
                                sink,
                                gst::Structure::builder(MSG_INIT_SEGMENT)
                                    .field("location", location.to_string_lossy().as_ref())
                                    .build(),
                            );
                        }
                        return Ok(());
                    }
                    if flags.contains(gst::BufferFlags::HEADER)
                        && !flags.contains(gst::BufferFlags::DELTA_UNIT)
                    {
                        // A new fragment: the previous one is complete.
                        if let Some(done) = st.current.take() {
                            close(sink, done);
                        }
                        let start_ns = running_time(buffer.pts());
                        let end_ns =
                            start_ns + buffer.duration().map(|d| d.nseconds()).unwrap_or(0);
                        let location = st.dir.join(format!("{:08}.m4s", st.next_index));
                        st.next_index += 1;
                        let file = std::fs::File::create(&location)
                            .map_err(|e| format!("{}: {e}", location.display()))?;
                        post(
                            sink,
                            gst::Structure::builder("splitmuxsink-fragment-opened")
                                .field("location", location.to_string_lossy().as_ref())
                                .field("running-time", start_ns)
                                .build(),
                        );
                        st.current = Some(OpenFragment {
                            file,
                            location,
                            start_ns,
                            end_ns,
                        });
                    }
                    match st.current.as_mut() {
                        Some(open) => open
                            .file
                            .write_all(map.as_slice())
                            .map_err(|e| format!("{}: {e}", open.location.display())),
                        None => Ok(()), // data before any fragment header: nothing to attach it to
                    }
                };
                let result = match sample.buffer_list() {
                    Some(list) => list.iter().try_for_each(&mut handle),
                    None => match sample.buffer() {
                        Some(b) => handle(b),
                        None => Ok(()),
                    },
                };
                if let Err(reason) = result {
                    st.failed = true;
                    gst::element_error!(
                        sink,
                        gst::ResourceError::Write,
                        ["CMAF fragment writer: {}", reason]
                    );
                    return Err(gst::FlowError::Error);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |sink| {
                let mut st = on_eos.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(done) = st.current.take() {
                    close(sink, done);
                }
            })
            .build(),
    );
}

fn close(sink: &gst_app::AppSink, done: OpenFragment) {
    drop(done.file);
    post(
        sink,
        gst::Structure::builder("splitmuxsink-fragment-closed")
            .field("location", done.location.to_string_lossy().as_ref())
            // splitmuxsink reports the last frame's start here; cmafmux knows the exact end.
            .field("running-time", done.end_ns)
            .field("exact-end", true)
            .field("start-running-time", done.start_ns)
            .build(),
    );
}

fn post(sink: &gst_app::AppSink, s: gst::Structure) {
    let _ = sink.post_message(gst::message::Element::builder(s).src(sink).build());
}
