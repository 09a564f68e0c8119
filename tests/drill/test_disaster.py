"""
Disaster simulation: the primary is destroyed at a random moment while drd protects it.

A primary, a DR replica and an S3 snapshot store run. Signed tags are pushed over
time while drd replicates after every push and snapshots every few pushes (the
engines called directly, on short intervals); a restore drill runs on the way.
At a random moment the primary is killed and its storage deleted. The runbook's
restore path (`drd restore --snapshot latest --to <fresh registry>`) then rebuilds
a fresh registry from the store alone.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drd.drill.estimate import DrillTimes
from drd.drill.judge import estimate_rto, snapshot_rpo
from drd.drill.plan import Volume, volume
from drd.drill.runner import READBACK_PHASES
from drd.oci.digest import Digest
from drd.oci.referrers import subject_of_tag
from drd.replicate.runner import run_policy
from drd.restore.plan import Selection, plan_restore
from drd.snapshot.collect import run_snapshot
from drd.snapshot.model import Snapshot
from drd.store.open import open_store
from drd.timeline import duration
from drd.trust.verify import verify_artifact
from tests.clients import RETRY, open_client, policy_for
from tests.configs import local_daemon, write_toml
from tests.drill.helpers import KEY, TRUST, push_signed
from tests.images import RegistryWriter, make_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import StoreConfig, json_out, run_drd

PUSHES = 14
SNAPSHOT_EVERY = 3


def _config(
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    endpoints: dict[str, LocalRegistry],
    *,
    name: str = "drd.toml",
) -> Path:
    key = tmp_path / "release.pub"
    key.write_bytes(KEY.public_pem())
    lines = ["version = 1", ""]
    for name, registry in endpoints.items():
        lines += [f"[endpoints.{name}]", f'url = "{registry.url}"', ""]
    lines += [
        "[trust.release]",
        f'keys = ["{key}"]',
        "",
        "[snapshots]",
        'source = "primary"',
        f'store = "s3://{bucket}/snaps"',
        f's3_endpoint_url = "{s3_endpoint}"',
        's3_region = "us-east-1"',
        "blobs = true",
    ]
    if "drill" in endpoints:
        lines += [
            "",
            "[drills]",
            'target = "drill"',
            'trust = "release"',
            "sample = 2",
            'rto = "10m"',
            'rpo = "30s"',
            f'report_dir = "{tmp_path / "reports"}"',
        ]
    text = "\n".join(lines) + "\n" + local_daemon(tmp_path / "state")
    return write_toml(tmp_path / name, text)


async def test_primary_destroyed_at_a_random_moment_is_rebuilt_from_the_store(
    registry_factory: Callable[..., LocalRegistry],
    third_registry: LocalRegistry,
    s3_endpoint: str,
    bucket: str,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    Every artifact drd reported protected comes back (snapshot) or is at the replica
    (replication) with its digest and a verifying signature; what was lost was pushed
    within the RPO drd reported at the moment of the disaster.
    """
    seed = random.randrange(2**32)  # noqa: S311 - a simulation's dice, printed to replay it
    rng = random.Random(seed)  # noqa: S311
    doom = rng.randrange(SNAPSHOT_EVERY * 2, PUSHES)  # at least two snapshots before it
    doom_before_replication = rng.random() < 0.5
    print(f"\ndisaster simulation seed {seed}: primary destroyed after push {doom}")

    primary = registry_factory()
    replica = registry_factory()
    store_cfg = StoreConfig(
        store=f"s3://{bucket}/snaps", s3_endpoint_url=s3_endpoint, s3_region="us-east-1"
    )
    policy = policy_for(repo, name="prod")

    async def verifier(client: object, repository: str, digest: Digest) -> str:
        verified = await verify_artifact(client, repository, digest, TRUST)  # type: ignore[arg-type]
        return verified.key_fingerprint

    pushed: dict[str, tuple[Digest, float]] = {}  # tag -> (digest, when pushed)
    replicated: dict[str, Digest] = {}  # what drd reported copied or in place at the replica
    snapshots: list[tuple[str, dt.datetime, dict[str, Digest]]] = []
    drill_report: dict[str, Any] | None = None
    disaster_at = None
    newest: Snapshot | None = None

    async with (
        open_client(primary, "primary") as src,
        open_client(replica, "dr") as dst,
        open_store(store_cfg, RETRY) as store,
    ):
        for i in range(PUSHES):
            tag = f"v1.{i}"
            image = make_image(f"{repo}/{seed}/{i}", layers=2, layer_size=rng.randrange(512, 8192))
            await push_signed(primary, repo, image, tag)
            pushed[tag] = (image.digest, time.time())
            if i == doom and doom_before_replication:
                break
            result = await run_policy(policy, src, {"dr": dst}, RETRY, verifier=verifier)
            assert result.ok, result.to_json()
            for item in result.items:
                if item.outcome in ("copied", "skipped"):
                    replicated[item.tag] = Digest.parse(item.digest)
            if i % SNAPSHOT_EVERY == SNAPSHOT_EVERY - 1:
                snap = await run_snapshot(
                    src, store, source_name="primary", repositories=None, blobs=True, retry=RETRY
                )
                assert snap.ok, snap.to_json()
                assert snap.snapshot is not None
                newest = snap.snapshot
                tags = dict(newest.repositories[repo].tags)
                snapshots.append((snap.snapshot.id, snap.snapshot.taken_at, tags))
                if drill_report is None and len(snapshots) == 2:
                    # The operator's drill: `drd drill`, a process of its own, as `drd restore`.
                    drill_config = _config(
                        tmp_path,
                        s3_endpoint,
                        bucket,
                        {"primary": primary, "drill": third_registry},
                        name="drill.toml",
                    )
                    drilled = await run_drd("drill", "--json", config=drill_config)
                    drill_report = json_out(drilled)
                    assert drilled.returncode == 0, drill_report
            if i == doom:
                break
            time.sleep(rng.uniform(0.02, 0.25))  # noqa: ASYNC251 - pushes spread over time; nothing else runs

        # The disaster: the process dies and its storage is gone.
        primary.kill()
        shutil.rmtree(primary.root)
        disaster_at = dt.datetime.now(dt.UTC)

    assert drill_report is not None
    assert disaster_at is not None
    assert newest is not None
    newest_id, newest_taken, protected = snapshots[-1]
    rpo_s, _ = snapshot_rpo(newest_taken, disaster_at)
    assert rpo_s is not None

    # The runbook: bring up a fresh registry and restore the latest snapshot into it.
    fresh = registry_factory()
    config = _config(
        tmp_path, s3_endpoint, bucket, {"primary": primary, "dr": replica, "fresh": fresh}
    )
    started = time.monotonic()
    restore = await run_drd(
        "restore",
        "--snapshot",
        "latest",
        "--to",
        "fresh",
        "--yes",
        "--allow-unsigned-snapshot",
        "--json",
        config=config,
    )
    restore_wall_s = time.monotonic() - started
    assert restore.returncode == 0, restore.stderr
    restored = json_out(restore)
    assert restored["snapshot"] == newest_id

    # Every artifact in the newest snapshot is back, same digest, signature verifying.
    verify_started = time.monotonic()
    async with open_client(fresh, "fresh") as client, RegistryWriter(fresh) as w:
        assert set(await w.list_tags(repo)) == set(protected)
        for tag, digest in protected.items():
            raw, _ = await w.get_manifest(repo, tag)
            assert Digest.of(raw) == digest, tag
            if subject_of_tag(tag) is None:
                verified = await verify_artifact(client, repo, digest, TRUST)
                assert verified.digest == digest
    verify_s = time.monotonic() - verify_started

    # Every artifact drd reported replicated is at the replica, verifying there.
    async with open_client(replica, "dr") as client, RegistryWriter(replica) as w:
        for tag, digest in replicated.items():
            raw, _ = await w.get_manifest(repo, tag)
            assert Digest.of(raw) == digest, tag
            if subject_of_tag(tag) is None:
                await verify_artifact(client, repo, digest, TRUST)

    # What was lost from the snapshots was pushed within the RPO reported at the disaster.
    release = dict(pushed)
    lost = {t: v for t, v in release.items() if t not in protected}
    worst = max((disaster_at.timestamp() - when for _, when in lost.values()), default=0.0)
    assert worst <= rpo_s, (lost, rpo_s)
    lost_everywhere = sorted(t for t in lost if t not in replicated)

    # The drill's report carries the parts of its RTO estimate and the worst-case RPO.
    judgement = drill_report["judgement"]
    rto, rpo = judgement["rto"], judgement["rpo"]
    assert drill_report["ok"], judgement["reasons"]
    assert rto["startup_s"] is not None
    assert rto["startup_s"] > 0
    assert rto["fixed_s"] >= rto["startup_s"]
    assert rto["estimate_s"] == pytest.approx(
        rto["fixed_s"] + rto["measured_s"] * rto["scale"], abs=0.01
    )
    (first_id, first_taken, _), (second_id, second_taken, _) = snapshots[:2]
    between = (second_taken - first_taken).total_seconds()
    assert rpo["worst_s"] >= round(between, 3) - 0.001
    assert rpo["worst_s"] >= rpo["measured_s"] - 0.001
    assert rpo["worst_from"] in {_iso(first_taken), _iso(second_taken)}
    assert "longest gap between successful snapshots of primary" in rpo["worst_method"]

    # The drill's model, applied to what was actually restored (the newest snapshot).
    phases = {p["name"]: p["duration_s"] for p in drill_report["phases"]}
    times = DrillTimes(
        startup_s=rto["startup_s"],
        load_s=phases["load snapshot"],
        restore_s=phases["restore"],
        readback_s=sum(phases.get(n, 0.0) for n in READBACK_PHASES),
    )
    scope = Volume(**{k: v for k, v in drill_report["scope"].items() if k != "objects"})
    restored_volume = volume(newest, plan_restore(newest, Selection(), {}))
    for_restored = estimate_rto(times, scope, restored_volume)
    measured = restore_wall_s + verify_s
    print(
        f"pushed {len(release)} signed tags; newest snapshot {newest_id} held "
        f"{sum(subject_of_tag(t) is None for t in protected)} of them, the replica "
        f"{sum(subject_of_tag(t) is None for t in replicated)}\n"
        f"RPO reported at the disaster: {duration(rpo_s)}; lost from the snapshots: "
        f"{len(lost)} tag(s) ({', '.join(sorted(lost)) or 'none'}), pushed at most "
        f"{duration(worst)} before the disaster; lost everywhere (not replicated either): "
        f"{', '.join(lost_everywhere) or 'none'}\n"
        f"drill: RPO {duration(rpo['measured_s'])}, worst-case RPO {duration(rpo['worst_s'])} "
        f"(snapshots {first_id} and {second_id} {duration(between)} apart)\n"
        f"restore: {duration(restored['summary']['duration_s'])} in the engine, "
        f"{duration(restore_wall_s)} for the whole `drd restore` command, "
        f"+ {duration(verify_s)} to verify = {duration(measured)}\n"
        f"drill RTO estimate {duration(rto['estimate_s'])} for the "
        f"{drill_report['whole']['objects']} objects of its snapshot ({rto['method']})\n"
        f"RTO estimate vs measured: {duration(for_restored.value_s)} estimated for the "
        f"{restored_volume.objects} objects restored vs {duration(measured)} measured "
        f"(estimate/measured {for_restored.value_s / measured:.2f})"
    )


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
