//! The subscriber side (edges, tools): a libzmq SUB socket per endpoint, each on its own OS
//! thread, all feeding one bounded channel. A slow consumer loses messages (counted), never
//! memory.
//!
//! libzmq reconnects by itself (every [`engine::RECONNECT_IVL`], backing off to
//! [`engine::RECONNECT_IVL_MAX`]) and its ZMTP heartbeats close a connection whose peer vanished
//! without a FIN, so no idle timer is needed for that; `idle_reconnect` remains for callers that
//! want a fresh socket after a silence. Connections are counted from the socket monitor
//! (handshake succeeded). A frame larger than `max_message_bytes` closes the connection before
//! libzmq allocates it; a message with more than two frames is read frame by frame and
//! dropped, so no message costs more than two frames of memory here.

use super::engine::{self, ConnectionEvent, CurveKey, KeyPair, MonitoredSocket, SocketLimits};
use super::{BusError, BusEvent, Delivery, codec};
use crate::Shutdown;
use crate::config::BusConnect;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long one connect attempt may wait for the publisher to answer before starting over.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between failed connect attempts (libzmq's first reconnect interval).
pub const DEFAULT_RETRY_DELAY: Duration = engine::RECONNECT_IVL;
/// Messages read per wake-up before the thread looks at its stop signal again.
const RECV_BATCH: usize = 256;

/// Counters for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Messages decoded (whether or not the channel had room).
    pub received: u64,
    /// Decoded messages dropped because the consumer's channel was full.
    pub dropped_full: u64,
    /// Messages dropped as malformed: wrong frame count, bad Cap'n Proto, unknown version/kind.
    pub malformed: u64,
    /// Connections established (handshakes completed), over all endpoints: first connects and
    /// reconnects.
    pub connections: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    dropped_full: AtomicU64,
    malformed: AtomicU64,
    connections: AtomicU64,
}

/// Tuning for [`BusSubscriber::spawn_with`].
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// Capacity of the event channel handed to the consumer (also the socket's receive
    /// high-water mark).
    pub capacity: usize,
    /// `ZMQ_CONNECT_TIMEOUT`: how long one TCP connect attempt may take.
    pub connect_timeout: Duration,
    /// Delay before a fresh socket replaces one dropped for `idle_reconnect`.
    pub retry_delay: Duration,
    /// Replace the socket when nothing arrived for this long while connected. libzmq's
    /// heartbeats already detect a vanished peer; this is for a publisher that is connected
    /// but stuck. `None` (the default) never reconnects on silence.
    pub idle_reconnect: Option<Duration>,
    /// `ZMQ_MAXMSGSIZE`: largest frame accepted, in bytes.
    pub max_message_bytes: u64,
}

impl SubscriberOptions {
    pub fn with_capacity(capacity: usize) -> Self {
        SubscriberOptions {
            capacity,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry_delay: DEFAULT_RETRY_DELAY,
            idle_reconnect: None,
            max_message_bytes: engine::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// One endpoint to subscribe to, and how to authenticate it.
#[derive(Debug, Clone)]
pub struct SubscribeTarget {
    pub endpoint: String,
    pub curve: TargetCurve,
}

/// CURVE for one [`SubscribeTarget`].
#[derive(Debug, Clone)]
pub enum TargetCurve {
    /// Plaintext, unauthenticated (loopback, or `allow_insecure_network`).
    Off,
    /// Talk only to the peer holding `server_key`'s secret; authenticate with `client`
    /// (an ephemeral pair when `None`).
    On {
        server_key: CurveKey,
        client: Option<KeyPair>,
    },
    /// A key in the config did not decode: never connect (config validation reports it).
    Invalid(String),
}

impl From<String> for SubscribeTarget {
    fn from(endpoint: String) -> Self {
        SubscribeTarget {
            endpoint,
            curve: TargetCurve::Off,
        }
    }
}

impl From<&str> for SubscribeTarget {
    fn from(endpoint: &str) -> Self {
        endpoint.to_string().into()
    }
}

impl From<BusConnect> for SubscribeTarget {
    fn from(c: BusConnect) -> Self {
        let curve = match &c.server_key {
            None => TargetCurve::Off,
            Some(text) => {
                let client = c
                    .client_secret_key
                    .as_ref()
                    .map(|s| CurveKey::from_z85(s.expose()).and_then(KeyPair::from_secret))
                    .transpose();
                match (CurveKey::from_z85(text), client) {
                    (Ok(server_key), Ok(client)) => TargetCurve::On { server_key, client },
                    (Err(e), _) => TargetCurve::Invalid(format!("server_key: {e}")),
                    (_, Err(e)) => TargetCurve::Invalid(format!("client key: {e}")),
                }
            }
        };
        SubscribeTarget {
            endpoint: c.endpoint,
            curve,
        }
    }
}

/// Handle to the running subscriber threads (they stop on shutdown, or when the receiver is
/// dropped).
#[derive(Clone)]
pub struct BusSubscriber {
    counters: Arc<Counters>,
}

impl BusSubscriber {
    /// Subscribes to `topic_prefixes` (empty = everything) on each endpoint; decoded events go
    /// to the returned channel of `capacity`. Connections are retried until they succeed, so
    /// the publisher may start later, and re-established when a publisher restarts.
    pub fn spawn<T: Into<SubscribeTarget>>(
        endpoints: impl IntoIterator<Item = T>,
        topic_prefixes: Vec<String>,
        capacity: usize,
        shutdown: Shutdown,
    ) -> (BusSubscriber, mpsc::Receiver<BusEvent>) {
        Self::spawn_with(
            endpoints,
            topic_prefixes,
            SubscriberOptions::with_capacity(capacity),
            shutdown,
        )
    }

    /// [`BusSubscriber::spawn`] with every knob.
    pub fn spawn_with<T: Into<SubscribeTarget>>(
        endpoints: impl IntoIterator<Item = T>,
        topic_prefixes: Vec<String>,
        options: SubscriberOptions,
        shutdown: Shutdown,
    ) -> (BusSubscriber, mpsc::Receiver<BusEvent>) {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let sub = Self::spawn_workers(
            endpoints,
            topic_prefixes,
            options,
            Output::Events(tx),
            shutdown,
        );
        (sub, rx)
    }

    /// Like [`BusSubscriber::spawn_with`], but each message comes with what the edge needs to
    /// judge it: the endpoint it arrived on, the server key it authenticated, its topic frame.
    pub fn spawn_deliveries<T: Into<SubscribeTarget>>(
        endpoints: impl IntoIterator<Item = T>,
        topic_prefixes: Vec<String>,
        options: SubscriberOptions,
        shutdown: Shutdown,
    ) -> (BusSubscriber, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let sub = Self::spawn_workers(
            endpoints,
            topic_prefixes,
            options,
            Output::Deliveries(tx),
            shutdown,
        );
        (sub, rx)
    }

    fn spawn_workers<T: Into<SubscribeTarget>>(
        endpoints: impl IntoIterator<Item = T>,
        topic_prefixes: Vec<String>,
        options: SubscriberOptions,
        tx: Output,
        shutdown: Shutdown,
    ) -> BusSubscriber {
        let counters = Arc::new(Counters::default());
        let prefixes = if topic_prefixes.is_empty() {
            vec![String::new()]
        } else {
            topic_prefixes
        };
        for target in endpoints {
            let target: SubscribeTarget = target.into();
            let server_key = match &target.curve {
                TargetCurve::On { server_key, .. } => Some(Arc::from(server_key.to_z85())),
                _ => None,
            };
            let worker = EndpointWorker {
                source: Arc::from(target.endpoint.as_str()),
                server_key,
                target,
                prefixes: prefixes.clone(),
                tx: tx.clone(),
                counters: counters.clone(),
                options: options.clone(),
                shutdown: shutdown.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name("zoomate-bus-sub".into())
                .spawn(move || worker.run());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start bus subscriber thread");
            }
        }
        BusSubscriber { counters }
    }

    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            received: self.counters.received.load(Ordering::Relaxed),
            dropped_full: self.counters.dropped_full.load(Ordering::Relaxed),
            malformed: self.counters.malformed.load(Ordering::Relaxed),
            connections: self.counters.connections.load(Ordering::Relaxed),
        }
    }
}

/// Why a socket's life ended.
enum SessionEnd {
    /// Replace the socket (idle reconnect).
    Reconnect,
    /// Shutdown, or the consumer dropped its receiver: stop for good.
    Stop,
}

/// Where decoded messages go: bare events (tools) or deliveries with their provenance (edge).
#[derive(Clone)]
enum Output {
    Events(mpsc::Sender<BusEvent>),
    Deliveries(mpsc::Sender<Delivery>),
}

impl Output {
    fn try_send(&self, delivery: Delivery) -> Result<(), mpsc::error::TrySendError<()>> {
        fn erase<T>(e: mpsc::error::TrySendError<T>) -> mpsc::error::TrySendError<()> {
            match e {
                mpsc::error::TrySendError::Full(_) => mpsc::error::TrySendError::Full(()),
                mpsc::error::TrySendError::Closed(_) => mpsc::error::TrySendError::Closed(()),
            }
        }
        match self {
            Output::Events(tx) => tx.try_send(delivery.event).map_err(erase),
            Output::Deliveries(tx) => tx.try_send(delivery).map_err(erase),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Output::Events(tx) => tx.is_closed(),
            Output::Deliveries(tx) => tx.is_closed(),
        }
    }
}

struct EndpointWorker {
    target: SubscribeTarget,
    /// The endpoint again, shared by every delivery from it.
    source: Arc<str>,
    server_key: Option<Arc<str>>,
    prefixes: Vec<String>,
    tx: Output,
    counters: Arc<Counters>,
    options: SubscriberOptions,
    shutdown: Shutdown,
}

impl EndpointWorker {
    fn stopped(&self) -> bool {
        self.shutdown.is_cancelled() || self.tx.is_closed()
    }

    /// The thread: one socket after another until shutdown or the consumer leaves.
    fn run(self) {
        let endpoint = self.target.endpoint.clone();
        if let TargetCurve::Invalid(reason) = &self.target.curve {
            tracing::error!(%endpoint, %reason, "bus endpoint not subscribed: bad CURVE key");
            return;
        }
        loop {
            let end = match self.open() {
                Ok(socket) => self.session(&socket),
                Err(e) => {
                    tracing::warn!(%endpoint, error = %e, "bus subscriber socket failed; retrying");
                    SessionEnd::Reconnect
                }
            };
            match end {
                SessionEnd::Stop => return,
                SessionEnd::Reconnect => {
                    // Wait in small steps so shutdown is not held up.
                    let until = Instant::now() + self.options.retry_delay;
                    while Instant::now() < until {
                        if self.stopped() {
                            return;
                        }
                        std::thread::sleep(engine::POLL_INTERVAL.min(self.options.retry_delay));
                    }
                }
            }
        }
    }

    /// A configured, monitored, subscribed and connecting SUB socket.
    fn open(&self) -> Result<MonitoredSocket, BusError> {
        let endpoint = &self.target.endpoint;
        let socket = engine::context()
            .socket(zmq::SUB)
            .map_err(engine::zmq_err(endpoint))?;
        SocketLimits::new(self.options.max_message_bytes, self.options.capacity.max(1))
            .apply(&socket, endpoint)?;
        socket
            .set_connect_timeout(
                self.options
                    .connect_timeout
                    .as_millis()
                    .min(i32::MAX as u128) as i32,
            )
            .map_err(engine::zmq_err(endpoint))?;
        // A SUB holds nothing worth flushing at close.
        socket.set_linger(0).map_err(engine::zmq_err(endpoint))?;
        if let TargetCurve::On { server_key, client } = &self.target.curve {
            engine::make_curve_client(&socket, endpoint, server_key, client.as_ref())?;
        }
        for p in &self.prefixes {
            socket
                .set_subscribe(p.as_bytes())
                .map_err(engine::zmq_err(endpoint))?;
        }
        let monitored = MonitoredSocket::attach(socket, endpoint)?;
        monitored
            .socket()
            .connect(endpoint)
            .map_err(engine::zmq_err(endpoint))?;
        Ok(monitored)
    }

    /// Receives until shutdown, the consumer leaves, or (with `idle_reconnect`) a silence.
    fn session(&self, monitored: &MonitoredSocket) -> SessionEnd {
        let socket = monitored.socket();
        let endpoint = &self.target.endpoint;
        let poll_ms = engine::POLL_INTERVAL.as_millis() as i64;
        let mut connected_since: Option<Instant> = None;
        let mut last_message = Instant::now();
        let mut failures: u64 = 0;
        let mut frame = zmq::Message::new();
        loop {
            if self.stopped() {
                return SessionEnd::Stop;
            }
            let mut items = [
                socket.as_poll_item(zmq::POLLIN),
                monitored.events().as_poll_item(zmq::POLLIN),
            ];
            if let Err(e) = zmq::poll(&mut items, poll_ms) {
                tracing::debug!(%endpoint, error = %e, "bus poll failed");
                return SessionEnd::Reconnect;
            }
            let (readable, events) = (items[0].is_readable(), items[1].is_readable());
            if events {
                while let Some(ev) = monitored.try_next() {
                    match ev {
                        ConnectionEvent::Up => {
                            self.counters.connections.fetch_add(1, Ordering::Relaxed);
                            connected_since = Some(Instant::now());
                            last_message = Instant::now();
                            failures = 0;
                            tracing::info!(%endpoint, "bus subscriber connected");
                        }
                        ConnectionEvent::Down => {
                            if connected_since.take().is_some() {
                                tracing::info!(%endpoint, "bus publisher lost; reconnecting");
                            }
                        }
                        ConnectionEvent::HandshakeFailed => {
                            failures += 1;
                            if failures.is_power_of_two() {
                                tracing::warn!(%endpoint, failures, "bus handshake failed (wrong CURVE key, or not a zoomate bus?)");
                            }
                        }
                        ConnectionEvent::Other => {}
                    }
                }
            }
            if readable {
                for _ in 0..RECV_BATCH {
                    match self.receive(socket, &mut frame) {
                        Received::Nothing => break,
                        Received::Message => last_message = Instant::now(),
                        Received::ConsumerGone => return SessionEnd::Stop,
                    }
                }
            }
            if let (Some(idle), Some(_)) = (self.options.idle_reconnect, connected_since)
                && last_message.elapsed() >= idle
            {
                tracing::info!(%endpoint, idle_ms = idle.as_millis() as u64, "bus silent; reconnecting");
                return SessionEnd::Reconnect;
            }
        }
    }

    /// Reads one whole message without waiting, keeping at most two frames.
    fn receive(&self, socket: &zmq::Socket, frame: &mut zmq::Message) -> Received {
        if socket.recv(frame, zmq::DONTWAIT).is_err() {
            return Received::Nothing;
        }
        let topic = frame.to_vec();
        let mut frames = 1usize;
        let mut payload: Option<Vec<u8>> = None;
        while frame.get_more() {
            if socket.recv(frame, zmq::DONTWAIT).is_err() {
                break;
            }
            frames += 1;
            if frames == 2 {
                payload = Some(frame.to_vec());
            }
        }
        if self.tx.is_closed() {
            return Received::ConsumerGone;
        }
        match (frames, payload) {
            (2, Some(payload)) => self.handle(topic, &payload),
            _ => {
                let n = self.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
                // Rate-limited: the 1st, 2nd, 4th, 8th… occurrence is logged.
                if n.is_power_of_two() {
                    tracing::warn!(endpoint = %self.target.endpoint, frames, malformed = n, "bus message without [topic, payload] dropped");
                }
                Received::Message
            }
        }
    }

    /// Decodes one message and hands it on.
    fn handle(&self, topic: Vec<u8>, payload: &[u8]) -> Received {
        match codec::decode(payload) {
            Ok(ev) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let delivery = Delivery {
                    endpoint: self.source.clone(),
                    server_key: self.server_key.clone(),
                    topic: String::from_utf8_lossy(&topic).into_owned(),
                    event: ev,
                };
                match self.tx.try_send(delivery) {
                    Ok(()) => Received::Message,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let n = self.counters.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            tracing::warn!(endpoint = %self.target.endpoint, dropped = n, "bus consumer too slow; events dropped");
                        }
                        Received::Message
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Received::ConsumerGone,
                }
            }
            Err(e) => {
                let n = self.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(endpoint = %self.target.endpoint, error = %e, malformed = n, "malformed bus message dropped");
                }
                Received::Message
            }
        }
    }
}

enum Received {
    Nothing,
    Message,
    ConsumerGone,
}
