//! The subscriber side (edges, tools): a SUB socket per endpoint, reconnecting by itself, all
//! feeding one bounded channel. A slow consumer loses messages (counted), never memory.

use super::{BusEvent, codec};
use crate::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketRecv};

/// Counters for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    pub received: u64,
    pub dropped_full: u64,
    pub malformed: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    dropped_full: AtomicU64,
    malformed: AtomicU64,
}

/// Handle to the running subscriber tasks.
#[derive(Clone)]
pub struct BusSubscriber {
    counters: Arc<Counters>,
}

impl BusSubscriber {
    /// Subscribes to `topic_prefixes` (empty = everything) on each endpoint. Connections are
    /// retried until they succeed, and re-established if a publisher restarts.
    pub fn spawn(endpoints: Vec<String>, topic_prefixes: Vec<String>, capacity: usize, shutdown: Shutdown) -> (BusSubscriber, mpsc::Receiver<BusEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        for endpoint in endpoints {
            let (tx, counters, shutdown, prefixes) = (tx.clone(), counters.clone(), shutdown.clone(), topic_prefixes.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = run_endpoint(endpoint, prefixes, tx, counters) => {}
                }
            });
        }
        (BusSubscriber { counters }, rx)
    }

    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            received: self.counters.received.load(Ordering::Relaxed),
            dropped_full: self.counters.dropped_full.load(Ordering::Relaxed),
            malformed: self.counters.malformed.load(Ordering::Relaxed),
        }
    }
}

async fn run_endpoint(endpoint: String, prefixes: Vec<String>, tx: mpsc::Sender<BusEvent>, counters: Arc<Counters>) {
    let mut socket = zeromq::SubSocket::new();
    let prefixes = if prefixes.is_empty() { vec![String::new()] } else { prefixes };
    for p in &prefixes {
        if let Err(e) = socket.subscribe(p).await {
            tracing::warn!(%endpoint, error = %e, "bus subscribe failed");
        }
    }
    // connect() waits for the publisher to answer; retry until it does. After that the socket
    // reconnects by itself when the publisher restarts.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.connect(&endpoint)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => tracing::debug!(%endpoint, error = %e, "bus connect failed; retrying"),
            Err(_) => tracing::debug!(%endpoint, "bus connect timed out; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracing::info!(%endpoint, "bus subscriber connected");
    loop {
        let msg = match socket.recv().await {
            Ok(m) => m,
            Err(e) => {
                // A publisher went away; the socket reconnects in the background.
                tracing::debug!(%endpoint, error = %e, "bus receive error");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let event = match (msg.len(), msg.get(1)) {
            (2, Some(payload)) => codec::decode(payload),
            _ => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%endpoint, frames = msg.len(), "bus message without [topic, payload]; dropped");
                continue;
            }
        };
        match event {
            Ok(ev) => {
                counters.received.fetch_add(1, Ordering::Relaxed);
                match tx.try_send(ev) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Err(e) => {
                let n = counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(%endpoint, error = %e, malformed = n, "malformed bus message dropped");
                }
            }
        }
    }
}
