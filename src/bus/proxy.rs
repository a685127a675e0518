//! `zoomate bus proxy`: XSUB on the frontend (origins connect their PUB), XPUB on the backend
//! (edges connect their SUB), joined by libzmq's own `zmq_proxy_steerable` on a dedicated
//! thread. Messages flow down, subscriptions flow up, so origins only send what someone
//! downstream wants.
//!
//! libzmq's XPUB reference-counts subscriptions, forwards only a prefix's first subscribe and
//! last unsubscribe, and releases a vanished subscriber's prefixes, so the proxy forwards
//! transparently (the subscription bookkeeping the pure-Rust engine needed is gone).
//! Both sides get `ZMQ_MAXMSGSIZE`, high-water marks and heartbeats; with a secret key both are
//! CURVE servers, each with its own accepted keys (origins on the frontend, edges on the
//! backend). Shutdown sends `TERMINATE` on the proxy's control socket.

use super::BusError;
use super::engine::{self, CurveKey, KeyPair, SocketLimits, zmq_err};
use crate::Shutdown;
use std::collections::HashSet;

/// Default per-peer high-water mark of the proxy's sockets, in messages.
pub const DEFAULT_PROXY_HWM: usize = 10_000;

/// Bounds and keys of a proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub limits: SocketLimits,
    pub curve: Option<ProxyCurve>,
}

/// CURVE for both sides of a proxy.
#[derive(Debug, Clone)]
pub struct ProxyCurve {
    pub pair: KeyPair,
    /// Origins allowed to publish into the frontend.
    pub frontend_accept: HashSet<CurveKey>,
    /// Edges allowed to subscribe on the backend.
    pub backend_accept: HashSet<CurveKey>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            limits: SocketLimits::new(engine::DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PROXY_HWM),
            curve: None,
        }
    }
}

impl ProxyOptions {
    /// From a validated config's `[bus]` (secret key, `[bus.proxy]` accepted keys, limits).
    pub fn from_config(config: &crate::config::BusConfig) -> Result<ProxyOptions, BusError> {
        let err = |e: crate::config::ConfigError| BusError::Config(e.to_string());
        let curve = match config.key_pair().map_err(err)? {
            None => None,
            Some(pair) => Some(ProxyCurve {
                pair,
                frontend_accept: crate::config::bus_keys(
                    "bus.proxy.frontend_accept_keys",
                    &config.proxy.frontend_accept_keys,
                )
                .map_err(err)?,
                backend_accept: crate::config::bus_keys(
                    "bus.proxy.backend_accept_keys",
                    &config.proxy.backend_accept_keys,
                )
                .map_err(err)?,
            }),
        };
        Ok(ProxyOptions {
            limits: SocketLimits::new(config.max_message_bytes, DEFAULT_PROXY_HWM),
            curve,
        })
    }
}

/// Binds both sides and forwards until shutdown. Sends the bound endpoints (port 0 resolved)
/// through `ready`, for tests and for logging.
pub async fn run_proxy_with(
    frontend: &str,
    backend: &str,
    shutdown: Shutdown,
    ready: Option<tokio::sync::oneshot::Sender<(String, String)>>,
) -> Result<(), BusError> {
    run_proxy_with_options(frontend, backend, ProxyOptions::default(), shutdown, ready).await
}

/// [`run_proxy_with`] with limits and keys.
pub async fn run_proxy_with_options(
    frontend: &str,
    backend: &str,
    options: ProxyOptions,
    shutdown: Shutdown,
    ready: Option<tokio::sync::oneshot::Sender<(String, String)>>,
) -> Result<(), BusError> {
    let ctx = engine::context();
    let bind = |kind: zmq::SocketType,
                endpoint: &str,
                accept: Option<(&KeyPair, &HashSet<CurveKey>)>|
     -> Result<(zmq::Socket, String), BusError> {
        let socket = ctx.socket(kind).map_err(zmq_err(endpoint))?;
        options.limits.apply(&socket, endpoint)?;
        if let Some((pair, accepted)) = accept {
            engine::make_curve_server(&socket, endpoint, pair, accepted)?;
        }
        socket.bind(endpoint).map_err(zmq_err(endpoint))?;
        let bound = socket
            .get_last_endpoint()
            .map_err(zmq_err(endpoint))?
            .unwrap_or_else(|_| endpoint.to_string());
        Ok((socket, bound))
    };
    let curve = options.curve.as_ref();
    let (mut xsub, front) = bind(
        zmq::XSUB,
        frontend,
        curve.map(|c| (&c.pair, &c.frontend_accept)),
    )?;
    let (mut xpub, back) = bind(
        zmq::XPUB,
        backend,
        curve.map(|c| (&c.pair, &c.backend_accept)),
    )?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let control_endpoint = format!(
        "inproc://zoomate-proxy-control-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut control = ctx.socket(zmq::PAIR).map_err(zmq_err(&control_endpoint))?;
    control
        .bind(&control_endpoint)
        .map_err(zmq_err(&control_endpoint))?;
    let steer = ctx.socket(zmq::PAIR).map_err(zmq_err(&control_endpoint))?;
    steer
        .connect(&control_endpoint)
        .map_err(zmq_err(&control_endpoint))?;
    tracing::info!(frontend = %front, backend = %back, curve = curve.is_some(), "bus proxy forwarding");
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<Result<(), zmq::Error>>();
    std::thread::Builder::new()
        .name("zoomate-bus-proxy".into())
        .spawn(move || {
            let r = zmq::proxy_steerable(&mut xsub, &mut xpub, &mut control);
            let _ = done_tx.send(r);
        })
        .map_err(|e| BusError::Thread(e.to_string()))?;
    if let Some(r) = ready {
        let _ = r.send((front.clone(), back));
    }
    tokio::select! {
        _ = shutdown.cancelled() => {
            // One send on an inproc PAIR: it does not wait on any network peer.
            let sent = tokio::task::spawn_blocking(move || steer.send("TERMINATE", 0)).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!("bus proxy did not take TERMINATE");
                return Ok(());
            }
            let _ = done_rx.await;
            Ok(())
        }
        r = &mut done_rx => match r {
            Ok(Err(source)) => Err(BusError::Zmq { endpoint: front, source }),
            _ => Ok(()),
        },
    }
}

/// `zoomate bus proxy --frontend … --backend …` with `[bus]` of the config.
pub async fn run_proxy(
    frontend: &str,
    backend: &str,
    options: ProxyOptions,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    run_proxy_with_options(frontend, backend, options, shutdown, None).await
}
