"""
Replication from the configuration: the passes `drd replicate` asks for and the
daemon schedules, each recorded in the state database (and, in the daemon, the
metrics) the same way, and the outcome of a set of passes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import structlog

from drd.app.outcome import Outcome, of_error, run_word
from drd.app.reach import unreachable
from drd.config import Settings
from drd.errors import RegistryError, StateError
from drd.progress import Tally
from drd.replicate.cache import TagCache
from drd.replicate.copier import CopyStats
from drd.replicate.report import PolicyReport
from drd.replicate.runner import Verifier, run_policy
from drd.resources import Resources, deletion_recorder, policy_from_config, verifier_for
from drd.selection.policy import Policy
from drd.state import RunRecord, StateStore
from drd.timeline import new_run_id

if TYPE_CHECKING:
    # Types only: prometheus_client (under drd.metrics) is loaded by the daemon that
    # writes metrics, and the deletions module by a policy that propagates deletions.
    from drd.metrics import Metrics
    from drd.replicate.deletions import Recorder
    from drd.state.leases import LeaseGate

log = structlog.get_logger(__name__)


async def run_pass(
    res: Resources,
    policy: Policy,
    source: str,
    targets: Sequence[str],
    *,
    verifier: Verifier | None,
    job: str,
    trigger: str,
    only: Sequence[tuple[str, str | None]] | None = None,
    dry_run: bool = False,
    cache: TagCache | None = None,
    state: StateStore | None = None,
    metrics: Metrics | None = None,
    progress: Tally | None = None,
    gate: LeaseGate | None = None,
    recorder: Recorder | None = None,
) -> PolicyReport:
    """
    One pass of *policy*: a full one, or the pushed items *only*; recorded unless dry.
    With a *gate* (a cluster), only the repositories this node claims, its leases kept
    alive by the gate's heartbeat for the pass.

    A full pass (manual or scheduled) moves the watermark and the last success; a
    push-triggered one only clears what it copied. A state that cannot be written (an
    unreachable PostgreSQL) is logged (``replicate.not_recorded``), not raised.
    *recorder* records what the pass is about to delete at a target (propagate_deletions;
    `deletion_recorder`).
    """
    started = time.time()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(
            structlog.contextvars.bound_contextvars(job=job, run_id=new_run_id(), trigger=trigger)
        )
        # Asked first, not found out item by item: a dead endpoint costs one request.
        down = await unreachable({name: res.registries[name] for name in {source, *targets}})
        live = [target for target in targets if target not in down]
        if source in down or not live:
            report = _nothing_reached(policy.name, source, targets, down, dry_run=dry_run)
        else:
            if gate is not None:
                await stack.enter_async_context(gate.running())
            report = await run_policy(
                policy,
                res.registries[source],
                {target: res.registries[target] for target in live},
                res.retry,
                verifier=verifier,
                only=only,
                dry_run=dry_run,
                cache=cache,
                progress=progress,
                gate=gate,
                recorder=recorder,
            )
            report.unreachable = {
                **{name: str(why) for name, why in down.items()},
                **report.unreachable,
            }
    if dry_run:
        return report
    finished = time.time()
    full = only is None
    if state is not None:
        try:
            await state.record_replication(
                report, full=full, started_at=started, finished_at=finished
            )
            await state.record_run(
                RunRecord(
                    job,
                    "replicate",
                    trigger,
                    started,
                    finished,
                    run_word(report.ok, bool(report.error)),
                    report.summary(),
                    report.problem,
                )
            )
        except StateError as exc:
            # What was copied is at the target; what was not stays pending (its rows are
            # untouched) and the next pass that reaches the state records it.
            log.warning("replicate.not_recorded", error=str(exc))
    if metrics is not None:
        # The daemon's own triggers label the metric; a manual pass counts as a full one.
        label = trigger if trigger in ("push", "takeover") else None
        metrics.record_replication(report, full=full, finished_at=finished, trigger=label)
    return report


def _nothing_reached(
    policy: str,
    source: str,
    targets: Sequence[str],
    down: dict[str, RegistryError],
    *,
    dry_run: bool,
) -> PolicyReport:
    """
    The report of a pass that did not start: its source, or every target, could not be
    reached. A dead source is the pass's error (at every target, as a pass that ended
    there records it); dead targets are its unreachable ones.
    """
    report = PolicyReport(policy=policy, source=source, dry_run=dry_run)
    if source in down:
        report.exception = down[source]
        report.error = f"source {source} unreachable: {down[source]}; nothing copied"
        report.stats = {target: CopyStats() for target in targets if target not in down}
    report.unreachable = {name: str(why) for name, why in down.items() if name != source}
    log.error("replicate.pass_failed", policy=policy, error=report.problem)
    return report


async def replicate_once(
    settings: Settings,
    res: Resources,
    *,
    names: Iterable[str] = (),
    dry_run: bool = False,
    cache: TagCache | None = None,
    state: StateStore | None = None,
    progress: Tally | None = None,
) -> list[PolicyReport]:
    """
    One manual pass of every (or each named) replication policy, recorded in *state*
    as the job ``replicate:<policy>`` with the trigger ``manual``.

    Names no policy has are ignored: `unknown_policies` says which they are.
    """
    wanted = set(names)
    reports = []
    recorder = deletion_recorder(settings.snapshots, res.retry)
    for rep in settings.replication:
        if wanted and rep.name not in wanted:
            continue
        reports.append(
            await run_pass(
                res,
                policy_from_config(rep),
                rep.source,
                rep.targets,
                verifier=verifier_for(settings, rep),
                job=f"replicate:{rep.name}",
                trigger="manual",
                dry_run=dry_run,
                cache=cache,
                state=state,
                progress=progress,
                recorder=recorder,
            )
        )
    return reports


def unknown_policies(settings: Settings, names: Iterable[str]) -> list[str]:
    """The names among *names* that no ``[[replication]]`` policy has, sorted."""
    return sorted(set(names) - {rep.name for rep in settings.replication})


def replication_outcome(reports: Sequence[PolicyReport]) -> Outcome:
    """
    ``UNAVAILABLE`` when a pass could not reach a registry or a target was unreachable
    for the rest of a pass; ``FAILED`` when an item failed; ``REJECTED`` when the passes
    completed but the trust policy refused items (in a dry run: would refuse); else ``OK``.
    """
    if any(r.unreachable or of_error(r.exception) is Outcome.UNAVAILABLE for r in reports):
        return Outcome.UNAVAILABLE
    if not all(r.ok for r in reports):
        return Outcome.FAILED
    return Outcome.REJECTED if any(r.rejected for r in reports) else Outcome.OK
