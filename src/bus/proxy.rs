//! `zoomate bus proxy`: XSUB on the frontend (origins connect their PUB), XPUB on the backend
//! (edges connect their SUB). Messages flow down, subscriptions flow up, so origins only send
//! what someone wants.

use super::BusError;
use crate::Shutdown;
use zeromq::{Socket, SocketRecv, SocketSend};

/// Binds both sides and forwards until shutdown. Returns the bound endpoints through `ready`.
pub async fn run_proxy_with(frontend: &str, backend: &str, shutdown: Shutdown, ready: Option<tokio::sync::oneshot::Sender<(String, String)>>) -> Result<(), BusError> {
    let mut xsub = zeromq::XSubSocket::new();
    let front = xsub.bind(frontend).await.map_err(|source| BusError::Zmq { endpoint: frontend.into(), source })?;
    let mut xpub = zeromq::XPubSocket::new();
    let back = xpub.bind(backend).await.map_err(|source| BusError::Zmq { endpoint: backend.into(), source })?;
    tracing::info!(frontend = %front, backend = %back, "bus proxy forwarding");
    if let Some(r) = ready {
        let _ = r.send((front.to_string(), back.to_string()));
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = xsub.recv() => match m {
                Ok(msg) => { let _ = xpub.send(msg).await; }
                Err(e) => tracing::debug!(error = %e, "proxy frontend receive error"),
            },
            m = xpub.recv() => match m {
                // Subscription changes from edges, passed upstream.
                Ok(msg) => { let _ = xsub.send(msg).await; }
                Err(e) => tracing::debug!(error = %e, "proxy backend receive error"),
            },
        }
    }
}

/// `zoomate bus proxy --frontend … --backend …`.
pub async fn run_proxy(frontend: &str, backend: &str, shutdown: Shutdown) -> Result<(), BusError> {
    run_proxy_with(frontend, backend, shutdown, None).await
}
