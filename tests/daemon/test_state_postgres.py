"""
The PostgreSQL state backend: `[state]` settings, schema migrations, `drd state migrate`,
`drd status` against it, and an unreachable server (the behaviour itself is in
test_state.py, run against both backends).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from drd.app.state import connection, open_state
from drd.config import load_settings
from drd.errors import ConfigError, StateError
from drd.state import RunRecord
from drd.state import postgres as pg_module
from drd.state.postgres import SCHEMA_VERSION, Connection, PostgresState
from tests.postgres import LocalPostgres
from tests.servers import free_port
from tests.test_cli import drd

SECRET = "s3cret-pass-Zq9"  # noqa: S105 - a test password, to find in output
BASE = """version = 1
[endpoints.src]
url = "http://127.0.0.1:1"
[endpoints.dst]
url = "http://127.0.0.1:2"
"""


def write(tmp_path: Path, state: str) -> Path:
    path = tmp_path / "drd.toml"
    path.write_text(f'{BASE}[daemon]\nstate_dir = "{tmp_path / "state"}"\n[state]\n{state}')
    return path


def config_errors(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return dict(caught.value.errors)


# --- settings -----------------------------------------------------------------------------


def test_without_a_url_the_state_is_sqlite_in_state_dir(tmp_path: Path) -> None:
    """No [state] url: SQLite under state_dir, as for one node."""
    settings = load_settings(write(tmp_path, ""))
    assert settings.state.url is None
    with pytest.raises(ValueError, match="no url"):
        connection(settings)


def test_password_comes_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """password_file is read; DRD_STATE__PASSWORD wins; neither shows in the URL or repr."""
    (tmp_path / "pg.password").write_text("from-file\n")
    path = write(
        tmp_path, 'url = "postgresql://drd@db.internal:5433/drd"\npassword_file = "pg.password"\n'
    )
    from_file = connection(load_settings(path))
    monkeypatch.setenv("DRD_STATE__PASSWORD", SECRET)
    settings = load_settings(path)
    from_env = connection(settings)
    assert (from_file.password, from_env.password) == ("from-file", SECRET)
    assert (from_env.where, from_env.sslmode) == ("db.internal:5433/drd", "verify-full")
    assert from_env.kwargs()["sslrootcert"] == "system"
    assert SECRET not in repr(settings) + settings.model_dump_json()


def test_tls_options_map_to_libpq(tmp_path: Path) -> None:
    """ca_file verifies against that CA; insecure accepts any certificate; loopback prefers."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    url = 'url = "postgresql://drd@db.internal/drd"\n'
    with_ca = connection(load_settings(write(tmp_path, url + 'ca_file = "ca.pem"\n')))
    assert (with_ca.sslmode, with_ca.kwargs()["sslrootcert"]) == (
        "verify-full",
        str(tmp_path / "ca.pem"),
    )
    insecure = connection(load_settings(write(tmp_path, url + "insecure = true\n")))
    assert insecure.sslmode == "prefer"
    loopback = load_settings(write(tmp_path, 'url = "postgresql://drd@127.0.0.1:5432/drd"\n'))
    assert connection(loopback).sslmode == "prefer"


@pytest.mark.parametrize(
    ("state", "field", "message"),
    [
        pytest.param(
            f'url = "postgresql://drd:{SECRET}@db/drd"\n', "state.url", "password", id="password"
        ),
        pytest.param(
            f'url = "postgresql://drd@db/drd?password={SECRET}"\n',
            "state.url",
            "password",
            id="password-in-query",
        ),
        pytest.param('url = "mysql://drd@db/drd"\n', "state.url", "postgresql://", id="scheme"),
        pytest.param('url = "postgresql:///drd"\n', "state.url", "no host", id="no-host"),
        pytest.param('password_file = "x"\n', "state.password_file", "only with url", id="no-url"),
        pytest.param("pool_size = 0\n", "state.pool_size", "greater than", id="pool-size"),
    ],
)
def test_bad_state_settings_are_refused(
    tmp_path: Path, state: str, field: str, message: str
) -> None:
    """Each bad [state] value is named; a password in the URL is never echoed."""
    errors = config_errors(write(tmp_path, state))
    assert message in errors[field], errors
    assert SECRET not in json.dumps(errors)


def test_a_missing_password_file_is_named(tmp_path: Path) -> None:
    """password_file that does not exist: a ConfigError naming the key and the path."""
    path = write(tmp_path, 'url = "postgresql://drd@db/drd"\npassword_file = "nope"\n')
    errors = config_errors(path)
    assert errors["state.password_file"] == f"{tmp_path / 'nope'} does not exist"


# --- schema -------------------------------------------------------------------------------


async def test_a_fresh_database_is_migrated_once_by_nodes_starting_together(
    postgres: LocalPostgres,
) -> None:
    """Three nodes open an empty database at once: every step is applied exactly once."""
    database = postgres.create_database()
    conn = Connection(postgres.url(database))
    states = await asyncio.gather(*(PostgresState.open(conn) for _ in range(3)))
    try:
        versions = [await s.version() for s in states]
        again = await states[0].migrate()
    finally:
        for state in states:
            await state.close()
    rows = postgres.sql(database, "SELECT version FROM drd_schema ORDER BY version")
    assert versions == [SCHEMA_VERSION] * 3
    assert again == []
    assert rows.split() == [str(v) for v in range(1, SCHEMA_VERSION + 1)]


async def test_forward_steps_apply_on_open_and_keep_the_data(
    postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new step is applied by the next open, after the ones before it, and data stays."""
    database = postgres.create_database()
    conn = Connection(postgres.url(database))
    async with await PostgresState.open(conn) as state:
        await state.record_run(RunRecord("a", "ping", "schedule", 1.0, 2.0, "ok", {}))
    step = "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT 'carried'"
    monkeypatch.setattr(pg_module, "MIGRATIONS", (*pg_module.MIGRATIONS, step))
    monkeypatch.setattr(pg_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StateError, match="run `drd state migrate`"):
        await PostgresState.open(conn, migrate=False)
    async with await PostgresState.open(conn) as state:
        assert await state.version() == SCHEMA_VERSION + 1
        assert [r.job for r in await state.runs()] == ["a"]
    assert postgres.sql(database, "SELECT note FROM runs").split() == ["carried"]


async def test_a_schema_newer_than_this_drd_is_refused(postgres: LocalPostgres) -> None:
    """A node older than the database must not write it: StateError saying to upgrade."""
    database = postgres.create_database()
    conn = Connection(postgres.url(database))
    async with await PostgresState.open(conn):
        pass
    newer = SCHEMA_VERSION + 1
    postgres.sql(database, f"INSERT INTO drd_schema (version) VALUES ({newer})")  # noqa: S608
    with pytest.raises(StateError, match="newer than this drd knows") as raised:
        await PostgresState.open(conn)
    assert raised.value.path.endswith(f"/{database}")


async def test_an_unreachable_server_is_a_state_error_without_the_password() -> None:
    """Nobody listening: StateError naming host:port/db; the password is never in it."""
    port = free_port()
    conn = Connection(
        f"postgresql://drd@127.0.0.1:{port}/drd", password=SECRET, connect_timeout=2.0
    )
    with pytest.raises(StateError) as raised:
        await PostgresState.open(conn)
    assert str(raised.value).startswith(f"state database 127.0.0.1:{port}/drd: ")
    assert SECRET not in str(raised.value)


# --- commands -----------------------------------------------------------------------------


def _env(password: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRD_")}
    if password is not None:
        env["DRD_STATE__PASSWORD"] = password
    return env


def test_state_migrate_and_status_against_postgresql(
    tmp_path: Path, postgres: LocalPostgres
) -> None:
    """`drd state migrate` applies the schema, then says it is up to date; status reads it."""
    database = postgres.create_database()
    path = write(tmp_path, f'url = "{postgres.url(database)}"\n')
    before = drd("status", "--config", str(path), env=_env())
    first = drd("state", "migrate", "--config", str(path), "--json", env=_env())
    second = drd("state", "migrate", "--config", str(path), env=_env())
    after = drd("status", "--config", str(path), "--json", env=_env())
    assert before.returncode == 1
    assert "run `drd state migrate`" in before.stderr
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "state": f"127.0.0.1:{postgres.port}/{database}",
        "applied": list(range(1, SCHEMA_VERSION + 1)),
        "version": SCHEMA_VERSION,
    }
    assert "already up to date" in second.stdout
    assert after.returncode == 0, after.stderr
    document = json.loads(after.stdout)
    assert (document["state_db"], document["runs"]) == (
        f"127.0.0.1:{postgres.port}/{database}",
        [],
    )
    assert not (tmp_path / "state" / "state.db").exists()  # nothing went to SQLite


def test_state_migrate_on_sqlite_reports_its_version(tmp_path: Path) -> None:
    """Without a URL the SQLite file is created and brought to its version by forward steps."""
    config = str(write(tmp_path, ""))
    result = drd("state", "migrate", "--config", config, "--json", env=_env())
    again = drd("state", "migrate", "--config", config, "--json", env=_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "state": str(tmp_path / "state" / "state.db"),
        "applied": [2],
        "version": 2,
    }
    assert json.loads(again.stdout)["applied"] == []


def test_state_migrate_against_a_server_that_is_down_fails_cleanly(tmp_path: Path) -> None:
    """Exit 1 with the server named and the password nowhere in the output."""
    port = free_port()
    path = write(tmp_path, f'url = "postgresql://drd@127.0.0.1:{port}/drd"\nconnect_timeout = 2\n')
    result = drd("state", "migrate", "--config", str(path), env=_env(SECRET))
    assert result.returncode == 1
    assert f"cannot migrate the state: state database 127.0.0.1:{port}/drd" in result.stderr
    assert SECRET not in result.stdout + result.stderr


async def test_open_state_picks_the_backend_from_the_settings(
    tmp_path: Path, postgres: LocalPostgres
) -> None:
    """The app layer opens PostgreSQL for a URL and SQLite without one."""
    database = postgres.create_database()
    pg = await open_state(load_settings(write(tmp_path, f'url = "{postgres.url(database)}"\n')))
    lite = await open_state(load_settings(write(tmp_path, "")))
    try:
        assert isinstance(pg, PostgresState)
        assert lite.moved_aside is None
        assert (tmp_path / "state" / "state.db").is_file()
    finally:
        await pg.close()
        await lite.close()


def test_status_text_shows_the_cluster() -> None:
    """The human `drd status` names each node, the singleton holders and the queue depth."""
    from drd.commands.status import render

    document = {
        "state_db": "db:5432/drd",
        "now": "2026-01-01T00:00:00+00:00",
        "replication": [],
        "jobs": [],
        "runs": [],
        "nodes": [
            {
                "id": "drd-east-1",
                "host": "east1",
                "version": "1.0",
                "last_heartbeat": "2026-01-01T00:00:00+00:00",
                "leases": 3,
            }
        ],
        "leaders": {"snapshot": "drd-east-1"},
        "unclaimed": 7,
    }
    text = render(document)
    assert (
        "  drd-east-1 on east1 (drd 1.0): last heartbeat 2026-01-01T00:00:00+00:00, 3 leases"
        in text
    )
    assert "  running singletons: snapshot on drd-east-1" in text
    assert "  unclaimed units: 7" in text
