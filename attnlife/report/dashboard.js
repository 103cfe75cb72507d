// The dashboard's script (plain JavaScript over Plotly); attnlife.report.dashboard inlines it.
// It reads the JSON payload of dashboard_data.build_payload, decodes the base64 arrays on first
// use and draws one Plotly figure per section; controls (selects, sliders, play) restyle in place.
// Step axes follow the figures' rule (report/style.py choose_step_scale): linear, or symmetric-log
// with threshold t (linear on [0, t], log above), whichever spends the width where the plotted
// series change; ticks and hover show the real step numbers.
const PARSE_T0 = performance.now();
const D = JSON.parse(document.getElementById('payload').textContent);
const PARSE_MS = performance.now() - PARSE_T0;
const L = D.n_layer || 0, H = D.n_head || 0;
const CB = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];
const TYPE_COLOURS = {previous_token: CB[0], prev_token: CB[0], local: CB[1], sink: CB[2], self: CB[3], induction: CB[5], mixed: '#EEEEEE'};
const CFG = {displaylogo: false, responsive: true};
const $ = id => document.getElementById(id);
const range = n => Array.from({length: n}, (_, i) => i);
const fin = v => (Number.isFinite(v) ? v : null);
const fmt = s => String(Math.round(Number(s))).replace(/\B(?=(\d{3})+(?!\d))/g, ',');  // 12,345 (toLocaleString is slow)
function bytes(s) { const b = atob(s); const n = b.length, u = new Uint8Array(n); for (let i = 0; i < n; i++) u[i] = b.charCodeAt(i); return u; }
function f32(s) { return new Float32Array(bytes(s).buffer); }
// viridis at 0..1 as #rrggbb (five anchors, linear in between)
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(f) {
  const x = Math.min(Math.max(f, 0), 1) * 4, i = Math.min(3, Math.floor(x)), w = x - i;
  return '#' + VIRIDIS[i].map((a, j) => Math.round(a + (VIRIDIS[i + 1][j] - a) * w).toString(16).padStart(2, '0')).join('');
}
function missing(id, msg) { const el = $(id); el.classList.add('missing'); el.textContent = msg; }
function options(sel, items, chosen) {
  sel.innerHTML = '';
  items.forEach(([v, t]) => { const o = document.createElement('option'); o.value = v; o.textContent = t; if (chosen !== undefined && String(v) === String(chosen)) o.selected = true; sel.appendChild(o); });
}
// every legend sits below its plot's x-axis title (a fixed 78 px under the plot area), so it never
// covers ticks, axis titles or colour bars; no zero lines (step 0 is not a boundary worth a line);
// tick labels never hidden past the plot's edge (ticklabeloverflow 'allow'): Plotly's default
// measures every tick label's box to decide, the largest single cost of drawing at 384 heads, and
// the browser test checks that no label leaves its plot
const LEGEND_GAP_PX = 78;
function base(title, extra) {
  extra = extra || {};
  const height = extra.height || 470, margin = Object.assign({l: 75, r: 30, t: 60, b: 60}, extra.margin || {});
  const plotH = Math.max(100, height - margin.t - margin.b);
  const layout = Object.assign({title: {text: title, font: {size: 14}, x: 0.01, xanchor: 'left'}, height, font: {size: 12},
    legend: {orientation: 'h', x: 0, xanchor: 'left', y: -LEGEND_GAP_PX / plotH, yanchor: 'top', font: {size: 11}}}, extra, {margin});
  const axis = {zeroline: false, ticklabeloverflow: 'allow'};
  Object.keys(layout).filter(k => /^[xy]axis\d*$/.test(k)).forEach(k => { layout[k] = Object.assign({}, axis, layout[k]); });
  if (!layout.xaxis) layout.xaxis = Object.assign({}, axis);
  if (!layout.yaxis) layout.yaxis = Object.assign({}, axis);
  return layout;
}

// ---- step axes: the figures' rule ----------------------------------------------------------
const LINSCALE = 0.5, TIE = 0.02, LINADJ = LINSCALE / (1 - 1 / 10);
function symlog(x, t) { const a = Math.abs(x); return a <= t ? x * LINADJ : Math.sign(x) * t * (LINADJ + Math.log10(a / t)); }
function changeShare(steps, series) {
  const n = steps.length, per = new Float64Array(Math.max(n - 1, 0));
  series.forEach(v => {
    let total = 0; const d = new Float64Array(n - 1);
    for (let i = 0; i + 1 < n; i++) { const x = Math.abs(v[i + 1] - v[i]); d[i] = Number.isFinite(x) ? x : 0; total += d[i]; }
    if (total > 0) for (let i = 0; i + 1 < n; i++) per[i] += d[i] / total;
  });
  let sum = per.reduce((a, b) => a + b, 0);
  if (!(sum > 0)) { per.fill(1); sum = n - 1; }
  const out = [0]; let acc = 0;
  for (let i = 0; i + 1 < n; i++) { acc += per[i]; out.push(acc / sum); }
  return out;
}
// threshold t of a symmetric-log axis, or null for linear (series: arrays aligned with steps)
function chooseStepScale(steps, series) {
  const n = steps.length;
  if (n < 3 || steps[n - 1] <= 0 || steps[0] < 0) return null;
  const share = changeShare(steps, series || []);
  // compared on the steps and a dense grid between them, change growing linearly inside an interval
  const lo = steps[0], hi = steps[n - 1], grid = steps.slice();
  for (let i = 0; i < 200; i++) { grid.push(lo + (hi - lo) * i / 199); grid.push(Math.max(lo, 1) * (hi / Math.max(lo, 1)) ** (i / 199)); }
  grid.sort((a, b) => a - b);
  let j = 0;
  const change = grid.map(x => { while (j + 1 < n - 1 && steps[j + 1] <= x) j++; const a = steps[j], b = steps[Math.min(j + 1, n - 1)];
    return b > a ? share[j] + (share[j + 1] - share[j]) * Math.min(1, Math.max(0, (x - a) / (b - a))) : share[j]; });
  const cands = [null];
  for (let t = 1; t < hi / 8; t *= 2) cands.push(t);
  let gaps = cands.map(t => {
    const pos = grid.map(s => (t === null ? s : symlog(s, t))), span = pos[pos.length - 1] - pos[0];
    let g = 0; for (let i = 0; i < grid.length; i++) g = Math.max(g, Math.abs((pos[i] - pos[0]) / span - change[i]));
    return g;
  });
  // never stretch one interval between neighbouring plotted steps over more than a quarter of the axis
  const stretched = cands.map(t => { const at = steps.map(s => (t === null ? s : symlog(s, t))), span = at[n - 1] - at[0];
    let m = 0; for (let i = 0; i + 1 < n; i++) m = Math.max(m, (at[i + 1] - at[i]) / span); return m > 0.25; });
  if (!stretched.every(Boolean)) gaps = gaps.map((g, i) => (stretched[i] ? Infinity : g));
  const best = Math.min(...gaps);
  const near = cands.filter((t, i) => gaps[i] <= best + TIE);
  return near.includes(null) ? null : Math.max(...near);
}
function stepTicks(hi, t) {
  const ticks = [0]; if (t >= 1 && t <= hi) ticks.push(t);
  let above = [];
  for (let k = 0; k < 12; k++) [1, 2, 5].forEach(m => { const d = m * 10 ** k; if (d > t * 1.4 && d <= hi) above.push(d); });
  if (above.length > 6) above = above.filter(d => String(d)[0] === '1');
  return ticks.concat(above);
}
// {t, x(step) -> position, axis: Plotly axis object}; `label` titles the axis
function stepAxis(steps, series, label) {
  const t = chooseStepScale(steps, series);
  label = label || 'training step (optimizer updates)';
  if (t === null) return {t, x: s => s, axis: {title: {text: label}}};
  const hi = steps[steps.length - 1], ticks = stepTicks(hi * 1.1, t);
  return {t, x: s => symlog(s, t), axis: {title: {text: label + (t > 1 ? ', log above ' + fmt(t) : ', log scale')},
    tickmode: 'array', tickvals: ticks.map(v => symlog(v, t)), ticktext: ticks.map(fmt)}};
}
// a line trace on a step axis; hover shows the real step
function stepTrace(ax, steps, y, extra) {
  return Object.assign({x: steps.map(ax.x), y, customdata: steps, hovertemplate: 'step %{customdata:,}: %{y:.4g}<extra>%{fullData.name}</extra>'}, extra);
}
// mean +- stderr band as two traces (upper invisible, lower filled to it)
function bandTraces(ax, steps, y, se, colour, group) {
  const up = [], lo = [];
  for (let i = 0; i < y.length; i++) { const ok = Number.isFinite(y[i]) && Number.isFinite(se[i]); up.push(ok ? y[i] + se[i] : null); lo.push(ok ? y[i] - se[i] : null); }
  const common = {x: steps.map(ax.x), mode: 'lines', line: {width: 0, color: colour}, hoverinfo: 'skip', showlegend: false, legendgroup: group};
  return [Object.assign({y: up}, common), Object.assign({y: lo, fill: 'tonexty', fillcolor: colour + '38'}, common)];
}
function phaseShapes(ax, scope) {
  return (D.phases || []).filter(p => p.scope === scope).sort((a, b) => a.start_step - b.start_step).slice(1)
    .map(p => ({type: 'line', xref: 'x', yref: 'paper', x0: ax.x(p.start_step), x1: ax.x(p.start_step), y0: 0, y1: 1, line: {dash: 'dash', color: '#555', width: 1}}));
}

// ---- per-head cubes, decoded on first use ---------------------------------------------------
const CUBES = {};
function cube(name) {
  if (!CUBES[name]) { const s = D.stats[name]; CUBES[name] = {steps: s.steps, unit: s.unit, v: f32(s.values), se: s.stderr ? f32(s.stderr) : null}; }
  return CUBES[name];
}
const at = (c, si, l, h) => c.v[(si * L + l) * H + h];
function meanOver(arr, c, si, ls, hs) {
  let a = 0, n = 0;
  for (const l of ls) for (const h of hs) { const x = arr[(si * L + l) * H + h]; if (Number.isFinite(x)) { a += x; n++; } }
  return n ? a / n : null;
}
const ALL_L = range(L), ALL_H = range(H);

// ---- sections --------------------------------------------------------------------------------
function drawCurves() {
  const c = D.curves || {}, tr = [], series = [], stepsAll = new Set();
  ['train_loss_smooth', 'val_loss', 'probe_loss'].forEach(k => { if (c[k]) c[k].step.forEach(s => stepsAll.add(s)); });
  if (!stepsAll.size && !c.lr) return missing('plot-curves', 'no loss rows: `attnlife train` and the HF / Lightning callbacks log them');
  const steps = Array.from(stepsAll).sort((a, b) => a - b);
  // the rule sees every loss curve on the union of their steps (linear interpolation inside)
  const interp = k => { const s = c[k].step, v = c[k].value; let j = 0; return steps.map(x => { while (j + 1 < s.length && s[j + 1] <= x) j++; if (x < s[0] || x > s[s.length - 1]) return NaN; if (j + 1 >= s.length || s[j] === x) return v[j]; return v[j] + (v[j + 1] - v[j]) * (x - s[j]) / (s[j + 1] - s[j]); }); };
  ['train_loss_smooth', 'val_loss', 'probe_loss'].forEach(k => { if (c[k]) series.push(interp(k)); });
  const ax = stepAxis(steps.length ? steps : c.lr.step, series);
  if (c.train_loss) tr.push(stepTrace(ax, c.train_loss.step, c.train_loss.value, {name: 'train loss (raw)', line: {color: CB[0], width: 0.8}, opacity: 0.35}));
  if (c.train_loss_smooth) tr.push(stepTrace(ax, c.train_loss_smooth.step, c.train_loss_smooth.value, {name: 'train loss (trailing mean)', line: {color: CB[0], width: 2}}));
  if (c.val_loss) tr.push(stepTrace(ax, c.val_loss.step, c.val_loss.value, {name: 'val loss (dotted between evals)', mode: 'lines+markers', marker: {size: 6}, line: {color: CB[5], width: 1, dash: 'dot'}}));
  if (c.probe_loss) {
    if (c.probe_loss.stderr) tr.push(...bandTraces(ax, c.probe_loss.step, c.probe_loss.value, c.probe_loss.stderr, CB[2], 'probe'));
    tr.push(stepTrace(ax, c.probe_loss.step, c.probe_loss.value, {name: 'probe loss' + (c.probe_loss.stderr ? ' (+- s.e.)' : ''), mode: 'lines+markers', marker: {size: 4}, line: {color: CB[2]}, legendgroup: 'probe'}));
  }
  if (c.lr) tr.push(stepTrace(ax, c.lr.step, c.lr.value, {name: 'learning rate (right axis)', yaxis: 'y2', line: {color: '#777', dash: 'dot'}}));
  let title = 'Loss and learning rate';
  if (c.train_loss) { const v = c.train_loss.value, s = c.train_loss.step; title = 'Training loss ' + v[0].toFixed(2) + ' at step ' + fmt(s[0]) + ' -> ' + v[v.length - 1].toFixed(2) + ' nats/token at step ' + fmt(s[s.length - 1]); }
  if (c.val_loss) { const v = c.val_loss.value; let b = 0; v.forEach((x, i) => { if (x < v[b]) b = i; }); title += '; lowest val loss ' + v[b].toFixed(3) + ' at step ' + fmt(c.val_loss.step[b]); }
  Plotly.newPlot('plot-curves', tr, base(title, {xaxis: ax.axis, yaxis: {title: {text: 'loss (nats / token)'}},
    yaxis2: {title: {text: 'learning rate'}, overlaying: 'y', side: 'right', showgrid: false, rangemode: 'nonnegative', tickformat: '.1e', automargin: true}}), CFG);
}

function attentionNames() { return Object.keys(D.stats || {}).filter(k => D.stats[k].source === 'attention'); }
function drawAttention() {
  const names = attentionNames();
  if (!names.length) return missing('plot-attention', 'no per-head attention metrics: run `attnlife train` with tracking, or `attnlife track RUN`');
  options($('att-metric'), names.map(n => [n, n + ' (' + D.stats[n].unit + ')']), names.includes('entropy_bits') ? 'entropy_bits' : names[0]);
  options($('att-layer'), [['all', 'all layers (head mean)']].concat(range(L).map(l => [l, 'layer ' + l])), 'all');
  const redraw = () => {
    const c = cube($('att-metric').value), which = $('att-layer').value, S = c.steps.length, si = range(S);
    const lines = [];  // {name, y, se, colour, width, dash}
    const colour = (i, n) => (n <= 8 ? CB[i % 8] : viridis(i / Math.max(n - 1, 1)));
    if (which === 'all') {
      range(L).forEach(l => lines.push({name: 'L' + l, y: si.map(s => meanOver(c.v, c, s, [l], ALL_H)),
        se: c.se ? si.map(s => meanOver(c.se, c, s, [l], ALL_H)) : null, colour: colour(l, L), width: 2}));
    } else {
      const l = +which;
      range(H).forEach(h => lines.push({name: 'L' + l + 'H' + h, y: si.map(s => fin(at(c, s, l, h))), se: null, colour: colour(h, H), width: 1}));
      lines.push({name: 'L' + l + ' mean', y: si.map(s => meanOver(c.v, c, s, [l], ALL_H)),
        se: c.se ? si.map(s => meanOver(c.se, c, s, [l], ALL_H)) : null, colour: CB[5], width: 3, dash: 'dash'});
    }
    const ax = stepAxis(c.steps, lines.map(t => t.y));
    const tr = [], bands = lines.length <= 9;  // 24 layers of bands hide each other: per-layer view then
    const many = which === 'all' ? L > 8 : H > 8;  // viridis lines and a colour bar instead of a long legend
    lines.forEach((t, i) => {
      if (t.se && bands) tr.push(...bandTraces(ax, c.steps, t.y, t.se, t.colour, 'g' + i));
      tr.push(stepTrace(ax, c.steps, t.y, {name: t.name + (t.se && bands ? ' (+- s.e.)' : ''), legendgroup: 'g' + i,
        showlegend: !many || t.dash === 'dash', line: {color: t.colour, width: t.width, dash: t.dash}}));
    });
    if (many) {
      const n = which === 'all' ? L : H;
      tr.push({x: [null], y: [null], mode: 'markers', hoverinfo: 'skip', showlegend: false,
        marker: {color: [0], cmin: -0.5, cmax: n - 0.5, colorscale: 'Viridis', showscale: true,
                 colorbar: {title: {text: which === 'all' ? 'layer' : 'head', side: 'right'}, thickness: 14, ticklabeloverflow: 'allow'}}});
    }
    const metric = $('att-metric').value;
    const what = which === 'all' ? 'per layer (head mean' + (c.se ? (bands ? '; band: mean of the heads\' standard errors)' : '; standard-error bands in the one-layer view)') : ')') : 'per head of layer ' + which;
    Plotly.react('plot-attention', tr, base(metric + ' ' + what + (phaseShapes(ax, 'model').length ? '; dashed: phase boundaries' : ''),
      {xaxis: ax.axis, yaxis: {title: {text: metric + ' (' + c.unit + ')'}}, shapes: phaseShapes(ax, which === 'all' ? 'model' : 'L' + which),
      }), CFG);
  };
  $('att-metric').onchange = redraw; $('att-layer').onchange = redraw; redraw();
}

const ARCH = {timer: null, si: 1e9};  // starts at the last checkpoint
function archFrame(c) { const z = []; for (let l = 0; l < L; l++) { const row = new Array(H); for (let h = 0; h < H; h++) row[h] = fin(at(c, ARCH.si, l, h)); z.push(row); } return z; }
function archTitle(c) {
  let lo = null, hi = null;
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) { const x = at(c, ARCH.si, l, h); if (!Number.isFinite(x)) continue; if (!lo || x < lo[0]) lo = [x, l, h]; if (!hi || x > hi[0]) hi = [x, l, h]; }
  const name = $('arch-stat').value, at_ = ' at step ' + fmt(c.steps[ARCH.si]);
  if (!lo) return name + at_ + ': no values';
  return name + at_ + ': lowest L' + lo[1] + 'H' + lo[2] + ' (' + lo[0].toPrecision(3) + '), highest L' + hi[1] + 'H' + hi[2] + ' (' + hi[0].toPrecision(3) + ' ' + c.unit + ')' +
    '; right: layer means, below: head means over layers, over training';
}
function archLabel(c) { $('arch-step').textContent = 'step ' + fmt(c.steps[ARCH.si]); }
function drawArch() {
  const names = Object.keys(D.stats || {});
  if (!names.length) return missing('plot-arch', 'no per-head statistics: run `attnlife train` with tracking, or `attnlife spectra RUN`');
  options($('arch-stat'), names.map(n => [n, n + ' (' + D.stats[n].unit + ')']), names[0]);
  let ax = null;
  const shapes = c => [
    {type: 'line', xref: 'x2', yref: 'y2', x0: ax.x(c.steps[ARCH.si]), x1: ax.x(c.steps[ARCH.si]), y0: -0.5, y1: L - 0.5, line: {color: 'white', width: 2}},
    {type: 'line', xref: 'x3', yref: 'y3', y0: ax.x(c.steps[ARCH.si]), y1: ax.x(c.steps[ARCH.si]), x0: -0.5, x1: H - 0.5, line: {color: 'white', width: 2}}];
  const full = () => {
    const c = cube($('arch-stat').value), S = c.steps.length, si = range(S);
    ARCH.si = Math.min(ARCH.si, S - 1);
    $('arch-slider').max = S - 1; $('arch-slider').value = ARCH.si;
    let zmin = Infinity, zmax = -Infinity;
    for (let i = 0; i < c.v.length; i++) { const x = c.v[i]; if (x < zmin) zmin = x; if (x > zmax) zmax = x; }
    const layerMeans = range(L).map(l => si.map(s => meanOver(c.v, c, s, [l], ALL_H)));
    const headMeans = si.map(s => range(H).map(h => meanOver(c.v, c, s, ALL_L, [h])));
    ax = stepAxis(c.steps, layerMeans);
    const pos = c.steps.map(ax.x);  // cells as wide as the steps they cover
    const tr = [
      {type: 'heatmap', z: archFrame(c), x: range(H), y: range(L), zmin, zmax, colorscale: 'Viridis', colorbar: {ticklabeloverflow: 'allow', title: {text: c.unit, side: 'right'}, x: 1.0, xanchor: 'left', len: 0.62, y: 1, yanchor: 'top'},
       hovertemplate: 'L%{y}H%{x}: %{z:.4g}<extra></extra>'},
      {type: 'heatmap', z: layerMeans, x: pos, y: range(L), xaxis: 'x2', yaxis: 'y2', zmin, zmax, customdata: range(L).map(() => c.steps),
       colorscale: 'Viridis', showscale: false, hovertemplate: 'layer %{y} mean at step %{customdata:,}: %{z:.4g}<extra></extra>'},
      {type: 'heatmap', z: headMeans, x: range(H), y: pos, xaxis: 'x3', yaxis: 'y3', zmin, zmax, customdata: c.steps.map(s => range(H).map(() => s)),
       colorscale: 'Viridis', showscale: false, hovertemplate: 'head %{x} mean over layers at step %{customdata:,}: %{z:.4g}<extra></extra>'}];
    const layerTicks = {tickmode: 'array', tickvals: range(L).filter(l => l % Math.max(1, Math.ceil(L / 12)) === 0)};
    const headTicks = {tickmode: 'array', tickvals: range(H).filter(h => h % Math.max(1, Math.ceil(H / 16)) === 0)};
    const stepTitle = ax.axis.title.text.replace('training step (optimizer updates)', 'step');
    Plotly.react('plot-arch', tr, base(archTitle(c), {
      height: 660, shapes: shapes(c), margin: {l: 75, r: 90, t: 60, b: 60},
      xaxis: Object.assign({domain: [0, 0.55], anchor: 'y', title: {text: 'head index'}}, headTicks),
      yaxis: Object.assign({domain: [0.42, 1], anchor: 'x', title: {text: 'layer'}, autorange: 'reversed'}, layerTicks),
      xaxis2: Object.assign({}, ax.axis, {domain: [0.64, 0.9], anchor: 'y2', title: {text: stepTitle}}),
      yaxis2: Object.assign({domain: [0.42, 1], anchor: 'x2', autorange: 'reversed', title: {text: 'layer'}}, layerTicks),
      xaxis3: Object.assign({domain: [0, 0.55], anchor: 'y3', title: {text: 'head index (mean over layers)'}}, headTicks),
      yaxis3: Object.assign({}, ax.axis, {domain: [0, 0.3], anchor: 'x3', autorange: 'reversed', title: {text: stepTitle}})}), CFG);
    archLabel(c);
  };
  const step = () => { const c = cube($('arch-stat').value); Plotly.update('plot-arch', {z: [archFrame(c)]}, {shapes: shapes(c), 'title.text': archTitle(c)}, [0]); archLabel(c); };
  $('arch-stat').onchange = full;
  $('arch-slider').oninput = () => { ARCH.si = +$('arch-slider').value; step(); };
  $('arch-play').onclick = () => {
    if (ARCH.timer) { clearInterval(ARCH.timer); ARCH.timer = null; $('arch-play').textContent = '\u25B6 play'; return; }
    $('arch-play').textContent = '\u23F8 pause';
    ARCH.timer = setInterval(() => { const S = cube($('arch-stat').value).steps.length; ARCH.si = (ARCH.si + 1) % S; $('arch-slider').value = ARCH.si; step(); }, 500);
  };
  full();
}

// 'W_QK of L0H3: lambda_1 grows x237 (0.0074 -> 10.6) from step 0 to 2,000', from the first drawn index.
function eigenTitle(l, h, ks, ys, steps) {
  const head = 'W_QK eigenvalues of L' + l + 'H' + h;
  if (!ks.length) return head + ': pick an index';
  const idx = ys[0].map((y, s) => (y !== null && y > 0 ? s : -1)).filter(s => s >= 0);
  if (idx.length < 2) return head;
  const a = ys[0][idx[0]], b = ys[0][idx[idx.length - 1]], r = b / a;
  return head + ': lambda_' + (ks[0] + 1) + (r >= 1 ? ' grows x' : ' shrinks x') + (r >= 1 ? r : 1 / r).toPrecision(3) + ' (' +
    a.toPrecision(3) + ' -> ' + b.toPrecision(3) + ') from step ' + fmt(steps[idx[0]]) + ' to ' + fmt(steps[idx[idx.length - 1]]);
}

// 'distinct_2 0.98 -> 0.84, mean_logprob_nats -4.30 -> -1.47 from step 0 to 2,000' (first and last sampled step).
function samplesTitle(s, names) {
  const ends = names.filter(n => s.metrics[n].value.some(v => v !== null)).slice(0, 6).map(n => {
    const m = s.metrics[n], ok = m.value.map((v, i) => (v !== null ? i : -1)).filter(i => i >= 0);
    return [n, m.value[ok[0]], m.value[ok[ok.length - 1]], m.step[ok[0]], m.step[ok[ok.length - 1]]];
  });
  const pick = ends.filter(e => e[0] === 'distinct_2' || e[0] === 'mean_logprob_nats');
  const shown = (pick.length ? pick : ends.slice(0, 2));
  if (!shown.length) return 'Generation quality of samples over training';
  return 'Generation quality: ' + shown.map(e => e[0] + ' ' + e[1].toFixed(2) + ' -> ' + e[2].toFixed(2)).join(', ') +
    ' from step ' + fmt(shown[0][3]) + ' to ' + fmt(shown[0][4]);
}

function drawEigen() {
  const e = D.eigen;
  if (!e) return missing('plot-eigen', 'no eigenvalue arrays: run `attnlife spectra RUN`');
  let v = null;
  const S = e.steps.length, K = e.k;
  options($('eig-layer'), range(L).map(l => [l, 'layer ' + l]), 0);
  options($('eig-head'), range(H).map(h => [h, 'head ' + h]), 0);
  options($('eig-index'), range(K).map(k => [k, 'lambda_' + (k + 1)]));
  Array.from($('eig-index').options).forEach((o, i) => { o.selected = i < 4; });
  const redraw = () => {
    v = v || f32(e.values);
    const l = +$('eig-layer').value, h = +$('eig-head').value;
    const ks = Array.from($('eig-index').selectedOptions).map(o => +o.value);
    const ys = ks.map(k => range(S).map(s => fin(v[((s * L + l) * H + h) * K + k])));
    const ax = stepAxis(e.steps, ys.map(y => y.map(x => (x > 0 ? Math.log(x) : NaN))));
    const tr = ks.map((k, i) => stepTrace(ax, e.steps, ys[i], {name: 'lambda_' + (k + 1), line: {color: CB[k % 8]}}));
    Plotly.react('plot-eigen', tr, base(eigenTitle(l, h, ks, ys, e.steps), {xaxis: ax.axis,
      yaxis: {type: 'log', title: {text: 'lambda_k (weight units^2, log scale)'}}}), CFG);
  };
  ['eig-layer', 'eig-head', 'eig-index'].forEach(id => { $(id).onchange = redraw; }); redraw();
}

function drawPatterns() {
  const p = D.snapshots;
  if (!p) return missing('plot-patterns', 'no attention snapshots: the tracker stores them during `attnlife train` (tracking on); the probe pass (`attnlife track`) stores none');
  let v = null;
  const T = p.t, S = p.steps.length, pool = p.pool || 1, tokens = p.tokens || T;
  // opens on the first head of the snapshot figure's rule (the earliest head that took a type), said below the controls
  const heads = (p.heads || []).filter(c => c.layer < L && c.head < H), open = heads[0] || {layer: 0, head: 0, note: ''};
  const key = c => c.layer + ':' + c.head;
  options($('pat-pick'), heads.map(c => [key(c), 'L' + c.layer + 'H' + c.head + (c.note ? ' (' + c.note.replace(/_/g, ' ') + ')' : '')]), key(open));
  options($('pat-layer'), range(L).map(l => [l, 'layer ' + l]), open.layer);
  options($('pat-head'), range(H).map(h => [h, 'head ' + h]), open.head);
  $('pat-why').textContent = heads.length ? 'Opened on L' + open.layer + 'H' + open.head + (open.note ? ' (' + open.note.replace(/_/g, ' ') + ')' : '') +
    ': the first of ' + heads.length + ' ' + (p.rule || 'heads') + '.' : 'Opened on L0H0 (no head chosen).';
  if (!/emerged as a type/.test(p.rule || '')) $('pat-pick-label').textContent = /--heads/.test(p.rule || '') ? 'chosen head' : 'head over the depth';
  $('pat-pick').onchange = () => { const [l, h] = $('pat-pick').value.split(':'); $('pat-layer').value = l; $('pat-head').value = h; redraw(); };
  $('pat-slider').max = S - 1; $('pat-slider').value = S - 1;
  const size = pool === 1 ? 'all ' + tokens + ' x ' + tokens + ' positions' : tokens + ' x ' + tokens + ' positions mean-pooled ' + pool + 'x' + pool + ' to ' + T + ' x ' + T;
  const axisPos = range(T).map(i => i * pool);
  const redraw = () => {
    v = v || bytes(p.values);
    const l = +$('pat-layer').value, h = +$('pat-head').value, si = +$('pat-slider').value;
    const lower = p.packing === 'lower', per = lower ? T * (T + 1) / 2 : T * T, off = ((si * L + l) * H + h) * per;
    const z = [];
    for (let i = 0; i < T; i++) {
      const row = new Array(T).fill(0), start = off + (lower ? i * (i + 1) / 2 : i * T), n = lower ? i + 1 : T;
      for (let j = 0; j < n; j++) row[j] = v[start + j] / 255;
      z.push(row);
    }
    $('pat-step').textContent = 'step ' + fmt(p.steps[si]);
    Plotly.react('plot-patterns', [{type: 'heatmap', z, x: axisPos, y: axisPos, zmin: 0, zmax: 1, colorscale: 'Cividis', colorbar: {title: {text: 'probability', side: 'right'}, ticklabeloverflow: 'allow'},
      hovertemplate: 'query %{y}, key %{x}: %{z:.3f}<extra></extra>'}], base('Attention pattern of L' + l + 'H' + h + ' at step ' + fmt(p.steps[si]) + ' (' + size + ')', {
      height: 560, xaxis: {title: {text: 'key position (tokens)'}, constrain: 'domain'}, yaxis: {title: {text: 'query position (tokens)'}, autorange: 'reversed', scaleanchor: 'x'}}), CFG);
  };
  ['pat-layer', 'pat-head'].forEach(id => { $(id).onchange = redraw; }); $('pat-slider').oninput = redraw; redraw();
}

function drawUmap() {
  const u = D.umap;
  if (!u || !u.points.length) return missing('plot-umap', 'no trajectory embedding: run `attnlife analyze RUN`');
  const info = u.info || {}, pca = String(info.method || '').startsWith('pca');
  const ex = [], ey = [];
  (u.edges || []).forEach(e => { const a = u.points[e.src], b = u.points[e.dst]; ex.push(a.x, b.x, null); ey.push(a.y, b.y, null); });
  const k = info.n_neighbors;
  const tr = [{x: ex, y: ey, mode: 'lines', line: {color: '#bbb', width: 1}, hoverinfo: 'skip',
    name: k ? 'edge: one of a head\'s ' + k + ' nearest heads (trajectory space)' : 'nearest-neighbour edges (trajectory space)'}];
  const clusters = Array.from(new Set(u.points.map(p => (p.cluster === null || p.cluster === undefined ? 0 : p.cluster)))).sort((a, b) => a - b);
  const symbols = ['circle', 'square', 'diamond', 'triangle-up', 'triangle-down', 'cross', 'x', 'star'];
  clusters.forEach((c, i) => {
    const pts = u.points.filter(p => (p.cluster === null || p.cluster === undefined ? 0 : p.cluster) === c);
    tr.push({x: pts.map(p => p.x), y: pts.map(p => p.y), mode: u.points.length <= 48 ? 'markers+text' : 'markers', textposition: 'top right', textfont: {size: 9},
      texttemplate: u.points.length <= 48 ? pts.map(p => 'L' + p.layer + 'H' + p.head_index) : undefined, name: clusters.length > 1 ? 'cluster ' + c + ' (' + pts.length + (pts.length === 1 ? ' head)' : ' heads)') : 'all ' + pts.length + ' heads (one cluster)',
      text: pts.map(p => 'L' + p.layer + 'H' + p.head_index + ' (layer ' + p.layer + ', cluster ' + c + ')'), hovertemplate: '%{text}<extra></extra>',
      marker: {size: 10, color: clusters.length > 1 ? CB[i % 8] : '#777', symbol: symbols[i % symbols.length], line: {width: 0.5, color: 'black'}}});
  });
  const how = pca ? 'PCA (too few heads for UMAP)' : 'UMAP';
  const found = clusters.length > 1 ? clusters.length + ' k-means clusters' + (Number.isFinite(info.silhouette) ? ' (silhouette ' + info.silhouette.toFixed(2) + ')' : '') : 'no cluster structure';
  const ex1 = (info.explained || [])[0], ex2 = (info.explained || [])[1];
  Plotly.newPlot('plot-umap', tr, base('Head trajectories of ' + u.points.length + ' heads by ' + how + ': ' + found + ' (hover names the head)', {
    xaxis: {title: {text: pca && Number.isFinite(ex1) ? 'principal component 1 (' + Math.round(100 * ex1) + '% of variance)' : 'UMAP 1 (arbitrary units)'}},
    yaxis: {title: {text: pca && Number.isFinite(ex2) ? 'principal component 2 (' + Math.round(100 * ex2) + '% of variance)' : 'UMAP 2 (arbitrary units)'}}}), CFG);
}

function drawTypes() {
  const t = D.types;
  if (!t || !t.lanes || !t.lanes.length) return missing('plot-types', 'no head types: run `attnlife track RUN` then `attnlife analyze RUN`');
  const c = D.curves || {};
  const loss = c.probe_loss || c.train_loss_smooth || c.val_loss;
  const lossName = c.probe_loss ? 'probe loss (held-out probe set' + (c.probe_loss.stderr ? ', +- s.e.)' : ')') : c.train_loss_smooth ? 'training loss (trailing mean)' : 'validation loss';
  // the axis follows both panels: the number of heads carrying a type and the loss
  const mixed = t.kinds.indexOf('mixed');
  const typedAt = t.steps.map((_, j) => t.codes.filter(row => row[j] !== mixed).length);
  const axSteps = Array.from(new Set(t.steps.concat(loss ? loss.step : []))).sort((a, b) => a - b);
  const onSteps = (xs, ys) => axSteps.map(x => { let j = 0; while (j + 1 < xs.length && xs[j + 1] <= x) j++;
    if (x <= xs[0]) return ys[0]; if (j + 1 >= xs.length) return ys[xs.length - 1]; return ys[j] + (ys[j + 1] - ys[j]) * (x - xs[j]) / (xs[j + 1] - xs[j]); });
  const ax = stepAxis(axSteps, [onSteps(t.steps, typedAt)].concat(loss ? [onSteps(loss.step, loss.value)] : []));
  const n = t.kinds.length, scale = [];
  t.kinds.forEach((k, i) => { const col = TYPE_COLOURS[k] || CB[4]; scale.push([i / n, col], [(i + 1) / n, col]); });
  const lanes = t.lanes.length, laneH = Math.max(12, Math.min(26, 420 / lanes));
  const top = lanes * laneH, bottom = 200;
  const last = t.steps[t.steps.length - 1], edges = t.steps.concat([last + Math.max(1, 0.03 * last)]).map(ax.x);
  const tr = [{type: 'heatmap', z: t.codes, x: edges, y: range(lanes), zmin: -0.5, zmax: n - 0.5, colorscale: scale, showscale: false, xgap: 0, ygap: 1,
    customdata: t.codes.map(row => row.map((k, j) => [t.kinds[k], t.steps[j]])), text: t.codes.map((row, i) => row.map(() => t.lanes[i])),
    hovertemplate: '%{text} at step %{customdata[1]:,}: %{customdata[0]}<extra></extra>', yaxis: 'y', xaxis: 'x'}];
  t.kinds.forEach(k => tr.push({x: [null], y: [null], mode: 'markers', marker: {symbol: 'square', size: 12, color: TYPE_COLOURS[k] || CB[4], line: {width: k === 'mixed' ? 1 : 0, color: '#999'}},
    name: k.replace('_', ' ') + (k === 'mixed' ? ' (no type)' : ''), hoverinfo: 'skip'}));
  if (t.emergence.length) tr.push({x: t.emergence.map(e => ax.x(e.step)), y: t.emergence.map(e => e.lane), mode: 'markers', name: 'type emerged',
    marker: {symbol: 'line-ns', size: laneH, line: {width: 2.5, color: 'black'}}, customdata: t.emergence.map(e => [e.type, e.step]),
    text: t.emergence.map(e => t.lanes[e.lane]), hovertemplate: '%{text} became %{customdata[0]} at step %{customdata[1]:,}<extra></extra>'});
  if (loss) {
    if (loss.stderr) tr.push(...bandTraces(ax, loss.step, loss.value, loss.stderr, CB[0], 'loss').map(b => Object.assign(b, {xaxis: 'x', yaxis: 'y2'})));
    tr.push(stepTrace(ax, loss.step, loss.value, {name: lossName, mode: loss.step.length < 200 ? 'lines+markers' : 'lines', marker: {size: 4}, line: {color: CB[0]}, xaxis: 'x', yaxis: 'y2', legendgroup: 'loss'}));
  }
  const shapes = (D.induction_phase || []).map(p => ({type: 'line', xref: 'x', yref: 'paper', x0: ax.x(p.step), x1: ax.x(p.step), y0: 0, y1: 1, line: {dash: 'dash', color: 'black'}}));
  const heads = new Set(t.emergence.map(e => e.lane)).size;
  const first = t.emergence.slice().sort((a, b) => a.step - b.step)[0];
  const title = heads ? heads + ' heads took a type; first ' + t.lanes[first.lane] + ' (' + first.type.replace('_', ' ') + ') at step ' + fmt(first.step) : 'No head type emerged';
  const frac = top / (top + bottom);
  Plotly.newPlot('plot-types', tr, base(title + (t.left_out ? '; ' + t.left_out + ' heads without a type not shown' : '') + (shapes.length ? '; dashed: induction phase change' : ''), {
    height: top + bottom + 170, shapes, margin: {l: 75, r: 30, t: 60, b: 60},
    xaxis: Object.assign({}, ax.axis, {anchor: 'y2'}),
    yaxis: {domain: [1 - frac + 0.04, 1], tickmode: 'array', tickvals: range(lanes), ticktext: t.lanes, autorange: 'reversed', title: {text: 'head'}, showgrid: false, tickfont: {size: lanes > 24 ? 9 : 11}},
    yaxis2: {domain: [0, 1 - frac - 0.02], title: {text: 'loss (nats / token)'}}}), CFG);
}

function drawClaims() {
  const c = D.claims;
  if (!c || !c.length) return missing('plot-claims', 'no claims table: run `attnlife analyze RUN`');
  const cols = ['source', 'claim', 'measured', 'verdict', 'reason'];
  const table = document.createElement('table'); table.className = 'claims';
  const head = table.createTHead().insertRow();
  cols.forEach(k => { const th = document.createElement('th'); th.textContent = k; head.appendChild(th); });
  const body = table.createTBody();
  c.forEach(r => {
    const row = body.insertRow(); row.className = 'verdict-' + String(r.verdict).replace(/ /g, '-');
    cols.forEach(k => { row.insertCell().textContent = r[k] === null || r[k] === undefined ? '' : String(r[k]); });
  });
  const tally = v => c.filter(r => r.verdict === v).length;
  const cap = table.createCaption(); cap.textContent = 'Published claims checked on this run: ' + tally('holds') + ' hold, ' + tally('does not hold') + ' do not, ' + tally('not applicable') + ' not applicable';
  const el = $('plot-claims'); el.classList.remove('plot'); el.appendChild(table);
}

function drawSamples() {
  const s = D.samples || {}, names = Object.keys(s.metrics || {});
  if (!names.length && !(s.texts || []).length) return missing('plot-samples', 'no generation-quality rows: run `attnlife train --sample-every N` or `attnlife analyze RUN` (split sample)');
  if (names.length) {
    const steps = Array.from(new Set(names.flatMap(n => s.metrics[n].step))).sort((a, b) => a - b);
    const ax = stepAxis(steps, names.filter(n => s.metrics[n].step.length === steps.length).map(n => s.metrics[n].value));
    const nats = n => n === 'mean_logprob_nats';
    const tr = names.map((n, i) => stepTrace(ax, s.metrics[n].step, s.metrics[n].value, {name: n + (nats(n) ? ' (right axis, nats)' : ''), mode: 'lines+markers', line: {color: CB[i % 8], dash: nats(n) ? 'dot' : 'solid'}, yaxis: nats(n) ? 'y2' : 'y'}));
    Plotly.newPlot('plot-samples', tr, base(samplesTitle(s, names), {
      xaxis: ax.axis, yaxis: {title: {text: 'fraction of n-grams'}, range: [0, 1.02]},
      yaxis2: {title: {text: 'mean log-probability (nats / token)'}, overlaying: 'y', side: 'right', showgrid: false, automargin: true, tickformat: '.2f'}}), CFG);
  } else missing('plot-samples', 'no generation-quality metrics (only sample texts): run `attnlife train --sample-every N`');
  if ((s.texts || []).length) {
    const box = $('sample-texts');
    s.texts.forEach(r => { const d = document.createElement('details'); const sum = document.createElement('summary'); sum.textContent = 'step ' + fmt(r.step); d.appendChild(sum); const pre = document.createElement('pre'); pre.textContent = r.text; d.appendChild(pre); box.appendChild(d); });
  }
}

const SECTION_MS = {scriptStart: Math.round(PARSE_T0), parse: Math.round(PARSE_MS)};
[drawCurves, drawAttention, drawArch, drawEigen, drawPatterns, drawUmap, drawTypes, drawClaims, drawSamples,
 typeof drawHealth === 'function' ? drawHealth : null].filter(Boolean).forEach(f => {
  const t0 = performance.now();
  try { f(); } catch (err) { console.error(f.name + ': ' + err); }
  SECTION_MS[f.name] = Math.round(performance.now() - t0);
});
document.body.dataset.sectionMs = JSON.stringify(SECTION_MS);
document.body.dataset.readyMs = String(Math.round(performance.now()));
document.body.dataset.ready = '1';
