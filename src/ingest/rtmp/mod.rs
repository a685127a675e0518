//! RTMP ingest: one tokio task per connection. `rml_rtmp` does the handshake, the chunk stream
//! and the AMF0 commands; this module does policy and turns media messages into an FLV byte
//! stream for the [`PublishHandler`], within limits no one peer can exhaust:
//!
//! - **memory**: before a publish is authorised only small messages are read
//!   (`max_unpublished_message_bytes`), while publishing one message at most
//!   (`max_message_bytes`), judged from its chunk header before its body is buffered; each
//!   publisher's queue towards its pipeline is bounded in bytes (`max_publisher_queue_bytes`,
//!   the audio sniff included); and all of it together is charged to one budget
//!   (`max_ingest_bytes`). Over a limit, that connection is closed, with one log line and a
//!   count in `zoomate_rtmp_rejected_total{reason}`.
//! - **slots**: per address, handshakes and publishers are counted apart, so stalled
//!   handshakes cannot keep publishers out ([`admission`]).
//! - **key guessing**: failed publishes back an address off exponentially ([`throttle`]; one
//!   table in the [`Authorizer`], shared with WHIP).
//!
//! The files, one job each:
//! - this one: the listener and its accept loop, what connections share;
//! - [`connection`]: one connection from handshake to the end of its publish;
//! - [`chunk_guard`]: reads chunk headers ahead of `rml_rtmp` (pure);
//! - [`budget`]: byte budgets and charges (pure);
//! - [`queue`]: the byte-bounded publisher queue;
//! - [`admission`]: connection slots (pure bookkeeping);
//! - [`auth`]: stream names and keys (pure), and the one publish decision every ingest calls;
//! - [`auth_callback`]: the operator's HTTP callback for that decision, with its answer cache;
//! - [`throttle`]: per-address backoff after failed publishes (pure);
//! - [`metrics`]: the counters behind `/metrics`.

mod admission;
mod auth;
pub mod auth_callback;
mod budget;
mod chunk_guard;
mod connection;
mod metrics;
mod queue;
mod throttle;

pub use admission::{AddressKey, Admission, AdmissionLimits, Refusal, Ticket};
pub use auth::{
    Authorizer, Ingest, PublishAttempt, PublishRejection, authorize_publish, check_stream_key,
};
pub use budget::{ByteBudget, Charge};
pub use chunk_guard::{ChunkGuard, GuardError, Scan};
pub use connection::metadata_script_body;
pub use metrics::{PublisherBytes, PublisherMeter, RejectReason, RtmpCounters};
pub use queue::{FlvChunk, FlvReceiver, FlvSender, Held, QueueError, flv_queue};
pub use throttle::{KeyThrottle, ThrottlePolicy};

use crate::Shutdown;
use crate::config::{RtmpConfig, Secret};
use crate::http::metrics::Registry;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Where published media goes. Implemented by the stream registry.
pub trait PublishHandler: Send + Sync + 'static {
    /// Called once the publish request is authorised (key checked, a publisher slot taken).
    /// `stream` is the bare name (no `?key=…`). `media` receives the FLV byte stream: the
    /// 13-byte FLV header, then complete FLV tags built from the RTMP audio/video messages in
    /// arrival order (plus an `onMetaData` script tag when the publisher sends one); it ends
    /// when the connection does. Dropping it ends the publish. `Err(reason)` rejects it.
    /// `publisher` says who publishes and lets the handler disconnect them (the API's kick).
    fn on_publish(
        &self,
        stream: &str,
        media: FlvReceiver,
        publisher: Publisher,
    ) -> Result<(), String>;
}

/// The publishing side of one RTMP connection, as the handler sees it.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The publisher's address (the TCP peer).
    pub peer: SocketAddr,
    /// Cancelling it closes the connection at once (its stream then ends as when a publisher
    /// leaves: open segments finished and listed).
    pub kick: tokio_util::sync::CancellationToken,
}

/// The listener's `rtmp.stream_keys`, replaceable while it runs (hot reload): each publish is
/// checked against the keys current when it asks; publishers already live are not affected.
/// No `Debug`: the values are secrets.
#[derive(Clone, Default)]
pub struct StreamKeys(Arc<ArcSwap<BTreeMap<String, Secret>>>);

impl StreamKeys {
    pub fn new(keys: BTreeMap<String, Secret>) -> StreamKeys {
        StreamKeys(Arc::new(ArcSwap::from_pointee(keys)))
    }

    /// The keys now.
    pub fn current(&self) -> Arc<BTreeMap<String, Secret>> {
        self.0.load_full()
    }

    /// From the next publish request on, `keys` decide.
    pub fn replace(&self, keys: BTreeMap<String, Secret>) {
        self.0.store(Arc::new(keys));
    }
}

/// What every connection of one listener shares.
struct Shared {
    /// Fixed at bind, except `stream_keys` (see [`StreamKeys`]; the copy in here is unused).
    config: RtmpConfig,
    stream_keys: StreamKeys,
    counters: RtmpCounters,
    publisher_bytes: Arc<PublisherBytes>,
    ingest_budget: Arc<ByteBudget>,
    admission: Arc<Admission>,
    authorizer: Arc<Authorizer>,
}

impl Shared {
    fn new(config: &RtmpConfig) -> Shared {
        let stream_keys = StreamKeys::new(config.stream_keys.clone());
        Shared {
            authorizer: Arc::new(Authorizer::new(config, stream_keys.clone())),
            stream_keys,
            counters: RtmpCounters::default(),
            publisher_bytes: Arc::default(),
            ingest_budget: ByteBudget::new(config.max_ingest_bytes),
            admission: Admission::new(AdmissionLimits {
                per_address: config.max_connections_per_address,
                handshakes: config.max_handshakes,
                publishers: config.max_connections,
            }),
            config: config.clone(),
        }
    }
}

/// Reads an RTMP listener's counters and levels, for `/metrics`.
#[derive(Clone)]
pub struct RtmpMetrics(Arc<Shared>);

impl RtmpMetrics {
    /// Registers the RTMP counters and levels into `registry`, read now (once per scrape).
    pub fn register(&self, registry: &mut Registry) {
        let (handshakes, publishers) = self.0.admission.counts();
        self.0.counters.register(
            registry,
            self.0.ingest_budget.used(),
            handshakes,
            publishers,
            &self.0.publisher_bytes,
        );
    }

    /// How many connections or publishes `reason` has refused so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.0.counters.rejected_count(reason)
    }

    /// Bytes held against `rtmp.max_ingest_bytes` now.
    pub fn ingest_bytes(&self) -> u64 {
        self.0.ingest_budget.used()
    }
}

/// A bound RTMP listener.
pub struct RtmpServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl RtmpServer {
    /// Binds `config.listen` (port 0 picks a free port; see [`RtmpServer::local_addr`]).
    pub async fn bind(config: &RtmpConfig) -> std::io::Result<RtmpServer> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(RtmpServer {
            listener,
            shared: Arc::new(Shared::new(config)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// The listener's publish decision (keys, then the callback), shared with WHIP.
    pub fn authorizer(&self) -> Arc<Authorizer> {
        self.shared.authorizer.clone()
    }

    /// The listener's stream keys, replaceable while it runs.
    pub fn stream_keys(&self) -> StreamKeys {
        self.shared.stream_keys.clone()
    }

    /// The listener's counters, readable while it runs.
    pub fn metrics(&self) -> RtmpMetrics {
        RtmpMetrics(self.shared.clone())
    }

    /// Accepts connections until `shutdown` is cancelled; then closes every connection (so
    /// every publisher's queue ends) and returns once all connection tasks have finished.
    pub async fn run(self, handler: Arc<dyn PublishHandler>, shutdown: Shutdown) {
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
            let ticket = match self.shared.admission.admit(AddressKey::from(peer.ip())) {
                Ok((ticket, how)) => {
                    if how == admission::Admitted::CutOldest {
                        tracing::debug!(%peer, max_handshakes = self.shared.config.max_handshakes,
                            "rtmp handshake slots full; the oldest handshake is cut");
                    }
                    ticket
                }
                Err(refusal) => {
                    self.shared.counters.rejected(RejectReason::AddressLimit);
                    tracing::warn!(%peer, reason = %RejectReason::AddressLimit.label(),
                        max_connections_per_address = self.shared.config.max_connections_per_address,
                        "rtmp connection refused: {refusal}");
                    drop(socket);
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let conn = connection::Connection::new(
                socket,
                peer,
                self.shared.clone(),
                handler.clone(),
                ticket,
            );
            let shutdown = shutdown.clone();
            let span = tracing::info_span!("rtmp", %peer, stream = tracing::field::Empty);
            tasks.spawn(conn.run(shutdown).instrument(span));
        }
        tasks.close();
        tasks.wait().await;
    }
}
