"""
The daemon's HTTP listener on loopback: slow clients, the connection cap, TLS.

Most tests serve `build_app` through `serve_http`, the daemon's own server, and
talk to it with raw sockets (to be slow on purpose) and with aiohttp; the last
ones run `drd run` itself with the ``[daemon]`` settings in its config file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from drd.config import load_settings
from drd.daemon.http import HttpHooks, HttpLimits, Push, build_app, serve_http
from drd.daemon.listener import GUARD, ConnectionGuard, tls_context
from drd.errors import ConfigError
from drd.metrics import Metrics
from tests.daemon.process import (
    REPO_ROOT,
    daemon_env,
    http_get,
    render_config,
    run_drd,
    running_daemon,
)
from tests.servers import LocalRegistry, TlsFiles, free_port, make_tls

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


async def test_a_webhook_body_stalled_at_the_cap_is_evicted_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A connection still sending its body is as evictable as one owing its head."""
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    async with served(HttpLimits(header_timeout=60, body_timeout=60, max_connections=1)) as srv:
        stalled = await Trickle.open(srv.port, head + b"{", b" ")
        try:
            await eventually(lambda: srv.guard.open_connections == 1, "the webhook connection")
            assert await healthz(srv.url) == 200
            assert await closed_by_server(stalled.reader) == b""
        finally:
            await stalled.close()
        assert srv.dropped("evicted") == 1.0
        assert srv.pushes == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


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


# --- [daemon] settings -------------------------------------------------------------------------

BASE = 'version = 1\n[endpoints.dst]\nurl = "https://dst.example.com"\n[daemon]\n'


@pytest.fixture(autouse=True)
def no_drd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings tests see no DRD_* variable but their own."""
    for name in list(os.environ):
        if name.upper().startswith("DRD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def daemon_errors(tmp_path: Path, text: str) -> dict[str, str]:
    (tmp_path / "drd.toml").write_text(BASE + text)
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "drd.toml")
    return dict(raised.value.errors)


def test_listener_settings_default_to_bounded_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timeouts and the cap are on by default; each is settable in TOML or DRD_DAEMON__*."""
    (tmp_path / "drd.toml").write_text(BASE)
    daemon = load_settings(tmp_path / "drd.toml").daemon
    assert (daemon.header_timeout, daemon.body_timeout) == (
        timedelta(seconds=10),
        timedelta(seconds=30),
    )
    assert daemon.max_connections == 64
    assert not daemon.tls
    monkeypatch.setenv("DRD_DAEMON__HEADER_TIMEOUT", "2s")
    monkeypatch.setenv("DRD_DAEMON__MAX_CONNECTIONS", "8")
    daemon = load_settings(tmp_path / "drd.toml").daemon
    assert (daemon.header_timeout, daemon.max_connections) == (timedelta(seconds=2), 8)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        pytest.param('header_timeout = "0s"\n', "header_timeout", "greater than zero", id="zero"),
        pytest.param("max_connections = 0\n", "max_connections", "greater than", id="no-conn"),
        pytest.param(
            'tls_cert_file = "server.pem"\n', "tls_key_file", "go together", id="cert-no-key"
        ),
        pytest.param(
            'tls_client_ca_file = "ca.pem"\n', "tls_client_ca_file", "needs", id="ca-alone"
        ),
    ],
)
def test_invalid_listener_settings_name_the_field(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    """A bad value or an incomplete TLS pair is refused, naming the [daemon] key."""
    errors = daemon_errors(tmp_path, text)
    assert message in errors[f"daemon.{field}"]


def test_tls_files_are_checked_when_the_config_loads(tls_files: TlsFiles, tmp_path: Path) -> None:
    """A missing or non-PEM TLS file is a config error before anything listens."""
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    errors = daemon_errors(
        tmp_path,
        f'tls_cert_file = "{tmp_path / "junk.pem"}"\n'
        f'tls_key_file = "{tmp_path / "missing.pem"}"\n'
        f'tls_client_ca_file = "{tls_files.ca}"\n',
    )
    assert errors["daemon.tls_cert_file"].endswith("is not a PEM file")
    assert errors["daemon.tls_key_file"].endswith("does not exist")
    assert "daemon.tls_client_ca_file" not in errors


# --- the real `drd run` ------------------------------------------------------------------------


def read_until_closed(sock: socket.socket) -> bytes:
    """What the server sent before closing *sock* (a TLS close may surface as an error)."""
    sock.settimeout(PATIENCE)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except (ssl.SSLError, ConnectionError):
        pass
    return received


def container_healthcheck(port: int) -> int:
    """Run the Dockerfile's HEALTHCHECK command against *port*; its exit code."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    assert found, "the Dockerfile has a HEALTHCHECK in exec form"
    command = json.loads(found.group(1))
    assert command[:2] == ["python", "-c"]
    code = command[2].replace("127.0.0.1:9477", f"127.0.0.1:{port}")
    result = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    return result.returncode


def test_drd_run_serves_tls_from_the_config_and_closes_slow_clients(
    tls_files: TlsFiles, tmp_path: Path, target_registry: LocalRegistry
) -> None:
    """[daemon] tls_* and header_timeout reach the real daemon: https only, slow heads cut."""
    port = free_port()
    config = tmp_path / "drd.toml"
    config.write_text(
        render_config(
            {"dst": {"url": target_registry.url}},
            [],
            {
                "listen": f"127.0.0.1:{port}",
                "state_dir": str(tmp_path / "state"),
                "header_timeout": "1s",
                "tls_cert_file": str(tls_files.cert),
                "tls_key_file": str(tls_files.key),
            },
        )
    )
    context = tls_files.client_context(with_client_cert=False)
    env = daemon_env(tmp_path / "home")
    with running_daemon(config, tmp_path, port, env, stop=signal.SIGTERM, tls=context) as daemon:
        [listening] = daemon.events("daemon.listening")
        assert (listening["tls"], listening["client_certificates"]) == (True, False)

        with socket.create_connection(("127.0.0.1", port)) as plain:
            plain.sendall(HEAD + b"\r\n")
            assert not read_until_closed(plain).startswith(b"HTTP/")

        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as slow,
        ):
            slow.sendall(HEAD)  # the head never ends
            assert read_until_closed(slow) == b""
        assert daemon.sample("drd_http_connections_dropped_total", reason="header_timeout") == 1.0
        assert [e["reason"] for e in daemon.events("http.connection_dropped")] == ["header_timeout"]
        assert http_get(f"{daemon.url}/healthz", context=context)[0] == 200
        assert container_healthcheck(port) == 0  # the image's check finds it over https
    assert daemon.proc.returncode == 0, daemon.describe()
    assert container_healthcheck(port) == 1  # and fails once nothing listens


def test_drd_run_with_a_key_that_does_not_match_exits_78(
    tls_files: TlsFiles, tmp_path: Path, target_registry: LocalRegistry
) -> None:
    """A certificate and a key that are not a pair: exit 78 naming both fields."""
    config = tmp_path / "drd.toml"
    config.write_text(
        render_config(
            {"dst": {"url": target_registry.url}},
            [],
            {
                "listen": f"127.0.0.1:{free_port()}",
                "state_dir": str(tmp_path / "state"),
                "tls_cert_file": str(tls_files.cert),
                "tls_key_file": str(tls_files.client_key),
            },
        )
    )
    result = run_drd("run", "--config", str(config), env=daemon_env(tmp_path / "home"))
    assert result.returncode == 78, result.stderr.decode()
    assert b"daemon.tls_cert_file: cannot load the certificate and key" in result.stderr
    assert b"daemon.tls_key_file" in result.stderr
