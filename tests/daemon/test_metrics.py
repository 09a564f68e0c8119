"""Metrics: recorded from reports, lag computed at scrape time, labels stay bounded."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from drd import __version__
from drd.errors import NotFound, RegistryUnavailable
from drd.metrics import Metrics
from drd.replicate.copier import CopyStats
from drd.retry import RetryPolicy
from tests.daemon.reports import DIGEST_A, item, report


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_full_pass_is_counted_per_target_and_outcome() -> None:
    """Copies, skips, failures by error class, rejections by reason, bytes and blobs are counted."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    stats = CopyStats(blobs_copied=3, blobs_present=2, blobs_mounted=1, bytes_copied=4096)
    passed = report(
        [
            item("v1", "copied"),
            item("v2", "skipped"),
            item("v3", "failed", error="RegistryUnavailable"),
            item("v4", "rejected", reason="no-signature"),
        ],
        stats=stats,
    )
    metrics.record_replication(passed, full=True, finished_at=1000.0)

    def artifacts(outcome: str) -> float | None:
        return sample(
            registry,
            "drd_replication_artifacts_total",
            policy="prod",
            target="dst",
            outcome=outcome,
        )

    assert tuple(artifacts(o) for o in ("copied", "skipped", "failed", "rejected")) == (
        1.0,
        1.0,
        1.0,
        1.0,
    )
    assert sample(registry, "drd_replication_bytes_total", policy="prod", target="dst") == 4096.0
    assert (
        sample(
            registry, "drd_replication_blobs_total", policy="prod", target="dst", outcome="mounted"
        )
        == 1.0
    )
    assert (
        sample(
            registry,
            "drd_replication_errors_total",
            policy="prod",
            target="dst",
            reason="RegistryUnavailable",
        )
        == 1.0
    )
    assert (
        sample(
            registry,
            "drd_verification_rejections_total",
            policy="prod",
            target="dst",
            reason="no-signature",
        )
        == 1.0
    )
    assert (
        sample(
            registry,
            "drd_replication_runs_total",
            policy="prod",
            trigger="schedule",
            outcome="failed",
        )
        == 1.0
    )
    # Something failed at dst: this pass is no success there.
    assert (
        sample(
            registry, "drd_replication_last_success_timestamp_seconds", policy="prod", target="dst"
        )
        is None
    )


@pytest.mark.parametrize(
    ("full", "expected"),
    [
        pytest.param(True, 1000.0, id="full-pass-moves-last-success"),
        pytest.param(False, None, id="push-run-does-not"),
    ],
)
def test_last_success_moves_only_on_a_clean_full_pass(full: bool, expected: float | None) -> None:
    """Only a full pass with nothing failed at a target is that target's success."""
    registry = CollectorRegistry()
    Metrics(registry).record_replication(
        report([item("v1", "copied")]), full=full, finished_at=1000.0
    )
    assert expected == sample(
        registry, "drd_replication_last_success_timestamp_seconds", policy="prod", target="dst"
    )


def test_a_takeover_run_is_counted_under_its_trigger_and_is_no_full_pass() -> None:
    """A takeover of a dead node's units has its own trigger label and moves no last success."""
    registry = CollectorRegistry()
    Metrics(registry).record_replication(
        report([item("v1", "copied")]), full=False, finished_at=1000.0, trigger="takeover"
    )
    runs = {
        trigger: sample(
            registry, "drd_replication_runs_total", policy="prod", trigger=trigger, outcome="ok"
        )
        for trigger in ("takeover", "push", "schedule")
    }
    assert runs == {"takeover": 1.0, "push": None, "schedule": None}
    assert (
        sample(
            registry, "drd_replication_last_success_timestamp_seconds", policy="prod", target="dst"
        )
        is None
    )


def test_rejections_are_a_success_with_their_own_gauge() -> None:
    """
    A full pass whose only problem is a rejection moves last success (DrdReplicationFailing
    stays quiet) and sets drd_replication_rejected_tags, which the next clean pass clears.
    """
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    rejected = report([item("v1", "copied"), item("v2", "rejected", reason="no-signature")])
    metrics.record_replication(rejected, full=True, finished_at=1000.0)

    def gauges() -> tuple[float | None, float | None, float | None]:
        return (
            sample(
                registry,
                "drd_replication_last_success_timestamp_seconds",
                policy="prod",
                target="dst",
            ),
            sample(registry, "drd_replication_rejected_tags", policy="prod", target="dst"),
            sample(
                registry,
                "drd_replication_runs_total",
                policy="prod",
                trigger="schedule",
                outcome="ok",
            ),
        )

    assert gauges() == (1000.0, 1.0, 1.0)
    metrics.record_replication(report([item("v1", "skipped")]), full=True, finished_at=2000.0)
    assert gauges() == (2000.0, 0.0, 2.0)


def test_a_failed_pass_is_an_error_for_every_target() -> None:
    """A pass that could not list the source counts an error by class at each target."""
    registry = CollectorRegistry()
    Metrics(registry).record_replication(
        report(error=RegistryUnavailable("cannot talk to src"), targets=["dst", "dr2"]), full=True
    )
    for target in ("dst", "dr2"):
        assert (
            sample(
                registry,
                "drd_replication_errors_total",
                policy="prod",
                target=target,
                reason="RegistryUnavailable",
            )
            == 1.0
        )
    assert (
        sample(
            registry,
            "drd_replication_runs_total",
            policy="prod",
            trigger="schedule",
            outcome="error",
        )
        == 1.0
    )


def test_dry_runs_are_not_recorded() -> None:
    """A dry run changes nothing, so it counts nothing."""
    registry = CollectorRegistry()
    Metrics(registry).record_replication(report([item("v1", "planned")], dry_run=True), full=True)
    text = generate_latest(registry).decode()
    assert 'outcome="planned"' not in text
    assert "drd_replication_runs_total{" not in text


def test_lag_is_seconds_since_the_watermark_at_scrape_time() -> None:
    """The lag gauge is now minus the watermark, so it grows between scrapes and never goes < 0."""
    clock = Clock(1000.0)
    registry = CollectorRegistry()
    metrics = Metrics(registry, clock=clock)
    metrics.set_replication_state(
        watermarks={("prod", "dst"): 990.0, ("prod", "dr2"): 1005.0},
        last_success={("prod", "dst"): 990.0},
        pending={("prod", "dst"): 2},
        drift={("prod", "dst"): 1},
    )

    def lag(target: str) -> float | None:
        return sample(registry, "drd_replication_lag_seconds", policy="prod", target=target)

    assert (lag("dst"), lag("dr2")) == (10.0, 0.0)
    clock.now = 1060.0
    assert (lag("dst"), lag("dr2")) == (70.0, 55.0)
    assert sample(registry, "drd_replication_pending_changes", policy="prod", target="dst") == 2.0
    metrics.set_replication_state(watermarks={}, last_success={}, pending={}, drift={})
    assert lag("dst") is None  # a policy removed by a reload disappears


async def test_retries_are_counted_by_operation_and_error() -> None:
    """The retry hook counts drd_retries_total{op,error} for every retry scheduled."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    policy = replace(RetryPolicy.no_wait(attempts=3), on_retry=metrics.on_retry)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RegistryUnavailable("registry answered 503", registry="src", status=503)
        return "ok"

    async for attempt in policy.for_op("registry.get_manifest"):
        with attempt:
            await flaky()

    async def missing() -> None:
        async for attempt in policy.for_op("registry.head_manifest"):
            with attempt:
                raise NotFound("not found", registry="src")

    with pytest.raises(NotFound):
        await missing()
    assert (
        sample(
            registry, "drd_retries_total", op="registry.get_manifest", error="RegistryUnavailable"
        )
        == 2.0
    )
    assert (
        sample(registry, "drd_retries_total", op="registry.head_manifest", error="NotFound") is None
    )


def test_labels_never_carry_repositories_tags_or_digests() -> None:
    """Whatever the report holds, no label value names a repository, a tag or a digest."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record_replication(
        report(
            [
                item("release-candidate-7", "copied", repository="secret-team/payroll"),
                item("v2", "failed", error="not an error class!"),
                item("v3", "rejected", reason="key sha256:" + "f" * 64 + " unknown"),
            ]
        ),
        full=True,
    )
    metrics.record_webhook(202, accepted=1, ignored=2)
    text = generate_latest(registry).decode()
    for forbidden in ("secret-team", "payroll", "release-candidate-7", DIGEST_A, "sha256:"):
        assert forbidden not in text
    assert (
        sample(
            registry, "drd_replication_errors_total", policy="prod", target="dst", reason="other"
        )
        == 1.0
    )


def test_build_info_snapshot_drill_and_reload_gauges() -> None:
    """Build info carries the version; snapshot, drill and reload outcomes set their gauges."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, clock=Clock(500.0))
    metrics.record_snapshot("src", ok=True, duration_s=12.5, manifests=40, uploaded_bytes=1000)
    metrics.record_snapshot("src", ok=False, duration_s=3.0)
    metrics.record_drill(
        "drill", ok=False, duration_s=60.0, rto_s=60.0, rpo_s=900.0, finished_at=450.0
    )
    metrics.record_reload(False)
    [info] = [s for m in registry.collect() for s in m.samples if s.name == "drd_build_info"]
    assert info.labels["version"] == __version__
    assert sample(registry, "drd_snapshot_last_success_timestamp_seconds", endpoint="src") == 500.0
    assert sample(registry, "drd_snapshot_duration_seconds", endpoint="src") == 3.0
    assert sample(registry, "drd_snapshot_runs_total", endpoint="src", outcome="failed") == 1.0
    assert (
        sample(registry, "drd_drill_last_result", endpoint="drill"),
        sample(registry, "drd_drill_last_run_timestamp_seconds", endpoint="drill"),
    ) == (0.0, 450.0)
    assert sample(registry, "drd_drill_last_success_timestamp_seconds", endpoint="drill") is None
    assert sample(registry, "drd_config_last_reload_successful") == 0.0


def test_unconfigured_snapshots_and_drills_export_nothing_to_alert_on() -> None:
    """Without [snapshots] or [drills] no series exists; configured, the gauges start at *since*."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.configure_snapshots(None, 0.0, 0.0)
    metrics.configure_drills(None, 0.0, 0.0, 0.0)
    text = generate_latest(registry).decode()
    assert "drd_snapshot_last_success_timestamp_seconds{" not in text
    assert "drd_drill_last_success_timestamp_seconds{" not in text
    metrics.configure_snapshots("src", 3600.0, 42.0)
    metrics.configure_drills("drill", 86400.0, 14400.0, 43.0)
    assert sample(registry, "drd_snapshot_last_success_timestamp_seconds", endpoint="src") == 42.0
    assert sample(registry, "drd_drill_last_success_timestamp_seconds", endpoint="drill") == 43.0
    assert sample(registry, "drd_drill_rto_target_seconds", endpoint="drill") == 14400.0


def test_deletions_are_counted_and_a_held_brake_is_no_success() -> None:
    """Deleted and kept tags are counted; a brake that held is an error, not a success."""
    from drd.oci.digest import Digest
    from drd.replicate.deletions import Deletion, TargetDeletions

    gone = Deletion("team/app", "old", Digest.parse(DIGEST_A))
    clean, held = report(targets=["dst", "dr2"]), report(targets=["dst"])
    clean.deletions["dst"] = TargetDeletions(planned=[gone], deleted=[gone], managed=20)
    clean.deletions["dr2"] = TargetDeletions(kept=[(gone, "v1")], managed=20)
    held.deletions["dst"] = TargetDeletions(planned=[gone, gone], braked="over", managed=2)
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    metrics.record_replication(clean, full=True, finished_at=1000.0)
    metrics.record_replication(held, full=True, finished_at=2000.0)

    def deletions(target: str, outcome: str) -> float | None:
        return sample(
            registry,
            "drd_replication_deletions_total",
            policy="prod",
            target=target,
            outcome=outcome,
        )

    assert (deletions("dst", "deleted"), deletions("dr2", "kept")) == (1.0, 1.0)
    assert deletions("dst", "braked") == 2.0
    errors = sample(
        registry,
        "drd_replication_errors_total",
        policy="prod",
        target="dst",
        reason="DeletionBrake",
    )
    assert errors == 1.0
    last = sample(
        registry, "drd_replication_last_success_timestamp_seconds", policy="prod", target="dst"
    )
    assert last == 1000.0
