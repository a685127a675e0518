//! Wall-clock timing (`[[streams]] timing = "wallclock"`): the timeline two origins fed the
//! same source agree on, so an edge can fail over between them mid-segment.
//!
//! Running time is made wall-clock time since [`EPOCH_UNIX_S`] at the two raw pads that feed
//! the ladder. Putting the pipeline on a REALTIME clock with the epoch as base time is not
//! enough (tried): a demuxer such as tsdemux re-bases its output on its own first PCR, so
//! decoded frames start near running time 0 whatever the clock. So each buffer's source
//! running time is mapped by one offset, the smallest (arrival wall time − running time) seen
//! ([`WallOffset`]: the least-delayed buffer, steady while the source's timestamps are), which
//! keeps the source's own spacing and A/V sync. Then:
//!
//! - **Frames on a grid.** Each raw video frame's wall time is rounded to the frame grid
//!   (multiples of 1/fps since the epoch) before `videorate`, which fills or drops to exactly
//!   one frame per slot. Two origins that received a frame within half a frame of each other
//!   give it the same timestamp; where they do not, they still stamp the same slots (one shows
//!   a frame one slot earlier), so names and times agree regardless.
//! - **A common first boundary.** Frames are dropped until a boundary that is a multiple of
//!   the segment duration (and, with audio, of 64 ms: three AAC frames at 48 kHz, so the audio
//!   encoder's frame grid is the same on every origin); the first frame let through is stamped
//!   exactly at it. cmafmux (gst-plugins-rs fmp4mux) starts its first fragment at its first
//!   buffer and cuts every `fragment-duration` after it, asking the encoder for the keyframes;
//!   splitmuxsink's `send-keyframe-requests` does the same for MPEG-TS. So every fragment
//!   boundary, on every origin, is a multiple of the segment duration since the epoch.
//! - **Names from time.** A segment's media sequence number is its start / segment duration;
//!   the part tag is fixed ([`part_tag`]); `tfdt` and PROGRAM-DATE-TIME are epoch + running
//!   time. A restarted origin starts at the *next* boundary, later than anything it published,
//!   so no name is ever reused for other bytes.
//! - **Audio.** The first raw audio buffer at (or within half a buffer of) the boundary is
//!   stamped at the boundary, and every later one by its sample count from there, so the AAC
//!   encoder's frames and cmafmux's audio fragment boundaries fall on the same instants on
//!   every origin (1 ns apart at worst: sample counts from different starts; milliseconds are
//!   rounded to the nearest). The source's timestamps only catch drift (re-anchored on the
//!   epoch's AAC frame grid past 40 ms). A/V offset: at most half a buffer, ~10 ms.
//! - **Init segments** are named after the ladder, not the session
//!   ([`crate::layout::wallclock_init_segment`]): the bytes are the same on every origin but
//!   for the `mvhd` creation time, which fmp4mux sets to the wall clock.
//!
//! Pure arithmetic here ([`Grid`], [`VideoGate`], [`AudioGate`]), unit-tested; the pad probes
//! that apply it are at the bottom.

use gst::prelude::*;

/// The timeline's zero: 2025-01-01T00:00:00Z. Running time = unix time − this.
pub const EPOCH_UNIX_S: u64 = 1_735_689_600;
/// [`EPOCH_UNIX_S`] in nanoseconds (the cmafmux `decode-time-offset`: tfdt is unix time).
pub const EPOCH_NS: u64 = EPOCH_UNIX_S * 1_000_000_000;
/// Three AAC frames of 1024 samples at 48 kHz: the shortest span that is a whole number of
/// both milliseconds and AAC frames.
const AAC_GRID_MS: u64 = 64;

/// The part tag of wall-clock streams: the part duration in hex, the same on every origin
/// with the same configuration (and different where parts would not be the same bytes).
pub fn part_tag(part_duration_ms: Option<u64>) -> String {
    format!("{:x}", part_duration_ms.unwrap_or(0))
}

/// A stream's wall-clock grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub segment_ms: u64,
    pub fps: u64,
    /// Audio is encoded too: boundaries also on the AAC frame grid.
    pub audio: bool,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The longest a wall-clock session may wait for its first start boundary, in milliseconds:
/// one start step with audio (the worst case; config does not know whether a source has audio).
pub fn longest_start_wait_ms(segment_ms: u64) -> u64 {
    let segment_ms = segment_ms.max(1);
    segment_ms / gcd(segment_ms, AAC_GRID_MS) * AAC_GRID_MS
}

impl Grid {
    /// Where a session may start: every segment boundary, or with audio every one that is
    /// also an AAC frame boundary (every 8 s for 2 s segments).
    pub fn start_step_ns(&self) -> u64 {
        let ms = if self.audio {
            longest_start_wait_ms(self.segment_ms)
        } else {
            self.segment_ms
        };
        ms.max(1) * 1_000_000
    }

    /// The first start boundary strictly after running time `now_ns`.
    pub fn first_boundary_ns(&self, now_ns: u64) -> u64 {
        let step = self.start_step_ns();
        (now_ns / step + 1) * step
    }

    /// The media sequence number of the segment starting at running time `start_ns`.
    pub fn sequence_of(&self, start_ns: u64) -> u64 {
        start_ns / (self.segment_ms.max(1) * 1_000_000)
    }

    /// `running_ns` rounded to the nearest frame slot (frame n is at n·10⁹/fps ns).
    pub fn snap_frame_ns(&self, running_ns: u64) -> u64 {
        let fps = self.fps.max(1) as u128;
        let slot = (running_ns as u128 * fps + 500_000_000) / 1_000_000_000;
        (slot * 1_000_000_000 / fps) as u64
    }
}

/// `ns` as signed nanoseconds, saturating: running times come from the source's timestamps,
/// and arithmetic on them must not overflow (a panic in a pad probe would abort the origin).
fn signed(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// A source running-time jump of more than this (a new source timeline) re-learns the offset.
const OFFSET_RESET_NS: i64 = 1_000_000_000;

/// The next offset (wall − source running time) after observing `observed`: the smallest
/// seen, unless the source's timeline jumped back by more than [`OFFSET_RESET_NS`].
pub fn next_offset(current: Option<i64>, observed: i64) -> i64 {
    match current {
        Some(k) if observed >= k && observed - k <= OFFSET_RESET_NS => k,
        _ => observed,
    }
}

/// The offset shared by a pipeline's audio and video gates (one offset keeps A/V sync).
#[derive(Debug, Default)]
pub struct WallOffset(std::sync::Mutex<Option<i64>>);

impl WallOffset {
    /// The wall-clock running time (since the epoch) of a buffer at source running time `rt`
    /// arriving now.
    pub fn wall_ns(&self, rt: u64) -> u64 {
        let observed = signed(now_running_ns()).saturating_sub(signed(rt));
        let mut k = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let offset = next_offset(*k, observed);
        *k = Some(offset);
        signed(rt).saturating_add(offset).max(0) as u64
    }
}

/// Video: which frames pass and with what running time.
#[derive(Debug, Clone)]
pub struct VideoGate {
    grid: Grid,
    first_boundary_ns: u64,
    started: bool,
}

impl VideoGate {
    pub fn new(grid: Grid, first_boundary_ns: u64) -> VideoGate {
        VideoGate {
            grid,
            first_boundary_ns,
            started: false,
        }
    }

    /// The running time to give a frame received at `running_ns`; `None`: drop it.
    pub fn admit(&mut self, running_ns: u64) -> Option<u64> {
        let snapped = self.grid.snap_frame_ns(running_ns);
        if snapped < self.first_boundary_ns {
            return None;
        }
        if !self.started {
            // The first fragment starts exactly at the boundary on every origin.
            self.started = true;
            return Some(self.first_boundary_ns);
        }
        Some(snapped)
    }
}

/// Audio drifting this far from the source's timestamps is re-anchored.
const AUDIO_RESYNC_NS: i64 = 40_000_000;

/// `t_ns` rounded to the nearest AAC frame of the epoch's grid (1024 samples at 48 kHz).
pub fn snap_aac_ns(t_ns: u64) -> u64 {
    ns_of_sample(aac_frame_sample(t_ns, 48_000), 48_000)
}

/// The sample index (since the epoch, at `rate`) of the AAC frame boundary nearest `t_ns`.
fn aac_frame_sample(t_ns: u64, rate: u64) -> u128 {
    let frame = 1024 * 1_000_000_000u128;
    let slot = (t_ns as u128 * rate as u128 + frame / 2) / frame;
    slot * 1024
}

/// When sample `index` (since the epoch, at `rate`) plays, in nanoseconds. Every timestamp is
/// computed from the absolute index in one step: two origins that reached the same sample by
/// different paths (one re-anchored, one not) give it the same nanosecond, and so the same
/// `tfdt` (summing two truncated parts could differ by 1 ns, and a tick of the timescale).
fn ns_of_sample(index: u128, rate: u64) -> u64 {
    u64::try_from(index * 1_000_000_000 / rate.max(1) as u128).unwrap_or(u64::MAX)
}

/// Audio: buffers before the boundary are dropped; the rest are stamped by their sample count
/// from the boundary, so the AAC encoder's frames (and cmafmux's audio fragment boundaries)
/// fall on the same instants on every origin. The source's own timestamps only catch drift:
/// more than [`AUDIO_RESYNC_NS`] away, the count restarts at the nearest AAC frame of the
/// epoch's grid.
#[derive(Debug, Clone)]
pub struct AudioGate {
    start_ns: u64,
    /// Source running time → wall time, fixed by the first buffer let through.
    shift_ns: Option<i64>,
    /// The sample index (since the epoch) the count restarted at; `None` until the first
    /// buffer (the rate is known then).
    base_sample: Option<u128>,
    samples: u64,
}

impl AudioGate {
    pub fn new(start_ns: u64) -> AudioGate {
        AudioGate {
            start_ns,
            shift_ns: None,
            base_sample: None,
            samples: 0,
        }
    }

    /// The running time to give a buffer of `samples` at `rate` Hz, at source running time
    /// `rt` whose wall time is `wall_ns`; `None`: drop it.
    pub fn admit(&mut self, rt: u64, wall_ns: u64, samples: u64, rate: u64) -> Option<u64> {
        let rate = rate.max(1);
        let duration_ns = (samples as u128 * 1_000_000_000 / rate as u128) as u64;
        let shift = match self.shift_ns {
            Some(s) => s,
            None => {
                if wall_ns.saturating_add(duration_ns / 2) < self.start_ns {
                    return None;
                }
                let s = signed(self.start_ns).saturating_sub(signed(rt));
                self.shift_ns = Some(s);
                s
            }
        };
        // The boundary is a whole number of AAC frames (config checks it), so of samples.
        let start_sample = self.start_ns as u128 * rate as u128 / 1_000_000_000;
        let base = *self.base_sample.get_or_insert(start_sample);
        let source_ns = signed(rt).saturating_add(shift).max(0) as u64;
        let mut index = base + self.samples as u128;
        let mut out = ns_of_sample(index, rate);
        if signed(source_ns)
            .saturating_sub(signed(out))
            .saturating_abs()
            > AUDIO_RESYNC_NS
        {
            index = aac_frame_sample(source_ns, rate).max(start_sample);
            self.base_sample = Some(index);
            self.samples = 0;
            out = ns_of_sample(index, rate);
        }
        self.samples += samples;
        Some(out)
    }
}

/// Wall-clock running time now (the same value the pipeline clock gives).
pub fn now_running_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        .saturating_sub(EPOCH_NS)
}

/// A buffer's running time under the pad's current segment.
fn running_time(
    pad: &gst::Pad,
    pts: gst::ClockTime,
) -> Option<(gst::FormattedSegment<gst::ClockTime>, u64)> {
    let ev = pad.sticky_event::<gst::event::Segment>(0)?;
    let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
    let rt = seg.to_running_time(pts)?;
    Some((seg, rt.nseconds()))
}

/// Restamps `buffer` to running time `rt` under `seg`; false when it cannot be expressed.
fn restamp(buffer: &mut gst::Buffer, seg: &gst::FormattedSegment<gst::ClockTime>, rt: u64) -> bool {
    let Some(pts) = seg.position_from_running_time(gst::ClockTime::from_nseconds(rt)) else {
        return false;
    };
    let b = buffer.make_mut();
    b.set_pts(pts);
    b.set_dts(gst::ClockTime::NONE);
    true
}

/// Installs the video gate on the raw video pad feeding the ladder.
pub fn gate_video(
    pad: &gst::Pad,
    grid: Grid,
    first_boundary_ns: u64,
    offset: std::sync::Arc<WallOffset>,
) {
    // Probes are `Fn` (a pad may call them from any thread): the gate's state behind a lock
    // only this pad's streaming thread takes.
    let gate = std::sync::Mutex::new(VideoGate::new(grid, first_boundary_ns));
    let frame_ns = 1_000_000_000 / grid.fps.max(1);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
            return gst::PadProbeReturn::Drop;
        };
        let Some((seg, rt)) = running_time(pad, pts) else {
            return gst::PadProbeReturn::Drop;
        };
        let wall = offset.wall_ns(rt);
        let admitted = gate.lock().unwrap_or_else(|p| p.into_inner()).admit(wall);
        let Some(out) = admitted else {
            return gst::PadProbeReturn::Drop;
        };
        if let Some(buffer) = info.buffer_mut() {
            if !restamp(buffer, &seg, out) {
                return gst::PadProbeReturn::Drop;
            }
            buffer
                .make_mut()
                .set_duration(gst::ClockTime::from_nseconds(frame_ns));
        }
        gst::PadProbeReturn::Ok
    });
}

/// Installs the audio gate on the raw audio pad feeding the ladder.
pub fn gate_audio(pad: &gst::Pad, start_ns: u64, offset: std::sync::Arc<WallOffset>) {
    let gate = std::sync::Mutex::new(AudioGate::new(start_ns));
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some((pts, duration)) = info.buffer().and_then(|b| Some((b.pts()?, b.duration()?)))
        else {
            return gst::PadProbeReturn::Drop;
        };
        let rate = pad
            .current_caps()
            .and_then(|c| c.structure(0)?.get::<i32>("rate").ok())
            .filter(|r| *r > 0)
            .map(|r| r as u64);
        let (Some(rate), Some((seg, rt))) = (rate, running_time(pad, pts)) else {
            return gst::PadProbeReturn::Drop;
        };
        let samples = (duration.nseconds() as u128 * rate as u128 + 500_000_000) / 1_000_000_000;
        let wall = offset.wall_ns(rt);
        let admitted =
            gate.lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(rt, wall, samples as u64, rate);
        let Some(out) = admitted else {
            return gst::PadProbeReturn::Drop;
        };
        match info.buffer_mut() {
            Some(buffer) => {
                if restamp(buffer, &seg, out) {
                    gst::PadProbeReturn::Ok
                } else {
                    gst::PadProbeReturn::Drop
                }
            }
            None => gst::PadProbeReturn::Drop,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Grid = Grid {
        segment_ms: 2000,
        fps: 30,
        audio: true,
    };

    #[test]
    fn sessions_start_on_segment_and_aac_boundaries() {
        assert_eq!(G.start_step_ns(), 8_000_000_000);
        let video_only = Grid { audio: false, ..G };
        assert_eq!(video_only.start_step_ns(), 2_000_000_000);
        assert_eq!(G.first_boundary_ns(0), 8_000_000_000);
        assert_eq!(G.first_boundary_ns(8_000_000_000), 16_000_000_000);
        assert_eq!(G.first_boundary_ns(15_999_999_999), 16_000_000_000);
        // 8 s is 375 AAC frames of 1024 samples at 48 kHz exactly.
        assert_eq!(8 * 48_000 % 1024, 0);
        assert_eq!(G.sequence_of(16_000_000_000), 8);
        assert_eq!(G.sequence_of(17_999_999_999), 8);
    }

    #[test]
    fn frames_snap_to_the_nearest_slot_and_boundaries_are_slots() {
        assert_eq!(G.snap_frame_ns(16_000_000_000 + 16_000_000), 16_000_000_000);
        assert_eq!(G.snap_frame_ns(16_000_000_000 - 16_000_000), 16_000_000_000);
        assert_eq!(G.snap_frame_ns(16_000_000_000 + 17_000_000), 16_033_333_333);
        // Two origins receiving one frame 3 ms apart agree.
        let a = 5_000_000_000_000 + 10_000_000;
        assert_eq!(G.snap_frame_ns(a), G.snap_frame_ns(a + 3_000_000));
    }

    #[test]
    fn the_first_frame_let_through_is_stamped_at_the_boundary() {
        let mut gate = VideoGate::new(G, 16_000_000_000);
        assert_eq!(gate.admit(15_900_000_000), None);
        // Rounds to the slot after the boundary: still stamped at it.
        assert_eq!(gate.admit(16_020_000_000), Some(16_000_000_000));
        assert_eq!(gate.admit(16_050_000_000), Some(16_066_666_666));
    }

    #[test]
    fn audio_is_stamped_by_sample_count_from_the_boundary_and_resynced_on_drift() {
        let mut gate = AudioGate::new(16_000_000_000);
        // Source time 1 s behind the wall clock; 1024-sample buffers at 48 kHz.
        let k = 1_000_000_000;
        let d = 21_333_333;
        assert_eq!(
            gate.admit(15_970_000_000 - k, 15_970_000_000, 1024, 48_000),
            None
        );
        assert_eq!(
            gate.admit(15_991_000_000 - k, 15_991_000_000, 1024, 48_000),
            Some(16_000_000_000)
        );
        // Jitter in the source's timestamps does not move the count.
        assert_eq!(
            gate.admit(15_991_000_000 - k + d + 3_000_000, 0, 1024, 48_000),
            Some(16_000_000_000 + d)
        );
        // 8 s of samples later, 375 AAC frames exactly.
        let mut g = AudioGate::new(16_000_000_000);
        g.admit(16_000_000_000 - k, 16_000_000_000, 8 * 48_000, 48_000);
        assert_eq!(
            g.admit(24_000_000_000 - k, 0, 1024, 48_000),
            Some(24_000_000_000)
        );
        // A source 100 ms ahead of the count: re-anchored on the epoch's AAC grid.
        let out = g.admit(24_121_333_333 - k, 0, 1024, 48_000).unwrap();
        assert_eq!(out, snap_aac_ns(24_121_333_333));
        assert_eq!(snap_aac_ns(out), out);
    }

    #[test]
    fn a_re_anchored_gate_and_one_that_never_was_agree_to_the_nanosecond() {
        // Origin A re-anchors at frame 1000 of its count; origin B counted its way there. The
        // same sample must get the same timestamp (CI once saw 1 tick of tfdt between them).
        let k = 1_000_000_000;
        let start = 16_000_000_000;
        let frame_ns = |n: u64| start + n * 1024 * 1_000_000_000 / 48_000;
        let mut a = AudioGate::new(start);
        let mut b = AudioGate::new(start);
        assert_eq!(a.admit(start - k, start, 1024, 48_000), Some(start));
        assert_eq!(b.admit(start - k, start, 1024, 48_000), Some(start));
        // A's source jumps 100 ms ahead, then back onto B's timeline at frame 1000.
        a.admit(frame_ns(1) + 100_000_000 - k, 0, 1024 * 998, 48_000);
        let out_a = a.admit(frame_ns(1000) - k, 0, 1024, 48_000);
        b.admit(frame_ns(1) - k, 0, 1024 * 998, 48_000);
        let out_b = b.admit(frame_ns(999) - k, 0, 1024, 48_000);
        let out_b2 = b.admit(frame_ns(1000) - k, 0, 1024, 48_000);
        let _ = out_b;
        assert_eq!(out_a, out_b2);
        // And the frames after it, counted on from different bases (a truncated base plus a
        // truncated count was 1 ns short on the second).
        for n in 1001..1004 {
            assert_eq!(
                a.admit(frame_ns(n) - k, 0, 1024, 48_000),
                b.admit(frame_ns(n) - k, 0, 1024, 48_000),
                "frame {n}"
            );
        }
    }

    #[test]
    fn the_offset_is_the_least_delay_seen_until_the_source_jumps_back() {
        assert_eq!(next_offset(None, 500), 500);
        assert_eq!(next_offset(Some(500), 520), 500);
        assert_eq!(next_offset(Some(500), 480), 480);
        assert_eq!(
            next_offset(Some(500), 500 + OFFSET_RESET_NS + 1),
            500 + OFFSET_RESET_NS + 1
        );
    }

    #[test]
    fn part_tags_name_the_part_duration() {
        assert_eq!(part_tag(Some(200)), "c8");
        assert!(crate::layout::valid_part_tag(&part_tag(Some(200))));
        assert!(crate::layout::valid_part_tag(&part_tag(None)));
    }
}
