"""
Hostile config files through the command line: exit 78, and the message names the field.

Wrong types, unknown keys, huge values, deep nesting, binary garbage, oversized files
and secret files that are not files. `drd config check` and `drd replicate` are run
in-process through `drd.cli.main`; one case also runs as a subprocess.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drd.cli import main
from tests.reliability.cli import run_drd
from tests.security.conftest import HOSTILE_INPUTS

BASE = """version = 1
[endpoints.src]
url = "http://127.0.0.1:5000"
{src}
[endpoints.dst]
url = "http://127.0.0.1:5001"
[[replication]]
name = "p"
source = "src"
targets = ["dst"]
{rule}
"""


def config_with(tmp_path: Path, src: str = "", rule: str = "") -> Path:
    path = tmp_path / "drd.toml"
    path.write_text(BASE.format(src=src, rule=rule))
    return path


CASES = [
    pytest.param('concurrency = "many"', "", "endpoints.src.concurrency", id="wrong-type"),
    pytest.param('insecure = "maybe"', "", "endpoints.src.insecure", id="string-for-bool"),
    pytest.param('pasword_file = "/x"', "", "endpoints.src.pasword_file", id="unknown-key"),
    pytest.param("concurrency = 1000000000", "", "endpoints.src.concurrency", id="huge-int"),
    pytest.param("timeout = 1e300", "", "endpoints.src.timeout", id="huge-float"),
    pytest.param("timeout = nan", "", "endpoints.src.timeout", id="nan"),
    pytest.param("requests_per_second = -5", "", "endpoints.src.requests_per_second", id="neg"),
    pytest.param(f'region = "{"r" * 100_000}"', "", "endpoints.src.region", id="huge-string"),
    pytest.param("", 'interval = "9999999999d"', "replication[p].interval", id="huge-duration"),
    pytest.param("", 'interval = "-5m"', "replication[p].interval", id="negative-duration"),
    pytest.param("", "tags = ['[unclosed']", "replication[p].tags[0]", id="bad-regex"),
    pytest.param("", f"tags = ['{'a' * 5000}']", "replication[p].tags[0]", id="huge-regex"),
    pytest.param("", 'repositories = ["a b"]', "replication[p].repositories[0]", id="bad-glob"),
    pytest.param("", "concurrency = [1, 2]", "replication[p].concurrency", id="list-for-int"),
    pytest.param("", 'targets2 = ["dst"]', "replication[p].targets2", id="unknown-rule-key"),
]


@pytest.mark.parametrize(("src", "rule", "field"), CASES)
@pytest.mark.parametrize("command", ["config", "replicate"])
def test_a_bad_value_exits_78_naming_the_field(
    command: str,
    src: str,
    rule: str,
    field: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every command refuses the config with exit 78 and the dotted path of the culprit."""
    config = config_with(tmp_path, src, rule)
    args = ["config", "check"] if command == "config" else ["replicate"]
    HOSTILE_INPUTS.append(f"config {field}")

    assert main([*args, "--config", str(config)]) == 78
    err = capsys.readouterr().err
    assert field in err, err
    assert len(err) < 20_000  # the message names the field; it does not echo a huge value


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"\xff\xfe\x00garbage\x00" * 100, "not valid UTF-8", id="binary"),
        pytest.param(b"version = 1\n[endpoints\n", "invalid TOML", id="broken-toml"),
        pytest.param(b"x = " + b"[" * 50_000 + b"]" * 50_000, "invalid TOML", id="deep-arrays"),
        pytest.param(
            b"version = 1\na = " + b"{b = " * 2_000 + b"1" + b"}" * 2_000,
            "nested too deeply",
            id="deep-tables",
        ),
    ],
)
def test_an_unparseable_config_exits_78(
    content: bytes, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage, broken and absurdly nested TOML is a config error, not a crash."""
    path = tmp_path / "drd.toml"
    path.write_bytes(content)
    HOSTILE_INPUTS.append(f"config file: {reason}")
    assert main(["config", "check", "--config", str(path)]) == 78
    assert reason in capsys.readouterr().err


def test_an_oversized_config_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config file over 16 MiB is refused without being parsed."""
    path = tmp_path / "drd.toml"
    with path.open("wb") as handle:
        handle.write(b"version = 1\n# ")
        handle.truncate(17 * 1024 * 1024)
    HOSTILE_INPUTS.append("config file: 17 MiB")
    assert main(["config", "check", "--config", str(path)]) == 78
    assert "is larger than" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param("huge", "is larger than", id="huge-password-file"),
        pytest.param("device", "is not a regular file", id="dev-zero"),
        pytest.param("directory", "is not a regular file", id="directory"),
        pytest.param("missing", "does not exist", id="missing"),
    ],
)
def test_a_password_file_that_is_not_a_small_file_exits_78(
    make: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Secret files are read bounded and only when regular: /dev/zero cannot hang drd."""
    secret = tmp_path / "password"
    if make == "huge":
        secret.write_bytes(b"x" * (1024 * 1024))
    elif make == "device":
        secret = Path("/dev/zero")
    elif make == "directory":
        secret.mkdir()
    config = config_with(tmp_path, f'username = "u"\npassword_file = "{secret}"')
    HOSTILE_INPUTS.append(f"password file: {make}")
    assert main(["config", "check", "--config", str(config)]) == 78
    err = capsys.readouterr().err
    assert "endpoints.src.password_file" in err
    assert reason in err


def test_a_bad_environment_override_exits_78_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``DRD_ENDPOINTS__SRC__CONCURRENCY=lots`` names the field it overrides."""
    monkeypatch.setenv("DRD_ENDPOINTS__SRC__CONCURRENCY", "lots")
    HOSTILE_INPUTS.append("environment override of the wrong type")
    assert main(["config", "check", "--config", str(config_with(tmp_path))]) == 78
    assert "endpoints.src.concurrency" in capsys.readouterr().err


def test_the_subprocess_exit_code_is_78(tmp_path: Path) -> None:
    """The same holds for the real process: exit status 78, the field on stderr."""
    config = config_with(tmp_path, 'concurrency = "many"')
    result = run_drd("replicate", "--config", config)
    assert result.returncode == 78
    assert b"endpoints.src.concurrency" in result.stderr
