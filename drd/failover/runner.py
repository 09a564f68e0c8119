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
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from drd.config import Settings
from drd.drill.report import Phase, TagCheck
from drd.drill.runner import ReplicaScope, check_replica, replica_scopes, replication_lag
from drd.errors import DrdError, InvalidReference, TransientError
from drd.failover.active import (
    Active,
    apply_active,
    atomic_write,
    read_active,
    read_document,
    write_document,
)

# Re-exported: they lived here before `drd.failover.active`.
from drd.failover.active import events as events
from drd.failover.active import load_active_settings as load_active_settings
from drd.failover.preflight import LastDrill, Preflight, pins, preflight
from drd.oci.referrers import subject_of_tag
from drd.registry.client import RegistryClient
from drd.replicate.runner import Policy
from drd.snapshot.catalog import run_all
from drd.state import RunRecord, State

log = structlog.get_logger(__name__)

# A hook that has not finished after this long is killed and recorded as timed out.
HOOK_TIMEOUT_S = 300.0
# Output kept per hook stream; the rest is cut (the hook's own logs have it all).
MAX_HOOK_OUTPUT = 16 * 1024
# Events kept in failover.json; the state database keeps its own history of runs.
MAX_EVENTS = 200


class FailoverRefused(DrdError):
    """The switch cannot be made as asked (unknown endpoint, already active, nothing to undo)."""


# --------------------------------------------------------------------------- hooks


@dataclass(frozen=True)
class HookResult:
    """One hook command: what ran, how it ended, how long it took, what it printed."""

    command: tuple[str, ...]
    exit_code: int | None
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        """Exited 0 in time."""
        return self.exit_code == 0 and not self.timed_out and not self.error

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "command": list(self.command),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "timed_out": self.timed_out,
            "error": self.error,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }


def hook_argv(hook: str, values: Mapping[str, str]) -> list[str]:
    """
    Split *hook* like a POSIX shell would, then fill ``{name}`` placeholders in each
    argument: a value with spaces stays one argument, and is never parsed by a shell.

    Raises `InvalidReference` for an unknown placeholder or an unbalanced quote.
    """
    try:
        parts = shlex.split(hook)
    except ValueError as exc:
        raise InvalidReference(f"hook {hook[:80]!r} cannot be split: {exc}") from exc
    try:
        argv = [part.format_map(values) for part in parts]
    except (KeyError, ValueError, IndexError) as exc:
        known = ", ".join("{" + k + "}" for k in sorted(values))
        raise InvalidReference(f"hook {hook[:80]!r}: unknown placeholder {exc} ({known})") from exc
    if not argv:
        raise InvalidReference("hook is empty")
    return argv


def _text(data: bytes | bytearray) -> str:
    cut = bytes(data[:MAX_HOOK_OUTPUT])
    text = cut.decode("utf-8", errors="replace")
    return text + ("\n[output cut]" if len(data) > MAX_HOOK_OUTPUT else "")


async def _drain(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
    """Read *stream* to its end, keeping the first MAX_HOOK_OUTPUT bytes (and one more)."""
    if stream is None:
        return
    while chunk := await stream.read(64 * 1024):
        room = MAX_HOOK_OUTPUT + 1 - len(sink)
        if room > 0:
            sink.extend(chunk[:room])


async def run_hook(hook: str, values: Mapping[str, str], timeout_s: float) -> HookResult:
    """Run one hook without a shell; kill it (by its PID) when it outlives *timeout_s*."""
    started = time.monotonic()
    try:
        argv = hook_argv(hook, values)
    except InvalidReference as exc:
        return HookResult((hook,), None, 0.0, error=str(exc))
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return HookResult(
            tuple(argv), None, time.monotonic() - started, error=f"cannot start: {exc}"
        )
    out, err = bytearray(), bytearray()
    readers = [
        asyncio.create_task(_drain(proc.stdout, out)),
        asyncio.create_task(_drain(proc.stderr, err)),
    ]
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    # A grandchild may hold the pipes open after the hook exited: stop reading soon after.
    _, pending = await asyncio.wait(readers, timeout=5.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return HookResult(
        tuple(argv),
        proc.returncode,
        time.monotonic() - started,
        _text(out),
        _text(err),
        timed_out=timed_out,
        error=f"timed out after {timeout_s:g}s" if timed_out else "",
    )


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


async def _last_drill(state: State | None) -> LastDrill | None:
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


async def run_failover(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    *,
    to: str,
    dry_run: bool = False,
    force: bool = False,
    state: State | None = None,
    hook_timeout_s: float = HOOK_TIMEOUT_S,
    clock: Callable[[], float] = time.time,
) -> FailoverReport:
    """
    Make *to* the active primary, after the pre-flight; see the module docstring.

    *settings* is the configuration as written (not `apply_active`'s view). Raises
    `FailoverRefused` when *to* is unknown, already active, or not a standby of
    anything. Side effects (none with *dry_run*): the state file, the overrides file,
    the hook commands, the state database.
    """
    if to not in settings.endpoints:
        raise FailoverRefused(f"no endpoint named {to}")
    state_dir = settings.daemon.state_dir
    active = read_active(state_dir)
    action = "failover"
    if active is not None:
        if to == active.standby:
            raise FailoverRefused(
                f"{to} is already the active primary (since {_iso(active.since)})"
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
    source = sources[0]
    report = FailoverReport(
        action=action,
        source=source,
        to=to,
        dry_run=dry_run,
        forced=force,
        event=uuid.uuid4().hex[:12],
        started_at=clock(),
        from_region=settings.endpoints[source].region if source in settings.endpoints else "",
        to_region=settings.endpoints[to].region,
    )
    timer = _Timer(report)
    with structlog.contextvars.bound_contextvars(job=action, event=report.event, to=to):
        try:
            await _switch(
                report, timer, settings, effective, scopes, registries, state, hook_timeout_s
            )
        except DrdError as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            log.error(f"{action}.failed", error=report.error)  # noqa: TRY400 - no traceback
        report.finished_at = clock()
        if not dry_run:
            await _record(report, state_dir, state)
        log.info(
            f"{action}.finished",
            outcome=report.outcome,
            forced=force and report.switched,
            duration_s=round(report.finished_at - report.started_at, 3),
        )
    return report


async def run_failback(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    *,
    dry_run: bool = False,
    force: bool = False,
    state: State | None = None,
    hook_timeout_s: float = HOOK_TIMEOUT_S,
    clock: Callable[[], float] = time.time,
) -> FailoverReport:
    """Fail back to the configured primary; `FailoverRefused` when no failover is in force."""
    active = read_active(settings.daemon.state_dir)
    if active is None:
        raise FailoverRefused("no failover is in force: nothing to fail back from")
    return await run_failover(
        settings,
        registries,
        to=active.primary,
        dry_run=dry_run,
        force=force,
        state=state,
        hook_timeout_s=hook_timeout_s,
        clock=clock,
    )


async def _switch(
    report: FailoverReport,
    timer: _Timer,
    settings: Settings,
    effective: Settings,
    scopes: list[ReplicaScope],
    registries: Mapping[str, RegistryClient],
    state: State | None,
    hook_timeout_s: float,
) -> None:
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
        drills = effective.drills
        report.preflight = preflight(
            to=to,
            source=source,
            policies=[s.policy.name for s in scopes],
            checks=checks,
            compared=compared,
            compare_error=compare_error,
            lag_s=lag[0] if lag else None,
            lag_method=lag[1] if lag else "",
            rpo_s=(drills.rpo if drills else dt.timedelta(hours=1)).total_seconds(),
            last_drill=await _last_drill(state),
            max_drill_age_s=settings.failover.max_drill_age.total_seconds(),
            now=now,
        )
        detail.append(f"{len(report.preflight.failed())} of 4 findings failed")
    if report.dry_run:
        return
    if not report.preflight.ok and not report.forced:
        failed = ", ".join(f.check for f in report.preflight.failed())
        report.error = f"pre-flight failed ({failed}); refusing to switch without --force"
        report.refused = True
        return
    with timer.phase("switch") as detail:
        doc = await asyncio.to_thread(read_document, settings.daemon.state_dir)
        if report.action == "failback":
            report.active = None
            doc["active"] = None
        else:
            report.active = Active(
                source, to, report.started_at, report.event, report.forced and not _ok(report)
            )
            doc["active"] = report.active.to_json()
        await asyncio.to_thread(write_document, settings.daemon.state_dir, doc)
        report.switched = True
        detail.append(f"{to} is the active primary")
    log.warning(
        f"{report.action}.switched",
        source=source,
        to=to,
        forced=report.forced and not _ok(report),
    )
    with timer.phase("overrides") as detail:
        found = await standby_pins(standby, scopes)
        mapping = pins(found, standby.host)
        path = settings.failover.overrides_file
        document = {
            "kind": "drd-overrides",
            "schema_version": 1,
            "generated_at": _iso(time.time()),
            "event": report.event,
            "action": report.action,
            "from": source,
            "to": to,
            "from_region": report.from_region,
            "to_region": report.to_region,
            "registry": standby.host,
            "overrides": mapping,
        }
        await asyncio.to_thread(atomic_write, path, json.dumps(document, indent=2) + "\n")
        report.overrides_file, report.overrides = str(path), len(mapping)
        detail.append(f"{len(mapping)} pins")
    if not settings.failover.hooks:
        return
    values = {
        "to": to,
        "from": source,
        "to_url": registries[to].base_url,
        "to_host": registries[to].host,
        "from_url": registries[source].base_url if source in registries else "",
        "from_host": registries[source].host if source in registries else "",
        "to_region": report.to_region,
        "from_region": report.from_region,
        "overrides": str(settings.failover.overrides_file),
        "event": report.event,
    }
    with timer.phase("hooks") as detail:
        for hook in settings.failover.hooks:
            result = await run_hook(hook, values, hook_timeout_s)
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


async def _record(report: FailoverReport, state_dir: Path, state: State | None) -> None:
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
