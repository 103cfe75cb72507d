// The dashboard's attention-health sections (package data, inlined before dashboard.js, which
// calls drawHealth with its helpers in scope). Payload: D.health from dashboard_health.py.
//   health      layer x head grid of alert kinds over step bins; loss events as dashed lines;
//               clicking a cell shows that head below
//   healthhead  one head's light-tier signals (entropy, max-logit bound, sink mass) and the
//               training loss over steps, its alerts marked
const HEALTH_KINDS = ['entropy_collapse', 'logit_growth', 'sink_takeover', 'dead_head'];
const HEALTH_COLOURS = {entropy_collapse: '#D55E00', logit_growth: '#CC79A7', sink_takeover: '#0072B2', dead_head: '#999999', several: '#000000'};
const HEALTH_SIGNALS = [['light_entropy_bits', 'entropy (bits)'], ['light_lse_max_nats', 'max-logit bound (nats)'], ['light_sink_mass', 'sink mass']];
const NO_ALERT = '#eeeeee';
const HEALTH_ALL_ROWS_UP_TO = 64;
const kindName = k => k.replace(/_/g, ' ');

function healthAlertsOf(l, h) { return D.health.alerts.filter(a => a.layer === l && (a.head_index === h || a.head_index === -1)); }

function drawHealthGrid(select) {
  const hs = D.health, steps = hs.steps, last = steps[steps.length - 1], first = steps[0];
  const nb = Math.max(1, Math.min(120, last - first + 1)), width = (last - first + 1) / nb;
  const bin = s => Math.min(nb - 1, Math.floor((s - first) / width));
  // every head gets a row up to HEALTH_ALL_ROWS_UP_TO heads; beyond, only the units that alerted
  // (heads, and [l, -1] for a layer-level alert), so a 384-head model draws a grid one can read
  const every = L * H <= HEALTH_ALL_ROWS_UP_TO, units = [], z = [], text = [];
  if (every) range(L).forEach(l => range(H).forEach(h => units.push([l, h])));
  else Array.from(new Set(hs.alerts.map(a => a.layer + ':' + a.head_index))).map(k => k.split(':').map(Number))
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]).forEach(u => units.push(u));
  units.forEach(([l, h]) => {
    const row = new Array(nb).fill(0), tip = range(nb).map(b => []);
    healthAlertsOf(l, h).forEach(a => {
      const b = bin(a.step), k = HEALTH_KINDS.indexOf(a.kind) + 1;
      row[b] = row[b] && row[b] !== k ? 5 : k;
      tip[b].push(kindName(a.kind) + ' at step ' + a.step + ' (' + a.value.toPrecision(3) + ')');
    });
    z.push(row);  // 0 = no alert (a light grey cell, so every head shows even when none alerted)
    text.push(tip.map(t => (t.length ? t.join('<br>') : 'no alert')));
  });
  const x = range(nb).map(b => Math.round(first + (b + 0.5) * width));
  const palette = [NO_ALERT].concat(['entropy_collapse', 'logit_growth', 'sink_takeover', 'dead_head', 'several'].map(k => HEALTH_COLOURS[k]));
  const colorscale = [];
  palette.forEach((c, i) => { colorscale.push([i / 6, c], [(i + 1) / 6, c]); });
  const alerted = new Set(hs.alerts.flatMap(a => a.head_index >= 0 ? [a.layer + ':' + a.head_index] : range(H).map(h => a.layer + ':' + h)));
  const firstAlert = hs.alerts.length ? hs.alerts[0] : null;
  const title = firstAlert
    ? 'Attention-health alerts: ' + alerted.size + ' of ' + (L * H) + ' heads alerted, the first at step ' + fmt(firstAlert.step) + ' (' + kindName(firstAlert.kind) +
      (firstAlert.head_index >= 0 ? ' of L' + firstAlert.layer + 'H' + firstAlert.head_index : ' of layer ' + firstAlert.layer) + ')'
    : 'No attention-health alert in ' + fmt(last + 1) + ' steps of light-tier signals';
  const shapes = (hs.events || []).map(e => ({type: 'line', xref: 'x', yref: 'paper', x0: e.step, x1: e.step, y0: 0, y1: 1, line: {dash: 'dash', color: '#333', width: 1}}));
  const legend = HEALTH_KINDS.concat(['several']).map(k => ({x: [null], y: [null], mode: 'markers', name: kindName(k), marker: {symbol: 'square', size: 12, color: HEALTH_COLOURS[k]}, hoverinfo: 'skip'}))
    .concat([{x: [null], y: [null], mode: 'markers', name: 'no alert', marker: {symbol: 'square', size: 12, color: NO_ALERT, line: {color: '#999', width: 1}}, hoverinfo: 'skip'}]);
  const tr = [{type: 'heatmap', z, x, y: units.map(([l, h]) => (h < 0 ? 'L' + l + ' (layer)' : 'L' + l + ' H' + h)), text, zmin: -0.5, zmax: 5.5, colorscale, showscale: false, xgap: 1, ygap: 1,
    hovertemplate: '%{y}, steps near %{x}:<br>%{text}<extra></extra>'}].concat(legend);
  const rows = every ? '' : '; rows: the ' + units.length + ' alerted units, ' + (L * H - alerted.size) + ' heads without an alert not shown';
  Plotly.newPlot('plot-health', tr, base(title + rows + (shapes.length ? ' (dashed: loss events)' : ''), {
    height: Math.max(300, 120 + 16 * units.length),
    xaxis: {title: {text: 'training step (optimizer updates)'}, range: [first, last], tickformat: ','},
    yaxis: {title: {text: every ? 'layer, head' : 'layer, head (alerted only)'}, autorange: 'reversed', type: 'category'}, shapes,
    annotations: (hs.events || []).map(e => ({x: e.step, y: 1, xref: 'x', yref: 'paper', yanchor: 'bottom', showarrow: false,
      text: e.event + ' ' + e.step, font: {size: 10, color: '#333'}}))}), CFG);
  $('plot-health').on('plotly_click', ev => { const p = ev.points && ev.points[0]; if (p && p.curveNumber === 0) { const [l, h] = units[p.pointIndex[0]]; select([l, Math.max(0, h)]); } });
}

const HEALTH_F32 = {};
const healthSignal = n => (HEALTH_F32[n] = HEALTH_F32[n] || f32(D.health.signals[n].values));
function drawHealthHead(l, h) {
  const hs = D.health, steps = hs.steps, S = steps.length, tr = [], shapes = [];
  const names = HEALTH_SIGNALS.filter(([n]) => hs.signals[n]);
  const rows = names.length + 1, gap = 0.04, height = (1 - gap * (rows - 1)) / rows;
  const dom = i => [1 - (i + 1) * height - i * gap, 1 - i * height - i * gap];
  const layout = {height: 190 * rows + 80, showlegend: true};
  const alerts = healthAlertsOf(l, h);
  names.forEach(([n, label], i) => {
    const v = healthSignal(n), ax = i ? String(i + 1) : '';
    const y = range(S).map(s => fin(v[(s * L + l) * H + h]));
    tr.push({x: steps, y, name: label, xaxis: 'x' + ax, yaxis: 'y' + ax, line: {color: CB[i], width: 1.5}});
    layout['yaxis' + ax] = {domain: dom(i), title: {text: label}, anchor: 'x' + ax};
    layout['xaxis' + ax] = {anchor: 'y' + ax, matches: i ? 'x' : undefined, showticklabels: false};
  });
  const c = (D.curves || {}).train_loss, ax = String(rows);
  if (c) tr.push({x: c.step, y: c.value, name: 'train loss', xaxis: 'x' + ax, yaxis: 'y' + ax, line: {color: '#333', width: 1}, opacity: 0.8});
  layout['yaxis' + ax] = {domain: dom(rows - 1), title: {text: 'loss (nats / token)'}, anchor: 'x' + ax};
  layout['xaxis' + ax] = {anchor: 'y' + ax, matches: 'x', title: {text: 'training step (optimizer updates)'}, tickformat: ','};
  layout.xaxis = Object.assign(layout.xaxis || {}, {range: [steps[0], steps[S - 1]]});
  const rowOf = {entropy_collapse: 'light_entropy_bits', dead_head: 'light_entropy_bits', logit_growth: 'light_lse_max_nats', sink_takeover: 'light_sink_mass'};
  HEALTH_KINDS.forEach(k => {
    const mine = alerts.filter(a => a.kind === k), i = names.findIndex(([n]) => n === rowOf[k]);
    if (!mine.length || i < 0) return;
    const v = healthSignal(rowOf[k]), ax = i ? String(i + 1) : '';
    const y = mine.map(a => { const s = steps.indexOf(a.step); return s < 0 ? null : fin(v[(s * L + l) * H + h]); });
    mine.forEach(a => shapes.push({type: 'line', xref: 'x', yref: 'paper', x0: a.step, x1: a.step, y0: 0, y1: 1, line: {color: HEALTH_COLOURS[k], width: 1.5, dash: 'dot'}}));
    tr.push({x: mine.map(a => a.step), y, mode: 'markers', name: kindName(k) + ' alert', xaxis: 'x' + ax, yaxis: 'y' + ax,
      text: mine.map(a => a.value.toPrecision(3)), marker: {color: HEALTH_COLOURS[k], size: 10, symbol: 'x'},
      hovertemplate: kindName(k) + ' alert at step %{x} (alert value %{text})<extra></extra>'});
  });
  (hs.events || []).forEach(e => shapes.push({type: 'line', xref: 'x', yref: 'paper', x0: e.step, x1: e.step, y0: 0, y1: 1, line: {color: '#333', width: 1, dash: 'dash'}}));
  const said = HEALTH_KINDS.map(k => { const a = alerts.filter(x => x.kind === k); return a.length ? kindName(k) + ' at step ' + a[0].step : null; }).filter(Boolean);
  const title = 'Signals of L' + l + 'H' + h + ': ' + (said.length ? said.join(', ') : 'no alert') + ' (dotted: its alerts; ' + (hs.events ? (hs.events.length ? 'dashed: loss events)' : 'no loss event in the training loss)') : 'loss events: run `attnlife analyze`)');
  Plotly.react('plot-healthhead', tr, base(title, Object.assign(layout, {shapes})), CFG);
}

function drawHealth() {
  if (!D.health) {
    missing('plot-health', 'no light-tier signals: run `attnlife train` (light tier on, health.enabled)');
    return missing('plot-healthhead', 'no light-tier signals: run `attnlife train` (light tier on, health.enabled)');
  }
  const a = D.health.alerts, firstHead = a.find(x => x.head_index >= 0) || a[0] || {layer: 0, head_index: 0};
  options($('health-layer'), range(L).map(l => [l, 'layer ' + l]), firstHead.layer);
  options($('health-head'), range(H).map(h => [h, 'head ' + h]), Math.max(0, firstHead.head_index));
  const show = () => drawHealthHead(+$('health-layer').value, +$('health-head').value);
  const select = ([l, h]) => { $('health-layer').value = String(l); $('health-head').value = String(h); show(); };
  $('health-layer').onchange = show; $('health-head').onchange = show;
  drawHealthGrid(select);
  show();
}
