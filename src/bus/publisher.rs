//! The origin side: one libzmq PUB socket on its own OS thread, fed through a bounded queue so a
//! slow or absent network never blocks the media path.
//!
//! `publish` → bounded queue → pump task (tokio) → small channel → socket thread → PUB.
//! The pump exists so the queue bound is what `publish` sees, whatever the socket thread is
//! doing; the thread only sends. Bound (the default) the socket accepts subscribers directly;
//! connected (`publish_connect`, towards a `zoomate bus proxy` frontend) libzmq reconnects by
//! itself (`ZMQ_RECONNECT_IVL`). Messages published while no subscriber is connected are lost.
//!
//! Stopping: the publisher has its own stop token (see `app`: it fires only after every stream
//! session has announced its end), then sends what is queued, keeps the socket open for a
//! bounded [`DEFAULT_LINGER`] so those last messages leave the process, and closes.

use super::engine::{self, Finished, KeyPair, SocketLimits, zmq_err};
use super::{BusError, BusEvent, codec};
use crate::Shutdown;
use crate::config::BusConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// After the stop signal, how long the socket stays open so the last messages (StreamEnded,
/// the final SegmentReady) reach connected peers: libzmq writes from its I/O thread after
/// `send` returns, and closing a socket of a context that is never terminated drops what is
/// still queued.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(300);
/// Encoded messages between the pump and the socket thread.
const THREAD_QUEUE: usize = 256;

/// Publishes bus events; `publish` never blocks. Share it behind an `Arc`.
pub struct BusPublisher {
    queue: Queue,
    endpoint: String,
    sent: Arc<AtomicU64>,
    finished: Finished,
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
            // After the stop the pump is gone: announcements made then go nowhere.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::debug!(dropped = n, "bus publisher stopped; announcement dropped");
                }
            }
        }
    }
}

/// The two frames of one message: `[topic, payload]`.
pub fn frames(event: &BusEvent) -> [Vec<u8>; 2] {
    [event.topic().into_bytes(), codec::encode(event)]
}

/// The CURVE role of the publisher's socket.
enum Security {
    Plain,
    Server {
        pair: KeyPair,
        accepted: std::collections::HashSet<engine::CurveKey>,
    },
    Client {
        server_key: engine::CurveKey,
        pair: Option<KeyPair>,
    },
}

impl Security {
    fn from_config(config: &BusConfig) -> Result<Security, BusError> {
        let key_err = |e: crate::config::ConfigError| BusError::Config(e.to_string());
        let pair = config.key_pair().map_err(key_err)?;
        if config.publish_connect {
            return Ok(match config.publish_server_key().map_err(key_err)? {
                Some(server_key) => Security::Client { server_key, pair },
                None => Security::Plain,
            });
        }
        Ok(match pair {
            Some(pair) => {
                let mut accepted = config.accepted_keys().map_err(key_err)?;
                // This node's own key is always accepted: `zoomate run`'s edge subscribes to
                // its own origin with it.
                accepted.insert(pair.public);
                Security::Server { pair, accepted }
            }
            None => Security::Plain,
        })
    }
}

impl BusPublisher {
    /// Binds `publish_endpoint` (port 0 is resolved: see [`BusPublisher::local_endpoint`]) or,
    /// with `publish_connect`, connects to it (libzmq retries in the background), then starts
    /// the socket thread. Errors only when the socket cannot be set up or bound. `stop` ends
    /// the publisher (after sending what is queued).
    pub async fn start(config: &BusConfig, stop: Shutdown) -> Result<BusPublisher, BusError> {
        let endpoint = config.publish_endpoint.clone();
        let socket = engine::context()
            .socket(zmq::PUB)
            .map_err(zmq_err(&endpoint))?;
        SocketLimits::new(config.max_message_bytes, config.queue_capacity.max(1))
            .apply(&socket, &endpoint)?;
        match Security::from_config(config)? {
            Security::Plain => {}
            Security::Server { pair, accepted } => {
                engine::make_curve_server(&socket, &endpoint, &pair, &accepted)?;
            }
            Security::Client { server_key, pair } => {
                engine::make_curve_client(&socket, &endpoint, &server_key, pair.as_ref())?;
            }
        }
        let bound = if config.publish_connect {
            socket.connect(&endpoint).map_err(zmq_err(&endpoint))?;
            tracing::info!(%endpoint, "bus publisher connecting");
            endpoint.clone()
        } else {
            socket.bind(&endpoint).map_err(zmq_err(&endpoint))?;
            let bound = socket
                .get_last_endpoint()
                .map_err(zmq_err(&endpoint))?
                .unwrap_or_else(|_| endpoint.clone());
            tracing::info!(endpoint = %bound, "bus publisher bound");
            bound
        };

        let (tx, rx) = mpsc::channel::<BusEvent>(config.queue_capacity.max(1));
        let (thread_tx, thread_rx) = mpsc::channel::<[Vec<u8>; 2]>(THREAD_QUEUE);
        let sent = Arc::new(AtomicU64::new(0));
        let finished = Finished::default();
        tokio::spawn(pump(rx, thread_tx, stop));
        let thread_sent = sent.clone();
        let thread_finished = finished.clone();
        let thread_endpoint = bound.clone();
        std::thread::Builder::new()
            .name("zoomate-bus-pub".into())
            .spawn(move || {
                send_loop(&socket, thread_rx, &thread_sent, &thread_endpoint);
                drop(socket);
                thread_finished.set();
            })
            .map_err(|e| BusError::Thread(e.to_string()))?;
        Ok(BusPublisher {
            queue: Queue {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            endpoint: bound,
            sent,
            finished,
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

    /// Events dropped because the queue was full (or the publisher had stopped).
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Events handed to the socket (whether or not anyone was subscribed).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Resolves once the stop signal fired, the queue was sent and the socket closed.
    pub async fn finished(&self) {
        self.finished.wait().await;
    }

    /// Publishes `make()` every `interval` (first one at once) until `shutdown`.
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

/// Moves events from the bounded queue to the socket thread until `stop`, then forwards what
/// is still queued and closes the thread's channel (which ends the thread).
async fn pump(
    mut rx: mpsc::Receiver<BusEvent>,
    thread_tx: mpsc::Sender<[Vec<u8>; 2]>,
    stop: Shutdown,
) {
    loop {
        let event = tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return,
            },
            _ = stop.cancelled() => break,
        };
        if thread_tx.send(frames(&event)).await.is_err() {
            return;
        }
    }
    // Stop: no new events; what is queued (StreamEnded on shutdown) still goes out.
    rx.close();
    while let Some(ev) = rx.recv().await {
        if thread_tx.send(frames(&ev)).await.is_err() {
            return;
        }
    }
}

/// The socket thread: sends each message; once the pump hangs up, lingers and returns.
fn send_loop(
    socket: &zmq::Socket,
    mut rx: mpsc::Receiver<[Vec<u8>; 2]>,
    sent: &AtomicU64,
    endpoint: &str,
) {
    // `blocking_recv` is right here: this is a dedicated thread, never a tokio worker. It
    // returns `None` when the pump ends (stop signal, every handle dropped, runtime gone).
    let mut any = false;
    while let Some([topic, payload]) = rx.blocking_recv() {
        // PUB never blocks: at the high-water mark libzmq drops for that subscriber.
        let r = socket
            .send(topic, zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| socket.send(payload, zmq::DONTWAIT));
        match r {
            Ok(()) => {
                sent.fetch_add(1, Ordering::Relaxed);
                any = true;
            }
            Err(e) => tracing::debug!(%endpoint, error = %e, "bus send failed"),
        }
    }
    if any {
        std::thread::sleep(DEFAULT_LINGER);
    }
    tracing::debug!(%endpoint, "bus publisher closed");
}
