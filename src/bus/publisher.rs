//! The origin side: one ZeroMQ PUB socket owned by a task, fed through a bounded queue so a
//! slow or absent network never blocks the media path.

use super::{BusError, BusEvent, codec};
use crate::Shutdown;
use crate::config::BusConfig;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketSend};

/// Publishes bus events; cheap to share (`Arc`), `publish` never blocks.
pub struct BusPublisher {
    tx: mpsc::Sender<BusEvent>,
    endpoint: String,
    dropped: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

/// Builds the two-frame message `[topic, payload]`.
pub fn frames(event: &BusEvent) -> zeromq::ZmqMessage {
    let mut msg = zeromq::ZmqMessage::from(Bytes::from(event.topic()));
    msg.push_back(Bytes::from(codec::encode(event)));
    msg
}

impl BusPublisher {
    /// Binds (or, with `publish_connect`, connects to a proxy frontend) and starts the sender.
    pub async fn start(config: &BusConfig, shutdown: Shutdown) -> Result<BusPublisher, BusError> {
        let mut socket = zeromq::PubSocket::new();
        let endpoint = if config.publish_connect {
            // connect() waits for the peer: keep retrying in the sender task instead of here.
            config.publish_endpoint.clone()
        } else {
            let bound = socket
                .bind(&config.publish_endpoint)
                .await
                .map_err(|source| BusError::Zmq { endpoint: config.publish_endpoint.clone(), source })?;
            bound.to_string()
        };
        let (tx, mut rx) = mpsc::channel::<BusEvent>(config.queue_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let sent_counter = sent.clone();
        let connect_to = config.publish_connect.then(|| config.publish_endpoint.clone());
        tokio::spawn(async move {
            if let Some(ep) = connect_to {
                loop {
                    let attempt = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = tokio::time::timeout(Duration::from_secs(5), socket.connect(&ep)) => r,
                    };
                    match attempt {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) => tracing::warn!(endpoint = %ep, error = %e, "bus connect failed; retrying"),
                        Err(_) => tracing::warn!(endpoint = %ep, "bus connect timed out; retrying"),
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
            loop {
                let event = tokio::select! {
                    // Drain what is queued (StreamEnded on shutdown) before leaving.
                    ev = rx.recv() => match ev { Some(ev) => ev, None => break },
                    _ = shutdown.cancelled() => {
                        while let Ok(ev) = rx.try_recv() {
                            let _ = socket.send(frames(&ev)).await;
                        }
                        break;
                    }
                };
                match socket.send(frames(&event)).await {
                    Ok(()) => {
                        sent_counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::debug!(error = %e, "bus send failed"),
                }
            }
        });
        Ok(BusPublisher { tx, endpoint, dropped, sent })
    }

    /// Queues an event; when the queue is full the event is dropped and counted.
    pub fn publish(&self, event: BusEvent) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "bus queue full; dropping announcements");
            }
        }
    }

    /// The endpoint actually bound (port 0 resolved), or the one connected to.
    pub fn local_endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Publishes `make()` every `interval` until shutdown.
    pub fn spawn_heartbeat(self: &Arc<Self>, interval: Duration, make: impl Fn() -> BusEvent + Send + 'static, shutdown: Shutdown) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => me.publish(make()),
                }
            }
        });
    }
}
