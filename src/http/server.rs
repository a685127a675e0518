//! The HTTP/1.1 accept loop shared by the origin and the edge: a connection limit, a header
//! read timeout and size limit, and a graceful drain on the shutdown signal.

use crate::Shutdown;
use crate::config::{HttpLimits, MIN_MAX_HEADER_BYTES};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Response body type used by every zoomate handler.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Serves `handler` on `listener` until `shutdown` fires, then lets in-flight requests finish
/// for at most `limits.drain_timeout_ms`.
///
/// Connections beyond `limits.max_connections` wait in the kernel's accept queue rather than
/// being accepted and starved (mini-redis's semaphore pattern).
pub async fn serve<H, F>(listener: TcpListener, limits: HttpLimits, handler: H, shutdown: Shutdown)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        // validate() refuses less than hyper's minimum, so this is the configured value; the
        // max() only keeps hyper's assertion away from limits built without validation.
        .max_buf_size(limits.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
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
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended with error");
            }
            drop(permit);
        });
    }
    let drain = Duration::from_millis(limits.drain_timeout_ms);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_ms = limits.drain_timeout_ms,
            "http drain timed out; closing remaining connections"
        );
    }
}
