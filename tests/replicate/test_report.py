"""PolicyReport's verdicts: what counts as ok, what a failed pass says, what exits 69."""

from __future__ import annotations

from drd.app.outcome import Outcome
from drd.app.replication import replication_outcome as exit_code
from drd.commands.replicate import render
from drd.errors import RegistryUnavailable
from drd.replicate.report import ItemResult, PolicyReport

DIGEST = "sha256:" + "a" * 64


def report(**fields: object) -> PolicyReport:
    return PolicyReport(policy="p", source="src", **fields)  # type: ignore[arg-type]


def test_a_clean_pass_is_ok_and_exits_0() -> None:
    clean = report(items=[ItemResult("a/b", "v1", "dst", DIGEST, "copied")])
    assert clean.ok
    assert clean.problem == ""
    assert exit_code([clean]) is Outcome.OK


def test_an_unreachable_target_is_not_ok_even_with_nothing_to_copy() -> None:
    down = report(unreachable={"dr2": "cannot talk to 127.0.0.1:9", "dr1": "answered 503"})
    assert not down.ok
    assert down.problem == (
        "target dr1 unreachable: answered 503; target dr2 unreachable: cannot talk to 127.0.0.1:9"
    )
    assert exit_code([down]) is Outcome.UNAVAILABLE
    assert render([down]).splitlines()[1:] == [
        "  target dr1 unreachable: answered 503; nothing copied to it",
        "  target dr2 unreachable: cannot talk to 127.0.0.1:9; nothing copied to it",
    ]
    assert down.to_json()["unreachable"] == {
        "dr2": "cannot talk to 127.0.0.1:9",
        "dr1": "answered 503",
    }


def test_the_pass_error_comes_before_unreachable_targets() -> None:
    both = report(
        error="RegistryUnavailable: cannot talk to src",
        exception=RegistryUnavailable("cannot talk to src"),
        unreachable={"dr1": "x"},
    )
    assert both.problem == "RegistryUnavailable: cannot talk to src"
    assert exit_code([both]) is Outcome.UNAVAILABLE


def test_a_failed_item_alone_exits_1() -> None:
    failed = ItemResult("a/b", "v1", "dst", DIGEST, "failed", "reset", error="RegistryUnavailable")
    one = report(items=[failed])
    assert not one.ok
    assert one.problem == ""
    assert exit_code([one]) is Outcome.FAILED


def test_rejections_alone_are_an_ok_pass_that_exits_3() -> None:
    """A pass whose only problems are rejections succeeds, with its own outcome (exit 3)."""
    items = [
        ItemResult("a/b", "v1", "dst", DIGEST, "copied"),
        ItemResult("a/b", "v2", "dst", DIGEST, "rejected", "no-signature"),
    ]
    one = report(items=items)
    assert one.ok
    assert (one.rejected, one.to_json()["rejected"]) == (1, 1)
    assert exit_code([one]) is Outcome.REJECTED
    failed = ItemResult("a/b", "v3", "dst", DIGEST, "failed", "reset", error="Unauthorized")
    assert exit_code([report(items=[*items, failed])]) is Outcome.FAILED


def test_identical_item_errors_are_one_line_with_a_count() -> None:
    """Beyond three, failed items with one reason at one target are one line; others stay."""
    same = [
        ItemResult("a/b", f"v{n}", "dst", DIGEST, "failed", "answered 500", error="X")
        for n in range(5)
    ]
    odd = ItemResult("a/b", "w", "dst", DIGEST, "failed", "answered 404", error="Y")
    elsewhere = ItemResult("a/b", "v0", "dst2", DIGEST, "rejected", "no-signature")
    text = render([report(items=[*same, odd, elsewhere])])
    assert text.splitlines()[1:] == [
        "  failed   dst 5 items (a/b:v0, a/b:v1, a/b:v2, ...): answered 500",
        f"  failed   dst a/b:w {DIGEST[:19]}: answered 404",
        f"  rejected dst2 a/b:v0 {DIGEST[:19]}: no-signature",
    ]


def test_an_unreachable_target_is_one_line_not_one_per_item() -> None:
    """The items a down target failed are not listed: its one line counts them."""
    why = "cannot talk to 127.0.0.1:9"
    items = [
        ItemResult("a/b", f"v{n}", "dr", DIGEST, "failed", why, error="RegistryUnavailable")
        for n in range(100)
    ]
    items.append(ItemResult("a/b", "v1", "dr2", DIGEST, "copied"))
    text = render([report(items=items, unreachable={"dr": why})])
    assert text.splitlines()[1:] == [
        f"  target dr unreachable: {why}; nothing copied to it, 100 not copied",
        f"  copied   dr2 a/b:v1 {DIGEST[:19]}",
    ]
