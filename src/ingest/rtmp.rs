//! RTMP ingest: a session per publisher connection. `rml_rtmp` does the handshake, chunk
//! stream and AMF commands; this module does policy (app name, stream names, keys, one
//! publisher per stream, limits) and turns media messages into an FLV byte stream.

use super::flv;
use crate::Shutdown;
use crate::config::RtmpConfig;
use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Where published media goes. Implemented by the stream registry.
pub trait PublishHandler: Send + Sync + 'static {
    /// Called once a publish request is authorised. `stream` is the bare name (no `?key=`).
    /// Returns a bounded sender for the FLV byte stream (header, then tags); dropping it ends
    /// the stream. `Err(reason)` rejects the publish.
    fn on_publish(&self, stream: &str) -> Result<mpsc::Sender<Bytes>, String>;
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0:?}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("protocol: {0:?}")]
    Session(rml_rtmp::sessions::ServerSessionError),
    #[error("no publish within the handshake timeout")]
    HandshakeTimeout,
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("peer closed the connection")]
    Closed,
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// A bound RTMP listener.
pub struct RtmpServer {
    listener: TcpListener,
    config: Arc<RtmpConfig>,
}

impl RtmpServer {
    pub async fn bind(config: &RtmpConfig) -> std::io::Result<RtmpServer> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(RtmpServer { listener, config: Arc::new(config.clone()) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Accepts publishers until `shutdown`; then every connection closes (its stream ends).
    pub async fn run(self, handler: Arc<dyn PublishHandler>, shutdown: Shutdown) {
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        loop {
            let (socket, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "rtmp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(%peer, max = self.config.max_connections, "rtmp connection limit reached; closing");
                continue;
            };
            let _ = socket.set_nodelay(true);
            let config = self.config.clone();
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            let span = tracing::info_span!("rtmp", %peer, stream = tracing::field::Empty);
            tokio::spawn(
                async move {
                    let mut conn = Connection { socket, config, handler, publishing: None, stream: None };
                    let result = tokio::select! {
                        r = conn.serve() => r,
                        _ = shutdown.cancelled() => Ok(()),
                    };
                    match result {
                        Ok(()) | Err(ConnectionError::Closed) => tracing::info!("rtmp connection closed"),
                        Err(e) => tracing::warn!(error = %e, "rtmp connection closed"),
                    }
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

struct Connection {
    socket: TcpStream,
    config: Arc<RtmpConfig>,
    handler: Arc<dyn PublishHandler>,
    /// The FLV sink while a publish is active.
    publishing: Option<mpsc::Sender<Bytes>>,
    stream: Option<String>,
}

impl Connection {
    async fn read_some(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, ConnectionError> {
        match tokio::time::timeout_at(deadline, self.socket.read(buf)).await {
            Err(_) if self.publishing.is_none() => Err(ConnectionError::HandshakeTimeout),
            Err(_) => Err(ConnectionError::Idle(Duration::from_millis(self.config.idle_timeout_ms))),
            Ok(Ok(0)) => Err(ConnectionError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    async fn serve(&mut self) -> Result<(), ConnectionError> {
        let handshake_deadline = Instant::now() + Duration::from_millis(self.config.handshake_timeout_ms);
        let mut buf = vec![0u8; READ_BUFFER_BYTES];

        // Handshake (C0/C1/C2 ↔ S0/S1/S2).
        let mut handshake = Handshake::new(PeerType::Server);
        let leftover = loop {
            let n = self.read_some(&mut buf, handshake_deadline).await?;
            match handshake.process_bytes(&buf[..n]).map_err(ConnectionError::Handshake)? {
                HandshakeProcessResult::InProgress { response_bytes } => self.socket.write_all(&response_bytes).await?,
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    self.socket.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };

        let (mut session, initial) = ServerSession::new(ServerSessionConfig::new()).map_err(ConnectionError::Session)?;
        self.apply(&mut session, initial).await?;
        let results = session.handle_input(&leftover).map_err(ConnectionError::Session)?;
        self.apply(&mut session, results).await?;

        loop {
            let deadline = if self.publishing.is_some() {
                Instant::now() + Duration::from_millis(self.config.idle_timeout_ms)
            } else {
                handshake_deadline
            };
            let n = self.read_some(&mut buf, deadline).await?;
            let results = session.handle_input(&buf[..n]).map_err(ConnectionError::Session)?;
            self.apply(&mut session, results).await?;
        }
    }

    /// Sends outbound packets and acts on raised events, in order.
    async fn apply(&mut self, session: &mut ServerSession, results: Vec<ServerSessionResult>) -> Result<(), ConnectionError> {
        let mut queue: std::collections::VecDeque<ServerSessionResult> = results.into();
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.socket.write_all(&packet.bytes).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
                ServerSessionResult::RaisedEvent(event) => {
                    let more = self.on_event(session, event).await?;
                    queue.extend(more);
                }
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, session: &mut ServerSession, event: ServerSessionEvent) -> Result<Vec<ServerSessionResult>, ConnectionError> {
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                if app_name != self.config.app {
                    let r = session.reject_request(request_id, "NetConnection.Connect.Rejected", "unknown application").map_err(ConnectionError::Session)?;
                    self.flush(r).await;
                    return Err(ConnectionError::Rejected(format!("unknown app {app_name:?}")));
                }
                session.accept_request(request_id).map_err(ConnectionError::Session)
            }
            ServerSessionEvent::PublishStreamRequested { request_id, stream_key, .. } => {
                if self.publishing.is_some() {
                    let r = session.reject_request(request_id, "NetStream.Publish.BadName", "already publishing").map_err(ConnectionError::Session)?;
                    self.flush(r).await;
                    return Err(ConnectionError::Rejected("second publish on one connection".into()));
                }
                match self.authorize(&stream_key) {
                    Ok((name, tx)) => {
                        tracing::Span::current().record("stream", name.as_str());
                        tracing::info!("publish accepted");
                        if tx.send(flv::header()).await.is_err() {
                            return Err(ConnectionError::Rejected("stream closed before it started".into()));
                        }
                        self.publishing = Some(tx);
                        self.stream = Some(name);
                        session.accept_request(request_id).map_err(ConnectionError::Session)
                    }
                    Err(reason) => {
                        let r = session.reject_request(request_id, "NetStream.Publish.BadName", "publish rejected").map_err(ConnectionError::Session)?;
                        self.flush(r).await;
                        Err(ConnectionError::Rejected(reason))
                    }
                }
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let r = session.reject_request(request_id, "NetStream.Play.Failed", "this server only ingests").map_err(ConnectionError::Session)?;
                self.flush(r).await;
                Err(ConnectionError::Rejected("play requested".into()))
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                self.forward(flv::TAG_VIDEO, timestamp.value, &data).await?;
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                self.forward(flv::TAG_AUDIO, timestamp.value, &data).await?;
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                tracing::info!("publisher finished");
                self.publishing = None;
                Err(ConnectionError::Closed)
            }
            ServerSessionEvent::ClientChunkSizeChanged { new_chunk_size } if new_chunk_size > self.config.max_message_bytes => {
                Err(ConnectionError::TooLarge(new_chunk_size as usize))
            }
            // releaseStream, FCPublish, _checkbw, metadata, acks: nothing to do.
            _ => Ok(Vec::new()),
        }
    }

    /// Best effort: an error status before closing, so the publisher shows a reason.
    async fn flush(&mut self, results: Vec<ServerSessionResult>) {
        for r in results {
            if let ServerSessionResult::OutboundResponse(p) = r {
                let _ = self.socket.write_all(&p.bytes).await;
            }
        }
    }

    async fn forward(&mut self, kind: u8, timestamp_ms: u32, body: &[u8]) -> Result<(), ConnectionError> {
        let Some(tx) = &self.publishing else { return Ok(()) };
        if body.len() > self.config.max_message_bytes as usize {
            return Err(ConnectionError::TooLarge(body.len()));
        }
        let Some(tag) = flv::tag(kind, timestamp_ms, body) else { return Err(ConnectionError::TooLarge(body.len())) };
        // Backpressure: a slow pipeline slows the publisher's TCP, bounded by the idle timeout.
        let idle = Duration::from_millis(self.config.idle_timeout_ms);
        match tokio::time::timeout(idle, tx.send(tag)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ConnectionError::Rejected("stream pipeline ended".into())),
            Err(_) => Err(ConnectionError::Idle(idle)),
        }
    }

    /// Stream name, key check, then the handler. Keys are compared in constant time and never logged.
    fn authorize(&self, publish_name: &str) -> Result<(String, mpsc::Sender<Bytes>), String> {
        let (name, query) = publish_name.split_once('?').unwrap_or((publish_name, ""));
        if !crate::config::is_valid_name(name) {
            return Err("invalid stream name".into());
        }
        if !self.config.stream_keys.is_empty() {
            let Some(expected) = self.config.stream_keys.get(name) else { return Err(format!("stream {name:?} is not allowed to publish")) };
            let presented = query.split('&').find_map(|kv| kv.strip_prefix("key=")).unwrap_or("");
            let ok: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
            if !ok {
                return Err(format!("wrong or missing key for stream {name:?}"));
            }
        }
        self.handler.on_publish(name).map(|tx| (name.to_string(), tx))
    }
}
