"""
Secrets stay secret: every byte drd prints is searched for them.

Credentials come from a password file (an htpasswd registry), from the environment
(``DRD_ENDPOINT_<NAME>_PASSWORD``, a token-authenticated registry) and a wrong one
from the environment too (an endpoint that fails). drd then runs `config check`,
passes that succeed and passes that fail, in text and JSON, at debug level, and with
a config error; stdout and stderr of all of them, plus the metrics of a failed pass,
are searched for each password, each ``user:password`` in base64, and every token
the token server issued. Nothing may be found.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from drd.config import describe, load_settings
from drd.metrics import Metrics
from drd.replicate.runner import run_policy
from drd.resources import open_resources, policy_from_config
from tests.images import make_multiarch, push_index
from tests.reliability.cli import FAST_RETRY, run_drd, write_config
from tests.security.tokens import TokenServer
from tests.servers import LocalRegistry, write_htpasswd

FILE_USER, FILE_PASSWORD = "file-user", "Fi1e-Secret-pw-7Kq"
ENV_USER, ENV_PASSWORD = "env-user", "Env-Secret-pw-3Zx"
WRONG_PASSWORD = "Wr0ng-Secret-pw-9Vb"  # noqa: S105 - a canary


def b64(user: str, password: str) -> str:
    """What an ``Authorization: Basic`` header carries for *user* and *password*."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Setup:
    """The registries, the config, the environment holding the secrets, and the canaries."""

    config: Path
    env: dict[str, str]
    tokens: TokenServer
    repo: str

    def secrets(self) -> dict[str, str]:
        """Every string that must never be printed, by what it is."""
        found = {
            "file password": FILE_PASSWORD,
            "env password": ENV_PASSWORD,
            "wrong password": WRONG_PASSWORD,
            "file basic": b64(FILE_USER, FILE_PASSWORD),
            "env basic": b64(ENV_USER, ENV_PASSWORD),
            "wrong basic": b64(FILE_USER, WRONG_PASSWORD),
        }
        for n, issued in enumerate(self.tokens.requests()):
            if issued.token:
                found[f"token {n}"] = issued.token
                found[f"token {n} signature"] = issued.token.rpartition(".")[2]
        return found


@pytest.fixture
def setup(
    tmp_path: Path,
    source_registry: LocalRegistry,
    registry_factory: Callable[..., LocalRegistry],
    repo: str,
) -> Iterator[Setup]:
    """A source, an htpasswd target, a token target, and a config that names them all."""
    basic = registry_factory(
        htpasswd=write_htpasswd(tmp_path / "htpasswd", {FILE_USER: FILE_PASSWORD})
    )
    with TokenServer(tmp_path / "tokens", users={ENV_USER: ENV_PASSWORD}) as tokens:
        token_target = registry_factory(extra_config=tokens.registry_config())
        asyncio.run(push_index(source_registry, repo, make_multiarch(repo), "v1"))
        password_file = tmp_path / "basic.password"
        password_file.write_text(FILE_PASSWORD + "\n")
        password_file.chmod(0o600)
        config = write_config(
            tmp_path / "drd.toml",
            endpoints={
                "src": {"url": source_registry.url},
                "basic": {
                    "url": basic.url,
                    "username": FILE_USER,
                    "password_file": str(password_file),
                },
                "tok": {
                    "url": token_target.url,
                    "username": ENV_USER,
                    "auth_hosts": [tokens.host],
                },
                "wrong": {"url": basic.url, "username": FILE_USER},
            },
            tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
            replication=[
                {
                    "name": "good",
                    "source": "src",
                    "targets": ["basic", "tok"],
                    "repositories": [repo],
                },
                {"name": "bad", "source": "src", "targets": ["wrong"], "repositories": [repo]},
            ],
        )
        env = {
            "DRD_ENDPOINT_TOK_PASSWORD": ENV_PASSWORD,
            "DRD_ENDPOINT_WRONG_PASSWORD": WRONG_PASSWORD,
        }
        yield Setup(config, env, tokens, repo)


def runs(setup: Setup) -> dict[str, bytes]:
    """Run every command of the scenario; their combined stdout and stderr, by name."""
    config = str(setup.config)
    commands: dict[str, tuple[list[str], dict[str, str], int]] = {
        "config check": (["config", "check", "--show", "--config", config], {}, 0),
        "config check --json": (["config", "check", "--json", "--config", config], {}, 0),
        "replicate good (debug)": (
            ["replicate", "--policy", "good", "--log-level", "debug", "--config", config],
            {},
            0,
        ),
        "replicate good --json (debug)": (
            ["replicate", "--policy", "good", "--json", "--log-level", "debug", "--config", config],
            {},
            0,
        ),
        "replicate bad (debug)": (
            ["replicate", "--policy", "bad", "--log-level", "debug", "--config", config],
            {},
            1,
        ),
        "replicate all --json": (["replicate", "--json", "--config", config], {}, 1),
        "config error naming a url with a password": (
            ["config", "check", "--log-level", "debug", "--config", config],
            {"DRD_ENDPOINTS__BASIC__URL": f"https://{FILE_USER}:{FILE_PASSWORD}@example.com"},
            78,
        ),
        "config error in the environment": (
            ["replicate", "--config", config],
            {"DRD_ENDPOINT_BASIC_PASSWORD": f"{FILE_PASSWORD}\n{WRONG_PASSWORD}"},
            78,
        ),
    }
    outputs: dict[str, bytes] = {}
    for name, (args, extra, expected) in commands.items():
        result = run_drd(*args, env={**setup.env, **extra})
        out = result.stdout + result.stderr
        assert result.returncode == expected, (name, out.decode(errors="replace")[-2000:])
        outputs[name] = out
    return outputs


async def in_process(setup: Setup) -> bytes:
    """The failing pass run in-process: its report, metrics, every log event, the settings."""
    settings = load_settings(setup.config)
    bad = next(rep for rep in settings.replication if rep.name == "bad")
    with structlog.testing.capture_logs() as logs:
        async with open_resources(settings) as res:
            targets = {name: res.registries[name] for name in bad.targets}
            report = await run_policy(
                policy_from_config(bad), res.registries[bad.source], targets, res.retry
            )
    assert not report.ok
    registry = CollectorRegistry()
    Metrics(registry).record_replication(report, full=True)
    parts = [
        json.dumps(report.to_json()),
        generate_latest(registry).decode(),
        repr(logs),
        repr(settings),
        json.dumps(describe(settings), default=str),
        *(repr(ep.credentials()) for ep in settings.endpoints.values()),
    ]
    return "\n".join(parts).encode()


def test_no_secret_appears_in_any_output(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Across config checks, good and failing passes (text, JSON, debug logs), a config
    error, and a failed pass's report, logs and metrics: zero secrets.
    """
    outputs = runs(setup)
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    outputs["in-process failed pass"] = asyncio.run(in_process(setup))

    # The secrets were really in play: tokens were issued against the env password.
    assert any(i.user == ENV_USER for i in setup.tokens.requests())
    secrets = setup.secrets()
    found = [
        (name, what)
        for name, data in outputs.items()
        for what, secret in secrets.items()
        if secret.encode() in data
    ]
    assert sum(len(data) for data in outputs.values()) > 10_000
    assert found == [], found
    assert b"refused our credentials" in outputs["replicate bad (debug)"]
    assert b"********" in outputs["config check"]
