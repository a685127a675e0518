@0xd5a1c3e0b7f24a91;
# zoomate segment bus protocol.
#
# Every ZeroMQ message is two frames: [topic, payload]. The topic is UTF-8 and lets subscribers
# filter by prefix without decoding: `seg/{stream}/{rendition}`, `part/{stream}/{rendition}`,
# `pl/{stream}/{rendition}`, `stream/{stream}`, `hb/{origin}`. The payload is one Cap'n Proto message (unpacked, standard
# segment framing) whose root is `Envelope`.
#
# Versioning: `version` is the protocol version (currently 1). A subscriber drops, counts and
# logs an envelope whose version it does not know. Within a version, fields are only ever added
# (Cap'n Proto keeps old readers working); a breaking change bumps the version.

struct Envelope {
  version @0 :UInt16;           # protocol version, currently 1
  sentAtMs @1 :Int64;           # publisher's wall clock when sent, ms since the Unix epoch

  union {
    segmentReady @2 :SegmentReady;
    playlistUpdated @3 :PlaylistUpdated;
    streamStarted @4 :StreamStarted;
    streamEnded @5 :StreamEnded;
    originHeartbeat @6 :OriginHeartbeat;
    partReady @7 :PartReady;    # added in version 1 (readers that predate it drop it, counted)
  }
}

# An LL-HLS part (a CMAF chunk of the segment being written) and the media playlist listing it
# are durable on the origin: fetching `uri` from that origin now succeeds. Sent within a part
# duration of its first frame; edges wake the blocking requests held for it.
struct PartReady {
  stream @0 :Text;
  rendition @1 :Text;
  mediaSequence @2 :UInt64;     # the parent segment's media sequence number
  partIndex @3 :UInt32;         # 0-based index of the part within its segment
  durationMs @4 :UInt64;        # part duration, milliseconds
  independent @5 :Bool;         # starts with an IDR frame (EXT-X-PART INDEPENDENT=YES)
  uri @6 :Text;                 # URL path on the origin, e.g. "/live/demo/720p/42.3.m4s"
  byteSize @7 :UInt64;          # part size in bytes
  originId @8 :Text;            # the origin that wrote it
}

# A segment and the media playlist that lists it are durable on the origin: fetching `uri` from
# that origin now succeeds.
struct SegmentReady {
  stream @0 :Text;              # stream name, e.g. "demo"
  rendition @1 :Text;           # rendition name, e.g. "720p"
  mediaSequence @2 :UInt64;     # EXT-X-MEDIA-SEQUENCE number of this segment
  durationMs @3 :UInt64;        # segment duration, milliseconds
  uri @4 :Text;                 # URL path on the origin, e.g. "/live/demo/720p/42.ts"
  byteSize @5 :UInt64;          # segment size in bytes
  programDateTimeMs @6 :Int64;  # wall-clock time of the first frame, ms since the Unix epoch
  discontinuity @7 :Bool;       # first segment of a new publisher session (EXT-X-DISCONTINUITY)
  originId @8 :Text;            # the origin that wrote it (see OriginHeartbeat.originId)
}

# A media playlist was rewritten; its newest segment is `mediaSequence`.
struct PlaylistUpdated {
  stream @0 :Text;
  rendition @1 :Text;
  mediaSequence @2 :UInt64;     # media sequence of the newest listed segment
  uri @3 :Text;                 # URL path of the playlist, e.g. "/live/demo/720p/index.m3u8"
}

# One rendition of a stream's ladder.
struct Rendition {
  name @0 :Text;                # e.g. "720p"
  bandwidthBps @1 :UInt64;      # peak bandwidth, bits per second
  width @2 :UInt32;             # pixels
  height @3 :UInt32;            # pixels
  codecs @4 :Text;              # RFC 6381, e.g. "avc1.64001f,mp4a.40.2"
}

# A stream went live on an origin (its master playlist exists).
struct StreamStarted {
  stream @0 :Text;
  originId @1 :Text;
  renditions @2 :List(Rendition);
}

# A stream's session ended on an origin (publisher gone, source ended, or shutdown).
struct StreamEnded {
  stream @0 :Text;
  originId @1 :Text;
}

# Sent every `intervalMs`; a subscriber that misses ~3 in a row treats the origin as gone.
struct OriginHeartbeat {
  originId @0 :Text;            # unique per origin worker
  httpBaseUrl @1 :Text;         # how edges reach it, e.g. "http://10.0.0.5:8081"
  streams @2 :List(Text);       # live streams it serves now
  loadStreams @3 :UInt32;       # live pipelines running
  loadEncoderSpeed @4 :Float32; # encoder speed as a fraction of realtime (0 when idle)
  intervalMs @5 :UInt32;        # heartbeat interval, milliseconds
}
