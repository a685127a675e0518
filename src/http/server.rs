//! The HTTP accept loop shared by the origin and the edge: HTTP/1.1 and HTTP/2 (cleartext,
//! prior knowledge, detected from the connection preface: LL-HLS clients multiplex their
//! blocking reloads and part requests on one connection), a connection limit, a header read
//! timeout and size limit, a bound on concurrent HTTP/2 streams, and a graceful drain on the
//! shutdown signal.

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
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Concurrent requests on one HTTP/2 connection (a player needs a handful; the connection limit
/// bounds connections, this bounds what one connection can ask at once).
pub const MAX_HTTP2_STREAMS: u32 = 128;

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
        let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper's version detection has no timeout of its own: a peer that sends nothing
            // (or a preface it never finishes) would hold a connection slot forever.
            if !protocol_known_in_time(&stream, header_timeout).await {
                tracing::debug!(%peer, "no request within the header timeout; closed");
                drop(permit);
                return;
            }
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
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
