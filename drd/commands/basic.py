"""`drd version` and `drd config check`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from drd import __version__
from drd.app.outcome import Outcome
from drd.commands.output import emit

if TYPE_CHECKING:
    from drd.config import Settings


def register(sub: Any, command: Any) -> None:
    """Add `version` and `config check`."""
    command("version", version)
    cfg = command("config", config)
    cfg.add_argument("action", choices=["check"])
    cfg.add_argument(
        "--show", action="store_true", help="print the resolved configuration, secrets masked"
    )


async def version(args: argparse.Namespace) -> Outcome:
    """Print drd's version."""
    emit(args, {"version": __version__}, f"drd {__version__}")
    return Outcome.OK


async def config(args: argparse.Namespace) -> Outcome:
    """
    Load and resolve the configuration (exit 78 when invalid) and say what it holds in
    one line; with --show, the resolved configuration too, secrets masked.
    """
    # Imported here: `drd version`, registered by this module too, loads no config models.
    from drd.config import describe, load_settings

    settings = load_settings(args.config)
    resolved = describe(settings)
    line = summary(settings)
    human = f"{json.dumps(resolved, indent=2, default=str)}\n{line}" if args.show else line
    emit(args, {"ok": True, "summary": line, "config": resolved}, human)
    return Outcome.OK


def summary(settings: Settings) -> str:
    """One line: how many endpoints, policies, trust policies and stores, then OK."""
    counts = [
        (len(settings.endpoints), "endpoint"),
        (len(settings.replication), "replication policy"),
        (len(settings.trust), "trust policy"),
        (int(settings.snapshots is not None), "snapshot store"),
    ]
    parts = [f"{n} {_plural(word, n)}" for n, word in counts]
    return f"configuration OK: {', '.join(parts)}"


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    return word[:-1] + "ies" if word.endswith("y") else word + "s"
