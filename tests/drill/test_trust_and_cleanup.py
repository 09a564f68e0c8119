"""
Restore drills verify signatures with the trust policy of the replication policy that
feeds each repository (no ``[drills] trust`` needed), report a repository no policy
covers as ``unsigned`` in every report format, and delete the blobs they restored
(or count what the registry would not let them delete). Real registries, the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

from drd.drill.judge import Targets
from drd.drill.runner import run_drill
from drd.selection.filters import RepoFilter
from drd.snapshot.collect import take_snapshot
from tests.clients import RETRY, open_client
from tests.configs import write_toml
from tests.drill.helpers import KEY, TRUST, push_signed
from tests.faults import Fault, fault_proxy
from tests.images import RegistryWriter, make_cosign_signature, make_image, push_image
from tests.images import signature_tag as sig_tag
from tests.servers import LocalRegistry
from tests.snapshot.helpers import json_out, opened, run_drd, store_config
from tests.trust.signing import cached_key


def text_of(path: str) -> str:
    """A report file's text."""
    return Path(path).read_text()


def config(tmp_path: Path, primary: LocalRegistry, drill: LocalRegistry, repos: list[str]) -> Path:
    """primary -> dr for repos[0] only (signatures required); no [drills] trust."""
    (tmp_path / "release.pub").write_bytes(KEY.public_pem())
    return write_toml(
        tmp_path / "drd.toml",
        f"""
version = 1

[endpoints.primary]
url = "{primary.url}"

[endpoints.drill]
url = "{drill.url}"

[endpoints.dr]
url = "http://127.0.0.1:9"

[trust.release]
keys = ["{tmp_path / "release.pub"}"]

[[replication]]
name = "prod"
source = "primary"
targets = ["dr"]
repositories = ["{repos[0]}"]
require_signature = "release"

[snapshots]
source = "primary"
store = "file://{tmp_path / "snapshots"}"
repositories = {json.dumps(repos)}
blobs = true

[drills]
target = "drill"
rto = "1h"
rpo = "1h"
report_dir = "{tmp_path / "reports"}"

[daemon]
state_dir = "{tmp_path / "state"}"

[retry]
attempts = 2
wait_initial = 0.0
wait_max = 0.0
""",
    )


async def test_without_drills_trust_the_replication_policy_s_trust_checks_signatures(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A signature by a key the replication policy does not trust fails the drill."""
    forged = make_image(f"{repo}/forged")
    await push_image(source_registry, repo, forged, "v1")
    other = cached_key("ecdsa-p256", 1)
    signature = make_cosign_signature(forged, other.private, docker_reference="x/y")
    await push_image(source_registry, repo, signature, sig_tag(forged.digest))
    path = config(tmp_path, source_registry, third_registry, [repo])
    assert (await run_drd("snapshot", "create", config=path)).returncode == 0

    done = await run_drd("drill", "--json", config=path)

    assert done.returncode == 1, done.stderr
    report = json_out(done)
    assert report["trust"] == "release"
    [failure] = report["failures"]
    assert (failure["phase"], failure["tag"]) == ("verify signatures", "v1")
    assert failure["reason"].split(":")[0] in ("bad-signature", "unknown-key")


async def test_an_uncovered_repository_is_unsigned_and_the_drill_deletes_its_blobs(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    repo is fed by a policy requiring signatures: verified, "ok". repo-plain has no
    policy and no [drills] trust: "unsigned" in JSON, Markdown and HTML, not "ok".
    After the drill no blob is left in the drill repositories.
    """
    plain = f"{repo}-plain"
    signed = make_image(f"{repo}/signed", layers=2)
    await push_signed(source_registry, repo, signed, "v1")
    await push_image(source_registry, plain, make_image(f"{plain}/x"), "v1")
    path = config(tmp_path, source_registry, third_registry, [repo, plain])
    assert (await run_drd("snapshot", "create", config=path)).returncode == 0

    done = await run_drd("drill", "--json", config=path)

    assert done.returncode == 0, done.stdout + done.stderr
    report = json_out(done)
    by_repo = {r["repository"]: r for r in report["repositories"]}
    assert (by_repo[repo]["status"], by_repo[repo]["signed_ok"]) == ("ok", 1)
    assert (by_repo[plain]["status"], by_repo[plain]["unchecked"]) == ("unsigned", 1)
    markdown = text_of(report["reports"]["md"])
    assert f"| {plain} | drill-{report['id']}/{plain} |" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {plain} |"))
    assert row.endswith("| unsigned |")
    html = text_of(report["reports"]["html"])
    assert '<span class="warncell">unsigned</span>' in html
    assert html.count('<span class="okcell">ok</span>') == 1

    cleanup = report["cleanup"]
    assert cleanup["blobs_left"] == 0
    assert cleanup["blobs_deleted"] == report["scope"]["blobs"]
    async with RegistryWriter(third_registry) as w:
        for result in report["repositories"]:
            assert await w.list_tags(result["target"]) == []
        for blob in signed.blobs:
            assert not await w.blob_exists(f"drill-{report['id']}/{repo}", blob.digest)


async def test_blobs_the_registry_will_not_delete_are_counted_for_its_garbage_collector(
    source_registry: LocalRegistry, third_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A registry answering 405 to blob deletes: the report says how many bytes are left."""
    image = make_image(f"{repo}/a", layers=2)
    await push_signed(source_registry, repo, image, "v1")
    cfg = store_config("dir", tmp_path)
    async with opened(cfg) as store, open_client(source_registry, "primary") as client:
        snap = await take_snapshot(
            client, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=True
        )
    with fault_proxy(third_registry.url) as proxy:
        proxy.add(Fault.http(405), kinds="blob_delete")
        async with opened(cfg) as store, open_client(proxy.url, "drill") as target:
            report = await run_drill(
                store,
                target,
                source="primary",
                targets=Targets(rto_s=3600.0, rpo_s=3600.0),
                trust=TRUST,
                retry=RETRY,
            )
    assert report.ok, report.to_json()
    assert report.cleanup["blobs_deleted"] == 0
    assert report.cleanup["blobs_left"] == len(snap.blobs)
    assert report.cleanup["blob_bytes_left"] == sum(snap.blobs.values())
    assert report.cleanup["repositories_with_tags"] == []
