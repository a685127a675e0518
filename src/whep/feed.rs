//! The WHEP feed of one stream: the top rendition's encoded H.264, tapped after its encoder in
//! the ladder (`appsink name=whep_tap`), fanned out to every viewer's `appsrc`. No viewer costs
//! an encode; each costs a payloader, SRTP and a socket.
//!
//! A viewer starts at the next keyframe (until then it would decode nothing). A viewer that
//! cannot take a buffer (its pipeline going down) is dropped from the feed.
//!
//! Each session gets a fresh feed; when the session ends, its feed leaves [`WhepFeeds`]: the
//! table holds the streams live now, not every name ever published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

type FeedTable = Mutex<HashMap<String, Arc<WhepFeed>>>;

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
    /// The table that lists this feed, and under which stream: the feed unlists itself when
    /// its session ends.
    listing: Option<(Weak<FeedTable>, String)>,
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
            self.unlist();
        }
    }

    /// Leaves the table, unless a newer session's feed has taken the stream's entry.
    fn unlist(&self) {
        let Some((table, stream)) = &self.listing else {
            return;
        };
        let Some(table) = table.upgrade() else {
            return;
        };
        let mut feeds = table.lock().unwrap_or_else(|p| p.into_inner());
        if feeds
            .get(stream)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), self))
        {
            feeds.remove(stream);
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

/// Ends its feed when dropped ([`WhepFeed::set_live`] `false`: viewers get EOS, the feed
/// leaves the table), so a session that fails before its pipeline runs unlists its feed too.
pub struct EndOnDrop(pub Arc<WhepFeed>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.set_live(false);
    }
}

/// The feed of every stream live now (the stream registry hands each session a new one).
#[derive(Default)]
pub struct WhepFeeds {
    feeds: Arc<FeedTable>,
}

impl WhepFeeds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WhepFeed>>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new feed for a session of `stream`, listed until that session ends
    /// ([`WhepFeed::set_live`] `false`). It replaces an earlier session's feed.
    pub fn feed(&self, stream: &str) -> Arc<WhepFeed> {
        let feed = Arc::new(WhepFeed {
            listing: Some((Arc::downgrade(&self.feeds), stream.to_string())),
            ..WhepFeed::default()
        });
        self.lock().insert(stream.to_string(), feed.clone());
        feed
    }

    /// The live feed of `stream`, if a session is producing it.
    pub fn live(&self, stream: &str) -> Option<Arc<WhepFeed>> {
        self.lock().get(stream).filter(|f| f.is_live()).cloned()
    }

    /// Streams listed now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Viewers per listed stream.
    pub fn viewer_counts(&self) -> Vec<(String, usize)> {
        self.lock()
            .iter()
            .map(|(s, f)| (s.clone(), f.viewer_count()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_leaves_the_table_when_its_session_ends() {
        let feeds = WhepFeeds::default();
        for i in 0..100 {
            let name = format!("cam{i}");
            let feed = feeds.feed(&name);
            assert!(feeds.live(&name).is_none(), "listed, not yet live");
            feed.set_live(true);
            assert!(feeds.live(&name).is_some());
            feed.set_live(false);
            assert!(feeds.live(&name).is_none());
        }
        assert!(feeds.is_empty(), "{} entries left", feeds.len());
    }

    #[test]
    fn a_session_that_never_went_live_unlists_its_feed_too() {
        let feeds = WhepFeeds::default();
        {
            let _ended = EndOnDrop(feeds.feed("cam"));
            assert_eq!(feeds.len(), 1);
        }
        assert!(feeds.is_empty());
    }

    #[test]
    fn an_old_session_ending_late_leaves_the_new_feed_listed() {
        let feeds = WhepFeeds::default();
        let old = feeds.feed("cam");
        old.set_live(true);
        let new = feeds.feed("cam");
        new.set_live(true);
        old.set_live(false);
        assert_eq!(feeds.len(), 1);
        assert!(feeds.live("cam").is_some_and(|f| Arc::ptr_eq(&f, &new)));
        new.set_live(false);
        assert!(feeds.is_empty());
    }
}
