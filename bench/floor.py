"""
The whole-process floor of a no-op pass: ``python -m bench.floor SOURCE REPO...``.

A fresh interpreter that imports nothing but aiohttp, lists every repository's tags
at *SOURCE* (following ``Link`` pages) and sends one manifest HEAD per tag, 8 at a
time: the least any one-shot replicator must do to notice that nothing changed
(a tags list carries no digests). Start-up is part of its time, as it is of drd's.
Prints ``{"repositories": R, "tags": T, "heads": H}`` and exits 1 when a HEAD fails.

Deliberately free of drd (and of ``bench.raw``, which imports drd): the floor pays
only for what any Python client would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import urljoin

import aiohttp

CONCURRENCY = 8
# What a replicator asks for: every manifest and index type (drd sends the same list).
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.artifact.manifest.v1+json",
    )
)


async def tags_of(http: aiohttp.ClientSession, base: str, repo: str) -> list[str]:
    """Every tag of *repo*, page by page."""
    url: str | None = f"{base}/v2/{repo}/tags/list?n=1000"
    tags: list[str] = []
    while url is not None:
        async with http.get(url) as r:
            r.raise_for_status()
            tags += (await r.json()).get("tags") or []
            link = r.headers.get("Link", "")
        url = urljoin(url, link.split(";")[0].strip("<> ")) if link else None
    return tags


async def floor(base: str, repos: list[str]) -> dict[str, int]:
    """List, then HEAD every tag with CONCURRENCY requests in flight."""
    sem = asyncio.Semaphore(CONCURRENCY)
    heads = 0

    async def head(http: aiohttp.ClientSession, repo: str, tag: str) -> None:
        nonlocal heads
        url = f"{base}/v2/{repo}/manifests/{tag}"
        async with sem, http.head(url, headers={"Accept": ACCEPT}) as r:
            r.raise_for_status()
            if not r.headers.get("Docker-Content-Digest"):
                raise RuntimeError(f"{repo}:{tag}: no digest in the answer")
            heads += 1

    async def repository(http: aiohttp.ClientSession, repo: str) -> int:
        async with sem:
            tags = await tags_of(http, base, repo)
        await asyncio.gather(*(head(http, repo, tag) for tag in tags))
        return len(tags)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:
        counts = await asyncio.gather(*(repository(http, repo) for repo in repos))
    return {"repositories": len(repos), "tags": sum(counts), "heads": heads}


def main(argv: list[str]) -> int:
    """``python -m bench.floor SOURCE REPO...``."""
    base, repos = argv[0].rstrip("/"), argv[1:]
    result = asyncio.run(floor(base, repos))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["heads"] == result["tags"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
