"""Configuration: TOML plus DRD_* overrides, credential files, and errors that name the key."""

from __future__ import annotations

import json
import os
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from drd.config import (
    MASK,
    Credentials,
    Endpoint,
    Settings,
    config_path,
    credential_env,
    describe,
    format_errors,
    load_settings,
)
from drd.durations import MAX_SECONDS, format_duration, parse_duration
from drd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "drd.toml"
PASSWORD = "pr1mary-s3cret-Xq9"  # noqa: S105 - a canary the tests search output for
TOKEN = "webhook-t0ken-Zk2"  # noqa: S105 - a canary, as above
# A real P-256 public key: config check parses every key it loads.
PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+LdJ+AoKbbr+0yqXBIpNwCKBle46\n"
    b"uyhhz4FAxSwIo/Q9BBSGMtMP/2hhJeUUFUxd3/2LR5JuHVqc1I7lWhPvRg==\n-----END PUBLIC KEY-----\n"
)

# DESIGN.md's example, with the credential and key files placed in the test's directory.
DESIGN_EXAMPLE = """
version = 1

[endpoints.primary]
url = "https://registry.eu.example.com"
region = "eu-west-1"
username = "drd"
password_file = "{dir}/primary.password"

[endpoints.dr]
url = "https://registry.us.example.com"
region = "us-east-1"

[endpoints.drill]
url = "https://registry-drill.internal"

[trust.release]
keys = ["{dir}/release.pub"]

[[replication]]
name = "prod"
source = "primary"
targets = ["dr"]
repositories = ["team-a/**", "base/*"]
exclude_repositories = []
tags = ['^v\\d+\\.\\d+\\.\\d+$']
exclude_tags = []
require_signature = "release"
referrers = true
verify_after_copy = true
immutable_tags = false
interval = "5m"

[snapshots]
source = "primary"
store = "file:///var/lib/drd/snapshots"
interval = "1h"
blobs = false
keep_last = 48
keep_daily = 30
keep_weekly = 12

[drills]
target = "drill"
interval = "24h"
sample = 0
rto = "4h"
rpo = "1h"
report_dir = "/var/lib/drd/reports"

[failover]
hooks = ["/usr/local/sbin/switch-registry-dns {{to}}"]
overrides_file = "/var/lib/drd/overrides.json"

[daemon]
listen = "127.0.0.1:9477"
state_dir = "/var/lib/drd"
webhook_token_file = "{dir}/webhook.token"
"""

MINIMAL = """
version = 1
[endpoints.src]
url = "http://127.0.0.1:5000"
[endpoints.dst]
url = "https://dst.example.com"
"""
RULE = '[[replication]]\nname = "r"\nsource = "src"\ntargets = ["dst"]\n'


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees no DRD_* variables and no credentials directory but its own."""
    for name in list(os.environ):
        if name.upper().startswith("DRD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "drd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def design_config(tmp_path: Path) -> Path:
    (tmp_path / "primary.password").write_text(PASSWORD + "\n")
    (tmp_path / "webhook.token").write_text(TOKEN + "\n")
    (tmp_path / "release.pub").write_bytes(PEM)
    return write(tmp_path, DESIGN_EXAMPLE.format(dir=tmp_path))


def config_errors(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.errors, "a ConfigError lists its problems"
    return dict(caught.value.errors)


def minimal_with(tmp_path: Path, extra: str) -> Path:
    return write(tmp_path, MINIMAL + extra)


# --- the documented example ----------------------------------------------------------------


def test_design_example_loads_with_its_secrets(tmp_path: Path) -> None:
    """DESIGN.md's example validates; secrets and keys are loaded from the files it names."""
    settings = load_settings(design_config(tmp_path))

    primary = settings.endpoints["primary"]
    assert primary.name == "primary"
    assert primary.url == "https://registry.eu.example.com"
    assert primary.host == "registry.eu.example.com"
    assert primary.scheme == "https"
    assert primary.region == "eu-west-1"
    credentials = primary.credentials()
    assert credentials is not None
    assert credentials.username == "drd"
    assert credentials.password is not None
    assert credentials.password.get_secret_value() == PASSWORD
    assert settings.endpoints["dr"].credentials() is None

    assert [(str(tmp_path / "release.pub"), PEM)] == settings.trust["release"].key_pems()
    assert settings.trust["release"].rekor_pems() == []

    (rule,) = settings.replication
    assert (rule.name, rule.source, rule.targets) == ("prod", "primary", ["dr"])
    assert rule.repositories == ["team-a/**", "base/*"]
    assert rule.tags == [r"^v\d+\.\d+\.\d+$"]
    assert rule.require_signature == "release"
    assert timedelta(minutes=5) == rule.interval
    assert (
        rule.referrers,
        rule.verify_after_copy,
        rule.immutable_tags,
        rule.propagate_deletions,
    ) == (True, True, False, False)
    assert rule.concurrency == 8

    assert settings.snapshots is not None
    assert Path("/var/lib/drd/snapshots") == settings.snapshots.store_path
    assert timedelta(hours=1) == settings.snapshots.interval
    assert (
        settings.snapshots.keep_last,
        settings.snapshots.keep_daily,
        settings.snapshots.keep_weekly,
    ) == (48, 30, 12)
    assert settings.drills is not None
    assert (timedelta(hours=4), timedelta(hours=1)) == (settings.drills.rto, settings.drills.rpo)
    assert settings.drills.mode == "restore"
    assert settings.failover.hooks == ["/usr/local/sbin/switch-registry-dns {to}"]
    assert timedelta(hours=48) == settings.failover.max_drill_age

    assert (settings.daemon.listen_host, settings.daemon.listen_port) == ("127.0.0.1", 9477)
    token = settings.daemon.webhook_token()
    assert token is not None
    assert token.get_secret_value() == TOKEN
    assert settings.retry.attempts == 5
    assert settings.retry.budget_s == 60.0
    assert settings.log_level == "info"


def test_shipped_example_matches_the_models() -> None:
    """examples/drd.toml uses only keys the models know and passes their validation."""
    data = tomllib.loads(EXAMPLE.read_text())

    settings = Settings(**data)

    assert {"primary", "dr", "drill"} == set(settings.endpoints)
    assert [rule.name for rule in settings.replication] == ["prod"]


def test_config_path_prefers_argument_then_env_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--config wins over $DRD_CONFIG, which wins over /etc/drd/drd.toml."""
    assert Path("/etc/drd/drd.toml") == config_path(None)
    monkeypatch.setenv("DRD_CONFIG", str(tmp_path / "env.toml"))
    assert tmp_path / "env.toml" == config_path(None)
    assert tmp_path / "arg.toml" == config_path(tmp_path / "arg.toml")

    write(tmp_path, MINIMAL, "env.toml")
    assert {"src", "dst"} == set(load_settings(None).endpoints)


# --- environment overrides -----------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DRD_<SECTION>__<KEY> variables win over the file, down to one key of one table."""
    path = design_config(tmp_path)
    monkeypatch.setenv("DRD_DAEMON__LISTEN", "127.0.0.1:9999")
    monkeypatch.setenv("DRD_ENDPOINTS__DR__URL", "http://127.0.0.1:5001")
    monkeypatch.setenv("DRD_ENDPOINTS__DR__CONCURRENCY", "4")
    monkeypatch.setenv("DRD_REPLICATION__0__INTERVAL", "90s")
    monkeypatch.setenv("DRD_SNAPSHOTS__BLOBS", "true")
    monkeypatch.setenv("DRD_LOG_LEVEL", "DEBUG")

    settings = load_settings(path)

    assert settings.daemon.listen_port == 9999
    assert settings.endpoints["dr"].host == "127.0.0.1:5001"
    assert settings.endpoints["dr"].concurrency == 4
    assert settings.endpoints["dr"].region == "us-east-1", "keys not overridden keep file values"
    assert timedelta(seconds=90) == settings.replication[0].interval
    assert settings.replication[0].name == "prod"
    assert settings.snapshots is not None
    assert settings.snapshots.blobs
    assert settings.log_level == "debug"


def test_environment_can_add_an_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table that the file does not have can come from the environment alone."""
    monkeypatch.setenv("DRD_ENDPOINTS__EXTRA__URL", "https://extra.example.com")

    settings = load_settings(write(tmp_path, MINIMAL))

    assert settings.endpoints["extra"].host == "extra.example.com"
    assert settings.endpoints["extra"].name == "extra"


def test_invalid_environment_value_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error caused by a variable names the key and the variable."""
    monkeypatch.setenv("DRD_DAEMON__LISTEN", "not-an-address")
    monkeypatch.setenv("DRD_ENDPOINTS__DST__URL", "http://registry.lab")
    monkeypatch.setenv("DRD_REPLICATION__0__TARGETS", '["dst", "gone"]')
    path = write(tmp_path, MINIMAL + RULE)

    errors = config_errors(path)

    assert {"daemon.listen", "endpoints.dst.url"} == set(errors)
    assert errors["daemon.listen"].endswith("(from DRD_DAEMON__LISTEN)")
    assert errors["endpoints.dst.url"].endswith("(from DRD_ENDPOINTS__DST__URL)")
    monkeypatch.delenv("DRD_DAEMON__LISTEN")
    monkeypatch.delenv("DRD_ENDPOINTS__DST__URL")
    assert config_errors(path)["replication[0].targets[1]"].endswith(
        "(from DRD_REPLICATION__0__TARGETS)"
    )
    monkeypatch.setenv("DRD_ENDPOINTS__DST__PASSWORD_FILE", "/nonexistent/p")
    monkeypatch.setenv("DRD_ENDPOINTS__DST__USERNAME", "u")
    monkeypatch.delenv("DRD_REPLICATION__0__TARGETS")
    assert config_errors(path) == {
        "endpoints.dst.password_file": "/nonexistent/p does not exist"
        " (from DRD_ENDPOINTS__DST__PASSWORD_FILE)"
    }


def test_unparseable_json_in_environment_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list given as broken JSON in a variable is a ConfigError naming the key."""
    monkeypatch.setenv("DRD_REPLICATION", "[{broken")

    errors = config_errors(write(tmp_path, MINIMAL))

    assert "JSON" in errors["replication"]


# --- secrets -------------------------------------------------------------------------------


def test_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DRD_ENDPOINT_<NAME>_PASSWORD supplies the password; '-' in the name becomes '_'."""
    path = write(
        tmp_path,
        MINIMAL + '[endpoints.dr-east]\nurl = "https://dr.example.com"\nusername = "bot"\n',
    )
    monkeypatch.setenv("DRD_ENDPOINT_DR_EAST_PASSWORD", PASSWORD)

    credentials = load_settings(path).endpoints["dr-east"].credentials()

    assert credential_env("dr-east") == "DRD_ENDPOINT_DR_EAST"
    assert credentials is not None
    assert credentials.username == "bot"
    assert credentials.password is not None
    assert credentials.password.get_secret_value() == PASSWORD
    assert credentials.source == "DRD_ENDPOINT_DR_EAST_PASSWORD"


def test_environment_password_wins_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When both are set the variable is used and the file is not needed."""
    path = minimal_with(
        tmp_path, '[endpoints.extra]\nurl = "https://x.example.com"\nusername = "u"\n'
    )
    path.write_text(path.read_text() + f'password_file = "{tmp_path}/absent"\n')
    monkeypatch.setenv("DRD_ENDPOINT_EXTRA_PASSWORD", PASSWORD)

    credentials = load_settings(path).endpoints["extra"].credentials()

    assert credentials is not None
    assert credentials.password is not None
    assert credentials.password.get_secret_value() == PASSWORD


def test_token_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """token_file and DRD_ENDPOINT_<NAME>_TOKEN give bearer-token credentials."""
    (tmp_path / "dst.token").write_text("tok-from-file\n")
    path = write(tmp_path, MINIMAL + 'token_file = "dst.token"\n')
    monkeypatch.setenv("DRD_ENDPOINT_SRC_TOKEN", "tok-from-env")

    settings = load_settings(path)

    dst, src = settings.endpoints["dst"].credentials(), settings.endpoints["src"].credentials()
    assert dst is not None
    assert dst.token is not None
    assert dst.token.get_secret_value() == "tok-from-file"
    assert src is not None
    assert src.token is not None
    assert src.token.get_secret_value() == "tok-from-env"


def test_credentials_directory_resolves_relative_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative password_file is found in $CREDENTIALS_DIRECTORY (systemd LoadCredential=)."""
    credentials_dir = tmp_path / "creds"
    credentials_dir.mkdir()
    (credentials_dir / "dst.password").write_text(PASSWORD + "\n")
    (tmp_path / "dst.password").write_text("the-wrong-one\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials_dir))
    path = write(tmp_path, MINIMAL + 'username = "u"\npassword_file = "dst.password"\n')

    endpoint = load_settings(path).endpoints["dst"]

    assert credentials_dir / "dst.password" == endpoint.password_file
    credentials = endpoint.credentials()
    assert credentials is not None
    assert credentials.password is not None
    assert credentials.password.get_secret_value() == PASSWORD


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    """Without $CREDENTIALS_DIRECTORY relative paths are relative to the config file."""
    (tmp_path / "dst.password").write_text(PASSWORD)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k.pub").write_bytes(PEM)
    path = write(
        tmp_path,
        MINIMAL
        + 'username = "u"\npassword_file = "dst.password"\n'
        + '[trust.t]\nkeys = ["keys/k.pub"]\n[daemon]\nstate_dir = "state"\n',
    )

    settings = load_settings(path)

    assert tmp_path / "dst.password" == settings.endpoints["dst"].password_file
    assert [(str(tmp_path / "keys" / "k.pub"), PEM)] == settings.trust["t"].key_pems()
    assert tmp_path / "state" == settings.daemon.state_dir


def test_missing_credential_file_names_key_and_path(tmp_path: Path) -> None:
    """A password_file that does not exist is an error naming the key and the path."""
    path = write(tmp_path, MINIMAL + f'username = "u"\npassword_file = "{tmp_path}/gone"\n')

    errors = config_errors(path)

    assert {"endpoints.dst.password_file": f"{tmp_path}/gone does not exist"} == errors


def test_unusable_credential_files_are_refused(tmp_path: Path) -> None:
    """Empty, multi-line, directory and device secret files are errors, and never hang."""
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two-lines").write_text("a\nb\n")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    text = MINIMAL
    for name, file in [("a", "empty"), ("b", "two-lines"), ("c", "dir"), ("d", "fifo")]:
        text += f'[endpoints.{name}]\nurl = "https://{name}.example.com"\n'
        text += f'username = "u"\npassword_file = "{tmp_path}/{file}"\n'
    text += '[endpoints.e]\nurl = "https://e.example.com"\nusername = "u"\n'
    text += 'password_file = "/dev/zero"\n'

    errors = config_errors(write(tmp_path, text))

    assert errors["endpoints.a.password_file"].endswith("is empty")
    assert "one line" in errors["endpoints.b.password_file"]
    assert errors["endpoints.c.password_file"].endswith("is not a regular file")
    assert errors["endpoints.d.password_file"].endswith("is not a regular file")
    assert errors["endpoints.e.password_file"] == "/dev/zero is not a regular file"


def test_username_without_password_is_an_error(tmp_path: Path) -> None:
    """A username with no password source names the variable that would supply it."""
    errors = config_errors(write(tmp_path, MINIMAL + 'username = "u"\n'))

    assert "DRD_ENDPOINT_DST_PASSWORD" in errors["endpoints.dst.username"]


def test_password_and_token_together_are_an_error(tmp_path: Path) -> None:
    """password_file and token_file on one endpoint contradict each other."""
    path = write(tmp_path, MINIMAL + 'password_file = "p"\ntoken_file = "t"\n')

    errors = config_errors(path)

    assert "not both" in errors["endpoints.dst.token_file"]


def test_docker_config_supplies_credentials(tmp_path: Path) -> None:
    """docker_config's auths entry for the endpoint's host becomes basic credentials."""
    docker = {
        "auths": {
            "https://dst.example.com/v1/": {"auth": "Ym90OnBhc3N3b3Jk"},  # bot:password
            "other.example.com": {"auth": "eDp5"},
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(docker))
    path = write(tmp_path, MINIMAL + 'docker_config = "config.json"\n')

    credentials = load_settings(path).endpoints["dst"].credentials()

    assert credentials is not None
    assert credentials.username == "bot"
    assert credentials.password is not None
    assert credentials.password.get_secret_value() == "password"


def test_docker_config_without_the_host_is_an_error(tmp_path: Path) -> None:
    """A docker config with no entry for the endpoint's host says so."""
    (tmp_path / "config.json").write_text('{"auths": {"other.example.com": {"auth": "eDp5"}}}')
    path = write(tmp_path, MINIMAL + 'docker_config = "config.json"\n')

    errors = config_errors(path)

    assert errors["endpoints.dst.docker_config"].endswith("has no credentials for dst.example.com")


def test_secrets_never_appear_in_repr_dump_describe_or_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded passwords and tokens are absent from repr, model_dump, describe and errors."""
    monkeypatch.setenv("DRD_ENDPOINT_DR_TOKEN", "env-token-Yy7")
    settings = load_settings(design_config(tmp_path))

    shown = [
        repr(settings),
        str(settings),
        repr(settings.endpoints["primary"].credentials()),
        str(settings.model_dump()),
        json.dumps(describe(settings)),
    ]
    for text in shown:
        for secret in (PASSWORD, TOKEN, "env-token-Yy7"):
            assert secret not in text
    described = describe(settings)
    assert described["endpoints"]["primary"]["credentials"]["password"] == MASK
    assert described["endpoints"]["dr"]["credentials"]["token"] == MASK
    assert described["daemon"]["webhook_token"] == MASK

    (tmp_path / "bad.toml").write_text(
        MINIMAL + f'[endpoints.leaky]\nurl = "https://bot:{PASSWORD}@leaky.example.com"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "bad.toml")
    assert "credentials" in dict(caught.value.errors)["endpoints.leaky.url"]
    for text in (str(caught.value), format_errors(caught.value), repr(caught.value.errors)):
        assert PASSWORD not in text


def test_password_key_in_the_file_is_refused(tmp_path: Path) -> None:
    """An inline password is an unknown key: secrets come from files or the environment."""
    errors = config_errors(write(tmp_path, MINIMAL + f'password = "{PASSWORD}"\n'))

    assert errors == {"endpoints.dst.password": "extra inputs are not permitted"}


# --- validation errors name the key --------------------------------------------------------


def test_misspelt_key_is_named(tmp_path: Path) -> None:
    """An unknown key is an error naming its full path, not a silently ignored value."""
    errors = config_errors(minimal_with(tmp_path, RULE + 'tagz = ["^v1$"]\n'))

    assert errors == {"replication[0].tagz": "extra inputs are not permitted"}


def test_every_field_error_is_reported_at_once(tmp_path: Path) -> None:
    """All invalid fields are listed together, each with its own path, one line each."""
    text = MINIMAL + "concurrency = 0\n" + RULE + 'interval = "soon"\ntags = ["(", "ok", "["]\n'
    text += '[daemon]\nlisten = "9477"\n[retry]\nattempts = "many"\n'
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_settings(path)

    errors = dict(caught.value.errors)
    assert {
        "endpoints.dst.concurrency",
        "replication[0].interval",
        "replication[0].tags[0]",
        "replication[0].tags[2]",
        "daemon.listen",
        "retry.attempts",
    } == set(errors)
    assert errors["replication[0].tags[0]"].startswith("invalid regular expression")
    lines = format_errors(caught.value).splitlines()
    assert len(lines) == 6
    assert "replication[0].interval: invalid duration" in "\n".join(lines)


def test_plain_http_to_remote_host_is_refused(tmp_path: Path) -> None:
    """http:// to a non-loopback host needs insecure = true."""
    errors = config_errors(
        minimal_with(tmp_path, '[endpoints.remote]\nurl = "http://10.1.2.3:5000"\n')
    )

    assert "endpoints.remote.url" in errors
    assert "insecure = true" in errors["endpoints.remote.url"]


def test_plain_http_allowed_for_loopback_and_insecure(tmp_path: Path) -> None:
    """Loopback hosts (127/8, ::1, localhost) and insecure = true may use plain http."""
    text = MINIMAL
    for name, url in [
        ("v4", "http://127.0.0.2:5000"),
        ("v6", "http://[::1]:5000/"),
        ("local", "http://LOCALHOST:5000"),
    ]:
        text += f'[endpoints.{name}]\nurl = "{url}"\n'
    text += '[endpoints.lab]\nurl = "http://registry.lab:5000"\ninsecure = true\n'

    endpoints = load_settings(write(tmp_path, text)).endpoints

    assert endpoints["v4"].host == "127.0.0.2:5000"
    assert endpoints["v6"].host == "[::1]:5000"
    assert endpoints["local"].url == "http://localhost:5000"
    assert (endpoints["lab"].scheme, endpoints["lab"].host) == ("http", "registry.lab:5000")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x.example.com", "https://"),
        ("https://x.example.com/v2/", "path"),
        ("https://x.example.com?a=1", "query"),
        ("https://", "no host"),
        ("https://x.example.com:99999", "port"),
        ("https://bad_host!.example", "host"),
    ],
)
def test_invalid_urls_are_refused(tmp_path: Path, url: str, message: str) -> None:
    """Endpoint URLs are scheme://host[:port] and nothing else."""
    errors = config_errors(minimal_with(tmp_path, f'[endpoints.x]\nurl = "{url}"\n'))

    assert message in errors["endpoints.x.url"]


def test_unknown_trust_policy_is_named(tmp_path: Path) -> None:
    """require_signature must name a [trust.*] table."""
    errors = config_errors(minimal_with(tmp_path, RULE + 'require_signature = "release"\n'))

    assert errors == {
        "replication[0].require_signature": "unknown trust policy 'release' (defined: none)"
    }


def test_unknown_endpoint_in_targets_is_named(tmp_path: Path) -> None:
    """Each target must name an endpoint; the message lists the defined ones."""
    rule = '[[replication]]\nname = "r"\nsource = "src"\ntargets = ["dst", "nowhere"]\n'

    errors = config_errors(minimal_with(tmp_path, rule))

    assert errors == {"replication[0].targets[1]": "unknown endpoint 'nowhere' (defined: dst, src)"}


def test_policy_consistency_errors(tmp_path: Path) -> None:
    """Duplicate policy names and a source listed as its own target are refused."""
    second = '[[replication]]\nname = "r"\nsource = "dst"\ntargets = ["dst"]\n'

    errors = config_errors(minimal_with(tmp_path, RULE + second))

    assert {"replication[1].targets[0]"} == set(errors)
    errors = config_errors(minimal_with(tmp_path, RULE + RULE))
    assert errors == {"replication[1].name": "policy 'r' is already defined in replication[0]"}


def test_sections_that_reference_endpoints_are_checked(tmp_path: Path) -> None:
    """snapshots.source, drills.target and drills.trust must point at defined names."""
    text = '[snapshots]\nsource = "nope"\n[drills]\ntarget = "gone"\ntrust = "t"\n'

    errors = config_errors(minimal_with(tmp_path, text))

    assert {"snapshots.source", "drills.target", "drills.trust"} == set(errors)


def test_replica_drill_needs_a_replica(tmp_path: Path) -> None:
    """mode = "replica" requires the replica endpoint."""
    errors = config_errors(minimal_with(tmp_path, '[drills]\ntarget = "dst"\nmode = "replica"\n'))

    assert "drills.replica" in errors


def test_bad_duration_is_named(tmp_path: Path) -> None:
    """A duration that is not "5m"-style, seconds or ISO 8601 is named with its path."""
    errors = config_errors(minimal_with(tmp_path, '[snapshots]\nsource = "src"\ninterval = "1x"\n'))

    assert errors["snapshots.interval"].startswith("invalid duration")


def test_zero_or_negative_intervals_are_refused(tmp_path: Path) -> None:
    """Intervals must be positive."""
    text = RULE + 'interval = "0s"\n[snapshots]\nsource = "src"\ninterval = "-PT5M"\n'

    errors = config_errors(minimal_with(tmp_path, text))

    assert "greater than zero" in errors["replication[0].interval"]
    assert "negative" in errors["snapshots.interval"]


def test_trust_key_files_are_checked(tmp_path: Path) -> None:
    """Trust keys must exist and be PEM; the error names the list index."""
    (tmp_path / "ok.pub").write_bytes(PEM)
    (tmp_path / "junk.pub").write_text("not a key")
    text = f'[trust.t]\nkeys = ["{tmp_path}/ok.pub", "{tmp_path}/junk.pub", "{tmp_path}/no.pub"]\n'

    errors = config_errors(minimal_with(tmp_path, text))

    assert {
        "trust.t.keys[1]": f"{tmp_path}/junk.pub is not a PEM file",
        "trust.t.keys[2]": f"{tmp_path}/no.pub does not exist",
    } == errors


def test_empty_trust_keys_and_missing_version(tmp_path: Path) -> None:
    """A trust policy needs a key; the file needs version = 1."""
    errors = config_errors(write(tmp_path, MINIMAL.replace("version = 1", "") + "[trust.t]\n"))

    assert {"version", "trust.t.keys"} == set(errors)
    errors = config_errors(write(tmp_path, MINIMAL.replace("version = 1", "version = 2")))
    assert {"version"} == set(errors)


def test_snapshot_store_urls(tmp_path: Path) -> None:
    """Stores are file:///path or s3://bucket/prefix; S3 options need an S3 store."""
    text = '[snapshots]\nsource = "src"\nstore = "s3://drd-backups/eu/prod/"\n'
    text += 's3_endpoint_url = "http://127.0.0.1:9000"\ns3_region = "eu-west-1"\n'

    snapshots = load_settings(minimal_with(tmp_path, text)).snapshots

    assert snapshots is not None
    assert (snapshots.s3_bucket, snapshots.s3_prefix) == ("drd-backups", "eu/prod")
    assert snapshots.s3_client_kwargs() == {
        "endpoint_url": "http://127.0.0.1:9000",
        "region_name": "eu-west-1",
    }
    bad = '[snapshots]\nsource = "src"\nstore = "gs://x"\n'
    assert {"snapshots.store"} == set(config_errors(minimal_with(tmp_path, bad)))
    odd = '[snapshots]\nsource = "src"\ns3_region = "eu-west-1"\n'
    assert config_errors(minimal_with(tmp_path, odd)) == {
        "snapshots.s3_region": "applies only to an s3:// store"
    }


def test_object_lock_mode_needs_object_lock_days(tmp_path: Path) -> None:
    """``s3_object_lock_mode`` alone would lock nothing: refused; with days it is taken."""
    base = '[snapshots]\nsource = "src"\nstore = "s3://bucket"\n'
    alone = base + 's3_object_lock_mode = "GOVERNANCE"\n'
    assert config_errors(minimal_with(tmp_path, alone)) == {
        "snapshots.s3_object_lock_mode": "applies only with s3_object_lock_days"
    }
    wrong = base + 's3_object_lock_days = 7\ns3_object_lock_mode = "LEGAL"\n'
    assert set(config_errors(minimal_with(tmp_path, wrong))) == {"snapshots.s3_object_lock_mode"}
    good = base + 's3_object_lock_days = 7\ns3_object_lock_mode = "GOVERNANCE"\n'
    assert load_settings(minimal_with(tmp_path, good)).snapshots is not None


def test_settings_exclude_needs_settings(tmp_path: Path) -> None:
    """``settings_exclude`` with no ``settings`` would exclude nothing: refused."""
    text = '[snapshots]\nsource = "src"\nsettings_exclude = ["*/htpasswd"]\n'
    assert config_errors(minimal_with(tmp_path, text)) == {
        "snapshots.settings_exclude": "applies only with settings"
    }


def test_oci_store_names_a_configured_endpoint(tmp_path: Path) -> None:
    """
    ``oci://<endpoint>/<repository>``: the endpoint's credentials are the store's; an
    unknown endpoint, a bad repository, S3 options or an untaggable source are refused.
    """
    (tmp_path / "dst.password").write_text(PASSWORD + "\n")
    endpoint = 'username = "drd"\npassword_file = "dst.password"\n'
    text = MINIMAL.replace(
        'url = "https://dst.example.com"\n', 'url = "https://dst.example.com"\n' + endpoint
    )
    text += '[snapshots]\nsource = "src"\nstore = "oci://dst/backups/drd/"\n'

    snapshots = load_settings(write(tmp_path, text)).snapshots

    assert snapshots is not None
    assert (snapshots.store, snapshots.store_scheme) == ("oci://dst/backups/drd", "oci")
    store_endpoint = snapshots.store_endpoint()
    assert store_endpoint is not None
    assert store_endpoint.url == "https://dst.example.com"
    credentials = store_endpoint.credentials()
    assert credentials is not None
    assert credentials.password is not None
    assert credentials.password.get_secret_value() == PASSWORD
    unknown = '[snapshots]\nsource = "src"\nstore = "oci://vault/backups"\n'
    errors = config_errors(minimal_with(tmp_path, unknown))
    assert set(errors) == {"snapshots.store"}
    assert "unknown endpoint 'vault'" in errors["snapshots.store"]
    for store in ("oci://dst", "oci://dst/Backups", "oci://dst/a//b", "oci://DST/x"):
        bad = f'[snapshots]\nsource = "src"\nstore = "{store}"\n'
        errors = config_errors(minimal_with(tmp_path, bad))
        assert set(errors) == {"snapshots.store"}, store
        assert "oci://<endpoint>/<repository>" in errors["snapshots.store"]
    s3 = '[snapshots]\nsource = "src"\nstore = "oci://dst/x"\ns3_region = "eu-west-1"\n'
    assert config_errors(minimal_with(tmp_path, s3)) == {
        "snapshots.s3_region": "applies only to an s3:// store"
    }
    long_source = "a_" * 31
    text = MINIMAL + f'[endpoints.{long_source}]\nurl = "https://x.example.com"\n'
    text += f'[snapshots]\nsource = "{long_source}"\nstore = "oci://dst/x"\n'
    errors = config_errors(write(tmp_path, text))
    assert "too long for an oci:// store's tags" in errors["snapshots.source"]


def test_unsafe_hook_placeholders_are_refused(tmp_path: Path) -> None:
    """Failover hooks may use {name} placeholders but not attribute or index access."""
    text = '[failover]\nhooks = ["ok {to}", "leak {to.__class__}", "broken {"]\n'

    errors = config_errors(minimal_with(tmp_path, text))

    assert {"failover.hooks[1]", "failover.hooks[2]"} == set(errors)


# --- hostile input -------------------------------------------------------------------------


def test_missing_config_file_says_so(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError that says so."""
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.toml")

    assert str(caught.value) == f"{tmp_path}/absent.toml: config file does not exist"


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    """Invalid TOML is reported with its line number."""
    path = write(tmp_path, 'version = 1\n\n[endpoints.x]\nurl = "unterminated\n')

    errors = config_errors(path)

    assert "line 4" in errors[str(path)]


def test_not_utf8_and_directory_configs(tmp_path: Path) -> None:
    """Binary junk and a directory in place of the config file are clear errors."""
    (tmp_path / "junk.toml").write_bytes(b"\xff\xfe\x00version")

    assert "UTF-8" in config_errors(tmp_path / "junk.toml")[str(tmp_path / "junk.toml")]
    assert "regular file" in config_errors(tmp_path)[str(tmp_path)]


def test_huge_string_is_refused_quickly(tmp_path: Path) -> None:
    """A 10 MB string is a ConfigError naming its key, and the message does not echo it."""
    huge = "a" * (10 * 1024 * 1024)
    path = write(tmp_path, MINIMAL + f'[endpoints.big]\nurl = "https://{huge}.example.com"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(path)

    errors = dict(caught.value.errors)
    assert "at most 2048 characters" in errors["endpoints.big.url"]
    assert len(format_errors(caught.value)) < 1000


def test_huge_key_and_huge_integers_are_refused(tmp_path: Path) -> None:
    """Very large numbers and a very long table name give errors, not crashes."""
    long_name = "n" * 100_000
    text = MINIMAL + "concurrency = 1000000000000000000000000000000\n"
    text += "timeout = 1" + "0" * 400 + "\n"
    text += RULE + "interval = 1000000000000000000000000000000\n"
    text += f'[endpoints.{long_name}]\nurl = "https://x.example.com"\n'

    errors = config_errors(write(tmp_path, text))

    assert "less than or equal to 1024" in errors["endpoints.dst.concurrency"]
    assert "endpoints.dst.timeout" in errors
    assert "at most" in errors["replication[0].interval"]
    (long_path,) = [path for path in errors if path.startswith("endpoints.nnn")]
    assert len(long_path) < 100


def test_wrong_types_are_named(tmp_path: Path) -> None:
    """A table where a string belongs, and a string where a table belongs, are named."""
    text = 'version = 1\nendpoints = "primary"\ndaemon = 5\nlog_level = "loud"\n'

    errors = config_errors(write(tmp_path, text))

    assert {"endpoints", "daemon", "log_level"} == set(errors)


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    """`true` is neither version 1 nor a duration of one second."""
    text = MINIMAL.replace("version = 1", "version = true") + RULE + "interval = true\n"

    errors = config_errors(write(tmp_path, text))

    assert {"version": errors["version"]} == {"version": "must be 1"}
    assert "duration" in errors["replication[0].interval"]


def test_names_are_checked(tmp_path: Path) -> None:
    """Table names are lower-case, a `name` key must match, and secret variables must not clash."""
    text = MINIMAL + '[endpoints.Upper]\nurl = "https://u.example.com"\n'
    text += '[endpoints.dr-east]\nurl = "https://a.example.com"\nname = "other"\n'
    text += '[endpoints.dr_east]\nurl = "https://b.example.com"\n'

    errors = config_errors(write(tmp_path, text))

    assert {"endpoints.Upper"} == set(errors)
    errors = config_errors(write(tmp_path, text.replace("Upper", "upper")))
    assert errors == {
        "endpoints.dr-east.name": "must equal the table name or be omitted",
        "endpoints.dr_east": "shares the variables DRD_ENDPOINT_DR_EAST_* with endpoint 'dr-east'",
    }


def test_deeply_nested_toml_does_not_crash(tmp_path: Path) -> None:
    """Absurd nesting is a ConfigError, never a RecursionError."""
    path = write(tmp_path, "version = 1\nx = " + "[" * 50_000 + "]" * 50_000 + "\n")

    with pytest.raises(ConfigError):
        load_settings(path)


def test_reserved_top_level_keys_are_refused(tmp_path: Path) -> None:
    """Keys such as `_env_file` are unknown keys, not pydantic-settings options."""
    path = write(tmp_path, MINIMAL.replace("version = 1", 'version = 1\n_env_file = "/etc/x"'))

    assert config_errors(path) == {"_env_file": "extra inputs are not permitted"}


# --- describe ------------------------------------------------------------------------------


def test_describe_is_plain_json_with_readable_durations(tmp_path: Path) -> None:
    """describe() gives JSON-able data: paths as strings, durations as "5m0s"."""
    described = describe(load_settings(design_config(tmp_path)))

    assert described == json.loads(json.dumps(described))
    assert described["replication"][0]["interval"] == "5m0s"
    assert described["failover"]["max_drill_age"] == "48h0m0s"
    assert str(tmp_path / "primary.password") == described["endpoints"]["primary"]["password_file"]
    assert described["endpoints"]["dr"]["credentials"] == {"kind": "anonymous"}
    assert described["trust"]["release"]["loaded_keys"] == 1


def test_models_attach_secrets_without_loading() -> None:
    """Code and tests can build an endpoint with credentials directly."""
    endpoint = Endpoint(name="src", url="http://127.0.0.1:5000")
    with_creds = endpoint.with_credentials(
        Credentials(username="u", password=SecretStr(PASSWORD), source="test")
    )

    assert endpoint.credentials() is None
    assert with_creds.credentials() is not None
    assert PASSWORD not in repr(with_creds)
    with pytest.raises(ValueError, match="username"):
        Credentials(username="u")


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("24h", timedelta(hours=24)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("3600", timedelta(hours=1)),
        (" 1m30s ", timedelta(seconds=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    """Short durations parse to exact timedeltas."""
    assert expected == parse_duration(text)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "1m1h", "5m5m", "-5m", "1e3s", "9" * 80])
def test_parse_duration_refuses(text: str) -> None:
    """Malformed or out-of-order durations are refused (bare digits mean seconds)."""
    if text == "5":
        assert timedelta(seconds=5) == parse_duration(text)
        return
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=5), "5m0s"),
        (timedelta(hours=1, minutes=30), "1h30m0s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(0), "0s"),
        (timedelta(days=2), "48h0m0s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    """Durations print Go-style."""
    assert text == format_duration(value)


@given(st.integers(min_value=0, max_value=MAX_SECONDS * 1_000_000))
def test_format_then_parse_round_trips(micros: int) -> None:
    """Every formatted duration parses back to the same value."""
    value = timedelta(microseconds=micros)

    assert value == parse_duration(format_duration(value))


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('"PT5M"', timedelta(minutes=5)),
        ("300", timedelta(minutes=5)),
        ("1.5", timedelta(seconds=1.5)),
    ],
)
def test_durations_accept_iso_and_seconds(tmp_path: Path, toml: str, expected: timedelta) -> None:
    """ISO 8601 text and plain numbers of seconds are durations too."""
    path = minimal_with(tmp_path, f"[retry]\nbudget = {toml}\n")

    assert expected == load_settings(path).retry.budget


def test_docker_config_env_supplies_credentials(tmp_path: Path, monkeypatch) -> None:
    """With nothing else configured, $DOCKER_CONFIG/config.json's entry for the host is used."""
    import base64 as _b64

    docker = tmp_path / "docker"
    docker.mkdir()
    auth = _b64.b64encode(b"robot:s3cr3t-docker").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    config = tmp_path / "drd.toml"
    config.write_text('version = 1\n[endpoints.a]\nurl = "http://127.0.0.1:5000"\n')
    creds = load_settings(config).endpoints["a"].credentials()
    assert creds is not None
    assert creds.username == "robot"
    assert creds.password is not None
    assert creds.password.get_secret_value() == "s3cr3t-docker"


def test_auth_hosts_are_listed_per_endpoint(tmp_path: Path) -> None:
    """auth_hosts names token services on other hosts; it defaults to none."""
    config = tmp_path / "drd.toml"
    config.write_text(
        'version = 1\n[endpoints.hub]\nurl = "https://registry-1.docker.io"\n'
        'auth_hosts = ["auth.docker.io"]\n[endpoints.other]\nurl = "https://r.example.com"\n'
    )
    settings = load_settings(config)
    assert settings.endpoints["hub"].auth_hosts == ["auth.docker.io"]
    assert settings.endpoints["other"].auth_hosts == []


# --- keyless trust -------------------------------------------------------------------------


def _fulcio_pem() -> bytes:
    from tests.trust.keyless_signing import FakeFulcio

    return FakeFulcio.create().root_pem()


KEYLESS_IDENTITY = (
    '[[trust.ci.identities]]\nissuer = "https://token.actions.githubusercontent.com"\n'
    'subject_regex = "https://github\\\\.com/org/app/.*"\nsource_ref = "refs/heads/main"\n'
)


def test_keyless_trust_loads_roots_and_identities(tmp_path: Path) -> None:
    """fulcio_roots alone make a policy (keys optional); identities and claims reach it."""
    from drd.resources import trust_policy

    (tmp_path / "fulcio.pem").write_bytes(_fulcio_pem())
    (tmp_path / "rekor.pub").write_bytes(PEM)
    text = '[trust.ci]\nfulcio_roots = ["fulcio.pem"]\nrekor_keys = ["rekor.pub"]\n'
    text += "require_rekor = true\n" + KEYLESS_IDENTITY

    table = load_settings(minimal_with(tmp_path, text)).trust["ci"]
    policy = trust_policy(table)

    assert policy.keys == ()
    assert policy.keyless is not None
    [identity] = policy.keyless.identities
    assert identity.issuer == "https://token.actions.githubusercontent.com"
    assert identity.subject_regex is not None
    assert identity.subject_regex.pattern == r"https://github\.com/org/app/.*"
    assert identity.claims == (("source_ref", "refs/heads/main"),)
    assert [len(a.roots) for a in policy.keyless.authorities] == [1]


def test_public_good_sigstore_root_needs_no_file(tmp_path: Path) -> None:
    """``sigstore_root = "public-good"`` uses the root shipped with drd: Fulcio, Rekor, CT."""
    from drd.resources import trust_policy

    text = '[trust.ci]\nsigstore_root = "public-good"\n' + KEYLESS_IDENTITY

    policy = trust_policy(load_settings(minimal_with(tmp_path, text)).trust["ci"])

    assert policy.keyless is not None
    assert policy.keyless.authorities
    assert policy.keyless.ctlog_keys
    assert policy.rekor_key("c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d")


def test_config_check_names_every_key_and_root_that_does_not_parse(tmp_path: Path) -> None:
    """A certificate given as a key, a key given as a root, a broken trusted root: each named."""
    (tmp_path / "cert.pem").write_bytes(_fulcio_pem())
    (tmp_path / "key.pub").write_bytes(PEM)
    (tmp_path / "root.json").write_text('{"mediaType": "something else"}')
    text = '[trust.t]\nkeys = ["cert.pem"]\n'
    text += '[trust.ci]\nfulcio_roots = ["key.pub"]\nctlog_keys = ["cert.pem"]\n'
    text += 'sigstore_root = "root.json"\n' + KEYLESS_IDENTITY

    errors = config_errors(minimal_with(tmp_path, text))

    assert set(errors) == {
        "trust.t.keys[0]",
        "trust.ci.fulcio_roots[0]",
        "trust.ci.ctlog_keys[0]",
        "trust.ci.sigstore_root",
    }
    assert "is a certificate" in errors["trust.t.keys[0]"]
    assert "not a PEM certificate" in errors["trust.ci.fulcio_roots[0]"]
    assert "not a sigstore trusted root" in errors["trust.ci.sigstore_root"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(
            'fulcio_roots = ["f.pem"]\nrekor_keys = ["k.pub"]\n',
            "trust.ci.identities",
            id="no-identity",
        ),
        pytest.param(
            'fulcio_roots = ["f.pem"]\n[[trust.ci.identities]]\nissuer = "x"\nsubject = "y"\n',
            "trust.ci.rekor_keys",
            id="fulcio-roots-without-a-rekor-key",
        ),
        pytest.param(
            'keys = ["k.pub"]\n[[trust.ci.identities]]\nissuer = "x"\nsubject = "y"\n',
            "trust.ci.identities",
            id="identity-without-keyless-roots",
        ),
        pytest.param(
            'fulcio_roots = ["f.pem"]\n[[trust.ci.identities]]\nsubject = "y"\n',
            "trust.ci.identities[0].issuer",
            id="identity-without-issuer",
        ),
        pytest.param(
            'fulcio_roots = ["f.pem"]\n[[trust.ci.identities]]\nissuer = "x"\nsubject = "y"\n'
            'subject_regex = "y.*"\n',
            "trust.ci.identities[0].subject",
            id="subject-and-subject-regex",
        ),
        pytest.param(
            'fulcio_roots = ["f.pem"]\n[[trust.ci.identities]]\nissuer = "x"\n'
            'subject_regex = "(unclosed"\n',
            "trust.ci.identities[0].subject_regex",
            id="bad-regex",
        ),
        pytest.param(
            'fulcio_roots = ["f.pem"]\n[[trust.ci.identities]]\nissuer = "x"\nsubject = "y"\n'
            'source_branch = "main"\n',
            "trust.ci.identities[0].source_branch",
            id="unknown-claim",
        ),
    ],
)
def test_keyless_identity_mistakes_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    """Keyless trust needs identities; each needs exactly one issuer and one subject form."""
    (tmp_path / "f.pem").write_bytes(_fulcio_pem())
    (tmp_path / "k.pub").write_bytes(PEM)

    errors = config_errors(minimal_with(tmp_path, "[trust.ci]\n" + text))

    assert field in errors, errors


def test_certificate_given_as_a_key_fails_config_check(tmp_path: Path) -> None:
    """A certificate in ``keys`` is named by config check, not discovered at run time."""
    (tmp_path / "cert.pem").write_bytes(_fulcio_pem())

    errors = config_errors(minimal_with(tmp_path, '[trust.t]\nkeys = ["cert.pem"]\n'))

    assert list(errors) == ["trust.t.keys[0]"]
    assert "is a certificate; give its public key" in errors["trust.t.keys[0]"]


def test_propagate_deletions_needs_a_snapshot_store(tmp_path: Path) -> None:
    """Nothing is deleted that cannot be restored: no [snapshots], no propagated deletions."""
    rule = RULE + "propagate_deletions = true\n"

    errors = config_errors(minimal_with(tmp_path, rule))

    assert set(errors) == {"replication[0].propagate_deletions"}
    assert "needs a [snapshots] store" in errors["replication[0].propagate_deletions"]
    store = f'[snapshots]\nsource = "src"\nstore = "{(tmp_path / "s").as_uri()}"\n'
    settings = load_settings(minimal_with(tmp_path, rule + store))
    assert settings.replication[0].propagate_deletions
    assert (
        settings.replication[0].max_deletions,
        settings.replication[0].max_deletion_percent,
    ) == (
        100,
        10.0,
    )


def test_deletion_brake_bounds_are_checked(tmp_path: Path) -> None:
    """A negative count or a percentage over 100 is refused, naming the key."""
    rule = RULE + "max_deletions = -1\nmax_deletion_percent = 150\n"

    errors = config_errors(minimal_with(tmp_path, rule))

    assert set(errors) == {"replication[0].max_deletions", "replication[0].max_deletion_percent"}


def test_platforms_filter_is_refused_with_the_reason(tmp_path: Path) -> None:
    """`platforms` is not silently ignored: the error says why a replica keeps every platform."""
    errors = config_errors(minimal_with(tmp_path, RULE + 'platforms = ["linux/amd64"]\n'))

    assert set(errors) == {"replication[0].platforms"}
    assert "break its signatures" in errors["replication[0].platforms"]
