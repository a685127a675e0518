#!/usr/bin/env node
// Real-browser WHEP player: headless Chromium sends a receive-only offer to a WHEP endpoint,
// plays what comes back for N seconds, and prints ONE JSON object on stdout: the POST's status
// and Location, and getStats() samples of the inbound video (frames received and decoded,
// jitter-buffer delay per frame, the receiver's share of latency).
//
//   node scripts/browser/whep.mjs --url http://HOST:PORT/whep/NAME --seconds N [--delete] [--viewers K]
//
// --viewers K opens K more peer connections in the same page (load for CPU-per-viewer figures);
// the samples describe the first one; "extraViewers" lists the others' POST statuses.
//
// Exit codes: 0 = ran and printed the JSON; 1 = bad usage; 2 = Chromium could not be launched.
// The page is the server's own origin (/healthz), so the POST is same-origin.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const opts = { url: null, seconds: null, del: false, viewers: 1 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--url') opts.url = argv[++i];
  else if (argv[i] === '--seconds') opts.seconds = Number(argv[++i]);
  else if (argv[i] === '--delete') opts.del = true;
  else if (argv[i] === '--viewers') opts.viewers = Number(argv[++i]);
  else { process.stderr.write(`whep.mjs: unknown argument ${argv[i]}\n`); process.exit(1); }
}
if (!opts.url || !(opts.seconds >= 0)) { process.stderr.write('usage: whep.mjs --url URL --seconds N [--delete]\n'); process.exit(1); }

const { chromium } = require('playwright-core');
let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--no-default-browser-check',
      '--autoplay-policy=no-user-gesture-required', '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
} catch (e) {
  process.stderr.write(`whep.mjs: cannot launch Chromium: ${e.message}\n`);
  process.exit(2);
}
let result;
try {
  const page = await browser.newPage();
  await page.goto(new URL('/healthz', opts.url).href);
  result = await page.evaluate(async ({ url, seconds, del, viewers }) => {
    const out = { status: null, location: null, error: null, samples: [], extraViewers: [] };
    const extra = [];
    for (let i = 1; i < viewers; i++) {
      const p = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      p.addTransceiver('video', { direction: 'recvonly' });
      await p.setLocalDescription(await p.createOffer());
      await new Promise((r) => setTimeout(r, 300));
      const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: p.localDescription.sdp });
      out.extraViewers.push(res.status);
      if (res.status === 201) { await p.setRemoteDescription({ type: 'answer', sdp: await res.text() }); extra.push(p); }
    }
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true; video.autoplay = true; document.body.appendChild(video);
    pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, 3000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
    const t0 = performance.now();
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    out.status = res.status; out.answerMs = Math.round(performance.now() - t0);
    out.location = res.headers.get('Location');
    const body = await res.text();
    if (res.status !== 201) { out.error = body; pc.close(); return out; }
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    const start = performance.now();
    while (performance.now() - start < seconds * 1000) {
      await new Promise((r) => setTimeout(r, 1000));
      const stats = await pc.getStats();
      const sample = { t: Math.round(performance.now() - start), connectionState: pc.connectionState };
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          sample.framesReceived = s.framesReceived; sample.framesDecoded = s.framesDecoded;
          sample.frameWidth = s.frameWidth; sample.frameHeight = s.frameHeight;
          // Receiver-side latency: time frames wait in the jitter buffer, plus decode.
          if (s.jitterBufferEmittedCount) sample.jitterBufferMs = Math.round(1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount);
          // Playout time on the sender's clock (RTCP sender reports; NTP epoch 1900) vs now: the
          // sender-to-playout delay, valid when sender and browser share a clock (one host).
          if (s.estimatedPlayoutTimestamp) sample.playoutDelayMs = Math.round(Date.now() + 2208988800000 - s.estimatedPlayoutTimestamp);
          if (s.framesDecoded) sample.decodeMs = Math.round(1000 * s.totalDecodeTime / s.framesDecoded * 10) / 10;
        }
        if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) sample.rttMs = Math.round(1000 * s.currentRoundTripTime);
      });
      out.samples.push(sample);
    }
    if (del && out.location) out.deleteStatus = (await fetch(new URL(out.location, url).href, { method: 'DELETE' })).status;
    pc.close();
    extra.forEach((p) => p.close());
    return out;
  }, opts);
} catch (e) {
  result = { error: `harness: ${e.message}` };
}
await browser.close();
process.stdout.write(JSON.stringify(result) + '\n');
