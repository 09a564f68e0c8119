"""The host's watermark of the newest trusted snapshot: moves forward only; names a rollback."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from drd.snapshot.model import Snapshot, snapshot_id
from drd.snapshot.watermark import FILE, read_watermark, record_watermark, rollback_problem

T0 = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)
STORE = "s3://bucket/snaps/"


def snap(at: dt.datetime, source: str = "primary", url: str = "") -> Snapshot:
    """An empty snapshot taken at *at*."""
    return Snapshot(
        id=snapshot_id(at),
        source=source,
        taken_at=at,
        repositories={},
        manifests={},
        blobs={},
        source_url=url,
    )


def test_the_watermark_moves_forward_only(tmp_path: Path) -> None:
    """Recording an older snapshot after a newer one leaves the newer one recorded."""
    old, new = snap(T0), snap(T0 + dt.timedelta(hours=1))
    assert record_watermark(tmp_path / "state", STORE, new)
    assert not record_watermark(tmp_path / "state", STORE, old)
    mark = read_watermark(tmp_path / "state", STORE, "primary")
    assert mark is not None
    assert (mark.id, mark.index_digest) == (new.id, str(new.digest))
    assert read_watermark(tmp_path / "state", "file:///elsewhere", "primary") is None
    assert read_watermark(tmp_path / "state", STORE, "other") is None


def test_an_older_latest_or_a_replaced_index_is_named(tmp_path: Path) -> None:
    """Older than recorded: a rollback; same id, other digest: a replaced index; newer: fine."""
    old, new = snap(T0), snap(T0 + dt.timedelta(hours=1))
    record_watermark(tmp_path, STORE, new)
    mark = read_watermark(tmp_path, STORE, "primary")

    assert f"newest snapshot of primary is {old.id}, older than {new.id}" in rollback_problem(
        mark, old
    )
    replaced = dataclasses.replace(new, source_url="http://attacker")
    assert "the index was replaced" in rollback_problem(mark, replaced)
    assert rollback_problem(mark, new) == ""
    assert rollback_problem(mark, snap(T0 + dt.timedelta(hours=2))) == ""
    assert rollback_problem(None, old) == ""


def test_a_malformed_watermark_file_reads_as_nothing(tmp_path: Path) -> None:
    """A damaged file does not crash a restore; it is logged and read as no record."""
    (tmp_path / FILE).write_text("{not json")
    assert read_watermark(tmp_path, STORE, "primary") is None
    assert record_watermark(tmp_path, STORE, snap(T0))
    assert read_watermark(tmp_path, STORE, "primary") is not None
