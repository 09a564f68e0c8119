"""
Every Prometheus metric drd exports, on one `Metrics` object bound to an injected registry.

Metrics are recorded from *reports*, at the end of a unit of work; deep code never
touches them, except the retry hook (`Metrics.on_retry`). Labels are bounded:
``policy``, ``target``, ``endpoint``, ``reason`` (an error class or a short
verification word), plus small enums (``outcome``, ``trigger``, ``kind``, ``op``,
``error``, ``status``). Tags, digests and repositories never become labels.

Replication lag, precisely
--------------------------

``drd_replication_lag_seconds{policy,target}`` is ``now - W``, computed at scrape
time, where the watermark ``W`` is the earliest of:

* the end of the last *clean run* of the policy at that target, a run that
  completed its pass (it could list the source and the target) whether it was
  a full scheduled pass or a run triggered by push events; items that failed
  in it are not forgotten, they are pending changes (next point). Before the
  first clean run, ``W`` is the time drd first scheduled the policy;
* the oldest *pending change*: a push the source announced through the
  webhook (timestamped on arrival), or a tag that failed to copy (timestamped
  when it first failed), and that no later run has brought to the target.

So the lag is 0 right after a clean pass, grows with the time since, and jumps
to the age of the oldest push not yet replicated. A pass that cannot reach the
source does not move ``W``. Changes the source never announced are found by the
next full pass, which also drops pending entries older than its own start for
tags it no longer selects (deleted or filtered at the source). The bookkeeping
lives in `drd.state`; this module only turns watermarks into seconds.

Per node and cluster-wide
-------------------------

In the daemon every metric of the work this process did (runs, items, bytes, retries,
errors, webhook requests, its endpoint checks, its last snapshot or drill, its config
reload, its leases, ``drd_build_info``) carries ``node="<node id>"`` (`PER_NODE`):
``[daemon] node``, else the host name, so a single node has a stable one too. What is
read from the shared state (lag, last success, pending, drift, intervals, RPO/RTO
targets, snapshot and drill last success, unclaimed work) is cluster-wide and carries
no ``node``: every node exports the same values, and alerts aggregate them with
``max by (policy, target)`` or ``max by (endpoint)`` (runbooks/alerts.yml).

Last-success gauges (``*_last_success_timestamp_seconds``) hold, before a job's
first success, the time drd first scheduled it: a job that never succeeds goes
stale after the same delay as one that stopped succeeding.

The module is long because it declares every metric with its help text and labels,
one statement each (`Metrics.__init__` is that declaration list, not logic).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import tenacity
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from drd import __version__

if TYPE_CHECKING:
    from drd.replicate.report import PolicyReport

__all__ = ["Metrics", "process_registry"]

# Durations of replication runs: a webhook run takes seconds, a full pass minutes to hours.
_RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")
_LAG_HELP = "Seconds since the replication watermark of a policy at a target (see drd.metrics)."
_PT = ("policy", "target")


# The metrics labelled node="<node id>" in the daemon; the others are cluster-wide.
PER_NODE = frozenset(
    {
        "drd_build_info",
        "drd_replication_last_run_timestamp_seconds",
        "drd_replication_runs",
        "drd_replication_run_duration_seconds",
        "drd_replication_artifacts",
        "drd_replication_bytes",
        "drd_replication_blobs",
        "drd_replication_manifests",
        "drd_replication_errors",
        "drd_replication_rejected_tags",
        "drd_replication_deletions",
        "drd_verification_rejections",
        "drd_retries",
        "drd_endpoint_up",
        "drd_endpoint_last_check_timestamp_seconds",
        "drd_webhook_requests",
        "drd_webhook_events",
        "drd_http_connections_dropped",
        "drd_snapshot_duration_seconds",
        "drd_snapshot_manifests",
        "drd_snapshot_runs",
        "drd_snapshot_uploaded_bytes",
        "drd_drill_last_run_timestamp_seconds",
        "drd_drill_last_result",
        "drd_drill_duration_seconds",
        "drd_drill_rto_seconds",
        "drd_drill_rpo_seconds",
        "drd_job_runs",
        "drd_config_last_reload_successful",
        "drd_config_last_reload_success_timestamp_seconds",
        "drd_state_reset",
        "drd_node_leases",
    }
)


def process_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors, as the daemon serves."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _reason(text: str) -> str:
    """A label value from an error class name or reason word; anything else becomes "other"."""
    return text if _REASON.match(text) else "other"


class _LagCollector(Collector):
    """Reports ``now - watermark`` per (policy, target) at scrape time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.watermarks: dict[tuple[str, str], float] = {}

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("drd_replication_lag_seconds", _LAG_HELP, labels=_PT)]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("drd_replication_lag_seconds", _LAG_HELP, labels=_PT)
        now = self._clock()
        for (policy, target), mark in sorted(self.watermarks.items()):
            family.add_metric([policy, target], max(0.0, now - mark))
        yield family


class _NodeLabelled(Collector):
    """
    The families of an inner registry with ``node`` added to every sample.

    prometheus_client has no constant labels; adding the label here keeps every
    ``.labels(...)`` call free of it.
    """

    def __init__(self, inner: CollectorRegistry, node: str) -> None:
        self._inner = inner
        self._node = node

    def describe(self) -> Iterable[Metric]:
        return list(self._inner.collect())

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = {"node": self._node, **sample.labels}
                labelled.add_sample(
                    sample.name, labels, sample.value, sample.timestamp, sample.exemplar
                )
            yield labelled


class Metrics:
    """
    drd's metrics, created against *registry* (the daemon's, or a fresh one in a test).

    *clock* gives wall-clock seconds; it is what the lag is measured against. With
    *node* (the daemon), the `PER_NODE` metrics carry ``node="<node>"``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
        node: str | None = None,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self.node = node
        # Per-node metrics (see PER_NODE) live in their own registry, exported through
        # `_NodeLabelled` with node="<node>" added; cluster-wide ones go straight to *registry*.
        n = CollectorRegistry(auto_describe=True)
        if node is None:
            n = registry
        else:
            registry.register(_NodeLabelled(n, node))
        r = registry

        build = Gauge("drd_build_info", "drd's version.", ["version", "python"], registry=n)
        build.labels(__version__, sys.version.split()[0]).set(1)

        # Replication.
        self._lag = _LagCollector(clock)
        r.register(self._lag)
        self.replication_last_success = Gauge(
            "drd_replication_last_success_timestamp_seconds",
            "End of the last full pass with no failed item at the target (rejections allowed).",
            _PT,
            registry=r,
        )
        self.replication_last_run = Gauge(
            "drd_replication_last_run_timestamp_seconds",
            "End of the last replication run of the policy, whatever its outcome.",
            ["policy"],
            registry=n,
        )
        self.replication_interval = Gauge(
            "drd_replication_interval_seconds",
            "The configured interval between full passes.",
            ["policy"],
            registry=r,
        )
        self.replication_pending = Gauge(
            "drd_replication_pending_changes",
            "Known source changes (announced pushes, failed tags) not yet at the target.",
            _PT,
            registry=r,
        )
        self.replication_drift = Gauge(
            "drd_replication_drift_tags",
            "Tags that moved at the source while the immutable target keeps the old digest.",
            _PT,
            registry=r,
        )
        self.replication_runs = Counter(
            "drd_replication_runs_total",
            "Replication runs by trigger (schedule, push, takeover) and outcome"
            " (ok, failed, error).",
            ["policy", "trigger", "outcome"],
            registry=n,
        )
        self.replication_duration = Histogram(
            "drd_replication_run_duration_seconds",
            "Wall-clock duration of replication runs.",
            ["policy", "trigger"],
            buckets=_RUN_BUCKETS,
            registry=n,
        )
        self.artifacts = Counter(
            "drd_replication_artifacts_total",
            "Tags handled per target by outcome (copied, skipped, failed, drift, rejected).",
            ["policy", "target", "outcome"],
            registry=n,
        )
        self.bytes_copied = Counter(
            "drd_replication_bytes_total",
            "Blob bytes streamed to the target.",
            _PT,
            registry=n,
        )
        self.blobs = Counter(
            "drd_replication_blobs_total",
            "Blobs by outcome: copied (streamed), present (HEAD said so), mounted.",
            ["policy", "target", "outcome"],
            registry=n,
        )
        self.manifests = Counter(
            "drd_replication_manifests_total",
            "Manifests by outcome: written, present.",
            ["policy", "target", "outcome"],
            registry=n,
        )
        self.errors = Counter(
            "drd_replication_errors_total",
            "Failed items and failed passes by reason (the error class).",
            ["policy", "target", "reason"],
            registry=n,
        )
        self.replication_rejected = Gauge(
            "drd_replication_rejected_tags",
            "Tags the trust policy refused in the last complete full pass at the target.",
            _PT,
            registry=n,
        )
        self.deletions = Counter(
            "drd_replication_deletions_total",
            "propagate_deletions: tags deleted at a target, kept (their digest is shared), "
            "or held back by the brake.",
            ["policy", "target", "outcome"],
            registry=n,
        )
        self.rejections = Counter(
            "drd_verification_rejections_total",
            "Artifacts not promoted to a trusted target because verification failed.",
            ["policy", "target", "reason"],
            registry=n,
        )

        # Requests and endpoints.
        self.retries = Counter(
            "drd_retries_total",
            "Retries scheduled, by operation and the error that caused them.",
            ["op", "error"],
            registry=n,
        )
        self.endpoint_up = Gauge(
            "drd_endpoint_up",
            "1 when the endpoint answered its last check (GET /v2/), else 0.",
            ["endpoint"],
            registry=n,
        )
        self.endpoint_last_check = Gauge(
            "drd_endpoint_last_check_timestamp_seconds",
            "When the endpoint was last checked.",
            ["endpoint"],
            registry=n,
        )

        # Webhook.
        self.webhook_requests = Counter(
            "drd_webhook_requests_total",
            "Webhook requests by HTTP status answered.",
            ["status"],
            registry=n,
        )
        self.webhook_events = Counter(
            "drd_webhook_events_total",
            "Push events received: accepted (a policy selects them) or ignored.",
            ["outcome"],
            registry=n,
        )
        self.http_dropped = Counter(
            "drd_http_connections_dropped_total",
            "Connections the HTTP listener closed: header_timeout, body_timeout, evicted"
            " (the oldest slow one, for a new connection over max_connections) or refused.",
            ["reason"],
            registry=n,
        )

        # Snapshots and drills, labelled by endpoint (the snapshot source, the drill target)
        # so that nothing is exported, and no alert fires, where they are not configured.
        ep = ["endpoint"]
        self.snapshot_last_success = Gauge(
            "drd_snapshot_last_success_timestamp_seconds",
            "End of the last snapshot committed to the store.",
            ep,
            registry=r,
        )
        self.snapshot_interval = Gauge(
            "drd_snapshot_interval_seconds", "The configured snapshot interval.", ep, registry=r
        )
        self.snapshot_duration = Gauge(
            "drd_snapshot_duration_seconds", "Duration of the last snapshot run.", ep, registry=n
        )
        self.snapshot_manifests = Gauge(
            "drd_snapshot_manifests", "Manifests recorded by the last snapshot.", ep, registry=n
        )
        self.snapshot_runs = Counter(
            "drd_snapshot_runs_total", "Snapshot runs by outcome.", [*ep, "outcome"], registry=n
        )
        self.snapshot_bytes = Counter(
            "drd_snapshot_uploaded_bytes_total",
            "Bytes written to the snapshot store.",
            ep,
            registry=n,
        )
        self.drill_last_success = Gauge(
            "drd_drill_last_success_timestamp_seconds",
            "End of the last drill that met its targets.",
            ep,
            registry=r,
        )
        self.drill_last_run = Gauge(
            "drd_drill_last_run_timestamp_seconds", "End of the last drill.", ep, registry=n
        )
        self.drill_result = Gauge(
            "drd_drill_last_result",
            "1 when the last drill passed, 0 when it failed.",
            ep,
            registry=n,
        )
        self.drill_interval = Gauge(
            "drd_drill_interval_seconds", "The configured drill interval.", ep, registry=r
        )
        self.drill_duration = Gauge(
            "drd_drill_duration_seconds", "Duration of the last drill.", ep, registry=n
        )
        self.drill_rto = Gauge(
            "drd_drill_rto_seconds", "Restore time measured by the last drill.", ep, registry=n
        )
        self.drill_rpo = Gauge(
            "drd_drill_rpo_seconds", "Data age measured by the last drill.", ep, registry=n
        )
        self.drill_rto_target = Gauge(
            "drd_drill_rto_target_seconds", "The configured RTO.", ep, registry=r
        )
        self.rpo_target = Gauge(
            "drd_rpo_target_seconds",
            "The configured RPO ([drills] rpo; 1h when no drills are configured).",
            registry=r,
        )

        # The daemon itself.
        self.job_runs = Counter(
            "drd_job_runs_total",
            "Scheduled runs by kind (replicate, push, ping, snapshot, drill) and outcome.",
            ["kind", "outcome"],
            registry=n,
        )
        self.reload_ok = Gauge(
            "drd_config_last_reload_successful",
            "1 when the last configuration load or reload succeeded.",
            registry=n,
        )
        self.reload_at = Gauge(
            "drd_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded.",
            registry=n,
        )
        self.state_resets = Counter(
            "drd_state_reset",
            "State databases found corrupt at start, moved aside and started afresh.",
            registry=n,
        )
        # A cluster on PostgreSQL: per node (label node), and the cluster's unclaimed work.
        self.node_leases = Gauge(
            "drd_node_leases",
            "Units of work (repositories of a policy, singleton jobs, queued pushes) this node"
            " holds.",
            registry=n,
        )
        self.cluster_unclaimed = Gauge(
            "drd_cluster_unclaimed_units",
            "Replication units no node of the cluster holds now (the shared queue depth).",
            registry=r,
        )

    # ------------------------------------------------------------------ replication

    def record_replication(
        self,
        report: PolicyReport,
        *,
        full: bool = True,
        finished_at: float | None = None,
        trigger: str | None = None,
    ) -> None:
        """
        Count one replication run from its report.

        *full* says it was a scheduled full pass: only those set the last-success
        gauge, since a run triggered by pushes covers only what was pushed (and a
        takeover only the repositories a dead node left). *trigger* labels the run;
        by default ``schedule`` or ``push`` after *full*. Dry runs are not recorded.
        """
        if report.dry_run:
            return
        policy = report.policy
        at = self._clock() if finished_at is None else finished_at
        trigger = trigger or ("schedule" if full else "push")
        outcome = "ok" if report.ok else ("error" if report.error else "failed")
        self.replication_runs.labels(policy, trigger, outcome).inc()
        self.replication_duration.labels(policy, trigger).observe(report.duration_s)
        self.replication_last_run.labels(policy).set(at)
        for item in report.items:
            self.artifacts.labels(policy, item.target, item.outcome).inc()
            if item.outcome == "failed":
                self.errors.labels(policy, item.target, _reason(item.error or "DrdError")).inc()
            elif item.outcome == "rejected":
                self.rejections.labels(policy, item.target, _reason(item.reason)).inc()
        pass_reason = _reason(type(report.exception).__name__) if report.error else ""
        held: set[str] = set()
        for target, plan in report.deletions.items():
            self.deletions.labels(policy, target, "deleted").inc(len(plan.deleted))
            self.deletions.labels(policy, target, "kept").inc(len(plan.kept))
            if plan.braked:
                self.deletions.labels(policy, target, "braked").inc(len(plan.planned))
            if not plan.ok:
                # A held or failed deletion is not a clean pass: the failing alert fires.
                held.add(target)
                reason = "DeletionBrake" if plan.braked else "DeletionFailed"
                self.errors.labels(policy, target, reason).inc()
        for target in sorted(report.unreachable.keys() - report.stats.keys()):
            # Skipped at the start of the pass: one failed pass for it, not one per item.
            self.errors.labels(policy, target, "RegistryUnavailable").inc()
        for target, stats in report.stats.items():
            self.bytes_copied.labels(policy, target).inc(stats.bytes_copied)
            self.blobs.labels(policy, target, "copied").inc(stats.blobs_copied)
            self.blobs.labels(policy, target, "present").inc(stats.blobs_present)
            self.blobs.labels(policy, target, "mounted").inc(stats.blobs_mounted)
            self.manifests.labels(policy, target, "written").inc(stats.manifests_written)
            self.manifests.labels(policy, target, "present").inc(stats.manifests_present)
            if pass_reason:
                self.errors.labels(policy, target, pass_reason).inc()
            elif (
                full
                and target not in held
                and not any(i.target == target and i.outcome == "failed" for i in report.items)
            ):
                self.replication_last_success.labels(policy, target).set(at)
            if full and not pass_reason:
                rejected = sum(
                    1 for i in report.items if i.target == target and i.outcome == "rejected"
                )
                self.replication_rejected.labels(policy, target).set(rejected)

    def set_replication_state(
        self,
        *,
        watermarks: Mapping[tuple[str, str], float],
        last_success: Mapping[tuple[str, str], float],
        pending: Mapping[tuple[str, str], int],
        drift: Mapping[tuple[str, str], int],
    ) -> None:
        """Load what `drd.state` knows for every configured (policy, target); replaces all."""
        self._lag.watermarks = dict(watermarks)
        for gauge, values in (
            (self.replication_last_success, last_success),
            (self.replication_pending, pending),
            (self.replication_drift, drift),
        ):
            gauge.clear()
            for (policy, target), value in values.items():
                gauge.labels(policy, target).set(value)

    def set_intervals(self, intervals: Mapping[str, float]) -> None:
        """The configured full-pass interval of each policy, in seconds."""
        self.replication_interval.clear()
        for policy, seconds in intervals.items():
            self.replication_interval.labels(policy).set(seconds)

    # ------------------------------------------------------------------ requests and endpoints

    def on_retry(self, op: str, state: tenacity.RetryCallState) -> None:
        """The retry hook: count ``drd_retries_total{op,error}``."""
        exc = state.outcome.exception() if state.outcome else None
        self.retries.labels(op, type(exc).__name__ if exc else "none").inc()

    def record_endpoint_check(self, endpoint: str, ok: bool, at: float | None = None) -> None:
        """The outcome of one endpoint check (``GET /v2/``)."""
        self.endpoint_up.labels(endpoint).set(1 if ok else 0)
        self.endpoint_last_check.labels(endpoint).set(self._clock() if at is None else at)

    def forget_endpoints(self) -> None:
        """Drop every endpoint series (after a reload); the next checks set them again."""
        self.endpoint_up.clear()
        self.endpoint_last_check.clear()

    def record_webhook(self, status: int, *, accepted: int = 0, ignored: int = 0) -> None:
        """One webhook request: its HTTP status and how many push events it carried."""
        self.webhook_requests.labels(str(status)).inc()
        if accepted:
            self.webhook_events.labels("accepted").inc(accepted)
        if ignored:
            self.webhook_events.labels("ignored").inc(ignored)

    def record_http_drop(self, reason: str) -> None:
        """The HTTP listener closed a connection, for *reason*."""
        self.http_dropped.labels(_reason(reason)).inc()

    # ------------------------------------------------------------------ snapshots and drills

    def configure_snapshots(self, endpoint: str | None, interval_s: float, since: float) -> None:
        """
        Export the snapshot series for *endpoint* (None: snapshots are not configured).

        *since* is the last success known from state, or when the job was first scheduled.
        """
        for gauge in (self.snapshot_interval, self.snapshot_last_success):
            gauge.clear()
        if endpoint is not None:
            self.snapshot_interval.labels(endpoint).set(interval_s)
            self.snapshot_last_success.labels(endpoint).set(since)

    def record_snapshot(
        self,
        endpoint: str,
        *,
        ok: bool,
        duration_s: float,
        finished_at: float | None = None,
        manifests: int | None = None,
        uploaded_bytes: int = 0,
    ) -> None:
        """One snapshot run: success moves the last-success gauge."""
        self.snapshot_runs.labels(endpoint, "ok" if ok else "failed").inc()
        self.snapshot_duration.labels(endpoint).set(duration_s)
        self.snapshot_bytes.labels(endpoint).inc(uploaded_bytes)
        if manifests is not None:
            self.snapshot_manifests.labels(endpoint).set(manifests)
        if ok:
            at = self._clock() if finished_at is None else finished_at
            self.snapshot_last_success.labels(endpoint).set(at)

    def configure_drills(
        self, endpoint: str | None, interval_s: float, rto_s: float, since: float
    ) -> None:
        """Export the drill series for *endpoint* (None: drills are not configured)."""
        for gauge in (self.drill_interval, self.drill_rto_target, self.drill_last_success):
            gauge.clear()
        if endpoint is not None:
            self.drill_interval.labels(endpoint).set(interval_s)
            self.drill_rto_target.labels(endpoint).set(rto_s)
            self.drill_last_success.labels(endpoint).set(since)

    def record_drill(
        self,
        endpoint: str,
        *,
        ok: bool,
        duration_s: float,
        finished_at: float | None = None,
        rto_s: float | None = None,
        rpo_s: float | None = None,
    ) -> None:
        """One drill: its verdict against RTO/RPO, and the times it measured."""
        at = self._clock() if finished_at is None else finished_at
        self.drill_last_run.labels(endpoint).set(at)
        self.drill_result.labels(endpoint).set(1 if ok else 0)
        self.drill_duration.labels(endpoint).set(duration_s)
        if rto_s is not None:
            self.drill_rto.labels(endpoint).set(rto_s)
        if rpo_s is not None:
            self.drill_rpo.labels(endpoint).set(rpo_s)
        if ok:
            self.drill_last_success.labels(endpoint).set(at)

    def set_rpo(self, rpo_s: float) -> None:
        """The RPO replication lag is judged against."""
        self.rpo_target.set(rpo_s)

    # ------------------------------------------------------------------ the daemon

    def record_job(self, kind: str, outcome: str) -> None:
        """One scheduler run: finished, failed (raised) or cancelled."""
        self.job_runs.labels(kind, outcome).inc()

    def set_cluster(self, leases: int, unclaimed: int) -> None:
        """What PostgreSQL says of this node's leases and the cluster's unclaimed units."""
        self.node_leases.set(leases)
        self.cluster_unclaimed.set(unclaimed)

    def record_state_reset(self) -> None:
        """The state database was corrupt and has been replaced by an empty one."""
        self.state_resets.inc()

    def record_reload(self, ok: bool, at: float | None = None) -> None:
        """The outcome of loading the configuration (at start or on SIGHUP)."""
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_at.set(self._clock() if at is None else at)
