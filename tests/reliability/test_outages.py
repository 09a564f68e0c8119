"""
Outages: a target registry that goes away mid-run, one that is down from the start,
and an S3 store that fails under a running daemon. drd reports, keeps serving, and
the next run completes.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

from drd.registry.client import Limits
from drd.replicate.report import PolicyReport
from drd.replicate.runner import run_policy
from drd.retry import RetryPolicy
from drd.snapshot.catalog import list_snapshots
from tests.clients import open_client, policy_for
from tests.daemon.process import daemon_env, http_get, running_daemon, wait_for
from tests.faults import Fault, FaultProxy
from tests.images import MiB, make_image, make_multiarch, push_image, push_index
from tests.reliability.cli import FAST_RETRY, run_drd, write_config
from tests.reliability.consistency import assert_target_consistent
from tests.reliability.helpers import push_large_corpus, read_back, s3_store
from tests.servers import LocalRegistry, free_port

RETRY = RetryPolicy.no_wait(attempts=3)


async def replicate(
    source: LocalRegistry, target: LocalRegistry, repo: str, chunk_size: int | None = None
) -> PolicyReport:
    """One pass of *repo* from *source* to *target* (uploading in PATCHes of *chunk_size*)."""
    limits = Limits(chunk_size=chunk_size)
    async with (
        open_client(source, "source") as src,
        open_client(target, "target", limits=limits) as dst,
    ):
        return await run_policy(policy_for(repo), src, {"target": dst}, RETRY)


async def test_target_stopped_mid_run_then_the_next_run_completes(
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
) -> None:
    """
    A target that stops while layers are being uploaded fails the pass's items with a
    reason; once it is back it holds nothing half-done, and the next pass copies all.
    """
    # Small PATCH chunks: the upload is still running when the target goes away.
    target = registry_factory()
    source = await push_large_corpus(source_registry, repo)
    run = asyncio.create_task(replicate(source_registry, target, repo, MiB // 8))
    uploads = target.repository_dir(repo) / "_uploads"
    for _ in range(3000):
        if run.done() or (uploads.is_dir() and any(uploads.iterdir())):
            break
        await asyncio.sleep(0.01)
    assert not run.done(), "the pass finished before the outage"
    await asyncio.to_thread(target.stop)
    report = await run

    assert not report.ok
    reasons = [report.error] if report.error else [i.reason for i in report.items]
    assert reasons
    assert all("cannot talk to" in r for r in reasons), reasons
    await asyncio.to_thread(target.resume)
    await assert_target_consistent(target, repo)

    again = await replicate(source_registry, target, repo)
    assert again.ok, again.to_json()
    walked = await assert_target_consistent(target, repo)
    assert walked.tags == {tag: str(digest) for tag, digest in source.items()}


def test_a_target_down_from_the_start_exits_69_and_the_next_run_copies(
    tmp_path: Path,
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
) -> None:
    """
    `drd replicate` against a stopped target exits 69 (unavailable), names the target as
    unreachable before trying any item; after it is back, 0.
    """
    target = registry_factory()
    index = make_multiarch(repo)
    asyncio.run(push_index(source_registry, repo, index, "v1"))
    config = write_config(
        tmp_path / "drd.toml",
        endpoints={"src": {"url": source_registry.url}, "dst": {"url": target.url}},
        tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
        replication=[{"name": "p", "source": "src", "targets": ["dst"], "repositories": [repo]}],
    )
    target.stop()
    down = run_drd("replicate", "--config", config, "--json")
    assert down.returncode == 69, down.stderr.decode()
    [policy] = json.loads(down.stdout)["policies"]
    assert policy["error"] == ""
    assert policy["unreachable"]["dst"].startswith(f"cannot talk to {target.host}")
    assert policy["items"] == []  # found unreachable before any item was tried
    assert (
        b"target dst unreachable: cannot talk to" in run_drd("replicate", "--config", config).stdout
    )

    target.resume()
    up = run_drd("replicate", "--config", config)
    assert up.returncode == 0, up.stderr.decode()
    walked = asyncio.run(assert_target_consistent(target, repo))
    assert walked.tags == {"v1": str(index.digest)}


async def test_one_target_down_does_not_stop_the_others(
    source_registry: LocalRegistry, registry_factory: Callable[..., LocalRegistry], repo: str
) -> None:
    """
    With two targets and one stopped, the live one gets every repository; the stopped
    one fails every item with a reason, and after its first failure is not asked again.
    """
    repos = [f"{repo}-{n}" for n in range(3)]
    pushed = {}
    for name in repos:
        image = make_image(name)
        await push_image(source_registry, name, image, "v1")
        pushed[name] = str(image.digest)
    live, dead = registry_factory(), registry_factory()
    await asyncio.to_thread(dead.stop)
    async with (
        open_client(source_registry, "src") as src,
        open_client(live, "live") as to_live,
        open_client(dead, "dead") as to_dead,
    ):
        # One repository at a time: the first finds "dead" down, the others skip it.
        policy = policy_for(*repos, concurrency=1)
        report = await run_policy(policy, src, {"live": to_live, "dead": to_dead}, RETRY)

    assert not report.ok
    assert report.error == ""
    assert list(report.unreachable) == ["dead"]
    assert report.unreachable["dead"].startswith(f"cannot talk to {dead.host}")
    by_target = {
        t: sorted((i.repository, i.outcome) for i in report.items if i.target == t)
        for t in ("live", "dead")
    }
    assert by_target == {
        "live": [(name, "copied") for name in repos],
        "dead": [(name, "failed") for name in repos],
    }
    dead_reasons = [
        i.reason for i in sorted(report.items, key=lambda i: i.repository) if i.target == "dead"
    ]
    assert dead_reasons[0].startswith(f"cannot talk to {dead.host}")
    for reason in dead_reasons[1:]:
        assert reason.startswith("not tried: dead was unreachable earlier in this pass")
    for name in repos:
        walked = await assert_target_consistent(live, name)
        assert walked.tags == {"v1": pushed[name]}


def daemon_config(
    path: Path, source: LocalRegistry, s3: FaultProxy, bucket: str, repo: str, port: int
) -> Path:
    """A daemon that snapshots *repo* into S3 (through *s3*) every two seconds."""
    return write_config(
        path,
        endpoints={"src": {"url": source.url}},
        tables={
            "retry": FAST_RETRY,
            "daemon": {"listen": f"127.0.0.1:{port}", "state_dir": str(path.parent / "state")},
            "snapshots": {
                "source": "src",
                "store": f"s3://{bucket}/snaps",
                "s3_endpoint_url": s3.url,
                "s3_region": "us-east-1",
                "interval": "2s",
                "repositories": [repo],
            },
        },
    )


def test_the_daemon_rides_out_an_s3_outage(
    tmp_path: Path, source_registry: LocalRegistry, s3_endpoint: str, bucket: str, repo: str
) -> None:
    """
    While S3 fails every request, the daemon records failed snapshot runs and keeps
    answering /healthz; once S3 is back the next scheduled snapshot commits, and
    every snapshot it lists verifies.
    """
    asyncio.run(push_image(source_registry, repo, make_image(repo), "v1"))
    port = free_port()
    with FaultProxy(s3_endpoint, s3=True, name="s3-outage") as s3:
        config = daemon_config(tmp_path / "drd.toml", source_registry, s3, bucket, repo, port)
        env = daemon_env(tmp_path / "home")
        with running_daemon(config, tmp_path, port, env, stop=signal.SIGTERM) as daemon:

            def runs(outcome: str) -> float:
                value = daemon.sample("drd_snapshot_runs_total", endpoint="src", outcome=outcome)
                return value or 0.0

            wait_for(lambda: runs("ok") >= 1, 60, "a first snapshot")
            outage = s3.add(Fault.reset())
            wait_for(lambda: runs("failed") >= 1, 60, "a failed snapshot")
            assert http_get(f"{daemon.url}/healthz")[0] == 200
            assert daemon.alive()
            s3.remove(outage)
            recovered = runs("ok")
            wait_for(lambda: runs("ok") > recovered, 60, "a snapshot after the outage")
            assert http_get(f"{daemon.url}/healthz")[0] == 200
            failures = daemon.events("snapshot.run_failed")
            assert failures
            assert all("S3" in e.get("error", "") for e in failures), failures

    assert asyncio.run(all_listed_verify(s3_endpoint, bucket)) >= 2


async def all_listed_verify(endpoint: str, bucket: str) -> int:
    """Read the store directly: every snapshot listed verifies; how many there are."""
    async with s3_store(endpoint, bucket, "snaps") as store:
        ids = [entry.id for entry in await list_snapshots(store, "src")]
        problems = [(i, p) for i in ids if (p := await read_back(store, i))]
    assert not problems, problems
    return len(ids)


def test_readyz_says_not_ready_while_s3_is_down(
    tmp_path: Path, source_registry: LocalRegistry, s3_endpoint: str, bucket: str, repo: str
) -> None:
    """While every S3 request fails, /readyz answers 503 and names the store."""
    asyncio.run(push_image(source_registry, repo, make_image(repo), "v1"))
    port = free_port()
    with FaultProxy(s3_endpoint, s3=True, name="s3-down") as s3:
        s3.add(Fault.reset())
        config = daemon_config(tmp_path / "drd.toml", source_registry, s3, bucket, repo, port)
        env = daemon_env(tmp_path / "home")
        with running_daemon(config, tmp_path, port, env, stop=signal.SIGTERM) as daemon:
            wait_for(
                lambda: daemon.sample("drd_snapshot_runs_total", endpoint="src", outcome="failed"),
                60,
                "a failed snapshot",
            )
            status, body = http_get(f"{daemon.url}/readyz")
    assert status == 503, body
    assert b"snapshot" in body or b"store" in body, body
