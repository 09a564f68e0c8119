"""`drd version` and `drd config check`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from drd import __version__
from drd.app.outcome import Outcome
from drd.commands.output import emit
from drd.config import describe, load_settings


def register(sub: Any, command: Any) -> None:
    """Add `version` and `config check`."""
    command("version", version)
    cfg = command("config", config)
    cfg.add_argument("action", choices=["check"])


async def version(args: argparse.Namespace) -> Outcome:
    """Print drd's version."""
    emit(args, {"version": __version__}, f"drd {__version__}")
    return Outcome.OK


async def config(args: argparse.Namespace) -> Outcome:
    """Load, resolve and print the configuration with secrets masked (exit 78 when invalid)."""
    resolved = describe(load_settings(args.config))
    emit(args, resolved, json.dumps(resolved, indent=2, default=str))
    return Outcome.OK
