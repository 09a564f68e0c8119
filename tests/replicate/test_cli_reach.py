"""
`drd replicate` checks every endpoint of a pass once, before any work: a target that
cannot be reached is one line and costs one request, the reachable target still gets
everything, and an unreachable source ends the pass with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.configs import write_toml
from tests.drill.helpers import push_signed
from tests.faults import Fault, fault_proxy
from tests.images import list_tags, make_image, signature_tag
from tests.servers import LocalRegistry, free_port
from tests.skopeo import inspect_raw
from tests.skopeo import list_tags as skopeo_tags
from tests.snapshot.helpers import run_drd

# Generous retries, and no waits: a pass that still asked a dead endpoint item by item
# would show it in the proxy's request count and in the retry log lines.
ATTEMPTS = 4

# What a proxy that resets every connection sees of the check: drd sends one GET, and
# aiohttp sends an idempotent request once more on a connection reset (RFC 9112 9.3.1).
CHECK_ON_A_RESET = [("GET", "/v2/")] * 2


def two_targets(tmp_path: Path, source: str, dead: str, live: str, repo: str) -> Path:
    """Policy ``prod``: *repo* from ``primary`` to ``dr`` (*dead*) and ``live``."""
    return write_toml(
        tmp_path / "drd.toml",
        f"""
version = 1

[endpoints.primary]
url = "{source}"

[endpoints.dr]
url = "{dead}"

[endpoints.live]
url = "{live}"

[[replication]]
name = "prod"
source = "primary"
targets = ["dr", "live"]
repositories = ["{repo}"]

[daemon]
state_dir = "{tmp_path / "state"}"

[retry]
attempts = {ATTEMPTS}
wait_initial = 0.0
wait_max = 0.0
""",
    )


async def push_three(registry: LocalRegistry, repo: str) -> list[str]:
    """Three signed images in *repo*; every tag pushed, signature tags included."""
    tags = []
    for n in range(3):
        digest = await push_signed(registry, repo, make_image(f"reach-{repo}-{n}"), f"v{n}")
        tags += [f"v{n}", signature_tag(digest)]
    return sorted(tags)


def assert_fully_copied(live: LocalRegistry, source: LocalRegistry, repo: str) -> None:
    """*live* holds every tag of *source*'s *repo*, each with the same manifest bytes."""
    tags = skopeo_tags(source, repo)
    assert skopeo_tags(live, repo) == tags
    for tag in tags:
        assert inspect_raw(live, repo, tag) == inspect_raw(source, repo, tag), tag


async def test_a_target_on_a_closed_port_is_one_line_and_the_other_gets_everything(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Nobody listens on ``dr``: the output says so in one line naming why and that nothing
    was copied to it, no item line and no retry names it, exit 69; ``live`` holds every
    tag, byte for byte, and JSON lists no item for ``dr``.
    """
    pushed = await push_three(source_registry, repo)
    dead = f"127.0.0.1:{free_port()}"
    path = two_targets(tmp_path, source_registry.url, f"http://{dead}", target_registry.url, repo)

    result = await run_drd("replicate", "--config", str(path))

    assert result.returncode == 69, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines[1].startswith(f"  target dr unreachable: cannot talk to {dead}: ")
    assert lines[1].endswith("; nothing copied to it")
    assert [line for line in lines[2:] if " dr " in line] == []
    assert len([line for line in lines if line.startswith("  copied   live ")]) == 3
    assert result.stderr.count('"endpoint.unreachable"') == 1
    assert result.stderr.count("retry.scheduled") == 0
    assert result.stderr.count("replicate.target_failed") == 0
    assert skopeo_tags(target_registry, repo) == pushed
    assert_fully_copied(target_registry, source_registry, repo)

    again = json.loads((await run_drd("replicate", "--config", str(path), "--json")).stdout)
    [policy] = again["policies"]
    assert list(policy["unreachable"]) == ["dr"]
    assert {i["target"] for i in policy["items"]} == {"live"}
    assert {i["outcome"] for i in policy["items"]} == {"skipped"}


async def test_a_target_refusing_connections_costs_one_request(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    ``dr`` is a proxy that resets every connection: it sees the check and nothing
    else, however many items and retries the pass has; ``live`` gets every tag.
    """
    pushed = await push_three(source_registry, repo)
    with fault_proxy(third_registry.url) as proxy:
        proxy.add(Fault.reset())
        path = two_targets(tmp_path, source_registry.url, proxy.url, target_registry.url, repo)
        result = await run_drd("replicate", "--config", str(path))
        seen = proxy.requests()

    assert result.returncode == 69, (result.stdout, result.stderr)
    assert [(s.method, s.target) for s in seen] == CHECK_ON_A_RESET
    lines = result.stdout.splitlines()
    assert lines[1].startswith(f"  target dr unreachable: cannot talk to {proxy.host}: ")
    assert lines[1].endswith("; nothing copied to it")
    assert result.stderr.count("retry.scheduled") == 0
    assert skopeo_tags(target_registry, repo) == pushed
    assert_fully_copied(target_registry, source_registry, repo)


async def test_an_unreachable_source_ends_the_pass_with_one_line(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    The source resets every connection: one line says so, the targets are not asked
    for anything but the check, and the pass exits 69 with nothing copied.
    """
    await push_three(source_registry, repo)
    with (
        fault_proxy(source_registry.url) as source,
        fault_proxy(target_registry.url) as target,
    ):
        source.add(Fault.reset())
        path = two_targets(tmp_path, source.url, target.url, target_registry.url, repo)
        result = await run_drd("replicate", "--config", str(path))
        at_source, at_target = source.requests(), target.requests()

    assert result.returncode == 69, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[1].startswith("  error: source primary unreachable: cannot talk to")
    assert lines[1].endswith("; nothing copied")
    assert [(s.method, s.target) for s in at_source] == CHECK_ON_A_RESET
    assert [(s.method, s.target) for s in at_target] == [("GET", "/v2/")]
    assert result.stderr.count("retry.scheduled") == 0
    assert await list_tags(target_registry, repo) == []
