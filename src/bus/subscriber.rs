//! The subscriber side (edges, tools): a SUB socket per endpoint, all feeding one bounded
//! channel. A slow consumer loses messages (counted), never memory.
//!
//! Reconnection is ours, not the crate's: `zeromq` 0.7 does reconnect a SUB by itself, but with
//! an exponential backoff that grows to 30 s during a long outage. Instead each endpoint task
//! watches the socket monitor and, on a disconnect (or, optionally, after a silence), drops the
//! socket and connects a fresh one, retrying every [`DEFAULT_RETRY_DELAY`]. Subscriptions are
//! set before connecting, so the publisher learns them in the handshake.

use super::{BusEvent, Delivery, codec};
use crate::Shutdown;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketEvent, SocketRecv};

/// How long one connect attempt may wait for the publisher to answer before starting over.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between failed connect attempts.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Counters for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Messages decoded (whether or not the channel had room).
    pub received: u64,
    /// Decoded messages dropped because the consumer's channel was full.
    pub dropped_full: u64,
    /// Messages dropped as malformed: wrong frame count, bad Cap'n Proto, unknown version/kind.
    pub malformed: u64,
    /// Connections established, over all endpoints (first connects and reconnects).
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
    /// Capacity of the event channel handed to the consumer.
    pub capacity: usize,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_RETRY_DELAY`].
    pub retry_delay: Duration,
    /// Reconnect when nothing arrived for this long. A TCP connection whose peer vanished
    /// without a FIN (host died, network cut) looks idle forever, and ZeroMQ 0.7 has no
    /// heartbeats of its own: subscribers that receive origin heartbeats (`hb/`) should set
    /// this to a few heartbeat intervals. `None` (the default) never reconnects on silence,
    /// which is right for a subscriber filtering down to a quiet topic.
    pub idle_reconnect: Option<Duration>,
}

impl SubscriberOptions {
    pub fn with_capacity(capacity: usize) -> Self {
        SubscriberOptions {
            capacity,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry_delay: DEFAULT_RETRY_DELAY,
            idle_reconnect: None,
        }
    }
}

/// Handle to the running subscriber tasks (they stop on shutdown, or when the receiver is
/// dropped and the next message arrives).
#[derive(Clone)]
pub struct BusSubscriber {
    counters: Arc<Counters>,
}

impl BusSubscriber {
    /// Subscribes to `topic_prefixes` (empty = everything) on each endpoint; decoded events go
    /// to the returned channel of `capacity`. Connections are retried until they succeed, so
    /// the publisher may start later, and re-established when a publisher restarts.
    pub fn spawn(
        endpoints: Vec<String>,
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
    pub fn spawn_with(
        endpoints: Vec<String>,
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
    /// judge it: the endpoint it arrived on and its topic frame.
    pub fn spawn_deliveries(
        endpoints: Vec<String>,
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

    fn spawn_workers(
        endpoints: Vec<String>,
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
        for endpoint in endpoints {
            let worker = EndpointWorker {
                source: Arc::from(endpoint.as_str()),
                endpoint,
                prefixes: prefixes.clone(),
                tx: tx.clone(),
                counters: counters.clone(),
                options: options.clone(),
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = worker.run() => {}
                }
            });
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

/// Why a connected session ended.
enum SessionEnd {
    /// Reconnect with a fresh socket.
    Reconnect,
    /// The consumer dropped its receiver: stop for good.
    ConsumerGone,
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

    async fn closed(&self) {
        match self {
            Output::Events(tx) => tx.closed().await,
            Output::Deliveries(tx) => tx.closed().await,
        }
    }
}

struct EndpointWorker {
    endpoint: String,
    /// The endpoint again, shared by every delivery from it.
    source: Arc<str>,
    prefixes: Vec<String>,
    tx: Output,
    counters: Arc<Counters>,
    options: SubscriberOptions,
}

impl EndpointWorker {
    async fn run(self) {
        let mut first_failure_logged = false;
        loop {
            let mut socket_options = zeromq::SocketOptions::default();
            socket_options.connect_timeout(self.options.connect_timeout);
            let mut socket = zeromq::SubSocket::with_options(socket_options);
            let mut monitor = socket.monitor();
            for p in &self.prefixes {
                // No peer yet: this only records the prefix, sent on connect.
                if let Err(e) = socket.subscribe(p).await {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "bus subscribe failed");
                }
            }
            if let Err(e) = socket.connect(&self.endpoint).await {
                if !first_failure_logged {
                    tracing::info!(endpoint = %self.endpoint, error = %e, "bus publisher not reachable yet; retrying");
                    first_failure_logged = true;
                }
                drop(socket);
                tokio::time::sleep(self.options.retry_delay).await;
                continue;
            }
            first_failure_logged = false;
            self.counters.connections.fetch_add(1, Ordering::Relaxed);
            tracing::info!(endpoint = %self.endpoint, "bus subscriber connected");
            match self.session(&mut socket, &mut monitor).await {
                SessionEnd::ConsumerGone => return,
                SessionEnd::Reconnect => {
                    tracing::info!(endpoint = %self.endpoint, "bus publisher lost; reconnecting");
                    // Dropping the socket also stops the crate's own reconnect task.
                    drop(socket);
                    tokio::time::sleep(self.options.retry_delay).await;
                }
            }
        }
    }

    /// Receives until the publisher goes away (or stays silent past `idle_reconnect`).
    async fn session(
        &self,
        socket: &mut zeromq::SubSocket,
        monitor: &mut futures::channel::mpsc::Receiver<SocketEvent>,
    ) -> SessionEnd {
        let idle = self.options.idle_reconnect;
        loop {
            let silence = async {
                match idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = socket.recv() => match msg {
                    Ok(msg) => {
                        if self.handle(msg) {
                            return SessionEnd::ConsumerGone;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(endpoint = %self.endpoint, error = %e, "bus receive error");
                        return SessionEnd::Reconnect;
                    }
                },
                ev = monitor.next() => match ev {
                    Some(SocketEvent::Disconnected(_)) | None => return SessionEnd::Reconnect,
                    Some(_) => {}
                },
                _ = self.tx.closed() => return SessionEnd::ConsumerGone,
                _ = silence => {
                    tracing::info!(endpoint = %self.endpoint, idle_ms = idle.map(|d| d.as_millis() as u64).unwrap_or(0), "bus silent; reconnecting");
                    return SessionEnd::Reconnect;
                }
            }
        }
    }

    /// Decodes one message and hands it on; returns true when the consumer is gone.
    fn handle(&self, msg: zeromq::ZmqMessage) -> bool {
        let (topic, event) = match (msg.len(), msg.get(0), msg.get(1)) {
            (2, Some(topic), Some(payload)) => (
                String::from_utf8_lossy(topic).into_owned(),
                codec::decode(payload),
            ),
            _ => {
                let n = self.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
                // Rate-limited: the 1st, 2nd, 4th, 8th… occurrence is logged.
                if n.is_power_of_two() {
                    tracing::warn!(endpoint = %self.endpoint, frames = msg.len(), malformed = n, "bus message without [topic, payload] dropped");
                }
                return false;
            }
        };
        match event {
            Ok(ev) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let delivery = Delivery {
                    endpoint: self.source.clone(),
                    topic,
                    event: ev,
                };
                match self.tx.try_send(delivery) {
                    Ok(()) => false,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let n = self.counters.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            tracing::warn!(endpoint = %self.endpoint, dropped = n, "bus consumer too slow; events dropped");
                        }
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => true,
                }
            }
            Err(e) => {
                let n = self.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, malformed = n, "malformed bus message dropped");
                }
                false
            }
        }
    }
}
