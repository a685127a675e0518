//! LL-HLS at the edge, request side: which requests block (a media playlist with `_HLS_msn`,
//! a part that does not exist yet), their cache keys (the path plus the canonical directives,
//! nothing else of the query), and the hold itself: bounded by [`HeldBudget`], woken by
//! [`super::blocking::PlaylistEnds`] when the bus announces the part. The edge trusts the bus
//! only about timing; what it cannot decide goes to the origin.
//!
//! [`HeldBudget`]: crate::http::held::HeldBudget

use super::{Edge, blocking};
use crate::http::Body;
use crate::http::headers;
use crate::http::paths::ResourceKind;
use http::{HeaderValue, Response, StatusCode, header};
use std::sync::Arc;
use std::time::Duration;

/// A request as the LL-HLS rules see it: its cache key, what to ask the origin, and what it
/// waits for.
pub(super) struct LlRequest {
    /// Path plus the canonical `_HLS_` directives: the cache key and what the origin is asked.
    pub(super) key: String,
    /// A blocking request: the playlist it waits on and the (msn, part) it waits for.
    pub(super) waits_for: Option<WaitsFor>,
}

pub(super) struct WaitsFor {
    pub(super) playlist: String,
    pub(super) directives: crate::packaging::Directives,
    /// A part file (404 when refused), not a playlist reload (400).
    pub(super) part: bool,
}

impl WaitsFor {
    /// Whether a refusal (400/404) of this blocking request came from an origin behind the
    /// stream rather than from a request beyond it: the bus says the playlist has got there
    /// (`known`: where the edge heard it ends). After a failover the survivor may be a
    /// segment or two behind the origin that died, whose parts the player has already seen;
    /// it refuses the player's next blocking reload (RFC 8216bis 6.2.5.2: more than two
    /// segments past its last, or past its Advance Part Limit) until it catches up.
    pub(super) fn refused_by_a_lagging_origin(
        &self,
        known: Option<crate::packaging::PlaylistEnd>,
    ) -> bool {
        let (msn, part) = (self.directives.msn.unwrap_or(0), self.directives.part);
        known.is_some_and(|end| end.satisfies(msn, part))
    }
}

/// How often a blocking request refused by a lagging origin is asked again (the origin is
/// about a part behind per retry at worst; parts are 100 ms at the shortest).
pub(super) const LAGGING_ORIGIN_RETRY: Duration = Duration::from_millis(100);

impl LlRequest {
    /// Live media playlists keep their `_HLS_` directives (malformed ones: 400); a live part
    /// waits for its own announcement. Everything else is keyed by its path alone.
    pub(super) fn classify(
        path: &str,
        query: Option<&str>,
        kind: ResourceKind,
        live: bool,
    ) -> Result<LlRequest, &'static str> {
        let plain = LlRequest {
            key: path.to_string(),
            waits_for: None,
        };
        if !live {
            return Ok(plain);
        }
        match kind {
            ResourceKind::MediaPlaylist => {
                let directives = crate::packaging::Directives::parse(query)?;
                Ok(LlRequest {
                    key: format!("{path}{}", directives.canonical_query()),
                    waits_for: directives.blocks().then(|| WaitsFor {
                        playlist: path.to_string(),
                        directives,
                        part: false,
                    }),
                })
            }
            ResourceKind::Segment => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let Some((msn, index)) = crate::layout::parse_part_file(name) else {
                    return Ok(plain);
                };
                Ok(LlRequest {
                    key: path.to_string(),
                    waits_for: Some(WaitsFor {
                        playlist: format!("{dir}/{}", crate::layout::MEDIA_PLAYLIST),
                        directives: crate::packaging::Directives {
                            msn: Some(msn),
                            part: Some(index),
                            skip: false,
                        },
                        part: true,
                    }),
                })
            }
            _ => Ok(plain),
        }
    }
}

/// 503 for a blocking request that could not be answered in time (§6.2.5.2: an unchanged
/// playlist would be rejected by Apple players).
pub(super) fn unavailable_in_time() -> Response<Body> {
    let mut r = headers::text(StatusCode::SERVICE_UNAVAILABLE, "not available in time");
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// What the hold phase decided.
pub(super) struct Held {
    /// The bus announcement that woke the request (for the wake-latency histogram).
    pub(super) woken_at: Option<std::time::Instant>,
    /// The bus said nothing in time: judge the origin's current playlist instead (answer it
    /// if it satisfies the request, else 503), so a lagging bus costs no second hold.
    pub(super) check_origin: bool,
    /// A held-request slot kept through the fetch: a request the origin holds for us counts
    /// against the budget as much as one held here.
    _slot: Option<crate::http::held::HeldSlot>,
}

/// Holds a blocking request until the bus says its part or segment exists, and rewrites the
/// cache key of a request the playlist already satisfies to where the playlist ends (so old or
/// random directives cannot make a new key per request). The edge only trusts the bus about
/// timing: a request it would refuse or could not answer in time is passed to the origin, which
/// decides (the bus may lag or drop messages; the origin's playlist is the truth).
pub(super) async fn hold(
    edge: &Arc<Edge>,
    stream: &str,
    request: &mut LlRequest,
) -> Result<Held, Response<Body>> {
    use crate::packaging::{Directives, Verdict};
    let mut held = Held {
        woken_at: None,
        check_origin: false,
        _slot: None,
    };
    let Some(w) = &request.waits_for else {
        return Ok(held);
    };
    let take_slot = |held: &mut Held| -> Result<(), Response<Body>> {
        match edge.held.try_hold(stream) {
            Some(slot) => {
                held._slot = Some(slot);
                Ok(())
            }
            None => {
                edge.metrics.held("rejected");
                Err(headers::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many held requests",
                ))
            }
        }
    };
    let Some(end) = edge.ends.known(&w.playlist) else {
        take_slot(&mut held)?; // the origin holds it for us
        return Ok(held);
    };
    let (msn, part) = (w.directives.msn.unwrap_or(0), w.directives.part);
    match w
        .directives
        .verdict(&end, crate::packaging::ll_hls::MAX_ADVANCE_PART_LIMIT)
    {
        Verdict::Ready => {
            if !w.part {
                // Already satisfied: answered by the playlist as far as the bus knows it.
                let at_end = Directives {
                    msn: Some(end.msn),
                    part: (end.parts > 0 && !end.complete).then(|| end.parts - 1),
                    skip: w.directives.skip,
                };
                request.key = format!("{}{}", w.playlist, at_end.canonical_query());
            }
            return Ok(held);
        }
        Verdict::Refuse(_) => {
            take_slot(&mut held)?;
            return Ok(held);
        }
        Verdict::Hold => {}
    }
    if w.part && edge.cache.objects().contains_key(&request.key) {
        return Ok(held);
    }
    take_slot(&mut held)?;
    let timeout = Duration::from_millis(edge.config.held_request_timeout_ms);
    match edge
        .ends
        .wait(&w.playlist, timeout, |e| e.satisfies(msn, part))
        .await
    {
        blocking::Waited::Ready(at) => {
            edge.metrics.held("woken");
            held.woken_at = Some(at);
        }
        blocking::Waited::TimedOut => {
            edge.metrics.held("forwarded");
            held.check_origin = true;
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packaging::{Directives, PlaylistEnd};

    #[test]
    fn a_refusal_is_the_origins_lag_only_when_the_bus_says_the_playlist_got_there() {
        // The case from a suite run: hls.js had seen audio segment 37799268's part 0 on the
        // origin that died and asked for part 1; the survivor ended at 37799266 part 8.
        let w = WaitsFor {
            playlist: "/live/cam/audio/index.m3u8".into(),
            directives: Directives {
                msn: Some(37799268),
                part: Some(1),
                skip: true,
            },
            part: false,
        };
        let open = |msn, parts| PlaylistEnd {
            msn,
            parts,
            complete: false,
        };
        assert!(w.refused_by_a_lagging_origin(Some(open(37799268, 2))));
        assert!(w.refused_by_a_lagging_origin(Some(PlaylistEnd::segment(37799268, 9))));
        // Beyond anything announced: the request's fault, passed on at once.
        assert!(!w.refused_by_a_lagging_origin(Some(open(37799268, 1))));
        assert!(!w.refused_by_a_lagging_origin(Some(open(37799266, 8))));
        assert!(!w.refused_by_a_lagging_origin(None));
    }
}
