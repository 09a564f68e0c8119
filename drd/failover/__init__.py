"""
Failover: pre-flight checks on the standby, the switch, digest-pinned overrides, hooks.

`run_failover` / `run_failback` do the work; `drd.failover.preflight` is the pure
judgement of the standby's readiness; `load_active_settings` is the configuration
as it applies while a failover is in force (the reverse policies).
"""

from drd.failover.preflight import Finding, LastDrill, Preflight, preflight
from drd.failover.runner import (
    Active,
    FailoverRefused,
    FailoverReport,
    HookResult,
    apply_active,
    events,
    load_active_settings,
    read_active,
    run_failback,
    run_failover,
)

__all__ = [
    "Active",
    "FailoverRefused",
    "FailoverReport",
    "Finding",
    "HookResult",
    "LastDrill",
    "Preflight",
    "apply_active",
    "events",
    "load_active_settings",
    "preflight",
    "read_active",
    "run_failback",
    "run_failover",
]
