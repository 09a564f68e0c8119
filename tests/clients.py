"""drd clients for the test servers: a RegistryClient per LocalRegistry, a Policy per test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.retry import RetryPolicy
from drd.selection.filters import RepoFilter, TagFilter
from drd.selection.policy import Policy
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=2)


@contextlib.asynccontextmanager
async def open_client(
    registry: LocalRegistry | str,
    name: str = "",
    retry: RetryPolicy = RETRY,
    limits: Limits | None = None,
) -> AsyncIterator[RegistryClient]:
    """A RegistryClient for *registry* (a LocalRegistry or a base URL), closed on exit."""
    url = registry if isinstance(registry, str) else registry.url
    async with build_http_client(TLSSettings(), registry_host=urlsplit(url).hostname) as http:
        yield RegistryClient(name or url, url, http, retry, limits=limits)


def policy_for(*repos: str, tags: tuple[str, ...] | None = None, **options: object) -> Policy:
    """A Policy selecting exactly *repos* (and *tags* regexes, when given)."""
    return Policy(
        name=str(options.pop("name", "test")),
        repositories=RepoFilter(repos),
        tags=TagFilter(tags),
        **options,  # type: ignore[arg-type]
    )
