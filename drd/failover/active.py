"""
The failover in force, as recorded in ``state_dir/failover.json``: the document, its
events and the atomic write that replaces it. `drd.app.active` applies it to the
configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drd.errors import DrdError
from drd.files import atomic_write

STATE_FILE = "failover.json"


@dataclass(frozen=True, slots=True)
class Active:
    """
    A failover in force: *standby* serves as the primary in place of *primary*, the
    endpoint the configuration names as the source of the policies that copy to it.
    """

    primary: str
    standby: str
    since: float
    event: str
    forced: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "primary": self.primary,
            "standby": self.standby,
            "since": self.since,
            "event": self.event,
            "forced": self.forced,
        }


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_document(state_dir: Path) -> dict[str, Any]:
    """The failover state document (an empty one when there is none yet)."""
    path = _state_path(state_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"schema_version": 1, "active": None, "events": []}
    except (OSError, ValueError) as exc:
        raise DrdError(f"cannot read the failover state {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("events", []), list):
        raise DrdError(f"the failover state {path} is not a drd failover document")
    return doc


def write_document(state_dir: Path, doc: Mapping[str, Any]) -> None:
    """Replace the failover state document, atomically."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(_state_path(state_dir), json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_active(state_dir: Path) -> Active | None:
    """The failover in force, or None. Raises `DrdError` for an unreadable state file."""
    active = read_document(state_dir).get("active")
    if not isinstance(active, dict):
        return None
    try:
        return Active(
            primary=str(active["primary"]),
            standby=str(active["standby"]),
            since=float(active["since"]),
            event=str(active.get("event", "")),
            forced=bool(active.get("forced", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DrdError(f"the failover state in {state_dir} is malformed: {exc}") from exc


def events(state_dir: Path) -> list[dict[str, Any]]:
    """Every recorded failover and failback event, oldest first."""
    return list(read_document(state_dir).get("events", []))
