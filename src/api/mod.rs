//! The operators' HTTP API (`/api/v1/`, JSON) and the web console (`/console/`), answered on
//! the origin's and the edge's listeners before media routing.
//!
//! Each listener answers what its process knows: the origin side (streams from the
//! [`StreamRegistry`], kick and end, config) and the edge side (origins, cache, viewers). In
//! `zoomate run` both sides are one process, so both listeners answer every route; in
//! `zoomate origin` or `zoomate edge` a route of the missing side is 404 `not_served`.
//! Access ([`auth`]): a bearer token from `[api] token`; without one only a loopback listener
//! answers. The console's files are public; its calls carry the token it is given.
//!
//! The files, one job each: [`route`] (paths to typed routes), [`auth`] (the access rule),
//! [`dto`] (wire types, apart from internal state), [`streams`] and [`edge`] (state to wire
//! types), [`console`] (embedded static files). `docs/openapi.yaml` describes every route;
//! `tests/api.rs` validates real answers against it.

pub mod auth;
pub mod console;
pub mod dto;
pub mod edge;
pub mod route;
pub mod streams;

use crate::config::Config;
use crate::edge::view::EdgeView;
use crate::http::Body;
use crate::http::headers;
use crate::reload::{ReloadError, Reloader};
use crate::stream::StreamRegistry;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use route::{Route, RouteError};
use std::sync::{Arc, OnceLock};

/// One process's API: its config and whichever sides it runs.
pub struct Api {
    /// As running: a reload's live changes are applied to it ([`Api::config_reloaded`]).
    config: ArcSwap<Config>,
    registry: OnceLock<Arc<StreamRegistry>>,
    edge: OnceLock<EdgeView>,
    reloader: OnceLock<Reloader>,
}

impl Api {
    /// `config` is what `GET /api/v1/config` shows (secrets redacted) and holds the token.
    pub fn new(config: Arc<Config>) -> Arc<Api> {
        Arc::new(Api {
            config: ArcSwap::new(config),
            registry: OnceLock::new(),
            edge: OnceLock::new(),
            reloader: OnceLock::new(),
        })
    }

    /// `POST /api/v1/reload` goes through the same [`Reloader`] as SIGHUP.
    pub fn set_reloader(&self, reloader: Reloader) {
        let _ = self.reloader.set(reloader);
    }

    /// A reload applied `next`'s live keys: `GET config` shows them from now on. Only the
    /// keys a reload changes are taken, so what start filled in (bound addresses) stays.
    pub fn config_reloaded(&self, next: &Config) {
        self.config.rcu(|c| {
            let mut c = Config::clone(c);
            c.log.level = next.log.level.clone();
            c.ladder = next.ladder.clone();
            c.rtmp.stream_keys = next.rtmp.stream_keys.clone();
            c.edge.origins = next.edge.origins.clone();
            c.edge.cache_bytes = next.edge.cache_bytes;
            c
        });
    }

    /// The origin side: streams, kick, end.
    pub fn set_registry(&self, registry: Arc<StreamRegistry>) {
        let _ = self.registry.set(registry);
    }

    /// The edge side: origins, cache, viewers.
    pub fn set_edge(&self, edge: EdgeView) {
        let _ = self.edge.set(edge);
    }

    /// Answers `/api/v1/…` and `/console/…`; `None` for any other path. `loopback`: whether
    /// the listener the request came to is bound to a loopback address.
    pub async fn respond<B>(&self, req: &Request<B>, loopback: bool) -> Option<Response<Body>> {
        let path = req.uri().path();
        if console::owns(path) {
            return Some(console::respond(req.method(), path, req.headers()));
        }
        if !(path.starts_with(route::PREFIX) || path == route::PREFIX.trim_end_matches('/')) {
            return None;
        }
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if let Err(refusal) = auth::check(&self.config.load().api.token, loopback, authorization) {
            tracing::debug!(path, ?refusal, "API call refused");
            let error = match refusal.status() {
                StatusCode::FORBIDDEN => "forbidden",
                _ => "unauthorized",
            };
            let mut r = error_reply(refusal.status(), error, refusal.message());
            if refusal.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"zoomate\""),
                );
            }
            return Some(r);
        }
        Some(match route::route(req.method(), path) {
            Ok(route) => self.call(route).await,
            Err(RouteError::NotFound) => {
                error_reply(StatusCode::NOT_FOUND, "not_found", "no such API route")
            }
            Err(RouteError::MethodNotAllowed(allow)) => {
                let mut r = error_reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    &format!("use {allow}"),
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                r
            }
        })
    }

    async fn call(&self, route: Route) -> Response<Body> {
        let viewers = self.edge.get().map(|e| e.viewers());
        let config = self.config.load_full();
        match route {
            Route::Config => json(StatusCode::OK, &*config),
            Route::Reload => match self.reloader.get() {
                Some(r) => match r.reload_and_log("api").await {
                    Ok(report) => json(
                        StatusCode::OK,
                        &dto::Reloaded {
                            applied: report.applied,
                            needs_restart: report.needs_restart,
                        },
                    ),
                    Err(e @ (ReloadError::Config(_) | ReloadError::LogLevel(_))) => error_reply(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "config_refused",
                        &e.to_string(),
                    ),
                    Err(e) => error_reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "reload_failed",
                        &e.to_string(),
                    ),
                },
                // Embedded in a test or a library user: there is no file to read again.
                None => error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_reloader",
                    "this process was not started from a config file it can read again",
                ),
            },
            Route::Streams => match self.registry.get() {
                Some(r) => json(
                    StatusCode::OK,
                    &streams::list(r.streams(), &config, viewers.as_ref()),
                ),
                None => not_served("origin"),
            },
            Route::Stream(name) => match self.registry.get() {
                Some(r) => match r.stream(&name) {
                    Some(s) => json(StatusCode::OK, &streams::one(s, &config, viewers.as_ref())),
                    None => error_reply(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!("no stream named {name:?}"),
                    ),
                },
                None => not_served("origin"),
            },
            Route::Kick(name) => match self.registry.get() {
                Some(r) => match r.kick(&name) {
                    Ok(peer) => json(
                        StatusCode::ACCEPTED,
                        &dto::ActionAccepted {
                            stream: name,
                            action: "kick",
                            publisher: Some(peer.to_string()),
                        },
                    ),
                    Err(e) => {
                        let (status, error) = streams::refusal(&e);
                        error_reply(status, error, &e.to_string())
                    }
                },
                None => not_served("origin"),
            },
            Route::End(name) => match self.registry.get() {
                Some(r) => {
                    let publisher = r.stream(&name).and_then(|s| s.publisher);
                    match r.end(&name) {
                        Ok(()) => json(
                            StatusCode::ACCEPTED,
                            &dto::ActionAccepted {
                                stream: name,
                                action: "end",
                                publisher: publisher.map(|p| p.to_string()),
                            },
                        ),
                        Err(e) => {
                            let (status, error) = streams::refusal(&e);
                            error_reply(status, error, &e.to_string())
                        }
                    }
                }
                None => not_served("origin"),
            },
            Route::Origins => match self.edge.get() {
                Some(e) => json(StatusCode::OK, &edge::origins(e)),
                None => not_served("edge"),
            },
            Route::Cache => match self.edge.get() {
                Some(e) => json(StatusCode::OK, &edge::cache(e)),
                None => not_served("edge"),
            },
            Route::Viewers => match self.edge.get() {
                Some(e) => json(StatusCode::OK, &edge::viewers(e)),
                None => not_served("edge"),
            },
        }
    }
}

fn not_served(side: &str) -> Response<Body> {
    error_reply(
        StatusCode::NOT_FOUND,
        "not_served",
        &format!("this zoomate runs no {side}: ask one that does"),
    )
}

/// A JSON answer no cache keeps.
fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "API answer could not be serialised");
            return headers::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let mut r = Response::new(headers::full(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_reply(status: StatusCode, error: &'static str, message: &str) -> Response<Body> {
    json(
        status,
        &dto::ErrorBody {
            error,
            message: message.to_string(),
        },
    )
}
