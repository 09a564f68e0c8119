"""`drd run`: the daemon. Policies, snapshots and drills on their schedules, until stopped."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drd import logs

if TYPE_CHECKING:
    from drd.config import Settings


def register(sub: Any, command: Any) -> None:
    """Add `run`."""
    command("run", "the daemon: every policy, snapshot and drill on its schedule", run)


async def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT (exit 0 after the drain); SIGHUP reloads the configuration."""
    # Imported on use, not at module level: start-up time of every CLI run.
    from drd.daemon.service import run_daemon
    from drd.failover.active import load_active_settings

    level = args.log_level

    def load(path: Path | None) -> Settings:
        settings = load_active_settings(path)
        # --log-level wins; otherwise the configuration's, applied again on every reload.
        logs.configure(level=level or settings.log_level)
        return settings

    return await run_daemon(load, args.config)
