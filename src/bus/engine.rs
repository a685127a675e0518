//! The ZeroMQ engine under the bus: libzmq (Debian's 4.3, through the `zmq` 0.9 crate).
//!
//! Why libzmq: it bounds every frame before allocating (`ZMQ_MAXMSGSIZE`: an oversized frame
//! header closes that one connection), has high-water marks, ZMTP heartbeats, CURVE with ZAP and
//! `zmq_proxy`. The pure-Rust `zeromq` 0.7 crate it replaces allocated whatever size a frame
//! header claimed, so one 100-byte frame could abort the process.
//!
//! Rules this module enforces for the rest of the bus:
//! - one process-wide [`context`] (inproc endpoints such as the ZAP handler and socket monitors
//!   are per context);
//! - libzmq sockets are blocking and not thread-safe: each lives on one dedicated, named OS
//!   thread (never a tokio worker) and talks to tokio through bounded channels;
//! - every socket gets [`SocketLimits`] before it binds or connects;
//! - a monitored socket is a [`MonitoredSocket`]: libzmq's one I/O thread writes monitor
//!   events with a blocking send, so the reader must outlive the monitoring, or the whole
//!   context stalls;
//! - CURVE servers register their accepted client keys with the one ZAP handler thread
//!   (`register_zap_domain`), which refuses anything not listed.

use super::BusError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How often a socket thread wakes to look at its stop signal.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Default largest bus message frame, in bytes (a heartbeat listing many streams is a few KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1024 * 1024;
/// ZMTP PING interval: a peer that vanished without a FIN is noticed after
/// [`HEARTBEAT_TIMEOUT`], and the socket reconnects by itself.
pub const HEARTBEAT_IVL: Duration = Duration::from_secs(1);
/// No traffic (PONG or anything else) for this long after a PING closes the connection.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// Told to the peer: close us if we stay silent this long.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// First reconnect delay after a lost or refused connection.
pub const RECONNECT_IVL: Duration = Duration::from_millis(200);
/// Reconnect delays double up to this.
pub const RECONNECT_IVL_MAX: Duration = Duration::from_secs(2);
/// How long a closed socket may keep unsent messages (libzmq's default is forever).
pub const LINGER: Duration = Duration::from_millis(500);
/// A peer must finish the ZMTP (and CURVE) handshake within this.
pub const HANDSHAKE_IVL: Duration = Duration::from_secs(5);

/// The process-wide libzmq context.
pub fn context() -> &'static zmq::Context {
    static CONTEXT: OnceLock<zmq::Context> = OnceLock::new();
    CONTEXT.get_or_init(zmq::Context::new)
}

/// Maps a libzmq error on `endpoint` to a [`BusError`].
pub fn zmq_err(endpoint: &str) -> impl FnOnce(zmq::Error) -> BusError + '_ {
    move |source| BusError::Zmq {
        endpoint: endpoint.to_string(),
        source,
    }
}

/// Bounds applied to every bus socket.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// `ZMQ_MAXMSGSIZE`: a larger frame closes the connection before its body is read.
    pub max_message_bytes: u64,
    /// `ZMQ_SNDHWM` / `ZMQ_RCVHWM`, in messages per peer.
    pub hwm: usize,
}

impl SocketLimits {
    pub fn new(max_message_bytes: u64, hwm: usize) -> Self {
        SocketLimits {
            max_message_bytes,
            hwm,
        }
    }

    /// Sets the bounds, heartbeats, reconnect and linger options on `socket`.
    pub fn apply(&self, socket: &zmq::Socket, endpoint: &str) -> Result<(), BusError> {
        let ms = |d: Duration| d.as_millis().min(i32::MAX as u128) as i32;
        let hwm = self.hwm.min(i32::MAX as usize) as i32;
        let err = |e| BusError::Zmq {
            endpoint: endpoint.to_string(),
            source: e,
        };
        socket
            .set_maxmsgsize(self.max_message_bytes.min(i64::MAX as u64) as i64)
            .map_err(err)?;
        socket.set_sndhwm(hwm).map_err(err)?;
        socket.set_rcvhwm(hwm).map_err(err)?;
        socket.set_heartbeat_ivl(ms(HEARTBEAT_IVL)).map_err(err)?;
        socket
            .set_heartbeat_timeout(ms(HEARTBEAT_TIMEOUT))
            .map_err(err)?;
        socket.set_heartbeat_ttl(ms(HEARTBEAT_TTL)).map_err(err)?;
        socket.set_reconnect_ivl(ms(RECONNECT_IVL)).map_err(err)?;
        socket
            .set_reconnect_ivl_max(ms(RECONNECT_IVL_MAX))
            .map_err(err)?;
        socket.set_linger(ms(LINGER)).map_err(err)?;
        socket.set_handshake_ivl(ms(HANDSHAKE_IVL)).map_err(err)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// CURVE keys

/// A CURVE public or secret key (32 bytes; Z85 text is 40 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CurveKey([u8; 32]);

impl CurveKey {
    /// Decodes a 40-character Z85 key.
    pub fn from_z85(text: &str) -> Result<CurveKey, KeyError> {
        const Z85: &[u8] =
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
        if text.len() != 40 {
            return Err(KeyError::Length(text.len()));
        }
        // libzmq's decoder silently accepts characters outside the alphabet.
        if !text.bytes().all(|b| Z85.contains(&b)) {
            return Err(KeyError::NotZ85);
        }
        let bytes = zmq::z85_decode(text).map_err(|_| KeyError::NotZ85)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::NotZ85)?;
        let key = CurveKey(key);
        // A 5-character group above 2^32 - 1 wraps: only text that encodes back is a key.
        if key.to_z85() != text {
            return Err(KeyError::NotZ85);
        }
        Ok(key)
    }

    /// The 40-character Z85 text.
    pub fn to_z85(&self) -> String {
        // Z85 encodes any multiple of 4 bytes; 32 always is.
        zmq::z85_encode(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Public keys are printed; secret keys never are.
impl std::fmt::Debug for CurveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CurveKey(<32 bytes>)")
    }
}

/// Why a key text is not a CURVE key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a CURVE key is 40 Z85 characters, this is {0}")]
    Length(usize),
    #[error("not Z85 text")]
    NotZ85,
    #[error("libzmq cannot derive a public key (built without CURVE?)")]
    Derive,
}

/// A node's own CURVE key pair.
#[derive(Clone)]
pub struct KeyPair {
    pub public: CurveKey,
    pub secret: CurveKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair(public {})", self.public.to_z85())
    }
}

// zmq-sys 0.11 declares `zmq_curve_public` but does not re-export it; libzmq 4.3 has it.
unsafe extern "C" {
    fn zmq_curve_public(
        z85_public_key: *mut std::ffi::c_char,
        z85_secret_key: *const std::ffi::c_char,
    ) -> std::ffi::c_int;
}

impl KeyPair {
    /// A fresh random key pair (`zoomate bus keygen`, and ephemeral client keys).
    pub fn generate() -> Result<KeyPair, KeyError> {
        let pair = zmq::CurveKeyPair::new().map_err(|_| KeyError::Derive)?;
        Ok(KeyPair {
            public: CurveKey(pair.public_key),
            secret: CurveKey(pair.secret_key),
        })
    }

    /// The pair whose secret key is `secret` (the public key is derived by libzmq).
    pub fn from_secret(secret: CurveKey) -> Result<KeyPair, KeyError> {
        let secret_z85 = std::ffi::CString::new(secret.to_z85()).map_err(|_| KeyError::NotZ85)?;
        let mut public = [0u8; 41];
        // SAFETY: libzmq writes 40 characters plus NUL into `public` (41 bytes) and reads the
        // NUL-terminated 40-character secret.
        let rc = unsafe { zmq_curve_public(public.as_mut_ptr().cast(), secret_z85.as_ptr()) };
        if rc != 0 {
            return Err(KeyError::Derive);
        }
        let text = std::str::from_utf8(&public[..40]).map_err(|_| KeyError::Derive)?;
        Ok(KeyPair {
            public: CurveKey::from_z85(text)?,
            secret,
        })
    }
}

/// Whether this libzmq can do CURVE (Debian's is built with libsodium).
pub fn has_curve() -> bool {
    zmq::has("curve").unwrap_or(false)
}

/// Makes `socket` a CURVE server (it must be bound afterwards) whose clients are checked by
/// the ZAP handler against `accepted`.
pub fn make_curve_server(
    socket: &zmq::Socket,
    endpoint: &str,
    pair: &KeyPair,
    accepted: &HashSet<CurveKey>,
) -> Result<(), BusError> {
    ensure_zap_handler()?;
    let domain = register_zap_domain(accepted.clone());
    socket.set_zap_domain(&domain).map_err(zmq_err(endpoint))?;
    socket.set_curve_server(true).map_err(zmq_err(endpoint))?;
    socket
        .set_curve_secretkey(pair.secret.as_bytes())
        .map_err(zmq_err(endpoint))?;
    Ok(())
}

/// Makes `socket` a CURVE client of the server holding `server_key` (it must connect
/// afterwards). Without a key pair of its own it uses a fresh ephemeral one.
pub fn make_curve_client(
    socket: &zmq::Socket,
    endpoint: &str,
    server_key: &CurveKey,
    own: Option<&KeyPair>,
) -> Result<(), BusError> {
    let pair = match own {
        Some(p) => p.clone(),
        None => KeyPair::generate().map_err(|e| BusError::Key {
            what: "ephemeral client key".into(),
            source: e,
        })?,
    };
    socket
        .set_curve_serverkey(server_key.as_bytes())
        .map_err(zmq_err(endpoint))?;
    socket
        .set_curve_publickey(pair.public.as_bytes())
        .map_err(zmq_err(endpoint))?;
    socket
        .set_curve_secretkey(pair.secret.as_bytes())
        .map_err(zmq_err(endpoint))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ZAP (RFC 27): libzmq asks inproc://zeromq.zap.01 whether a CURVE client may connect.

const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Accepted client keys per ZAP domain (one domain per CURVE server socket). Few entries, read
/// once per handshake: a mutex is fine.
fn zap_domains() -> &'static Mutex<HashMap<String, HashSet<CurveKey>>> {
    static DOMAINS: OnceLock<Mutex<HashMap<String, HashSet<CurveKey>>>> = OnceLock::new();
    DOMAINS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Registers a new ZAP domain accepting `keys`; returns its name.
fn register_zap_domain(keys: HashSet<CurveKey>) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let name = format!("zoomate-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    if let Ok(mut d) = zap_domains().lock() {
        d.insert(name.clone(), keys);
    }
    name
}

/// Handshakes refused by the ZAP handler (whole process), for logs and tests.
pub fn zap_refusals() -> u64 {
    ZAP_REFUSALS.load(Ordering::Relaxed)
}
static ZAP_REFUSALS: AtomicU64 = AtomicU64::new(0);

/// Binds the ZAP handler once per process and starts its thread. It must be bound before a
/// CURVE server socket sees its first handshake (libzmq refuses CURVE clients without one).
fn ensure_zap_handler() -> Result<(), BusError> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = STARTED.get_or_init(|| {
        let socket = context().socket(zmq::REP).map_err(|e| e.to_string())?;
        socket.set_linger(0).map_err(|e| e.to_string())?;
        socket.bind(ZAP_ENDPOINT).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("zoomate-bus-zap".into())
            .spawn(move || zap_loop(socket))
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    r.clone().map_err(BusError::Zap)
}

/// Answers ZAP requests for the life of the process (the context is never terminated).
fn zap_loop(socket: zmq::Socket) {
    loop {
        let frames = match socket.recv_multipart(0) {
            Ok(f) => f,
            Err(zmq::Error::ETERM) => return,
            Err(_) => continue,
        };
        let reply = zap_decide(&frames);
        let n = reply.len();
        for (i, f) in reply.into_iter().enumerate() {
            let flags = if i + 1 < n { zmq::SNDMORE } else { 0 };
            if socket.send(f, flags).is_err() {
                break;
            }
        }
    }
}

/// The ZAP reply for one request: `[version, request id, status, text, user id, metadata]`.
/// The user id is the client's Z85 public key, visible to the receiver as the message
/// property `User-Id`.
fn zap_decide(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let request_id = frames.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, text: &str, user: String| {
        vec![
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            text.as_bytes().to_vec(),
            user.into_bytes(),
            Vec::new(),
        ]
    };
    // [version, request id, domain, address, routing id, mechanism, credentials…]
    if frames.len() < 6 || frames[0] != b"1.0" {
        return reply("500", "malformed ZAP request", String::new());
    }
    let domain = String::from_utf8_lossy(&frames[2]).into_owned();
    let address = String::from_utf8_lossy(&frames[3]).into_owned();
    if frames[5] != b"CURVE" {
        // Only CURVE servers set a domain; anything else on one is refused.
        ZAP_REFUSALS.fetch_add(1, Ordering::Relaxed);
        return reply("400", "CURVE required", String::new());
    }
    let key = frames
        .get(6)
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .map(CurveKey);
    let allowed = match (key, zap_domains().lock()) {
        (Some(k), Ok(d)) => d.get(&domain).is_some_and(|set| set.contains(&k)),
        _ => false,
    };
    match key {
        Some(k) if allowed => reply("200", "OK", k.to_z85()),
        _ => {
            let n = ZAP_REFUSALS.fetch_add(1, Ordering::Relaxed) + 1;
            // Rate-limited: the 1st, 2nd, 4th, 8th… refusal is logged.
            if n.is_power_of_two() {
                tracing::warn!(
                    %address,
                    client_key = %key.map(|k| k.to_z85()).unwrap_or_default(),
                    refused = n,
                    "bus peer refused: its CURVE key is not in the accepted keys"
                );
            }
            reply("400", "key not accepted", String::new())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Socket monitors

// `zmq::Socket::monitor` takes a `&str`; only a NULL endpoint stops a monitor.
unsafe extern "C" {
    fn zmq_socket_monitor(
        socket: *mut std::ffi::c_void,
        endpoint: *const std::ffi::c_char,
        events: std::ffi::c_int,
    ) -> std::ffi::c_int;
}

/// A socket together with the monitor of its connection events (an inproc PAIR it writes to).
///
/// libzmq writes each event with a *blocking* send, from its one I/O thread. If the reading
/// PAIR is closed while the monitored socket can still report (a peer hanging up while, or
/// just after, the socket closes: `zmq_close` finishes asynchronously), that send waits for a
/// reader that never comes and every socket of the process-wide context stops moving. So the
/// two live and die together here, and dropping stops the monitor (synchronously, under
/// libzmq's monitor lock) before either socket is closed.
pub struct MonitoredSocket {
    socket: zmq::Socket,
    events: zmq::Socket,
}

/// The connection events the bus cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// ZMTP (and CURVE) handshake done: the peer is talking to us.
    Up,
    /// The connection closed (peer gone, heartbeat timeout, oversized frame…).
    Down,
    /// The handshake failed (bad CURVE key, protocol error).
    HandshakeFailed,
    Other,
}

impl MonitoredSocket {
    /// Starts monitoring `socket` (before it binds or connects, so no event is missed) and
    /// takes ownership of it.
    pub fn attach(socket: zmq::Socket, endpoint: &str) -> Result<MonitoredSocket, BusError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let addr = format!(
            "inproc://zoomate-monitor-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let events = zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
            | zmq::SocketEvent::DISCONNECTED.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw();
        let reader = context().socket(zmq::PAIR).map_err(zmq_err(endpoint))?;
        reader.set_linger(0).map_err(zmq_err(endpoint))?;
        socket
            .monitor(&addr, events as i32)
            .map_err(zmq_err(endpoint))?;
        // From here on `Drop` stops the monitor, also when the connect below fails.
        let monitored = MonitoredSocket {
            socket,
            events: reader,
        };
        monitored.events.connect(&addr).map_err(zmq_err(endpoint))?;
        Ok(monitored)
    }

    /// The monitored socket.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The PAIR the events arrive on (to poll it).
    pub fn events(&self) -> &zmq::Socket {
        &self.events
    }

    /// The next pending event, without waiting.
    pub fn try_next(&self) -> Option<ConnectionEvent> {
        // Two frames: [u16 event, u32 value] then the peer address.
        let first = self.events.recv_bytes(zmq::DONTWAIT).ok()?;
        while self.events.get_rcvmore().unwrap_or(false) {
            if self.events.recv_bytes(zmq::DONTWAIT).is_err() {
                break;
            }
        }
        let raw = u16::from_ne_bytes([*first.first()?, *first.get(1)?]);
        let ev = zmq::SocketEvent::from_raw(raw);
        Some(match ev {
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED => ConnectionEvent::Up,
            zmq::SocketEvent::DISCONNECTED => ConnectionEvent::Down,
            zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => ConnectionEvent::HandshakeFailed,
            _ => ConnectionEvent::Other,
        })
    }
}

impl Drop for MonitoredSocket {
    fn drop(&mut self) {
        if let Err(e) = stop_monitor(&mut self.socket) {
            tracing::error!(error = %e, "cannot stop a bus socket monitor");
        }
        // Only now the fields close, the monitored socket first.
    }
}

/// Stops `socket`'s monitor: libzmq closes its end of the PAIR and sends no further events.
fn stop_monitor(socket: &mut zmq::Socket) -> std::io::Result<()> {
    // SAFETY: `socket` is open for the whole call (we hold it mutably); a NULL endpoint is
    // how `zmq_socket_monitor` is told to stop, under the lock its I/O thread takes to send
    // an event.
    let rc = unsafe { zmq_socket_monitor(socket.as_mut_ptr(), std::ptr::null(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        // libzmq reports through errno.
        Err(std::io::Error::last_os_error())
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoint classification (for refusing plaintext across the network)

/// Whether a `tcp://` endpoint stays on this host (`ipc://` and `inproc://` always do).
/// Wildcards (`*`, `0.0.0.0`), interface names and other host names count as network.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    if endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://") {
        return true;
    }
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    // A connect endpoint may name a source address: "tcp://src;dst".
    let target = rest.rsplit(';').next().unwrap_or(rest);
    let host = match target.rsplit_once(':') {
        Some((h, _port)) => h,
        None => target,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Shares a thread's "I have finished" with async waiters.
#[derive(Clone, Default)]
pub struct Finished(Arc<tokio_util::sync::CancellationToken>);

impl Finished {
    pub fn set(&self) {
        self.0.cancel();
    }
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }
    pub fn is_set(&self) -> bool {
        self.0.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_text_is_named() {
        let pair = KeyPair::generate().expect("curve");
        let text = pair.public.to_z85();
        assert_eq!(text.len(), 40);
        assert_eq!(CurveKey::from_z85(&text), Ok(pair.public));
        assert_eq!(CurveKey::from_z85("short"), Err(KeyError::Length(5)));
        assert_eq!(CurveKey::from_z85(&"\"".repeat(40)), Err(KeyError::NotZ85));
        let derived = KeyPair::from_secret(pair.secret).expect("derive");
        assert_eq!(derived.public, pair.public);
    }

    #[test]
    fn loopback_endpoints_are_local_and_others_are_not() {
        for e in [
            "tcp://127.0.0.1:5556",
            "tcp://127.0.0.2:1",
            "tcp://localhost:5556",
            "tcp://[::1]:5556",
            "ipc:///tmp/bus",
            "tcp://127.0.0.1:0",
        ] {
            assert!(is_local_endpoint(e), "{e}");
        }
        for e in [
            "tcp://0.0.0.0:5556",
            "tcp://*:5556",
            "tcp://10.0.0.5:5556",
            "tcp://eth0:5556",
            "tcp://bus.example.net:5556",
            "tcp://127.0.0.1:9;10.0.0.5:5556",
        ] {
            assert!(!is_local_endpoint(e), "{e}");
        }
    }

    #[test]
    fn zap_accepts_only_listed_keys_in_their_domain() {
        let ok = KeyPair::generate().expect("curve").public;
        let other = KeyPair::generate().expect("curve").public;
        let domain = register_zap_domain([ok].into_iter().collect());
        let req = |d: &str, k: &CurveKey| {
            vec![
                b"1.0".to_vec(),
                b"7".to_vec(),
                d.as_bytes().to_vec(),
                b"127.0.0.1".to_vec(),
                Vec::new(),
                b"CURVE".to_vec(),
                k.as_bytes().to_vec(),
            ]
        };
        let r = zap_decide(&req(&domain, &ok));
        assert_eq!((r[1].as_slice(), r[2].as_slice()), (&b"7"[..], &b"200"[..]));
        assert_eq!(r[4], ok.to_z85().into_bytes());
        assert_eq!(zap_decide(&req(&domain, &other))[2], b"400");
        assert_eq!(zap_decide(&req("zoomate-unknown", &ok))[2], b"400");
        assert_eq!(zap_decide(&[b"1.0".to_vec()])[2], b"500");
    }

    /// A connected, monitored SUB of a fresh PUB on 127.0.0.1.
    fn monitored_sub_of(publisher: &zmq::Socket) -> MonitoredSocket {
        let endpoint = publisher.get_last_endpoint().unwrap().unwrap();
        let sub = context().socket(zmq::SUB).unwrap();
        let monitored = MonitoredSocket::attach(sub, &endpoint).unwrap();
        monitored.socket().connect(&endpoint).unwrap();
        wait_for(&monitored, ConnectionEvent::Up);
        monitored
    }

    fn wait_for(monitored: &MonitoredSocket, wanted: ConnectionEvent) {
        assert!(event_arrives(monitored, wanted), "no {wanted:?} event");
    }

    /// Whether `wanted` arrives within 5 s.
    fn event_arrives(monitored: &MonitoredSocket, wanted: ConnectionEvent) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let mut items = [monitored.events().as_poll_item(zmq::POLLIN)];
            zmq::poll(&mut items, 50).unwrap();
            if std::iter::from_fn(|| monitored.try_next()).any(|e| e == wanted) {
                return true;
            }
        }
        false
    }

    /// Whether a new PUB/SUB pair of the context still delivers (libzmq's I/O thread moves).
    fn context_delivers() -> bool {
        let publisher = context().socket(zmq::PUB).unwrap();
        publisher.bind("tcp://127.0.0.1:0").unwrap();
        let sub = context().socket(zmq::SUB).unwrap();
        sub.set_subscribe(b"").unwrap();
        sub.set_rcvtimeo(50).unwrap();
        sub.connect(&publisher.get_last_endpoint().unwrap().unwrap())
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            publisher.send("ping", 0).unwrap();
            if sub.recv_bytes(0).is_ok() {
                return true;
            }
        }
        false
    }

    /// The process-wide stall `MonitoredSocket` exists to prevent: a peer hangs up on a socket
    /// that is still open after its monitor's reader closed. With the monitor stopped first
    /// (what `Drop` does), libzmq's I/O thread has nowhere to block.
    #[test]
    fn a_stopped_monitor_lets_its_reader_go_before_the_socket() {
        let publisher = context().socket(zmq::PUB).unwrap();
        publisher.bind("tcp://127.0.0.1:0").unwrap();
        let mut subject = monitored_sub_of(&publisher);
        // A second subscriber, monitored to the end, tells when the hang-up was processed.
        let witness = monitored_sub_of(&publisher);

        stop_monitor(&mut subject.socket).unwrap();
        let unconnected = context().socket(zmq::PAIR).unwrap();
        drop(std::mem::replace(&mut subject.events, unconnected));
        // Not synchronisation: a pause for libzmq's reaper to close the reader's pipe before
        // the hang-up, so that without the stop above this test fails every time, not at
        // random.
        std::thread::sleep(Duration::from_millis(100));
        drop(publisher);
        let moving = event_arrives(&witness, ConnectionEvent::Down) && context_delivers();
        if !moving {
            // Dropping them would wait on libzmq's monitor lock, which its stuck I/O thread
            // holds: leak them so the test fails instead of hanging.
            std::mem::forget(subject);
            std::mem::forget(witness);
            panic!("the context stalled");
        }
        drop(subject);
        drop(witness);
        assert!(context_delivers(), "the context stalled after the drops");
    }
}
