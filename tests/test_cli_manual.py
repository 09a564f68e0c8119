"""The CLI as a manual: help for every command, options anywhere, config errors, completion."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from drd.cli import COMMANDS, UsageError, build_parser, main, parse
from drd.manual import EXAMPLES
from tests.images import make_image, push_image
from tests.servers import LocalRegistry
from tests.test_cli import drd, write_config


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser(list(argv)).parse_args(list(argv))
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_drd_help_lists_every_command_with_its_line_lookup_order_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`drd --help` names each command with its one-line description, and the manual's ends."""
    text = help_of(capsys, "--help")
    flat = " ".join(text.split())
    for name, (_, line) in COMMANDS.items():
        assert f"{name} {' '.join(line.split())}" in flat, name
    assert "$DRD_CONFIG" in text
    assert "/etc/drd/drd.toml" in text
    for code in ("0", "1", "2", "3", "69", "70", "78", "130"):
        assert f"\n  {code} " in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_description_and_examples_that_parse(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """`drd NAME --help` describes the command and shows examples; each example parses."""
    text = help_of(capsys, name, "--help")
    assert COMMANDS[name][1][1:] in " ".join(text.split())
    assert "examples:\n  drd " in text
    assert "exit codes:" in text
    examples = [line for line in EXAMPLES[name] if line.startswith("drd ")]
    assert examples
    for line in examples:
        argv = shlex.split(line.split("#")[0].split("|")[0].split(">")[0])[1:]
        build_parser(argv).parse_args(argv)


@pytest.mark.parametrize("action", ["create", "list", "show", "diff", "verify", "prune"])
def test_every_snapshot_action_has_a_description_and_examples_that_parse(
    capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """`drd snapshot ACTION --help` describes the action and shows examples that parse."""
    text = help_of(capsys, "snapshot", action, "--help")
    assert text.split("\n\n")[1].strip().endswith(".")
    assert "examples:\n  drd snapshot " + action in text
    for line in EXAMPLES[f"snapshot {action}"]:
        argv = shlex.split(line)[1:]
        build_parser(argv).parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.toml", "--json", "status"],
        ["status", "--config", "x.toml", "--json"],
        ["--config", "y.toml", "status", "--config", "x.toml", "--json"],
        ["--json", "snapshot", "--config", "x.toml", "list"],
        ["snapshot", "list", "--config", "x.toml", "--json"],
    ],
    ids=["before", "after", "after-wins", "mixed", "after-the-action"],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    """--config and --json are accepted before the command, after it, or after its action."""
    args = parse(argv)
    assert (args.config, args.json, args.log_level) == (Path("x.toml"), True, None)


def test_defaults_without_global_options() -> None:
    """No global option given: the defaults, not argparse's SUPPRESS."""
    args = parse(["status"])
    assert (args.config, args.json, args.log_level) == (None, False, None)


def test_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`--log-level loud` exits 2 naming the choices; the level is case-insensitive."""
    assert main(["--log-level", "loud", "version"]) == 2
    assert "invalid choice: 'loud'" in capsys.readouterr().err
    assert parse(["version", "--log-level", "DEBUG"]).log_level == "debug"
    with pytest.raises(UsageError):
        parse(["status", "--log-level", "verbose"])


MINIMAL = """version = 1
[endpoints.src]
url = "http://127.0.0.1:5000"
[endpoints.dst]
url = "http://127.0.0.1:5001"
"""
POLICY = '[[replication]]\nname = "prod"\nsource = "src"\ntargets = ["dst"]\n'


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            POLICY + "tagz = []\n",
            "replication[prod].tagz",
            "unknown key; did you mean `tags`?",
        ),
        (
            '[endpoints.ci]\nurl = "http://127.0.0.1:5002"\nusername = "u"\npasword_file = "p"\n',
            "endpoints.ci.pasword_file",
            "unknown key; did you mean `password_file`?",
        ),
        (
            POLICY + 'targets_all = ["dst"]\n',
            "replication[prod].targets_all",
            "unknown key; did you mean `targets`?",
        ),
        (
            POLICY.replace('"prod"', '"p-1"') + "colour = 1\n",
            "replication[p-1].colour",
            "unknown key",
        ),
        (
            '[endpoints.dr-east]\nurl = "http://127.0.0.1:5002"\nusername = "u"\n'
            'password = "hunter2"\n',
            "endpoints.dr-east.password",
            "secrets are not read from the config file:"
            " use password_file or DRD_ENDPOINT_DR_EAST_PASSWORD",
        ),
        (
            '[endpoints.ci]\nurl = "http://127.0.0.1:5002"\ntoken = "hunter2"\n',
            "endpoints.ci.token",
            "secrets are not read from the config file: use token_file or DRD_ENDPOINT_CI_TOKEN",
        ),
        (
            '[daemon]\nwebhook_token = "hunter2"\n',
            "daemon.webhook_token",
            "secrets are not read from the config file: use webhook_token_file",
        ),
    ],
    ids=["policy-by-name", "near-miss", "prefix", "no-near-key", "password", "token", "webhook"],
)
def test_config_error_wording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, path: str, message: str
) -> None:
    """Each bad key is named by its path (policies by name) with what to write instead."""
    config = tmp_path / "drd.toml"
    config.write_text(MINIMAL + body)

    assert main(["config", "check", "--config", str(config)]) == 78
    err = capsys.readouterr().err
    assert f"  {path}: {message}\n" in err
    assert "hunter2" not in err
    assert main(["config", "check", "--config", str(config), "--json"]) == 78
    out = capsys.readouterr().out
    assert {"path": path, "message": message} in json.loads(out)["error"]["problems"]
    assert "hunter2" not in out


@pytest.mark.parametrize(
    ("text", "reason"),
    [(None, "config file does not exist"), ("version = 1\n[endpoints.a\n", "invalid TOML: ")],
    ids=["missing", "toml-syntax"],
)
def test_file_level_config_errors_are_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, reason: str
) -> None:
    """A missing file or a TOML syntax error is one line on stderr, or one JSON document."""
    config = tmp_path / "drd.toml"
    if text is not None:
        config.write_text(text)

    assert main(["replicate", "--config", str(config)]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"drd: invalid configuration: {config}: {reason}")
    assert main(["--json", "replicate", "--config", str(config)]) == 78
    captured = capsys.readouterr()
    assert captured.err == ""
    error = json.loads(captured.out)["error"]
    assert error["kind"] == "config"
    assert error["message"].startswith(f"{config}: {reason}")


def test_config_check_ends_with_one_summary_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid config prints one line of counts; --show prints the resolved dump before it."""
    config = tmp_path / "drd.toml"
    config.write_text(MINIMAL + POLICY)

    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    expected = (
        "configuration OK: 2 endpoints, 1 replication policy, 0 trust policies, 0 snapshot stores\n"
    )
    assert out == expected
    assert main(["--config", str(config), "config", "check", "--show"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(expected)
    assert json.loads(out.removesuffix(expected))["endpoints"]["src"]["url"].startswith(
        "http://127.0.0.1:5000"
    )


def test_bash_completion_completes_commands_actions_and_options(tmp_path: Path) -> None:
    """`drd completion bash`, sourced in a real bash, completes commands, actions and options."""
    result = drd("completion", "bash")
    assert result.returncode == 0, result.stderr
    script = tmp_path / "drd.bash"
    script.write_text(result.stdout)
    probe = (
        f"source {shlex.quote(str(script))}\n"
        't() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _drd; echo "${COMPREPLY[*]}"; }\n'
        't drd sn\nt drd --config x.toml snapshot ""\nt drd replicate --d\n'
        't drd --log-level w\nt drd config ""\n'
    )
    out = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.splitlines() == [
        "snapshot",
        "create list show diff verify prune",
        "--dry-run",
        "warning",
        "check",
    ]
    zsh = drd("completion", "zsh")
    assert zsh.stdout.startswith("#compdef drd\n")
    assert "bashcompinit" in zsh.stdout
    assert drd("completion", "fish").returncode == 2


async def test_replicate_prints_only_its_summary_on_stdout_and_logs_on_stderr(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    At the default level a pass prints its summary once, and no log line; --log-level
    info and the config's log_level send JSON log lines to stderr, never to stdout.
    """
    await push_image(source_registry, repo, make_image("cli-logs"), "v1")
    state = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    config = write_config(
        tmp_path / "drd.toml", source_registry.url, target_registry.url, state, repo
    )

    quiet = drd("replicate", "--config", str(config))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("policy p: 1 copied, ")
    assert len(quiet.stdout.splitlines()) == 2  # the summary and its one copied item
    assert quiet.stderr == ""

    loud = drd("--log-level", "info", "replicate", "--config", str(config), "--json")
    assert loud.returncode == 0, loud.stderr
    assert json.loads(loud.stdout)["policies"][0]["summary"]["skipped"] == 1
    events = [json.loads(line)["event"] for line in loud.stderr.splitlines()]
    assert "replicate.run_finished" in events

    config.write_text('log_level = "info"\n' + config.read_text())
    configured = drd("replicate", "--config", str(config))
    assert configured.stdout.startswith("policy p: 0 copied, 1 skipped")
    events = [json.loads(line)["event"] for line in configured.stderr.splitlines()]
    assert "replicate.run_finished" in events
