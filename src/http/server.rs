//! The HTTP accept loop shared by the origin and the edge: HTTP/1.1 and HTTP/2 (cleartext,
//! prior knowledge, detected from the connection preface: LL-HLS clients multiplex their
//! blocking reloads and part requests on one connection), fair connection slots ([`slots`]:
//! a limit per listener and per client address, the longest-idle connection closed to admit a
//! new client, a request budget per connection), a header read timeout and size limit, a bound
//! on concurrent HTTP/2 streams, and a graceful drain on the shutdown signal.
//!
//! [`slots`]: super::slots

use super::slots::{ConnectionMetrics, Reason, RequestGuard, SlotLimits, Slots};
use crate::Shutdown;
use crate::config::{HttpLimits, MIN_MAX_HEADER_BYTES};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Concurrent requests on one HTTP/2 connection (a player needs a handful; the connection limit
/// bounds connections, this bounds what one connection can ask at once).
pub const MAX_HTTP2_STREAMS: u32 = 128;

/// Connections accepted and waiting for a slot at once; beyond this, new connections wait in
/// the kernel's accept queue (the listener is full and nothing could be made idle in time).
const MAX_PENDING_ADMISSIONS: usize = 64;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until the first bytes tell HTTP/1 from HTTP/2 (a whole preface, or anything that is
/// not one), at most `within`. False: nothing usable arrived in time, or the peer closed.
async fn protocol_known_in_time(stream: &tokio::net::TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 {
            return false;
        }
        if n == buf.len() || buf[..n] != H2_PREFACE[..n] {
            return true;
        }
        // Part of a preface: peek returns at once while those bytes wait, so poll gently.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(10)))
            .await
            .is_err()
        {
            return false;
        }
    }
}

/// The client's address, put into every request's extensions (the edge counts viewers by it).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Response body type used by every zoomate handler.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A response body that keeps its request counted as in flight until hyper is done writing it
/// (dropped): a connection streaming an answer is busy, not idle.
struct InFlightBody {
    inner: Body,
    _request: RequestGuard,
}

impl hyper::body::Body for InFlightBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `handler` on `listener` until `shutdown` fires, then lets in-flight requests finish
/// for at most `limits.drain_timeout_ms`.
///
/// Every connection is accepted at once and given a slot ([`Slots`]): when all are taken, the
/// longest-idle connection is closed to make room and the newcomer waits for its slot at most
/// `limits.header_read_timeout_ms` (the time it has to send its request anyway), then is
/// closed. Only when [`MAX_PENDING_ADMISSIONS`] newcomers are waiting do further ones wait in
/// the kernel's accept queue. Counted in `metrics`.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: HttpLimits,
    metrics: ConnectionMetrics,
    handler: H,
    shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let slots = Slots::new(
        SlotLimits {
            max_connections: limits.max_connections,
            max_per_address: limits.max_connections_per_address,
            max_requests_per_connection: limits.max_requests_per_connection,
        },
        metrics.clone(),
        shutdown.clone(),
    );
    let pending = Arc::new(Semaphore::new(MAX_PENDING_ADMISSIONS));
    let connections = tokio_util::task::TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        // validate() refuses less than hyper's minimum, so this is the configured value; the
        // max() only keeps hyper's assertion away from limits built without validation.
        .max_buf_size(limits.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_HTTP2_STREAMS)
        .max_header_list_size(limits.max_header_bytes.max(MIN_MAX_HEADER_BYTES) as u32)
        // A peer that opens streams and resets them at once must not cost unbounded work.
        .max_pending_accept_reset_streams(Some(64))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let drain = Duration::from_millis(limits.drain_timeout_ms);
    loop {
        let waiting = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = pending.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (handler, builder, slots, metrics, shutdown) = (
            handler.clone(),
            builder.clone(),
            slots.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        connections.spawn(async move {
            let slot = match slots.admit(peer.ip(), header_timeout).await {
                Ok(slot) => slot,
                Err(_) if shutdown.is_cancelled() => return,
                Err(reason) => {
                    metrics.refused(reason);
                    match reason {
                        Reason::PerAddress => tracing::debug!(%peer, "connection refused: its address holds its limit of busy connections"),
                        _ => tracing::debug!(%peer, "connection refused: no slot became free in time"),
                    }
                    return;
                }
            };
            drop(waiting);
            let close = slot.connection().close_requested().clone();
            // hyper's version detection has no timeout of its own: a peer that sends nothing
            // (or a preface it never finishes) would hold a connection slot forever.
            let known = tokio::select! {
                k = protocol_known_in_time(&stream, header_timeout) => k,
                _ = close.cancelled() => false,
            };
            if !known {
                tracing::debug!(%peer, "no request within the header timeout (or closed to make room)");
                return;
            }
            let slot = Arc::new(slot);
            let in_slot = slot.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                let request = in_slot.begin_request();
                let http1 = req.version() < http::Version::HTTP_2;
                let fut = handler(req);
                async move {
                    let mut resp = fut.await;
                    if request.is_last() {
                        // The budget is spent: HTTP/1 is told so and closes after this answer;
                        // the graceful close below sends HTTP/2 a GOAWAY.
                        if http1 {
                            resp.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        request.retire();
                    }
                    Ok::<_, Infallible>(resp.map(|inner| InFlightBody {
                        inner,
                        _request: request,
                    }))
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = close.cancelled() => {
                    // Evicted, budget spent or shutting down: what is in flight finishes (an
                    // idle HTTP/1 connection closes at once), within the drain timeout.
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(drain, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::debug!(%peer, "connection did not close in time after a graceful close; dropped");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended with error");
            }
            drop(slot);
        });
    }
    // The shutdown signal also asked every connection to close gracefully (their close tokens
    // are its children); wait for them, at most the drain timeout.
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_ms = limits.drain_timeout_ms,
            "http drain timed out; closing remaining connections"
        );
    }
}
