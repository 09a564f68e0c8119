"""The benchmark harness: deterministic corpora, honest counting, a run that checks itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.corpus import Corpus
from bench.measure import verify
from bench.report import render
from bench.run import drd_config
from bench.scale import generate, repo_name
from drd.oci.digest import Digest
from tests.servers import REGISTRY_BINARY, LocalRegistry

ROOT = Path(__file__).resolve().parents[2]


def test_a_corpus_is_the_same_bytes_every_time() -> None:
    """Two builds of one corpus at one scale name the same digests for the same tags."""
    first, second = Corpus("small", 0.01), Corpus("small", 0.01)
    assert first.tags == second.tags
    assert len(first.tags) == 65
    assert len(first.release) == 50


def test_the_incremental_step_adds_five_and_moves_two_percent() -> None:
    """many-tags' step: 100 new tags, 40 moved ones, and only new blobs in the change."""
    corpus = Corpus("many-tags", 1.0)
    before = dict(corpus.tags)
    change = corpus.evolve()

    new = set(change.tags) - set(before)
    moved = {key for key in change.tags if key in before and before[key] != change.tags[key]}
    assert (len(new), len(moved), change.moved) == (100, 40, 40)
    assert not set(change.blobs) & set(corpus.initial.blobs)


def test_the_raw_plan_copies_each_blob_once_and_mounts_the_rest() -> None:
    """Every unique blob appears once, homed in its first repository, mounted in the others."""
    corpus = Corpus("big-blobs", 0.001)
    plan = corpus.initial.raw_plan("http://127.0.0.1:1", "http://127.0.0.1:2")
    digests = [b["digest"] for b in plan["blobs"]]
    assert len(digests) == len(set(digests))
    shared = [b for b in plan["blobs"] if len(b["repos"]) == 3]
    assert len(shared) == 1, "the common layer lives in all three repositories"
    assert [len(level) for level in plan["levels"]] == [9, 0]
    assert len(plan["tags"]) == 9


def test_the_report_states_ratios_against_skopeo_and_raw() -> None:
    """A drd row twice as fast as skopeo and at 80 % of raw reads as 2.00x and 80%."""

    def row(tool: str, wall: float) -> dict[str, object]:
        return {
            "corpus": "small",
            "phase": "cold",
            "tool": tool,
            "wall_s": wall,
            "cpu_s": 1.0,
            "rss_mib": 50.0,
            "requests": 100,
            "tags": 10,
            "changed_tags": 0,
            "bytes": 1024 * 1024,
            "verified": True,
            "failed": "",
            "extra": {"duration_s": 4.0},
        }

    text = render(
        {
            "machine": {"cpu": "test"},
            "versions": {},
            "scale": 1.0,
            "rows": [row("raw", 4.0), row("skopeo", 10.0), row("drd", 5.0)],
        }
    )
    assert "| cold | 2.00x | n/a | 80% | 1.00 | 1.00 | 4.00 | 2.5x |" in text


@pytest.mark.parametrize(
    ("estimate", "verdict"),
    [
        (3.3, "estimate/measured 1.10, target within ±25%: met"),
        (2.0, "0.67, target within ±25%: **not met**"),
    ],
)
def test_the_report_sets_the_rto_estimate_against_restore_plus_verify(
    estimate: float, verdict: str
) -> None:
    """The drill's estimate over `drd restore` + the verifying pull, judged at ±25 %."""

    def row(phase: str, tool: str, wall: float, extra: dict[str, object]) -> dict[str, object]:
        return {
            "corpus": "small",
            "phase": phase,
            "tool": tool,
            "wall_s": wall,
            "cpu_s": 1.0,
            "rss_mib": 50.0,
            "requests": 100,
            "tags": 10,
            "changed_tags": 0,
            "bytes": 1024 * 1024,
            "verified": True,
            "failed": "",
            "extra": extra,
        }

    rto = {"estimate_s": estimate, "fixed_s": 0.6, "startup_s": 0.5}
    drill = row("drill", "drd", 4.0, {"phases": {"pull and re-hash": 1.0}, "rto": rto})
    text = render(
        {
            "machine": {"cpu": "test"},
            "versions": {},
            "scale": 1.0,
            "rows": [
                row("cold", "drd", 5.0, {}),
                drill,
                row("restore", "drd", 2.5, {}),
                row("restore", "verify", 0.5, {}),
            ],
        }
    )
    assert f"the drill estimated {estimate:.2f} s (fixed 0.60 s, start-up 0.50 s)" in text
    assert "2.50 s and a pull and re-hash of every blob from it 0.50 s, 3.00 s in all" in text
    assert verdict in text


@pytest.mark.slow
@pytest.mark.skopeo
@pytest.mark.timeout(600)
def test_a_smoke_run_verifies_every_tool(tmp_path: Path) -> None:
    """A tiny run of every tool through every phase ends with the same digests everywhere."""
    out = tmp_path / "results.json"
    argv = [sys.executable, "-m", "bench", "--corpus", "small", "--scale", "0.01"]
    proc = subprocess.run(
        [*argv, "--workdir", str(tmp_path / "work"), "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode()[-3000:] + proc.stderr.decode()[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["tool"] for r in rows} >= {
        *("raw", "skopeo", "skopeo-yaml", "drd", "drd-stateless", "floor", "drd-daemon")
    }
    assert all(r["verified"] and not r["failed"] for r in rows)
    assert {r["tool"] for r in rows if r["phase"] == "restore"} == {"drd", "verify"}
    warm = {r["tool"]: r for r in rows if r["phase"] == "warm"}
    assert warm["drd"]["requests"] < warm["drd-stateless"]["requests"]
    # The no-op floor: one source HEAD per tag, and nothing else.
    assert warm["raw"]["requests_by_method"] == {"src HEAD": warm["raw"]["tags"]}
    # The whole-process floor: a tags list per repository, then one HEAD per tag.
    repos = 5
    floor = warm["floor"]
    assert floor["requests_by_method"] == {"src GET": repos, "src HEAD": floor["tags"]}
    assert floor["extra"] == {"repositories": repos, "tags": floor["tags"], "heads": floor["tags"]}
    assert warm["drd-daemon"]["extra"]["skipped"] == warm["drd"]["tags"]


def test_the_scale_corpus_is_a_registry_distribution_serves(tmp_path: Path) -> None:
    """
    The generated layout answers like a pushed registry: tags lists, manifests by tag
    and digest, linked blobs; the floor process lists and HEADs every tag of it.
    """
    tags = generate(tmp_path / "src" / "data", repos=3, tags_per_repo=4)
    assert len(tags) == 12
    with LocalRegistry.start(REGISTRY_BINARY, tmp_path / "src") as registry:
        problems = asyncio.run(verify(registry.url, _expected(tags)))
        assert problems == []
        log = tmp_path / "src" / "registry.log"
        before = log.stat().st_size
        proc = subprocess.run(
            [sys.executable, "-m", "bench.floor", registry.url, repo_name(0), repo_name(2)],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert json.loads(proc.stdout) == {"repositories": 2, "tags": 8, "heads": 8}
        time.sleep(0.3)  # distribution logs a request just after answering it
        with log.open("rb") as f:
            f.seek(before)
            assert f.read().count(b'"HEAD /v2/scale/r') == 8


def test_the_daemons_pass_in_process_is_a_no_op_over_a_linked_copy(tmp_path: Path) -> None:
    """bench.inprocess runs its passes over one set of clients; each skips every tag."""
    tags = generate(tmp_path / "src" / "data", repos=2, tags_per_repo=3)
    (tmp_path / "dst").mkdir()
    subprocess.run(["cp", "-al", str(tmp_path / "src" / "data"), str(tmp_path / "dst")], check=True)
    with (
        LocalRegistry.start(REGISTRY_BINARY, tmp_path / "src") as source,
        LocalRegistry.start(REGISTRY_BINARY, tmp_path / "dst") as target,
    ):
        (tmp_path / "state").mkdir()
        config = tmp_path / "drd.toml"
        repos = [repo_name(0), repo_name(1)]
        config.write_text(drd_config(source, target, repos, tmp_path / "state"))
        proc = subprocess.run(
            [sys.executable, "-m", "bench.inprocess", str(config), "3"],
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    document = json.loads(proc.stdout)
    assert len(document["passes_s"]) == 3
    assert [run[0]["skipped"] for run in document["reports"]] == [len(tags)] * 3
    assert [run[0]["copied"] for run in document["reports"]] == [0, 0, 0]


def _expected(tags: dict[str, str]) -> dict[tuple[str, str], Digest]:
    return {tuple(key.split(":")): Digest.parse(d) for key, d in tags.items()}  # type: ignore[misc]
