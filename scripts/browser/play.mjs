#!/usr/bin/env node
// Real-browser player harness: plays one HLS (hls.js) or DASH (dash.js) URL in headless Chromium
// for N seconds and prints ONE JSON object on stdout describing what happened.
//
//   node scripts/browser/play.mjs --player hls|dash --url URL --seconds N
//                                 [--low-latency] [--sample-ms 500]
//
// Exit codes: 0 = ran and printed the JSON (whether or not it played: the caller decides);
//             1 = bad usage or internal harness error; 2 = Chromium could not be launched;
//             3 = the overall timeout guard (seconds + 30) fired (a JSON object is still printed).
//
// Environment: CHROMIUM_PATH overrides the browser (default /usr/bin/chromium, Debian's package;
// playwright-core never downloads a browser of its own). HARNESS_DEBUG=1 mirrors page console
// messages and failed requests to stderr. HARNESS_SCREENSHOT=FILE.png saves the page at the end.
//
// The page is served by a tiny HTTP server on 127.0.0.1:<random port>, so the media URL is
// cross-origin to it: the server under test must send CORS headers. Responses from the media
// origin that lack Access-Control-Allow-Origin, and requests Chromium blocked for CORS, are
// reported in "cors" and as {"type":"cors"} entries in "errors" (in "fatal" too when nothing played).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// arguments

function usage(msg) {
  if (msg) process.stderr.write(`play.mjs: ${msg}\n`);
  process.stderr.write(
    'usage: node scripts/browser/play.mjs --player hls|dash --url URL --seconds N ' +
      '[--low-latency] [--sample-ms 500]\n',
  );
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { player: null, url: null, seconds: null, lowLatency: false, sampleMs: 500 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const key = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) usage(`${key} needs a value`);
      return argv[++i];
    };
    switch (key) {
      case '--player': opts.player = value(); break;
      case '--url': opts.url = value(); break;
      case '--seconds': opts.seconds = Number(value()); break;
      case '--sample-ms': opts.sampleMs = Number(value()); break;
      case '--low-latency': opts.lowLatency = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (opts.player !== 'hls' && opts.player !== 'dash') usage('--player must be hls or dash');
  if (!opts.url) usage('--url is required');
  try { new URL(opts.url); } catch { usage(`--url is not an absolute URL: ${opts.url}`); }
  if (!Number.isFinite(opts.seconds) || opts.seconds <= 0) usage('--seconds must be a positive number');
  if (!Number.isFinite(opts.sampleMs) || opts.sampleMs < 50) usage('--sample-ms must be >= 50');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------------------------------------
// player libraries from node_modules

function pkgDir(name) {
  // dashjs's "exports" hides package.json from require.resolve: look in node_modules directly
  const local = path.join(HERE, 'node_modules', name);
  if (fs.existsSync(path.join(local, 'package.json'))) return local;
  return path.dirname(require.resolve(`${name}/package.json`));
}

function firstExisting(dir, candidates) {
  for (const c of candidates) {
    const p = path.join(dir, c);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

function libraryFor(player) {
  if (player === 'hls') {
    const dir = pkgDir('hls.js');
    return {
      file: firstExisting(dir, ['dist/hls.min.js', 'dist/hls.js']),
      version: JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version,
      name: 'hls.js',
    };
  }
  const dir = pkgDir('dashjs'); // the real dash.js is published as "dashjs" ("dash.js" on npm is unrelated)
  return {
    file: firstExisting(dir, [
      'dist/modern/umd/dash.all.min.js',
      'dist/dash.all.min.js',
      'dist/legacy/umd/dash.all.min.js',
    ]),
    version: JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version,
    name: 'dash.js',
  };
}

let lib;
try {
  lib = libraryFor(opts.player);
} catch (e) {
  process.stderr.write(
    `play.mjs: player library missing (${e.message}); run ./scripts/setup-browser\n`,
  );
  process.exit(1);
}
if (!lib.file) {
  process.stderr.write(`play.mjs: no ${lib.name} build found in node_modules\n`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// the page

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>zoomate player harness</title></head>
<body style="margin:0;background:#000">
<video id="v" muted autoplay playsinline style="width:640px;height:360px"></video>
<script src="/lib.js"></script>
<script src="/harness.js"></script>
</body></html>`;

// Runs in the page. Reports everything through window.__emit (a Playwright binding) as it
// happens, so nothing is lost if the page or the renderer dies before the end.
function pageMain(cfg) {
  const emit = (kind, data) => {
    try { window.__emit(kind, data); } catch (_) { /* binding gone: page closing */ }
  };
  const video = document.getElementById('v');
  const state = { levelLoads: 0, llParts: false, canBlockReload: false, lastPartCount: 0 };

  // Seconds of media played continuously: the sum of forward currentTime steps between
  // timeupdates, leaving out seeks and jumps (the seek to the live edge, a gap skip). Not
  // video.played: with dash.js its range starts before the jump to the live edge.
  let advanced = 0;
  let lastT = null;
  let lastWall = 0;
  const track = () => {
    const t = video.currentTime;
    const now = performance.now();
    if (lastT !== null && !video.seeking) {
      const d = t - lastT;
      const maxStep = ((now - lastWall) / 1000) * 2 + 0.5; // allows catch-up rates up to 2x
      if (d > 0 && d <= maxStep) advanced += d;
    }
    lastT = t;
    lastWall = now;
  };
  video.addEventListener('timeupdate', track);
  video.addEventListener('seeking', () => { lastT = null; });
  video.addEventListener('seeked', () => { lastT = video.currentTime; lastWall = performance.now(); });
  const bufferedEnd = () => {
    const b = video.buffered;
    return b.length ? b.end(b.length - 1) : null;
  };

  const mse = window.MediaSource || window.ManagedMediaSource;
  const codecs = {};
  for (const [k, t] of Object.entries({
    h264: 'video/mp4; codecs="avc1.42E01E"',
    h264High: 'video/mp4; codecs="avc1.640028"',
    aac: 'audio/mp4; codecs="mp4a.40.2"',
    hevc: 'video/mp4; codecs="hvc1.1.6.L93.B0"',
    mp2t: 'video/mp2t; codecs="avc1.42E01E,mp4a.40.2"',
  })) {
    codecs[k] = !!(mse && mse.isTypeSupported(t));
  }
  emit('codecs', codecs);

  video.addEventListener('error', () => {
    const e = video.error;
    emit('videoError', { code: e && e.code, message: e && e.message });
  });
  for (const ev of ['playing', 'waiting', 'seeking', 'stalled', 'ended']) {
    video.addEventListener(ev, () => emit('videoEvent', { event: ev, t: video.currentTime }));
  }

  let sampleLatency = () => ({});

  if (cfg.player === 'hls') {
    const Hls = window.Hls;
    if (!Hls || !Hls.isSupported()) {
      emit('fatal', { type: 'harness', details: 'hls.js not supported in this browser (no MSE?)', fatal: true });
      return;
    }
    const hls = new Hls({ lowLatencyMode: !!cfg.lowLatency });
    window.__hls = hls;
    hls.on(Hls.Events.ERROR, (_ev, data) => {
      const r = data.response || {};
      emit('hlsError', {
        type: data.type,
        details: data.details,
        fatal: !!data.fatal,
        url: (data.frag && data.frag.url) || (data.context && data.context.url) || data.url || undefined,
        code: r.code,
        reason: data.reason || (data.error && String(data.error.message || data.error)) || undefined,
      });
    });
    hls.on(Hls.Events.MANIFEST_PARSED, (_ev, data) => {
      emit('info', {
        event: 'manifestParsed',
        levels: (data.levels || []).map((l) => ({ bitrate: l.bitrate, width: l.width, height: l.height, codecs: (l.attrs && l.attrs.CODECS) || [l.videoCodec, l.audioCodec].filter(Boolean).join(',') })),
      });
    });
    // A trace of what hls.js asked for and where it placed it (sn, part, start on its
    // timeline): a player that loops over parts it already has shows here, not in the buffer.
    const t0 = performance.now();
    const at = () => Math.round(performance.now() - t0);
    hls.on(Hls.Events.FRAG_LOADING, (_ev, data) => {
      const f = data.frag || {};
      const part = data.part;
      emit('trace', { at: at(), ev: 'loading', type: f.type, sn: f.sn, part: part ? part.index : null, start: part ? part.start : f.start });
    });
    hls.on(Hls.Events.FRAG_BUFFERED, (_ev, data) => {
      const f = data.frag || {};
      const part = data.part;
      emit('trace', { at: at(), ev: 'buffered', type: f.type, sn: f.sn, part: part ? part.index : null, start: part ? part.start : f.start });
    });
    for (const [name, ev] of [['levelUpdated', Hls.Events.LEVEL_UPDATED], ['audioTrackUpdated', Hls.Events.AUDIO_TRACK_LOADED]]) {
      hls.on(ev, (_e, data) => {
        const d = data.details || {};
        const frags = d.fragments || [];
        const first = frags[0] || {};
        const last = frags[frags.length - 1] || {};
        emit('trace', { at: at(), ev: name, level: name === 'levelUpdated' ? data.level : data.id, startSN: d.startSN, endSN: d.endSN, firstStart: first.start, lastStart: last.start, skipped: d.skippedSegments, parts: (d.partList || []).length, deltaFailed: !!d.deltaUpdateFailed });
      });
    }
    hls.on(Hls.Events.LEVEL_LOADED, (_ev, data) => {
      const d = data.details || {};
      state.levelLoads++;
      state.lastPartCount = (d.partList && d.partList.length) || 0;
      state.llParts = state.lastPartCount > 0;
      state.canBlockReload = !!d.canBlockReload;
      emit('levelLoaded', {
        levelLoads: state.levelLoads,
        parts: state.lastPartCount,
        canBlockReload: state.canBlockReload,
        live: !!d.live,
        targetduration: d.targetduration,
        partTarget: d.partTarget,
      });
    });
    sampleLatency = () => {
      const out = {};
      if (hls.playingDate) out.latencyMs = Date.now() - hls.playingDate.getTime();
      if (Number.isFinite(hls.latency)) out.hlsLatencyS = hls.latency;
      return out;
    };
    hls.attachMedia(video);
    hls.loadSource(cfg.url);
  } else {
    const dashjs = window.dashjs;
    if (!dashjs) {
      emit('fatal', { type: 'harness', details: 'dash.js failed to load', fatal: true });
      return;
    }
    const player = dashjs.MediaPlayer().create();
    window.__dash = player;
    player.on(dashjs.MediaPlayer.events.ERROR, (e) => {
      const err = e.error || e;
      emit('dashError', {
        code: err && err.code,
        message: err && (err.message || String(err)),
      });
    });
    if (dashjs.MediaPlayer.events.PLAYBACK_ERROR) {
      player.on(dashjs.MediaPlayer.events.PLAYBACK_ERROR, (e) => {
        emit('videoError', { code: e.error && e.error.code, message: (e.error && e.error.message) || 'playback error' });
      });
    }
    player.initialize(video, cfg.url, true);
    sampleLatency = () => {
      const out = {};
      let l = NaN;
      try { l = player.getCurrentLiveLatency(); } catch (_) { /* not ready */ }
      if (Number.isFinite(l) && l > 0 && video.currentTime > 0) {
        out.dashLatencyS = l;
        out.latencyMs = Math.round(l * 1000);
      }
      return out;
    };
  }

  const startWall = Date.now();
  setInterval(() => {
    track();
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    let lat = {};
    try { lat = sampleLatency(); } catch (_) { /* ignore */ }
    emit('sample', {
      wallMs: Date.now() - startWall,
      currentTime: video.currentTime,
      bufferedEnd: bufferedEnd(),
      paused: video.paused,
      readyState: video.readyState,
      playbackRate: video.playbackRate,
      advanced,
      width: video.videoWidth,
      height: video.videoHeight,
      frames: q ? q.totalVideoFrames : null,
      droppedFrames: q ? q.droppedVideoFrames : null,
      ...lat,
    });
  }, cfg.sampleMs);
}

// ---------------------------------------------------------------------------------------------
// local server for the page and the player library

function startServer() {
  const libBody = fs.readFileSync(lib.file);
  const cfg = { player: opts.player, url: opts.url, lowLatency: opts.lowLatency, sampleMs: opts.sampleMs };
  const harnessBody = `(${pageMain.toString()})(${JSON.stringify(cfg)});\n`;
  const server = http.createServer((req, res) => {
    const p = (req.url || '/').split('?')[0];
    const send = (type, body) => {
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (p === '/' || p === '/index.html') return send('text/html; charset=utf-8', PAGE);
    if (p === '/lib.js') return send('text/javascript; charset=utf-8', libBody);
    if (p === '/harness.js') return send('text/javascript; charset=utf-8', harnessBody);
    if (p === '/favicon.ico') { res.writeHead(204); return res.end(); }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---------------------------------------------------------------------------------------------
// results

const result = {
  player: opts.player,
  url: opts.url,
  seconds: opts.seconds,
  lowLatency: opts.lowLatency,
  library: null,
  browser: null,
  played: false,
  currentTimeAdvanced: 0,
  currentTimeFirst: null,
  currentTimeLast: null,
  fatal: [],
  errors: [],
  consoleErrors: [],
  latencyMs: [],
  latencyP50Ms: null,
  latencyP90Ms: null,
  llParts: false,
  canBlockReload: false,
  levelLoads: 0,
  startupMs: null,
  stalls: 0,
  // The longest span after playback began in which currentTime did not move (from the
  // samples, so resolution --sample-ms) or a 'waiting' lasted until 'playing', milliseconds.
  longestStallMs: 0,
  video: null,
  codecs: null,
  cors: { blocked: [], missingHeader: [] },
  httpErrors: [],
  // Media requests in order (the first REQUEST_LIMIT): path and query, status (null while pending or
  // failed), start after the page began loading and duration, ms. A player that never starts
  // is diagnosed from these: what it asked for, and what it waited on.
  requests: [],
  // hls.js only: fragment and part loads and bufferings, and playlist updates, in order (the
  // first REQUEST_LIMIT), with where hls.js placed each on its timeline.
  trace: [],
  samples: [],
};
const LIMIT = 200; // cap each list so a broken stream can't print megabytes
const push = (arr, v) => { if (arr.length < LIMIT) arr.push(v); };
const REQUEST_LIMIT = 4000; // an LL-HLS player makes ~10 a second
const SAMPLE_LIMIT = 5000; // samples and latency values (40 minutes at 500 ms)
let firstStarted = null; // first sample with currentTime > 0
let lastSample = null;
let pageLoadedAt = Date.now(); // reset when the harness page starts loading
let lastProgress = null; // { wallMs, currentTime } of the last sample that moved forward
let waitingSince = null; // Date.now() of a 'waiting' after startup, until 'playing'
const noteStall = (ms) => { if (ms > result.longestStallMs) result.longestStallMs = Math.round(ms); };

// dash.js raises its 'error' event for recoverable trouble too (16 time sync, 17/27 one
// fragment or segment download); these codes end playback: manifest loading/parsing (10, 11,
// 25, 31, 32, 34), xlink (12), capabilities (23, 24, 35), initialization segment (28).
const DASH_FATAL_CODES = new Set([10, 11, 12, 23, 24, 25, 28, 31, 32, 34, 35]);

function onPageEvent(kind, data) {
  switch (kind) {
    case 'sample':
      if (result.samples.length < SAMPLE_LIMIT) result.samples.push(data);
      if (data.currentTime > 0 && firstStarted === null) firstStarted = data;
      if (firstStarted !== null) {
        if (lastProgress === null || data.currentTime > lastProgress.currentTime + 0.001) {
          if (lastProgress !== null) noteStall(data.wallMs - lastProgress.wallMs - opts.sampleMs);
          lastProgress = { wallMs: data.wallMs, currentTime: data.currentTime };
        }
      }
      lastSample = data;
      if (Number.isFinite(data.latencyMs) && result.latencyMs.length < SAMPLE_LIMIT) result.latencyMs.push(data.latencyMs);
      break;
    case 'trace':
      if (result.trace.length < REQUEST_LIMIT) result.trace.push(data);
      break;
    case 'hlsError':
      push(result.errors, data);
      if (data.fatal) push(result.fatal, data);
      break;
    case 'dashError': {
      const fatal = DASH_FATAL_CODES.has(data.code);
      const e = { type: 'dash', details: data.message, code: data.code, fatal };
      push(result.errors, e);
      if (fatal) push(result.fatal, e);
      break;
    }
    case 'videoError': {
      const e = { type: 'media', details: data.message || `MediaError code ${data.code}`, code: data.code, fatal: true };
      push(result.errors, e);
      push(result.fatal, e);
      break;
    }
    case 'fatal':
      push(result.errors, data);
      push(result.fatal, data);
      break;
    case 'levelLoaded':
      result.levelLoads = data.levelLoads;
      result.llParts = result.llParts || data.parts > 0;
      result.canBlockReload = data.canBlockReload;
      result.lastLevel = data;
      break;
    case 'videoEvent':
      if (data.event === 'playing' && result.startupMs === null) {
        result.startupMs = Date.now() - pageLoadedAt;
        // Callers that act on the stream mid-play (kill an origin) wait for this line.
        process.stderr.write('play.mjs: playing\n');
      }
      if (data.event === 'playing' && waitingSince !== null) {
        noteStall(Date.now() - waitingSince);
        waitingSince = null;
      }
      // a 'waiting' before the first 'playing' is startup, not a stall
      if (data.event === 'waiting' && result.startupMs !== null) {
        result.stalls++;
        if (waitingSince === null) waitingSince = Date.now();
      }
      break;
    case 'codecs':
      result.codecs = data;
      break;
    case 'info':
      if (data.event === 'manifestParsed') result.levels = data.levels;
      break;
    default:
      break;
  }
}

function percentile(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx];
}

function finish() {
  if (firstStarted) result.currentTimeFirst = firstStarted.currentTime;
  if (lastSample && lastSample.currentTime > 0) result.currentTimeLast = lastSample.currentTime;
  // Seconds of media played continuously (see track() in the page).
  const adv = lastSample && Number.isFinite(lastSample.advanced) ? lastSample.advanced : 0;
  result.currentTimeAdvanced = Math.round(adv * 1000) / 1000;
  const need = Math.min(opts.seconds * 0.5, opts.seconds - 5);
  result.played = result.currentTimeAdvanced > 0 && result.currentTimeAdvanced >= need;
  if (lastSample) {
    result.video = {
      width: lastSample.width,
      height: lastSample.height,
      frames: lastSample.frames,
      droppedFrames: lastSample.droppedFrames,
    };
  }
  if (waitingSince !== null) noteStall(Date.now() - waitingSince);
  if (lastProgress !== null && lastSample) noteStall(lastSample.wallMs - lastProgress.wallMs);
  result.latencyP50Ms = percentile(result.latencyMs, 50);
  result.latencyP90Ms = percentile(result.latencyMs, 90);
  const corsProblem = result.cors.blocked.length || result.cors.missingHeader.length;
  if (corsProblem) {
    const urls = [...new Set([...result.cors.blocked.map((b) => b.url), ...result.cors.missingHeader])];
    const reason = result.cors.blocked.length
      ? result.cors.blocked[0].reason
      : 'response has no Access-Control-Allow-Origin header';
    const e = {
      type: 'cors',
      details: `CORS: ${urls.length} cross-origin media URL(s) blocked or without CORS headers, e.g. ${urls[0]}: ${reason}`,
      urls: urls.slice(0, 20),
      fatal: !result.played,
    };
    process.stderr.write(`play.mjs: ${e.details}\n`);
    result.errors.unshift(e);
    if (!result.played) result.fatal.unshift(e);
  }
}

let printed = false;
function printResult() {
  if (printed) return;
  printed = true;
  process.stdout.write(JSON.stringify(result) + '\n');
}

// ---------------------------------------------------------------------------------------------
// main

let browser = null;
let server = null;

async function cleanup() {
  const tasks = [];
  if (browser) {
    const b = browser;
    browser = null;
    tasks.push(b.close().catch(() => {}));
  }
  if (server) {
    const s = server;
    server = null;
    s.closeAllConnections?.();
    tasks.push(new Promise((r) => s.close(() => r())));
  }
  // never hang on cleanup
  await Promise.race([Promise.all(tasks), new Promise((r) => setTimeout(r, 5000).unref())]);
}

const guardMs = (opts.seconds + 30) * 1000;
const guard = setTimeout(async () => {
  process.stderr.write(`play.mjs: overall timeout (${opts.seconds + 30}s) reached; giving up\n`);
  const e = { type: 'harness', details: `overall timeout ${opts.seconds + 30}s`, fatal: true };
  result.errors.push(e);
  result.fatal.push(e);
  try { finish(); } catch (_) { /* keep going */ }
  printResult();
  await cleanup();
  process.exit(3);
}, guardMs);
guard.unref();

process.on('unhandledRejection', (err) => {
  push(result.errors, { type: 'harness', details: `unhandled rejection: ${err && err.message ? err.message : String(err)}`, fatal: false });
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await cleanup();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    process.stderr.write(`play.mjs: playwright-core not installed (${e.message}); run ./scripts/setup-browser\n`);
    return 1;
  }
  result.library = { name: lib.name, version: lib.version, file: path.relative(HERE, lib.file) };

  server = await startServer();
  const pageOrigin = `http://127.0.0.1:${server.address().port}`;
  const mediaOrigin = new URL(opts.url).origin;

  const mediaHost = new URL(opts.url).hostname;
  const hostRules = ['MAP * ~NOTFOUND', 'EXCLUDE localhost', 'EXCLUDE 127.0.0.1', 'EXCLUDE [::1]']
    .concat(['localhost', '127.0.0.1', '[::1]'].includes(mediaHost) ? [] : [`EXCLUDE ${mediaHost}`])
    .join(', ');
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  try {
    browser = await chromium.launch({
      executablePath,
      headless: true,
      timeout: 30000,
      args: [
        '--no-sandbox',
        '--autoplay-policy=no-user-gesture-required',
        '--mute-audio',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--no-first-run',
        '--no-default-browser-check',
        // Resolve only loopback and the media URL's host: nothing leaves the machine (dash.js's
        // default time source, an https server on the internet, fails at once instead).
        `--host-resolver-rules=${hostRules}`,
      ],
    });
  } catch (e) {
    process.stderr.write(`play.mjs: cannot launch Chromium at ${executablePath}: ${e.message}\n` +
      'play.mjs: install it with ./scripts/setup-browser (Debian package "chromium")\n');
    await cleanup();
    return 2;
  }
  result.browser = browser.version();

  const context = await browser.newContext({ viewport: { width: 800, height: 450 } });
  const page = await context.newPage();
  const debug = process.env.HARNESS_DEBUG === '1';

  page.on('console', (msg) => {
    const text = msg.text();
    if (debug) process.stderr.write(`[page ${msg.type()}] ${text}\n`);
    if (msg.type() !== 'error') return;
    push(result.consoleErrors, text);
    const m = /Access to \S+ at '([^']+)' from origin '[^']+' has been blocked by CORS policy: ?(.*)/.exec(text);
    if (m) push(result.cors.blocked, { url: m[1], reason: m[2] });
  });
  page.on('pageerror', (err) => {
    push(result.consoleErrors, `pageerror: ${err && err.message ? err.message : String(err)}`);
  });
  page.on('crash', () => {
    const e = { type: 'harness', details: 'renderer crashed', fatal: true };
    push(result.errors, e);
    push(result.fatal, e);
  });
  const inFlight = new Map(); // request -> its entry in result.requests
  const mediaPath = (u) => { try { const x = new URL(u); return x.origin === mediaOrigin ? x.pathname + x.search : null; } catch { return null; } };
  page.on('request', (req) => {
    const p = mediaPath(req.url());
    if (p === null || req.method() === 'OPTIONS' || result.requests.length >= REQUEST_LIMIT) return;
    const entry = { path: p, status: null, atMs: Date.now() - pageLoadedAt, ms: null };
    result.requests.push(entry);
    inFlight.set(req, entry);
  });
  const settle = (req, status, failure) => {
    const entry = inFlight.get(req);
    if (!entry) return;
    inFlight.delete(req);
    entry.status = status;
    entry.ms = Date.now() - pageLoadedAt - entry.atMs;
    if (failure) entry.failure = failure;
  };
  page.on('requestfinished', async (req) => {
    let status = null;
    try { const r = await req.response(); status = r ? r.status() : null; } catch { /* gone */ }
    settle(req, status, null);
  });
  page.on('response', (resp) => {
    let origin;
    try { origin = new URL(resp.url()).origin; } catch { return; }
    if (origin !== mediaOrigin || origin === pageOrigin) return;
    const status = resp.status();
    if (status >= 400) push(result.httpErrors, { url: resp.url(), status });
    if (resp.request().method() === 'OPTIONS') return;
    const h = resp.headers();
    if (!h['access-control-allow-origin'] && !result.cors.missingHeader.includes(resp.url())) {
      push(result.cors.missingHeader, resp.url());
    }
  });
  page.on('requestfailed', (req) => {
    const f = req.failure();
    settle(req, null, (f && f.errorText) || 'failed');
    if (debug) process.stderr.write(`[requestfailed] ${req.url()} ${f && f.errorText}\n`);
  });

  await page.exposeFunction('__emit', (kind, data) => {
    try { onPageEvent(kind, data); } catch (_) { /* never throw into the page */ }
  });

  pageLoadedAt = Date.now();
  try {
    await page.goto(`${pageOrigin}/`, { waitUntil: 'load', timeout: 15000 });
  } catch (e) {
    const err = { type: 'harness', details: `harness page did not load: ${e.message}`, fatal: true };
    result.errors.push(err);
    result.fatal.push(err);
  }

  await sleep(opts.seconds * 1000);

  if (process.env.HARNESS_SCREENSHOT) {
    await page.screenshot({ path: process.env.HARNESS_SCREENSHOT, timeout: 5000 }).catch((e) => {
      process.stderr.write(`play.mjs: screenshot failed: ${e.message}\n`);
    });
  }

  finish();
  printResult();
  await cleanup();
  return 0;
}

main().then(
  (code) => {
    clearTimeout(guard);
    // stdout may be a pipe: let it drain before exiting
    process.stdout.write('', () => process.exit(code));
  },
  async (err) => {
    process.stderr.write(`play.mjs: internal error: ${err && err.stack ? err.stack : String(err)}\n`);
    await cleanup();
    process.exit(1);
  },
);
