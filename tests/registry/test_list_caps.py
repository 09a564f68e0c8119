"""
Tag lists and catalogs are capped (``max_tags``, ``max_repositories``) and streamed.

Against the real registry (distribution 2.8, paging with ``n=``), and a small server
on 127.0.0.1 that streams a tag list that never ends: drd stops at the cap with an
error naming the repository and the cap, without reading the rest.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from aiohttp import web

import drd.registry.client
from drd.errors import ListTooLong, RegistryError
from drd.registry.client import MAX_LIST_BODY, Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.runner import run_policy
from drd.retry import RetryPolicy
from tests.clients import open_client, policy_for
from tests.faults import Fault, ThreadedServer, fault_proxy
from tests.images import make_image, push_image
from tests.reliability.cli import FAST_RETRY, run_drd, write_config
from tests.reliability.consistency import check_target
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=2)


async def push_tags(registry: LocalRegistry, repo: str, count: int) -> None:
    image = make_image(repo)
    for n in range(count):
        await push_image(registry, repo, image, f"v{n}")


class EndlessTags(ThreadedServer):
    """Streams ``{"tags": ["t0", "t1", …`` until the client hangs up (or 256 MiB)."""

    def __init__(self) -> None:
        super().__init__("endless-tags")
        self.sent = 0
        self._lock = threading.Lock()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await self._write(response, b'{"name": "x", "tags": [')
        n = 0
        try:
            while self.sent < 256 * 1024 * 1024:
                chunk = ",".join(f'"t{n + i}"' for i in range(1000)) + ","
                n += 1000
                await self._write(response, chunk.encode())
        except ConnectionError:
            pass
        return response

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        await response.write(data)
        with self._lock:
            self.sent += len(data)


async def test_a_repository_over_max_tags_fails_naming_it_and_the_cap(
    monkeypatch: pytest.MonkeyPatch, source_registry: LocalRegistry, repo: str
) -> None:
    """Five tags over pages of two against max_tags = 3: ListTooLong names both."""
    monkeypatch.setattr(drd.registry.client, "PAGE_SIZE", 2)
    await push_tags(source_registry, repo, 5)

    async with build_http_client(TLSSettings()) as http:
        client = RegistryClient("src", source_registry.url, http, RETRY, limits=Limits(max_tags=3))
        with pytest.raises(ListTooLong) as caught:
            await client.list_tags(repo)
        exactly = RegistryClient("src", source_registry.url, http, RETRY, limits=Limits(max_tags=5))
        assert sorted(await exactly.list_tags(repo)) == [f"v{n}" for n in range(5)]

    assert str(caught.value) == f"{repo} on {source_registry.host} has more than 3 tags (max_tags)"
    assert (caught.value.cap, caught.value.repository) == (3, repo)


async def test_a_catalog_over_max_repositories_fails_naming_the_cap(
    source_registry: LocalRegistry, repo: str
) -> None:
    """A catalog longer than max_repositories is ListTooLong naming the registry and cap."""
    for name in (f"{repo}-a", f"{repo}-b"):
        await push_image(source_registry, name, make_image(name), "v1")

    async with build_http_client(TLSSettings()) as http:
        limits = Limits(max_repositories=1)
        client = RegistryClient("src", source_registry.url, http, RETRY, limits=limits)
        with pytest.raises(ListTooLong, match=r"has more than 1 repositories \(max_repositories\)"):
            await client.catalog()


async def test_an_endless_tag_list_stops_at_the_cap_without_reading_on() -> None:
    """
    A tag list that never ends is cut at max_tags + 1 entries: ListTooLong, and the
    server got to send a small part of the 32 MiB a buffered page may hold.
    """
    with EndlessTags() as server:
        async with build_http_client(TLSSettings()) as http:
            limits = Limits(max_tags=1000)
            client = RegistryClient("src", server.url, http, RETRY, limits=limits)
            with pytest.raises(ListTooLong, match="has more than 1000 tags"):
                await client.list_tags("some/app")
        await asyncio.sleep(0.2)  # let the server see the hang-up
        sent = server.sent
    # Socket buffers on loopback hold a few MiB at most; the page limit is 32 MiB.
    assert sent < MAX_LIST_BODY // 4, sent


async def test_an_endless_tag_list_under_a_high_cap_stops_at_the_page_limit() -> None:
    """Under a cap it cannot reach, the endless list fails as too large at 32 MiB."""
    with EndlessTags() as server:
        async with build_http_client(TLSSettings()) as http:
            limits = Limits(max_tags=100_000_000)
            client = RegistryClient("src", server.url, http, RETRY, limits=limits)
            with pytest.raises(RegistryError, match=r"tags list from .* is too large"):
                await client.list_tags("some/app")


async def test_a_pass_fails_only_the_repository_over_the_cap(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """The repository over max_tags fails the pass's error; the one under it is copied."""
    big, small = f"{repo}-big", f"{repo}-small"
    await push_tags(source_registry, big, 4)
    await push_tags(source_registry, small, 2)

    async with build_http_client(TLSSettings()) as http, open_client(target_registry) as dst:
        src = RegistryClient("src", source_registry.url, http, RETRY, limits=Limits(max_tags=3))
        report = await run_policy(policy_for(big, small), src, {"target": dst}, RETRY)

    assert report.error == (
        f"ListTooLong: {big} on {source_registry.host} has more than 3 tags (max_tags) "
        f"(repository {big})"
    )
    assert sorted((i.repository, i.tag, i.outcome) for i in report.items) == [
        (small, "v0", "copied"),
        (small, "v1", "copied"),
    ]
    assert (await check_target(target_registry, big)).tags == {}


def test_max_tags_in_the_config_fails_the_pass_with_exit_1(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """`max_tags` in `[endpoints.NAME]` is the cap `drd replicate` enforces and reports."""
    asyncio.run(push_tags(source_registry, repo, 3))
    config = write_config(
        tmp_path / "drd.toml",
        endpoints={
            "src": {"url": source_registry.url, "max_tags": 2},
            "dst": {"url": target_registry.url},
        },
        tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
        replication=[{"name": "p", "source": "src", "targets": ["dst"], "repositories": [repo]}],
    )

    result = run_drd("replicate", "--config", config, "--json")

    assert result.returncode == 1, result.stderr.decode()[-2000:]
    [policy] = json.loads(result.stdout)["policies"]
    assert policy["error"].startswith("ListTooLong: ")
    assert f"{repo} on {source_registry.host} has more than 2 tags (max_tags)" in policy["error"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"name": "x", "tags": null}', [], id="null"),
        pytest.param(b'{"name": "x"}', [], id="no-tags-key"),
        pytest.param(b'{"tags": ["a", "b"], "name": "x"}', ["a", "b"], id="tags-first"),
        pytest.param(b'{"x": {"tags": ["evil"]}, "tags": ["a"]}', ["a"], id="nested-key"),
        pytest.param(b'{"tags": [["a"]]}', "is malformed", id="nested-array"),
        pytest.param(b'{"tags": [{"a": 1}]}', "is malformed", id="objects"),
        pytest.param(b'{"tags": {"a": "b"}}', "is malformed", id="object-not-list"),
        pytest.param(b'{"tags": ["a", "b"', "is not JSON", id="truncated"),
        pytest.param(b'{"tags": ["a"]} trailing', "is not JSON", id="trailing"),
    ],
)
async def test_a_streamed_tag_list_is_read_or_refused_by_shape(
    body: bytes, expected: list[str] | str, source_registry: LocalRegistry
) -> None:
    """Every shape a page can take: the tags it holds, or the reason it is refused."""
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.respond(200, body, {"Content-Type": "application/json"}), kinds="tags_list")
        async with open_client(proxy.url) as client:
            if isinstance(expected, list):
                assert await client.list_tags("some/app") == expected
            else:
                with pytest.raises(RegistryError, match=f"tags list from .* {expected}"):
                    await client.list_tags("some/app")
