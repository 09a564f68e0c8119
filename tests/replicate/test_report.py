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
    assert "target dr2 unreachable for the rest of the pass: cannot talk to" in render([down])
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
