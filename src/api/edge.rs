//! `/api/v1/origins`, `/cache`, `/viewers`: what this process's edge knows.

use super::dto;
use crate::edge::view::EdgeView;

pub fn origins(edge: &EdgeView) -> dto::OriginList {
    dto::OriginList {
        origins: edge
            .origins()
            .into_iter()
            .map(|o| dto::Origin {
                id: o.id,
                base_url: o.base_url,
                is_static: o.is_static,
                healthy: o.healthy,
                usable: o.usable,
                in_flight: o.in_flight as u64,
                streams: o.streams,
                heartbeat_age_seconds: o.heartbeat_age.map(|d| d.as_millis() as f64 / 1000.0),
                load_streams: o.announced_load.map(|(streams, _)| streams),
                // f32 on the bus: three decimals, not f32's noise in f64 digits.
                load_encoder_speed: o
                    .announced_load
                    .map(|(_, speed)| (f64::from(speed) * 1000.0).round() / 1000.0),
            })
            .collect(),
    }
}

pub fn cache(edge: &EdgeView) -> dto::Cache {
    let c = edge.cache();
    let asked = c.hits + c.misses;
    dto::Cache {
        bytes: c.bytes,
        capacity_bytes: c.capacity_bytes,
        entries: c.entries,
        hits: c.hits,
        misses: c.misses,
        hit_ratio: (asked > 0).then(|| c.hits as f64 / asked as f64),
        top_objects: c
            .top_objects
            .into_iter()
            .map(|o| dto::CachedObject {
                path: o.path,
                kind: o.kind,
                bytes: o.bytes,
                hits: o.hits,
            })
            .collect(),
    }
}

pub fn viewers(edge: &EdgeView) -> dto::ViewerCounts {
    dto::ViewerCounts {
        window_seconds: edge.viewer_window().as_millis() as f64 / 1000.0,
        streams: edge
            .viewers()
            .into_iter()
            .map(|(stream, viewers)| dto::StreamViewers { stream, viewers })
            .collect(),
    }
}
