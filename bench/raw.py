"""
The raw reference: what plain aiohttp does with perfect knowledge of what to copy.

``python -m bench.raw PLAN.json`` streams every unique blob GET→PUT once (8 at a
time, no hashing, no HEAD checks), mounts it into the other repositories that
need it, then copies manifests children first and points the tags. No discovery,
no checks: the floor a careful replicator is measured against.

``python -m bench.raw --pull PLAN.json`` GETs every unique blob once (8 at a time)
and hashes it: the floor a drill's pull-and-re-hash phase is measured against.

``python -m bench.raw --heads PLAN.json`` HEADs every source tag once (16 at a
time) and checks its digest: the floor of a no-op pass that notices moved tags,
since a tags list carries no digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yarl

from drd.oci import mediatype

CHUNK = 1024 * 1024
STREAMS = 8
HEADS = 16


class Raw:
    """One raw copy from ``plan["source"]`` to ``plan["target"]``."""

    def __init__(self, http: aiohttp.ClientSession, plan: dict[str, Any]) -> None:
        self.http = http
        self.src = plan["source"].rstrip("/")
        self.dst = plan["target"].rstrip("/")
        self.sem = asyncio.Semaphore(STREAMS)
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}

    async def blob(self, item: dict[str, Any]) -> None:
        home, *others = item["repos"]
        digest = item["digest"]
        async with self.sem:
            async with self.http.post(f"{self.dst}/v2/{home}/blobs/uploads/") as r:
                _ok(r, 202)
                location = yarl.URL(self.dst).join(yarl.URL(r.headers["Location"]))
            async with self.http.get(f"{self.src}/v2/{home}/blobs/{digest}") as src:
                _ok(src, 200)

                async def body() -> AsyncIterator[bytes]:
                    async for chunk in src.content.iter_chunked(CHUNK):
                        yield chunk

                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(item["size"]),
                }
                put_url = location.update_query({"digest": digest})
                async with self.http.put(put_url, data=body(), headers=headers) as r:
                    _ok(r, 201)
            for repo in others:
                url = f"{self.dst}/v2/{repo}/blobs/uploads/?mount={digest}&from={home}"
                async with self.http.post(url) as r:
                    _ok(r, 201)

    async def manifest(self, item: dict[str, Any]) -> None:
        repo, digest = item["repo"], item["digest"]
        async with self.sem:
            headers = {"Accept": item["media_type"]}
            async with self.http.get(
                f"{self.src}/v2/{repo}/manifests/{digest}", headers=headers
            ) as r:
                _ok(r, 200)
                raw = await r.read()
            self.manifests[(repo, digest)] = (raw, item["media_type"])
            await self._put(repo, digest, raw, item["media_type"])

    async def tag(self, item: dict[str, Any]) -> None:
        raw, media_type = self.manifests[(item["repo"], item["digest"])]
        async with self.sem:
            await self._put(item["repo"], item["tag"], raw, media_type)

    async def _put(self, repo: str, reference: str, raw: bytes, media_type: str) -> None:
        url = f"{self.dst}/v2/{repo}/manifests/{reference}"
        async with self.http.put(url, data=raw, headers={"Content-Type": media_type}) as r:
            _ok(r, 201)


def _ok(resp: aiohttp.ClientResponse, status: int) -> None:
    if resp.status != status:
        raise RuntimeError(f"{resp.method} {resp.url}: HTTP {resp.status}")


async def pull(plan: dict[str, Any]) -> None:
    """GET every blob once, 8 at a time, and check its sha256: the drill's pull reference."""
    src = plan["source"].rstrip("/")
    sem = asyncio.Semaphore(STREAMS)
    connector = aiohttp.TCPConnector(limit=STREAMS * 2)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)

    async def one(http: aiohttp.ClientSession, item: dict[str, Any]) -> None:
        async with sem, http.get(f"{src}/v2/{item['repos'][0]}/blobs/{item['digest']}") as r:
            _ok(r, 200)
            hasher = hashlib.sha256()
            async for chunk in r.content.iter_chunked(CHUNK):
                hasher.update(chunk)
        if f"sha256:{hasher.hexdigest()}" != item["digest"]:
            raise RuntimeError(f"blob {item['digest']} hashes to sha256:{hasher.hexdigest()}")

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(one(http, b) for b in plan["blobs"]))


async def heads(plan: dict[str, Any]) -> None:
    """HEAD every tag once, 16 at a time, and check its digest: the no-op pass's floor."""
    src = plan["source"].rstrip("/")
    sem = asyncio.Semaphore(HEADS)

    async def one(http: aiohttp.ClientSession, item: dict[str, Any]) -> None:
        url = f"{src}/v2/{item['repo']}/manifests/{item['tag']}"
        async with sem, http.head(url, headers={"Accept": mediatype.MANIFEST_ACCEPT}) as r:
            _ok(r, 200)
            if r.headers.get("Docker-Content-Digest") != item["digest"]:
                raise RuntimeError(f"{item['repo']}:{item['tag']} is not at {item['digest']}")

    connector = aiohttp.TCPConnector(limit=HEADS)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(one(http, t) for t in plan["tags"]))


async def copy(plan: dict[str, Any]) -> None:
    """Blobs, then manifests level by level, then tags."""
    connector = aiohttp.TCPConnector(limit=STREAMS * 2)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        raw = Raw(http, plan)
        await asyncio.gather(*(raw.blob(b) for b in plan["blobs"]))
        for level in plan["levels"]:
            await asyncio.gather(*(raw.manifest(m) for m in level))
        await asyncio.gather(*(raw.tag(t) for t in plan["tags"]))


def main(argv: list[str]) -> int:
    """``python -m bench.raw [--pull | --heads] PLAN.json``."""
    modes = {"--pull": pull, "--heads": heads}
    run = modes[argv[0]] if argv[:1] and argv[0] in modes else copy
    plan = json.loads(Path(argv[-1]).read_text())
    asyncio.run(run(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
