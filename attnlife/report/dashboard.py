"""RUN/report/dashboard.html: one self-contained interactive page (Plotly inlined, no network).

Sections (ids used by the browser test): curves, attention, arch (layer x head heatmap of any
statistic at one step with marginals, step slider, play), eigen (lambda_k trajectories with
layer / head / index selectors), patterns (snapshot viewer with a step slider), umap, types,
claims, samples, health (layer x head grid of attention-health alert kinds over steps) and
healthhead (one head's light-tier signals with its alerts marked). A section whose data is absent
shows one line naming the command that makes it.
The script is the package-data file `dashboard.js` beside this module.
"""
from __future__ import annotations

import functools
import html
import json
import os
from importlib import resources
from pathlib import Path

from attnlife.errors import AttnlifeError
from attnlife.report.dashboard_data import build_payload
from attnlife.report.dashboard_health import health_payload
from attnlife.report.data import ReportRun
from attnlife.store.atomic import atomic_path

SECTIONS = (
    ("curves", "Training curves", ""),
    ("attention", "Attention metrics over training",
     '<label>metric <select id="att-metric"></select></label> <label>layer <select id="att-layer"></select></label>'),
    ("arch", "Architecture view: every head at one step",
     '<label>statistic <select id="arch-stat"></select></label> <button id="arch-play">&#9654; play</button> '
     '<input type="range" id="arch-slider" min="0" max="0" value="0"> <span id="arch-step" class="step"></span>'),
    ("eigen", "Eigenvalue trajectories of W_QK",
     '<label>layer <select id="eig-layer"></select></label> <label>head <select id="eig-head"></select></label> '
     '<label>indices <select id="eig-index" multiple size="4"></select></label>'),
    ("patterns", "Attention patterns (snapshots)",
     '<label><span id="pat-pick-label">head that emerged</span> <select id="pat-pick"></select></label> '
     '<label>layer <select id="pat-layer"></select></label> <label>head <select id="pat-head"></select></label> '
     '<input type="range" id="pat-slider" min="0" max="0" value="0"> <span id="pat-step" class="step"></span>'
     '<div id="pat-why" class="why"></div>'),
    ("umap", "Head trajectories (embedding)", ""),
    ("types", "Head-type emergence", ""),
    ("claims", "Claims check", ""),
    ("samples", "Generated samples over training", '<div id="sample-texts"></div>'),
    ("health", "Attention health: alerts per head over training (click a head)", ""),
    ("healthhead", "Attention health: one head's signals",
     '<label>layer <select id="health-layer"></select></label> <label>head <select id="health-head"></select></label>'),
)

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#fafafa;color:#222}
header{padding:14px 24px;background:#0072B2;color:white} header h1{margin:0;font-size:22px}
nav{padding:6px 24px;background:#eee;font-size:14px} nav a{margin-right:14px;color:#0072B2}
section{background:white;margin:14px 24px;padding:10px 16px;border:1px solid #ddd;border-radius:6px}
section h2{font-size:17px;margin:4px 0 8px} .controls{font-size:14px;margin-bottom:6px}
.controls select,.controls button{font-size:14px;margin-right:8px} .step{font-weight:bold;margin-left:8px}
#arch-slider,#pat-slider{width:320px;vertical-align:middle} .plot{min-height:420px}
.why{font-size:13px;color:#555;margin-top:4px}
.missing{min-height:0;color:#a33;font-style:italic;padding:8px}
table.claims{border-collapse:collapse;width:100%;font-size:13px;line-height:1.4}
table.claims caption{text-align:left;font-weight:bold;padding:4px 0 8px}
table.claims th,table.claims td{border:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:top}
table.claims th{background:#eee} tr.verdict-holds td:nth-child(4){background:#cfeee4}
tr.verdict-does-not-hold td:nth-child(4){background:#f7d9c8} tr.verdict-not-applicable td:nth-child(4){background:#e6e6e6}
"""


@functools.lru_cache(maxsize=None)
def dashboard_js(name: str = "dashboard.js") -> str:
    """A dashboard script shipped as package data beside this module (dashboard.js, and
    dashboard_health.js for the attention-health sections)."""
    return resources.files("attnlife.report").joinpath(name).read_text(encoding="utf-8")


# JSON escapes that keep a <script> element's data inert in every HTML parser state: no `<` can
# open a tag, end the element or start `<!--`; `>` and `&` and the JS line terminators U+2028/9
# never appear raw (json.dumps already writes non-ASCII as \uXXXX; these are ASCII or explicit)
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                   "\u2029": "\\u2029"}


def script_json(obj: object) -> str:
    """`obj` as compact JSON that is safe inside an HTML <script> element (and as a JS literal):
    `<`, `>`, `&`, U+2028 and U+2029 appear only as \\uXXXX escapes, which JSON.parse decodes."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    for raw, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def subtitle(payload: dict) -> str:
    """The header's second line: the model's shape and what the page was drawn from (never a machine path)."""
    shape = f"{payload['n_layer']} layers x {payload['n_head']} heads" if "n_layer" in payload else "no per-head data"
    return f"{shape}; every plot drawn from the run directory's tables by `attnlife report`"


def render_html(payload: dict, plotly_js: str) -> str:
    """The page: header, navigation, one <section> per entry of SECTIONS, payload and scripts."""
    data = script_json(payload)
    nav = " ".join(f'<a href="#sec-{key}">{html.escape(title)}</a>' for key, title, _ in SECTIONS)
    sections = "\n".join(
        f'<section id="sec-{key}"><h2>{html.escape(title)}</h2><div class="controls">{controls}</div>'
        f'<div id="plot-{key}" class="plot"></div></section>' for key, title, controls in SECTIONS)
    title = html.escape(f"attnlife: {payload['name']} ({payload['dataset']})")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{title}</h1><div>{html.escape(subtitle(payload))}</div>"
            f"</header><nav>{nav}</nav>\n{sections}\n"
            f'<script type="application/json" id="payload">{data}</script>\n'
            f"<script>{plotly_js}</script>\n<script>{dashboard_js('dashboard_health.js')}</script>\n"
            f"<script>{dashboard_js()}</script></body></html>\n")


def _nan_to_none(obj):  # noqa: ANN001, ANN202 - JSON-like tree
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


PLOTLY_JS_ENV = "ATTNLIFE_PLOTLY_JS"


class PlotlyBundleError(AttnlifeError):
    """A plotly.js bundle given to the dashboard is missing or is not plotly.js."""


def plotly_bundle(path: str | os.PathLike | None = None) -> str:
    """The plotly.js the page inlines: `path` (or $ATTNLIFE_PLOTLY_JS), else the full bundle of the
    installed `plotly` package.

    The dashboard draws only scatter and heatmap traces, so plotly.js's partial "cartesian" bundle
    (npm: plotly.js-cartesian-dist-min, the same plotly.js version) draws it too: a third of the
    bytes and of the time the browser spends evaluating the library (BENCHMARKS.md).
    """
    given = path or os.environ.get(PLOTLY_JS_ENV)
    if not given:
        from plotly.offline import get_plotlyjs

        return get_plotlyjs()
    bundle = Path(given)
    if not bundle.is_file():
        raise PlotlyBundleError(f"plotly.js bundle {bundle} does not exist; pass a plotly.js .js file "
                                f"(--plotly-js / ${PLOTLY_JS_ENV}) or leave it out for the plotly package's own")
    text = bundle.read_text(encoding="utf-8", errors="replace")
    if "plotly.js" not in text[:4000] or "heatmap" not in text or "scatter" not in text:
        raise PlotlyBundleError(f"{bundle} is not a plotly.js bundle with scatter and heatmap traces; pass "
                                f"e.g. plotly-cartesian.min.js of npm's plotly.js-cartesian-dist-min")
    return text


def write_dashboard(run: ReportRun, path: str | Path | None = None,
                    plotly_js: str | os.PathLike | None = None) -> Path:
    """Build the payload of `run` and write the page (default RUN/report/dashboard.html) atomically,
    inlining `plotly_bundle(plotly_js)`."""
    out = Path(path) if path else run.run.paths.report / "dashboard.html"
    payload = build_payload(run)
    if "n_layer" in payload:
        payload["health"] = health_payload(run, (payload["n_layer"], payload["n_head"]))
    page = render_html(_nan_to_none(payload), plotly_bundle(plotly_js))
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
