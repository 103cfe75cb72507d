"""Option conventions shared by the verbs: one name per concept, old names kept as deprecated aliases."""
from __future__ import annotations

from typing import Optional

import typer

MAX_ITERS_HELP = "Step budget: optimizer updates in total (the same name in every verb)."
STEPS_ALIAS_HELP = "Deprecated alias of --max-iters."


def deprecated_alias(value: Optional[int], old_value: Optional[int], old: str, new: str) -> Optional[int]:
    """`new`'s value, or `old`'s with a deprecation warning on stderr; ConfigError if both disagree."""
    if old_value is None:
        return value
    if value is not None and value != old_value:
        from attnlife.errors import ConfigError

        raise ConfigError(f"{old} {old_value} contradicts {new} {value}; pass only {new}")
    typer.echo(f"warning: {old} is deprecated; use {new}", err=True)
    return old_value
