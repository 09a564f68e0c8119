"""
`drd replicate` through the CLI against real registries: a rejection is an outcome of
its own (exit 3, the pass a success), a dry run checks signatures, and an unreachable
target is one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.configs import local_daemon, signed_replication, write_toml
from tests.drill.helpers import KEY, push_signed
from tests.images import list_tags, make_image, push_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import run_drd


def config(tmp_path: Path, primary: str, dr: str, repo: str) -> Path:
    """The signed ``prod`` policy from *primary* to *dr*, with a state directory."""
    key = tmp_path / "release.pub"
    key.write_bytes(KEY.public_pem())
    return write_toml(
        tmp_path / "drd.toml",
        signed_replication({"primary": primary, "dr": dr}, repo, key)
        + local_daemon(tmp_path / "state"),
    )


async def test_an_unsigned_tag_is_rejected_the_pass_succeeds_and_exits_3(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    One unsigned tag beside a signed one: the signed one lands, the unsigned one is
    listed as rejected, the pass exits 3, and `drd status` shows a last success.
    """
    signed = await push_signed(source_registry, repo, make_image("cli-signed"), "v1")
    unsigned = make_image("cli-unsigned")
    await push_image(source_registry, repo, unsigned, "v2")
    path = config(tmp_path, source_registry.url, target_registry.url, repo)

    result = await run_drd("replicate", "--config", str(path))

    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"  rejected dr {repo}:v2 {str(unsigned.digest)[:19]}: no-signature" in result.stdout
    assert "1 rejected" in result.stdout.splitlines()[0]
    tags = await list_tags(target_registry, repo)
    assert tags == sorted(["v1", signed.tag_form + ".sig"])

    status = await run_drd("status", "--config", str(path))
    assert status.returncode == 0, status.stderr
    assert "last success never" not in status.stdout
    [sync] = json.loads((await run_drd("status", "--config", str(path), "--json")).stdout)[
        "replication"
    ]
    assert sync["last_success"] is not None


async def test_a_dry_run_lists_what_would_be_rejected_and_why(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """The plan checks signatures at the source: the unsigned tag is rejected, not planned."""
    await push_signed(source_registry, repo, make_image("dry-signed"), "v1")
    unsigned = make_image("dry-unsigned")
    await push_image(source_registry, repo, unsigned, "v2")
    path = config(tmp_path, source_registry.url, target_registry.url, repo)

    result = await run_drd("replicate", "--dry-run", "--config", str(path), "--json")

    assert result.returncode == 3, (result.stdout, result.stderr)
    [policy] = json.loads(result.stdout)["policies"]
    outcomes = {i["tag"]: (i["outcome"], i["reason"]) for i in policy["items"]}
    assert outcomes["v1"] == ("planned", "")
    assert outcomes["v2"] == ("rejected", "no-signature")
    assert [i["key"] != "" for i in policy["items"] if i["tag"] == "v1"] == [True]
    assert await list_tags(target_registry, repo) == []
    text = await run_drd("replicate", "--dry-run", "--config", str(path))
    assert f"rejected dr {repo}:v2 {str(unsigned.digest)[:19]}: no-signature" in text.stdout


async def test_an_unreachable_target_is_one_line_first(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A target nobody listens on: the output's second line says so, once, and no line
    per item follows; found before any work, it has no item and no per-repository line.
    """
    for n in range(6):
        await push_signed(source_registry, repo, make_image(f"down-{n}"), f"v{n}")
    path = config(tmp_path, source_registry.url, "http://127.0.0.1:9", repo)

    result = await run_drd("replicate", "--config", str(path))

    assert result.returncode == 69, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines[1].startswith("  target dr unreachable: cannot talk to 127.0.0.1:9")
    assert lines[1].endswith("; nothing copied to it")
    assert len(lines) == 2, lines
    assert result.stderr.count("replicate.item_failed") == 0
    assert result.stderr.count("replicate.target_failed") == 0
    assert result.stderr.count('"endpoint.unreachable"') == 1
