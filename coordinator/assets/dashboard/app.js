// The dashboard's core: the router (#/view?query), the JSON API, the live stream, DOM helpers.
// Every text from the sweep goes into the page through textContent (el()), never as markup:
// trial names and errors cannot become script. The views are in views.js.
'use strict';

const App = {
  views: {},
  stream: null,
  streamTrial: null,
  lastEventId: null,
  version: 0,
  // What the browser test reads: every epoch event id received, in order.
  seen: [],
  // And every script error and failed promise on the page (none is expected).
  errors: [],
  listeners: new Set(),
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  return Number(value).toFixed(digits === undefined ? 2 : digits);
}

function pct(value) {
  return value === null || value === undefined ? '–' : (value * 100).toFixed(2);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min ${String(s % 60).padStart(2, '0')} s`;
}

async function api(path) {
  const response = await fetch(path, { credentials: 'same-origin' });
  if (response.status === 401) { location.href = '/login'; throw new Error('log in'); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean);
  return { name: parts[0] || 'overview', arg: parts[1] ? decodeURIComponent(parts[1]) : null,
           params: new URLSearchParams(query || '') };
}

function go(hash) { location.hash = hash; }

function setView(...children) {
  const view = document.getElementById('view');
  view.replaceChildren(...children);
  return view;
}

// The live stream: one per tab, for the trial on screen if any. Epoch events carry the store's
// cursor; a dropped stream reopens from the last one (Last-Event-ID, or ?last= when this page
// opens it again itself).
function openStream(trial, cursor) {
  closeStream();
  App.streamTrial = trial;
  const params = new URLSearchParams();
  if (trial) params.set('trial', trial);
  const last = cursor !== undefined && cursor !== null ? cursor : App.lastEventId;
  if (trial && last !== null && last !== undefined) params.set('last', String(last));
  const source = new EventSource('/api/events?' + params.toString());
  App.stream = source;
  const live = document.getElementById('live');
  source.onopen = () => live.classList.add('on');
  source.onerror = () => live.classList.remove('on');
  source.addEventListener('summary', (event) => {
    const summary = JSON.parse(event.data);
    showCounts(summary);
    if (summary.version !== App.version) {
      App.version = summary.version;
      App.listeners.forEach((listener) => listener({ type: 'changed', summary }));
    }
  });
  source.addEventListener('epochs', (event) => {
    App.lastEventId = Number(event.lastEventId);
    App.seen.push(App.lastEventId);
    const series = JSON.parse(event.data);
    App.listeners.forEach((listener) => listener({ type: 'epochs', series, id: App.lastEventId }));
  });
}

function closeStream() {
  if (App.stream) App.stream.close();
  App.stream = null;
  document.getElementById('live').classList.remove('on');
}

// For the browser test: drop the stream as a network would (pauseStream), and resume it from the
// last event the page saw (resumeStream), when the test says: epochs stored in between must
// arrive once each.
App.pauseStream = () => {
  App.pausedTrial = App.streamTrial;
  closeStream();
};
App.resumeStream = () => openStream(App.pausedTrial, App.lastEventId);

function showCounts(summary) {
  const states = summary.states || {};
  const done = (states.done || 0) + (states.diverged || 0) + (states.failed || 0);
  document.getElementById('counts').textContent =
    `${done}/${summary.total} finished · ${(states.running || 0) + (states.leased || 0)} running · ${states.pending || 0} pending`;
}

function onLive(listener) {
  App.listeners.add(listener);
}

async function render() {
  App.listeners.clear();
  const current = route();
  document.querySelectorAll('header nav a').forEach((a) =>
    a.classList.toggle('active', a.dataset.nav === current.name || (current.name === 'trial' && a.dataset.nav === 'trials')));
  const view = App.views[current.name] || App.views.overview;
  try {
    await view(current);
  } catch (error) {
    App.errors.push(String(error.message || error));
    setView(el('h1', {}, 'Something went wrong'), el('p', { class: 'muted' }, String(error.message || error)));
  }
}

window.addEventListener('error', (event) => App.errors.push(String(event.message)));
window.addEventListener('unhandledrejection', (event) => App.errors.push(String(event.reason)));
window.addEventListener('hashchange', render);
window.addEventListener('DOMContentLoaded', async () => {
  try {
    const summary = await api('/api/summary');
    document.getElementById('sweep-name').textContent = summary.sweep;
    showCounts(summary);
  } catch (_) { /* the view says why */ }
  render();
});
window.__dashboard = App;
