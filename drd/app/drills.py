"""
Drills from the configuration: the ``[drills]`` table turned into a restore or replica
drill run, recorded in state and metrics; the daemon's scheduled drill job.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from drd.app.snapshots import check_watermark, index_key_for
from drd.config import Drills, Settings
from drd.drill.estimate import WorstGap, worst_gap
from drd.drill.judge import Targets, with_worst_rpo
from drd.drill.render import write_report
from drd.drill.report import DrillReport
from drd.drill.runner import TrustScope, run_drill, run_replica_drill
from drd.errors import ConfigError
from drd.metrics import Metrics
from drd.progress import Tally
from drd.registry.client import RegistryClient
from drd.replica.check import ReplicaScope, replication_lag
from drd.resources import policy_from_config, trust_policy
from drd.retry import RetryPolicy
from drd.snapshot.catalog import LATEST, list_snapshots
from drd.snapshot.model import Snapshot
from drd.state import RunRecord, StateStore
from drd.store.open import open_store
from drd.timeline import duration, process_age_s, utc_now

log = structlog.get_logger(__name__)

Clock = Callable[[], dt.datetime]

# How far back the state's run history is read for the worst-case RPO window.
HISTORY_RUNS = 5000


def drills_config(settings: Settings) -> Drills:
    """The ``[drills]`` table; `ConfigError` when it is missing."""
    if settings.drills is None:
        raise ConfigError("drills are not configured", errors=[("drills", "add a [drills] table")])
    return settings.drills


def replica_scopes(settings: Settings, replica: str) -> list[ReplicaScope]:
    """Every replication policy that copies to *replica*, with its trust policies."""
    drills = settings.drills
    fallback = trust_policy(settings.trust[drills.trust]) if drills and drills.trust else None
    scopes = []
    for rep in settings.replication:
        if replica not in rep.targets:
            continue
        require = (
            trust_policy(settings.trust[rep.require_signature]) if rep.require_signature else None
        )
        scopes.append(
            ReplicaScope(policy_from_config(rep), rep.source, require, require or fallback)
        )
    return scopes


def trust_scopes(settings: Settings, endpoint: str) -> list[TrustScope]:
    """
    The trust policies of the replication policies that feed *endpoint*'s repositories
    (copy from it, or into it) and require signatures, in configuration order.
    """
    return [
        TrustScope(policy_from_config(rep).repositories, trust_policy(settings.trust[name]))
        for rep in settings.replication
        if (name := rep.require_signature) and endpoint in (rep.source, *rep.targets)
    ]


async def drill_from_settings(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    retry: RetryPolicy,
    *,
    snapshot: str = LATEST,
    replica: bool = False,
    sample: int | None = None,
    state: StateStore | None = None,
    clock: Clock = utc_now,
    progress: Tally | None = None,
    startup_s: float | None = None,
) -> DrillReport:
    """
    The drill ``[drills]`` describes: a restore drill of *snapshot* into ``[drills] target``,
    or (with *replica* or ``mode = "replica"``) a replica drill of ``[drills] replica``.
    The report also carries the worst-case RPO since the previous drill (`worst_rpo`).
    *startup_s* is this process's start-up, a fixed cost of the RTO estimate.

    Raises `ConfigError` when the configuration cannot describe the drill.
    """
    drills = drills_config(settings)
    targets = Targets(drills.rto.total_seconds(), drills.rpo.total_seconds())
    if replica or drills.mode == "replica":
        name = drills.replica
        if name is None:
            raise ConfigError(
                "a replica drill needs [drills] replica",
                errors=[("drills.replica", "name the endpoint to check")],
            )
        scopes = replica_scopes(settings, name)
        if not scopes:
            raise ConfigError(
                f"no replication policy copies to {name}",
                errors=[("drills.replica", f"no [[replication]] lists {name} in targets")],
            )
        lag = await replication_lag(state, scopes, name, clock().timestamp())
        report = await run_replica_drill(
            registries,
            registries[name],
            scopes,
            targets=targets,
            lag=lag,
            trust_name=drills.trust or "",
            clock=clock,
        )
        history = await _history(state)
        # Full passes only (``replicate:<policy>``): a push-triggered copy of one tag
        # (``push:<policy>``) does not bring the rest of the replica up to date.
        jobs = {f"replicate:{s.policy.name}": s.policy.name for s in scopes}
        passes: dict[str, list[dt.datetime]] = {}
        for run in history:
            if run.kind == "replicate" and run.outcome == "ok" and run.job in jobs:
                passes.setdefault(jobs[run.job], []).append(_utc(run.finished_at))
        _judge_worst_rpo(
            report,
            passes,
            _previous_drill(history, report),
            ("replication pass", "replication passes"),
        )
        return report
    config = settings.snapshots
    if config is None:
        raise ConfigError(
            "a restore drill needs [snapshots]",
            errors=[("snapshots", "add a [snapshots] table to drill from")],
        )
    trust = trust_policy(settings.trust[drills.trust]) if drills.trust else None
    trusts = trust_scopes(settings, config.source)
    others = {n: c for n, c in registries.items() if n != drills.target}
    verify_key = index_key_for(settings.snapshots)
    async with open_store(config, retry) as store:

        async def accept(snap: Snapshot) -> None:
            await check_watermark(
                settings, store, snap, ref=snapshot, verified=verify_key is not None, action="drill"
            )

        report = await run_drill(
            store,
            registries[drills.target],
            source=config.source,
            targets=targets,
            snapshot=snapshot,
            sample=drills.sample if sample is None else sample,
            trust=trust,
            trusts=trusts,
            sources=others,
            verify_key=verify_key,
            retry=retry,
            clock=clock,
            progress=progress,
            startup_s=startup_s,
            accept=accept,
        )
        if report.error:
            return report
        entries = await list_snapshots(store, config.source)
    history = await _history(state)
    snapshots = {config.source: [e.taken_at for e in entries]}
    _judge_worst_rpo(report, snapshots, _previous_drill(history, report), ("snapshot", "snapshots"))
    return report


async def _history(state: StateStore | None) -> list[RunRecord]:
    return [] if state is None else await state.runs(limit=HISTORY_RUNS)


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _previous_drill(history: list[RunRecord], report: DrillReport) -> dt.datetime | None:
    """When the previous drill began: the judged window starts there."""
    started = [r.started_at for r in history if r.kind == "drill"]
    before = [t for t in started if t < report.started_at.timestamp()]
    return _utc(max(before)) if before else None


def _judge_worst_rpo(
    report: DrillReport,
    points: Mapping[str, list[dt.datetime]],
    since: dt.datetime | None,
    what: tuple[str, str],
) -> None:
    """Add the longest gap between *points* (per series, the worst of all) to the judgement."""
    if report.judgement is None:  # pragma: no cover - both drills always judge
        return
    worst: tuple[str, WorstGap] | None = None
    for series, times in sorted(points.items()):
        gap = worst_gap(times, since=since, now=report.started_at)
        if gap is not None and (worst is None or gap.seconds > worst[1].seconds):
            worst = (series, gap)
    window = (
        f"since the previous drill ({since.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ})"
        if since is not None
        else "over the whole recorded history"
    )
    if worst is None:
        method = f"unknown: no successful {what[0]} is recorded"
        report.judgement = with_worst_rpo(report.judgement, None, method)
        return
    series, gap = worst
    method = (
        f"longest gap between successful {what[1]} of {series} {window}, the open gap to the "
        f"drill included: {duration(gap.seconds)} from "
        f"{gap.start.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ} to "
        f"{gap.end.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ} ({gap.points} {what[1]} recorded)"
    )
    report.judgement = with_worst_rpo(report.judgement, gap, method)


async def record_drill(
    report: DrillReport,
    *,
    trigger: str,
    state: StateStore | None = None,
    metrics: Metrics | None = None,
    endpoint: str = "",
) -> None:
    """Record *report* as a run of the job ``drill`` (state) and in the ``drd_drill_*`` metrics."""
    finished = (report.finished_at or utc_now()).timestamp()
    if state is not None:
        outcome = "ok" if report.ok else ("error" if report.error else "failed")
        await state.record_run(
            RunRecord(
                "drill",
                "drill",
                trigger,
                report.started_at.timestamp(),
                finished,
                outcome,
                report.summary(),
                report.error or "; ".join(report.judgement.reasons if report.judgement else ()),
            )
        )
    if metrics is not None:
        j = report.judgement
        metrics.record_drill(
            endpoint or report.target,
            ok=report.ok,
            duration_s=report.duration_s,
            finished_at=finished,
            rto_s=j.rto.value_s if j is not None and j.rto is not None else None,
            rpo_s=j.rpo_s if j is not None else None,
        )


@functools.cache
def _daemon_startup_s() -> float | None:
    """
    The daemon's own start-up, what a fresh `drd restore` would pay too: measured when
    its first drill job is built (at start) and kept, so a configuration reload, which
    builds the job again hours later, does not count the daemon's uptime as start-up.
    """
    return process_age_s()


def drill_job(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    retry: RetryPolicy,
    *,
    state: StateStore | None,
    metrics: Metrics | None,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """
    The daemon's scheduled drill: run the configured drill, write its reports into
    ``[drills] report_dir``, record it in state and metrics. A failed drill is
    recorded, not raised; a configuration error raises.
    """
    drills = drills_config(settings)
    startup_s = _daemon_startup_s()

    async def run() -> None:
        report = await drill_from_settings(
            settings, registries, retry, state=state, startup_s=startup_s
        )
        try:
            paths = await asyncio.to_thread(write_report, report, drills.report_dir)
        except OSError as exc:
            log.error("drill.report_not_written", error=str(exc), directory=str(drills.report_dir))  # noqa: TRY400
            paths = {}
        await record_drill(
            report, trigger="schedule", state=state, metrics=metrics, endpoint=drills.target
        )
        if "html" in paths:
            log.info("drill.report_written", path=str(paths["html"]), ok=report.ok)

    return run
