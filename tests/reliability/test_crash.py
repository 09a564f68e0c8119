"""
Crash consistency: ``kill -9`` drd at a random moment, again and again.

`drd replicate` runs as a subprocess over three images with 20-40 MiB layers and
is SIGKILLed at a random moment; after every kill no target tag may point at
missing or corrupt content, and the next run carries on from whatever was left.
Every other run uploads in PATCH chunks, so kills land mid-chunk as well as
mid-PUT. `drd snapshot create` (blobs included, 8-16 MiB layers) gets the same
treatment: after every kill, every snapshot listed must verify. After each loop one
clean run must converge: an exact copy, a snapshot that verifies.

Kill moments are spread over the duration of one uninterrupted run, timed first.
The loops run ``DRD_CRASH_LOOPS`` times (default 5 for replicate, 3 for snapshots);
``DRD_CRASH_LOOPS=50`` is the full run. ``DRD_CRASH_SEED`` replays the kill moments.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drd.oci import mediatype
from drd.snapshot.catalog import list_snapshots, load_snapshot, verify_snapshot
from drd.store.dir import DirStore
from tests.images import Blob, MiB, RegistryWriter
from tests.reliability.cli import FAST_RETRY, ROOT, command, environment, run_drd, write_config
from tests.reliability.conftest import REPORTS
from tests.reliability.consistency import assert_target_consistent, check_target
from tests.reliability.helpers import compact_json, push_large_corpus
from tests.servers import LocalRegistry

LOOPS = int(os.environ.get("DRD_CRASH_LOOPS", "5"))
# Snapshots carry their blobs, so each loop costs more: fewer by default.
SNAPSHOT_LOOPS = int(os.environ.get("DRD_CRASH_LOOPS", "3"))
SNAPSHOT_LAYERS = (8 * MiB, 12 * MiB, 16 * MiB)
SEED = int(os.environ.get("DRD_CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))
# Kill moments are drawn from this many seconds after the start (imports included) up
# to a little past the duration of one uninterrupted run, measured first.
EARLIEST_KILL = 0.3
CHUNK_SIZE = MiB // 2  # every other run uploads layers in PATCHes of this size

# Each loop is a few seconds; the suite's per-test timeout would cut the full run short.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + 20 * LOOPS)]


@dataclass
class Tally:
    """What the kill loop did."""

    full_run_s: float = 0.0  # one uninterrupted run, the measure of the kill window
    kills: int = 0  # killed while running
    finished: int = 0  # the run was over before the kill came
    moments: list[float] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)  # what was complete after each kill

    def line(self, what: str, unit: str) -> str:
        return (
            f"{what}: seed {SEED}, full run {self.full_run_s:.1f}s, "
            f"{self.kills + self.finished} runs, {self.kills} killed "
            f"mid-run and checked consistent, {self.finished} finished first; {unit} complete "
            f"after each kill: {self.progress}"
        )


def kill_loop(
    argv_for: Callable[[int], list[str]],
    check: Callable[[], int],
    reset: Callable[[], None],
    rng: random.Random,
    loops: int,
) -> Tally:
    """
    Time one uninterrupted run; then, *loops* times: start, SIGKILL at a random moment
    within that time, *check* (it returns how much is complete). *reset* starts over
    whenever a run is over before its kill, so that kills keep landing mid-run.
    """
    tally = Tally()
    started = time.monotonic()
    subprocess.run(argv_for(0), cwd=ROOT, env=environment(), capture_output=True, check=True)
    tally.full_run_s = time.monotonic() - started
    check()
    reset()
    for loop in range(loops):
        moment = rng.uniform(EARLIEST_KILL, max(1.0, tally.full_run_s * 1.2))
        proc = subprocess.Popen(
            argv_for(loop),
            cwd=ROOT,
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + moment
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
            tally.kills += 1
            tally.moments.append(round(moment, 2))
            tally.progress.append(check())
        else:
            tally.finished += 1
            check()
            reset()
    return tally


def test_replicate_survives_kill_9(
    tmp_path: Path,
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
) -> None:
    """
    After every SIGKILL the target holds only complete, digest-true tags; after the
    loop one clean run copies every tag exactly.
    """
    rng = random.Random(SEED)  # noqa: S311 - kill moments, replayable from the seed
    target = registry_factory()
    source = asyncio.run(push_large_corpus(source_registry, repo))
    configs = [
        write_config(
            tmp_path / f"drd-{i}.toml",
            endpoints={"src": {"url": source_registry.url}, "dst": {"url": target.url, **dst}},
            tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
            replication=[
                {"name": "p", "source": "src", "targets": ["dst"], "repositories": [repo]}
            ],
        )
        for i, dst in enumerate(({}, {"chunk_size": CHUNK_SIZE}))
    ]

    def argv(loop: int) -> list[str]:
        return command("replicate", "--config", configs[loop % 2])

    def check() -> int:
        return len(asyncio.run(assert_target_consistent(target, repo)).tags)

    def wipe() -> None:
        # The run beat the kill: start over from an empty target, so kills keep landing.
        target.stop()
        shutil.rmtree(target.root, ignore_errors=True)
        target.resume()

    tally = kill_loop(argv, check, wipe, rng, LOOPS)

    final = run_drd("replicate", "--config", configs[0], "--json", timeout=600)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    copied = asyncio.run(assert_target_consistent(target, repo))
    assert copied.tags == {tag: str(digest) for tag, digest in source.items()}
    REPORTS.append(tally.line("replicate kill -9 loop", "tags") + "; final run exact")


def test_snapshot_create_survives_kill_9(
    tmp_path: Path, source_registry: LocalRegistry, repo: str
) -> None:
    """
    After every SIGKILL of `drd snapshot create` (blobs included), every snapshot the
    store lists verifies completely; a partial snapshot is never listed. After the
    loop one clean run commits a snapshot that verifies.
    """
    rng = random.Random(SEED + 1)  # noqa: S311 - as above
    asyncio.run(push_large_corpus(source_registry, repo, SNAPSHOT_LAYERS))
    store = tmp_path / "snapshots"
    config = write_config(
        tmp_path / "drd.toml",
        endpoints={"src": {"url": source_registry.url}},
        tables={
            "retry": FAST_RETRY,
            "daemon": {"state_dir": str(tmp_path / "state")},
            "snapshots": {
                "source": "src",
                "store": f"file://{store}",
                "blobs": True,
                "repositories": [repo],
            },
        },
    )

    def check() -> int:
        return asyncio.run(every_listed_snapshot_verifies(store))

    def forget() -> None:
        shutil.rmtree(store, ignore_errors=True)

    def argv(_: int) -> list[str]:
        return command("snapshot", "create", "--config", config)

    tally = kill_loop(argv, check, forget, rng, SNAPSHOT_LOOPS)

    final = run_drd("snapshot", "create", "--config", config, "--json", timeout=600)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    committed = check()
    assert committed >= 1
    listed = run_drd("snapshot", "list", "--config", config, "--json")
    assert len(json.loads(listed.stdout)["snapshots"]) == committed
    REPORTS.append(
        tally.line("snapshot create kill -9 loop", "snapshots") + "; final snapshot verifies"
    )


async def every_listed_snapshot_verifies(root: Path) -> int:
    """Read the directory store as drd would: each listed snapshot loads and re-hashes."""
    if not await asyncio.to_thread(root.exists):
        return 0
    store = DirStore(root)
    entries = await list_snapshots(store, "src")
    for entry in entries:
        snapshot = await load_snapshot(store, "src", entry.id)
        verified = await verify_snapshot(store, snapshot)
        assert verified.ok, (entry.id, verified.to_json())
    return len(entries)


async def test_consistency_checker_sees_damage(
    source_registry: LocalRegistry, registry_factory: Callable[..., LocalRegistry], repo: str
) -> None:
    """The checker itself fails a tag whose blob is gone from storage: it is not vacuous."""
    target = registry_factory()
    async with RegistryWriter(target) as writer:
        layer = Blob(b"layer bytes for the checker")
        config = Blob(b"{}", mediatype.OCI_CONFIG)
        await writer.push_blob(repo, layer)
        await writer.push_blob(repo, config)
        raw = compact_json(
            {
                "schemaVersion": 2,
                "mediaType": mediatype.OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        )
        await writer.push_manifest(repo, "v1", raw, mediatype.OCI_MANIFEST)
    await assert_target_consistent(target, repo)
    hexpart = layer.digest.hex
    data = target.root / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"
    data.write_bytes(b"not the layer")

    result = await check_target(target, repo)
    assert any("fails its digest" in problem for problem in result.problems), result.problems
