"""
Rate limits, measured at the proxy: drd waits as long as ``Retry-After`` says, keeps
to an endpoint's ``requests_per_second``, and slows down as ``RateLimit-Remaining``
runs low, before it reaches zero.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from drd.config import Endpoint
from drd.errors import RateLimited
from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.runner import run_policy
from drd.resources import open_registry
from drd.retry import RetryPolicy
from tests.clients import open_client, policy_for
from tests.faults import Fault, Reply, fault_proxy, intervals, with_headers
from tests.images import make_image, make_multiarch, push_image, push_index
from tests.reliability.consistency import assert_target_consistent
from tests.servers import LocalRegistry

# Waits honoured up to 5 s; everything else retried at once.
RATE_LIMITED = RetryPolicy(
    attempts=4, budget_s=30, wait_initial=0.0, wait_max=0.0, wait_max_rate_limit=5.0
)
# Tolerance for clock reads on both sides of a wait, not for the wait itself.
EPSILON = 0.02
# How much later one request may reach the proxy than another sent as promptly.
TRANSIT = 0.1
# Time for a response to reach drd: requests sent meanwhile are already on their way.
MARGIN = 0.2


async def test_retry_after_is_waited_out(source_registry: LocalRegistry, repo: str) -> None:
    """After a 429 with ``Retry-After: 1`` the same request comes back no sooner than 1 s."""
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.http(429, retry_after=1), kinds="manifest_get", times=2)
        async with open_client(proxy.url, retry=RATE_LIMITED) as client:
            manifest = await client.get_manifest(repo, "v1")

    assert manifest.raw == image.raw
    gets = proxy.requests("manifest_get")
    assert [s.status for s in gets] == [429, 429, 200]
    assert all(gap >= 1.0 for gap in intervals(gets)), intervals(gets)


async def test_retry_after_as_a_date_is_waited_out(
    source_registry: LocalRegistry, repo: str
) -> None:
    """``Retry-After`` given as an HTTP date is honoured as the time left until it."""
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    with fault_proxy(source_registry.url) as proxy:
        # Whole seconds only in an HTTP date: two seconds ahead waits more than one.
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        proxy.add(Fault.http(429, headers={"Retry-After": when}), kinds="blob_get", times=1)
        async with open_client(proxy.url, retry=RATE_LIMITED) as client:
            data = await client.get_blob_bytes(repo, image.config.digest, 1 << 20)

    assert data == image.config.data
    gets = proxy.requests("blob_get")
    assert [s.status for s in gets] == [429, 200]
    assert gets[1].at - gets[0].at >= 1.0


async def test_retry_after_is_capped_and_the_budget_ends_it(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    A registry asking for an hour gets the policy's cap instead, and one that never
    stops answering 429 ends in `RateLimited` after the attempts, not in a hang.
    """
    await push_image(source_registry, repo, make_image(repo), "v1")
    capped = RetryPolicy(
        attempts=3, budget_s=30, wait_initial=0.0, wait_max=0.0, wait_max_rate_limit=0.3
    )
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.http(429, retry_after=3600), kinds="manifest_head")
        async with open_client(proxy.url, retry=capped) as client:
            started = time.monotonic()
            with pytest.raises(RateLimited, match="rate limiting"):
                await client.head_manifest(repo, "v1")
            elapsed = time.monotonic() - started

    heads = proxy.requests("manifest_head")
    assert len(heads) == 3
    assert all(gap >= 0.3 - EPSILON for gap in intervals(heads))
    assert elapsed < 10


async def test_retry_after_is_honoured_during_a_replication(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    A 429 on one blob claim (the POST that opens an upload) mid-pass holds every request
    to that registry for the Retry-After seconds, not only the refused one; then the copy
    completes.
    """
    index = make_multiarch(repo)
    await push_index(source_registry, repo, index, "v1")
    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.http(429, retry_after=1), kinds="blob_mount", times=1)
        async with (
            open_client(source_registry, "source") as src,
            open_client(proxy.url, "target", retry=RATE_LIMITED) as dst,
        ):
            report = await run_policy(policy_for(repo), src, {"target": dst}, RATE_LIMITED)

    assert report.ok, report.to_json()
    [refused] = [s for s in proxy.requests() if s.status == 429]
    # The refusal holds for the whole endpoint: nothing starts for a second, apart from
    # requests already on their way when it came back (a margin covers them).
    during = [s.kind for s in proxy.requests() if refused.at + MARGIN < s.at < refused.at + 1.0]
    assert not during, during
    retried = proxy.requests("blob_mount", path=refused.path)
    assert retried[-1].at - refused.at >= 1.0
    await assert_target_consistent(target_registry, repo)


@pytest.mark.parametrize("rps", [5.0, 20.0])
async def test_requests_per_second_is_kept(
    rps: float, source_registry: LocalRegistry, repo: str
) -> None:
    """
    With ``requests_per_second`` set on the endpoint, concurrent requests arrive at the
    proxy no faster than that rate once the first second's allowance is spent.
    """
    await push_image(source_registry, repo, make_image(repo), "v1")
    count = int(rps * 3)
    with fault_proxy(source_registry.url) as proxy:
        endpoint = Endpoint(name="src", url=proxy.url, requests_per_second=rps, concurrency=16)
        async with open_registry(endpoint, RetryPolicy.no_wait(2)) as client:
            started = time.monotonic()  # the proxy's clock too: same process
            await asyncio.gather(*(client.head_manifest(repo, "v1") for _ in range(count)))

    arrivals = [s.at for s in proxy.requests("manifest_head")]
    assert len(arrivals) == count
    burst = int(rps)
    # A leaky bucket: beyond the first second's allowance, request k cannot have left
    # drd before (k - burst) / rps seconds, so it cannot have arrived before either.
    early = [
        (k, round(at - started, 3))
        for k, at in enumerate(arrivals)
        if at - started < (k - burst) / rps
    ]
    assert not early, early
    assert arrivals[-1] - started >= (count - burst) / rps


def quota(start: int, limit: int = 100, *, drops: bool = True) -> Fault:
    """Answers carrying a Docker Hub style quota, dropping by one per request when *drops*."""
    left = [start]

    def edit(reply: Reply) -> Reply:
        if drops:
            left[0] = max(0, left[0] - 1)
        return with_headers(
            RateLimit_Limit=f"{limit};w=21600", RateLimit_Remaining=f"{left[0]};w=21600"
        )(reply)

    return Fault.rewrite(edit, "quota")


async def test_low_rate_limit_remaining_slows_drd_before_zero(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    While ``RateLimit-Remaining`` is above a fifth of ``RateLimit-Limit`` nothing is
    delayed; below it, each request waits 1/remaining seconds, so drd slows down with
    nineteen requests left, long before the quota runs out.
    """
    await push_image(source_registry, repo, make_image(repo), "v1")
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(quota(start=28), kinds="manifest_head")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RetryPolicy.no_wait(2))
            backoffs = []
            for _ in range(24):  # remaining after each: 27, 26, ..., 4
                await client.head_manifest(repo, "v1")
                backoffs.append(client.limits.backoff_s)

    assert backoffs[:8] == [0.0] * 8  # remaining 27 .. 20: ample
    assert backoffs[8:] == [pytest.approx(1 / r) for r in range(19, 3, -1)]
    arrivals = [s.at for s in proxy.requests("manifest_head")]
    # Request i + 1 started backoffs[i] after request i did. Arrival times add each
    # request's own transit to its start, so compare sums, less one transit's worth.
    owed = 0.0
    for i in range(8, len(arrivals) - 1):
        owed += backoffs[i]
        assert arrivals[i + 1] - arrivals[8] >= owed - TRANSIT, (i, owed)


async def test_low_rate_limit_remaining_spaces_concurrent_requests(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    With the quota low, concurrent requests are spaced out one after another, not each
    delayed in parallel: eight at once still arrive a quarter second apart.
    """
    await push_image(source_registry, repo, make_image(repo), "v1")
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(quota(start=4, drops=False), kinds="manifest_head")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient(
                "src", proxy.url, http, RetryPolicy.no_wait(2), limits=Limits(concurrency=8)
            )
            await client.head_manifest(repo, "v1")  # learns: 4 of 100 left
            await asyncio.gather(*(client.head_manifest(repo, "v1") for _ in range(8)))

    gaps = intervals(proxy.requests("manifest_head"))
    assert len(gaps) == 8
    assert all(gap >= 0.25 - EPSILON for gap in gaps), gaps
