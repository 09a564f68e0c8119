"""`drd.state.changes`: what one replication run changes, decided once for both backends."""

from __future__ import annotations

from drd.replicate.copier import CopyStats
from drd.replicate.report import ItemResult, PolicyReport
from drd.state.changes import Step, replication_changes


def report(*items: tuple[str, str, str], error: str = "") -> PolicyReport:
    """A report of policy ``p`` to targets ``a`` and ``b``; items are (target, tag, outcome)."""
    return PolicyReport(
        "p",
        "src",
        items=[
            ItemResult("r", tag, target, f"sha256:{tag}", outcome, moved_from="sha256:old")
            for target, tag, outcome in items
        ],
        stats={"a": CopyStats(), "b": CopyStats()},
        error=error,
    )


def test_each_outcome_changes_pending_and_drift_in_item_order() -> None:
    changes = replication_changes(
        report(
            ("a", "t1", "failed"),
            ("a", "t2", "copied"),
            ("a", "t3", "skipped"),
            ("a", "t4", "drift"),
            ("b", "t5", "rejected"),
            ("b", "t6", "planned"),
        ),
        full=True,
        started_at=10.0,
        finished_at=20.0,
    )
    assert changes.steps == [
        Step("pend", ("p", "a", "r", "t1", 10.0)),
        Step("unpend", ("p", "a", "r", "t2")),
        Step("undrift", ("p", "a", "r", "t2")),
        Step("unpend", ("p", "a", "r", "t3")),
        Step("undrift", ("p", "a", "r", "t3")),
        Step("unpend", ("p", "a", "r", "t4")),
        Step("drift", ("p", "a", "r", "t4", "sha256:t4", "sha256:old", 20.0, 20.0)),
        Step("unpend", ("p", "b", "r", "t5")),
    ]
    assert changes.sync_rows() == [("p", "a", 10.0), ("p", "b", 10.0)]


def test_a_failure_holds_back_last_success_at_its_target_only_and_rejections_do_not() -> None:
    changes = replication_changes(
        report(("a", "t1", "failed"), ("b", "t2", "rejected")),
        full=True,
        started_at=10.0,
        finished_at=20.0,
    )
    assert changes.watermarks() == [("a", False), ("b", True)]


def test_a_partial_pass_moves_last_clean_but_never_last_success() -> None:
    changes = replication_changes(
        report(("a", "t1", "copied")), full=False, started_at=10.0, finished_at=20.0
    )
    assert changes.watermarks() == [("a", False), ("b", False)]


def test_a_broken_pass_moves_no_watermark_but_still_records_its_items() -> None:
    changes = replication_changes(
        report(("a", "t1", "failed"), error="source unreachable"),
        full=True,
        started_at=10.0,
        finished_at=20.0,
    )
    assert changes.watermarks() == []
    assert changes.steps == [Step("pend", ("p", "a", "r", "t1", 10.0))]


def test_a_full_pass_forgets_what_it_no_longer_saw_fail_or_drift() -> None:
    changes = replication_changes(
        report(("a", "t1", "failed"), ("a", "t2", "drift")),
        full=True,
        started_at=10.0,
        finished_at=20.0,
    )
    assert changes.forgotten_pending("a", [("r", "t1"), ("r", "gone")]) == [("p", "a", "r", "gone")]
    assert changes.resolved_drift("a", [("r", "t2"), ("r", "fixed")]) == [("p", "a", "r", "fixed")]
    assert changes.forgotten_pending("b", [("r", "t1")]) == [("p", "b", "r", "t1")]
