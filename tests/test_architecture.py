"""The package keeps the floors of docs/architecture.md: the import-linter contracts in
pyproject.toml (strict: siblings independent), no import cycle between any two modules, and pure
math that imports nothing of attnlife but other pure math."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PURE_MATH = {"attnlife.measures", "attnlife.track.metrics", "attnlife.track.head_types",
             "attnlife.spectra.stats", "attnlife.spectra.stats_elements", "attnlife.spectra.trajectories",
             "attnlife.spectra.null",
             "attnlife.train.schedule", "attnlife.train.checkpoint_series"}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("attnlife")


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), str(REPO / "pyproject.toml")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "KEPT" in out.stdout and "BROKEN" not in out.stdout


def test_contracts_are_strict() -> None:
    """Siblings on one floor are independent (`|`), explain sits on the run floor, and analysis and
    report are forbidden everything that opens a checkpoint or runs a model."""
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    assert all(":" not in layer for layer in layers)
    assert "attnlife.explain" in next(layer for layer in layers if "attnlife.run" in layer)
    forbidden = {(src, bad) for c in _contracts() if c["type"] == "forbidden"
                 for src in c["source_modules"] for bad in c["forbidden_modules"]}
    for src in ("attnlife.analysis", "attnlife.report"):
        for bad in ("model", "series", "train", "track", "spectra", "theory"):
            assert (src, f"attnlife.{bad}") in forbidden
    assert ("attnlife.analysis", "attnlife.data") in forbidden
    assert ("attnlife.model", "attnlife.store") in forbidden


def test_no_import_cycle_between_any_modules() -> None:
    """Tarjan's strongly connected components of the module graph (function-level imports
    included): every component is a single module."""
    graph = _graph()
    adj = {m: {d for d in graph.find_modules_directly_imported_by(m) if d.startswith("attnlife")}
           for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(adj)))
    for m in sorted(adj):
        if m not in index:
            visit(m)
    assert cycles == []


def test_pure_math_imports_only_pure_math() -> None:
    graph = _graph()
    for module in sorted(PURE_MATH):
        deps = {d for d in graph.find_modules_directly_imported_by(module) if d.startswith("attnlife")}
        assert deps <= PURE_MATH, (module, sorted(deps - PURE_MATH))
    contract = next(c for c in _contracts() if c["name"].startswith("The pure math"))
    assert set(contract["source_modules"]) == PURE_MATH
