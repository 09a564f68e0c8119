"""`drd run`: the daemon. Policies, snapshots and drills on their schedules, until stopped."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from drd import logs
from drd.app.active import load_active_settings
from drd.app.outcome import Outcome
from drd.config import Settings
from drd.daemon.service import run_daemon


def register(sub: Any, command: Any) -> None:
    """Add `run`."""
    command("run", run)


async def run(args: argparse.Namespace) -> Outcome:
    """Run until SIGTERM/SIGINT (exit 0 after the drain); SIGHUP reloads the configuration."""
    level = args.log_level

    def load(path: Path | None) -> Settings:
        settings = load_active_settings(path)
        # --log-level wins; otherwise the configuration's, applied again on every reload.
        logs.configure(level=level or settings.log_level)
        return settings

    code = await run_daemon(load, args.config)
    return Outcome.OK if code == 0 else Outcome.FAILED
