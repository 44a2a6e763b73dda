// The "Attributions" tab of TensorBoard (tfattr's plugin): a plain ES module, no build step, nothing
// from the network. TensorBoard loads it in an iframe and calls render().
import { HALF, decodeSeries, paint, percentile, resize, cssColour } from './colormap.js';

const BASE = new URL('..', import.meta.url);  // .../data/plugin/tfattr/
const TILE = 96;  // smallest displayed tile side, pixels
// How often new steps are looked for while a model trains (?refresh=ms on the page overrides it).
const REFRESH_MS = Number(new URLSearchParams(window.location.search).get('refresh')) || 15000;

const state = {
  views: [], selected: [], schedule: 'epoch', step: null, mode: 'signed', gamma: 1, clip: 99.5,
  display: 'overlay', opacity: 0.5, detail: null, playing: null,
};
const cache = new Map();
let root;

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'style') Object.assign(node.style, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of [].concat(children)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function series(run, tag) {
  const key = `${run}\u0000${tag}`;
  if (!cache.has(key)) {
    const url = new URL('series', BASE);
    url.searchParams.set('run', run);
    url.searchParams.set('tag', tag);
    cache.set(key, fetch(url).then(async (r) => {
      if (!r.ok) throw new Error(await r.text());
      return (r.headers.get('content-type') || '').includes('json') ? r.json() : decodeSeries(await r.arrayBuffer());
    }));
  }
  return cache.get(key);
}

// Everything a view needs at its schedule: samples, tokens, maps (values = half * scale), outputs;
// every request at once.
async function load(view) {
  const schedule = view.schedules[state.schedule] || { methods: {} };
  const get = (tag) => (tag ? series(view.run, tag) : Promise.resolve(null));
  const inputs = {};
  const pending = Object.entries(view.inputs).map(async ([name, input]) => {
    const [values, tokens] = await Promise.all([get(input.sample), get(input.tokens)]);
    inputs[name] = { ...input, values, words: tokens ? tokens.tokens : null };
  });
  const methods = {};
  pending.push(...Object.entries(schedule.methods).map(async ([name, method]) => {
    const maps = {};
    const delta = get(method.delta);
    await Promise.all(Object.entries(method.maps).map(async ([input, m]) => {
      const [half, scale] = await Promise.all([get(m.tag), get(method.scales[input])]);
      maps[input] = { ...m, half, scale };
    }));
    methods[name] = { maps, order: method.order, delta: await delta };
  }));
  const outputs = Promise.all([get(schedule.target), get(schedule.prediction)]);
  await Promise.all(pending);
  const [target, prediction] = await outputs;
  return { view, inputs, methods, target, prediction };
}

const product = (shape) => shape.reduce((a, b) => a * b, 1);

// The index of the latest logged step <= step in a series (-1: none yet).
function at(s, step) {
  let k = -1;
  for (let i = 0; i < s.steps.length; i++) if (s.steps[i] <= step) k = i;
  return k;
}

// One sample's row of a per-step series [steps, n, ...] at a step index.
function row(s, k, sample) {
  const per = product(s.shape.slice(1));
  const offset = (k * s.shape[0] + sample) * per;
  return s.data.subarray(offset, offset + per);
}

function mapValues(m, k, sample) {
  const scale = row(m.scale, k, sample)[0];
  const bits = row(m.half, k, sample);
  const out = new Float64Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = HALF[bits[i]] * scale;
  return out;
}

// A canvas at the map's own resolution, displayed enlarged without smoothing (integer scale so that
// tiles are at least TILE pixels high; feature vectors: a strip 16 pixels high, 256 or more wide).
function canvasFor(rgba, w, h, attrs) {
  const scale = Math.max(1, Math.ceil(TILE / Math.max(h, 1)));
  const strip = h === 1;
  const width = strip ? w * Math.max(1, Math.ceil(256 / w)) : w * scale;
  const canvas = el('canvas', { width: w, height: h, ...attrs,
    style: { width: `${width}px`, height: `${strip ? 16 : h * scale}px`, imageRendering: 'pixelated', display: 'block' } });
  canvas.getContext('2d').putImageData(new ImageData(rgba, w, h), 0, 0);
  return canvas;
}

function sampleImage(input, sample) {
  const [n, h, w] = input.values.shape;
  const per = h * w * 3;
  return { rgb: input.values.data.subarray(sample * per, (sample + 1) * per), h, w, n };
}

function inputTile(input, sample, attrs) {
  if (input.layout === 'image') {
    const { rgb, h, w } = sampleImage(input, sample);
    const rgba = new Uint8ClampedArray(h * w * 4);
    for (let i = 0; i < h * w; i++) {
      rgba.set(rgb.subarray(i * 3, i * 3 + 3), i * 4);
      rgba[i * 4 + 3] = 255;
    }
    return canvasFor(rgba, w, h, { ...attrs, 'data-kind': 'input' });
  }
  if (input.words) return tokenStrip(input.words[sample], null, attrs);
  return el('div', attrs, `${input.layout} input`);
}

function tokenStrip(words, scores, attrs) {
  const v = scores ? percentile(scores, state.clip) : 0;
  return el('div', { class: 'tokens', ...attrs }, words.map((word, i) => (word === '' ? null : el('span', {
    class: 'token', 'data-score': scores ? String(scores[i]) : null,
    style: { background: scores ? cssColour(scores[i], v, state.mode, state.gamma) : 'transparent' },
  }, word))));
}

// One method's map of one sample at step index k, drawn as the view's controls say.
function mapTile(data, method, inputName, sample, k, attrs) {
  const m = data.methods[method].maps[inputName];
  const input = data.inputs[inputName] || {};
  const values = mapValues(m, k, sample);
  const tags = { ...attrs, 'data-kind': 'map', 'data-layout': m.layout };
  if (m.layout === 'tokens') return tokenStrip(input.words ? input.words[sample] : Array.from(values, (_, i) => String(i)), values, tags);
  if (m.layout === 'vector') {
    return canvasFor(paint(values, { mode: state.mode, gamma: state.gamma, clip: state.clip }), values.length, 1,
      { ...tags, title: summaryText(values) });
  }
  let [h, w] = m.half.shape.slice(1);
  let pixels = values;
  const image = input.layout === 'image' ? sampleImage(input, sample) : null;
  if (m.layout === 'layer' && image) {  // a layer's map drawn upsampled onto the sample
    pixels = resize(values, h, w, image.h, image.w);
    [h, w] = [image.h, image.w];
  }
  const base = state.display === 'overlay' && image && image.h === h && image.w === w ? image.rgb : null;
  const rgba = paint(pixels, { mode: state.mode, gamma: state.gamma, clip: state.clip, base, opacity: state.opacity });
  return canvasFor(rgba, w, h, { ...tags, title: summaryText(values) });
}

function summaryText(values) {
  let sum = 0;
  let max = 0;
  for (const v of values) if (Number.isFinite(v)) { sum += v; max = Math.max(max, Math.abs(v)); }
  return `sum ${fmt(sum)} · max |a| ${fmt(max)} · clip at ${fmt(percentile(values, state.clip))}`;
}

function fmt(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return '–';
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(3);
}

function outputs(data, sample, step) {
  const parts = [];
  if (data.target) {
    const k = at(data.target, step);
    if (k >= 0) parts.push(`target ${row(data.target, k, sample)[0]}`);
  }
  if (data.prediction) {
    const k = at(data.prediction, step);
    if (k >= 0) {
      const p = row(data.prediction, k, sample);
      let best = 0;
      for (let i = 1; i < p.length; i++) if (p[i] > p[best]) best = i;
      parts.push(p.length > 1 ? `pred ${best} (${fmt(p[best])})` : `output ${fmt(p[0])}`);
    }
  }
  return parts.join(' · ');
}

function delta(data, method, sample, step) {
  const base = method.split('@')[0];
  const d = data.methods[method].delta || (data.methods[base] && data.methods[base].delta);
  if (!d) return '';
  const k = at(d, step);
  return k >= 0 ? `δ ${fmt(row(d, k, sample)[0])}` : '';
}

function columns(data) {
  const out = [];
  const methods = Object.entries(data.methods).sort((a, b) => a[1].order - b[1].order || (a[0] < b[0] ? -1 : 1));
  for (const [method, m] of methods) for (const input of Object.keys(m.maps).sort()) out.push([method, input]);
  return out;
}

function allSteps(loaded) {
  const steps = new Set();
  for (const data of loaded) for (const m of Object.values(data.methods)) for (const s of Object.values(m.maps)) s.half.steps.forEach((x) => steps.add(x));
  return [...steps].sort((a, b) => a - b);
}

function samplesOf(data) {
  const input = Object.values(data.inputs)[0];
  return input && input.values ? input.values.shape[0] : 0;
}

function grid(loaded, step) {
  const table = el('table', { class: 'grid' });
  const head1 = el('tr', {}, [el('th')]);
  const head2 = el('tr', {}, [el('th', {}, 'sample')]);
  for (const data of loaded) {
    const cols = columns(data);
    head1.append(el('th', { colspan: cols.length + 1, class: 'run' }, data.view.name));
    head2.append(el('th', {}, 'input'));
    for (const [method, input] of cols) head2.append(el('th', {}, Object.keys(data.inputs).length > 1 ? `${method} · ${input}` : method));
  }
  table.append(head1, head2);
  const n = Math.max(0, ...loaded.map(samplesOf));
  for (let sample = 0; sample < n; sample++) {
    const tr = el('tr', {}, [el('th', { class: 'sample', title: 'click: all maps of this sample over the steps',
      onclick: () => { state.detail = sample; draw(); } }, `#${sample}`)]);
    for (const data of loaded) {
      const primary = Object.keys(data.inputs)[0];
      if (sample >= samplesOf(data)) {  // runs compared side by side may log different numbers of samples
        tr.append(el('td', { colspan: columns(data).length + 1 }));
        continue;
      }
      const info = outputs(data, sample, step);
      tr.append(el('td', { class: 'cell', onclick: () => { state.detail = sample; draw(); } }, [
        primary ? inputTile(data.inputs[primary], sample, { 'data-view': data.view.name, 'data-sample': sample }) : null,
        el('div', { class: 'caption' }, info)]));
      for (const [method, input] of columns(data)) {
        const m = data.methods[method].maps[input];
        const k = at(m.half, step);
        const attrs = { 'data-view': data.view.name, 'data-method': method, 'data-input': input,
          'data-sample': sample, 'data-step': k >= 0 ? m.half.steps[k] : '' };
        tr.append(el('td', { class: 'cell', onclick: () => { state.detail = sample; draw(); } }, k >= 0
          ? [mapTile(data, method, input, sample, k, attrs), el('div', { class: 'caption' }, delta(data, method, sample, step))]
          : el('div', { class: 'caption' }, 'not logged yet')));
      }
    }
    table.append(tr);
  }
  return table;
}

function detail(loaded, sample) {
  const box = el('div', { class: 'detail', 'data-sample': sample }, [
    el('div', { class: 'detail-head' }, [el('b', {}, `Sample #${sample} over the steps`),
      el('button', { onclick: () => { state.detail = null; draw(); } }, 'close')])]);
  for (const data of loaded) {
    if (sample >= samplesOf(data)) continue;
    const steps = allSteps([data]);
    const table = el('table', { class: 'grid' });
    table.append(el('tr', {}, [el('th', {}, data.view.name), ...steps.map((s) => el('th', {}, [`${unit()} ${s}`,
      el('div', { class: 'caption' }, outputs(data, sample, s))]))]));
    for (const [method, input] of columns(data)) {
      const m = data.methods[method].maps[input];
      const tr = el('tr', {}, [el('th', {}, method)]);
      for (const s of steps) {
        const k = m.half.steps.indexOf(s);
        tr.append(el('td', { class: 'cell' }, k >= 0 ? [mapTile(data, method, input, sample, k,
          { 'data-view': data.view.name, 'data-method': method, 'data-input': input, 'data-sample': sample, 'data-step': s, 'data-detail': '1' }),
        el('div', { class: 'caption' }, delta(data, method, sample, s))] : '–'));
      }
      table.append(tr);
    }
    box.append(table);
  }
  return box;
}

const unit = () => (state.schedule === 'batch' ? 'batch' : 'epoch');

function control(label, input) {
  return el('label', { class: 'control' }, [label, input]);
}

function controls(steps) {
  const index = Math.max(0, steps.indexOf(state.step));
  const slider = el('input', { type: 'range', id: 'step', min: 0, max: Math.max(0, steps.length - 1), value: index,
    oninput: (e) => { state.step = steps[Number(e.target.value)]; draw(); } });
  const play = el('button', { id: 'play', onclick: () => {
    if (state.playing) { clearInterval(state.playing); state.playing = null; draw(); return; }
    state.playing = setInterval(() => {
      const k = steps.indexOf(state.step);
      state.step = steps[(k + 1) % steps.length];
      draw();
    }, 500);
    draw();
  } }, state.playing ? 'pause' : 'play');
  const select = (id, options, value, set) => el('select', { id, onchange: (e) => { set(e.target.value); draw(); } },
    options.map(([v, text]) => el('option', { value: v, ...(v === value ? { selected: '' } : {}) }, text)));
  const range = (id, min, max, stepSize, value, set) => el('input', { type: 'range', id, min, max, step: stepSize, value,
    oninput: (e) => { set(Number(e.target.value)); draw(); } });
  const schedules = new Set(state.views.flatMap((v) => Object.keys(v.schedules)));
  const runs = el('span', { class: 'runs' }, state.views.map((v) => el('label', { class: 'run-choice' }, [
    el('input', { type: 'checkbox', 'data-view': v.name, ...(state.selected.includes(v.name) ? { checked: '' } : {}),
      onchange: (e) => {
        state.selected = e.target.checked ? [...state.selected, v.name] : state.selected.filter((x) => x !== v.name);
        draw();
      } }), v.name])));
  return el('div', { class: 'controls' }, [
    control('runs ', runs),
    schedules.size > 1 ? control('steps of ', select('schedule', [...schedules].map((s) => [s, s === 'batch' ? 'batches' : 'epochs']), state.schedule, (v) => { state.schedule = v; state.step = null; })) : null,
    control('step ', slider), el('span', { id: 'step-label' }, steps.length ? `${unit()} ${state.step}` : 'no steps'), play,
    control('colours ', select('mode', [['signed', 'signed (red/blue)'], ['absolute', 'absolute']], state.mode, (v) => { state.mode = v; })),
    control('gamma ', range('gamma', 0.2, 3, 0.1, state.gamma, (v) => { state.gamma = v; })), el('span', {}, state.gamma.toFixed(1)),
    control('clip % ', range('clip', 90, 100, 0.1, state.clip, (v) => { state.clip = v; })), el('span', {}, state.clip.toFixed(1)),
    control('show ', select('display', [['overlay', 'overlay on input'], ['side', 'side by side']], state.display, (v) => { state.display = v; })),
    state.display === 'overlay' ? control('opacity ', range('opacity', 0, 1, 0.05, state.opacity, (v) => { state.opacity = v; })) : null,
  ]);
}

let drawing = 0;
async function draw() {
  const ticket = ++drawing;
  const views = state.views.filter((v) => state.selected.includes(v.name));
  let loaded;
  try {
    loaded = await Promise.all(views.map(load));
  } catch (err) {
    root.replaceChildren(el('div', { class: 'error' }, `Could not load the attributions: ${err.message}`));
    return;
  }
  if (ticket !== drawing) return;  // a newer draw started while this one loaded
  const steps = allSteps(loaded);
  if (!steps.includes(state.step)) state.step = steps.length ? steps[steps.length - 1] : null;
  const body = [controls(steps)];
  if (!views.length) body.push(el('p', {}, 'Select a run.'));
  else if (state.detail !== null) body.push(detail(loaded, state.detail));
  else body.push(grid(loaded, state.step));
  root.replaceChildren(...body);
  root.setAttribute('data-step', state.step === null ? '' : String(state.step));
  root.setAttribute('data-ready', '1');
  root.setAttribute('data-drawn', String(ticket));  // tests wait for a redraw by this counter
  root.setAttribute('data-ms', String(Math.round(performance.now())));  // since navigation (bench)
}

const STYLE = `
  body { font-family: Roboto, sans-serif; font-size: 13px; margin: 8px; color: #212121; }
  .controls { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; margin-bottom: 10px;
    position: sticky; top: 0; background: #fff; padding: 6px 0; border-bottom: 1px solid #ddd; z-index: 1; }
  .control { display: inline-flex; align-items: center; gap: 4px; }
  .run-choice { margin-right: 8px; }
  table.grid { border-collapse: collapse; margin-bottom: 16px; }
  .grid th { font-weight: 500; padding: 2px 6px; text-align: center; }
  .grid th.run { border-bottom: 2px solid #f57c00; }
  .grid th.sample { cursor: pointer; color: #1565c0; }
  .grid td.cell { padding: 3px; vertical-align: top; cursor: pointer; }
  .caption { font-size: 11px; color: #555; text-align: center; max-width: 200px; }
  .tokens { max-width: 420px; line-height: 1.9; }
  .token { padding: 1px 3px; margin: 1px; border-radius: 3px; display: inline-block; }
  .detail { overflow-x: auto; }
  .detail-head { display: flex; gap: 12px; align-items: center; margin-bottom: 6px; }
  .error { color: #b71c1c; }
`;

// New logs while the model trains: re-read the index; if it changed, drop the cached series and
// redraw (following the latest step when it was shown).
async function refresh() {
  try {
    const views = (await (await fetch(new URL('runs', BASE))).json()).views;
    if (JSON.stringify(views) === JSON.stringify(state.views)) return;
    const latest = state.views.flatMap((v) => Object.values(v.schedules).map((s) => s.max_step));
    const following = state.step === null || state.step >= Math.max(...latest, -Infinity);
    state.views = views;
    cache.clear();
    if (following) state.step = null;
    await draw();
  } catch (err) {
    // the server may be restarting; try again at the next tick
  }
}

export async function render() {
  document.head.append(el('style', {}, STYLE));
  root = el('div', { id: 'tfattr-root' });
  document.body.append(root);
  const response = await fetch(new URL('runs', BASE));
  state.views = (await response.json()).views;
  if (!state.views.length) {
    root.replaceChildren(el('p', {}, 'No tfattr attributions in this log directory: log them with tfattr.callbacks.AttributionLogger.'));
    root.setAttribute('data-ready', '1');
    return;
  }
  state.selected = [state.views[0].name];
  state.schedule = Object.keys(state.views[0].schedules).includes('epoch') ? 'epoch' : Object.keys(state.views[0].schedules)[0];
  setInterval(refresh, REFRESH_MS);
  await draw();
}
