"""
The daemon's HTTP listener on loopback: slow clients, the connection cap, TLS.

Each test serves `build_app` through `serve_http`, the daemon's own server, and
talks to it with raw sockets (to be slow on purpose) and with aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from drd.daemon.http import HttpHooks, HttpLimits, Push, build_app, serve_http
from drd.daemon.listener import GUARD, ConnectionGuard, tls_context
from drd.errors import ConfigError
from drd.metrics import Metrics
from tests.servers import TlsFiles, make_tls

TOKEN = "listener-test-token"  # noqa: S105 - a test value, not a credential
# How long a test waits for something that must happen; never how long it should take.
PATIENCE = 20.0
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass
class Served:
    """A running listener: its port, its guard, its metrics and what it handed over."""

    port: int
    guard: ConnectionGuard
    registry: CollectorRegistry
    pushes: list[list[Push]]
    release: asyncio.Event  # set: webhook pushes are answered; clear: they wait
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def dropped(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "drd_http_connections_dropped_total", {"reason": reason}
        )
        return value or 0.0


@asynccontextmanager
async def served(limits: HttpLimits, tls: ssl.SSLContext | None = None) -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    pushes: list[list[Push]] = []
    release = asyncio.Event()
    release.set()

    async def on_push(batch: list[Push]) -> tuple[int, int]:
        await release.wait()
        pushes.append(batch)
        return len(batch), 0

    hooks = HttpHooks(token=lambda: TOKEN, on_push=on_push, readiness=lambda: (True, {}))
    app = build_app(Metrics(registry), hooks, limits)
    async with serve_http(app, "127.0.0.1", 0, tls=tls) as port:
        yield Served(port, app[GUARD], registry, pushes, release, scheme="https" if tls else "http")


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait until *condition* holds; fail naming *what* after `PATIENCE` seconds."""
    try:
        async with asyncio.timeout(PATIENCE):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {PATIENCE}s waiting for {what}") from None


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    async with asyncio.timeout(PATIENCE):
        return await reader.read()


async def healthz(url: str, ssl_context: ssl.SSLContext | bool = True) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/healthz", ssl=ssl_context) as resp,
    ):
        assert await resp.json() == {"status": "ok"}
        return resp.status


@dataclass
class Trickle:
    """A connection that sends *data* and then keeps adding a byte at a time."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] = field(init=False)

    @classmethod
    async def open(cls, port: int, data: bytes, drip: bytes) -> Trickle:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        trickle = cls(reader, writer)
        trickle.task = asyncio.create_task(trickle._drip(drip))
        return trickle

    async def _drip(self, drip: bytes) -> None:
        try:
            while True:
                await asyncio.sleep(0.05)
                self.writer.write(drip)
                await self.writer.drain()
        except (ConnectionError, RuntimeError):
            return  # the server closed it: what the tests wait for

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
        with suppress(ConnectionError, asyncio.CancelledError):
            await self.task


async def test_slow_request_heads_are_closed_while_healthz_answers() -> None:
    """Heads trickled a byte at a time are cut at header_timeout; /healthz answers meanwhile."""
    async with served(HttpLimits(header_timeout=0.5, body_timeout=30, max_connections=64)) as srv:
        slow = [await Trickle.open(srv.port, HEAD, b"X") for _ in range(20)]
        try:
            assert await healthz(srv.url) == 200
            for conn in slow:
                assert await closed_by_server(conn.reader) == b""  # no response, just closed
        finally:
            for conn in slow:
                await conn.close()
        assert srv.dropped("header_timeout") == 20.0
        await eventually(lambda: srv.guard.open_connections == 0, "every connection to close")
        assert await healthz(srv.url) == 200


async def test_an_idle_connection_is_closed_after_its_last_response() -> None:
    """After a response the next head is due within header_timeout: keep-alive is no loophole."""
    async with served(HttpLimits(header_timeout=0.5)) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(HEAD + b"\r\n")
        await writer.drain()
        answer = await closed_by_server(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b'{"status": "ok"}')
    assert srv.dropped("header_timeout") == 1.0


async def test_a_webhook_body_sent_slowly_gets_408_and_is_closed() -> None:
    """Headers at once, then the body byte by byte: 408 at body_timeout, nothing handed over."""
    async with served(HttpLimits(header_timeout=30, body_timeout=0.5)) as srv:
        head = (
            "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n"
        ).encode()
        slow = [await Trickle.open(srv.port, head + b'{"events": [', b" ") for _ in range(5)]
        try:
            assert await healthz(srv.url) == 200
            answers = [await closed_by_server(conn.reader) for conn in slow]
        finally:
            for conn in slow:
                await conn.close()
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"body not received within 0.5s" in answer
        assert srv.pushes == []
        assert srv.dropped("body_timeout") == 5.0
        requests = srv.registry.get_sample_value("drd_webhook_requests_total", {"status": "408"})
        assert requests == 5.0


async def test_over_the_cap_the_oldest_slow_connection_makes_room_for_healthz() -> None:
    """At max_connections, a new connection closes the oldest one still owing its head."""
    async with served(HttpLimits(header_timeout=60, max_connections=4)) as srv:
        slow = [await Trickle.open(srv.port, HEAD, b"X") for _ in range(4)]
        try:
            await eventually(lambda: srv.guard.open_connections == 4, "4 open connections")
            assert await healthz(srv.url) == 200
            assert await closed_by_server(slow[0].reader) == b""
            assert srv.dropped("evicted") == 1.0
            await eventually(lambda: srv.guard.open_connections == 3, "the health check to end")
            # Ten more slow clients: the first takes the free slot, each later one pushes
            # out the oldest; none waits for a timeout.
            slow += [await Trickle.open(srv.port, HEAD, b"X") for _ in range(10)]
            for conn in slow[1:10]:
                assert await closed_by_server(conn.reader) == b""
            assert srv.dropped("evicted") == 10.0
            assert srv.guard.open_connections == 4
            assert await healthz(srv.url) == 200
            assert srv.dropped("evicted") == 11.0
        finally:
            for conn in slow:
                await conn.close()
        assert srv.dropped("header_timeout") == 0.0


async def test_when_every_connection_is_being_answered_a_newcomer_is_refused() -> None:
    """Requests in progress are never evicted: the connection over the cap is closed instead."""
    body = json.dumps({"events": [{"action": "push", "target": {"repository": "a", "tag": "v"}}]})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with (
        served(HttpLimits(header_timeout=60, max_connections=2)) as srv,
        aiohttp.ClientSession() as session,
    ):
        srv.release.clear()
        posts = [
            asyncio.create_task(session.post(f"{srv.url}/webhook", data=body, headers=headers))
            for _ in range(2)
        ]
        await eventually(
            lambda: (srv.guard.open_connections, srv.guard.waiting_connections) == (2, 0),
            "two webhook requests in progress",
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(HEAD + b"\r\n")
        assert await closed_by_server(reader) == b""
        writer.close()
        assert srv.dropped("refused") == 1.0
        srv.release.set()
        for post in posts:
            async with await post as resp:
                assert resp.status == 202
        assert srv.pushes == [[Push("a", "v")], [Push("a", "v")]]
        assert srv.dropped("evicted") == 0.0


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("listener-tls"))


async def test_a_tls_listener_serves_https_and_refuses_plain_http(tls_files: TlsFiles) -> None:
    """/healthz over https with the test CA; plain http to the same port gets no answer."""
    context = tls_context(tls_files.cert, tls_files.key, None)
    async with served(HttpLimits(header_timeout=2), tls=context) as srv:
        assert await healthz(srv.url, tls_files.client_context(with_client_cert=False)) == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(HEAD + b"\r\n")
        answer = await closed_by_server(reader)
        writer.close()
        assert not answer.startswith(b"HTTP/")
        with pytest.raises(aiohttp.ClientError):
            await healthz(srv.url.replace("https://", "http://"))
        assert await healthz(srv.url, tls_files.client_context(with_client_cert=False)) == 200


async def test_with_a_client_ca_only_clients_with_a_certificate_get_in(tls_files: TlsFiles) -> None:
    """mTLS: the client certificate the CA signed is let in; a client without one is not."""
    context = tls_context(tls_files.cert, tls_files.key, tls_files.ca)
    async with served(HttpLimits(), tls=context) as srv:
        assert await healthz(srv.url, tls_files.client_context(with_client_cert=True)) == 200
        with pytest.raises(aiohttp.ClientError):
            await healthz(srv.url, tls_files.client_context(with_client_cert=False))


def test_an_unusable_certificate_or_key_is_a_config_error_naming_the_field(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    """A key that does not belong to the certificate, or a bad CA file, names the field."""
    with pytest.raises(ConfigError) as raised:
        tls_context(tls_files.cert, tls_files.client_key, None)
    assert {path for path, _ in raised.value.errors} == {
        "daemon.tls_cert_file",
        "daemon.tls_key_file",
    }
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(ConfigError) as raised:
        tls_context(tls_files.cert, tls_files.key, tmp_path / "ca.pem")
    assert [path for path, _ in raised.value.errors] == ["daemon.tls_client_ca_file"]
