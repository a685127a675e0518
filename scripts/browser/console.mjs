#!/usr/bin/env node
// The web console in a real browser: loads zoomate's /console/ in headless Chromium (Debian's,
// via playwright-core, launched as play.mjs launches it), waits until STREAM is listed, plays it
// with hls.js, switches rendition, reads the live-latency readout, then plays it with dash.js;
// prints ONE JSON object on stdout describing what happened, and saves a screenshot.
//
//   node scripts/browser/console.mjs --url http://127.0.0.1:PORT/console/ --stream demo
//        [--token TOKEN] [--screenshot FILE.png] [--timeout-s 25]
//
// Exit codes: 0 = ran and printed the JSON (the caller judges it); 1 = bad usage or harness
// error; 2 = Chromium could not be launched.
//
// Every console message of type "error", every uncaught page error and every failed request
// (other than requests aborted by the page itself, e.g. on a player switch) is reported.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function usage(msg) {
  if (msg) process.stderr.write(`console.mjs: ${msg}\n`);
  process.stderr.write('usage: node scripts/browser/console.mjs --url URL --stream NAME [--token T] [--screenshot FILE] [--timeout-s N]\n');
  process.exit(1);
}

const opts = { url: null, stream: null, token: null, screenshot: null, timeoutS: 25 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const v = () => (i + 1 < argv.length ? argv[++i] : usage(`${argv[i]} needs a value`));
  switch (argv[i]) {
    case '--url': opts.url = v(); break;
    case '--stream': opts.stream = v(); break;
    case '--token': opts.token = v(); break;
    case '--screenshot': opts.screenshot = v(); break;
    case '--timeout-s': opts.timeoutS = Number(v()); break;
    default: usage(`unknown argument ${argv[i]}`);
  }
}
if (!opts.url || !opts.stream) usage('--url and --stream are required');

const { chromium } = require('playwright-core');
const result = {
  browser: null,
  listed: false,
  hlsPlayed: false,
  renditionSwitched: false,
  latencyS: null,
  dashPlayed: false,
  rows: [],
  consoleErrors: [],
  pageErrors: [],
  failedRequests: [],
  steps: [],
  screenshot: null,
};

const step = (name) => result.steps.push({ name, atMs: Date.now() - started });
const started = Date.now();

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: [
      '--no-sandbox',
      '--autoplay-policy=no-user-gesture-required',
      '--mute-audio',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--no-default-browser-check',
      // Resolve only loopback: the console must fetch nothing from anywhere else.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]',
    ],
  });
} catch (e) {
  process.stderr.write(`console.mjs: cannot launch Chromium: ${e.message}\n`);
  process.exit(2);
}
result.browser = browser.version();

const deadline = started + opts.timeoutS * 1000;
const left = () => Math.max(1000, deadline - Date.now());

try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error') result.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => result.pageErrors.push(String(e && e.message ? e.message : e)));
  page.on('requestfailed', (r) => {
    const why = (r.failure() && r.failure().errorText) || 'failed';
    if (why !== 'net::ERR_ABORTED') result.failedRequests.push(`${r.url()}: ${why}`);
  });

  const url = opts.token ? `${opts.url}#token=${encodeURIComponent(opts.token)}` : opts.url;
  await page.goto(url, { waitUntil: 'load', timeout: left() });
  step('loaded');

  await page.waitForSelector(`#streams tr[data-stream="${opts.stream}"]`, { timeout: left() });
  result.listed = true;
  result.rows = await page.$$eval('#streams tbody tr', (rows) => rows.map((r) => r.innerText.replace(/\s+/g, ' ').trim()));
  step('listed');

  // Playing: the video's position advances by at least 1 s of media.
  const advances = async () => {
    const t0 = await page.evaluate(() => document.getElementById('video').currentTime);
    await page.waitForFunction((t) => document.getElementById('video').currentTime > t + 1, t0, { timeout: left(), polling: 200 });
  };
  await page.waitForFunction(() => window.__console && window.__console.hls, null, { timeout: left() });
  await advances();
  result.hlsPlayed = true;
  step('hls playing');

  // Rendition switching: the first listed rendition, then hls.js must be on it.
  await page.waitForFunction(() => document.querySelectorAll('#rendition option').length > 1, null, { timeout: left() });
  await page.selectOption('#rendition', '0');
  await page.waitForFunction(() => window.__console.hls && window.__console.hls.currentLevel === 0, null, { timeout: left(), polling: 200 });
  await advances();
  result.renditionSwitched = true;
  step('rendition switched');

  await page.waitForFunction(() => /s$/.test(document.getElementById('latency').textContent), null, { timeout: left(), polling: 200 });
  result.latencyS = await page.evaluate(() => window.__console.latency);
  step('latency shown');

  if (opts.screenshot) {
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    result.screenshot = opts.screenshot;
  }

  await page.selectOption('#protocol', 'dash');
  await page.waitForFunction(() => window.__console.dash, null, { timeout: left() });
  await advances();
  result.dashPlayed = true;
  step('dash playing');
} catch (e) {
  result.error = String(e && e.message ? e.message : e);
} finally {
  await browser.close().catch(() => {});
}
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
