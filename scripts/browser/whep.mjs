#!/usr/bin/env node
// Real-browser WHEP player: headless Chromium sends a receive-only offer to a WHEP endpoint,
// plays what comes back for N seconds, and prints ONE JSON object on stdout: the POST's status
// and Location, and getStats() samples of the inbound video (frames received and decoded,
// jitter-buffer delay per frame, the receiver's share of latency).
//
//   node scripts/browser/whep.mjs --url http://HOST:PORT/whep/NAME --seconds N [--delete] [--viewers K] [--trickle]
//
// --trickle: the offer goes out before ICE gathering (no candidates in it); the candidates follow
// in PATCH requests (application/trickle-ice-sdpfrag) with the answer's ETag as If-Match; the
// JSON lists each PATCH's status ("patchStatuses").
//
// --viewers K opens K more peer connections in the same page (load for CPU-per-viewer figures);
// the samples describe the first one; "extraViewers" lists the others' POST statuses.
//
// Exit codes: 0 = ran and printed the JSON; 1 = bad usage; 2 = Chromium could not be launched.
// The page is the server's own origin (/healthz), so the POST is same-origin.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const opts = { url: null, seconds: null, del: false, viewers: 1, trickle: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--url') opts.url = argv[++i];
  else if (argv[i] === '--seconds') opts.seconds = Number(argv[++i]);
  else if (argv[i] === '--delete') opts.del = true;
  else if (argv[i] === '--viewers') opts.viewers = Number(argv[++i]);
  else if (argv[i] === '--trickle') opts.trickle = true;
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
  result = await page.evaluate(async ({ url, seconds, del, viewers, trickle }) => {
    const out = { status: null, location: null, error: null, samples: [], extraViewers: [], patchStatuses: [] };
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
        frag += `m=video 9 RTP/AVP 0\r\na=mid:${mid}\r\n`;
        for (const c of cands.filter((x) => x.sdpMid === mid)) frag += `a=${c.candidate}\r\n`;
      }
      if (end) frag += 'a=end-of-candidates\r\n';
      const h = { 'Content-Type': 'application/trickle-ice-sdpfrag' };
      if (session.etag) h['If-Match'] = session.etag;
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
    if (!trickle) await new Promise((resolve) => {
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
    await patching;
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
