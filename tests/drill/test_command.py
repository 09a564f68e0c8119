"""`drd drill` end to end, and the daemon's scheduled drill job with its metrics and state."""

from __future__ import annotations

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
