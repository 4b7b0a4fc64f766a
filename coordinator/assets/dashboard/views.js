// The dashboard's views: the sweep at a glance, every trial in one table, one trial's curves,
// a cell's methods against its baseline, the grid's heat map, the report's tables.
'use strict';

const STATES = ['pending', 'leased', 'running', 'done', 'diverged', 'failed'];
const STATE_COLORS = { pending: '#cbd5e1', leased: '#93c5fd', running: '#2563eb', done: '#16a34a', diverged: '#f59e0b', failed: '#dc2626' };
const AXES = ['architecture', 'optimizer', 'dataset', 'resolution', 'method', 'seed'];

// Refetches at most every `ms` while the store changes (a busy sweep changes every moment).
function throttled(ms, f) {
  let last = 0, timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); f(); }, Math.max(0, wait));
  };
}

App.views.overview = async () => {
  openStream(null);
  const draw = async () => {
    const s = await api('/api/summary');
    document.getElementById('sweep-name').textContent = s.sweep;
    const banner = document.getElementById('banner');
    banner.hidden = !s.state_dir_full;
    banner.textContent = s.state_dir_full || '';
    const states = s.states || {};
    const finished = (states.done || 0) + (states.diverged || 0) + (states.failed || 0);
    const cards = el('div', { class: 'cards' },
      el('div', { class: 'card' }, el('div', { class: 'k' }, 'trials'), el('div', { class: 'n' }, s.total)),
      STATES.map((state) => el('div', { class: 'card', 'data-state': state },
        el('div', { class: 'k' }, state), el('div', { class: `n state-${state}` }, states[state] || 0))),
      el('div', { class: 'card' }, el('div', { class: 'k' }, 'eta'), el('div', { class: 'n' }, finished === s.total ? 'done' : duration(s.eta_seconds))));
    const bar = el('div', { class: 'bar', title: 'trials by state' },
      STATES.map((state) => el('span', { style: `width:${100 * (states[state] || 0) / Math.max(1, s.total)}%;background:${STATE_COLORS[state]}` })));
    const workers = s.live
      ? (s.workers && s.workers.length ? workersTable(s.workers) : el('p', { class: 'muted' }, 'No worker registered yet.'))
      : el('p', { class: 'muted' }, `Read from ${s.state_dir}: the coordinator's workers are shown where it runs.`);
    const failures = s.failures.length
      ? el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'trial'), el('th', {}, 'state'), el('th', {}, 'what went wrong (and the end of its log)'))),
        el('tbody', {}, s.failures.map((f) => el('tr', {},
          el('td', {}, el('a', { href: `#/trial/${encodeURIComponent(f.id)}` }, f.label)),
          el('td', { class: `state-${f.state}` }, f.state),
          el('td', {}, el('pre', {}, f.error || '–'))))))
      : el('p', { class: 'muted' }, 'No trial failed or diverged.');
    setView(el('h1', {}, `Sweep ${s.sweep}`), cards, bar, el('h2', {}, 'Workers'), workers, el('h2', {}, 'Failures'), failures);
  };
  await draw();
  onLive(throttled(2000, draw));
};

function workersTable(workers) {
  return el('table', {},
    el('thead', {}, el('tr', {}, ['worker', 'host', 'devices', 'trials', 'last heard', 'CPU %', 'RSS MB', 'GPUs (use %, memory MB)', 'condition'].map((h) => el('th', {}, h)))),
    el('tbody', {}, workers.map((w) => {
      const usage = w.usage || {};
      const gpus = (usage.devices || []).map((d, i) => `${i}: ${fmt(d.utilisation_percent, 0)}%, ${d.memory_used_mb}/${d.memory_total_mb}`).join(' · ');
      return el('tr', { 'data-worker': w.worker_id },
        el('td', {}, w.worker_id), el('td', {}, w.hostname), el('td', { class: 'num' }, w.devices),
        el('td', { class: 'num' }, w.trials), el('td', { class: 'num' }, `${(w.idle_ms / 1000).toFixed(1)} s ago`),
        el('td', { class: 'num' }, usage.cpu_percent === undefined ? '–' : fmt(usage.cpu_percent, 0)),
        el('td', { class: 'num' }, usage.rss_mb === undefined ? '–' : usage.rss_mb),
        el('td', {}, gpus || '–'), el('td', { class: w.condition ? 'state-failed' : '' }, w.condition || 'ok'));
    })));
}

const COLUMNS = [
  ['architecture', 'architecture'], ['optimizer', 'optimizer'], ['dataset', 'dataset'], ['resolution', 'res', true],
  ['method', 'method'], ['seed', 'seed', true], ['state', 'state'], ['epoch', 'epoch', true],
  ['train_loss', 'train loss', true], ['last_val_accuracy', 'val top-1 % (last)', true],
  ['best_val_accuracy', 'val top-1 % (best)', true], ['top1', 'test top-1 %', true],
];

App.views.trials = async (current) => {
  openStream(null);
  const params = current.params;
  const query = () => {
    const q = new URLSearchParams(params);
    if (!q.has('size')) q.set('size', '50');
    return q;
  };
  const set = (key, value) => {
    if (value === '' || value === null) params.delete(key); else params.set(key, value);
    if (key !== 'page') params.delete('page');
    go('#/trials?' + params.toString());
  };
  const draw = async () => {
    const data = await api('/api/trials?' + query().toString());
    const filters = el('div', { class: 'filters' },
      [...AXES, 'state'].map((axis) => el('label', {}, axis,
        el('select', { 'data-filter': axis, onchange: (e) => set(axis, e.target.value) },
          el('option', { value: '' }, 'all'),
          (data.facets[axis] || []).map((v) => el('option', { value: v, selected: params.get(axis) === String(v) }, v))))),
      el('label', {}, 'search', el('input', { type: 'search', value: params.get('q') || '', placeholder: 'id or name',
        onchange: (e) => set('q', e.target.value) })));
    const sort = params.get('sort'), desc = params.get('desc') === '1';
    const head = el('tr', {}, el('th', {}, 'trial'), COLUMNS.map(([key, label, numeric]) => el('th', {
      class: 'sortable' + (numeric ? ' num' : ''), 'data-sort': key,
      onclick: () => { params.set('sort', key); params.set('desc', sort === key && !desc ? '1' : '0'); go('#/trials?' + params.toString()); },
    }, label + (sort === key ? (desc ? ' ▼' : ' ▲') : ''))));
    const rows = data.rows.map((r) => el('tr', { 'data-trial': r.id },
      el('td', {}, el('a', { href: `#/trial/${encodeURIComponent(r.id)}` }, r.id.slice(0, 12))),
      el('td', {}, r.architecture), el('td', {}, r.optimizer), el('td', {}, r.dataset), el('td', { class: 'num' }, r.resolution),
      el('td', {}, r.method), el('td', { class: 'num' }, r.seed), el('td', { class: `state-${r.state}` }, r.state),
      el('td', { class: 'num' }, r.epoch === null ? '–' : `${r.epoch}/${r.epochs}`), el('td', { class: 'num' }, fmt(r.train_loss, 4)),
      el('td', { class: 'num' }, pct(r.last_val_accuracy)), el('td', { class: 'num' }, pct(r.best_val_accuracy)),
      el('td', { class: 'num' }, pct(r.top1))));
    const pages = Math.max(1, Math.ceil(data.total / data.size));
    const pager = el('div', { class: 'pager' },
      el('button', { disabled: data.page === 0, onclick: () => set('page', String(data.page - 1)) }, '‹ previous'),
      el('span', { id: 'trial-count' }, `page ${data.page + 1} of ${pages} · ${data.total} trials`),
      el('button', { disabled: data.page + 1 >= pages, onclick: () => set('page', String(data.page + 1)) }, 'next ›'));
    setView(el('h1', {}, 'Trials'), filters, pager, el('table', { id: 'trials' }, el('thead', {}, head), el('tbody', {}, rows)));
  };
  await draw();
  onLive(throttled(2000, draw));
};

// A uPlot chart in a card; `series` are [label, color, values]; markers are vertical lines.
function chart(title, epochs, series, options) {
  const box = el('div', { class: 'chart', 'data-chart': title });
  box.append(el('h3', {}, title));
  // Two charts a row, each as wide as its half of the page.
  const width = Math.max(320, Math.floor((document.getElementById('view').clientWidth - 24) / 2) - 22);
  const compact = (u, values) => values.map((v) => (v === null ? '' : +v.toPrecision(3)));
  const markerColors = { noise: '#e68c00', plastic: '#c81e1e', noise_plastic: '#c81e1e', recovered: '#14963c' };
  const plot = new uPlot({
    width, height: 240,
    scales: { x: { time: false } },
    axes: [{ label: 'epoch' }, { label: options && options.unit ? options.unit : '', values: compact, size: 60 }],
    legend: { live: false },
    series: [{ label: 'epoch' }, ...series.map(([label, color, _, dash]) => ({ label, stroke: color, width: 2, dash: dash || undefined, points: { size: 5 } }))],
    hooks: { draw: [(u) => {
      const ctx = u.ctx;
      for (const m of (options && options.markers) || []) {
        const x = u.valToPos(m.epoch, 'x', true);
        ctx.save(); ctx.strokeStyle = markerColors[m.kind] || '#999'; ctx.lineWidth = 2 * devicePixelRatio;
        ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke(); ctx.restore();
      }
    }] },
  }, [epochs, ...series.map((s) => s[2])], box);
  box.dataset.points = String(epochs.length);
  return { box, plot };
}

App.views.trial = async (current) => {
  const id = current.arg;
  const info = await api(`/api/trials/${encodeURIComponent(id)}`);
  const first = await api(`/api/trials/${encodeURIComponent(id)}/series`);
  const data = first.series;
  const row = info.row;
  const copy = el('button', { onclick: () => navigator.clipboard && navigator.clipboard.writeText(info.reproduce) }, 'copy');
  const header = el('div', {},
    el('h1', {}, row.label, ' ', el('span', { class: `state-${row.state}`, id: 'trial-state' }, `(${row.state})`)),
    el('p', {}, el('a', { href: `#/cell?${new URLSearchParams(info.cell).toString()}` }, 'compare with its baseline, seed by seed'),
      ' · attempts ', row.attempts, ' · id ', el('code', {}, row.id)),
    el('p', {}, 'Reproduce it here, bit for bit: ', el('code', { class: 'cmd', id: 'reproduce' }, info.reproduce), ' ', copy),
    info.error ? el('pre', {}, info.error) : null);
  const markers = el('div', { class: 'markers', id: 'markers' });
  const charts = el('div', { class: 'charts' });
  const state = { data, views: [] };
  const draw = () => {
    const d = state.data;
    const lr = d.epoch.map(() => info.learning_rate);
    charts.replaceChildren();
    state.views = [
      chart('loss', d.epoch, [['train', '#1f77b4', d.train_loss], ['validation', '#943cbe', d.val_loss]], { markers: d.markers }),
      chart('top-1 accuracy %', d.epoch, [['train', '#1f77b4', d.train_accuracy.map((v) => v * 100)], ['validation', '#943cbe', d.val_accuracy.map((v) => v * 100)]], { markers: d.markers, unit: '%' }),
      chart('learning rate', d.epoch, [['learning rate', '#64748b', lr]], {}),
    ];
    if (info.sal) {
      const sNoise = d.epoch.map(() => info.sal.s_noise), sYield = d.epoch.map(() => info.sal.s_yield);
      state.views.push(chart('stress S_g', d.epoch, [['S_g', '#1f77b4', d.stress], ['S_noise', '#e68c00', sNoise, [6, 4]], ['S_yield (yield point)', '#c81e1e', sYield, [6, 4]]], { markers: d.markers }));
    }
    state.views.forEach((v) => charts.append(v.box));
    markers.replaceChildren(...d.markers.map((m) => el('span', { class: `marker ${m.kind}`, 'data-marker': m.kind, 'data-epoch': m.epoch }, `epoch ${m.epoch}: ${m.kind.replace('_', ' + ')}`)));
    charts.dataset.points = String(d.epoch.length);
    charts.dataset.epochs = d.epoch.join(',');
  };
  setView(header, el('h2', {}, 'Curves'), el('p', { class: 'muted' }, 'Dashed lines mark the epochs where SAL injected noise (orange), deformed plastically (red) or recovered the yield point (green).'),
    markers, charts, el('h2', {}, 'Spec'), el('pre', {}, JSON.stringify(info.spec, null, 2)),
    el('h2', {}, 'Manifest'), el('pre', {}, info.manifest ? JSON.stringify(info.manifest, null, 2) : 'written when the trial finishes'));
  draw();
  // New epochs arrive on the stream: merged by epoch (a resumed attempt reports some again).
  onLive((event) => {
    if (event.type === 'changed') {
      api(`/api/trials/${encodeURIComponent(id)}`).then((fresh) => {
        const s = document.getElementById('trial-state');
        if (s) { s.textContent = `(${fresh.row.state})`; s.className = `state-${fresh.row.state}`; }
      }).catch(() => {});
      return;
    }
    if (event.type !== 'epochs') return;
    const d = state.data, n = event.series;
    n.epoch.forEach((epoch, i) => {
      let at = d.epoch.indexOf(epoch);
      if (at === -1) { at = d.epoch.length; d.epoch.push(epoch); }
      for (const key of ['train_loss', 'val_loss', 'train_accuracy', 'val_accuracy', 'grad_norm', 'stress']) d[key][at] = n[key][i];
    });
    d.markers = d.markers.filter((m) => !n.epoch.includes(m.epoch)).concat(n.markers).sort((a, b) => a.epoch - b.epoch);
    draw();
  });
  openStream(id, first.cursor);
};

App.views.cell = async (current) => {
  openStream(null);
  const params = current.params;
  const data = await api('/api/cell?' + params.toString());
  const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  const sections = data.methods.map((m) => {
    const c = m.comparison;
    const stats = c ? el('table', {},
      el('thead', {}, el('tr', {}, ['pairs (seeds)', 'mean Δ top-1 (pp)', '95% CI', 't-test p', 'Holm p', 'Wilcoxon p', 'Holm p', 'wins'].map((h) => el('th', {}, h)))),
      el('tbody', {}, el('tr', { 'data-method': m.method },
        el('td', { class: 'num' }, c.n), el('td', { class: 'num' }, fmt(c.mean, 2)),
        el('td', { class: 'num' }, c.ci95 ? `${fmt(c.ci95[0], 2)} … ${fmt(c.ci95[1], 2)}` : 'n=1: none'),
        el('td', { class: 'num' }, fmt(c.t_p, 4)), el('td', { class: 'num' }, fmt(c.t_holm, 4)),
        el('td', { class: 'num' }, fmt(c.wilcoxon_p, 4)), el('td', { class: 'num' }, fmt(c.wilcoxon_holm, 4)),
        el('td', { class: 'num' }, `${c.wins} of ${c.n}`))))
      : el('p', { class: 'muted' }, 'No seed has both this method and the baseline finished yet.');
    const epochs = [...new Set(m.seeds.flatMap((s) => s.delta.map((d) => d[0])))].sort((a, b) => a - b);
    const series = m.seeds.map((s, i) => [`seed ${s.seed}`, palette[i % palette.length], epochs.map((e) => {
      const point = s.delta.find((d) => d[0] === e); return point ? point[1] : null; })]);
    const mean = epochs.map((_, i) => { const v = series.map((s) => s[2][i]).filter((x) => x !== null); return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null; });
    const curves = epochs.length ? chart(`${m.method} − baseline, validation top-1 (pp) per epoch`, epochs, [...series, ['mean', '#111827', mean, [8, 4]]], { unit: 'pp' }).box : null;
    const links = el('p', {}, m.seeds.map((s) => el('span', {}, `seed ${s.seed}: `, el('a', { href: `#/trial/${encodeURIComponent(s.trial)}` }, m.method), ' vs ',
      el('a', { href: `#/trial/${encodeURIComponent(s.baseline)}` }, 'baseline'), ' · ')));
    return el('section', {}, el('h2', {}, `${m.method} against the baseline`), stats, curves, links);
  });
  setView(el('h1', {}, `Cell ${data.cell}`), el('p', { class: 'muted' },
    'Paired by seed. The statistics are the report\'s: Δ of the final test top-1, Student\'s t and Wilcoxon\'s signed-rank tests, Holm–Bonferroni over every cell of the sweep.'),
    ...sections);
};

function diverging(value, scale) {
  const t = Math.max(-1, Math.min(1, value / (scale || 1)));
  const [r, g, b] = t >= 0 ? [255 - 200 * t, 255 - 90 * t, 255 - 200 * t] : [255, 255 + 180 * t, 255 + 180 * t];
  return `rgb(${r | 0},${g | 0},${b | 0})`;
}

App.views.grid = async (current) => {
  openStream(null);
  const params = current.params;
  const draw = async () => {
    const data = await api('/api/grid?' + params.toString());
    const pick = (key, values, value) => el('label', {}, key, el('select', { onchange: (e) => { params.set(key, e.target.value); go('#/grid?' + params.toString()); } },
      values.map((v) => el('option', { value: v, selected: v === value }, v))));
    const axes = ['architecture', 'optimizer', 'dataset', 'resolution'];
    const controls = el('div', { class: 'filters' }, pick('rows', axes, data.rows_axis), pick('cols', axes, data.cols_axis),
      pick('method', data.methods.length ? data.methods : [data.method], data.method));
    const scale = Math.max(1e-9, ...data.entries.map((e) => Math.abs(e.mean)));
    const table = el('table', { class: 'heat', id: 'heatmap' },
      el('thead', {}, el('tr', {}, el('th', {}, `${data.rows_axis} \\ ${data.cols_axis}`), data.cols.map((c) => el('th', {}, c)))),
      el('tbody', {}, data.rows.map((r) => el('tr', {}, el('th', {}, r), data.cols.map((c) => {
        const entry = data.entries.find((e) => e.row === r && e.col === c);
        if (!entry) return el('td', { class: 'cell muted' }, '–');
        const target = entry.cells.length === 1 ? `#/cell?${new URLSearchParams({ architecture: entry.cells[0].architecture, optimizer: entry.cells[0].optimizer, dataset: entry.cells[0].dataset, resolution: entry.cells[0].resolution })}` : null;
        const text = `${entry.mean >= 0 ? '+' : ''}${fmt(entry.mean, 2)}`;
        const cell = el('td', { class: 'cell', style: `background:${diverging(entry.mean, scale)}`, title: entry.cells.map((x) => `${x.label}: ${fmt(x.mean, 2)}`).join('\n') },
          target ? el('a', { href: target }, text) : text);
        if (!target) cell.append(el('div', { class: 'muted' }, entry.cells.map((x) => el('div', {}, el('a', { href: `#/cell?${new URLSearchParams({ architecture: x.architecture, optimizer: x.optimizer, dataset: x.dataset, resolution: x.resolution })}` }, x.label)))));
        return cell;
      })))));
    setView(el('h1', {}, `Δ top-1, ${data.method} − baseline (percentage points)`),
      el('p', { class: 'muted' }, 'Mean over seeds of each cell, then over the cells a row and a column share; green: the method beats the baseline. A cell links to its comparison.'),
      controls, data.entries.length ? table : el('p', { class: 'muted' }, 'No cell has this method and the baseline finished with the same seed yet.'));
  };
  await draw();
  onLive(throttled(5000, draw));
};

App.views.report = async () => {
  openStream(null);
  const draw = async () => {
    const data = await api('/api/report');
    // Built by the report itself, every text escaped there: the same tables `coordinator report` prints.
    const tables = el('div', { class: 'report' });
    tables.innerHTML = data.tables.join('');
    const plots = el('div', { class: 'report' });
    plots.innerHTML = data.plots.map((svg) => `<figure>${svg}</figure>`).join('');
    setView(el('h1', {}, 'Report'), el('p', { class: 'muted' }, 'The tables of `coordinator report`, refreshed as results arrive.'), tables, el('h2', {}, 'Plots'), plots);
  };
  await draw();
  onLive(throttled(5000, draw));
};
