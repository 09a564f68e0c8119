"""Failover and failback between two real registries: pre-flight, switch, pins, hooks, record."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drd.app.active import apply_active, load_active_settings
from drd.app.failover import run_failback, run_failover
from drd.config import Settings, load_settings
from drd.errors import FailoverRefused, InvalidReference
from drd.failover.active import Active, events, read_active
from drd.failover.hooks import hook_argv, run_hook
from drd.replicate.report import PolicyReport
from drd.replicate.runner import run_policy
from drd.resources import open_resources, policy_from_config, verifier_for
from drd.state import RunRecord, State
from tests.configs import local_daemon, signed_replication, write_toml
from tests.drill.helpers import KEY, push_signed
from tests.images import RegistryWriter, make_image, make_multiarch, signature_tag
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, run_drd

HOOK = """
import json, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(sys.argv[2:]) + "\\n")
print("switched", sys.argv[2])
"""


def config(
    tmp_path: Path,
    primary: LocalRegistry,
    dr: LocalRegistry,
    repo: str,
    *,
    hooks: list[str] | None = None,
) -> Path:
    """primary -> dr for *repo*, signatures required, drills judged at 1h RPO."""
    key = tmp_path / "release.pub"
    key.write_bytes(KEY.public_pem())
    return write_toml(
        tmp_path / "drd.toml",
        signed_replication(
            {"primary": primary.url, "dr": dr.url},
            repo,
            key,
            {"primary": "eu-west-1", "dr": "us-east-1"},
        )
        + f"""
[drills]
target = "dr"
rpo = "1h"
report_dir = "{tmp_path / "reports"}"

[failover]
hooks = {json.dumps(hooks or [])}
overrides_file = "{tmp_path / "overrides.json"}"
max_drill_age = "1h"
"""
        + local_daemon(tmp_path / "state"),
    )


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[State]:
    async with await State.open(tmp_path / "state") as s:
        yield s


async def passing_drill(state: State, finished_at: float | None = None) -> None:
    """A drill recorded as passed, as `drd drill` records one."""
    end = time.time() if finished_at is None else finished_at
    await state.record_run(RunRecord("drill", "drill", "manual", end - 5, end, "ok", {}))


async def replicate(settings: Settings) -> PolicyReport:
    """One pass of the (effective) policy ``prod``, as `drd replicate` runs it."""
    [rep] = settings.replication
    async with open_resources(settings) as res:
        return await run_policy(
            policy_from_config(rep),
            res.registries[rep.source],
            {t: res.registries[t] for t in rep.targets},
            res.retry,
            verifier=verifier_for(settings, rep),
        )


async def failover(settings: Settings, state: State, **options: Any) -> Any:
    async with open_resources(settings) as res:
        return await run_failover(settings, res.registries, to="dr", state=state, **options)


def finding(report: Any, check: str) -> Any:
    [found] = [f for f in report.preflight.findings if f.check == check]
    return found


async def test_preflight_fails_on_a_missing_tag_and_passes_after_replication(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    state: State,
) -> None:
    """A tag pushed after the last replication blocks the pre-flight until it is replicated."""
    settings = load_settings(config(tmp_path, source_registry, target_registry, repo))
    await push_signed(source_registry, repo, make_image(f"{repo}/1"), "v1")
    await push_signed(source_registry, repo, make_multiarch(f"{repo}/2"), "v2")
    assert (await replicate(settings)).ok
    late = make_image(f"{repo}/3")
    await push_signed(source_registry, repo, late, "v3")
    await passing_drill(state)

    before = await failover(settings, state, dry_run=True)

    assert not before.ok
    assert not before.switched
    assert before.outcome == "refused"
    complete = finding(before, "completeness")
    assert not complete.ok
    assert f"{repo}:v3 missing: source {late.digest}" in complete.details
    assert f"{repo}:{signature_tag(late.digest)} missing" in " ".join(complete.details)
    assert finding(before, "last drill").ok
    assert read_active(settings.daemon.state_dir) is None

    assert (await replicate(settings)).ok
    after = await failover(settings, state, dry_run=True)

    assert after.ok, after.render()
    assert after.outcome == "planned"
    assert all(f.ok for f in after.preflight.findings)
    assert "3 verified" in finding(after, "signatures").summary
    assert not (tmp_path / "overrides.json").exists()
    assert read_active(settings.daemon.state_dir) is None


async def test_preflight_fails_when_a_signature_is_missing_at_the_standby(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    state: State,
) -> None:
    """A standby that lost an image's signature fails both completeness and signatures."""
    settings = load_settings(config(tmp_path, source_registry, target_registry, repo))
    image = make_image(f"{repo}/signed")
    await push_signed(source_registry, repo, image, "v1")
    assert (await replicate(settings)).ok
    target_registry.remove_tag(repo, signature_tag(image.digest))
    await passing_drill(state)

    report = await failover(settings, state, dry_run=True)

    assert not report.ok
    assert not finding(report, "completeness").ok
    signatures = finding(report, "signatures")
    assert not signatures.ok
    [detail] = signatures.details
    assert detail.startswith(f"{repo}:v1 {image.digest}: no-signature")


async def test_an_old_or_failed_drill_blocks_the_preflight(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    state: State,
) -> None:
    """No drill, then a drill older than max_drill_age, both fail the last-drill finding."""
    settings = load_settings(config(tmp_path, source_registry, target_registry, repo))
    await push_signed(source_registry, repo, make_image(f"{repo}/1"), "v1")
    assert (await replicate(settings)).ok

    none = await failover(settings, state, dry_run=True)
    await passing_drill(state, finished_at=time.time() - 7200)
    old = await failover(settings, state, dry_run=True)

    assert finding(none, "last drill").summary == "no drill has been recorded"
    assert not finding(old, "last drill").ok
    assert "ago (max age 1h00m)" in finding(old, "last drill").summary
    assert finding(old, "completeness").ok


async def test_failover_switches_pins_runs_hooks_and_failback_reverses(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    state: State,
) -> None:
    """
    The switch records the standby as primary, pins every tag to a digest that exists
    there, runs the hook with {to} and {from} (and their regions); the reverse policy
    then replicates from the new primary, and failback undoes the switch.
    """
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    calls = tmp_path / "calls.jsonl"
    hook = (
        f"{sys.executable} {script} {calls} {{to}} {{from}} {{to_region}} {{from_region}} "
        "--pins {overrides}"
    )
    path = config(tmp_path, source_registry, target_registry, repo, hooks=[hook])
    settings = load_settings(path)
    pushed = {
        "v1": await push_signed(source_registry, repo, make_image(f"{repo}/1"), "v1"),
        "v2": await push_signed(source_registry, repo, make_multiarch(f"{repo}/2"), "v2"),
    }
    assert (await replicate(settings)).ok
    await passing_drill(state)

    report = await failover(settings, state)

    assert report.ok, report.render()
    assert (report.outcome, report.switched, report.forced) == ("switched", True, False)
    active = read_active(settings.daemon.state_dir)
    assert active is not None
    assert (active.primary, active.standby) == ("primary", "dr")
    document = json.loads((tmp_path / "overrides.json").read_text())
    assert document["registry"] == target_registry.host
    assert document["overrides"] == {
        f"{repo}:{tag}": f"{target_registry.host}/{repo}@{digest}" for tag, digest in pushed.items()
    }
    async with RegistryWriter(target_registry) as w:
        for pin in document["overrides"].values():
            reference, _, digest = pin.partition("@")
            assert reference == f"{target_registry.host}/{repo}"
            assert await w.manifest_exists(repo, digest), pin
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        ["dr", "primary", "us-east-1", "eu-west-1", "--pins", str(tmp_path / "overrides.json")]
    ]
    assert (document["from_region"], document["to_region"]) == ("eu-west-1", "us-east-1")
    assert report.render().startswith("failover primary (eu-west-1) -> dr (us-east-1)")
    [hook_result] = report.hooks
    assert hook_result.ok
    assert hook_result.stdout == "switched dr\n"
    assert [p.name for p in report.phases] == ["preflight", "switch", "overrides", "hooks"]
    recorded = [r for r in await state.runs() if r.job == "failover"]
    assert recorded
    assert recorded[0].outcome == "ok"
    assert recorded[0].summary["to"] == "dr"

    # The reverse policy: the new primary's pushes reach the old primary.
    effective = load_active_settings(path)
    [reverse] = effective.replication
    assert (reverse.source, reverse.targets) == ("dr", ["primary"])
    fresh = make_image(f"{repo}/after")
    await push_signed(target_registry, repo, fresh, "v3")
    reversed_pass = await replicate(effective)
    assert reversed_pass.ok
    assert {(i.tag, i.outcome) for i in reversed_pass.items} >= {("v3", "copied")}
    async with RegistryWriter(source_registry) as w:
        assert await w.manifest_exists(repo, fresh.digest)

    with pytest.raises(FailoverRefused, match="already the active primary"):
        await failover(settings, state)

    async with open_resources(settings) as res:
        back = await run_failback(settings, res.registries, state=state)

    assert back.ok, back.render()
    assert (back.action, back.source, back.to) == ("failback", "dr", "primary")
    assert (back.from_region, back.to_region) == ("us-east-1", "eu-west-1")
    assert read_active(settings.daemon.state_dir) is None
    assert load_active_settings(path).replication[0].source == "primary"
    back_pins = json.loads((tmp_path / "overrides.json").read_text())["overrides"]
    assert back_pins[f"{repo}:v3"] == f"{source_registry.host}/{repo}@{fresh.digest}"
    assert [e["action"] for e in events(settings.daemon.state_dir)] == ["failover", "failback"]


async def test_a_failed_preflight_refuses_unless_forced_and_force_is_recorded(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    state: State,
) -> None:
    """Without --force nothing changes; with it the switch happens and says it was forced."""
    settings = load_settings(config(tmp_path, source_registry, target_registry, repo))
    await push_signed(source_registry, repo, make_image(f"{repo}/1"), "v1")

    refused = await failover(settings, state)

    assert (refused.ok, refused.switched, refused.outcome) == (False, False, "refused")
    assert "refusing to switch without --force" in refused.error
    assert read_active(settings.daemon.state_dir) is None
    assert not (tmp_path / "overrides.json").exists()

    forced = await failover(settings, state, force=True)

    assert forced.switched
    assert forced.outcome == "switched"
    active = read_active(settings.daemon.state_dir)
    assert active is not None
    assert active.forced
    assert [(e["outcome"], e["forced"]) for e in events(settings.daemon.state_dir)] == [
        ("refused", False),
        ("switched", True),
    ]
    # Nothing of v1 reached dr, so nothing is pinned.
    assert json.loads((tmp_path / "overrides.json").read_text())["overrides"] == {}


def test_apply_active_turns_the_standby_policies_around(tmp_path: Path) -> None:
    """Only policies from the old primary to the standby turn around; others stay."""
    text = """
version = 1
[endpoints.a]
url = "http://127.0.0.1:1"
[endpoints.b]
url = "http://127.0.0.1:2"
[endpoints.c]
url = "http://127.0.0.1:3"
[[replication]]
name = "ab"
source = "a"
targets = ["b", "c"]
[[replication]]
name = "ac"
source = "a"
targets = ["c"]
[snapshots]
source = "a"
store = "file:///tmp/x"
"""
    settings = load_settings(write_toml(tmp_path / "drd.toml", text))
    switched = apply_active(settings, Active("a", "b", 0.0, "e1"))

    assert [(r.name, r.source, r.targets) for r in switched.replication] == [
        ("ab", "b", ["a", "c"]),
        ("ac", "a", ["c"]),
    ]
    assert switched.snapshots is not None
    assert switched.snapshots.source == "b"
    assert apply_active(settings, None) is settings


def test_hooks_split_like_a_shell_and_fill_placeholders_per_argument() -> None:
    """A value with spaces stays one argument; unknown placeholders are refused."""
    values = {"to": "dr east", "from": "primary"}
    assert hook_argv("/bin/switch --to {to} 'from {from}'", values) == [
        "/bin/switch",
        "--to",
        "dr east",
        "from primary",
    ]
    with pytest.raises(InvalidReference, match="unknown placeholder"):
        hook_argv("/bin/switch {nope}", values)
    with pytest.raises(InvalidReference, match="cannot be split"):
        hook_argv("/bin/switch 'unbalanced", values)


async def test_a_hook_that_hangs_is_killed_at_its_timeout(tmp_path: Path) -> None:
    """The hook's own process is killed after the timeout and recorded as timed out."""
    hang = f"{sys.executable} -c 'import time; print(\"started\", flush=True); time.sleep(30)'"

    started = time.monotonic()
    result = await run_hook(hang, {}, timeout_s=0.5)

    assert time.monotonic() - started < 10
    assert (result.ok, result.timed_out) == (False, True)
    assert result.stdout == "started\n"
    missing = await run_hook("/nonexistent/drd-hook {to}", {"to": "dr"}, timeout_s=5)
    assert not missing.ok
    assert missing.error.startswith("cannot start")


async def test_cli_dry_run_prints_findings_and_failback_without_failover_is_usage(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """`drd failover --dry-run --json` reports the findings; `drd failback` with none is exit 2."""
    path = config(tmp_path, source_registry, target_registry, repo)
    await push_signed(source_registry, repo, make_image(f"{repo}/1"), "v1")

    dry = await run_drd("failover", "--to", "dr", "--dry-run", "--json", config=path)
    back = await run_drd("failback", config=path)

    assert dry.returncode == 1, dry.stderr
    document = json_out(dry)
    assert (document["outcome"], document["dry_run"]) == ("refused", True)
    assert [f["check"] for f in document["preflight"]["findings"]] == [
        "replica lag",
        "completeness",
        "signatures",
        "last drill",
    ]
    assert back.returncode == 2
    assert "nothing to fail back from" in back.stderr
