"""PURE. What a failover does once its pre-flight is known: stop, refuse, or switch to what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drd.failover.active import Active

Step = Literal["stop", "refuse", "switch"]


@dataclass(frozen=True)
class SwitchPlan:
    """*step*, and for a switch the active record to write (None for a failback)."""

    step: Step
    active: Active | None = None
    forced: bool = False  # the switch goes ahead despite a failed pre-flight


def plan_switch(
    *,
    action: str,
    source: str,
    to: str,
    dry_run: bool,
    preflight_ok: bool,
    force: bool,
    started_at: float,
    event: str,
) -> SwitchPlan:
    """
    A dry run stops after the pre-flight; a failed pre-flight refuses unless *force*;
    otherwise *to* becomes the active primary (a failback removes the active record).
    """
    if dry_run:
        return SwitchPlan("stop")
    if not preflight_ok and not force:
        return SwitchPlan("refuse")
    forced = force and not preflight_ok
    if action == "failback":
        return SwitchPlan("switch", None, forced)
    return SwitchPlan("switch", Active(source, to, started_at, event, forced), forced)
