"""
The incident procedures in runbooks/: each page exists and has its parts (who declares,
how writes are frozen, how to verify, who approves the return to service), and every
`drd …` command quoted anywhere in runbooks/ is accepted by the command line as it is.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from drd.cli import UsageError, build_parser

RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"
PROCEDURES = (
    "total-registry-loss",
    "partial-corruption",
    "accidental-deletion-or-overwrite",
    "credential-compromise",
    "region-failover-and-failback",
    "failed-drill",
)
# What each placeholder a runbook writes as <name> stands for in a real command.
SAMPLES = {
    "standby": "dr",
    "endpoint": "primary",
    "fresh-endpoint": "rebuilt",
    "snapshot-id": "20240501T093000.000000Z",
    "id": "20240501T093000.000000Z",
    "repository": "team-a/app",
    "tag": "^v1\\.2\\.3$",
    "reference": "registry.example.com/team-a/app:v1.2.3",
    "policy": "prod",
    "dir": "/var/lib/drd/reports",
    "source": "primary",
    "target": "dr",
}
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", flags=re.DOTALL)
_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_-]*)>")


def commands_in(text: str) -> list[str]:
    """Every `drd …` command in code blocks and inline code, cut at a pipe, `&&` or `;`."""
    lines = [line for block in _FENCE.findall(text) for line in block.splitlines()]
    lines += _INLINE.findall(_FENCE.sub("", text))
    found = []
    for line in lines:
        command = re.split(r"\s(?:\||&&|;|>)\s", line.strip().removeprefix("$ "))[0].strip()
        if command.startswith("drd "):
            found.append(command)
    return found


def concrete(command: str) -> str:
    """*command* with each <placeholder> replaced by a realistic value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        if name not in SAMPLES:
            raise AssertionError(f"no sample value for <{name}> in {command!r}")
        return shlex.quote(SAMPLES[name])

    return _PLACEHOLDER.sub(value, command)


def every_command() -> list[tuple[str, str]]:
    return [
        (path.name, command)
        for path in sorted(RUNBOOKS.glob("*.md"))
        for command in commands_in(path.read_text())
    ]


@pytest.mark.parametrize("name", PROCEDURES)
def test_each_procedure_says_who_declares_freezes_verifies_and_approves(name: str) -> None:
    """A procedure names its roles, freezes writes with distribution's read-only mode,
    quotes drd commands, says how to verify, and who approves the return to service."""
    text = (RUNBOOKS / f"{name}.md").read_text()
    lowered = text.lower()

    assert text.startswith("# ")
    assert "declares" in lowered
    assert "approves" in lowered
    assert "read-only" in lowered
    assert re.search(r"readonly:\s*\n\s*enabled: true|readonly\.enabled: true", text), name
    assert re.search(r"^## .*verify", text, flags=re.MULTILINE | re.IGNORECASE), name
    assert len(commands_in(text)) >= 4, name


def test_procedures_use_the_commands_their_situation_needs() -> None:
    """Loss restores or fails over; failover pages fail back; a failed drill replays one."""
    uses = {
        name: " ".join(commands_in((RUNBOOKS / f"{name}.md").read_text())) for name in PROCEDURES
    }

    assert "drd restore --snapshot latest --to" in uses["total-registry-loss"]
    assert "drd failover --to <standby>" in uses["total-registry-loss"]
    assert "drd failover --to <standby> --dry-run" in uses["region-failover-and-failback"]
    assert "drd failback" in uses["region-failover-and-failback"]
    assert "--tag <tag>" in uses["accidental-deletion-or-overwrite"]
    assert "drd snapshot diff" in uses["credential-compromise"]
    assert "drd drill --snapshot <snapshot-id>" in uses["failed-drill"]
    assert "drd snapshot verify" in uses["partial-corruption"]


def test_the_extraction_sees_blocks_and_inline_code() -> None:
    """The extraction finds commands in both forms, and cuts them at a pipe."""
    text = "Run `drd status` first.\n\n```\n$ drd drill --json | jq .ok\nstorage:\n```\n"
    assert commands_in(text) == ["drd drill --json", "drd status"]


@pytest.mark.parametrize(
    ("runbook", "command"), [pytest.param(f, c, id=f"{f}: {c}") for f, c in every_command()]
)
def test_every_quoted_command_parses(runbook: str, command: str) -> None:
    """Each `drd …` command in any runbook is accepted by `build_parser().parse_args`."""
    argv = shlex.split(concrete(command))[1:]
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        pytest.fail(f"{runbook}: `{command}` does not parse: {exc}")
    assert callable(args.handler)
