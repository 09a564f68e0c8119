"""
Listings through the CLI against real registries: a signed image's signature and
attestation tags are folded into its line in `drd replicate` (and its plan) and in the
restore plan, listed as their own lines with `--all-tags`, and every one in `--json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from drd.oci.digest import Digest
from drd.oci.referrers import attestation_tag, signature_tag
from tests.configs import write_toml
from tests.drill.helpers import push_signed
from tests.images import list_tags, make_image
from tests.replicate.test_attestations import SLSA, push_attestation
from tests.servers import LocalRegistry
from tests.skopeo import inspect_raw
from tests.skopeo import list_tags as skopeo_tags
from tests.snapshot.helpers import run_drd


def config(tmp_path: Path, source: str, target: str, restore_to: str, repo: str) -> Path:
    """Policy ``p`` copying *repo* from ``primary`` to ``dr``; snapshots of ``primary``."""
    return write_toml(
        tmp_path / "drd.toml",
        f"""
version = 1

[endpoints.primary]
url = "{source}"

[endpoints.dr]
url = "{target}"

[endpoints.scratch]
url = "{restore_to}"

[[replication]]
name = "p"
source = "primary"
targets = ["dr"]
repositories = ["{repo}"]

[snapshots]
source = "primary"
store = "{(tmp_path / "snapshots").as_uri()}"
repositories = ["{repo}"]

[daemon]
state_dir = "{tmp_path / "state"}"
""",
    )


async def push_signed_and_attested(registry: LocalRegistry, repo: str) -> tuple[Digest, Digest]:
    """``v1`` with a cosign signature and an SLSA attestation; (image, attestation) digests."""
    image = make_image(f"{repo}/listed")
    await push_signed(registry, repo, image, "v1")
    attestation = await push_attestation(registry, repo, image, SLSA)
    return image.digest, attestation


def item_lines(stdout: str) -> list[str]:
    """The lines after each block's summary: the items."""
    return [line for line in stdout.splitlines() if line.startswith("  ")]


async def test_replicate_folds_signatures_and_attestations_into_the_image_line(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    The plan and the pass show ``v1`` once, with ``(+ signature, attestation)``;
    `--all-tags` shows the ``.sig`` and ``.att`` tags as lines; --json lists all three,
    the attached ones with their subject; the target holds all three, byte for byte.
    """
    digest, _ = await push_signed_and_attested(source_registry, repo)
    path = config(tmp_path, source_registry.url, target_registry.url, third_registry.url, repo)
    short = str(digest)[:19]
    folded = f"dr {repo}:v1 {short} (+ signature, attestation)"

    plan = await run_drd("replicate", "--dry-run", "--config", str(path))
    assert plan.returncode == 0, plan.stderr
    assert item_lines(plan.stdout) == [f"  planned  {folded}"]
    every = await run_drd("replicate", "--dry-run", "--all-tags", "--config", str(path))
    assert sorted(line.split()[2] for line in item_lines(every.stdout)) == sorted(
        [f"{repo}:v1", f"{repo}:{signature_tag(digest)}", f"{repo}:{attestation_tag(digest)}"]
    )

    done = await run_drd("replicate", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert item_lines(done.stdout) == [f"  copied   {folded}"]

    tags = sorted(["v1", signature_tag(digest), attestation_tag(digest)])
    assert skopeo_tags(target_registry, repo) == tags
    for tag in tags:
        assert inspect_raw(target_registry, repo, tag) == inspect_raw(source_registry, repo, tag)

    doc = json.loads((await run_drd("replicate", "--json", "--config", str(path))).stdout)
    [policy] = doc["policies"]
    assert sorted((i["tag"], i.get("subject")) for i in policy["items"]) == sorted(
        [
            ("v1", None),
            (signature_tag(digest), str(digest)),
            (attestation_tag(digest), str(digest)),
        ]
    )


async def test_the_restore_plan_folds_them_too(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """`restore --dry-run` lists ``v1`` once with what it carries; `--all-tags` each tag."""
    digest, _ = await push_signed_and_attested(source_registry, repo)
    path = config(tmp_path, source_registry.url, target_registry.url, third_registry.url, repo)
    created = await run_drd("snapshot", "create", "--config", str(path))
    assert created.returncode == 0, created.stderr
    restore = (
        "restore",
        "--snapshot",
        "latest",
        "--to",
        "scratch",
        "--dry-run",
        "--allow-unsigned-snapshot",
    )

    plan = await run_drd(*restore, "--config", str(path))
    assert plan.returncode == 0, plan.stderr
    lines = item_lines(plan.stdout)
    assert len(lines) == 1, lines
    assert lines[0].split()[1:] == [
        f"{repo}:v1",
        str(digest)[:19],
        "(+",
        "signature,",
        "attestation)",
    ]

    every = await run_drd(*restore, "--all-tags", "--config", str(path))
    assert sorted(line.split()[1] for line in item_lines(every.stdout)) == sorted(
        [f"{repo}:v1", f"{repo}:{signature_tag(digest)}", f"{repo}:{attestation_tag(digest)}"]
    )
    doc = json.loads((await run_drd(*restore, "--json", "--config", str(path))).stdout)
    assert sorted((i["tag"], i.get("subject")) for i in doc["items"]) == sorted(
        [
            ("v1", None),
            (signature_tag(digest), str(digest)),
            (attestation_tag(digest), str(digest)),
        ]
    )
    assert await list_tags(third_registry, repo) == []  # a plan writes nothing
