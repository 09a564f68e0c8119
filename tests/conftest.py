"""
Shared fixtures: session-wide local servers, per-test names, an isolated environment.

Tests are isolated by naming, not by restarting servers: each test gets its own
repository (``repo``) and bucket (``bucket``) on the session's registries and S3.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.postgres import LocalPostgres, local_postgres
from tests.servers import LocalRegistry, moto_server, registry_binary, s3_client

# Variables that would let the developer's or CI's own setup leak into a test.
_LEAKY = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "REGISTRY_AUTH_FILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: long-running (large blobs, restarts, benchmarks); -m 'not slow' skips"
    )
    config.addinivalue_line("markers", "skopeo: uses the skopeo CLI as an independent client")


@pytest.fixture(autouse=True)
def isolate_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fixed AWS test credentials, no DRD_* settings, an empty docker config; reset structlog."""
    for name in list(os.environ):
        if name.startswith("DRD_") or name in _LEAKY:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "env"
    (home / "docker").mkdir(parents=True)
    (home / "aws").mkdir()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Point the AWS files at an empty folder, not ~/.aws: a developer's profile must not apply.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws" / "credentials"))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "docker"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # A config that names no state_dir writes under the test's own folder, not /var/lib/drd.
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture(scope="session")
def source_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """The session's source registry (distribution 2.8 on loopback)."""
    with LocalRegistry.start(registry_binary(), tmp_path_factory.mktemp("src")) as reg:
        yield reg


@pytest.fixture(scope="session")
def target_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """The session's replication target registry."""
    with LocalRegistry.start(registry_binary(), tmp_path_factory.mktemp("dst")) as reg:
        yield reg


@pytest.fixture(scope="session")
def third_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A third registry: a second target, or the drill registry."""
    with LocalRegistry.start(registry_binary(), tmp_path_factory.mktemp("third")) as reg:
        yield reg


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., LocalRegistry]]:
    """
    Start registries that belong to one test, with any `LocalRegistry.start` options.

    Use these, not the session registries, for anything that stops, restarts,
    adds auth, TLS or notifications. All are stopped when the test ends.
    """
    binary = registry_binary()
    with contextlib.ExitStack() as stack:
        count = 0

        def start(**options: Any) -> LocalRegistry:
            nonlocal count
            count += 1
            workdir = tmp_path / f"registry-{count}"
            return stack.enter_context(LocalRegistry.start(binary, workdir, **options))

        yield start


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The session's S3 endpoint (moto server on loopback), e.g. ``http://127.0.0.1:PORT``."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A throwaway PostgreSQL server for the session (fails under CI when it cannot start)."""
    with local_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: LocalPostgres) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    return postgres.url(postgres.create_database())


@pytest.fixture
def repo() -> str:
    """A repository name no other test uses: ``t<uuid12>/app``."""
    return f"t{uuid.uuid4().hex[:12]}/app"


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket in the session's S3 server."""
    name = f"t{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name
