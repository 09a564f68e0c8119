"""
Every request has a deadline for the whole of it, not only for each read.

The fault proxy trickles a body a byte at a time, so no single read ever waits long:
only the request's deadline (the endpoint's ``deadline``, plus the size at its
``min_throughput``) ends it, as `RegistryUnavailable`, retried per policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drd.config import Endpoint
from drd.errors import RegistryUnavailable
from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.runner import run_policy
from drd.resources import limits_for
from drd.retry import RetryPolicy
from tests.clients import open_client, policy_for
from tests.faults import Fault, FaultProxy, fault_proxy
from tests.images import make_image, push_image
from tests.reliability.cli import FAST_RETRY, run_drd, write_config
from tests.reliability.consistency import check_target
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=2)
# Short enough for a fast test; the trickle below would need minutes for any blob.
TIGHT = Limits(deadline_s=0.5, min_throughput=1 << 30)
TRICKLE = Fault.trickle(seconds=0.1, step=1)


@pytest.fixture
def proxy(source_registry: LocalRegistry) -> Iterator[FaultProxy]:
    with fault_proxy(source_registry.url, name="trickling-source") as started:
        yield started


@contextlib.asynccontextmanager
async def tight_client(url: str, limits: Limits = TIGHT) -> AsyncIterator[RegistryClient]:
    async with build_http_client(TLSSettings()) as http:
        yield RegistryClient("src", url, http, RETRY, limits=limits)


async def test_a_trickled_blob_fails_at_its_deadline_and_is_retried(
    proxy: FaultProxy, source_registry: LocalRegistry, repo: str
) -> None:
    """A blob sent a byte at a time fails as RegistryUnavailable naming the deadline, twice."""
    image = make_image(repo, layer_size=4096)
    await push_image(source_registry, repo, image, "v1")
    proxy.add(TRICKLE, kinds="blob_get")
    layer = image.layers[0]

    async with tight_client(proxy.url) as client:
        with pytest.raises(RegistryUnavailable, match="took longer than its deadline") as caught:
            await client.get_blob_bytes(repo, layer.digest, layer.size)

    assert f"blob {layer.digest} on {proxy.host}" in str(caught.value)
    assert caught.value.registry == proxy.host
    assert proxy.calls("blob_get") == RETRY.attempts


async def test_a_trickled_manifest_fails_at_its_deadline(
    proxy: FaultProxy, source_registry: LocalRegistry, repo: str
) -> None:
    """A manifest GET trickled past the base deadline is RegistryUnavailable after the attempts."""
    await push_image(source_registry, repo, make_image(repo), "v1")
    proxy.add(TRICKLE, kinds="manifest_get")

    async with tight_client(proxy.url) as client:
        with pytest.raises(RegistryUnavailable, match=r"manifest v1 on .* took longer than"):
            await client.get_manifest(repo, "v1")
    assert proxy.calls("manifest_get") == RETRY.attempts


async def test_a_slow_body_within_its_deadline_arrives_whole(
    proxy: FaultProxy, source_registry: LocalRegistry, repo: str
) -> None:
    """A body trickled in a few steps well inside the deadline is read whole and checked."""
    image = make_image(repo, layer_size=4096)
    await push_image(source_registry, repo, image, "v1")
    proxy.add(Fault.trickle(seconds=0.01, step=2048), kinds="blob_get")
    layer = image.layers[0]

    async with tight_client(proxy.url, Limits()) as client:
        data = await client.get_blob_bytes(repo, layer.digest, layer.size)
    assert layer.digest.matches(data)
    assert [s.fault for s in proxy.requests("blob_get")] == ["trickle"]


async def test_a_pass_over_a_trickling_source_fails_the_image_and_writes_no_tag(
    proxy: FaultProxy, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """The copy of a trickled layer fails at its deadline; the tag never reaches the target."""
    image = make_image(repo, layer_size=4096)
    await push_image(source_registry, repo, image, "v1")
    proxy.add(TRICKLE, kinds="blob_get", path=str(image.layers[0].digest))

    async with tight_client(proxy.url) as src, open_client(target_registry) as dst:
        report = await run_policy(policy_for(repo), src, {"target": dst}, RETRY)

    [item] = report.items
    assert (item.tag, item.outcome, item.error) == ("v1", "failed", "RegistryUnavailable")
    assert "took longer than its deadline" in item.reason
    walked = await check_target(target_registry, repo)
    assert walked.tags == {}


def test_the_deadline_is_set_per_endpoint_and_fails_the_item_in_drd_replicate(
    tmp_path: Path,
    proxy: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    `deadline` and `min_throughput` in `[endpoints.NAME]` bound the whole request: a
    trickling layer fails its image in `drd replicate` (exit 1), the reason in the report.
    """
    image = make_image(repo, layer_size=4096)
    asyncio.run(push_image(source_registry, repo, image, "v1"))
    layer = str(image.layers[0].digest)
    proxy.add(TRICKLE, kinds="blob_get", path=layer)
    config = write_config(
        tmp_path / "drd.toml",
        endpoints={
            "src": {"url": proxy.url, "deadline": 0.5, "min_throughput": 1 << 30},
            "dst": {"url": target_registry.url},
        },
        tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
        replication=[{"name": "p", "source": "src", "targets": ["dst"], "repositories": [repo]}],
    )

    result = run_drd("replicate", "--config", config, "--json")

    assert result.returncode == 1, result.stderr.decode()[-2000:]
    [policy] = json.loads(result.stdout)["policies"]
    [item] = policy["items"]
    assert (item["outcome"], item["error"]) == ("failed", "RegistryUnavailable")
    assert "took longer than its deadline of 0.5 s" in item["reason"]
    assert proxy.calls("blob_get", path=layer) == FAST_RETRY["attempts"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        pytest.param(0, 300.0, id="no-body"),
        pytest.param(4 * 1024 * 1024, 316.0, id="manifest-limit"),
        pytest.param(1 << 30, 300.0 + 4096.0, id="1GiB"),
        pytest.param(-1, 300.0, id="negative"),
    ],
)
def test_the_default_deadline_grows_with_the_size(size: int, expected: float) -> None:
    """300 s plus the size at 256 KiB/s: a large blob gets hours, a manifest minutes."""
    assert Limits().deadline_for(size) == pytest.approx(expected)


def test_the_endpoint_config_reaches_the_limits() -> None:
    """Every limit in `[endpoints.NAME]` is the one the client enforces."""
    endpoint = Endpoint(
        name="src",
        url="https://r.example.com",
        deadline=30,
        min_throughput=1 << 20,
        max_tags=5,
        max_repositories=7,
        concurrency=3,
    )
    limits = limits_for(endpoint)
    assert (limits.deadline_s, limits.min_throughput) == (30.0, 1 << 20)
    assert (limits.max_tags, limits.max_repositories, limits.concurrency) == (5, 7, 3)
    assert limits.deadline_for(1 << 20) == pytest.approx(31.0)
