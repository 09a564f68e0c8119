"""
The configuration as it applies while a failover is in force: `load_active_settings`
is what `drd replicate`, `drd drill` and `drd run` read their configuration with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drd.config import Settings, load_settings
from drd.failover.active import Active, read_active


def apply_active(settings: Settings, active: Active | None) -> Settings:
    """
    The configuration as it applies while *active* is in force. Pure.

    Every policy copying *primary* to *standby* is turned around: it copies from the
    standby to the old primary (and to its other targets). Snapshots of the old
    primary become snapshots of the standby. Everything else is unchanged.
    """
    if active is None:
        return settings
    reps = []
    for rep in settings.replication:
        if rep.source == active.primary and active.standby in rep.targets:
            targets = [active.primary] + [t for t in rep.targets if t != active.standby]
            reps.append(rep.model_copy(update={"source": active.standby, "targets": targets}))
        else:
            reps.append(rep)
    update: dict[str, Any] = {"replication": reps}
    if settings.snapshots is not None and settings.snapshots.source == active.primary:
        update["snapshots"] = settings.snapshots.model_copy(update={"source": active.standby})
    return settings.model_copy(update=update)


def load_active_settings(path: Path | None = None) -> Settings:
    """`load_settings`, then `apply_active` with the failover recorded in the state directory."""
    settings = load_settings(path)
    return apply_active(settings, read_active(settings.daemon.state_dir))
