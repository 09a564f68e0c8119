"""Digests and references: the grammar, round trips, and hostile input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drd.errors import InvalidReference
from drd.oci.digest import Digest
from drd.oci.ref import Ref, validate_repository, validate_tag

HEX = "a" * 64


def test_digest_round_trips_and_hashes() -> None:
    """A digest parses, prints back, and matches the bytes it was computed from."""
    d = Digest.of(b"hello")
    assert str(d) == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert Digest.parse(str(d)) == d
    assert d.matches(b"hello")
    assert not d.matches(b"hello!")
    assert d.tag_form == "sha256-" + d.hex


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("sha256:" + "a" * 63, "64 lower-case hex", id="short"),
        pytest.param("sha256:" + "a" * 65, "64 lower-case hex", id="long"),
        pytest.param("sha256:" + "A" * 64, "64 lower-case hex", id="upper-case"),
        pytest.param("md5:" + "a" * 32, "not supported", id="bad-algorithm"),
        pytest.param("a" * 64, "no algorithm prefix", id="no-prefix"),
        pytest.param("sha256:" + "é" * 64, "64 lower-case hex", id="unicode"),
        pytest.param("sha256:../../etc/passwd", "64 lower-case hex", id="traversal"),
    ],
)
def test_bad_digests_are_rejected_with_the_reason(text: str, reason: str) -> None:
    """Every malformed digest is refused, and the message says why."""
    with pytest.raises(InvalidReference, match=reason):
        Digest.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:5000/team/app:v1",
        "registry.example.com/a/b/c@sha256:" + HEX,
        "localhost:5000/app:v1@sha256:" + HEX,
        "[::1]:5000/app:1.0",
    ],
)
def test_references_round_trip(text: str) -> None:
    """str(Ref.parse(x)) == x for valid references."""
    assert str(Ref.parse(text)) == text


@pytest.mark.parametrize(
    "name",
    ["../etc", "a/../b", "/abs", "UPPER", "a//b", "a/", "", "a" * 256, "é", "a..b/../c", "-a"],
)
def test_bad_repository_names_are_rejected(name: str) -> None:
    """Traversal, absolute, empty, over-long and non-grammar names are refused."""
    with pytest.raises(InvalidReference):
        validate_repository(name)


def test_good_repository_names_pass() -> None:
    """Names of the OCI grammar are accepted unchanged."""
    for name in ["a", "team-a/app", "a.b/c_d/e__f", "x/y/z-1"]:
        assert validate_repository(name) == name


def test_tag_grammar() -> None:
    """Tags of up to 128 characters of the tag grammar pass; others fail."""
    assert validate_tag("v1.2.3") == "v1.2.3"
    for bad in ["", ".hidden", "-x", "a" * 129, "a/b", "tag:x"]:
        with pytest.raises(InvalidReference):
            validate_tag(bad)


@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_parsers(text: str) -> None:
    """Any string either parses or raises InvalidReference; nothing else escapes."""
    for parse in (Digest.parse, Ref.parse, validate_repository, validate_tag):
        with contextlib.suppress(InvalidReference):
            parse(text)
