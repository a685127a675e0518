//! `zoomate bus proxy`: XSUB on the frontend (origins connect their PUB), XPUB on the backend
//! (edges connect their SUB). Messages flow down, subscriptions flow up, so origins only send
//! what someone downstream wants.
//!
//! `zeromq` 0.7's XPUB hands every subscribe/unsubscribe frame to the application, duplicates
//! included, and its XSUB keeps a *set* of subscriptions: forwarded naively, one edge
//! unsubscribing `seg/` would cut `seg/` off for every other edge. [`SubscriptionCounts`]
//! forwards a subscribe only on its first holder and an unsubscribe only on its last, as
//! libzmq's XPUB does. The crate's XPUB does not report a vanished subscriber, so its
//! subscriptions are never released: upstream may send a little more than needed, never less.

use super::BusError;
use crate::Shutdown;
use std::collections::HashMap;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// Distinct subscription prefixes tracked; further new prefixes are forwarded as a subscription
/// to everything (`""`) once, so a flood of prefixes costs bounded memory and loses nothing.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// What to send upstream for one subscription frame from downstream.
#[derive(Debug, PartialEq, Eq)]
pub enum Upstream {
    Forward(Vec<u8>),
    Nothing,
}

/// Reference counts of downstream subscriptions (pure: unit-tested without sockets).
#[derive(Debug, Default)]
pub struct SubscriptionCounts {
    counts: HashMap<Vec<u8>, u64>,
    overflowed: bool,
}

impl SubscriptionCounts {
    /// `frame` is a ZMTP subscription frame: `0x01 prefix` subscribes, `0x00 prefix`
    /// unsubscribes (ZMTP 3.0, RFC 29 / 23). Anything else is ignored.
    pub fn apply(&mut self, frame: &[u8]) -> Upstream {
        let Some((&kind, prefix)) = frame.split_first() else {
            return Upstream::Nothing;
        };
        match kind {
            1 => {
                if let Some(n) = self.counts.get_mut(prefix) {
                    *n += 1;
                    return Upstream::Nothing;
                }
                if self.counts.len() >= MAX_SUBSCRIPTIONS {
                    if self.overflowed {
                        return Upstream::Nothing;
                    }
                    self.overflowed = true;
                    tracing::warn!(
                        limit = MAX_SUBSCRIPTIONS,
                        "bus proxy subscription limit reached; subscribing upstream to everything"
                    );
                    return Upstream::Forward(vec![1]);
                }
                self.counts.insert(prefix.to_vec(), 1);
                Upstream::Forward(frame.to_vec())
            }
            0 => match self.counts.get_mut(prefix) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    Upstream::Nothing
                }
                Some(_) => {
                    self.counts.remove(prefix);
                    Upstream::Forward(frame.to_vec())
                }
                None => Upstream::Nothing,
            },
            _ => Upstream::Nothing,
        }
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
    let mut xsub = zeromq::XSubSocket::new();
    let front = xsub.bind(frontend).await.map_err(|source| BusError::Zmq {
        endpoint: frontend.into(),
        source,
    })?;
    let mut xpub = zeromq::XPubSocket::new();
    let back = xpub.bind(backend).await.map_err(|source| BusError::Zmq {
        endpoint: backend.into(),
        source,
    })?;
    tracing::info!(frontend = %front, backend = %back, "bus proxy forwarding");
    if let Some(r) = ready {
        let _ = r.send((front.to_string(), back.to_string()));
    }
    let mut subscriptions = SubscriptionCounts::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = xsub.recv() => match m {
                // Transparent: whatever frames an origin sent go down unchanged.
                Ok(msg) => { let _ = xpub.send(msg).await; }
                Err(e) => tracing::debug!(error = %e, "proxy frontend receive error"),
            },
            m = xpub.recv() => match m {
                Ok(msg) => {
                    let frame = if msg.len() == 1 { msg.get(0) } else { None };
                    if let Some(Upstream::Forward(up)) = frame.map(|f| subscriptions.apply(f)) {
                        let _ = xsub.send(ZmqMessage::from(up)).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "proxy backend receive error"),
            },
        }
    }
}

/// `zoomate bus proxy --frontend … --backend …`.
pub async fn run_proxy(frontend: &str, backend: &str, shutdown: Shutdown) -> Result<(), BusError> {
    run_proxy_with(frontend, backend, shutdown, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_subscribe_and_last_unsubscribe_go_upstream() {
        let mut c = SubscriptionCounts::default();
        assert_eq!(
            c.apply(b"\x01seg/"),
            Upstream::Forward(b"\x01seg/".to_vec())
        );
        assert_eq!(c.apply(b"\x01seg/"), Upstream::Nothing);
        assert_eq!(c.apply(b"\x00seg/"), Upstream::Nothing);
        assert_eq!(
            c.apply(b"\x00seg/"),
            Upstream::Forward(b"\x00seg/".to_vec())
        );
        assert_eq!(
            c.apply(b"\x00seg/"),
            Upstream::Nothing,
            "unsubscribe without subscribe"
        );
        assert_eq!(c.apply(b""), Upstream::Nothing);
        assert_eq!(c.apply(b"\x07x"), Upstream::Nothing);
    }

    #[test]
    fn too_many_prefixes_degrade_to_everything_once() {
        let mut c = SubscriptionCounts::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            assert!(matches!(
                c.apply(format!("\x01p{i}").as_bytes()),
                Upstream::Forward(_)
            ));
        }
        assert_eq!(c.apply(b"\x01extra"), Upstream::Forward(vec![1]));
        assert_eq!(c.apply(b"\x01extra2"), Upstream::Nothing);
    }
}
