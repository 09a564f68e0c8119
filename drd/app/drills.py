"""
Drills from the configuration: the ``[drills]`` table turned into a restore or replica
drill run, recorded in state and metrics; the daemon's scheduled drill job.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from drd.app.snapshots import index_key_for
from drd.config import Drills, Settings
from drd.drill.judge import Targets
from drd.drill.render import write_report
from drd.drill.report import DrillReport
from drd.drill.runner import run_drill, run_replica_drill
from drd.errors import ConfigError
from drd.metrics import Metrics
from drd.registry.client import RegistryClient
from drd.replica.check import ReplicaScope, replication_lag
from drd.resources import policy_from_config, trust_policy
from drd.retry import RetryPolicy
from drd.snapshot.catalog import LATEST
from drd.state import RunRecord, StateStore
from drd.store.open import open_store
from drd.timeline import utc_now

log = structlog.get_logger(__name__)

Clock = Callable[[], dt.datetime]


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
) -> DrillReport:
    """
    The drill ``[drills]`` describes: a restore drill of *snapshot* into ``[drills] target``,
    or (with *replica* or ``mode = "replica"``) a replica drill of ``[drills] replica``.

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
        return await run_replica_drill(
            registries,
            registries[name],
            scopes,
            targets=targets,
            lag=lag,
            trust_name=drills.trust or "",
            clock=clock,
        )
    config = settings.snapshots
    if config is None:
        raise ConfigError(
            "a restore drill needs [snapshots]",
            errors=[("snapshots", "add a [snapshots] table to drill from")],
        )
    trust = trust_policy(settings.trust[drills.trust]) if drills.trust else None
    others = {n: c for n, c in registries.items() if n != drills.target}
    async with open_store(config, retry) as store:
        return await run_drill(
            store,
            registries[drills.target],
            source=config.source,
            targets=targets,
            snapshot=snapshot,
            sample=drills.sample if sample is None else sample,
            trust=trust,
            sources=others,
            verify_key=index_key_for(settings.snapshots),
            retry=retry,
            clock=clock,
        )


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

    async def run() -> None:
        report = await drill_from_settings(settings, registries, retry, state=state)
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
