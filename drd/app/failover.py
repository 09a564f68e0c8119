"""
Failover and failback from the configuration: check the request against the
endpoints and the failover in force, resolve the standby's replica scopes, and run
the switch (`drd.failover.runner.switch_over`).

A switch (not a dry run) runs under the cluster-wide lock ``failover`` in the state
database (`drd.state.locks`): two operators, or two nodes, never switch at once; the
second gets `drd.errors.Busy` naming the holder. The failover in force is read under it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Mapping

from drd.app.active import apply_active
from drd.app.drills import replica_scopes
from drd.config import Settings
from drd.errors import FailoverRefused
from drd.failover.active import read_active
from drd.failover.hooks import HOOK_TIMEOUT_S
from drd.failover.runner import FailoverReport, FailoverSetup, switch_over
from drd.registry.client import RegistryClient
from drd.state import StateStore
from drd.state.locks import Fence, exclusive


def _since(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The lock both failover and failback hold (they must not run at once either).
FAILOVER_LOCK = "failover"


@contextlib.asynccontextmanager
async def _exclusive(
    settings: Settings, state: StateStore | None, *, dry_run: bool
) -> AsyncIterator[Fence | None]:
    """The failover lock (and its fence) around a switch; none for a dry run or without a state."""
    if dry_run or state is None:
        yield None
        return
    ttl = settings.state.lease_ttl.total_seconds()
    async with exclusive(state, FAILOVER_LOCK, node=settings.daemon.node_name, ttl=ttl) as fence:
        yield fence


async def run_failover(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    *,
    to: str,
    dry_run: bool = False,
    force: bool = False,
    state: StateStore | None = None,
    hook_timeout_s: float = HOOK_TIMEOUT_S,
    clock: Callable[[], float] = time.time,
) -> FailoverReport:
    """
    Make *to* the active primary, after the pre-flight; see the module docstring.

    *settings* is the configuration as written (not `apply_active`'s view). Raises
    `FailoverRefused` when *to* is unknown, already active, or not a standby of
    anything, and `Busy` when another failover or failback holds the lock. Side
    effects (none with *dry_run*): the state file, the overrides file, the hook
    commands, the state database.
    """
    async with _exclusive(settings, state, dry_run=dry_run) as fence:
        return await _switch(
            settings,
            registries,
            to=to,
            dry_run=dry_run,
            force=force,
            state=state,
            hook_timeout_s=hook_timeout_s,
            clock=clock,
            fence=fence,
        )


async def _switch(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    *,
    to: str,
    dry_run: bool,
    force: bool,
    state: StateStore | None,
    hook_timeout_s: float,
    clock: Callable[[], float],
    fence: Fence | None = None,
) -> FailoverReport:
    if to not in settings.endpoints:
        raise FailoverRefused(f"no endpoint named {to}")
    state_dir = settings.daemon.state_dir
    active = read_active(state_dir)
    action = "failover"
    if active is not None:
        if to == active.standby:
            raise FailoverRefused(
                f"{to} is already the active primary (since {_since(active.since)})"
            )
        if to != active.primary:
            raise FailoverRefused(
                f"{active.standby} is active in place of {active.primary}; fail back first"
            )
        action = "failback"
    effective = apply_active(settings, active)
    scopes = replica_scopes(effective, to)
    sources = sorted({s.source for s in scopes})
    if not scopes:
        raise FailoverRefused(f"no replication policy copies to {to}: it is nobody's standby")
    if len(sources) > 1:
        raise FailoverRefused(f"{to} is the standby of several endpoints: {', '.join(sources)}")
    drills = effective.drills
    setup = FailoverSetup(
        state_dir=state_dir,
        overrides_file=settings.failover.overrides_file,
        hooks=tuple(settings.failover.hooks),
        max_drill_age_s=settings.failover.max_drill_age.total_seconds(),
        rpo_s=(drills.rpo if drills else dt.timedelta(hours=1)).total_seconds(),
        hook_timeout_s=hook_timeout_s,
        regions={name: ep.region for name, ep in settings.endpoints.items() if ep.region},
    )
    return await switch_over(
        setup,
        registries,
        scopes,
        action=action,
        source=sources[0],
        to=to,
        dry_run=dry_run,
        force=force,
        state=state,
        clock=clock,
        fence=fence,
    )


async def run_failback(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    *,
    dry_run: bool = False,
    force: bool = False,
    state: StateStore | None = None,
    hook_timeout_s: float = HOOK_TIMEOUT_S,
    clock: Callable[[], float] = time.time,
) -> FailoverReport:
    """
    Fail back to the configured primary; `FailoverRefused` when no failover is in force,
    `Busy` when another failover or failback holds the lock.
    """
    async with _exclusive(settings, state, dry_run=dry_run) as fence:
        active = read_active(settings.daemon.state_dir)
        if active is None:
            raise FailoverRefused("no failover is in force: nothing to fail back from")
        return await _switch(
            settings,
            registries,
            to=active.primary,
            dry_run=dry_run,
            force=force,
            state=state,
            hook_timeout_s=hook_timeout_s,
            clock=clock,
            fence=fence,
        )
