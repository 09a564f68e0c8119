"""Locate the real signature fixtures under shared/fixtures/signatures (read-only)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.servers import missing


def _root() -> Path:
    override = os.environ.get("DRD_FIXTURES")
    if override:  # the OCI layouts' directory; the signatures sit beside it
        return Path(override).parent / "signatures"
    # The repository and shared/ sit side by side: <parent>/main/tests/ and <parent>/shared/.
    return Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "signatures"


SIGNATURES = _root()


def signature_fixture(relative: str) -> Path:
    """A file under shared/fixtures/signatures; fails under CI and skips elsewhere if missing."""
    path = SIGNATURES / relative
    if not path.is_file():
        missing(
            f"signature fixture {relative!r} at {path}",
            "place shared/ beside the repo or set DRD_FIXTURES",
        )
    return path
