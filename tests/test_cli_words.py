"""
One vocabulary in text and JSON: every command's summary names its outcomes with the
JSON's words, text shows short digests where JSON has full ones, and a command's own
errors under --json are one JSON document with the exit code they have without it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drd.commands.units import abbreviate, short
from drd.replicate.report import OUTCOMES
from tests.configs import local_daemon, signed_replication, write_toml
from tests.drill.helpers import KEY, push_signed
from tests.images import RegistryWriter, make_image, make_multiarch, push_image, push_index
from tests.servers import LocalRegistry
from tests.snapshot.helpers import drd_argv, drd_env, json_out, run_drd

FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# Each command's outcome counts, as its JSON names them.
RESTORE_OUTCOMES = ("restored", "moved", "unchanged", "planned", "failed")
READBACK_OUTCOMES = ("signed_ok", "unsigned", "signature_failures", "unchecked")


def config(
    tmp_path: Path, primary: LocalRegistry, dr: LocalRegistry, drill: LocalRegistry, repo: str
) -> Path:
    """primary -> dr (policy prod, signatures required), snapshots of primary, drills into drill."""
    key = tmp_path / "release.pub"
    key.write_bytes(KEY.public_pem())
    urls = {"primary": primary.url, "dr": dr.url, "drill": drill.url}
    return write_toml(
        tmp_path / "drd.toml",
        signed_replication(urls, repo, key)
        + f"""
[snapshots]
source = "primary"
store = "file://{tmp_path / "snapshots"}"
repositories = ["{repo}"]
blobs = true

[drills]
target = "drill"
trust = "release"
rto = "10m"
rpo = "1h"
report_dir = "{tmp_path / "reports"}"

[failover]
overrides_file = "{tmp_path / "overrides.json"}"
"""
        + local_daemon(tmp_path / "state"),
    )


def says(text: str, counts: dict[str, Any], outcomes: tuple[str, ...]) -> list[str]:
    """
    The outcomes of *counts* (a JSON summary) that *text* does not state as
    ``<count> <word>``, the word being the JSON key with spaces for underscores.
    """
    return [
        f"{counts[key]} {key.replace('_', ' ')}"
        for key in outcomes
        if not re.search(rf"(^|\W){counts[key]} {key.replace('_', ' ')}\b", text)
    ]


async def both(*argv: str, config: Path) -> tuple[str, Any]:
    """The command's text (checked free of full digests) and its --json document."""
    text = await run_drd(*argv, config=config)
    document = json_out(await run_drd(*argv, "--json", config=config))
    assert not FULL_DIGEST.findall(text.stdout), text.stdout
    return text.stdout, document


async def test_every_summary_says_in_text_what_its_json_counts(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    replicate (planned and done), snapshot create, restore (planned and done), drill,
    status and the failover pre-flight: the text states each outcome the JSON counts,
    in the JSON's word, and no full digest; the pre-flight's evidence names the missing
    tag's digest short in text and in full in JSON.
    """
    path = config(tmp_path, source_registry, target_registry, third_registry, repo)
    image = make_image(f"{repo}/words")
    await push_signed(source_registry, repo, image, "v1")
    await push_image(source_registry, repo, make_image(f"{repo}/plain"), "plain")

    text, doc = await both("failover", "--to", "dr", "--dry-run", config=path)
    assert text.splitlines()[0].endswith(f": {doc['outcome']}")
    completeness = next(f for f in doc["preflight"]["findings"] if f["check"] == "completeness")
    assert f"{repo}:v1 missing: source {image.digest}" in completeness["details"]
    assert f"{repo}:v1 missing: source {short(image.digest)}" in text

    text, doc = await both("replicate", "--dry-run", config=path)
    [policy] = doc["policies"]
    assert (policy["summary"]["planned"], policy["summary"]["rejected"]) == (2, 1)
    assert says(text, policy["summary"], OUTCOMES) == []

    assert (await run_drd("replicate", config=path)).returncode == 3
    text, doc = await both("replicate", config=path)
    [policy] = doc["policies"]
    assert (policy["summary"]["skipped"], policy["summary"]["rejected"]) == (2, 1)
    assert says(text, policy["summary"], OUTCOMES) == []

    text, doc = await both("status", config=path)
    [sync] = doc["replication"]
    assert says(text, sync, ("pending", "drift")) == []

    text, doc = await both("snapshot", "create", config=path)
    assert says(text, doc, ("skipped",)) == []

    restore = ("restore", "--snapshot", "latest", "--to", "drill", "--prefix", "words/")
    restore += ("--allow-unsigned-snapshot",)
    text, doc = await both(*restore, "--dry-run", config=path)
    assert doc["summary"]["planned"] == 3
    assert says(text, doc["summary"], RESTORE_OUTCOMES) == []
    assert (await run_drd(*restore, config=path)).returncode == 0
    text, doc = await both(*restore, config=path)
    assert doc["summary"]["unchanged"] == 3
    assert says(text, doc["summary"], RESTORE_OUTCOMES) == []

    text, doc = await both("drill", config=path)
    assert doc["readback"]["signed_ok"] >= 1
    assert says(text, doc["readback"], READBACK_OUTCOMES) == []


def test_says_needs_the_json_word_and_its_count() -> None:
    """The check itself: another word, or another count, is reported missing."""
    counts = {"copied": 1, "skipped": 4, "drift": 0}
    assert says("p: 1 copied, 4 skipped, 0 drift", counts, ("copied", "skipped", "drift")) == []
    assert says("p: 1 copied, 4 up to date", counts, ("skipped",)) == ["4 skipped"]
    assert says("p: 1 copied, 14 skipped", counts, ("skipped",)) == ["4 skipped"]
    assert says("2 signed ok", {"signed_ok": 2}, ("signed_ok",)) == []


def test_abbreviate_cuts_full_digests_in_free_text_only() -> None:
    """Full sha256 digests become `short`'s; a signature tag's name and short ones stay."""
    full = "sha256:" + "ab" * 32
    text = f"blob {full} missing under {full}; tag sha256-{'ab' * 32}.sig, {short(full)}"
    assert abbreviate(text) == (
        f"blob {short(full)} missing under {short(full)}; tag sha256-{'ab' * 32}.sig, {short(full)}"
    )


async def test_scrub_names_damage_by_short_digest_in_text_and_full_in_json(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """An index child deleted under its tag: scrub says so, by short digest; JSON in full."""
    index = make_multiarch(f"{repo}/scrub")
    await push_index(source_registry, repo, index, "v1")
    child = index.images[0]
    async with RegistryWriter(source_registry) as w:
        await w.delete_manifest(repo, child.digest)
    path = write_toml(
        tmp_path / "drd.toml",
        f'version = 1\n[endpoints.primary]\nurl = "{source_registry.url}"\n'
        + local_daemon(tmp_path / "state"),
    )
    argv = ("scrub", "primary", "--repository", repo)

    text = await run_drd(*argv, config=path)
    document = json_out(await run_drd(*argv, "--json", config=path))

    assert text.returncode == 1, text.stderr
    assert [(d["kind"], d["digest"]) for d in document["damage"]] == [
        ("missing-manifest", str(child.digest))
    ]
    assert f"{repo}@{short(child.digest)} (tags v1)" in text.stdout
    assert not FULL_DIGEST.findall(text.stdout), text.stdout


# --------------------------------------------------------------------------- errors


def small_config(tmp_path: Path) -> Path:
    """Two endpoints nobody listens on, a policy, a trust policy, snapshots and drills."""
    key = tmp_path / "release.pub"
    key.write_bytes(KEY.public_pem())
    urls = {"primary": "http://127.0.0.1:9", "dr": "http://127.0.0.1:9"}
    return write_toml(
        tmp_path / "drd.toml",
        signed_replication(urls, "team-a/app", key)
        + f"""
[trust.other]
keys = ["{key}"]

[snapshots]
source = "primary"
store = "file://{tmp_path / "snapshots"}"

[drills]
target = "dr"
"""
        + local_daemon(tmp_path / "state"),
    )


ERRORS = [
    pytest.param(
        ["replicate", "--policy", "nosuch"], 2, "no replication policy named nosuch", id="policy"
    ),
    pytest.param(["replicate", "--no-such-flag"], 2, "unrecognized arguments", id="flag"),
    pytest.param(["scrub", "nosuch"], 2, "no endpoint named nosuch", id="scrub-endpoint"),
    pytest.param(
        ["restore", "--snapshot", "latest", "--to", "nosuch"],
        2,
        "no endpoint named nosuch",
        id="restore-endpoint",
    ),
    pytest.param(
        ["restore", "--snapshot", "latest", "--to", "dr", "--force"],
        2,
        "--force applies only with --settings",
        id="force-without-settings",
    ),
    pytest.param(
        ["restore", "--snapshot", "latest", "--to", "dr", "--settings", "x"],
        2,
        "not allowed with argument",
        id="to-and-settings",
    ),
    pytest.param(
        ["restore", "--snapshot", "latest", "--to", "primary"],
        2,
        "refusing to restore into 'primary' without confirmation",
        id="unconfirmed",
    ),
    pytest.param(["drill", "--sample", "-1"], 2, "--sample must be 0 or more", id="sample"),
    pytest.param(
        ["verify", "primary/team-a/app:v1", "--trust", "nosuch"],
        2,
        "no trust policy named nosuch (known: other, release)",
        id="trust-name",
    ),
    pytest.param(
        ["verify", "primary/team-a/app:v1"],
        2,
        "several trust policies (other, release): choose one, --trust",
        id="trust-choice",
    ),
    pytest.param(["verify", "Not A Reference"], 2, "Not A Reference", id="reference"),
    pytest.param(["failback"], 2, "nothing to fail back from", id="failback"),
    pytest.param(["failover", "--to", "nosuch"], 2, "no endpoint named nosuch", id="failover-to"),
    pytest.param(
        ["status", "--state-dir", "{tmp}/nothing"],
        1,
        "cannot read the daemon's state",
        id="no-state",
    ),
    pytest.param(["snapshot", "show", "nosuch"], 1, "nosuch", id="snapshot-id"),
]


@pytest.mark.parametrize(("argv", "code", "message"), ERRORS)
async def test_command_errors_under_json_are_one_json_document(
    tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    """
    With --json: one JSON ``error`` document on stdout (its kind the exit code's word),
    nothing on stderr but logs; without: the same message on stderr, nothing on stdout,
    the same exit code.
    """
    path = small_config(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]

    as_json = await run_drd(*argv, "--json", config=path)
    as_text = await run_drd(*argv, config=path)

    assert as_json.returncode == code, as_json.stderr
    error = json_out(as_json)["error"]
    assert error["kind"] == {1: "failed", 2: "usage"}[code]
    assert message in error["message"]
    assert as_text.returncode == code
    assert (as_text.stdout, message in as_text.stderr) == ("", True)
    assert not [line for line in as_json.stderr.splitlines() if line.startswith("drd:")]


def test_a_hint_goes_under_the_message_in_text_and_beside_it_in_json(
    tmp_path: Path,
) -> None:
    """A corrupt state database: the message and what to do, in both forms."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.db").write_bytes(b"not a database" * 100)
    argv = ["status", "--state-dir", str(state)]

    as_text = run_sync(*argv)
    as_json = run_sync(*argv, "--json")

    assert as_text.returncode == as_json.returncode == 1
    first, hint = as_text.stderr.splitlines()[-2:]
    assert first.startswith("drd: cannot read the daemon's state: ")
    assert hint == "  the file is left as it is; `drd run` moves it aside and starts afresh"
    error = json.loads(as_json.stdout)["error"]
    assert error["message"] == first.removeprefix("drd: ")
    assert error["hint"] == hint.strip()


def run_sync(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m drd` with no config, synchronously."""
    return subprocess.run(
        drd_argv(*argv), capture_output=True, text=True, timeout=60, env=drd_env(), check=False
    )
