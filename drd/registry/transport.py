"""Build the HTTP client for one registry, and map HTTP/transport failures to drd's errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from drd.errors import (
    NotFound,
    RateLimited,
    RegistryError,
    RegistryUnavailable,
    Unauthorized,
)

USER_AGENT = "drd"


@dataclass(frozen=True)
class TLSSettings:
    """TLS for one endpoint: a CA bundle and an optional client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """A verifying TLS context; the CA bundle replaces the system store when given."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    return ctx


@contextlib.asynccontextmanager
async def build_http_client(
    tls: TLSSettings, *, concurrency: int = 16, timeout_s: float = 60.0
) -> AsyncIterator[aiohttp.ClientSession]:
    """One `aiohttp.ClientSession` per registry; closed on exit."""
    connector = aiohttp.TCPConnector(
        limit=concurrency * 2, ssl=ssl_context(tls), enable_cleanup_closed=True
    )
    # Read timeout per socket read, not per request: a 1 GiB blob takes as long as it takes.
    timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15, sock_read=timeout_s)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,
        trust_env=False,
    ) as session:
        yield session


def retry_after(resp: aiohttp.ClientResponse) -> float | None:
    """Seconds from a ``Retry-After`` header (delta form only), or None."""
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def spec_error_code(resp: aiohttp.ClientResponse) -> str | None:
    """The first distribution-spec error code in the body (e.g. ``MANIFEST_UNKNOWN``)."""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        body = await resp.content.read(64 * 1024)
        errors = json.loads(body).get("errors") or []
        if errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            return code if isinstance(code, str) else None
    return None


async def error_for(
    resp: aiohttp.ClientResponse, registry: str, repository: str = "", what: str = ""
) -> RegistryError:
    """Translate an unsuccessful response into the error tree, reading its spec error code."""
    status, code = resp.status, await spec_error_code(resp)
    subject = f"{what} " if what else ""

    def err(cls: type[RegistryError], message: str, **extra: Any) -> RegistryError:
        return cls(
            message, registry=registry, repository=repository, status=status, code=code, **extra
        )

    match status:
        case 401 | 403:
            return err(Unauthorized, f"{registry} refused our credentials ({status})")
        case 404:
            return err(NotFound, f"{subject}not found on {registry}".strip())
        case 429:
            return err(RateLimited, f"{registry} is rate limiting", retry_after=retry_after(resp))
        case _ if status >= 500:
            return err(RegistryUnavailable, f"{registry} answered {status}")
        case _:
            detail = f" ({code})" if code else ""
            return err(RegistryError, f"{subject}{registry} answered {status}{detail}".strip())


@contextlib.contextmanager
def transport_errors(registry: str, repository: str = "") -> Iterator[None]:
    """Translate aiohttp and timeout failures into `RegistryUnavailable`."""
    try:
        yield
    except aiohttp.ClientSSLError as exc:
        # Not transient: a wrong CA does not fix itself on retry.
        raise RegistryError(
            f"TLS verification of {registry} failed: {exc}", registry=registry
        ) from exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise RegistryUnavailable(
            f"cannot talk to {registry}: {type(exc).__name__}: {exc}",
            registry=registry,
            repository=repository,
        ) from exc
