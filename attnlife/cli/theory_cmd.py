"""`attnlife theory scan-snap` and `attnlife theory markov`: the two one-layer theory experiments.

Each verb writes an ordinary run directory, then analyses it (`attnlife.explain.analyze_run`:
analysis tables such as `cycles`, `scan_snap`, `sweep_final`) and reports it
(`attnlife.report.report_run`: the theory figure and the dashboard), like every run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from attnlife.cli.options import deprecated_alias, writer_locks

THREADS_HELP = "torch CPU threads (1 is fastest for these small tensors on a shared machine)"

theory_app = typer.Typer(help="Reproduce one-layer attention theory (scan and snap; focus-dilution).",
                         no_args_is_help=True)


def _parse_mk(values: list[str]) -> list[tuple[int, int]]:
    from attnlife.errors import TheoryConfigError

    pairs = []
    for v in values:
        try:
            m, k = (int(x) for x in v.split("/"))
        except ValueError:
            raise TheoryConfigError(f"--mk {v!r} is not M/K; write it like --mk 3/6") from None
        pairs.append((m, k))
    return pairs


@theory_app.command("scan-snap")
def scan_snap(
    out: Path = typer.Option(..., "--out", help="run directory to write"),
    sweep: bool = typer.Option(False, "--sweep", help="final entropy vs eta_Y/eta_Z over M/K and seeds"),
    n_last: int = typer.Option(3, "--n-last", help="M: number of last (query) tokens"),
    n_next: int = typer.Option(6, "--n-next", help="K: number of next tokens (classes)"),
    mk: Optional[list[str]] = typer.Option(None, "--mk", help="sweep M/K pairs, e.g. --mk 3/6 (repeatable)"),
    ratios: Optional[list[float]] = typer.Option(None, "--ratio", help="sweep eta_Y/eta_Z values (repeatable)"),
    eta_zs: Optional[list[float]] = typer.Option(None, "--sweep-eta-z", help="sweep eta_Z values (repeatable)"),
    seeds: int = typer.Option(10, "--seeds", help="sweep seeds per grid point"),
    n_distinct: int = typer.Option(10, "--n-distinct", help="distinct tokens per class"),
    n_common: int = typer.Option(10, "--n-common", help="common tokens shared by all classes"),
    common_mass: float = typer.Option(0.5, "--common-mass", help="probability mass of common tokens (--profile zipf)"),
    profile: str = typer.Option("linear", "--profile", help="distinct-token weights: 'linear' (the authors': "
                                "linspace(0.1, 1), common tokens weight 1) or 'zipf' (1/j, --common-mass)"),
    seq_len: int = typer.Option(128, "--seq-len", help="T: sequence length (T-1 contextual tokens)"),
    batch_size: int = typer.Option(128, "--batch-size"),
    max_iters: Optional[int] = typer.Option(None, "--max-iters", help="SGD steps (default 2000 single, 100 sweep)"),
    steps: Optional[int] = typer.Option(None, "--steps", hidden=True, help="deprecated alias of --max-iters"),
    eta_y: float = typer.Option(5.0, "--eta-y", help="decoder learning rate (single run)"),
    eta_z: float = typer.Option(1.0, "--eta-z", help="attention learning rate (single run)"),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum (the authors' 0.9; 0 is plain SGD)"),
    decoder: str = typer.Option("vocab", "--decoder", help="decoder outputs: 'vocab' (every token, the "
                                "authors') or 'next' (the K next tokens)"),
    init: str = typer.Option("uniform", "--init", help="start of Y and Z: 'uniform' (torch's nn.Linear "
                             "default, the authors') or 'zero' (uniform attention)"),
    param: str = typer.Option("reparam", "--param", help="'reparam' (Y, Z) or 'module' (W_Q, W_K, W_V, W_U; eta_Z is the W_Q/W_K rate, try 30)"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help=THREADS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Scan and snap (Tian et al. 2023): attention over time, or with --sweep the entropy sweep."""
    from attnlife.theory.scan_snap_runs import ScanSnapConfig, SweepConfig, run_scan_snap, run_sweep

    _set_threads(threads)
    steps = deprecated_alias(max_iters, steps, "--steps", "--max-iters")
    common = dict(n_distinct=n_distinct, n_common=n_common, common_mass=common_mass, distinct_profile=profile,
                  seq_len=seq_len, batch_size=batch_size, momentum=momentum, decoder=decoder, init=init, seed=seed)
    if sweep:
        cfg = SweepConfig(n_seeds=seeds, **common)
        cfg.mk = _parse_mk(mk) if mk else cfg.mk
        cfg.ratios = list(ratios) if ratios else cfg.ratios
        cfg.eta_z = list(eta_zs) if eta_zs else cfg.eta_z
        cfg.steps = cfg.steps if steps is None else steps  # 0 is refused, not replaced
    else:
        cfg = ScanSnapConfig(n_last=n_last, n_next=n_next, eta_y=eta_y, eta_z=eta_z, param=param, **common)
        cfg.steps = cfg.steps if steps is None else steps  # 0 is refused, not replaced
    with writer_locks([out], "theory scan-snap"):
        (run_sweep if sweep else run_scan_snap)(cfg, out, quiet)
        figure = _explain_and_report(out, "sweep_entropy" if sweep else "scan_snap")
    typer.echo(f"wrote {out} (figure {figure})")


def _explain_and_report(out: Path, figure: str, **analysis) -> Path:
    """Analyse and report a theory run like every run; the path of its main figure."""
    from attnlife.explain import analyze_run
    from attnlife.report import report_run

    analyze_run(out, quiet=True, sample=False, **analysis)
    report_run(out, quiet=True)
    return out / "report" / f"{figure}.png"


def _set_threads(threads: int) -> None:
    import torch

    from attnlife.errors import TheoryConfigError

    if threads < 1:
        raise TheoryConfigError("--threads must be >= 1")
    torch.set_num_threads(threads)


@theory_app.command("markov")
def markov(
    out: Path = typer.Option(..., "--out", help="run directory to write"),
    text: Optional[Path] = typer.Option(None, "--text", help="train on this character text instead of a chain"),
    vocab_size: int = typer.Option(50, "--vocab-size", help="V: Markov-chain states"),
    zipf: float = typer.Option(1.5, "--zipf", help="Zipf exponent of the stationary distribution"),
    degree: int = typer.Option(4, "--degree", help="approx. nonzero transitions per row (sparsity)"),
    seq_len: int = typer.Option(64, "--seq-len"),
    n_embd: int = typer.Option(32, "--n-embd"),
    init_std: float = typer.Option(0.002, "--init-std", help="std of the initial embedding, positions and output projection"),
    attn_init_std: Optional[float] = typer.Option(0.2, "--attn-init-std", help="std of the initial W_Q, W_K, W_V"),
    lr: float = typer.Option(0.5, "--lr", help="SGD learning rate (small: follows gradient flow)"),
    max_iters: Optional[int] = typer.Option(None, "--max-iters", help="SGD steps (default 20000)"),
    steps: Optional[int] = typer.Option(None, "--steps", hidden=True, help="deprecated alias of --max-iters"),
    batch_size: int = typer.Option(32, "--batch-size"),
    n_train_seqs: int = typer.Option(4096, "--n-train-seqs", help="training sequences sampled once up front"),
    top_tokens: int = typer.Option(2, "--top-tokens", help="how many most-frequent tokens define focus"),
    log_every: int = typer.Option(200, "--log-every"),
    log_points: int = typer.Option(200, "--log-points", help="extra log-spaced logging steps (0: only --log-every)"),
    residual: bool = typer.Option(True, "--residual/--no-residual", help="residual path around the attention"),
    rel_prominence: float = typer.Option(0.2, "--rel-prominence", help="cycle threshold, fraction of the signal range"),
    smooth_window: int = typer.Option(5, "--smooth", help="moving-average window (log points) before cycle detection"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help=THREADS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Focus-dilution cycles of a one-layer transformer on Markov data (or --text)."""
    from attnlife.explain import CycleOptions
    from attnlife.store.run_dir import load_run
    from attnlife.theory.markov import MarkovConfig, run_markov

    _set_threads(threads)
    steps = deprecated_alias(max_iters, steps, "--steps", "--max-iters")
    steps = MarkovConfig.steps if steps is None else steps  # 0 is refused by the config check, not replaced
    cfg = MarkovConfig(vocab_size=vocab_size, zipf_exponent=zipf, degree=degree,
                       text=str(text) if text else None, seq_len=seq_len, n_embd=n_embd, init_std=init_std,
                       attn_init_std=attn_init_std, log_points=log_points, residual=residual,
                       lr=lr, steps=steps, batch_size=batch_size, n_train_seqs=n_train_seqs, top_tokens=top_tokens,
                       log_every=log_every, seed=seed)
    with writer_locks([out], "theory markov"):
        run_markov(cfg, out, quiet)
        figure = _explain_and_report(out, "markov_focus", cycles=CycleOptions(
            rel_prominence=rel_prominence, focus_window=smooth_window))
    run = load_run(out)
    cycles = run.analysis_table("cycles")
    stages = run.analysis_table("focus_stages")
    order = "; ".join(f"{r.stage} {r.step:.0f}" for r in stages.sort_values("step").itertuples())
    typer.echo(f"wrote {out}: top-{top_tokens} tokens: {cycle_summary(cycles[cycles.signal == 'attn_focus_excess'])}"
               f"; any one token: {cycle_summary(cycles[cycles.signal == 'attn_token_excess_max'])}"
               f"; stages: {order or 'none dated'} (figure {figure})")


def cycle_summary(focus) -> str:
    """One line on the focus-dilution cycles: closed ones counted (the 3 largest listed: peak step,
    period, amplitude);
    open ones (no recovery before the run ends) named as open and not counted."""
    closed = focus[focus.status == "closed"]
    open_ = focus[focus.status == "open"]
    line = f"{len(closed)} closed focus-dilution cycle(s)"
    if len(closed):
        shown = closed.nlargest(3, "prominence").sort_values("start_step")   # the 3 largest, in time order
        line += " (" + "; ".join(f"peak {c.start_step:.0f}, period {c.period_steps:.0f} steps, amplitude "
                                 f"{c.prominence:.4f}" for c in shown.itertuples())
        line += (f"; {len(closed) - len(shown)} smaller not listed" if len(closed) > len(shown) else "") + ")"
    if len(open_):
        line += "; open, not counted: peak at step " + ", ".join(f"{s:.0f}" for s in open_.start_step)
    return line


def register(app: typer.Typer) -> None:
    """Add the `theory` verb group to the main app."""
    app.add_typer(theory_app, name="theory")
