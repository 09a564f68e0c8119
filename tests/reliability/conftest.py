"""
Servers for the reliability suite: fault proxies in front of the source and of a
token-authenticated target, and the token server behind that target.

They are module-scoped and run in their own threads; each test clears the
proxies' rules and uses its own repository.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults import FaultProxy
from tests.security.tokens import TokenServer
from tests.servers import LocalRegistry, registry_binary

USER = "drd-replicator"
PASSWORD = "rel1ability-Pw-7Qx"  # noqa: S105 - a test password, also a canary

# Figures the suite produced (fault matrix, kill loops), printed at the end of the run.
REPORTS: list[str] = []


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """A token server that knows USER / PASSWORD."""
    with TokenServer(tmp_path_factory.mktemp("tokens"), users={USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="module")
def target_proxy(token_server: TokenServer) -> Iterator[FaultProxy]:
    """The proxy drd reaches the target through; ``/token`` goes to the token server."""
    with FaultProxy(routes={"/token": token_server.url}, name="target-proxy") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def auth_target(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer, target_proxy: FaultProxy
) -> Iterator[LocalRegistry]:
    """A token-authenticated target whose challenge names the proxy's ``/token``."""
    config = token_server.registry_config(realm=f"{target_proxy.url}/token")
    with LocalRegistry.start(
        registry_binary(), tmp_path_factory.mktemp("auth-target"), extra_config=config
    ) as registry:
        target_proxy.upstream = registry.url
        yield registry


@pytest.fixture(scope="module")
def source_proxy(source_registry: LocalRegistry) -> Iterator[FaultProxy]:
    """The proxy drd reaches the session's source registry through."""
    with FaultProxy(source_registry.url, name="source-proxy") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def s3_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """The proxy drd reaches the session's S3 server (moto) through."""
    with FaultProxy(s3_endpoint, s3=True, name="s3-proxy") as proxy:
        yield proxy


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures collected during the run: the fault matrix, the kill loops."""
    if REPORTS:
        terminalreporter.write_sep("=", "reliability figures")
    for text in REPORTS:
        terminalreporter.write_line(text)
