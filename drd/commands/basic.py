"""`drd version` and `drd config check`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from drd import __version__
from drd.commands.output import emit


def register(sub: Any, command: Any) -> None:
    """Add `version` and `config check`."""
    command("version", "print the version", version)
    cfg = command("config", "check and print the resolved configuration", config)
    cfg.add_argument("action", choices=["check"])


async def version(args: argparse.Namespace) -> int:
    """Print drd's version."""
    emit(args, {"version": __version__}, f"drd {__version__}")
    return 0


async def config(args: argparse.Namespace) -> int:
    """Load, resolve and print the configuration with secrets masked (exit 78 when invalid)."""
    # Imported on use, not at module level: start-up time of every CLI run.
    from drd.config import describe, load_settings

    resolved = describe(load_settings(args.config))
    emit(args, resolved, json.dumps(resolved, indent=2, default=str))
    return 0
