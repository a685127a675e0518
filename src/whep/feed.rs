//! The WHEP feed of one stream: the top rendition's encoded H.264, tapped after its encoder in
//! the ladder (`appsink name=whep_tap`), fanned out to every viewer's `appsrc`. No viewer costs
//! an encode; each costs a payloader, SRTP and a socket.
//!
//! A viewer starts at the next keyframe (until then it would decode nothing). A viewer that
//! cannot take a buffer (its pipeline going down) is dropped from the feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One viewer's entrance.
struct Viewer {
    appsrc: gst_app::AppSrc,
    waiting_for_keyframe: bool,
}

/// The fan-out of one stream's tapped rendition.
#[derive(Default)]
pub struct WhepFeed {
    viewers: Mutex<HashMap<u64, Viewer>>,
    /// Whether a session is producing (set while the ladder runs).
    live: std::sync::atomic::AtomicBool,
}

impl WhepFeed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Viewer>> {
        self.viewers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, std::sync::atomic::Ordering::Relaxed);
        if !live {
            // The session ended: every viewer gets EOS (their pipelines then end).
            for (_, v) in self.lock().drain() {
                let _ = v.appsrc.end_of_stream();
            }
        }
    }

    pub fn add(&self, id: u64, appsrc: gst_app::AppSrc) {
        self.lock().insert(
            id,
            Viewer {
                appsrc,
                waiting_for_keyframe: true,
            },
        );
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn viewer_count(&self) -> usize {
        self.lock().len()
    }

    /// One access unit from the tap, to every viewer (timestamps are the viewer's own:
    /// its appsrc stamps on arrival).
    pub fn push(&self, buffer: &gst::BufferRef) {
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let mut viewers = self.lock();
        if viewers.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        for (id, v) in viewers.iter_mut() {
            if v.waiting_for_keyframe && !keyframe {
                continue;
            }
            v.waiting_for_keyframe = false;
            let mut copy = buffer.copy();
            {
                let b = copy.make_mut();
                b.set_pts(gst::ClockTime::NONE);
                b.set_dts(gst::ClockTime::NONE);
            }
            if v.appsrc.push_buffer(copy).is_err() {
                gone.push(*id);
            }
        }
        for id in gone {
            viewers.remove(&id);
        }
    }

    /// Feeds this feed from the ladder's `whep_tap` appsink.
    pub fn attach(self: &Arc<Self>, sink: &gst_app::AppSink) {
        let feed = self.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    if let Ok(sample) = s.pull_sample()
                        && let Some(buffer) = sample.buffer()
                    {
                        feed.push(buffer);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
}

impl std::fmt::Debug for WhepFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhepFeed")
            .field("viewers", &self.viewer_count())
            .field("live", &self.is_live())
            .finish()
    }
}

/// Every stream's feed (the stream registry hands each session its stream's).
#[derive(Default)]
pub struct WhepFeeds {
    feeds: Mutex<HashMap<String, Arc<WhepFeed>>>,
}

impl WhepFeeds {
    pub fn feed(&self, stream: &str) -> Arc<WhepFeed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.entry(stream.to_string()).or_default().clone()
    }

    /// The live feed of `stream`, if a session is producing it.
    pub fn live(&self, stream: &str) -> Option<Arc<WhepFeed>> {
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.get(stream).filter(|f| f.is_live()).cloned()
    }

    /// Viewers per stream (streams with none left out).
    pub fn viewer_counts(&self) -> Vec<(String, usize)> {
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds
            .iter()
            .map(|(s, f)| (s.clone(), f.viewer_count()))
            .collect()
    }
}
