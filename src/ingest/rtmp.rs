//! RTMP ingest: one tokio task per publisher connection. `rml_rtmp` does the handshake, the
//! chunk stream and the AMF0 commands; this module does policy (application name, stream names,
//! keys, one publish per connection, limits) and turns media messages into an FLV byte stream
//! for the [`PublishHandler`].
//!
//! A connection goes: handshake → `connect` (app checked) → `createStream` → `publish` (name,
//! key and handler checked) → media until the publisher leaves, goes idle, or we shut down.
//! Everything before the publish is accepted must finish within `handshake_timeout_ms`.
//!
//! Limits on what a peer can make us hold: `rml_rtmp` keeps at most one partial message
//! (RTMP message lengths are 24-bit, so < 16 MiB) plus one partial chunk, and it does not report
//! `SetChunkSize` to us, so we bound the bytes read without any complete message coming out of
//! the parser (the *unparsed byte budget*); a media message above `max_message_bytes` closes the
//! connection. `rml_rtmp` can panic on some malformed input (e.g. `@setDataFrame` without a
//! value), so every call into it is wrapped in `catch_unwind` and a panic closes just that
//! connection.

use super::flv;
use crate::Shutdown;
use crate::config::RtmpConfig;
use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// After a rejection, how long we wait for the peer to read our error status and hang up
/// before closing (closing with unread input makes the kernel send RST, which can discard it).
const REJECT_LINGER_MS: u64 = 500;
/// Input read and discarded at most while lingering after a rejection.
const REJECT_LINGER_MAX_BYTES: usize = 256 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Where published media goes. Implemented by the stream registry.
pub trait PublishHandler: Send + Sync + 'static {
    /// Called once the publish request is authorised (key checked). `stream` is the bare name
    /// (no `?key=…`). Returns a bounded sender that receives the FLV byte stream: the 13-byte
    /// FLV header, then complete FLV tags built from the RTMP audio/video messages in arrival
    /// order (plus an `onMetaData` script tag when the publisher sends one). Dropping the sender
    /// (or the receiver closing) ends the stream. `Err(reason)` rejects the publish.
    fn on_publish(&self, stream: &str) -> Result<mpsc::Sender<Bytes>, String>;
}

/// Why a publish request was refused. Never carries the presented key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRejection {
    #[error("invalid stream name")]
    InvalidName,
    #[error("stream is not in rtmp.stream_keys")]
    NotAllowed,
    #[error("missing stream key")]
    MissingKey,
    #[error("wrong stream key")]
    WrongKey,
    #[error("handler refused: {0}")]
    Handler(String),
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {0:?}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("protocol error: {0:?}")]
    Session(rml_rtmp::sessions::ServerSessionError),
    #[error("malformed input crashed the RTMP parser")]
    ParserPanic,
    #[error("no publish within the handshake timeout")]
    HandshakeTimeout,
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error("write to the peer stalled for {0:?}")]
    WriteStalled(Duration),
    #[error("peer closed the connection before publishing")]
    ClosedBeforePublish,
    #[error("publisher disconnected")]
    PublisherDisconnected,
    #[error("publish finished")]
    PublishFinished,
    #[error("{0}")]
    Rejected(String),
    #[error("stream consumer went away")]
    ConsumerGone,
    #[error("stream consumer accepted nothing for {0:?}")]
    ConsumerStalled(Duration),
    #[error("message of {0} bytes exceeds rtmp.max_message_bytes")]
    MessageTooLarge(usize),
    #[error("{0} bytes received without a complete RTMP message")]
    UnparsedBudget(usize),
    #[error("server shutting down")]
    Shutdown,
}

/// A bound RTMP listener.
pub struct RtmpServer {
    listener: TcpListener,
    config: Arc<RtmpConfig>,
}

impl RtmpServer {
    /// Binds `config.listen` (port 0 picks a free port; see [`RtmpServer::local_addr`]).
    pub async fn bind(config: &RtmpConfig) -> std::io::Result<RtmpServer> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(RtmpServer {
            listener,
            config: Arc::new(config.clone()),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// Accepts connections until `shutdown` is cancelled; then closes every connection (so
    /// every publisher's sender drops) and returns once all connection tasks have finished.
    pub async fn run(self, handler: Arc<dyn PublishHandler>, shutdown: Shutdown) {
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        let tasks = TaskTracker::new();
        loop {
            let (socket, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "rtmp accept failed");
                        tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(%peer, max_connections = self.config.max_connections, "rtmp connection limit reached; closing");
                drop(socket);
                continue;
            };
            let _ = socket.set_nodelay(true);
            let conn = Connection::new(socket, self.config.clone(), handler.clone());
            let shutdown = shutdown.clone();
            let span = tracing::info_span!("rtmp", %peer, stream = tracing::field::Empty);
            tasks.spawn(
                async move {
                    conn.run(shutdown).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        tasks.close();
        tasks.wait().await;
    }
}

/// Splits `name?query` into the name and the query (empty when absent).
fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

/// The value of `param` in an `a=1&b=2` query, if present.
fn query_param<'a>(query: &'a str, param: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == param).then_some(v)
    })
}

/// Checks a publish request against the configuration and returns the bare stream name.
///
/// `publish_name` is the name from the `publish` command (`cam?key=SECRET` with ffmpeg and OBS);
/// `app_query` is whatever followed `?` in the `connect` app name (some clients put the query
/// there: `rtmp://host/live?key=SECRET/cam`). The key in the publish name wins. Keys are
/// compared in constant time.
pub fn authorize_publish(
    config: &RtmpConfig,
    app_query: &str,
    publish_name: &str,
) -> Result<String, PublishRejection> {
    let (name, query) = split_query(publish_name);
    if !crate::config::is_valid_name(name) {
        return Err(PublishRejection::InvalidName);
    }
    if !config.stream_keys.is_empty() {
        // Look the name up first: an unlisted stream is refused whatever key it presents.
        let expected = config
            .stream_keys
            .get(name)
            .ok_or(PublishRejection::NotAllowed)?;
        let presented = query_param(query, "key")
            .or_else(|| query_param(app_query, "key"))
            .ok_or(PublishRejection::MissingKey)?;
        let matches: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
        if !matches {
            return Err(PublishRejection::WrongKey);
        }
    }
    Ok(name.to_string())
}

/// The AMF0 body of an `onMetaData` script tag rebuilt from what `rml_rtmp` parsed out of
/// `@setDataFrame` (it does not hand us the raw bytes). `None` if nothing is known.
pub fn metadata_script_body(m: &StreamMetadata) -> Option<Vec<u8>> {
    let mut props: HashMap<String, Amf0Value> = HashMap::new();
    let mut num = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            props.insert(k.to_string(), Amf0Value::Number(v));
        }
    };
    num("width", m.video_width.map(f64::from));
    num("height", m.video_height.map(f64::from));
    num("videocodecid", m.video_codec_id.map(f64::from));
    num("framerate", m.video_frame_rate.map(f64::from));
    num("videodatarate", m.video_bitrate_kbps.map(f64::from));
    num("audiocodecid", m.audio_codec_id.map(f64::from));
    num("audiodatarate", m.audio_bitrate_kbps.map(f64::from));
    num("audiosamplerate", m.audio_sample_rate.map(f64::from));
    num("audiochannels", m.audio_channels.map(f64::from));
    if let Some(stereo) = m.audio_is_stereo {
        props.insert("stereo".into(), Amf0Value::Boolean(stereo));
    }
    if let Some(encoder) = &m.encoder {
        props.insert("encoder".into(), Amf0Value::Utf8String(encoder.clone()));
    }
    if props.is_empty() {
        return None;
    }
    rml_rtmp::rml_amf0::serialize(&vec![
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(props),
    ])
    .ok()
}

/// Runs a call into `rml_rtmp`, turning a panic on malformed peer input into an error.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ConnectionError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| ConnectionError::ParserPanic)
}

/// An active publish: where its FLV bytes go.
struct Publishing {
    sink: mpsc::Sender<Bytes>,
}

struct Connection {
    socket: TcpStream,
    config: Arc<RtmpConfig>,
    handler: Arc<dyn PublishHandler>,
    /// Query string that came with the `connect` app name, if any (may hold `key=`).
    app_query: String,
    publishing: Option<Publishing>,
    /// Bytes fed to the parser since it last produced anything (see the module doc).
    unparsed_bytes: usize,
}

impl Connection {
    fn new(
        socket: TcpStream,
        config: Arc<RtmpConfig>,
        handler: Arc<dyn PublishHandler>,
    ) -> Connection {
        Connection {
            socket,
            config,
            handler,
            app_query: String::new(),
            publishing: None,
            unparsed_bytes: 0,
        }
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.config.idle_timeout_ms)
    }

    /// Most bytes the parser may hold without producing a message: one maximal message plus
    /// chunk-header overhead (generous: tiny chunk sizes cost a header byte per chunk) plus a read.
    fn unparsed_budget(&self) -> usize {
        (self.config.max_message_bytes as usize)
            .saturating_mul(2)
            .saturating_add(READ_BUFFER_BYTES)
    }

    /// Serves the connection and logs its end, one line.
    async fn run(mut self, shutdown: Shutdown) {
        let result = tokio::select! {
            r = self.serve() => r,
            _ = shutdown.cancelled() => Err(ConnectionError::Shutdown),
        };
        // The stream ends here, whatever happens to the socket next.
        self.publishing = None;
        let Err(e) = result else { return };
        match e {
            ConnectionError::PublishFinished
            | ConnectionError::PublisherDisconnected
            | ConnectionError::Shutdown => {
                tracing::info!("rtmp connection closed: {e}");
            }
            ConnectionError::Rejected(reason) => {
                tracing::warn!(%reason, "rtmp request rejected; closing");
                self.linger().await;
            }
            e => tracing::warn!(error = %e, "rtmp connection closed"),
        }
    }

    /// Gives a rejected peer a moment to read our error status: half-close, then discard input
    /// until it hangs up (bounded in time and bytes).
    async fn linger(&mut self) {
        let _ = self.socket.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut discarded = 0usize;
        let deadline = Instant::now() + Duration::from_millis(REJECT_LINGER_MS);
        while discarded < REJECT_LINGER_MAX_BYTES {
            match tokio::time::timeout_at(deadline, self.socket.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => break,
            }
        }
    }

    async fn read_some(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, ConnectionError> {
        match tokio::time::timeout_at(deadline, self.socket.read(buf)).await {
            Err(_) if self.publishing.is_none() => Err(ConnectionError::HandshakeTimeout),
            Err(_) => Err(ConnectionError::Idle(self.idle_timeout())),
            Ok(Ok(0)) if self.publishing.is_none() => Err(ConnectionError::ClosedBeforePublish),
            Ok(Ok(0)) => Err(ConnectionError::PublisherDisconnected),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Writes to the peer; a peer that stops reading cannot hold the task forever.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        let limit = self.idle_timeout();
        match tokio::time::timeout(limit, self.socket.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ConnectionError::WriteStalled(limit)),
        }
    }

    async fn serve(&mut self) -> Result<(), ConnectionError> {
        let handshake_deadline =
            Instant::now() + Duration::from_millis(self.config.handshake_timeout_ms);
        let mut buf = vec![0u8; READ_BUFFER_BYTES];

        // Handshake: C0/C1/C2 ↔ S0/S1/S2 (RTMP 1.0 spec §5.2).
        let mut handshake = Handshake::new(PeerType::Server);
        let leftover = loop {
            let n = self.read_some(&mut buf, handshake_deadline).await?;
            let input = buf.get(..n).unwrap_or_default();
            match guarded(|| handshake.process_bytes(input))?.map_err(ConnectionError::Handshake)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.write(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.write(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };

        let (mut session, initial) = guarded(|| ServerSession::new(ServerSessionConfig::new()))?
            .map_err(ConnectionError::Session)?;
        self.apply(&mut session, initial).await?;
        self.feed(&mut session, &leftover).await?;

        loop {
            let deadline = if self.publishing.is_some() {
                Instant::now() + self.idle_timeout()
            } else {
                handshake_deadline
            };
            let n = self.read_some(&mut buf, deadline).await?;
            self.feed(&mut session, buf.get(..n).unwrap_or_default())
                .await?;
        }
    }

    /// Hands bytes to the parser and acts on what comes out, enforcing the unparsed byte budget.
    async fn feed(
        &mut self,
        session: &mut ServerSession,
        input: &[u8],
    ) -> Result<(), ConnectionError> {
        if input.is_empty() {
            return Ok(());
        }
        self.unparsed_bytes = self.unparsed_bytes.saturating_add(input.len());
        let results = guarded(|| session.handle_input(input))?.map_err(ConnectionError::Session)?;
        if results.is_empty() {
            if self.unparsed_bytes > self.unparsed_budget() {
                return Err(ConnectionError::UnparsedBudget(self.unparsed_bytes));
            }
        } else {
            self.unparsed_bytes = 0;
        }
        self.apply(session, results).await
    }

    /// Sends outbound packets and acts on raised events, in order.
    async fn apply(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), ConnectionError> {
        let mut queue: VecDeque<ServerSessionResult> = results.into();
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.write(&packet.bytes).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
                ServerSessionResult::RaisedEvent(event) => {
                    queue.extend(self.on_event(session, event).await?)
                }
            }
        }
        Ok(())
    }

    /// Refuses an outstanding request with an error status, then closes the connection.
    async fn reject(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        code: &str,
        reason: String,
    ) -> Result<Vec<ServerSessionResult>, ConnectionError> {
        let results = guarded(|| session.reject_request(request_id, code, "rejected"))?
            .map_err(ConnectionError::Session)?;
        for r in results {
            if let ServerSessionResult::OutboundResponse(p) = r {
                self.write(&p.bytes).await?;
            }
        }
        Err(ConnectionError::Rejected(reason))
    }

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, ConnectionError> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                let (app, query) = split_query(&app_name);
                if app != self.config.app {
                    let reason = format!("unknown application {app:?}");
                    return self
                        .reject(
                            session,
                            request_id,
                            "NetConnection.Connect.Rejected",
                            reason,
                        )
                        .await;
                }
                self.app_query = query.to_string();
                guarded(|| session.accept_request(request_id))?.map_err(ConnectionError::Session)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                if self.publishing.is_some() {
                    return self
                        .reject(
                            session,
                            request_id,
                            "NetStream.Publish.BadName",
                            "second publish on one connection".into(),
                        )
                        .await;
                }
                // The bare name only: the query may hold the key.
                let (requested, _) = split_query(&stream_key);
                if crate::config::is_valid_name(requested) {
                    tracing::Span::current().record("stream", tracing::field::display(requested));
                }
                let authorized = authorize_publish(&self.config, &self.app_query, &stream_key)
                    .and_then(|name| {
                        self.handler
                            .on_publish(&name)
                            .map(|sink| (name, sink))
                            .map_err(PublishRejection::Handler)
                    });
                let sink = match authorized {
                    Ok((_, sink)) => sink,
                    Err(rejection) => {
                        let reason = format!("publish rejected: {rejection}");
                        return self
                            .reject(session, request_id, "NetStream.Publish.BadName", reason)
                            .await;
                    }
                };
                self.send(&sink, flv::header()).await?;
                self.publishing = Some(Publishing { sink });
                tracing::info!("publish started");
                guarded(|| session.accept_request(request_id))?.map_err(ConnectionError::Session)
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                self.reject(
                    session,
                    request_id,
                    "NetStream.Play.Failed",
                    "play requested; this server only ingests".into(),
                )
                .await
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.forward(flv::TAG_VIDEO, timestamp.value, &data).await?;
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.forward(flv::TAG_AUDIO, timestamp.value, &data).await?;
                Ok(Vec::new())
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(body) = metadata_script_body(&metadata) {
                    self.forward(flv::TAG_SCRIPT, 0, &body).await?;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                Err(ConnectionError::PublishFinished)
            }
            // releaseStream, FCPublish, FCUnpublish, _checkbw (unhandleable AMF0 commands), acks,
            // pings: nothing to do.
            _ => Ok(Vec::new()),
        }
    }

    /// Sends to the stream's sink, waiting while it is full (backpressure onto the publisher's
    /// TCP connection), but no longer than the idle timeout.
    async fn send(&self, sink: &mpsc::Sender<Bytes>, bytes: Bytes) -> Result<(), ConnectionError> {
        let limit = self.idle_timeout();
        match tokio::time::timeout(limit, sink.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ConnectionError::ConsumerGone),
            Err(_) => Err(ConnectionError::ConsumerStalled(limit)),
        }
    }

    async fn forward(
        &mut self,
        kind: u8,
        timestamp_ms: u32,
        body: &[u8],
    ) -> Result<(), ConnectionError> {
        let Some(publishing) = &self.publishing else {
            return Ok(());
        };
        if body.len() > self.config.max_message_bytes as usize {
            return Err(ConnectionError::MessageTooLarge(body.len()));
        }
        let tag = flv::tag(kind, timestamp_ms, body)
            .ok_or(ConnectionError::MessageTooLarge(body.len()))?;
        let sink = publishing.sink.clone();
        self.send(&sink, tag).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> RtmpConfig {
        let mut c = RtmpConfig::default();
        c.stream_keys.insert("cam".into(), "s3cret".into());
        c
    }

    #[test]
    fn open_server_accepts_any_valid_name_and_strips_the_query() {
        let c = RtmpConfig::default();
        assert_eq!(authorize_publish(&c, "", "cam").unwrap(), "cam");
        assert_eq!(
            authorize_publish(&c, "", "cam?key=whatever").unwrap(),
            "cam"
        );
        assert_eq!(
            authorize_publish(&c, "", "../etc"),
            Err(PublishRejection::InvalidName)
        );
        assert_eq!(
            authorize_publish(&c, "", ""),
            Err(PublishRejection::InvalidName)
        );
        assert_eq!(
            authorize_publish(&c, "", "a/b"),
            Err(PublishRejection::InvalidName)
        );
    }

    #[test]
    fn keyed_server_checks_name_then_key() {
        let c = keyed();
        assert_eq!(authorize_publish(&c, "", "cam?key=s3cret").unwrap(), "cam");
        assert_eq!(
            authorize_publish(&c, "", "cam?foo=1&key=s3cret").unwrap(),
            "cam"
        );
        assert_eq!(
            authorize_publish(&c, "", "cam?key=wrong"),
            Err(PublishRejection::WrongKey)
        );
        assert_eq!(
            authorize_publish(&c, "", "cam?key=s3cre"),
            Err(PublishRejection::WrongKey)
        );
        assert_eq!(
            authorize_publish(&c, "", "cam?key="),
            Err(PublishRejection::WrongKey)
        );
        assert_eq!(
            authorize_publish(&c, "", "cam"),
            Err(PublishRejection::MissingKey)
        );
        assert_eq!(
            authorize_publish(&c, "", "other?key=s3cret"),
            Err(PublishRejection::NotAllowed)
        );
    }

    #[test]
    fn key_may_come_with_the_app_name() {
        let c = keyed();
        assert_eq!(authorize_publish(&c, "key=s3cret", "cam").unwrap(), "cam");
        assert_eq!(
            authorize_publish(&c, "key=wrong", "cam"),
            Err(PublishRejection::WrongKey)
        );
        // The publish name's key wins over the app's.
        assert_eq!(
            authorize_publish(&c, "key=s3cret", "cam?key=wrong"),
            Err(PublishRejection::WrongKey)
        );
    }

    #[test]
    fn rejections_never_show_the_key() {
        let c = keyed();
        for name in ["cam?key=hunter2", "other?key=hunter2"] {
            let e = authorize_publish(&c, "", name).unwrap_err();
            assert!(!e.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn metadata_becomes_an_on_metadata_body() {
        assert!(metadata_script_body(&StreamMetadata::new()).is_none());
        let mut m = StreamMetadata::new();
        m.video_width = Some(320);
        m.encoder = Some("Lavf".into());
        let body = metadata_script_body(&m).unwrap();
        // AMF0 string marker 2, length 10, "onMetaData", then an object (marker 3).
        assert_eq!(&body[..13], b"\x02\x00\x0aonMetaData");
        assert_eq!(body[13], 3);
        let values = rml_rtmp::rml_amf0::deserialize(&mut std::io::Cursor::new(body)).unwrap();
        assert_eq!(values.len(), 2);
    }
}
