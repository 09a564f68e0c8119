"""`drd drill` end to end, and the daemon's scheduled drill job with its metrics and state."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from drd.app.drills import drill_job
from drd.config import load_settings
from drd.metrics import Metrics
from drd.resources import open_resources
from drd.state import State
from tests.configs import local_daemon, signed_replication, write_toml
from tests.drill.helpers import KEY, push_signed
from tests.images import RegistryWriter, make_image, push_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, run_drd


def text_of(path: str) -> str:
    """A report file's text."""
    return Path(path).read_text()


def config(
    tmp_path: Path,
    primary: LocalRegistry,
    dr: LocalRegistry,
    drill: LocalRegistry,
    repo: str,
    *,
    mode: str = "restore",
    rpo: str = "1h",
) -> Path:
    key = tmp_path / "release.pub"
    key.write_bytes(KEY.public_pem())
    replica = '\nreplica = "dr"' if mode == "replica" else ""
    urls = {"primary": primary.url, "dr": dr.url, "drill": drill.url}
    return write_toml(
        tmp_path / "drd.toml",
        signed_replication(urls, repo, key)
        + f"""
[snapshots]
source = "primary"
store = "file://{tmp_path / "snapshots"}"
repositories = ["{repo}"]
blobs = true

[drills]
target = "drill"
trust = "release"
rto = "10m"
rpo = "{rpo}"
report_dir = "{tmp_path / "reports"}"
mode = "{mode}"{replica}
"""
        + local_daemon(tmp_path / "state"),
    )


async def test_drill_command_writes_reports_records_the_run_and_exits_by_verdict(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """Exit 0 with a passing drill, the three report files, and the run in state.db."""
    path = config(tmp_path, source_registry, target_registry, third_registry, repo)
    image = make_image(f"{repo}/cli")
    await push_signed(source_registry, repo, image, "v1")
    await push_image(source_registry, repo, make_image(f"{repo}/plain"), "plain")
    assert (await run_drd("snapshot", "create", config=path)).returncode == 0

    done = await run_drd("drill", "--json", config=path)

    assert done.returncode == 0, done.stderr
    document = json_out(done)
    assert (document["verdict"], document["mode"]) == ("PASSED", "restore")
    assert document["readback"]["signed_ok"] == 1
    assert document["readback"]["unsigned"] == 1
    reports = document["reports"]
    assert Path(reports["html"]).parent == tmp_path / "reports"
    assert "PASSED" in text_of(reports["html"])
    assert json.loads(text_of(reports["json"]))["id"] == document["id"]
    assert text_of(reports["md"]).startswith("# Restore drill")
    async with await State.open(tmp_path / "state") as state:
        [job] = [j for j in await state.jobs() if j.job == "drill"]
        assert job.last_outcome == "ok"
    async with RegistryWriter(third_registry) as w:
        assert await w.list_tags(f"drill-{document['id']}/{repo}") == []

    human = await run_drd("drill", "--report-dir", str(tmp_path / "elsewhere"), config=path)
    assert human.returncode == 0, human.stderr
    assert "PASSED" in human.stdout
    assert f"report (html): {tmp_path / 'elsewhere'}" in human.stdout


async def test_drill_command_exits_1_when_a_target_is_missed(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """A clean drill whose newest snapshot is older than the RPO exits 1 and says why."""
    path = config(tmp_path, source_registry, target_registry, third_registry, repo, rpo="1ms")
    await push_signed(source_registry, repo, make_image(f"{repo}/late"), "v1")
    assert (await run_drd("snapshot", "create", config=path)).returncode == 0

    done = await run_drd("drill", config=path)

    assert done.returncode == 1, done.stderr
    assert "FAILED" in done.stdout
    assert "exceeds the target 1ms" in done.stdout


async def test_replica_drill_command_checks_the_replica_in_place(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """`drd drill --replica` passes once replication ran, and fails before."""
    path = config(tmp_path, source_registry, target_registry, third_registry, repo, mode="replica")
    await push_signed(source_registry, repo, make_image(f"{repo}/r"), "v1")

    before = await run_drd("drill", "--replica", "--json", config=path)
    assert (await run_drd("replicate", config=path)).returncode == 0
    after = await run_drd("drill", "--replica", "--json", config=path)

    assert before.returncode == 1
    tags = sorted(f["tag"] for f in json_out(before)["failures"])
    assert tags[0] == "sha256-" + tags[0][7:71] + ".sig"
    assert tags[1:] == ["v1"]
    assert after.returncode == 0, after.stderr
    assert json_out(after)["mode"] == "replica"
    # One successful replication pass in state: the worst gap is the open one since it.
    assert json_out(before)["judgement"]["rpo"]["worst_s"] is None
    assert "no successful replication pass" in json_out(before)["judgement"]["rpo"]["worst_method"]
    worst = json_out(after)["judgement"]["rpo"]
    assert worst["worst_s"] is not None
    assert "replication passes of prod" in worst["worst_method"]
    assert "since the previous drill" in worst["worst_method"]


async def test_the_worst_case_rpo_is_the_longest_gap_between_snapshots_since_the_last_drill(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    Three snapshots; the JSON, Markdown and HTML reports carry the longest gap between
    them (or since the newest), bounded by the snapshots `drd snapshot list` shows; a
    second drill judges only the window since the first.
    """
    path = config(tmp_path, source_registry, target_registry, third_registry, repo)
    await push_signed(source_registry, repo, make_image(f"{repo}/w"), "v1")
    for _ in range(3):
        assert (await run_drd("snapshot", "create", config=path)).returncode == 0
    listed = json_out(await run_drd("snapshot", "list", "--json", config=path))

    first = json_out(await run_drd("drill", "--json", config=path))
    second = json_out(await run_drd("drill", "--json", config=path))

    taken = sorted(s["taken_at"] for s in _snapshots(listed))
    stamps = [_parse(t) for t in taken]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    rpo = first["judgement"]["rpo"]
    assert rpo["worst_s"] >= max(gaps) - 0.001
    assert rpo["worst_s"] >= rpo["measured_s"] - 0.001
    assert _parse(rpo["worst_from"]) in stamps
    assert "over the whole recorded history" in rpo["worst_method"]
    assert "(3 snapshots recorded)" in rpo["worst_method"]
    assert first["judgement"]["rto"]["startup_s"] > 0
    assert first["judgement"]["rto"]["fixed_s"] >= first["judgement"]["rto"]["startup_s"]
    later = second["judgement"]["rpo"]
    assert "since the previous drill" in later["worst_method"]
    # The snapshot gaps ended before the first drill: only the open gap is left in the window.
    assert _parse(later["worst_from"]) == stamps[-1]
    md = text_of(second["reports"]["md"])
    assert "| RPO, worst case in the window |" in md
    assert "Worst-case RPO: longest gap between successful snapshots" in md
    assert "RPO, worst case in the window" in text_of(second["reports"]["html"])


def _snapshots(listed: object) -> list[dict[str, str]]:
    return listed["snapshots"] if isinstance(listed, dict) else listed  # type: ignore[return-value]


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_the_scheduled_drill_job_records_state_metrics_and_reports(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """The daemon's job runs the drill and sets drd_drill_* from its report."""
    path = config(tmp_path, source_registry, target_registry, third_registry, repo)
    await push_signed(source_registry, repo, make_image(f"{repo}/job"), "v1")
    assert (await run_drd("snapshot", "create", config=path)).returncode == 0
    settings = load_settings(path)
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    async with await State.open(tmp_path / "state") as state, open_resources(settings) as res:
        run = drill_job(settings, res.registries, res.retry, state=state, metrics=metrics)
        await run()
        [job] = [j for j in await state.jobs() if j.job == "drill"]

    assert job.last_outcome == "ok"
    labels = {"endpoint": "drill"}
    assert registry.get_sample_value("drd_drill_last_result", labels) == 1.0
    assert (registry.get_sample_value("drd_drill_rto_seconds", labels) or 0) > 0
    assert (registry.get_sample_value("drd_drill_rpo_seconds", labels) or 0) > 0
    assert registry.get_sample_value("drd_drill_last_success_timestamp_seconds", labels)
    assert len(list((tmp_path / "reports").glob("drill-*.html"))) == 1
