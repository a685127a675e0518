//! A scripted RTMP peer for the real-binary tests, plain blocking I/O: TCP from a chosen source
//! address (127.0.0.2, … are loopback too, so per-address limits can be tested on one machine),
//! the handshake and `connect`/`publish` through `rml_rtmp`'s client session, raw chunks for
//! hostile input. And the memory figures of a process, from `/proc`.

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long a scripted peer waits for the server to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// `127.0.0.{n}`.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A TCP connection to `dst` from `src` (any port).
pub fn connect_from(src: IpAddr, dst: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(dst),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    socket
        .bind(&SocketAddr::new(src, 0).into())
        .expect("bind the source address");
    socket.connect(&dst.into()).expect("connect");
    socket.into()
}

/// Set Chunk Size to 2^31 − 1, then the header of a video message announcing 16 MiB − 1 on
/// chunk stream 6: what makes a parser without a limit buffer a whole 16 MiB message.
pub fn huge_message_header() -> Vec<u8> {
    let mut bytes = vec![
        0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
    ];
    bytes.extend_from_slice(&[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
    bytes
}

/// Writes up to `total` bytes in 64 KiB pieces until a write fails; returns what was written.
pub fn write_until_refused(sock: &mut TcpStream, total: usize) -> usize {
    let piece = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        let n = piece.len().min(total - sent);
        if sock.write_all(&piece[..n]).is_err() {
            break;
        }
        sent += n;
    }
    sent
}

/// Waits until the server closes `sock` (EOF or reset); `false` if it is still open after
/// `within`.
pub fn closed_by_server(sock: &mut TcpStream, within: Duration) -> bool {
    sock.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// An RTMP client on a blocking socket.
pub struct RtmpPeer {
    pub sock: TcpStream,
    session: ClientSession,
}

impl RtmpPeer {
    /// Connects from `src` and completes the handshake.
    pub fn handshake(src: IpAddr, dst: SocketAddr) -> std::io::Result<RtmpPeer> {
        let mut sock = connect_from(src, dst);
        sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        sock.write_all(&c0c1)?;
        let mut buf = vec![0u8; 8192];
        let leftover = loop {
            let n = sock.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            match handshake
                .process_bytes(&buf[..n])
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    sock.write_all(&response_bytes)?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    sock.write_all(&response_bytes)?;
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ClientSession::new(ClientSessionConfig::new())
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut peer = RtmpPeer { sock, session };
        peer.send_all(results)?;
        let more = peer
            .session
            .handle_input(&leftover)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        peer.send_all(more)?;
        Ok(peer)
    }

    fn send_all(&mut self, results: Vec<ClientSessionResult>) -> std::io::Result<()> {
        for r in results {
            if let ClientSessionResult::OutboundResponse(p) = r {
                self.sock.write_all(&p.bytes)?;
            }
        }
        Ok(())
    }

    /// Reads until an event matching `want` arrives: `false` if the server closed first.
    fn wait_for(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) -> bool {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match self.sock.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let Ok(results) = self.session.handle_input(&buf[..n]) else {
                return false;
            };
            let mut seen = false;
            for r in results {
                match r {
                    ClientSessionResult::OutboundResponse(p)
                        if self.sock.write_all(&p.bytes).is_err() =>
                    {
                        return false;
                    }
                    ClientSessionResult::RaisedEvent(e) => seen |= want(&e),
                    _ => {}
                }
            }
            if seen {
                return true;
            }
        }
    }

    /// `connect` to `app`; `true` if accepted.
    pub fn connect_app(&mut self, app: &str) -> bool {
        let Ok(r) = self.session.request_connection(app.to_string()) else {
            return false;
        };
        self.send_all(vec![r]).is_ok()
            && self.wait_for(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
    }

    /// `publish` `name` (may carry `?key=`); `true` if accepted, `false` if refused or closed.
    pub fn publish(&mut self, name: &str) -> bool {
        let Ok(r) = self
            .session
            .request_publishing(name.to_string(), PublishRequestType::Live)
        else {
            return false;
        };
        self.send_all(vec![r]).is_ok()
            && self.wait_for(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted))
    }

    /// Sends one video message.
    pub fn video(&mut self, body: Bytes, timestamp_ms: u32) -> std::io::Result<()> {
        let result = self
            .session
            .publish_video_data(body, RtmpTimestamp::new(timestamp_ms), false)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        self.send_all(vec![result])
    }
}

/// A `/proc/{pid}/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory now, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS") as f64 / 1024.0
}

/// Peak resident memory since the last [`reset_peak_rss`], in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmHWM") as f64 / 1024.0
}

/// Resets the process's peak RSS (`VmHWM`) to its RSS now (Linux `clear_refs` 5).
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}
