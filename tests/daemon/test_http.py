"""The daemon's HTTP endpoint on loopback: webhook auth, limits and parsing; health; metrics."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from drd.daemon.http import (
    DISTRIBUTION_EVENTS,
    MAX_BODY,
    HttpHooks,
    PayloadError,
    Push,
    build_app,
    parse_push_events,
    serve_http,
)
from drd.errors import StateError
from drd.metrics import Metrics

TOKEN = "webhook-token-for-tests"  # noqa: S105 - a test value, not a credential


def envelope(*events: Mapping[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


def push_event(repository: str, tag: object, action: str = "push") -> dict[str, Any]:
    target: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + "c" * 64,
        "repository": repository,
    }
    if tag is not None:
        target["tag"] = tag
    return {"id": "e1", "action": action, "target": target}


def harbor(repository: str, *tags: str, kind: str = "PUSH_ARTIFACT") -> dict[str, Any]:
    return {
        "type": kind,
        "occur_at": 1700000000,
        "operator": "admin",
        "event_data": {
            "resources": [{"digest": "sha256:" + "d" * 64, "tag": t} for t in tags],
            "repository": {"name": repository.rpartition("/")[2], "repo_full_name": repository},
        },
    }


@pytest.mark.parametrize(
    ("document", "pushes", "ignored"),
    [
        pytest.param(
            envelope(push_event("team/app", "v1")), [Push("team/app", "v1")], 0, id="distribution"
        ),
        pytest.param(
            envelope(
                push_event("team/app", None),
                push_event("team/app", "v1", action="pull"),
                push_event("team/app", "v1"),
                push_event("team/app", "v1"),
            ),
            [Push("team/app", "v1")],
            2,
            id="blob-push-and-pull-ignored-duplicates-merged",
        ),
        pytest.param(
            harbor("library/nginx", "1.25", "latest"),
            [Push("library/nginx", "1.25"), Push("library/nginx", "latest")],
            0,
            id="harbor-push",
        ),
        pytest.param(
            harbor("library/nginx", "1.25", kind="DELETE_ARTIFACT"), [], 1, id="harbor-delete"
        ),
        pytest.param(envelope(), [], 0, id="empty-envelope"),
    ],
)
def test_push_events_are_parsed(document: Any, pushes: list[Push], ignored: int) -> None:
    """Distribution and Harbor notifications give their distinct tag pushes; the rest is ignored."""
    assert parse_push_events(document) == (pushes, ignored)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param([1, 2], "not a JSON object", id="array"),
        pytest.param({"hello": "world"}, "not a distribution or Harbor notification", id="unknown"),
        pytest.param({"events": "push"}, '"events" is not a list', id="events-not-list"),
        pytest.param(envelope(push_event("../etc", "v1")), "traversing path", id="dotdot-repo"),
        pytest.param(envelope(push_event("/abs/app", "v1")), "absolute", id="absolute-repo"),
        pytest.param(envelope(push_event("Team/App", "v1")), "grammar", id="uppercase-repo"),
        pytest.param(envelope(push_event("team/app", "v1/../x")), "tag", id="bad-tag"),
        pytest.param(envelope(push_event("team/app", 7)), "tag is not a string", id="tag-number"),
        pytest.param(envelope({"action": "push"}), 'no "target"', id="no-target"),
        pytest.param(harbor("a/../b", "v1"), "traversing path", id="harbor-dotdot"),
    ],
)
def test_hostile_or_malformed_payloads_are_refused_with_a_reason(
    document: Any, reason: str
) -> None:
    """A body that is not a notification, or names an invalid repository or tag, is refused."""
    with pytest.raises(PayloadError, match=reason.replace("(", r"\(")):
        parse_push_events(document)


@dataclass
class Hooks:
    """The service side, recorded: what the endpoint handed over."""

    token: str | None = TOKEN
    ready: bool = False
    pushes: list[list[Push]] = field(default_factory=list)
    state_down: bool = False  # the state database cannot queue pushes

    def hooks(self) -> HttpHooks:
        async def on_push(pushes: list[Push]) -> tuple[int, int]:
            if self.state_down:
                raise StateError("state database 127.0.0.1:5432/drd: connection refused")
            self.pushes.append(pushes)
            return len(pushes), 0

        def readiness() -> tuple[bool, Mapping[str, str]]:
            return self.ready, {} if self.ready else {"endpoint:src": "not checked yet"}

        return HttpHooks(token=lambda: self.token, on_push=on_push, readiness=readiness)


@dataclass
class Endpoint:
    url: str
    hooks: Hooks
    registry: CollectorRegistry
    session: aiohttp.ClientSession

    async def post(self, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        async with self.session.post(f"{self.url}/webhook", data=body, headers=headers) as resp:
            return resp.status, await resp.json()

    def count(self, status: int) -> float:
        value = self.registry.get_sample_value(
            "drd_webhook_requests_total", {"status": str(status)}
        )
        return value or 0.0


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    """The HTTP app served on 127.0.0.1 on a free port, with a client session."""
    hooks = Hooks()
    registry = CollectorRegistry()
    app = build_app(Metrics(registry), hooks.hooks())
    async with serve_http(app, "127.0.0.1", 0) as port, aiohttp.ClientSession() as session:
        yield Endpoint(f"http://127.0.0.1:{port}", hooks, registry, session)


BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": DISTRIBUTION_EVENTS}


async def test_a_distribution_envelope_with_the_token_is_accepted(endpoint: Endpoint) -> None:
    """A valid envelope with the right bearer token hands its pushes over and answers 202."""
    status, body = await endpoint.post(json.dumps(envelope(push_event("team/app", "v1"))), **BEARER)
    assert (status, body) == (202, {"accepted": 1, "ignored": 0})
    assert endpoint.hooks.pushes == [[Push("team/app", "v1")]]
    assert endpoint.count(202) == 1.0


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        pytest.param({}, 401, "missing or wrong bearer token", id="no-token"),
        pytest.param({"Authorization": "Bearer nope"}, 401, "missing or wrong", id="wrong-token"),
        pytest.param({"Authorization": TOKEN}, 401, "missing or wrong", id="no-scheme"),
        pytest.param(
            {"Authorization": f"Basic {TOKEN}"}, 401, "missing or wrong", id="wrong-scheme"
        ),
        pytest.param(
            {"Authorization": f"Bearer {TOKEN}x"}, 401, "missing or wrong", id="token-prefix"
        ),
    ],
)
async def test_requests_without_the_right_token_are_refused(
    endpoint: Endpoint, headers: dict[str, str], status: int, error: str
) -> None:
    """No token, a wrong one, or another scheme: 401 with a Bearer challenge, nothing passed on."""
    body = json.dumps(envelope(push_event("team/app", "v1")))
    async with endpoint.session.post(f"{endpoint.url}/webhook", data=body, headers=headers) as resp:
        assert resp.status == status
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert error in (await resp.json())["error"]
    assert endpoint.hooks.pushes == []
    assert endpoint.count(401) == 1.0


async def test_pushes_that_cannot_be_queued_are_refused_503_for_the_sender_to_retry(
    endpoint: Endpoint,
) -> None:
    """The state is unreachable: 503 with Retry-After and the reason, not a 202 or a 500."""
    endpoint.hooks.state_down = True
    body = json.dumps(envelope(push_event("team/app", "v1")))
    async with endpoint.session.post(f"{endpoint.url}/webhook", data=body, headers=BEARER) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "30"
        error = (await resp.json())["error"]
    assert error == (
        "cannot queue the pushes: state database 127.0.0.1:5432/drd: connection refused"
    )
    assert endpoint.count(503) == 1.0
    assert endpoint.count(202) == 0.0


async def test_the_webhook_is_off_without_a_configured_token(endpoint: Endpoint) -> None:
    """With no webhook token configured every webhook request is refused (403)."""
    endpoint.hooks.token = None
    status, body = await endpoint.post(json.dumps(envelope(push_event("team/app", "v1"))), **BEARER)
    assert status == 403
    assert "no daemon.webhook_token_file" in body["error"]
    assert endpoint.hooks.pushes == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b'{"events": [', "malformed JSON", id="truncated"),
        pytest.param(b"\xff\xfe not utf-8", "malformed JSON", id="not-text"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "malformed JSON", id="deeply-nested"),
        pytest.param(
            b'{"events": [{"action": "push", "target": {"repository": "../x", "tag": "v"}}]}',
            "traversing path",
            id="dotdot",
        ),
    ],
)
async def test_malformed_bodies_are_refused_with_400(
    endpoint: Endpoint, body: bytes, error: str
) -> None:
    """Bodies not JSON, absurdly nested or naming hostile repositories: 400, nothing passed on."""
    status, answer = await endpoint.post(body, **BEARER)
    assert status == 400
    assert error in answer["error"]
    assert endpoint.hooks.pushes == []


async def test_oversized_bodies_are_refused_with_413(endpoint: Endpoint) -> None:
    """A body over 1 MiB is refused, whether it declares its length or streams in chunks."""
    padding = " " * MAX_BODY
    big = json.dumps(envelope(push_event("team/app", "v1"))) + padding
    status, answer = await endpoint.post(io.BytesIO(big.encode()), **BEARER)
    assert (status, answer["error"]) == (413, f"body larger than {MAX_BODY} bytes")

    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps(envelope(push_event("team/app", "v1"))).encode()
        for _ in range(20):
            yield b" " * 65536

    status, answer = await endpoint.post(chunks(), **BEARER)  # chunked: no Content-Length
    assert status == 413
    assert endpoint.hooks.pushes == []
    assert endpoint.count(413) == 2.0


async def test_health_and_readiness(endpoint: Endpoint) -> None:
    """/healthz answers while the process serves; /readyz is 503 with reasons until ready."""
    async with endpoint.session.get(f"{endpoint.url}/healthz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    async with endpoint.session.get(f"{endpoint.url}/readyz") as resp:
        assert resp.status == 503
        assert await resp.json() == {
            "ready": False,
            "reasons": {"endpoint:src": "not checked yet"},
        }
    endpoint.hooks.ready = True
    async with endpoint.session.get(f"{endpoint.url}/readyz") as resp:
        assert (resp.status, await resp.json()) == (200, {"ready": True, "reasons": {}})


async def test_metrics_are_served_in_the_prometheus_text_format(endpoint: Endpoint) -> None:
    """/metrics serves the registry, webhook counters included."""
    await endpoint.post("{}", Authorization="Bearer wrong")
    async with endpoint.session.get(f"{endpoint.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    assert 'drd_webhook_requests_total{status="401"} 1.0' in text
    assert "drd_build_info{" in text
