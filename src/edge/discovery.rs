//! Background services that keep the edge's picture of its origins current: the bus listener
//! (origin discovery from heartbeats, playlist freshness and prefetch from segment
//! announcements, every announcement checked by [`super::trust`] first) and the active health
//! checker.

use super::{Edge, fetch_into_cache, route, trust, unix_now_ms};
use crate::Shutdown;
use crate::bus::BusEvent;
use crate::config::EdgeConfig;
use crate::http::base_url::{BaseUrl, OriginPattern};
use crate::layout;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Bus silence after which the edge's subscriber reconnects (origins heartbeat every ~1 s).
const BUS_IDLE_RECONNECT: Duration = Duration::from_secs(10);

/// Bus events → origin discovery, playlist freshness, prefetch.
pub(super) async fn bus_listener(edge: Arc<Edge>, shutdown: Shutdown) {
    // The edge hears every origin's heartbeat, so a long silence means a dead link (a vanished
    // peer without FIN looks idle forever): reconnect after 10 s of it.
    let mut options =
        crate::bus::subscriber::SubscriberOptions::with_capacity(edge.config.bus_queue_capacity);
    options.idle_reconnect = Some(BUS_IDLE_RECONNECT);
    let (sub, rx) = crate::bus::subscriber::BusSubscriber::spawn_deliveries(
        edge.config.bus_connect.clone(),
        vec![],
        options,
        shutdown.clone(),
    );
    let _ = edge.bus_stats.set(sub);
    believe_deliveries(edge, rx, shutdown).await;
}

/// Judges each delivery, then acts on the believed ones; the allow-list follows the edge's
/// (a hot reload of `edge.origins` replaces it between two deliveries).
async fn believe_deliveries(
    edge: Arc<Edge>,
    mut rx: tokio::sync::mpsc::Receiver<crate::bus::Delivery>,
    shutdown: Shutdown,
) {
    let mut allow = edge.allow.subscribe();
    let mut judge = trust::Judge::new(trust_policy(
        &edge.config,
        allow.borrow_and_update().clone(),
    ));
    loop {
        let delivery = tokio::select! {
            // A reload is applied before the deliveries that follow it.
            biased;
            _ = shutdown.cancelled() => return,
            Ok(()) = allow.changed() => {
                judge.set_allow(allow.borrow_and_update().clone());
                continue;
            }
            d = rx.recv() => match d { Some(d) => d, None => return },
        };
        // Bus messages carry no send time: announce → cached is measured from here.
        let arrived = std::time::Instant::now();
        if let Err(reason) = judge.judge(
            &delivery.endpoint,
            &delivery.topic,
            &delivery.event,
            unix_now_ms(),
        ) {
            reject(&edge, reason, &delivery.endpoint, &delivery.topic);
            continue;
        }
        match delivery.event {
            BusEvent::OriginHeartbeat {
                origin_id,
                http_base_url,
                streams,
                interval_ms,
                load_streams,
                load_encoder_speed,
            } => {
                let origins = &edge.upstream.origins;
                origins.heartbeat(&origin_id, &http_base_url, &streams, interval_ms);
                origins.record_load(&origin_id, load_streams, load_encoder_speed);
            }
            BusEvent::SegmentReady {
                stream,
                rendition,
                media_sequence,
                uri,
                byte_size,
                origin_id,
                ..
            } => {
                let playlist = layout::live_playlist_uri(&stream, &rendition);
                edge.cache.announce_sequence(&playlist, media_sequence);
                edge.ends.announce(
                    &playlist,
                    crate::packaging::PlaylistEnd::segment(media_sequence, 0),
                );
                edge.cache.announce_size(&uri, byte_size);
                // The MPD lists every rendition: it changed with this segment (CMAF streams).
                edge.cache
                    .invalidate(&layout::live_manifest_uri(&stream))
                    .await;
                if edge.config.prefetch {
                    prefetch(&edge, stream, uri, origin_id, "segment", arrived);
                }
            }
            BusEvent::PartReady {
                stream,
                rendition,
                media_sequence,
                part_index,
                uri,
                byte_size,
                origin_id,
                ..
            } => {
                edge.cache.announce_size(&uri, byte_size);
                // Wakes every request held for this part (they fetch it, or the playlist, once).
                edge.ends.announce(
                    &layout::live_playlist_uri(&stream, &rendition),
                    crate::packaging::PlaylistEnd::part(media_sequence, part_index),
                );
                if edge.config.prefetch {
                    prefetch(&edge, stream, uri, origin_id, "part", arrived);
                }
            }
            BusEvent::PlaylistUpdated {
                uri,
                media_sequence,
                ..
            } => edge.cache.announce_sequence(&uri, media_sequence),
            BusEvent::StreamStarted { stream, .. } | BusEvent::StreamEnded { stream, .. } => {
                edge.cache
                    .invalidate(&layout::live_master_uri(&stream))
                    .await;
            }
        }
    }
}

/// The allow-list: every configured origin (for `zoomate run`, its own), plus the operator's
/// `edge.origin_allow` patterns. Validated at config time; an entry that does not parse here
/// cannot occur, and is skipped rather than allowing anything.
pub(super) fn allow_list(origins: &[String], patterns: &[String]) -> Vec<OriginPattern> {
    origins
        .iter()
        .filter_map(|o| BaseUrl::parse(o).ok().map(|u| OriginPattern::exact(&u)))
        .chain(patterns.iter().filter_map(|p| OriginPattern::parse(p).ok()))
        .collect()
}

fn trust_policy(config: &EdgeConfig, allow: Vec<OriginPattern>) -> trust::TrustPolicy {
    trust::TrustPolicy {
        allow,
        max_origins: config.max_learned_origins,
        origin_expiry_ms: config.learned_origin_expiry_ms as i64,
    }
}

/// Counts a refused announcement and logs it, rate-limited (the 1st, 2nd, 4th, 8th… of each
/// reason): a flood of forgeries must not become a flood of log lines.
pub(super) fn reject(edge: &Edge, reason: trust::Rejection, source: &str, what: &str) {
    edge.metrics.bus_rejected(reason.label());
    let i = trust::Rejection::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0);
    let n = edge.rejections_logged[i].fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(
            reason = reason.label(),
            source,
            what = %what.escape_debug(),
            rejected = n,
            "bus announcement not believed"
        );
    }
}

/// Pulls an announced segment into the cache from the origin that announced it (never from
/// another: the announcement vouches only for its own origin's copy). `label` (`segment`,
/// `part`) and `announced` (its arrival) time it into `zoomate_edge_announce_to_cached_seconds`.
fn prefetch(
    edge: &Arc<Edge>,
    stream: String,
    uri: String,
    origin_id: String,
    label: &'static str,
    announced: std::time::Instant,
) {
    let Ok(permit) = edge.prefetch_permits.clone().try_acquire_owned() else {
        edge.metrics.prefetch_skipped.inc();
        return;
    };
    let e = edge.clone();
    edge.tasks.spawn(async move {
        let _permit = permit;
        let Ok((routed, _)) = route(&uri) else {
            return;
        };
        let (kind, live) = (routed.kind, routed.live);
        if e.cache.objects().contains_key(&uri) {
            return;
        }
        e.metrics.prefetches.inc();
        match fetch_into_cache(
            &e,
            &stream,
            &uri,
            kind,
            live,
            Some(origin_id),
            super::upstream::Attempt { held: None },
            Arc::new(AtomicBool::new(false)),
        )
        .await
        {
            Ok(_) => e.metrics.announce_to_cached(label, announced),
            Err(err) => tracing::debug!(uri, error = %err, "prefetch failed"),
        }
    });
}

/// Active health checks: `GET /healthz` on every origin each interval, after forgetting the
/// learned origins whose heartbeats stopped (so the dead are not checked forever).
pub(super) async fn health_checker(edge: Arc<Edge>, shutdown: Shutdown) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(edge.config.health_check_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        edge.upstream.origins.expire_learned(unix_now_ms());
        for origin in edge.upstream.origins.snapshot().iter() {
            let uri: Result<http::Uri, _> = format!("{}/healthz", origin.base_url).parse();
            let Ok(uri) = uri else { continue };
            let Ok(req) = http::Request::get(uri).body(http_body_util::Empty::<Bytes>::new())
            else {
                continue;
            };
            let ok = matches!(
                tokio::time::timeout(edge.upstream.timeout, edge.upstream.client.request(req)).await,
                Ok(Ok(r)) if r.status().is_success()
            );
            if ok {
                origin.record_success(edge.config.health_rise)
            } else {
                origin.record_failure(edge.config.health_fall)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Delivery;

    fn heartbeat(id: &str, base_url: &str) -> Delivery {
        let event = BusEvent::OriginHeartbeat {
            origin_id: id.into(),
            http_base_url: base_url.into(),
            streams: vec!["demo".into()],
            load_streams: 1,
            load_encoder_speed: 1.0,
            interval_ms: 1000,
        };
        Delivery {
            endpoint: Arc::from("tcp://127.0.0.1:5556"),
            server_key: None,
            topic: event.topic(),
            event,
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The bug: the judge kept the allow-list it started with, so after `edge.origins` changed
    /// on reload a new origin's heartbeats were refused (`not_allowed`, and then all its
    /// announcements `unknown_origin`) and a removed one's still believed.
    #[tokio::test]
    async fn a_reload_of_edge_origins_replaces_the_bus_allow_list() {
        let (old, new) = ("http://127.0.0.1:18001", "http://127.0.0.1:18002");
        let config = crate::config::Config::parse(&format!(
            "[edge]\nlisten = \"127.0.0.1:0\"\norigins = [\"{old}\"]\n"
        ))
        .unwrap();
        let server = super::super::EdgeServer::bind(&config).await.unwrap();
        let reload = server.reload_handle(vec![]);
        let edge = server.edge.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let shutdown = Shutdown::new();
        let listener = tokio::spawn(believe_deliveries(edge.clone(), rx, shutdown.clone()));
        let learned = |id: &str| {
            edge.upstream
                .origins
                .snapshot()
                .iter()
                .any(|o| o.id == id && o.streams.contains("demo"))
        };
        let not_allowed = || edge.metrics.bus_rejected_count("not_allowed");

        tx.send(heartbeat("a", old)).await.unwrap();
        until("the configured origin's heartbeat", || learned("a")).await;
        tx.send(heartbeat("b", new)).await.unwrap();
        until("the unlisted origin refused", || not_allowed() == 1).await;

        reload.set_static_origins(&[new.to_string()]);
        tx.send(heartbeat("b", new)).await.unwrap();
        until("the newly configured origin's heartbeat believed", || {
            learned("b")
        })
        .await;
        tx.send(heartbeat("a", old)).await.unwrap();
        until("the removed origin refused", || not_allowed() == 2).await;

        shutdown.cancel();
        listener.await.unwrap();
    }
}
