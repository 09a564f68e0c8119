"""
Fail over to the standby endpoint, and back.

`run_failover` runs the pre-flight (`drd.failover.preflight`); with ``dry_run`` it
stops there. A failed pre-flight refuses the switch unless forced, and a forced
switch is recorded as such. The switch itself:

1. records the active endpoint in ``state_dir/failover.json`` (written atomically):
   from then on `apply_active` turns every policy that copied the old primary to the
   new one around, so the reverse policy replicates from the new primary;
2. writes the overrides file, ``repo:tag -> standby-host/repo@sha256:…`` for every
   release tag the standby holds, atomically, for deployments to pin;
3. runs each ``[failover] hooks`` command (split like a shell would, ``{to}`` and
   ``{from}`` filled in per argument, no shell, a timeout, output captured);
4. records the event, with its timings, in ``failover.json`` and as a run of the job
   ``failover`` in the state database.

`run_failback` is a failover back to the endpoint the configuration names as primary;
it removes the active record.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shlex
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from drd.aio import run_all
from drd.errors import DrdError, TransientError
from drd.failover.active import Active, read_document, write_document
from drd.failover.hooks import HOOK_TIMEOUT_S, HookResult, run_hook
from drd.failover.preflight import LastDrill, Preflight, pins, preflight
from drd.failover.switch import plan_switch
from drd.files import atomic_write
from drd.oci.referrers import subject_of_tag
from drd.registry.client import RegistryClient
from drd.replica.check import ReplicaScope, TagCheck, check_replica, replication_lag
from drd.selection.policy import Policy
from drd.state import RunRecord, StateStore
from drd.timeline import Phase, new_run_id

log = structlog.get_logger(__name__)

# Events kept in failover.json; the state database keeps its own history of runs.
MAX_EVENTS = 200


# --------------------------------------------------------------------------- hooks


# --------------------------------------------------------------------------- the report


@dataclass
class FailoverReport:
    """One failover or failback: pre-flight, switch, overrides, hooks, timings."""

    action: str  # "failover" or "failback"
    source: str  # the endpoint that was primary
    to: str  # the endpoint that becomes primary
    dry_run: bool
    forced: bool
    event: str
    started_at: float
    preflight: Preflight | None = None
    switched: bool = False
    refused: bool = False  # the pre-flight failed and the switch was not forced
    active: Active | None = None
    overrides_file: str = ""
    overrides: int = 0
    hooks: list[HookResult] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    finished_at: float = 0.0
    error: str = ""
    # The endpoints' ``region`` keys ("" when not set): what a DNS or load-balancer hook
    # switches between, and what the record says moved where.
    from_region: str = ""
    to_region: str = ""
    exception: DrdError | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """A dry run whose pre-flight passed, or a switch whose hooks all succeeded."""
        if self.error:
            return False
        if self.dry_run:
            return self.preflight is not None and self.preflight.ok
        return self.switched and all(h.ok for h in self.hooks)

    @property
    def outcome(self) -> str:
        """``planned``, ``refused``, ``switched``, ``switched-hooks-failed`` or ``error``."""
        if self.dry_run:
            return "planned" if self.ok else "refused"
        if self.refused:
            return "refused"
        if not self.switched:
            return "error"
        return "switched" if self.ok else "switched-hooks-failed"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view: the event as recorded."""
        return {
            "action": self.action,
            "event": self.event,
            "from": self.source,
            "to": self.to,
            "from_region": self.from_region,
            "to_region": self.to_region,
            "dry_run": self.dry_run,
            "forced": self.forced,
            "ok": self.ok,
            "outcome": self.outcome,
            "switched": self.switched,
            "active": self.active.to_json() if self.active else None,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": round(self.finished_at - self.started_at, 3),
            "preflight": self.preflight.to_json() if self.preflight else None,
            "overrides_file": self.overrides_file,
            "overrides": self.overrides,
            "hooks": [h.to_json() for h in self.hooks],
            "phases": [p.to_json() for p in self.phases],
            "error": self.error,
        }

    def render(self) -> str:
        """Human text: the findings, then what was done."""
        mode = " (dry run: pre-flight only)" if self.dry_run else ""
        lines = [
            f"{self.action} {_where(self.source, self.from_region)} -> "
            f"{_where(self.to, self.to_region)}{mode}: {self.outcome}"
        ]
        if self.preflight is not None:
            for f in self.preflight.findings:
                lines.append(f"  [{'ok' if f.ok else 'FAIL'}] {f.check}: {f.summary}")
                lines += [f"         {d}" for d in f.details]
        if self.forced and self.switched:
            lines.append("  forced: the switch was made despite a failed pre-flight")
        if self.switched:
            active = self.to
            if self.active is not None:
                active = f"{self.active.standby} (in place of {self.active.primary})"
            lines.append(f"  active primary: {active}")
            lines.append(f"  overrides: {self.overrides} pins in {self.overrides_file}")
        for hook in self.hooks:
            status = "ok" if hook.ok else (hook.error or f"exit {hook.exit_code}")
            lines.append(f"  hook {shlex.join(hook.command)}: {status} in {hook.duration_s:.2f}s")
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def _where(endpoint: str, region: str) -> str:
    """An endpoint's name, with its region when the config gives one."""
    return f"{endpoint} ({region})" if region else endpoint


def _iso(ts: float) -> str | None:
    if not ts:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Timer:
    def __init__(self, report: FailoverReport) -> None:
        self.report = report
        self.t0 = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[list[str]]:
        detail: list[str] = []
        start = time.monotonic()
        ok = True
        try:
            yield detail
        except BaseException:
            ok = False
            raise
        finally:
            self.report.phases.append(
                Phase(name, start - self.t0, time.monotonic() - start, ok, "; ".join(detail))
            )


# --------------------------------------------------------------------------- the switch


async def _last_drill(state: StateStore | None) -> LastDrill | None:
    if state is None:
        return None
    for job in await state.jobs():
        if job.job == "drill" and job.last_finished is not None:
            return LastDrill(job.last_finished, job.last_outcome or "", job.last_error)
    return None


async def standby_pins(
    standby: RegistryClient, scopes: list[ReplicaScope], concurrency: int = 16
) -> list[tuple[str, str, str]]:
    """
    (repository, tag, digest) of every release tag the policies select, as the
    standby itself holds it now: pins only ever name content that is there.
    """
    limit = asyncio.Semaphore(concurrency)
    found: list[tuple[str, str, str]] = []

    async def repository(policy: Policy, repo: str) -> None:
        tags = policy.tags.select(await standby.list_tags(repo))

        async def head(tag: str) -> None:
            async with limit:
                desc = await standby.head_manifest(repo, tag)
            if desc is not None and subject_of_tag(tag) is None:
                found.append((repo, tag, str(desc.digest)))

        await run_all(head(t) for t in tags)

    for scope in scopes:
        policy = scope.policy
        literal = policy.repositories.literal_names()
        repos = (
            literal
            if literal is not None
            else sorted(n for n in await standby.catalog() if policy.repositories(n))
        )
        await run_all(repository(policy, r) for r in repos)
    return sorted(set(found))


@dataclass(frozen=True)
class FailoverSetup:
    """What a switch needs from the configuration, resolved to plain values."""

    state_dir: Path
    overrides_file: Path
    hooks: tuple[str, ...] = ()
    max_drill_age_s: float = 7 * 86400.0
    rpo_s: float = 3600.0
    hook_timeout_s: float = HOOK_TIMEOUT_S
    # Each endpoint's ``region`` key, where the config sets one: in the report and hooks.
    regions: Mapping[str, str] = field(default_factory=dict)


async def switch_over(
    setup: FailoverSetup,
    registries: Mapping[str, RegistryClient],
    scopes: list[ReplicaScope],
    *,
    action: str,
    source: str,
    to: str,
    dry_run: bool = False,
    force: bool = False,
    state: StateStore | None = None,
    clock: Callable[[], float] = time.time,
    fence: Callable[[], Awaitable[None]] | None = None,
) -> FailoverReport:
    """
    Run the pre-flight and (unless *dry_run*, or refused) the switch to *to*; record
    the event. `drd.app.failover` checks the request and resolves *scopes* first.
    *fence*, when given, is awaited right before the switch is written and raises
    when this process no longer holds the failover lock: nothing is switched then.
    """
    report = FailoverReport(
        action=action,
        source=source,
        to=to,
        dry_run=dry_run,
        forced=force,
        event=new_run_id(),
        started_at=clock(),
        from_region=setup.regions.get(source, ""),
        to_region=setup.regions.get(to, ""),
    )
    timer = _Timer(report)
    with structlog.contextvars.bound_contextvars(job=action, event=report.event, to=to):
        try:
            await _switch(report, timer, setup, scopes, registries, state, fence)
        except DrdError as exc:
            report.exception = exc
            report.error = f"{type(exc).__name__}: {exc}"
            log.error(f"{action}.failed", error=report.error)  # noqa: TRY400 - no traceback
        report.finished_at = clock()
        if not dry_run:
            await _record(report, setup.state_dir, state)
        log.info(
            f"{action}.finished",
            outcome=report.outcome,
            forced=force and report.switched,
            duration_s=round(report.finished_at - report.started_at, 3),
        )
    return report


async def _preflight(
    report: FailoverReport,
    timer: _Timer,
    setup: FailoverSetup,
    scopes: list[ReplicaScope],
    registries: Mapping[str, RegistryClient],
    state: StateStore | None,
) -> Preflight:
    """Compare the standby, read the lag and the last drill: the pre-flight's findings."""
    to, source = report.to, report.source
    standby = registries[to]
    with timer.phase("preflight") as detail:
        checks: list[TagCheck] = []
        compared, compare_error = True, ""
        try:
            for scope in scopes:
                checks += await check_replica(registries[scope.source], standby, scope)
        except TransientError as exc:
            compared, compare_error = False, f"{type(exc).__name__}: {exc}"
        now = report.started_at
        lag = await replication_lag(state, scopes, to, now)
        result = preflight(
            to=to,
            source=source,
            policies=[s.policy.name for s in scopes],
            checks=checks,
            compared=compared,
            compare_error=compare_error,
            lag_s=lag[0] if lag else None,
            lag_method=lag[1] if lag else "",
            rpo_s=setup.rpo_s,
            last_drill=await _last_drill(state),
            max_drill_age_s=setup.max_drill_age_s,
            now=now,
        )
        detail.append(f"{len(result.failed())} of 4 findings failed")
    return result


async def _switch(
    report: FailoverReport,
    timer: _Timer,
    setup: FailoverSetup,
    scopes: list[ReplicaScope],
    registries: Mapping[str, RegistryClient],
    state: StateStore | None,
    fence: Callable[[], Awaitable[None]] | None,
) -> None:
    to, source = report.to, report.source
    standby = registries[to]
    report.preflight = await _preflight(report, timer, setup, scopes, registries, state)
    plan = plan_switch(
        action=report.action,
        source=source,
        to=to,
        dry_run=report.dry_run,
        preflight_ok=report.preflight.ok,
        force=report.forced,
        started_at=report.started_at,
        event=report.event,
    )
    if plan.step == "stop":
        return
    if plan.step == "refuse":
        failed = ", ".join(f.check for f in report.preflight.failed())
        report.error = f"pre-flight failed ({failed}); refusing to switch without --force"
        report.refused = True
        return
    if fence is not None:
        await fence()  # a holder paused past the lock's TTL stops here
    with timer.phase("switch") as detail:
        doc = await asyncio.to_thread(read_document, setup.state_dir)
        report.active = plan.active
        doc["active"] = plan.active.to_json() if plan.active is not None else None
        await asyncio.to_thread(write_document, setup.state_dir, doc)
        report.switched = True
        detail.append(f"{to} is the active primary")
    log.warning(
        f"{report.action}.switched",
        source=source,
        to=to,
        forced=plan.forced,
    )
    await _write_overrides(report, timer, setup, standby, scopes)
    if setup.hooks:
        await _run_hooks(report, timer, setup, registries)


async def _write_overrides(
    report: FailoverReport,
    timer: _Timer,
    setup: FailoverSetup,
    standby: RegistryClient,
    scopes: list[ReplicaScope],
) -> None:
    """Pin every release tag the standby holds, by digest, in the overrides file."""
    with timer.phase("overrides") as detail:
        found = await standby_pins(standby, scopes)
        mapping = pins(found, standby.host)
        path = setup.overrides_file
        document = {
            "kind": "drd-overrides",
            "schema_version": 1,
            "generated_at": _iso(time.time()),
            "event": report.event,
            "action": report.action,
            "from": report.source,
            "to": report.to,
            "from_region": report.from_region,
            "to_region": report.to_region,
            "registry": standby.host,
            "overrides": mapping,
        }
        await asyncio.to_thread(atomic_write, path, json.dumps(document, indent=2) + "\n")
        report.overrides_file, report.overrides = str(path), len(mapping)
        detail.append(f"{len(mapping)} pins")


async def _run_hooks(
    report: FailoverReport,
    timer: _Timer,
    setup: FailoverSetup,
    registries: Mapping[str, RegistryClient],
) -> None:
    """Run each ``[failover] hooks`` command with the switch's values filled in."""
    to, source = report.to, report.source
    values = {
        "to": to,
        "from": source,
        "to_url": registries[to].base_url,
        "to_host": registries[to].host,
        "from_url": registries[source].base_url if source in registries else "",
        "from_host": registries[source].host if source in registries else "",
        "to_region": report.to_region,
        "from_region": report.from_region,
        "overrides": str(setup.overrides_file),
        "event": report.event,
    }
    with timer.phase("hooks") as detail:
        for hook in setup.hooks:
            result = await run_hook(hook, values, setup.hook_timeout_s)
            report.hooks.append(result)
            log.info(
                f"{report.action}.hook",
                command=list(result.command),
                ok=result.ok,
                exit_code=result.exit_code,
                duration_s=round(result.duration_s, 3),
            )
        detail.append(f"{sum(h.ok for h in report.hooks)} of {len(report.hooks)} succeeded")


def _ok(report: FailoverReport) -> bool:
    return report.preflight is not None and report.preflight.ok


async def _record(report: FailoverReport, state_dir: Path, state: StateStore | None) -> None:
    """Append the event to failover.json and to the state database's run history."""
    event = report.to_json()
    event["forced"] = report.forced and report.switched and not _ok(report)

    def append() -> None:
        doc = read_document(state_dir)
        doc["events"] = [*doc.get("events", []), event][-MAX_EVENTS:]
        write_document(state_dir, doc)

    try:
        await asyncio.to_thread(append)
    except (OSError, DrdError) as exc:
        log.error("failover.not_recorded", error=str(exc))  # noqa: TRY400 - no traceback
    if state is not None:
        await state.record_run(
            RunRecord(
                report.action,
                "failover",
                "manual",
                report.started_at,
                report.finished_at,
                "ok" if report.ok else ("error" if report.error else "failed"),
                {
                    "from": report.source,
                    "to": report.to,
                    "outcome": report.outcome,
                    "forced": event["forced"],
                    "overrides": report.overrides,
                    "hooks_failed": sum(not h.ok for h in report.hooks),
                    "phases": {p.name: round(p.duration_s, 3) for p in report.phases},
                },
                report.error,
            )
        )
