"""`make mutate`: mutation testing of the modules in tests/mutation/modules.toml with mutmut.

    python tests/mutation/run.py [MODULE_OR_CHUNK ...] [--keep] [--jobs N]

Each chunk of modules.toml runs as one `mutmut run` in its own work directory, mutants/<chunk>/
(gitignored), which holds links to attnlife/ and tests/ and a pyproject.toml whose [tool.mutmut]
is the repository's plus the chunk's `only_mutate` and test selection. mutmut copies the tree into
mutants/<chunk>/mutants/, learns which selected tests call each function, and runs only those
tests against each mutant of that function. PYTHONPATH is pointed at that copy, so the tests (and
any subprocess they start) import the mutated attnlife, never the worktree's or the editable
install's; mutmut's forced-failure run proves it before any mutant is counted.

A surviving mutant is either a missing test or an equivalent mutant (no behaviour tells it from
the original). Equivalent ones are listed in tests/mutation/equivalent.toml by module, function,
the original and mutated line, and the reason; they are reported separately and not counted.
The last line printed is `mutation score: NN.N% (killed/total)`, total excluding equivalents;
a mutant counts as killed when a test failed, timed out or crashed on it (the test process died of
a signal).

Results start fresh by default (mutmut would otherwise keep a survivor's verdict after a test
that kills it is added); --keep reuses the previous run's verdicts and re-tests only the
functions that changed.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "mutants"
KILLED = {"killed", "timeout", "segfault", "crashed"}  # a test noticed: failure, hang or crash


@dataclass
class Mutant:
    name: str          # mutmut's key, e.g. attnlife.measures.x_entropy_bits__mutmut_3
    module: str        # attnlife/measures.py
    function: str      # entropy_bits (Class.method for methods)
    status: str        # killed, survived, no tests, timeout, ...
    removed: str = ""  # the original line(s) the mutant changed
    added: str = ""    # what it changed them to
    reason: str = ""   # for equivalent mutants: why no behaviour can tell them apart
    kind: str = ""     # "equivalent"; "cuda" (observable only where a CUDA kernel runs); "harness" (only
                       # outside mutmut, whose trampoline changes stack frames)


def load_chunks() -> tuple[dict[str, dict], list[str]]:
    """The chunks of modules.toml, plus one chunk per module of a `cover` folder that no chunk names
    (tested by its conventional tests/<package>/test_<module>.py); and the modules of those folders
    left unmutated because that test file does not exist."""
    spec = tomllib.loads((HERE / "modules.toml").read_text())
    chunks: dict[str, dict] = spec["chunks"]
    named = {m for c in chunks.values() for m in c["modules"]}
    unmutated: list[str] = []
    for folder in spec.get("cover", {}).get("folders", []):
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in named or path.name == "__init__.py":
                continue
            test = Path("tests", *Path(folder).parts[1:], f"test_{path.stem}.py")
            if (ROOT / test).exists():
                chunks[f"{Path(folder).name}_{path.stem}"] = {"modules": [rel], "tests": [test.as_posix()]}
            else:
                unmutated.append(rel)
    return chunks, unmutated


def load_equivalents() -> tuple[list[dict], list[dict]]:
    """(entries for one mutant each, rules for a change that is equivalent wherever it is made)."""
    path = HERE / "equivalent.toml"
    spec = tomllib.loads(path.read_text()) if path.exists() else {}
    return spec.get("equivalent", []), spec.get("rule", [])


def _applies(rule: dict, m: Mutant) -> bool:
    """The mutant is its original with one occurrence of rule["from"] replaced by rule["to"]."""
    if "modules" in rule and m.module not in rule["modules"]:
        return False
    a, b, text = rule["from"], rule["to"], m.removed
    at = text.find(a)
    while at >= 0:
        if text[:at] + b + text[at + len(a):] == m.added:
            return True
        at = text.find(a, at + 1)
    return False


def select(chunks: dict[str, dict], wanted: list[str]) -> dict[str, list[str]]:
    """chunk name -> the modules of it to mutate, for module paths or chunk names in `wanted`.

    A module no chunk names runs as a chunk of its own (added to `chunks`) with its conventional
    tests/<package>/test_<module>.py."""
    if not wanted:
        return {name: list(c["modules"]) for name, c in chunks.items()}
    chosen: dict[str, list[str]] = {}
    for item in wanted:
        item = item.rstrip("/")
        if item in chunks:
            chosen[item] = list(chunks[item]["modules"])
            continue
        hits = [(name, m) for name, c in chunks.items() for m in c["modules"]
                if m == item or m.startswith(item + "/")]
        test = Path("tests", *Path(item).parts[1:-1], f"test_{Path(item).stem}.py")
        if not hits and item.endswith(".py") and (ROOT / item).exists() and (ROOT / test).exists():
            name = "_".join(Path(item).with_suffix("").parts[1:])   # any module, with its conventional tests
            chunks[name] = {"modules": [item], "tests": [test.as_posix()]}
            hits = [(name, item)]
        if not hits:
            known = ", ".join(sorted(chunks))
            sys.exit(f"error: {item} is in no chunk of tests/mutation/modules.toml (chunks: {known}); "
                     "add it there with the tests that should kill its mutants (a module with a conventional "
                     "tests/<package>/test_<module>.py runs without)")
        for name, m in hits:
            chosen.setdefault(name, [])
            if m not in chosen[name]:
                chosen[name].append(m)
    return chosen


def prepare(chunk: str, modules: list[str], tests: list[str], keep: bool, pytest_args: list[str] = ()) -> Path:
    work = WORK / chunk
    if work.exists() and not keep:
        shutil.rmtree(work)
    # mutmut's copy must exist before the interpreter starts: PYTHONPATH points at it, and Python
    # caches a missing path entry as empty for the process's lifetime
    (work / "mutants").mkdir(parents=True, exist_ok=True)
    for name in ("attnlife", "tests"):
        link = work / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mutmut = dict(project.get("tool", {}).get("mutmut", {}))
    mutmut["only_mutate"] = modules
    mutmut["pytest_add_cli_args_test_selection"] = tests
    # the chunk's own pytest arguments come last, so they win: `-m ""` selects the chunk's tests that
    # are marked slow too (the project's addopts deselect them)
    mutmut["pytest_add_cli_args"] = list(mutmut.get("pytest_add_cli_args", [])) + list(pytest_args)
    project.setdefault("tool", {})["mutmut"] = mutmut
    text = tomli_w.dumps(project)
    target = work / "pyproject.toml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return work


def mutmut_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(work / "mutants")  # the mutated copy, for pytest and its subprocesses
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"  # one thread per worker: mutmut runs --jobs workers side by side
    shared = ROOT.parent / "shared" / "data"
    if "ATTNLIFE_SHARED_DATA" not in env and shared.is_dir():
        env["ATTNLIFE_SHARED_DATA"] = str(shared)  # tests/conftest.py looks beside the copy otherwise
    # no third-party pytest plugins: each mutant's pytest run starts in half the time (hypothesis
    # tests run without its plugin; the suite uses no other plugin's features)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.pop("MUTANT_UNDER_TEST", None)
    return env


class ChunkFailed(Exception):
    """mutmut stopped in a chunk (usually a selected test fails on the unmutated code)."""


def run_mutmut(work: Path, jobs: int) -> float:
    """Run mutmut in `work`; returns the seconds it ran."""
    exe = Path(sys.executable).with_name("mutmut")
    log = work / "mutmut.log"
    with log.open("w") as out:
        t0 = time.monotonic()
        rc = subprocess.call([str(exe), "run", "--max-children", str(jobs)], cwd=work, env=mutmut_env(work),
                             stdout=out, stderr=subprocess.STDOUT)
        seconds = time.monotonic() - t0
    if rc != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-40:]
        print("\n".join(tail))
        raise ChunkFailed(f"mutmut failed in {work} (exit {rc}; the whole log is {log}): a test of the chunk "
                          "fails on the unmutated code, or a test inspects call frames (mutmut adds one per "
                          "mutated function; see docs/architecture.md, Testing)")
    return seconds


def check_paths(chunk: str, spec: dict) -> None:
    """Every module and test a chunk names exists (a moved file fails here, not deep inside mutmut)."""
    missing = [p for p in [*spec["modules"], *spec["tests"]] if not (ROOT / p.split("::")[0]).exists()]
    if missing:
        raise ChunkFailed(f"chunk {chunk} of tests/mutation/modules.toml names files that do not exist: "
                          f"{', '.join(missing)}; point it at their new paths")


class MachineLock:
    """An exclusive flock on a machine-wide "one heavy job at a time" file, held across consecutive
    chunks until it has been held `hold_s` seconds, then given back between chunks so other heavy
    jobs get a turn (no lock file: a no-op)."""

    def __init__(self, path: str | None, hold_s: float) -> None:
        self.path, self.hold_s = path, hold_s
        self._fh = None
        self._since = 0.0

    def take(self) -> None:
        if self.path and self._fh is None:
            self._fh = open(self.path, "a")
            fcntl.flock(self._fh, fcntl.LOCK_EX)
            self._since = time.monotonic()

    def maybe_give_back(self) -> None:
        if self._fh is not None and time.monotonic() - self._since >= self.hold_s:
            self.give_back()

    def give_back(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _function_of(name: str) -> str:
    mangled = name.rpartition(".")[2].partition("__mutmut_")[0]
    if mangled.startswith("x_"):
        return mangled[2:]
    _, cls, meth = mangled.split("\u01c1")  # xǁClassǁmethod
    return f"{cls}.{meth}"


def _diff_lines(diff: str) -> tuple[str, str]:
    removed, added = [], []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            removed.append(" ".join(line[1:].split()))
        elif line.startswith("+"):
            added.append(" ".join(line[1:].split()))
    return "\n".join(removed), "\n".join(added)


def collect(work: Path, modules: list[str]) -> list[Mutant]:
    import difflib

    import libcst
    from mutmut.mutation.diff_apply import get_diff_for_mutant, read_mutant_function, read_original_function
    from mutmut.stats import status_by_exit_code

    found: list[Mutant] = []
    parsed: dict = {}  # module -> its mutated file, parsed when the index fails
    here = Path.cwd()
    os.chdir(work)  # mutmut's readers resolve mutants/ against the working directory
    try:
        for module in modules:
            meta = work / "mutants" / (module + ".meta")
            if not meta.exists():
                continue
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
                status = status_by_exit_code[code]
                if status == "suspicious" and code is not None and code < 0:
                    # the test process died of a signal (e.g. a mutated handler re-raised SIGTERM at the
                    # first one): mutmut calls it suspicious; the suite would crash, so it is noticed
                    status = "crashed"
                m = Mutant(name, module, _function_of(name), status)
                if m.status not in KILLED:
                    m.removed, m.added = _diff_lines(get_diff_for_mutant(name, path=module))
                    if not (m.removed or m.added):
                        # mutmut reads the two functions through its line-span index, which has come
                        # back empty for most survivors of a chunk read right after its run; parsing
                        # the mutated file itself (once per module) always finds them
                        if module not in parsed:
                            parsed[module] = libcst.parse_module((work / "mutants" / module).read_text())
                        pair = (read_original_function(parsed[module], name), read_mutant_function(parsed[module], name))
                        m.removed, m.added = _diff_lines("\n".join(difflib.unified_diff(
                            *(libcst.Module([f]).code.strip().split("\n") for f in pair), lineterm="")))
                found.append(m)
    finally:
        os.chdir(here)
    return found


def _natural(key: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key))


def _norm(text: str) -> str:
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


def mark_equivalents(mutants: list[Mutant], equivalents: list[dict], rules: list[dict] = ()) -> list[dict]:
    """Give each surviving mutant listed as equivalent (or matched by a rule) its reason and kind;
    return the entries no survivor used."""
    used = set()
    for m in mutants:
        if m.status in KILLED:
            continue
        for i, e in enumerate(equivalents):
            if (e["module"] == m.module and e["function"] == m.function and _norm(e["original"]) == m.removed
                    and _norm(e["mutant"]) == m.added):
                m.reason, m.kind = e["reason"].strip(), e.get("kind", "equivalent")
                used.add(i)
                break
        else:
            for r in rules:
                if _applies(r, m):
                    m.reason, m.kind = r["reason"].strip(), r.get("kind", "equivalent")
                    break
    return [e for i, e in enumerate(equivalents) if i not in used]


def _show(m: Mutant) -> list[str]:
    lines = [f"  {m.name}  [{m.status}]  {m.module}:{m.function}"]
    lines += [f"      - {t}" for t in m.removed.splitlines()]
    lines += [f"      + {t}" for t in m.added.splitlines()]
    return lines


def report(mutants: list[Mutant], stale: list[dict], selected: list[str], seconds: float) -> tuple[int, int]:
    out: list[str] = ["", "per module (killed/counted; equivalent and CUDA-only mutants not counted):"]
    for module in selected:
        ms = [m for m in mutants if m.module == module]
        counted = [m for m in ms if not m.reason]
        killed = sum(m.status in KILLED for m in counted)
        eq = sum(m.kind == "equivalent" for m in ms)
        cuda = sum(m.kind == "cuda" for m in ms)
        harness = sum(m.kind == "harness" for m in ms)
        pct = 100.0 * killed / len(counted) if counted else 100.0
        out.append(f"  {module:45s} {pct:5.1f}% ({killed}/{len(counted)})" + (f"  +{eq} equivalent" if eq else "")
                   + (f"  +{cuda} CUDA-only" if cuda else "") + (f"  +{harness} plain suite" if harness else ""))
    survivors = [m for m in mutants if m.status not in KILLED and not m.reason]
    out.append("")
    out.append(f"surviving mutants ({len(survivors)}): each is a missing test or an unlisted equivalent mutant")
    for m in survivors:
        out += _show(m)
    for kind, title in (("equivalent", "equivalent mutants ({n}): no behaviour tells them from the original"),
                        ("cuda", "CUDA-only mutants ({n}): they change only what a CUDA kernel or device "
                                 "placement does, which a machine without one never runs"),
                        ("harness", "mutants only the plain suite sees ({n}): mutmut's trampoline adds a stack "
                                    "frame per mutated function, so tests skip their stack-level checks under it")):
        listed = [m for m in mutants if m.reason and m.kind == kind]
        out.append("")
        out.append(title.format(n=len(listed)) + "; listed in tests/mutation/equivalent.toml, not counted:")
        for m in listed:
            out += _show(m)
            out.append(f"      because: {' '.join(m.reason.split())}")
    if stale:
        out.append("")
        out.append(f"entries of equivalent.toml that matched no survivor ({len(stale)}): the code or the mutant moved")
        for e in stale:
            out.append(f"  {e['module']}:{e['function']}: {_norm(e['mutant'])}")
    counted = [m for m in mutants if not m.reason]
    killed = sum(m.status in KILLED for m in counted)
    cuda = sum(m.kind in ("cuda", "harness") for m in mutants)
    out.append("")
    out.append(f"{len(mutants)} mutants of {len(selected)} modules; mutmut ran {seconds / 60:.1f} min")
    if cuda:
        out.append(f"with the {cuda} CUDA-only and plain-suite mutants counted as survivors: "
                   f"{100.0 * killed / max(len(counted) + cuda, 1):.1f}% ({killed}/{len(counted) + cuda})")
    print("\n".join(out))
    return killed, len(counted)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help="module paths (attnlife/measures.py, attnlife/analysis) or chunk "
                                               "names of tests/mutation/modules.toml; all when none")
    ap.add_argument("--keep", action="store_true", help="reuse the previous verdicts (see the module docstring)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested side by side")
    ap.add_argument("--lock", default=os.environ.get("MUTATE_LOCK"),
                    help="a file to flock while chunks run (default $MUTATE_LOCK): on a shared machine, "
                         "it is given back between chunks once held --lock-minutes, so other heavy jobs "
                         "run in between")
    ap.add_argument("--lock-minutes", type=float, default=5.0)
    args = ap.parse_args(argv)
    chunks, unmutated = load_chunks()
    if unmutated:
        print(f"warning: not mutated (in a cover folder of tests/mutation/modules.toml, in no chunk, and no "
              f"tests/<package>/test_<module>.py): {', '.join(unmutated)}", flush=True)
    chosen = select(chunks, args.targets)
    ran = 0.0
    mutants: list[Mutant] = []
    lock = MachineLock(args.lock, 60.0 * args.lock_minutes)
    failed: list[str] = []
    for chunk, modules in chosen.items():
        try:
            check_paths(chunk, chunks[chunk])
            work = prepare(chunk, modules, chunks[chunk]["tests"], args.keep, chunks[chunk].get("pytest_args", []))
            lock.take()
            try:
                seconds = run_mutmut(work, args.jobs)
            finally:
                lock.maybe_give_back()
        except ChunkFailed as err:  # the other chunks still run; the score line names this one
            print(f"error: {err}", flush=True)
            failed.append(chunk)
            continue
        ran += seconds
        got = collect(work, modules)
        mutants += got
        print(f"chunk {chunk}: {len(got)} mutants of {len(modules)} modules in {seconds:.0f} s", flush=True)
    lock.give_back()
    selected = [m for c, mods in chosen.items() if c not in failed for m in mods]
    entries, rules = load_equivalents()
    stale = mark_equivalents(mutants, [e for e in entries if e["module"] in selected], rules)
    killed, total = report(mutants, stale, selected, ran)
    WORK.mkdir(exist_ok=True)
    (WORK / "summary.json").write_text(json.dumps(
        {"killed": killed, "total": total, "mutants": [m.__dict__ for m in mutants]}, indent=1))
    if failed:
        print(f"mutation score: {100.0 * killed / max(total, 1):.1f}% ({killed}/{total}) without the failed "
              f"chunks {', '.join(failed)} (errors above)")
        return 1
    print(f"mutation score: {100.0 * killed / max(total, 1):.1f}% ({killed}/{total})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
