"""
runbooks/ against alerts.yml and the CLI: every alert has its runbook and every
runbook its alert; every `drd …` command quoted in any runbook still parses.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; types-PyYAML is not a dependency

from drd.cli import UsageError, build_parser

RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"
ALERT_RUNBOOK = re.compile(r"^Drd[A-Z][A-Za-z0-9]*\.md$")  # procedures are lower-kebab-case
SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation"]
# Sample values for the placeholders runbooks use in commands.
SAMPLES = {
    "policy": "prod",
    "endpoint": "dr",
    "target": "dr",
    "source": "primary",
    "id": "latest",
    "snapshot": "latest",
    "reference": "registry.example.com/team-a/app:v1.2.3",
    "repository": "team-a/app",
    "tag": "v1.2.3",
    "dir": "/tmp/drd-drill",
}


def alert_rules() -> dict[str, dict[str, object]]:
    document = yaml.safe_load((RUNBOOKS / "alerts.yml").read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def alert_runbooks() -> dict[str, Path]:
    return {p.stem: p for p in RUNBOOKS.glob("*.md") if ALERT_RUNBOOK.match(p.name)}


def quoted_commands(text: str) -> list[str]:
    """Every `drd …` command in inline code or code blocks, cut at a pipe or `&&`."""
    spans = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.DOTALL)
    lines = [line for block in spans for line in block.splitlines()]
    lines += re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    commands = []
    for line in lines:
        command = re.split(r"\s(?:\||&&|;|>)\s", line.strip().removeprefix("$ "))[0].strip()
        if command.startswith("drd "):
            commands.append(command)
    return commands


def substitute(command: str) -> str:
    """Replace ``<placeholder>`` by a sample value (its name decides which)."""

    def sample(match: re.Match[str]) -> str:
        name = match.group(1).lower().replace("-", "_")
        for key, value in SAMPLES.items():
            if key in name:
                return value
        return "sample"

    return re.sub(r"<([A-Za-z_-]+)>", sample, command)


def test_every_alert_has_a_runbook_named_after_it() -> None:
    """Each rule's runbook_url is runbooks/<alert>.md, and that file exists."""
    rules = alert_rules()
    assert rules
    for name, rule in rules.items():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"runbooks/{name}.md"
        assert (RUNBOOKS / f"{name}.md").is_file(), name


def test_every_alert_runbook_has_an_alert() -> None:
    """No runbook named like an alert is left without its rule."""
    assert set(alert_runbooks()) == set(alert_rules())


@pytest.mark.parametrize("name", sorted(alert_runbooks()))
def test_alert_runbooks_follow_the_template(name: str) -> None:
    """Title is the alert; Meaning, Impact, Diagnosis, Mitigation in order; diagnosis is exact."""
    text = alert_runbooks()[name].read_text()
    assert text.splitlines()[0] == f"# {name}"
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings == SECTIONS
    diagnosis = text.split("## Diagnosis", 1)[1].split("## Mitigation", 1)[0]
    assert quoted_commands(diagnosis), f"{name}: Diagnosis quotes no drd command"
    assert re.search(r"`[^`]*\bdrd_[a-z_]+[^`]*`", diagnosis), f"{name}: Diagnosis has no PromQL"


def every_command() -> list[tuple[str, str]]:
    found = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        found += [(path.name, command) for command in quoted_commands(path.read_text())]
    return found


def test_runbooks_quote_commands() -> None:
    """The extraction finds the commands runbooks quote (guards the check below)."""
    commands = [command for _, command in every_command()]
    assert "drd status" in commands
    assert any(c.startswith("drd replicate --policy ") for c in commands)


@pytest.mark.parametrize(
    ("runbook", "command"), [pytest.param(f, c, id=f"{f}: {c}") for f, c in every_command()]
)
def test_quoted_commands_parse(runbook: str, command: str) -> None:
    """Every `drd …` command in a runbook parses with today's command line."""
    argv = shlex.split(substitute(command))[1:]
    try:
        build_parser().parse_args(argv)
    except UsageError as exc:
        pytest.fail(f"{runbook}: `{command}` does not parse: {exc}")
