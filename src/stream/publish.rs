//! Publishing what a session's pipeline wrote, in the order that never announces what a client
//! cannot fetch yet: promote the file → rewrite the media playlist (disk and the in-memory
//! live playlist the origin serves and wakes held requests from) → rewrite master and MPD →
//! announce on the bus. Segments, LL-HLS parts, init segments; and unlisting the parts of a
//! segment that will never be complete.

use super::assembler::AssembledSegment;
use super::session::{SessionContext, SessionError, SessionState, now_ms};
use super::timeline::StreamTimeline;
use crate::bus::BusEvent;
use crate::config::SegmentFormat;
use crate::layout;
use std::path::PathBuf;
use std::sync::Mutex;

/// Drops the parts of unfinished segments from every rendition, republishes its playlist, and
/// schedules the part files for deletion.
pub(super) fn unlist_open_parts(ctx: &SessionContext, st: &SessionState) {
    let mut t = lock(&ctx.timeline);
    for rendition in t.rendition_names() {
        let parts = t.discard_open_parts(&rendition);
        if parts.is_empty() {
            continue;
        }
        let dir = st.stream_dir.join(&rendition);
        ctx.janitor
            .schedule_all(parts.iter().map(|uri| dir.join(uri)).collect());
        if let Some(snapshot) = t.snapshot(&rendition) {
            ctx.live_playlists
                .publish(&ctx.stream, &rendition, snapshot);
        }
    }
}

/// A part as the fragment writer left it in staging.
pub(super) struct WrittenPart {
    pub(super) location: PathBuf,
    pub(super) index: u32,
    pub(super) duration_ms: u64,
    pub(super) independent: bool,
    pub(super) byte_size: u64,
    pub(super) program_date_time_ms: i64,
    /// When the session heard the part was written (encode → announce starts here).
    pub(super) written_at: tokio::time::Instant,
}

/// CMAF: a rendition's first part or segment of a session publishes the session's init
/// segment first. Returns the init segment's name, `None` when there is none yet.
async fn ensure_init(
    st: &mut SessionState,
    rendition: &str,
) -> Result<Option<String>, SessionError> {
    if let Some(staged_init) = st.staged_inits.remove(rendition) {
        let name = st.init_name.clone();
        let public_init = st.stream_dir.join(rendition).join(&name);
        tokio::task::spawn_blocking(move || crate::store::promote(&staged_init, &public_init))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        st.inits.insert(rendition.to_string(), name);
    }
    Ok(st.inits.get(rendition).cloned())
}

/// LL-HLS: promote a part, list it, publish the playlist and announce it. Order as for
/// segments: the file is in place before any playlist lists it or the bus names it.
pub(super) async fn publish_part(
    ctx: &SessionContext,
    st: &mut SessionState,
    rendition: &str,
    part: WrittenPart,
) -> Result<(), SessionError> {
    let (sequence, tag) = {
        let t = lock(&ctx.timeline);
        match t.next_sequence(rendition) {
            Some(seq) => (seq, t.part_tag().to_string()),
            None => {
                let _ = std::fs::remove_file(&part.location);
                return Ok(());
            }
        }
    };
    let Some(init_uri) = ensure_init(st, rendition).await? else {
        tracing::warn!(stream = %ctx.stream, rendition, "CMAF part before its init segment; dropped");
        let _ = std::fs::remove_file(&part.location);
        return Ok(());
    };
    let name = layout::part_file(sequence, part.index, &tag);
    let public = st.stream_dir.join(rendition).join(&name);
    let staged = part.location.clone();
    // The writer synced the part when it wrote it: a rename makes it public.
    tokio::task::spawn_blocking(move || std::fs::rename(&staged, &public))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    let snapshot = {
        let mut t = lock(&ctx.timeline);
        let listed = crate::packaging::Part {
            duration_ms: part.duration_ms,
            uri: name,
            independent: part.independent,
            byte_size: part.byte_size,
        };
        if t.add_part(rendition, listed, part.program_date_time_ms, Some(init_uri))
            .is_none()
        {
            return Ok(());
        }
        t.snapshot(rendition)
    };
    if let Some(snapshot) = snapshot {
        ctx.live_playlists.publish(&ctx.stream, rendition, snapshot);
    }
    st.figures.parts += 1;
    stats(ctx).rendition(rendition).part();
    super::session::PublishDelays::observe(
        &ctx.delays.part,
        part.program_date_time_ms,
        part.duration_ms,
    );
    ctx.delays.observe_announce("part", Some(part.written_at));
    (ctx.announce)(BusEvent::PartReady {
        stream: ctx.stream.clone(),
        rendition: rendition.to_string(),
        media_sequence: sequence,
        part_index: part.index,
        duration_ms: part.duration_ms,
        independent: part.independent,
        uri: layout::live_part_uri(&ctx.stream, rendition, sequence, part.index, &tag),
        byte_size: part.byte_size,
        origin_id: ctx.config.origin.id.clone(),
    });
    Ok(())
}

/// Lists the last fragment of each rendition (see [`SegmentAssembler::finish`]).
pub(super) async fn flush_pending(
    ctx: &SessionContext,
    st: &mut SessionState,
    frame_ns: u64,
) -> Result<(), SessionError> {
    for done in st.assembler.finish(frame_ns) {
        publish_assembled(ctx, st, done).await?;
    }
    Ok(())
}

pub(super) async fn publish_assembled(
    ctx: &SessionContext,
    st: &mut SessionState,
    done: AssembledSegment,
) -> Result<(), SessionError> {
    let pdt = st.anchor_wall_ms.unwrap_or_else(now_ms)
        + super::assembler::nearest_ms(done.start_ns) as i64;
    publish_segment(
        ctx,
        st,
        &done.rendition,
        &done.location,
        done.duration_ms(),
        pdt,
    )
    .await
}

/// MPEG-TS packets are 188 bytes each.
const TS_PACKET_BYTES: u64 = 188;

/// Whether a staged segment of `len` bytes can be whole: not empty, and (MPEG-TS) whole
/// packets. A write cut short by a full disk leaves neither (filesink flushes 64 KiB at a time,
/// not packet by packet), and a sink that hit the full disk can still report the fragment.
fn whole_segment(format: SegmentFormat, len: u64) -> Result<(), &'static str> {
    match format {
        _ if len == 0 => Err("empty"),
        SegmentFormat::Ts if len % TS_PACKET_BYTES != 0 => Err("not whole MPEG-TS packets"),
        _ => Ok(()),
    }
}

fn stats(ctx: &SessionContext) -> std::sync::MutexGuard<'_, super::stats::StreamStats> {
    ctx.stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn lock(t: &Mutex<StreamTimeline>) -> std::sync::MutexGuard<'_, StreamTimeline> {
    t.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn publish_segment(
    ctx: &SessionContext,
    st: &mut SessionState,
    rendition: &str,
    staged: &std::path::Path,
    duration_ms: u64,
    pdt_ms: i64,
) -> Result<(), SessionError> {
    let complete_at = st.closed_at.remove(staged);
    let Some(sequence) = lock(&ctx.timeline).next_sequence(rendition) else {
        tracing::warn!(stream = %ctx.stream, rendition, "fragment for a rendition outside the ladder; dropped");
        return Ok(());
    };
    let rendition_dir = st.stream_dir.join(rendition);
    if duration_ms == 0 {
        let _ = std::fs::remove_file(staged);
        let parts = lock(&ctx.timeline).discard_open_parts(rendition);
        ctx.janitor
            .schedule_all(parts.iter().map(|uri| rendition_dir.join(uri)).collect());
        return Ok(());
    }
    let init_uri = ensure_init(st, rendition).await?;
    if st.format == SegmentFormat::Cmaf && init_uri.is_none() {
        tracing::warn!(stream = %ctx.stream, rendition, "CMAF fragment before its init segment; dropped");
        let _ = std::fs::remove_file(staged);
        return Ok(());
    }
    let ext = st.format.segment_extension();
    let public = rendition_dir.join(layout::segment_file(sequence, ext));
    let staged_owned = staged.to_path_buf();
    let public_owned = public.clone();
    let format = st.format;
    let promoted = tokio::task::spawn_blocking(move || {
        let len = std::fs::metadata(&staged_owned)?.len();
        if let Err(reason) = whole_segment(format, len) {
            let _ = std::fs::remove_file(&staged_owned);
            return Ok(Err(reason));
        }
        crate::store::promote(&staged_owned, &public_owned).map(Ok)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))??;
    let byte_size = match promoted {
        Ok(len) => len,
        Err(reason) => {
            tracing::warn!(stream = %ctx.stream, rendition, file = %staged.display(), reason, "segment not whole; not listed");
            return Ok(());
        }
    };
    let uri_path = layout::live_segment_uri(&ctx.stream, rendition, sequence, ext);
    let (added, master, mpd, snapshot) = {
        let mut t = lock(&ctx.timeline);
        let added = t.add_segment(
            rendition,
            layout::segment_file(sequence, ext),
            duration_ms,
            byte_size,
            pdt_ms,
            init_uri,
        );
        let mpd = (st.format == SegmentFormat::Cmaf).then(|| {
            crate::packaging::render_mpd(
                &t.dash_manifest(now_ms(), ctx.config.ladder.segment_duration_ms),
            )
        });
        let snapshot = t.snapshot(rendition);
        (added, t.master(), mpd, snapshot)
    };
    let Some(added) = added else { return Ok(()) };
    let Some(snapshot) = snapshot else {
        return Ok(());
    };
    let playlist_path = rendition_dir.join(layout::MEDIA_PLAYLIST);
    let master_path = st.stream_dir.join(layout::MASTER_PLAYLIST);
    let mpd_path = st.stream_dir.join(layout::DASH_MANIFEST);
    let playlist_text = snapshot.full.clone();
    let master_text = master.clone();
    let mpd_text = if master.is_some() { mpd } else { None };
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        crate::store::write_atomic(&playlist_path, &playlist_text)?;
        if let Some(m) = master_text {
            crate::store::write_atomic(&master_path, m.as_bytes())?;
        }
        if let Some(m) = mpd_text {
            crate::store::write_atomic(&mpd_path, m.as_bytes())?;
        }
        Ok(())
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))??;
    ctx.live_playlists.publish(&ctx.stream, rendition, snapshot);
    for old in &added.evicted {
        let files = std::iter::once(&old.uri)
            .chain(old.parts.iter().map(|p| &p.uri))
            .map(|name| rendition_dir.join(name))
            .collect();
        ctx.janitor.schedule_all(files);
    }
    for init in &added.evicted_inits {
        ctx.janitor.schedule(rendition_dir.join(init));
    }
    tracing::debug!(stream = %ctx.stream, rendition, seq = sequence, duration_ms, bytes = byte_size, "segment ready");
    st.figures.segments += 1;
    if st.figures.segments == 1
        && let super::health::Transition::Recovered { reason, after } = ctx
            .health
            .segment_listed(&ctx.stream, std::time::Instant::now())
    {
        tracing::info!(stream = %ctx.stream, was = reason.label(), unhealthy_ms = after.as_millis() as u64,
            "stream healthy again: segments are listed");
    }
    stats(ctx).rendition(rendition).segment(
        std::time::Instant::now(),
        duration_ms,
        byte_size,
        added.segment.discontinuity,
    );
    super::session::PublishDelays::observe(&ctx.delays.segment, pdt_ms, duration_ms);
    st.figures.bytes += byte_size;
    let origin_id = ctx.config.origin.id.clone();
    if master.is_some() && !st.started_announced {
        st.started_announced = true;
        let renditions = lock(&ctx.timeline).rendition_infos();
        (ctx.announce)(BusEvent::StreamStarted {
            stream: ctx.stream.clone(),
            origin_id: origin_id.clone(),
            renditions,
        });
    }
    ctx.delays.observe_announce("segment", complete_at);
    (ctx.announce)(BusEvent::SegmentReady {
        stream: ctx.stream.clone(),
        rendition: rendition.to_string(),
        media_sequence: sequence,
        duration_ms,
        uri: uri_path,
        byte_size,
        program_date_time_ms: pdt_ms,
        discontinuity: added.segment.discontinuity,
        origin_id,
    });
    (ctx.announce)(BusEvent::PlaylistUpdated {
        stream: ctx.stream.clone(),
        rendition: rendition.to_string(),
        media_sequence: sequence,
        uri: layout::live_playlist_uri(&ctx.stream, rendition),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_cut_short_is_not_whole() {
        assert_eq!(whole_segment(SegmentFormat::Ts, 0), Err("empty"));
        assert_eq!(whole_segment(SegmentFormat::Cmaf, 0), Err("empty"));
        assert!(whole_segment(SegmentFormat::Ts, 188 * 350).is_ok());
        // A 64 KiB flush cut by ENOSPC ends mid-packet.
        assert!(whole_segment(SegmentFormat::Ts, 65_536).is_err());
        assert!(whole_segment(SegmentFormat::Cmaf, 65_536).is_ok());
    }
}
