//! RTMP ingest against real publishers: ffmpeg and GStreamer `rtmp2sink` publish to an
//! `RtmpServer` on 127.0.0.1:0; a recording handler writes the FLV bytes it receives to a file
//! that ffprobe must read as H.264 + AAC. Hostile peers (random bytes, truncated handshakes,
//! stalls, parser-crashing and oversized messages) are real TCP connections, and the `rml_rtmp`
//! client session plays a well-behaved but scripted publisher where ffmpeg cannot (idle, play).

mod common;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use zoomate::config::RtmpConfig;
use zoomate::ingest::rtmp::{FlvReceiver, PublishHandler, RejectReason, RtmpMetrics, RtmpServer};

/// Generous bound for anything that should happen "soon" (never a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);

/// A finished stream as the handler saw it.
#[derive(Debug)]
struct Ended {
    stream: String,
    path: PathBuf,
    bytes: usize,
}

/// What the test handler does with a publish.
#[derive(Clone, Copy)]
enum Mode {
    /// Accept and record to a file.
    Record,
    /// Refuse with this reason.
    Refuse(&'static str),
    /// Accept and never read (a stuck pipeline).
    Hold,
}

/// Writes every accepted stream's FLV bytes to `{dir}/{stream}.flv`, reports the end.
struct Recorder {
    dir: PathBuf,
    calls: Mutex<Vec<String>>,
    mode: Mode,
    held: Mutex<Vec<FlvReceiver>>,
    ended: mpsc::UnboundedSender<Ended>,
}

impl PublishHandler for Recorder {
    fn on_publish(
        &self,
        stream: &str,
        mut media: FlvReceiver,
        _publisher: zoomate::ingest::rtmp::Publisher,
    ) -> Result<(), String> {
        self.calls.lock().unwrap().push(stream.to_string());
        match self.mode {
            Mode::Refuse(reason) => return Err(reason.to_string()),
            Mode::Hold => {
                self.held.lock().unwrap().push(media);
                return Ok(());
            }
            Mode::Record => {}
        }
        let path = self.dir.join(format!("{stream}.flv"));
        let ended = self.ended.clone();
        let stream = stream.to_string();
        tokio::spawn(async move {
            let mut file = tokio::fs::File::create(&path).await.expect("create flv");
            let mut bytes = 0;
            while let Some(chunk) = media.recv().await {
                bytes += chunk.bytes().len();
                file.write_all(chunk.bytes()).await.expect("write flv");
            }
            file.flush().await.expect("flush flv");
            let _ = ended.send(Ended {
                stream,
                path,
                bytes,
            });
        });
        Ok(())
    }
}

struct Harness {
    addr: std::net::SocketAddr,
    metrics: RtmpMetrics,
    shutdown: zoomate::Shutdown,
    server: tokio::task::JoinHandle<()>,
    recorder: Arc<Recorder>,
    ended: mpsc::UnboundedReceiver<Ended>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(edit: impl FnOnce(&mut RtmpConfig), mode: Mode) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = RtmpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..RtmpConfig::default()
        };
        edit(&mut config);
        let server = RtmpServer::bind(&config).await.expect("bind rtmp");
        let addr = server.local_addr();
        let metrics = server.metrics();
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let recorder = Arc::new(Recorder {
            dir: dir.path().to_path_buf(),
            calls: Mutex::default(),
            mode,
            held: Mutex::default(),
            ended: ended_tx,
        });
        let shutdown = zoomate::Shutdown::new();
        let server = tokio::spawn(server.run(recorder.clone(), shutdown.clone()));
        Harness {
            addr,
            metrics,
            shutdown,
            server,
            recorder,
            ended,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.addr)
    }

    fn calls(&self) -> Vec<String> {
        self.recorder.calls.lock().unwrap().clone()
    }

    async fn next_ended(&mut self) -> Ended {
        tokio::time::timeout(PATIENCE, self.ended.recv())
            .await
            .expect("a stream should end")
            .expect("recorder alive")
    }
}

/// ffmpeg publishes a 2 s 320x240 test pattern (H.264, GOP 30) with a tone (AAC).
async fn ffmpeg_publish(url: &str) -> std::process::Output {
    ffmpeg_publish_for(url, 2).await
}

async fn ffmpeg_publish_for(url: &str, seconds: u32) -> std::process::Output {
    common::require_tool("ffmpeg");
    let child = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine",
        ])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-f",
            "flv",
            url,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg");
    tokio::time::timeout(PATIENCE * 2, child.wait_with_output())
        .await
        .expect("ffmpeg should finish")
        .expect("ffmpeg output")
}

/// The recorded FLV is a real H.264 + AAC stream with every video frame of `seconds` at 30 fps.
fn assert_h264_aac(path: &Path, seconds: u64) {
    let data = std::fs::read(path).expect("read flv");
    assert_eq!(&data[..3], b"FLV", "FLV header first");
    let probe = common::ffprobe(path, &["-count_packets"]);
    let streams = probe["streams"].as_array().expect("streams");
    let find = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} stream in {probe}"))
    };
    let video = find("video");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["width"], 320);
    assert_eq!(video["height"], 240);
    let video_packets: u64 = video["nb_read_packets"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("packet count");
    assert_eq!(video_packets, seconds * 30, "every video frame arrives");
    let audio = find("audio");
    assert_eq!(audio["codec_name"], "aac");
    let audio_packets: u64 = audio["nb_read_packets"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("packet count");
    assert!(audio_packets > 0);
}

/// A log capture for the current thread (current-thread runtime: server tasks log here too).
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let w = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Reads until the server closes the connection (EOF or reset); panics if it never does.
async fn expect_closed_by_server(sock: &mut TcpStream, what: &str) {
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "server should close the {what} connection");
}

/// A scripted RTMP publisher/player on `rml_rtmp`'s client session.
struct Client {
    sock: TcpStream,
    session: ClientSession,
}

/// A TCP connection to `dst` from `src` (127.0.0.2, … are loopback too).
async fn tcp_from(src: [u8; 4], dst: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from((src, 0)))
        .expect("bind source address");
    socket.connect(dst).await.expect("connect")
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client::connect_from([127, 0, 0, 1], addr).await
    }

    async fn connect_from(src: [u8; 4], addr: std::net::SocketAddr) -> Client {
        let mut sock = tcp_from(src, addr).await;
        let mut handshake = Handshake::new(PeerType::Client);
        sock.write_all(&handshake.generate_outbound_p0_and_p1().unwrap())
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        let leftover = loop {
            let n = sock.read(&mut buf).await.expect("handshake read");
            assert!(n > 0, "server closed during handshake");
            match handshake.process_bytes(&buf[..n]).expect("handshake") {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    sock.write_all(&response_bytes).await.unwrap()
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    sock.write_all(&response_bytes).await.unwrap();
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut c = Client { sock, session };
        c.send_all(results).await;
        let more = c.session.handle_input(&leftover).unwrap();
        c.send_all(more).await;
        c
    }

    async fn send_all(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            if let ClientSessionResult::OutboundResponse(p) = r {
                self.sock
                    .write_all(&p.bytes)
                    .await
                    .expect("write to server");
            }
        }
    }

    /// Processes input until an event arrives; `None` if the server closed first.
    async fn next_event(&mut self) -> Option<ClientSessionEvent> {
        let mut buf = vec![0u8; 8192];
        let read = tokio::time::timeout(PATIENCE, async {
            loop {
                let n = match self.sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => n,
                };
                let results = self.session.handle_input(&buf[..n]).ok()?;
                let mut event = None;
                for r in results {
                    match r {
                        ClientSessionResult::OutboundResponse(p) => {
                            self.sock.write_all(&p.bytes).await.ok()?
                        }
                        ClientSessionResult::RaisedEvent(e) if event.is_none() => event = Some(e),
                        _ => {}
                    }
                }
                if event.is_some() {
                    return event;
                }
            }
        })
        .await;
        read.expect("server should answer or close")
    }

    /// Waits for an event matching `want`, skipping others; `false` if the server closed.
    async fn wait_for(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) -> bool {
        while let Some(e) = self.next_event().await {
            if want(&e) {
                return true;
            }
        }
        false
    }

    async fn connect_app(&mut self, app: &str) {
        let r = self.session.request_connection(app.to_string()).unwrap();
        self.send_all(vec![r]).await;
        assert!(
            self.wait_for(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
                .await,
            "connect accepted"
        );
    }

    /// `true` if the publish was accepted.
    async fn publish(&mut self, name: &str) -> bool {
        let r = self
            .session
            .request_publishing(name.to_string(), PublishRequestType::Live)
            .unwrap();
        self.send_all(vec![r]).await;
        self.wait_for(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted))
            .await
    }

    async fn video(&mut self, body: &[u8], timestamp_ms: u32) {
        let r = self
            .session
            .publish_video_data(
                Bytes::copy_from_slice(body),
                RtmpTimestamp::new(timestamp_ms),
                false,
            )
            .unwrap();
        self.send_all(vec![r]).await;
    }
}

/// A complete RTMP chunk (type 0 header, chunk stream 3, message stream 0) for a small message.
fn raw_message(type_id: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    assert!(len <= 128, "fits one default-size chunk");
    let mut out = vec![0x03, 0, 0, 0];
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn ffmpeg_publish_is_recorded_as_h264_and_aac_flv() {
    let mut h = Harness::start(|_| {}, Mode::Record).await;
    let out = ffmpeg_publish(&h.url("live/cam")).await;
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = h.next_ended().await;
    assert_eq!(ended.stream, "cam");
    assert_eq!(h.calls(), ["cam"]);
    assert_h264_aac(&ended.path, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn stream_keys_admit_the_right_key_only_and_are_never_logged() {
    let logs = LogBuf::default();
    let _guard = logs.install();
    let mut h = Harness::start(
        |c| drop(c.stream_keys.insert("cam".into(), "Sup3rSecret".into())),
        Mode::Record,
    )
    .await;

    for (path, what) in [
        ("live/cam?key=WrongSecret", "wrong key"),
        ("live/cam", "missing key"),
        ("live/other?key=Sup3rSecret", "unlisted stream"),
    ] {
        let out = ffmpeg_publish_for(&h.url(path), 1).await;
        assert!(!out.status.success(), "ffmpeg should fail with a {what}");
        assert!(
            h.calls().is_empty(),
            "handler must not be called for a {what}"
        );
    }

    let out = ffmpeg_publish(&h.url("live/cam?key=Sup3rSecret")).await;
    assert!(
        out.status.success(),
        "ffmpeg with the right key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = h.next_ended().await;
    assert_eq!(h.calls(), ["cam"], "the handler gets the bare stream name");
    assert_h264_aac(&ended.path, 2);

    let text = logs.text();
    assert!(text.contains("stream=cam"), "logs name the stream: {text}");
    assert!(
        text.contains("wrong stream key") && text.contains("missing stream key"),
        "rejections are logged: {text}"
    );
    assert!(
        !text.contains("Sup3rSecret") && !text.contains("WrongSecret"),
        "keys must never be logged: {text}"
    );
}

#[tokio::test]
async fn key_in_the_app_part_of_the_url_is_accepted() {
    let mut h = Harness::start(
        |c| drop(c.stream_keys.insert("cam".into(), "k1".into())),
        Mode::Record,
    )
    .await;
    let mut client = Client::connect(h.addr).await;
    client.connect_app("live?key=k1").await;
    assert!(
        client.publish("cam").await,
        "publish with the key on the app is accepted"
    );
    client.video(&[0x17, 0, 0, 0, 0], 0).await;
    drop(client);
    let ended = h.next_ended().await;
    assert_eq!(ended.stream, "cam");
}

#[tokio::test]
async fn handler_refusal_makes_ffmpeg_fail() {
    let h = Harness::start(|_| {}, Mode::Refuse("stream already live")).await;
    let out = ffmpeg_publish_for(&h.url("live/cam"), 1).await;
    assert!(
        !out.status.success(),
        "ffmpeg should fail when the handler refuses"
    );
    assert_eq!(h.calls(), ["cam"]);
}

#[tokio::test]
async fn invalid_names_wrong_app_and_play_are_refused() {
    let h = Harness::start(|_| {}, Mode::Record).await;
    // ffmpeg: a stream name that is not a safe path component.
    let out = ffmpeg_publish_for(&h.url("live/bad.name"), 1).await;
    assert!(!out.status.success(), "invalid stream name must be refused");
    // ffmpeg: an application we do not serve.
    let out = ffmpeg_publish_for(&h.url("other/cam"), 1).await;
    assert!(!out.status.success(), "unknown app must be refused");
    // A player: we only ingest.
    let mut client = Client::connect(h.addr).await;
    client.connect_app("live").await;
    let r = client.session.request_playback("cam".into()).unwrap();
    client.send_all(vec![r]).await;
    let played = client
        .wait_for(|e| matches!(e, ClientSessionEvent::PlaybackRequestAccepted))
        .await;
    assert!(!played, "play must be refused and the connection closed");
    assert!(h.calls().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn garbage_connections_do_not_disturb_a_good_publisher() {
    let logs = LogBuf::default();
    let _guard = logs.install();
    let mut h = Harness::start(|c| c.handshake_timeout_ms = 2_000, Mode::Record).await;
    let addr = h.addr;
    let good = tokio::spawn({
        let url = h.url("live/good");
        async move { ffmpeg_publish(&url).await }
    });

    // All hostile peers at once, while the good publisher runs.
    let random = async {
        // Random bytes instead of a handshake.
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let mut noise = vec![0u8; 4096];
        rand::fill(&mut noise[..]);
        noise[0] = 0x42; // not RTMP version 3
        let _ = sock.write_all(&noise).await;
        expect_closed_by_server(&mut sock, "random bytes").await;
    };
    let truncated = async {
        // A valid C0 and half a C1, then nothing.
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(&[3u8; 700]).await.unwrap();
        expect_closed_by_server(&mut sock, "truncated handshake").await;
    };
    let stalled = async {
        // Connects and says nothing.
        let mut sock = TcpStream::connect(addr).await.unwrap();
        expect_closed_by_server(&mut sock, "stalled").await;
    };
    let half_closed = async {
        // Half-closes mid-handshake.
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(&[3u8; 100]).await.unwrap();
        sock.shutdown().await.unwrap();
        expect_closed_by_server(&mut sock, "half-closed").await;
    };
    let crash = async {
        // A real handshake, then `@setDataFrame` with no value: crashes rml_rtmp's parser.
        let mut client = Client::connect(addr).await;
        let amf0_set_data_frame = [&[0x02, 0x00, 13][..], b"@setDataFrame"].concat();
        client
            .sock
            .write_all(&raw_message(18, &amf0_set_data_frame))
            .await
            .unwrap();
        expect_closed_by_server(&mut client.sock, "parser-crashing").await;
    };
    let junk = async {
        // A real handshake, then chunk garbage.
        let mut client = Client::connect(addr).await;
        let _ = client.sock.write_all(&[0xffu8; 8192]).await;
        expect_closed_by_server(&mut client.sock, "chunk garbage").await;
    };
    tokio::join!(random, truncated, stalled, half_closed, crash, junk);

    let out = good.await.unwrap();
    assert!(
        out.status.success(),
        "good publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = h.next_ended().await;
    assert_eq!(ended.stream, "good");
    assert_eq!(h.calls(), ["good"], "garbage never reaches the handler");
    assert_h264_aac(&ended.path, 2);

    // One warning per hostile connection, each in a span naming the peer.
    let text = logs.text();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(
        warnings.len(),
        6,
        "one warning per garbage connection: {text}"
    );
    assert!(
        warnings.iter().all(|l| l.contains("rtmp{peer=127.0.0.1:")),
        "{text}"
    );
    assert!(text.contains("crashed the RTMP parser"), "{text}");
}

#[tokio::test]
async fn oversized_message_closes_the_connection() {
    // Long timeouts: only the message/byte limits may close this connection.
    let h = Harness::start(
        |c| {
            c.max_message_bytes = 64 * 1024;
            c.handshake_timeout_ms = 120_000;
            c.idle_timeout_ms = 120_000;
        },
        Mode::Record,
    )
    .await;
    let mut client = Client::connect(h.addr).await;
    client.connect_app("live").await;
    assert!(client.publish("big").await);
    // SetChunkSize 0x7fffffff, then a video message announcing 16 MiB - 1, then an endless body.
    let mut bytes = vec![
        0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
    ];
    bytes.extend_from_slice(&[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
    let _ = client.sock.write_all(&bytes).await;
    let flood = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    let closed = tokio::time::timeout(PATIENCE, async {
        while sent < 16 * 1024 * 1024 {
            if client.sock.write_all(&flood).await.is_err() {
                return true;
            }
            sent += flood.len();
        }
        false
    })
    .await
    .expect("writes should fail or finish");
    if !closed {
        expect_closed_by_server(&mut client.sock, "oversized").await;
    }
    eprintln!("server closed after {sent} bytes were written");
    assert!(
        sent < 16 * 1024 * 1024,
        "server should cut the connection well before the whole message"
    );
}

#[tokio::test]
async fn idle_publisher_is_disconnected_and_its_stream_ends() {
    let mut h = Harness::start(|c| c.idle_timeout_ms = 500, Mode::Record).await;
    let mut client = Client::connect(h.addr).await;
    client.connect_app("live").await;
    assert!(client.publish("quiet").await);
    client.video(&[0x17, 0, 0, 0, 0, 0xaa], 0).await;
    // Then silence: the server must hang up and end the stream.
    expect_closed_by_server(&mut client.sock, "idle").await;
    let ended = h.next_ended().await;
    assert_eq!(ended.stream, "quiet");
    assert_eq!(ended.bytes, 13 + 11 + 6 + 4, "FLV header + one video tag");
    let data = std::fs::read(&ended.path).unwrap();
    assert_eq!(
        &data[13..],
        &[
            9, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0x17, 0, 0, 0, 0, 0xaa, 0, 0, 0, 17
        ]
    );
}

#[tokio::test]
async fn a_stuck_consumer_backpressures_until_the_idle_timeout() {
    // A queue of 4 KiB: the FLV header and two 2 KiB tags fit, the third waits.
    let h = Harness::start(
        |c| {
            c.idle_timeout_ms = 500;
            c.max_publisher_queue_bytes = 4096;
        },
        Mode::Hold,
    )
    .await;
    let mut client = Client::connect(h.addr).await;
    client.connect_app("live").await;
    assert!(client.publish("stuck").await);
    for i in 0..3u8 {
        let mut body = vec![0x27, 1, 0, 0, 0];
        body.resize(2000, i);
        client.video(&body, u32::from(i) * 33).await;
    }
    expect_closed_by_server(&mut client.sock, "backpressured").await;
    let mut rx = h
        .recorder
        .held
        .lock()
        .unwrap()
        .pop()
        .expect("handler was called");
    let header = rx.recv().await.expect("the FLV header");
    assert_eq!(&header.bytes()[..], &zoomate::ingest::flv::header()[..]);
    for _ in 0..2 {
        let tag = rx.recv().await.expect("a queued tag");
        assert_eq!(tag.bytes().len(), 11 + 2000 + 4);
    }
    assert!(
        rx.recv().await.is_none(),
        "the third tag never fit; the queue ends when the connection closes"
    );
    drop(header);
    assert_eq!(h.metrics.rejected(RejectReason::QueueStalled), 1);
    assert_eq!(h.metrics.ingest_bytes(), 0, "every queued byte came back");
}

#[tokio::test]
async fn publisher_limit_refuses_excess_publishes_but_not_their_handshakes() {
    let mut h = Harness::start(|c| c.max_connections = 1, Mode::Record).await;
    let mut first = Client::connect(h.addr).await;
    first.connect_app("live").await;
    assert!(first.publish("one").await);
    // A second connection gets its handshake and connect, but not a publish.
    let mut second = Client::connect(h.addr).await;
    second.connect_app("live").await;
    assert!(!second.publish("two").await, "one publisher at a time");
    assert_eq!(h.metrics.rejected(RejectReason::PublisherLimit), 1);
    // The first is still served.
    first.video(&[0x17, 0, 0, 0, 0], 0).await;
    drop(first);
    // Its slot frees once its connection task is over (the stream's end says so).
    assert_eq!(h.next_ended().await.stream, "one");
    let mut third = None;
    for _ in 0..50 {
        let mut c = Client::connect(h.addr).await;
        c.connect_app("live").await;
        if c.publish("three").await {
            third = Some(c);
            break;
        }
        // Retry interval of this bounded wait for the task to finish (the answer is the event).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        third.is_some(),
        "a publish is accepted once the first has gone"
    );
}

#[tokio::test]
async fn a_large_message_before_publish_is_refused_at_its_header() {
    let h = Harness::start(|c| c.handshake_timeout_ms = 120_000, Mode::Record).await;
    let mut client = Client::connect(h.addr).await;
    // No connect, no publish: Set Chunk Size to the maximum, then 16 MiB − 1 announced.
    let mut bytes = vec![
        0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
    ];
    bytes.extend_from_slice(&[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
    let _ = client.sock.write_all(&bytes).await;
    expect_closed_by_server(&mut client.sock, "announcing 16 MiB").await;
    assert_eq!(
        h.metrics
            .rejected(RejectReason::MessageTooLargeBeforePublish),
        1
    );
    assert_eq!(h.metrics.ingest_bytes(), 0);
    assert!(h.calls().is_empty());
}

#[tokio::test]
async fn the_ingest_budget_closes_the_connection_that_would_exceed_it() {
    // Two publishers whose pipelines are stuck: the first fills its queue; the second then
    // finds the shared budget full and is closed; the first is not.
    let h = Harness::start(
        |c| {
            c.max_message_bytes = 16 * 1024;
            c.max_publisher_queue_bytes = 64 * 1024;
            c.max_ingest_bytes = 96 * 1024;
            c.idle_timeout_ms = 120_000;
        },
        Mode::Hold,
    )
    .await;
    let mut tag = vec![0x27, 1, 0, 0, 0];
    tag.resize(8000, 0);
    let mut first = Client::connect(h.addr).await;
    first.connect_app("live").await;
    assert!(first.publish("a").await);
    for i in 0..10 {
        first.video(&tag, i * 33).await;
    }
    // Wait until the first queue is full (8 tags of about 8 KiB): the budget shows it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.metrics.ingest_bytes() < 60 * 1024 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first queue should fill"
        );
        // Poll interval of this bounded wait for the server to read what was sent.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut second = Client::connect(h.addr).await;
    second.connect_app("live").await;
    assert!(second.publish("b").await);
    for i in 0..10 {
        second.video(&tag, i * 33).await;
    }
    expect_closed_by_server(&mut second.sock, "over the ingest budget").await;
    assert_eq!(h.metrics.rejected(RejectReason::IngestBudget), 1);
    assert!(h.metrics.ingest_bytes() <= 96 * 1024);
    // The first is still connected: nothing to read, and no close.
    let mut probe = [0u8; 1];
    let still_open =
        tokio::time::timeout(Duration::from_millis(200), first.sock.read(&mut probe)).await;
    assert!(
        still_open.is_err(),
        "the first publisher was not disconnected"
    );
}

#[tokio::test]
async fn one_address_gets_its_share_of_connections() {
    let h = Harness::start(|c| c.max_connections_per_address = 2, Mode::Record).await;
    let _a = tcp_from([127, 0, 0, 2], h.addr).await;
    let _b = tcp_from([127, 0, 0, 2], h.addr).await;
    let mut third = tcp_from([127, 0, 0, 2], h.addr).await;
    expect_closed_by_server(&mut third, "third from one address").await;
    assert_eq!(h.metrics.rejected(RejectReason::AddressLimit), 1);
    // Another address is served.
    let mut other = Client::connect(h.addr).await;
    other.connect_app("live").await;
    assert!(other.publish("other").await);
}

#[tokio::test]
async fn stalled_handshakes_are_cut_for_newcomers_and_publishers_never_are() {
    let mut h = Harness::start(
        |c| {
            c.max_handshakes = 4;
            c.max_connections_per_address = 100;
        },
        Mode::Record,
    )
    .await;
    let mut early = Client::connect(h.addr).await;
    early.connect_app("live").await;
    assert!(early.publish("early").await);
    // Ten connections that send C0 and stall, from ten addresses.
    let mut stalled = Vec::new();
    for i in 0..10u8 {
        let mut s = tcp_from([127, 0, 0, 10 + i], h.addr).await;
        s.write_all(&[3]).await.unwrap();
        stalled.push(s);
    }
    // Every newcomer beyond the fourth cut the oldest: the first six are closed.
    for (i, s) in stalled.iter_mut().take(6).enumerate() {
        expect_closed_by_server(s, &format!("stalled handshake {i}")).await;
    }
    assert_eq!(h.metrics.rejected(RejectReason::HandshakeCut), 6);
    // A new publisher gets in (cutting one more), and the early one was never cut.
    let out = ffmpeg_publish(&h.url("live/late")).await;
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let late = h.next_ended().await;
    assert_eq!(late.stream, "late");
    assert_h264_aac(&late.path, 2);
    early.video(&[0x17, 0, 0, 0, 0, 0xaa], 0).await;
    drop(early);
    let early = h.next_ended().await;
    assert_eq!(early.stream, "early");
    assert_eq!(
        early.bytes,
        13 + 11 + 6 + 4,
        "the early publisher's tag arrived"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn key_guessing_is_throttled_per_address() {
    let logs = LogBuf::default();
    let _guard = logs.install();
    let h = Harness::start(
        |c| {
            c.stream_keys.insert("cam".into(), "Sup3rSecret".into());
            c.auth_failures_before_backoff = 3;
            c.auth_backoff_initial_ms = 60_000;
        },
        Mode::Record,
    )
    .await;
    // Ten wrong keys from 127.0.0.2: three are checked, then the address must wait.
    for i in 0..10 {
        let mut c = Client::connect_from([127, 0, 0, 2], h.addr).await;
        c.connect_app("live").await;
        assert!(!c.publish(&format!("cam?key=Guess{i}")).await);
    }
    assert_eq!(h.metrics.rejected(RejectReason::BadKey), 4);
    assert_eq!(h.metrics.rejected(RejectReason::Throttled), 6);
    // While it waits, even the right key is not checked from that address…
    let mut c = Client::connect_from([127, 0, 0, 2], h.addr).await;
    c.connect_app("live").await;
    assert!(!c.publish("cam?key=Sup3rSecret").await);
    assert_eq!(h.metrics.rejected(RejectReason::Throttled), 7);
    // … and other addresses are not affected.
    let mut good = Client::connect(h.addr).await;
    good.connect_app("live").await;
    assert!(good.publish("cam?key=Sup3rSecret").await);
    assert_eq!(h.calls(), ["cam"]);
    let text = logs.text();
    assert!(text.contains("limit=throttled"), "{text}");
    assert!(
        !text.contains("Sup3rSecret") && !text.contains("Guess"),
        "keys must never be logged: {text}"
    );
}

#[tokio::test]
async fn shutdown_closes_publishers_and_ends_their_streams() {
    let mut h = Harness::start(|_| {}, Mode::Record).await;
    let mut client = Client::connect(h.addr).await;
    client.connect_app("live").await;
    assert!(client.publish("live1").await);
    client.video(&[0x17, 0, 0, 0, 0], 0).await;
    // Wait until the video tag has been handled (the handler was called on publish).
    assert_eq!(h.calls(), ["live1"]);
    h.shutdown.cancel();
    tokio::time::timeout(PATIENCE, &mut h.server)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    let ended = h.next_ended().await;
    assert_eq!(ended.stream, "live1");
    expect_closed_by_server(&mut client.sock, "shut down").await;
}

#[tokio::test]
async fn gstreamer_rtmp2sink_publish_with_key_is_recorded() {
    common::require_tool("gst-launch-1.0");
    let mut h = Harness::start(
        |c| drop(c.stream_keys.insert("gst".into(), "g5t".into())),
        Mode::Record,
    )
    .await;
    let location = format!("location={}", h.url("live/gst?key=g5t"));
    let pipeline = [
        "videotestsrc",
        "num-buffers=60",
        "!",
        "video/x-raw,format=I420,width=320,height=240,framerate=30/1",
        "!",
        "x264enc",
        "tune=zerolatency",
        "key-int-max=30",
        "!",
        "h264parse",
        "!",
        "flvmux",
        "name=m",
        "streamable=true",
        "!",
        "rtmp2sink",
        &location,
        "audiotestsrc",
        "num-buffers=94",
        "!",
        "audio/x-raw,rate=48000",
        "!",
        "avenc_aac",
        "!",
        "aacparse",
        "!",
        "m.",
    ];
    let child = tokio::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gst-launch-1.0");
    let out = tokio::time::timeout(PATIENCE * 2, child.wait_with_output())
        .await
        .expect("gst-launch should finish")
        .unwrap();
    assert!(
        out.status.success(),
        "gst-launch failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = h.next_ended().await;
    assert_eq!(ended.stream, "gst");
    assert_h264_aac(&ended.path, 2);
}
