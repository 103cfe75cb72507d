"""`attnlife train` and `attnlife sample`: thin wrappers over `attnlife.run` and `attnlife.train`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def train_command(
    preset: str = typer.Option("cpu", "--preset", help="Preset: cpu or paper."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Prepared dataset name."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where `attnlife prepare` wrote it."),
    out: Optional[str] = typer.Option(None, "--out", help="Run directory to create or resume."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file with model, data, train, track tables."),
    overrides: List[str] = typer.Option([], "--set", help="section.key=value, repeatable."),
    max_iters: Optional[int] = typer.Option(None, "--max-iters", help="Step budget (train.max_iters); warm-up and decay scale with it unless set."),
    steps: Optional[int] = typer.Option(None, "--steps", hidden=True, help="Deprecated alias of --max-iters."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N, mps."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    track_every: Optional[int] = typer.Option(None, "--track-every", help="Sets track.every."),
    track_fraction: Optional[float] = typer.Option(None, "--track-fraction", help="Sets track.batch_fraction."),
    track_light_every: Optional[int] = typer.Option(None, "--track-light-every", help="Sets track.light_every (light tier: fused entropy, mean distance, sink from the training forward; 0 = off)."),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Sets track.sample_every: sample checkpoints at multiples of N updates for generation quality (split sample)."),
    no_track: bool = typer.Option(False, "--no-track", help="Sets track.enabled=false (both tiers)."),
    on_alert: Optional[str] = typer.Option(None, "--on-alert", help="Attention-health alerts (collapse, logit growth, sink takeover, dead heads): warn (default) | checkpoint (write one at the first alert of each kind) | stop (write one, then exit with code 3). Sets health.on_alert."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write loss, lr, config and attention to TensorBoard in OUT/tensorboard."),
    wandb: bool = typer.Option(False, "--wandb", help="Also log them to Weights & Biases (offline unless WANDB_MODE=online)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the newest checkpoint in --out."),
    allow_data_change: bool = typer.Option(False, "--allow-data-change", help="Resume even if the dataset differs from the one in run.json."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as TOML and exit."),
) -> None:
    """Train a GPT on a prepared dataset, writing metrics and a checkpoint series to --out."""
    from attnlife.cli.options import deprecated_alias
    from attnlife.config import build_config, config_to_toml

    max_iters = deprecated_alias(max_iters, steps, "--steps", "--max-iters")
    flags = {"train.max_iters": max_iters, "train.batch_size": batch_size,
             "train.learning_rate": lr, "train.device": device, "train.seed": seed,
             "track.every": track_every, "track.batch_fraction": track_fraction,
             "track.light_every": track_light_every, "track.sample_every": sample_every,
             "data.data_dir": data_dir, "health.on_alert": on_alert}
    extra = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if no_track:
        extra.append("track.enabled=false")
    config = build_config(preset=preset, dataset=dataset, toml_path=config_file,
                          overrides=list(overrides) + extra, out_dir=out)
    if print_config:
        typer.echo(config_to_toml(config), nl=False)
        return
    from attnlife.run import default_callbacks, run_training

    from attnlife.errors import TrainingInterrupted, TrainingStopped

    try:
        callbacks = default_callbacks(config)
        callbacks += _sink_callbacks(callbacks, config.out_dir, tensorboard, wandb)
        run_dir = run_training(config, callbacks, quiet=quiet, resume=resume,
                               allow_data_change=allow_data_change)
    except TrainingInterrupted as stop:  # SIGTERM/SIGINT: checkpoint written, conventional code
        typer.echo(f"interrupted: {stop}", err=True)
        raise typer.Exit(stop.exit_code) from None
    except TrainingStopped as stop:  # a callback (health.on_alert = stop) asked; checkpoint written
        typer.echo(f"stopped: {stop}", err=True)
        raise typer.Exit(stop.exit_code) from None
    _print_summary(run_dir)


def _sink_callbacks(callbacks: list, out_dir: str, tensorboard: bool, wandb: bool) -> list:
    """A SinkCallback (config, loss, lr, eval loss) for the chosen sinks, which the tracker's
    attention rows also go to; none off rank 0 (torchrun's RANK)."""
    import os

    if not (tensorboard or wandb) or int(os.environ.get("RANK", "0")) != 0:
        return []
    from attnlife.store.sinks import SinkCallback, TensorBoardSink, WandbSink

    sinks = [TensorBoardSink(Path(out_dir) / "tensorboard")] if tensorboard else []
    if wandb:
        sinks.append(WandbSink(out_dir, mode=os.environ.get("WANDB_MODE", "offline")))
    for callback in callbacks:  # the attention tracker
        if isinstance(getattr(callback, "sinks", None), list):
            callback.sinks.extend(sinks)
    return [SinkCallback(sinks)]


def _print_summary(run_dir: Path) -> None:
    from attnlife.store.run_dir import load_run

    run = load_run(run_dir)
    metrics = run.metrics()
    evals = metrics[metrics["metric"] == "eval_loss"]
    losses = ""
    if len(evals):
        last = evals[evals["step"] == evals["step"].max()].set_index("split")["value"]
        losses = " ".join(f"{split} loss {last[split]:.4f}" for split in ("train", "val") if split in last)
        losses = f"step {int(evals['step'].max())}: {losses}"
    typer.echo(f"run directory: {run_dir}")
    if losses:
        typer.echo(losses)
    typer.echo(f"checkpoints: {len(run.checkpoints())}")
    _print_attention_summary(metrics)
    _print_health_summary(metrics)


def _print_health_summary(metrics) -> None:  # noqa: ANN001 - pandas DataFrame
    """One line when attention-health alerts were written: how many, of which kinds, the first."""
    from attnlife.analysis.health import alert_table

    alerts = alert_table(metrics)
    if alerts.empty:
        return
    first = alerts.iloc[0]
    kinds = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in alerts.groupby("kind").size().items())
    typer.echo(f"attention health: {len(alerts)} alerts ({kinds}), the first at step {int(first.step)} "
               f"({first.kind.replace('_', ' ')}); rows alert_* in the metric table, "
               f"`attnlife analyze` relates them to the loss")


def _print_attention_summary(metrics) -> None:  # noqa: ANN001 - pandas DataFrame
    """The per-layer entropy/span table at the first and last tracked step (if anything was tracked)."""
    from rich.console import Console

    from attnlife.track.summary import attention_summary, summary_table

    summary = attention_summary(metrics)
    if not summary.empty:
        Console().print(summary_table(summary))


def sample_command(
    run: Path = typer.Argument(..., help="Run directory written by `attnlife train`."),
    tokens: int = typer.Option(500, "--tokens", help="New tokens to generate."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Start text (default: token id 0)."),
    temperature: float = typer.Option(0.8, "--temperature", help="0 = greedy."),
    top_k: Optional[int] = typer.Option(200, "--top-k", help="Keep the k most likely tokens."),
    seed: int = typer.Option(1337, "--seed"),
    step: Optional[int] = typer.Option(None, "--step", help="Checkpoint step (default: newest)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the context for every token."),
) -> None:
    """Print text sampled from a run's checkpoint, then the speed in tokens/s on its own line."""
    from attnlife.train.sampling import sample_run

    result = sample_run(run, tokens=tokens, prompt=prompt, temperature=temperature, top_k=top_k,
                        seed=seed, step=step, use_cache=not no_cache)
    typer.echo(result.text)
    typer.echo(f"{result.tokens_per_s:.1f} tokens/s ({result.new_tokens} tokens from step "
               f"{result.step}, {'no cache' if no_cache else 'KV cache'}, timed after a "
               f"{result.warmup_tokens}-token warm-up)")


def register(app: typer.Typer) -> None:
    """Add `train` and `sample` to the attnlife app."""
    from attnlife.config import field_reference

    epilog = ("Config fields (--set section.key=value or --config FILE.toml; cpu-preset defaults):\n\n"
              + field_reference())
    app.command("train", epilog=epilog)(train_command)
    app.command("sample")(sample_command)
