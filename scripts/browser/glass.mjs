#!/usr/bin/env node
// Glass-to-glass latency in headless Chromium: plays one stream over WHEP and, at the same time
// in the same page, over LL-HLS (hls.js, lowLatencyMode, top rendition), and for every frame
// presented (requestVideoFrameCallback) reads back the capture time that
// scripts/clock_publisher.py burned into it (two rows of 32 black/white blocks: the low 32 bits
// of unix ms), via a canvas. Latency = the frame's expected display time (performance.timeOrigin
// + expectedDisplayTime, the same host clock as the publisher's) minus its capture time.
//
//   node scripts/browser/glass.mjs --whep URL --hls URL --seconds N [--skip-seconds S]
//
// Prints ONE JSON object: per player the latencies (ms) of the frames read, frames whose two
// rows disagreed (caught mid-change; left out), and errors. The first S seconds (default 5) of
// each player are left out (start-up: hls.js joins and settles at its live edge).
// Exit codes: 0 = ran and printed the JSON; 1 = bad usage; 2 = Chromium could not be launched.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const opts = { whep: null, hls: null, seconds: null, skip: 5 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--whep') opts.whep = argv[++i];
  else if (argv[i] === '--hls') opts.hls = argv[++i];
  else if (argv[i] === '--seconds') opts.seconds = Number(argv[++i]);
  else if (argv[i] === '--skip-seconds') opts.skip = Number(argv[++i]);
  else { process.stderr.write(`glass.mjs: unknown argument ${argv[i]}\n`); process.exit(1); }
}
if (!opts.whep || !opts.hls || !(opts.seconds > 0)) {
  process.stderr.write('usage: glass.mjs --whep URL --hls URL --seconds N [--skip-seconds S]\n');
  process.exit(1);
}
const hlsDir = fs.existsSync(path.join(here, 'node_modules/hls.js/package.json'))
  ? path.join(here, 'node_modules/hls.js')
  : path.dirname(require.resolve('hls.js/package.json'));

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
  process.stderr.write(`glass.mjs: cannot launch Chromium: ${e.message}\n`);
  process.exit(2);
}
let result;
try {
  const page = await browser.newPage();
  await page.goto(new URL('/healthz', opts.whep).href);
  await page.addScriptTag({ path: path.join(hlsDir, 'dist/hls.min.js') });
  result = await page.evaluate(async ({ whep, hls, seconds, skip }) => {
    const BITS = 32, BLOCK = 20, SOURCE_WIDTH = 640;
    // Reads the two rows of blocks from a presented frame; null if they disagree.
    const reader = (video) => {
      const canvas = document.createElement('canvas');
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      return () => {
        const w = video.videoWidth, h = video.videoHeight;
        if (!w || !h) return null;
        const s = w / SOURCE_WIDTH;
        const rowsH = Math.ceil(2 * BLOCK * s);
        if (canvas.width !== w || canvas.height !== rowsH) { canvas.width = w; canvas.height = rowsH; }
        ctx.drawImage(video, 0, 0, w, h, 0, 0, w, h);
        const px = ctx.getImageData(0, 0, w, rowsH).data;
        const rows = [0, 1].map((r) => {
          let v = 0;
          const y = Math.floor((r * BLOCK + BLOCK / 2) * s);
          for (let i = 0; i < BITS; i++) {
            const x = Math.floor((i * BLOCK + BLOCK / 2) * s);
            const o = (y * w + x) * 4;
            const luma = (px[o] + px[o + 1] + px[o + 2]) / 3;
            v = v * 2 + (luma >= 128 ? 1 : 0);
          }
          return v;
        });
        return rows[0] === rows[1] ? rows[0] : null;
      };
    };
    // The capture time from its low 32 bits, the nearest one before `nowMs`.
    const captureMs = (low, nowMs) => {
      const span = 2 ** 32;
      const nowLow = nowMs % span;
      return nowMs - ((nowLow - low + span) % span);
    };
    const measure = (video, out) => {
      const read = reader(video);
      let startedAt = null;
      const onFrame = (_now, meta) => {
        const shownMs = performance.timeOrigin + meta.expectedDisplayTime;
        if (startedAt === null) startedAt = shownMs;
        if (shownMs - startedAt >= skip * 1000) {
          const low = read();
          if (low === null) out.torn++;
          else {
            const lat = shownMs - captureMs(low, shownMs);
            if (lat >= 0 && lat < 60000) out.latencyMs.push(Math.round(lat)); else out.implausible++;
          }
        }
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    };
    const player = () => {
      const v = document.createElement('video');
      v.muted = true; v.autoplay = true; v.playsInline = true;
      document.body.appendChild(v);
      return v;
    };
    const out = {
      whep: { latencyMs: [], torn: 0, implausible: 0, error: null, size: null },
      hls: { latencyMs: [], torn: 0, implausible: 0, error: null, size: null, level: null },
    };
    // WHEP
    const wv = player();
    measure(wv, out.whep);
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (e) => { wv.srcObject = new MediaStream([e.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, 3000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
    const res = await fetch(whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    const answer = await res.text();
    if (res.status !== 201) out.whep.error = `POST ${res.status}: ${answer}`;
    else await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    // LL-HLS
    const hv = player();
    measure(hv, out.hls);
    const h = new window.Hls({ lowLatencyMode: true, capLevelToPlayerSize: false });
    h.on(window.Hls.Events.MANIFEST_PARSED, () => { h.currentLevel = h.levels.length - 1; });
    h.on(window.Hls.Events.ERROR, (_e, d) => { if (d.fatal) out.hls.error = `${d.type}: ${d.details}`; });
    h.loadSource(hls);
    h.attachMedia(hv);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    out.whep.size = `${wv.videoWidth}x${wv.videoHeight}`;
    out.hls.size = `${hv.videoWidth}x${hv.videoHeight}`;
    out.hls.level = h.currentLevel;
    h.destroy();
    pc.close();
    return out;
  }, { whep: opts.whep, hls: opts.hls, seconds: opts.seconds, skip: opts.skip });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
