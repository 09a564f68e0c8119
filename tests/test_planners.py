"""Table tests of the pure planners pulled out of long I/O functions."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.drill.judge import replica_rpo
from drd.failover.active import Active
from drd.failover.switch import SwitchPlan, plan_switch
from drd.snapshot.sweep import plan_sweep
from drd.store.base import StoredObject

NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=2)
YOUNG = NOW - dt.timedelta(seconds=30)
M1 = "manifests/sha256/" + "1" * 64
B2 = "blobs/sha256/" + "2" * 64
B3 = "blobs/sha256/" + "3" * 64


@pytest.mark.parametrize(
    ("objects", "referenced", "leases", "deleted", "young"),
    [
        pytest.param([(M1, OLD), (B2, OLD)], {M1}, [], [B2], 0, id="unreferenced-old-goes"),
        pytest.param([(B2, YOUNG), (B3, OLD)], set(), [], [B3], 1, id="young-stays"),
        pytest.param([(B2, OLD)], set(), ["snapshot-h1"], [], 0, id="lease-defers-all"),
        pytest.param([("blobs/not-a-digest", OLD)], set(), [], [], 0, id="other-keys-never"),
        pytest.param([(M1, OLD)], {M1}, [], [], 0, id="referenced-stays"),
    ],
)
def test_plan_sweep(
    objects: list[tuple[str, dt.datetime]],
    referenced: set[str],
    leases: list[str],
    deleted: list[str],
    young: int,
) -> None:
    stored = [StoredObject(key, 10, when) for key, when in objects]
    sweep = plan_sweep(stored, referenced, now=NOW, grace=dt.timedelta(hours=1), leases=leases)
    assert [o.key for o in sweep.delete] == deleted
    assert sweep.kept_young == young
    assert sweep.deferred == leases
    assert sweep.bytes_freed == 10 * len(deleted)


@pytest.mark.parametrize(
    ("lag", "compared", "failing", "rpo", "method"),
    [
        pytest.param((42.0, "from history"), True, 3, 42.0, "from history", id="history-wins"),
        pytest.param(None, False, 0, None, "unknown: the replica could not", id="not-compared"),
        pytest.param((None, "x"), True, 2, None, "unknown: 2 tag(s)", id="failing-no-history"),
        pytest.param(None, True, 0, 0.0, "the replica held every", id="complete"),
    ],
)
def test_replica_rpo(
    lag: tuple[float | None, str] | None,
    compared: bool,
    failing: int,
    rpo: float | None,
    method: str,
) -> None:
    got, how = replica_rpo(lag, compared=compared, failing=failing)
    assert got == rpo
    assert how.startswith(method)


@pytest.mark.parametrize(
    ("action", "dry_run", "ok", "force", "expected"),
    [
        pytest.param("failover", True, False, True, SwitchPlan("stop"), id="dry-stops"),
        pytest.param("failover", False, False, False, SwitchPlan("refuse"), id="failed-refuses"),
        pytest.param(
            "failover",
            False,
            True,
            False,
            SwitchPlan("switch", Active("src", "dr", 5.0, "e1", False), False),
            id="ok-switches",
        ),
        pytest.param(
            "failover",
            False,
            False,
            True,
            SwitchPlan("switch", Active("src", "dr", 5.0, "e1", True), True),
            id="forced-is-recorded",
        ),
        pytest.param(
            "failback", False, True, True, SwitchPlan("switch", None, False), id="failback-clears"
        ),
    ],
)
def test_plan_switch(
    action: str, dry_run: bool, ok: bool, force: bool, expected: SwitchPlan
) -> None:
    plan = plan_switch(
        action=action,
        source="src",
        to="dr",
        dry_run=dry_run,
        preflight_ok=ok,
        force=force,
        started_at=5.0,
        event="e1",
    )
    assert plan == expected
