// zoomate console: polls /api/v1/ on the listener that served this page and plays streams with
// the vendored hls.js (low-latency mode) or dash.js. No framework, no CDN.
//
// The API token (needed when zoomate has `[api] token` set) is taken from `#token=…` in the URL
// once (then removed from the address bar) or typed in when a call is refused; it is kept in
// sessionStorage for this tab only.
'use strict';

const POLL_MS = 2000;
const API = '/api/v1/';
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  selected: null, // stream name being played
  protocol: 'hls',
  hls: null,
  dash: null,
  streams: [],
};
window.__console = state; // for tests and the curious

// ---------------------------------------------------------------------------------------------
// token

(function takeToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('zoomate-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  state.token = sessionStorage.getItem('zoomate-token');
})();

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = $('token').value.trim() || null;
  if (state.token) sessionStorage.setItem('zoomate-token', state.token);
  $('token-form').hidden = true;
  poll();
});

// ---------------------------------------------------------------------------------------------
// API

async function api(path, method = 'GET') {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const r = await fetch(API + path, { method, headers, cache: 'no-store', signal: AbortSignal.timeout(5000) });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) {
    $('token-form').hidden = false;
    throw new Error(body.message || `HTTP ${r.status}`);
  }
  return { status: r.status, body };
}

// ---------------------------------------------------------------------------------------------
// formatting

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
  return e;
};
const kbps = (bps) => (bps == null ? '–' : `${Math.round(bps / 1000)} kb/s`);
const seconds = (s) => {
  if (s == null) return '–';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
};
const bytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

// ---------------------------------------------------------------------------------------------
// panels

function renderStreams(streams) {
  const tbody = $('streams').tBodies[0];
  tbody.replaceChildren(...streams.map((s) => {
    const renditions = s.renditions.map((r) =>
      `${r.name}: ${kbps(r.bitrate_bits_per_second)} · ${r.encode_speed_ratio == null ? '–' : r.encode_speed_ratio.toFixed(2) + '×'} · ${r.segments}`,
    ).join('\n');
    const source = s.source.publisher ? `${s.source.kind} from ${s.source.publisher}` : s.source.kind;
    return el('tr', { 'data-stream': s.name, class: s.name === state.selected ? 'selected' : '' },
      el('td', {}, s.name),
      el('td', { class: s.state }, s.state),
      el('td', {}, source),
      el('td', { class: 'num' }, seconds(s.uptime_seconds)),
      el('td', { class: 'num' }, s.viewers == null ? '–' : s.viewers),
      el('td', { class: 'num', style: 'white-space: pre-line' }, renditions || '–'),
      el('td', {}, s.state === 'live' ? el('button', { type: 'button', onclick: () => play(s.name) }, 'Play') : ''),
    );
  }));
  $('streams-note').textContent = streams.length ? '' : 'No streams.';
}

function renderOrigins(res) {
  const tbody = $('origins').tBodies[0];
  if (res.status !== 200) {
    tbody.replaceChildren();
    $('origins-note').textContent = res.body.message || `HTTP ${res.status}`;
    return;
  }
  $('origins-note').textContent = res.body.origins.length ? '' : 'No origins known.';
  tbody.replaceChildren(...res.body.origins.map((o) => el('tr', {},
    el('td', {}, o.id),
    el('td', {}, o.base_url),
    el('td', { class: o.usable ? 'up' : 'down' }, o.usable ? 'up' : (o.healthy ? 'heartbeat lost' : 'down')),
    el('td', { class: 'num' }, o.in_flight),
    el('td', {}, o.streams.join(', ') || (o.static ? '(static)' : '–')),
    el('td', { class: 'num' }, o.heartbeat_age_seconds == null ? '–' : `${o.heartbeat_age_seconds.toFixed(1)} s ago`),
  )));
}

function renderCache(res) {
  const tbody = $('top-objects').tBodies[0];
  if (res.status !== 200) {
    $('hit-ratio').textContent = '–';
    $('cache-size').textContent = res.body.message || `HTTP ${res.status}`;
    tbody.replaceChildren();
    return;
  }
  const c = res.body;
  $('hit-ratio').textContent = c.hit_ratio == null ? '–' : `${(c.hit_ratio * 100).toFixed(1)} %`;
  $('cache-size').textContent = `${bytes(c.bytes)} of ${bytes(c.capacity_bytes)} in ${c.entries} objects · ${c.hits} hits, ${c.misses} misses`;
  tbody.replaceChildren(...c.top_objects.map((o) => el('tr', {},
    el('td', {}, o.path), el('td', {}, o.kind), el('td', { class: 'num' }, bytes(o.bytes)), el('td', { class: 'num' }, o.hits),
  )));
}

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  try {
    const [streams, origins, cache] = await Promise.all([api('streams'), api('origins'), api('cache')]);
    state.streams = streams.status === 200 ? streams.body.streams : [];
    renderStreams(state.streams);
    if (streams.status !== 200) $('streams-note').textContent = streams.body.message || `HTTP ${streams.status}`;
    renderOrigins(origins);
    renderCache(cache);
    $('status').textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (!state.selected) {
      const first = state.streams.find((s) => s.state === 'live');
      if (first) play(first.name);
    }
    const sel = state.streams.find((s) => s.name === state.selected);
    $('kick').disabled = !(sel && sel.source.publisher);
    $('end').disabled = !(sel && sel.state === 'live');
  } catch (e) {
    $('status').textContent = `API: ${e.message}`;
  } finally {
    polling = false;
  }
}

// ---------------------------------------------------------------------------------------------
// player

function stopPlayer() {
  if (state.hls) { state.hls.destroy(); state.hls = null; }
  if (state.dash) { state.dash.destroy(); state.dash = null; }
  $('rendition').replaceChildren(el('option', { value: 'auto' }, 'auto'));
}

function setRenditions(list) {
  $('rendition').replaceChildren(el('option', { value: 'auto' }, 'auto'),
    ...list.map((r, i) => el('option', { value: String(i) }, `${r.height}p · ${kbps(r.bandwidth)}`)));
}

function play(name) {
  const s = state.streams.find((x) => x.name === name);
  if (!s) return;
  stopPlayer();
  state.selected = name;
  const video = $('video');
  const url = state.protocol === 'dash' ? s.urls.dash : s.urls.hls;
  $('playing').textContent = url ? `${name} · ${url}` : `${name}: no ${state.protocol.toUpperCase()} for this stream`;
  if (!url) return;
  if (state.protocol === 'hls') {
    const hls = new Hls({ lowLatencyMode: true });
    state.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
      setRenditions(data.levels.map((l) => ({ height: l.height, bandwidth: l.bitrate })));
    });
    hls.attachMedia(video);
    hls.loadSource(url);
  } else {
    const player = dashjs.MediaPlayer().create();
    state.dash = player;
    player.on(dashjs.MediaPlayer.events.STREAM_INITIALIZED, () => {
      setRenditions(player.getRepresentationsByType('video').map((r) => ({ height: r.height, bandwidth: r.bandwidth })));
    });
    player.initialize(video, url, true);
  }
  video.play().catch(() => { /* autoplay of a muted video may still wait for data */ });
  renderStreams(state.streams);
}

$('protocol').addEventListener('change', () => {
  state.protocol = $('protocol').value;
  if (state.selected) play(state.selected);
});

$('rendition').addEventListener('change', () => {
  const v = $('rendition').value;
  const index = v === 'auto' ? -1 : Number(v);
  if (state.hls) {
    state.hls.currentLevel = index;
  } else if (state.dash) {
    state.dash.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: index < 0 } } } });
    if (index >= 0) state.dash.setRepresentationForTypeByIndex('video', index, true);
  }
});

async function act(action) {
  if (!state.selected) return;
  try {
    const r = await api(`streams/${encodeURIComponent(state.selected)}/${action}`, 'POST');
    $('action-result').textContent = r.status === 202 ? `${action}: accepted` : `${action}: ${r.body.message || r.status}`;
  } catch (e) {
    $('action-result').textContent = `${action}: ${e.message}`;
  }
  poll();
}
$('kick').addEventListener('click', () => act('kick'));
$('end').addEventListener('click', () => act('end'));

setInterval(() => {
  const video = $('video');
  let latency = NaN;
  if (state.hls) latency = state.hls.latency;
  else if (state.dash) { try { latency = state.dash.getCurrentLiveLatency(); } catch (_) { /* not ready */ } }
  $('latency').textContent = Number.isFinite(latency) && latency > 0 ? `${latency.toFixed(2)} s` : '–';
  $('position').textContent = video.currentTime ? `${video.currentTime.toFixed(1)} s` : '–';
  state.latency = Number.isFinite(latency) ? latency : null;
}, 500);

poll();
setInterval(poll, POLL_MS);
