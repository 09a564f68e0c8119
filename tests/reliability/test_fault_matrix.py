"""
The fault matrix: every fault on every kind of request, once briefly and once for good.

Each cell replicates a small corpus (an index over an OCI and a Docker image) from
the source to a token-authenticated target, both behind fault proxies, with
``RetryPolicy.no_wait(attempts=3)``. A brief fault fires on the first matching
request at each proxy; a lasting one on every matching request. Whatever happens,
the target must hold no tag pointing at incomplete or corrupt content, and a pass
that says it succeeded must have copied everything. The sixteen cells of one row
(eight faults, brief and lasting) run concurrently, each in its own repository; a
brief retryable fault that was not absorbed gets one second try, counted in the
table. The table is printed at the end of the run and written to
``fault-matrix.txt`` in pytest's base temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from drd.config import Credentials
from drd.metrics import Metrics
from drd.oci.digest import Digest
from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.report import PolicyReport
from drd.replicate.runner import run_policy
from drd.retry import RetryPolicy
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots
from drd.snapshot.collect import SnapshotReport, run_snapshot
from drd.store.s3 import S3Store
from tests.clients import open_client, policy_for
from tests.faults import Fault, FaultProxy
from tests.images import make_image, make_index, push_index
from tests.reliability.cli import FAST_RETRY, run_drd, write_config
from tests.reliability.conftest import PASSWORD, REPORTS, USER
from tests.reliability.consistency import assert_target_consistent, check_target
from tests.reliability.helpers import read_back, s3_store
from tests.security.tokens import TokenServer
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=3)
# Seconds of socket silence before drd gives up on a read; stalls last longer.
TIMEOUT = 1.0
STALL = 1.5
LAYER = 40 * 1024
CHUNK_SIZE = 4 * 1024  # layers go up in PATCH chunks, configs in one PUT

S3_KINDS = ("s3_put", "s3_get", "s3_list")
KINDS = (
    "token",
    "tags_list",
    "manifest_head",
    "manifest_get",
    "manifest_put",
    "blob_mount",  # the claim: opens every upload of a cold copy (a plain POST only on retry)
    "blob_get",
    "upload_patch",
    "upload_put",
)
FAULTS = {
    "http429": Fault.http(429, retry_after=0),
    "http500": Fault.http(500),
    "http502": Fault.http(502),
    "http503": Fault.http(503),
    "reset": Fault.reset(),
    "stall": Fault.stall(STALL),
    "truncate": Fault.truncate(),
    "corrupt": Fault.corrupt(),
}
MODES = {"brief": 1, "lasting": None}
# Faults a retry must absorb when they pass: the registry or the network misbehaved once.
RETRIED = ("http429", "http500", "http502", "http503", "reset", "stall", "truncate")


@dataclass(frozen=True)
class Cell:
    """One cell's verdict."""

    fault: str
    kind: str
    mode: str
    outcome: str  # survived | failed-loudly | damage
    detail: str


RESULTS: list[Cell] = []


def table(cells: list[Cell]) -> str:
    """The matrix as text: one row per kind, one column per fault, S/L/D per mode."""
    letter = {"survived": "S", "failed-loudly": "L", "damage": "D", "unfired": "?"}
    by = {(c.kind, c.fault, c.mode): letter[c.outcome] for c in cells}
    head = f"{'kind':15}" + "".join(f"{f:>10}" for f in FAULTS)
    lines = ["cells: brief/lasting; S survived, L failed loudly, D silent damage", head]
    for kind in (*KINDS, *S3_KINDS):
        row = f"{kind:15}"
        for fault in FAULTS:
            pair = f"{by.get((kind, fault, 'brief'), '-')}/{by.get((kind, fault, 'lasting'), '-')}"
            row += f"{pair:>10}"
        lines.append(row)
    counts = Counter(c.outcome for c in cells)
    lines.append(
        f"cells tried {len(cells)}, survived {counts['survived']}, "
        f"failed loudly {counts['failed-loudly']}, silent damage {counts['damage']}, "
        f"second tries {sum(c.detail.startswith('second try') for c in cells)}"
    )
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def matrix_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Print and keep the table (and every cell that did not simply survive) at the end."""
    yield
    if not RESULTS:
        return
    notable = [
        f"  {c.kind}/{c.fault}/{c.mode}: {c.outcome}: {c.detail}"
        for c in sorted(RESULTS, key=lambda c: (c.kind, c.fault, c.mode))
        if c.outcome != "survived"
    ]
    text = table(RESULTS) + "\nnot survived:\n" + "\n".join(notable)
    (tmp_path_factory.getbasetemp() / "fault-matrix.txt").write_text(text + "\n")
    REPORTS.append(text)


@contextlib.asynccontextmanager
async def clients(
    source: FaultProxy, target: FaultProxy
) -> AsyncIterator[tuple[RegistryClient, RegistryClient]]:
    """drd's clients for the two proxies, with short read timeouts."""
    creds = Credentials(username=USER, password=SecretStr(PASSWORD))
    async with (
        build_http_client(TLSSettings(), timeout_s=TIMEOUT) as src_http,
        build_http_client(TLSSettings(), timeout_s=TIMEOUT) as dst_http,
    ):
        yield (
            RegistryClient("source", source.url, src_http, RETRY),
            RegistryClient(
                "target",
                target.url,
                dst_http,
                RETRY,
                credentials=creds,
                limits=Limits(chunk_size=CHUNK_SIZE),
            ),
        )


async def push_corpus(source: LocalRegistry, repo: str) -> dict[str, Digest]:
    """An index over two images (an OCI one and a Docker one) under ``v1``."""
    images = [
        make_image(f"{repo}/amd64", layer_size=LAYER, platform="linux/amd64"),
        make_image(f"{repo}/arm64", layer_size=LAYER, platform="linux/arm64", docker=True),
    ]
    index = make_index(images)
    await push_index(source, repo, index, "v1")
    return {"v1": index.digest}


def loud(report: PolicyReport) -> bool:
    """The pass said it failed, and said why."""
    failed = [i for i in report.items if i.outcome == "failed"]
    return bool(report.error) or (bool(failed) and all(i.reason for i in failed))


def judge(
    report: PolicyReport, problems: list[str], expected: dict[str, str], got: dict[str, str]
) -> tuple[str, str]:
    """(outcome, detail) of one cell."""
    if problems:
        return "damage", "; ".join(problems)[:300]
    if report.ok:
        if got != expected:
            return "damage", f"reported ok, target has {got}, source {expected}"
        return "survived", ""
    if not loud(report):
        return "damage", f"failed without a reason: {report.to_json()}"
    reasons = [report.error] if report.error else [i.reason for i in report.items if i.reason]
    return "failed-loudly", reasons[0][:200]


async def run_cell(
    kind: str,
    fault: str,
    mode: str,
    base: str,
    source_registry: LocalRegistry,
    proxies: tuple[FaultProxy, FaultProxy],
    auth_target: LocalRegistry,
    token_server: TokenServer,
) -> Cell:
    """Replicate one corpus under one fault; judge what the target holds."""
    stem = f"{base}{fault}{mode}"  # unique in paths and token scopes alike
    repo = f"{stem}/app"
    source = await push_corpus(source_registry, repo)
    rules = [p.add(FAULTS[fault], kinds=kind, path=stem, times=MODES[mode]) for p in proxies]
    async with clients(*proxies) as (src, dst):
        report = await run_policy(policy_for(repo), src, {"target": dst}, RETRY)
    for proxy, rule in zip(proxies, rules, strict=True):
        proxy.remove(rule)
    # Judge what the registry holds once requests drd gave up on have landed too.
    await asyncio.gather(*(asyncio.to_thread(p.wait_idle, stem) for p in proxies))
    result = await check_target(auth_target, repo, headers=token_server.admin_headers(repo))
    expected = {tag: str(digest) for tag, digest in source.items()}
    outcome, detail = judge(report, result.problems, expected, result.tags)
    if not any(rule.fired for rule in rules):
        outcome, detail = "unfired", f"the {kind} fault never fired; {outcome}: {detail}"
    return Cell(fault, kind, mode, outcome, detail)


async def second_tries(cells: list[Cell], again: Callable[[Cell], Awaitable[Cell]]) -> list[Cell]:
    """
    Give a brief, retryable fault that was not absorbed one more try, in a fresh
    repository: on a loaded machine a request the fault never touched can time out too.
    Damage is never tried again.
    """
    judged = []
    for cell in cells:
        if cell.mode == "brief" and cell.fault in RETRIED and cell.outcome == "failed-loudly":
            second = await again(cell)
            cell = replace(second, detail=f"second try ({second.detail}); first: {cell.detail}")
        judged.append(cell)
    return judged


def assert_row(cells: list[Cell]) -> None:
    """No damage anywhere; every brief fault a retry can absorb was absorbed."""
    damaged = [
        f"{c.fault}/{c.mode}: {c.detail}" for c in cells if c.outcome in ("damage", "unfired")
    ]
    assert not damaged, damaged
    absorbed = [c for c in cells if c.mode == "brief" and c.fault in RETRIED]
    assert all(c.outcome == "survived" for c in absorbed), [
        f"{c.fault}: {c.detail}" for c in absorbed if c.outcome != "survived"
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_fault_row(
    kind: str,
    source_registry: LocalRegistry,
    source_proxy: FaultProxy,
    target_proxy: FaultProxy,
    auth_target: LocalRegistry,
    token_server: TokenServer,
    repo: str,
) -> None:
    """
    Under every fault on this kind of request, a pass either completes or fails its
    items with a reason, and the target never holds a tag over missing or corrupt
    content. Brief transport faults and 5xx/429 answers are absorbed by retries.
    """
    for proxy in (source_proxy, target_proxy):
        proxy.clear()
    base = repo.partition("/")[0]
    cells = await asyncio.gather(
        *(
            run_cell(
                kind,
                fault,
                mode,
                base,
                source_registry,
                (source_proxy, target_proxy),
                auth_target,
                token_server,
            )
            for fault in FAULTS
            for mode in MODES
        )
    )

    async def again(cell: Cell) -> Cell:
        proxies = (source_proxy, target_proxy)
        args = (source_registry, proxies, auth_target, token_server)
        return await run_cell(kind, cell.fault, cell.mode, f"{base}x", *args)

    cells = await second_tries(cells, again)
    RESULTS.extend(cells)
    assert_row(cells)


async def test_lasting_fault_is_reported_and_counted(
    source_registry: LocalRegistry,
    source_proxy: FaultProxy,
    target_proxy: FaultProxy,
    auth_target: LocalRegistry,
    token_server: TokenServer,
    repo: str,
) -> None:
    """
    A target that keeps answering 503 to manifest PUTs fails the item with that reason,
    counts it in ``drd_replication_errors_total``, and leaves no tag behind.
    """
    stem = repo.partition("/")[0]
    await push_corpus(source_registry, repo)
    rule = target_proxy.add(Fault.http(503), kinds="manifest_put", path=stem)
    async with clients(source_proxy, target_proxy) as (src, dst):
        report = await run_policy(policy_for(repo), src, {"target": dst}, RETRY)
    target_proxy.remove(rule)

    assert [(i.tag, i.outcome, i.error) for i in report.items] == [
        ("v1", "failed", "RegistryUnavailable")
    ]
    assert "answered 503" in report.items[0].reason
    puts = Counter(s.path for s in target_proxy.requests("manifest_put", path=stem))
    # The retry budget: three tries for the PUT that failed first, never more for any
    # (its sibling's retries stop when the item fails).
    assert rule.fired == sum(puts.values())
    assert max(puts.values()) == 3
    registry = CollectorRegistry()
    Metrics(registry).record_replication(report, full=True)
    errors = registry.get_sample_value(
        "drd_replication_errors_total",
        {"policy": "test", "target": "target", "reason": "RegistryUnavailable"},
    )
    assert errors == 1.0
    walked = await assert_target_consistent(
        auth_target, repo, headers=token_server.admin_headers(repo)
    )
    assert walked.tags == {}


def test_lasting_fault_exits_1_from_the_cli(
    tmp_path: Path,
    source_registry: LocalRegistry,
    source_proxy: FaultProxy,
    target_proxy: FaultProxy,
    auth_target: LocalRegistry,
    token_server: TokenServer,
    repo: str,
) -> None:
    """`drd replicate` under a lasting blob GET fault exits 1 and says which item failed."""
    stem = repo.partition("/")[0]
    asyncio.run(push_corpus(source_registry, repo))
    (tmp_path / "password").write_text(PASSWORD)
    config = write_config(
        tmp_path / "drd.toml",
        endpoints={
            "src": {"url": source_proxy.url, "timeout": TIMEOUT},
            "dst": {
                "url": target_proxy.url,
                "username": USER,
                "password_file": str(tmp_path / "password"),
                "timeout": TIMEOUT,
            },
        },
        tables={"retry": FAST_RETRY, "daemon": {"state_dir": str(tmp_path / "state")}},
        replication=[{"name": "p", "source": "src", "targets": ["dst"], "repositories": [repo]}],
    )
    rule = source_proxy.add(Fault.reset(), kinds="blob_get", path=stem)
    try:
        result = run_drd("replicate", "--config", config, "--json")
    finally:
        source_proxy.remove(rule)

    assert result.returncode == 1, result.stderr.decode()
    [policy] = json.loads(result.stdout)["policies"]
    assert [(i["tag"], i["outcome"]) for i in policy["items"]] == [("v1", "failed")]
    assert "Connection reset by peer" in policy["items"][0]["reason"]
    asyncio.run(
        assert_target_consistent(auth_target, repo, headers=token_server.admin_headers(repo))
    )


# ---------------------------------------------------------------------------
# S3: snapshots through a faulty store


async def snapshot_cell(
    kind: str,
    fault: str,
    mode: str,
    bucket: str,
    repo: str,
    source: LocalRegistry,
    s3: FaultProxy,
    *,
    attempt: str = "",
) -> Cell:
    """
    Snapshot *repo* (blobs included) through the faulty store, then load and verify it
    through the same store; then judge what the store really holds, read directly.
    """
    prefix = f"c{fault}{mode}{attempt}"
    rule = s3.add(FAULTS[fault], kinds=kind, path=f"{bucket}.*{prefix}", times=MODES[mode])
    read = ""
    async with (
        open_client(source, "src", retry=RETRY) as client,
        s3_store(s3.url, bucket, prefix, read_timeout=TIMEOUT, retry=RETRY) as store,
    ):
        report = await run_snapshot(
            client,
            store,
            source_name="src",
            repositories=RepoFilter((repo,)),
            blobs=False,
            retry=RETRY,
        )
        if report.snapshot is not None and kind == "s3_get":
            # Reading back through the fault is what a get fault is about.
            read = await read_back(store, report.snapshot.id)
    s3.remove(rule)
    await asyncio.to_thread(s3.wait_idle, f"{bucket}.*{prefix}")
    assert s3.upstream is not None
    async with s3_store(s3.upstream, bucket, prefix) as direct:
        outcome, detail = await judge_snapshot(report, read, direct)
    if not rule.fired:
        outcome, detail = "unfired", f"the {kind} fault never fired; {outcome}: {detail}"
    return Cell(fault, kind, mode, outcome, detail)


async def judge_snapshot(report: SnapshotReport, read: str, direct: S3Store) -> tuple[str, str]:
    """Every snapshot listed must verify; "ok" must mean listed; a failure must say why."""
    listed = [entry.id for entry in await list_snapshots(direct, "src")]
    for snapshot_id in listed:
        if problem := await read_back(direct, snapshot_id):
            return "damage", f"listed snapshot {snapshot_id}: {problem}"
    if report.snapshot is not None and report.snapshot.id not in listed:
        return "damage", "committed, but not listed"
    if report.ok:
        return ("failed-loudly", read[:200]) if read else ("survived", "")
    if report.error:
        return "failed-loudly", report.error[:200]
    if report.skipped:
        return "failed-loudly", f"skipped: {report.skipped[0]}"[:200]
    return "damage", "failed without a reason"


@pytest.mark.parametrize("kind", S3_KINDS)
async def test_s3_fault_row(
    kind: str,
    source_registry: LocalRegistry,
    s3_proxy: FaultProxy,
    bucket: str,
    repo: str,
) -> None:
    """
    Under every fault on this kind of S3 request, a snapshot either commits and reads
    back verified, or fails with a reason; no snapshot is ever listed that does not
    verify. Brief faults are absorbed by retries.
    """
    await push_corpus(source_registry, repo)
    s3_proxy.clear()
    cells = await asyncio.gather(
        *(
            snapshot_cell(kind, fault, mode, bucket, repo, source_registry, s3_proxy)
            for fault in FAULTS
            for mode in MODES
        )
    )

    async def again(cell: Cell) -> Cell:
        args = (bucket, repo, source_registry, s3_proxy)
        return await snapshot_cell(kind, cell.fault, cell.mode, *args, attempt="x")

    cells = await second_tries(cells, again)
    RESULTS.extend(cells)
    assert_row(cells)
