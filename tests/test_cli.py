"""`python -m drd …` end to end: exit codes, JSON on stdout, errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drd.cli import build_parser, main
from tests.clients import open_client
from tests.images import make_image, push_image
from tests.servers import LocalRegistry

ROOT = Path(__file__).resolve().parents[1]


def drd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=env,
        check=False,
    )


def write_config(path: Path, source: str, target: str, extra: str = "", repo: str = "") -> Path:
    repos = f'repositories = ["{repo}"]\n' if repo else ""
    path.write_text(
        f"""version = 1
[endpoints.src]
url = "{source}"
[endpoints.dst]
url = "{target}"
[[replication]]
name = "p"
source = "src"
targets = ["dst"]
{repos}{extra}"""
    )
    return path


def test_version_and_usage_errors() -> None:
    """`drd version` exits 0; an unknown command or flag exits 2 with the reason."""
    assert main(["version"]) == 0
    assert main(["no-such-command"]) == 2
    assert main(["replicate", "--no-such-flag"]) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            "tagz = []\n",
            "replication[p].tagz: unknown key; did you mean `tags`?",
            id="misspelt-key",
        ),
        pytest.param('require_signature = "nope"\n', "require_signature", id="unknown-trust"),
    ],
)
def test_invalid_config_exits_78_naming_the_field(tmp_path: Path, body: str, field: str) -> None:
    """A bad key or a dangling trust reference exits 78 and names the field."""
    config = write_config(tmp_path / "drd.toml", "http://127.0.0.1:1", "http://127.0.0.1:2", body)
    result = drd("replicate", "--config", str(config))
    assert result.returncode == 78, result.stderr
    assert field in result.stderr


def test_missing_credential_file_and_plain_http_exit_78(tmp_path: Path) -> None:
    """A missing password file, and plain http to a non-loopback host, are config errors."""
    config = tmp_path / "drd.toml"
    config.write_text(
        """version = 1
[endpoints.src]
url = "http://registry.example.com"
username = "drd"
password_file = "/nonexistent/secret"
"""
    )
    result = drd("config", "check", "--config", str(config))
    assert result.returncode == 78
    assert "endpoints.src.url" in result.stderr
    assert "plain http" in result.stderr
    config.write_text(config.read_text().replace("http://registry", "https://registry"))
    result = drd("config", "check", "--config", str(config))
    assert result.returncode == 78
    assert "endpoints.src.password_file" in result.stderr
    assert "/nonexistent/secret" in result.stderr


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    """No config file at the given path is a config error, said plainly."""
    result = drd("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 78
    assert "absent.toml" in result.stderr


async def test_replicate_json_and_exit_codes(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """A pass prints one JSON document; 0 when all copied, 2 for an unknown policy."""
    await push_image(source_registry, repo, make_image("cli"), "v1")
    state = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    config = write_config(
        tmp_path / "drd.toml", source_registry.url, target_registry.url, state, repo
    )

    result = drd("replicate", "--config", str(config), "--json")

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    (policy,) = doc["policies"]
    assert policy["summary"]["copied"] == 1
    assert [(i["tag"], i["outcome"]) for i in policy["items"]] == [("v1", "copied")]
    assert drd("replicate", "--config", str(config), "--policy", "nope").returncode == 2


async def test_a_manual_pass_is_history_for_drd_status(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    `drd replicate` records its pass in the state database (created when absent), so
    `drd status` shows the run, its success and no lag; a dry run records nothing.
    """
    image = make_image("cli-history")
    await push_image(source_registry, repo, image, "v1")
    state_dir = tmp_path / "state"
    state = f'[daemon]\nstate_dir = "{state_dir}"\n'
    config = write_config(
        tmp_path / "drd.toml", source_registry.url, target_registry.url, state, repo
    )

    assert drd("replicate", "--dry-run", "--config", str(config)).returncode == 0
    assert not (state_dir / "state.db").exists()
    assert drd("status", "--config", str(config)).returncode == 1

    assert drd("replicate", "--config", str(config)).returncode == 0
    result = drd("status", "--config", str(config), "--json")

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    [sync] = doc["replication"]
    assert (sync["policy"], sync["target"], sync["pending"]) == ("p", "dst", 0)
    assert sync["last_success"] is not None
    [job] = doc["jobs"]
    assert (job["job"], job["last_outcome"]) == ("replicate:p", "ok")
    [run] = doc["runs"]
    assert (run["job"], run["trigger"], run["outcome"]) == ("replicate:p", "manual", "ok")
    assert run["summary"]["copied"] == 1
    assert (await target_registry_digest(target_registry, repo, "v1")) == str(image.digest)


async def target_registry_digest(registry: LocalRegistry, repo: str, tag: str) -> str:
    async with open_client(registry) as client:
        desc = await client.head_manifest(repo, tag)
    assert desc is not None
    return str(desc.digest)


async def test_unreachable_target_exits_69(
    tmp_path: Path, source_registry: LocalRegistry, repo: str
):
    """A target nobody listens on is reported unreachable (69), found before any item."""
    await push_image(source_registry, repo, make_image("cli-69"), "v1")
    retry = "[retry]\nattempts = 2\nwait_initial = 0.0\nwait_max = 0.0\n"
    config = write_config(
        tmp_path / "drd.toml", source_registry.url, "http://127.0.0.1:9", "", repo
    )
    config.write_text(config.read_text() + retry)
    result = drd("replicate", "--config", str(config), "--json")
    assert result.returncode == 69, result.stderr
    [policy] = json.loads(result.stdout)["policies"]
    refused = "cannot talk to 127.0.0.1:9: connection refused"
    assert list(policy["unreachable"].values()) == [refused]
    assert policy["items"] == []


def test_every_interface_command_parses() -> None:
    """The command lines of the interface contract parse."""
    parser = build_parser()
    for line in [
        "replicate --policy prod --dry-run",
        "replicate --json",
        "config check",
        "version",
    ]:
        parser.parse_args(line.split())


HEAVY = ("aiohttp", "aiobotocore", "botocore", "cryptography")


def imported_after(code: str, cwd: Path = ROOT) -> list[str]:
    """Run *code* in a fresh interpreter; its last stdout line is a JSON list it printed."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names: list[str] = json.loads(result.stdout.splitlines()[-1])
    return names


def test_building_the_parser_imports_no_engine() -> None:
    """`drd --help` loads no command module, no HTTP client, S3, nor cryptography."""
    loaded = imported_after(
        "import json, sys\n"
        "from drd.cli import build_parser\n"
        "build_parser(['--help'])\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}\n"
        "    or m.startswith('drd.commands.'))))\n"
    )
    assert loaded == []


def test_a_subcommand_loads_only_its_own_module() -> None:
    """`drd status --help` imports `drd.commands.status` and no other command module."""
    loaded = imported_after(
        "import json, sys\n"
        "from drd.cli import build_parser\n"
        "build_parser(['status', '--help'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('drd.commands.'))))\n"
    )
    assert loaded == ["drd.commands.output", "drd.commands.status", "drd.commands.units"]


def test_replicate_imports_only_what_a_replication_needs(tmp_path: Path) -> None:
    """
    A whole `drd replicate` pass imports no S3 client, and no drill/snapshot/restore/daemon;
    without `require_signature` it loads no cryptography either.
    """
    config = write_config(tmp_path / "drd.toml", "http://127.0.0.1:9", "http://127.0.0.1:9")
    config.write_text(
        config.read_text()
        + f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        + "[retry]\nattempts = 1\nwait_initial = 0.0\nwait_max = 0.0\n"
    )
    loaded = imported_after(
        "import json, sys\n"
        "from drd.cli import main\n"
        f"code = main(['replicate', '--config', {str(config)!r}, '--dry-run', '--json'])\n"
        "assert code == 69, code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    assert {"drd.replicate.runner", "drd.resources", "drd.failover.active"} <= set(loaded)
    unwanted = (
        "aiobotocore",
        "botocore",
        "cryptography",
        "drd.trust",
        "drd.drill",
        "drd.snapshot",
        "drd.restore",
    )
    assert [m for m in loaded if m.startswith(unwanted)] == []
    assert [m for m in loaded if m.startswith(("drd.daemon", "drd.failover.runner"))] == []


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        pytest.param(
            "propagate_deletions = true\n",
            "replication[p].propagate_deletions",
            "needs a [snapshots] store",
            id="deletions-without-snapshots",
        ),
        pytest.param(
            'platforms = ["linux/amd64"]\n',
            "replication[p].platforms",
            "is not supported",
            id="platforms",
        ),
    ],
)
def test_config_check_refuses_promises_it_cannot_keep(
    tmp_path: Path, body: str, field: str, why: str
) -> None:
    """`drd config check` exits 78 naming the field and the reason, not a silent default."""
    config = write_config(tmp_path / "drd.toml", "http://127.0.0.1:1", "http://127.0.0.1:2", body)
    result = drd("config", "check", "--config", str(config))
    assert result.returncode == 78, result.stderr
    assert field in result.stderr
    assert why in result.stderr
