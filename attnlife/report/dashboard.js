// The dashboard's script (plain JavaScript over Plotly); attnlife.report.dashboard inlines it.
// It reads the JSON payload of dashboard_data.build_payload, decodes the base64 arrays and draws
// one Plotly figure per section; controls (selects, sliders, play) restyle in place.
const D = JSON.parse(document.getElementById('payload').textContent);
const L = D.n_layer || 0, H = D.n_head || 0;
const CB = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];
const CFG = {displaylogo: false, responsive: true};
const $ = id => document.getElementById(id);
function bytes(s) { const b = atob(s); const u = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return u; }
function f32(s) { return new Float32Array(bytes(s).buffer); }
const fin = v => (Number.isFinite(v) ? v : null);
function missing(id, msg) { const el = $(id); el.classList.add('missing'); el.textContent = msg; }
function logSpaced(steps) { const s = steps.filter(x => x > 0); if (s.length < 4) return false; const m = Math.max(...s); return s.filter(x => x < 0.05 * m).length >= 3; }
function stepX(steps) { return logSpaced(steps) ? steps.map(s => s + 1) : steps; }
function stepAxis(steps) { return logSpaced(steps) ? {type: 'log', title: {text: 'training step + 1 (log scale)'}} : {title: {text: 'training step (optimizer updates)'}}; }
function options(sel, items, chosen) { sel.innerHTML = ''; items.forEach(([v, t]) => { const o = document.createElement('option'); o.value = v; o.textContent = t; if (chosen !== undefined && String(v) === String(chosen)) o.selected = true; sel.appendChild(o); }); }
const range = n => Array.from({length: n}, (_, i) => i);
const base = (title, extra) => Object.assign({title: {text: title, font: {size: 15}}, margin: {l: 70, r: 30, t: 50, b: 55}, legend: {font: {size: 11}}, font: {size: 12}}, extra || {});

const CUBES = {};
function cube(name) { if (!CUBES[name]) { const s = D.stats[name]; CUBES[name] = {steps: s.steps, unit: s.unit, v: f32(s.values)}; } return CUBES[name]; }
const at = (c, si, l, h) => c.v[(si * L + l) * H + h];
function layerMean(c, si, l) { let a = 0, n = 0; for (let h = 0; h < H; h++) { const x = at(c, si, l, h); if (Number.isFinite(x)) { a += x; n++; } } return n ? a / n : null; }
function headMean(c, si, h) { let a = 0, n = 0; for (let l = 0; l < L; l++) { const x = at(c, si, l, h); if (Number.isFinite(x)) { a += x; n++; } } return n ? a / n : null; }
function phaseShapes(scope) {
  return (D.phases || []).filter(p => p.scope === scope).sort((a, b) => a.start_step - b.start_step).slice(1)
    .map(p => ({type: 'line', xref: 'x', yref: 'paper', x0: p.start_step, x1: p.start_step, y0: 0, y1: 1, line: {dash: 'dash', color: '#555', width: 1}}));
}

function drawCurves() {
  const c = D.curves || {}, tr = [];
  if (c.train_loss) tr.push({x: c.train_loss.step, y: c.train_loss.value, name: 'train loss', line: {color: CB[0], width: 1}, opacity: 0.7});
  if (c.val_loss) tr.push({x: c.val_loss.step, y: c.val_loss.value, name: 'val loss', mode: 'lines+markers', line: {color: CB[5]}});
  if (c.lr) tr.push({x: c.lr.step, y: c.lr.value, name: 'learning rate', yaxis: 'y2', line: {color: CB[2], dash: 'dot'}});
  if (!tr.length) return missing('plot-curves', 'no loss rows: run `attnlife train`');
  Plotly.newPlot('plot-curves', tr, base('Training and validation loss', {xaxis: {title: {text: 'training step (optimizer updates)'}},
    yaxis: {title: {text: 'loss (nats / token)'}}, yaxis2: {title: {text: 'learning rate'}, overlaying: 'y', side: 'right', showgrid: false, rangemode: 'nonnegative', tickformat: '.1e', automargin: true}}), CFG);
}

function attentionNames() { return Object.keys(D.stats || {}).filter(k => D.stats[k].source === 'attention'); }
function drawAttention() {
  const names = attentionNames();
  if (!names.length) return missing('plot-attention', 'no per-head attention metrics: run `attnlife train` with tracking, or `attnlife track RUN`');
  options($('att-metric'), names.map(n => [n, n + ' (' + D.stats[n].unit + ')']), names.includes('entropy_bits') ? 'entropy_bits' : names[0]);
  options($('att-layer'), [['all', 'all layers (head mean)']].concat(range(L).map(l => [l, 'layer ' + l])), 'all');
  const redraw = () => {
    const c = cube($('att-metric').value), which = $('att-layer').value, tr = [];
    const si = range(c.steps.length);
    if (which === 'all') range(L).forEach(l => tr.push({x: c.steps, y: si.map(s => layerMean(c, s, l)), name: 'L' + l, line: {color: CB[l % 8]}}));
    else {
      const l = +which;
      range(H).forEach(h => tr.push({x: c.steps, y: si.map(s => fin(at(c, s, l, h))), name: 'L' + l + 'H' + h, line: {width: 1, color: CB[h % 8]}}));
      tr.push({x: c.steps, y: si.map(s => layerMean(c, s, l)), name: 'L' + l + ' mean', line: {color: CB[5], dash: 'dash', width: 3}});
    }
    Plotly.react('plot-attention', tr, base($('att-metric').value + ' per ' + (which === 'all' ? 'layer' : 'head of layer ' + which) + ' (dashed grey: phase boundaries)',
      {xaxis: {title: {text: 'training step (optimizer updates)'}}, yaxis: {title: {text: $('att-metric').value + ' (' + c.unit + ')'}},
       shapes: phaseShapes(which === 'all' ? 'model' : 'L' + which)}), CFG);
  };
  $('att-metric').onchange = redraw; $('att-layer').onchange = redraw; redraw();
}

const ARCH = {timer: null, si: 1e9};  // starts at the last checkpoint
function archFrame() {
  const c = cube($('arch-stat').value), si = ARCH.si;
  return range(L).map(l => range(H).map(h => fin(at(c, si, l, h))));
}
function archShapes(c) {
  return [{type: 'line', xref: 'x2', yref: 'y2', x0: ARCH.si, x1: ARCH.si, y0: -0.5, y1: L - 0.5, line: {color: 'white', width: 2}},
          {type: 'line', xref: 'x3', yref: 'y3', y0: ARCH.si, y1: ARCH.si, x0: -0.5, x1: H - 0.5, line: {color: 'white', width: 2}}];
}
function archLabel() { const c = cube($('arch-stat').value); $('arch-step').textContent = 'step ' + c.steps[ARCH.si].toLocaleString('en-US'); }
function drawArch() {
  const names = Object.keys(D.stats || {});
  if (!names.length) return missing('plot-arch', 'no per-head statistics: run `attnlife train` with tracking, or `attnlife spectra RUN`');
  options($('arch-stat'), names.map(n => [n, n + ' (' + D.stats[n].unit + ')']), names[0]);
  const full = () => {
    const c = cube($('arch-stat').value), S = c.steps.length, si = range(S);
    ARCH.si = Math.min(ARCH.si, S - 1);
    $('arch-slider').max = S - 1; $('arch-slider').value = ARCH.si;
    const finite = Array.from(c.v).filter(Number.isFinite);
    const zmin = Math.min(...finite), zmax = Math.max(...finite);
    const ticks = si.filter(i => i % Math.max(1, Math.ceil(S / 8)) === 0);
    const tr = [
      {type: 'heatmap', z: archFrame(), x: range(H), y: range(L), zmin, zmax, colorscale: 'Viridis', colorbar: {title: {text: c.unit}, x: 1.02},
       hovertemplate: 'L%{y}H%{x}: %{z:.4g}<extra></extra>'},
      {type: 'heatmap', z: range(L).map(l => si.map(s => layerMean(c, s, l))), x: si, y: range(L), xaxis: 'x2', yaxis: 'y2', zmin, zmax,
       colorscale: 'Viridis', showscale: false, hovertemplate: 'layer %{y} mean, checkpoint %{x}: %{z:.4g}<extra></extra>'},
      {type: 'heatmap', z: si.map(s => range(H).map(h => headMean(c, s, h))), x: range(H), y: si, xaxis: 'x3', yaxis: 'y3', zmin, zmax,
       colorscale: 'Viridis', showscale: false, hovertemplate: 'head %{x} mean over layers, checkpoint %{y}: %{z:.4g}<extra></extra>'}];
    const tick = {tickvals: ticks, ticktext: ticks.map(i => c.steps[i].toLocaleString('en-US'))};
    Plotly.react('plot-arch', tr, base($('arch-stat').value + ' per head (layer x head); marginals: layer mean (right) and head mean (bottom) over steps', {
      height: 620, shapes: archShapes(c),
      xaxis: {domain: [0, 0.6], anchor: 'y', title: {text: 'head index'}, dtick: 1},
      yaxis: {domain: [0.38, 1], anchor: 'x', title: {text: 'layer'}, autorange: 'reversed', dtick: 1},
      xaxis2: Object.assign({domain: [0.68, 0.98], anchor: 'y2', title: {text: 'step (layer mean)'}}, tick),
      yaxis2: {domain: [0.38, 1], anchor: 'x2', autorange: 'reversed', matches: 'y', showticklabels: false},
      xaxis3: {domain: [0, 0.6], anchor: 'y3', matches: 'x', dtick: 1, title: {text: 'head index (mean over layers)'}},
      yaxis3: Object.assign({domain: [0, 0.26], anchor: 'x3', autorange: 'reversed', title: {text: 'step'}}, tick)}), CFG);
    archLabel();
  };
  const step = () => { Plotly.restyle('plot-arch', {z: [archFrame()]}, [0]); Plotly.relayout('plot-arch', {shapes: archShapes()}); archLabel(); };
  $('arch-stat').onchange = full;
  $('arch-slider').oninput = () => { ARCH.si = +$('arch-slider').value; step(); };
  $('arch-play').onclick = () => {
    if (ARCH.timer) { clearInterval(ARCH.timer); ARCH.timer = null; $('arch-play').textContent = '\u25B6 play'; return; }
    $('arch-play').textContent = '\u23F8 pause';
    ARCH.timer = setInterval(() => { const S = cube($('arch-stat').value).steps.length; ARCH.si = (ARCH.si + 1) % S; $('arch-slider').value = ARCH.si; step(); }, 500);
  };
  full();
}

function drawEigen() {
  const e = D.eigen;
  if (!e) return missing('plot-eigen', 'no eigenvalue arrays: run `attnlife spectra RUN`');
  const v = f32(e.values), S = e.steps.length, K = e.k;
  options($('eig-layer'), range(L).map(l => [l, 'layer ' + l]), 0);
  options($('eig-head'), range(H).map(h => [h, 'head ' + h]), 0);
  options($('eig-index'), range(K).map(k => [k, 'lambda_' + (k + 1)]));
  Array.from($('eig-index').options).forEach((o, i) => { o.selected = i < 4; });
  const redraw = () => {
    const l = +$('eig-layer').value, h = +$('eig-head').value;
    const ks = Array.from($('eig-index').selectedOptions).map(o => +o.value);
    const tr = ks.map(k => ({x: stepX(e.steps), y: range(S).map(s => fin(v[((s * L + l) * H + h) * K + k])), name: 'lambda_' + (k + 1), line: {color: CB[k % 8]}}));
    Plotly.react('plot-eigen', tr, base('Eigenvalues of W_QK, head L' + l + 'H' + h, {xaxis: stepAxis(e.steps),
      yaxis: {type: 'log', title: {text: 'lambda_k (weight units^2, log scale)'}}}), CFG);
  };
  ['eig-layer', 'eig-head', 'eig-index'].forEach(id => { $(id).onchange = redraw; }); redraw();
}

function drawPatterns() {
  const p = D.snapshots;
  if (!p) return missing('plot-patterns', 'no attention snapshots: run `attnlife train` with tracking, or `attnlife track RUN`');
  const v = bytes(p.values), T = p.t, S = p.steps.length;
  options($('pat-layer'), range(L).map(l => [l, 'layer ' + l]), 0);
  options($('pat-head'), range(H).map(h => [h, 'head ' + h]), 0);
  $('pat-slider').max = S - 1; $('pat-slider').value = S - 1;
  const redraw = () => {
    const l = +$('pat-layer').value, h = +$('pat-head').value, si = +$('pat-slider').value;
    const off = (((si * L + l) * H + h) * T) * T;
    const z = range(T).map(i => range(T).map(j => v[off + i * T + j] / 255));
    $('pat-step').textContent = 'step ' + p.steps[si].toLocaleString('en-US');
    Plotly.react('plot-patterns', [{type: 'heatmap', z, zmin: 0, zmax: 1, colorscale: 'Cividis', colorbar: {title: {text: 'probability'}},
      hovertemplate: 'query %{y}, key %{x}: %{z:.3f}<extra></extra>'}], base('Attention pattern of L' + l + 'H' + h + ' at step ' + p.steps[si].toLocaleString('en-US'), {
      height: 520, xaxis: {title: {text: 'key position (tokens)'}, constrain: 'domain'}, yaxis: {title: {text: 'query position (tokens)'}, autorange: 'reversed', scaleanchor: 'x'}}), CFG);
  };
  ['pat-layer', 'pat-head'].forEach(id => { $(id).onchange = redraw; }); $('pat-slider').oninput = redraw; redraw();
}

function drawUmap() {
  const u = D.umap;
  if (!u || !u.points.length) return missing('plot-umap', 'no trajectory embedding: run `attnlife analyze RUN`');
  const ex = [], ey = [];
  (u.edges || []).forEach(e => { const a = u.points[e.src], b = u.points[e.dst]; ex.push(a.x, b.x, null); ey.push(a.y, b.y, null); });
  const tr = [{x: ex, y: ey, mode: 'lines', line: {color: '#bbb', width: 1}, hoverinfo: 'skip', name: 'kNN edges'},
    {x: u.points.map(p => p.x), y: u.points.map(p => p.y), mode: 'markers', name: 'heads',
     text: u.points.map(p => 'L' + p.layer + 'H' + p.head_index + (p.cluster !== null && p.cluster !== undefined ? ' (cluster ' + p.cluster + ')' : '')),
     hovertemplate: '%{text}<extra></extra>', marker: {size: 10, color: u.points.map(p => p.layer), colorscale: 'Viridis', line: {width: 0.5, color: 'black'},
     colorbar: {title: {text: 'layer'}}}}];
  Plotly.newPlot('plot-umap', tr, base('UMAP of per-head trajectories (hover names the head)', {xaxis: {title: {text: 'UMAP 1'}}, yaxis: {title: {text: 'UMAP 2'}}}), CFG);
}

function drawTypes() {
  const t = D.types;
  if (!t) return missing('plot-types', 'no head types: run `attnlife track RUN` then `attnlife analyze RUN`');
  const tr = Object.keys(t.counts).map((k, i) => ({x: t.steps, y: t.counts[k], name: k, stackgroup: 'one', line: {color: k === 'mixed' ? '#bbb' : CB[i % 8]}}));
  const v = (D.curves || {}).val_loss;
  if (v) tr.push({x: v.step, y: v.value, name: 'val loss', yaxis: 'y2', mode: 'lines+markers', line: {color: 'black'}});
  const shapes = (D.induction_phase || []).map(p => ({type: 'line', xref: 'x', yref: 'paper', x0: p.step, x1: p.step, y0: 0, y1: 1, line: {dash: 'dash', color: 'black'}}));
  Plotly.newPlot('plot-types', tr, base('Head types over training, next to validation loss', {shapes, xaxis: {title: {text: 'training step (optimizer updates)'}},
    yaxis: {title: {text: 'heads of each type (count)'}}, yaxis2: {title: {text: 'val loss (nats / token)'}, overlaying: 'y', side: 'right', showgrid: false}}), CFG);
}

function drawClaims() {
  const c = D.claims;
  if (!c || !c.length) return missing('plot-claims', 'no claims table: run `attnlife analyze RUN`');
  const colour = {'holds': '#cfeee4', 'does not hold': '#f7d9c8', 'not applicable': '#e6e6e6'};
  const cols = ['source', 'claim', 'measured', 'verdict', 'reason'];
  Plotly.newPlot('plot-claims', [{type: 'table', columnwidth: [70, 260, 160, 80, 200],
    header: {values: cols.map(x => '<b>' + x + '</b>'), fill: {color: '#ddd'}, align: 'left'},
    cells: {values: cols.map(k => c.map(r => String(r[k] === null || r[k] === undefined ? '' : r[k]))), align: 'left',
            fill: {color: [c.map(r => colour[r.verdict] || 'white')]}}}],
    base('Published claims checked on this run', {height: 160 + 46 * c.length}), CFG);
}

function drawSamples() {
  const s = D.samples || {}, names = Object.keys(s.metrics || {});
  if (!names.length && !(s.texts || []).length) return missing('plot-samples', 'no generation-quality rows: run `attnlife analyze RUN` (split sample)');
  // fractions (distinct-n, repetition) on the left axis; any other metric on the right, hidden until its legend entry is clicked
  const isFraction = n => s.metrics[n].value.every(v => v === null || (v >= 0 && v <= 1));
  const tr = names.map((n, i) => ({x: s.metrics[n].step, y: s.metrics[n].value, name: n, mode: 'lines+markers', line: {color: CB[i % 8]},
    yaxis: isFraction(n) ? 'y' : 'y2', visible: isFraction(n) || names.every(m => !isFraction(m)) ? true : 'legendonly'}));
  Plotly.newPlot('plot-samples', tr, base('Generation quality of samples over training (click the legend for other metrics)', {
    xaxis: {title: {text: 'training step (optimizer updates)'}}, yaxis: {title: {text: 'fraction of n-grams'}},
    yaxis2: {title: {text: 'other metrics (their own units)'}, overlaying: 'y', side: 'right', showgrid: false}}), CFG);
  if ((s.texts || []).length) {
    const box = $('sample-texts');
    s.texts.forEach(r => { const d = document.createElement('details'); d.innerHTML = '<summary>step ' + r.step + '</summary>'; const pre = document.createElement('pre'); pre.textContent = r.text; d.appendChild(pre); box.appendChild(d); });
  }
}

[drawCurves, drawAttention, drawArch, drawEigen, drawPatterns, drawUmap, drawTypes, drawClaims, drawSamples,
 typeof drawHealth === 'function' ? drawHealth : null].filter(Boolean).forEach(f => {
  try { f(); } catch (err) { console.error(f.name + ': ' + err); }
});
document.body.dataset.readyMs = String(Math.round(performance.now()));
document.body.dataset.ready = '1';
