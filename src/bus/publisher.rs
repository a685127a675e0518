//! The origin side: one ZeroMQ PUB socket owned by a task, fed through a bounded queue so a
//! slow or absent network never blocks the media path.
//!
//! Bound (the default) the socket accepts subscribers directly; connected (`publish_connect`,
//! towards a `zoomate bus proxy` frontend) the task reconnects by itself: `zeromq` 0.7 only
//! reconnects SUB sockets, so on a disconnect the task drops its PUB socket and connects a
//! fresh one. Messages published while no subscriber is connected are lost, as with libzmq.

use super::{BusError, BusEvent, codec};
use crate::Shutdown;
use crate::config::BusConfig;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketEvent, SocketSend};

/// How long one connect attempt (with `publish_connect`) may wait before starting over.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between failed connect attempts.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(200);
/// After shutdown, how long the socket stays open so the last queued messages (StreamEnded)
/// leave the process: the crate writes to peers from its own tasks, after `send` returns.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(200);

/// Publishes bus events; `publish` never blocks. Share it behind an `Arc`.
pub struct BusPublisher {
    queue: Queue,
    endpoint: String,
    sent: Arc<AtomicU64>,
}

/// The producer end of the bounded queue plus its drop counter (cloned into heartbeat tasks).
#[derive(Clone)]
struct Queue {
    tx: mpsc::Sender<BusEvent>,
    dropped: Arc<AtomicU64>,
}

impl Queue {
    fn push(&self, event: BusEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Rate-limited: the 1st, 2nd, 4th, 8th… drop is logged.
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "bus queue full; dropping announcements");
                }
            }
            // After shutdown the sender task is gone: announcements made while draining go nowhere.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::debug!(dropped = n, "bus publisher stopped; announcement dropped");
                }
            }
        }
    }
}

/// Builds the two-frame message `[topic, payload]`.
pub fn frames(event: &BusEvent) -> zeromq::ZmqMessage {
    let mut msg = zeromq::ZmqMessage::from(Bytes::from(event.topic()));
    msg.push_back(Bytes::from(codec::encode(event)));
    msg
}

impl BusPublisher {
    /// Binds `publish_endpoint` (port 0 is resolved: see [`BusPublisher::local_endpoint`]) or,
    /// with `publish_connect`, starts connecting to it in the background, then starts the
    /// sender task. Errors only when binding fails.
    pub async fn start(config: &BusConfig, shutdown: Shutdown) -> Result<BusPublisher, BusError> {
        let (tx, rx) = mpsc::channel::<BusEvent>(config.queue_capacity.max(1));
        let queue = Queue {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let sent = Arc::new(AtomicU64::new(0));
        let endpoint = if config.publish_connect {
            tokio::spawn(run_connected(
                config.publish_endpoint.clone(),
                rx,
                sent.clone(),
                shutdown,
            ));
            config.publish_endpoint.clone()
        } else {
            let mut socket = zeromq::PubSocket::new();
            let bound = socket
                .bind(&config.publish_endpoint)
                .await
                .map_err(|source| BusError::Zmq {
                    endpoint: config.publish_endpoint.clone(),
                    source,
                })?;
            tracing::info!(endpoint = %bound, "bus publisher bound");
            tokio::spawn(run_bound(socket, rx, sent.clone(), shutdown));
            bound.to_string()
        };
        Ok(BusPublisher {
            queue,
            endpoint,
            sent,
        })
    }

    /// Queues an event; when the queue is full the event is dropped and counted.
    pub fn publish(&self, event: BusEvent) {
        self.queue.push(event);
    }

    /// The endpoint actually bound (port 0 resolved, e.g. `tcp://127.0.0.1:40123`), or the one
    /// connected to.
    pub fn local_endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Events handed to the socket (whether or not anyone was subscribed).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Publishes `make()` every `interval` (first one at once) until shutdown.
    pub fn spawn_heartbeat(
        &self,
        interval: Duration,
        make: impl Fn() -> BusEvent + Send + 'static,
        shutdown: Shutdown,
    ) {
        let queue = self.queue.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => queue.push(make()),
                }
            }
        });
    }
}

/// What stopped a sending loop.
enum SendEnd {
    /// Shutdown, or every `BusPublisher` handle was dropped.
    Done,
    /// The connected peer went away: connect again.
    PeerLost,
}

async fn run_bound(
    mut socket: zeromq::PubSocket,
    mut rx: mpsc::Receiver<BusEvent>,
    sent: Arc<AtomicU64>,
    shutdown: Shutdown,
) {
    let _ = send_loop(&mut socket, &mut rx, &sent, &shutdown, None).await;
}

async fn run_connected(
    endpoint: String,
    mut rx: mpsc::Receiver<BusEvent>,
    sent: Arc<AtomicU64>,
    shutdown: Shutdown,
) {
    let mut logged = false;
    loop {
        let mut options = zeromq::SocketOptions::default();
        options.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        let mut socket = zeromq::PubSocket::with_options(options);
        let mut monitor = socket.monitor();
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.connect(&endpoint) => r,
        };
        if let Err(e) = connected {
            if !logged {
                tracing::warn!(%endpoint, error = %e, "bus proxy not reachable yet; retrying");
                logged = true;
            }
            // Nothing can be delivered meanwhile; keep the queue from holding stale events.
            while rx.try_recv().is_ok() {}
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(DEFAULT_RETRY_DELAY) => continue,
            }
        }
        logged = false;
        tracing::info!(%endpoint, "bus publisher connected");
        match send_loop(&mut socket, &mut rx, &sent, &shutdown, Some(&mut monitor)).await {
            SendEnd::Done => return,
            SendEnd::PeerLost => tracing::info!(%endpoint, "bus proxy lost; reconnecting"),
        }
    }
}

async fn send_loop(
    socket: &mut zeromq::PubSocket,
    rx: &mut mpsc::Receiver<BusEvent>,
    sent: &AtomicU64,
    shutdown: &Shutdown,
    mut monitor: Option<&mut futures::channel::mpsc::Receiver<SocketEvent>>,
) -> SendEnd {
    loop {
        let peer_lost = async {
            match monitor.as_mut() {
                Some(m) => loop {
                    match m.next().await {
                        Some(SocketEvent::Disconnected(_)) | None => break,
                        Some(_) => {}
                    }
                },
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return SendEnd::Done,
            },
            _ = peer_lost => return SendEnd::PeerLost,
            _ = shutdown.cancelled() => {
                // Drain what is already queued (StreamEnded on shutdown) before leaving.
                let mut drained = 0;
                while let Ok(ev) = rx.try_recv() {
                    if socket.send(frames(&ev)).await.is_ok() {
                        drained += 1;
                    }
                }
                sent.fetch_add(drained, Ordering::Relaxed);
                if drained > 0 {
                    tokio::time::sleep(DEFAULT_LINGER).await;
                }
                return SendEnd::Done;
            }
        };
        match socket.send(frames(&event)).await {
            Ok(()) => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "bus send failed"),
        }
    }
}
