"""Build the HTTP client for one registry, and map HTTP/transport failures to drd's errors."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import json
import math
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from drd.errors import (
    NotFound,
    RateLimited,
    RegistryError,
    RegistryUnavailable,
    Unauthorized,
    UnsafeResponse,
)
from drd.registry.redirects import address_refusal

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


class GuardedResolver(AbstractResolver):
    """
    Name resolution that refuses, for any host but the registry's own, the addresses
    `address_refusal` forbids: a redirect or realm naming ``evil.example`` that resolves
    to 127.0.0.1 or 169.254.169.254 fails as `UnsafeResponse`, before a connection.

    Addresses written as such never reach a resolver; `redirect_target` checks those.
    """

    def __init__(self, registry_host: str, inner: AbstractResolver | None = None) -> None:
        self._registry_host = registry_host
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of *host*; raises `UnsafeResponse` if one is forbidden."""
        found = await self._inner.resolve(host, port, family)
        if host.lower() == self._registry_host.lower():
            return found
        for entry in found:
            if (why := address_refusal(self._registry_host, entry["host"])) is not None:
                raise UnsafeResponse(
                    f"{host[:100]} resolves to {why}; refused", registry=self._registry_host
                )
        return found

    async def close(self) -> None:
        """Release the resolver underneath."""
        await self._inner.close()


@contextlib.asynccontextmanager
async def build_http_client(
    tls: TLSSettings,
    *,
    concurrency: int = 16,
    timeout_s: float = 60.0,
    registry_host: str | None = None,
    resolver: AbstractResolver | None = None,
) -> AsyncIterator[aiohttp.ClientSession]:
    """
    One `aiohttp.ClientSession` per registry; closed on exit.

    With *registry_host* (the registry's host name or address), names resolve through
    a `GuardedResolver` for it, over *resolver* (aiohttp's default when None).
    """
    # aiohttp's own verifying context (the system store, loaded once at import), not another
    # copy of it: loading the store costs a tenth of a second per endpoint at every start.
    custom = tls.ca_file is not None or tls.cert_file is not None
    if registry_host is not None:
        resolver = GuardedResolver(registry_host, resolver)
    connector = aiohttp.TCPConnector(
        limit=concurrency * 2,
        ssl=ssl_context(tls) if custom else True,
        enable_cleanup_closed=True,
        resolver=resolver,
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
    """Seconds from a ``Retry-After`` header (delay seconds or an HTTP date), or None."""
    value = resp.headers.get("Retry-After", "").strip()[:100]
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


async def read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """
    The whole body, or its first ``limit + 1`` bytes when it is longer than *limit*.

    A loop, not one ``content.read(n)``: that returns whatever is buffered, so a body
    spread over several packets would come back cut short. A connection lost
    mid-body raises `aiohttp.ClientPayloadError`.
    """
    buffer = bytearray()
    while len(buffer) <= limit:
        chunk = await resp.content.read(limit + 1 - len(buffer))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer)


async def spec_error_code(resp: aiohttp.ClientResponse) -> str | None:
    """The first distribution-spec error code in the body (e.g. ``MANIFEST_UNKNOWN``)."""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        body = await read_body(resp, 64 * 1024)
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
    except aiohttp.ClientOSError as exc:
        if (reason := _certificate_alert(exc)) is not None:
            # The registry refused our certificate (or its absence): no retry will change that.
            raise RegistryError(
                f"TLS with {registry} failed: it refused the client certificate ({reason}); "
                "check cert_file and key_file",
                registry=registry,
            ) from exc
        raise RegistryUnavailable(
            f"cannot talk to {registry}: {failure_reason(exc)}",
            registry=registry,
            repository=repository,
        ) from exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise RegistryUnavailable(
            f"cannot talk to {registry}: {failure_reason(exc)}",
            registry=registry,
            repository=repository,
        ) from exc


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed connection or request, for one line of output.

    The operating system's words where there are some ("connection refused"), rather than
    aiohttp's message, which repeats the host and adds ``ssl:default``.
    """
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.errno:
        words = os.strerror(os_error.errno)
        return words[:1].lower() + words[1:]
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time (timeout)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _certificate_alert(exc: BaseException) -> str | None:
    """The TLS alert when the peer rejected our certificate, e.g. ``..._CERTIFICATE_REQUIRED``."""
    cause = exc.__cause__
    reason = getattr(cause, "reason", None) if isinstance(cause, ssl.SSLError) else None
    if isinstance(reason, str) and "ALERT" in reason and "CERTIFICATE" in reason:
        return reason
    return None
