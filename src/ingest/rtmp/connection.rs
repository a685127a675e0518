//! One RTMP connection, from the handshake to the end of its publish: `rml_rtmp` does the
//! handshake, the chunk stream and the AMF0 commands; this file does policy (application name,
//! stream names, keys, one publish per connection, timeouts, memory) and turns media messages
//! into FLV tags on the publisher queue.
//!
//! A connection goes: handshake → `connect` (app checked) → `createStream` → `publish` (address
//! not throttled, name and key checked, a publisher slot, the handler) → media until the
//! publisher leaves, goes idle, breaks a limit, or we shut down. Everything before the publish
//! is accepted must finish within `handshake_timeout_ms`.
//!
//! Memory: every byte after the handshake goes through the [`ChunkGuard`] before `rml_rtmp`
//! sees it, one message at a time, so a message announced over the limit (small before the
//! publish is authorised) closes the connection before its body is buffered; the message in
//! progress is charged to the ingest budget. `rml_rtmp` can panic on some malformed input (e.g.
//! `@setDataFrame` without a value), so every call into it is wrapped in `catch_unwind` and a
//! panic closes just this connection. A connection closed by a limit logs one line with the
//! reason and counts it in `zoomate_rtmp_rejected_total`.

use super::admission::Ticket;
use super::auth::{PublishAttempt, split_query};
use super::budget::Charge;
use super::chunk_guard::{ChunkGuard, GuardError};
use super::metrics::RejectReason;
use super::queue::{FlvSender, QueueError, flv_queue};
use super::{PublishHandler, Shared};
use crate::Shutdown;
use crate::ingest::flv;
use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// After a rejection, how long we wait for the peer to read our error status and hang up
/// before closing (closing with unread input makes the kernel send RST, which can discard it).
const REJECT_LINGER_MS: u64 = 500;
/// Input read and discarded at most while lingering after a rejection.
const REJECT_LINGER_MAX_BYTES: usize = 256 * 1024;

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
    #[error("{reason}")]
    Rejected {
        reason: String,
        counted: Option<RejectReason>,
    },
    #[error("stream consumer went away")]
    ConsumerGone,
    #[error("stream consumer accepted nothing for {0:?} (publisher queue full)")]
    ConsumerStalled(Duration),
    #[error("message of {announced} bytes exceeds {}", limit_key(.publishing))]
    MessageTooLarge { announced: u64, publishing: bool },
    #[error("chunk stream refused: {0}")]
    ChunkProtocol(GuardError),
    #[error("{wanted} more bytes would exceed rtmp.max_ingest_bytes ({limit})")]
    IngestBudget { wanted: u64, limit: u64 },
    #[error("cut in its handshake to make room for a newer connection (rtmp.max_handshakes)")]
    Cut,
    #[error("server shutting down")]
    Shutdown,
    #[error("kicked by an operator (API)")]
    Kicked,
}

/// The config key of the message limit in force.
fn limit_key(publishing: &bool) -> &'static str {
    if *publishing {
        "rtmp.max_message_bytes"
    } else {
        "rtmp.max_unpublished_message_bytes (nothing published yet)"
    }
}

impl ConnectionError {
    /// The limit that closed the connection, if one did (counted and logged with the reason).
    fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            ConnectionError::Rejected { counted, .. } => *counted,
            ConnectionError::ConsumerStalled(_) => Some(RejectReason::QueueStalled),
            ConnectionError::MessageTooLarge {
                publishing: false, ..
            } => Some(RejectReason::MessageTooLargeBeforePublish),
            ConnectionError::MessageTooLarge { .. } => Some(RejectReason::MessageTooLarge),
            ConnectionError::ChunkProtocol(_) => Some(RejectReason::ChunkProtocol),
            ConnectionError::IngestBudget { .. } => Some(RejectReason::IngestBudget),
            ConnectionError::Cut => Some(RejectReason::HandshakeCut),
            _ => None,
        }
    }
}

/// Runs a call into `rml_rtmp`, turning a panic on malformed peer input into an error.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ConnectionError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| ConnectionError::ParserPanic)
}

/// An active publish: where its FLV bytes go.
struct Publishing {
    sink: FlvSender,
    /// Media bytes received, for `/metrics` and the closing log line.
    meter: super::PublisherMeter,
}

pub(super) struct Connection {
    socket: TcpStream,
    peer: std::net::SocketAddr,
    /// Cancelled by the handler (the API's kick): the connection closes at once.
    kick: tokio_util::sync::CancellationToken,
    shared: Arc<Shared>,
    handler: Arc<dyn PublishHandler>,
    ticket: Ticket,
    /// Query string that came with the `connect` app name, if any (may hold `key=`).
    app_query: String,
    publishing: Option<Publishing>,
    /// Judges every chunk header before `rml_rtmp` buffers the message behind it.
    guard: ChunkGuard,
    /// What the parser holds (the message in progress), charged to the ingest budget.
    parser_charge: Charge,
    /// The most the parser held at once: a large one asks for memory back at the end.
    peak_held: u64,
}

impl Connection {
    pub(super) fn new(
        socket: TcpStream,
        peer: std::net::SocketAddr,
        shared: Arc<Shared>,
        handler: Arc<dyn PublishHandler>,
        ticket: Ticket,
    ) -> Connection {
        let guard = ChunkGuard::new(shared.config.max_unpublished_message_bytes);
        let parser_charge = shared.ingest_budget.empty_charge();
        Connection {
            socket,
            peer,
            kick: tokio_util::sync::CancellationToken::new(),
            shared,
            handler,
            ticket,
            app_query: String::new(),
            publishing: None,
            guard,
            parser_charge,
            peak_held: 0,
        }
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.config.idle_timeout_ms)
    }

    /// Serves the connection and logs its end, one line.
    pub(super) async fn run(mut self, shutdown: Shutdown) {
        let cut = self.ticket.cut().clone();
        let kick = self.kick.clone();
        let result = tokio::select! {
            r = self.serve() => r,
            _ = shutdown.cancelled() => Err(ConnectionError::Shutdown),
            _ = cut.cancelled() => Err(ConnectionError::Cut),
            _ = kick.cancelled() => Err(ConnectionError::Kicked),
        };
        // The stream ends here, whatever happens to the socket next.
        let figures = self.publishing.take().map(|p| p.meter.figures());
        self.parser_charge.try_resize(0);
        crate::ingest::memory::after_large_free(self.peak_held);
        let Err(e) = result else { return };
        let counted = e.reject_reason();
        if let Some(reason) = counted {
            self.shared.counters.rejected(reason);
        }
        match (e, counted) {
            (
                e @ (ConnectionError::PublishFinished
                | ConnectionError::PublisherDisconnected
                | ConnectionError::Kicked
                | ConnectionError::Shutdown),
                _,
            ) => match figures {
                // The publisher's one closing line, with its figures.
                Some((bytes, secs)) => tracing::info!(
                    seconds = format!("{secs:.1}"),
                    received_megabytes = format!("{:.1}", bytes as f64 / 1e6),
                    input_kbps = (bytes as f64 * 8.0 / secs.max(0.001) / 1000.0) as u64,
                    "rtmp connection closed: {e}"
                ),
                None => tracing::info!("rtmp connection closed: {e}"),
            },
            (ConnectionError::Rejected { reason, .. }, counted) => {
                match counted {
                    Some(limit) => {
                        tracing::warn!(%reason, limit = %limit.label(), "rtmp request rejected; closing")
                    }
                    None => tracing::warn!(%reason, "rtmp request rejected; closing"),
                }
                self.linger().await;
            }
            (e, Some(reason)) => {
                tracing::warn!(error = %e, reason = %reason.label(), "rtmp connection closed")
            }
            (e, None) => tracing::warn!(error = %e, "rtmp connection closed"),
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
            Instant::now() + Duration::from_millis(self.shared.config.handshake_timeout_ms);
        let mut buf = vec![0u8; READ_BUFFER_BYTES];

        // Handshake: C0/C1/C2 ↔ S0/S1/S2 (RTMP 1.0 spec §5.2); fixed sizes, nothing buffered.
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

    /// Hands bytes to the parser one message at a time, each checked by the guard first, and
    /// acts on what comes out.
    async fn feed(
        &mut self,
        session: &mut ServerSession,
        mut input: &[u8],
    ) -> Result<(), ConnectionError> {
        while !input.is_empty() {
            let publishing = self.publishing.is_some();
            let scan = self.guard.scan(input).map_err(|e| match e {
                GuardError::MessageTooLarge { announced, .. } => ConnectionError::MessageTooLarge {
                    announced: u64::from(announced),
                    publishing,
                },
                e => ConnectionError::ChunkProtocol(e),
            })?;
            // The parser holds the message in progress, or the one this piece completes.
            let held = scan
                .completed
                .unwrap_or(0)
                .max(self.guard.in_flight_bytes());
            self.hold(u64::from(held))?;
            let (piece, rest) = input.split_at(scan.consumed.clamp(1, input.len()));
            let results =
                guarded(|| session.handle_input(piece))?.map_err(ConnectionError::Session)?;
            self.apply(session, results).await?;
            self.hold(u64::from(self.guard.in_flight_bytes()))?;
            input = rest;
        }
        Ok(())
    }

    /// Makes the parser's charge on the ingest budget `bytes`.
    fn hold(&mut self, bytes: u64) -> Result<(), ConnectionError> {
        let before = self.parser_charge.bytes();
        if !self.parser_charge.try_resize(bytes) {
            return Err(ConnectionError::IngestBudget {
                wanted: bytes - before,
                limit: self.shared.ingest_budget.limit(),
            });
        }
        self.peak_held = self.peak_held.max(bytes);
        Ok(())
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
        counted: Option<RejectReason>,
    ) -> Result<Vec<ServerSessionResult>, ConnectionError> {
        let results = guarded(|| session.reject_request(request_id, code, "rejected"))?
            .map_err(ConnectionError::Session)?;
        for r in results {
            if let ServerSessionResult::OutboundResponse(p) = r {
                self.write(&p.bytes).await?;
            }
        }
        Err(ConnectionError::Rejected { reason, counted })
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
                if app != self.shared.config.app {
                    let reason = format!("unknown application {app:?}");
                    return self
                        .reject(
                            session,
                            request_id,
                            "NetConnection.Connect.Rejected",
                            reason,
                            None,
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
            } => self.on_publish(session, request_id, &stream_key).await,
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                self.reject(
                    session,
                    request_id,
                    "NetStream.Play.Failed",
                    "play requested; this server only ingests".into(),
                    None,
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

    /// A publish request: throttle, then name and key, then a publisher slot, then the handler.
    async fn on_publish(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        stream_key: &str,
    ) -> Result<Vec<ServerSessionResult>, ConnectionError> {
        const BAD_NAME: &str = "NetStream.Publish.BadName";
        if self.publishing.is_some() {
            let reason = "second publish on one connection".to_string();
            return self
                .reject(session, request_id, BAD_NAME, reason, None)
                .await;
        }
        // The bare name only: the query may hold the key.
        let (requested, _) = split_query(stream_key);
        if crate::config::is_valid_name(requested) {
            tracing::Span::current().record("stream", tracing::field::display(requested));
        }
        let now = std::time::Instant::now();
        let throttled =
            self.shared
                .authorizer
                .throttle_check(super::Ingest::Rtmp, self.peer.ip(), now);
        if let Err(wait) = throttled {
            let reason = format!(
                "publish refused unchecked: too many failed attempts from this address; retry in {} ms",
                wait.as_millis()
            );
            return self
                .reject(
                    session,
                    request_id,
                    BAD_NAME,
                    reason,
                    Some(RejectReason::Throttled),
                )
                .await;
        }
        let attempt = PublishAttempt {
            protocol: "rtmp",
            app: &self.shared.config.app,
            app_query: &self.app_query,
            publish_name: stream_key,
            client: self.peer.ip(),
        };
        let decision = self.shared.authorizer.authorize(&attempt).await;
        let name = match decision {
            Ok(name) => name,
            Err(rejection) => {
                if rejection.is_guess() {
                    self.shared.authorizer.throttle_failed(self.peer.ip(), now);
                }
                let reason = format!("publish rejected: {rejection}");
                return self
                    .reject(
                        session,
                        request_id,
                        BAD_NAME,
                        reason,
                        Some(RejectReason::BadKey),
                    )
                    .await;
            }
        };
        self.shared.authorizer.throttle_succeeded(self.peer.ip());
        if let Err(refusal) = self.ticket.start_publishing() {
            let reason = format!("publish rejected: {refusal} (rtmp.max_connections)");
            return self
                .reject(
                    session,
                    request_id,
                    BAD_NAME,
                    reason,
                    Some(RejectReason::PublisherLimit),
                )
                .await;
        }
        let max_message_bytes = self.shared.config.max_message_bytes;
        let (sink, media) = flv_queue(
            self.shared.config.max_publisher_queue_bytes,
            self.shared.ingest_budget.clone(),
        );
        let publisher = super::Publisher {
            peer: self.peer,
            kick: self.kick.clone(),
        };
        if let Err(refused) = self.handler.on_publish(&name, media, publisher) {
            let reason = format!("publish rejected: handler refused: {refused}");
            return self
                .reject(session, request_id, BAD_NAME, reason, None)
                .await;
        }
        self.guard.set_max_message_bytes(max_message_bytes);
        self.send(&sink, flv::header()).await?;
        let meter = self.shared.publisher_bytes.start(&name);
        self.publishing = Some(Publishing { sink, meter });
        tracing::info!("publish started");
        guarded(|| session.accept_request(request_id))?.map_err(ConnectionError::Session)
    }

    /// Queues FLV bytes for the stream, waiting while the queue is full (backpressure onto the
    /// publisher's TCP connection), but no longer than the idle timeout.
    async fn send(&self, sink: &FlvSender, bytes: Bytes) -> Result<(), ConnectionError> {
        let limit = self.idle_timeout();
        match tokio::time::timeout(limit, sink.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(QueueError::Closed)) => Err(ConnectionError::ConsumerGone),
            Ok(Err(QueueError::TooLarge(n))) => Err(ConnectionError::MessageTooLarge {
                announced: n as u64,
                publishing: true,
            }),
            Ok(Err(QueueError::IngestBudget(n))) => Err(ConnectionError::IngestBudget {
                wanted: n as u64,
                limit: self.shared.ingest_budget.limit(),
            }),
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
        let too_large = ConnectionError::MessageTooLarge {
            announced: body.len() as u64,
            publishing: true,
        };
        if body.len() > self.shared.config.max_message_bytes as usize {
            return Err(too_large);
        }
        let tag = flv::tag(kind, timestamp_ms, body).ok_or(too_large)?;
        self.send(&publishing.sink, tag).await?;
        publishing.meter.add(body.len() as u64);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
