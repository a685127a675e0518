#!/usr/bin/env node
// Real-browser WHIP publisher (RFC 9725): headless Chromium with a fake camera and microphone
// (`--use-fake-device-for-media-stream`) publishes to a WHIP endpoint for N seconds and prints
// ONE JSON object on stdout: the HTTP status and Location of the POST, the offer it sent, the
// connection state and the outbound RTP figures from getStats().
//
//   node scripts/browser/whip.mjs --url http://HOST:PORT/whip/NAME [--token KEY] --seconds N
//                                 [--codec h264|vp8] [--delete] [--trickle]
//
// --trickle: the offer goes out before ICE gathering (no candidates in it); the candidates follow
// in PATCH requests (application/trickle-ice-sdpfrag, RFC 9725 §4.3.1) with the answer's ETag
// in If-Match; their statuses are in "patchStatuses".
//
// Exit codes: 0 = ran and printed the JSON (whether or not it published: the caller decides);
//             1 = bad usage or harness error; 2 = Chromium could not be launched.
//
// The page is the WHIP server's own origin (its /healthz), so the POST is same-origin and the
// page is a secure context (loopback), which getUserMedia needs. CHROMIUM_PATH overrides the
// browser (default /usr/bin/chromium). HARNESS_DEBUG=1 mirrors page console messages to stderr.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function usage(msg) {
  if (msg) process.stderr.write(`whip.mjs: ${msg}\n`);
  process.stderr.write('usage: whip.mjs --url URL [--token KEY] --seconds N [--codec h264|vp8] [--delete]\n');
  process.exit(1);
}

const opts = { url: null, token: null, seconds: null, codec: 'h264', del: false, trickle: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const next = () => (i + 1 < argv.length ? argv[++i] : usage(`${argv[i]} needs a value`));
  switch (argv[i]) {
    case '--url': opts.url = next(); break;
    case '--token': opts.token = next(); break;
    case '--seconds': opts.seconds = Number(next()); break;
    case '--codec': opts.codec = next(); break;
    case '--delete': opts.del = true; break;
    case '--trickle': opts.trickle = true; break;
    default: usage(`unknown argument ${argv[i]}`);
  }
}
if (!opts.url || !(opts.seconds >= 0)) usage('--url and --seconds are required');

const { chromium } = require('playwright-core');
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
let browser;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--no-default-browser-check',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      // Host candidates with real addresses (not mDNS names the server could not resolve).
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
} catch (e) {
  process.stderr.write(`whip.mjs: cannot launch Chromium at ${executablePath}: ${e.message}\n`);
  process.exit(2);
}

let result;
try {
  const page = await browser.newPage();
  if (process.env.HARNESS_DEBUG) page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  await page.goto(new URL('/healthz', opts.url).href);
  result = await page.evaluate(async ({ url, token, seconds, codec, del, trickle }) => {
    const out = { status: null, location: null, offer: null, error: null, connectionState: null, samples: [], patchStatuses: [] };
    const media = await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 360, frameRate: 30 },
      audio: true,
    });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const track of media.getTracks()) {
      const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
      if (track.kind === 'video' && tr.setCodecPreferences) {
        const caps = RTCRtpSender.getCapabilities('video').codecs;
        const wanted = caps.filter((c) => c.mimeType.toLowerCase() === `video/${codec}`);
        if (wanted.length) tr.setCodecPreferences(wanted.concat(caps.filter((c) => !wanted.includes(c))));
      }
    }
    // Trickle: candidates wait here until the session exists, then go out by PATCH, in order.
    const pending = [];
    let gatheringDone = false;
    let session = null;
    let patching = Promise.resolve();
    const flush = () => {
      if (!session || (!pending.length && !gatheringDone)) return;
      const cands = pending.splice(0);
      const end = gatheringDone;
      gatheringDone = false;
      const sdp = pc.localDescription.sdp;
      let frag = `a=ice-ufrag:${/a=ice-ufrag:(\S+)/.exec(sdp)[1]}\r\na=ice-pwd:${/a=ice-pwd:(\S+)/.exec(sdp)[1]}\r\n`;
      for (const mid of [...new Set(cands.map((c) => c.sdpMid))]) {
        frag += `m=audio 9 RTP/AVP 0\r\na=mid:${mid}\r\n`;
        for (const c of cands.filter((x) => x.sdpMid === mid)) frag += `a=${c.candidate}\r\n`;
      }
      if (end) frag += 'a=end-of-candidates\r\n';
      const h = { 'Content-Type': 'application/trickle-ice-sdpfrag' };
      if (session.etag) h['If-Match'] = session.etag;
      if (token) h.Authorization = `Bearer ${token}`;
      patching = patching.then(() => fetch(session.url, { method: 'PATCH', headers: h, body: frag })
        .then((r) => out.patchStatuses.push(r.status), (e) => out.patchStatuses.push(String(e))));
    };
    if (trickle) {
      pc.addEventListener('icecandidate', (e) => {
        if (e.candidate && e.candidate.candidate) pending.push(e.candidate); else if (!e.candidate) gatheringDone = true;
        flush();
      });
    }
    await pc.setLocalDescription(await pc.createOffer());
    // Non-trickle: the offer carries every candidate (bounded wait).
    if (!trickle) await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, 3000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
    out.offer = pc.localDescription.sdp;
    const headers = { 'Content-Type': 'application/sdp' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const t0 = performance.now();
    const res = await fetch(url, { method: 'POST', headers, body: out.offer });
    out.status = res.status;
    out.answerMs = Math.round(performance.now() - t0);
    out.location = res.headers.get('Location');
    const body = await res.text();
    if (res.status !== 201) {
      out.error = body;
      pc.close();
      return out;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    if (trickle && out.location) {
      session = { url: new URL(out.location, url).href, etag: res.headers.get('ETag') };
      flush();
    }
    const start = performance.now();
    while (performance.now() - start < seconds * 1000) {
      await new Promise((r) => setTimeout(r, 1000));
      const stats = await pc.getStats();
      const sample = { t: Math.round(performance.now() - start), connectionState: pc.connectionState };
      stats.forEach((s) => {
        if (s.type === 'outbound-rtp') {
          sample[s.kind] = { packetsSent: s.packetsSent, bytesSent: s.bytesSent, framesEncoded: s.framesEncoded };
          const c = s.codecId && stats.get(s.codecId);
          if (c) sample[s.kind].codec = c.mimeType;
        }
      });
      out.samples.push(sample);
    }
    out.connectionState = pc.connectionState;
    await patching;
    if (del && out.location) {
      const d = await fetch(new URL(out.location, url).href, { method: 'DELETE', headers });
      out.deleteStatus = d.status;
    }
    pc.close();
    return out;
  }, opts);
} catch (e) {
  result = { error: `harness: ${e.message}` };
}
await browser.close();
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(0);
