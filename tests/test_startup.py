"""
Start-up, checked on every test run: what `drd --help`, `drd version` and a `drd replicate`
no-op import, read from ``python -X importtime`` of the real entry point, and that the
garbage collector is back on once start-up is over.

On a small registry a one-shot pass is mostly start-up (bench/RESULTS.md); these checks
keep the modules made lazy for it from creeping back in unnoticed. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from drd import __version__
from tests.images import make_image, push_image
from tests.servers import LocalRegistry

ROOT = Path(__file__).resolve().parents[1]

# Loaded only where used: metrics by the daemon, explanations by `drd config check`,
# deletions by a policy that propagates them, trust by a policy that requires signatures.
LAZY = (
    "prometheus_client",
    "drd.metrics",
    "drd.config.explain",
    "drd.replicate.deletions",
    "drd.trust",
    "cryptography",
)
# Nothing a command line that runs no pass needs: the config models, HTTP, engines.
ENGINES = (
    "pydantic",
    "pydantic_settings",
    "aiohttp",
    "drd.config",
    "drd.registry",
    "drd.replicate",
    "drd.resources",
    "drd.state",
)


def imports_of(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m drd ARGS``; the process and every module it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "drd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    names = {
        line.rpartition("|")[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "[us]" not in line
    }
    assert "drd.cli" in names, result.stderr[-2000:]  # the report is there to be read
    return result, names


def under(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    """The names that are one of *prefixes* or inside one of them, sorted."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_help_and_version_load_no_config_models_and_no_http() -> None:
    """`drd --help` and `drd version` import neither pydantic, aiohttp nor any engine."""
    for args in (("--help",), ("version",)):
        result, names = imports_of(*args)
        assert result.returncode == 0, result.stderr[-2000:]
        assert under(names, ENGINES + LAZY) == [], args
    result, _ = imports_of("version", "--json")
    assert json.loads(result.stdout) == {"version": __version__}


async def test_a_replicate_no_op_imports_only_what_the_pass_uses(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    A whole `drd replicate` (a copy, then the no-op pass after it) loads no metrics, no
    config explanations, no deletions, no trust. `drd config check --show` still prints
    the resolved configuration (its explanation is loaded when asked for), and an
    invalid configuration still fails the pass with exit 78 and the field's path.
    """
    await push_image(source_registry, repo, make_image("startup"), "v1")
    config = tmp_path / "drd.toml"
    config.write_text(
        f'version = 1\n[endpoints.src]\nurl = "{source_registry.url}"\n'
        f'[endpoints.dst]\nurl = "{target_registry.url}"\n'
        f'[[replication]]\nname = "p"\nsource = "src"\ntargets = ["dst"]\n'
        f'repositories = ["{repo}"]\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    )
    outcomes = []
    for _ in range(2):
        result, names = imports_of("replicate", "--config", str(config), "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        (policy,) = json.loads(result.stdout)["policies"]
        outcomes.append([(i["tag"], i["outcome"]) for i in policy["items"]])
        assert {"drd.replicate.runner", "drd.config.settings", "aiohttp"} <= names
        assert under(names, LAZY) == []
    assert outcomes == [[("v1", "copied")], [("v1", "skipped")]]

    result, names = imports_of("config", "check", "--show", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    shown = json.loads(result.stdout)
    assert shown["config"]["replication"][0]["repositories"] == [repo]
    assert shown["summary"].startswith("configuration OK: 2 endpoints, 1 replication policy")
    assert "drd.config.explain" in names

    config.write_text(config.read_text().replace('targets = ["dst"]', 'targets = ["nowhere"]'))
    result, names = imports_of("replicate", "--config", str(config))
    assert result.returncode == 78
    assert "replication[p].targets" in result.stderr
    assert "nowhere" in result.stderr
    assert under(names, LAZY) == []


def test_the_collector_is_on_once_start_up_is_over() -> None:
    """
    The console entry point imports with the collector off (`drd.__main__`); by the time a
    command runs it is on again, with start-up's objects frozen out of its generations.
    """
    code = (
        "import gc, json\n"
        "import drd.__main__\n"
        "during = gc.isenabled()\n"
        "from drd.cli import main\n"
        "code = main(['version'])\n"
        "print(json.dumps([during, gc.isenabled(), gc.get_freeze_count() > 0, code]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [False, True, True, 0]
